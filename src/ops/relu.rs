//! ReLU and its gradient (`shaders/relu.wgsl`).

use super::{dispatch_elementwise, no_overlap, same_shape, Access};
use crate::gpu::{KernelSpec, Shader};

const RELU: Shader = wgsl!("relu.wgsl");
/// `relu_forward`: x (slot 0) → out (slot 2).
pub(crate) const FORWARD: KernelSpec = KernelSpec::new(
    RELU,
    "relu_forward",
    &[(1, Access::Write), (3, Access::Write)],
);
/// `relu_backward`: x, grad_out → grad_x.
pub(crate) const BACKWARD: KernelSpec = KernelSpec::new(
    RELU,
    "relu_backward",
    &[(1, Access::Write), (2, Access::Write), (3, Access::Write)],
);
use crate::error::Result;
use crate::memory::Purpose;
use crate::record::Recording;
use crate::tensor::Tensor;

/// `max(x, 0)` into a new activation tensor.
pub fn relu(rec: &mut Recording<'_>, x: &Tensor) -> Result<Tensor> {
    let out = Tensor::zeros(rec.gpu(), x.shape(), Purpose::Activation)?;
    relu_into(rec, x, &out, false)?;
    Ok(out)
}

/// `out (=|+=) max(x, 0)`; `out` may be a view, but may not overlap `x` (in-place ReLU is
/// not offered: backward needs the input). With `accumulate` this is a fused `out += relu(x)`
/// (a residual block adds its skip path this way).
pub fn relu_into(
    rec: &mut Recording<'_>,
    x: &Tensor,
    out: &Tensor,
    accumulate: bool,
) -> Result<()> {
    same_shape("relu", "input and output", x, out)?;
    no_overlap("relu", out, x)?;
    dispatch_elementwise(rec, &FORWARD, &[x, x, out], &[0, 2], accumulate, 1)
}

/// The gradient of ReLU: `grad_out` where `x > 0`, else 0, into a new gradient tensor.
pub fn relu_backward(rec: &mut Recording<'_>, x: &Tensor, grad_out: &Tensor) -> Result<Tensor> {
    let grad_x = Tensor::zeros(rec.gpu(), x.shape(), Purpose::Gradient)?;
    relu_backward_into(rec, x, grad_out, &grad_x, false)?;
    Ok(grad_x)
}

/// `grad_x (=|+=) grad_out * (x > 0)`; `x` is the forward input (or output: same sign).
pub fn relu_backward_into(
    rec: &mut Recording<'_>,
    x: &Tensor,
    grad_out: &Tensor,
    grad_x: &Tensor,
    accumulate: bool,
) -> Result<()> {
    same_shape("relu backward", "input and output gradient", x, grad_out)?;
    same_shape("relu backward", "input and input gradient", x, grad_x)?;
    no_overlap("relu backward", grad_x, x)?;
    no_overlap("relu backward", grad_x, grad_out)?;
    dispatch_elementwise(
        rec,
        &BACKWARD,
        &[x, grad_out, grad_x],
        &[0, 1, 2],
        accumulate,
        1,
    )
}
