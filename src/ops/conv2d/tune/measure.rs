//! How the tuner times a kernel: on look-alike scratch tensors laid out as the caller's are
//! (the same channel-view offsets and strides, bias, fusion and mask), so the winner
//! measured is the winner for the real call; every choice compiled and run once, then
//! [`RUNS`] rounds that time each choice once (so a drift in clocks hits all of them
//! alike), the median of each choice's runs deciding, by GPU timestamps under the GPU
//! policy where the adapter has them (the host clock otherwise: lavapipe's timestamps do
//! not bracket its work).
//! Where the best two are within [`CLOSE`] of each other, both are run [`RUNS`] times more,
//! alternately, and the medians of all their runs decide: the H200 picked a 2.4× slower
//! kernel in one process of five from best-of-3 timings.
//!
//! Each variant is journalled while it is compiled and run (`store.rs`), and one that
//! fails — an error from wgpu, or a process that dies inside it — is recorded as failed and
//! skipped, never the op's failure while another variant works.

use super::store::TuneStore;
use crate::error::{Error, Result};
use crate::memory::Purpose;
use crate::ops::conv2d::args::{BiasGradient, ForwardArgs, InputGradArgs, WeightGradArgs};
use crate::ops::conv2d::conv2d_backward_bias_into;
use crate::ops::conv2d::family::{Call, Choice, Pass, TuneKey};
use crate::record::Recording;
use crate::tensor::Tensor;
use crate::Gpu;

/// Timed runs of each candidate (after one warm-up run), in rounds, and again of each of
/// the best two where they are close.
pub(crate) const RUNS: usize = 5;
/// The best two are re-measured when the second's median is within this factor of the
/// first's.
pub(crate) const CLOSE: f64 = 1.10;

/// A scratch tensor of `t`'s shape and view layout (a channel view of a wider buffer where
/// `t` is one), filled with non-zero values: zeros can run faster than real data on some
/// GPUs.
fn like(gpu: &Gpu, t: &Tensor) -> Result<Tensor> {
    let [n, c, h, w] = t.shape();
    let plane = (h * w).max(1);
    let (offset, stride) = (t.offset_u32() as usize, t.batch_stride_u32() as usize);
    let (total, first) = if !t.is_contiguous()
        && stride.is_multiple_of(plane)
        && offset.is_multiple_of(plane)
        && offset < stride
    {
        (stride / plane, offset / plane)
    } else {
        (c, 0)
    };
    let len = n * total * h * w;
    let v: Vec<f32> = (0..len).map(|i| (i % 7) as f32 * 0.25 - 0.75).collect();
    let whole = Tensor::from_slice(gpu, [n, total, h, w], &v, Purpose::Scratch)?;
    whole.channels(first..first + c)
}

/// The tensors of a look-alike call, owned for the length of the measurement.
struct LookAlike {
    tensors: Vec<Tensor>,
    /// The whole output gradient and the bias gradient, where a bias gradient is owed with
    /// a weight gradient.
    bias: Option<(Tensor, Tensor)>,
}

impl LookAlike {
    fn of(gpu: &Gpu, call: &Call<'_, '_>) -> Result<LookAlike> {
        let mut tensors = Vec::new();
        let mut bias = None;
        match *call {
            Call::Forward(a) => {
                for t in [a.x, a.weight, a.out].into_iter().chain(a.bias) {
                    tensors.push(like(gpu, t)?);
                }
            }
            Call::BackwardInput(a) => {
                for t in [a.x, a.weight, a.grad_x, a.grad_out] {
                    tensors.push(like(gpu, t)?);
                }
            }
            Call::BackwardWeight(a) => {
                for t in [a.x, a.grad_out, a.grad_weight] {
                    tensors.push(like(gpu, t)?);
                }
                if let Some(b) = a.bias {
                    bias = Some((like(gpu, b.grad_out)?, like(gpu, b.grad_bias)?));
                }
            }
        }
        Ok(LookAlike { tensors, bias })
    }

