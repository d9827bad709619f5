//! Training against PyTorch: the networks of the vanishing-gradient experiment, loaded from
//! the same initial `state_dict` and data as PyTorch (tests/train/, made by
//! `make_train_vectors.py` there), give PyTorch's float64 per-layer gradient norms, and 20
//! steps of SGD (momentum, weight decay) and of AdamW give its per-step losses and final
//! weights.

mod common;

use std::path::{Path, PathBuf};

use common::gpu;
use skipgrad::ops::loss;
use skipgrad::train::{self, Adam, Sgd};
use skipgrad::weights::TensorFile;
use skipgrad::{Arch, Gpu, Network, Optimizer, OptimizerKind, Purpose, Recording, Tensor};

fn files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/train");
    let mut f: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    f.sort();
    assert!(f.len() >= 5);
    f
}

struct Case {
    name: String,
    file: TensorFile,
    arch: Arch,
    depth: usize,
    channels: usize,
}

fn load(path: &Path) -> Case {
    let file = TensorFile::read(path).unwrap();
    let m = |k: &str| file.metadata[k].clone();
    Case {
        name: path.file_stem().unwrap().to_string_lossy().into_owned(),
        arch: Arch::parse(&m("arch")).unwrap(),
        depth: m("depth").parse().unwrap(),
        channels: m("channels").parse().unwrap(),
        file,
    }
}

fn tensor(g: &Gpu, file: &TensorFile, name: &str) -> Tensor {
    let t = &file.tensors[name];
    let shape = skipgrad::tensor::shape4(&t.shape).unwrap();
    Tensor::from_slice(g, shape, &t.data, Purpose::Activation).unwrap()
}

fn network(g: &Gpu, c: &Case) -> Network {
    Network::from_state_dict(g, c.arch, c.depth, c.channels, &c.file).unwrap()
}

fn norm(v: &[f32]) -> f64 {
    v.iter()
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        .sqrt()
}

#[test]
fn gradient_norms_match_pytorch() {
    let g = gpu();
    for path in files() {
        let c = load(&path);
        let mut net = network(g, &c);
        let (x, target) = (tensor(g, &c.file, "x"), tensor(g, &c.file, "target"));
        let mut rec = Recording::new(g);
        let y = net.forward(&mut rec, &x).unwrap();
        let l = loss::mse(&mut rec, &y, &target).unwrap();
        let grads = net.backward(&mut rec, &l.grad).unwrap();
        rec.finish().unwrap();
        let mut checked = 0;
        for (name, t) in &grads.params {
            let Some(want) = c.file.tensors.get(&format!("grad_norm.{name}")) else {
                continue;
            };
            let want = want.data[0] as f64;
            let got = norm(&t.to_vec(g).unwrap());
            let rel = (got - want).abs() / want;
            assert!(
                rel <= 1e-4,
                "{}: {name} grad norm {got:e} vs PyTorch {want:e} ({rel:e})",
                c.name
            );
            checked += 1;
        }
        let weights = c
            .file
            .tensors
            .keys()
            .filter(|k| k.starts_with("grad_norm."))
            .count();
        assert_eq!(
            checked, weights,
            "{}: every weight's gradient compared",
            c.name
        );
    }
}

/// 20 steps of `kind` from the file's start: per-step losses and final weights against
/// PyTorch's float64 run under `prefix` (`sgd` or `adamw`).
fn train_like_pytorch(kind: OptimizerKind, prefix: &str) {
    let g = gpu();
    for path in files() {
        let c = load(&path);
        let mut net = network(g, &c);
        let (x, target) = (tensor(g, &c.file, "x"), tensor(g, &c.file, "target"));
        let mut opt = Optimizer::new(kind).unwrap();
        let want = &c.file.tensors[&format!("{prefix}.losses")].data;
        for (step, &w) in want.iter().enumerate() {
            let mut rec = Recording::new(g);
            let loss = train::train_step(&mut rec, &mut net, &mut opt, &x, &target).unwrap();
            rec.finish().unwrap();
            let got = loss.to_vec(g).unwrap()[0] as f64;
            let rel = (got - w as f64).abs() / (w as f64).abs();
            assert!(
                rel <= 1e-4,
                "{} {prefix} step {step}: loss {got} vs PyTorch {w} ({rel:e})",
                c.name
            );
        }
        // Final weights: 1e-4 relative for SGD. Adam normalises every element's step by its
        // own gradient history, so float32 rounding in gradients near zero (1e-9 absolute,
        // the same size as PyTorch's float32) moves those elements' trajectories: after 20
        // AdamW steps the dense stack's weights sit up to 1.4e-3 from float64 (PyTorch's own
        // float32 run, which sums in another order, lands 4e-4 away on residual_d20). The
        // losses above still agree to 1e-4 at every step.
        let spread: f64 = c.file.metadata[&format!("f32_{prefix}_final_rel")]
            .parse()
            .unwrap();
        let bound = match kind {
            OptimizerKind::Sgd(_) => 1e-4f64.max(4.0 * spread),
            _ => 2e-3f64.max(4.0 * spread),
        };
        for (name, t) in net.parameters() {
            let want = &c.file.tensors[&format!("{prefix}.final.{name}")].data;
            let got = t.to_vec(g).unwrap();
            let diff: Vec<f32> = got.iter().zip(want).map(|(a, b)| a - b).collect();
            let rel = norm(&diff) / norm(want).max(1e-30);
            assert!(
                rel <= bound,
                "{} {prefix}: {name} final weights off by {rel:e} (bound {bound:e})",
                c.name
            );
        }
    }
}

#[test]
fn sgd_with_momentum_and_weight_decay_matches_pytorch() {
    let sgd = Sgd {
        lr: 0.01,
        momentum: 0.9,
        weight_decay: 1e-4,
        ..Sgd::default()
    };
    train_like_pytorch(OptimizerKind::Sgd(sgd), "sgd");
}

#[test]
fn adamw_matches_pytorch() {
    let adamw = Adam {
        lr: 1e-3,
        betas: (0.9, 0.999),
        eps: 1e-8,
        weight_decay: 0.01,
    };
    train_like_pytorch(OptimizerKind::AdamW(adamw), "adamw");
}
