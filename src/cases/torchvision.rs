//! Cases of `op = torchvision_module` (format: `tests/vectors/bn/README.md`): a PyTorch module
//! under its own `state_dict` names, run forward and backward in `train` or `eval` mode, its
//! output, every gradient and (training) the updated running statistics compared.

use super::{compare, compare_outputs, upload, Comparison, Outputs, Tolerance, CONV_TOLERANCE};
use crate::error::{Error, Result};
use crate::memory::Purpose;
use crate::ops::batchnorm::BatchNorm2d;
use crate::record::Recording;
use crate::tensor::Tensor;
use crate::weights::TensorFile;
use crate::Gpu;

/// The modules these cases can name that the engine builds so far.
const SUPPORTED: &[&str] = &["batchnorm2d"];

/// Runs the case's module and compares what it computed.
pub(super) fn run(gpu: &Gpu, file: &TensorFile) -> Result<Vec<Comparison>> {
    let meta = |k: &str| {
        file.metadata
            .get(k)
            .map(String::as_str)
            .ok_or_else(|| Error::Content(format!("missing metadata {k:?}")))
    };
    let training = match meta("mode")? {
        "train" => true,
        "eval" => false,
        other => {
            return Err(Error::Content(format!(
                "metadata \"mode\" = {other:?} (expected train or eval)"
            )))
        }
    };
    let number = |k: &str| -> Result<f32> {
        let v = meta(k)?;
        v.trim()
            .parse()
            .map_err(|_| Error::Content(format!("metadata {k:?} = {v:?} is not a number")))
    };
    let eps = number("eps")?;
    // `None`: PyTorch's cumulative average.
    let momentum = match meta("momentum")?.trim() {
        "None" => None,
        _ => Some(number("momentum")?),
    };
    match meta("module")? {
        "batchnorm2d" => run_batchnorm(gpu, file, training, eps, momentum),
        other => Err(Error::Content(format!(
            "module {other:?} is not built yet (supported: {})",
            SUPPORTED.join(", ")
        ))),
    }
}

/// A bare `torch.nn.BatchNorm2d`: out, grad_x, grad_weight, grad_bias, and in training the
/// new running statistics and `num_batches_tracked` (exactly).
fn run_batchnorm(
    gpu: &Gpu,
    file: &TensorFile,
    training: bool,
    eps: f32,
    momentum: Option<f32>,
) -> Result<Vec<Comparison>> {
    let mut bn = BatchNorm2d::from_state_dict(gpu, file)?;
    bn.eps = eps;
    bn.momentum = momentum;
    let x = upload(gpu, file, "x", Purpose::Activation)?;
    let go = upload(gpu, file, "grad_out", Purpose::Gradient)?;
    let zeros = |shape| Tensor::zeros(gpu, shape, Purpose::Gradient);
    let (gx, gw, gb) = (
        zeros(x.shape())?,
        zeros(bn.weight.shape())?,
        zeros(bn.weight.shape())?,
    );
    let mut rec = Recording::new(gpu);
    let (out, saved) = bn.forward(&mut rec, &x, training)?;
    bn.backward_into(&mut rec, &x, &saved, &go, &gx, &gw, &gb, false)?;
    rec.finish()?;
    let mut outputs: Outputs = vec![
        ("out".into(), "out".into(), out),
        ("grad_x".into(), "grad_x".into(), gx),
        ("grad_weight".into(), "grad_weight".into(), gw),
        ("grad_bias".into(), "grad_bias".into(), gb),
    ];
    let mut counters = Vec::new();
    if training {
        outputs.push((
            "new_running_mean".into(),
            "new_running_mean".into(),
            bn.running_mean.clone(),
        ));
        outputs.push((
            "new_running_var".into(),
            "new_running_var".into(),
            bn.running_var.clone(),
        ));
        let want = file.integer("new_num_batches_tracked")?;
        counters.push(compare(
            "new_num_batches_tracked",
            &[bn.num_batches_tracked as f32],
            &[want as f32],
            Tolerance::Exact,
        ));
    }
    let mut comparisons = compare_outputs(gpu, file, outputs, CONV_TOLERANCE, &[])?;
    comparisons.extend(counters);
    Ok(comparisons)
}
