//! The GEMM family's variants against the f64 oracle: every forward, input-gradient and
//! weight-gradient variant, each from a cold pipeline cache and over outputs of NaN, asserted
//! by the kernel, tile and weight loader it compiled; the four-dispatch conv; the 1×1
//! convs that crashed a driver.

use super::forward::*;
use super::*;

/// The 1×1 convs whose in-place-loader pipelines crashed NVIDIA's compiler (driver
/// 580.159.04, through the tuner; forwards and input gradients alike, flipped or not): the
/// standard suite's 64 → 128 at 32×32 and the scale case's one-channel 256×256 with two
/// outputs. Every GEMM variant of their input gradients against the f64 oracle; no variant
/// of a one-tap kernel, forward or input gradient, reads the weights in place, so that
/// loader is never compiled for them.
#[test]
fn one_by_one_kernels_that_crashed_a_driver_run_packed() {
    let gpu = test_gpu();
    for shapes in [
        ([2, 64, 32, 32], [128, 64, 1, 1]),
        ([1, 1, 256, 256], [2, 1, 1, 1]),
    ] {
        let what = format!("input gradient of x {:?}, w {:?}", shapes.0, shapes.1);
        let p = crate::ops::conv2d::Conv2dParams::default();
        check_every_input_gradient_variant(&gpu, shapes, p, &what);
        let ys = p.output_shape(shapes.0, shapes.1).unwrap();
        for y in [ys, shapes.0] {
            let variants = output_variants(y, 1);
            assert!(!variants.is_empty(), "{what}");
            assert!(
                variants.iter().all(|v| v.weights == Weights::Packed),
                "{what}: {variants:?}"
            );
        }
    }
    // The in-place loader was never compiled, and kernels of more taps still offer it.
    assert!(gpu.compiled_constants(FORWARD_OIHW.entry).is_empty());
    assert!(output_variants([2, 64, 32, 32], 9)
        .iter()
        .any(|v| v.weights == Weights::InPlace));
}

/// The adapter the GPU tests run on.
fn test_gpu() -> Gpu {
    Gpu::new().unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"))
}

/// Stride, padding and dilation different per axis: what the geometry constants must
/// get right.
fn skewed_params() -> crate::ops::conv2d::Conv2dParams {
    crate::ops::conv2d::Conv2dParams {
        stride: [2, 1],
        padding: [1, 2],
        dilation: [1, 2],
        groups: 1,
    }
}

use crate::reference::noise as values;

/// Asserts `got` is `want` within float32 accumulation error.
fn assert_matches(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (&g, &e)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - e).abs() <= 1e-4 * (1.0 + e.abs()),
            "{what}, element {i}: {g} vs {e}"
        );
    }
}

/// Runs every GEMM variant of `call` through the family, each from a cold pipeline cache
/// and over an `out` of NaNs, and checks each compiled its own kernel and tile, packed
/// its weights or not, and wrote `want` into `out`.
fn check_every_variant(
    gpu: &Gpu,
    call: &crate::ops::conv2d::family::Call<'_, '_>,
    out: &crate::tensor::Tensor,
    variants: &[ForwardVariant],
    want: &[f64],
    what: &str,
) {
    use crate::ops::conv2d::family::pack::PACK_BUFFER;
    use crate::ops::conv2d::family::{Choice, Family};
    assert_eq!(Gemm.variants(call), variants.len(), "{what}");
    for (variant, &expected) in variants.iter().enumerate() {
        gpu.clear_pipelines();
        // NaN where the variant writes nothing: the previous variant's numbers cannot pass.
        out.write(gpu, &vec![f32::NAN; out.numel()]).unwrap();
        let mut rec = Recording::new(gpu);
        let choice = Choice {
            family: &Gemm,
            variant,
        };
        call.run_choice(choice, &mut rec).unwrap();
        let packs = rec.kernels().contains(&PACK_BUFFER.entry);
        assert_eq!(
            packs,
            expected.weights == Weights::Packed,
            "{what} {expected}"
        );
        assert_eq!(
            rec.dispatch_count(),
            1 + packs as usize,
            "{what} {expected}"
        );
        assert_eq!(compiled_forward_variants(gpu), [expected], "{what}");
        rec.finish().unwrap();
        let got = out.to_vec(gpu).unwrap();
        assert_matches(&got, want, &format!("{what}, {expected}"));
    }
}

