//! Past the binding limit: a `Gpu` opened with a deliberately small
//! `max_storage_buffer_binding_size` (256 KiB) runs conv2d forward and backward, relu, add,
//! concat and both blocks on tensors several times that size, splitting the work into
//! bindings that fit (by batch, and for elementwise ops by channels), against the f64 CPU
//! reference and the same work on an unrestricted `Gpu`.

mod common;

use common::{assert_close, gpu, to_f64, Rng};
use skipgrad::ops::{add, concat, conv2d, relu};
use skipgrad::{
    reference, ConcatStrategy, Conv2dParams, ConvKernels, DenseBlock, Gpu, GpuOptions, Purpose,
    Recording, ResidualBlock, ResidualVariant, Tensor,
};

const LIMIT: u64 = 256 << 10;

fn small_gpu() -> Gpu {
    let g = Gpu::with_options(&GpuOptions {
        max_storage_binding_bytes: Some(LIMIT),
        ..Default::default()
    })
    .expect("GPU tests need an adapter");
    assert_eq!(g.limits().max_storage_buffer_binding_size, LIMIT);
    g
}

fn upload(g: &Gpu, shape: [usize; 4], data: &[f32]) -> Tensor {
    Tensor::from_slice(g, shape, data, Purpose::Activation).unwrap()
}

#[test]
fn elementwise_ops_split_by_batch_and_channels() {
    let g = small_gpu();
    // 5 samples of 64 KiB (batch split), and one sample of 384 KiB (channel split).
    for shape in [[5, 16, 32, 32], [1, 96, 32, 32]] {
        let n: usize = shape.iter().product();
        assert!(4 * n as u64 > LIMIT);
        let av = Rng(1).vec(n);
        let bv = Rng(2).vec(n);
        let (a, b) = (upload(&g, shape, &av), upload(&g, shape, &bv));
        let mut rec = Recording::new(&g);
        let r = relu::relu(&mut rec, &a).unwrap();
        let gr = relu::relu_backward(&mut rec, &a, &b).unwrap();
        let s = add::add(&mut rec, &a, &b).unwrap();
        let c = concat::concat(&mut rec, &[&a, &b]).unwrap();
        rec.finish().unwrap();
        assert_eq!(
            r.to_vec(&g).unwrap(),
            av.iter().map(|v| v.max(0.0)).collect::<Vec<_>>()
        );
        let want_gr: Vec<f32> = av
            .iter()
            .zip(&bv)
            .map(|(x, g)| if *x > 0.0 { *g } else { 0.0 })
            .collect();
        assert_eq!(gr.to_vec(&g).unwrap(), want_gr);
        let want_s: Vec<f32> = av.iter().zip(&bv).map(|(x, y)| x + y).collect();
        assert_eq!(s.to_vec(&g).unwrap(), want_s);
        let want_c = reference::concat(&[&to_f64(&av), &to_f64(&bv)], &[shape, shape]);
        assert_close("concat", &c.to_vec(&g).unwrap(), &want_c, 0.0);
    }
}

#[test]
fn conv2d_forward_and_backward_split_by_batch_in_every_family() {
    // x: 6 x 64 KiB = 384 KiB; out, grad_out and grad_x the same.
    conv_past_the_limit([6, 16, 32, 32], [16, 16, 3, 3], &ConvKernels::families());
}

#[test]
fn conv2d_of_one_sample_past_the_limit_splits_channels() {
    // One sample: x 384 KiB, out 320 KiB; the split goes by output, then input channels.
    conv_past_the_limit([1, 96, 32, 32], [80, 96, 3, 3], &ConvKernels::families());
}

fn conv_past_the_limit(xs: [usize; 4], ws: [usize; 4], families: &[ConvKernels]) {
    let g = small_gpu();
    let p = Conv2dParams::new(1, 1);
    let cout = ws[0];
    let mut rng = Rng(3);
    let xv = rng.vec(xs.iter().product());
    let wv = rng.vec(ws.iter().product());
    let bv = rng.vec(cout);
    let (want_y, ys) =
        reference::conv2d(&to_f64(&xv), xs, &to_f64(&wv), ws, Some(&to_f64(&bv)), &p).unwrap();
    let gov = rng.vec(ys.iter().product());
    let go64 = to_f64(&gov);
    let want_gx = reference::conv2d_backward_input(&go64, xs, &to_f64(&wv), ws, &p).unwrap();
    let want_gw = reference::conv2d_backward_weight(&to_f64(&xv), xs, &go64, ws, &p).unwrap();
    let want_gb = reference::conv2d_backward_bias(&go64, ys);
    // The forward and input gradient sum 864 terms: their float32 rounding, bounded by the
    // terms' magnitudes, differs by the form of the sum (the Winograd family's transforms).
    let abs = |v: &[f32]| v.iter().map(|a| a.abs() as f64).collect::<Vec<f64>>();
    let (sums_y, _) = reference::conv2d(&abs(&xv), xs, &abs(&wv), ws, Some(&abs(&bv)), &p).unwrap();
    let sums_gx = reference::conv2d_backward_input(&abs(&gov), xs, &abs(&wv), ws, &p).unwrap();
    let x = upload(&g, xs, &xv);
    let w = Tensor::from_slice(&g, ws, &wv, Purpose::Parameter).unwrap();
    let b = Tensor::from_slice(&g, [cout, 1, 1, 1], &bv, Purpose::Parameter).unwrap();
    let go = upload(&g, ys, &gov);
    for &family in families {
        let mut rec = Recording::new(&g);
        rec.set_conv_kernels(family);
        let y = conv2d::conv2d(&mut rec, &x, &w, Some(&b), &p).unwrap();
        let grads = conv2d::conv2d_backward(&mut rec, &x, &w, true, &go, &p).unwrap();
        let name = |t: &str| format!("{t} ({})", family.name());
        common::assert_family_ran(rec.kernels(), family, &name("kernels"));
        rec.finish().unwrap();
        common::assert_summed(&name("out"), &y.to_vec(&g).unwrap(), &want_y, &sums_y);
        let gx = grads.grad_x.to_vec(&g).unwrap();
        common::assert_summed(&name("grad_x"), &gx, &want_gx, &sums_gx);
        let gw = grads.grad_weight.to_vec(&g).unwrap();
        assert_close(&name("grad_weight"), &gw, &want_gw, 1e-4);
        let gb = grads.grad_bias.unwrap().to_vec(&g).unwrap();
        assert_close(&name("grad_bias"), &gb, &want_gb, 1e-4);
    }
}

