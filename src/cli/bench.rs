//! `skipgrad bench` (also what `skipgrad` runs with no arguments): the standard cases, each
//! checked once against the CPU reference, then timed forward and forward+backward, beside
//! the adapter's own measured FMA and bandwidth ceilings.

use skipgrad::bench::{ceilings, standard_cases, BenchCase, CaseKind};
use skipgrad::{Gpu, Recording};

use super::{adapter_line, fmt_bytes, open_gpu, progress_bar};

/// A count of at least 1 (`--iters 0` would time nothing).
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("it must be at least 1 (the timed runs of each case)".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("not a count: {e}")),
    }
}

/// Options of the benchmark.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    /// Only cases whose name contains one of these (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub cases: Vec<String>,
    /// Timed runs per case and pass (after warm-up); at least 1.
    #[arg(long, default_value_t = 10, value_parser = at_least_one)]
    pub iters: usize,
    /// A fast smoke run: 3 timed runs, 1 warm-up.
    #[arg(long)]
    pub quick: bool,
    /// Timing source: `gpu` (timestamp queries, where the adapter has them), `wall` (host
    /// clock around a completed submission; what peers that sync and read a clock measure),
    /// or `auto`: timestamps on GPUs, the host clock on CPU adapters, whose timestamps do
    /// not bracket the compute work (lavapipe timed a 1 ms dispatch at 0.03 ms).
    #[arg(long, default_value = "auto", value_parser = ["auto", "gpu", "wall"])]
    pub timing: String,
    /// Conv kernel family: auto (chosen per adapter, pass and shape) or one of the
    /// registry's (`skipgrad info` lists them).
    #[arg(long, default_value = "auto")]
    pub kernels: String,
    /// Which cases: `standard` (the default: small cases that join with the peers) or
    /// `gpu` (ResNet-50's convolutions at batch 32 and 128, a batch sweep and the blocks at
    /// batch 128, each conv pass timed alone; with --quick at batches 1 and 2).
    #[arg(long, default_value = "standard", value_parser = ["standard", "gpu"])]
    pub suite: String,
    /// With --suite gpu: every case at this batch instead of its own (the cases' names
    /// say it: `_n4`); what the batch-cliff check compares.
    #[arg(long, value_parser = at_least_one)]
    pub batch: Option<usize>,
    /// With --suite gpu: time every case this many times, each on buffers of its own
    /// (allocated anew), in one process; the rows say which (`repeat`). Run-to-run spread
    /// on the same kernels and batch, told apart from the process's.
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    pub repeat: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Print CSV instead of a table.
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
}

impl Default for BenchArgs {
    /// What `skipgrad` with no arguments runs (the same as the flags' defaults).
    fn default() -> Self {
        BenchArgs {
            cases: Vec::new(),
            iters: 10,
            quick: false,
            timing: "auto".into(),
            kernels: "auto".into(),
            suite: "standard".into(),
            batch: None,
            repeat: 1,
            json: false,
            csv: false,
        }
    }
}

/// Median, min and max of a sample, in ms.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Stats {
    median: f64,
    min: f64,
    max: f64,
}

fn stats(mut v: Vec<f64>) -> Stats {
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    let median = if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    };
    Stats {
        median,
        min: v[0],
        max: v[v.len() - 1],
    }
}

/// One case's results (the JSON row).
#[derive(Clone, Debug, serde::Serialize)]
pub struct CaseResult {
    case: String,
    forward_ms: f64,
    fwd_bwd_ms: f64,
    forward: Stats,
    fwd_bwd: Stats,
    forward_wall_ms: f64,
    fwd_bwd_wall_ms: f64,
    forward_gflops: f64,
    fwd_bwd_gflops: f64,
    forward_flops: u64,
    fwd_bwd_flops: u64,
    forward_bytes: u64,
    fwd_bwd_bytes: u64,
    forward_gbs: f64,
    fwd_bwd_gbs: f64,
    fwd_bwd_fraction_of_fma_peak: f64,
    fwd_bwd_fraction_of_bandwidth: f64,
    bound: &'static str,
    peak_bytes: u64,
    /// Peak bytes per purpose (activation, gradient, parameter, scratch, staging, uniform,
    /// optimizer) over the timed runs.
    peak_bytes_by_purpose: std::collections::BTreeMap<&'static str, u64>,
    /// Dispatches one forward+backward records.
    dispatches_fwd_bwd: usize,
    /// Host time to record the forward+backward (median): the engine's overhead per
    /// recording, before the GPU does anything.
    record_fwd_bwd_ms: f64,
    /// The kernels (entry points) the case ran, autotuned choices included.
    kernels: Vec<String>,
    max_rel_err: f64,
}

