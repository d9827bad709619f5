//! What a DenseNet-BC block holds by its schedule, counted: the formula `skipgrad memory
//! --bc` and `tests/memory.rs` hold the allocator's measurements to.

use crate::ops::batchnorm::BatchNorm2d;
use crate::{AnalyticMemory, ConcatStrategy};

/// The shape of a DenseNet-BC block and its input, for its analytic memory: torchvision's
/// `_DenseBlock(layers, in_channels, bn_size, growth)` on `[batch, in_channels, height,
/// width]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DenseBcShape {
    /// Channels of the block's input.
    pub in_channels: usize,
    /// Channels each layer adds.
    pub growth: usize,
    /// The bottleneck is `bn_size · growth` channels wide.
    pub bn_size: usize,
    /// Dense layers.
    pub layers: usize,
    /// Images in the batch.
    pub batch: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
}

impl DenseBcShape {
    /// What one training forward+backward of a block of this shape holds at its peak (the
    /// end of backward, when every gradient exists), counted from the tensors the strategy
    /// keeps: the input and the feature buffer, each layer's bottleneck (and with `Naive`
    /// its two normalised copies), the output's gradient, the feature maps' shared gradient
    /// buffer, the input's gradient, every parameter and its gradient, and the BatchNorms'
    /// running statistics. Kernel scratch is not in it (the block's own scratch:
    /// [`DenseBcShape::analytic_scratch_bytes`]).
    pub fn analytic_memory(&self, strategy: ConcatStrategy) -> AnalyticMemory {
        let DenseBcShape {
            in_channels,
            growth,
            bn_size,
            layers,
            batch: n,
            height: h,
            width: w,
        } = *self;
        let s = 4 * (n * h * w) as u64;
        let (c0, k, wide, l) = (
            in_channels as u64,
            growth as u64,
            (bn_size * growth) as u64,
            layers as u64,
        );
        let c_l = c0 + l * k;
        // Every tensor is its own buffer, and the allocator makes none under 16 bytes.
        let buffer = |elems: u64| (4 * elems).max(16);
        // Per layer: conv1 [wide, reads], conv2 [k, wide, 3, 3], and per BatchNorm its
        // weight and bias (learned) and running mean and variance.
        let learned: u64 = (0..l)
            .map(|i| {
                let reads = c0 + i * k;
                buffer(wide * reads) + buffer(k * wide * 9) + 2 * buffer(reads) + 2 * buffer(wide)
            })
            .sum();
        let running: u64 = (0..l)
            .map(|i| 2 * buffer(c0 + i * k) + 2 * buffer(wide))
            .sum();
        let copies: u64 = match strategy {
            ConcatStrategy::Naive => (0..l).map(|i| s * (c0 + i * k) + s * wide).sum(),
            ConcatStrategy::Shared => 0,
        };
        AnalyticMemory {
            activation: s * (c0 + c_l) + l * s * wide + copies,
            gradient: s * (2 * c_l + c0) + learned,
            parameter: learned + running,
        }
    }

    /// The scratch buffers the block reserves (`Recording::reserve_scratch`), in bytes: for
    /// the forward (`Shared`: the widest normalised input, one at a time; `Naive` keeps its
    /// copies as activations) and for the backward (a layer holds its bottleneck's gradient
    /// and one input-wide tensor in `Shared` — the normalised input, then the gradient at it
    /// — two in `Naive`: the gradient at the kept copy, and the same masked). The widest is
    /// the last layer's input, or a bottleneck if that is wider.
    pub(super) fn reserved_scratch(&self, strategy: ConcatStrategy) -> (Vec<u64>, Vec<u64>) {
        let pixels = self.batch * self.height * self.width;
        let wide = self.bn_size * self.growth;
        let last_input = self.in_channels + (self.layers - 1) * self.growth;
        let widest = 4 * (last_input.max(wide) * pixels) as u64;
        let bottleneck = 4 * (wide * pixels) as u64;
        match strategy {
            ConcatStrategy::Shared => (vec![widest], vec![widest, bottleneck]),
            ConcatStrategy::Naive => (vec![], vec![widest, widest, bottleneck]),
        }
    }

    /// The block's own scratch at its peak: in `Shared`, one buffer as wide as its widest
    /// scratch tensor (the last layer's input, or a bottleneck if that is wider) and one a
    /// bottleneck wide (its gradient); in `Naive`, one more of the widest (the gradient at
    /// the kept copy, and the same masked) — and in both, each BatchNorm's saved
    /// statistics and (in training) the table of every feature map's batch statistics.
    /// Kernels' staging comes on top of it.
    pub fn analytic_scratch_bytes(&self, strategy: ConcatStrategy) -> u64 {
        let (c0, k, layers) = (self.in_channels, self.growth, self.layers);
        let wide = self.bn_size * k;
        let stats: u64 = (0..layers)
            .map(|i| BatchNorm2d::saved_bytes(c0 + i * k) + BatchNorm2d::saved_bytes(wide))
            .sum();
        // The table of every feature map's batch statistics (two numbers a channel), a
        // scratch tensor: rounded up to a power of two.
        let table = (8 * (c0 + layers * k) as u64).next_power_of_two().max(16);
        // The forward's reservation serves the backward too (one recording, or the pool).
        let (_, backward) = self.reserved_scratch(strategy);
        backward.iter().sum::<u64>() + stats + table
    }
}
