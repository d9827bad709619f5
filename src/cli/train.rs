//! `skipgrad train`: trains one or several architectures of one depth on a synthetic
//! denoising task the engine generates from a seed (structured images plus Gaussian noise in,
//! the clean images as target), or on `--data` (`x` and `target`, one full batch every
//! step). Every step is one submission (forward, loss, backward, update); the loss is read
//! back only at logged steps.

use std::path::{Path, PathBuf};

use plotters::chart::SeriesLabelPosition;
use skipgrad::train::{self, Adam, Sgd};
use skipgrad::{Error, Gpu, Optimizer, OptimizerKind, Purpose, Recording, Result, Tensor};

use super::gradflow::{archs, data, host_f32s, normal_data, NetArgs};
use super::{adapter_line, arch_color, line_chart, open_gpu, progress_bar, Series};

/// What to train and how.
#[derive(Clone, Debug, clap::Args)]
#[command(allow_negative_numbers = true)]
pub struct TrainArgs {
    /// Architectures: plain, residual, dense, resnet-bn, densenet-bc (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "plain,residual")]
    pub arch: Vec<String>,
    /// Depth (convs of plain and residual stacks, layers of the dense block).
    #[arg(long, default_value_t = 20)]
    pub depth: usize,
    /// The network and its data (the synthetic task unless `--data`).
    #[command(flatten)]
    pub net: NetArgs,
    /// Optimizer steps.
    #[arg(long, default_value_t = 200)]
    pub steps: usize,
    /// sgd, adam or adamw.
    #[arg(long, default_value = "sgd")]
    pub optimizer: String,
    /// Learning rate (default: 0.01 for SGD, 1e-3 for Adam/AdamW).
    #[arg(long)]
    pub lr: Option<f32>,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    /// Weight decay (default: 0, or AdamW's 0.01).
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// Nesterov momentum (SGD).
    #[arg(long)]
    pub nesterov: bool,
    /// Adam betas, `b1,b2`.
    #[arg(long, value_delimiter = ',', default_value = "0.9,0.999")]
    pub betas: Vec<f32>,
    /// Adam epsilon.
    #[arg(long, default_value_t = 1e-8)]
    pub eps: f32,
    /// Where to write the final state_dict (PyTorch names; one arch).
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Read the loss back every this many steps (and at the first and last step).
    #[arg(long, default_value_t = 10)]
    pub log_every: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Folder for train.svg (the loss curves).
    #[arg(long, default_value = "out")]
    pub out_dir: PathBuf,
}

/// One logged step.
#[derive(Clone, Debug, serde::Serialize)]
struct Step {
    step: usize,
    loss: f64,
}

/// One architecture's run.
#[derive(Clone, Debug, serde::Serialize)]
struct RunReport {
    arch: &'static str,
    depth: usize,
    optimizer: String,
    steps: Vec<Step>,
    dispatches_per_step: usize,
    submissions_per_step: usize,
    read_backs: usize,
    seconds: f64,
}

/// The optimizer the flags describe.
fn optimizer(a: &TrainArgs) -> Result<OptimizerKind> {
    let bad = |d: String| Error::InvalidParameter {
        op: "train",
        detail: d,
    };
    let betas = match a.betas.as_slice() {
        [b1, b2] => (*b1, *b2),
        other => return Err(bad(format!("--betas needs two values, got {other:?}"))),
    };
    Ok(match a.optimizer.to_ascii_lowercase().as_str() {
        "sgd" => OptimizerKind::Sgd(Sgd {
            lr: a.lr.unwrap_or(0.01),
            momentum: a.momentum,
            dampening: 0.0,
            weight_decay: a.weight_decay.unwrap_or(0.0),
            nesterov: a.nesterov,
        }),
        "adam" | "adamw" => {
            let adamw = a.optimizer.eq_ignore_ascii_case("adamw");
            let cfg = Adam {
                lr: a.lr.unwrap_or(1e-3),
                betas,
                eps: a.eps,
                weight_decay: a.weight_decay.unwrap_or(if adamw { 0.01 } else { 0.0 }),
            };
            if adamw {
                OptimizerKind::AdamW(cfg)
            } else {
                OptimizerKind::Adam(cfg)
            }
        }
        other => {
            return Err(bad(format!(
                "unknown optimizer {other:?} (sgd, adam, adamw)"
            )))
        }
    })
}

/// The synthetic denoising task: each image channel a product of two sinusoids of random
/// frequency and phase (structure a conv can learn), the input that plus Gaussian noise of
/// standard deviation 0.5, the target the clean image.
fn denoising(gpu: &Gpu, shape: [usize; 4], seed: u64) -> Result<(Tensor, Tensor)> {
    let [n, c, h, w] = shape;
    // The sizes are the user's: refused before host memory is taken for them.
    Tensor::check_size(gpu, shape)?;
    let params = normal_data(seed ^ 0x5eed, n * c * 4)?;
    let mut clean = host_f32s(n * c * h * w, "the denoising task's images")?;
    for i in 0..n * c {
        let p = &params[4 * i..4 * i + 4];
        let (fy, fx) = (1.0 + p[0].abs().min(3.0), 1.0 + p[1].abs().min(3.0));
        for y in 0..h {
            for x in 0..w {
                let (u, v) = (y as f32 / h as f32, x as f32 / w as f32);
                let s = (std::f32::consts::TAU * (fy * u + p[2])).sin()
                    * (std::f32::consts::TAU * (fx * v + p[3])).cos();
                clean.push(s);
            }
        }
    }
    let noise = normal_data(seed ^ 0x0015e, clean.len())?;
    let noisy: Vec<f32> = clean.iter().zip(&noise).map(|(c, e)| c + 0.5 * e).collect();
    Ok((
        Tensor::from_slice(gpu, shape, &noisy, Purpose::Activation)?,
        Tensor::from_slice(gpu, shape, &clean, Purpose::Activation)?,
    ))
}

