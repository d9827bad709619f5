//! A case's workload: its inputs uploaded once and its outputs preallocated, recorded as a
//! forward or a forward + backward as many times as the benchmark times it.

use super::{host, upload, BenchCase, CaseKind};
use crate::blocks::{DenseBlock, ResidualBlock, ResidualVariant};
use crate::error::Result;
use crate::memory::Purpose;
use crate::ops::conv2d::{self, Conv2dParams, Fusion};
use crate::ops::loss;
use crate::record::Recording;
use crate::tensor::Tensor;
use crate::train::{self, Sgd};
use crate::weights::TensorFile;
use crate::Gpu;
use crate::Init;
use crate::{Arch, Network, Optimizer, OptimizerKind};
/// Uploaded inputs and preallocated outputs of one case.
pub struct Workload {
    pub(super) inner: Inner,
    /// Host copies of everything uploaded, for the correctness guard.
    pub(super) host: TensorFile,
}

// One value per workload: the variants' size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub(super) enum Inner {
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
    /// The convolutions this case runs (its own, a block's, a network's), as the self-test
    /// takes them.
    pub fn conv_problems(&self) -> Vec<crate::ops::conv2d::selftest::Problem> {
        use crate::ops::conv2d::selftest::Problem;
        let problem = |name: String, x, w: [usize; 4], stride, pad| Problem {
            name,
            input: x,
            weight: w,
            params: Conv2dParams::new(stride, pad),
            bias: true,
        };
        let name = &self.name;
        match self.kind {
            CaseKind::Conv {
                n,
                cin,
                h,
                w,
                cout,
                k,
                stride,
                pad,
            } => vec![problem(
                name.clone(),
                [n, cin, h, w],
                [cout, cin, k, k],
                stride,
                pad,
            )],
            CaseKind::ResidualBasic { n, c, hw } => vec![problem(
                format!("{name}/conv"),
                [n, c, hw, hw],
                [c, c, 3, 3],
                1,
                1,
            )],
            CaseKind::Dense {
                n,
                c0,
                k,
                layers,
                hw,
                ..
            } => (0..layers)
                .map(|l| {
                    let cin = c0 + l * k;
                    problem(
                        format!("{name}/layer{l}"),
                        [n, cin, hw, hw],
                        [k, cin, 3, 3],
                        1,
                        1,
                    )
                })
                .collect(),
            CaseKind::TrainStep {
                n,
                arch,
                depth,
                c,
                hw,
            } => match arch {
                Arch::Dense => {
                    let growth = crate::train::network::DENSE_GROWTH;
                    let mut v: Vec<_> = (0..depth)
                        .map(|l| {
                            let cin = c + l * growth;
                            problem(
                                format!("{name}/layer{l}"),
                                [n, cin, hw, hw],
                                [growth, cin, 3, 3],
                                1,
                                1,
                            )
                        })
                        .collect();
                    let all = c + depth * growth;
                    v.push(problem(
                        format!("{name}/transition"),
                        [n, all, hw, hw],
                        [c, all, 1, 1],
                        1,
                        0,
                    ));
                    v
                }
                _ => vec![problem(
                    format!("{name}/conv"),
                    [n, c, hw, hw],
                    [c, c, 3, 3],
                    1,
                    1,
                )],
            },
        }
    }

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
                let params = file.filter(|k| k.starts_with("conv"));
                let block =
                    ResidualBlock::from_state_dict(gpu, ResidualVariant::Basic, c, &params)?;
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
                let params = file.filter(|k| k.starts_with("layer"));
                let block = DenseBlock::from_state_dict(gpu, c0, k, layers, strategy, &params)?;
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

/// One pass of a conv case, timed alone by the GPU suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvPass {
    /// The forward, with bias.
    Forward,
    /// The input gradient.
    InputGrad,
    /// The weight and bias gradients.
    WeightGrad,
}

impl ConvPass {
    /// The three passes.
    pub const ALL: [ConvPass; 3] = [ConvPass::Forward, ConvPass::InputGrad, ConvPass::WeightGrad];

    /// Lower-case name (`forward`, `input_grad`, `weight_grad`).
    pub fn name(self) -> &'static str {
        match self {
            ConvPass::Forward => "forward",
            ConvPass::InputGrad => "input_grad",
            ConvPass::WeightGrad => "weight_grad",
        }
    }
}

impl Workload {
    /// Records one pass of a conv case; `None` for other cases, whose passes are not
    /// separate convolutions.
    pub fn record_conv_pass(
        &mut self,
        rec: &mut Recording<'_>,
        pass: ConvPass,
    ) -> Option<Result<()>> {
        let Inner::Conv {
            p,
            x,
            w,
            b,
            go,
            y,
            gx,
            gw,
            gb,
        } = &self.inner
        else {
            return None;
        };
        let f = Fusion::default();
        Some(match pass {
            ConvPass::Forward => conv2d::conv2d_into(rec, x, w, Some(b), p, y, f),
            ConvPass::InputGrad => conv2d::conv2d_backward_input_into(rec, x, w, go, p, gx, f),
            ConvPass::WeightGrad => {
                conv2d::conv2d_backward_weight_and_bias_into(rec, x, go, p, gw, Some(gb), f)
            }
        })
    }

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
}
