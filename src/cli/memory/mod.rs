//! `skipgrad memory`: the measured memory cost of concatenation. For each depth, runs a dense
//! block forward+backward with each strategy and reports the allocator's measured peak per
//! purpose beside the analytic count, the driver's figure where the backend gives one, and
//! the time per forward+backward. Two blocks: the seed's dense block (conv3×3 + bias on
//! ReLU'd concatenations) and, with `--bc`, torchvision's DenseNet-BC block (BN-ReLU-conv1×1,
//! BN-ReLU-conv3×3, in training mode). Table, JSON, CSV and an SVG plot.

mod output;

use std::path::PathBuf;
use std::time::Instant;

use skipgrad::{
    AnalyticMemory, BlockGrads, ConcatStrategy, DenseBcShape, DenseBlock, Gpu, Init, Purpose,
    Recording, Tensor, TorchDenseBlock,
};

use super::{open_gpu, progress_bar};

/// The sizes to sweep.
#[derive(Clone, Debug, clap::Args)]
pub struct MemoryArgs {
    /// Deepest block (depths 1..=max are measured, unless --depths lists them).
    #[arg(long, default_value_t = 32)]
    pub max_layers: usize,
    /// The depths to measure, comma-separated (e.g. 1,2,4,8,16,32), instead of 1..=max-layers.
    #[arg(long, value_delimiter = ',')]
    pub depths: Option<Vec<usize>>,
    /// Measure torchvision's DenseNet-BC block (`_DenseBlock`: BN-ReLU-conv1×1 to
    /// bn_size·growth channels, BN-ReLU-conv3×3 to growth; one training step) instead of the
    /// seed's dense block. Its defaults are DenseNet-121's first block: growth 32, bn_size 4,
    /// 64 input channels, batch 8.
    #[arg(long)]
    pub bc: bool,
    /// Growth rate k (channels each layer adds); default 12, or 32 with --bc.
    #[arg(long)]
    pub growth: Option<usize>,
    /// DenseNet-BC's bn_size (the bottleneck is bn_size·growth channels wide); --bc only.
    #[arg(long, default_value_t = 4)]
    pub bn_size: usize,
    /// Input channels of the block; default 24, or 64 with --bc.
    #[arg(long)]
    pub channels: Option<usize>,
    /// Image height and width.
    #[arg(long, default_value_t = 16)]
    pub size: usize,
    /// Batch size; default 1, or 8 with --bc.
    #[arg(long)]
    pub batch: Option<usize>,
    /// The scratch budget in MiB (the kernels' working memory per piece; default: the
    /// adapter's, or SKIPGRAD_SCRATCH_BUDGET_MIB).
    #[arg(long)]
    pub scratch_budget_mib: Option<f64>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Folder for memory.csv and memory.svg (memory_bc.* with --bc).
    #[arg(long, default_value = "out")]
    pub out_dir: PathBuf,
}

/// What is swept, with the defaults resolved.
#[derive(Clone, Debug)]
pub(super) struct Sweep {
    /// `Some(bn_size)`: torchvision's DenseNet-BC block; `None`: the seed's dense block.
    bc: Option<usize>,
    growth: usize,
    channels: usize,
    size: usize,
    batch: usize,
    depths: Vec<usize>,
}

impl Sweep {
    fn new(a: &MemoryArgs) -> skipgrad::Result<Sweep> {
        let pick =
            |v: Option<usize>, seed: usize, bc: usize| v.unwrap_or(if a.bc { bc } else { seed });
        let depths = a
            .depths
            .clone()
            .unwrap_or_else(|| (1..=a.max_layers).collect());
        let sweep = Sweep {
            bc: a.bc.then_some(a.bn_size),
            growth: pick(a.growth, 12, 32),
            channels: pick(a.channels, 24, 64),
            size: a.size,
            batch: pick(a.batch, 1, 8),
            depths,
        };
        let sizes = [
            sweep.growth,
            sweep.channels,
            sweep.size,
            sweep.batch,
            a.bn_size,
        ];
        if sweep.depths.is_empty() || sweep.depths.contains(&0) || sizes.contains(&0) {
            return Err(skipgrad::Error::InvalidParameter {
                op: "memory",
                detail: "--max-layers (or every one of --depths), --growth, --bn-size, --channels, --size and --batch must be at least 1".into(),
            });
        }
        Ok(sweep)
    }

    /// The block's name in titles and JSON.
    fn block_name(&self) -> &'static str {
        if self.bc.is_some() {
            "densenet-bc"
        } else {
            "dense"
        }
    }

    /// The block's name in titles.
    fn title(&self) -> String {
        match self.bc {
            Some(b) => format!("DenseNet-BC block (bn_size {b})"),
            None => "dense block".into(),
        }
    }

    /// The deepest block measured.
    fn max_layers(&self) -> usize {
        self.depths.iter().copied().max().unwrap_or(1)
    }
}