/// Trains; prints the table or JSON; writes the loss curves.
pub fn run(args: &TrainArgs, backend: Option<&str>) -> Result<bool> {
    let gpu = open_gpu(backend)?;
    let archs = archs(&args.arch)?;
    if (args.net.load.is_some() || args.save.is_some()) && archs.len() != 1 {
        return Err(Error::InvalidParameter {
            op: "train",
            detail: "--load and --save take one state_dict: give one --arch".into(),
        });
    }
    if args.steps == 0 {
        return Err(Error::InvalidParameter {
            op: "train",
            detail: "--steps must be at least 1".into(),
        });
    }
    let kind = optimizer(args)?;
    let shape = args.net.shape();
    let (x, target) = match &args.net.data {
        Some(p) => data(&gpu, Some(p), shape, args.net.seed)?,
        None => denoising(&gpu, shape, args.net.seed)?,
    };
    let mut reports = Vec::new();
    for &arch in &archs {
        let mut net = args.net.network(&gpu, arch, args.depth)?;
        let mut opt = Optimizer::new(kind)?;
        let bar = progress_bar(args.steps as u64, "train");
        bar.set_message(arch.name());
        let start = std::time::Instant::now();
        let (mut steps, mut dispatches, mut read_backs) = (Vec::new(), 0, 0);
        for s in 0..args.steps {
            let mut rec = Recording::new(&gpu);
            let loss = train::train_step(&mut rec, &mut net, &mut opt, &x, &target)?;
            dispatches = rec.dispatch_count();
            rec.submit()?;
            let logged = s == 0 || s + 1 == args.steps || (s + 1) % args.log_every.max(1) == 0;
            if logged {
                let l = loss.to_vec(&gpu)?[0] as f64;
                read_backs += 1;
                steps.push(Step { step: s, loss: l });
                bar.set_message(format!("{} loss {l:.5}", arch.name()));
            }
            bar.inc(1);
        }
        gpu.synchronize()?;
        bar.finish_and_clear();
        if let Some(p) = &args.save {
            net.save(&gpu, p)?;
        }
        reports.push(RunReport {
            arch: arch.name(),
            depth: args.depth,
            optimizer: kind.to_string(),
            steps,
            dispatches_per_step: dispatches,
            submissions_per_step: 1,
            read_backs,
            seconds: start.elapsed().as_secs_f64(),
        });
    }
    std::fs::create_dir_all(&args.out_dir).map_err(|e| super::write_err(&args.out_dir, e))?;
    let svg = args.out_dir.join("train.svg");
    plot(&svg, &reports, args)?;
    if args.json {
        let v = serde_json::json!({
            "adapter": adapter_line(&gpu),
            "task": if args.net.data.is_some() { "data" } else { "denoising" },
            "runs": reports,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        println!("adapter: {}", adapter_line(&gpu));
        println!(
            "task: {}, {:?}; {}; optimizer {kind}; {} steps",
            if args.net.data.is_some() {
                "--data"
            } else {
                "denoising (seeded)"
            },
            shape,
            args.net.source(),
            args.steps
        );
        println!(
            "{:<9} {:>6} {:>12} {:>12} {:>12} {:>18} {:>10}",
            "arch", "depth", "first loss", "last loss", "last/first", "dispatches/step", "s"
        );
        for r in &reports {
            let (f, l) = (r.steps[0].loss, r.steps[r.steps.len() - 1].loss);
            println!(
                "{:<9} {:>6} {:>12.5} {:>12.5} {:>12.4} {:>18} {:>10.1}",
                r.arch,
                r.depth,
                f,
                l,
                l / f,
                r.dispatches_per_step,
                r.seconds
            );
        }
        println!(
            "one submission a step; the loss read back at {} of {} steps; curves: {}",
            reports.first().map_or(0, |r| r.read_backs),
            args.steps,
            svg.display()
        );
    }
    Ok(true)
}

fn plot(path: &Path, runs: &[RunReport], a: &TrainArgs) -> Result<()> {
    let lg = |v: f64| v.max(1e-30).log10();
    let (lo, hi) = runs
        .iter()
        .flat_map(|r| r.steps.iter().map(|s| lg(s.loss)))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    let (lo, hi) = if lo.is_finite() {
        (lo - 0.1, hi + 0.1)
    } else {
        (-1.0, 1.0)
    };
    let series: Vec<Series> = runs
        .iter()
        .map(|r| Series {
            label: r.arch.to_string(),
            color: arch_color(r.arch),
            points: r
                .steps
                .iter()
                .map(|s| (s.step as f64, lg(s.loss)))
                .collect(),
            dots: false,
        })
        .collect();
    line_chart(
        path,
        &format!("Training loss, depth {} ({})", a.depth, a.optimizer),
        ("step", "log10 MSE loss"),
        (0f64..a.steps as f64, lo..hi),
        &series,
        SeriesLabelPosition::UpperRight,
    )
}
