//! The Winograd family against the f64 oracle: both tile sizes, forward and input gradient,
//! on odd sizes, padding past the kernel's reach and channel counts that leave quads and
//! blocks partial, each asserted by the kernels and tile size it compiled; the batch in
//! parts; values whose transforms overflow where the direct sum does not; and the weight
//! gradient (`weight.rs`).

mod weight;

use super::backward_weight::WEIGHT_GEMM;
use super::{tile_side, GEMM, INPUT, OUTPUT, RULE_F4_MIN_TILES, TILE_SIDES};
use crate::memory::Purpose;
use crate::ops::conv2d::{conv2d_backward_input_into, conv2d_into, ConvKernels, Fusion};
use crate::record::Recording;
use crate::reference::{self, noise};
use crate::tensor::Tensor;
use crate::{Conv2dParams, Gpu};

/// The adapter the GPU tests run on.
fn test_gpu() -> Gpu {
    Gpu::new().unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"))
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&a| a as f64).collect()
}

/// Asserts `got` is `want` within float32 error (the transforms' included) relative to
/// `scale`.
fn assert_within(got: &[f32], want: &[f64], scale: impl Fn(f64) -> f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (&g, &e)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - e).abs() <= 1e-4 * scale(e),
            "{what}, element {i}: {g} vs {e}"
        );
    }
}

/// Asserts `got` is `want` within float32 error, relative to 1 + |want|.
fn assert_matches(got: &[f32], want: &[f64], what: &str) {
    assert_within(got, want, |e| 1.0 + e.abs(), what);
}

/// How many times each kernel (entry point) ran.
type Dispatches = std::collections::HashMap<&'static str, usize>;

/// A problem: x, weight, bias, and the output (filled with NaN: what a pass leaves unwritten
/// cannot pass).
struct Problem {
    xs: [usize; 4],
    ws: [usize; 4],
    p: Conv2dParams,
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
}

impl Problem {
    fn new(xs: [usize; 4], ws: [usize; 4], padding: [usize; 2]) -> Problem {
        Problem {
            xs,
            ws,
            p: Conv2dParams {
                padding,
                ..Conv2dParams::default()
            },
            x: noise(xs.iter().product(), 3),
            w: noise(ws.iter().product(), 5),
            b: noise(ws[0], 7),
        }
    }

    /// Runs the forward (or the input gradient, whose grad_out is `x`'s values reshaped)
    /// with Winograd forced, variant `variant` (`None`: the family's rule), returning the result, the kernels run and the
    /// number of dispatches.
    fn run(
        &self,
        gpu: &Gpu,
        input_gradient: bool,
        variant: Option<usize>,
    ) -> (Vec<f32>, Vec<String>, usize) {
        let ys = self.p.output_shape(self.xs, self.ws).unwrap();
        let up = |shape, v: &[f32]| Tensor::from_slice(gpu, shape, v, Purpose::Activation).unwrap();
        let w = up(self.ws, &self.w);
        let mut rec = Recording::new(gpu);
        rec.set_conv_kernels(ConvKernels::WINOGRAD);
        if let Some(v) = variant {
            rec.set_conv_variant(v);
        }
        let out = if input_gradient {
            let go = up(ys, &noise(ys.iter().product(), 11));
            let x = Tensor::zeros(gpu, self.xs, Purpose::Activation).unwrap();
            let gx = up(self.xs, &vec![f32::NAN; self.xs.iter().product()]);
            conv2d_backward_input_into(&mut rec, &x, &w, &go, &self.p, &gx, Fusion::default())
                .unwrap();
            gx
        } else {
            let x = up(self.xs, &self.x);
            let b = up([self.ws[0], 1, 1, 1], &self.b);
            let y = up(ys, &vec![f32::NAN; ys.iter().product()]);
            conv2d_into(&mut rec, &x, &w, Some(&b), &self.p, &y, Fusion::default()).unwrap();
            y
        };
        let kernels = rec.kernels().iter().map(|k| k.to_string()).collect();
        let dispatches = rec.dispatch_count();
        rec.finish().unwrap();
        (out.to_vec(gpu).unwrap(), kernels, dispatches)
    }

    /// The oracle's forward (or input gradient).
    fn want(&self, input_gradient: bool) -> Vec<f64> {
        let ys = self.p.output_shape(self.xs, self.ws).unwrap();
        if input_gradient {
            let go = f64s(&noise(ys.iter().product(), 11));
            reference::conv2d_backward_input(&go, self.xs, &f64s(&self.w), self.ws, &self.p)
                .unwrap()
        } else {
            let (y, _) = reference::conv2d(
                &f64s(&self.x),
                self.xs,
                &f64s(&self.w),
                self.ws,
                Some(&f64s(&self.b)),
                &self.p,
            )
            .unwrap();
            y
        }
    }
}

