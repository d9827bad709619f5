//! `skipgrad bench --suite gpu`: shapes that fill a real GPU, each conv pass timed alone.
//! Every case is checked against the CPU reference first (convs at sampled elements,
//! blocks in full at batch 2); then each pass is recorded `iters` times into one
//! submission, so the GPU time (timestamps around the whole submission, divided by
//! `iters`) is the kernels' own, beside the host clock's share of the same submission.

use skipgrad::bench::{ceilings, gpu_suite, nominal_fp32_gflops, ConvPass, SuiteCase, Workload};
use skipgrad::{Gpu, Recording};

use super::bench::{fail, gpu_timing, guard, BenchArgs};
use super::{adapter_line, open_gpu, progress_bar};

/// One timed pass (the JSON row).
#[derive(Clone, Debug, serde::Serialize)]
struct PassResult {
    case: String,
    /// `forward`, `input_grad`, `weight_grad`, or `fwd_bwd` for the blocks.
    pass: String,
    /// FLOPs of one run of the pass (an FMA counts 2).
    flops: u64,
    /// GPU time of one run, by timestamps (None where the adapter has none, or they are not
    /// trusted: CPU adapters).
    gpu_ms: Option<f64>,
    /// Host time of one run: the submission's wall clock divided by the runs in it.
    wall_ms: f64,
    /// By the GPU time where there is one, else the host time.
    gflops: f64,
    fraction_of_fma_ceiling: f64,
    fraction_of_nominal: Option<f64>,
    dispatches: usize,
    kernels: Vec<String>,
    /// Why the case did not run (it did not fit the device), where it did not.
    skipped: Option<String>,
    /// Which of `--repeat`'s runs of the case (from 0), each on buffers of its own.
    repeat: usize,
}

/// How long the warm-up of each pass keeps the adapter busy before it is timed: a GPU
/// idles at a fraction of its clocks (an H200's SM clock read 345 MHz idle and 1980 MHz
/// under load), and one warm-up run of a sub-millisecond pass may not raise them.
const WARM_UP_MS: f64 = 50.0;
/// At most this many warm-up submissions of a pass, however fast it runs.
const MAX_WARM_UPS: usize = 200;

/// What a timed pass records.
#[derive(Clone, Copy)]
enum What {
    Conv(ConvPass),
    Forward,
    FwdBwd,
}

impl What {
    fn name(self) -> &'static str {
        match self {
            What::Conv(p) => p.name(),
            What::Forward => "forward",
            What::FwdBwd => "fwd_bwd",
        }
    }

    fn record(self, w: &mut Workload, rec: &mut Recording<'_>) -> skipgrad::Result<()> {
        match self {
            What::Conv(pass) => w
                .record_conv_pass(rec, pass)
                .unwrap_or_else(|| Err(fail("not a conv case".into()))),
            What::Forward => w.record_forward(rec),
            What::FwdBwd => w.record_fwd_bwd(rec),
        }
    }
}

/// Context of one suite run.
struct Suite<'g> {
    gpu: &'g Gpu,
    use_gpu: bool,
    iters: usize,
    fma_gflops: f64,
    nominal: Option<f64>,
}

