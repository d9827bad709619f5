//! torchvision's DenseNet-BC modules, under their own `state_dict` names: `_DenseBlock`
//! (`denselayer1` … `denselayerN`, each a `_DenseLayer`: norm1-relu1-conv1 1×1 to
//! `bn_size·growth` channels, norm2-relu2-conv2 3×3 to `growth`, its output concatenated
//! after every earlier feature map) and `_Transition` (norm-relu-conv 1×1-AvgPool2d(2, 2)).
//!
//! The block keeps every feature map in one buffer (the input, then each layer's output in
//! the next channels), so a layer reads a channel view of it and writes the next view: no
//! concatenation copy; and by default no normalised copy either (`ConcatStrategy::Shared`,
//! on [`TorchDenseBlock`]).

mod analytic;
mod block;
mod transition;
mod unit;

pub use analytic::DenseBcShape;
pub use block::TorchDenseBlock;
pub use transition::TorchTransition;
