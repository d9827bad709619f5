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

/// Asserts that a recording ran a kernel of `family` (so a test that names a family cannot
/// pass on another one's fallback): its entry points carry the family's name, the direct
/// family's are the plain `conv2d_*` ones.
pub fn assert_family_ran(kernels: &[&str], family: skipgrad::ConvKernels, what: &str) {
    use skipgrad::ConvKernels as K;
    let tag = match family {
        K::Auto => return,
        K::Direct => {
            let direct = [
                "conv2d_forward",
                "conv2d_backward_input",
                "conv2d_backward_weight",
                "conv2d_backward_fused",
            ];
            assert!(
                kernels.iter().any(|k| direct.contains(k)),
                "{what}: no direct kernel ran: {kernels:?}"
            );
            return;
        }
        K::RegisterBlocked => "regblock",
        K::Pixel => "pixel",
        K::Gemm => "gemm",
        K::Texture => "texture",
    };
    assert!(
        kernels.iter().any(|k| k.contains(tag)),
        "{what}: no {} kernel ran: {kernels:?}",
        family.name()
    );
}

/// The family a conv kernel (entry point) belongs to; `None` for the kernels every family
/// shares (weight packing into buffers, partial-sum reduce, bias gradient) and non-conv ones.
pub fn family_of(entry: &str) -> Option<skipgrad::ConvKernels> {
    use skipgrad::ConvKernels as K;
    let direct = [
        "conv2d_forward",
        "conv2d_backward_input",
        "conv2d_backward_weight",
        "conv2d_backward_fused",
    ];
    if direct.contains(&entry) {
        Some(K::Direct)
    } else if entry.contains("regblock") {
        Some(K::RegisterBlocked)
    } else if entry.contains("pixel") {
        Some(K::Pixel)
    } else if entry.contains("gemm") {
        Some(K::Gemm)
    } else if entry.contains("texture") {
        Some(K::Texture)
    } else {
        None
    }
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
