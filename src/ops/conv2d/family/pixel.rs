//! The pixel family (`shaders/conv2d/pixel/`): one output pixel × 8 channels per thread with
//! the weights broadcast across the workgroup, and a weight gradient whose reduction is
//! spread over the 64 lanes of a workgroup — many threads for the small layers a big GPU
//! would otherwise leave idle (the H200's winner, benches/NOTES.md). groups = 1.

use crate::error::Result;
use crate::gpu::{Access, KernelSpec, Shader, WORKGROUP_SIZE};
use crate::ops::conv2d::args::{GemmCall, WeightGradArgs};
use crate::ops::conv2d::budget::LOOP_BUDGET;
use crate::ops::conv2d::family::pack::with_packed_weights;
use crate::ops::conv2d::family::shaped::{weight_gradient, GemmShaped, WeightSplit};
use crate::ops::conv2d::family::Info;
use crate::record::{read, Grid, Recording};

use Access::{Read, Write};

const FORWARD_WGSL: Shader = wgsl!(
    "conv2d/pixel/forward.wgsl",
    "conv2d/common.wgsl",
    "conv2d/store.wgsl"
);
const BACKWARD_WEIGHT_WGSL: Shader = wgsl!(
    "conv2d/pixel/backward_weight.wgsl",
    "conv2d/common.wgsl",
    "conv2d/partials.wgsl"
);

/// `conv2d_forward_pixel`: x, packed weights, then the store epilogue's bias, out, mask.
pub(crate) const FORWARD: KernelSpec = KernelSpec::new(
    FORWARD_WGSL,
    "conv2d_forward_pixel",
    &[(1, Write), (2, Read), (3, Read), (4, Write), (5, Write)],
);
/// `conv2d_backward_weight_pixel`: x, grad_out → partial sums.
pub(crate) const BACKWARD_WEIGHT: KernelSpec = KernelSpec::new(
    BACKWARD_WEIGHT_WGSL,
    "conv2d_backward_weight_pixel",
    &[(1, Read), (2, Read), (3, Write)],
);

/// Lanes of a workgroup (one pixel each).
const LANES: usize = WORKGROUP_SIZE as usize;

/// The pixel family.
pub(crate) struct Pixel;

impl Info for Pixel {
    fn name(&self) -> &'static str {
        "pixel"
    }

    fn summary(&self) -> &'static str {
        "one output pixel × 8 channels a thread, weights broadcast per workgroup; the weight gradient over a workgroup's lanes"
    }

    /// Many threads, workgroup memory and barriers: never measured on CPU adapters.
    fn gpu_shaped(&self) -> bool {
        true
    }

    /// The H200's winner for every pass (benches/NOTES.md): the GPUs' deterministic rule.
    fn deterministic_rank(&self) -> Option<u8> {
        Some(0)
    }

    fn kernels(&self) -> &'static [&'static KernelSpec] {
        &[&FORWARD, &BACKWARD_WEIGHT]
    }
}

impl GemmShaped for Pixel {
    /// Packs the weights and runs the forward kernel: a workgroup per 64 output pixels and
    /// 8-channel block.
    fn gemm(&self, rec: &mut Recording<'_>, c: &GemmCall<'_>) -> Result<()> {
        with_packed_weights(rec, c.weight, c.transpose, |rec, packed| {
            let blocks = c.g.y[1].div_ceil(8);
            let pixels = c.g.y[0] * c.g.y[2] * c.g.y[3];
            let a = c.args(pixels, blocks);
            let [bias, out, mask] = c.outputs();
            let buffers = [Some(read(c.x)), Some(read(packed)), bias, out, mask];
            let grid = Grid::Workgroups((pixels.div_ceil(LANES) * blocks) as u64);
            rec.launch(&FORWARD, &[a.bytes()], &buffers, &[], grid, c.cost)
        })
    }

    /// A workgroup owns an 8 × 8 block of one tap over a split of the pixels, its lanes
    /// taking every 64th pixel: the reduction's units are groups of 64 pixels, and a lane
    /// loops once a unit plus its final 64-lane sum.
    fn weight_gradient(&self, rec: &mut Recording<'_>, c: &WeightGradArgs<'_>) -> Result<()> {
        let [cout, cin, kh, kw] = c.g.w;
        let split = WeightSplit {
            units: (c.g.y[0] * c.g.y[2] * c.g.y[3]).div_ceil(LANES),
            base_threads: cin.div_ceil(8) * cout.div_ceil(8) * kh * kw * LANES,
            per_max: LOOP_BUDGET - 2 * LANES,
            lanes: LANES,
        };
        weight_gradient(rec, &BACKWARD_WEIGHT, c, split)
    }
}
