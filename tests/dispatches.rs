//! How many dispatches a convolution's passes record, and which: the launches the engine
//! saves (fused gradients of tiny convolutions, the bias gradient riding with the weight
//! gradient's reduce) are asserted by the kernels that ran, and their results against the
//! f64 oracle, so a saving cannot come at a wrong number.

mod common;

use common::{assert_close, to_f64, Rng};
use skipgrad::ops::conv2d::{conv2d_backward, Conv2dGrads};
use skipgrad::{reference, Conv2dParams, ConvKernels, Gpu, Purpose, Recording, Tensor};

/// A convolution's operands, random, on the GPU and on the host.
struct Problem {
    x: Vec<f32>,
    xs: [usize; 4],
    w: Vec<f32>,
    ws: [usize; 4],
    go: Vec<f32>,
    ys: [usize; 4],
    p: Conv2dParams,
}

impl Problem {
    fn new(xs: [usize; 4], ws: [usize; 4], p: Conv2dParams, seed: u64) -> Problem {
        let mut rng = Rng(seed);
        let ys = p.output_shape(xs, ws).unwrap();
        Problem {
            x: rng.vec(xs.iter().product()),
            xs,
            w: rng.vec(ws.iter().product()),
            ws,
            go: rng.vec(ys.iter().product()),
            ys,
            p,
        }
    }

    /// Records all gradients (with a bias) in one recording under `kernels`; returns them
    /// with the recording's dispatch count and kernels.
    fn backward(&self, kernels: ConvKernels) -> (Conv2dGrads, usize, Vec<&'static str>) {
        self.backward_on(common::gpu(), kernels)
    }

    fn backward_on(
        &self,
        gpu: &Gpu,
        kernels: ConvKernels,
    ) -> (Conv2dGrads, usize, Vec<&'static str>) {
        let up = |s, v: &[f32], purpose| Tensor::from_slice(gpu, s, v, purpose).expect("upload");
        let x = up(self.xs, &self.x, Purpose::Activation);
        let w = up(self.ws, &self.w, Purpose::Parameter);
        let go = up(self.ys, &self.go, Purpose::Gradient);
        let mut rec = Recording::new(gpu);
        rec.set_conv_kernels(kernels);
        let grads = conv2d_backward(&mut rec, &x, &w, true, &go, &self.p).expect("record");
        let (count, kernels) = (rec.dispatch_count(), rec.kernels().to_vec());
        rec.finish().expect("submit");
        (grads, count, kernels)
    }

    /// Checks the three gradients against the f64 oracle.
    fn check(&self, grads: &Conv2dGrads, what: &str) {
        self.check_on(common::gpu(), grads, what)
    }

    fn check_on(&self, gpu: &Gpu, grads: &Conv2dGrads, what: &str) {
        let read = |t: &Tensor| t.to_vec(gpu).expect("read back");
        let (x, w, go) = (to_f64(&self.x), to_f64(&self.w), to_f64(&self.go));
        let gx = reference::conv2d_backward_input(&go, self.xs, &w, self.ws, &self.p).unwrap();
        let gw = reference::conv2d_backward_weight(&x, self.xs, &go, self.ws, &self.p).unwrap();
        let gb = reference::conv2d_backward_bias(&go, self.ys);
        assert_close(&format!("{what}: grad x"), &read(&grads.grad_x), &gx, 1e-4);
        assert_close(
            &format!("{what}: grad w"),
            &read(&grads.grad_weight),
            &gw,
            1e-4,
        );
        let gb_got = read(grads.grad_bias.as_ref().expect("a bias gradient"));
        assert_close(&format!("{what}: grad b"), &gb_got, &gb, 1e-4);
    }
}

/// Whether a kernel is the bias gradient's own launch (its GPU shape, a workgroup a channel,
/// or its CPU-adapter shape, a thread a channel and no barriers).
fn is_bias_sum(kernel: &str) -> bool {
    matches!(
        kernel,
        "conv2d_backward_bias" | "conv2d_backward_bias_serial"
    )
}

