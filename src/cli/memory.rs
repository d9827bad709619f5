//! `skipgrad memory`: the measured memory cost of concatenation. For each depth, runs a dense
//! block forward+backward with each strategy and reports the allocator's measured peak per
//! purpose beside the analytic count, the driver's figure where the backend gives one, and
//! the time per forward+backward. Table, JSON, CSV and an SVG plot.

use std::path::{Path, PathBuf};
use std::time::Instant;

use plotters::prelude::*;
use skipgrad::AnalyticMemory;
use skipgrad::{ConcatStrategy, DenseBlock, Gpu, Purpose, Recording, Tensor};

use super::{adapter_line, fmt_bytes, open_gpu, progress_bar};

/// The sizes to sweep.
#[derive(Clone, Debug, clap::Args)]
pub struct MemoryArgs {
    /// Deepest block (depths 1..=max are measured).
    #[arg(long, default_value_t = 32)]
    pub max_layers: usize,
    /// Growth rate k (channels each layer adds).
    #[arg(long, default_value_t = 12)]
    pub growth: usize,
    /// Input channels of the block.
    #[arg(long, default_value_t = 24)]
    pub channels: usize,
    /// Image height and width.
    #[arg(long, default_value_t = 16)]
    pub size: usize,
    /// Batch size.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// The scratch budget in MiB (the kernels' working memory per piece; default: the
    /// adapter's, or SKIPGRAD_SCRATCH_BUDGET_MIB).
    #[arg(long)]
    pub scratch_budget_mib: Option<f64>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Folder for memory.csv and memory.svg.
    #[arg(long, default_value = "out")]
    pub out_dir: PathBuf,
}

/// One measured configuration.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    strategy: &'static str,
    layers: usize,
    growth: usize,
    channels: usize,
    size: usize,
    batch: usize,
    /// Peak of activations + gradients + parameters (what the formula counts).
    measured_peak_bytes: u64,
    /// Peak of everything, the kernels' scratch and uniforms included.
    measured_peak_with_scratch_bytes: u64,
    measured_activation_bytes: u64,
    measured_gradient_bytes: u64,
    measured_parameter_bytes: u64,
    measured_scratch_bytes: u64,
    measured_uniform_bytes: u64,
    analytic_peak_bytes: u64,
    analytic: AnalyticMemory,
    driver_allocated_bytes: Option<u64>,
    /// What the driver holds for the engine during backward, above what it held before the
    /// block was made (its total less wgpu's own allocations): comparable with
    /// `measured_peak_with_scratch_bytes`, where the backend reports allocations.
    driver_engine_bytes: Option<u64>,
    fwd_bwd_ms: f64,
}

fn measure(
    gpu: &Gpu,
    a: &MemoryArgs,
    strategy: ConcatStrategy,
    layers: usize,
) -> skipgrad::Result<Row> {
    gpu.synchronize()?;
    let base = gpu.memory_report();
    let (n, c, s, k) = (a.batch, a.channels, a.size, a.growth);
    let mut block = DenseBlock::new(gpu, c, k, layers, strategy)?;
    let xv: Vec<f32> = (0..n * c * s * s)
        .map(|i| ((i * 7919) % 13) as f32 / 6.0 - 1.0)
        .collect();
    let x = Tensor::from_slice(gpu, [n, c, s, s], &xv, Purpose::Activation)?;
    let out_c = block.out_channels();
    let gv: Vec<f32> = (0..n * out_c * s * s)
        .map(|i| ((i * 104729) % 11) as f32 / 5.0 - 1.0)
        .collect();
    let grad_out = Tensor::from_slice(gpu, [n, out_c, s, s], &gv, Purpose::Gradient)?;
    // One unmeasured pass first: kernel autotuning for new shapes allocates scratch tensors
    // of its own, which are no part of the block's cost. The peak then starts from what is
    // live (parameters, x, grad_out) and covers one forward+backward.
    let mut rec = Recording::new(gpu);
    let out = block.forward(&mut rec, &x)?;
    let grads = block.backward(&mut rec, &grad_out)?;
    rec.finish()?;
    drop((out, grads));
    gpu.reset_peak_memory();
    let start = Instant::now();
    let mut rec = Recording::new(gpu);
    let out = block.forward(&mut rec, &x)?;
    rec.submit()?;
    let mut rec = Recording::new(gpu);
    let grads = block.backward(&mut rec, &grad_out)?;
    let during = gpu.memory_report();
    let driver = during.driver_allocated_bytes;
    let engine = |r: &skipgrad::MemoryReport| {
        Some(r.driver_allocated_bytes? - r.driver_wgpu_internal_bytes?)
    };
    let driver_engine_bytes = engine(&during)
        .zip(engine(&base))
        .map(|(d, b)| d.saturating_sub(b));
    rec.finish()?;
    let fwd_bwd_ms = start.elapsed().as_secs_f64() * 1e3;
    let r = gpu.memory_report();
    drop((out, grads, block, x, grad_out));
    let over = |p: Purpose| r.peak(p).saturating_sub(base.live(p));
    let analytic = DenseBlock::analytic_peak_bytes(strategy, c, k, layers, n, s, s);
    Ok(Row {
        strategy: strategy.name(),
        layers,
        growth: k,
        channels: c,
        size: s,
        batch: n,
        measured_peak_bytes: r.peak_data.saturating_sub(base.live_data),
        measured_peak_with_scratch_bytes: r.peak_total.saturating_sub(base.live_total),
        measured_activation_bytes: over(Purpose::Activation),
        measured_gradient_bytes: over(Purpose::Gradient),
        measured_parameter_bytes: over(Purpose::Parameter),
        measured_scratch_bytes: over(Purpose::Scratch),
        measured_uniform_bytes: over(Purpose::Uniform),
        analytic_peak_bytes: analytic.total(),
        analytic,
        driver_allocated_bytes: driver,
        driver_engine_bytes,
        fwd_bwd_ms,
    })
}

