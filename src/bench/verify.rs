//! The benchmark's correctness guard: before a case is timed, its GPU results are compared
//! with the f64 CPU reference (`skipgrad::reference`), so a fast wrong kernel cannot post a
//! figure.

use super::{f64s, Inner, Workload};
use crate::cases::{compare, compare_summed, Comparison, CONV_TOLERANCE};
use crate::error::{Error, Result};
use crate::ops::conv2d::Conv2dParams;
use crate::ops::loss;
use crate::record::Recording;
use crate::reference::{self, HostConv};
use crate::tensor::Tensor;
use crate::train::Sgd;
use crate::Gpu;
use crate::{Arch, Network, Optimizer, OptimizerKind};

/// The relative part of the conv guard's bound (`CONV_TOLERANCE`'s), beside the rounding
/// of long sums ([`SUM_ROUNDING`](crate::cases::SUM_ROUNDING)).
const REL: f64 = 1e-4;

impl Workload {
    /// Runs forward + backward once and compares the results with the CPU reference: conv
    /// cases at sampled elements of every output (the full reference of a large conv takes
    /// seconds), each within `1e-4 · (1 + |ref|)` plus the float32 rounding of its sum
    /// ([`SUM_ROUNDING`](crate::cases::SUM_ROUNDING) `· Σ|terms|`); blocks in full, within
    /// `1e-4 · (1 + |ref|)`. Returns one comparison per output.
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
                // The same sums over the inputs' magnitudes: what float32 rounding scales with.
                let abs = |v: &[f64]| v.iter().map(|a| a.abs()).collect::<Vec<f64>>();
                let (xa, wa, ba, goa) = (abs(&x), abs(&w), abs(&b), abs(&go));
                let (xs, ws, ys) = (shape("x"), shape("weight"), y.shape());
                let mut out = Vec::new();
                type At<'a> = &'a dyn Fn(&[f64], &[f64], &[f64], [usize; 4]) -> f64;
                let sampled =
                    |t: &Tensor, name: &str, f: At<'_>, ins: [&[f64]; 3], abs_ins: [&[f64]; 3]| {
                        let got = t.to_vec(gpu)?;
                        let s = t.shape();
                        let step = (got.len() / 257).max(1);
                        let (mut g, mut want, mut sums) = (Vec::new(), Vec::new(), Vec::new());
                        for i in (0..got.len()).step_by(step) {
                            let idx = [
                                i / (s[1] * s[2] * s[3]),
                                i / (s[2] * s[3]) % s[1],
                                i / s[3] % s[2],
                                i % s[3],
                            ];
                            g.push(got[i]);
                            want.push(f(ins[0], ins[1], ins[2], idx) as f32);
                            sums.push(f(abs_ins[0], abs_ins[1], abs_ins[2], idx));
                        }
                        Ok::<_, Error>(compare_summed(name, &g, &want, REL, &sums))
                    };
                let forward = |x: &[f64], w: &[f64], b: &[f64], i| {
                    reference::conv2d_at(x, xs, w, ws, Some(b), p, i)
                };
                let input = |go: &[f64], w: &[f64], _: &[f64], i| {
                    reference::conv2d_backward_input_at(go, ys, w, ws, p, i)
                };
                let weight = |x: &[f64], go: &[f64], _: &[f64], i| {
                    reference::conv2d_backward_weight_at(x, xs, go, ys, ws, p, i)
                };
                out.push(sampled(y, "out", &forward, [&x, &w, &b], [&xa, &wa, &ba])?);
                out.push(sampled(
                    gx,
                    "grad_x",
                    &input,
                    [&go, &w, &[]],
                    [&goa, &wa, &[]],
                )?);
                out.push(sampled(
                    gw,
                    "grad_weight",
                    &weight,
                    [&x, &go, &[]],
                    [&xa, &goa, &[]],
                )?);
                let f32s = |v: Vec<f64>| v.into_iter().map(|a| a as f32).collect::<Vec<f32>>();
                out.push(compare_summed(
                    "grad_bias",
                    &gb.to_vec(gpu)?,
                    &f32s(reference::conv2d_backward_bias(&go, ys)),
                    REL,
                    &reference::conv2d_backward_bias(&goa, ys),
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
        Arch::ResNetBn | Arch::DenseNetBc => {
            return Err(crate::Error::param(
                "benchmark guard",
                "the BatchNorm stacks have no f64 reference here: their modules are checked against PyTorch's numbers (tests/vectors/bn)",
            ))
        }
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