fn selected(args: &BenchArgs) -> Vec<BenchCase> {
    standard_cases()
        .into_iter()
        .filter(|c| args.cases.is_empty() || args.cases.iter().any(|f| c.name.contains(f.as_str())))
        .collect()
}

pub(super) fn fail(msg: String) -> skipgrad::Error {
    skipgrad::Error::InvalidParameter {
        op: "bench",
        detail: msg,
    }
}

/// Checks a case against the CPU reference (blocks at batch 2: the full reference of a
/// batch-8 block takes too long on the CPU); an error names every output out of tolerance.
pub(super) fn guard(gpu: &Gpu, case: &BenchCase) -> skipgrad::Result<f64> {
    let check_case = match case.kind {
        CaseKind::Conv { .. } => case.clone(),
        _ => case.with_batch(2),
    };
    let comparisons = check_case.prepare(gpu)?.verify(gpu)?;
    let bad: Vec<String> = comparisons
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("{} (max abs err {:e})", c.name, c.max_abs_err))
        .collect();
    if !bad.is_empty() {
        return Err(fail(format!(
            "{}: the GPU result is WRONG against the CPU reference: {}; not timing a wrong kernel",
            case.name,
            bad.join(", ")
        )));
    }
    Ok(comparisons
        .iter()
        .map(|c| c.max_rel_err)
        .fold(0.0, f64::max))
}

/// Times and counts of one pass over its timed runs.
#[derive(Default)]
struct Measured {
    times: Vec<f64>,
    wall: Vec<f64>,
    /// Host time spent recording (ops, bind groups, argument writes), before submission.
    record: Vec<f64>,
    cost: skipgrad::Cost,
    dispatches: usize,
}

/// Whether to time by GPU timestamps: `gpu` where the adapter has them; `auto` also needs a
/// real GPU (a CPU adapter's timestamps do not bracket its compute work).
pub(super) fn gpu_timing(args: &BenchArgs, gpu: &Gpu) -> bool {
    let trusted = gpu.adapter_info().device_type != wgpu::DeviceType::Cpu;
    gpu.has_timestamps()
        && match args.timing.as_str() {
            "gpu" => true,
            "auto" => trusted,
            _ => false,
        }
}

