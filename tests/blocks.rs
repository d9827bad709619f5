//! Residual and dense blocks: gradients against finite differences of the CPU reference,
//! the two concatenation strategies against each other, parameters in and out, bad input.

mod common;

use common::{gpu, to_f64, upload, Rng};
use skipgrad::reference::{self, HostConv};
use skipgrad::{
    BlockGrads, ConcatStrategy, Conv2dParams, ConvKernels, DenseBlock, Error, Purpose, Recording,
    ResidualBlock, ResidualVariant, Tensor,
};
use skipgrad::{HostTensor, TensorFile};

/// Host copies of a block's parameters, by state_dict name, written into a TensorFile.
fn random_state(names_and_shapes: &[(String, Vec<usize>)], seed: u64) -> TensorFile {
    let mut rng = Rng(seed);
    let mut file = TensorFile::default();
    for (name, shape) in names_and_shapes {
        let n: usize = shape.iter().product();
        let fan_in: usize = if shape.len() == 4 {
            shape[1..].iter().product()
        } else {
            9
        };
        let data = rng
            .vec(n)
            .into_iter()
            .map(|v| v * 1.7 / (fan_in as f32).sqrt())
            .collect();
        file.tensors.insert(
            name.clone(),
            HostTensor {
                shape: shape.clone(),
                data,
            },
        );
    }
    file
}

fn host_conv<'a>(
    file: &'a TensorFile,
    name: &str,
    buf: &'a mut Vec<Vec<f64>>,
) -> (usize, usize, [usize; 4]) {
    let w = &file.tensors[&format!("{name}.weight")];
    let b = &file.tensors[&format!("{name}.bias")];
    buf.push(to_f64(&w.data));
    buf.push(to_f64(&b.data));
    let s = [w.shape[0], w.shape[1], w.shape[2], w.shape[3]];
    (buf.len() - 2, buf.len() - 1, s)
}

/// `sum(block(x, params) * g)` on the CPU in f64, for a parameter set given as a TensorFile.
type Loss = dyn Fn(&TensorFile, &[f64]) -> f64;

/// Central differences of `loss` against the GPU gradients, for a sample of input elements and
/// of every parameter's elements.
fn check_gradients(file: &TensorFile, x: &[f32], grads: &BlockGrads, loss: &Loss) {
    let g = gpu();
    let h = 1e-3;
    let x64 = to_f64(x);
    let gx = grads.grad_x.to_vec(g).unwrap();
    let step = (x.len() / 13).max(1);
    for i in (0..x.len()).step_by(step) {
        let mut xp = x64.clone();
        let mut xm = x64.clone();
        xp[i] += h;
        xm[i] -= h;
        let fd = (loss(file, &xp) - loss(file, &xm)) / (2.0 * h);
        assert!(
            (fd - gx[i] as f64).abs() <= 2e-3 * (1.0 + fd.abs()),
            "grad_x[{i}]: fd {fd} vs gpu {}",
            gx[i]
        );
    }
    for (name, t) in &grads.params {
        let got = t.to_vec(g).unwrap();
        let n = got.len();
        for i in (0..n).step_by((n / 7).max(1)) {
            let perturb = |d: f64| {
                let mut f = file.clone();
                let v = &mut f.tensors.get_mut(name).unwrap().data[i];
                *v = (*v as f64 + d) as f32;
                // f32 storage rounds the step: use the step actually taken.
                let taken = *v as f64 - file.tensors[name].data[i] as f64;
                (loss(&f, &x64), taken)
            };
            let ((lp, dp), (lm, dm)) = (perturb(h), perturb(-h));
            let fd = (lp - lm) / (dp - dm);
            assert!(
                (fd - got[i] as f64).abs() <= 2e-3 * (1.0 + fd.abs()),
                "{name}[{i}]: fd {fd} vs gpu {}",
                got[i]
            );
        }
    }
}

