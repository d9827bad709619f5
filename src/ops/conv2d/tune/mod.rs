//! The `Auto` choice of family: a rule where the benchmark justified one, else a one-time
//! measurement per problem and machine (`measure.rs`, kept on disk by `store.rs`).
//!
//! The rules ask the families (`family/mod.rs`), never name them: under the CPU policy a
//! problem that is not tiny runs on the supporting family of the lowest `cpu_rank` (on
//! lavapipe the texture family beats register-blocked 1.5–2×, which beats the direct
//! kernels 5×: benches/NOTES.md), and tiny ones, where launch overhead rules, are measured
//! among the families that are not `gpu_shaped`; under the GPU policy every family and
//! every variant is measured (wgpu reports no compute-unit count to choose a tile by). On
//! every adapter a tiny forward whose threads loop briefly runs on the fallback family (one
//! launch against a packing launch and a kernel), as the backward of such a conv runs its
//! fused kernel (`backward.rs`).

mod cache_file;
mod journal;
mod measure;
mod store;

pub use cache_file::{tune_cache_files, TuneCacheFile, TunedChoice};
pub(crate) use store::TuneStore;

use super::budget::SHORT_LOOP;
use super::family::{Call, Choice, Family, FALLBACK, FAMILIES};
use crate::error::Result;
use crate::Gpu;

/// Problems below this many FLOPs (one pass) are launch-bound on a CPU adapter.
const TINY_FLOPS: u64 = 2_000_000;

/// The family `Auto` runs `call` with.
pub(crate) fn choose(gpu: &Gpu, call: &Call<'_, '_>) -> Result<Choice> {
    let (g, p) = call.problem();
    let supported: Vec<&'static dyn Family> = FAMILIES
        .into_iter()
        .filter(|f| f.supports(gpu, call.pass(), g, p))
        .collect();
    let cpu = gpu.cpu_decisions();
    let tiny = g.tap_flops() < TINY_FLOPS;
    // The supporting family of the lowest rank, or the fallback.
    let ranked = |rank: &dyn Fn(&dyn Family) -> Option<u8>| {
        let best = supported
            .iter()
            .filter_map(|&f| rank(f).map(|r| (r, f)))
            .min_by_key(|(r, _)| *r);
        Choice::rule(best.map_or(FALLBACK, |(_, f)| f))
    };
    if cpu && !tiny {
        return Ok(ranked(&|f| f.cpu_rank(call.pass(), g)));
    }
    if let Call::Forward(_) = call {
        // A tiny forward whose threads loop briefly: the fallback's kernel is one launch,
        // the others two (weights packed first) — more than any measured difference in
        // compute, and measuring it chose either by the noise of µs timings.
        let [_, cin_g, kh, kw] = g.w;
        if tiny && cin_g * kh * kw <= SHORT_LOOP {
            return Ok(Choice::rule(FALLBACK));
        }
    }
    if gpu.deterministic() {
        // A fixed rule instead of a measurement, so every process makes the same choice
        // (timings vary between runs, and families sum in different orders): the fallback
        // for tiny shapes on CPU adapters (launch overhead rules there), the family of the
        // lowest deterministic rank on GPUs.
        return Ok(if cpu {
            Choice::rule(FALLBACK)
        } else {
            ranked(&|f| f.deterministic_rank())
        });
    }
    let candidates: Vec<&'static dyn Family> = if cpu {
        // GPU shapes (many threads; workgroup memory and barriers, which a CPU adapter runs
        // as loops) are never the fastest there.
        supported.into_iter().filter(|f| !f.gpu_shaped()).collect()
    } else {
        supported
    };
    if candidates.len() == 1 && candidates[0].tuned_variants(call) == 1 {
        return Ok(Choice::rule(candidates[0]));
    }
    let key = call.key();
    let store = TuneStore::of(gpu);
    if let Some(choice) = store.choice(&key) {
        return Ok(choice);
    }
    // Every variant of every candidate, but those that failed on this driver before.
    let choices: Vec<Choice> = candidates
        .iter()
        .flat_map(|&family| {
            (0..family.tuned_variants(call)).map(move |variant| Choice { family, variant })
        })
        .filter(|&c| !store.failed(&key, c))
        .collect();
    if choices.is_empty() {
        // Everything measurable failed here before: the fallback, which runs every
        // problem, by its rule.
        return Ok(Choice::rule(FALLBACK));
    }
    let (best, ms) = measure::fastest(gpu, call, &key, &choices, &store)?;
    store.record_choice(key, best, ms);
    Ok(best)
}

