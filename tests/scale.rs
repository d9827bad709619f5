//! Long reductions: Mesa's software drivers stop a shader invocation after 65,535 loop
//! iterations in total, which used to cut weight and bias gradients over large images, and
//! forwards over thousands of channels, short without an error. Every case here is past
//! that limit (or at the edge of skipgrad's own split), for every kernel family, against
//! the f64 CPU reference.

mod common;

use common::{gpu, to_f64, upload, Rng};
use skipgrad::ops::conv2d;
use skipgrad::{reference, Conv2dParams, ConvKernels, Purpose, Recording, Tensor};

/// Runs forward and all gradients of one conv with `family` and checks them all.
fn check(xs: [usize; 4], ws: [usize; 4], p: Conv2dParams, family: ConvKernels, seed: u64) {
    let mut rng = Rng(seed);
    let xv = rng.vec(xs.iter().product());
    let wv = rng.vec(ws.iter().product());
    let bv = rng.vec(ws[0]);
    let (want_y, ys) =
        reference::conv2d(&to_f64(&xv), xs, &to_f64(&wv), ws, Some(&to_f64(&bv)), &p).unwrap();
    let gov = rng.vec(ys.iter().product());
    let go64 = to_f64(&gov);
    let g = gpu();
    let x = upload(xs, &xv, Purpose::Activation);
    let w = upload(ws, &wv, Purpose::Parameter);
    let b = upload([ws[0], 1, 1, 1], &bv, Purpose::Parameter);
    let go = upload(ys, &gov, Purpose::Gradient);
    let mut rec = Recording::new(g);
    rec.set_conv_kernels(family);
    let y = conv2d::conv2d(&mut rec, &x, &w, Some(&b), &p).unwrap();
    let grads = conv2d::conv2d_backward(&mut rec, &x, &w, true, &go, &p).unwrap();
    let what = |t: &str| format!("{t} ({}, x {xs:?}, w {ws:?})", family.name());
    if p.groups == 1 {
        common::assert_family_ran(rec.kernels(), family, &what("kernels"));
    }
    rec.finish().unwrap();
    // Every result is a long sum: its rounding grows with what it sums (the same reference
    // over the inputs' magnitudes), and differs by the order and form of the sum (the
    // Winograd family's transforms); a fixed tolerance would pass or fail by the data's luck.
    let abs = |v: &[f64]| v.iter().map(|a| a.abs()).collect::<Vec<f64>>();
    let (xa, wa, goa) = (abs(&to_f64(&xv)), abs(&to_f64(&wv)), abs(&go64));
    let (sums_y, _) = reference::conv2d(&xa, xs, &wa, ws, Some(&abs(&to_f64(&bv))), &p).unwrap();
    common::assert_summed(&what("out"), &y.to_vec(g).unwrap(), &want_y, &sums_y);
    let want_gx = reference::conv2d_backward_input(&go64, xs, &to_f64(&wv), ws, &p).unwrap();
    let sums_gx = reference::conv2d_backward_input(&goa, xs, &wa, ws, &p).unwrap();
    common::assert_summed(
        &what("grad_x"),
        &grads.grad_x.to_vec(g).unwrap(),
        &want_gx,
        &sums_gx,
    );
    // Weight and bias gradients sum up to 65,536 terms.
    let x64 = to_f64(&xv);
    let want_gw = reference::conv2d_backward_weight(&x64, xs, &go64, ws, &p).unwrap();
    let sums_gw = reference::conv2d_backward_weight(&xa, xs, &goa, ws, &p).unwrap();
    common::assert_summed(
        &what("grad_weight"),
        &grads.grad_weight.to_vec(g).unwrap(),
        &want_gw,
        &sums_gw,
    );
    let want_gb = reference::conv2d_backward_bias(&go64, ys);
    common::assert_summed(
        &what("grad_bias"),
        &grads.grad_bias.unwrap().to_vec(g).unwrap(),
        &want_gb,
        &reference::conv2d_backward_bias(&goa, ys),
    );
}

