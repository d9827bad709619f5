//! Property tests: random shapes, strides, paddings, dilations, groups and batch sizes
//! (1×1 images, kernels as large as the padded input, odd sizes), GPU against the f64 CPU
//! reference.

mod common;

use common::{assert_close, gpu, to_f64, upload, Rng};
use proptest::prelude::*;
use skipgrad::ops::conv2d::{self, Fusion};
use skipgrad::ops::{add, concat, relu};
use skipgrad::{reference, Conv2dParams, ConvKernels, Purpose, Recording, Tensor};

#[derive(Debug, Clone)]
struct ConvCase {
    x: [usize; 4],
    w: [usize; 4],
    p: Conv2dParams,
    bias: bool,
    seed: u64,
}

fn conv_case() -> impl Strategy<Value = ConvCase> {
    (
        (1usize..=3, 1usize..=3, 1usize..=4, 1usize..=4), // n, groups, cin/g, cout/g
        (1usize..=9, 1usize..=9, 1usize..=4, 1usize..=4), // h, w, kh, kw
        (1usize..=3, 1usize..=3, 0usize..=3, 0usize..=3), // stride h/w, pad h/w
        (1usize..=3, 1usize..=3, any::<bool>(), any::<u64>()), // dilation h/w, bias, seed
    )
        .prop_map(
            |((n, g, cig, cog), (h, w, kh, kw), (sh, sw, ph, pw), (dh, dw, bias, seed))| ConvCase {
                x: [n, g * cig, h, w],
                w: [g * cog, cig, kh, kw],
                p: Conv2dParams {
                    stride: [sh, sw],
                    padding: [ph, pw],
                    dilation: [dh, dw],
                    groups: g,
                },
                bias,
                seed: seed | 1,
            },
        )
        // Only geometries with an output of at least 1×1 (the rest are tested as errors).
        .prop_filter("output below 1", |c| c.p.output_shape(c.x, c.w).is_ok())
}

/// Winograd-shaped problems (3 × 3, stride 1, dilation 1, groups 1), which `conv_case`
/// draws once in thousands: sizes that leave tiles, channel quads and blocks partial, and
/// padding up to past the kernel's reach.
fn winograd_case() -> impl Strategy<Value = ConvCase> {
    (
        (1usize..=3, 1usize..=10, 1usize..=10), // n, cin, cout
        (1usize..=13, 1usize..=13, 0usize..=3, 0usize..=3), // h, w, pad h/w
        (any::<bool>(), any::<u64>()),          // bias, seed
    )
        .prop_map(|((n, cin, cout), (h, w, ph, pw), (bias, seed))| ConvCase {
            x: [n, cin, h, w],
            w: [cout, cin, 3, 3],
            p: Conv2dParams {
                stride: [1, 1],
                padding: [ph, pw],
                dilation: [1, 1],
                groups: 1,
            },
            bias,
            seed: seed | 1,
        })
        .prop_filter("output below 1", |c| c.p.output_shape(c.x, c.w).is_ok())
}

fn run_conv(c: &ConvCase, family: ConvKernels) {
    let mut rng = Rng(c.seed);
    let xv = rng.vec(c.x.iter().product());
    let wv = rng.vec(c.w.iter().product());
    let bv = rng.vec(c.w[0]);
    let (want_y, ys) = reference::conv2d(
        &to_f64(&xv),
        c.x,
        &to_f64(&wv),
        c.w,
        c.bias.then(|| to_f64(&bv)).as_deref(),
        &c.p,
    )
    .unwrap();
    let gov = rng.vec(ys.iter().product());
    let go64 = to_f64(&gov);

    let g = gpu();
    let x = upload(c.x, &xv, Purpose::Activation);
    let w = upload(c.w, &wv, Purpose::Parameter);
    let b = upload([c.w[0], 1, 1, 1], &bv, Purpose::Parameter);
    let go = upload(ys, &gov, Purpose::Gradient);
    let mut rec = Recording::new(g);
    rec.set_conv_kernels(family);
    let y = conv2d::conv2d(&mut rec, &x, &w, c.bias.then_some(&b), &c.p).unwrap();
    let grads = conv2d::conv2d_backward(&mut rec, &x, &w, c.bias, &go, &c.p).unwrap();
    rec.finish().unwrap();

    assert_close("out", &y.to_vec(g).unwrap(), &want_y, 1e-4);
    let want_gx = reference::conv2d_backward_input(&go64, c.x, &to_f64(&wv), c.w, &c.p).unwrap();
    assert_close("grad_x", &grads.grad_x.to_vec(g).unwrap(), &want_gx, 1e-4);
    let want_gw = reference::conv2d_backward_weight(&to_f64(&xv), c.x, &go64, c.w, &c.p).unwrap();
    assert_close(
        "grad_weight",
        &grads.grad_weight.to_vec(g).unwrap(),
        &want_gw,
        1e-4,
    );
    if c.bias {
        let want_gb = reference::conv2d_backward_bias(&go64, ys);
        assert_close(
            "grad_bias",
            &grads.grad_bias.unwrap().to_vec(g).unwrap(),
            &want_gb,
            1e-4,
        );
    } else {
        assert!(grads.grad_bias.is_none());
    }
}

