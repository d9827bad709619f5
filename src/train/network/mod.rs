//! [`Network`]: the three stacks of the vanishing-gradient experiment — a plain stack of
//! conv3×3 + ReLU layers, a stack of basic residual blocks, and a dense block with a 1×1
//! transition — with PyTorch's `state_dict` names, forward and backward in one recording.
//!
//! The PyTorch definitions (kept in `tests/train/make_train_vectors.py`) fix the names:
//! `layers.{i}.weight` (plain), `blocks.{i}.conv1.weight` (residual, `depth / 2` blocks),
//! `block.layer{i}.weight` and `transition.weight` (dense, growth 12).

mod backward;
mod state;

use crate::blocks::{ConvLayer, Init};
use crate::error::{Error, Result};
use crate::memory::Purpose;
use crate::ops::conv2d::{self, Conv2dParams, Fusion};
use crate::ops::relu;
use crate::record::Recording;
use crate::tensor::Tensor;
use crate::weights::{HostTensor, TensorFile};
use crate::{
    ConcatStrategy, DenseBlock, Gpu, ResNetLayer, ResidualBlock, ResidualVariant, TorchDenseBlock,
};

/// Which stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    /// `depth` conv3×3 layers, each followed by ReLU: no skip connection.
    Plain,
    /// `depth / 2` basic residual blocks (`depth` convs): skips by addition.
    Residual,
    /// One dense block of `depth` layers (growth 12), then a 1×1 conv back to the input's
    /// channels: skips by concatenation.
    Dense,
    /// `depth / 2` of torchvision's `BasicBlock` (conv-BN-ReLU-conv-BN, add, ReLU), BatchNorm
    /// in training mode: the residual stack people train.
    ResNetBn,
    /// torchvision's DenseNet-BC `_DenseBlock` of `depth` layers (BN-ReLU-conv 1×1 to 4 ×
    /// growth, BN-ReLU-conv 3×3 to growth 12), then a 1×1 conv back to the input's channels.
    DenseNetBc,
}

impl Arch {
    /// The seed notebook's three, in the order of the experiment (the BatchNorm stacks are
    /// asked for by name).
    pub const ALL: [Arch; 3] = [Arch::Plain, Arch::Residual, Arch::Dense];

    /// Whether it is one of torchvision's BatchNorm stacks.
    pub fn has_batchnorm(self) -> bool {
        matches!(self, Arch::ResNetBn | Arch::DenseNetBc)
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Plain => "plain",
            Arch::Residual => "residual",
            Arch::Dense => "dense",
            Arch::ResNetBn => "resnet-bn",
            Arch::DenseNetBc => "densenet-bc",
        }
    }

    /// Parses `plain`, `residual`, `dense`, `resnet-bn` or `densenet-bc`.
    pub fn parse(name: &str) -> Result<Arch> {
        match name.trim().to_ascii_lowercase().as_str() {
            "plain" => Ok(Arch::Plain),
            "residual" | "resnet" => Ok(Arch::Residual),
            "dense" | "densenet" => Ok(Arch::Dense),
            "resnet-bn" | "resnet_bn" => Ok(Arch::ResNetBn),
            "densenet-bc" | "densenet_bc" => Ok(Arch::DenseNetBc),
            other => Err(Error::param(
                "network",
                format!(
                    "unknown arch {other:?} (expected plain, residual, dense, resnet-bn or densenet-bc)"
                ),
            )),
        }
    }
}

/// The growth rate of the dense stack.
pub(crate) const DENSE_GROWTH: usize = 12;

/// The bottleneck width of the DenseNet-BC stack's layers, in multiples of the growth
/// (torchvision's `bn_size`).
pub(crate) const BC_BN_SIZE: usize = 4;

enum Body {
    Plain(Vec<ConvLayer>),
    Residual(Vec<ResidualBlock>),
    Dense(Box<(DenseBlock, ConvLayer)>),
    ResNetBn(ResNetLayer),
    DenseNetBc(Box<(TorchDenseBlock, ConvLayer)>),
}

/// A stack of one architecture, its parameters, and what backward needs after a forward.
pub struct Network {
    arch: Arch,
    depth: usize,
    channels: usize,
    body: Body,
    /// Plain stack: the input and every layer's pre-ReLU output, for backward.
    saved: Option<Vec<Tensor>>,
    /// Dense stack: the block's output (the transition's input).
    dense_features: Option<Tensor>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Network({}, depth {}, {} channels)",
            self.arch.name(),
            self.depth,
            self.channels
        )
    }
}

fn conv3x3() -> Conv2dParams {
    Conv2dParams::new(1, 1)
}

