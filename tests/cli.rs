//! The binary as a user runs it.

use std::process::Command;

/// The binary, run in a temporary folder of this test process: commands that write by
/// default (`out/` of `memory`, `gradflow`, `train`) write there, never into the working
/// tree (`.ci/run` fails if a test run leaves anything in it).
fn skipgrad() -> Command {
    let dir = std::env::temp_dir().join(format!("skipgrad-cli-cwd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_skipgrad"));
    c.current_dir(dir);
    c
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

/// `gradflow --arch resnet-bn,densenet-bc`: the BatchNorm stacks' first conv keeps its
/// gradient where the plain stack's vanishes, and the layers reported are the convs (the
/// BatchNorms' weights are not layers).
#[test]
fn gradflow_runs_the_batchnorm_stacks() {
    let dir = std::env::temp_dir().join("skipgrad_cli_gradflow_bn");
    let out = skipgrad()
        .args([
            "gradflow",
            "--arch",
            "plain,resnet-bn,densenet-bc",
            "--depth",
            "16",
        ])
        .args([
            "--channels",
            "8",
            "--size",
            "8",
            "--batch",
            "2",
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
    let run = |arch: &str| {
        v["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["arch"] == arch)
            .unwrap()
            .clone()
    };
    let first = |arch: &str| run(arch)["layers"][0]["grad_norm"].as_f64().unwrap();
    assert!(first("plain") * 1e3 < first("resnet-bn"), "{v}");
    assert!(first("plain") * 1e3 < first("densenet-bc"), "{v}");
    // 16 convs in 8 BasicBlocks; 32 in 16 dense layers and the transition.
    let layers = |arch: &str| run(arch)["layers"].as_array().unwrap().len();
    assert_eq!(
        (layers("resnet-bn"), layers("densenet-bc")),
        (16, 33),
        "{v}"
    );
    let names: Vec<String> = run("resnet-bn")["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names[0], "blocks.0.conv1.weight");
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
            .args([
                "check",
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/vectors/relu_1x16x13x17.safetensors"
                ),
            ])
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
        .args([
            "check",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/vectors/relu_1x16x13x17.safetensors"
            ),
        ])
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

/// `SKIPGRAD_MAX_BINDING_MIB` lowers the binding limit the engine works under (what `info`
/// reports), and a value that is not a positive number of MiB stops a command first.
#[test]
fn max_binding_comes_from_the_environment() {
    let out = skipgrad()
        .args(["info", "--json"])
        .env("SKIPGRAD_MAX_BINDING_MIB", "0.5")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info = String::from_utf8_lossy(&out.stdout);
    assert!(
        info.contains("\"max_storage_buffer_binding_size\": 524288"),
        "{info}"
    );
    let out = skipgrad()
        .args(["info"])
        .env("SKIPGRAD_MAX_BINDING_MIB", "lots")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SKIPGRAD_MAX_BINDING_MIB") && err.contains("positive number"),
        "{err}"
    );
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

/// `memory --bc` measures torchvision's DenseNet-BC block at the depths asked for, both
/// strategies, and its data peak is the analytic count in every row.
#[test]
fn memory_bc_measures_the_densenet_bc_block_by_depth() {
    let dir = std::env::temp_dir().join(format!("skipgrad-cli-memory-bc-{}", std::process::id()));
    let out = skipgrad()
        .args([
            "memory",
            "--bc",
            "--depths",
            "1,3",
            "--growth",
            "4",
            "--channels",
            "8",
            "--size",
            "4",
            "--batch",
            "2",
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
    assert_eq!(v["block"], "densenet-bc");
    let rows = v["rows"].as_array().unwrap();
    let seen: Vec<(u64, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["layers"].as_u64().unwrap(),
                r["strategy"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [(1, "naive"), (1, "shared"), (3, "naive"), (3, "shared")]
    );
    for r in rows {
        assert_eq!(r["measured_peak_bytes"], r["analytic_peak_bytes"], "{r}");
        assert!(
            r["analytic_block_scratch_bytes"].as_u64().unwrap() > 0,
            "{r}"
        );
    }
    assert!(dir.join("memory_bc.csv").exists() && dir.join("memory_bc.svg").exists());
}

/// `bench --suite gpu --quick --cases sweep_conv3x3_c64_32x32_n1 --json` with `extra`
/// flags, on Vulkan: its JSON, after asserting it succeeded.
fn quick_gpu_suite(extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "bench",
        "--suite",
        "gpu",
        "--quick",
        "--cases",
        "sweep_conv3x3_c64_32x32_n1",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = skipgrad()
        .args(&args)
        .env("SKIPGRAD_BACKEND", "vulkan")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The placement diagnostics: `SKIPGRAD_PLACEMENT=1` prints, for every pass of the GPU
/// suite, the memory blocks its large buffers lie in (here the 1×1 conv's 3 MiB input and
/// output at batch 1, each in whole 2 MiB under `SKIPGRAD_BUFFER_ALIGN_MIB=2`, in wgpu's
/// small blocks under `SKIPGRAD_MEMORY_HINTS=memory-usage`); a hint it does not know stops
/// the command with what to use.
#[test]
fn placement_diagnostics_print_the_blocks() {
    let out = skipgrad()
        .args([
            "bench",
            "--suite",
            "gpu",
            "--quick",
            "--batch",
            "1",
            "--cases",
            "r50_conv1x1_c256to64_56x56",
            "--json",
        ])
        .env("SKIPGRAD_BACKEND", "vulkan")
        .env("SKIPGRAD_PLACEMENT", "1")
        .env("SKIPGRAD_BUFFER_ALIGN_MIB", "2")
        .env("SKIPGRAD_MEMORY_HINTS", "memory-usage")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for pass in ["forward", "input_grad", "weight_grad"] {
        assert!(
            err.contains(&format!("placement r50_conv1x1_c256to64_56x56_n1 {pass}")),
            "{err}"
        );
    }
    // 3.06 MiB tensors, allocated as 4 MiB.
    assert!(
        err.contains("activation @") && err.contains("(4.0)"),
        "{err}"
    );
    let out = skipgrad()
        .args(["info"])
        .env("SKIPGRAD_MEMORY_HINTS", "fastest")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SKIPGRAD_MEMORY_HINTS") && err.contains("performance or memory-usage"),
        "{err}"
    );
}

/// `bench --suite gpu --quick` (what CI runs on lavapipe): a conv case gives its three
/// passes, each with flops, a host time and the kernels that ran.
#[test]
fn gpu_suite_times_each_conv_pass() {
    let v = quick_gpu_suite(&[]);
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

/// `bench --suite gpu --repeat 2` times each pass twice, on buffers of its own each time,
/// and says which repeat a row is.
#[test]
fn gpu_suite_repeats_each_case() {
    let v = quick_gpu_suite(&["--repeat", "2"]);
    let rows: Vec<(u64, &str)> = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["repeat"].as_u64().unwrap(), r["pass"].as_str().unwrap()))
        .collect();
    let passes = ["forward", "input_grad", "weight_grad"];
    let want: Vec<(u64, &str)> = [0, 1]
        .into_iter()
        .flat_map(|i| passes.map(|p| (i, p)))
        .collect();
    assert_eq!(rows, want);
}

/// A forced family that does not take a case's passes is named under the table with the
/// family that ran them (the figure is not the forced family's), and a `--cases` filter that
/// matches nothing lists the cases there are.
#[test]
fn bench_says_where_a_forced_family_did_not_run() {
    let out = skipgrad()
        .args([
            "bench",
            "--kernels",
            "winograd",
            "--cases",
            "stem,notebook",
            "--iters",
            "1",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // A 7×7 stride-2 conv: no Winograd pass; the texture family (the registry's next) ran it.
    assert!(
        text.contains(
            "stem7x7_s2_c3to32_64x64_n8: winograd takes none of its passes; texture ran them"
        ),
        "{text}"
    );
    let out = skipgrad()
        .args(["bench", "--cases", "nosuch"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no case matches") && err.contains("conv3x3_c64_32x32_n8"),
        "{err}"
    );
}

/// A newcomer's mistakes get one clear line and exit 1, never an abort: sizes that do not
/// fit (before any memory is taken for them), `--iters 0`, a file that is not safetensors,
/// an output folder that cannot be written, a state_dict of another depth.
#[test]
fn mistakes_are_clear_errors_not_aborts() {
    let out_dir =
        std::env::temp_dir().join(format!("skipgrad-cli-mistakes-{}", std::process::id()));
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["gradflow".into(), "--size".into(), "100000".into()],
            "exceeds the device's max_buffer_size",
        ),
        (
            vec!["gradflow".into(), "--batch".into(), "4000000000".into()],
            "exceeds the device's max_buffer_size",
        ),
        (
            vec!["train".into(), "--channels".into(), "100000".into()],
            "exceeds the device's max_buffer_size",
        ),
        (
            vec!["bench".into(), "--iters".into(), "0".into()],
            "must be at least 1",
        ),
        (
            vec![
                "train".into(),
                "--lr".into(),
                "-1".into(),
                "--steps".into(),
                "1".into(),
            ],
            "must be >= 0 (got SGD lr -1",
        ),
        (
            vec![
                "gradflow".into(),
                "--depth".into(),
                "2".into(),
                "--out-dir".into(),
                "/proc/nope".into(),
            ],
            "cannot write /proc/nope",
        ),
    ];
    for (args, expected) in cases {
        let mut cmd = skipgrad();
        cmd.args(&args);
        if args[0] == "bench" {
            cmd.args(["--cases", "notebook"]);
        } else if !args.iter().any(|a| a == "--out-dir") {
            cmd.arg("--out-dir").arg(&out_dir);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(if args[0] == "bench" { 2 } else { 1 }),
            "{args:?}: {err}"
        );
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!err.contains("memory allocation"), "{args:?}: {err}");
    }
    let out = skipgrad()
        .args(["check", "README.md"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("not a safetensors file"), "{text}");
    let _ = std::fs::remove_dir_all(&out_dir);
}

/// `--load` is strict (a depth-4 state_dict as depth 2 is refused, naming what does not
/// fit); `--no-strict` loads it, names what it skipped, and the header says what was
/// loaded.
#[test]
fn load_is_strict_unless_asked_and_says_what_it_loaded() {
    let dir = std::env::temp_dir().join(format!("skipgrad-cli-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sd = dir.join("plain4.safetensors");
    let out = skipgrad()
        .args([
            "train",
            "--arch",
            "plain",
            "--depth",
            "4",
            "--channels",
            "4",
            "--size",
            "8",
        ])
        .args(["--batch", "2", "--steps", "1", "--save"])
        .arg(&sd)
        .arg("--out-dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gradflow = |strict: bool| {
        let mut c = skipgrad();
        c.args([
            "gradflow",
            "--arch",
            "plain",
            "--depth",
            "2",
            "--channels",
            "4",
            "--size",
            "8",
        ])
        .args(["--batch", "2", "--load"])
        .arg(&sd)
        .arg("--out-dir")
        .arg(&dir);
        if !strict {
            c.arg("--no-strict");
        }
        c.output().unwrap()
    };
    let out = gradflow(true);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("unexpected layers.2.bias, layers.2.weight, layers.3.bias, layers.3.weight"),
        "{err}"
    );
    let out = gradflow(false);
    let (stdout, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{err}");
    assert!(err.contains("skipped 4 tensor(s)"), "{err}");
    assert!(stdout.contains("loaded from"), "{stdout}");
    assert!(!stdout.contains("init torch"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}
