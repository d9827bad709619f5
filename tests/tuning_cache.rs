//! The tuner's memory between processes, as a user meets it: a process that dies inside a
//! kernel variant (here on purpose, as a driver whose compiler crashes would) leaves it
//! journalled; the next process names it in one warning, records it as failed, skips it and
//! still gives the oracle's numbers; a third re-tunes nothing; `tune --show` lists both; a
//! corrupt or foreign cache file is ignored with a warning, never trusted.
//!
//! Runs the binary under the GPU policy, so that the tuner measures every family and
//! variant (the GEMM family's among them) on any adapter.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A conv that the GPU policy tunes (not tiny), with a GEMM family of several variants.
const CASE: &str = "tests/vectors/conv2d_3x3_s1p1_c64to64.safetensors";

fn skipgrad(cache: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_skipgrad"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("SKIPGRAD_CACHE_DIR", cache)
        .env("SKIPGRAD_POLICY", "gpu")
        .env_remove("SKIPGRAD_CONV_KERNELS")
        .env_remove("SKIPGRAD_DETERMINISTIC")
        .env_remove("SKIPGRAD_TEST_ABORT_IN_VARIANT");
    c
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("skipgrad-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The one tuning cache file in `dir`.
fn tune_file(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("tune-") && n.ends_with(".json")
        })
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

fn check_passes(cache: &Path, abort_in: Option<&str>) -> (String, String) {
    let mut cmd = skipgrad(cache);
    cmd.args(["check", CASE]);
    if let Some(v) = abort_in {
        cmd.env("SKIPGRAD_TEST_ABORT_IN_VARIANT", v);
    }
    let out = cmd.output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("1 passed, 0 failed"), "{stdout}");
    (stdout, stderr)
}

#[test]
fn a_variant_that_killed_a_process_is_named_once_and_never_tried_again() {
    let cache = fresh_dir("crash");
    let abort = "forward:gemm:1";

    // 1: dies inside the forward's GEMM variant 1, as a crashing compiler would.
    let out = skipgrad(&cache)
        .args(["check", CASE])
        .env("SKIPGRAD_TEST_ABORT_IN_VARIANT", abort)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(
        !out.status.success(),
        "the first process must die: {stderr}"
    );
    assert!(
        stderr.contains("aborting inside forward:gemm:1"),
        "{stderr}"
    );

    // 2: the same hook armed; the variant is skipped (else this process would die too),
    // named in one warning, and the case matches PyTorch's numbers.
    let (_, stderr) = check_passes(&cache, Some(abort));
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("a process died inside the gemm kernel (tile")
            && warnings[0]
                .contains("for the forward of input [1, 64, 8, 8], weight [64, 64, 3, 3]")
            && warnings[0].contains("will not be tried again on this driver"),
        "{stderr}"
    );

    // `tune --show` lists the failure and the choices.
    let out = skipgrad(&cache).args(["tune", "--show"]).output().unwrap();
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(stdout.contains("3 choices"), "{stdout}");
    assert!(
        stdout.contains("1 failed (never tried again on this driver)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("the process died while compiling or running it"),
        "{stdout}"
    );
    let out = skipgrad(&cache)
        .args(["tune", "--show", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed = &v["files"][0]["failed"];
    assert_eq!(failed.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(failed[0]["family"], "gemm");
    assert_eq!(failed[0]["pass"], "forward");

    // 3: re-tunes nothing (the file is not rewritten) and warns of nothing.
    let file = tune_file(&cache);
    let before = std::fs::read(&file).unwrap();
    let (_, stderr) = check_passes(&cache, Some(abort));
    assert!(!stderr.contains("warning"), "{stderr}");
    assert_eq!(std::fs::read(&file).unwrap(), before, "nothing re-tuned");

    // `tune --clear` forgets everything.
    let out = skipgrad(&cache).args(["tune", "--clear"]).output().unwrap();
    assert!(out.status.success());
    assert!(
        !std::fs::read_dir(&cache).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("tune-")),
        "cleared"
    );
    let _ = std::fs::remove_dir_all(&cache);
}

#[test]
fn a_corrupt_or_foreign_cache_is_ignored_with_a_warning() {
    let cache = fresh_dir("corrupt");
    check_passes(&cache, None);
    let file = tune_file(&cache);
    let good = std::fs::read_to_string(&file).unwrap();

    // Cut short: not JSON any more.
    std::fs::write(&file, &good[..good.len() / 2]).unwrap();
    let (_, stderr) = check_passes(&cache, None);
    assert!(
        stderr.contains("ignoring the tuning cache") && stderr.contains("not a tuning cache"),
        "{stderr}"
    );
    let rewritten = std::fs::read_to_string(&file).unwrap();
    assert!(serde_json::from_str::<serde_json::Value>(&rewritten).is_ok());

    // Another adapter's file (its identity edited), with a choice that names a family the
    // shape cannot run: not trusted.
    let foreign = rewritten
        .replacen("\"name\":\"", "\"name\":\"another GPU ", 1)
        .replace("\"family\":\"texture\"", "\"family\":\"direct\"");
    std::fs::write(&file, foreign).unwrap();
    let (_, stderr) = check_passes(&cache, None);
    assert!(
        stderr.contains("written for another adapter, driver or build"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&cache);
}