/// One measured configuration.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    block: &'static str,
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
    /// The block's own scratch by its formula (DenseNet-BC), without the kernels' staging.
    analytic_block_scratch_bytes: Option<u64>,
    driver_allocated_bytes: Option<u64>,
    /// What the driver holds for the engine during backward, above what it held before the
    /// block was made (its total less wgpu's own allocations): comparable with
    /// `measured_peak_with_scratch_bytes`, where the backend reports allocations.
    driver_engine_bytes: Option<u64>,
    fwd_bwd_ms: f64,
}

/// The block under measurement.
enum Block {
    Dense(DenseBlock),
    Bc(TorchDenseBlock),
}

impl Block {
    fn new(
        gpu: &Gpu,
        sw: &Sweep,
        strategy: ConcatStrategy,
        layers: usize,
    ) -> skipgrad::Result<Block> {
        let (c, k) = (sw.channels, sw.growth);
        Ok(match sw.bc {
            None => Block::Dense(DenseBlock::new(gpu, c, k, layers, strategy)?),
            Some(bn_size) => {
                let mut b = TorchDenseBlock::with_init(gpu, c, k, bn_size, layers, Init::He(0))?;
                b.set_strategy(strategy);
                Block::Bc(b)
            }
        })
    }

    fn out_channels(&self) -> usize {
        match self {
            Block::Dense(b) => b.out_channels(),
            Block::Bc(b) => b.out_channels(),
        }
    }

    /// A training forward.
    fn forward(&mut self, rec: &mut Recording<'_>, x: &Tensor) -> skipgrad::Result<Tensor> {
        match self {
            Block::Dense(b) => b.forward(rec, x),
            Block::Bc(b) => b.forward(rec, x, true),
        }
    }

    fn backward(&mut self, rec: &mut Recording<'_>, g: &Tensor) -> skipgrad::Result<BlockGrads> {
        match self {
            Block::Dense(b) => b.backward(rec, g),
            Block::Bc(b) => b.backward(rec, g),
        }
    }
}

fn measure(
    gpu: &Gpu,
    sw: &Sweep,
    strategy: ConcatStrategy,
    layers: usize,
) -> skipgrad::Result<Row> {
    gpu.synchronize()?;
    let base = gpu.memory_report();
    let (n, c, s, k) = (sw.batch, sw.channels, sw.size, sw.growth);
    let mut block = Block::new(gpu, sw, strategy, layers)?;
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
    let (analytic, analytic_block_scratch_bytes) = match sw.bc {
        None => (
            DenseBlock::analytic_peak_bytes(strategy, c, k, layers, n, s, s),
            None,
        ),
        Some(bn_size) => {
            let shape = DenseBcShape {
                in_channels: c,
                growth: k,
                bn_size,
                layers,
                batch: n,
                height: s,
                width: s,
            };
            (
                shape.analytic_memory(strategy),
                Some(shape.analytic_scratch_bytes(strategy)),
            )
        }
    };
    Ok(Row {
        block: sw.block_name(),
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
        analytic_block_scratch_bytes,
        driver_allocated_bytes: driver,
        driver_engine_bytes,
        fwd_bwd_ms,
    })
}

/// Runs the sweep and writes the outputs.
pub fn run(a: &MemoryArgs, backend: Option<&str>) -> skipgrad::Result<()> {
    let sweep = Sweep::new(a)?;
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
        measure(&gpu, &sweep, strategy, 1)?;
    }
    let bar = progress_bar(2 * sweep.depths.len() as u64, "memory");
    let mut rows = Vec::new();
    for &layers in &sweep.depths {
        for strategy in ConcatStrategy::ALL {
            bar.set_message(format!("{} L={layers}", strategy.name()));
            rows.push(measure(&gpu, &sweep, strategy, layers)?);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    std::fs::create_dir_all(&a.out_dir).map_err(|e| super::write_err(&a.out_dir, e))?;
    let stem = if sweep.bc.is_some() {
        "memory_bc"
    } else {
        "memory"
    };
    let csv = a.out_dir.join(format!("{stem}.csv"));
    output::write_csv(&csv, &rows)?;
    let svg = a.out_dir.join(format!("{stem}.svg"));
    output::write_svg(&svg, &rows, &sweep)?;
    if a.json {
        let v = serde_json::json!({
            "adapter": gpu.adapter_info().name,
            "backend": gpu.backend_name(),
            "block": sweep.block_name(),
            "bn_size": sweep.bc,
            "scratch_budget_bytes": gpu.scratch_budget(),
            "rows": rows,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        output::print_table(&gpu, &sweep, &rows);
        println!("wrote {} and {}", csv.display(), svg.display());
    }
    Ok(())
}
