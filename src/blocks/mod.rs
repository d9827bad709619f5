//! Blocks: skip connections by addition ([`ResidualBlock`]) and by concatenation
//! ([`DenseBlock`]). A block owns its parameters and the buffers its backward needs; it
//! schedules ops into a [`Recording`], so a whole forward (or backward) is one submission
//! with no CPU read-back in between.
//!
//! Parameters use PyTorch `state_dict` names (`conv1.weight`, `layer0.bias`, …) and load from
//! and save to `.safetensors`, so a block trained in PyTorch runs here unchanged.
//!
//! [`Recording`]: crate::Recording

pub mod dense;
pub mod residual;

pub use dense::{ConcatStrategy, DenseBlock};
pub use residual::{ResidualBlock, ResidualVariant};

use crate::error::{Error, Result};
use crate::memory::Purpose;
use crate::ops::conv2d::Conv2dParams;
use crate::tensor::{shape4, Tensor};
use crate::weights::{HostTensor, TensorFile};
use crate::Gpu;

/// The gradients of a block's backward pass.
#[derive(Debug)]
pub struct BlockGrads {
    /// Gradient with respect to the block's input.
    pub grad_x: Tensor,
    /// Gradient of every parameter, by `state_dict` name, in the block's parameter order.
    pub params: Vec<(String, Tensor)>,
}

/// One convolution of a block: its `state_dict` prefix, weight, bias and geometry.
#[derive(Debug)]
pub(crate) struct ConvLayer {
    pub name: String,
    pub weight: Tensor,
    pub bias: Tensor,
    pub params: Conv2dParams,
}

impl ConvLayer {
    /// A layer initialised like PyTorch's `nn.Conv2d` default: uniform in
    /// `±1/sqrt(fan_in)` for weight and bias (a fixed seed per layer, so runs repeat).
    pub fn init(
        gpu: &Gpu,
        name: &str,
        shape: [usize; 4],
        params: Conv2dParams,
        seed: u64,
    ) -> Result<ConvLayer> {
        let fan_in = (shape[1] * shape[2] * shape[3]) as f32;
        let bound = 1.0 / fan_in.sqrt();
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut uniform = move || {
            // xorshift64*: plenty for initial weights, and no dependency.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let u = (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32;
            (2.0 * u - 1.0) * bound
        };
        let w: Vec<f32> = (0..shape.iter().product()).map(|_| uniform()).collect();
        let b: Vec<f32> = (0..shape[0]).map(|_| uniform()).collect();
        Ok(ConvLayer {
            name: name.to_string(),
            weight: Tensor::from_slice(gpu, shape, &w, Purpose::Parameter)?,
            bias: Tensor::from_slice(gpu, [shape[0], 1, 1, 1], &b, Purpose::Parameter)?,
            params,
        })
    }

    /// A layer whose weight and bias come from `file` as `{name}.weight` / `{name}.bias`,
    /// which must have exactly the expected shapes.
    pub fn load(
        gpu: &Gpu,
        file: &TensorFile,
        name: &str,
        shape: [usize; 4],
        params: Conv2dParams,
    ) -> Result<ConvLayer> {
        let get = |suffix: &str, want: [usize; 4], dims: usize| -> Result<Tensor> {
            let key = format!("{name}.{suffix}");
            let t = file.tensors.get(&key).ok_or_else(|| {
                Error::param(
                    "load parameters",
                    format!(
                        "missing tensor {key:?} (found: {})",
                        file.tensors.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                )
            })?;
            if t.shape != want[..dims] {
                return Err(Error::shape(
                    "load parameters",
                    format!(
                        "{key} has shape {:?}, expected {:?}",
                        t.shape,
                        &want[..dims]
                    ),
                ));
            }
            Tensor::from_slice(gpu, shape4(&t.shape)?, &t.data, Purpose::Parameter)
        };
        Ok(ConvLayer {
            name: name.to_string(),
            weight: get("weight", shape, 4)?,
            bias: get("bias", [shape[0], 1, 1, 1], 1)?,
            params,
        })
    }

    /// Adds this layer's `{name}.weight` and `{name}.bias` to a file being written.
    pub fn save(&self, gpu: &Gpu, file: &mut TensorFile) -> Result<()> {
        let w = self.weight.shape();
        file.tensors.insert(
            format!("{}.weight", self.name),
            HostTensor {
                shape: w.to_vec(),
                data: self.weight.to_vec(gpu)?,
            },
        );
        file.tensors.insert(
            format!("{}.bias", self.name),
            HostTensor {
                shape: vec![w[0]],
                data: self.bias.to_vec(gpu)?,
            },
        );
        Ok(())
    }
}

/// Fails unless `name`'s backward can run: a forward must have been recorded first.
pub(crate) fn forward_missing(block: &'static str) -> Error {
    Error::param(
        block,
        "backward called before forward (nothing saved to differentiate)",
    )
}

/// The error for a second `forward` over saved state that no backward has used.
pub(crate) fn forward_pending(block: &'static str) -> Error {
    Error::param(
        block,
        "forward called again before backward used the state the previous forward saved; \
         call backward first, use forward_inference for evaluation (it saves nothing), or \
         clear_saved() to discard the saved state",
    )
}