/// F(4×4) and F(2×2), forward and input gradient, against the oracle: tiles hanging over
/// the output's edge (11 × 9, 17 × 6), 5 and 40 input channels (a partial quad; ten quads),
/// 13 and 9 output channels (partial 8-channel blocks), padding 0, 1, 2 and 3 (past the
/// kernel's reach: the forward only, the input gradient is not a stride-1 conv there), one
/// pipeline of each kernel compiled per variant with its own tile size.
#[test]
fn both_tile_sizes_match_the_oracle() {
    let gpu = test_gpu();
    let problems = [
        Problem::new([3, 5, 11, 9], [13, 5, 3, 3], [1, 1]),
        Problem::new([1, 40, 17, 6], [9, 40, 3, 3], [0, 2]),
        Problem::new([2, 3, 4, 5], [6, 3, 3, 3], [3, 3]),
    ];
    for (k, problem) in problems.iter().enumerate() {
        for input_gradient in [false, true] {
            if input_gradient && problem.p.padding[0] > 2 {
                continue;
            }
            let want = problem.want(input_gradient);
            let out = match input_gradient {
                true => problem.xs,
                false => problem.p.output_shape(problem.xs, problem.ws).unwrap(),
            };
            for variant in 0..TILE_SIDES.len() {
                let m = tile_side(variant, out);
                let what = format!("problem {k}, input gradient {input_gradient}, F({m}×{m})");
                gpu.clear_pipelines();
                let (got, kernels, _) = problem.run(&gpu, input_gradient, Some(variant));
                for spec in [&INPUT, &GEMM, &OUTPUT] {
                    assert!(
                        kernels.iter().any(|k| k == spec.entry),
                        "{what}: {kernels:?}"
                    );
                    let compiled = gpu.compiled_constants(spec.entry);
                    assert_eq!(compiled.len(), 1, "{what}");
                    assert!(
                        compiled[0].contains(&("WINO_M", m as f64)),
                        "{what}: {compiled:?}"
                    );
                }
                assert_matches(&got, &want, &what);
            }
        }
    }
}

/// The rule (a forced `winograd`, and the CPU rule) takes F(4×4) from
/// [`RULE_F4_MIN_TILES`] tiles of side 4 a pass over the batch, F(2×2) below, forward and
/// input gradient alike, and the weight gradient's F(3×3, 4×4) and F(3×3, 2×2) the same way
/// — asserted by the tile size compiled — with the oracle's numbers.
#[test]
fn the_rule_takes_f4_from_64_tiles() {
    assert_eq!(RULE_F4_MIN_TILES, 64);
    let gpu = test_gpu();
    // 49, 98, 64 (8 × 8 over 31 × 31) and 63 (9 × 7) tiles of side 4.
    for (xs, m) in [
        ([1, 8, 28, 28], 2),
        ([2, 8, 28, 28], 4),
        ([1, 8, 31, 31], 4),
        ([1, 8, 36, 27], 2),
    ] {
        let problem = Problem::new(xs, [8, 8, 3, 3], [1, 1]);
        for input_gradient in [false, true] {
            let what = format!("{xs:?}, input gradient {input_gradient}");
            gpu.clear_pipelines();
            let (got, _, _) = problem.run(&gpu, input_gradient, None);
            let compiled = gpu.compiled_constants(GEMM.entry);
            assert_eq!(compiled.len(), 1, "{what}");
            assert!(
                compiled[0].contains(&("WINO_M", m as f64)),
                "{what}: {compiled:?}"
            );
            assert_matches(&got, &problem.want(input_gradient), &what);
        }
    }
    // The weight gradient, by the same count.
    for (xs, m) in [
        ([1, 8, 28, 28], 2),
        ([2, 8, 28, 28], 4),
        ([1, 8, 31, 31], 4),
    ] {
        let problem = Problem::new(xs, [8, 8, 3, 3], [1, 1]);
        let ys = problem.p.output_shape(xs, problem.ws).unwrap();
        gpu.clear_pipelines();
        let (got, want, _) = problem.weight_gradient(&gpu, &noise(ys.iter().product(), 11), None);
        let want = want.values;
        let compiled = gpu.compiled_constants(WEIGHT_GEMM.entry);
        let what = format!("{xs:?}, weight gradient");
        assert_eq!(compiled.len(), 1, "{what}");
        assert!(
            compiled[0].contains(&("WINO_M", m as f64)),
            "{what}: {compiled:?}"
        );
        assert_matches(&got, &want, &what);
    }
}

