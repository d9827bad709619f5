//! No silent wrong answers: non-finite values propagate as in PyTorch, tensors of another
//! `Gpu`, unsubmitted or dropped recordings, writes under recorded reads, a second forward
//! over saved state, and sizes that would wrap are all refused with an `Error`.

mod common;

use common::{gpu, to_f64, upload, Rng};
use skipgrad::cases::{compare, compare_shaped, Tolerance};
use skipgrad::ops::conv2d::{self, Fusion};
use skipgrad::ops::{add, relu};
use skipgrad::HostTensor;
use skipgrad::{
    reference, Conv2dParams, ConvKernels, Error, Gpu, Purpose, Recording, ResidualBlock,
    ResidualVariant, Tensor,
};
use std::io::Read;

/// Asserts that `got` equals the f64 reference: finite values within 1e-4·(1 + |ref|),
/// NaN and infinities at exactly the reference's positions.
fn assert_same(what: &str, got: &[f32], want: &[f64]) {
    let want32: Vec<f32> = want.iter().map(|&v| v as f32).collect();
    let c = compare(what, got, &want32, Tolerance::Relative(1e-4));
    assert!(c.passed, "{what}: {c:?}");
}

#[test]
fn relu_keeps_nan_and_its_gradient_passes_where_x_is_nan() {
    let g = gpu();
    let xv = [
        f32::NAN,
        -1.0,
        0.0,
        2.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -0.0,
        3.0,
    ];
    let gov = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, f32::NAN];
    let x = upload([1, 2, 2, 2], &xv, Purpose::Activation);
    let go = upload([1, 2, 2, 2], &gov, Purpose::Gradient);
    let mut rec = Recording::new(g);
    let y = relu::relu(&mut rec, &x).unwrap();
    let gx = relu::relu_backward(&mut rec, &x, &go).unwrap();
    rec.finish().unwrap();
    let y = y.to_vec(g).unwrap();
    assert!(y[0].is_nan(), "relu(NaN) must be NaN, got {}", y[0]);
    assert_eq!(&y[1..6], &[0.0, 0.0, 2.0, f32::INFINITY, 0.0]);
    let gx = gx.to_vec(g).unwrap();
    assert_eq!(gx[0], 1.0, "the gradient passes where x is NaN");
    assert_eq!(&gx[1..7], &[0.0, 0.0, 4.0, 5.0, 0.0, 0.0]);
    assert!(gx[7].is_nan());
    assert_same("relu", &y, &reference::relu(&to_f64(&xv)));
}

/// One NaN and one infinity (in a corner, where kernels clamp out-of-image taps) in x.
fn poisoned_input() -> (Vec<f32>, [usize; 4]) {
    let xs = [2, 5, 7, 9];
    let mut xv = Rng(5).vec(xs.iter().product());
    xv[2 * 63 + 3 * 9 + 4] = f32::NAN; // (0, 2, 3, 4)
    xv[5 * 63 + 63] = f32::INFINITY; // (1, 1, 0, 0)
    (xv, xs)
}

