//! Concatenation along channels and its backward (`shaders/concat.wgsl`).
//!
//! These are the copying forms, what a framework without views does. A block that keeps all
//! its feature maps as channel views of one buffer ([`Tensor::channels`]) needs neither.

use super::{dispatch_elementwise, no_overlap, Access};
use crate::error::{Error, Result};
use crate::gpu::KernelSpec;
use crate::memory::Purpose;
use crate::record::Recording;
use crate::tensor::Tensor;

/// `copy_view`: src → dst (=|+=).
pub(crate) const COPY_VIEW: KernelSpec = KernelSpec::new(
    wgsl!("concat.wgsl"),
    "copy_view",
    &[(1, Access::Write), (2, Access::Write)],
);

fn check_inputs(op: &'static str, inputs: &[&Tensor]) -> Result<[usize; 4]> {
    let Some(first) = inputs.first() else {
        return Err(Error::param(op, "needs at least one input"));
    };
    let [n, _, h, w] = first.shape();
    let mut channels = 0;
    for (i, t) in inputs.iter().enumerate() {
        let [tn, tc, th, tw] = t.shape();
        if (tn, th, tw) != (n, h, w) {
            return Err(Error::shape(
                op,
                format!(
                    "input {i} has shape {:?}; every input needs batch {n} and {h}x{w} pixels like input 0",
                    t.shape()
                ),
            ));
        }
        channels += tc;
    }
    Ok([n, channels, h, w])
}

/// Concatenates `inputs` (same N, H, W) along channels into a new activation tensor.
pub fn concat(rec: &mut Recording<'_>, inputs: &[&Tensor]) -> Result<Tensor> {
    let shape = check_inputs("concat", inputs)?;
    let out = Tensor::zeros(rec.gpu(), shape, Purpose::Activation)?;
    concat_into(rec, inputs, &out)?;
    Ok(out)
}

/// Copies `inputs` into consecutive channel slices of `out`.
pub fn concat_into(rec: &mut Recording<'_>, inputs: &[&Tensor], out: &Tensor) -> Result<()> {
    let shape = check_inputs("concat", inputs)?;
    if out.shape() != shape {
        return Err(Error::shape(
            "concat",
            format!(
                "output has shape {:?}, the inputs make {shape:?}",
                out.shape()
            ),
        ));
    }
    let mut c0 = 0;
    for x in inputs {
        let slice = out.channels(c0..c0 + x.shape()[1])?;
        no_overlap("concat", &slice, x)?;
        copy_view(rec, x, &slice, false)?;
        c0 += x.shape()[1];
    }
    Ok(())
}

/// Splits `grad_out` into the gradients of the inputs of a concatenation: input `i` gets
/// channels `[c_0 + … + c_{i-1}, … + c_i)`. `channels` are the inputs' channel counts.
pub fn concat_backward(
    rec: &mut Recording<'_>,
    grad_out: &Tensor,
    channels: &[usize],
) -> Result<Vec<Tensor>> {
    let [n, c, h, w] = grad_out.shape();
    if channels.is_empty() || channels.iter().sum::<usize>() != c || channels.contains(&0) {
        return Err(Error::shape(
            "concat backward",
            format!("input channel counts {channels:?} do not sum to the gradient's {c} channels"),
        ));
    }
    let mut grads = Vec::with_capacity(channels.len());
    let mut c0 = 0;
    for &ci in channels {
        let g = Tensor::zeros(rec.gpu(), [n, ci, h, w], Purpose::Gradient)?;
        copy_view(rec, &grad_out.channels(c0..c0 + ci)?, &g, false)?;
        grads.push(g);
        c0 += ci;
    }
    Ok(grads)
}

/// `dst (=|+=) src` for tensors (or views) of equal shape.
pub fn copy_view(
    rec: &mut Recording<'_>,
    src: &Tensor,
    dst: &Tensor,
    accumulate: bool,
) -> Result<()> {
    super::same_shape("copy", "source and destination", src, dst)?;
    no_overlap("copy", dst, src)?;
    dispatch_elementwise(
        rec,
        &COPY_VIEW,
        &[src, dst],
        &[0, 1],
        accumulate,
        accumulate as u64,
    )
}
