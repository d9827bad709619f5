//! The self-test (`skipgrad selftest`): every conv kernel family, every variant it offers,
//! every pass, on a list of problems, each checked against the f64 oracle — including the
//! variants only the GPU tuner compiles, which no forced family runs. The caller is told
//! which kernel comes next before it is compiled, so that a driver whose compiler crashes
//! the process leaves the culprit's name as the last line printed.
//!
//! Each kernel runs through the public passes (the same checks and splits a user's call
//! goes through) with its family and variant forced on the recording; what actually ran is
//! reported, so a family that refused the problem and fell back is visible.

use super::args::{ForwardArgs, Geometry, InputGradArgs, WeightGradArgs};
use super::family::{Call, Pass, FAMILIES};
use super::{
    conv2d_backward_input_into, conv2d_backward_weight_and_bias_into, conv2d_into, Conv2dParams,
    ConvKernels, Fusion,
};
use crate::cases::{compare_summed, Comparison};
use crate::error::Result;
use crate::memory::Purpose;
use crate::record::Recording;
use crate::reference;
use crate::tensor::Tensor;
use crate::Gpu;

/// The relative part of the bound (beside the rounding of long sums).
const REL: f64 = 1e-4;

/// Elements of each output checked against the oracle at most (evenly spaced): the full
/// reference of a large conv takes seconds per pass.
const SAMPLES: usize = 1021;

/// A convolution to test: shapes, parameters and whether it has a bias.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    /// Where it comes from (a case file, a benchmark case).
    pub name: String,
    /// The input's shape (NCHW).
    pub input: [usize; 4],
    /// The weight's shape (OIHW).
    pub weight: [usize; 4],
    /// Stride, padding, dilation, groups.
    pub params: Conv2dParams,
    /// Whether the conv has a bias (its gradient then rides with the weight gradient).
    pub bias: bool,
}

/// One kernel of a problem: a pass, a family and a variant.
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    /// `forward`, `input gradient` or `weight gradient`.
    pub pass: &'static str,
    /// The family forced.
    pub family: ConvKernels,
    /// Its variant.
    pub variant: usize,
    /// What the variant is (the GEMM family's tile and weight loader), or empty.
    pub variant_name: String,
}

impl std::fmt::Display for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} variant {}",
            self.pass,
            self.family.name(),
            self.variant
        )?;
        if !self.variant_name.is_empty() {
            write!(f, " ({})", self.variant_name)?;
        }
        Ok(())
    }
}

/// How one kernel did.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The kernel.
    pub kernel: Kernel,
    /// The entry points that ran (a family that refused the problem shows its fallback's).
    pub ran: Vec<&'static str>,
    /// Each output against the oracle; empty where the run failed.
    pub comparisons: Vec<Comparison>,
    /// The error, where the run failed.
    pub error: Option<String>,
}

impl Outcome {
    /// Whether it ran and matched the oracle.
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.comparisons.iter().all(|c| c.passed)
    }
}

/// A problem's operands on the host (f32 as uploaded, and as f64 and magnitudes for the
/// oracle) and on the GPU.
struct Operands {
    xs: [usize; 4],
    ws: [usize; 4],
    ys: [usize; 4],
    p: Conv2dParams,
    host: [Vec<f64>; 4],
    magnitudes: [Vec<f64>; 4],
    x: Tensor,
    w: Tensor,
    b: Option<Tensor>,
    go: Tensor,
}

impl Operands {
    fn new(gpu: &Gpu, problem: &Problem) -> Result<Operands> {
        let (xs, ws, p) = (problem.input, problem.weight, problem.params);
        let ys = p.output_shape(xs, ws)?;
        let n = |s: [usize; 4]| s.iter().product::<usize>();
        let data = [
            reference::noise(n(xs), 1),
            reference::noise(n(ws), 2),
            reference::noise(ws[0], 3),
            reference::noise(n(ys), 4),
        ];
        let up = |s, v: &[f32], purpose| Tensor::from_slice(gpu, s, v, purpose);
        let operands = Operands {
            x: up(xs, &data[0], Purpose::Activation)?,
            w: up(ws, &data[1], Purpose::Parameter)?,
            b: match problem.bias {
                true => Some(up([ws[0], 1, 1, 1], &data[2], Purpose::Parameter)?),
                false => None,
            },
            go: up(ys, &data[3], Purpose::Gradient)?,
            xs,
            ws,
            ys,
            p,
            host: data.clone().map(|v| v.into_iter().map(f64::from).collect()),
            magnitudes: data.map(|v| v.into_iter().map(|a| f64::from(a).abs()).collect()),
        };
        Ok(operands)
    }

