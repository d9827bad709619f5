//! Dense (DenseNet) blocks: every layer sees the channel concatenation of the block input and
//! all earlier layers' outputs.
//!
//! `feat_0 = x`; layer `i` computes `feat_{i+1} = conv3x3_i(relu(concat(feat_0 … feat_i)))`
//! (padding 1, `in + i·k` → `k` channels); the output is `concat(feat_0 … feat_L)`.
//!
//! Two ways to schedule the concatenation, chosen at construction:
//!
//! * [`ConcatStrategy::Naive`] does what a framework without views does: each layer copies the
//!   feature maps so far into a new buffer, applies ReLU into another, and convolves that;
//!   backward mirrors it with fresh buffers per layer. Stored activations grow
//!   quadratically with depth.
//! * [`ConcatStrategy::Shared`] preallocates one buffer for every feature map of the block.
//!   Each layer reads its input as a view of the channels before it (ReLU applied as the conv
//!   loads it) and writes its output straight into its own channel slice: no copies, no ReLU
//!   buffers. Backward uses one gradient buffer the same way: each layer's input gradient
//!   (masked by the ReLU as it is stored) accumulates into the earlier channels. Memory grows
//!   linearly with depth.

mod backward;

use super::{forward_missing, BlockGrads, ConvLayer, Init};
use crate::error::{Error, Result};
use crate::memory::Purpose;
use crate::ops::conv2d::{self, Conv2dParams, Fusion};
use crate::ops::{concat, relu};
use crate::record::Recording;
use crate::tensor::Tensor;
use crate::weights::TensorFile;
use crate::Gpu;

/// How a dense block concatenates its feature maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConcatStrategy {
    /// Copy into a new buffer per layer (quadratic memory).
    Naive,
    /// One preallocated buffer, channel views, no copies (linear memory).
    Shared,
}

impl ConcatStrategy {
    /// Both strategies.
    pub const ALL: [ConcatStrategy; 2] = [ConcatStrategy::Naive, ConcatStrategy::Shared];

    /// `naive` or `shared`.
    pub fn name(self) -> &'static str {
        match self {
            ConcatStrategy::Naive => "naive",
            ConcatStrategy::Shared => "shared",
        }
    }
}

/// The analytic memory of a dense block's forward+backward, per purpose (see
/// [`DenseBlock::analytic_peak_bytes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "oracle", derive(serde::Serialize))]
pub struct AnalyticMemory {
    /// Feature maps: input, per-layer buffers, output.
    pub activation: u64,
    /// grad_out, feature-map gradients, parameter gradients.
    pub gradient: u64,
    /// Weights and biases.
    pub parameter: u64,
}

impl AnalyticMemory {
    /// All purposes together.
    pub fn total(&self) -> u64 {
        self.activation + self.gradient + self.parameter
    }
}

/// What the forward keeps for backward.
#[derive(Debug)]
enum Saved {
    Naive {
        /// feat_0 … feat_L.
        feats: Vec<Tensor>,
        /// Per layer: the concatenated input and its ReLU.
        cats: Vec<Tensor>,
        relus: Vec<Tensor>,
    },
    Shared {
        /// All feature maps: channels [0, in) are x, then k channels per layer.
        features: Tensor,
    },
}

/// A dense block with its parameters and, after `forward`, what `backward` needs.
#[derive(Debug)]
pub struct DenseBlock {
    in_channels: usize,
    growth: usize,
    strategy: ConcatStrategy,
    layers: Vec<ConvLayer>,
    saved: Option<Saved>,
}

fn layer_shape(in_channels: usize, growth: usize, i: usize) -> [usize; 4] {
    [growth, in_channels + i * growth, 3, 3]
}

impl DenseBlock {
    /// A block of `layers` layers with growth `growth` on `in_channels` input channels,
    /// with freshly initialised parameters (PyTorch's default init, seed 0).
    pub fn new(
        gpu: &Gpu,
        in_channels: usize,
        growth: usize,
        layers: usize,
        strategy: ConcatStrategy,
    ) -> Result<DenseBlock> {
        Self::with_init(gpu, in_channels, growth, layers, strategy, Init::Torch(0))
    }

    /// As [`DenseBlock::new`], with parameters drawn as `init` says.
    pub fn with_init(
        gpu: &Gpu,
        in_channels: usize,
        growth: usize,
        layers: usize,
        strategy: ConcatStrategy,
        init: Init,
    ) -> Result<DenseBlock> {
        Self::build(
            in_channels,
            growth,
            layers,
            strategy,
            |_, name, shape, p| ConvLayer::init(gpu, name, shape, p, init),
        )
    }

