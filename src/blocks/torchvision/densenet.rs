//! torchvision's DenseNet-BC modules, under their own `state_dict` names: `_DenseBlock`
//! (`denselayer1` … `denselayerN`, each a `_DenseLayer`: norm1-relu1-conv1 1×1 to
//! `bn_size·growth` channels, norm2-relu2-conv2 3×3 to `growth`, its output concatenated
//! after every earlier feature map) and `_Transition` (norm-relu-conv 1×1-AvgPool2d(2, 2)).
//!
//! The block keeps every feature map in one buffer (the input, then each layer's output in
//! the next channels), so a layer reads a channel view of it and writes the next view: no
//! concatenation copy; and by default no normalised copy either (`ConcatStrategy::Shared`,
//! on [`TorchDenseBlock`]).

use super::super::BlockGrads;
use crate::error::{Error, Result};
use crate::memory::Purpose;
use crate::ops::avgpool::{avg_pool2d, avg_pool2d_backward_into};
use crate::ops::batchnorm::{BatchNorm2d, BatchNormSaved};
use crate::ops::concat::copy_view;
use crate::ops::conv2d::{conv2d_into, Conv2dBackward, Conv2dParams, Fusion};
use crate::ops::relu;
use crate::record::Recording;
use crate::tensor::{shape4, Tensor};
use crate::weights::TensorFile;
use crate::ConcatStrategy;
use crate::Gpu;

/// A BN → ReLU → conv (no bias) unit, the repeated piece of both modules.
#[derive(Debug)]
struct NormReluConv {
    norm_name: String,
    conv_name: String,
    bn: BatchNorm2d,
    weight: Tensor,
    params: Conv2dParams,
}

/// What a unit's forward keeps: its input, the BN's statistics and — unless the unit
/// applies them again in backward — the normalised-and-ReLU'd copy the conv read.
#[derive(Debug)]
struct UnitSaved {
    input: Tensor,
    activated: Option<Tensor>,
    bn: BatchNormSaved,
}

