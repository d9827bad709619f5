//! All gradients of a convolution: tiny convolutions as one fused direct dispatch (launch
//! overhead is their whole cost), others as one pass per gradient.

use super::args::{check_bias, expect_shape, Geometry, InputGradArgs, WeightGradArgs};
use super::backward_weight::conv2d_backward_weight_and_bias_into;
use super::budget::{channels_fit, LOOP_BUDGET, SHORT_LOOP};
use super::family::{direct, Call, FALLBACK};
use super::select;
use super::{conv2d_backward_input_into, Conv2dParams, ConvKernels, Fusion};
use crate::error::Result;
use crate::memory::Purpose;
use crate::ops::{bindable, no_overlap, rebase};
use crate::record::Recording;
use crate::tensor::Tensor;

/// The three gradients of a convolution.
#[derive(Debug)]
pub struct Conv2dGrads {
    /// Gradient with respect to the input.
    pub grad_x: Tensor,
    /// Gradient with respect to the weight.
    pub grad_weight: Tensor,
    /// Gradient with respect to the bias (when the conv has one).
    pub grad_bias: Option<Tensor>,
}

/// All gradients of `conv2d(x, weight, bias?)` given the output gradient, in new tensors.
pub fn conv2d_backward(
    rec: &mut Recording<'_>,
    x: &Tensor,
    weight: &Tensor,
    has_bias: bool,
    grad_out: &Tensor,
    params: &Conv2dParams,
) -> Result<Conv2dGrads> {
    let gpu = rec.gpu();
    let grad_x = Tensor::zeros(gpu, x.shape(), Purpose::Gradient)?;
    let grad_weight = Tensor::zeros(gpu, weight.shape(), Purpose::Gradient)?;
    let grad_bias = if has_bias {
        let cout = weight.shape()[0];
        Some(Tensor::zeros(gpu, [cout, 1, 1, 1], Purpose::Gradient)?)
    } else {
        None
    };
    let inputs = Conv2dBackward {
        x,
        weight,
        grad_out,
        params,
        fusion: Fusion::default(),
    };
    inputs.record_into(rec, &grad_x, &grad_weight, grad_bias.as_ref())?;
    Ok(Conv2dGrads {
        grad_x,
        grad_weight,
        grad_bias,
    })
}

/// Convolutions this small (in FLOPs of one pass) take their three gradients from one
/// fused direct dispatch when the direct family is chosen for every pass.
const FUSED_BACKWARD_MAX_FLOPS: u64 = 2_000_000;

/// What every gradient of a convolution reads: its input, weight and output gradient. With
/// `fusion.relu_input`, `x` is the forward's pre-ReLU input: ReLU'd as the weight gradient
/// loads it, and the input gradient masked by `x > 0` as it is stored; with
/// `fusion.accumulate` the input gradient is added into `grad_x`.
#[derive(Clone, Copy, Debug)]
pub struct Conv2dBackward<'a> {
    /// The forward's input (a tensor or a view).
    pub x: &'a Tensor,
    /// The forward's weight.
    pub weight: &'a Tensor,
    /// The gradient of the forward's output.
    pub grad_out: &'a Tensor,
    /// The forward's parameters.
    pub params: &'a Conv2dParams,
    /// How the forward loaded its input, and whether `grad_x` is added into.
    pub fusion: Fusion,
}

