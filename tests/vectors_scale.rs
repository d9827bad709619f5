//! The scale and non-finite reference set (tests/vectors/scale/, made by PyTorch with
//! `make_scale_vectors.py` there): weight and bias gradients over more than 65,535 pixels,
//! a forward over 73,728 taps, NaN and infinities through relu and conv2d — with the default
//! kernel choice and with every conv kernel family forced.

mod common;

use std::path::PathBuf;

use skipgrad::cases::run_case_file;
use skipgrad::{ConvKernels, Gpu};

fn files() -> Vec<PathBuf> {
    let files = common::case_files("tests/vectors/scale");
    assert!(files.len() >= 7, "the scale set is missing files");
    files
}

fn check_all(gpu: &Gpu, family: ConvKernels) {
    for path in files() {
        let report = run_case_file(gpu, &path);
        let case = format!("{} ({})", report.case, family.name());
        if let Some(e) = &report.error {
            panic!("{case}: {e}");
        }
        assert!(!report.comparisons.is_empty(), "{case}: nothing compared");
        for c in &report.comparisons {
            assert!(c.passed, "{case}: {} differs: {c:?}", c.name);
        }
    }
}

#[test]
fn scale_and_non_finite_cases_with_the_default_choice() {
    check_all(common::gpu(), ConvKernels::AUTO);
}

/// One `Gpu` per family, so the forced choice cannot leak into other tests' shared `Gpu`.
#[test]
fn scale_and_non_finite_cases_with_every_family_forced() {
    for family in ConvKernels::families() {
        let gpu = Gpu::new().expect("GPU tests need an adapter");
        gpu.set_conv_kernels(family);
        check_all(&gpu, family);
    }
}
