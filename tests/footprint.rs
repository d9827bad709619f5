//! What the process holds beyond what the allocator accounts: work recorded and then
//! discarded must not leave memory behind in the driver or in wgpu.

use skipgrad::ops::relu::relu_into;
use skipgrad::{Gpu, Purpose, Recording, Tensor};

/// The process's resident memory in bytes (`VmRSS` of `/proc/self/status`).
#[cfg(target_os = "linux")]
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("a VmRSS line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in kB");
    kib << 10
}

/// Recordings dropped without submission (an error half-way through a step, a dry run that
/// only counts dispatches) leave nothing behind: wgpu releases what a recording held only at
/// the queue's next submission, and before the fix each dropped recording of 32 dispatches
/// kept ≈ 25 KB, for good, and made every later recording slower. 3,000 of them must not
/// grow the process by more than a few MB (before the fix: ≈ 75 MB).
#[cfg(target_os = "linux")]
#[test]
fn dropped_recordings_leave_nothing_behind() {
    let gpu = Gpu::new().expect("GPU tests need an adapter");
    let x = Tensor::zeros(&gpu, [1, 4, 8, 8], Purpose::Activation).unwrap();
    let out = Tensor::zeros(&gpu, [1, 4, 8, 8], Purpose::Activation).unwrap();
    let record_and_drop = || {
        let mut rec = Recording::new(&gpu);
        for _ in 0..32 {
            relu_into(&mut rec, &x, &out, false).unwrap();
        }
        assert_eq!(rec.dispatch_count(), 32);
        drop(rec);
    };
    // Warm-up: pipelines compiled, the allocators' pools at their steady size.
    for _ in 0..200 {
        record_and_drop();
    }
    let before = resident_bytes();
    for _ in 0..3000 {
        record_and_drop();
    }
    let grown = resident_bytes().saturating_sub(before);
    assert!(
        grown < 16 << 20,
        "3000 dropped recordings grew the process by {:.1} MB",
        grown as f64 / 1e6
    );
}
