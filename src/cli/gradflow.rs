//! `skipgrad gradflow`: the vanishing gradient, measured. For each architecture and depth,
//! one forward and backward of the MSE against a target, then the L2 norm of every layer's
//! weight gradient: in a plain stack the first layers' gradients collapse with depth; skip
//! connections (residual: addition, dense: concatenation) keep them alive.

use std::path::{Path, PathBuf};

use plotters::chart::SeriesLabelPosition;
use skipgrad::ops::loss;
use skipgrad::TensorFile;
use skipgrad::{Arch, Error, Gpu, Init, Network, Purpose, Recording, Result, Tensor};

use super::{adapter_line, arch_color, line_chart, open_gpu, progress_bar, Series};

/// What to measure.
#[derive(Clone, Debug, clap::Args)]
pub struct GradflowArgs {
    /// Architectures: plain, residual, dense, resnet-bn, densenet-bc (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "plain,residual,dense")]
    pub arch: Vec<String>,
    /// Depths (convs of plain and residual stacks, layers of the dense block).
    #[arg(long, value_delimiter = ',', default_value = "4,8,16,32,64")]
    pub depth: Vec<usize>,
    /// The network and its data.
    #[command(flatten)]
    pub net: NetArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Folder for gradflow.csv, gradflow_layers.svg and gradflow_depth.svg.
    #[arg(long, default_value = "out")]
    pub out_dir: PathBuf,
}

/// What `gradflow` and `train` share: the network's size and initialisation, and its data.
#[derive(Clone, Debug, clap::Args)]
pub struct NetArgs {
    /// Channels of the input and of every plain/residual layer.
    #[arg(long, default_value_t = 16)]
    pub channels: usize,
    /// Image height and width.
    #[arg(long, default_value_t = 16)]
    pub size: usize,
    /// Batch size.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Initialisation: torch (nn.Conv2d's default) or he (kaiming_normal_).
    #[arg(long, default_value = "torch")]
    pub init: String,
    /// Seed of the parameters and of the data.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A safetensors file with `x` and `target` ([N, C, H, W]) instead of generated data.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// A state_dict of the network (PyTorch names) instead of initialising (one arch and
    /// depth). Strict, as PyTorch's `load_state_dict`: tensors the network does not use
    /// are an error, unless --no-strict.
    #[arg(long)]
    pub load: Option<PathBuf>,
    /// With --load: skip (and name) tensors the network does not use instead of failing.
    #[arg(long, requires = "load")]
    pub no_strict: bool,
}

impl NetArgs {
    /// Where the parameters come from, for headers: `init torch, seed 0`, or the file.
    pub fn source(&self) -> String {
        match &self.load {
            Some(p) => format!("loaded from {}", p.display()),
            None => format!("init {}, seed {}", self.init, self.seed),
        }
    }

    /// The shape of the data: `[batch, channels, size, size]`.
    pub fn shape(&self) -> [usize; 4] {
        [self.batch, self.channels, self.size, self.size]
    }

    /// A network of `arch` and `depth`: loaded from `--load` (strictly, or with
    /// `--no-strict` skipping what it does not use and saying so on stderr), else
    /// initialised.
    pub fn network(&self, gpu: &Gpu, arch: Arch, depth: usize) -> Result<Network> {
        match &self.load {
            Some(p) => {
                let file = TensorFile::read(p)?;
                if !self.no_strict {
                    return Network::from_state_dict(gpu, arch, depth, self.channels, &file);
                }
                let (net, skipped) =
                    Network::from_state_dict_lenient(gpu, arch, depth, self.channels, &file)?;
                if !skipped.is_empty() {
                    eprintln!(
                        "skipped {} tensor(s) of {} that the network does not use: {}",
                        skipped.len(),
                        p.display(),
                        skipped.join(", ")
                    );
                }
                Ok(net)
            }
            None => Network::new(
                gpu,
                arch,
                depth,
                self.channels,
                Init::parse(&self.init, self.seed)?,
            ),
        }
    }
}

/// One weight's gradient norm.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Layer {
    name: String,
    grad_norm: f64,
}

/// One network's measurement.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Run {
    arch: &'static str,
    depth: usize,
    loss: f64,
    layers: Vec<Layer>,
}

impl Run {
    fn first(&self) -> f64 {
        self.layers.first().map_or(0.0, |l| l.grad_norm)
    }
    fn last(&self) -> f64 {
        self.layers.last().map_or(0.0, |l| l.grad_norm)
    }
}

