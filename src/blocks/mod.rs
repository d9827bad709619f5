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
pub mod torchvision;

pub use dense::{ConcatStrategy, DenseBlock};
pub use residual::{ResidualBlock, ResidualVariant};
pub use torchvision::{
    DenseBcShape, ResNetBlock, ResNetLayer, TorchDenseBlock, TorchTransition, TorchvisionModule,
};

use crate::error::{Error, Result};
use crate::memory::Purpose;
use crate::ops::conv2d::Conv2dParams;
use crate::tensor::{host_vec, shape4, Tensor};
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

/// How a layer's fresh parameters are drawn, from a user seed. Each layer draws from its
/// own stream (the seed mixed with the layer's `state_dict` name), so no two layers, and no
/// two blocks made with different seeds, start equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// PyTorch's `nn.Conv2d` default: weight and bias uniform in `±1/sqrt(fan_in)`.
    Torch(u64),
    /// He (`kaiming_normal_`, fan_in, ReLU gain): weight normal with standard deviation
    /// `sqrt(2 / fan_in)`, bias 0.
    He(u64),
}

impl Init {
    /// Parses `torch` or `he` with a seed.
    pub fn parse(name: &str, seed: u64) -> Result<Init> {
        match name.trim().to_ascii_lowercase().as_str() {
            "torch" | "default" => Ok(Init::Torch(seed)),
            "he" | "kaiming" => Ok(Init::He(seed)),
            other => Err(Error::param(
                "init",
                format!("unknown init {other:?} (expected torch or he)"),
            )),
        }
    }

    /// The same scheme with the seed mixed with `salt` (a block's index in a network).
    pub fn derive(self, salt: u64) -> Init {
        let mix = |s: u64| s ^ salt.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        match self {
            Init::Torch(s) => Init::Torch(mix(s)),
            Init::He(s) => Init::He(mix(s)),
        }
    }

    fn seed(self) -> u64 {
        match self {
            Init::Torch(s) | Init::He(s) => s,
        }
    }
}

/// xorshift64* seeded from `seed` and `name` (FNV-1a): plenty for initial weights, and no
/// dependency.
struct LayerRng(u64);

impl LayerRng {
    fn new(seed: u64, name: &str) -> LayerRng {
        let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
        for b in name.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
        LayerRng(h.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

impl ConvLayer {
    /// A layer with fresh parameters drawn as `init` says, from a stream of its own.
    pub fn init(
        gpu: &Gpu,
        name: &str,
        shape: [usize; 4],
        params: Conv2dParams,
        init: Init,
    ) -> Result<ConvLayer> {
        // Sizes are the caller's: refused before any host memory is taken for them.
        Tensor::check_size(gpu, shape)?;
        let fan_in = (shape[1] * shape[2] * shape[3]) as f64;
        let mut rng = LayerRng::new(init.seed(), name);
        let n: usize = shape.iter().product();
        let what = format!("the initial weights of {name}");
        let (mut w, mut b) = (host_vec(n, &what)?, host_vec(shape[0], &what)?);
        match init {
            Init::Torch(_) => {
                let bound = 1.0 / fan_in.sqrt();
                let mut draw = || ((2.0 * rng.uniform() - 1.0) * bound) as f32;
                w.extend((0..n).map(|_| draw()));
                b.extend((0..shape[0]).map(|_| draw()));
            }
            Init::He(_) => {
                let std = (2.0 / fan_in).sqrt();
                w.extend((0..n).map(|_| (rng.normal() * std) as f32));
                b.resize(shape[0], 0.0);
            }
        }
        Ok(ConvLayer {
            name: name.to_string(),
            weight: Tensor::from_slice(gpu, shape, &w, Purpose::Parameter)?,
            bias: Tensor::from_slice(gpu, [shape[0], 1, 1, 1], &b, Purpose::Parameter)?,
            params,
        })
    }

    /// `{name}.weight` and `{name}.bias` with their tensors.
    pub fn parameters(&self) -> [(String, Tensor); 2] {
        [
            (format!("{}.weight", self.name), self.weight.clone()),
            (format!("{}.bias", self.name), self.bias.clone()),
        ]
    }

    /// A layer whose weight and bias come from `file` as `{name}.weight` / `{name}.bias`,
    /// which must have exactly the expected shapes (no `{name}.bias`: a conv made with
    /// `bias=False`, whose bias is zero).
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
        let weight = get("weight", shape, 4)?;
        // A conv made with `bias=False` has no `{name}.bias`: its bias is zero.
        let bias = if file.tensors.contains_key(&format!("{name}.bias")) {
            get("bias", [shape[0], 1, 1, 1], 1)?
        } else {
            Tensor::zeros(gpu, [shape[0], 1, 1, 1], Purpose::Parameter)?
        };
        Ok(ConvLayer {
            name: name.to_string(),
            weight,
            bias,
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

/// Parameters' gradients by `state_dict` name, in forward order.
pub(crate) type NamedGrads = Vec<(String, Tensor)>;

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
