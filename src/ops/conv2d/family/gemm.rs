//! The GEMM family (`shaders/conv2d/gemm/`): implicit GEMM tiled in workgroup memory — the
//! shape fp32 convolution takes on a GPU. Forward (and stride-1 input gradient, the same
//! kernel on the transposed problem): 128 × 128 output tiles, 16-deep K slices, 256
//! threads of 8 × 8 accumulators read as vec4s from workgroup memory, the next slice
//! prefetched into registers. Weight gradient: 64 × 64 tiles of (co) × (tap, ci) over
//! 16-pixel slices, split-K into partial sums. groups = 1.
//!
//! On a CPU adapter it is slow (lavapipe runs barriers and workgroup memory as loops), so
//! `auto` only measures it on GPUs.

use crate::error::Result;
use crate::gpu::{Access, KernelSpec, Shader};
use crate::ops::conv2d::args::{view, ConvArgs, GemmCall, WeightGradArgs};
use crate::ops::conv2d::budget::{LOOP_BUDGET, SERIAL_TERMS};
use crate::ops::conv2d::family::pack::with_packed_weights;
use crate::ops::conv2d::family::shaped::GemmShaped;
use crate::ops::conv2d::partials::{plan, Partials};
use crate::ops::conv2d::ConvKernels;
use crate::record::{read, write, Cost, Grid, Recording};
use crate::Gpu;

use Access::{Read, Write};

/// Threads of a GEMM workgroup (the kernels' thread layouts assume it).
const THREADS: u32 = 256;
const CONSTANTS: &[(&str, f64)] = &[("GEMM_THREADS", THREADS as f64)];

const FORWARD_WGSL: Shader = wgsl!(
    "conv2d/gemm/forward.wgsl",
    "conv2d/common.wgsl",
    "conv2d/store.wgsl"
);
const BACKWARD_WEIGHT_WGSL: Shader = wgsl!(
    "conv2d/gemm/backward_weight.wgsl",
    "conv2d/common.wgsl",
    "conv2d/partials.wgsl"
);

/// `conv2d_forward_gemm`: x, packed weights, then the store epilogue's bias, out, mask.
pub(crate) const FORWARD: KernelSpec = KernelSpec::new(
    FORWARD_WGSL,
    "conv2d_forward_gemm",
    &[(1, Write), (2, Read), (3, Read), (4, Write), (5, Write)],
)
.with_constants(CONSTANTS);
/// `conv2d_backward_weight_gemm`: x, grad_out → partial sums.
pub(crate) const BACKWARD_WEIGHT: KernelSpec = KernelSpec::new(
    BACKWARD_WEIGHT_WGSL,
    "conv2d_backward_weight_gemm",
    &[(1, Read), (2, Read), (3, Write)],
)
.with_constants(CONSTANTS);

/// Output tile of the forward (pixels and channels), and of the weight gradient.
const TILE: usize = 128;
const WEIGHT_TILE: usize = 64;
/// Pixels a K slice of the weight gradient holds.
const SLICE: usize = 16;

/// The GEMM family.
pub(crate) struct Gemm;

impl GemmShaped for Gemm {
    fn kind(&self) -> ConvKernels {
        ConvKernels::Gemm
    }

    fn kernels(&self) -> &'static [&'static KernelSpec] {
        &[&FORWARD, &BACKWARD_WEIGHT]
    }

    /// Packs the weights and runs the tiled forward kernel.
    fn gemm(&self, rec: &mut Recording<'_>, c: &GemmCall<'_>) -> Result<()> {
        with_packed_weights(rec, c.weight, c.transpose, |rec, packed| {
            let co_pad = c.g.y[1].next_multiple_of(8);
            let pixels = c.g.y[0] * c.g.y[2] * c.g.y[3];
            let tiles = pixels.div_ceil(TILE) * co_pad.div_ceil(TILE);
            let a = c.args(tiles, co_pad / 8);
            let [bias, out, mask] = c.outputs();
            let buffers = [Some(read(c.x)), Some(read(packed)), bias, out, mask];
            let grid = Grid::Workgroups(tiles as u64);
            rec.launch(&FORWARD, &[a.bytes()], &buffers, &[], grid, c.cost)
        })
    }

    /// Where the device allows 256-thread workgroups and 16 KiB of workgroup memory.
    fn fits(&self, gpu: &Gpu) -> bool {
        let limits = gpu.limits();
        limits.max_compute_invocations_per_workgroup >= THREADS
            && limits.max_compute_workgroup_size_x >= THREADS
            && limits.max_compute_workgroup_storage_size >= 16 << 10
    }

    /// Split-K over the pixels: enough splits to fill the adapter, each a multiple of the
    /// 16-pixel slice and at most `SERIAL_TERMS` pixels (a thread's serial sum).
    fn weight_gradient(&self, rec: &mut Recording<'_>, c: &WeightGradArgs<'_>) -> Result<()> {
        let [cout, cin, kh, kw] = c.g.w;
        let tiles = cout.div_ceil(WEIGHT_TILE) * (cin * kh * kw).div_ceil(WEIGHT_TILE);
        let pixels = c.g.y[0] * c.g.y[2] * c.g.y[3];
        // A thread loops ~17 times a slice of 16 pixels.
        let per_max = SERIAL_TERMS.min(LOOP_BUDGET * 3 / 4) / SLICE * SLICE;
        let (_, per) = plan(
            rec.gpu(),
            c.grad_weight.numel(),
            pixels,
            tiles * THREADS as usize,
            per_max,
        );
        let per = per.next_multiple_of(SLICE).min(per_max);
        let splits = pixels.div_ceil(per);
        let direct = splits == 1 && !c.fusion.accumulate;
        let partials = Partials::new(rec, c.grad_weight, splits, direct)?;
        let workgroups = tiles * splits;
        let mut a = ConvArgs::new(&c.g, &c.p, workgroups, c.fusion);
        a.x_view = view(c.x);
        a.y_view = view(c.grad_out);
        a.per_split = per as u32;
        let cost = Cost {
            flops: c.g.tap_flops(),
            bytes: 4 * (c.x.numel() + c.grad_out.numel() + partials.tensor.numel()) as u64,
        };
        let buffers = [
            Some(read(c.x)),
            Some(read(c.grad_out)),
            Some(write(&partials.tensor)),
        ];
        let grid = Grid::Workgroups(workgroups as u64);
        rec.launch(&BACKWARD_WEIGHT, &[a.bytes()], &buffers, &[], grid, cost)?;
        partials.reduce(rec, c.grad_weight, c.fusion.accumulate)
    }
}