/// Both blocks at a batch whose activations exceed the limit give what they give on an
/// unrestricted `Gpu` (same seeded parameters).
#[test]
fn blocks_past_the_binding_limit_match_an_unrestricted_gpu() {
    let small = small_gpu();
    let big = gpu();
    let xs = [12, 16, 16, 16]; // 192 KiB in; the dense block's feature buffer 336 KiB
    let xv = Rng(4).vec(xs.iter().product());
    let run = |g: &Gpu, dense: Option<ConcatStrategy>| -> Vec<Vec<f32>> {
        let x = upload(g, xs, &xv);
        let mut rec = Recording::new(g);
        let (out, grads) = match dense {
            None => {
                let mut blk = ResidualBlock::new(g, ResidualVariant::Basic, 16).unwrap();
                let out = blk.forward(&mut rec, &x).unwrap();
                let go = upload(g, out.shape(), &Rng(5).vec(out.numel()));
                (out, blk.backward(&mut rec, &go).unwrap())
            }
            Some(strategy) => {
                let mut blk = DenseBlock::new(g, 16, 4, 3, strategy).unwrap();
                let out = blk.forward(&mut rec, &x).unwrap();
                let go = upload(g, out.shape(), &Rng(5).vec(out.numel()));
                (out, blk.backward(&mut rec, &go).unwrap())
            }
        };
        rec.finish().unwrap();
        let mut all = vec![out.to_vec(g).unwrap(), grads.grad_x.to_vec(g).unwrap()];
        all.extend(grads.params.iter().map(|(_, t)| t.to_vec(g).unwrap()));
        all
    };
    for dense in [
        None,
        Some(ConcatStrategy::Naive),
        Some(ConcatStrategy::Shared),
    ] {
        let (want, got) = (run(big, dense), run(&small, dense));
        for (i, (w, s)) in want.iter().zip(&got).enumerate() {
            assert_close(&format!("{dense:?} tensor {i}"), s, &to_f64(w), 1e-4);
        }
    }
}

/// The native limit: relu and a 1×1 conv on a 512 MiB tensor (lavapipe binds at most
/// 128 MiB), checked at sampled elements. Ignored by default: it holds 1.5 GiB.
/// `cargo test --release --test binding_limit -- --ignored`
#[test]
#[ignore]
fn a_512_mib_tensor_past_the_native_limit() {
    let g = gpu();
    let xs = [16, 8, 1024, 1024];
    let n: usize = xs.iter().product();
    assert!(4 * n as u64 > g.limits().max_storage_buffer_binding_size);
    let xv: Vec<f32> = (0..n).map(|i| ((i % 97) as f32 - 48.0) / 16.0).collect();
    let x = upload(g, xs, &xv);
    let wv: Vec<f32> = (0..64).map(|i| (i as f32 - 31.5) / 32.0).collect();
    let w = Tensor::from_slice(g, [8, 8, 1, 1], &wv, Purpose::Parameter).unwrap();
    let mut rec = Recording::new(g);
    let r = relu::relu(&mut rec, &x).unwrap();
    let y = conv2d::conv2d(&mut rec, &r, &w, None, &Conv2dParams::default()).unwrap();
    rec.finish().unwrap();
    let (rv, yv) = (r.to_vec(g).unwrap(), y.to_vec(g).unwrap());
    let hw = 1024 * 1024;
    for i in (0..n).step_by(9973) {
        assert_eq!(rv[i], xv[i].max(0.0));
        let (b, c, p) = (i / (8 * hw), (i / hw) % 8, i % hw);
        let want: f64 = (0..8)
            .map(|ci| wv[c * 8 + ci] as f64 * xv[(b * 8 + ci) * hw + p].max(0.0) as f64)
            .sum();
        assert!(
            (yv[i] as f64 - want).abs() <= 1e-4 * (1.0 + want.abs()),
            "{i}"
        );
    }
    println!(
        "relu and conv2d on {} MiB tensors past a {} MiB binding limit",
        (4 * n) >> 20,
        g.limits().max_storage_buffer_binding_size >> 20
    );
}