    /// The kernels to run: every family that runs each pass of this problem, each variant.
    fn kernels(&self, gpu: &Gpu) -> Result<Vec<Kernel>> {
        let g = Geometry::of(&self.x, &self.w, &self.p)?;
        // Outputs for the enumeration only: variants depend on shapes, not on contents.
        let (y, gx, gw) = (
            Tensor::zeros(gpu, self.ys, Purpose::Scratch)?,
            Tensor::zeros(gpu, self.xs, Purpose::Scratch)?,
            Tensor::zeros(gpu, self.ws, Purpose::Scratch)?,
        );
        let fusion = Fusion::default();
        let forward = ForwardArgs {
            g,
            p: self.p,
            x: &self.x,
            weight: &self.w,
            bias: self.b.as_ref(),
            out: &y,
            fusion,
        };
        let input = InputGradArgs {
            g,
            p: self.p,
            x: &self.x,
            weight: &self.w,
            grad_out: &self.go,
            grad_x: &gx,
            fusion,
        };
        let weight = WeightGradArgs {
            g,
            p: self.p,
            x: &self.x,
            grad_out: &self.go,
            grad_weight: &gw,
            fusion,
            bias: None,
        };
        let calls = [
            ("forward", Call::Forward(&forward)),
            ("input gradient", Call::BackwardInput(&input)),
            ("weight gradient", Call::BackwardWeight(&weight)),
        ];
        let mut kernels = Vec::new();
        for (pass, call) in calls {
            for family in FAMILIES {
                if !family.supports(gpu, call.pass(), &g, &self.p) {
                    continue;
                }
                let key = call.key();
                for variant in 0..family.variants(&call) {
                    kernels.push(Kernel {
                        pass,
                        family: family.kind(),
                        variant,
                        variant_name: family.describe_variant(&key, variant),
                    });
                }
            }
        }
        Ok(kernels)
    }

    /// Runs `kernel` and compares its outputs with the oracle at up to [`SAMPLES`] elements
    /// each (outputs are filled with NaN first: an element no thread wrote cannot pass).
    fn run(&self, gpu: &Gpu, kernel: &Kernel) -> Result<(Vec<&'static str>, Vec<Comparison>)> {
        let (xs, ws, ys, p) = (self.xs, self.ws, self.ys, &self.p);
        let nan = |s: [usize; 4]| -> Result<Tensor> {
            let t = Tensor::zeros(gpu, s, Purpose::Scratch)?;
            t.write(gpu, &vec![f32::NAN; t.numel()])?;
            Ok(t)
        };
        let mut rec = Recording::new(gpu);
        rec.set_conv_kernels(kernel.family);
        rec.set_conv_variant(kernel.variant);
        let [x, w, b, go] = &self.host;
        let [xa, wa, ba, goa] = &self.magnitudes;
        let b_host = self.b.as_ref().map(|_| b.as_slice());
        let ba_host = self.b.as_ref().map(|_| ba.as_slice());
        let fusion = Fusion::default();
        let mut outputs: Vec<(&str, Tensor)> = Vec::new();
        match kernel_pass(kernel) {
            Pass::Forward => {
                let y = nan(ys)?;
                conv2d_into(&mut rec, &self.x, &self.w, self.b.as_ref(), p, &y, fusion)?;
                outputs.push(("out", y));
            }
            Pass::BackwardInput => {
                let gx = nan(xs)?;
                conv2d_backward_input_into(&mut rec, &self.x, &self.w, &self.go, p, &gx, fusion)?;
                outputs.push(("grad_x", gx));
            }
            Pass::BackwardWeight => {
                let gw = nan(ws)?;
                let gb = self.b.as_ref().map(|_| nan([ws[0], 1, 1, 1])).transpose()?;
                conv2d_backward_weight_and_bias_into(
                    &mut rec,
                    &self.x,
                    &self.go,
                    p,
                    &gw,
                    gb.as_ref(),
                    fusion,
                )?;
                outputs.push(("grad_weight", gw));
                if let Some(gb) = gb {
                    outputs.push(("grad_bias", gb));
                }
            }
        }
        let ran = rec.kernels().to_vec();
        rec.finish()?;
        let mut comparisons = Vec::new();
        for (name, t) in outputs {
            let got = t.to_vec(gpu)?;
            let s = t.shape();
            let step = (got.len() / SAMPLES).max(1);
            let (mut g, mut want, mut sums) = (Vec::new(), Vec::new(), Vec::new());
            for i in (0..got.len()).step_by(step) {
                let at = reference::index4(i, s);
                let (value, magnitude) = match name {
                    "out" => (
                        reference::conv2d_at(x, xs, w, ws, b_host, p, at),
                        reference::conv2d_at(xa, xs, wa, ws, ba_host, p, at),
                    ),
                    "grad_x" => (
                        reference::conv2d_backward_input_at(go, ys, w, ws, p, at),
                        reference::conv2d_backward_input_at(goa, ys, wa, ws, p, at),
                    ),
                    "grad_weight" => (
                        reference::conv2d_backward_weight_at(x, xs, go, ys, ws, p, at),
                        reference::conv2d_backward_weight_at(xa, xs, goa, ys, ws, p, at),
                    ),
                    _ => (channel_sum(go, ys, at[0]), channel_sum(goa, ys, at[0])),
                };
                g.push(got[i]);
                want.push(value as f32);
                sums.push(magnitude);
            }
            comparisons.push(compare_summed(name, &g, &want, REL, &sums));
        }
        Ok((ran, comparisons))
    }
}

