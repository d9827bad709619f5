//! Elementwise addition and gradient accumulation (`shaders/add.wgsl`).
//!
//! The backward of `y = a + b` is routing, not arithmetic: both `a` and `b` receive `grad_y`.
//! When `a` also feeds another path (a skip connection `y = F(x) + x`), its total gradient is
//! the sum of the paths, which [`accumulate`] adds into one buffer.

use super::{dispatch_elementwise, no_overlap, same_shape, Access};
use crate::gpu::{KernelSpec, Shader};

const ADD_WGSL: Shader = wgsl!("add.wgsl");
/// `add`: a, b → out.
pub(crate) const ADD: KernelSpec = KernelSpec::new(
    ADD_WGSL,
    "add",
    &[(1, Access::Write), (2, Access::Write), (3, Access::Write)],
);
/// `accumulate`: src → dst (+=).
pub(crate) const ACCUMULATE: KernelSpec = KernelSpec::new(
    ADD_WGSL,
    "accumulate",
    &[(1, Access::Write), (3, Access::Write)],
);
use crate::error::Result;
use crate::memory::Purpose;
use crate::record::Recording;
use crate::tensor::Tensor;

/// `a + b` (same shape, no broadcasting) into a new activation tensor.
pub fn add(rec: &mut Recording<'_>, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    same_shape("add", "operands", a, b)?;
    let out = Tensor::zeros(rec.gpu(), a.shape(), Purpose::Activation)?;
    add_into(rec, a, b, &out, false)?;
    Ok(out)
}

/// `out (=|+=) a + b`; any of them may be views.
pub fn add_into(
    rec: &mut Recording<'_>,
    a: &Tensor,
    b: &Tensor,
    out: &Tensor,
    accumulate: bool,
) -> Result<()> {
    same_shape("add", "operands", a, b)?;
    same_shape("add", "operands and output", a, out)?;
    no_overlap("add", out, a)?;
    no_overlap("add", out, b)?;
    dispatch_elementwise(rec, &ADD, &[a, b, out], &[0, 1, 2], accumulate, 1)
}

/// `dst += src` (same shape; views allowed): gradient routing for skip connections.
pub fn accumulate(rec: &mut Recording<'_>, src: &Tensor, dst: &Tensor) -> Result<()> {
    same_shape("accumulate", "source and destination", src, dst)?;
    no_overlap("accumulate", dst, src)?;
    dispatch_elementwise(rec, &ACCUMULATE, &[src, dst], &[0, 1], true, 1)
}
