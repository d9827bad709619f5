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
use skipgrad::TensorFile;
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
    let shape = t.shape4().unwrap();
    Tensor::from_slice(g, shape, &t.data, Purpose::Activation).unwrap()
}

/// The network from the file's initial `state_dict` (the file also holds the data and
/// PyTorch's results: the strict load takes the parameters alone).
fn network(g: &Gpu, c: &Case) -> Network {
    let names = Network::parameter_names(c.arch, c.depth);
    let params = c.file.filter(|k| names.iter().any(|n| n == k));
    Network::from_state_dict(g, c.arch, c.depth, c.channels, &params).unwrap()
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

/// torch.optim's update rules, in f64 on the host: one step of `kind` on `p` with `g`.
struct HostOptim {
    m: Vec<f64>,
    v: Vec<f64>,
    step: i32,
}

impl HostOptim {
    fn step(&mut self, kind: OptimizerKind, p: &mut [f64], g: &[f64]) {
        self.step += 1;
        let t = self.step;
        for i in 0..p.len() {
            match kind {
                OptimizerKind::Sgd(s) => {
                    let (mu, damp, wd) =
                        (s.momentum as f64, s.dampening as f64, s.weight_decay as f64);
                    let mut d = g[i] + wd * p[i];
                    if mu != 0.0 {
                        self.m[i] = if t == 1 {
                            d
                        } else {
                            mu * self.m[i] + (1.0 - damp) * d
                        };
                        d = if s.nesterov {
                            d + mu * self.m[i]
                        } else {
                            self.m[i]
                        };
                    }
                    p[i] -= s.lr as f64 * d;
                }
                OptimizerKind::Adam(a) | OptimizerKind::AdamW(a) => {
                    let (lr, b1, b2, eps, wd) = (
                        a.lr as f64,
                        a.betas.0 as f64,
                        a.betas.1 as f64,
                        a.eps as f64,
                        a.weight_decay as f64,
                    );
                    let mut d = g[i];
                    if matches!(kind, OptimizerKind::AdamW(_)) {
                        p[i] *= 1.0 - lr * wd;
                    } else {
                        d += wd * p[i];
                    }
                    self.m[i] += (1.0 - b1) * (d - self.m[i]);
                    self.v[i] = b2 * self.v[i] + (1.0 - b2) * d * d;
                    let denom = self.v[i].sqrt() / (1.0 - b2.powi(t)).sqrt() + eps;
                    p[i] -= lr / (1.0 - b1.powi(t)) * self.m[i] / denom;
                }
            }
        }
    }
}

/// The optimizer kernels alone, fed the same gradients as an f64 host implementation of
/// torch.optim's rules: 20 steps stay within float32 rounding of it (so any larger gap in
/// the training tests comes from the gradients, not the update).
#[test]
fn optimizer_updates_follow_torch_rules() {
    let g = gpu();
    let n = 4096;
    let mut rng = common::Rng(42);
    let p0 = rng.vec(n);
    let kinds = [
        OptimizerKind::Sgd(Sgd {
            lr: 0.05,
            momentum: 0.9,
            dampening: 0.1,
            weight_decay: 1e-3,
            nesterov: false,
        }),
        OptimizerKind::Sgd(Sgd {
            lr: 0.05,
            momentum: 0.9,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: true,
        }),
        OptimizerKind::Sgd(Sgd {
            lr: 0.05,
            ..Sgd::default()
        }),
        OptimizerKind::Adam(Adam {
            weight_decay: 1e-2,
            ..Adam::default()
        }),
        OptimizerKind::AdamW(Adam {
            weight_decay: 1e-2,
            ..Adam::default()
        }),
    ];
    for kind in kinds {
        let p = Tensor::from_slice(g, [n, 1, 1, 1], &p0, Purpose::Parameter).unwrap();
        let mut host: Vec<f64> = p0.iter().map(|&v| v as f64).collect();
        let mut h = HostOptim {
            m: vec![0.0; n],
            v: vec![0.0; n],
            step: 0,
        };
        let mut opt = Optimizer::new(kind).unwrap();
        for step in 0..20 {
            // Gradients of every scale, tiny ones included (where Adam is most sensitive).
            let gv: Vec<f32> = rng
                .vec(n)
                .iter()
                .enumerate()
                .map(|(i, v)| v * 10f32.powi(-((i % 9) as i32)))
                .collect();
            let gt = Tensor::from_slice(g, [n, 1, 1, 1], &gv, Purpose::Gradient).unwrap();
            let mut rec = Recording::new(g);
            opt.step(&mut rec, &[("w".into(), p.clone())], &[("w".into(), gt)])
                .unwrap();
            rec.finish().unwrap();
            h.step(
                kind,
                &mut host,
                &gv.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            );
            let got = p.to_vec(g).unwrap();
            for (i, (&a, &b)) in got.iter().zip(&host).enumerate() {
                assert!(
                    (a as f64 - b).abs() <= 2e-6 * (1.0 + b.abs()),
                    "{kind:?} step {step} [{i}]: {a} vs {b}"
                );
            }
        }
    }
}

/// A refused step changes nothing: no parameter moves, the step count stays; state made
/// for one shape is not reused for another parameter of the same name.
#[test]
fn refused_optimizer_steps_change_nothing() {
    let g = gpu();
    let p = Tensor::from_slice(g, [4, 1, 1, 1], &[1.0; 4], Purpose::Parameter).unwrap();
    let grad = Tensor::from_slice(g, [4, 1, 1, 1], &[1.0; 4], Purpose::Gradient).unwrap();
    let q = Tensor::from_slice(g, [2, 1, 1, 1], &[1.0; 2], Purpose::Parameter).unwrap();
    let mut opt = Optimizer::new(OptimizerKind::Adam(Adam::default())).unwrap();
    let params = vec![("a".to_string(), p.clone()), ("b".to_string(), q.clone())];
    let mut rec = Recording::new(g);
    // "b" has no gradient: nothing is recorded, not even "a"'s update.
    assert!(opt
        .step(&mut rec, &params, &[("a".into(), grad.clone())])
        .is_err());
    rec.finish().unwrap();
    assert_eq!(opt.steps(), 0);
    assert_eq!(p.to_vec(g).unwrap(), vec![1.0; 4]);
    // One step of "a", then "a" with another shape is refused.
    let mut rec = Recording::new(g);
    opt.step(&mut rec, &params[..1], &[("a".into(), grad)])
        .unwrap();
    rec.finish().unwrap();
    let g2 = Tensor::from_slice(g, [2, 1, 1, 1], &[1.0; 2], Purpose::Gradient).unwrap();
    let mut rec = Recording::new(g);
    let e = opt
        .step(&mut rec, &[("a".into(), q)], &[("a".into(), g2)])
        .unwrap_err();
    assert!(e.to_string().contains("one optimizer per set"), "{e}");
    assert_eq!(opt.steps(), 1);
}

/// Sums that survive cancellation: the first layers of a 12-layer plain stack (8 channels,
/// 12×12, batch 4) have weight gradients of ~1e-6 made of terms far larger, and AdamW
/// divides each step by the gradient's own magnitude, so the rounding of the weight and
/// bias sums shows in the weights. After 20 AdamW steps every tensor must sit within 10×
/// PyTorch float32's own distance from float64 (`f32_adamw_final_rel`, the largest over its
/// tensors), whatever kernels the adapter's policy picks.
#[test]
fn adamw_on_a_deep_plain_stack_stays_within_10x_of_pytorch_float32() {
    let g = gpu();
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/train/plain_d12_c8_12x12_n4.safetensors");
    let c = load(&path);
    let mut net = network(g, &c);
    let (x, target) = (tensor(g, &c.file, "x"), tensor(g, &c.file, "target"));
    let mut opt = Optimizer::new(OptimizerKind::AdamW(Adam {
        lr: 1e-3,
        betas: (0.9, 0.999),
        eps: 1e-8,
        weight_decay: 0.01,
    }))
    .unwrap();
    for _ in 0..20 {
        let mut rec = Recording::new(g);
        train::train_step(&mut rec, &mut net, &mut opt, &x, &target).unwrap();
        rec.finish().unwrap();
    }
    let spread: f64 = c.file.metadata["f32_adamw_final_rel"].parse().unwrap();
    let bound = 10.0 * spread;
    let mut worst = (0.0f64, String::new());
    for (name, t) in net.parameters() {
        let want = &c.file.tensors[&format!("adamw.final.{name}")].data;
        let got = t.to_vec(g).unwrap();
        let diff: Vec<f32> = got.iter().zip(want).map(|(a, b)| a - b).collect();
        let rel = norm(&diff) / norm(want).max(1e-30);
        println!("{name}: {rel:.3e}");
        if rel > worst.0 {
            worst = (rel, name);
        }
    }
    assert!(
        worst.0 <= bound,
        "{} is {:.3e} from PyTorch float64; PyTorch float32 is {spread:.3e} away (bound {bound:.3e})",
        worst.1,
        worst.0
    );
}

/// Training never needs the input's gradient: a step's backward (`backward_params`) records
/// exactly the dispatches of `backward` less the first layer's input-gradient pass (plain)
/// or the first block's (residual: conv1's input gradient and the skip path's copy), and
/// gives the same parameter gradients, bit for bit (the same kernels ran). The convs are
/// not tiny (a tiny one's three gradients are one fused dispatch either way).
#[test]
fn a_training_step_records_no_input_gradient_for_the_first_layer() {
    use skipgrad::ops::conv2d::{conv2d_backward_input_into, Fusion};
    use skipgrad::{Conv2dParams, Init};
    let g = gpu();
    let (n, c, hw) = (2, 16, 16);
    let xs = [n, c, hw, hw];
    let data = |k: u64| {
        (0..n * c * hw * hw)
            .map(|i| ((i as u64 * 2654435761 + k) % 97) as f32 / 48.0 - 1.0)
            .collect::<Vec<f32>>()
    };
    let x = Tensor::from_slice(g, xs, &data(1), Purpose::Activation).unwrap();
    let target = Tensor::from_slice(g, xs, &data(2), Purpose::Activation).unwrap();
    for arch in [Arch::Plain, Arch::Residual] {
        let mut net = Network::new(g, arch, 4, c, Init::Torch(3)).unwrap();
        // (dispatches, parameter gradients) of a backward with and without the input's.
        let mut run = |full: bool| {
            let mut rec = Recording::new(g);
            let y = net.forward(&mut rec, &x).unwrap();
            let l = loss::mse(&mut rec, &y, &target).unwrap();
            let before = rec.dispatch_count();
            let params = if full {
                net.backward(&mut rec, &l.grad).unwrap().params
            } else {
                net.backward_params(&mut rec, &l.grad).unwrap()
            };
            let count = rec.dispatch_count() - before;
            rec.finish().unwrap();
            let values: Vec<Vec<f32>> = params.iter().map(|(_, t)| t.to_vec(g).unwrap()).collect();
            (count, values)
        };
        let (full, full_grads) = run(true);
        let (params_only, grads) = run(false);
        assert_eq!(grads, full_grads, "{arch:?}: the same parameter gradients");
        // The first conv's input-gradient pass alone (the blocks' and the stack's first
        // conv: c → c, 3×3, padding 1; the residual block's accumulates onto the skip copy).
        let w = Tensor::zeros(g, [c, c, 3, 3], Purpose::Parameter).unwrap();
        let (go, gx) = (
            Tensor::zeros(g, xs, Purpose::Gradient).unwrap(),
            Tensor::zeros(g, xs, Purpose::Gradient).unwrap(),
        );
        let mut rec = Recording::new(g);
        let fusion = Fusion {
            relu_input: false,
            accumulate: arch == Arch::Residual,
        };
        conv2d_backward_input_into(&mut rec, &x, &w, &go, &Conv2dParams::new(1, 1), &gx, fusion)
            .unwrap();
        let input_pass = rec.dispatch_count();
        rec.finish().unwrap();
        let skip_copy = usize::from(arch == Arch::Residual);
        println!(
            "{arch:?}: backward {full} dispatches, without the input's gradient {params_only}"
        );
        assert_eq!(full - params_only, input_pass + skip_copy, "{arch:?}");
    }
}

/// The BatchNorm stacks (`resnet-bn`: torchvision BasicBlocks, `densenet-bc`: a DenseNet-BC
/// block and a 1×1 transition) train: AdamW lowers the loss over 15 steps, every BatchNorm
/// counts the steps' forwards, and the state_dict they save (running statistics and int64
/// counters included) loads strictly into a network whose outputs are the same bits.
#[test]
fn batchnorm_stacks_train_save_and_load() {
    let g = gpu();
    let mut rng = common::Rng(31);
    let shape = [4, 8, 8, 8];
    let n: usize = shape.iter().product();
    let x = common::upload(shape, &rng.vec(n), Purpose::Activation);
    let target = common::upload(shape, &rng.vec(n), Purpose::Activation);
    for arch in [Arch::ResNetBn, Arch::DenseNetBc] {
        let mut net = Network::new(g, arch, 4, 8, skipgrad::Init::He(5)).unwrap();
        let names: Vec<String> = net.parameters().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, Network::parameter_names(arch, 4), "{arch:?}");
        let mut opt = Optimizer::new(OptimizerKind::AdamW(Adam {
            lr: 1e-2,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
        }))
        .unwrap();
        let mut losses = Vec::new();
        for _ in 0..15 {
            let mut rec = Recording::new(g);
            let l = train::train_step(&mut rec, &mut net, &mut opt, &x, &target).unwrap();
            rec.finish().unwrap();
            losses.push(l.to_vec(g).unwrap()[0]);
        }
        assert!(
            losses[14] < 0.7 * losses[0],
            "{arch:?} did not train: {losses:?}"
        );
        let path = std::env::temp_dir().join(format!(
            "skipgrad-{}-{}.safetensors",
            arch.name(),
            std::process::id()
        ));
        net.save(g, &path).unwrap();
        let file = TensorFile::read(&path).unwrap();
        std::fs::remove_file(&path).ok();
        assert!(!file.integers.is_empty(), "{arch:?}: no counters saved");
        assert!(file.integers.values().all(|v| v == &vec![15]), "{arch:?}");
        let mut back = Network::from_state_dict(g, arch, 4, 8, &file).unwrap();
        let run = |net: &mut Network| {
            let mut rec = Recording::new(g);
            let y = net.forward(&mut rec, &x).unwrap();
            rec.finish().unwrap();
            net.clear_saved();
            y.to_vec(g).unwrap()
        };
        assert_eq!(run(&mut net), run(&mut back), "{arch:?}");
    }
}