fn run_case(
    gpu: &Gpu,
    case: &BenchCase,
    args: &BenchArgs,
    iters: usize,
    warmup: usize,
    ceil: &ceilings::Ceilings,
) -> skipgrad::Result<CaseResult> {
    let max_rel_err = guard(gpu, case)?;
    gpu.synchronize()?;
    let base = gpu.memory_report().live_total;
    let mut w = case.prepare(gpu)?;
    let use_gpu = gpu_timing(args, gpu);
    // Warm-up first (pipelines, autotuning), so the peak below is that of the timed runs:
    // the workload's own buffers plus what each run allocates.
    for _ in 0..warmup {
        let mut rec = Recording::new(gpu);
        w.record_fwd_bwd(&mut rec)?;
        rec.finish()?;
    }
    gpu.reset_peak_memory();
    let mut kernels: Vec<&'static str> = Vec::new();
    let mut measure = |fwd_bwd: bool| -> skipgrad::Result<Measured> {
        let mut m = Measured::default();
        // One untimed run of this pass first, then the timed ones.
        for i in 0..1 + iters {
            let mut rec = if use_gpu {
                Recording::timed(gpu)
            } else {
                Recording::new(gpu)
            };
            let start = std::time::Instant::now();
            if fwd_bwd {
                w.record_fwd_bwd(&mut rec)?;
            } else {
                w.record_forward(&mut rec)?;
            }
            let record_ms = start.elapsed().as_secs_f64() * 1e3;
            m.cost = rec.cost();
            m.dispatches = rec.dispatch_count();
            for k in rec.kernels() {
                if !kernels.contains(k) {
                    kernels.push(k);
                }
            }
            let timing = rec.finish_timed()?;
            if i >= 1 {
                m.record.push(record_ms);
                m.wall.push(timing.wall_ms);
                m.times.push(match (use_gpu, timing.gpu_ms) {
                    (true, Some(t)) => t,
                    _ => timing.wall_ms,
                });
            }
        }
        Ok(m)
    };
    let fwd = measure(false)?;
    let fb = measure(true)?;
    let (tf, wf, cf) = (fwd.times, fwd.wall, fwd.cost);
    let record_fwd_bwd_ms = stats(fb.record.clone()).median;
    let (tb, wb, cb, dispatches) = (fb.times, fb.wall, fb.cost, fb.dispatches);
    let kernels: Vec<String> = kernels.iter().map(|k| k.to_string()).collect();
    let report = gpu.memory_report();
    let peak_bytes = report.peak_total.saturating_sub(base);
    let peak_bytes_by_purpose = skipgrad::Purpose::ALL
        .iter()
        .map(|&p| (p.name(), report.peak(p)))
        .collect();
    drop(w);
    let (sf, sb) = (stats(tf), stats(tb));
    let gflops = |flops: u64, ms: f64| flops as f64 / (ms * 1e6);
    let fwd_bwd_gflops = gflops(cb.flops, sb.median);
    let fwd_bwd_gbs = cb.bytes as f64 / (sb.median * 1e6);
    // Roofline: below the ridge point (peak flops / peak bandwidth) a case is memory bound.
    let intensity = cb.flops as f64 / cb.bytes.max(1) as f64;
    let bound = if intensity < ceil.fma_gflops / ceil.bandwidth_gbs {
        "memory"
    } else {
        "compute"
    };
    Ok(CaseResult {
        case: case.name.clone(),
        forward_ms: sf.median,
        fwd_bwd_ms: sb.median,
        forward: sf,
        fwd_bwd: sb,
        forward_wall_ms: stats(wf).median,
        fwd_bwd_wall_ms: stats(wb).median,
        forward_gflops: gflops(cf.flops, sf.median),
        fwd_bwd_gflops,
        forward_flops: cf.flops,
        fwd_bwd_flops: cb.flops,
        forward_bytes: cf.bytes,
        fwd_bwd_bytes: cb.bytes,
        forward_gbs: cf.bytes as f64 / (sf.median * 1e6),
        fwd_bwd_gbs,
        fwd_bwd_fraction_of_fma_peak: fwd_bwd_gflops / ceil.fma_gflops,
        fwd_bwd_fraction_of_bandwidth: fwd_bwd_gbs / ceil.bandwidth_gbs,
        bound,
        peak_bytes,
        peak_bytes_by_purpose,
        dispatches_fwd_bwd: dispatches,
        record_fwd_bwd_ms,
        kernels,
        max_rel_err,
    })
}

