//! Bounded loops: every conv launch keeps the loop iterations of each GPU thread under
//! [`LOOP_BUDGET`], splitting long reductions into pieces whose sums are accumulated.
//!
//! Why: Mesa's software drivers (lavapipe on Vulkan, llvmpipe on GL) stop a shader
//! invocation's loops after 65,535 iterations *in total*: gallivm keeps one counter per
//! invocation, decrements it at the back-edge of every loop and never resets it, so a long
//! reduction ends early and its partial sum is stored as if complete — a wrong number and no
//! error. The split is done on every adapter, so results never depend on the driver's limit.
//!
//! - Forward and input gradient: the reduction over input (output) channels × taps is
//!   split host-side into channel chunks (and groups into their own convolutions), each a
//!   convolution that accumulates into the destination.
//! - Weight and bias gradients: the reduction over N·OH·OW is split inside the kernels
//!   into partial sums (see `backward_weight_gemm`, the direct weight gradient and the bias
//!   gradient), with per-split lengths from [`rows_per_split`].

use super::{conv2d_backward_input_into, conv2d_into, Conv2dParams, Fusion, Geometry};
use crate::error::{Error, Result};
use crate::memory::Purpose;
use crate::ops::concat::copy_view;
use crate::record::Recording;
use crate::tensor::Tensor;

/// Loop iterations one thread may run, all loops together: a quarter of Mesa's 65,535, so
/// that the estimates below (which count each kernel's loops by their worst case, not
/// exactly) keep a wide margin. `tests/scale.rs` checks kernels at the largest unsplit sizes.
pub(crate) const LOOP_BUDGET: usize = 16_384;

/// Loop iterations of a thread that reduces over `channels` channels of a `kh` × `kw`
/// kernel: every family loops over taps and channels (the tiled ones by 16-deep slices with
/// inner loops); three per term bounds them all.
fn channel_reduction_trips(kh: usize, kw: usize, channels: usize) -> usize {
    3 * kh * kw * (channels + 2)
}

/// Whether a reduction over `channels` channels of a `kh` × `kw` kernel fits one launch.
pub(crate) fn channels_fit(kh: usize, kw: usize, channels: usize) -> bool {
    channel_reduction_trips(kh, kw, channels) <= LOOP_BUDGET
}

/// The most channels one launch may reduce over for a `kh` × `kw` kernel.
fn max_channels(kh: usize, kw: usize) -> Result<usize> {
    (LOOP_BUDGET / (3 * kh * kw))
        .checked_sub(2)
        .filter(|&c| c >= 1)
        .ok_or_else(|| {
            Error::param(
                "conv2d",
                format!(
                    "a {kh}x{kw} kernel has more taps than one GPU thread may loop over \
                     ({} iterations at most); use a smaller kernel",
                    LOOP_BUDGET
                ),
            )
        })
}

/// Terms one thread sums serially in a weight or bias gradient, at most: beyond a few
/// thousand, a float32 running sum of random terms drifts past the `1e-4·(1 + |ref|)` the
/// tests hold every kernel to (seen at 8,500 in the tiled family); the splits' partial
/// sums are added in a second pass.
pub(crate) const SERIAL_TERMS: usize = 4096;

/// Output rows (of `row_len` elements, each costing `per_row` extra iterations) one split
/// of a weight or bias gradient may reduce over: within the loop budget, and no more than
/// [`SERIAL_TERMS`] pixels where rows allow.
pub(crate) fn rows_per_split(row_len: usize, per_row: usize, what: &str) -> Result<usize> {
    let cost = row_len.saturating_add(per_row).max(1);
    let accurate = (SERIAL_TERMS / row_len.max(1)).max(1);
    match (LOOP_BUDGET / cost).min(accurate) {
        0 => Err(Error::param(
            "conv2d backward",
            format!(
                "{what}: rows of {row_len} output pixels are longer than one GPU thread may \
                 loop over ({LOOP_BUDGET} iterations); use narrower images"
            ),
        )),
        rows => Ok(rows),
    }
}

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
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    rec: &mut Recording<'_>,
    g: &Geometry,
    p: &Conv2dParams,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
    fusion: Fusion,
) -> Result<()> {
    let [_, _, kh, kw] = g.w;
    if p.groups > 1 {
        let single = Conv2dParams { groups: 1, ..*p };
        for (cin, cout) in groups_of(g, p) {
            let w = whole_copy(rec, &weight.batches(cout.clone())?)?;
            let b = match bias {
                Some(b) => Some(whole_copy(rec, &b.batches(cout.clone())?)?),
                None => None,
            };
            let (xg, og) = (x.channels(cin)?, out.channels(cout)?);
            conv2d_into(rec, &xg, &w, b.as_ref(), &single, &og, fusion)?;
        }
        return Ok(());
    }
    let chunk = max_channels(kh, kw)?;
    for (k, c0) in (0..g.x[1]).step_by(chunk).enumerate() {
        let c1 = (c0 + chunk).min(g.x[1]);
        // Weight columns c0..c1: a channel view of the OIHW weight, copied whole.
        let w = whole_copy(rec, &weight.channels(c0..c1)?)?;
        let f = Fusion {
            relu_input: fusion.relu_input,
            accumulate: fusion.accumulate || k > 0,
        };
        let b = if k == 0 { bias } else { None };
        conv2d_into(rec, &x.channels(c0..c1)?, &w, b, p, out, f)?;
    }
    Ok(())
}

