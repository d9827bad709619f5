//! torchvision's ResNet blocks, under their own `state_dict` names: `BasicBlock` (conv1-bn1-
//! relu-conv2-bn2) and `Bottleneck` (conv1 1×1-bn1-relu-conv2 3×3-bn2-relu-conv3 1×1-bn3),
//! each plus a shortcut — the input, or `downsample.0` (a 1×1 conv with the block's stride)
//! and `downsample.1` (BN) where the block changes shape — then add and ReLU. A
//! [`ResNetLayer`] is `resnet18().layer1` … `resnet50().layer4`: a sequence of them named
//! `0.`, `1.`, ….
//!
//! Both blocks are one thing here: stages of conv (no bias) → BN (→ ReLU), the BN-ReLU one
//! pass (`BatchNorm2d::forward_into` with `relu`), the stride on the first 3×3 conv (as
//! torchvision, "ResNet v1.5").

use super::super::BlockGrads;
use crate::error::{Error, Result};
use crate::memory::Purpose;
use crate::ops::batchnorm::{BatchNorm2d, BatchNormSaved};
use crate::ops::conv2d::{conv2d, Conv2dBackward, Conv2dParams, Fusion};
use crate::ops::{add, relu};
use crate::record::Recording;
use crate::tensor::{shape4, Tensor};
use crate::weights::TensorFile;
use crate::Gpu;

/// One conv → BN (→ ReLU) of a block: the conv `conv<i>` (or `downsample.0`) and its BN
/// `bn<i>` (or `downsample.1`).
#[derive(Debug)]
struct Stage {
    conv_name: String,
    bn_name: String,
    weight: Tensor,
    params: Conv2dParams,
    bn: BatchNorm2d,
    relu: bool,
}

/// What a stage's forward keeps for its backward.
#[derive(Debug)]
struct StageSaved {
    input: Tensor,
    conv_out: Tensor,
    out: Tensor,
    bn: BatchNormSaved,
}

impl Stage {
    /// The stage `conv_name`/`bn_name` of `file` (names without the layer's prefix).
    fn load(
        gpu: &Gpu,
        file: &TensorFile,
        conv_name: &str,
        bn_name: &str,
        stride: usize,
        relu: bool,
    ) -> Result<Stage> {
        let w = file.tensor(&format!("{conv_name}.weight"))?;
        let shape = shape4(&w.shape)?;
        let [_, _, kh, kw] = shape;
        if kh != kw || kh % 2 == 0 {
            return Err(Error::Content(format!(
                "{conv_name}.weight has shape {shape:?}: torchvision's blocks use square odd kernels"
            )));
        }
        let weight = Tensor::from_slice(gpu, shape, &w.data, Purpose::Parameter)?;
        let bn = BatchNorm2d::from_state_dict(gpu, &file.with_prefix(&format!("{bn_name}.")))?;
        if bn.channels() != shape[0] {
            return Err(Error::Content(format!(
                "{bn_name} has {} channels, {conv_name} writes {}",
                bn.channels(),
                shape[0]
            )));
        }
        Ok(Stage {
            conv_name: conv_name.into(),
            bn_name: bn_name.into(),
            weight,
            params: Conv2dParams {
                stride: [stride, stride],
                padding: [kh / 2, kh / 2],
                dilation: [1, 1],
                groups: 1,
            },
            bn,
            relu,
        })
    }

    fn forward(
        &mut self,
        rec: &mut Recording<'_>,
        x: &Tensor,
        training: bool,
    ) -> Result<StageSaved> {
        let conv_out = conv2d(rec, x, &self.weight, None, &self.params)?;
        let out = Tensor::zeros(rec.gpu(), conv_out.shape(), Purpose::Activation)?;
        let bn = self
            .bn
            .forward_into(rec, &conv_out, &out, training, self.relu)?;
        Ok(StageSaved {
            input: x.clone(),
            conv_out,
            out,
            bn,
        })
    }