/// Runs the benchmark; returns whether every case passed its correctness guard.
pub fn run(args: &BenchArgs, backend: Option<&str>) -> skipgrad::Result<bool> {
    let cases = selected(args);
    if cases.is_empty() {
        let all = standard_cases();
        return Err(fail(format!(
            "no case matches {:?} (the cases: {})",
            args.cases,
            super::case_names(all.iter().map(|c| c.name.as_str()))
        )));
    }
    let (iters, warmup) = if args.quick { (3, 1) } else { (args.iters, 2) };
    let gpu = open_gpu(backend)?;
    gpu.set_conv_kernels(skipgrad::ConvKernels::parse(&args.kernels)?);
    let use_gpu = gpu_timing(args, &gpu);
    let timing = if use_gpu {
        "gpu-timestamps"
    } else {
        "wall-clock"
    };
    let bar = progress_bar(cases.len() as u64 + 1, "bench");
    bar.set_message("ceilings");
    let ceil = ceilings::measure(&gpu, use_gpu)?;
    bar.inc(1);
    let mut results = Vec::new();
    for case in &cases {
        bar.set_message(case.name.clone());
        let r = run_case(&gpu, case, args, iters, warmup, &ceil);
        bar.inc(1);
        match r {
            Ok(r) => results.push(r),
            Err(e) => {
                bar.finish_and_clear();
                return Err(e);
            }
        }
    }
    bar.finish_and_clear();
    let info = gpu.adapter_info();
    if args.json {
        let v = serde_json::json!({
            "engine": format!("skipgrad {}", env!("CARGO_PKG_VERSION")),
            "adapter": info.name,
            "backend": gpu.backend_name(),
            "device_type": format!("{:?}", info.device_type),
            "driver": format!("{} {}", info.driver, info.driver_info),
            "timing": timing,
            "conv_kernels": args.kernels,
            "iters": iters,
            "ceilings": ceil,
            "cases": results,
            "tuned": super::tuned_json(&gpu),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else if args.csv {
        println!("case,forward_ms,forward_min_ms,forward_max_ms,fwd_bwd_ms,fwd_bwd_min_ms,fwd_bwd_max_ms,forward_gflops,fwd_bwd_gflops,fwd_bwd_gbs,fraction_fma,fraction_bw,bound,peak_bytes");
        for r in &results {
            println!(
                "{},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.3},{:.3},{:.3},{:.4},{:.4},{},{}",
                r.case,
                r.forward.median,
                r.forward.min,
                r.forward.max,
                r.fwd_bwd.median,
                r.fwd_bwd.min,
                r.fwd_bwd.max,
                r.forward_gflops,
                r.fwd_bwd_gflops,
                r.fwd_bwd_gbs,
                r.fwd_bwd_fraction_of_fma_peak,
                r.fwd_bwd_fraction_of_bandwidth,
                r.bound,
                r.peak_bytes
            );
        }
    } else {
        print_table(&gpu, &ceil, timing, iters, &results);
    }
    Ok(true)
}

fn print_table(
    gpu: &Gpu,
    ceil: &ceilings::Ceilings,
    timing: &str,
    iters: usize,
    rows: &[CaseResult],
) {
    println!("skipgrad {} benchmark", env!("CARGO_PKG_VERSION"));
    println!("adapter:  {}", adapter_line(gpu));
    println!(
        "ceilings: FMA {:.1} GFLOP/s, bandwidth {:.1} GB/s (measured here); timing: {timing}, median of {iters} (min-max)",
        ceil.fma_gflops, ceil.bandwidth_gbs
    );
    println!(
        "{:<34} {:>22} {:>22} {:>8} {:>8} {:>7} {:>7} {:>7} {:>10}",
        "case",
        "forward ms",
        "fwd+bwd ms",
        "f GF/s",
        "fb GF/s",
        "fb GB/s",
        "%FMA",
        "%BW",
        "peak mem"
    );
    for r in rows {
        let range = |s: &Stats| format!("{:.3} ({:.3}-{:.3})", s.median, s.min, s.max);
        println!(
            "{:<34} {:>22} {:>22} {:>8.2} {:>8.2} {:>7.2} {:>6.1}% {:>6.1}% {:>10}  {}",
            r.case,
            range(&r.forward),
            range(&r.fwd_bwd),
            r.forward_gflops,
            r.fwd_bwd_gflops,
            r.fwd_bwd_gbs,
            100.0 * r.fwd_bwd_fraction_of_fma_peak,
            100.0 * r.fwd_bwd_fraction_of_bandwidth,
            fmt_bytes(r.peak_bytes),
            r.bound
        );
    }
    let notes = super::fallback_notes(gpu, rows.iter().map(|r| (r.case.as_str(), &r.kernels[..])));
    for note in notes {
        println!("{note}");
    }
    println!("every case was checked against the CPU reference before timing (conv: sampled elements; blocks: batch 2)");
}
