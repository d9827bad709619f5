//! Reference cases: a `.safetensors` file holds one op's inputs and PyTorch's float64 results
//! (format: `tests/vectors/README.md`). [`run_case`] runs the op forward and backward on the
//! GPU and compares every output and gradient with the stored numbers.

use std::path::Path;

use crate::error::{Error, Result};
use crate::memory::Purpose;
use crate::ops::{self, conv2d::Conv2dParams};
use crate::record::Recording;
use crate::tensor::{shape4, Tensor};
use crate::weights::{HostTensor, TensorFile};
use crate::Gpu;

mod compare;
mod torchvision;

pub use torchvision::{module_of_case, state_dict as case_state_dict};

use compare::with_shape;
pub use compare::{
    compare, compare_shaped, compare_summed, Comparison, Tolerance, CONV_TOLERANCE, SUM_ROUNDING,
};

/// A case's outcome: the comparisons, or why it could not run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CaseReport {
    /// Case name (file stem).
    pub case: String,
    /// The `op` metadata, if it could be read.
    pub op: String,
    /// One entry per output and gradient.
    pub comparisons: Vec<Comparison>,
    /// Why the case failed before any comparison (unreadable file, unknown op, bad shapes).
    pub error: Option<String>,
}

impl CaseReport {
    /// Whether the case ran and every comparison passed.
    pub fn passed(&self) -> bool {
        self.error.is_none()
            && !self.comparisons.is_empty()
            && self.comparisons.iter().all(|c| c.passed)
    }
}

/// Loads `path` and runs it; never fails: every problem becomes the report's `error`.
pub fn run_case_file(gpu: &Gpu, path: &Path) -> CaseReport {
    let case = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let mut report = CaseReport {
        case,
        op: String::new(),
        comparisons: Vec::new(),
        error: None,
    };
    match TensorFile::read(path) {
        Err(e) => report.error = Some(e.to_string()),
        Ok(file) => {
            report.op = file.metadata.get("op").cloned().unwrap_or_default();
            match run_case(gpu, &file) {
                Ok(c) => report.comparisons = c,
                Err(e) => report.error = Some(e.to_string()),
            }
        }
    }
    report
}

/// Output tensors of a GPU run: (label shown in reports, reference tensor name, tensor).
type Outputs = Vec<(String, String, Tensor)>;

/// Names outputs after their reference tensors.
fn named(list: Vec<(String, Tensor)>) -> Outputs {
    list.into_iter().map(|(n, t)| (n.clone(), n, t)).collect()
}

/// Runs a loaded case on the GPU and compares every output and gradient.
pub fn run_case(gpu: &Gpu, file: &TensorFile) -> Result<Vec<Comparison>> {
    let op = file
        .metadata
        .get("op")
        .ok_or_else(|| Error::Content("missing metadata \"op\"".into()))?
        .as_str();
    let (outputs, tol) = match op {
        "conv2d" => (run_conv2d(gpu, file)?, CONV_TOLERANCE),
        "relu" => (run_relu(gpu, file)?, Tolerance::Exact),
        "add" => (run_add(gpu, file)?, Tolerance::Exact),
        "concat" => (run_concat(gpu, file)?, Tolerance::Exact),
        "residual_block" => (run_residual(gpu, file)?, CONV_TOLERANCE),
        "dense_block" => (run_dense(gpu, file)?, CONV_TOLERANCE),
        "torchvision_module" => return torchvision::run(gpu, file),
        other => return Err(Error::Content(format!("unsupported op {other:?}"))),
    };
    // A conv's outputs are sums: their rounding grows with the magnitude of what they sum.
    let sums = match op {
        "conv2d" => conv2d_abs_sums(file)?,
        _ => Vec::new(),
    };
    compare_outputs(gpu, file, outputs, tol, &sums)
}

