//! torchvision's blocks under their own module structure and `state_dict` names, so a
//! `state_dict` PyTorch saved (`safetensors.torch.save_file(module.state_dict())`) loads
//! unchanged: the ResNet layers (`resnet.rs`: `BasicBlock`, `Bottleneck`, `downsample`) and
//! DenseNet-BC's dense block and transition (`densenet.rs`). Every convolution has no bias
//! and every BatchNorm is affine, as torchvision builds them.

pub mod densenet;
pub mod resnet;

pub use densenet::{DenseBcShape, TorchDenseBlock, TorchTransition};
pub use resnet::{ResNetBlock, ResNetLayer};

use super::BlockGrads;
use crate::error::Result;
use crate::memory::Purpose;
use crate::ops::batchnorm::{BatchNorm2d, BatchNormSaved};
use crate::record::Recording;
use crate::tensor::Tensor;
use crate::weights::{HostTensor, TensorFile};
use crate::Gpu;

/// What every torchvision module here does: a forward in training or eval mode, the backward
/// of the last forward, and its BatchNorms.
pub trait TorchvisionModule {
    /// The forward (`training`: batch statistics, running statistics updated), keeping what
    /// the backward needs.
    fn forward(&mut self, rec: &mut Recording<'_>, x: &Tensor, training: bool) -> Result<Tensor>;
    /// The backward of the last forward: the input's gradient and every parameter's, by
    /// `state_dict` name.
    fn backward(&mut self, rec: &mut Recording<'_>, grad_y: &Tensor) -> Result<BlockGrads>;
    /// Every BatchNorm, by `state_dict` name (its running statistics and counter).
    fn batchnorms(&self) -> Vec<(String, &BatchNorm2d)>;
    /// Sets every BatchNorm's `eps` and `momentum` (`None`: a cumulative average).
    fn set_batchnorm_options(&mut self, eps: f32, momentum: Option<f32>);
    /// Its `state_dict` under torchvision's names, as PyTorch's `module.state_dict()` holds
    /// it (running statistics and `num_batches_tracked` as they are now): what
    /// `TensorFile::write` saves for `safetensors.torch.load_file` to read back.
    fn state_dict(&self, gpu: &Gpu) -> Result<TensorFile>;
    /// Its learned parameters by `state_dict` name (conv weights, BatchNorm weights and
    /// biases; not the running statistics, which the forward keeps), as handles an optimizer
    /// updates in place (`Optimizer::step` with `backward`'s gradients).
    fn parameters(&self) -> Vec<(String, Tensor)>;
    /// Forgets what the last forward saved (so another forward may run without a backward).
    fn clear_saved(&mut self);
}

/// Implements [`TorchvisionModule`] by the type's own methods of those names.
macro_rules! torchvision_module {
    ($($t:ty),*) => {$(
        impl TorchvisionModule for $t {
            fn forward(&mut self, rec: &mut Recording<'_>, x: &Tensor, training: bool) -> Result<Tensor> {
                <$t>::forward(self, rec, x, training)
            }
            fn backward(&mut self, rec: &mut Recording<'_>, grad_y: &Tensor) -> Result<BlockGrads> {
                <$t>::backward(self, rec, grad_y)
            }
            fn batchnorms(&self) -> Vec<(String, &BatchNorm2d)> {
                <$t>::batchnorms(self)
            }
            fn set_batchnorm_options(&mut self, eps: f32, momentum: Option<f32>) {
                <$t>::set_batchnorm_options(self, eps, momentum)
            }
            fn state_dict(&self, gpu: &Gpu) -> Result<TensorFile> {
                <$t>::state_dict(self, gpu)
            }
            fn parameters(&self) -> Vec<(String, Tensor)> {
                <$t>::parameters(self)
            }
            fn clear_saved(&mut self) {
                <$t>::clear_saved(self)
            }
        }
    )*};
}

torchvision_module!(ResNetLayer, TorchDenseBlock, TorchTransition);

/// Refuses a forward while the last one's state is saved: a backward meant for the first
/// input would otherwise differentiate the second.
fn nothing_saved<T>(saved: &Option<T>, op: &'static str) -> Result<()> {
    match saved {
        Some(_) => Err(crate::error::Error::param(
            op,
            "the previous forward's state is still saved: run backward (or clear_saved) first",
        )),
        None => Ok(()),
    }
}

/// `bn`'s backward (of a forward that read `x` and saved `saved`): `grad_x` (=|+= by
/// `accumulate`), and its weight and bias gradients in new tensors (zeroed first, so adding
/// to them is the same as writing). With `relu`, `grad_out` is the gradient after a ReLU
/// on the BN's output, which the BN's kernels mask by its sign.
#[allow(clippy::too_many_arguments)]
fn batchnorm_backward(
    rec: &mut Recording<'_>,
    bn: &BatchNorm2d,
    x: &Tensor,
    saved: &BatchNormSaved,
    grad_out: &Tensor,
    grad_x: &Tensor,
    accumulate: bool,
    relu: bool,
) -> Result<[Tensor; 2]> {
    let c = [bn.channels(), 1, 1, 1];
    let gw = Tensor::zeros(rec.gpu(), c, Purpose::Gradient)?;
    let gb = Tensor::zeros(rec.gpu(), c, Purpose::Gradient)?;
    if relu {
        bn.relu_backward_into(rec, x, saved, grad_out, grad_x, &gw, &gb, accumulate)?;
    } else {
        bn.backward_into(rec, x, saved, grad_out, grad_x, &gw, &gb, accumulate)?;
    }
    Ok([gw, gb])
}

/// A conv → BN unit's three parameter gradients by `state_dict` name.
fn unit_grads(
    conv: &str,
    norm: &str,
    grad_conv: Tensor,
    [grad_weight, grad_bias]: [Tensor; 2],
) -> [(String, Tensor); 3] {
    [
        (format!("{conv}.weight"), grad_conv),
        (format!("{norm}.weight"), grad_weight),
        (format!("{norm}.bias"), grad_bias),
    ]
}

/// Adds a conv's weight (`<prefix><conv>.weight`, OIHW) and its BatchNorm
/// (`<prefix><norm>.*`) to `file`.
fn save_unit(
    gpu: &Gpu,
    file: &mut TensorFile,
    prefix: &str,
    (conv, weight): (&str, &Tensor),
    (norm, bn): (&str, &BatchNorm2d),
) -> Result<()> {
    file.tensors.insert(
        format!("{prefix}{conv}.weight"),
        HostTensor {
            shape: weight.shape().to_vec(),
            data: weight.to_vec(gpu)?,
        },
    );
    bn.save_into(gpu, &format!("{prefix}{norm}."), file)
}

/// A conv → BN unit's learned parameters by `state_dict` name, under `prefix`.
fn unit_parameters(
    prefix: &str,
    (conv, weight): (&str, &Tensor),
    (norm, bn): (&str, &BatchNorm2d),
) -> [(String, Tensor); 3] {
    [
        (format!("{prefix}{conv}.weight"), weight.clone()),
        (format!("{prefix}{norm}.weight"), bn.weight.clone()),
        (format!("{prefix}{norm}.bias"), bn.bias.clone()),
    ]
}