#[test]
fn conv2d_propagates_nan_and_inf_like_pytorch_in_every_family() {
    let g = gpu();
    let (xv, xs) = poisoned_input();
    let ws = [3, 5, 3, 3];
    let p = Conv2dParams::new(1, 1);
    let mut rng = Rng(9);
    let wv = rng.vec(ws.iter().product());
    let (want_y, ys) = reference::conv2d(&to_f64(&xv), xs, &to_f64(&wv), ws, None, &p).unwrap();
    let gov = rng.vec(ys.iter().product());
    let want_gx =
        reference::conv2d_backward_input(&to_f64(&gov), xs, &to_f64(&wv), ws, &p).unwrap();
    let want_gw =
        reference::conv2d_backward_weight(&to_f64(&xv), xs, &to_f64(&gov), ws, &p).unwrap();
    // Fused: ReLU on load (NaN kept), and the input gradient masked where x <= 0.
    let rx = reference::relu(&to_f64(&xv));
    let (want_ry, _) = reference::conv2d(&rx, xs, &to_f64(&wv), ws, None, &p).unwrap();
    let want_rgx = reference::relu_backward(&to_f64(&xv), &want_gx);
    let want_rgw = reference::conv2d_backward_weight(&rx, xs, &to_f64(&gov), ws, &p).unwrap();
    assert!(want_y.iter().any(|v| v.is_nan()) && want_y.iter().any(|v| v.is_infinite()));

    let x = upload(xs, &xv, Purpose::Activation);
    let w = upload(ws, &wv, Purpose::Parameter);
    let go = upload(ys, &gov, Purpose::Gradient);
    for family in ConvKernels::families() {
        for relu_input in [false, true] {
            let f = Fusion {
                relu_input,
                accumulate: false,
            };
            let y = Tensor::zeros(g, ys, Purpose::Activation).unwrap();
            let gx = Tensor::zeros(g, xs, Purpose::Gradient).unwrap();
            let gw = Tensor::zeros(g, ws, Purpose::Gradient).unwrap();
            let mut rec = Recording::new(g);
            rec.set_conv_kernels(family);
            conv2d::conv2d_into(&mut rec, &x, &w, None, &p, &y, f).unwrap();
            conv2d::Conv2dBackward {
                x: &x,
                weight: &w,
                grad_out: &go,
                params: &p,
                fusion: f,
            }
            .record_into(&mut rec, &gx, &gw, None)
            .unwrap();
            common::assert_family_ran(rec.kernels(), family, family.name());
            rec.finish().unwrap();
            let name = |t: &str| format!("{t} ({}, relu_input {relu_input})", family.name());
            let (wy, wgx, wgw) = if relu_input {
                (&want_ry, &want_rgx, &want_rgw)
            } else {
                (&want_y, &want_gx, &want_gw)
            };
            assert_same(&name("out"), &y.to_vec(g).unwrap(), wy);
            assert_same(&name("grad_x"), &gx.to_vec(g).unwrap(), wgx);
            assert_same(&name("grad_weight"), &gw.to_vec(g).unwrap(), wgw);
        }
    }
}

#[test]
fn a_nan_in_a_residual_blocks_input_reaches_its_output() {
    let g = gpu();
    let mut xv = vec![0.5; 2 * 4 * 6 * 6];
    xv[40] = f32::NAN;
    let x = upload([2, 4, 6, 6], &xv, Purpose::Activation);
    let block = ResidualBlock::new(g, ResidualVariant::Basic, 4).unwrap();
    let mut rec = Recording::new(g);
    let y = block.forward_inference(&mut rec, &x).unwrap();
    rec.finish().unwrap();
    let y = y.to_vec(g).unwrap();
    assert!(
        y[40].is_nan(),
        "the skip path carries the NaN to the output"
    );
}

#[test]
fn tensors_of_another_gpu_are_refused_naming_both() {
    let a = gpu();
    let b = Gpu::new().unwrap();
    let ta = upload([1, 1, 2, 2], &[1.0, -2.0, 3.0, -4.0], Purpose::Activation);
    let tb = Tensor::zeros(&b, [1, 1, 2, 2], Purpose::Activation).unwrap();
    let wrong = |e: Error| {
        let msg = e.to_string();
        assert!(matches!(e, Error::WrongGpu { .. }), "{msg}");
        assert!(msg.contains(a.label()) && msg.contains(b.label()), "{msg}");
    };
    let mut rec = Recording::new(&b);
    wrong(relu::relu(&mut rec, &ta).unwrap_err());
    wrong(relu::relu_into(&mut rec, &ta, &tb, false).unwrap_err());
    wrong(add::add(&mut rec, &tb, &ta).unwrap_err());
    let w = upload([1, 1, 1, 1], &[1.0], Purpose::Parameter);
    wrong(conv2d::conv2d(&mut rec, &tb, &w, None, &Conv2dParams::default()).unwrap_err());
    rec.finish().unwrap();
    wrong(ta.to_vec(&b).unwrap_err());
    wrong(ta.write(&b, &[0.0; 4]).unwrap_err());
    // Nothing of B was overwritten.
    assert_eq!(tb.to_vec(&b).unwrap(), vec![0.0; 4]);
    assert_eq!(ta.to_vec(a).unwrap(), vec![1.0, -2.0, 3.0, -4.0]);
}

