//! The GPU suite (`skipgrad bench --suite gpu`): shapes big enough to fill a real GPU —
//! ResNet-50's convolutions at batch 32 (and 128 where memory allows), a batch sweep of one
//! 3×3 conv, and the residual and dense blocks at batch 128 — each conv pass timed alone.
//! With `quick` the same cases run at batch 1 and 2 so that CI (lavapipe) keeps it working.

use super::{conv, BenchCase, CaseKind};
use crate::blocks::ConcatStrategy;

/// A case of the GPU suite: a conv whose three passes are timed separately, or a block
/// timed forward and forward+backward like the standard cases.
#[derive(Clone, Debug, PartialEq)]
pub struct SuiteCase {
    /// The case (its name carries the batch).
    pub case: BenchCase,
    /// Whether its passes are timed one by one (convs) or as forward / forward+backward.
    pub per_pass: bool,
}

/// ResNet-50's convolutions: name, [Cin, H, W, Cout, kernel, stride, padding] — the stage-1
/// and deeper 3×3s, the stage-1 1×1s, the stem, and the first strided pair of a stage
/// (torchvision's v1.5: the stride in the 3×3, and the 1×1 downsample), whose input
/// gradients are not stride-1 convolutions.
const RESNET50: [(&str, [usize; 7]); 9] = [
    ("r50_conv3x3_c64_56x56", [64, 56, 56, 64, 3, 1, 1]),
    ("r50_conv3x3_c128_28x28", [128, 28, 28, 128, 3, 1, 1]),
    ("r50_conv3x3_c256_14x14", [256, 14, 14, 256, 3, 1, 1]),
    ("r50_conv3x3_c512_7x7", [512, 7, 7, 512, 3, 1, 1]),
    ("r50_conv1x1_c256to64_56x56", [256, 56, 56, 64, 1, 1, 0]),
    ("r50_conv1x1_c64to256_56x56", [64, 56, 56, 256, 1, 1, 0]),
    ("r50_stem7x7_s2_c3to64_224x224", [3, 224, 224, 64, 7, 2, 3]),
    ("r50_conv3x3_s2_c128_56x56", [128, 56, 56, 128, 3, 2, 1]),
    (
        "r50_conv1x1_s2_c256to512_56x56",
        [256, 56, 56, 512, 1, 2, 0],
    ),
];

/// The suite's cases; `quick` is the reduced form for CPU adapters (batches 1 and 2).
pub fn gpu_suite(quick: bool) -> Vec<SuiteCase> {
    let (batches, sweep, block_batch): (&[usize], &[usize], usize) = if quick {
        (&[1], &[1, 2], 2)
    } else {
        (&[32, 128], &[1, 8, 32, 128], 128)
    };
    let per_pass = |case| SuiteCase {
        case,
        per_pass: true,
    };
    let mut cases = Vec::new();
    for &n in batches {
        for (name, [cin, h, w, cout, k, s, p]) in RESNET50 {
            cases.push(per_pass(conv(
                &format!("{name}_n{n}"),
                [n, cin, h, w, cout, k, s, p],
            )));
        }
    }
    for &n in sweep {
        let name = format!("sweep_conv3x3_c64_32x32_n{n}");
        cases.push(per_pass(conv(&name, [n, 64, 32, 32, 64, 3, 1, 1])));
    }
    let n = block_batch;
    cases.push(SuiteCase {
        case: BenchCase {
            name: format!("resnet_basic_c64_32x32_n{n}"),
            kind: CaseKind::ResidualBasic { n, c: 64, hw: 32 },
        },
        per_pass: false,
    });
    cases.push(SuiteCase {
        case: BenchCase {
            name: format!("dense_l6_k12_c24_16x16_n{n}_shared"),
            kind: CaseKind::Dense {
                n,
                c0: 24,
                k: 12,
                layers: 6,
                hw: 16,
                strategy: ConcatStrategy::Shared,
            },
        },
        per_pass: false,
    });
    cases
}

/// The nominal fp32 (CUDA-core, no tensor cores) peak of adapters whose datasheet figure is
/// known, GFLOP/s, by a name fragment: the number a reader compares against beside the
/// measured FMA ceiling.
pub fn nominal_fp32_gflops(adapter: &str) -> Option<f64> {
    const KNOWN: [(&str, f64); 6] = [
        ("H200", 66_900.0),
        ("H100 80GB HBM3", 66_900.0),
        ("A100", 19_500.0),
        ("RTX 4090", 82_600.0),
        ("RTX 3090", 35_600.0),
        ("L40S", 91_600.0),
    ];
    KNOWN
        .iter()
        .find(|(name, _)| adapter.contains(name))
        .map(|&(_, gflops)| gflops)
}