/// Every forward variant — each tile, on packed weights and on the OIHW tensor in place
/// — against the f64 reference, on a problem that leaves every tile partial (156 pixels,
/// 72 channels, not a multiple of 64) and crosses taps inside K slices (cin = 5), with
/// stride, padding and dilation different per axis: what the geometry constants and the
/// in-place strides must get right.
#[test]
fn every_forward_variant_matches_the_reference() {
    use crate::memory::Purpose;
    use crate::ops::conv2d::args::{ForwardArgs, Geometry};
    use crate::ops::conv2d::family::Call;
    use crate::ops::conv2d::Fusion;
    use crate::tensor::Tensor;

    let (gpu, p) = (test_gpu(), skewed_params());
    let (xs, ws) = ([2, 5, 11, 13], [72, 5, 3, 3]);
    let (xv, wv) = (
        values(xs.iter().product(), 7),
        values(ws.iter().product(), 5),
    );
    let bv = values(ws[0], 3);
    let f64s = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
    let (want, ys) =
        crate::reference::conv2d(&f64s(&xv), xs, &f64s(&wv), ws, Some(&f64s(&bv)), &p).unwrap();
    let x = Tensor::from_slice(&gpu, xs, &xv, Purpose::Activation).unwrap();
    let w = Tensor::from_slice(&gpu, ws, &wv, Purpose::Parameter).unwrap();
    let b = Tensor::from_slice(&gpu, [ws[0], 1, 1, 1], &bv, Purpose::Parameter).unwrap();
    let out = Tensor::zeros(&gpu, ys, Purpose::Activation).unwrap();
    let args = ForwardArgs {
        g: Geometry::of(&x, &w, &p).unwrap(),
        p,
        x: &x,
        weight: &w,
        bias: Some(&b),
        out: &out,
        fusion: Fusion::default(),
    };
    let variants = output_variants(ys, 9);
    assert_eq!(variants.len(), 2 * TILES.len(), "72 channels: every tile");
    let call = Call::Forward(&args);
    check_every_variant(&gpu, &call, &out, &variants, &want, "forward");
}

/// Every input-gradient variant of the problem `(xs, ws, p)` through the family, each
/// against the f64 reference (see `check_every_variant`).
fn check_every_input_gradient_variant(
    gpu: &Gpu,
    (xs, ws): ([usize; 4], [usize; 4]),
    p: crate::ops::conv2d::Conv2dParams,
    what: &str,
) {
    use crate::memory::Purpose;
    use crate::ops::conv2d::args::{Geometry, InputGradArgs};
    use crate::ops::conv2d::family::Call;
    use crate::ops::conv2d::Fusion;
    use crate::tensor::Tensor;

    let ys = p.output_shape(xs, ws).unwrap();
    let (gv, wv) = (
        values(ys.iter().product(), 3),
        values(ws.iter().product(), 9),
    );
    let f64s = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
    let want = crate::reference::conv2d_backward_input(&f64s(&gv), xs, &f64s(&wv), ws, &p).unwrap();
    let x = Tensor::zeros(gpu, xs, Purpose::Activation).unwrap();
    let w = Tensor::from_slice(gpu, ws, &wv, Purpose::Parameter).unwrap();
    let go = Tensor::from_slice(gpu, ys, &gv, Purpose::Gradient).unwrap();
    let gx = Tensor::zeros(gpu, xs, Purpose::Gradient).unwrap();
    let args = InputGradArgs {
        g: Geometry::of(&x, &w, &p).unwrap(),
        p,
        x: &x,
        weight: &w,
        grad_out: &go,
        grad_x: &gx,
        fusion: Fusion::default(),
    };
    assert!(args.g.transposable(&p));
    let variants = output_variants(xs, ws[2] * ws[3]);
    assert!(variants.len() >= 2, "{what}: {variants:?}");
    let call = Call::BackwardInput(&args);
    check_every_variant(gpu, &call, &gx, &variants, &want, what);
}

/// Every input-gradient variant (the forward kernel on the transposed problem: the
/// packing pass's transposed, flipped weights, or the in-place loader's flipped strides)
/// against the f64 reference: 3 × 2 kernel, padding and dilation different per axis,
/// 13 output channels (a partial quad) and 70 input-gradient channels.
#[test]
fn every_input_gradient_variant_matches_the_reference() {
    let p = crate::ops::conv2d::Conv2dParams {
        stride: [1, 1],
        padding: [1, 2],
        dilation: [2, 3],
        groups: 1,
    };
    let shapes = ([2, 70, 9, 10], [13, 70, 3, 2]);
    check_every_input_gradient_variant(&test_gpu(), shapes, p, "input gradient");
}