    /// Records `choice` on the look-alikes of `call` and times it: one run, in ms.
    fn time(&self, gpu: &Gpu, call: &Call<'_, '_>, choice: Choice) -> Result<f64> {
        let t = &self.tensors;
        let bias = self.bias.as_ref().map(|(go, gb)| BiasGradient::new(go, gb));
        let mut rec = Recording::timed(gpu);
        match *call {
            Call::Forward(a) => {
                let copy = ForwardArgs {
                    x: &t[0],
                    weight: &t[1],
                    out: &t[2],
                    bias: t.get(3),
                    ..*a
                };
                Call::Forward(&copy).run_choice(choice, &mut rec)?;
            }
            Call::BackwardInput(a) => {
                let copy = InputGradArgs {
                    x: &t[0],
                    weight: &t[1],
                    grad_x: &t[2],
                    grad_out: &t[3],
                    ..*a
                };
                Call::BackwardInput(&copy).run_choice(choice, &mut rec)?;
            }
            Call::BackwardWeight(a) => {
                let copy = WeightGradArgs {
                    x: &t[0],
                    grad_out: &t[1],
                    grad_weight: &t[2],
                    bias: bias.as_ref(),
                    ..*a
                };
                Call::BackwardWeight(&copy).run_choice(choice, &mut rec)?;
                // A family that reduces partial sums takes the bias along; the others pay
                // its own launch, which is part of their cost.
                if let Some(b) = bias.as_ref().filter(|b| !b.done()) {
                    conv2d_backward_bias_into(&mut rec, b.grad_out, b.grad_bias, false)?;
                }
            }
        }
        let timing = rec.finish_timed()?;
        Ok(match (gpu.cpu_decisions(), timing.gpu_ms) {
            (false, Some(gpu_ms)) => gpu_ms,
            _ => timing.wall_ms,
        })
    }
}

/// The median of `times` (not empty).
pub(crate) fn median(times: &[f64]) -> f64 {
    let mut t = times.to_vec();
    t.sort_by(f64::total_cmp);
    let mid = t.len() / 2;
    if t.len() % 2 == 1 {
        t[mid]
    } else {
        (t[mid - 1] + t[mid]) / 2.0
    }
}

/// Measures every choice in `choices` for `call` (the problem `key`) and returns the
/// fastest with its median time. A choice that fails is recorded in `store` and skipped;
/// where every one fails, the first failure is the error.
pub(crate) fn fastest(
    gpu: &Gpu,
    call: &Call<'_, '_>,
    key: &TuneKey,
    choices: &[Choice],
    store: &TuneStore,
) -> Result<(Choice, f64)> {
    let look = LookAlike::of(gpu, call)?;
    let mut measured: Vec<(Choice, Vec<f64>)> = Vec::new();
    let mut first_error: Option<Error> = None;
    let fail = |choice: Choice, e: Error, first_error: &mut Option<Error>| {
        store.record_failure(*key, choice, &e.to_string());
        first_error.get_or_insert(e);
    };
    // Each choice compiled and run once, journalled: a driver's compiler is what has
    // crashed (and the first run would meet any fault of the pipeline).
    for &choice in choices {
        let trying = store.trying(key, choice);
        abort_if_asked(call, choice);
        let result = look.time(gpu, call, choice);
        trying.done();
        match result {
            Ok(_) => measured.push((choice, Vec::new())),
            Err(e) => fail(choice, e, &mut first_error),
        }
    }
    // Then RUNS rounds that time every choice once each: clocks still rising (a GPU idles
    // at a fraction of them) slow every choice alike, not the ones measured first.
    for _ in 0..RUNS {
        let mut failed = Vec::new();
        for (i, m) in measured.iter_mut().enumerate() {
            match look.time(gpu, call, m.0) {
                Ok(t) => m.1.push(t),
                Err(e) => {
                    fail(m.0, e, &mut first_error);
                    failed.push(i);
                }
            }
        }
        for i in failed.into_iter().rev() {
            measured.remove(i);
        }
    }
    measured.sort_by(|a, b| median(&a.1).total_cmp(&median(&b.1)));
    if measured.len() >= 2 && median(&measured[1].1) <= CLOSE * median(&measured[0].1) {
        // Close: both again, alternately, so a drift in clocks hits both alike.
        for _ in 0..RUNS {
            for m in measured.iter_mut().take(2) {
                let t = look.time(gpu, call, m.0)?;
                m.1.push(t);
            }
        }
        measured[..2].sort_by(|a, b| median(&a.1).total_cmp(&median(&b.1)));
    }
    match measured.first() {
        Some((choice, times)) => Ok((*choice, median(times))),
        None => Err(first_error.unwrap_or_else(|| Error::Gpu {
            during: "tuning a convolution".into(),
            message: "internal error: no kernel to measure".into(),
        })),
    }
}

/// Aborts the process where `SKIPGRAD_TEST_ABORT_IN_VARIANT` names `choice` for this pass
/// (`<pass>:<family>:<variant>`, pass `forward`, `input` or `weight`), as a driver whose
/// compiler crashes on it would: what the crash-safety tests use to leave a journal behind.
/// Not for users.
fn abort_if_asked(call: &Call<'_, '_>, choice: Choice) {
    if let Ok(target) = std::env::var("SKIPGRAD_TEST_ABORT_IN_VARIANT") {
        let pass = match call.pass() {
            Pass::Forward => "forward",
            Pass::BackwardInput => "input",
            Pass::BackwardWeight => "weight",
        };
        if target == format!("{pass}:{}:{}", choice.kind().name(), choice.variant) {
            eprintln!("skipgrad: aborting inside {target}, as SKIPGRAD_TEST_ABORT_IN_VARIANT asks");
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[7.0]), 7.0);
    }
}