/// The bias gradient of channel `c`: `grad_y` summed over batch and pixels.
fn channel_sum(grad_y: &[f64], ys: [usize; 4], c: usize) -> f64 {
    let plane = ys[2] * ys[3];
    (0..ys[0])
        .map(|n| {
            let start = (n * ys[1] + c) * plane;
            grad_y[start..start + plane].iter().sum::<f64>()
        })
        .sum()
}

fn kernel_pass(kernel: &Kernel) -> Pass {
    match kernel.pass {
        "forward" => Pass::Forward,
        "input gradient" => Pass::BackwardInput,
        _ => Pass::BackwardWeight,
    }
}

/// What [`run`] reports as it goes.
#[derive(Clone, Copy, Debug)]
pub enum Progress<'a> {
    /// This kernel is about to be compiled and run.
    Starting(&'a Kernel),
    /// It ran (or failed): the outcome.
    Done(&'a Outcome),
}

/// Runs every kernel of `problem` (every family that runs each pass, every variant),
/// telling `report` about each before it is compiled and after it ran, and returns how each
/// did. Fails only where the problem itself is invalid or its operands cannot be made.
pub fn run(
    gpu: &Gpu,
    problem: &Problem,
    mut report: impl FnMut(Progress<'_>),
) -> Result<Vec<Outcome>> {
    let operands = Operands::new(gpu, problem)?;
    let mut outcomes = Vec::new();
    for kernel in operands.kernels(gpu)? {
        report(Progress::Starting(&kernel));
        let outcome = match operands.run(gpu, &kernel) {
            Ok((ran, comparisons)) => Outcome {
                kernel,
                ran,
                comparisons,
                error: None,
            },
            Err(e) => Outcome {
                kernel,
                ran: Vec::new(),
                comparisons: Vec::new(),
                error: Some(e.to_string()),
            },
        };
        report(Progress::Done(&outcome));
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// The conv problems of a reference case file: a conv2d case's own, a residual block's two
/// convs, a dense block's layers (3×3, padding 1, as the blocks run them). Other ops have
/// none.
pub fn problems_of_case(file: &crate::weights::TensorFile, name: &str) -> Result<Vec<Problem>> {
    use crate::tensor::shape4;
    let op = file.metadata.get("op").map(String::as_str).unwrap_or("");
    let shape = |t: &str| -> Result<[usize; 4]> { shape4(&file.tensor(t)?.shape) };
    match op {
        "conv2d" => Ok(vec![Problem {
            name: name.to_string(),
            input: shape("x")?,
            weight: shape("weight")?,
            params: crate::cases::conv_params(file)?,
            bias: file.meta_usize("has_bias")? != 0,
        }]),
        "residual_block" | "dense_block" => {
            let [n, _, h, w] = shape("x")?;
            let mut names: Vec<&String> = file
                .tensors
                .keys()
                .filter(|k| k.ends_with("weight") && !k.starts_with("grad"))
                .collect();
            names.sort();
            names
                .into_iter()
                .map(|k| {
                    let ws = shape(k)?;
                    Ok(Problem {
                        name: format!("{name}/{k}"),
                        input: [n, ws[1], h, w],
                        weight: ws,
                        params: Conv2dParams::new(1, ws[2] / 2),
                        bias: true,
                    })
                })
                .collect()
        }
        _ => Ok(Vec::new()),
    }
}
