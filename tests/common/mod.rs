//! Shared by the integration tests: one `Gpu` per test binary, and small helpers.
#![allow(dead_code)]

use std::sync::OnceLock;

use skipgrad::{Gpu, Purpose, Tensor};

/// The adapter wgpu gives (SKIPGRAD_BACKEND picks one). With no adapter the tests fail, with
/// the message that says how to get one; they never skip.
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| match Gpu::new() {
        Ok(g) => g,
        Err(e) => panic!("GPU tests need an adapter: {e}"),
    })
}

/// A small deterministic generator (xorshift), so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next_f32()).collect()
    }
}

pub fn upload(shape: [usize; 4], data: &[f32], purpose: Purpose) -> Tensor {
    Tensor::from_slice(gpu(), shape, data, purpose).expect("upload")
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Asserts `|got - want| <= tol * (1 + |want|)` elementwise.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            approx::abs_diff_eq!(g as f64, w, epsilon = tol * (1.0 + w.abs())),
            "{what}[{i}]: got {g}, want {w} (err {:e})",
            (g as f64 - w).abs()
        );
    }
}

/// Asserts that each element of `got` is within `1e-4·(1+|want|)` plus the float32 rounding
/// of its sum (`SUM_ROUNDING · sums[i]`, `sums[i]` the sum of the magnitudes of its terms):
/// what a long reduction (a weight or bias gradient over 65,536 pixels) may carry whatever
/// order it sums in.
pub fn assert_summed(what: &str, got: &[f32], want: &[f64], sums: &[f64]) {
    let want32: Vec<f32> = want.iter().map(|&v| v as f32).collect();
    let c = skipgrad::cases::compare_summed(what, got, &want32, 1e-4, sums);
    assert!(c.passed, "{what}: {c:?}");
}

/// Asserts that a recording ran a kernel of `family` (so a test that names a family cannot
/// pass on another one's fallback), by the registry's list of each family's kernels.
pub fn assert_family_ran(kernels: &[&str], family: skipgrad::ConvKernels, what: &str) {
    if family == skipgrad::ConvKernels::AUTO {
        return;
    }
    assert!(
        kernels.iter().any(|k| family_of(k) == Some(family)),
        "{what}: no {family} kernel ran: {kernels:?}"
    );
}

/// The family a conv kernel (entry point) belongs to; `None` for the kernels every family
/// shares (weight packing into buffers, activation staging, partial-sum reduce, bias
/// gradient) and non-conv ones.
pub fn family_of(entry: &str) -> Option<skipgrad::ConvKernels> {
    skipgrad::ConvKernels::of_kernel(entry)
}

/// The reference case files (`.safetensors`) in `dir` (relative to the crate), sorted.
pub fn case_files(dir: &str) -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no cases in {}", dir.display());
    files
}

/// Runs the reference case `file` (a path under tests/vectors) and asserts that it ran and
/// every comparison passed; returns the names compared.
pub fn check_case_file(file: &str) -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(file);
    let report = skipgrad::cases::run_case_file(gpu(), &path);
    if let Some(e) = &report.error {
        panic!("{file}: {e}");
    }
    assert!(!report.comparisons.is_empty(), "{file}: nothing compared");
    for c in &report.comparisons {
        assert!(
            c.passed,
            "{file}: {} out of tolerance (max abs err {:e}, max rel err {:e})",
            c.name, c.max_abs_err, c.max_rel_err
        );
    }
    report.comparisons.iter().map(|c| c.name.clone()).collect()
}

/// Every `.safetensors` case in `tests/vectors/<dir>` is among `listed` (by file stem): a
/// new case cannot be left without its test.
pub fn assert_every_case_listed(dir: &str, listed: &[&str]) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(dir);
    for entry in std::fs::read_dir(&path).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "safetensors") {
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            assert!(listed.contains(&stem.as_str()), "{stem} has no test");
        }
    }
}