/// Winograd forced on every reference case PyTorch computed (tests/vectors, and
/// tests/vectors/bn: torchvision's ResNet and DenseNet layers through BatchNorm, training
/// and eval, where rounding is magnified most), once with each variant — the rule's tile
/// and the other — so F(4×4) and F(2×2) both run every case: every output and gradient
/// within the cases' tolerance, and both tile sizes are what ran.
#[test]
fn both_tile_sizes_pass_every_reference_case() {
    let gpu = test_gpu();
    gpu.set_conv_kernels(ConvKernels::WINOGRAD);
    gpu.clear_pipelines();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["tests/vectors", "tests/vectors/bn"] {
        let mut found: Vec<_> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        found.sort();
        files.extend(found);
    }
    assert!(files.len() > 50, "{} cases", files.len());
    for variant in 0..TILE_SIDES.len() {
        gpu.set_conv_variant(Some(variant));
        for file in &files {
            let report = crate::cases::run_case_file(&gpu, file);
            let what = format!("{}, variant {variant}", file.display());
            assert!(report.error.is_none(), "{what}: {:?}", report.error);
            for c in &report.comparisons {
                assert!(c.passed, "{what}: {} {:e}", c.name, c.max_abs_err);
            }
        }
    }
    // Both tiles ran, in the products of the forward and input gradient and of the weight
    // gradient alike.
    for entry in [GEMM.entry, WEIGHT_GEMM.entry] {
        let compiled = gpu.compiled_constants(entry);
        for m in TILE_SIDES {
            assert!(
                compiled.iter().any(|c| c.contains(&("WINO_M", m as f64))),
                "{entry}: m = {m} never ran: {compiled:?}"
            );
        }
    }
}

/// A batch in parts (the scratch budget holds a few images at a time) gives the bits of
/// the whole batch at once: each tile is computed the same either way.
#[test]
fn parts_of_the_batch_give_the_same_bits() {
    // 4096 tiles of 4 × 4 an image (F(2×2)'s 16384 fit the texture limit too), 19 MB of
    // transforms: more than a part grows to for its launches' sake, so the one-byte budget
    // parts it by image.
    let problem = Problem::new([2, 16, 256, 256], [16, 16, 3, 3], [1, 1]);
    let whole = test_gpu();
    whole.set_scratch_budget(1 << 30);
    let parted = test_gpu();
    parted.set_scratch_budget(1);
    let (a, _, whole_dispatches) = problem.run(&whole, false, None);
    let (b, _, parted_dispatches) = problem.run(&parted, false, None);
    // The filter transform once; the staging, input transform, products and output
    // transform a part: two parts for one.
    assert_eq!(
        parted_dispatches - whole_dispatches,
        4,
        "{parted_dispatches} vs {whole_dispatches}"
    );
    assert_eq!(a, b);
    assert_matches(&a, &problem.want(false), "the whole batch");
}

/// Inputs near float32's largest (3e38) and small weights: the direct sum stays finite, the
/// input transform overflows (F(2×2)'s d0 − d2 passes 3.4e38 wherever the two have opposite
/// signs and magnitudes over 0.57; F(4×4)'s coefficients reach 97/36). The output transform
/// finds the non-finite tiles and computes them tap by tap, so the output is PyTorch's, not
/// Inf or NaN.
#[test]
fn overflowing_transforms_fall_back_to_the_direct_sum() {
    let gpu = test_gpu();
    let mut problem = Problem::new([2, 4, 8, 8], [8, 4, 3, 3], [1, 1]);
    problem.x.iter_mut().for_each(|v| *v *= 3e38);
    problem.w.iter_mut().for_each(|v| *v *= 1e-3);
    let want = problem.want(false);
    assert!(want.iter().all(|v| v.is_finite() && v.abs() < 1e38));
    for variant in 0..TILE_SIDES.len() {
        let (got, _, _) = problem.run(&gpu, false, Some(variant));
        assert!(got.iter().all(|v| v.is_finite()), "variant {variant}");
        // Outputs are sums of terms up to 3e35 that cancel: rounding is relative to those.
        let largest = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert_within(&got, &want, |_| largest, &format!("variant {variant}"));
    }
}
