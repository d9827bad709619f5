//! The standard cases of `skipgrad bench` in Burn (wgpu backend, WGSL through CubeCL, its
//! default fusion and autotune), timed the way skipgrad's `--timing wall` times them: the
//! host clock around work that has finished on the device (`Device::sync`; Burn's
//! read-back is lazy, so a read-back alone does not wait).
//!
//! `--json` prints `{peer, adapter, cases: [{case, forward_ms, fwd_bwd_ms}]}` (medians),
//! which `../compare.py` joins with `skipgrad bench --json` on `case`.

use std::time::Instant;

use burn::tensor::activation::relu;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::wgpu::WgpuBackend;
use burn::tensor::{Device, Distribution, Tensor};
use clap::Parser;

#[derive(Parser)]
#[command(about = "skipgrad's standard benchmark cases in Burn (wgpu)")]
struct Args {
    /// Graphics API: vulkan, gl or auto.
    #[arg(long, default_value = "vulkan")]
    backend: String,
    /// Only cases whose name contains one of these (comma-separated).
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    /// Timed runs per case and pass (after 2 warm-up runs).
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Print JSON (the table goes to stderr).
    #[arg(long)]
    json: bool,
}

/// One conv case: N, Cin, H, W, Cout, kernel, stride, padding.
type ConvCase = (&'static str, [usize; 8]);

/// The conv cases of `skipgrad::bench::standard_cases`, by the same names.
const CONVS: [ConvCase; 5] = [
    ("conv3x3_c64_32x32_n8", [8, 64, 32, 32, 64, 3, 1, 1]),
    ("conv3x3_c128_16x16_n8", [8, 128, 16, 16, 128, 3, 1, 1]),
    ("conv1x1_c64to128_32x32_n8", [8, 64, 32, 32, 128, 1, 1, 0]),
    ("stem7x7_s2_c3to32_64x64_n8", [8, 3, 64, 64, 32, 7, 2, 3]),
    ("notebook2x2_s2p2_c3to6_4x4_n1", [1, 3, 4, 4, 6, 2, 2, 2]),
];

fn options(stride: usize, pad: usize) -> ConvOptions<2> {
    ConvOptions::new([stride, stride], [pad, pad], [1, 1], 1)
}

fn uniform<const D: usize>(shape: [usize; D], bound: f64, dev: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Uniform(-bound, bound), dev)
}

/// A conv's parameters: weight [cout, cin, k, k] and bias [cout], PyTorch's default bound.
fn params(cin: usize, cout: usize, k: usize, dev: &Device) -> (Tensor<4>, Tensor<1>) {
    let bound = 1.0 / ((cin * k * k) as f64).sqrt();
    (uniform([cout, cin, k, k], bound, dev), uniform([cout], bound, dev))
}