#[test]
fn unsubmitted_and_dropped_recordings_are_refused() {
    let g = gpu();
    let x = upload([1, 1, 1, 4], &[1.0, -1.0, 2.0, -2.0], Purpose::Activation);
    // Read back before the recording that computes it is submitted.
    let mut rec = Recording::new(g);
    let y = relu::relu(&mut rec, &x).unwrap();
    assert!(matches!(y.to_vec(g), Err(Error::Recording(_))));
    // A host write to an input the recording reads would land before that work.
    assert!(matches!(x.write(g, &[5.0; 4]), Err(Error::Recording(_))));
    rec.finish().unwrap();
    assert_eq!(y.to_vec(g).unwrap(), vec![1.0, 0.0, 2.0, 0.0]);
    x.write(g, &[5.0; 4]).unwrap();

    // Dropped: its result was never computed.
    let mut rec = Recording::new(g);
    let z = relu::relu(&mut rec, &x).unwrap();
    drop(rec);
    let e = z.to_vec(g).unwrap_err();
    assert!(e.to_string().contains("dropped"), "{e}");
    // Its input is untouched and readable; a new write makes the output readable again.
    assert_eq!(x.to_vec(g).unwrap(), vec![5.0; 4]);
    z.write(g, &[0.0; 4]).unwrap();
    assert_eq!(z.to_vec(g).unwrap(), vec![0.0; 4]);
}

#[test]
fn a_second_forward_over_saved_state_is_refused() {
    let g = gpu();
    let x = upload([1, 4, 5, 5], &Rng(3).vec(100), Purpose::Activation);
    let go = Tensor::zeros(g, [1, 4, 5, 5], Purpose::Gradient).unwrap();
    let mut block = ResidualBlock::new(g, ResidualVariant::Basic, 4).unwrap();
    let mut rec = Recording::new(g);
    block.forward(&mut rec, &x).unwrap();
    let e = block.forward(&mut rec, &x).unwrap_err();
    assert!(e.to_string().contains("forward_inference"), "{e}");
    // Inference saves nothing and may run any time; backward uses the saved state up.
    block.forward_inference(&mut rec, &x).unwrap();
    block.backward(&mut rec, &go).unwrap();
    assert!(block.backward(&mut rec, &go).is_err());
    block.forward(&mut rec, &x).unwrap();
    block.clear_saved();
    block.forward(&mut rec, &x).unwrap();
    rec.finish().unwrap();
}

#[test]
fn sizes_and_parameters_that_would_wrap_are_refused() {
    let g = gpu();
    let x = [1, 1, 4, 4];
    let w = [1, 1, 3, 3];
    for (padding, stride) in [
        (usize::MAX, 1),
        (1 << 63, 1),
        (1 << 32, 1 << 34),
        (1 << 31, 1),
    ] {
        let p = Conv2dParams::new(stride, padding);
        let e = p.output_shape(x, w).unwrap_err();
        assert!(e.to_string().contains("too large"), "{e}");
    }
    let dil = Conv2dParams {
        dilation: [usize::MAX, 1],
        ..Conv2dParams::default()
    };
    assert!(dil.output_shape(x, w).is_err());
    for shape in [[(1 << 62) + 1, 4, 1, 1], [1 << 32, 1 << 32, 1, 1]] {
        let e = Tensor::zeros(g, shape, Purpose::Activation).unwrap_err();
        assert!(e.to_string().contains("more elements"), "{shape:?}: {e}");
    }
}

#[test]
fn comparisons_check_shapes_and_non_finite_positions() {
    let t = |shape: Vec<usize>, data: Vec<f32>| HostTensor { shape, data };
    let tol = Tolerance::Relative(1e-4);
    // Same length, other shape: a mismatch, not a pass.
    let c = compare_shaped(
        "out",
        &[1.0; 6],
        [1, 2, 3, 1],
        &t(vec![1, 3, 2, 1], vec![1.0; 6]),
        tol,
    );
    assert!(!c.passed && c.mismatch.is_some());
    // A short reference is a length mismatch.
    let c = compare("out", &[1.0; 4], &[1.0; 3], tol);
    assert!(!c.passed && c.mismatch.is_some());
    // NaN where the reference has NaN passes; anywhere else fails and reads as NaN.
    assert!(compare("out", &[f32::NAN, 1.0], &[f32::NAN, 1.0], tol).passed);
    let c = compare("out", &[f32::NAN, 1.0], &[0.0, 1.0], tol);
    assert!(!c.passed && c.max_abs_err.is_nan() && c.nonfinite_mismatches == 1);
    assert!(!compare("out", &[0.0], &[f32::NAN], tol).passed);
    assert!(!compare("out", &[f32::INFINITY], &[f32::NEG_INFINITY], tol).passed);
}

