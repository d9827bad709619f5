//! Residual (ResNet) blocks: `y = F(x) + x`, so the gradient has a straight path back.
//!
//! * [`ResidualVariant::SkipConnection`], the classic teaching block:
//!   `out = relu(conv2(relu(conv1(x)))) + x`, conv1 3→6 and conv2 6→3 channels, kernel 2,
//!   stride 2, padding 2. Its output has the input's shape only for 4×4 images.
//! * [`ResidualVariant::Basic`], ResNet's basic block: `out = relu(conv2(relu(conv1(x))) + x)`,
//!   3×3 convs, padding 1, C→C channels.
//!
//! Scheduling: the inner ReLU is applied by conv2 as it loads its input (no ReLU copy kept);
//! the skip add is fused (Basic: `x` is copied into the sum and conv2 accumulates onto it;
//! SkipConnection: `x` is copied into the output and the final ReLU accumulates onto it).
//! Backward routes the skip gradient into `grad_x` first and the conv path accumulates onto
//! it: one buffer, no separate add.

use super::{forward_missing, BlockGrads, ConvLayer, Init, NamedGrads};
use crate::error::{Error, Result};
use crate::memory::Purpose;
use crate::ops::conv2d::{self, Conv2dParams, Fusion};
use crate::ops::{concat::copy_view, relu};
use crate::record::Recording;
use crate::tensor::Tensor;
use crate::weights::TensorFile;
use crate::Gpu;

/// Which residual block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResidualVariant {
    /// `relu(conv2(relu(conv1(x)))) + x`, 3→6→3 channels, kernel 2, stride 2, padding 2.
    SkipConnection,
    /// `relu(conv2(relu(conv1(x))) + x)`, 3×3 convs, padding 1, C→C channels.
    Basic,
}

impl ResidualVariant {
    /// Parses the reference files' `variant` names (`skip_connection`, `basic`).
    pub fn from_name(name: &str) -> Result<ResidualVariant> {
        match name {
            "skip_connection" => Ok(ResidualVariant::SkipConnection),
            "basic" => Ok(ResidualVariant::Basic),
            other => Err(Error::param(
                "residual block",
                format!("unknown variant {other:?} (expected skip_connection or basic)"),
            )),
        }
    }
}

#[derive(Debug)]
struct Saved {
    x: Tensor,
    /// conv1's output, before its ReLU.
    a1: Tensor,
    /// Basic: conv2(relu(a1)) + x before the final ReLU. SkipConnection: conv2's output.
    pre: Tensor,
}

/// A residual block with its parameters and, after `forward`, what `backward` needs.
#[derive(Debug)]
pub struct ResidualBlock {
    variant: ResidualVariant,
    channels: usize,
    conv1: ConvLayer,
    conv2: ConvLayer,
    saved: Option<Saved>,
}

fn shapes(variant: ResidualVariant, channels: usize) -> ([usize; 4], [usize; 4], Conv2dParams) {
    match variant {
        ResidualVariant::SkipConnection => ([6, 3, 2, 2], [3, 6, 2, 2], Conv2dParams::new(2, 2)),
        ResidualVariant::Basic => (
            [channels, channels, 3, 3],
            [channels, channels, 3, 3],
            Conv2dParams::new(1, 1),
        ),
    }
}

impl ResidualBlock {
    /// A block with freshly initialised parameters (PyTorch's default init, seed 0).
    /// `channels` is ignored for `SkipConnection` (always 3).
    pub fn new(gpu: &Gpu, variant: ResidualVariant, channels: usize) -> Result<ResidualBlock> {
        Self::with_init(gpu, variant, channels, Init::Torch(0))
    }

    /// A block with parameters drawn as `init` says (each conv from its own stream).
    pub fn with_init(
        gpu: &Gpu,
        variant: ResidualVariant,
        channels: usize,
        init: Init,
    ) -> Result<ResidualBlock> {
        let channels = Self::check_channels(variant, channels)?;
        let (s1, s2, p) = shapes(variant, channels);
        Ok(ResidualBlock {
            variant,
            channels,
            conv1: ConvLayer::init(gpu, "conv1", s1, p, init)?,
            conv2: ConvLayer::init(gpu, "conv2", s2, p, init)?,
            saved: None,
        })
    }