/// The notebook's conv (2×2, stride 2, padding 2, 3 → 6 channels on a 4×4 image) runs its
/// forward as one dispatch and takes its three gradients from one more under `Auto` on every
/// adapter, whatever the per-pass measurements say; forcing another family still runs that
/// family.
#[test]
fn a_tiny_convs_gradients_are_one_dispatch() {
    let prob = Problem::new([1, 3, 4, 4], [6, 3, 2, 2], Conv2dParams::new(2, 2), 7);
    for _ in 0..2 {
        // Twice: the first call may measure, the second uses what was measured.
        let gpu = common::gpu();
        let x = common::upload(prob.xs, &prob.x, Purpose::Activation);
        let w = common::upload(prob.ws, &prob.w, Purpose::Parameter);
        let mut rec = Recording::new(gpu);
        skipgrad::ops::conv2d::conv2d(&mut rec, &x, &w, None, &prob.p).expect("record");
        assert_eq!(rec.kernels(), ["conv2d_forward"], "auto forward");
        rec.finish().expect("submit");
        let (grads, count, kernels) = prob.backward(ConvKernels::AUTO);
        assert_eq!(kernels, ["conv2d_backward_fused"], "auto");
        assert_eq!(count, 1, "auto");
        prob.check(&grads, "auto");
    }
    let (grads, _, kernels) = prob.backward(ConvKernels::REGBLOCK);
    assert!(!kernels.contains(&"conv2d_backward_fused"), "{kernels:?}");
    common::assert_family_ran(&kernels, ConvKernels::REGBLOCK, "forced regblock");
    prob.check(&grads, "forced regblock");
}

/// The bias gradient rides with the weight gradient's reduce (one launch, no separate bias
/// pass) under the GPU policy, in every family that reduces partial sums; under the CPU
/// adapter's (lavapipe by default), where a kernel
/// with barriers is slow per workgroup, it stays its own launch. The numbers are the
/// oracle's either way. (The GPUs' path runs on CPU adapters too, in the unit test
/// `ops::conv2d::backward::tests::the_bias_rides_with_every_familys_reduce`.)
#[test]
fn the_bias_gradient_rides_with_the_weight_gradients_reduce_on_gpus() {
    let cpu = common::gpu().policy() == skipgrad::AdapterPolicy::Cpu;
    // 5120 output pixels, more than one thread sums serially: several splits of the weight
    // gradient's reduction in every family that splits, on CPU adapters and GPUs alike.
    let prob = Problem::new([5, 8, 32, 32], [12, 8, 3, 3], Conv2dParams::new(1, 1), 11);
    for kernels in [
        ConvKernels::GEMM,
        ConvKernels::TEXTURE,
        ConvKernels::REGBLOCK,
    ] {
        let what = kernels.name();
        let (grads, _, ran) = prob.backward(kernels);
        common::assert_family_ran(&ran, kernels, what);
        let fused = ran.contains(&"conv2d_backward_weight_reduce_and_bias");
        let separate =
            ran.iter().any(|k| is_bias_sum(k)) && ran.contains(&"conv2d_backward_weight_reduce");
        assert_eq!((fused, separate), (!cpu, cpu), "{what}: {ran:?}");
        prob.check(&grads, what);
    }
}

/// Where the weight gradient has no reduce to ride with (one split writing the gradient
/// itself), the bias gradient is its own launch, and still right.
#[test]
fn without_a_reduce_the_bias_gradient_is_its_own_launch() {
    // 256 output pixels, one direct-family thread's reduction: a single split; 4.7 MFLOP,
    // too many for the fused kernel of tiny convolutions.
    let prob = Problem::new([1, 32, 16, 16], [32, 32, 3, 3], Conv2dParams::new(1, 1), 17);
    let (grads, _, ran) = prob.backward(ConvKernels::DIRECT);
    assert!(ran.iter().any(|k| is_bias_sum(k)), "{ran:?}");
    assert!(!ran.iter().any(|k| k.contains("reduce")), "{ran:?}");
    prob.check(&grads, "direct");
}

/// Under `Auto` with a measured choice (tiny, but too long for the fused kernel), the tuner
/// measures the weight gradient with its bias on look-alikes: the caller's gradients are
/// the oracle's, each written once, by the real call.
#[test]
fn the_tuner_measures_the_bias_on_look_alikes() {
    let prob = Problem::new([8, 4, 16, 16], [4, 4, 3, 3], Conv2dParams::new(1, 1), 19);
    for _ in 0..2 {
        let (grads, _, ran) = prob.backward(ConvKernels::AUTO);
        assert!(!ran.contains(&"conv2d_backward_fused"), "{ran:?}");
        prob.check(&grads, "auto");
        // What the tuner measured is reported, and is what ran.
        let tuned = common::gpu().tuned_conv_choices();
        let choice = tuned
            .iter()
            .find(|c| c.pass == "weight gradient" && c.input == prob.xs && c.weight == prob.ws)
            .unwrap_or_else(|| panic!("no weight-gradient choice in {tuned:?}"));
        let ran_families: Vec<_> = ran.iter().filter_map(|k| common::family_of(k)).collect();
        assert!(
            ran_families.contains(&choice.family),
            "{choice:?} vs {ran:?}"
        );
    }
}

