//! The benchmark's cases and workloads, shared by `skipgrad bench` and `cargo bench`.
//!
//! A [`BenchCase`] names a standard configuration (the names join with the peer benchmarks in
//! `shared/peers/`); [`BenchCase::prepare`] uploads its inputs once and gives a [`Workload`]
//! that records its forward, or forward + backward, into a [`Recording`]. Each workload can
//! [`Workload::verify`] itself against the CPU reference before anything is timed.

pub mod ceilings;

use crate::blocks::{ConcatStrategy, DenseBlock, ResidualBlock, ResidualVariant};
use crate::cases::{compare, Comparison, CONV_TOLERANCE};
use crate::error::{Error, Result};
use crate::memory::Purpose;
use crate::ops::conv2d::{self, Conv2dParams, Fusion};
use crate::ops::loss;
use crate::record::Recording;
use crate::reference::{self, HostConv};
use crate::tensor::Tensor;
use crate::train::{self, Arch, Network, Optimizer, OptimizerKind, Sgd};
use crate::weights::{HostTensor, TensorFile};
use crate::Gpu;
use crate::Init;

/// What a case runs.
#[derive(Clone, Debug, PartialEq)]
pub enum CaseKind {
    /// One conv2d with bias: batch, input channels, height, width, output channels, square
    /// kernel, stride, padding.
    Conv {
        /// Batch.
        n: usize,
        /// Input channels.
        cin: usize,
        /// Height.
        h: usize,
        /// Width.
        w: usize,
        /// Output channels.
        cout: usize,
        /// Kernel size.
        k: usize,
        /// Stride.
        stride: usize,
        /// Padding.
        pad: usize,
    },
    /// ResNet's basic block, `c` channels, `hw`×`hw`, batch `n`.
    ResidualBasic {
        /// Batch.
        n: usize,
        /// Channels.
        c: usize,
        /// Image size.
        hw: usize,
    },
    /// A dense block.
    Dense {
        /// Batch.
        n: usize,
        /// Input channels.
        c0: usize,
        /// Growth.
        k: usize,
        /// Layers.
        layers: usize,
        /// Image size.
        hw: usize,
        /// Concatenation strategy.
        strategy: ConcatStrategy,
    },
    /// One training step of a [`Network`]: forward, MSE, backward, SGD with momentum 0.9.
    TrainStep {
        /// Batch.
        n: usize,
        /// Architecture.
        arch: Arch,
        /// Depth.
        depth: usize,
        /// Channels.
        c: usize,
        /// Image size.
        hw: usize,
    },
}

/// A named benchmark configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchCase {
    /// The standard case name.
    pub name: String,
    /// What it runs.
    pub kind: CaseKind,
}

/// A conv case from `[N, Cin, H, W, Cout, kernel, stride, padding]`, the peers' column order.
fn conv(name: &str, [n, cin, h, w, cout, k, stride, pad]: [usize; 8]) -> BenchCase {
    BenchCase {
        name: name.into(),
        kind: CaseKind::Conv {
            n,
            cin,
            h,
            w,
            cout,
            k,
            stride,
            pad,
        },
    }
}

/// The standard cases, named as in the peer benchmarks.
pub fn standard_cases() -> Vec<BenchCase> {
    let mut cases = vec![
        conv("conv3x3_c64_32x32_n8", [8, 64, 32, 32, 64, 3, 1, 1]),
        conv("conv3x3_c128_16x16_n8", [8, 128, 16, 16, 128, 3, 1, 1]),
        conv("conv1x1_c64to128_32x32_n8", [8, 64, 32, 32, 128, 1, 1, 0]),
        conv("stem7x7_s2_c3to32_64x64_n8", [8, 3, 64, 64, 32, 7, 2, 3]),
        conv("notebook2x2_s2p2_c3to6_4x4_n1", [1, 3, 4, 4, 6, 2, 2, 2]),
        BenchCase {
            name: "resnet_basic_c64_32x32_n8".into(),
            kind: CaseKind::ResidualBasic {
                n: 8,
                c: 64,
                hw: 32,
            },
        },
    ];
    for strategy in ConcatStrategy::ALL {
        cases.push(BenchCase {
            name: format!("dense_l6_k12_c24_16x16_n8_{}", strategy.name()),
            kind: CaseKind::Dense {
                n: 8,
                c0: 24,
                k: 12,
                layers: 6,
                hw: 16,
                strategy,
            },
        });
    }
    for (arch, depth) in [(Arch::Residual, 20), (Arch::Dense, 12)] {
        cases.push(BenchCase {
            name: format!("train_step_{}_d{depth}_c16_16x16_n8", arch.name()),
            kind: CaseKind::TrainStep {
                n: 8,
                arch,
                depth,
                c: 16,
                hw: 16,
            },
        });
    }
    cases
}