    /// Every parameter with its `state_dict` name (`layer0.weight`, …), in order. The
    /// tensors share the block's buffers: an optimizer updates them in place.
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        self.layers.iter().flat_map(|c| c.parameters()).collect()
    }

    /// A block whose parameters come from a PyTorch `state_dict` (`layer{i}.weight`,
    /// `layer{i}.bias`, and nothing else, as PyTorch's strict `load_state_dict`); the sizes
    /// are checked against `in_channels`, `growth`, `layers`.
    pub fn from_state_dict(
        gpu: &Gpu,
        in_channels: usize,
        growth: usize,
        layers: usize,
        strategy: ConcatStrategy,
        file: &TensorFile,
    ) -> Result<DenseBlock> {
        let expected: Vec<String> = (0..layers)
            .flat_map(|i| [format!("layer{i}.weight"), format!("layer{i}.bias")])
            .collect();
        file.check_fits(
            &format!("a dense block of {layers} layers"),
            &expected,
            true,
        )?;
        Self::build(
            in_channels,
            growth,
            layers,
            strategy,
            |_, name, shape, p| ConvLayer::load(gpu, file, name, shape, p),
        )
    }

    /// Checks the sizes and makes layer `i` (named `layer{i}`) with `make`.
    fn build(
        in_channels: usize,
        growth: usize,
        layers: usize,
        strategy: ConcatStrategy,
        make: impl Fn(usize, &str, [usize; 4], Conv2dParams) -> Result<ConvLayer>,
    ) -> Result<DenseBlock> {
        Self::check(in_channels, growth, layers)?;
        let layers = (0..layers)
            .map(|i| {
                let shape = layer_shape(in_channels, growth, i);
                make(i, &format!("layer{i}"), shape, Conv2dParams::new(1, 1))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DenseBlock {
            in_channels,
            growth,
            strategy,
            layers,
            saved: None,
        })
    }

    fn check(in_channels: usize, growth: usize, layers: usize) -> Result<()> {
        if in_channels == 0 || growth == 0 || layers == 0 {
            return Err(Error::param(
                "dense block",
                format!("in_channels ({in_channels}), growth ({growth}) and layers ({layers}) must all be at least 1"),
            ));
        }
        Ok(())
    }

    /// Writes the parameters as a safetensors `state_dict`.
    pub fn save(&self, gpu: &Gpu, path: &std::path::Path) -> Result<()> {
        let mut file = TensorFile::default();
        for l in &self.layers {
            l.save(gpu, &mut file)?;
        }
        file.write(path)
    }

    /// The concatenation strategy.
    pub fn strategy(&self) -> ConcatStrategy {
        self.strategy
    }

    /// Channels of the block's output: `in_channels + layers * growth`.
    pub fn out_channels(&self) -> usize {
        self.in_channels + self.layers.len() * self.growth
    }

    /// The bytes this block's forward and backward must hold at once for an input of batch
    /// `n` and `h`×`w` pixels, with `S = 4·n·h·w` bytes per channel, `C_i = in + i·k` the
    /// input channels of layer `i`, `C_L = in + L·k` and `P` the parameter bytes
    /// (`4·Σ_i (k·C_i·9 + k)`); the input `x` and `grad_out` are counted, as the caller holds
    /// them through the pass:
    ///
    /// * `Shared`: `S·(in + 3·C_L) + 2P` — x, the feature buffer, grad_out, the gradient
    ///   buffer, parameters and their gradients. Linear in depth.
    /// * `Naive`: `S·(in + 4·ΣC_i + L·k + 3·C_L) + 2P` — additionally every layer's
    ///   concatenated input and its ReLU (forward), their gradients (backward), the layer
    ///   outputs and a concatenated output. Quadratic in depth (`ΣC_i = L·in + k·L(L−1)/2`).
    pub fn analytic_peak_bytes(
        strategy: ConcatStrategy,
        in_channels: usize,
        growth: usize,
        layers: usize,
        n: usize,
        h: usize,
        w: usize,
    ) -> AnalyticMemory {
        let s = 4 * (n * h * w) as u64;
        let (c0, k, l) = (in_channels as u64, growth as u64, layers as u64);
        let sum_ci: u64 = (0..l).map(|i| c0 + i * k).sum();
        let c_l = c0 + l * k;
        // Each weight and bias is its own buffer, and the allocator makes none under 16 bytes.
        let buffer = |elems: u64| (4 * elems).max(16);
        let params: u64 = (0..l)
            .map(|i| buffer(k * (c0 + i * k) * 9) + buffer(k))
            .sum();
        let (activation, gradient) = match strategy {
            ConcatStrategy::Shared => (s * (c0 + c_l), s * 2 * c_l + params),
            ConcatStrategy::Naive => (
                s * (c0 + 2 * sum_ci + l * k + c_l),
                s * (2 * c_l + 2 * sum_ci) + params,
            ),
        };
        AnalyticMemory {
            activation,
            gradient,
            parameter: params,
        }
    }

    /// Records the forward pass and keeps what backward needs. Returns the output
    /// `concat(x, f_1 … f_L)` (for `Shared`, the shared buffer itself).
    ///
    /// Refused while the state saved by an earlier `forward` has not been used by
    /// [`DenseBlock::backward`] (a backward meant for the first input would silently
    /// differentiate the second); for evaluation use [`DenseBlock::forward_inference`],
    /// which saves nothing, or drop the saved state with [`DenseBlock::clear_saved`].
    pub fn forward(&mut self, rec: &mut Recording<'_>, x: &Tensor) -> Result<Tensor> {
        if self.saved.is_some() {
            return Err(super::forward_pending("dense block"));
        }
        let (out, saved) = self.record_forward(rec, x)?;
        self.saved = Some(saved);
        Ok(out)
    }

    /// Records the forward pass for evaluation: the output only, nothing saved for a
    /// backward (the naive strategy's intermediate copies are freed once the recording is
    /// submitted).
    pub fn forward_inference(&self, rec: &mut Recording<'_>, x: &Tensor) -> Result<Tensor> {
        let (out, saved) = self.record_forward(rec, x)?;
        if let Saved::Naive { feats, cats, relus } = saved {
            for t in feats.into_iter().chain(cats).chain(relus) {
                rec.retain(t);
            }
        }
        Ok(out)
    }

    /// Drops the state saved by `forward` (so another `forward` may run without a
    /// backward).
    pub fn clear_saved(&mut self) {
        self.saved = None;
    }

    fn record_forward(&self, rec: &mut Recording<'_>, x: &Tensor) -> Result<(Tensor, Saved)> {
        let [n, c, h, w] = x.shape();
        if c != self.in_channels {
            return Err(Error::shape(
                "dense block",
                format!(
                    "input has {c} channels, the block takes {}",
                    self.in_channels
                ),
            ));
        }
        let gpu = rec.gpu();
        let out_shape = [n, self.out_channels(), h, w];
        match self.strategy {
            ConcatStrategy::Naive => {
                let mut feats = vec![x.clone()];
                let (mut cats, mut relus) = (Vec::new(), Vec::new());
                for layer in &self.layers {
                    let refs: Vec<&Tensor> = feats.iter().collect();
                    let cat = concat::concat(rec, &refs)?;
                    let r = relu::relu(rec, &cat)?;
                    let f =
                        conv2d::conv2d(rec, &r, &layer.weight, Some(&layer.bias), &layer.params)?;
                    cats.push(cat);
                    relus.push(r);
                    feats.push(f);
                }
                let refs: Vec<&Tensor> = feats.iter().collect();
                let out = concat::concat(rec, &refs)?;
                Ok((out, Saved::Naive { feats, cats, relus }))
            }
            ConcatStrategy::Shared => {
                let features = Tensor::zeros(gpu, out_shape, Purpose::Activation)?;
                concat::copy_view(rec, x, &features.channels(0..c)?, false)?;
                let relu_load = Fusion {
                    relu_input: true,
                    accumulate: false,
                };
                for (i, layer) in self.layers.iter().enumerate() {
                    let ci = c + i * self.growth;
                    let input = features.channels(0..ci)?;
                    let output = features.channels(ci..ci + self.growth)?;
                    conv2d::conv2d_into(
                        rec,
                        &input,
                        &layer.weight,
                        Some(&layer.bias),
                        &layer.params,
                        &output,
                        relu_load,
                    )?;
                }
                let saved = Saved::Shared {
                    features: features.clone(),
                };
                Ok((features, saved))
            }
        }
    }

    /// Records the backward pass for `grad_out` (shape of the output) and returns the
    /// gradient for the input and for every parameter.
    /// The saved state is used up: a second backward needs another forward.
    pub fn backward(&mut self, rec: &mut Recording<'_>, grad_out: &Tensor) -> Result<BlockGrads> {
        let saved = self
            .saved
            .as_ref()
            .ok_or_else(|| forward_missing("dense block"))?;
        let grads = self.record_backward(rec, saved, grad_out)?;
        self.saved = None;
        Ok(grads)
    }
}
