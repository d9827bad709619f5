//! The weight gradient, F(3×3, 2×2) and F(3×3, 4×4), against the f64 oracle: its fusions,
//! its batch in parts, and NaN and Inf where PyTorch puts them.

use super::{assert_within, f64s, test_gpu, Dispatches, Problem};
use crate::cases::SUM_ROUNDING;
use crate::memory::Purpose;
use crate::ops::conv2d::args::{Geometry, WeightGradArgs};
use crate::ops::conv2d::family::winograd::backward_weight::{
    fallback_splits, GRAD_TRANSFORM, WEIGHT_DIRECT, WEIGHT_DIRECT_SUM, WEIGHT_GEMM, WEIGHT_OUTPUT,
};
use crate::ops::conv2d::family::winograd::{tile_side, Winograd, INPUT, TILE_SIDES};
use crate::ops::conv2d::family::{Call, Family, Pass};
use crate::ops::conv2d::Fusion;
use crate::record::Recording;
use crate::reference::{self, noise};
use crate::tensor::Tensor;
use crate::{Conv2dParams, Gpu};

/// The oracle's weight gradient, and the sum of its terms' magnitudes (element by element).
pub(super) struct Want {
    pub values: Vec<f64>,
    pub terms: Vec<f64>,
}

impl Want {
    /// Asserts `got` is the oracle's within `1e-4·(1 + |ref|)` plus the float32 rounding a
    /// sum of its terms may carry (`SUM_ROUNDING · Σ|terms|`, as the reference cases allow):
    /// the Winograd domain's long sums over tiles round more than a plain relative bound
    /// holds on a 196,608-term sum that cancels.
    pub fn assert_matches(&self, got: &[f32], what: &str) {
        assert_eq!(got.len(), self.values.len(), "{what}");
        for (i, ((&g, &e), &t)) in got.iter().zip(&self.values).zip(&self.terms).enumerate() {
            let bound = 1e-4 * (1.0 + e.abs()) + SUM_ROUNDING * t;
            assert!(
                (g as f64 - e).abs() <= bound,
                "{what}, element {i}: {g} vs {e}"
            );
        }
    }
}

impl Problem {
    /// The weight gradient of `go` (the output gradient) by the family's variant `variant`
    /// (F(3×3, 2×2) or F(3×3, 4×4): the rule's tile, or the other; `None`: the rule), with
    /// ReLU on load and accumulation onto an earlier gradient (noise), in a scratch budget
    /// of one byte (parts of the batch): what it computed, the oracle's (NaN kept by the
    /// ReLU, as PyTorch keeps it), and the dispatches of each kernel.
    pub(super) fn weight_gradient(
        &self,
        gpu: &Gpu,
        go: &[f32],
        variant: Option<usize>,
    ) -> (Vec<f32>, Want, Dispatches) {
        gpu.set_scratch_budget(1);
        let (xs, ws) = (self.xs, self.ws);
        let ys = self.p.output_shape(xs, ws).unwrap();
        let prior = noise(ws.iter().product(), 13);
        let relu = |v: f32| {
            if v.is_nan() {
                v as f64
            } else {
                v.max(0.0) as f64
            }
        };
        let relu_x: Vec<f64> = self.x.iter().map(|&v| relu(v)).collect();
        let oracle = |x: &[f64], go: &[f64], prior: &[f32], abs: bool| -> Vec<f64> {
            let mut w = reference::conv2d_backward_weight(x, xs, go, ws, &self.p).unwrap();
            let prior = prior.iter().map(|&p| if abs { p.abs() } else { p } as f64);
            w.iter_mut().zip(prior).for_each(|(w, p)| *w += p);
            w
        };
        let magnitude = |v: &[f64]| v.iter().map(|a| a.abs()).collect::<Vec<_>>();
        let want = Want {
            values: oracle(&relu_x, &f64s(go), &prior, false),
            terms: oracle(&magnitude(&relu_x), &magnitude(&f64s(go)), &prior, true),
        };
        let up = |shape, v: &[f32]| Tensor::from_slice(gpu, shape, v, Purpose::Activation).unwrap();
        let (x, grad_out, grad_w) = (up(xs, &self.x), up(ys, go), up(ws, &prior));
        let mut rec = Recording::new(gpu);
        let fusion = Fusion {
            relu_input: true,
            accumulate: true,
        };
        // The family itself, whatever a selection would take.
        let args = WeightGradArgs {
            g: Geometry::of(&x, &grad_w, &self.p).unwrap(),
            p: self.p,
            x: &x,
            grad_out: &grad_out,
            grad_weight: &grad_w,
            fusion,
            bias: None,
        };
        match variant {
            Some(v) => Winograd.run_variant(&mut rec, &Call::BackwardWeight(&args), v),
            None => Winograd.backward_weight(&mut rec, &args),
        }
        .unwrap();
        let ran = rec
            .kernels()
            .iter()
            .map(|&k| (k, rec.dispatches_of(k)))
            .collect();
        rec.finish().unwrap();
        (grad_w.to_vec(gpu).unwrap(), want, ran)
    }
}