/// Room for `n` f32 values, or [`Error::HostMemory`]: sizes a user typed must not abort.
pub fn host_f32s(n: usize, what: &str) -> Result<Vec<f32>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| Error::HostMemory {
        bytes: (n as u64).saturating_mul(4),
        what: what.to_string(),
    })?;
    Ok(v)
}

/// Standard normal values from a seed (xorshift + Box-Muller).
pub fn normal_data(seed: u64, n: usize) -> Result<Vec<f32>> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut v = host_f32s(n, "generated data")?;
    v.extend((0..n).map(|_| {
        let (u1, u2) = (uniform().max(f64::MIN_POSITIVE), uniform());
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }));
    Ok(v)
}

/// `x` and `target`: from `--data`, or random from the seed.
pub fn data(
    gpu: &Gpu,
    path: Option<&Path>,
    shape: [usize; 4],
    seed: u64,
) -> Result<(Tensor, Tensor)> {
    match path {
        Some(p) => {
            let f = TensorFile::read(p)?;
            let get = |k: &str| -> Result<Tensor> {
                let t = f.tensor(k).map_err(|e| Error::TensorFile {
                    path: p.display().to_string(),
                    reason: e.to_string(),
                })?;
                Tensor::from_slice(gpu, t.shape4()?, &t.data, Purpose::Activation)
            };
            Ok((get("x")?, get("target")?))
        }
        None => {
            // The sizes are the user's: refused before host memory is taken for them.
            let n = Tensor::check_size(gpu, shape)? as usize / 4;
            let x =
                Tensor::from_slice(gpu, shape, &normal_data(seed ^ 1, n)?, Purpose::Activation)?;
            let t =
                Tensor::from_slice(gpu, shape, &normal_data(seed ^ 2, n)?, Purpose::Activation)?;
            Ok((x, t))
        }
    }
}

/// Parses the comma-separated architectures.
pub fn archs(names: &[String]) -> Result<Vec<Arch>> {
    names.iter().map(|n| Arch::parse(n)).collect()
}

/// One forward and backward; the gradient norm of every conv weight, in forward order.
fn measure(gpu: &Gpu, net: &mut Network, x: &Tensor, target: &Tensor) -> Result<(f64, Vec<Layer>)> {
    let mut rec = Recording::new(gpu);
    let y = net.forward(&mut rec, x)?;
    let l = loss::mse(&mut rec, &y, target)?;
    let grads = net.backward(&mut rec, &l.grad)?;
    rec.finish()?;
    let mut layers = Vec::new();
    for (name, g) in &grads.params {
        // Conv weights only: the BatchNorm stacks' norms have weights too.
        let norm = name.contains(".bn") || name.contains(".norm");
        if !name.ends_with(".weight") || norm {
            continue;
        }
        let v = g.to_vec(gpu)?;
        let norm = v
            .iter()
            .map(|&a| (a as f64) * (a as f64))
            .sum::<f64>()
            .sqrt();
        layers.push(Layer {
            name: name.clone(),
            grad_norm: norm,
        });
    }
    Ok((l.loss.to_vec(gpu)?[0] as f64, layers))
}

