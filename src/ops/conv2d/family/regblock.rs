//! The register-blocked family (`shaders/conv2d/regblock/`): implicit GEMM with 8 output
//! pixels × 8 output channels per thread and no workgroup memory, for groups = 1; the
//! stride-1 input gradient is the same forward kernel on the transposed problem.

use crate::error::Result;
use crate::gpu::{Access, KernelSpec, Shader};
use crate::ops::conv2d::args::GemmCall;
use crate::ops::conv2d::args::WeightGradArgs;
use crate::ops::conv2d::budget::rows_per_split;
use crate::ops::conv2d::family::pack::with_packed_weights;
use crate::ops::conv2d::family::shaped::{weight_gradient, GemmShaped, WeightSplit};
use crate::ops::conv2d::family::Info;
use crate::record::{read, Grid, Recording};

use Access::{Read, Write};

const FORWARD_WGSL: Shader = wgsl!(
    "conv2d/regblock/forward.wgsl",
    "conv2d/common.wgsl",
    "conv2d/store.wgsl"
);
const BACKWARD_WEIGHT_WGSL: Shader = wgsl!(
    "conv2d/regblock/backward_weight.wgsl",
    "conv2d/common.wgsl",
    "conv2d/partials.wgsl"
);

/// `conv2d_forward_regblock`: x, packed weights, then the store epilogue's bias, out,
/// mask, and out and mask again as vec4s.
pub(crate) const FORWARD: KernelSpec = KernelSpec::new(
    FORWARD_WGSL,
    "conv2d_forward_regblock",
    &[
        (1, Write),
        (2, Read),
        (3, Read),
        (4, Write),
        (5, Write),
        (8, Write),
        (9, Write),
    ],
);
/// `conv2d_backward_weight_regblock`: x, grad_out → partial sums.
pub(crate) const BACKWARD_WEIGHT: KernelSpec = KernelSpec::new(
    BACKWARD_WEIGHT_WGSL,
    "conv2d_backward_weight_regblock",
    &[(1, Read), (2, Read), (3, Write)],
);

/// The register-blocked family.
pub(crate) struct RegisterBlocked;

impl Info for RegisterBlocked {
    fn name(&self) -> &'static str {
        "regblock"
    }

    fn summary(&self) -> &'static str {
        "8 pixels × 8 channels a thread in registers, no workgroup memory or barriers"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["register-blocked"]
    }

    /// Second on CPU adapters, where the texture family's textures do not fit.
    fn cpu_rank(&self, _pass: super::Pass, _g: &crate::ops::conv2d::args::Geometry) -> Option<u8> {
        Some(2)
    }

    fn kernels(&self) -> &'static [&'static KernelSpec] {
        &[&FORWARD, &BACKWARD_WEIGHT]
    }
}

impl GemmShaped for RegisterBlocked {
    /// Packs the weights and runs the forward kernel.
    fn gemm(&self, rec: &mut Recording<'_>, c: &GemmCall<'_>) -> Result<()> {
        with_packed_weights(rec, c.weight, c.transpose, |rec, packed| {
            let blocks = c.g.y[1].div_ceil(8);
            let threads = c.g.y[0] * c.g.y[2] * c.g.y[3].div_ceil(8) * blocks;
            let a = c.args(threads, blocks);
            let [bias, out, mask] = c.outputs();
            let [out4, mask4] = c.outputs4();
            let buffers = [
                Some(read(c.x)),
                Some(read(packed)),
                bias,
                out,
                mask,
                out4,
                mask4,
            ];
            let grid = Grid::Threads(threads as u64);
            rec.launch(&FORWARD, &[a.bytes()], &buffers, &[], grid, c.cost)
        })
    }

    /// Threads own 8 (co) × 8 (ci) blocks of one tap over a split of the N*OH output rows.
    fn weight_gradient(&self, rec: &mut Recording<'_>, c: &WeightGradArgs<'_>) -> Result<()> {
        let [cout, cin, kh, kw] = c.g.w;
        let split = WeightSplit {
            units: c.g.y[0] * c.g.y[2],
            base_threads: cin.div_ceil(8) * cout.div_ceil(8) * kh * kw,
            per_max: rows_per_split(c.g.y[3], 2, "weight gradient")?,
            lanes: 1,
        };
        weight_gradient(rec, &BACKWARD_WEIGHT, c, split)
    }
}