    /// The backward of the stage from the gradient of its output (`grad_out`, before its
    /// ReLU's mask): the input's gradient into `grad_x` (=|+= by `accumulate`); returns the
    /// parameters', by `state_dict` name within the block.
    fn backward(
        &self,
        rec: &mut Recording<'_>,
        saved: &StageSaved,
        grad_out: &Tensor,
        grad_x: &Tensor,
        accumulate: bool,
    ) -> Result<[(String, Tensor); 3]> {
        let gpu = rec.gpu();
        let masked;
        let grad_bn_out = if self.relu {
            // The ReLU's output has the sign of its input: it masks as well.
            masked = relu::relu_backward(rec, &saved.out, grad_out)?;
            &masked
        } else {
            grad_out
        };
        let grad_conv_out = Tensor::zeros(gpu, saved.conv_out.shape(), Purpose::Gradient)?;
        let bn_grads = super::batchnorm_backward(
            rec,
            &self.bn,
            &saved.conv_out,
            &saved.bn,
            grad_bn_out,
            &grad_conv_out,
            false,
            false,
        )?;
        let gw_conv = Tensor::zeros(gpu, self.weight.shape(), Purpose::Gradient)?;
        Conv2dBackward {
            x: &saved.input,
            weight: &self.weight,
            grad_out: &grad_conv_out,
            params: &self.params,
            fusion: Fusion {
                relu_input: false,
                accumulate,
            },
        }
        .record_into(rec, grad_x, &gw_conv, None)?;
        rec.retain(grad_conv_out);
        Ok(super::unit_grads(
            &self.conv_name,
            &self.bn_name,
            gw_conv,
            bn_grads,
        ))
    }
}

/// A torchvision `BasicBlock` or `Bottleneck` (which one, its stages say).
#[derive(Debug)]
pub struct ResNetBlock {
    stages: Vec<Stage>,
    downsample: Option<Stage>,
    saved: Option<BlockSaved>,
}

#[derive(Debug)]
struct BlockSaved {
    stages: Vec<StageSaved>,
    downsample: Option<StageSaved>,
    out: Tensor,
}

impl ResNetBlock {
    /// The block of `file` (names without the layer's prefix: `conv1.weight`, `bn1.*`, …,
    /// `downsample.0.weight`, `downsample.1.*`): a `Bottleneck` where it has `conv3`, else a
    /// `BasicBlock`; `stride` on its first 3×3 conv and its downsample.
    pub fn from_state_dict(gpu: &Gpu, file: &TensorFile, stride: usize) -> Result<ResNetBlock> {
        let bottleneck = file.tensors.contains_key("conv3.weight");
        let count = if bottleneck { 3 } else { 2 };
        let mut stages = Vec::with_capacity(count);
        for i in 1..=count {
            // The stride rides on the first 3×3: BasicBlock's conv1, Bottleneck's conv2.
            let strided = if bottleneck { i == 2 } else { i == 1 };
            stages.push(Stage::load(
                gpu,
                file,
                &format!("conv{i}"),
                &format!("bn{i}"),
                if strided { stride } else { 1 },
                i < count,
            )?);
        }
        let downsample = if file.tensors.contains_key("downsample.0.weight") {
            Some(Stage::load(
                gpu,
                file,
                "downsample.0",
                "downsample.1",
                stride,
                false,
            )?)
        } else {
            None
        };
        Ok(ResNetBlock {
            stages,
            downsample,
            saved: None,
        })
    }

    /// Whether it is a `Bottleneck`.
    pub fn is_bottleneck(&self) -> bool {
        self.stages.len() == 3
    }

