//! The `skipgrad` binary: clap subcommands, nothing else.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// skipgrad: a GPU compute-shader engine for skip connections (residual and dense blocks).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Backend to use: vulkan, gl, metal or dx12 (overrides SKIPGRAD_BACKEND).
    #[arg(long, global = true)]
    backend: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Show the adapter, backend and the limits that matter.
    Info {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run reference case files (.safetensors, or folders of them) and report every error.
    Check {
        /// Case files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Benchmark the standard cases against the adapter's measured ceilings (the default).
    Bench(cli::bench::BenchArgs),
    /// Measure the memory cost of concatenation: dense blocks of depth 1..L, naive vs shared.
    Memory(cli::memory::MemoryArgs),
    /// Reliability under load: threads on one Gpu compared bitwise with a serial run, and
    /// thousands of passes with memory sampled (deterministic kernel choice).
    Stress(cli::stress::StressArgs),
    /// The vanishing gradient, measured: per-layer weight-gradient norms of plain, residual
    /// and dense stacks by depth.
    Gradflow(cli::gradflow::GradflowArgs),
    /// Compile and run every conv kernel family × variant × pass on every reference and
    /// benchmark shape against the f64 oracle, naming each kernel before it is compiled.
    Selftest(cli::selftest::SelftestArgs),
    /// Show (--show) or forget (--clear) what the conv tuner remembers between processes.
    Tune(cli::tune::TuneArgs),
    /// Train plain / residual / dense stacks on a synthetic denoising task (or --data) on the
    /// GPU: one submission a step, the loss read back only when logged.
    Train(cli::train::TrainArgs),
}

/// Without a valid `XDG_RUNTIME_DIR` (headless machines, CI), Mesa's device-select Vulkan
/// layer tries to reach a Wayland compositor while adapters are enumerated, and libwayland
/// prints "error: XDG_RUNTIME_DIR is invalid" on every command although nothing is wrong.
/// That layer only reorders adapters for programs that take the first one; skipgrad picks
/// its own, so it is switched off there, unless the user said otherwise. Done first thing
/// in `main`, while the process has one thread.
fn quiet_headless_probes() {
    let runtime_dir_ok =
        std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| std::path::Path::new(&d).is_dir());
    if !runtime_dir_ok && std::env::var_os("NODEVICE_SELECT").is_none() {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
}

fn main() -> ExitCode {
    quiet_headless_probes();
    let cli = Cli::parse();
    let backend = cli.backend.as_deref();
    let result = match cli.command {
        Some(Command::Info { json }) => cli::info::run(backend, json).map(|_| true),
        Some(Command::Check { paths, json }) => cli::check::run(&paths, backend, json),
        Some(Command::Memory(args)) => cli::memory::run(&args, backend).map(|_| true),
        Some(Command::Bench(args)) if args.suite == "gpu" => cli::suite::run(&args, backend),
        Some(Command::Bench(args)) => cli::bench::run(&args, backend),
        Some(Command::Stress(args)) => cli::stress::run(&args, backend),
        Some(Command::Gradflow(args)) => cli::gradflow::run(&args, backend),
        Some(Command::Train(args)) => cli::train::run(&args, backend),
        Some(Command::Selftest(args)) => cli::selftest::run(&args, backend),
        Some(Command::Tune(args)) => cli::tune::run(&args),
        None => cli::bench::run(&cli::bench::BenchArgs::default(), backend),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