    /// Every parameter with its `state_dict` name (`conv1.weight`, …), in order. The tensors
    /// share the block's buffers: an optimizer updates them in place.
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        [&self.conv1, &self.conv2]
            .iter()
            .flat_map(|c| c.parameters())
            .collect()
    }

    /// A block whose parameters come from a PyTorch `state_dict` (`conv1.weight`,
    /// `conv1.bias`, `conv2.weight`, `conv2.bias`; the notebook's `conv_layer1.*` and
    /// `conv_layer2.*` too), and nothing else (as PyTorch's strict `load_state_dict`; the
    /// error lists what is missing and what is unexpected). Convs saved without a bias load
    /// with a zero one; for one block out of a larger `state_dict`, pass
    /// `file.with_prefix("blocks.3.")`.
    pub fn from_state_dict(
        gpu: &Gpu,
        variant: ResidualVariant,
        channels: usize,
        file: &TensorFile,
    ) -> Result<ResidualBlock> {
        let channels = Self::check_channels(variant, channels)?;
        let (s1, s2, p) = shapes(variant, channels);
        // The notebook's own module names its convs conv_layer1 / conv_layer2.
        let notebook = !file.tensors.contains_key("conv1.weight")
            && file.tensors.contains_key("conv_layer1.weight");
        let (n1, n2) = if notebook {
            ("conv_layer1", "conv_layer2")
        } else {
            ("conv1", "conv2")
        };
        let expected: Vec<String> = [n1, n2]
            .iter()
            .flat_map(|n| [format!("{n}.weight"), format!("{n}.bias")])
            .collect();
        file.check_fits("a residual block", &expected, true)?;
        let mut conv1 = ConvLayer::load(gpu, file, n1, s1, p)?;
        let mut conv2 = ConvLayer::load(gpu, file, n2, s2, p)?;
        conv1.name = "conv1".into();
        conv2.name = "conv2".into();
        Ok(ResidualBlock {
            variant,
            channels,
            conv1,
            conv2,
            saved: None,
        })
    }

    fn check_channels(variant: ResidualVariant, channels: usize) -> Result<usize> {
        match variant {
            ResidualVariant::SkipConnection => Ok(3),
            ResidualVariant::Basic if channels == 0 => Err(Error::param(
                "residual block",
                "channels must be at least 1",
            )),
            ResidualVariant::Basic => Ok(channels),
        }
    }

    /// Writes the parameters as a safetensors `state_dict`.
    pub fn save(&self, gpu: &Gpu, path: &std::path::Path) -> Result<()> {
        let mut file = TensorFile::default();
        self.conv1.save(gpu, &mut file)?;
        self.conv2.save(gpu, &mut file)?;
        file.write(path)
    }

    /// The variant.
    pub fn variant(&self) -> ResidualVariant {
        self.variant
    }

    fn check_input(&self, x: &Tensor) -> Result<()> {
        let [_, c, h, w] = x.shape();
        if c != self.channels {
            return Err(Error::shape(
                "residual block",
                format!("input has {c} channels, the block takes {}", self.channels),
            ));
        }
        let y = self
            .conv1
            .params
            .output_shape(x.shape(), self.conv1.weight.shape())?;
        let z = self
            .conv2
            .params
            .output_shape(y, self.conv2.weight.shape())?;
        if z != x.shape() {
            let hint = match self.variant {
                ResidualVariant::SkipConnection => {
                    " (the skip_connection block maps 4x4 images to 4x4; other sizes cannot be added to the input)"
                }
                ResidualVariant::Basic => "",
            };
            return Err(Error::shape(
                "residual block",
                format!("F(x) has shape {z:?} but x has {:?}, so they cannot be added{hint}; input {h}x{w}", x.shape()),
            ));
        }
        Ok(())
    }

    /// Records the forward pass and keeps what backward needs. Returns the output.
    ///
    /// Refused while the state saved by an earlier `forward` has not been used by
    /// [`ResidualBlock::backward`]: a second forward would replace it, and a backward meant
    /// for the first input would silently differentiate the second. For evaluation use
    /// [`ResidualBlock::forward_inference`], which saves nothing; to drop the saved state,
    /// [`ResidualBlock::clear_saved`].
    pub fn forward(&mut self, rec: &mut Recording<'_>, x: &Tensor) -> Result<Tensor> {
        if self.saved.is_some() {
            return Err(super::forward_pending("residual block"));
        }
        let (out, saved) = self.record_forward(rec, x)?;
        self.saved = Some(saved);
        Ok(out)
    }

    /// Records the forward pass for evaluation: the output only, nothing saved for a
    /// backward (intermediate activations are freed once the recording is submitted).
    pub fn forward_inference(&self, rec: &mut Recording<'_>, x: &Tensor) -> Result<Tensor> {
        let (out, saved) = self.record_forward(rec, x)?;
        rec.retain(saved.a1);
        rec.retain(saved.pre);
        Ok(out)
    }

    /// Drops the state saved by `forward` (so another `forward` may run without a
    /// backward).
    pub fn clear_saved(&mut self) {
        self.saved = None;
    }

    fn record_forward(&self, rec: &mut Recording<'_>, x: &Tensor) -> Result<(Tensor, Saved)> {
        self.check_input(x)?;
        let gpu = rec.gpu();
        let (c1, c2) = (&self.conv1, &self.conv2);
        let a1 = conv2d::conv2d(rec, x, &c1.weight, Some(&c1.bias), &c1.params)?;
        let relu_load = Fusion {
            relu_input: true,
            accumulate: false,
        };
        let out = Tensor::zeros(gpu, x.shape(), Purpose::Activation)?;
        let pre = Tensor::zeros(gpu, x.shape(), Purpose::Activation)?;
        match self.variant {
            ResidualVariant::Basic => {
                // pre = x + conv2(relu(a1)): the skip add fused as conv2 accumulating onto x.
                copy_view(rec, x, &pre, false)?;
                let fused = Fusion {
                    relu_input: true,
                    accumulate: true,
                };
                conv2d::conv2d_into(
                    rec,
                    &a1,
                    &c2.weight,
                    Some(&c2.bias),
                    &c2.params,
                    &pre,
                    fused,
                )?;
                relu::relu_into(rec, &pre, &out, false)?;
            }
            ResidualVariant::SkipConnection => {
                // out = x + relu(pre): x copied in, the final ReLU accumulates onto it.
                conv2d::conv2d_into(
                    rec,
                    &a1,
                    &c2.weight,
                    Some(&c2.bias),
                    &c2.params,
                    &pre,
                    relu_load,
                )?;
                copy_view(rec, x, &out, false)?;
                relu::relu_into(rec, &pre, &out, true)?;
            }
        }
        let saved = Saved {
            x: x.clone(),
            a1,
            pre,
        };
        Ok((out, saved))
    }

    /// Records the backward pass for `grad_out` (the gradient of the output) and returns the
    /// gradient for the input and for every parameter.
    /// The saved state is used up: a second backward needs another forward.
    pub fn backward(&mut self, rec: &mut Recording<'_>, grad_out: &Tensor) -> Result<BlockGrads> {
        let saved = self
            .saved
            .as_ref()
            .ok_or_else(|| forward_missing("residual block"))?;
        let (grad_x, params) = self.record_backward(rec, saved, grad_out, true)?;
        self.saved = None;
        Ok(BlockGrads {
            grad_x: grad_x.ok_or_else(|| forward_missing("residual block"))?,
            params,
        })
    }

    /// [`ResidualBlock::backward`] for a block whose input needs no gradient (the first
    /// block of a network): the parameters' gradients alone, by `state_dict` name — conv1's
    /// input-gradient pass and the skip path's copy are not recorded.
    pub fn backward_params(
        &mut self,
        rec: &mut Recording<'_>,
        grad_out: &Tensor,
    ) -> Result<Vec<(String, Tensor)>> {
        let saved = self
            .saved
            .as_ref()
            .ok_or_else(|| forward_missing("residual block"))?;
        let (_, params) = self.record_backward(rec, saved, grad_out, false)?;
        self.saved = None;
        Ok(params)
    }

    fn record_backward(
        &self,
        rec: &mut Recording<'_>,
        saved: &Saved,
        grad_out: &Tensor,
        input_gradient: bool,
    ) -> Result<(Option<Tensor>, NamedGrads)> {
        if grad_out.shape() != saved.x.shape() {
            return Err(Error::shape(
                "residual block backward",
                format!(
                    "grad_out has shape {:?}, the output has {:?}",
                    grad_out.shape(),
                    saved.x.shape()
                ),
            ));
        }
        let gpu = rec.gpu();
        let (c1, c2) = (&self.conv1, &self.conv2);
        let grad = |shape| Tensor::zeros(gpu, shape, Purpose::Gradient);
        // Gradient at conv2's output (pre-ReLU for SkipConnection, the sum for Basic).
        let g_pre = grad(saved.x.shape())?;
        relu::relu_backward_into(rec, &saved.pre, grad_out, &g_pre, false)?;
        // Skip path first: for Basic the sum's gradient, for SkipConnection grad_out itself.
        let grad_x = if input_gradient {
            let grad_x = grad(saved.x.shape())?;
            let skip = match self.variant {
                ResidualVariant::Basic => &g_pre,
                ResidualVariant::SkipConnection => grad_out,
            };
            copy_view(rec, skip, &grad_x, false)?;
            Some(grad_x)
        } else {
            None
        };
        let relu_load = Fusion {
            relu_input: true,
            accumulate: false,
        };
        // conv2: its input was relu(a1), loaded with ReLU; the input gradient is masked on
        // store, which makes it the gradient at a1 directly.
        let gw2 = grad(c2.weight.shape())?;
        let gb2 = grad(c2.bias.shape())?;
        let g_a1 = grad(saved.a1.shape())?;
        conv2d::Conv2dBackward {
            x: &saved.a1,
            weight: &c2.weight,
            grad_out: &g_pre,
            params: &c2.params,
            fusion: relu_load,
        }
        .record_into(rec, &g_a1, &gw2, Some(&gb2))?;
        // conv1: the conv path's input gradient accumulates onto the skip path's.
        let gw1 = grad(c1.weight.shape())?;
        let gb1 = grad(c1.bias.shape())?;
        let accumulate = Fusion {
            relu_input: false,
            accumulate: true,
        };
        let conv1 = conv2d::Conv2dBackward {
            x: &saved.x,
            weight: &c1.weight,
            grad_out: &g_a1,
            params: &c1.params,
            fusion: accumulate,
        };
        match &grad_x {
            Some(gx) => conv1.record_into(rec, gx, &gw1, Some(&gb1))?,
            None => conv1.record_params_into(rec, &gw1, Some(&gb1))?,
        }
        let params = vec![
            ("conv1.weight".into(), gw1),
            ("conv1.bias".into(), gb1),
            ("conv2.weight".into(), gw2),
            ("conv2.bias".into(), gb2),
        ];
        Ok((grad_x, params))
    }
}