impl NormReluConv {
    fn load(
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
    fn parameters(&self, prefix: &str) -> [(String, Tensor); 3] {
        let [conv, weight, bias] = super::unit_parameters(
            prefix,
            (&self.conv_name, &self.weight),
            (&self.norm_name, &self.bn),
        );
        [weight, bias, conv]
    }

    /// Adds the unit's parameters and buffers to `file` under `prefix`.
    fn save(&self, gpu: &Gpu, file: &mut TensorFile, prefix: &str) -> Result<()> {
        super::save_unit(
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
    /// backward applies the saved statistics again.
    fn forward(
        &mut self,
        rec: &mut Recording<'_>,
        x: &Tensor,
        out: Option<&Tensor>,
        training: bool,
        keep: bool,
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
        let bn = self.bn.forward_into(rec, x, &activated, training, keep)?;
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
    fn backward(
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
        // The gradient at the BN's output: through the conv, masked by the ReLU.
        let grad_bn_out = match &saved.activated {
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
                masked
            }
            None => {
                // The statistics applied again (one elementwise pass) into scratch; the conv
                // loads it through ReLU and masks the gradient it stores, as in forward.
                let normed = rec.scratch_tensor(shape)?;
                self.bn
                    .apply_saved_into(rec, &saved.input, &saved.bn, &normed, false)?;
                let masked = rec.scratch_tensor(shape)?;
                Conv2dBackward {
                    x: &normed,
                    weight: &self.weight,
                    grad_out,
                    params: &self.params,
                    fusion: Fusion {
                        relu_input: true,
                        accumulate: false,
                    },
                }
                .record_into(rec, &masked, &gw_conv, None)?;
                rec.scratch_done(normed);
                masked
            }
        };
        let bn_grads = super::batchnorm_backward(
            rec,
            &self.bn,
            &saved.input,
            &saved.bn,
            &grad_bn_out,
            grad_x,
            accumulate,
        )?;
        rec.scratch_done(grad_bn_out);
        Ok(super::unit_grads(
            &self.conv_name,
            &self.norm_name,
            gw_conv,
            bn_grads,
        ))
    }
}

/// One `_DenseLayer`: two BN-ReLU-conv units.
#[derive(Debug)]
struct DenseLayer {
    name: String,
    bottleneck: NormReluConv,
    grow: NormReluConv,
}

/// torchvision's `_DenseBlock` (`densenet121().features.denseblock1` and its kind).
///
/// Its strategy says what a layer keeps of its first BN-ReLU (the one over every earlier
/// feature map, whose output grows with depth): `Naive` keeps the normalised copy (memory
/// quadratic in depth, as PyTorch's default); `Shared` (the default) keeps its statistics
/// alone — the copy lives in scratch while the 1×1 conv reads it, and backward applies the
/// saved statistics again in one elementwise pass (no reduction recomputed) — so the block
/// holds its feature buffer, each layer's bottleneck and its statistics: linear memory.
#[derive(Debug)]
pub struct TorchDenseBlock {
    layers: Vec<DenseLayer>,
    in_channels: usize,
    growth: usize,
    strategy: ConcatStrategy,
    saved: Option<DenseSaved>,
}

#[derive(Debug)]
struct DenseSaved {
    features: Tensor,
    layers: Vec<(UnitSaved, Tensor, UnitSaved)>,
}

impl TorchDenseBlock {
    /// The block of `file` (`denselayer1.norm1.weight`, …, as many layers as it holds).
    pub fn from_state_dict(gpu: &Gpu, file: &TensorFile) -> Result<TorchDenseBlock> {
        let mut layers = Vec::new();
        while file
            .tensors
            .contains_key(&format!("denselayer{}.conv1.weight", layers.len() + 1))
        {
            let name = format!("denselayer{}", layers.len() + 1);
            let own = file.with_prefix(&format!("{name}."));
            let bottleneck = NormReluConv::load(gpu, &own, "norm1", "conv1")
                .map_err(|e| Error::Content(format!("{name}: {e}")))?;
            let grow = NormReluConv::load(gpu, &own, "norm2", "conv2")
                .map_err(|e| Error::Content(format!("{name}: {e}")))?;
            layers.push(DenseLayer {
                name,
                bottleneck,
                grow,
            });
        }
        let Some(first) = layers.first() else {
            return Err(Error::Content(
                "no torchvision dense layer (\"denselayer1.conv1.weight\") in the state_dict"
                    .into(),
            ));
        };
        let in_channels = first.bottleneck.bn.channels();
        let growth = first.grow.weight.shape()[0];
        for (i, l) in layers.iter().enumerate() {
            let (reads, writes) = (l.bottleneck.bn.channels(), l.grow.weight.shape()[0]);
            if reads != in_channels + i * growth || writes != growth {
                return Err(Error::Content(format!(
                    "{} reads {reads} channels and writes {writes}: layer {} of a block of {in_channels} channels growing by {growth} reads {} and writes {growth}",
                    l.name,
                    i + 1,
                    in_channels + i * growth
                )));
            }
        }
        Ok(TorchDenseBlock {
            layers,
            in_channels,
            growth,
            strategy: ConcatStrategy::Shared,
            saved: None,
        })
    }

    /// Forgets what the last forward saved (so another forward may run without a backward).
    pub fn clear_saved(&mut self) {
        self.saved = None;
    }

    /// What each layer keeps of its first BN-ReLU (see the type); `Shared` by default.
    pub fn set_strategy(&mut self, strategy: ConcatStrategy) {
        self.strategy = strategy;
    }

    /// Its strategy.
    pub fn strategy(&self) -> ConcatStrategy {
        self.strategy
    }

    /// Channels of its output: the input's and every layer's.
    pub fn out_channels(&self) -> usize {
        self.in_channels + self.layers.len() * self.growth
    }

    /// The forward: every feature map in one buffer, which is the output.
    pub fn forward(
        &mut self,
        rec: &mut Recording<'_>,
        x: &Tensor,
        training: bool,
    ) -> Result<Tensor> {
        let [n, c, h, w] = x.shape();
        if c != self.in_channels {
            return Err(Error::shape(
                "dense block",
                format!(
                    "the input has {c} channels, the block takes {}",
                    self.in_channels
                ),
            ));
        }
        if self.saved.is_some() {
            return Err(Error::param(
                "dense block",
                "the previous forward's state is still saved: run backward (or clear_saved) first",
            ));
        }
        let features = Tensor::zeros(
            rec.gpu(),
            [n, self.out_channels(), h, w],
            Purpose::Activation,
        )?;
        copy_view(rec, x, &features.channels(0..c)?, false)?;
        let mut saved = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let reads = c + i * self.growth;
            let input = features.channels(0..reads)?;
            let keep = self.strategy == ConcatStrategy::Naive;
            let (bottleneck, s1) = layer
                .bottleneck
                .forward(rec, &input, None, training, keep)?;
            let bottleneck = bottleneck.expect("a new tensor");
            let out = features.channels(reads..reads + self.growth)?;
            let (_, s2) = layer
                .grow
                .forward(rec, &bottleneck, Some(&out), training, true)?;
            saved.push((s1, bottleneck, s2));
        }
        self.saved = Some(DenseSaved {
            features: features.clone(),
            layers: saved,
        });
        Ok(features)
    }

    /// The backward of the last forward: the input's gradient and every parameter's by
    /// `state_dict` name (`denselayer1.conv1.weight`, …).
    pub fn backward(&mut self, rec: &mut Recording<'_>, grad_y: &Tensor) -> Result<BlockGrads> {
        let saved = self
            .saved
            .take()
            .ok_or_else(|| Error::param("dense block", "backward needs a forward first"))?;
        if grad_y.shape() != saved.features.shape() {
            return Err(Error::shape(
                "dense block",
                format!(
                    "the output gradient is {:?}, the output {:?}",
                    grad_y.shape(),
                    saved.features.shape()
                ),
            ));
        }
        // One buffer of every feature map's gradient: each layer adds what it sends back to
        // the maps it read.
        let grads = Tensor::zeros(rec.gpu(), grad_y.shape(), Purpose::Gradient)?;
        copy_view(rec, grad_y, &grads, false)?;
        let mut params = Vec::new();
        for (i, layer) in self.layers.iter().enumerate().rev() {
            let (s1, bottleneck, s2) = &saved.layers[i];
            let reads = self.in_channels + i * self.growth;
            let grad_new = grads.channels(reads..reads + self.growth)?;
            // Scratch: reused by the next layer's once this one's readers are recorded.
            let grad_bottleneck = rec.scratch_tensor(bottleneck.shape())?;
            let mut named = Vec::with_capacity(6);
            named.extend(
                layer
                    .grow
                    .backward(rec, s2, &grad_new, &grad_bottleneck, false)?,
            );
            let grad_input = grads.channels(0..reads)?;
            named.extend(layer.bottleneck.backward(
                rec,
                s1,
                &grad_bottleneck,
                &grad_input,
                true,
            )?);
            rec.scratch_done(grad_bottleneck);
            params.extend(
                named
                    .into_iter()
                    .map(|(n, t)| (format!("{}.{n}", layer.name), t)),
            );
        }
        let grad_x = Tensor::zeros(
            rec.gpu(),
            [
                grad_y.shape()[0],
                self.in_channels,
                grad_y.shape()[2],
                grad_y.shape()[3],
            ],
            Purpose::Gradient,
        )?;
        copy_view(rec, &grads.channels(0..self.in_channels)?, &grad_x, false)?;
        rec.retain(grads);
        Ok(BlockGrads { grad_x, params })
    }

    /// Sets every BatchNorm's `eps` and `momentum`.
    pub fn set_batchnorm_options(&mut self, eps: f32, momentum: Option<f32>) {
        for l in &mut self.layers {
            for unit in [&mut l.bottleneck, &mut l.grow] {
                unit.bn.eps = eps;
                unit.bn.momentum = momentum;
            }
        }
    }

    /// Its `state_dict` under torchvision's names (`denselayer1.norm1.weight`, …,
    /// `denselayer1.conv2.weight`).
    pub fn state_dict(&self, gpu: &Gpu) -> Result<TensorFile> {
        let mut file = TensorFile::default();
        for l in &self.layers {
            for unit in [&l.bottleneck, &l.grow] {
                unit.save(gpu, &mut file, &format!("{}.", l.name))?;
            }
        }
        Ok(file)
    }

    /// Its learned parameters by `state_dict` name, as handles an optimizer updates in place.
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        self.layers
            .iter()
            .flat_map(|l| [&l.bottleneck, &l.grow].map(|u| u.parameters(&format!("{}.", l.name))))
            .flatten()
            .collect()
    }

    /// Every BatchNorm by its `state_dict` name (`denselayer1.norm1`, …).
    pub fn batchnorms(&self) -> Vec<(String, &BatchNorm2d)> {
        self.layers
            .iter()
            .flat_map(|l| {
                [&l.bottleneck, &l.grow].map(|u| (format!("{}.{}", l.name, u.norm_name), &u.bn))
            })
            .collect()
    }
}

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
        if self.saved.is_some() {
            return Err(Error::param(
                "transition",
                "the previous forward's state is still saved: run backward (or clear_saved) first",
            ));
        }
        let (conv_out, saved) = self.unit.forward(rec, x, None, training, true)?;
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