/// The weight gradient as F(3×3, 2×2) and F(3×3, 4×4) (run through the family) against the
/// oracle, with ReLU on load and accumulation onto an earlier gradient: partial quads of
/// input channels and blocks of output channels, padding 0–2, tiles over the output's
/// edge, the reduction over tiles in splits, and (the last problem) the batch in three parts,
/// each adding its products to the sums of the ones before.
#[test]
fn the_weight_gradient_matches_the_oracle() {
    let gpu = test_gpu();
    let problems = [
        ([3, 5, 11, 9], [13, 5, 3, 3], [1, 1]),
        ([2, 40, 17, 6], [9, 40, 3, 3], [0, 2]),
        ([4, 3, 4, 5], [6, 3, 3, 3], [2, 2]),
        ([3, 8, 256, 256], [16, 8, 3, 3], [1, 1]),
    ];
    for (k, (xs, ws, padding)) in problems.into_iter().enumerate() {
        let problem = Problem::new(xs, ws, padding);
        let ys = problem.p.output_shape(xs, ws).unwrap();
        let go = noise(ys.iter().product(), 11);
        for variant in 0..TILE_SIDES.len() {
            let m = tile_side(variant, ys);
            gpu.clear_pipelines();
            let (got, want, ran) = problem.weight_gradient(&gpu, &go, Some(variant));
            let what = format!("problem {k}, F(3×3, {m}×{m})");
            for spec in [&INPUT, &GRAD_TRANSFORM, &WEIGHT_GEMM, &WEIGHT_OUTPUT] {
                assert!(ran.contains_key(spec.entry), "{what}: {ran:?}");
                let compiled = gpu.compiled_constants(spec.entry);
                assert!(
                    compiled[0].contains(&("WINO_M", m as f64)),
                    "{what}: {compiled:?}"
                );
            }
            if k == 3 {
                // 16–25 MB of transforms an image: a part apiece under the one-byte budget.
                assert_eq!(ran[WEIGHT_GEMM.entry], 3, "{what}: three parts");
            }
            assert_eq!(ran[WEIGHT_OUTPUT.entry], 1, "{what}");
            want.assert_matches(&got, &what);
        }
    }
}

/// A NaN or Inf in x or the output gradient, or transforms overflowing on finite values: the
/// (co, ci) whose transformed taps are not all finite are computed again as the direct sum
/// (two launches more; the other threads return at once), so the weight gradient has NaN and
/// ±Inf exactly where PyTorch's direct sum has them and the oracle's numbers elsewhere — with
/// ReLU on load (which keeps NaN and zeroes −Inf) and accumulation onto an earlier gradient.
#[test]
fn the_weight_gradients_nan_and_inf_are_pytorchs() {
    let gpu = test_gpu();
    let (xs, ws) = ([2, 6, 9, 10], [5, 6, 3, 3]);
    let at = |s: [usize; 4], [n, c, y, x]: [usize; 4]| ((n * s[1] + c) * s[2] + y) * s[3] + x;
    // Non-finite inputs: +Inf in x's channel 1, NaN in channel 3, −Inf in channel 4 (zero
    // after ReLU), +Inf in the output gradient's channel 2.
    let mut problem = Problem::new(xs, ws, [1, 1]);
    let ys = problem.p.output_shape(xs, ws).unwrap();
    let mut go = noise(ys.iter().product(), 11);
    problem.x[at(xs, [0, 1, 4, 5])] = f32::INFINITY;
    problem.x[at(xs, [1, 3, 0, 0])] = f32::NAN;
    problem.x[at(xs, [0, 4, 2, 2])] = f32::NEG_INFINITY;
    go[at(ys, [1, 2, 3, 3])] = f32::INFINITY;
    for variant in 0..TILE_SIDES.len() {
        let (got, want, ran) = problem.weight_gradient(&gpu, &go, Some(variant));
        assert_eq!(ran[WEIGHT_DIRECT.entry], 1, "{ran:?}");
        assert_eq!(ran[WEIGHT_DIRECT_SUM.entry], 1, "{ran:?}");
        let want = want.values;
        let nonfinite = want.iter().filter(|v| !v.is_finite()).count();
        assert!(nonfinite > 0 && nonfinite < want.len() / 2, "{nonfinite}");
        for (i, (&g, &e)) in got.iter().zip(&want).enumerate() {
            let same = match e {
                e if e.is_nan() => g.is_nan(),
                e if e.is_infinite() => g as f64 == e,
                e => (g as f64 - e).abs() <= 1e-4 * (1.0 + e.abs()),
            };
            assert!(same, "variant {variant}, element {i}: {g} vs {e}");
        }
    }
    // Finite inputs whose transforms overflow: x near float32's largest, a small gradient.
    let mut problem = Problem::new(xs, ws, [1, 1]);
    problem.x.iter_mut().for_each(|v| *v *= 3e38);
    let go: Vec<f32> = noise(ys.iter().product(), 11)
        .iter()
        .map(|v| v * 1e-3)
        .collect();
    for variant in 0..TILE_SIDES.len() {
        let (got, want, _) = problem.weight_gradient(&gpu, &go, Some(variant));
        let want = want.values;
        assert!(want.iter().all(|v| v.is_finite()));
        let largest = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let what = format!("overflowing transforms, variant {variant}");
        assert_within(&got, &want, |_| largest, &what);
    }
}

/// The weight gradient is offered only where its direct fallback fits: that fallback's sum
/// launch loops over nine partial sums a split of the output rows, so a batch of rows past
/// the loop budget (128 images of 256²: 2048 splits, 18,432 iterations) goes to another
/// family rather than to a loop the driver would cut short; 8 images of 256² (128 splits)
/// stay Winograd's.
#[test]
fn the_weight_gradient_declines_what_its_fallback_cannot_sum() {
    let gpu = test_gpu();
    let p = Conv2dParams::new(1, 1);
    for (n, fits) in [(8, true), (128, false)] {
        let g = Geometry {
            x: [n, 8, 256, 256],
            w: [8, 8, 3, 3],
            y: [n, 8, 256, 256],
        };
        assert_eq!(fallback_splits(&gpu, &g).is_some(), fits, "batch {n}");
        assert_eq!(
            Winograd.supports(&gpu, Pass::BackwardWeight, &g, &p),
            fits,
            "batch {n}"
        );
    }
}
