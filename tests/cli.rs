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
