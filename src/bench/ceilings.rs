//! The adapter's own ceilings: peak FMA throughput (an FMA-bound shader) and peak memory
//! bandwidth (a large vec4 copy), measured on the same adapter and the same way as every
//! benchmark case, so each case can be placed on a roofline.

use crate::error::Result;
use crate::gpu::{Access, KernelSpec, Shader};
use crate::memory::Purpose;
use crate::record::{Binding, Cost, Grid, Recording};
use crate::Gpu;

const PROBE: Shader = wgsl!("probe.wgsl");
/// `fma_peak`: FMA chains into `out` (binding 1).
pub(crate) const FMA_PEAK: KernelSpec = KernelSpec::new(PROBE, "fma_peak", &[(1, Access::Write)]);
/// `copy_peak`: `src` (binding 2) copied into `out` (binding 1).
pub(crate) const COPY_PEAK: KernelSpec =
    KernelSpec::new(PROBE, "copy_peak", &[(1, Access::Write), (2, Access::Read)]);

/// Measured ceilings.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Ceilings {
    /// Peak f32 throughput, GFLOP/s (an FMA counts 2).
    pub fma_gflops: f64,
    /// Peak bandwidth, GB/s (bytes read plus bytes written).
    pub bandwidth_gbs: f64,
    /// Whether the figures come from GPU timestamps (else host wall-clock).
    pub gpu_timestamps: bool,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ProbeArgs {
    count: u32,
    iterations: u32,
    _pad: [u32; 2],
}

/// Runs one probe dispatch and returns its time in ms (by GPU timestamps with `use_gpu`,
/// else the host clock).
fn time_probe(
    gpu: &Gpu,
    use_gpu: bool,
    spec: &KernelSpec,
    args: ProbeArgs,
    bufs: &[Option<Binding<'_>>],
    threads: u64,
) -> Result<f64> {
    let mut rec = Recording::timed(gpu);
    rec.launch(
        spec,
        &[bytemuck::bytes_of(&args)],
        bufs,
        &[],
        Grid::Threads(threads),
        Cost::default(),
    )?;
    let t = rec.finish_timed()?;
    Ok(match (use_gpu, t.gpu_ms) {
        (true, Some(ms)) => ms,
        _ => t.wall_ms,
    })
}

/// Grows the work until one run takes at least `target_ms`, then returns the best of
/// `repeats` runs of that size as (work units, ms).
fn grow(
    mut units: u64,
    max_units: u64,
    target_ms: f64,
    repeats: usize,
    run: &mut dyn FnMut(u64) -> Result<f64>,
) -> Result<(u64, f64)> {
    loop {
        let ms = run(units)?;
        if ms >= target_ms || units >= max_units {
            let mut best = ms;
            for _ in 1..repeats {
                best = best.min(run(units)?);
            }
            return Ok((units, best));
        }
        let factor = (target_ms / ms.max(1e-3)).clamp(2.0, 16.0);
        units = ((units as f64 * factor) as u64).min(max_units);
    }
}

/// Measures both ceilings (a few seconds on a software adapter, less on a real GPU), timed
/// like the cases: GPU timestamps with `use_gpu`, else the host clock.
pub fn measure(gpu: &Gpu, use_gpu: bool) -> Result<Ceilings> {
    let limits = gpu.limits();
    let max_groups = limits.max_compute_workgroups_per_dimension as u64;
    // FMA: threads × iterations × 64 flops.
    let iterations = 256u32;
    let max_threads = (max_groups * max_groups * 64).min(1 << 28);
    let out =
        std::sync::Arc::new(gpu.alloc_storage((max_threads / 1024 + 1) * 16, Purpose::Scratch)?);
    // Best of 7 runs of at least 50 ms: the figure is a ceiling, so the least disturbed run
    // counts (software adapters share the CPU with everything else).
    let (threads, ms) = grow(1 << 14, max_threads, 50.0, 7, &mut |threads| {
        let args = ProbeArgs {
            count: threads as u32,
            iterations,
            _pad: [0; 2],
        };
        time_probe(
            gpu,
            use_gpu,
            &FMA_PEAK,
            args,
            &[Some(Binding {
                buf: &out,
                write: true,
                window: None,
            })],
            threads,
        )
    })?;
    let fma_gflops = threads as f64 * iterations as f64 * 64.0 / (ms * 1e6);
    drop(out);

    // Bandwidth: a copy of `vec4s` elements moves 32 bytes each (16 read, 16 written).
    let max_bytes = (limits.max_storage_buffer_binding_size).min(256 << 20);
    let max_vec4s = max_bytes / 16;
    let src = std::sync::Arc::new(gpu.alloc_storage(max_vec4s * 16, Purpose::Scratch)?);
    let dst = std::sync::Arc::new(gpu.alloc_storage(max_vec4s * 16, Purpose::Scratch)?);
    let (vec4s, ms) = grow((1 << 20).min(max_vec4s), max_vec4s, 30.0, 9, &mut |n| {
        let args = ProbeArgs {
            count: n as u32,
            iterations: 0,
            _pad: [0; 2],
        };
        time_probe(
            gpu,
            use_gpu,
            &COPY_PEAK,
            args,
            &[
                Some(Binding {
                    buf: &dst,
                    write: true,
                    window: None,
                }),
                Some(Binding {
                    buf: &src,
                    write: false,
                    window: None,
                }),
            ],
            n,
        )
    })?;
    let bandwidth_gbs = vec4s as f64 * 32.0 / (ms * 1e6);
    Ok(Ceilings {
        fma_gflops,
        bandwidth_gbs,
        gpu_timestamps: use_gpu,
    })
}