#[test]
fn endless_and_lying_files_stop_at_what_they_declare() {
    use skipgrad::TensorFile;
    // An endless stream of zeros: a zero-length header, refused at once.
    let e = TensorFile::from_reader(std::io::repeat(0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("header"), "{e}");
    // A header declaring 2^40 bytes of data is refused before any is read.
    let header = br#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,1099511627776]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    let e = TensorFile::from_reader(bytes.as_slice().chain(std::io::repeat(0)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("limit"), "{e}");
    // A device file fails fast too (a regular read of /dev/zero would never end).
    if std::path::Path::new("/dev/zero").exists() {
        let start = std::time::Instant::now();
        assert!(TensorFile::read(std::path::Path::new("/dev/zero")).is_err());
        assert!(start.elapsed().as_secs_f64() < 1.0);
    }
}

/// In deterministic mode every `Gpu` (as every process) makes the same kernel choices, so
/// the same dense block gives the same bits each time.
#[test]
fn deterministic_mode_gives_identical_bits_across_gpus() {
    use skipgrad::{ConcatStrategy, DenseBlock, GpuOptions};
    let xv = Rng(8).vec(2 * 6 * 8 * 8);
    let run = || -> Vec<u32> {
        let g = Gpu::with_options(&GpuOptions {
            deterministic: true,
            ..Default::default()
        })
        .unwrap();
        assert!(g.deterministic());
        let x = Tensor::from_slice(&g, [2, 6, 8, 8], &xv, Purpose::Activation).unwrap();
        let mut block = DenseBlock::new(&g, 6, 4, 3, ConcatStrategy::Shared).unwrap();
        let mut rec = Recording::new(&g);
        let y = block.forward(&mut rec, &x).unwrap();
        let go =
            Tensor::from_slice(&g, y.shape(), &Rng(9).vec(y.numel()), Purpose::Gradient).unwrap();
        let grads = block.backward(&mut rec, &go).unwrap();
        rec.finish().unwrap();
        let mut bits: Vec<u32> = y.to_vec(&g).unwrap().iter().map(|v| v.to_bits()).collect();
        for (_, t) in &grads.params {
            bits.extend(t.to_vec(&g).unwrap().iter().map(|v| v.to_bits()));
        }
        bits
    };
    let first = run();
    for _ in 0..2 {
        assert!(run() == first, "deterministic runs differ");
    }
}

/// The float32-aware guard (`compare_summed`): a bias gradient summed by the GPU over
/// 100,352 terms (ResNet-50's 56×56 layers at batch 32) passes within `SUM_ROUNDING ·
/// Σ|terms|` of the f64 reference, on every adapter and family; the same result one term
/// short — what a kernel that skips a pixel would write — fails it.
#[test]
fn the_guard_passes_float32_rounding_and_catches_a_term_dropped() {
    use skipgrad::cases::{compare_summed, SUM_ROUNDING};
    let g = gpu();
    let ys = [32, 4, 56, 56];
    let plane = ys[2] * ys[3];
    let go = reference::noise(ys.iter().product(), 23);
    let t = upload(ys, &go, Purpose::Gradient);
    let gb = Tensor::zeros(g, [ys[1], 1, 1, 1], Purpose::Gradient).unwrap();
    let mut rec = Recording::new(g);
    conv2d::conv2d_backward_bias_into(&mut rec, &t, &gb, false).unwrap();
    rec.finish().unwrap();
    let got = gb.to_vec(g).unwrap();
    let go64 = to_f64(&go);
    let want: Vec<f32> = reference::conv2d_backward_bias(&go64, ys)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let magnitudes: Vec<f64> = go64.iter().map(|v| v.abs()).collect();
    let sums = reference::conv2d_backward_bias(&magnitudes, ys);
    let honest = compare_summed("grad_bias", &got, &want, 1e-4, &sums);
    assert!(honest.passed, "{honest:?}");
    // One term short in channel 2: the first of its terms of magnitude at least 0.5.
    let (c, n) = (2, ys[0] - 1);
    let start = (n * ys[1] + c) * plane;
    let dropped = go[start..start + plane]
        .iter()
        .copied()
        .find(|v| v.abs() >= 0.5)
        .unwrap();
    let mut short = got.clone();
    short[c] -= dropped;
    let caught = compare_summed("grad_bias", &short, &want, 1e-4, &sums);
    assert!(
        !caught.passed,
        "a dropped term of {dropped} passed: {caught:?}"
    );
    // The bound is far above the honest error and far below one term.
    let bound = 1e-4 * (1.0 + (want[c] as f64).abs()) + SUM_ROUNDING * sums[c];
    assert!(
        (dropped as f64).abs() > 5.0 * bound,
        "bound {bound:e}, term {dropped}"
    );
}
