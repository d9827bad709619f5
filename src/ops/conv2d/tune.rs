//! The `Auto` choice of family: a rule where the benchmark justified one, else a one-time
//! measurement per problem and `Gpu` on scratch tensors laid out as the caller's are (the
//! same channel-view offsets and strides, bias, fusion and mask), so the winner measured is
//! the winner for the real call.
//!
//! The rule (benches/NOTES.md): on a CPU adapter (lavapipe) the texture family beats
//! register-blocked 1.5–2× on every standard case, which beats the direct kernels 5×, so
//! only tiny shapes, where launch overhead rules, are measured (against register-blocked
//! and direct); on a GPU every family is fast enough to measure, so all are.

use super::args::{BiasGradient, ForwardArgs, InputGradArgs, WeightGradArgs};
use super::conv2d_backward_bias_into;
use super::select::{family, Call, Family, Policy, FAMILIES};
use crate::error::Result;
use crate::memory::Purpose;
use crate::record::Recording;
use crate::tensor::Tensor;
use crate::{ConvKernels, Gpu};

/// Problems below this many FLOPs (one pass) are launch-bound on a CPU adapter.
const TINY_FLOPS: u64 = 2_000_000;

/// Loop iterations of a direct-kernel thread short enough that its one launch beats
/// a packing launch and a faster kernel on a tiny problem.
const SHORT_LOOP: usize = 1024;

/// The family `Auto` runs `call` with.
pub(crate) fn choose(gpu: &Gpu, call: &Call<'_, '_>) -> Result<&'static dyn Family> {
    let (g, p) = call.problem();
    let supported: Vec<&'static dyn Family> = FAMILIES
        .into_iter()
        .filter(|f| f.supports(gpu, call.pass(), g, p))
        .collect();
    let cpu = gpu.adapter_info().device_type == wgpu::DeviceType::Cpu;
    let tiny = g.tap_flops() < TINY_FLOPS;
    let first = |kinds: &[ConvKernels]| {
        kinds
            .iter()
            .map(|&k| family(k))
            .find(|f| supported.iter().any(|s| s.kind() == f.kind()))
            .unwrap_or(family(ConvKernels::Direct))
    };
    if cpu && !tiny {
        return Ok(first(&[ConvKernels::Texture, ConvKernels::RegisterBlocked]));
    }
    if let Call::Forward(_) = call {
        // A tiny forward whose threads loop briefly: the direct kernel is one launch, the
        // others two (weights packed first) — more than any measured difference in compute,
        // and measuring it chose either by the noise of µs timings.
        let [_, cin_g, kh, kw] = g.w;
        if tiny && cin_g * kh * kw <= SHORT_LOOP {
            return Ok(first(&[ConvKernels::Direct]));
        }
    }
    if gpu.deterministic() {
        // A fixed rule instead of a measurement, so every process makes the same choice
        // (timings vary between runs, and families sum in different orders): the direct
        // family for tiny shapes on CPU adapters (launch overhead rules there), the pixel
        // family on GPUs (the H200's winner for every pass, benches/NOTES.md).
        return Ok(first(if cpu {
            &[ConvKernels::Direct]
        } else {
            &[ConvKernels::Pixel]
        }));
    }
    let candidates: Vec<&'static dyn Family> = if cpu {
        // The pixel and GEMM families are GPU shapes (many threads; workgroup memory and
        // barriers, which a CPU adapter runs as loops): never the fastest there.
        supported
            .into_iter()
            .filter(|f| !matches!(f.kind(), ConvKernels::Pixel | ConvKernels::Gemm))
            .collect()
    } else {
        supported
    };
    if candidates.len() == 1 {
        return Ok(candidates[0]);
    }
    let key = call.key();
    let policy = gpu.extension::<Policy>();
    if let Some(&kind) = lock(&policy.tuned).get(&key) {
        return Ok(family(kind));
    }
    let best = measure(gpu, call, &candidates)?;
    lock(&policy.tuned).insert(key, best.kind());
    Ok(best)
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

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

