//! The BN → ReLU → conv unit both DenseNet-BC modules repeat, and what its forward keeps.

use crate::blocks::{ConvLayer, Init};
use crate::error::{Error, Result};
use crate::memory::Purpose;
use crate::ops::batchnorm::{BatchNorm2d, BatchNormSaved};
use crate::ops::conv2d::{
    conv2d_backward_input_into, conv2d_backward_weight_into, conv2d_into, Conv2dBackward,
    Conv2dParams, Fusion,
};
use crate::ops::relu;
use crate::record::Recording;
use crate::tensor::{shape4, Tensor};
use crate::weights::TensorFile;
use crate::Gpu;

/// A BN → ReLU → conv (no bias) unit, the repeated piece of both modules.
#[derive(Debug)]
pub(super) struct NormReluConv {
    pub(super) norm_name: String,
    pub(super) conv_name: String,
    pub(super) bn: BatchNorm2d,
    pub(super) weight: Tensor,
    pub(super) params: Conv2dParams,
}

/// What a unit's forward keeps: its input, the BN's statistics and — unless the unit
/// applies them again in backward — the normalised-and-ReLU'd copy the conv read.
#[derive(Debug)]
pub(super) struct UnitSaved {
    pub(super) input: Tensor,
    pub(super) activated: Option<Tensor>,
    pub(super) bn: BatchNormSaved,
}

impl NormReluConv {
    /// A unit with fresh parameters: BatchNorm at PyTorch's initial values, the conv's weight
    /// drawn as `init` says from the stream of its `state_dict` name `{prefix}{conv_name}`.
    pub(super) fn init(
        gpu: &Gpu,
        (prefix, norm_name, conv_name): (&str, &str, &str),
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        init: Init,
    ) -> Result<NormReluConv> {
        let params = Conv2dParams::new(1, kernel / 2);
        let shape = [out_channels, in_channels, kernel, kernel];
        let conv = ConvLayer::init(gpu, &format!("{prefix}{conv_name}"), shape, params, init)?;
        Ok(NormReluConv {
            norm_name: norm_name.into(),
            conv_name: conv_name.into(),
            bn: BatchNorm2d::new(gpu, in_channels)?,
            weight: conv.weight,
            params,
        })
    }

    pub(super) fn load(
        gpu: &Gpu,
        file: &TensorFile,
        norm_name: &str,
        conv_name: &str,
    ) -> Result<NormReluConv> {
        let bn = BatchNorm2d::from_state_dict(gpu, &file.with_prefix(&format!("{norm_name}.")))?;
        let w = file.tensor(&format!("{conv_name}.weight"))?;
        let shape = shape4(&w.shape)?;
        if shape[1] != bn.channels() || shape[2] != shape[3] || shape[2] % 2 == 0 {
            return Err(Error::Content(format!(
                "{conv_name}.weight has shape {shape:?} after {norm_name} of {} channels: expected a square odd kernel over them",
                bn.channels()
            )));
        }
        Ok(NormReluConv {
            norm_name: norm_name.into(),
            conv_name: conv_name.into(),
            weight: Tensor::from_slice(gpu, shape, &w.data, Purpose::Parameter)?,
            params: Conv2dParams::new(1, shape[2] / 2),
            bn,
        })
    }

    /// The unit's learned parameters under `prefix`, in torchvision's order (the norm's,
    /// then the conv's).
    pub(super) fn parameters(&self, prefix: &str) -> [(String, Tensor); 3] {
        let [conv, weight, bias] = super::super::unit_parameters(
            prefix,
            (&self.conv_name, &self.weight),
            (&self.norm_name, &self.bn),
        );
        [weight, bias, conv]
    }

    /// Adds the unit's parameters and buffers to `file` under `prefix`.
    pub(super) fn save(&self, gpu: &Gpu, file: &mut TensorFile, prefix: &str) -> Result<()> {
        super::super::save_unit(
            gpu,
            file,
            prefix,
            (&self.conv_name, &self.weight),
            (&self.norm_name, &self.bn),
        )
    }