/// The input gradient of a convolution whose reduction (over output channels × taps) is
/// too long for one launch: per group, then per chunk of output channels, accumulating.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_input(
    rec: &mut Recording<'_>,
    g: &Geometry,
    p: &Conv2dParams,
    x: &Tensor,
    weight: &Tensor,
    grad_out: &Tensor,
    grad_x: &Tensor,
    fusion: Fusion,
) -> Result<()> {
    let [_, _, kh, kw] = g.w;
    if p.groups > 1 {
        let single = Conv2dParams { groups: 1, ..*p };
        for (cin, cout) in groups_of(g, p) {
            let w = whole_copy(rec, &weight.batches(cout.clone())?)?;
            let (xg, gxg) = (x.channels(cin.clone())?, grad_x.channels(cin)?);
            let gog = grad_out.channels(cout)?;
            conv2d_backward_input_into(rec, &xg, &w, &gog, &single, &gxg, fusion)?;
        }
        return Ok(());
    }
    let chunk = max_channels(kh, kw)?;
    for (k, o0) in (0..g.y[1]).step_by(chunk).enumerate() {
        let o1 = (o0 + chunk).min(g.y[1]);
        let w = whole_copy(rec, &weight.batches(o0..o1)?)?;
        let f = Fusion {
            relu_input: fusion.relu_input,
            accumulate: fusion.accumulate || k > 0,
        };
        let go = grad_out.channels(o0..o1)?;
        conv2d_backward_input_into(rec, x, &w, &go, p, grad_x, f)?;
    }
    Ok(())
}

/// Halves of `0..len` (the channels of a sample too large for one binding).
fn halves(len: usize) -> [std::ops::Range<usize>; 2] {
    [0..len / 2, len / 2..len]
}

/// The forward of one sample too large for one binding (groups = 1): halves of the output
/// channels while the output does not fit, else halves of the input channels, accumulating.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_channels(
    rec: &mut Recording<'_>,
    p: &Conv2dParams,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
    fusion: Fusion,
    out_fits: bool,
) -> Result<()> {
    let (cin, cout) = (x.shape()[1], out.shape()[1]);
    if !out_fits && cout > 1 {
        for o in halves(cout) {
            let w = whole_copy(rec, &weight.batches(o.clone())?)?;
            let b = match bias {
                Some(b) => Some(whole_copy(rec, &b.batches(o.clone())?)?),
                None => None,
            };
            conv2d_into(rec, x, &w, b.as_ref(), p, &out.channels(o)?, fusion)?;
        }
        return Ok(());
    }
    if cin < 2 {
        return Err(unsplittable("conv2d"));
    }
    for (k, c) in halves(cin).into_iter().enumerate() {
        let w = whole_copy(rec, &weight.channels(c.clone())?)?;
        let f = Fusion {
            relu_input: fusion.relu_input,
            accumulate: fusion.accumulate || k > 0,
        };
        let b = if k == 0 { bias } else { None };
        conv2d_into(rec, &x.channels(c)?, &w, b, p, out, f)?;
    }
    Ok(())
}

/// The input gradient of one sample too large for one binding (groups = 1): halves of the
/// output channels (accumulating) while grad_out does not fit, else of the input channels.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_input_channels(
    rec: &mut Recording<'_>,
    p: &Conv2dParams,
    x: &Tensor,
    weight: &Tensor,
    grad_out: &Tensor,
    grad_x: &Tensor,
    fusion: Fusion,
    grad_out_fits: bool,
) -> Result<()> {
    let (cin, cout) = (x.shape()[1], grad_out.shape()[1]);
    if !grad_out_fits && cout > 1 {
        for (k, o) in halves(cout).into_iter().enumerate() {
            let w = whole_copy(rec, &weight.batches(o.clone())?)?;
            let f = Fusion {
                relu_input: fusion.relu_input,
                accumulate: fusion.accumulate || k > 0,
            };
            conv2d_backward_input_into(rec, x, &w, &grad_out.channels(o)?, p, grad_x, f)?;
        }
        return Ok(());
    }
    if cin < 2 {
        return Err(unsplittable("conv2d backward input"));
    }
    for c in halves(cin) {
        let w = whole_copy(rec, &weight.channels(c.clone())?)?;
        let (xc, gxc) = (x.channels(c.clone())?, grad_x.channels(c)?);
        conv2d_backward_input_into(rec, &xc, &w, grad_out, p, &gxc, fusion)?;
    }
    Ok(())
}

/// The weight gradient of one sample too large for one binding (groups = 1): halves of the
/// output channels while grad_out does not fit, else of the input channels, each into a
/// whole scratch gradient copied (or added) into its rows or columns of `grad_weight`.
pub(crate) fn backward_weight_channels(
    rec: &mut Recording<'_>,
    p: &Conv2dParams,
    x: &Tensor,
    grad_out: &Tensor,
    grad_weight: &Tensor,
    fusion: Fusion,
    grad_out_fits: bool,
) -> Result<()> {
    let (cin, cout) = (x.shape()[1], grad_out.shape()[1]);
    let [_, _, kh, kw] = grad_weight.shape();
    let load = Fusion {
        relu_input: fusion.relu_input,
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
                x.clone(),
                grad_out.channels(r.clone())?,
                grad_weight.batches(r)?,
                part,
            )
        } else {
            let part = [cout, r.len(), kh, kw];
            (
                x.channels(r.clone())?,
                grad_out.clone(),
                grad_weight.channels(r)?,
                part,
            )
        };
        let part = Tensor::zeros(rec.gpu(), shape, Purpose::Scratch)?;
        super::conv2d_backward_weight_into(rec, &xs, &gos, p, &part, load)?;
        copy_view(rec, &part, &dst, fusion.accumulate)?;
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
        super::conv2d_backward_bias_into(rec, &grad_out.channels(o.clone())?, &part, false)?;
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