/// Runs the sweep and writes the outputs.
pub fn run(a: &MemoryArgs, backend: Option<&str>) -> skipgrad::Result<()> {
    if a.max_layers == 0 || a.growth == 0 || a.channels == 0 || a.size == 0 || a.batch == 0 {
        return Err(skipgrad::Error::InvalidParameter {
            op: "memory",
            detail: "--max-layers, --growth, --channels, --size and --batch must be at least 1"
                .into(),
        });
    }
    let gpu = open_gpu(backend)?;
    match a.scratch_budget_mib {
        Some(mib) if mib.is_finite() && mib > 0.0 => {
            gpu.set_scratch_budget((mib * (1u64 << 20) as f64) as u64)
        }
        Some(mib) => {
            return Err(skipgrad::Error::InvalidParameter {
                op: "memory",
                detail: format!("--scratch-budget-mib {mib}: give a positive number of MiB"),
            })
        }
        None => {}
    }
    // Warm-up: compile every pipeline once so the first row's time is not compile time.
    for strategy in ConcatStrategy::ALL {
        measure(&gpu, a, strategy, 1)?;
    }
    let bar = progress_bar(2 * a.max_layers as u64, "memory");
    let mut rows = Vec::new();
    for layers in 1..=a.max_layers {
        for strategy in ConcatStrategy::ALL {
            bar.set_message(format!("{} L={layers}", strategy.name()));
            rows.push(measure(&gpu, a, strategy, layers)?);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    std::fs::create_dir_all(&a.out_dir).map_err(|e| super::write_err(&a.out_dir, e))?;
    let csv = a.out_dir.join("memory.csv");
    write_csv(&csv, &rows)?;
    let svg = a.out_dir.join("memory.svg");
    write_svg(&svg, &rows, a)?;
    if a.json {
        let v = serde_json::json!({
            "adapter": gpu.adapter_info().name,
            "backend": gpu.backend_name(),
            "scratch_budget_bytes": gpu.scratch_budget(),
            "rows": rows,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print_table(&gpu, a, &rows);
        println!("wrote {} and {}", csv.display(), svg.display());
    }
    Ok(())
}

fn print_table(gpu: &Gpu, a: &MemoryArgs, rows: &[Row]) {
    println!("adapter: {}", adapter_line(gpu));
    println!(
        "dense block: growth {}, {} input channels, {}x{} pixels, batch {}; peak bytes of one forward+backward\n\
         (meas: activations + gradients + parameters, what the formula counts; +scratch: the kernels' working memory on top;\n\
         driver: what the driver allocator holds for the engine during backward, above what it held before the block)",
        a.growth, a.channels, a.size, a.size, a.batch
    );
    println!(
        "{:>3} | {:>11} {:>11} {:>7} {:>11} {:>11} {:>11} {:>9} | {:>11} {:>11} {:>7} {:>11} {:>11} {:>11} {:>9} | {:>6}",
        "L",
        "naive meas",
        "analytic",
        "m/a",
        "activations",
        "+scratch",
        "driver",
        "ms",
        "shared meas",
        "analytic",
        "m/a",
        "activations",
        "+scratch",
        "driver",
        "ms",
        "n/s"
    );
    for pair in rows.chunks(2) {
        let (nv, sh) = (&pair[0], &pair[1]);
        let ratio = |r: &Row| r.measured_peak_bytes as f64 / r.analytic_peak_bytes as f64;
        let driver = |r: &Row| r.driver_engine_bytes.map_or("-".into(), fmt_bytes);
        println!(
            "{:>3} | {:>11} {:>11} {:>7.3} {:>11} {:>11} {:>11} {:>9.2} | {:>11} {:>11} {:>7.3} {:>11} {:>11} {:>11} {:>9.2} | {:>6.2}",
            nv.layers,
            fmt_bytes(nv.measured_peak_bytes),
            fmt_bytes(nv.analytic_peak_bytes),
            ratio(nv),
            fmt_bytes(nv.measured_activation_bytes),
            fmt_bytes(nv.measured_peak_with_scratch_bytes - nv.measured_peak_bytes),
            driver(nv),
            nv.fwd_bwd_ms,
            fmt_bytes(sh.measured_peak_bytes),
            fmt_bytes(sh.analytic_peak_bytes),
            ratio(sh),
            fmt_bytes(sh.measured_activation_bytes),
            fmt_bytes(sh.measured_peak_with_scratch_bytes - sh.measured_peak_bytes),
            driver(sh),
            sh.fwd_bwd_ms,
            nv.measured_peak_bytes as f64 / sh.measured_peak_bytes as f64,
        );
    }
    if let Some(d) = rows.last().and_then(|r| r.driver_allocated_bytes) {
        println!(
            "driver allocator (last row, during backward): {} in all, wgpu's own included",
            fmt_bytes(d)
        );
    } else {
        println!("driver allocator: not reported by this backend");
    }
    if let Some(r) = rows.last() {
        let held = r
            .driver_engine_bytes
            .unwrap_or(r.measured_peak_with_scratch_bytes);
        println!(
            "deepest {} block: the device holds {} for it, {:.3}x the analytic minimum ({}); scratch budget {}",
            r.strategy,
            fmt_bytes(held),
            held as f64 / r.analytic_peak_bytes as f64,
            fmt_bytes(r.analytic_peak_bytes),
            fmt_bytes(gpu.scratch_budget())
        );
    }
}

fn write_csv(path: &Path, rows: &[Row]) -> skipgrad::Result<()> {
    let mut s = String::from(
        "strategy,layers,growth,channels,size,batch,measured_peak_bytes,analytic_peak_bytes,measured_activation_bytes,measured_gradient_bytes,measured_parameter_bytes,measured_uniform_bytes,measured_scratch_bytes,measured_peak_with_scratch_bytes,driver_allocated_bytes,driver_engine_bytes,fwd_bwd_ms\n",
    );
    for r in rows {
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.3}\n",
            r.strategy,
            r.layers,
            r.growth,
            r.channels,
            r.size,
            r.batch,
            r.measured_peak_bytes,
            r.analytic_peak_bytes,
            r.measured_activation_bytes,
            r.measured_gradient_bytes,
            r.measured_parameter_bytes,
            r.measured_uniform_bytes,
            r.measured_scratch_bytes,
            r.measured_peak_with_scratch_bytes,
            r.driver_allocated_bytes
                .map(|d| d.to_string())
                .unwrap_or_default(),
            r.driver_engine_bytes
                .map(|d| d.to_string())
                .unwrap_or_default(),
            r.fwd_bwd_ms
        ));
    }
    std::fs::write(path, s).map_err(|e| super::write_err(path, e))
}

fn write_svg(path: &Path, rows: &[Row], a: &MemoryArgs) -> skipgrad::Result<()> {
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let ymax = rows
            .iter()
            .map(|r| {
                let driver = r.driver_engine_bytes.unwrap_or(0);
                mib(r.measured_peak_bytes.max(r.analytic_peak_bytes).max(driver))
            })
            .fold(0.0, f64::max)
            * 1.05;
        let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "Dense block peak memory vs depth (k={}, C0={}, {}x{}, N={})",
                    a.growth, a.channels, a.size, a.size, a.batch
                ),
                ("sans-serif", 20),
            )
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..(a.max_layers as f64 + 1.0), 0f64..ymax.max(1e-3))?;
        chart
            .configure_mesh()
            .x_label_formatter(&super::axis_label)
            .x_desc("layers L")
            .y_desc("peak MiB (forward + backward)")
            .draw()?;
        for (strategy, color) in [("naive", RED), ("shared", BLUE)] {
            let pts = |f: &dyn Fn(&Row) -> u64| -> Vec<(f64, f64)> {
                rows.iter()
                    .filter(|r| r.strategy == strategy)
                    .map(|r| (r.layers as f64, mib(f(r))))
                    .collect()
            };
            let measured = pts(&|r| r.measured_peak_bytes);
            let analytic = pts(&|r| r.analytic_peak_bytes);
            let driver = pts(&|r| r.driver_engine_bytes.unwrap_or(0));
            if rows.iter().any(|r| r.driver_engine_bytes.is_some()) {
                // What the device holds for the block: data, kernel scratch and arguments.
                let dashed = color.mix(0.8).stroke_width(2);
                chart
                    .draw_series(DashedLineSeries::new(driver, 6, 4, dashed))?
                    .label(format!("{strategy}: driver (everything the device holds)"))
                    .legend(move |(x, y)| {
                        // Dashed in the legend too: two dashes of the line's style.
                        EmptyElement::at((x, y))
                            + PathElement::new(vec![(0, 0), (8, 0)], dashed)
                            + PathElement::new(vec![(13, 0), (20, 0)], dashed)
                    });
            }
            chart
                .draw_series(LineSeries::new(analytic, color.mix(0.4).stroke_width(6)))?
                .label(format!("{strategy}: analytic"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.mix(0.4).stroke_width(6))
                });
            chart
                .draw_series(measured.iter().map(|&p| Circle::new(p, 3, color.filled())))?
                .label(format!("{strategy}: measured"))
                .legend(move |(x, y)| Circle::new((x + 10, y), 3, color.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.9))
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| super::write_err(path, e))
}