/// Whether `family` runs `pass` of case `c`, by the contract its documentation states: the
/// GEMM-shaped families need groups = 1, and the register-blocked, pixel and GEMM ones a
/// stride-1 input gradient (padding at most the dilated kernel's reach); Winograd a 3 × 3
/// kernel of stride 1 and dilation 1, and no weight gradient; the direct family runs
/// everything. A family the registry gains needs its line here.
fn supports(family: ConvKernels, pass: &str, c: &ConvCase) -> bool {
    let [_, _, kh, kw] = c.w;
    // A 1×1 unpadded input gradient of any stride is the stride-1 one's, scattered
    // (`strided_pointwise.rs`): the GEMM-shaped families run it too.
    let pointwise = [kh, kw] == [1, 1] && c.p.padding == [0, 0];
    let transposable = pointwise
        || c.p.stride == [1, 1]
            && c.p.padding[0] <= c.p.dilation[0] * (kh - 1)
            && c.p.padding[1] <= c.p.dilation[1] * (kw - 1);
    let gemm = c.p.groups == 1;
    match family {
        ConvKernels::DIRECT => true,
        ConvKernels::TEXTURE => gemm,
        ConvKernels::REGBLOCK | ConvKernels::PIXEL | ConvKernels::GEMM => {
            gemm && (pass != "input" || transposable)
        }
        ConvKernels::WINOGRAD => {
            let shaped =
                gemm && c.w[2..] == [3, 3] && c.p.stride == [1, 1] && c.p.dilation == [1, 1];
            shaped && (pass != "input" || transposable)
        }
        other => panic!("no contract written for the {other} family: add it here"),
    }
}

/// Which family a forced `family` must run for `pass` of case `c`: itself where it supports
/// the problem, else the first after it in the registry's order that does (the selection's
/// one fallback).
fn expected_family(family: ConvKernels, pass: &str, c: &ConvCase) -> ConvKernels {
    let all = ConvKernels::families();
    let from = all.iter().position(|&f| f == family).unwrap();
    all[from..]
        .iter()
        .copied()
        .find(|&f| supports(f, pass, c))
        .unwrap_or(ConvKernels::DIRECT)
}