    /// The forward (`training`: batch statistics, running statistics updated), keeping what
    /// the backward needs.
    pub fn forward(
        &mut self,
        rec: &mut Recording<'_>,
        x: &Tensor,
        training: bool,
    ) -> Result<Tensor> {
        super::nothing_saved(&self.saved, "torchvision block")?;
        let mut stages = Vec::with_capacity(self.stages.len());
        let mut h = x.clone();
        for stage in &mut self.stages {
            let s = stage.forward(rec, &h, training)?;
            h = s.out.clone();
            stages.push(s);
        }
        let downsample = match &mut self.downsample {
            Some(d) => Some(d.forward(rec, x, training)?),
            None => None,
        };
        let shortcut = downsample.as_ref().map_or(x, |d| &d.out);
        if shortcut.shape() != h.shape() {
            return Err(Error::shape(
                "torchvision block",
                format!(
                    "the residual path gives {:?} and the shortcut {:?}: a block that changes shape needs a downsample",
                    h.shape(),
                    shortcut.shape()
                ),
            ));
        }
        let sum = add::add(rec, &h, shortcut)?;
        let out = relu::relu(rec, &sum)?;
        rec.retain(sum);
        self.saved = Some(BlockSaved {
            stages,
            downsample,
            out: out.clone(),
        });
        Ok(out)
    }

    /// The backward of the last forward: the input's gradient into `grad_x` (overwritten),
    /// the parameters' (named with `prefix`) appended to `grads`.
    pub fn backward_into(
        &mut self,
        rec: &mut Recording<'_>,
        grad_y: &Tensor,
        grad_x: &Tensor,
        prefix: &str,
        grads: &mut Vec<(String, Tensor)>,
    ) -> Result<()> {
        let saved = self
            .saved
            .take()
            .ok_or_else(|| Error::param("torchvision block", "backward needs a forward first"))?;
        let gpu = rec.gpu();
        let grad_sum = relu::relu_backward(rec, &saved.out, grad_y)?;
        let mut grad = grad_sum.clone();
        for (i, stage) in self.stages.iter().enumerate().rev() {
            let s = &saved.stages[i];
            let into = if i == 0 {
                grad_x.clone()
            } else {
                Tensor::zeros(gpu, s.input.shape(), Purpose::Gradient)?
            };
            let named = stage.backward(rec, s, &grad, &into, false)?;
            grads.extend(named.map(|(n, t)| (format!("{prefix}{n}"), t)));
            rec.retain(grad);
            grad = into;
        }
        match (&self.downsample, &saved.downsample) {
            (Some(d), Some(s)) => {
                let named = d.backward(rec, s, &grad_sum, grad_x, true)?;
                grads.extend(named.map(|(n, t)| (format!("{prefix}{n}"), t)));
            }
            _ => add::accumulate(rec, &grad_sum, grad_x)?,
        }
        rec.retain(grad_sum);
        Ok(())
    }

    /// Its BatchNorms by `state_dict` name (without a prefix).
    fn batchnorms(&self) -> impl Iterator<Item = (&str, &BatchNorm2d)> {
        self.stages
            .iter()
            .chain(self.downsample.iter())
            .map(|s| (s.bn_name.as_str(), &s.bn))
    }

    /// Forgets what the last forward saved.
    pub fn clear_saved(&mut self) {
        self.saved = None;
    }
}

/// `resnet18().layer1` and its kind: torchvision ResNet blocks in sequence, named `0.`, `1.`, ….
#[derive(Debug)]
pub struct ResNetLayer {
    blocks: Vec<ResNetBlock>,
}

impl ResNetLayer {
    /// The layer of `file` (a `state_dict` of `resnetXX().layerN`): blocks `0.`, `1.`, … as
    /// long as the file has them, the first with `stride` (torchvision: 1 for layer1, 2 for
    /// the others).
    pub fn from_state_dict(gpu: &Gpu, file: &TensorFile, stride: usize) -> Result<ResNetLayer> {
        let mut blocks = Vec::new();
        while file
            .tensors
            .contains_key(&format!("{}.conv1.weight", blocks.len()))
        {
            let i = blocks.len();
            let own = file.with_prefix(&format!("{i}."));
            let block = ResNetBlock::from_state_dict(gpu, &own, if i == 0 { stride } else { 1 })
                .map_err(|e| Error::Content(format!("block {i}: {e}")))?;
            blocks.push(block);
        }
        if blocks.is_empty() {
            let names: Vec<&String> = file.tensors.keys().take(8).collect();
            return Err(Error::Content(format!(
                "no torchvision ResNet block (\"0.conv1.weight\") in a state_dict holding {names:?}"
            )));
        }
        Ok(ResNetLayer { blocks })
    }

