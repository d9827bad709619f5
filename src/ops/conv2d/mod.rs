//! 2-D convolution, forward and backward, with PyTorch's semantics: cross-correlation, zero
//! padding, stride, dilation and groups per axis; NCHW activations, OIHW weights
//! `[cout, cin / groups, kh, kw]`, bias `[cout]` (as a `[cout, 1, 1, 1]` tensor).
//!
//! `H_out = (H + 2 * pad_h - dilation_h * (kh - 1) - 1) / stride_h + 1` (floor), same for W.
//!
//! How a pass flows: the public function (`forward.rs`, `backward_input.rs`,
//! `backward_weight.rs`, `bias.rs`; `backward.rs` for all three) checks its arguments
//! (`args.rs`, `params.rs`), splits work that one launch cannot hold (`split.rs`: tensors
//! past the binding limit, reductions past the loop budget of `budget.rs`), and hands the
//! rest to `select.rs`, which picks a family from the registry (`family/mod.rs`; `tune/`
//! measures under `Auto`) and lets it record its kernels. Weight
//! gradients split their pixel reduction into partial sums (`partials.rs`), whose reduce
//! takes the bias gradient along where one is owed.

mod args;
mod backward;
mod backward_input;
mod backward_weight;
mod bias;
mod budget;
pub(crate) mod family;
mod forward;
mod params;
mod partials;
pub(crate) mod select;
#[cfg(feature = "oracle")]
#[doc(hidden)]
pub mod selftest;
mod split;
mod strided_pointwise;
mod tune;

pub use backward::{conv2d_backward, Conv2dBackward, Conv2dGrads};
pub use backward_input::conv2d_backward_input_into;
#[cfg(feature = "oracle")]
pub(crate) use backward_weight::conv2d_backward_weight_and_bias_into;
pub use backward_weight::conv2d_backward_weight_into;
pub use bias::conv2d_backward_bias_into;
pub use family::ConvKernels;
pub use forward::{conv2d, conv2d_into};
pub use params::Conv2dParams;
pub use tune::{tune_cache_files, TuneCacheFile, TunedChoice};

/// How a conv kernel reads its input and stores its result; blocks fuse with these.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fusion {
    /// Apply ReLU to the input as it is loaded (and, in backward, mask the input gradient by
    /// `x > 0` as it is stored), so no ReLU copy of the input is ever kept.
    pub relu_input: bool,
    /// Add the result into the destination instead of overwriting it.
    pub accumulate: bool,
}

impl Fusion {
    /// The fusion of part `part` of work split into parts that add into one destination:
    /// every part after the first accumulates.
    pub(crate) fn after_part(self, part: usize) -> Fusion {
        Fusion {
            accumulate: self.accumulate || part > 0,
            ..self
        }
    }
}

/// Every conv kernel: each family's, the bias gradient's and the reduce pass's (what the
/// binding test checks, and what the tuning cache's fingerprint hashes).
pub(crate) fn kernels() -> Vec<&'static crate::gpu::KernelSpec> {
    let mut all: Vec<_> = family::FAMILIES
        .iter()
        .flat_map(|f| f.kernels().iter().copied())
        .collect();
    all.extend([
        &bias::BIAS,
        &bias::BIAS_SERIAL,
        &partials::REDUCE,
        &bias::REDUCE_AND_BIAS,
        &family::pack::PACK_BUFFER,
        // Staging an activation in a texture: the texture and Winograd families'.
        &family::texture::stage::STAGE_VIEW,
        &family::texture::stage::STAGE_COPY,
        // A strided 1×1 input gradient's scatter.
        &strided_pointwise::SCATTER,
    ]);
    all
}