/// Reads back each output and compares it with the file's tensor of its name (a sum within
/// the rounding of its terms where `sums` has them).
fn compare_outputs(
    gpu: &Gpu,
    file: &TensorFile,
    outputs: Outputs,
    tol: Tolerance,
    sums: &[(&'static str, Vec<f64>)],
) -> Result<Vec<Comparison>> {
    let mut comparisons = Vec::with_capacity(outputs.len());
    for (label, name, tensor) in outputs {
        let want = file.tensor(&name)?;
        let got = tensor.to_vec(gpu)?;
        let summed = sums.iter().find(|(n, _)| *n == name);
        comparisons.push(match (summed, tol) {
            (Some((_, abs)), Tolerance::Relative(rel)) => {
                let c = compare_summed(&label, &got, &want.data, rel, abs);
                with_shape(c, tensor.shape(), want)
            }
            _ => compare_shaped(&label, &got, tensor.shape(), want, tol),
        });
    }
    Ok(comparisons)
}

/// For each output of a conv2d case, the sum of the magnitudes of the terms of each
/// element: the f64 reference run on the inputs' absolute values.
fn conv2d_abs_sums(file: &TensorFile) -> Result<Vec<(&'static str, Vec<f64>)>> {
    use crate::reference;
    let p = conv_params(file)?;
    let abs = |name: &str| -> Result<(Vec<f64>, [usize; 4])> {
        let t = file.tensor(name)?;
        Ok((
            t.data.iter().map(|&v| (v as f64).abs()).collect(),
            shape4(&t.shape)?,
        ))
    };
    let (x, xs) = abs("x")?;
    let (w, ws) = abs("weight")?;
    let (go, ys) = abs("grad_out")?;
    let b = if file.meta_usize("has_bias")? != 0 {
        Some(abs("bias")?.0)
    } else {
        None
    };
    Ok(vec![
        (
            "out",
            reference::conv2d(&x, xs, &w, ws, b.as_deref(), &p)?.0,
        ),
        (
            "grad_x",
            reference::conv2d_backward_input(&go, xs, &w, ws, &p)?,
        ),
        (
            "grad_weight",
            reference::conv2d_backward_weight(&x, xs, &go, ws, &p)?,
        ),
        ("grad_bias", reference::conv2d_backward_bias(&go, ys)),
    ])
}

/// A block case's parameters (`*.weight`, `*.bias`), without its inputs, results and
/// gradients (`x`, `out`, `grad_*`): what a strict `from_state_dict` takes.
fn parameters(file: &TensorFile) -> TensorFile {
    file.filter(|k| !k.starts_with("grad_") && (k.ends_with(".weight") || k.ends_with(".bias")))
}

/// Uploads a named tensor of the case.
pub fn upload(gpu: &Gpu, file: &TensorFile, name: &str, purpose: Purpose) -> Result<Tensor> {
    let t: &HostTensor = file.tensor(name)?;
    let named = |e: Error| Error::Content(format!("{name}: {e}"));
    let shape = shape4(&t.shape).map_err(named)?;
    Tensor::from_slice(gpu, shape, &t.data, purpose).map_err(named)
}

/// Conv parameters from a case's metadata.
pub fn conv_params(file: &TensorFile) -> Result<Conv2dParams> {
    let m = |k: &str| file.meta_usize(k);
    Ok(Conv2dParams {
        stride: [m("stride_h")?, m("stride_w")?],
        padding: [m("pad_h")?, m("pad_w")?],
        dilation: [m("dilation_h")?, m("dilation_w")?],
        groups: m("groups")?,
    })
}

fn run_conv2d(gpu: &Gpu, file: &TensorFile) -> Result<Outputs> {
    let p = conv_params(file)?;
    let has_bias = file.meta_usize("has_bias")? != 0;
    let x = upload(gpu, file, "x", Purpose::Activation)?;
    let w = upload(gpu, file, "weight", Purpose::Parameter)?;
    let b = if has_bias {
        Some(upload(gpu, file, "bias", Purpose::Parameter)?)
    } else {
        None
    };
    let go = upload(gpu, file, "grad_out", Purpose::Gradient)?;
    let run = || -> Result<Outputs> {
        let mut rec = Recording::new(gpu);
        let out = ops::conv2d::conv2d(&mut rec, &x, &w, b.as_ref(), &p)?;
        let g = ops::conv2d::conv2d_backward(&mut rec, &x, &w, has_bias, &go, &p)?;
        rec.finish()?;
        let mut outs = vec![
            ("out".to_string(), out),
            ("grad_x".to_string(), g.grad_x),
            ("grad_weight".to_string(), g.grad_weight),
        ];
        if let Some(gb) = g.grad_bias {
            outs.push(("grad_bias".to_string(), gb));
        }
        Ok(named(outs))
    };
    run()
}

fn run_relu(gpu: &Gpu, file: &TensorFile) -> Result<Outputs> {
    let x = upload(gpu, file, "x", Purpose::Activation)?;
    let go = upload(gpu, file, "grad_out", Purpose::Gradient)?;
    let run = || -> Result<Outputs> {
        let mut rec = Recording::new(gpu);
        let out = ops::relu::relu(&mut rec, &x)?;
        let gx = ops::relu::relu_backward(&mut rec, &x, &go)?;
        rec.finish()?;
        Ok(named(vec![("out".into(), out), ("grad_x".into(), gx)]))
    };
    run()
}

fn run_add(gpu: &Gpu, file: &TensorFile) -> Result<Outputs> {
    let a = upload(gpu, file, "a", Purpose::Activation)?;
    let b = upload(gpu, file, "b", Purpose::Activation)?;
    let go = upload(gpu, file, "grad_out", Purpose::Gradient)?;
    let run = || -> Result<Outputs> {
        let mut rec = Recording::new(gpu);
        let out = ops::add::add(&mut rec, &a, &b)?;
        // The backward of an add routes grad_out to both operands: accumulate it into each
        // operand's (here fresh, zero) gradient buffer.
        let ga = Tensor::zeros(gpu, a.shape(), Purpose::Gradient)?;
        let gb = Tensor::zeros(gpu, b.shape(), Purpose::Gradient)?;
        ops::add::accumulate(&mut rec, &go, &ga)?;
        ops::add::accumulate(&mut rec, &go, &gb)?;
        rec.finish()?;
        Ok(named(vec![
            ("out".into(), out),
            ("grad_a".into(), ga),
            ("grad_b".into(), gb),
        ]))
    };
    run()
}

fn run_concat(gpu: &Gpu, file: &TensorFile) -> Result<Outputs> {
    let n = file.meta_usize("n_inputs")?;
    if file.meta_usize("dim")? != 1 {
        return Err(Error::Content(
            "only concatenation along channels (dim = 1) is supported".into(),
        ));
    }
    let xs = (0..n)
        .map(|i| upload(gpu, file, &format!("x{i}"), Purpose::Activation))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let go = upload(gpu, file, "grad_out", Purpose::Gradient)?;
    let run = || -> Result<Outputs> {
        let mut rec = Recording::new(gpu);
        let refs: Vec<&Tensor> = xs.iter().collect();
        let out = ops::concat::concat(&mut rec, &refs)?;
        let channels: Vec<usize> = xs.iter().map(|x| x.shape()[1]).collect();
        let grads = ops::concat::concat_backward(&mut rec, &go, &channels)?;
        rec.finish()?;
        let mut outs = vec![("out".to_string(), out)];
        outs.extend(
            grads
                .into_iter()
                .enumerate()
                .map(|(i, g)| (format!("grad_x{i}"), g)),
        );
        Ok(named(outs))
    };
    run()
}

/// Runs a block forward and backward in one recording each; returns out, grad_x and the
/// parameter gradients under their reference names (`grad_<param>`).
fn block_outputs(
    gpu: &Gpu,
    x: &Tensor,
    grad_out: &Tensor,
    label: &str,
    forward: &mut dyn FnMut(&mut Recording<'_>, &Tensor) -> Result<Tensor>,
    backward: &mut dyn FnMut(&mut Recording<'_>, &Tensor) -> Result<crate::BlockGrads>,
) -> Result<Outputs> {
    let mut rec = Recording::new(gpu);
    let out = forward(&mut rec, x)?;
    rec.submit()?;
    let mut rec = Recording::new(gpu);
    let grads = backward(&mut rec, grad_out)?;
    rec.finish()?;
    let tag = |n: &str| {
        if label.is_empty() {
            n.to_string()
        } else {
            format!("{label}:{n}")
        }
    };
    let mut outs = vec![
        (tag("out"), "out".to_string(), out),
        (tag("grad_x"), "grad_x".to_string(), grads.grad_x),
    ];
    for (name, t) in grads.params {
        let reference = format!("grad_{name}");
        outs.push((tag(&reference), reference, t));
    }
    Ok(outs)
}

fn run_residual(gpu: &Gpu, file: &TensorFile) -> Result<Outputs> {
    let variant_name = file
        .metadata
        .get("variant")
        .ok_or_else(|| Error::Content("missing metadata \"variant\"".into()))?;
    let variant = crate::ResidualVariant::from_name(variant_name)?;
    let x = upload(gpu, file, "x", Purpose::Activation)?;
    let go = upload(gpu, file, "grad_out", Purpose::Gradient)?;
    // The block's geometry is fixed by its variant; the file must describe the same one.
    let (kernel, stride, pad) = match variant {
        crate::ResidualVariant::SkipConnection => (2, 2, 2),
        crate::ResidualVariant::Basic => (3, 1, 1),
    };
    for conv in ["conv1", "conv2"] {
        let got = (
            file.meta_usize(&format!("{conv}_kernel"))?,
            file.meta_usize(&format!("{conv}_stride"))?,
            file.meta_usize(&format!("{conv}_pad"))?,
        );
        if got != (kernel, stride, pad) {
            return Err(Error::Content(format!(
                "{conv} is kernel/stride/pad {got:?}, the {variant_name} block has {:?}",
                (kernel, stride, pad)
            )));
        }
    }
    let params = parameters(file);
    let mut block = crate::ResidualBlock::from_state_dict(gpu, variant, x.shape()[1], &params)?;
    let block = std::cell::RefCell::new(&mut block);
    block_outputs(
        gpu,
        &x,
        &go,
        "",
        &mut |rec, x| block.borrow_mut().forward(rec, x),
        &mut |rec, g| block.borrow_mut().backward(rec, g),
    )
}

fn run_dense(gpu: &Gpu, file: &TensorFile) -> Result<Outputs> {
    let (c0, k, layers) = (
        file.meta_usize("in_channels")?,
        file.meta_usize("growth")?,
        file.meta_usize("layers")?,
    );
    for (key, want) in [("kernel", 3), ("stride", 1), ("pad", 1)] {
        if file.meta_usize(key)? != want {
            return Err(Error::Content(format!(
                "dense layers are 3x3, stride 1, pad 1; the file has {key} = {}",
                file.meta_usize(key)?
            )));
        }
    }
    let x = upload(gpu, file, "x", Purpose::Activation)?;
    let go = upload(gpu, file, "grad_out", Purpose::Gradient)?;
    let mut outs = Vec::new();
    let params = parameters(file);
    // Both concatenation strategies must reproduce PyTorch.
    for strategy in crate::ConcatStrategy::ALL {
        let mut block = crate::DenseBlock::from_state_dict(gpu, c0, k, layers, strategy, &params)?;
        let block = std::cell::RefCell::new(&mut block);
        outs.extend(block_outputs(
            gpu,
            &x,
            &go,
            strategy.name(),
            &mut |rec, x| block.borrow_mut().forward(rec, x),
            &mut |rec, g| block.borrow_mut().backward(rec, g),
        )?);
    }
    Ok(outs)
}
