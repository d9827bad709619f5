//! Host-side splits: a convolution too large for one launch becomes several that
//! accumulate into the destination.
//!
//! - Reductions longer than the loop budget (`budget.rs`): forward and input gradient over
//!   input (output) channels × taps are split into channel chunks, and grouped convolutions
//!   into one convolution per group.
//! - Tensors larger than one binding (the device's `max_storage_buffer_binding_size`) for
//!   one sample: halves of the output channels, else of the input channels.

use super::args::{ForwardArgs, Geometry, InputGradArgs, WeightGradArgs};
use super::budget::max_channels;
use super::{
    conv2d_backward_bias_into, conv2d_backward_input_into, conv2d_backward_weight_into,
    conv2d_into, Conv2dParams, Fusion,
};
use crate::error::{Error, Result};
use crate::memory::Purpose;
use crate::ops::concat::copy_view;
use crate::record::Recording;
use crate::tensor::Tensor;

/// A whole (contiguous, offset-0) scratch copy of `view`, held until submission: kernels
/// index weights and biases from 0.
fn whole_copy(rec: &mut Recording<'_>, view: &Tensor) -> Result<Tensor> {
    let t = Tensor::zeros(rec.gpu(), view.shape(), Purpose::Scratch)?;
    copy_view(rec, view, &t, false)?;
    rec.retain(t.clone());
    Ok(t)
}

/// A grouped convolution as one convolution per group: `(group, input channels, output
/// channels)` ranges.
fn groups_of(
    g: &Geometry,
    p: &Conv2dParams,
) -> Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> {
    let (cin_g, cout_g) = (g.x[1] / p.groups, g.y[1] / p.groups);
    (0..p.groups)
        .map(|i| (i * cin_g..(i + 1) * cin_g, i * cout_g..(i + 1) * cout_g))
        .collect()
}

/// The forward of a convolution whose reduction is too long for one launch: per group,
/// then per chunk of input channels, each accumulating into `out` (bias with the first).
pub(crate) fn forward(rec: &mut Recording<'_>, a: &ForwardArgs<'_>) -> Result<()> {
    let [_, _, kh, kw] = a.g.w;
    let (p, fusion) = (&a.p, a.fusion);
    if p.groups > 1 {
        let single = Conv2dParams { groups: 1, ..*p };
        for (cin, cout) in groups_of(&a.g, p) {
            let w = whole_copy(rec, &a.weight.batches(cout.clone())?)?;
            let b = match a.bias {
                Some(b) => Some(whole_copy(rec, &b.batches(cout.clone())?)?),
                None => None,
            };
            let (xg, og) = (a.x.channels(cin)?, a.out.channels(cout)?);
            conv2d_into(rec, &xg, &w, b.as_ref(), &single, &og, fusion)?;
        }
        return Ok(());
    }
    let chunk = max_channels(kh, kw)?;
    for (k, c0) in (0..a.g.x[1]).step_by(chunk).enumerate() {
        let c1 = (c0 + chunk).min(a.g.x[1]);
        // Weight columns c0..c1: a channel view of the OIHW weight, copied whole.
        let w = whole_copy(rec, &a.weight.channels(c0..c1)?)?;
        let b = if k == 0 { a.bias } else { None };
        let x = a.x.channels(c0..c1)?;
        conv2d_into(rec, &x, &w, b, p, a.out, fusion.after_part(k))?;
    }
    Ok(())
}

/// The input gradient of a convolution whose reduction (over output channels × taps) is
/// too long for one launch: per group, then per chunk of output channels, accumulating.
pub(crate) fn backward_input(rec: &mut Recording<'_>, a: &InputGradArgs<'_>) -> Result<()> {
    let [_, _, kh, kw] = a.g.w;
    let (p, fusion) = (&a.p, a.fusion);
    if p.groups > 1 {
        let single = Conv2dParams { groups: 1, ..*p };
        for (cin, cout) in groups_of(&a.g, p) {
            let w = whole_copy(rec, &a.weight.batches(cout.clone())?)?;
            let (xg, gxg) = (a.x.channels(cin.clone())?, a.grad_x.channels(cin)?);
            let gog = a.grad_out.channels(cout)?;
            conv2d_backward_input_into(rec, &xg, &w, &gog, &single, &gxg, fusion)?;
        }
        return Ok(());
    }
    let chunk = max_channels(kh, kw)?;
    for (k, o0) in (0..a.g.y[1]).step_by(chunk).enumerate() {
        let o1 = (o0 + chunk).min(a.g.y[1]);
        let w = whole_copy(rec, &a.weight.batches(o0..o1)?)?;
        let go = a.grad_out.channels(o0..o1)?;
        let f = fusion.after_part(k);
        conv2d_backward_input_into(rec, a.x, &w, &go, p, a.grad_x, f)?;
    }
    Ok(())
}

/// Halves of `0..len` (the channels of a sample too large for one binding).
fn halves(len: usize) -> [std::ops::Range<usize>; 2] {
    [0..len / 2, len / 2..len]
}