/// `a plain stack of depth 4`, for messages.
fn describe(arch: Arch, depth: usize) -> String {
    format!("a {} stack of depth {depth}", arch.name())
}

impl Network {
    /// A network with parameters drawn as `init` says (every layer its own stream).
    /// `depth`: convs of the plain and residual stacks (even for residual), layers of the
    /// dense block.
    pub fn new(
        gpu: &Gpu,
        arch: Arch,
        depth: usize,
        channels: usize,
        init: Init,
    ) -> Result<Network> {
        Self::build(gpu, arch, depth, channels, Source::Init(init))
    }

    /// A network whose parameters come from a PyTorch `state_dict` with the names above:
    /// every expected tensor there with its exact shape, and nothing else (as PyTorch's
    /// strict `load_state_dict`: a depth-4 `state_dict` does not load as depth 2; the error
    /// lists every missing and unexpected name). Integer buffers (`num_batches_tracked`)
    /// are allowed.
    pub fn from_state_dict(
        gpu: &Gpu,
        arch: Arch,
        depth: usize,
        channels: usize,
        file: &TensorFile,
    ) -> Result<Network> {
        let expected = Self::state_names(arch, depth);
        file.check_fits(&describe(arch, depth), &expected, true)?;
        Self::build(gpu, arch, depth, channels, Source::File(file))
    }

