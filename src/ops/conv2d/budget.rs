//! Bounded loops: every conv launch keeps the loop iterations of each GPU thread under
//! [`LOOP_BUDGET`], and the serial sums of each thread under [`SERIAL_TERMS`].
//!
//! Why: Mesa's software drivers (lavapipe on Vulkan, llvmpipe on GL) stop a shader
//! invocation's loops after 65,535 iterations *in total*: gallivm keeps one counter per
//! invocation, decrements it at the back-edge of every loop and never resets it, so a long
//! reduction ends early and its partial sum is stored as if complete — a wrong number and no
//! error. The limits hold on every adapter, so results never depend on the driver's limit.
//! Long channel reductions are split by `split.rs` (host side), long pixel reductions into
//! partial sums by the families (`partials.rs`).

use crate::error::{Error, Result};

/// Loop iterations one thread may run, all loops together: a quarter of Mesa's 65,535, so
/// that the estimates below (which count each kernel's loops by their worst case, not
/// exactly) keep a wide margin. `tests/scale.rs` checks kernels at the largest unsplit sizes.
pub(crate) const LOOP_BUDGET: usize = 16_384;

/// Loop iterations of a thread that reduces over `channels` channels of a `kh` × `kw`
/// kernel: every family loops over taps and channels; three per term bounds them all (with
/// room for kernels that slice the reduction with inner loops).
fn channel_reduction_trips(kh: usize, kw: usize, channels: usize) -> usize {
    3 * kh * kw * (channels + 2)
}

/// Whether a reduction over `channels` channels of a `kh` × `kw` kernel fits one launch.
pub(crate) fn channels_fit(kh: usize, kw: usize, channels: usize) -> bool {
    channel_reduction_trips(kh, kw, channels) <= LOOP_BUDGET
}

/// The most channels one launch may reduce over for a `kh` × `kw` kernel.
pub(crate) fn max_channels(kh: usize, kw: usize) -> Result<usize> {
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

/// Loop iterations of a thread few enough that one launch of a simple kernel beats a
/// launch more of a faster one on a tiny problem (a few µs of looping on any adapter,
/// against ≈ 13 µs of host work and tens of µs of lavapipe dispatch a launch): below it,
/// `Auto` runs a tiny conv's forward direct and its gradients fused without measuring.
pub(crate) const SHORT_LOOP: usize = 1024;

/// Terms one thread sums serially in a weight or bias gradient, at most: beyond a few
/// thousand, a float32 running sum of random terms drifts past the `1e-4·(1 + |ref|)` the
/// tests hold every kernel to (seen at 8,500 in a since-removed tiled family); the splits' partial
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