/// A conv's forward and backward through the GEMM family in four dispatches on a GPU,
/// not six: the forward and the input gradient each read the OIHW weights in place (no
/// packing pass), the weight gradient's partial sums and the bias gradient share one
/// reduce (the GPUs' path, turned on here). Asserted by the kernels that ran, and each
/// result against the f64 oracle.
#[test]
fn a_conv_forward_and_backward_in_four_dispatches() {
    use crate::memory::Purpose;
    use crate::ops::conv2d::args::{
        BiasGradient, ForwardArgs, Geometry, InputGradArgs, WeightGradArgs,
    };
    use crate::ops::conv2d::family::{Call, Choice};
    use crate::ops::conv2d::{Conv2dParams, Fusion};
    use crate::reference;
    use crate::tensor::Tensor;

    let gpu = crate::gpu::test_gpu(crate::AdapterPolicy::Gpu);
    let p = Conv2dParams::new(1, 1);
    // 4608 output pixels: several splits of the weight gradient's reduction.
    let (xs, ws) = ([8, 16, 24, 24], [24, 16, 3, 3]);
    let ys = p.output_shape(xs, ws).unwrap();
    let (xv, wv) = (
        values(xs.iter().product(), 1),
        values(ws.iter().product(), 2),
    );
    let (gv, bv) = (values(ys.iter().product(), 3), values(ws[0], 4));
    let up = |s, v: &[f32]| Tensor::from_slice(&gpu, s, v, Purpose::Activation).unwrap();
    let zeros = |s| Tensor::zeros(&gpu, s, Purpose::Activation).unwrap();
    let (x, w, go, b) = (
        up(xs, &xv),
        up(ws, &wv),
        up(ys, &gv),
        up([ws[0], 1, 1, 1], &bv),
    );
    let (y, gx, gw, gb) = (zeros(ys), zeros(xs), zeros(ws), zeros([ws[0], 1, 1, 1]));
    let g = Geometry::of(&x, &w, &p).unwrap();
    let fusion = Fusion::default();
    let in_place = |y: [usize; 4]| {
        let variants = output_variants(y, 9);
        variants
            .iter()
            .position(|v| v.weights == Weights::InPlace)
            .unwrap()
    };
    let choice = |variant| Choice {
        family: &Gemm,
        variant,
    };
    let mut rec = Recording::new(&gpu);
    let forward = ForwardArgs {
        g,
        p,
        x: &x,
        weight: &w,
        bias: Some(&b),
        out: &y,
        fusion,
    };
    Call::Forward(&forward)
        .run_choice(choice(in_place(ys)), &mut rec)
        .unwrap();
    let input = InputGradArgs {
        g,
        p,
        x: &x,
        weight: &w,
        grad_out: &go,
        grad_x: &gx,
        fusion,
    };
    Call::BackwardInput(&input)
        .run_choice(choice(in_place(xs)), &mut rec)
        .unwrap();
    let bias = BiasGradient::new(&go, &gb);
    let weight = WeightGradArgs {
        g,
        p,
        x: &x,
        grad_out: &go,
        grad_weight: &gw,
        fusion,
        bias: Some(&bias),
    };
    Call::BackwardWeight(&weight)
        .run_choice(choice(0), &mut rec)
        .unwrap();
    assert!(bias.done(), "the bias rode with the reduce");
    // The distinct kernels, and four launches of them.
    assert_eq!(
        rec.kernels(),
        [
            "conv2d_forward_gemm_oihw",
            "conv2d_backward_weight_gemm",
            "conv2d_backward_weight_reduce_and_bias"
        ]
    );
    assert_eq!(rec.dispatch_count(), 4);
    rec.finish().unwrap();
    let f64s = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
    let (x64, w64, g64) = (f64s(&xv), f64s(&wv), f64s(&gv));
    let want_y = reference::conv2d(&x64, xs, &w64, ws, Some(&f64s(&bv)), &p)
        .unwrap()
        .0;
    let want_gx = reference::conv2d_backward_input(&g64, xs, &w64, ws, &p).unwrap();
    let want_gw = reference::conv2d_backward_weight(&x64, xs, &g64, ws, &p).unwrap();
    let want_gb = reference::conv2d_backward_bias(&g64, ys);
    for (what, t, want) in [
        ("forward", &y, want_y),
        ("grad x", &gx, want_gx),
        ("grad w", &gw, want_gw),
        ("grad b", &gb, want_gb),
    ] {
        assert_matches(&t.to_vec(&gpu).unwrap(), &want, what);
    }
}