/// Records each pass of `c` alone with `family` forced and asserts that the conv kernels it
/// ran are all of the family the contract names: no silent fallback, no mixing.
fn assert_forced_family(c: &ConvCase, family: ConvKernels) {
    let g = gpu();
    let ys = c.p.output_shape(c.x, c.w).unwrap();
    let t = |shape: [usize; 4]| Tensor::zeros(g, shape, Purpose::Scratch).unwrap();
    let (x, w, y, gx, gw) = (t(c.x), t(c.w), t(ys), t(c.x), t(c.w));
    for pass in ["forward", "input", "weight"] {
        let mut rec = Recording::new(g);
        rec.set_conv_kernels(family);
        let f = Fusion::default();
        match pass {
            "forward" => conv2d::conv2d_into(&mut rec, &x, &w, None, &c.p, &y, f),
            "input" => conv2d::conv2d_backward_input_into(&mut rec, &x, &w, &y, &c.p, &gx, f),
            _ => conv2d::conv2d_backward_weight_into(&mut rec, &x, &y, &c.p, &gw, f),
        }
        .unwrap();
        let want = expected_family(family, pass, c);
        let ran: Vec<_> = rec
            .kernels()
            .iter()
            .filter_map(|k| common::family_of(k))
            .collect();
        assert!(
            !ran.is_empty() && ran.iter().all(|&f| f == want),
            "{pass} of {c:?} with {} forced: expected only {} kernels, ran {:?}",
            family.name(),
            want.name(),
            rec.kernels()
        );
        rec.finish().unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn conv2d_matches_reference(c in conv_case()) {
        for family in ConvKernels::families() {
            run_conv(&c, family);
        }
    }

    /// The Winograd family on the problems it takes: the oracle's numbers, and its own
    /// kernels for every pass (the weight gradient as F(3×3, 2×2)).
    #[test]
    fn winograd_matches_reference(c in winograd_case()) {
        run_conv(&c, ConvKernels::WINOGRAD);
        assert_forced_family(&c, ConvKernels::WINOGRAD);
    }

    /// A forced family runs its own kernels for every pass it supports, and the direct
    /// family (the one fallback, in one place) for the rest.
    #[test]
    fn forced_family_runs_its_own_kernels(c in conv_case()) {
        for family in ConvKernels::families() {
            assert_forced_family(&c, family);
        }
    }

    /// The fused forms on channel views: ReLU on load, accumulate on store, reading and
    /// writing disjoint channel slices of one buffer (what the shared dense block does).
    #[test]
    fn conv2d_on_views_with_relu_and_accumulate(
        n in 1usize..=2, cin in 1usize..=5, cout in 1usize..=4, lead in 0usize..=3,
        hw in 1usize..=6, k in 1usize..=3, pad in 0usize..=1, seed in any::<u64>(),
        family in 0usize..ConvKernels::families().len(),
    ) {
        let p = Conv2dParams::new(1, pad);
        prop_assume!(p.output_shape([n, cin, hw, hw], [cout, cin, k, k]).is_ok());
        let ys = p.output_shape([n, cin, hw, hw], [cout, cin, k, k]).unwrap();
        // Only same-size outputs can live in the same buffer as the input.
        prop_assume!(ys[2] == hw && ys[3] == hw);
        let mut rng = Rng(seed | 1);
        let total = lead + cin + cout;
        let buf = rng.vec(n * total * hw * hw);
        let wv = rng.vec(cout * cin * k * k);
        let g = gpu();
        let shared = upload([n, total, hw, hw], &buf, Purpose::Activation);
        let x = shared.channels(lead..lead + cin).unwrap();
        let out = shared.channels(lead + cin..total).unwrap();
        let w = upload([cout, cin, k, k], &wv, Purpose::Parameter);
        let mut rec = Recording::new(g);
        rec.set_conv_kernels(ConvKernels::families()[family]);
        conv2d::conv2d_into(&mut rec, &x, &w, None, &p, &out,
            Fusion { relu_input: true, accumulate: true }).unwrap();
        rec.finish().unwrap();

        let x_host = x.to_vec(g).unwrap();
        let relu_x = reference::relu(&to_f64(&x_host));
        let (conv, _) = reference::conv2d(&relu_x, [n, cin, hw, hw], &to_f64(&wv), [cout, cin, k, k], None, &p).unwrap();
        // The old contents of the output slice, plus the conv.
        let before = upload([n, total, hw, hw], &buf, Purpose::Scratch)
            .channels(lead + cin..total).unwrap().to_vec(g).unwrap();
        let want: Vec<f64> = before.iter().zip(&conv).map(|(&a, &b)| a as f64 + b).collect();
        assert_close("out", &out.to_vec(g).unwrap(), &want, 1e-4);
        // Nothing outside the output slice was touched.
        let lead_and_x = shared.channels(0..lead + cin).unwrap().to_vec(g).unwrap();
        let orig = upload([n, total, hw, hw], &buf, Purpose::Scratch)
            .channels(0..lead + cin).unwrap().to_vec(g).unwrap();
        prop_assert_eq!(lead_and_x, orig);
    }

    #[test]
    fn elementwise_ops_on_views(n in 1usize..=3, c in 1usize..=6, extra in 1usize..=4,
                                h in 1usize..=7, w in 1usize..=7, seed in any::<u64>()) {
        let mut rng = Rng(seed | 1);
        let g = gpu();
        let big = [n, c + extra, h, w];
        let av = rng.vec(big.iter().product());
        let bv = rng.vec(n * c * h * w);
        let a_all = upload(big, &av, Purpose::Activation);
        let a = a_all.channels(extra..extra + c).unwrap();
        let b = upload([n, c, h, w], &bv, Purpose::Activation);
        let mut rec = Recording::new(g);
        let s = add::add(&mut rec, &a, &b).unwrap();
        let r = relu::relu(&mut rec, &a).unwrap();
        let gr = relu::relu_backward(&mut rec, &a, &b).unwrap();
        let cat = concat::concat(&mut rec, &[&b, &a]).unwrap();
        rec.finish().unwrap();
        let ah = to_f64(&a.to_vec(g).unwrap());
        let bh = to_f64(&bv);
        assert_close("add", &s.to_vec(g).unwrap(), &reference::add(&ah, &bh), 0.0);
        assert_close("relu", &r.to_vec(g).unwrap(), &reference::relu(&ah), 0.0);
        assert_close("relu_backward", &gr.to_vec(g).unwrap(), &reference::relu_backward(&ah, &bh), 0.0);
        let shapes = [[n, c, h, w], [n, c, h, w]];
        assert_close("concat", &cat.to_vec(g).unwrap(), &reference::concat(&[&bh, &ah], &shapes), 0.0);
    }
}

/// A dispatch past 65,535 workgroups in one dimension is laid out in 2-D, not refused.
#[test]
fn dispatch_larger_than_one_grid_dimension() {
    let g = gpu();
    let max = g.limits().max_compute_workgroups_per_dimension as usize;
    // Enough elements for more workgroups of 64 than one dimension holds, within binding size.
    let elements = (max + 1000) * 64;
    let bytes_limit = g.limits().max_storage_buffer_binding_size as usize;
    assert!(
        elements * 4 <= bytes_limit,
        "test size must fit the binding limit"
    );
    let data: Vec<f32> = (0..elements).map(|i| (i % 7) as f32 - 3.0).collect();
    let x = upload([1, 1, 1, elements], &data, Purpose::Activation);
    let mut rec = Recording::new(g);
    let y = relu::relu(&mut rec, &x).unwrap();
    rec.finish().unwrap();
    let got = y.to_vec(g).unwrap();
    for (i, (&gv, &d)) in got.iter().zip(&data).enumerate() {
        assert_eq!(gv, d.max(0.0), "element {i}");
    }
}

/// Views write only their own channels and read back only their own channels.
#[test]
fn channel_views_round_trip() {
    let g = gpu();
    let t = Tensor::zeros(g, [2, 5, 2, 3], Purpose::Activation).unwrap();
    let v = t.channels(1..3).unwrap();
    assert!(!v.is_contiguous());
    let data: Vec<f32> = (0..v.numel()).map(|i| i as f32 + 1.0).collect();
    v.write(g, &data).unwrap();
    assert_eq!(v.to_vec(g).unwrap(), data);
    let all = t.to_vec(g).unwrap();
    let nonzero = all.iter().filter(|&&x| x != 0.0).count();
    assert_eq!(nonzero, data.len());
    assert_eq!(all[6..18], data[..12]);
}

/// The accumulate kernel adds, the add's gradient routes to both operands.
#[test]
fn accumulate_sums_both_paths() {
    let g = gpu();
    let a = upload([1, 2, 2, 2], &[1.0; 8], Purpose::Gradient);
    let b = upload([1, 2, 2, 2], &[0.5; 8], Purpose::Gradient);
    let mut rec = Recording::new(g);
    add::accumulate(&mut rec, &b, &a).unwrap();
    add::accumulate(&mut rec, &b, &a).unwrap();
    rec.finish().unwrap();
    assert_eq!(a.to_vec(g).unwrap(), vec![2.0; 8]);
}