/// Each family that runs a pass of the problem on its own data (seeded by its name, so a
/// family's data does not change when the registry does). The Winograd family runs only
/// 3 × 3 convolutions of stride 1 and dilation 1: forced on others, it would name the
/// texture family's run.
fn every_family(xs: [usize; 4], ws: [usize; 4], p: Conv2dParams) {
    let winograd_shaped =
        ws[2..] == [3, 3] && p.stride == [1, 1] && p.dilation == [1, 1] && p.groups == 1;
    for family in ConvKernels::families() {
        if family == ConvKernels::WINOGRAD && !winograd_shaped {
            continue;
        }
        let seed = family.name().bytes().fold(7u64, |h, b| h * 31 + b as u64);
        check(xs, ws, p, family, seed);
    }
}

#[test]
fn weight_and_bias_gradients_over_65536_pixels() {
    // 1×1 over 256×256: the sum the direct family cut at 65027 of 65536.
    every_family([1, 2, 256, 256], [3, 2, 1, 1], Conv2dParams::default());
    // Just below the limit in pixels.
    every_family([1, 1, 255, 257], [2, 1, 1, 1], Conv2dParams::default());
}

#[test]
fn weight_gradient_of_3x3_over_many_rows() {
    every_family([2, 3, 130, 131], [4, 3, 3, 3], Conv2dParams::new(1, 1));
}

#[test]
fn depthwise_weight_gradient_at_cifar_batch_64() {
    let p = Conv2dParams {
        groups: 8,
        ..Conv2dParams::new(1, 1)
    };
    // The default choice: the case that was 19× off.
    check([64, 8, 32, 32], [8, 1, 3, 3], p, ConvKernels::AUTO, 3);
    check([64, 8, 32, 32], [8, 1, 3, 3], p, ConvKernels::DIRECT, 4);
}

#[test]
fn forward_over_73728_taps() {
    // 8,192 input channels × 3×3: the forward reduction past the limit.
    every_family([1, 8192, 3, 3], [2, 8192, 3, 3], Conv2dParams::new(1, 1));
}

#[test]
fn input_gradient_over_8192_output_channels() {
    every_family([1, 2, 3, 3], [8192, 2, 3, 3], Conv2dParams::new(1, 1));
}

#[test]
fn grouped_convolutions_with_long_reductions() {
    let p = Conv2dParams {
        groups: 2,
        ..Conv2dParams::new(1, 1)
    };
    for family in [ConvKernels::AUTO, ConvKernels::DIRECT] {
        check([1, 2 * 700, 3, 3], [2 * 650, 700, 3, 3], p, family, 11);
    }
}

#[test]
fn channel_reductions_at_the_split_edge() {
    // 604 channels of a 3×3 kernel are the most one launch reduces over (3·9·(c + 2) ≤
    // 16,384); 605 are split in two. Both must be right in every family.
    for cin in [604, 605] {
        every_family([1, cin, 4, 4], [3, cin, 3, 3], Conv2dParams::new(1, 1));
    }
}

#[test]
fn bias_gradient_over_2049_squared_pixels() {
    let g = gpu();
    let n = 2049 * 2049;
    let ones = upload([1, 1, 2049, 2049], &vec![1.0; n], Purpose::Gradient);
    let gb = Tensor::from_slice(g, [1, 1, 1, 1], &[5.0], Purpose::Gradient).unwrap();
    for accumulate in [false, true] {
        let mut rec = Recording::new(g);
        conv2d::conv2d_backward_bias_into(&mut rec, &ones, &gb, accumulate).unwrap();
        rec.finish().unwrap();
        // Sums of ones stay exact in f32 below 2^24.
        let want = if accumulate { 2.0 * n as f32 } else { n as f32 };
        assert_eq!(gb.to_vec(g).unwrap(), vec![want]);
    }
    // Odd plane sizes take the scalar path.
    let odd = upload(
        [3, 2, 1500, 1501],
        &vec![1.0; 3 * 2 * 1500 * 1501],
        Purpose::Gradient,
    );
    let gb2 = Tensor::zeros(g, [2, 1, 1, 1], Purpose::Gradient).unwrap();
    let mut rec = Recording::new(g);
    conv2d::conv2d_backward_bias_into(&mut rec, &odd, &gb2, false).unwrap();
    rec.finish().unwrap();
    assert_eq!(gb2.to_vec(g).unwrap(), vec![(3 * 1500 * 1501) as f32; 2]);
}
