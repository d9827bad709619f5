//! `skipgrad stress`: reliability under load. In deterministic mode (kernel families chosen
//! by rule, so every run sums in the same order) it
//!
//! 1. runs each block (residual, dense naive, dense shared) forward+backward once serially
//!    and keeps every output and gradient as the reference bits;
//! 2. runs `threads` threads × `passes` passes of every block on the same `Gpu` at once,
//!    each pass compared bit for bit with the reference;
//! 3. runs `iterations` more passes of each block and samples the allocator's live bytes
//!    and the driver's own total, which must stay flat (no leak).
//!
//! Exit status 1 when any pass differs or memory grows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use skipgrad::{
    ConcatStrategy, DenseBlock, Gpu, Purpose, Recording, ResidualBlock, ResidualVariant, Result,
    Tensor,
};

use super::{adapter_line, fmt_bytes, open_gpu, progress_bar};

/// How hard to push.
#[derive(Clone, Debug, clap::Args)]
pub struct StressArgs {
    /// Threads recording and submitting block passes on one `Gpu` at once.
    #[arg(long, default_value_t = 8)]
    pub threads: usize,
    /// Passes of every block per thread, each compared bitwise with the serial run.
    #[arg(long, default_value_t = 200)]
    pub passes: usize,
    /// Serial passes of every block while memory is sampled.
    #[arg(long, default_value_t = 5000)]
    pub iterations: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The blocks under stress: small, so thousands of passes take seconds on a CPU adapter.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Residual,
    DenseNaive,
    DenseShared,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Residual, Kind::DenseNaive, Kind::DenseShared];

    fn name(self) -> &'static str {
        match self {
            Kind::Residual => "residual_basic_c8_8x8_n2",
            Kind::DenseNaive => "dense_l3_k4_c8_8x8_n2_naive",
            Kind::DenseShared => "dense_l3_k4_c8_8x8_n2_shared",
        }
    }
}

/// One block with its input and output gradient, ready for passes.
enum Block {
    Residual(Box<ResidualBlock>),
    Dense(DenseBlock),
}

struct Bench {
    block: Block,
    x: Tensor,
    grad_out: Tensor,
}

impl Bench {
    /// Same parameters and inputs every time (fixed seeds), so every instance computes the
    /// same bits.
    fn new(gpu: &Gpu, kind: Kind) -> Result<Bench> {
        let x_shape = [2, 8, 8, 8];
        let values = |n: usize, salt: usize| -> Vec<f32> {
            (0..n)
                .map(|i| (((i * 7919 + salt) % 257) as f32 / 128.0) - 1.0)
                .collect()
        };
        let x = Tensor::from_slice(gpu, x_shape, &values(2 * 8 * 64, 1), Purpose::Activation)?;
        let (block, out_channels) = match kind {
            Kind::Residual => (
                Block::Residual(Box::new(ResidualBlock::new(
                    gpu,
                    ResidualVariant::Basic,
                    8,
                )?)),
                8,
            ),
            Kind::DenseNaive | Kind::DenseShared => {
                let strategy = match kind {
                    Kind::DenseNaive => ConcatStrategy::Naive,
                    _ => ConcatStrategy::Shared,
                };
                let b = DenseBlock::new(gpu, 8, 4, 3, strategy)?;
                let c = b.out_channels();
                (Block::Dense(b), c)
            }
        };
        let go_shape = [2, out_channels, 8, 8];
        let grad_out = Tensor::from_slice(
            gpu,
            go_shape,
            &values(2 * out_channels * 64, 3),
            Purpose::Gradient,
        )?;
        Ok(Bench { block, x, grad_out })
    }

    /// One forward+backward in one submission; returns every output and gradient's bits.
    fn pass(&mut self, gpu: &Gpu) -> Result<Vec<u32>> {
        let mut rec = Recording::new(gpu);
        let (out, grads) = match &mut self.block {
            Block::Residual(b) => {
                let out = b.forward(&mut rec, &self.x)?;
                (out, b.backward(&mut rec, &self.grad_out)?)
            }
            Block::Dense(b) => {
                let out = b.forward(&mut rec, &self.x)?;
                (out, b.backward(&mut rec, &self.grad_out)?)
            }
        };
        rec.finish()?;
        let mut bits: Vec<u32> = Vec::new();
        for t in std::iter::once(&out)
            .chain(std::iter::once(&grads.grad_x))
            .chain(grads.params.iter().map(|(_, t)| t))
        {
            bits.extend(t.to_vec(gpu)?.iter().map(|v| v.to_bits()));
        }
        Ok(bits)
    }
}

/// What one block's stress measured.
#[derive(Clone, Debug, serde::Serialize)]
struct BlockReport {
    block: &'static str,
    threads: usize,
    passes_per_thread: usize,
    mismatched_passes: u64,
    iterations: usize,
    live_bytes_after_warmup: u64,
    live_bytes_min: u64,
    live_bytes_max: u64,
    live_bytes_end: u64,
    driver_bytes_after_warmup: Option<u64>,
    driver_bytes_max: Option<u64>,
    driver_bytes_end: Option<u64>,
    memory_flat: bool,
    seconds: f64,
}