/// The forward of one sample too large for one binding (groups = 1): halves of the output
/// channels while the output does not fit, else halves of the input channels, accumulating.
pub(crate) fn forward_channels(
    rec: &mut Recording<'_>,
    a: &ForwardArgs<'_>,
    out_fits: bool,
) -> Result<()> {
    let (cin, cout) = (a.g.x[1], a.g.y[1]);
    if !out_fits && cout > 1 {
        for o in halves(cout) {
            let w = whole_copy(rec, &a.weight.batches(o.clone())?)?;
            let b = match a.bias {
                Some(b) => Some(whole_copy(rec, &b.batches(o.clone())?)?),
                None => None,
            };
            let out = a.out.channels(o)?;
            conv2d_into(rec, a.x, &w, b.as_ref(), &a.p, &out, a.fusion)?;
        }
        return Ok(());
    }
    if cin < 2 {
        return Err(unsplittable("conv2d"));
    }
    for (k, c) in halves(cin).into_iter().enumerate() {
        let w = whole_copy(rec, &a.weight.channels(c.clone())?)?;
        let b = if k == 0 { a.bias } else { None };
        let x = a.x.channels(c)?;
        conv2d_into(rec, &x, &w, b, &a.p, a.out, a.fusion.after_part(k))?;
    }
    Ok(())
}

/// The input gradient of one sample too large for one binding (groups = 1): halves of the
/// output channels (accumulating) while grad_out does not fit, else of the input channels.
pub(crate) fn backward_input_channels(
    rec: &mut Recording<'_>,
    a: &InputGradArgs<'_>,
    grad_out_fits: bool,
) -> Result<()> {
    let (cin, cout) = (a.g.x[1], a.g.y[1]);
    if !grad_out_fits && cout > 1 {
        for (k, o) in halves(cout).into_iter().enumerate() {
            let w = whole_copy(rec, &a.weight.batches(o.clone())?)?;
            let go = a.grad_out.channels(o)?;
            let f = a.fusion.after_part(k);
            conv2d_backward_input_into(rec, a.x, &w, &go, &a.p, a.grad_x, f)?;
        }
        return Ok(());
    }
    if cin < 2 {
        return Err(unsplittable("conv2d backward input"));
    }
    for c in halves(cin) {
        let w = whole_copy(rec, &a.weight.channels(c.clone())?)?;
        let (xc, gxc) = (a.x.channels(c.clone())?, a.grad_x.channels(c)?);
        conv2d_backward_input_into(rec, &xc, &w, a.grad_out, &a.p, &gxc, a.fusion)?;
    }
    Ok(())
}

/// The weight gradient of one sample too large for one binding (groups = 1): halves of the
/// output channels while grad_out does not fit, else of the input channels, each into a
/// whole scratch gradient copied (or added) into its rows or columns of `grad_weight`.
pub(crate) fn backward_weight_channels(
    rec: &mut Recording<'_>,
    a: &WeightGradArgs<'_>,
    grad_out_fits: bool,
) -> Result<()> {
    let (cin, cout) = (a.g.x[1], a.g.y[1]);
    let [_, _, kh, kw] = a.g.w;
    let load = Fusion {
        relu_input: a.fusion.relu_input,
        accumulate: false,
    };
    let split_out = !grad_out_fits && cout > 1;
    if !split_out && cin < 2 {
        return Err(unsplittable("conv2d backward weight"));
    }
    for r in halves(if split_out { cout } else { cin }) {
        let (xs, gos, dst, shape) = if split_out {
            let part = [r.len(), cin, kh, kw];
            (
                a.x.clone(),
                a.grad_out.channels(r.clone())?,
                a.grad_weight.batches(r)?,
                part,
            )
        } else {
            let part = [cout, r.len(), kh, kw];
            (
                a.x.channels(r.clone())?,
                a.grad_out.clone(),
                a.grad_weight.channels(r)?,
                part,
            )
        };
        let part = Tensor::zeros(rec.gpu(), shape, Purpose::Scratch)?;
        conv2d_backward_weight_into(rec, &xs, &gos, &a.p, &part, load)?;
        copy_view(rec, &part, &dst, a.fusion.accumulate)?;
        rec.retain(part);
    }
    Ok(())
}

/// The bias gradient of one sample too large for one binding: halves of the channels, each
/// into a scratch gradient copied (or added) into its rows of `grad_bias`.
pub(crate) fn backward_bias_channels(
    rec: &mut Recording<'_>,
    grad_out: &Tensor,
    grad_bias: &Tensor,
    accumulate: bool,
) -> Result<()> {
    let cout = grad_out.shape()[1];
    if cout < 2 {
        return Err(unsplittable("conv2d backward bias"));
    }
    for o in halves(cout) {
        let part = Tensor::zeros(rec.gpu(), [o.len(), 1, 1, 1], Purpose::Scratch)?;
        conv2d_backward_bias_into(rec, &grad_out.channels(o.clone())?, &part, false)?;
        copy_view(rec, &part, &grad_bias.batches(o)?, accumulate)?;
        rec.retain(part);
    }
    Ok(())
}

/// One channel plane of one sample is larger than one binding: nothing left to split.
fn unsplittable(op: &'static str) -> Error {
    Error::param(
        op,
        "one channel of one sample is larger than the device's max_storage_buffer_binding_size; \
         use smaller images",
    )
}
