//! # skipgrad
//!
//! A GPU compute-shader engine for skip connections, on wgpu: conv2d, ReLU, elementwise add
//! and channel concatenation, each with its gradients, in WGSL; residual and dense blocks
//! scheduled forward and backward; and an allocator that accounts for every GPU byte, so the
//! memory cost of concatenation can be measured.
//!
//! Semantics are PyTorch's (NCHW activations, OIHW weights, cross-correlation, zero padding,
//! groups, dilation), so weights move between the two unchanged.
//!
//! ```no_run
//! use skipgrad::{ops, Gpu, Purpose, Recording, Tensor};
//! # fn main() -> skipgrad::Result<()> {
//! let gpu = Gpu::new()?;
//! let x = Tensor::from_slice(&gpu, [1, 1, 3, 3], &[1.0; 9], Purpose::Activation)?;
//! let w = Tensor::from_slice(&gpu, [1, 1, 2, 2], &[1.0; 4], Purpose::Parameter)?;
//! let mut rec = Recording::new(&gpu);
//! let y = ops::conv2d::conv2d(&mut rec, &x, &w, None, &Default::default())?;
//! rec.finish()?;
//! assert_eq!(y.to_vec(&gpu)?, vec![4.0; 4]);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

/// A WGSL source for a kernel: `common.wgsl`, then the listed prefix files (shared bindings
/// and helpers), then the file itself; paths relative to `shaders/`.
macro_rules! wgsl {
    ($name:literal $(, $prefix:literal)*) => {
        crate::gpu::Shader {
            name: $name,
            source: concat!(
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/common.wgsl")),
                $(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/", $prefix)),)*
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/", $name))
            ),
        }
    };
}

// What a user needs is re-exported below; the modules behind it are private, so every type
// has one path. `ops` (the ops as functions), `train` (optimizers and the training step)
// and, with the `oracle` feature, `reference` (the f64 CPU reference) are modules of their
// own. `bench` and `cases` serve the binary and the tests, and stay out of the docs.
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod bench;
mod blocks;
#[cfg(feature = "oracle")]
#[doc(hidden)]
pub mod cases;
mod error;
mod gpu;
mod memory;
pub mod ops;
mod record;
#[cfg(feature = "oracle")]
pub mod reference;
mod tensor;
pub mod train;
mod weights;

pub use blocks::dense::AnalyticMemory;
pub use blocks::{
    BlockGrads, ConcatStrategy, DenseBcShape, DenseBlock, Init, ResNetBlock, ResNetLayer,
    ResidualBlock, ResidualVariant, TorchDenseBlock, TorchTransition, TorchvisionModule,
};
pub use error::{Error, Result};
pub use gpu::{AdapterPolicy, DiskCache, Gpu, GpuOptions};
pub use memory::{MemoryReport, Purpose};
pub use ops::conv2d::ConvKernels;
pub use ops::conv2d::{Conv2dParams, Fusion};
pub use record::{Cost, Recording, Timing};
pub use tensor::Tensor;
pub use train::network::{Arch, Network};
pub use train::optim::{Optimizer, OptimizerKind};
pub use weights::{HostTensor, TensorFile};

/// The README's code runs as a doctest, so the documented usage cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