impl Suite<'_> {
    /// Warm-up submissions (the first compiles and tunes) until the pass has kept the
    /// adapter busy for [`WARM_UP_MS`], so a GPU is at its working clocks; then `iters`
    /// runs in one submission.
    fn time(&self, case: &str, w: &mut Workload, what: What) -> skipgrad::Result<PassResult> {
        let start = std::time::Instant::now();
        for _ in 0..MAX_WARM_UPS {
            let mut warm = Recording::new(self.gpu);
            what.record(w, &mut warm)?;
            warm.finish()?;
            if start.elapsed().as_secs_f64() * 1e3 >= WARM_UP_MS {
                break;
            }
        }
        let mut rec = if self.use_gpu {
            Recording::timed(self.gpu)
        } else {
            Recording::new(self.gpu)
        };
        for _ in 0..self.iters {
            what.record(w, &mut rec)?;
        }
        let runs = self.iters as f64;
        let flops = rec.cost().flops / self.iters as u64;
        let dispatches = rec.dispatch_count() / self.iters;
        let kernels = rec.kernels().iter().map(|k| k.to_string()).collect();
        let t = rec.finish_timed()?;
        let gpu_ms = t.gpu_ms.filter(|_| self.use_gpu).map(|ms| ms / runs);
        if std::env::var_os("SKIPGRAD_PLACEMENT").is_some() {
            // Where the buffers this pass ran on lie, beside its time (stderr).
            let at = self.gpu.allocator_placement().unwrap_or_default();
            eprintln!("placement {case} {}: {gpu_ms:?} ms\n{at}", what.name());
        }
        let wall_ms = t.wall_ms / runs;
        let gflops = flops as f64 / (gpu_ms.unwrap_or(wall_ms) * 1e6);
        Ok(PassResult {
            case: case.to_string(),
            pass: what.name().to_string(),
            flops,
            gpu_ms,
            wall_ms,
            gflops,
            fraction_of_fma_ceiling: gflops / self.fma_gflops,
            fraction_of_nominal: self.nominal.map(|n| gflops / n),
            dispatches,
            kernels,
            skipped: None,
            repeat: 0,
        })
    }

    /// Every pass of one case, or one skipped row where its tensors do not fit.
    fn case(&self, c: &SuiteCase) -> skipgrad::Result<Vec<PassResult>> {
        let name = &c.case.name;
        let mut w = match c.case.prepare(self.gpu) {
            Ok(w) => w,
            Err(e @ (skipgrad::Error::TooLarge { .. } | skipgrad::Error::Gpu { .. })) => {
                return Ok(vec![skipped(name, e.to_string())]);
            }
            Err(e) => return Err(e),
        };
        guard(self.gpu, &c.case)?;
        let passes: Vec<What> = if c.per_pass {
            ConvPass::ALL.into_iter().map(What::Conv).collect()
        } else {
            vec![What::Forward, What::FwdBwd]
        };
        passes
            .into_iter()
            .map(|what| self.time(name, &mut w, what))
            .collect()
    }
}

fn skipped(case: &str, why: String) -> PassResult {
    PassResult {
        case: case.to_string(),
        pass: "-".into(),
        flops: 0,
        gpu_ms: None,
        wall_ms: 0.0,
        gflops: 0.0,
        fraction_of_fma_ceiling: 0.0,
        fraction_of_nominal: None,
        dispatches: 0,
        kernels: Vec::new(),
        skipped: Some(why),
        repeat: 0,
    }
}