/// Runs the sweep; prints the table or JSON, writes the CSV and plots.
pub fn run(args: &GradflowArgs, backend: Option<&str>) -> Result<bool> {
    let gpu = open_gpu(backend)?;
    let archs = archs(&args.arch)?;
    if args.net.load.is_some() && (archs.len() != 1 || args.depth.len() != 1) {
        return Err(Error::InvalidParameter {
            op: "gradflow",
            detail: "--load takes one state_dict: give one --arch and one --depth".into(),
        });
    }
    let a = &args.net;
    let (x, target) = data(&gpu, a.data.as_deref(), a.shape(), a.seed)?;
    let bar = progress_bar((archs.len() * args.depth.len()) as u64, "gradflow");
    let mut runs = Vec::new();
    for &arch in &archs {
        for &depth in &args.depth {
            bar.set_message(format!("{} depth {depth}", arch.name()));
            let mut net = args.net.network(&gpu, arch, depth)?;
            let (loss, layers) = measure(&gpu, &mut net, &x, &target)?;
            runs.push(Run {
                arch: arch.name(),
                depth,
                loss,
                layers,
            });
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    std::fs::create_dir_all(&args.out_dir).map_err(|e| super::write_err(&args.out_dir, e))?;
    write_csv(&args.out_dir.join("gradflow.csv"), &runs)?;
    plot_layers(&args.out_dir.join("gradflow_layers.svg"), &runs, a)?;
    plot_depth(&args.out_dir.join("gradflow_depth.svg"), &runs, a)?;
    if args.json {
        let v = serde_json::json!({
            "adapter": adapter_line(&gpu),
            "channels": a.channels, "size": a.size, "batch": a.batch,
            "init": a.init, "seed": a.seed,
            "runs": runs,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        println!("adapter: {}", adapter_line(&gpu));
        println!(
            "MSE loss vs a target, one backward; ||grad|| of each weight ({} channels, {}x{}, batch {}, {})",
            a.channels, a.size, a.size, a.batch, a.source()
        );
        println!(
            "{:<9} {:>6} {:>12} {:>14} {:>14} {:>12}",
            "arch", "depth", "loss", "first ||g||", "last ||g||", "first/last"
        );
        for r in &runs {
            println!(
                "{:<9} {:>6} {:>12.5} {:>14.4e} {:>14.4e} {:>12.3e}",
                r.arch,
                r.depth,
                r.loss,
                r.first(),
                r.last(),
                r.first() / r.last()
            );
        }
        println!(
            "per-layer norms: {}; plots: {}, {}",
            args.out_dir.join("gradflow.csv").display(),
            args.out_dir.join("gradflow_layers.svg").display(),
            args.out_dir.join("gradflow_depth.svg").display()
        );
    }
    Ok(true)
}

fn write_csv(path: &Path, runs: &[Run]) -> Result<()> {
    let mut s = String::from("arch,depth,layer_index,name,grad_norm\n");
    for r in runs {
        for (i, l) in r.layers.iter().enumerate() {
            s.push_str(&format!(
                "{},{},{i},{},{:e}\n",
                r.arch, r.depth, l.name, l.grad_norm
            ));
        }
    }
    std::fs::write(path, s).map_err(|e| super::write_err(path, e))
}

/// log10 of a norm, floored so a zero gradient still plots.
fn lg(v: f64) -> f64 {
    v.max(1e-30).log10()
}

fn y_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if lo.is_finite() {
        (lo.floor() - 0.5)..(hi.ceil() + 0.5)
    } else {
        -1.0..1.0
    }
}

/// Per-layer norms of the deepest run of each architecture.
fn plot_layers(path: &Path, runs: &[Run], a: &NetArgs) -> Result<()> {
    let deepest: Vec<&Run> = ["plain", "residual", "dense"]
        .iter()
        .filter_map(|arch| {
            runs.iter()
                .filter(|r| r.arch == *arch)
                .max_by_key(|r| r.depth)
        })
        .collect();
    let xmax = deepest.iter().map(|r| r.layers.len()).max().unwrap_or(1) as f64;
    let yr = y_range(
        deepest
            .iter()
            .flat_map(|r| r.layers.iter().map(|l| lg(l.grad_norm))),
    );
    let series: Vec<Series> = deepest
        .iter()
        .map(|r| Series {
            label: format!("{} (depth {})", r.arch, r.depth),
            color: arch_color(r.arch),
            points: r
                .layers
                .iter()
                .enumerate()
                .map(|(i, l)| (i as f64, lg(l.grad_norm)))
                .collect(),
            dots: false,
        })
        .collect();
    let caption = format!(
        "Weight-gradient norm by layer ({} ch, {}x{}, batch {}, {})",
        a.channels,
        a.size,
        a.size,
        a.batch,
        a.source()
    );
    line_chart(
        path,
        &caption,
        ("layer (forward order)", "log10 ||dL/dW||"),
        (0f64..xmax, yr),
        &series,
        SeriesLabelPosition::LowerRight,
    )
}

/// The first layer's norm against depth, per architecture.
fn plot_depth(path: &Path, runs: &[Run], a: &NetArgs) -> Result<()> {
    let xmax = runs.iter().map(|r| r.depth).max().unwrap_or(1) as f64;
    let yr = y_range(runs.iter().map(|r| lg(r.first())));
    let series: Vec<Series> = ["plain", "residual", "dense"]
        .iter()
        .map(|arch| Series {
            label: arch.to_string(),
            color: arch_color(arch),
            points: runs
                .iter()
                .filter(|r| r.arch == *arch)
                .map(|r| (r.depth as f64, lg(r.first())))
                .collect(),
            dots: true,
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    let caption = format!(
        "First layer's weight-gradient norm vs depth ({} ch, {})",
        a.channels,
        a.source()
    );
    line_chart(
        path,
        &caption,
        ("depth", "log10 ||dL/dW_first||"),
        (0f64..xmax * 1.05, yr),
        &series,
        SeriesLabelPosition::LowerLeft,
    )
}
