//! Comparing a computed tensor with its reference: exactly (values moved or added once),
//! within a relative tolerance, or within the rounding a float32 sum of its terms may carry;
//! non-finite values by position; shapes as stored.

use crate::tensor::shape4;
use crate::HostTensor;

/// How close a result must be to the reference.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Tolerance {
    /// Bit-exact (relu, add, concat move or add f32 values exactly).
    Exact,
    /// `|err| <= rel * (1 + |ref|)` for every element (conv-based ops).
    Relative(f64),
}

/// The tolerance for conv-based ops and blocks.
pub const CONV_TOLERANCE: Tolerance = Tolerance::Relative(1e-4);

/// One output or gradient compared with its reference.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Comparison {
    /// Tensor name as in the case file (`out`, `grad_x`, …).
    pub name: String,
    /// Largest `|gpu - ref|` over elements where both are finite; NaN when any element
    /// is non-finite where the reference is not (or the other way round).
    pub max_abs_err: f64,
    /// Largest `|gpu - ref| / |ref|` over finite elements with `ref != 0`.
    pub max_rel_err: f64,
    /// Elements whose finiteness differs from the reference's (a NaN or infinity where the
    /// reference has a number, a number where it has NaN, or an infinity of the other sign).
    pub nonfinite_mismatches: usize,
    /// Why the two could not be compared element by element (shape or length).
    pub mismatch: Option<String>,
    /// Whether every element is within the tolerance.
    pub passed: bool,
}

/// The float32 rounding a long sum is allowed, per unit of the sum of its terms'
/// magnitudes: `|got - ref| <= SUM_ROUNDING * Σ|terms|` on top of the relative tolerance.
///
/// Why this size: a float32 sum of terms of random sign, accumulated in any order, errs by
/// about `u · Σ|terms|` at most in practice (`u = ε/2`, the unit roundoff: the partial sums
/// of a sequential sum grow like √k, and their roundings add up to ≈ 0.7 u Σ|terms|; blocked
/// and tree sums, as the kernels do, err far less). `8 ε = 16 u` leaves a wide margin for
/// that, while a kernel that drops, repeats or misplaces even one term of a 100,000-term
/// sum (each ≈ 10⁻⁵ Σ|terms|) is caught by ten times the bound. A plain relative tolerance
/// cannot do both: ResNet's bias gradients sum 10⁵–10⁶ terms to a small result.
pub const SUM_ROUNDING: f64 = 8.0 * f32::EPSILON as f64;

/// Compares `got` with `want` element by element: finite values within `tol`, non-finite
/// values by position (NaN where the reference has NaN, the same infinity where it has one).
pub fn compare(name: &str, got: &[f32], want: &[f32], tol: Tolerance) -> Comparison {
    compare_by(name, got, want, |_, g, w| match tol {
        Tolerance::Exact => g == w,
        Tolerance::Relative(r) => (g - w).abs() <= r * (1.0 + w.abs()),
    })
}

/// [`compare`] for sums: element `i` may also differ by [`SUM_ROUNDING`] `* abs_sums[i]`,
/// where `abs_sums[i]` is the sum of the magnitudes of the terms that made it (the same
/// reference run on the inputs' absolute values). Where that sum is not finite (non-finite
/// inputs), the relative tolerance alone applies.
pub fn compare_summed(
    name: &str,
    got: &[f32],
    want: &[f32],
    rel: f64,
    abs_sums: &[f64],
) -> Comparison {
    compare_by(name, got, want, |i, g, w| {
        let rounding = abs_sums
            .get(i)
            .copied()
            .filter(|a| a.is_finite())
            .map_or(0.0, |a| SUM_ROUNDING * a);
        (g - w).abs() <= rel * (1.0 + w.abs()) + rounding
    })
}

/// The comparison loop: `ok(i, got, want)` judges each pair of finite values.
fn compare_by(
    name: &str,
    got: &[f32],
    want: &[f32],
    ok: impl Fn(usize, f64, f64) -> bool,
) -> Comparison {
    let mut c = Comparison {
        name: name.to_string(),
        max_abs_err: 0.0,
        max_rel_err: 0.0,
        nonfinite_mismatches: 0,
        mismatch: None,
        passed: true,
    };
    if got.len() != want.len() {
        c.mismatch = Some(format!(
            "{} values computed, the reference holds {}",
            got.len(),
            want.len()
        ));
        c.passed = false;
        c.max_abs_err = f64::NAN;
        return c;
    }
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g as f64, w as f64);
        if !g.is_finite() || !w.is_finite() {
            let same = (g.is_nan() && w.is_nan()) || g == w;
            if !same {
                c.nonfinite_mismatches += 1;
                c.passed = false;
            }
            continue;
        }
        let err = (g - w).abs();
        c.max_abs_err = c.max_abs_err.max(err);
        if w != 0.0 {
            c.max_rel_err = c.max_rel_err.max(err / w.abs());
        }
        c.passed &= ok(i, g, w);
    }
    if c.nonfinite_mismatches > 0 {
        c.max_abs_err = f64::NAN;
    }
    c
}

/// [`compare`], after checking that the computed tensor has the reference's shape (padded
/// to 4 dimensions like every tensor here: a bias `[C]` is `[C, 1, 1, 1]`).
pub fn compare_shaped(
    name: &str,
    got: &[f32],
    got_shape: [usize; 4],
    want: &HostTensor,
    tol: Tolerance,
) -> Comparison {
    with_shape(compare(name, got, &want.data, tol), got_shape, want)
}

/// `c`, failed where the computed shape is not the reference's.
pub(super) fn with_shape(
    mut c: Comparison,
    got_shape: [usize; 4],
    want: &HostTensor,
) -> Comparison {
    let want_shape = shape4(&want.shape).ok();
    if want_shape != Some(got_shape) && c.mismatch.is_none() {
        c.mismatch = Some(format!(
            "computed shape {got_shape:?}, the reference is stored as {:?}",
            want.shape
        ));
        c.passed = false;
        c.max_abs_err = f64::NAN;
    }
    c
}