/// `name` with its batch (`_n32`, up to the next `_` or the end) replaced by `_n{n}`.
fn rebatch_name(name: &str, n: usize) -> String {
    let bytes = name.as_bytes();
    let mut i = 0;
    while let Some(at) = name[i..].find("_n").map(|k| k + i) {
        let digits = bytes[at + 2..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let end = at + 2 + digits;
        if digits > 0 && (end == name.len() || bytes[end] == b'_') {
            return format!("{}_n{n}{}", &name[..at], &name[end..]);
        }
        i = at + 2;
    }
    format!("{name}_n{n}")
}

/// Runs the GPU suite; returns whether every case passed its correctness guard.
pub fn run(args: &BenchArgs, backend: Option<&str>) -> skipgrad::Result<bool> {
    let mut cases: Vec<SuiteCase> = gpu_suite(args.quick);
    if let Some(n) = args.batch {
        // Every case at batch n, renamed `…_n{n}`; the suite's cases at several batches
        // become one.
        let mut seen = std::collections::HashSet::new();
        cases = cases
            .into_iter()
            .map(|c| {
                let mut case = c.case.with_batch(n);
                case.name = rebatch_name(&c.case.name, n);
                SuiteCase { case, ..c }
            })
            .filter(|c| seen.insert(c.case.name.clone()))
            .collect();
    }
    let names: Vec<String> = cases.iter().map(|c| c.case.name.clone()).collect();
    let cases: Vec<SuiteCase> = cases
        .into_iter()
        .filter(|c| args.cases.is_empty() || args.cases.iter().any(|s| c.case.name.contains(s)))
        .collect();
    if cases.is_empty() {
        return Err(fail(format!(
            "no case matches {:?} (the cases: {})",
            args.cases,
            super::case_names(names.iter().map(String::as_str))
        )));
    }
    let gpu = open_gpu(backend)?;
    gpu.set_conv_kernels(skipgrad::ConvKernels::parse(&args.kernels)?);
    let use_gpu = gpu_timing(args, &gpu);
    let bar = progress_bar(cases.len() as u64 + 1, "suite");
    bar.set_message("ceilings");
    let ceil = ceilings::measure(&gpu, use_gpu)?;
    bar.inc(1);
    let suite = Suite {
        gpu: &gpu,
        use_gpu,
        iters: if args.quick { 2 } else { args.iters },
        fma_gflops: ceil.fma_gflops,
        nominal: nominal_fp32_gflops(&gpu.adapter_info().name),
    };
    let mut rows = Vec::new();
    for c in &cases {
        bar.set_message(c.case.name.clone());
        // Each repeat prepares the case anew: buffers of its own.
        let r: skipgrad::Result<Vec<PassResult>> = (0..args.repeat)
            .map(|repeat| {
                suite.case(c).map(|rows| {
                    rows.into_iter()
                        .map(|r| PassResult { repeat, ..r })
                        .collect::<Vec<_>>()
                })
            })
            .collect::<skipgrad::Result<Vec<_>>>()
            .map(|v| v.concat());
        bar.inc(1);
        match r {
            Ok(r) => rows.extend(r),
            Err(e) => {
                bar.finish_and_clear();
                return Err(e);
            }
        }
    }
    bar.finish_and_clear();
    if args.json {
        let v = serde_json::json!({
            "engine": format!("skipgrad {}", env!("CARGO_PKG_VERSION")),
            "suite": "gpu",
            "adapter": gpu.adapter_info().name,
            "backend": gpu.backend_name(),
            "timing": if use_gpu { "gpu-timestamps, one submission of iters runs" } else { "wall-clock, one submission of iters runs" },
            "iters": suite.iters,
            "ceilings": ceil,
            "nominal_fp32_gflops": suite.nominal,
            "cases": rows,
            "tuned": super::tuned_json(&gpu),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(true);
    }
    println!("skipgrad {} GPU suite", env!("CARGO_PKG_VERSION"));
    println!("adapter:  {}", adapter_line(&gpu));
    let nominal = suite
        .nominal
        .map_or("unknown".into(), |n| format!("{n:.0} GFLOP/s"));
    println!(
        "ceilings: FMA {:.1} GFLOP/s measured, nominal fp32 {nominal}; {} runs in one submission per pass",
        ceil.fma_gflops, suite.iters
    );
    println!(
        "{:34} {:>11} {:>10} {:>10} {:>10} {:>7} {:>8} {:>5}",
        "case", "pass", "gpu ms", "wall ms", "GFLOP/s", "%FMA", "%nominal", "disp"
    );
    for r in &rows {
        let case = if args.repeat > 1 {
            format!("{} #{}", r.case, r.repeat)
        } else {
            r.case.clone()
        };
        if let Some(why) = &r.skipped {
            println!("{case:34} skipped: {why}");
            continue;
        }
        let gpu_ms = r.gpu_ms.map_or("-".into(), |t| format!("{t:.3}"));
        let nominal = r
            .fraction_of_nominal
            .map_or("-".into(), |f| format!("{:.1}%", 100.0 * f));
        println!(
            "{:34} {:>11} {:>10} {:>10.3} {:>10.1} {:>6.1}% {:>8} {:>5}",
            case,
            r.pass,
            gpu_ms,
            r.wall_ms,
            r.gflops,
            100.0 * r.fraction_of_fma_ceiling,
            nominal,
            r.dispatches
        );
    }
    // One note a case (its passes' kernels together), not one a pass or a repeat.
    let mut kernels: Vec<(&str, Vec<String>)> = Vec::new();
    for r in &rows {
        match kernels.iter_mut().find(|(c, _)| *c == r.case.as_str()) {
            Some((_, k)) => k.extend(r.kernels.iter().cloned()),
            None => kernels.push((r.case.as_str(), r.kernels.clone())),
        }
    }
    for note in super::fallback_notes(&gpu, kernels.iter().map(|(c, k)| (*c, &k[..]))) {
        println!("{note}");
    }
    println!("every case was checked against the CPU reference before timing (conv: sampled elements; blocks: batch 2)");
    Ok(true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rebatched_names_say_the_new_batch() {
        use super::rebatch_name as r;
        assert_eq!(
            r("r50_conv3x3_c64_56x56_n32", 4),
            "r50_conv3x3_c64_56x56_n4"
        );
        assert_eq!(
            r("dense_l6_k12_c24_16x16_n128_shared", 2),
            "dense_l6_k12_c24_16x16_n2_shared"
        );
        assert_eq!(
            r("resnet_basic_c64_32x32_n128", 1),
            "resnet_basic_c64_32x32_n1"
        );
    }
}