fn run_block(
    x: &Tensor,
    grad_out: &Tensor,
    forward: &mut dyn FnMut(&mut Recording<'_>, &Tensor) -> skipgrad::Result<Tensor>,
    backward: &mut dyn FnMut(&mut Recording<'_>, &Tensor) -> skipgrad::Result<BlockGrads>,
) -> (Vec<f32>, BlockGrads) {
    let g = gpu();
    let mut rec = Recording::new(g);
    let out = forward(&mut rec, x).unwrap();
    rec.submit().unwrap();
    let mut rec = Recording::new(g);
    let grads = backward(&mut rec, grad_out).unwrap();
    rec.finish().unwrap();
    (out.to_vec(g).unwrap(), grads)
}

fn residual_names(c: usize, k: usize, cmid: usize) -> Vec<(String, Vec<usize>)> {
    vec![
        ("conv1.weight".into(), vec![cmid, c, k, k]),
        ("conv1.bias".into(), vec![cmid]),
        ("conv2.weight".into(), vec![c, cmid, k, k]),
        ("conv2.bias".into(), vec![c]),
    ]
}

fn residual_gradient_check(variant: ResidualVariant, xs: [usize; 4], seed: u64) {
    let (c, k, cmid, p, basic) = match variant {
        ResidualVariant::Basic => (xs[1], 3, xs[1], Conv2dParams::new(1, 1), true),
        ResidualVariant::SkipConnection => (3, 2, 6, Conv2dParams::new(2, 2), false),
    };
    let file = random_state(&residual_names(c, k, cmid), seed);
    let mut rng = Rng(seed ^ 0xabc);
    let xv = rng.vec(xs.iter().product());
    let gv = rng.vec(xs.iter().product());
    let g64 = to_f64(&gv);
    let loss = move |f: &TensorFile, x: &[f64]| {
        let mut buf = Vec::new();
        let (w1, b1, s1) = host_conv(f, "conv1", &mut buf);
        let (w2, b2, s2) = host_conv(f, "conv2", &mut buf);
        let c1 = HostConv {
            weight: &buf[w1],
            shape: s1,
            bias: &buf[b1],
        };
        let c2 = HostConv {
            weight: &buf[w2],
            shape: s2,
            bias: &buf[b2],
        };
        let y = reference::residual_block(x, xs, &c1, &c2, &p, basic).unwrap();
        y.iter().zip(&g64).map(|(a, b)| a * b).sum::<f64>()
    };
    let mut block = ResidualBlock::from_state_dict(gpu(), variant, c, &file).unwrap();
    let x = upload(xs, &xv, Purpose::Activation);
    let go = upload(xs, &gv, Purpose::Gradient);
    let block = std::cell::RefCell::new(&mut block);
    let (out, grads) = run_block(
        &x,
        &go,
        &mut |r, x| block.borrow_mut().forward(r, x),
        &mut |r, g| block.borrow_mut().backward(r, g),
    );
    // The forward matches the reference too.
    let mut buf = Vec::new();
    let (w1, b1, s1) = host_conv(&file, "conv1", &mut buf);
    let (w2, b2, s2) = host_conv(&file, "conv2", &mut buf);
    let want = reference::residual_block(
        &to_f64(&xv),
        xs,
        &HostConv {
            weight: &buf[w1],
            shape: s1,
            bias: &buf[b1],
        },
        &HostConv {
            weight: &buf[w2],
            shape: s2,
            bias: &buf[b2],
        },
        &p,
        basic,
    )
    .unwrap();
    common::assert_close("out", &out, &want, 1e-4);
    check_gradients(&file, &xv, &grads, &loss);
}

#[test]
fn residual_basic_gradients_match_finite_differences() {
    residual_gradient_check(ResidualVariant::Basic, [2, 3, 5, 4], 11);
}

#[test]
fn residual_skip_connection_gradients_match_finite_differences() {
    residual_gradient_check(ResidualVariant::SkipConnection, [2, 3, 4, 4], 12);
}

fn dense_names(c0: usize, k: usize, layers: usize) -> Vec<(String, Vec<usize>)> {
    (0..layers)
        .flat_map(|i| {
            [
                (format!("layer{i}.weight"), vec![k, c0 + i * k, 3, 3]),
                (format!("layer{i}.bias"), vec![k]),
            ]
        })
        .collect()
}

fn dense_run(
    strategy: ConcatStrategy,
    file: &TensorFile,
    xs: [usize; 4],
    k: usize,
    layers: usize,
    xv: &[f32],
    gv: &[f32],
) -> (Vec<f32>, BlockGrads) {
    let mut block = DenseBlock::from_state_dict(gpu(), xs[1], k, layers, strategy, file).unwrap();
    let x = upload(xs, xv, Purpose::Activation);
    let go = upload(
        [xs[0], xs[1] + layers * k, xs[2], xs[3]],
        gv,
        Purpose::Gradient,
    );
    let block = std::cell::RefCell::new(&mut block);
    run_block(
        &x,
        &go,
        &mut |r, x| block.borrow_mut().forward(r, x),
        &mut |r, g| block.borrow_mut().backward(r, g),
    )
}

#[test]
fn dense_gradients_match_finite_differences_for_both_strategies() {
    let (xs, k, layers) = ([1, 2, 4, 3], 2, 3);
    let file = random_state(&dense_names(xs[1], k, layers), 21);
    let mut rng = Rng(77);
    let xv = rng.vec(xs.iter().product());
    let gv = rng.vec(xs[0] * (xs[1] + layers * k) * xs[2] * xs[3]);
    let g64 = to_f64(&gv);
    let loss = move |f: &TensorFile, x: &[f64]| {
        let mut buf = Vec::new();
        let idx: Vec<_> = (0..layers)
            .map(|i| host_conv(f, &format!("layer{i}"), &mut buf))
            .collect();
        let convs: Vec<HostConv<'_>> = idx
            .iter()
            .map(|&(w, b, s)| HostConv {
                weight: &buf[w],
                shape: s,
                bias: &buf[b],
            })
            .collect();
        let y = reference::dense_block(x, xs, &convs).unwrap();
        y.iter().zip(&g64).map(|(a, b)| a * b).sum::<f64>()
    };
    for strategy in ConcatStrategy::ALL {
        let (_, grads) = dense_run(strategy, &file, xs, k, layers, &xv, &gv);
        check_gradients(&file, &xv, &grads, &loss);
    }
}

#[test]
fn dense_strategies_agree() {
    let (xs, k, layers) = ([2, 5, 7, 6], 3, 5);
    let file = random_state(&dense_names(xs[1], k, layers), 5);
    let mut rng = Rng(99);
    let xv = rng.vec(xs.iter().product());
    let gv = rng.vec(xs[0] * (xs[1] + layers * k) * xs[2] * xs[3]);
    let g = gpu();
    let (out_n, grads_n) = dense_run(ConcatStrategy::Naive, &file, xs, k, layers, &xv, &gv);
    let (out_s, grads_s) = dense_run(ConcatStrategy::Shared, &file, xs, k, layers, &xv, &gv);
    common::assert_close("out", &out_s, &to_f64(&out_n), 1e-5);
    common::assert_close(
        "grad_x",
        &grads_s.grad_x.to_vec(g).unwrap(),
        &to_f64(&grads_n.grad_x.to_vec(g).unwrap()),
        1e-5,
    );
    for ((na, ta), (nb, tb)) in grads_n.params.iter().zip(&grads_s.params) {
        assert_eq!(na, nb);
        common::assert_close(
            na,
            &tb.to_vec(g).unwrap(),
            &to_f64(&ta.to_vec(g).unwrap()),
            1e-5,
        );
    }
}

#[test]
fn shared_dense_block_output_is_the_feature_buffer() {
    // The shared strategy's output is one buffer, input in its first channels: no final copy.
    let g = gpu();
    let mut block = DenseBlock::new(g, 4, 2, 3, ConcatStrategy::Shared).unwrap();
    let xv: Vec<f32> = (0..4 * 9).map(|i| i as f32).collect();
    let x = upload([1, 4, 3, 3], &xv, Purpose::Activation);
    // One family for every conv (the timing-based choice may differ per layer shape).
    let mut rec = Recording::new(g);
    rec.set_conv_kernels(ConvKernels::REGBLOCK);
    let out = block.forward(&mut rec, &x).unwrap();
    let dispatches = rec.dispatch_count();
    rec.finish().unwrap();
    assert_eq!(out.shape(), [1, 10, 3, 3]);
    // What one conv records (its kernel, and a weight layout where the family packs weights).
    let mut one = Recording::new(g);
    one.set_conv_kernels(ConvKernels::REGBLOCK);
    let w = Tensor::zeros(g, [2, 4, 3, 3], Purpose::Parameter).unwrap();
    let y = Tensor::zeros(g, [1, 2, 3, 3], Purpose::Activation).unwrap();
    skipgrad::ops::conv2d::conv2d_into(
        &mut one,
        &x,
        &w,
        None,
        &Conv2dParams::new(1, 1),
        &y,
        Default::default(),
    )
    .unwrap();
    let per_conv = one.dispatch_count();
    assert_eq!(
        dispatches,
        1 + 3 * per_conv,
        "one copy of x, then only the convs"
    );
    assert_eq!(out.channels(0..4).unwrap().to_vec(g).unwrap(), xv);
}

#[test]
fn skip_connection_block_needs_4x4_images() {
    let g = gpu();
    let mut block = ResidualBlock::new(g, ResidualVariant::SkipConnection, 3).unwrap();
    let x = Tensor::zeros(g, [1, 3, 6, 6], Purpose::Activation).unwrap();
    let mut rec = Recording::new(g);
    let e = block.forward(&mut rec, &x).unwrap_err();
    assert!(e.to_string().contains("4x4"), "{e}");
    let x = Tensor::zeros(g, [1, 4, 4, 4], Purpose::Activation).unwrap();
    assert!(matches!(
        block.forward(&mut rec, &x).unwrap_err(),
        Error::Shape { .. }
    ));
}

#[test]
fn backward_before_forward_is_an_error() {
    let g = gpu();
    let mut block = DenseBlock::new(g, 2, 2, 2, ConcatStrategy::Naive).unwrap();
    let go = Tensor::zeros(g, [1, 6, 3, 3], Purpose::Gradient).unwrap();
    let mut rec = Recording::new(g);
    assert!(block
        .backward(&mut rec, &go)
        .unwrap_err()
        .to_string()
        .contains("before forward"));
}

#[test]
fn state_dict_names_and_shapes_are_checked() {
    let g = gpu();
    let mut file = random_state(&residual_names(4, 3, 4), 3);
    let e = ResidualBlock::from_state_dict(g, ResidualVariant::Basic, 5, &file).unwrap_err();
    assert!(e.to_string().contains("conv1.weight has shape"), "{e}");
    // A missing bias is a conv made with bias=False (zero bias); a missing weight is an
    // error naming it and what the file holds.
    file.tensors.remove("conv2.bias");
    assert!(ResidualBlock::from_state_dict(g, ResidualVariant::Basic, 4, &file).is_ok());
    file.tensors.remove("conv2.weight");
    let e = ResidualBlock::from_state_dict(g, ResidualVariant::Basic, 4, &file).unwrap_err();
    assert!(
        e.to_string()
            .contains("missing conv2.weight; it holds conv1.bias, conv1.weight"),
        "{e}"
    );
    // Strict: a tensor the block does not use is refused, named.
    let mut extra = random_state(&residual_names(4, 3, 4), 3);
    extra
        .tensors
        .insert("conv3.weight".into(), extra.tensors["conv1.weight"].clone());
    let e = ResidualBlock::from_state_dict(g, ResidualVariant::Basic, 4, &extra).unwrap_err();
    assert!(e.to_string().contains("unexpected conv3.weight"), "{e}");
    let file = random_state(&dense_names(3, 2, 2), 4);
    assert!(DenseBlock::from_state_dict(g, 3, 2, 3, ConcatStrategy::Shared, &file).is_err());
    assert!(DenseBlock::new(g, 3, 0, 3, ConcatStrategy::Shared).is_err());
}

#[test]
fn parameters_round_trip_through_safetensors() {
    let g = gpu();
    let dir = std::env::temp_dir().join(format!("skipgrad-blocks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dense.safetensors");
    let block = DenseBlock::new(g, 3, 2, 2, ConcatStrategy::Naive).unwrap();
    block.save(g, &path).unwrap();
    let file = TensorFile::read(&path).unwrap();
    assert_eq!(file.tensors["layer1.weight"].shape, vec![2, 5, 3, 3]);
    assert_eq!(file.tensors["layer1.bias"].shape, vec![2]);
    let again = DenseBlock::from_state_dict(g, 3, 2, 2, ConcatStrategy::Shared, &file).unwrap();
    let path2 = dir.join("dense2.safetensors");
    again.save(g, &path2).unwrap();
    assert_eq!(TensorFile::read(&path2).unwrap().tensors, file.tensors);
    std::fs::remove_dir_all(&dir).ok();
}

/// Timed recordings report GPU time where the adapter has timestamps, and wall time always.
#[test]
fn timed_recording_reports_times() {
    let g = gpu();
    let x = upload([1, 1, 8, 8], &[1.0; 64], Purpose::Activation);
    let mut rec = Recording::timed(g);
    let _y = skipgrad::ops::relu::relu(&mut rec, &x).unwrap();
    let t = rec.finish_timed().unwrap();
    assert!(t.wall_ms > 0.0);
    if g.has_timestamps() {
        assert!(
            t.gpu_ms
                .is_some_and(|ms| ms >= 0.0 && ms <= t.wall_ms + 1.0),
            "{t:?}"
        );
    }
}