    /// conv(relu(bn(x))) into `out` (a view is fine), or into a new tensor. With `keep` the
    /// normalised input is kept for backward; without, it lives in scratch only while the
    /// conv reads it (the BN's output before ReLU, which the conv applies as it loads), and
    /// backward applies the saved statistics again. `stats`: in training, a table that holds
    /// the batch statistics of `x`'s channels from a column on (computed once for every unit
    /// that reads them: `batch_statistics_into`), so the BN finishes without reducing.
    pub(super) fn forward(
        &mut self,
        rec: &mut Recording<'_>,
        x: &Tensor,
        out: Option<&Tensor>,
        training: bool,
        keep: bool,
        stats: Option<(&Tensor, usize)>,
    ) -> Result<(Option<Tensor>, UnitSaved)> {
        let (activated, fusion) = if keep {
            let t = Tensor::zeros(rec.gpu(), x.shape(), Purpose::Activation)?;
            (t, Fusion::default())
        } else {
            let t = rec.scratch_tensor(x.shape())?;
            let relu_on_load = Fusion {
                relu_input: true,
                accumulate: false,
            };
            (t, relu_on_load)
        };
        let bn = match stats {
            Some(table) if training => self
                .bn
                .forward_with_statistics_into(rec, x, table, &activated, keep)?,
            _ => self.bn.forward_into(rec, x, &activated, training, keep)?,
        };
        // Into the caller's view, or into a new tensor.
        let fresh = match out {
            Some(_) => None,
            None => {
                let shape = self.params.output_shape(x.shape(), self.weight.shape())?;
                Some(Tensor::zeros(rec.gpu(), shape, Purpose::Activation)?)
            }
        };
        let dst = out.or(fresh.as_ref()).expect("an output");
        conv2d_into(
            rec,
            &activated,
            &self.weight,
            None,
            &self.params,
            dst,
            fusion,
        )?;
        let activated = if keep {
            Some(activated)
        } else {
            rec.scratch_done(activated);
            None
        };
        let saved = UnitSaved {
            input: x.clone(),
            activated,
            bn,
        };
        Ok((fresh, saved))
    }

    /// The unit's backward from its conv's output gradient: the input's gradient into
    /// `grad_x` (=|+= by `accumulate`), the parameters' returned by name.
    pub(super) fn backward(
        &self,
        rec: &mut Recording<'_>,
        saved: &UnitSaved,
        grad_out: &Tensor,
        grad_x: &Tensor,
        accumulate: bool,
    ) -> Result<[(String, Tensor); 3]> {
        let gpu = rec.gpu();
        let gw_conv = Tensor::zeros(gpu, self.weight.shape(), Purpose::Gradient)?;
        let shape = saved.input.shape();
        // The gradient at the BN's output (Naive: masked by the ReLU here), or at the ReLU's
        // output (Shared: the BN's kernels mask it).
        let (grad_bn_out, relu_masks) = match &saved.activated {
            Some(activated) => {
                let grad_activated = rec.scratch_tensor(shape)?;
                Conv2dBackward {
                    x: activated,
                    weight: &self.weight,
                    grad_out,
                    params: &self.params,
                    fusion: Fusion::default(),
                }
                .record_into(rec, &grad_activated, &gw_conv, None)?;
                // The ReLU's output has the sign of its input: it masks as well.
                let masked = rec.scratch_tensor(shape)?;
                relu::relu_backward_into(rec, activated, &grad_activated, &masked, false)?;
                rec.scratch_done(grad_activated);
                (masked, false)
            }
            None => {
                // The statistics applied again (one elementwise pass) into scratch, for the
                // weight gradient alone (which loads it through ReLU, as the forward did);
                // the input gradient then takes its place, and the BN masks it by the sign
                // it recomputes: one input-wide scratch tensor at a time.
                let normed = rec.scratch_tensor(shape)?;
                self.bn
                    .apply_saved_into(rec, &saved.input, &saved.bn, &normed, false)?;
                let relu_input = Fusion {
                    relu_input: true,
                    accumulate: false,
                };
                conv2d_backward_weight_into(
                    rec,
                    &normed,
                    grad_out,
                    &self.params,
                    &gw_conv,
                    relu_input,
                )?;
                rec.scratch_done(normed);
                let grad_relu_out = rec.scratch_tensor(shape)?;
                conv2d_backward_input_into(
                    rec,
                    &saved.input,
                    &self.weight,
                    grad_out,
                    &self.params,
                    &grad_relu_out,
                    Fusion::default(),
                )?;
                (grad_relu_out, true)
            }
        };
        let bn_grads = super::super::batchnorm_backward(
            rec,
            &self.bn,
            &saved.input,
            &saved.bn,
            &grad_bn_out,
            grad_x,
            accumulate,
            relu_masks,
        )?;
        rec.scratch_done(grad_bn_out);
        Ok(super::super::unit_grads(
            &self.conv_name,
            &self.norm_name,
            gw_conv,
            bn_grads,
        ))
    }
}
