//! The binary as a user runs it.

use std::process::Command;

fn skipgrad() -> Command {
    Command::new(env!("CARGO_BIN_EXE_skipgrad"))
}

/// Without XDG_RUNTIME_DIR (headless machines, CI) no command prints Mesa's
/// "XDG_RUNTIME_DIR is invalid" noise.
#[test]
fn no_runtime_dir_noise_without_xdg_runtime_dir() {
    let out = skipgrad()
        .arg("info")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("NODEVICE_SELECT")
        .env("SKIPGRAD_BACKEND", "vulkan")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("XDG_RUNTIME_DIR"), "stderr: {err}");
}

/// `skipgrad check` on an endless file fails at once with a reason.
#[test]
fn check_refuses_an_endless_file_fast() {
    let start = std::time::Instant::now();
    let out = skipgrad().args(["check", "/dev/zero"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 passed, 1 failed"));
    assert!(start.elapsed().as_secs_f64() < 10.0);
}

/// `gradflow --json` at depth 16: the plain stack's first-layer gradient is orders of
/// magnitude below the residual and dense ones; CSV and plots are written.
#[test]
fn gradflow_shows_the_vanishing_gradient() {
    let dir = std::env::temp_dir().join("skipgrad_cli_gradflow");
    let out = skipgrad()
        .args([
            "gradflow",
            "--depth",
            "16",
            "--channels",
            "8",
            "--size",
            "8",
            "--batch",
            "2",
        ])
        .args(["--json", "--out-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let first = |arch: &str| -> f64 {
        let run = v["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["arch"] == arch)
            .unwrap();
        run["layers"][0]["grad_norm"].as_f64().unwrap()
    };
    assert!(first("plain") * 1e3 < first("residual"), "{v}");
    assert!(first("plain") * 1e3 < first("dense"), "{v}");
    for f in ["gradflow.csv", "gradflow_layers.svg", "gradflow_depth.svg"] {
        assert!(dir.join(f).exists(), "{f}");
    }
}

/// `train --json`: one entry per logged step; the loss read back only at those steps.
#[test]
fn train_logs_the_requested_steps() {
    let dir = std::env::temp_dir().join("skipgrad_cli_train");
    let out = skipgrad()
        .args([
            "train",
            "--arch",
            "residual",
            "--depth",
            "4",
            "--channels",
            "4",
            "--size",
            "8",
        ])
        .args([
            "--steps",
            "6",
            "--log-every",
            "3",
            "--optimizer",
            "adamw",
            "--json",
            "--out-dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = &v["runs"][0];
    let steps: Vec<u64> = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, vec![0, 2, 5]);
    assert_eq!(run["read_backs"], 3);
    assert!(dir.join("train.svg").exists());
}

/// A bad `SKIPGRAD_CONV_KERNELS` stops a command before any work, naming the variable and
/// the families there are (the removed tiled family says it was removed).
#[test]
fn bad_conv_kernels_variable_fails_first() {
    for (value, says) in [("bogus", "expected auto"), ("tiled", "was removed")] {
        let out = skipgrad()
            .args(["check", "tests/vectors/relu_1x16x13x17.safetensors"])
            .env("SKIPGRAD_CONV_KERNELS", value)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("SKIPGRAD_CONV_KERNELS") && err.contains(says),
            "{err}"
        );
    }
}

/// A scratch budget that is not a positive number of MiB stops a command before any work,
/// whether it comes from the environment or from `memory --scratch-budget-mib`.
#[test]
fn bad_scratch_budget_fails_first() {
    let out = skipgrad()
        .args(["check", "tests/vectors/relu_1x16x13x17.safetensors"])
        .env("SKIPGRAD_SCRATCH_BUDGET_MIB", "lots")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SKIPGRAD_SCRATCH_BUDGET_MIB") && err.contains("positive number"),
        "{err}"
    );
    let out = skipgrad()
        .args(["memory", "--max-layers", "1", "--scratch-budget-mib", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--scratch-budget-mib 0"), "{err}");
}

/// `memory --scratch-budget-mib` runs with that budget and reports it.
#[test]
fn memory_takes_a_scratch_budget() {
    let out = skipgrad()
        .args([
            "memory",
            "--max-layers",
            "2",
            "--scratch-budget-mib",
            "0.25",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["scratch_budget_bytes"], 1 << 18);
}

/// `bench --suite gpu --quick` (what CI runs on lavapipe): a conv case gives its three
/// passes, each with flops, a host time and the kernels that ran.
#[test]
fn gpu_suite_times_each_conv_pass() {
    let out = skipgrad()
        .args([
            "bench",
            "--suite",
            "gpu",
            "--quick",
            "--cases",
            "sweep_conv3x3_c64_32x32_n1",
            "--json",
        ])
        .env("SKIPGRAD_BACKEND", "vulkan")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The tuner's measured choices ride along (none are measured for this shape on a CPU
    // adapter, where a rule picks the texture family).
    assert!(v["tuned"].is_array(), "{v}");
    let rows = v["cases"].as_array().unwrap();
    let passes: Vec<&str> = rows.iter().map(|r| r["pass"].as_str().unwrap()).collect();
    assert_eq!(passes, ["forward", "input_grad", "weight_grad"]);
    for r in rows {
        // 2 * N * Cout * H * W * Cin * 9 for every pass (the weight pass adds the bias sum).
        assert!(
            r["flops"].as_u64().unwrap() >= 2 * 64 * 32 * 32 * 64 * 9,
            "{r}"
        );
        assert!(r["wall_ms"].as_f64().unwrap() > 0.0);
        assert!(!r["kernels"].as_array().unwrap().is_empty());
    }
}