    /// [`Network::from_state_dict`], but tensors the network does not use are skipped
    /// (PyTorch's `strict=False`) and returned by name; missing ones are still an error.
    pub fn from_state_dict_lenient(
        gpu: &Gpu,
        arch: Arch,
        depth: usize,
        channels: usize,
        file: &TensorFile,
    ) -> Result<(Network, Vec<String>)> {
        let expected = Self::state_names(arch, depth);
        let skipped = file.check_fits(&describe(arch, depth), &expected, false)?;
        let used = TensorFile {
            metadata: file.metadata.clone(),
            tensors: file
                .tensors
                .iter()
                .filter(|(k, _)| expected.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            integers: file.integers.clone(),
        };
        let net = Self::build(gpu, arch, depth, channels, Source::File(&used))?;
        Ok((net, skipped))
    }

    fn build(
        gpu: &Gpu,
        arch: Arch,
        depth: usize,
        channels: usize,
        source: Source<'_>,
    ) -> Result<Network> {
        if depth == 0 || channels == 0 {
            return Err(Error::param(
                "network",
                format!("depth ({depth}) and channels ({channels}) must be at least 1"),
            ));
        }
        if matches!(arch, Arch::Residual | Arch::ResNetBn) && !depth.is_multiple_of(2) {
            return Err(Error::param(
                "network",
                format!("a residual stack has two convs a block: depth {depth} must be even"),
            ));
        }
        let layer = |name: &str, shape, p| match source {
            Source::Init(init) => ConvLayer::init(gpu, name, shape, p, init),
            Source::File(file) => ConvLayer::load(gpu, file, name, shape, p),
        };
        let body = match arch {
            Arch::Plain => Body::Plain(
                (0..depth)
                    .map(|i| {
                        layer(
                            &format!("layers.{i}"),
                            [channels, channels, 3, 3],
                            conv3x3(),
                        )
                    })
                    .collect::<Result<_>>()?,
            ),
            // Blocks draw from the seed mixed with their index, or load from their prefix.
            Arch::Residual => Body::Residual(
                (0..depth / 2)
                    .map(|i| match source {
                        Source::Init(init) => ResidualBlock::with_init(
                            gpu,
                            ResidualVariant::Basic,
                            channels,
                            init.derive(i as u64),
                        ),
                        Source::File(file) => ResidualBlock::from_state_dict(
                            gpu,
                            ResidualVariant::Basic,
                            channels,
                            &file.with_prefix(&format!("blocks.{i}.")),
                        ),
                    })
                    .collect::<Result<_>>()?,
            ),
            Arch::Dense => {
                let strategy = ConcatStrategy::Shared;
                let block = match source {
                    Source::Init(init) => DenseBlock::with_init(
                        gpu,
                        channels,
                        DENSE_GROWTH,
                        depth,
                        strategy,
                        init.derive(0),
                    )?,
                    Source::File(file) => DenseBlock::from_state_dict(
                        gpu,
                        channels,
                        DENSE_GROWTH,
                        depth,
                        strategy,
                        &file.with_prefix("block."),
                    )?,
                };
                let transition = layer(
                    "transition",
                    [channels, channels + depth * DENSE_GROWTH, 1, 1],
                    Conv2dParams::default(),
                )?;
                Body::Dense(Box::new((block, transition)))
            }
            Arch::ResNetBn | Arch::DenseNetBc => {
                let state = match source {
                    Source::File(file) => file.clone(),
                    Source::Init(init) => Self::initial_state(gpu, arch, depth, channels, init)?,
                };
                if arch == Arch::ResNetBn {
                    Body::ResNetBn(ResNetLayer::from_state_dict(
                        gpu,
                        &state.with_prefix("blocks."),
                        1,
                    )?)
                } else {
                    let block =
                        TorchDenseBlock::from_state_dict(gpu, &state.with_prefix("block."))?;
                    let transition = ConvLayer::load(
                        gpu,
                        &state,
                        "transition",
                        [channels, block.out_channels(), 1, 1],
                        Conv2dParams::default(),
                    )?;
                    Body::DenseNetBc(Box::new((block, transition)))
                }
            }
        };
        Ok(Network {
            arch,
            depth,
            channels,
            body,
            saved: None,
            dense_features: None,
        })
    }

    /// The architecture.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// The depth it was made with.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Input (and output) channels.
    pub fn channels(&self) -> usize {
        self.channels
    }

    fn check_input(&self, x: &Tensor) -> Result<()> {
        if x.shape()[1] != self.channels {
            return Err(Error::shape(
                "network",
                format!(
                    "input has {} channels, the network takes {}",
                    x.shape()[1],
                    self.channels
                ),
            ));
        }
        Ok(())
    }

    /// Records the forward pass and keeps what backward needs; returns the output (the
    /// input's shape). Refused while an earlier forward's state is unused (see the blocks).
    pub fn forward(&mut self, rec: &mut Recording<'_>, x: &Tensor) -> Result<Tensor> {
        self.check_input(x)?;
        if self.saved.is_some() || self.dense_features.is_some() {
            return Err(crate::blocks::forward_pending("network"));
        }
        match &mut self.body {
            Body::Plain(layers) => {
                // pre_0 = conv(x); pre_i = conv(relu(pre_{i-1})) with the ReLU applied as
                // the conv loads; out = relu(pre_last). No ReLU copies are kept.
                let mut saved = vec![x.clone()];
                for (i, l) in layers.iter().enumerate() {
                    let input = &saved[i];
                    let pre = Tensor::zeros(rec.gpu(), x.shape(), Purpose::Activation)?;
                    let fusion = Fusion {
                        relu_input: i > 0,
                        accumulate: false,
                    };
                    conv2d::conv2d_into(
                        rec,
                        input,
                        &l.weight,
                        Some(&l.bias),
                        &l.params,
                        &pre,
                        fusion,
                    )?;
                    saved.push(pre);
                }
                let out = relu::relu(rec, &saved[layers.len()])?;
                self.saved = Some(saved);
                Ok(out)
            }
            Body::Residual(blocks) => {
                let mut h = x.clone();
                for b in blocks.iter_mut() {
                    h = b.forward(rec, &h)?;
                }
                self.saved = Some(Vec::new());
                Ok(h)
            }
            Body::Dense(dense) => {
                let (block, t) = &mut **dense;
                let features = block.forward(rec, x)?;
                let out = conv2d::conv2d(rec, &features, &t.weight, Some(&t.bias), &t.params)?;
                self.dense_features = Some(features);
                Ok(out)
            }
            // The BatchNorm stacks train: batch statistics, running statistics updated.
            Body::ResNetBn(layer) => {
                let out = layer.forward(rec, x, true)?;
                self.saved = Some(Vec::new());
                Ok(out)
            }
            Body::DenseNetBc(dense) => {
                let (block, t) = &mut **dense;
                let features = block.forward(rec, x, true)?;
                let out = conv2d::conv2d(rec, &features, &t.weight, Some(&t.bias), &t.params)?;
                self.dense_features = Some(features);
                Ok(out)
            }
        }
    }

    /// Drops the state saved by `forward` (so another `forward` may run without a backward).
    pub fn clear_saved(&mut self) {
        self.saved = None;
        self.dense_features = None;
        if let Body::Residual(blocks) = &mut self.body {
            blocks.iter_mut().for_each(ResidualBlock::clear_saved);
        }
        match &mut self.body {
            Body::Dense(dense) => dense.0.clear_saved(),
            Body::ResNetBn(layer) => layer.clear_saved(),
            Body::DenseNetBc(dense) => dense.0.clear_saved(),
            _ => {}
        }
    }
}

/// Where a network's parameters come from.
#[derive(Clone, Copy)]
enum Source<'a> {
    Init(Init),
    File(&'a TensorFile),
}
