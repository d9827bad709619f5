//! torchvision's `_DenseBlock`: `denselayer1` … `denselayerN`, every feature map in one buffer.

use super::super::super::BlockGrads;
use super::unit::{NormReluConv, UnitSaved};
use super::DenseBcShape;
use crate::blocks::Init;
use crate::error::{Error, Result};
use crate::memory::Purpose;
use crate::ops::batchnorm::{batch_statistics_into, BatchNorm2d};
use crate::ops::concat::copy_view;
use crate::record::Recording;
use crate::tensor::Tensor;
use crate::weights::TensorFile;
use crate::ConcatStrategy;
use crate::Gpu;

/// One `_DenseLayer`: two BN-ReLU-conv units.
#[derive(Debug)]
struct DenseLayer {
    name: String,
    bottleneck: NormReluConv,
    grow: NormReluConv,
}

/// torchvision's `_DenseBlock` (`densenet121().features.denseblock1` and its kind).
///
/// Its strategy says what a layer keeps of its BN-ReLUs (the first one's output is as wide as
/// every earlier feature map, so it grows with depth): `Naive` keeps the normalised copies
/// (memory quadratic in depth, as PyTorch's default); `Shared` (the default) keeps their
/// statistics alone — each copy lives in scratch while its conv reads it through ReLU, and
/// backward applies the saved statistics again in one elementwise pass (no reduction and no
/// convolution recomputed) — so the block holds its feature buffer, each layer's bottleneck
/// (the 1×1 conv's output, kept rather than recomputed) and its statistics: linear memory,
/// exactly [`DenseBcShape::analytic_memory`](super::DenseBcShape::analytic_memory).
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
        Self::assemble(layers)
    }

    /// A block as torchvision's `_DenseBlock(num_layers, num_input_features, bn_size,
    /// growth_rate, drop_rate=0)` makes it: layer `i` (from 1) reads `in_channels + (i-1) ·
    /// growth` channels, its 1×1 conv writes `bn_size · growth` and its 3×3 conv `growth`;
    /// BatchNorms at PyTorch's initial values, conv weights drawn as `init` says
    /// (`Init::He` is torchvision's `kaiming_normal_`), each from the stream of its
    /// `state_dict` name.
    pub fn with_init(
        gpu: &Gpu,
        in_channels: usize,
        growth: usize,
        bn_size: usize,
        layers: usize,
        init: Init,
    ) -> Result<TorchDenseBlock> {
        if in_channels == 0 || growth == 0 || bn_size == 0 || layers == 0 {
            return Err(Error::param(
                "dense block",
                format!("in_channels ({in_channels}), growth ({growth}), bn_size ({bn_size}) and layers ({layers}) must all be at least 1"),
            ));
        }
        let wide = bn_size * growth;
        let layers = (1..=layers)
            .map(|i| {
                let name = format!("denselayer{i}");
                let prefix = format!("{name}.");
                let reads = in_channels + (i - 1) * growth;
                Ok(DenseLayer {
                    bottleneck: NormReluConv::init(
                        gpu,
                        (&prefix, "norm1", "conv1"),
                        reads,
                        wide,
                        1,
                        init,
                    )?,
                    grow: NormReluConv::init(
                        gpu,
                        (&prefix, "norm2", "conv2"),
                        wide,
                        growth,
                        3,
                        init,
                    )?,
                    name,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Self::assemble(layers)
    }

    /// Checks that the layers grow the feature maps as a block does (layer `i` reads every
    /// map before it and writes `growth` more) and makes the block (strategy `Shared`).
    fn assemble(layers: Vec<DenseLayer>) -> Result<TorchDenseBlock> {
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

    /// Its shape on an input of `n` images of `h` × `w`: what its memory is counted from.
    fn shape(&self, n: usize, h: usize, w: usize) -> DenseBcShape {
        DenseBcShape {
            in_channels: self.in_channels,
            growth: self.growth,
            // torchvision's bottleneck is bn_size · growth wide; a loaded one of another
            // width is counted at the next multiple (reserving no less than it needs).
            bn_size: self.layers[0].grow.bn.channels().div_ceil(self.growth),
            layers: self.layers.len(),
            batch: n,
            height: h,
            width: w,
        }
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
        super::super::nothing_saved(&self.saved, "dense block")?;
        let features = Tensor::zeros(
            rec.gpu(),
            [n, self.out_channels(), h, w],
            Purpose::Activation,
        )?;
        copy_view(rec, x, &features.channels(0..c)?, false)?;
        // In training every layer's first BN reads every earlier feature map, whose batch
        // statistics are the same for all of them: a table of every map's, each computed
        // once, as the map is written. (Before the reservation below, so it takes a small
        // buffer of its own.)
        let table = match training {
            true => Some(rec.scratch_tensor([2, self.out_channels(), 1, 1])?),
            false => None,
        };
        if let Some(table) = &table {
            batch_statistics_into(rec, &features.channels(0..c)?, table, 0)?;
        }
        let keep = self.strategy == ConcatStrategy::Naive;
        // Shared's normalised inputs, one at a time: the widest once, not every size.
        let (forward_scratch, _) = self.shape(n, h, w).reserved_scratch(self.strategy);
        rec.reserve_scratch(&forward_scratch)?;
        let depth = self.layers.len();
        let mut saved = Vec::with_capacity(depth);
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let reads = c + i * self.growth;
            let input = features.channels(0..reads)?;
            let (bottleneck, s1) = layer.bottleneck.forward(
                rec,
                &input,
                None,
                training,
                keep,
                table.as_ref().map(|t| (t, 0)),
            )?;
            let bottleneck = bottleneck.expect("a new tensor");
            let out = features.channels(reads..reads + self.growth)?;
            let (_, s2) = layer
                .grow
                .forward(rec, &bottleneck, Some(&out), training, keep, None)?;
            saved.push((s1, bottleneck, s2));
            if let Some(table) = table.as_ref().filter(|_| i + 1 < depth) {
                batch_statistics_into(rec, &out, table, reads)?;
            }
        }
        if let Some(table) = table {
            rec.scratch_done(table);
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
        // What a layer's backward holds at once, reserved at its size (see the shape's).
        let [n, _, h, w] = grad_y.shape();
        let (_, backward_scratch) = self.shape(n, h, w).reserved_scratch(self.strategy);
        rec.reserve_scratch(&backward_scratch)?;
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