/// Every weight-gradient tile and split factor through the family's variants, against the
/// f64 reference:
/// 136 output channels (every tile partial), 45 (tap, ci) columns crossing taps (cin =
/// 5), stride, padding and dilation different per axis, ReLU on load, and enough pixels
/// for several splits; each variant compiles its own tile's pipeline, and a larger split
/// factor writes more partial sums (its cost's bytes grow).
#[test]
fn every_weight_tile_matches_the_reference() {
    use crate::memory::Purpose;
    use crate::ops::conv2d::args::{Geometry, WeightGradArgs};
    use crate::ops::conv2d::family::{Call, Choice, Family};
    use crate::ops::conv2d::Fusion;
    use crate::tensor::Tensor;

    let (gpu, p) = (test_gpu(), skewed_params());
    let (xs, ws) = ([6, 5, 40, 41], [136, 5, 3, 3]);
    let ys = p.output_shape(xs, ws).unwrap();
    assert!(ys[0] * ys[2] * ys[3] > 4096, "several splits");
    let value = |i: usize, k: usize| {
        ((i as u64 * 2_654_435_761 + k as u64 * 40_503) % 4096) as f32 / 2048.0 - 1.0
    };
    let xv: Vec<f32> = (0..xs.iter().product()).map(|i| value(i, 7)).collect();
    let gv: Vec<f32> = (0..ys.iter().product()).map(|i| value(i, 5)).collect();
    let relu: Vec<f64> = xv.iter().map(|&a| a.max(0.0) as f64).collect();
    let g64: Vec<f64> = gv.iter().map(|&a| a as f64).collect();
    let want = crate::reference::conv2d_backward_weight(&relu, xs, &g64, ws, &p).unwrap();
    let x = Tensor::from_slice(&gpu, xs, &xv, Purpose::Activation).unwrap();
    let go = Tensor::from_slice(&gpu, ys, &gv, Purpose::Gradient).unwrap();
    let gw = Tensor::zeros(&gpu, ws, Purpose::Gradient).unwrap();
    let args = WeightGradArgs {
        g: Geometry::of(&x, &gw, &p).unwrap(),
        p,
        x: &x,
        grad_out: &go,
        grad_weight: &gw,
        fusion: Fusion {
            relu_input: true,
            accumulate: false,
        },
        bias: None,
    };
    let call = Call::BackwardWeight(&args);
    let variants = weight_variants(ws[0]);
    assert_eq!(Gemm.variants(&call), variants.len());
    assert_eq!(super::backward_weight::weight_tiles(ws[0]), [64, 128]);
    assert_eq!(variants.len(), 6);
    let mut bytes_by_tile = std::collections::BTreeMap::<usize, Vec<u64>>::new();
    for (variant, v) in variants.into_iter().enumerate() {
        let tile_co = v.tile_co;
        gpu.clear_pipelines();
        // NaN where the variant writes nothing: the previous variant's numbers cannot pass.
        gw.write(&gpu, &vec![f32::NAN; gw.numel()]).unwrap();
        let mut rec = Recording::new(&gpu);
        let choice = Choice {
            family: &Gemm,
            variant,
        };
        call.run_choice(choice, &mut rec).unwrap();
        assert!(rec.kernels().contains(&"conv2d_backward_weight_gemm"));
        let compiled = gpu.compiled_constants("conv2d_backward_weight_gemm");
        let tile_of = |c: &Vec<(&str, f64)>| {
            c.iter()
                .find(|(k, _)| *k == "WG_TILE_CO")
                .map(|&(_, v)| v as usize)
        };
        assert_eq!(
            compiled.iter().map(tile_of).collect::<Vec<_>>(),
            [Some(tile_co)]
        );
        bytes_by_tile
            .entry(tile_co)
            .or_default()
            .push(rec.cost().bytes);
        rec.finish().unwrap();
        let got = gw.to_vec(&gpu).unwrap();
        for (i, (&g, &e)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g as f64 - e).abs() <= 1e-4 * (1.0 + e.abs()),
                "{v}, element {i}: {g} vs {e}"
            );
        }
    }
    for (tile, bytes) in bytes_by_tile {
        assert!(
            bytes.windows(2).all(|w| w[0] < w[1]),
            "tile {tile}: {bytes:?}"
        );
    }
}