/// Median ms of `iters` runs of `f` (each ending in a device sync), after two warm-ups.
fn median_ms(dev: &Device, iters: usize, mut f: impl FnMut()) -> f64 {
    let mut run = || {
        let t = Instant::now();
        f();
        dev.sync().expect("device sync");
        t.elapsed().as_secs_f64() * 1e3
    };
    run();
    run();
    let mut v: Vec<f64> = (0..iters.max(1)).map(|_| run()).collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A case's forward on `dev`, given its input (what the closure builds on).
type Model = Box<dyn Fn(Tensor<4>) -> Tensor<4>>;

/// The forward of a case with parameters made on `dev` (with gradients when `grads`), and
/// every parameter tensor, so the backward can ask for their gradients.
fn model(case: &str, dev: &Device, grads: bool) -> (Model, Vec<Tensor<4>>, Vec<Tensor<1>>) {
    let track = |(w, b): (Tensor<4>, Tensor<1>)| {
        if grads {
            (w.require_grad(), b.require_grad())
        } else {
            (w, b)
        }
    };
    if let Some((_, [_, cin, _, _, cout, k, s, p])) = CONVS.iter().find(|c| c.0 == case) {
        let (w, b) = track(params(*cin, *cout, *k, dev));
        let (ws, bs) = (vec![w.clone()], vec![b.clone()]);
        let (s, p) = (*s, *p);
        let f = move |x: Tensor<4>| conv2d(x, w.clone(), Some(b.clone()), options(s, p));
        return (Box::new(f), ws, bs);
    }
    if case.starts_with("resnet_basic") {
        // relu(conv(relu(conv(x))) + x), 64 channels, 3x3, padding 1.
        let (w1, b1) = track(params(64, 64, 3, dev));
        let (w2, b2) = track(params(64, 64, 3, dev));
        let (ws, bs) = (vec![w1.clone(), w2.clone()], vec![b1.clone(), b2.clone()]);
        let f = move |x: Tensor<4>| {
            let h = relu(conv2d(x.clone(), w1.clone(), Some(b1.clone()), options(1, 1)));
            relu(conv2d(h, w2.clone(), Some(b2.clone()), options(1, 1)) + x)
        };
        return (Box::new(f), ws, bs);
    }
    // The dense block: 6 layers of conv3x3(relu(concat so far)), growth 12, from 24 channels.
    let layers: Vec<(Tensor<4>, Tensor<1>)> = (0..6)
        .map(|i| track(params(24 + 12 * i, 12, 3, dev)))
        .collect();
    let ws = layers.iter().map(|l| l.0.clone()).collect();
    let bs = layers.iter().map(|l| l.1.clone()).collect();
    let f = move |x: Tensor<4>| {
        let mut feats = vec![x];
        for (w, b) in &layers {
            let input = relu(Tensor::cat(feats.clone(), 1));
            feats.push(conv2d(input, w.clone(), Some(b.clone()), options(1, 1)));
        }
        Tensor::cat(feats, 1)
    };
    (Box::new(f), ws, bs)
}

/// The input shape of a case.
fn input_shape(case: &str) -> [usize; 4] {
    match CONVS.iter().find(|c| c.0 == case) {
        Some((_, [n, cin, h, w, ..])) => [*n, *cin, *h, *w],
        None if case.starts_with("resnet_basic") => [8, 64, 32, 32],
        None => [8, 24, 16, 16],
    }
}

fn main() {
    let args = Args::parse();
    let api = match args.backend.to_ascii_lowercase().as_str() {
        "gl" => WgpuBackend::Gl,
        "auto" => WgpuBackend::Auto,
        _ => WgpuBackend::Vulkan,
    };
    let (dev, setup) = Device::wgpu_options()
        .graphics_api(api)
        .init_with_setup()
        .expect("no wgpu adapter");
    let info = setup.adapter.get_info();
    let adapter = format!("{} ({:?})", info.name, info.backend);
    let autodiff = dev.clone().autodiff();
    let names = CONVS
        .iter()
        .map(|c| c.0)
        .chain(["resnet_basic_c64_32x32_n8", "dense_l6_k12_c24_16x16_n8"]);
    let wanted = |name: &str| args.cases.is_empty() || args.cases.iter().any(|c| name.contains(c));
    eprintln!("burn 0.22.1 on {adapter}: medians of {} runs, ms", args.iters);
    eprintln!("{:36} {:>10} {:>10}", "case", "forward", "fwd+bwd");
    let mut rows = Vec::new();
    for case in names.filter(|n| wanted(n)) {
        let shape = input_shape(case);
        let (forward, _, _) = model(case, &dev, false);
        let x = uniform(shape, 1.0, &dev);
        let fwd = median_ms(&dev, args.iters, || {
            std::hint::black_box(forward(x.clone()));
        });
        let (forward, ws, bs) = model(case, &autodiff, true);
        let x = uniform(shape, 1.0, &autodiff).require_grad();
        let fwd_bwd = median_ms(&dev, args.iters, || {
            // The gradients of the input and of every weight and bias, as skipgrad computes.
            let grads = forward(x.clone()).backward();
            std::hint::black_box(x.grad(&grads).expect("input gradient"));
            for w in &ws {
                std::hint::black_box(w.grad(&grads).expect("weight gradient"));
            }
            for b in &bs {
                std::hint::black_box(b.grad(&grads).expect("bias gradient"));
            }
        });
        eprintln!("{case:36} {fwd:10.3} {fwd_bwd:10.3}");
        rows.push(format!(
            "{{\"case\": \"{case}\", \"forward_ms\": {fwd:.4}, \"fwd_bwd_ms\": {fwd_bwd:.4}}}"
        ));
    }
    if args.json {
        println!(
            "{{\"peer\": \"burn 0.22.1 wgpu\", \"adapter\": \"{adapter}\", \"cases\": [{}]}}",
            rows.join(", ")
        );
    }
}
