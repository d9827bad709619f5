//! `skipgrad selftest`: every conv kernel family × variant × pass on every reference shape
//! and every benchmark shape, each against the f64 oracle — the GPU tuner's variants
//! included. Each kernel is named on stdout, flushed, *before* it is compiled and run: a
//! driver that crashes the process leaves the culprit as the last line.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;

use skipgrad::bench::{gpu_suite, standard_cases};
use skipgrad::ops::conv2d::selftest::{self, Outcome, Problem, Progress};
use skipgrad::TensorFile;

use super::{adapter_line, open_gpu};

/// Arguments of `skipgrad selftest`.
#[derive(clap::Args, Clone, Debug)]
pub struct SelftestArgs {
    /// Reference case files or folders whose conv shapes to test (default: tests/vectors and
    /// tests/vectors/scale where they exist).
    pub paths: Vec<PathBuf>,
    /// The GPU suite at batches 1 and 2 instead of 32 and 128 (its shapes' pipelines are the
    /// same; for CPU adapters).
    #[arg(long)]
    pub quick: bool,
    /// Which shapes: `cases` (the reference case files'), `bench` (the benchmark's standard
    /// and GPU suites') or `all`.
    #[arg(long, default_value = "all", value_parser = ["all", "cases", "bench"])]
    pub shapes: String,
    /// Only problems whose name contains this text.
    #[arg(long)]
    pub only: Option<String>,
    /// Print JSON (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// The problems: the case files' convs, then the benchmark's (standard, then GPU suite),
/// each distinct shape once.
fn problems(args: &SelftestArgs) -> skipgrad::Result<Vec<Problem>> {
    let paths = if args.paths.is_empty() {
        ["tests/vectors", "tests/vectors/scale"]
            .iter()
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .collect()
    } else {
        args.paths.clone()
    };
    let mut all = Vec::new();
    let (cases, bench) = match args.shapes.as_str() {
        "cases" => (true, false),
        "bench" => (false, true),
        _ => (true, true),
    };
    let files = if cases {
        super::check::collect(&paths)
    } else {
        Vec::new()
    };
    for file in files {
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let case = TensorFile::read(&file)?;
        all.extend(selftest::problems_of_case(&case, &name)?);
    }
    if bench {
        for case in standard_cases() {
            all.extend(case.conv_problems());
        }
        for s in gpu_suite(args.quick) {
            all.extend(s.case.conv_problems());
        }
    }
    let mut seen = HashSet::new();
    all.retain(|p| {
        seen.insert(format!(
            "{:?}{:?}{:?}{}",
            p.input, p.weight, p.params, p.bias
        ))
    });
    if let Some(only) = &args.only {
        all.retain(|p| p.name.contains(only.as_str()));
    }
    Ok(all)
}

/// Runs the self-test; returns whether every kernel matched the oracle.
pub fn run(args: &SelftestArgs, backend: Option<&str>) -> skipgrad::Result<bool> {
    let gpu = open_gpu(backend)?;
    let problems = problems(args)?;
    // Progress to stdout for people (flushed before each kernel), to stderr with --json.
    let say = |text: &str, newline: bool| {
        let end = if newline { "\n" } else { "" };
        if args.json {
            eprint!("{text}{end}");
            let _ = std::io::stderr().flush();
        } else {
            print!("{text}{end}");
            let _ = std::io::stdout().flush();
        }
    };
    say(&format!("adapter: {}", adapter_line(&gpu)), true);
    say(
        &format!(
            "policy {}; {} problems; each kernel is named before it is compiled",
            gpu.policy().name(),
            problems.len()
        ),
        true,
    );
    let started = std::time::Instant::now();
    let mut rows = Vec::new();
    let (mut passed, mut failed) = (0usize, 0usize);
    for (i, problem) in problems.iter().enumerate() {
        let p = &problem.params;
        let header = format!(
            "[{}/{}] {}: x {:?}, w {:?}, stride {:?}, padding {:?}, dilation {:?}, groups {}",
            i + 1,
            problems.len(),
            problem.name,
            problem.input,
            problem.weight,
            p.stride,
            p.padding,
            p.dilation,
            p.groups
        );
        say(&header, true);
        let t0 = std::time::Instant::now();
        let outcomes = selftest::run(&gpu, problem, |progress| match progress {
            Progress::Starting(kernel) => say(&format!("    {kernel} ... "), false),
            Progress::Done(o) => say(&verdict(o), true),
        });
        match outcomes {
            Ok(outcomes) => {
                say(
                    &format!(
                        "    {} kernels, {:.1} s",
                        outcomes.len(),
                        t0.elapsed().as_secs_f64()
                    ),
                    true,
                );
                for o in &outcomes {
                    if o.passed() {
                        passed += 1;
                    } else {
                        failed += 1;
                    }
                    rows.push(row(problem, o));
                }
            }
            Err(e) => {
                say(&format!("    cannot run: {e}"), true);
                failed += 1;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    if args.json {
        let v = serde_json::json!({
            "adapter": adapter_line(&gpu),
            "policy": gpu.policy().name(),
            "passed": passed,
            "failed": failed,
            "seconds": secs,
            "kernels": rows,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        println!("{passed} kernels passed, {failed} failed, {secs:.1} s");
    }
    Ok(failed == 0)
}

/// A kernel's verdict: `ok` and what ran, or why it failed.
fn verdict(o: &Outcome) -> String {
    if o.passed() {
        let worst = o
            .comparisons
            .iter()
            .map(|c| c.max_abs_err)
            .fold(0.0, f64::max);
        return format!("ok (max abs err {worst:.1e}; ran {})", o.ran.join(", "));
    }
    let mut text = String::from("FAIL");
    if let Some(e) = &o.error {
        text.push_str(&format!(": {e}"));
    }
    for c in o.comparisons.iter().filter(|c| !c.passed) {
        text.push_str(&format!(
            "\n         {}: max abs err {:.3e}, max rel err {:.3e}, {} non-finite mismatches",
            c.name, c.max_abs_err, c.max_rel_err, c.nonfinite_mismatches
        ));
    }
    if !o.ran.is_empty() {
        text.push_str(&format!("\n         ran {}", o.ran.join(", ")));
    }
    text
}

fn row(problem: &Problem, o: &Outcome) -> serde_json::Value {
    serde_json::json!({
        "problem": problem.name,
        "input": problem.input,
        "weight": problem.weight,
        "stride": problem.params.stride,
        "padding": problem.params.padding,
        "dilation": problem.params.dilation,
        "groups": problem.params.groups,
        "pass": o.kernel.pass,
        "family": o.kernel.family.name(),
        "variant": o.kernel.variant,
        "variant_name": o.kernel.variant_name,
        "ran": o.ran,
        "passed": o.passed(),
        "error": o.error,
        "comparisons": o.comparisons,
    })
}