impl Conv2dBackward<'_> {
    /// Records all gradients into tensors the caller owns: `grad_x` (=|+=, by
    /// `fusion.accumulate`; a view is fine), `grad_weight` and `grad_bias` (overwritten).
    /// Tiny convolutions run as one fused dispatch; others as one dispatch (or kernel family)
    /// per gradient.
    pub fn record_into(
        &self,
        rec: &mut Recording<'_>,
        grad_x: &Tensor,
        grad_weight: &Tensor,
        grad_bias: Option<&Tensor>,
    ) -> Result<()> {
        let Conv2dBackward {
            x,
            weight,
            grad_out,
            params,
            fusion,
        } = *self;
        if self.fused(rec, grad_x, grad_weight, grad_bias)? {
            return Ok(());
        }
        conv2d_backward_input_into(rec, x, weight, grad_out, params, grad_x, fusion)?;
        let load = Fusion {
            relu_input: fusion.relu_input,
            accumulate: false,
        };
        conv2d_backward_weight_and_bias_into(rec, x, grad_out, params, grad_weight, grad_bias, load)
    }

    /// Records the parameters' gradients alone, `grad_weight` and `grad_bias` (overwritten),
    /// for a conv whose input needs no gradient (a network's first layer, a frozen input):
    /// no input-gradient pass — except for a tiny convolution, whose one fused dispatch
    /// (into scratch) is cheaper than the weight gradient's own launches. `fusion.relu_input`
    /// still says how the forward loaded `x`.
    pub fn record_params_into(
        &self,
        rec: &mut Recording<'_>,
        grad_weight: &Tensor,
        grad_bias: Option<&Tensor>,
    ) -> Result<()> {
        let load = Fusion {
            relu_input: self.fusion.relu_input,
            accumulate: false,
        };
        let scratch = rec.scratch_tensor(self.x.shape())?;
        let fused = Conv2dBackward {
            fusion: load,
            ..*self
        }
        .fused(rec, &scratch, grad_weight, grad_bias)?;
        rec.scratch_done(scratch);
        if fused {
            return Ok(());
        }
        conv2d_backward_weight_and_bias_into(
            rec,
            self.x,
            self.grad_out,
            self.params,
            grad_weight,
            grad_bias,
            load,
        )
    }

    /// Records all three gradients as one fused direct dispatch where the convolution is
    /// tiny, its loops fit the budget and the direct family is chosen for both passes;
    /// returns whether it did.
    fn fused(
        &self,
        rec: &mut Recording<'_>,
        grad_x: &Tensor,
        grad_weight: &Tensor,
        grad_bias: Option<&Tensor>,
    ) -> Result<bool> {
        let (p, gpu) = (self.params, rec.gpu());
        let g = Geometry::of(self.x, self.weight, p)?;
        // The fused kernel sums each weight and bias element in one thread: only where
        // those loops (N*OH*OW pixels, channels × taps) stay within the budget.
        let [_, cin_g, kh, kw] = g.w;
        let loops_fit = g.y[0] * g.y[2] * (g.y[3] + 2) <= LOOP_BUDGET
            && channels_fit(kh, kw, cin_g.max(g.y[1] / p.groups));
        let tiny = g.tap_flops() <= FUSED_BACKWARD_MAX_FLOPS
            && loops_fit
            && bindable(gpu, &[self.x, self.grad_out, grad_x]);
        if !tiny {
            return Ok(false);
        }
        expect_shape("output gradient", self.grad_out, g.y)?;
        expect_shape("input gradient", grad_x, g.x)?;
        expect_shape("weight gradient", grad_weight, g.w)?;
        if let Some(gb) = grad_bias {
            check_bias(gb, g.y[1])?;
        }
        for t in [Some(grad_x), Some(grad_weight), grad_bias]
            .into_iter()
            .flatten()
        {
            no_overlap("conv2d backward", t, self.x)?;
            no_overlap("conv2d backward", t, self.grad_out)?;
        }
        let (x, grad_out, grad_x) = (
            &rebase(gpu, self.x),
            &rebase(gpu, self.grad_out),
            &rebase(gpu, grad_x),
        );
        let input = InputGradArgs {
            g,
            p: *p,
            x,
            weight: self.weight,
            grad_out,
            grad_x,
            fusion: self.fusion,
        };
        let weights = WeightGradArgs {
            g,
            p: *p,
            x,
            grad_out,
            grad_weight,
            fusion: select::overwrite(self.fusion),
            bias: None,
        };
        // Where no thread of the fused kernel loops far, it is one launch against three or
        // four at least as long: `Auto` takes it without measuring the passes one by one
        // (whose per-pass timings miss the launches saved, and made the notebook conv's
        // choice vary between processes). Otherwise it runs where the direct family is
        // chosen for both passes.
        let short =
            g.y[0] * g.y[2] * g.y[3] <= SHORT_LOOP && g.y[1] / p.groups * kh * kw <= SHORT_LOOP;
        let direct =
            |call| -> Result<bool> { Ok(select::choose(rec, &call)?.kind() == FALLBACK.kind()) };
        let chosen = match select::forced(rec)? {
            ConvKernels::AUTO if short => true,
            _ => direct(Call::BackwardInput(&input))? && direct(Call::BackwardWeight(&weights))?,
        };
        if !chosen {
            return Ok(false);
        }
        direct::backward_fused(rec, &input, grad_weight, grad_bias)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv2d::tune::TuneStore;
    use crate::Gpu;

    /// A tiny convolution whose fused kernel loops briefly is fused under `Auto` even where
    /// the per-pass measurements chose another family (here: every measured choice
    /// overwritten with register-blocked, as lavapipe's timings sometimes have it).
    #[test]
    fn short_tiny_convs_fuse_whatever_the_passes_measured() {
        let gpu = Gpu::new().unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"));
        let (xs, ws, p) = ([1, 3, 4, 4], [6, 3, 2, 2], Conv2dParams::new(2, 2));
        let ys = p.output_shape(xs, ws).unwrap();
        let ones = |s: [usize; 4]| vec![0.5f32; s.iter().product()];
        let tensor = |s, purpose| Tensor::from_slice(&gpu, s, &ones(s), purpose).unwrap();
        let x = tensor(xs, Purpose::Activation);
        let w = tensor(ws, Purpose::Parameter);
        let go = tensor(ys, Purpose::Gradient);
        let kernels_of_a_backward = || {
            let mut rec = Recording::new(&gpu);
            conv2d_backward(&mut rec, &x, &w, true, &go, &p).unwrap();
            let kernels = rec.kernels().to_vec();
            rec.finish().unwrap();
            kernels
        };
        kernels_of_a_backward();
        // Make the passes' own choices anything but direct, measured or not.
        TuneStore::of(&gpu).override_choices(ConvKernels::REGBLOCK);
        assert_eq!(kernels_of_a_backward(), ["conv2d_backward_fused"]);
    }
}