/// Runs `call`'s pass on look-alike scratch tensors with each candidate (best of 3 after a
/// warm-up; GPU timestamps on GPUs, the host clock on CPU adapters) and returns the fastest.
fn measure(
    gpu: &Gpu,
    call: &Call<'_, '_>,
    candidates: &[&'static dyn Family],
) -> Result<&'static dyn Family> {
    let cpu = gpu.adapter_info().device_type == wgpu::DeviceType::Cpu;
    // A bias gradient owed with a weight gradient is measured too, on look-alikes of the
    // whole output gradient and the bias: a family that reduces partial sums takes it
    // along, the others pay its own launch.
    let (bo, bg) = match *call {
        Call::BackwardWeight(WeightGradArgs {
            bias: Some(bias), ..
        }) => (
            Some(like(gpu, bias.grad_out)?),
            Some(like(gpu, bias.grad_bias)?),
        ),
        _ => (None, None),
    };
    let bias = bo
        .as_ref()
        .zip(bg.as_ref())
        .map(|(go, gb)| BiasGradient::new(go, gb));
    let (f, w, b, o, m);
    let copy = match *call {
        Call::Forward(a) => {
            (f, w, o) = (like(gpu, a.x)?, like(gpu, a.weight)?, like(gpu, a.out)?);
            b = a.bias.map(|t| like(gpu, t)).transpose()?;
            Copy::Forward(ForwardArgs {
                x: &f,
                weight: &w,
                bias: b.as_ref(),
                out: &o,
                ..*a
            })
        }
        Call::BackwardInput(a) => {
            (f, w, o, m) = (
                like(gpu, a.x)?,
                like(gpu, a.weight)?,
                like(gpu, a.grad_x)?,
                like(gpu, a.grad_out)?,
            );
            Copy::BackwardInput(InputGradArgs {
                x: &f,
                weight: &w,
                grad_out: &m,
                grad_x: &o,
                ..*a
            })
        }
        Call::BackwardWeight(a) => {
            (f, w, o) = (
                like(gpu, a.x)?,
                like(gpu, a.grad_out)?,
                like(gpu, a.grad_weight)?,
            );
            Copy::BackwardWeight(WeightGradArgs {
                x: &f,
                grad_out: &w,
                grad_weight: &o,
                bias: bias.as_ref(),
                ..*a
            })
        }
    };
    let copy = copy.call();
    let mut best = (f64::INFINITY, candidates[0]);
    for &family in candidates {
        let mut fastest = f64::INFINITY;
        for run in 0..4 {
            let mut rec = Recording::timed(gpu);
            copy.run(family, &mut rec)?;
            if let Some(bias) = bias.as_ref() {
                if !bias.done() {
                    conv2d_backward_bias_into(&mut rec, bias.grad_out, bias.grad_bias, false)?;
                }
                bias.mark_undone();
            }
            let t = rec.finish_timed()?;
            // lavapipe's timestamps are unreliable for recordings this small (seen off by
            // a whole dispatch either way): the host clock decides there.
            let ms = match (cpu, t.gpu_ms) {
                (false, Some(gpu_ms)) => gpu_ms,
                _ => t.wall_ms,
            };
            if run > 0 {
                fastest = fastest.min(ms);
            }
        }
        if fastest < best.0 {
            best = (fastest, family);
        }
    }
    Ok(best.1)
}

/// The look-alike call's arguments, owned for the length of the measurement.
enum Copy<'a> {
    Forward(ForwardArgs<'a>),
    BackwardInput(InputGradArgs<'a>),
    BackwardWeight(WeightGradArgs<'a>),
}

impl<'a> Copy<'a> {
    fn call(&self) -> Call<'_, 'a> {
        match self {
            Copy::Forward(a) => Call::Forward(a),
            Copy::BackwardInput(a) => Call::BackwardInput(a),
            Copy::BackwardWeight(a) => Call::BackwardWeight(a),
        }
    }
}