/// Under the CPU policy (lavapipe's by default) the rule runs a 3×3 stride-1 conv's forward
/// and input gradient on the Winograd family (F(4×4) or F(2×2) by the tiles: the family's
/// own tests) from 64 channels in and out and 300 MFLOP a pass, and its weight gradient too
/// where the batch also has 64 tiles of 2 × 2 pixels, where each measured faster than the
/// texture family (benches/NOTES.md, v29, v31–v34); on the texture family below either.
/// The oracle's numbers either way.
#[test]
fn the_cpu_rule_takes_winograd_from_64_channels() {
    let gpu = Gpu::with_options(&skipgrad::GpuOptions {
        backend: std::env::var("SKIPGRAD_BACKEND").ok(),
        policy: Some(skipgrad::AdapterPolicy::Cpu),
        ..Default::default()
    })
    .expect("an adapter under the CPU policy");
    let family = |ran: &[&str], f: ConvKernels| ran.iter().any(|k| common::family_of(k) == Some(f));
    // 453, 75, 9 and 520 MFLOP a pass; 1536, 1024, 32 and 49 tiles of 2 × 2.
    for (xs, winograd, weight) in [
        ([6, 64, 32, 32], true, true),
        ([4, 32, 32, 32], false, false),
        ([2, 64, 8, 8], false, false),
        ([1, 384, 14, 14], true, false),
    ] {
        let what = format!("{xs:?}");
        let c = xs[1];
        let prob = Problem::new(xs, [c, c, 3, 3], Conv2dParams::new(1, 1), 23);
        // The forward.
        let x = Tensor::from_slice(&gpu, prob.xs, &prob.x, Purpose::Activation).unwrap();
        let w = Tensor::from_slice(&gpu, prob.ws, &prob.w, Purpose::Parameter).unwrap();
        let mut rec = Recording::new(&gpu);
        let y = skipgrad::ops::conv2d::conv2d(&mut rec, &x, &w, None, &prob.p).unwrap();
        let ran = rec.kernels().to_vec();
        rec.finish().unwrap();
        assert_eq!(
            family(&ran, ConvKernels::WINOGRAD),
            winograd,
            "{what}: {ran:?}"
        );
        assert_eq!(
            family(&ran, ConvKernels::TEXTURE),
            !winograd,
            "{what}: {ran:?}"
        );
        let (want, _) = reference::conv2d(
            &to_f64(&prob.x),
            prob.xs,
            &to_f64(&prob.w),
            prob.ws,
            None,
            &prob.p,
        )
        .unwrap();
        assert_close(&format!("{what}: y"), &y.to_vec(&gpu).unwrap(), &want, 1e-4);
        // The gradients: the input gradient as the forward, the weight gradient by the tiles.
        let (grads, _, ran) = prob.backward_on(&gpu, ConvKernels::AUTO);
        for (kernel, ran_it) in [
            ("conv2d_winograd_gemm", winograd),
            ("conv2d_forward_texture", !winograd),
            ("conv2d_winograd_weight_gemm", weight),
            ("conv2d_backward_weight_texture", !weight),
        ] {
            assert_eq!(ran.contains(&kernel), ran_it, "{what}: {kernel} in {ran:?}");
        }
        prob.check_on(&gpu, &grads, &what);
    }
}

