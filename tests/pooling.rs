//! AvgPool2d against the f64 reference: DenseNet's 2 × 2 / 2 on odd sizes (the last row and
//! column in no window), overlapping windows, channel views, accumulation, clear errors.

mod common;

use common::{gpu, to_f64, upload, Rng};
use skipgrad::ops::avgpool::{avg_pool2d, avg_pool2d_backward_into, avg_pool2d_into};
use skipgrad::{reference, Purpose, Recording, Tensor};

fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= 1e-6 * (1.0 + w.abs()),
            "{what}, element {i}: {g} vs {w}"
        );
    }
}

/// Forward and backward of every (shape, kernel, stride) against the reference.
#[test]
fn forward_and_backward_match_the_reference() {
    let mut rng = Rng(21);
    for (xs, k, s) in [
        ([2, 3, 8, 8], 2, 2),
        ([1, 2, 7, 9], 2, 2),
        ([2, 2, 9, 7], 3, 2),
        ([1, 3, 5, 6], 2, 1),
        ([3, 1, 4, 4], 4, 4),
    ] {
        let what = format!("x {xs:?}, kernel {k}, stride {s}");
        let xv = rng.vec(xs.iter().product());
        let (want, ys) = reference::avg_pool2d(&to_f64(&xv), xs, k, s);
        let gv = rng.vec(ys.iter().product());
        let want_gx = reference::avg_pool2d_backward(&to_f64(&gv), xs, k, s);
        let x = upload(xs, &xv, Purpose::Activation);
        let go = upload(ys, &gv, Purpose::Gradient);
        let gx = Tensor::zeros(gpu(), xs, Purpose::Gradient).unwrap();
        let mut rec = Recording::new(gpu());
        let y = avg_pool2d(&mut rec, &x, k, s).unwrap();
        avg_pool2d_backward_into(&mut rec, &go, &gx, k, s, false).unwrap();
        assert_eq!(rec.kernels(), ["avgpool_forward", "avgpool_backward"]);
        rec.finish().unwrap();
        assert_eq!(y.shape(), ys, "{what}");
        assert_close(&y.to_vec(gpu()).unwrap(), &want, &what);
        assert_close(
            &gx.to_vec(gpu()).unwrap(),
            &want_gx,
            &format!("{what}, grad"),
        );
    }
}

/// Channel views in and out (a transition reading a dense block's features), and `+=`.
#[test]
fn views_and_accumulation() {
    let mut rng = Rng(22);
    let (n, wide, h, w) = (2, 5, 6, 6);
    let xv = rng.vec(n * wide * h * w);
    let x = upload([n, wide, h, w], &xv, Purpose::Activation);
    let view = x.channels(1..4).unwrap();
    let sub: Vec<f32> = (0..n)
        .flat_map(|i| xv[(i * wide + 1) * h * w..(i * wide + 4) * h * w].to_vec())
        .collect();
    let (want, ys) = reference::avg_pool2d(&to_f64(&sub), [n, 3, h, w], 2, 2);
    let out = Tensor::zeros(gpu(), [n, 6, 3, 3], Purpose::Activation).unwrap();
    let out_view = out.channels(2..5).unwrap();
    assert_eq!(out_view.shape(), ys);
    let mut rec = Recording::new(gpu());
    avg_pool2d_into(&mut rec, &view, &out_view, 2, 2, false).unwrap();
    avg_pool2d_into(&mut rec, &view, &out_view, 2, 2, true).unwrap();
    rec.finish().unwrap();
    let got = out.to_vec(gpu()).unwrap();
    for img in 0..n {
        for c in 0..6 {
            let plane = &got[(img * 6 + c) * 9..(img * 6 + c + 1) * 9];
            if (2..5).contains(&c) {
                let w0 = (img * 3 + c - 2) * 9;
                let doubled: Vec<f64> = want[w0..w0 + 9].iter().map(|v| 2.0 * v).collect();
                assert_close(plane, &doubled, "accumulated view");
            } else {
                assert!(plane.iter().all(|&v| v == 0.0), "wrote outside its view");
            }
        }
    }
}

#[test]
fn mistakes_are_clear_errors() {
    let x = Tensor::zeros(gpu(), [1, 2, 3, 3], Purpose::Activation).unwrap();
    let mut rec = Recording::new(gpu());
    let e = avg_pool2d(&mut rec, &x, 4, 4).unwrap_err().to_string();
    assert!(e.contains("does not fit"), "{e}");
    let e = avg_pool2d(&mut rec, &x, 2, 0).unwrap_err().to_string();
    assert!(e.contains("at least 1"), "{e}");
    let wrong = Tensor::zeros(gpu(), [1, 2, 2, 2], Purpose::Activation).unwrap();
    let e = avg_pool2d_into(&mut rec, &x, &wrong, 2, 2, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("gives [1, 2, 1, 1]"), "{e}");
}