/// The GPUs' path of the bias gradient, on any adapter: with it riding on the weight
/// gradient's reduce, every family that reduces records one launch for both, and a weight
/// gradient in parts (the texture family, one image at a time) sums the bias once over the
/// whole batch — all the f64 oracle's numbers.
#[cfg(all(test, feature = "oracle"))]
mod bias_tests {
    use super::*;
    use crate::gpu::test_gpu;
    use crate::{AdapterPolicy, Gpu};

    fn oracle_check(gpu: &Gpu, shapes: ([usize; 4], [usize; 4]), kernels: ConvKernels) {
        let (xs, ws) = shapes;
        let p = Conv2dParams::new(1, 1);
        let ys = p.output_shape(xs, ws).unwrap();
        // Pseudo-random in [-1, 1) (a multiplicative hash), so long sums do not cancel
        // into float32 rounding.
        let value = |i: usize, k: usize| {
            let h = (i as u64 * 2_654_435_761 + k as u64 * 40_503) % 4096;
            h as f32 / 2048.0 - 1.0
        };
        let host = |s: [usize; 4], k| (0..s.iter().product()).map(|i| value(i, k)).collect();
        let (xv, wv, gv): (Vec<f32>, Vec<f32>, Vec<f32>) = (host(xs, 7), host(ws, 5), host(ys, 3));
        let up = |s, v: &[f32]| Tensor::from_slice(gpu, s, v, Purpose::Activation).unwrap();
        let (x, w, go) = (up(xs, &xv), up(ws, &wv), up(ys, &gv));
        let mut rec = Recording::new(gpu);
        rec.set_conv_kernels(kernels);
        let grads = conv2d_backward(&mut rec, &x, &w, true, &go, &p).unwrap();
        let ran = rec.kernels().to_vec();
        rec.finish().unwrap();
        let what = kernels.name();
        assert!(
            ran.contains(&"conv2d_backward_weight_reduce_and_bias"),
            "{what}: {ran:?}"
        );
        assert!(
            !ran.iter().any(|k| k.starts_with("conv2d_backward_bias")),
            "{what}: {ran:?}"
        );
        let f64s = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
        let reference =
            crate::reference::conv2d_backward_weight(&f64s(&xv), xs, &f64s(&gv), ws, &p);
        let wants = [
            ("grad w", reference.unwrap(), &grads.grad_weight),
            (
                "grad b",
                crate::reference::conv2d_backward_bias(&f64s(&gv), ys),
                grads.grad_bias.as_ref().unwrap(),
            ),
        ];
        for (name, want, t) in wants {
            let got = t.to_vec(gpu).unwrap();
            for (i, (&g, &e)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g as f64 - e).abs() <= 1e-4 * (1.0 + e.abs()),
                    "{what} {name}[{i}]: {g} vs {e}"
                );
            }
        }
    }

    #[test]
    fn the_bias_rides_with_every_familys_reduce() {
        let gpu = test_gpu(AdapterPolicy::Gpu);
        // 5120 output pixels: several splits of the reduction in every family that splits.
        let shapes = ([5, 8, 32, 32], [12, 8, 3, 3]);
        for kernels in [
            ConvKernels::GEMM,
            ConvKernels::TEXTURE,
            ConvKernels::REGBLOCK,
        ] {
            oracle_check(&gpu, shapes, kernels);
        }
        // One image at a time: the later parts' reduces run without it.
        gpu.set_scratch_budget(1);
        oracle_check(&gpu, ([3, 8, 16, 16], [12, 8, 3, 3]), ConvKernels::TEXTURE);
    }
}
