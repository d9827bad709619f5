//! ReLU and its gradient (`shaders/relu.wgsl`).

use super::{dispatch_elementwise, no_overlap, same_shape, shaders::RELU, Access};
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
    dispatch_elementwise(
        rec,
        RELU,
        "relu_forward",
        &[x, x, out],
        &[(1, 0, Access::Read), (3, 2, Access::Write)],
        accumulate,
        1,
    )
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
        RELU,
        "relu_backward",
        &[x, grad_out, grad_x],
        &[
            (1, 0, Access::Read),
            (2, 1, Access::Read),
            (3, 2, Access::Write),
        ],
        accumulate,
        1,
    )
}
