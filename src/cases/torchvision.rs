//! Cases of `op = torchvision_module` (format: `tests/vectors/bn/README.md`): a PyTorch module
//! under its own `state_dict` names, run forward and backward in `train` or `eval` mode, its
//! output, every gradient and (training) the updated running statistics compared.

use super::{compare, compare_outputs, upload, Comparison, Outputs, Tolerance, CONV_TOLERANCE};
use crate::blocks::{ResNetLayer, TorchDenseBlock, TorchTransition, TorchvisionModule};
use crate::error::{Error, Result};
use crate::memory::Purpose;
use crate::ops::batchnorm::BatchNorm2d;
use crate::record::Recording;
use crate::tensor::Tensor;
use crate::weights::TensorFile;
use crate::Gpu;

/// The modules these cases can name that the engine builds so far.
const SUPPORTED: &[&str] = &[
    "batchnorm2d",
    "resnet<18|34|50|101|152>.layer<1-4>",
    "densenet<depth>.features.denseblock<n>",
    "densenet<depth>.features.transition<n>",
];

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
    let module = meta("module")?;
    if module == "batchnorm2d" {
        return run_batchnorm(gpu, file, training, eps, momentum);
    }
    let mut built = module_of_case(gpu, file)?;
    built.set_batchnorm_options(eps, momentum);
    run_module(gpu, file, built.as_mut(), training)
}

/// The torchvision module a case of `op = torchvision_module` names (not a bare
/// `batchnorm2d`), built from the case's `state_dict` (the file without its inputs,
/// results and gradients); an error listing what is built for any other module.
pub fn module_of_case(gpu: &Gpu, file: &TensorFile) -> Result<Box<dyn TorchvisionModule>> {
    let module = file
        .metadata
        .get("module")
        .map(String::as_str)
        .ok_or_else(|| Error::Content("missing metadata \"module\"".into()))?;
    let params = state_dict(file);
    Ok(if let Some(stride) = resnet_layer_stride(module) {
        Box::new(ResNetLayer::from_state_dict(gpu, &params, stride)?)
    } else if is_densenet(module, "denseblock") {
        Box::new(TorchDenseBlock::from_state_dict(gpu, &params)?)
    } else if is_densenet(module, "transition") {
        Box::new(TorchTransition::from_state_dict(gpu, &params)?)
    } else {
        return Err(Error::Content(format!(
            "module {module:?} is not built yet (supported: {})",
            SUPPORTED.join(", ")
        )));
    })
}

/// Whether `module` is `densenet<depth>.features.<kind><n>`.
fn is_densenet(module: &str, kind: &str) -> bool {
    let mut parts = module.split('.');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some(model), Some("features"), Some(part), None)
            if model.starts_with("densenet")
                && part.strip_prefix(kind).is_some_and(|n| n.parse::<usize>().is_ok())
    )
}

/// The stride of `resnet<depth>.layer<n>`'s first block: 1 for layer1, 2 for the others;
/// `None` for any other module.
fn resnet_layer_stride(module: &str) -> Option<usize> {
    let (model, layer) = module.split_once('.')?;
    let depth = model.strip_prefix("resnet")?;
    if !["18", "34", "50", "101", "152"].contains(&depth) {
        return None;
    }
    match layer {
        "layer1" => Some(1),
        "layer2" | "layer3" | "layer4" => Some(2),
        _ => None,
    }
}

/// The module's parameters and buffers: the file without its inputs, results and gradients.
pub fn state_dict(file: &TensorFile) -> TensorFile {
    file.filter(|k| !k.starts_with("grad_") && !k.starts_with("new_") && !["x", "out"].contains(&k))
}

/// A torchvision module: out, grad_x, every parameter's gradient, and in training every
/// BatchNorm's new running statistics and counter.
fn run_module(
    gpu: &Gpu,
    file: &TensorFile,
    module: &mut dyn TorchvisionModule,
    training: bool,
) -> Result<Vec<Comparison>> {
    let x = upload(gpu, file, "x", Purpose::Activation)?;
    let go = upload(gpu, file, "grad_out", Purpose::Gradient)?;
    let mut rec = Recording::new(gpu);
    let out = module.forward(&mut rec, &x, training)?;
    let grads = module.backward(&mut rec, &go)?;
    rec.finish()?;
    let mut outputs: Outputs = vec![
        ("out".into(), "out".into(), out),
        ("grad_x".into(), "grad_x".into(), grads.grad_x),
    ];
    for (name, t) in grads.params {
        let g = format!("grad_{name}");
        outputs.push((g.clone(), g, t));
    }
    let mut counters = Vec::new();
    if training {
        for (name, bn) in module.batchnorms() {
            for (stat, t) in [
                ("running_mean", &bn.running_mean),
                ("running_var", &bn.running_var),
            ] {
                let n = format!("new_{name}.{stat}");
                outputs.push((n.clone(), n, t.clone()));
            }
            let n = format!("new_{name}.num_batches_tracked");
            let want = file.integer(&n)?;
            counters.push(compare(
                &n,
                &[bn.num_batches_tracked as f32],
                &[want as f32],
                Tolerance::Exact,
            ));
        }
    }
    // Every result the file holds must have been computed.
    for name in file.tensors.keys() {
        let result = name.starts_with("grad_") && name != "grad_out" || name.starts_with("new_");
        if result && !outputs.iter().any(|(_, n, _)| n == name) {
            return Err(Error::Content(format!(
                "the case holds {name:?}, which the engine's module did not compute"
            )));
        }
    }
    let mut comparisons = compare_outputs(gpu, file, outputs, CONV_TOLERANCE, &[])?;
    comparisons.extend(counters);
    Ok(comparisons)
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
