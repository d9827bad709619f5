//! `skipgrad check PATH...`: runs reference case files through the engine and reports, per
//! case, the largest absolute and relative error of every output and gradient.

use std::path::{Path, PathBuf};

use skipgrad::cases::{run_case_file, CaseReport};

use super::{adapter_line, open_gpu};

/// Expands folders into their `.safetensors` files (sorted); files are kept as given.
pub fn collect(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map(|rd| {
                    rd.filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|f| f.extension().is_some_and(|x| x == "safetensors"))
                        .collect()
                })
                .unwrap_or_default();
            found.sort();
            if found.is_empty() {
                // Reported as a failed case below, with the reason.
                files.push(p.clone());
            }
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    files
}

fn report_for_path(gpu: &skipgrad::Gpu, path: &Path) -> CaseReport {
    if path.is_dir() {
        return CaseReport {
            case: path.display().to_string(),
            op: String::new(),
            comparisons: Vec::new(),
            error: Some("folder holds no .safetensors files".into()),
        };
    }
    run_case_file(gpu, path)
}

/// Runs the cases; returns whether all passed.
pub fn run(paths: &[PathBuf], backend: Option<&str>, json: bool) -> skipgrad::Result<bool> {
    let gpu = open_gpu(backend)?;
    let files = collect(paths);
    if !json {
        println!("adapter: {}", adapter_line(&gpu));
    }
    let mut reports = Vec::new();
    for f in &files {
        let r = report_for_path(&gpu, f);
        if !json {
            print_report(&r);
        }
        reports.push(r);
    }
    let passed = reports.iter().filter(|r| r.passed()).count();
    let failed = reports.len() - passed;
    if json {
        let v = serde_json::json!({
            "adapter": gpu.adapter_info().name,
            "backend": gpu.backend_name(),
            "passed": passed,
            "failed": failed,
            "cases": reports,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        println!("{passed} passed, {failed} failed");
    }
    Ok(failed == 0 && !reports.is_empty())
}

fn print_report(r: &CaseReport) {
    let verdict = if r.passed() { "PASS" } else { "FAIL" };
    let op = if r.op.is_empty() { "?" } else { &r.op };
    println!("{verdict} {:<40} {op}", r.case);
    if let Some(e) = &r.error {
        println!("     error: {e}");
    }
    for c in &r.comparisons {
        if let Some(m) = &c.mismatch {
            println!("     {:<28} mismatch: {m}", c.name);
            continue;
        }
        let why = match (c.passed, c.nonfinite_mismatches) {
            (true, _) => String::new(),
            (false, 0) => "  <- out of tolerance".to_string(),
            (false, k) => format!("  <- {k} non-finite value(s) where the reference differs"),
        };
        println!(
            "     {:<28} max abs err {:>10.3e}  max rel err {:>10.3e}{why}",
            c.name, c.max_abs_err, c.max_rel_err,
        );
    }
}