/// Deterministic values in [-1, 1) (a small LCG: reproducible inputs, no dependency).
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn host(shape: &[usize], scale: f32, seed: u64) -> HostTensor {
    let data = values(shape.iter().product(), seed)
        .into_iter()
        .map(|v| v * scale)
        .collect();
    HostTensor {
        shape: shape.to_vec(),
        data,
    }
}

fn upload(gpu: &Gpu, t: &HostTensor, purpose: Purpose) -> Result<Tensor> {
    Tensor::from_slice(gpu, crate::tensor::shape4(&t.shape)?, &t.data, purpose)
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Uploaded inputs and preallocated outputs of one case.
pub struct Workload {
    inner: Inner,
    /// Host copies of everything uploaded, for the correctness guard.
    host: TensorFile,
}

// One value per workload: the variants' size difference does not matter.
#[allow(clippy::large_enum_variant)]
enum Inner {
    Conv {
        p: Conv2dParams,
        x: Tensor,
        w: Tensor,
        b: Tensor,
        go: Tensor,
        y: Tensor,
        gx: Tensor,
        gw: Tensor,
        gb: Tensor,
    },
    Residual {
        block: Box<ResidualBlock>,
        x: Tensor,
        go: Tensor,
        last: Option<(Tensor, crate::BlockGrads)>,
    },
    Dense {
        block: Box<DenseBlock>,
        x: Tensor,
        go: Tensor,
        last: Option<(Tensor, crate::BlockGrads)>,
    },
    Train {
        net: Box<Network>,
        opt: Box<Optimizer>,
        x: Tensor,
        target: Tensor,
    },
}

impl BenchCase {
    /// The same case with another batch size (the correctness guard of a block runs it small).
    pub fn with_batch(&self, batch: usize) -> BenchCase {
        let mut c = self.clone();
        match &mut c.kind {
            CaseKind::Conv { n, .. }
            | CaseKind::ResidualBasic { n, .. }
            | CaseKind::Dense { n, .. }
            | CaseKind::TrainStep { n, .. } => *n = batch,
        }
        c
    }

    /// Uploads deterministic inputs and parameters and preallocates outputs.
    pub fn prepare(&self, gpu: &Gpu) -> Result<Workload> {
        let mut file = TensorFile::default();
        let inner = match self.kind {
            CaseKind::Conv {
                n,
                cin,
                h,
                w,
                cout,
                k,
                stride,
                pad,
            } => {
                let p = Conv2dParams::new(stride, pad);
                let ys = p.output_shape([n, cin, h, w], [cout, cin, k, k])?;
                let scale = 1.0 / ((cin * k * k) as f32).sqrt();
                file.tensors
                    .insert("x".into(), host(&[n, cin, h, w], 1.0, 1));
                file.tensors
                    .insert("weight".into(), host(&[cout, cin, k, k], scale, 2));
                file.tensors.insert("bias".into(), host(&[cout], scale, 3));
                file.tensors.insert("grad_out".into(), host(&ys, 1.0, 4));
                let t = |name: &str, purpose| upload(gpu, &file.tensors[name], purpose);
                Inner::Conv {
                    p,
                    x: t("x", Purpose::Activation)?,
                    w: t("weight", Purpose::Parameter)?,
                    b: t("bias", Purpose::Parameter)?,
                    go: t("grad_out", Purpose::Gradient)?,
                    y: Tensor::zeros(gpu, ys, Purpose::Activation)?,
                    gx: Tensor::zeros(gpu, [n, cin, h, w], Purpose::Gradient)?,
                    gw: Tensor::zeros(gpu, [cout, cin, k, k], Purpose::Gradient)?,
                    gb: Tensor::zeros(gpu, [cout, 1, 1, 1], Purpose::Gradient)?,
                }
            }
            CaseKind::ResidualBasic { n, c, hw } => {
                let scale = 1.0 / ((9 * c) as f32).sqrt();
                for (i, conv) in ["conv1", "conv2"].iter().enumerate() {
                    file.tensors.insert(
                        format!("{conv}.weight"),
                        host(&[c, c, 3, 3], scale, 10 + i as u64),
                    );
                    file.tensors
                        .insert(format!("{conv}.bias"), host(&[c], scale, 20 + i as u64));
                }
                file.tensors
                    .insert("x".into(), host(&[n, c, hw, hw], 1.0, 1));
                file.tensors
                    .insert("grad_out".into(), host(&[n, c, hw, hw], 1.0, 4));
                let block = ResidualBlock::from_state_dict(gpu, ResidualVariant::Basic, c, &file)?;
                Inner::Residual {
                    block: Box::new(block),
                    x: upload(gpu, &file.tensors["x"], Purpose::Activation)?,
                    go: upload(gpu, &file.tensors["grad_out"], Purpose::Gradient)?,
                    last: None,
                }
            }
            CaseKind::Dense {
                n,
                c0,
                k,
                layers,
                hw,
                strategy,
            } => {
                for i in 0..layers {
                    let cin = c0 + i * k;
                    let scale = 1.0 / ((9 * cin) as f32).sqrt();
                    file.tensors.insert(
                        format!("layer{i}.weight"),
                        host(&[k, cin, 3, 3], scale, 10 + i as u64),
                    );
                    file.tensors
                        .insert(format!("layer{i}.bias"), host(&[k], scale, 40 + i as u64));
                }
                let cl = c0 + layers * k;
                file.tensors
                    .insert("x".into(), host(&[n, c0, hw, hw], 1.0, 1));
                file.tensors
                    .insert("grad_out".into(), host(&[n, cl, hw, hw], 1.0, 4));
                let block = DenseBlock::from_state_dict(gpu, c0, k, layers, strategy, &file)?;
                Inner::Dense {
                    block: Box::new(block),
                    x: upload(gpu, &file.tensors["x"], Purpose::Activation)?,
                    go: upload(gpu, &file.tensors["grad_out"], Purpose::Gradient)?,
                    last: None,
                }
            }
            CaseKind::TrainStep {
                n,
                arch,
                depth,
                c,
                hw,
            } => {
                file.tensors
                    .insert("x".into(), host(&[n, c, hw, hw], 1.0, 1));
                file.tensors
                    .insert("target".into(), host(&[n, c, hw, hw], 1.0, 5));
                let sgd = Sgd {
                    lr: 0.01,
                    momentum: 0.9,
                    ..Sgd::default()
                };
                Inner::Train {
                    net: Box::new(Network::new(gpu, arch, depth, c, Init::Torch(7))?),
                    opt: Box::new(Optimizer::new(OptimizerKind::Sgd(sgd))?),
                    x: upload(gpu, &file.tensors["x"], Purpose::Activation)?,
                    target: upload(gpu, &file.tensors["target"], Purpose::Activation)?,
                }
            }
        };
        Ok(Workload { inner, host: file })
    }
}

impl Workload {
    /// Records the forward pass.
    pub fn record_forward(&mut self, rec: &mut Recording<'_>) -> Result<()> {
        match &mut self.inner {
            Inner::Conv { p, x, w, b, y, .. } => {
                conv2d::conv2d_into(rec, x, w, Some(b), p, y, Fusion::default())
            }
            Inner::Residual { block, x, .. } => block.forward_inference(rec, x).map(|_| ()),
            Inner::Dense { block, x, .. } => block.forward_inference(rec, x).map(|_| ()),
            Inner::Train { net, x, target, .. } => {
                // Forward and loss: what a training step computes before backward.
                let y = net.forward(rec, x)?;
                let l = loss::mse(rec, &y, target)?;
                net.clear_saved();
                rec.retain(y);
                rec.retain(l.loss);
                rec.retain(l.grad);
                Ok(())
            }
        }
    }

    /// Records the forward pass and the whole backward (input, weight and bias gradients).
    pub fn record_fwd_bwd(&mut self, rec: &mut Recording<'_>) -> Result<()> {
        match &mut self.inner {
            Inner::Conv {
                p,
                x,
                w,
                b,
                go,
                y,
                gx,
                gw,
                gb,
            } => {
                conv2d::conv2d_into(rec, x, w, Some(b), p, y, Fusion::default())?;
                conv2d::Conv2dBackward {
                    x,
                    weight: w,
                    grad_out: go,
                    params: p,
                    fusion: Fusion::default(),
                }
                .record_into(rec, gx, gw, Some(gb))
            }
            Inner::Residual { block, x, go, last } => {
                let out = block.forward(rec, x)?;
                let grads = block.backward(rec, go)?;
                *last = Some((out, grads));
                Ok(())
            }
            Inner::Dense { block, x, go, last } => {
                let out = block.forward(rec, x)?;
                let grads = block.backward(rec, go)?;
                *last = Some((out, grads));
                Ok(())
            }
            Inner::Train {
                net,
                opt,
                x,
                target,
            } => {
                let loss = train::train_step(rec, net, opt, x, target)?;
                rec.retain(loss);
                Ok(())
            }
        }
    }

    /// Runs forward + backward once and compares the results with the CPU reference: conv
    /// cases at sampled elements of every output (the full reference of a large conv takes
    /// seconds), blocks in full. Returns one comparison per output.
    pub fn verify(&mut self, gpu: &Gpu) -> Result<Vec<Comparison>> {
        if let Inner::Train { net, x, target, .. } = &mut self.inner {
            return verify_train(gpu, net, x, target);
        }
        let mut rec = Recording::new(gpu);
        self.record_fwd_bwd(&mut rec)?;
        rec.finish()?;
        let h = &self.host;
        let get = |n: &str| f64s(&h.tensors[n].data);
        let shape = |n: &str| -> [usize; 4] {
            crate::tensor::shape4(&h.tensors[n].shape).unwrap_or([0; 4])
        };
        match &self.inner {
            Inner::Conv {
                p, y, gx, gw, gb, ..
            } => {
                let (x, w, b, go) = (get("x"), get("weight"), get("bias"), get("grad_out"));
                let (xs, ws, ys) = (shape("x"), shape("weight"), y.shape());
                let mut out = Vec::new();
                let sampled =
                    |t: &Tensor, name: &str, f: &dyn Fn([usize; 4]) -> f64| -> Result<Comparison> {
                        let got = t.to_vec(gpu)?;
                        let s = t.shape();
                        let step = (got.len() / 257).max(1);
                        let (mut g, mut want) = (Vec::new(), Vec::new());
                        for i in (0..got.len()).step_by(step) {
                            let idx = [
                                i / (s[1] * s[2] * s[3]),
                                i / (s[2] * s[3]) % s[1],
                                i / s[3] % s[2],
                                i % s[3],
                            ];
                            g.push(got[i]);
                            want.push(f(idx) as f32);
                        }
                        Ok(compare(name, &g, &want, CONV_TOLERANCE))
                    };
                out.push(sampled(y, "out", &|i| {
                    reference::conv2d_at(&x, xs, &w, ws, Some(&b), p, i)
                })?);
                out.push(sampled(gx, "grad_x", &|i| {
                    reference::conv2d_backward_input_at(&go, ys, &w, ws, p, i)
                })?);
                out.push(sampled(gw, "grad_weight", &|i| {
                    reference::conv2d_backward_weight_at(&x, xs, &go, ys, ws, p, i)
                })?);
                let want_gb: Vec<f32> = reference::conv2d_backward_bias(&go, ys)
                    .iter()
                    .map(|&v| v as f32)
                    .collect();
                out.push(compare(
                    "grad_bias",
                    &gb.to_vec(gpu)?,
                    &want_gb,
                    CONV_TOLERANCE,
                ));
                Ok(out)
            }
            Inner::Train { .. } => Ok(Vec::new()),
            Inner::Residual { last, .. } | Inner::Dense { last, .. } => {
                let (y, grads) = last
                    .as_ref()
                    .ok_or_else(|| Error::param("bench", "no result to verify"))?;
                let (x, xs, go) = (get("x"), shape("x"), get("grad_out"));
                let names: Vec<String> = grads.params.iter().map(|(n, _)| n.clone()).collect();
                let convs_data: Vec<(Vec<f64>, [usize; 4], Vec<f64>)> = names
                    .chunks(2)
                    .map(|pair| (get(&pair[0]), shape(&pair[0]), get(&pair[1])))
                    .collect();
                let convs: Vec<HostConv<'_>> = convs_data
                    .iter()
                    .map(|(w, s, b)| HostConv {
                        weight: w,
                        shape: *s,
                        bias: b,
                    })
                    .collect();
                let p = Conv2dParams::new(1, 1);
                let (want_y, want) = match &self.inner {
                    Inner::Residual { .. } => (
                        reference::residual_block(&x, xs, &convs[0], &convs[1], &p, true)?,
                        reference::residual_block_backward(
                            &x, xs, &convs[0], &convs[1], &p, true, &go,
                        )?,
                    ),
                    _ => (
                        reference::dense_block(&x, xs, &convs)?,
                        reference::dense_block_backward(&x, xs, &convs, &go)?,
                    ),
                };
                let f32s = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
                let mut out = vec![
                    compare("out", &y.to_vec(gpu)?, &f32s(&want_y), CONV_TOLERANCE),
                    compare(
                        "grad_x",
                        &grads.grad_x.to_vec(gpu)?,
                        &f32s(&want.grad_x),
                        CONV_TOLERANCE,
                    ),
                ];
                for (i, (gw, gb)) in want.params.iter().enumerate() {
                    let (nw, tw) = &grads.params[2 * i];
                    let (nb, tb) = &grads.params[2 * i + 1];
                    out.push(compare(nw, &tw.to_vec(gpu)?, &f32s(gw), CONV_TOLERANCE));
                    out.push(compare(nb, &tb.to_vec(gpu)?, &f32s(gb), CONV_TOLERANCE));
                }
                Ok(out)
            }
        }
    }
}

/// A training step's guard: the network's output and loss before the update against the f64
/// CPU reference of the same stack (from its parameters read back), then one step's update
/// of the first weight against `w - lr * grad` (SGD's first step, momentum buffer = grad).
fn verify_train(
    gpu: &Gpu,
    net: &mut Network,
    x: &Tensor,
    target: &Tensor,
) -> Result<Vec<Comparison>> {
    let mut rec = Recording::new(gpu);
    let y = net.forward(&mut rec, x)?;
    let l = loss::mse(&mut rec, &y, target)?;
    let grads = net.backward(&mut rec, &l.grad)?;
    rec.finish()?;
    let host: Vec<(String, Vec<f64>, [usize; 4])> = net
        .parameters()
        .iter()
        .map(|(n, t)| Ok((n.clone(), f64s(&t.to_vec(gpu)?), t.shape())))
        .collect::<Result<_>>()?;
    let convs: Vec<HostConv<'_>> = host
        .chunks(2)
        .map(|pair| HostConv {
            weight: &pair[0].1,
            shape: pair[0].2,
            bias: &pair[1].1,
        })
        .collect();
    let (xs, xv) = (x.shape(), f64s(&x.to_vec(gpu)?));
    let p = Conv2dParams::new(1, 1);
    let want_y = match net.arch() {
        Arch::Plain => {
            let mut h = xv;
            for c in &convs {
                h = reference::relu(
                    &reference::conv2d(&h, xs, c.weight, c.shape, Some(c.bias), &p)?.0,
                );
            }
            h
        }
        Arch::Residual => {
            let mut h = xv;
            for pair in convs.chunks(2) {
                h = reference::residual_block(&h, xs, &pair[0], &pair[1], &p, true)?;
            }
            h
        }
        Arch::Dense => {
            let (body, transition) = convs.split_at(convs.len() - 1);
            let f = reference::dense_block(&xv, xs, body)?;
            let fs = [xs[0], transition[0].shape[1], xs[2], xs[3]];
            let t = &transition[0];
            reference::conv2d(
                &f,
                fs,
                t.weight,
                t.shape,
                Some(t.bias),
                &Conv2dParams::default(),
            )?
            .0
        }
    };
    let tv = f64s(&target.to_vec(gpu)?);
    let want_loss = want_y
        .iter()
        .zip(&tv)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        / want_y.len() as f64;
    let f32s = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
    let mut out = vec![
        compare("out", &y.to_vec(gpu)?, &f32s(&want_y), CONV_TOLERANCE),
        compare(
            "loss",
            &l.loss.to_vec(gpu)?,
            &[want_loss as f32],
            CONV_TOLERANCE,
        ),
    ];
    // One SGD step (lr 0.01, momentum 0.9: the first step moves by lr * grad).
    let mut opt = Optimizer::new(OptimizerKind::Sgd(Sgd {
        lr: 0.01,
        momentum: 0.9,
        ..Sgd::default()
    }))?;
    let (name, w) = net.parameters()[0].clone();
    let before = w.to_vec(gpu)?;
    let g = grads
        .params
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, g)| g.to_vec(gpu))
        .transpose()?
        .unwrap_or_default();
    let mut rec = Recording::new(gpu);
    opt.step(&mut rec, &net.parameters(), &grads.params)?;
    rec.finish()?;
    let want_w: Vec<f32> = before.iter().zip(&g).map(|(w, g)| w - 0.01 * g).collect();
    out.push(compare(
        &format!("{name} after one step"),
        &w.to_vec(gpu)?,
        &want_w,
        CONV_TOLERANCE,
    ));
    Ok(out)
}