/// Runs the stress; `Ok(false)` when any pass differed or memory grew.
pub fn run(args: &StressArgs, backend: Option<&str>) -> Result<bool> {
    let gpu = open_gpu(backend)?;
    gpu.set_deterministic(true);
    if !args.json {
        println!("adapter: {}", adapter_line(&gpu));
        println!(
            "deterministic kernel choice; {} threads x {} passes per block, then {} serial iterations",
            args.threads, args.passes, args.iterations
        );
    }
    let mut reports = Vec::new();
    for kind in Kind::ALL {
        let start = Instant::now();
        let reference = Bench::new(&gpu, kind)?.pass(&gpu)?;
        // Many threads, one Gpu, every pass compared bit for bit.
        let mismatched = AtomicU64::new(0);
        let bar = progress_bar((args.threads * args.passes) as u64, "threads");
        bar.set_message(kind.name());
        std::thread::scope(|scope| -> Result<()> {
            let workers: Vec<_> = (0..args.threads)
                .map(|_| {
                    scope.spawn(|| -> Result<()> {
                        let mut bench = Bench::new(&gpu, kind)?;
                        for _ in 0..args.passes {
                            if bench.pass(&gpu)? != reference {
                                mismatched.fetch_add(1, Ordering::Relaxed);
                            }
                            bar.inc(1);
                        }
                        Ok(())
                    })
                })
                .collect();
            for w in workers {
                w.join().unwrap_or_else(|_| {
                    Err(skipgrad::Error::Recording(
                        "a stress thread panicked".into(),
                    ))
                })?;
            }
            Ok(())
        })?;
        bar.finish_and_clear();

        // Serial iterations with memory sampled after each (after a warm-up that fills the
        // pipeline cache and the tuner's table).
        let bar = progress_bar(args.iterations as u64, "memory");
        bar.set_message(kind.name());
        let mut bench = Bench::new(&gpu, kind)?;
        let warmup = 10.min(args.iterations);
        let (mut warm_live, mut warm_driver) = (0, None);
        let (mut live_min, mut live_max, mut driver_max) = (u64::MAX, 0u64, None::<u64>);
        for i in 0..args.iterations {
            if bench.pass(&gpu)? != reference {
                mismatched.fetch_add(1, Ordering::Relaxed);
            }
            let m = gpu.memory_report();
            if i + 1 == warmup {
                warm_live = m.live_total;
                warm_driver = m.driver_allocated_bytes;
            }
            if i + 1 >= warmup {
                live_min = live_min.min(m.live_total);
                live_max = live_max.max(m.live_total);
                driver_max = m.driver_allocated_bytes.max(driver_max);
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        let end = gpu.memory_report();
        // Flat: the live bytes never exceed what they were after warm-up, and the driver's
        // total (which also holds wgpu's own pools) grows by at most 1 MiB or 5%.
        let driver_flat = match (warm_driver, driver_max) {
            (Some(w), Some(m)) => m <= w + (1 << 20).max(w / 20),
            _ => true,
        };
        let memory_flat = args.iterations < warmup || (live_max <= warm_live && driver_flat);
        reports.push(BlockReport {
            block: kind.name(),
            threads: args.threads,
            passes_per_thread: args.passes,
            mismatched_passes: mismatched.load(Ordering::Relaxed),
            iterations: args.iterations,
            live_bytes_after_warmup: warm_live,
            live_bytes_min: if live_min == u64::MAX { 0 } else { live_min },
            live_bytes_max: live_max,
            live_bytes_end: end.live_total,
            driver_bytes_after_warmup: warm_driver,
            driver_bytes_max: driver_max,
            driver_bytes_end: end.driver_allocated_bytes,
            memory_flat,
            seconds: start.elapsed().as_secs_f64(),
        });
    }
    let ok = reports
        .iter()
        .all(|r| r.mismatched_passes == 0 && r.memory_flat);
    if args.json {
        let v = serde_json::json!({
            "adapter": adapter_line(&gpu),
            "deterministic": true,
            "ok": ok,
            "blocks": reports,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        println!(
            "{:<30} {:>16} {:>10} {:>10} {:>22} {:>22} {:>8}",
            "block",
            "threads x passes",
            "mismatch",
            "iterations",
            "live (warm / max)",
            "driver (warm / max)",
            "s"
        );
        for r in &reports {
            let driver = match (r.driver_bytes_after_warmup, r.driver_bytes_max) {
                (Some(w), Some(m)) => format!("{} / {}", fmt_bytes(w), fmt_bytes(m)),
                _ => "n/a".into(),
            };
            println!(
                "{:<30} {:>16} {:>10} {:>10} {:>22} {:>22} {:>8.1}",
                r.block,
                format!("{} x {}", r.threads, r.passes_per_thread),
                r.mismatched_passes,
                r.iterations,
                format!(
                    "{} / {}",
                    fmt_bytes(r.live_bytes_after_warmup),
                    fmt_bytes(r.live_bytes_max)
                ),
                driver,
                r.seconds
            );
        }
        println!(
            "{}",
            if ok {
                "every pass bit-identical to the serial run; memory flat"
            } else {
                "FAILED: passes differed from the serial run or memory grew"
            }
        );
    }
    Ok(ok)
}