    /// Forgets what the last forward saved (so another forward may run without a backward).
    pub fn clear_saved(&mut self) {
        self.blocks.iter_mut().for_each(ResNetBlock::clear_saved);
    }

    /// Its blocks.
    pub fn blocks(&self) -> &[ResNetBlock] {
        &self.blocks
    }

    /// The forward through every block.
    pub fn forward(
        &mut self,
        rec: &mut Recording<'_>,
        x: &Tensor,
        training: bool,
    ) -> Result<Tensor> {
        let mut h = x.clone();
        for block in &mut self.blocks {
            h = block.forward(rec, &h, training)?;
        }
        Ok(h)
    }

    /// The backward of the last forward: the input's gradient and every parameter's, by
    /// `state_dict` name (`0.conv1.weight`, `0.bn1.weight`, …).
    pub fn backward(&mut self, rec: &mut Recording<'_>, grad_y: &Tensor) -> Result<BlockGrads> {
        let gpu = rec.gpu();
        let mut params = Vec::new();
        let mut grad = grad_y.clone();
        for i in (0..self.blocks.len()).rev() {
            let input_shape = match &self.blocks[i].saved {
                Some(s) => s.stages[0].input.shape(),
                None => {
                    return Err(Error::param(
                        "torchvision layer",
                        "backward needs a forward first",
                    ))
                }
            };
            let grad_x = Tensor::zeros(gpu, input_shape, Purpose::Gradient)?;
            self.blocks[i].backward_into(rec, &grad, &grad_x, &format!("{i}."), &mut params)?;
            grad = grad_x;
        }
        Ok(BlockGrads {
            grad_x: grad,
            params,
        })
    }

    /// Sets every BatchNorm's `eps` and `momentum` (`None`: a cumulative average).
    pub fn set_batchnorm_options(&mut self, eps: f32, momentum: Option<f32>) {
        for block in &mut self.blocks {
            for stage in block.stages.iter_mut().chain(block.downsample.iter_mut()) {
                stage.bn.eps = eps;
                stage.bn.momentum = momentum;
            }
        }
    }

    /// Its `state_dict` under torchvision's names (`0.conv1.weight`, `0.bn1.running_mean`,
    /// `0.bn1.num_batches_tracked`, …, `0.downsample.0.weight`, …).
    pub fn state_dict(&self, gpu: &Gpu) -> Result<TensorFile> {
        let mut file = TensorFile::default();
        for (i, block) in self.blocks.iter().enumerate() {
            for stage in block.stages.iter().chain(block.downsample.iter()) {
                super::save_unit(
                    gpu,
                    &mut file,
                    &format!("{i}."),
                    (&stage.conv_name, &stage.weight),
                    (&stage.bn_name, &stage.bn),
                )?;
            }
        }
        Ok(file)
    }

    /// Its learned parameters by `state_dict` name, as handles an optimizer updates in place.
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        let mut all = Vec::new();
        for (i, block) in self.blocks.iter().enumerate() {
            for stage in block.stages.iter().chain(block.downsample.iter()) {
                all.extend(super::unit_parameters(
                    &format!("{i}."),
                    (&stage.conv_name, &stage.weight),
                    (&stage.bn_name, &stage.bn),
                ));
            }
        }
        all
    }

    /// Every BatchNorm by its full `state_dict` name (`0.bn1`, `1.downsample.1`, …): their
    /// running statistics and `num_batches_tracked`.
    pub fn batchnorms(&self) -> Vec<(String, &BatchNorm2d)> {
        self.blocks
            .iter()
            .enumerate()
            .flat_map(|(i, b)| b.batchnorms().map(move |(n, bn)| (format!("{i}.{n}"), bn)))
            .collect()
    }
}