/// The tuner measures the GEMM family's tiles and weight loaders as variants (on GPUs; here
/// forced onto any adapter): the choice it returns is one of them, and every variant it may
/// return runs through the family to the f64 oracle's numbers; one past the last is an
/// error, not a panic.
#[cfg(all(test, feature = "oracle"))]
mod tests {
    use super::*;
    use crate::memory::Purpose;
    use crate::ops::conv2d::args::{ForwardArgs, Geometry};
    use crate::ops::conv2d::family::gemm::{
        compiled_forward_variants, output_variants, Gemm, Weights, FORWARD, FORWARD_OIHW,
    };
    use crate::ops::conv2d::{Conv2dParams, Fusion};
    use crate::record::Recording;
    use crate::tensor::Tensor;

    #[test]
    fn gemm_tiles_are_measured_as_variants() {
        let gpu = crate::gpu::test_gpu(crate::AdapterPolicy::Gpu);
        let p = Conv2dParams::new(1, 1);
        let (xs, ws) = ([2, 8, 12, 12], [72, 8, 3, 3]);
        let value = |i: usize, k: usize| {
            ((i as u64 * 2_654_435_761 + k as u64) % 4096) as f32 / 2048.0 - 1.0
        };
        let host = |s: [usize; 4], k| {
            (0..s.iter().product())
                .map(|i| value(i, k))
                .collect::<Vec<f32>>()
        };
        let (xv, wv) = (host(xs, 1), host(ws, 2));
        let f64s = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
        let (want, ys) =
            crate::reference::conv2d(&f64s(&xv), xs, &f64s(&wv), ws, None, &p).unwrap();
        let x = Tensor::from_slice(&gpu, xs, &xv, Purpose::Activation).unwrap();
        let w = Tensor::from_slice(&gpu, ws, &wv, Purpose::Parameter).unwrap();
        let out = Tensor::zeros(&gpu, ys, Purpose::Activation).unwrap();
        let args = ForwardArgs {
            g: Geometry::of(&x, &w, &p).unwrap(),
            p,
            x: &x,
            weight: &w,
            bias: None,
            out: &out,
            fusion: Fusion::default(),
        };
        let call = Call::Forward(&args);
        let variants = Gemm.variants(&call);
        let expected = output_variants(ys, 9);
        assert_eq!(variants, expected.len());
        assert!(variants > 1);
        let choices: Vec<Choice> = (0..variants)
            .map(|variant| Choice {
                family: &Gemm,
                variant,
            })
            .collect();
        let store = TuneStore::default();
        let (chosen, ms) = measure::fastest(&gpu, &call, &call.key(), &choices, &store).unwrap();
        assert!(ms > 0.0);
        assert_eq!(chosen.kind(), crate::ConvKernels::GEMM);
        assert!(chosen.variant < variants);
        assert_eq!(
            compiled_forward_variants(&gpu).len(),
            variants,
            "the tuner compiles each variant once"
        );
        gpu.clear_pipelines();
        for (variant, v) in expected.into_iter().enumerate() {
            // NaN where the variant writes nothing: the previous variant's numbers cannot pass.
            out.write(&gpu, &vec![f32::NAN; out.numel()]).unwrap();
            let mut rec = Recording::new(&gpu);
            call.run_choice(
                Choice {
                    family: &Gemm,
                    variant,
                },
                &mut rec,
            )
            .unwrap();
            let entry = match v.weights {
                Weights::Packed => FORWARD.entry,
                Weights::InPlace => FORWARD_OIHW.entry,
            };
            assert!(rec.kernels().contains(&entry), "variant {variant}");
            // The pipeline this variant compiled is its tile's and its loader's.
            assert_eq!(compiled_forward_variants(&gpu), [v], "variant {variant}");
            gpu.clear_pipelines();
            rec.finish().unwrap();
            let got = out.to_vec(&gpu).unwrap();
            for (i, (&g, &e)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g as f64 - e).abs() <= 1e-4 * (1.0 + e.abs()),
                    "variant {variant}, [{i}]: {g} vs {e}"
                );
            }
        }
        let mut rec = Recording::new(&gpu);
        let past = call.run_choice(
            Choice {
                family: &Gemm,
                variant: variants,
            },
            &mut rec,
        );
        assert!(past.is_err());
    }
}
