//! torchvision's `_Transition`: norm-relu-conv 1×1-AvgPool2d(2, 2).

use super::super::super::BlockGrads;
use super::unit::{NormReluConv, UnitSaved};
use crate::error::{Error, Result};
use crate::memory::Purpose;
use crate::ops::avgpool::{avg_pool2d, avg_pool2d_backward_into};
use crate::ops::batchnorm::BatchNorm2d;
use crate::record::Recording;
use crate::tensor::Tensor;
use crate::weights::TensorFile;
use crate::Gpu;

/// torchvision's `_Transition`: norm-relu-conv 1×1-AvgPool2d(2, 2).
#[derive(Debug)]
pub struct TorchTransition {
    unit: NormReluConv,
    saved: Option<(UnitSaved, Tensor)>,
}

impl TorchTransition {
    /// The transition of `file` (`norm.*`, `conv.weight`).
    pub fn from_state_dict(gpu: &Gpu, file: &TensorFile) -> Result<TorchTransition> {
        Ok(TorchTransition {
            unit: NormReluConv::load(gpu, file, "norm", "conv")?,
            saved: None,
        })
    }

    /// The forward: the conv's output pooled 2 × 2.
    pub fn forward(
        &mut self,
        rec: &mut Recording<'_>,
        x: &Tensor,
        training: bool,
    ) -> Result<Tensor> {
        super::super::nothing_saved(&self.saved, "transition")?;
        let (conv_out, saved) = self.unit.forward(rec, x, None, training, true, None)?;
        let conv_out = conv_out.expect("a new tensor");
        let out = avg_pool2d(rec, &conv_out, 2, 2)?;
        self.saved = Some((saved, conv_out));
        Ok(out)
    }

    /// The backward of the last forward: the input's gradient and the parameters' by name.
    pub fn backward(&mut self, rec: &mut Recording<'_>, grad_y: &Tensor) -> Result<BlockGrads> {
        let (saved, conv_out) = self
            .saved
            .take()
            .ok_or_else(|| Error::param("transition", "backward needs a forward first"))?;
        let grad_conv = Tensor::zeros(rec.gpu(), conv_out.shape(), Purpose::Gradient)?;
        avg_pool2d_backward_into(rec, grad_y, &grad_conv, 2, 2, false)?;
        let grad_x = Tensor::zeros(rec.gpu(), saved.input.shape(), Purpose::Gradient)?;
        let params = self
            .unit
            .backward(rec, &saved, &grad_conv, &grad_x, false)?;
        rec.retain(grad_conv);
        rec.retain(conv_out);
        Ok(BlockGrads {
            grad_x,
            params: params.into(),
        })
    }

    /// Forgets what the last forward saved (so another forward may run without a backward).
    pub fn clear_saved(&mut self) {
        self.saved = None;
    }

    /// Sets its BatchNorm's `eps` and `momentum`.
    pub fn set_batchnorm_options(&mut self, eps: f32, momentum: Option<f32>) {
        self.unit.bn.eps = eps;
        self.unit.bn.momentum = momentum;
    }

    /// Its `state_dict` under torchvision's names (`norm.*`, `conv.weight`).
    pub fn state_dict(&self, gpu: &Gpu) -> Result<TensorFile> {
        let mut file = TensorFile::default();
        self.unit.save(gpu, &mut file, "")?;
        Ok(file)
    }

    /// Its learned parameters by `state_dict` name, as handles an optimizer updates in place.
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        self.unit.parameters("").into()
    }

    /// Its BatchNorm, by `state_dict` name (`norm`).
    pub fn batchnorms(&self) -> Vec<(String, &BatchNorm2d)> {
        vec![(self.unit.norm_name.clone(), &self.unit.bn)]
    }
}