/// A 1×1 unpadded conv of stride > 1 (ResNet's downsample) takes its input gradient as the
/// stride-1 problem's, scattered onto the stride's grid: the scatter ran and no stride-class
/// kernel did, with the oracle's numbers — strides 2 and 3 on sizes they do not divide, the
/// fused ReLU mask, accumulation onto an earlier gradient, and a channel view as grad_x.
#[test]
fn a_strided_pointwise_input_gradient_is_the_stride_one_one_scattered() {
    let gpu = common::gpu();
    for (xs, stride, cout) in [([2, 12, 9, 7], 2, 16), ([1, 8, 10, 11], 3, 5)] {
        let p = Conv2dParams::new(stride, 0);
        let prob = Problem::new(xs, [cout, xs[1], 1, 1], p, 29);
        let prior = Rng(31).vec(xs.iter().product());
        // Oracle: prior + (x > 0) · conv_transpose(go, w).
        let gx =
            reference::conv2d_backward_input(&to_f64(&prob.go), xs, &to_f64(&prob.w), prob.ws, &p)
                .unwrap();
        let want: Vec<f64> = gx
            .iter()
            .zip(&prob.x)
            .zip(&prior)
            .map(|((&g, &x), &b)| b as f64 + if x > 0.0 { g } else { 0.0 })
            .collect();
        let up = |s, v: &[f32]| Tensor::from_slice(gpu, s, v, Purpose::Activation).unwrap();
        let (x, w, go) = (up(xs, &prob.x), up(prob.ws, &prob.w), up(prob.ys, &prob.go));
        // grad_x as channels 2.. of a wider buffer.
        let [n, c, h, wd] = xs;
        let wide = Tensor::zeros(gpu, [n, c + 2, h, wd], Purpose::Gradient).unwrap();
        let grad_x = wide.channels(2..c + 2).unwrap();
        let mut staged = Recording::new(gpu);
        let prior_t = up(xs, &prior);
        skipgrad::ops::concat::copy_view(&mut staged, &prior_t, &grad_x, false).unwrap();
        staged.finish().unwrap();
        let mut rec = Recording::new(gpu);
        let fusion = skipgrad::Fusion {
            relu_input: true,
            accumulate: true,
        };
        skipgrad::ops::conv2d::conv2d_backward_input_into(
            &mut rec, &x, &w, &go, &p, &grad_x, fusion,
        )
        .unwrap();
        let ran = rec.kernels().to_vec();
        rec.finish().unwrap();
        assert!(ran.contains(&"conv2d_scatter_strided"), "{ran:?}");
        assert!(
            !ran.iter()
                .any(|k| k.starts_with("conv2d_backward_input_texture")),
            "{ran:?}"
        );
        assert_close(
            &format!("stride {stride}"),
            &grad_x.to_vec(gpu).unwrap(),
            &want,
            1e-4,
        );
    }
}

/// The texture forward takes 16 consecutive output pixels a thread, across rows and images:
/// forced, on planes whose rows are not 16 wide — 6-wide rows in a 24-pixel plane (whole
/// 8-pixel blocks stored as vec4s though no row holds one) and a 7 × 7 plane (scalar stores) —
/// with blocks that run from one image into the next, bias, and accumulation into a channel
/// view of a wider buffer; the kernel that ran is the texture forward, the numbers the
/// oracle's.
#[test]
fn the_texture_forward_runs_its_blocks_across_rows_and_images() {
    let gpu = common::gpu();
    for (xs, cout) in [([3, 5, 4, 6], 9), ([2, 4, 7, 7], 6)] {
        let p = Conv2dParams::new(1, 1);
        let ws = [cout, xs[1], 3, 3];
        let prob = Problem::new(xs, ws, p, 37);
        let bias = Rng(41).vec(cout);
        let ys = prob.ys;
        let prior = Rng(43).vec(ys.iter().product());
        let (y, _) = reference::conv2d(
            &to_f64(&prob.x),
            xs,
            &to_f64(&prob.w),
            ws,
            Some(&to_f64(&bias)),
            &p,
        )
        .unwrap();
        let want: Vec<f64> = y.iter().zip(&prior).map(|(&v, &b)| v + b as f64).collect();
        let up = |s, v: &[f32]| Tensor::from_slice(gpu, s, v, Purpose::Activation).unwrap();
        let (x, w, b) = (up(xs, &prob.x), up(ws, &prob.w), up([cout, 1, 1, 1], &bias));
        let [n, c, h, wd] = ys;
        let wide = Tensor::zeros(gpu, [n, c + 2, h, wd], Purpose::Activation).unwrap();
        let out = wide.channels(2..c + 2).unwrap();
        let prior_t = up(ys, &prior);
        let mut rec = Recording::new(gpu);
        skipgrad::ops::concat::copy_view(&mut rec, &prior_t, &out, false).unwrap();
        rec.set_conv_kernels(ConvKernels::TEXTURE);
        let fusion = skipgrad::Fusion {
            relu_input: false,
            accumulate: true,
        };
        skipgrad::ops::conv2d::conv2d_into(&mut rec, &x, &w, Some(&b), &p, &out, fusion).unwrap();
        let ran = rec.kernels().to_vec();
        rec.finish().unwrap();
        assert!(ran.contains(&"conv2d_forward_texture"), "{ran:?}");
        assert_close(&format!("{xs:?}"), &out.to_vec(gpu).unwrap(), &want, 1e-4);
    }
}
