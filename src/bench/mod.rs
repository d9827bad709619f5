//! The benchmark's cases and workloads, shared by `skipgrad bench` and `cargo bench`.
//!
//! A [`BenchCase`] names a standard configuration (the names join with the peer benchmarks in
//! `benches/peers/`); [`BenchCase::prepare`] uploads its inputs once and gives a [`Workload`]
//! that records its forward, or forward + backward, into a [`crate::Recording`]. Each workload can
//! [`Workload::verify`] itself against the CPU reference before anything is timed.

pub mod ceilings;
mod suite;
mod verify;
mod workload;

pub use suite::{gpu_suite, nominal_fp32_gflops, SuiteCase};
use workload::Inner;
pub use workload::{ConvPass, Workload};

use crate::blocks::ConcatStrategy;
use crate::error::Result;
use crate::memory::Purpose;
use crate::tensor::Tensor;
use crate::weights::HostTensor;
use crate::Arch;
use crate::Gpu;

/// What a case runs.
#[derive(Clone, Debug, PartialEq)]
pub enum CaseKind {
    /// One conv2d with bias: batch, input channels, height, width, output channels, square
    /// kernel, stride, padding.
    Conv {
        /// Batch.
        n: usize,
        /// Input channels.
        cin: usize,
        /// Height.
        h: usize,
        /// Width.
        w: usize,
        /// Output channels.
        cout: usize,
        /// Kernel size.
        k: usize,
        /// Stride.
        stride: usize,
        /// Padding.
        pad: usize,
    },
    /// ResNet's basic block, `c` channels, `hw`×`hw`, batch `n`.
    ResidualBasic {
        /// Batch.
        n: usize,
        /// Channels.
        c: usize,
        /// Image size.
        hw: usize,
    },
    /// A dense block.
    Dense {
        /// Batch.
        n: usize,
        /// Input channels.
        c0: usize,
        /// Growth.
        k: usize,
        /// Layers.
        layers: usize,
        /// Image size.
        hw: usize,
        /// Concatenation strategy.
        strategy: ConcatStrategy,
    },
    /// One training step of a [`crate::Network`]: forward, MSE, backward, SGD with momentum 0.9.
    TrainStep {
        /// Batch.
        n: usize,
        /// Architecture.
        arch: Arch,
        /// Depth.
        depth: usize,
        /// Channels.
        c: usize,
        /// Image size.
        hw: usize,
    },
}

/// A named benchmark configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchCase {
    /// The standard case name.
    pub name: String,
    /// What it runs.
    pub kind: CaseKind,
}

/// A conv case from `[N, Cin, H, W, Cout, kernel, stride, padding]`, the peers' column order.
pub(crate) fn conv(name: &str, [n, cin, h, w, cout, k, stride, pad]: [usize; 8]) -> BenchCase {
    BenchCase {
        name: name.into(),
        kind: CaseKind::Conv {
            n,
            cin,
            h,
            w,
            cout,
            k,
            stride,
            pad,
        },
    }
}

/// The standard cases, named as in the peer benchmarks.
pub fn standard_cases() -> Vec<BenchCase> {
    let mut cases = vec![
        conv("conv3x3_c64_32x32_n8", [8, 64, 32, 32, 64, 3, 1, 1]),
        conv("conv3x3_c128_16x16_n8", [8, 128, 16, 16, 128, 3, 1, 1]),
        conv("conv1x1_c64to128_32x32_n8", [8, 64, 32, 32, 128, 1, 1, 0]),
        conv("stem7x7_s2_c3to32_64x64_n8", [8, 3, 64, 64, 32, 7, 2, 3]),
        conv("notebook2x2_s2p2_c3to6_4x4_n1", [1, 3, 4, 4, 6, 2, 2, 2]),
        BenchCase {
            name: "resnet_basic_c64_32x32_n8".into(),
            kind: CaseKind::ResidualBasic {
                n: 8,
                c: 64,
                hw: 32,
            },
        },
    ];
    for strategy in ConcatStrategy::ALL {
        cases.push(BenchCase {
            name: format!("dense_l6_k12_c24_16x16_n8_{}", strategy.name()),
            kind: CaseKind::Dense {
                n: 8,
                c0: 24,
                k: 12,
                layers: 6,
                hw: 16,
                strategy,
            },
        });
    }
    for (arch, depth) in [(Arch::Residual, 20), (Arch::Dense, 12)] {
        cases.push(BenchCase {
            name: format!("train_step_{}_d{depth}_c16_16x16_n8", arch.name()),
            kind: CaseKind::TrainStep {
                n: 8,
                arch,
                depth,
                c: 16,
                hw: 16,
            },
        });
    }
    cases
}

/// Deterministic values in [-1, 1) (a small LCG: reproducible inputs, no dependency).
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn host(shape: &[usize], scale: f32, seed: u64) -> HostTensor {
    let data = values(shape.iter().product(), seed)
        .into_iter()
        .map(|v| v * scale)
        .collect();
    HostTensor {
        shape: shape.to_vec(),
        data,
    }
}

fn upload(gpu: &Gpu, t: &HostTensor, purpose: Purpose) -> Result<Tensor> {
    Tensor::from_slice(gpu, crate::tensor::shape4(&t.shape)?, &t.data, purpose)
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}
