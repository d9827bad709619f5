//! The GEMM family's weight gradient, `shaders/conv2d/gemm/backward_weight.wgsl`: tiles of
//! 64 (or, measured as a variant on GPUs, 128) output channels × 64 (tap, ci) columns over
//! 16-pixel slices, split-K over the pixels into partial sums.

use super::{CONSTANTS, THREADS};
use crate::error::Result;
use crate::gpu::{Access, KernelSpec, Shader};
use crate::ops::conv2d::args::{view, ConvArgs, WeightGradArgs};
use crate::ops::conv2d::budget::{LOOP_BUDGET, SERIAL_TERMS};
use crate::ops::conv2d::partials::{plan, Partials};
use crate::record::{read, write, Cost, Grid, Recording};

use Access::{Read, Write};

const BACKWARD_WEIGHT_WGSL: Shader = wgsl!(
    "conv2d/gemm/backward_weight.wgsl",
    "conv2d/common.wgsl",
    "conv2d/gemm/geometry.wgsl",
    "conv2d/partials.wgsl"
);

/// `conv2d_backward_weight_gemm`: x, grad_out → partial sums.
pub(crate) const BACKWARD_WEIGHT: KernelSpec = KernelSpec::new(
    BACKWARD_WEIGHT_WGSL,
    "conv2d_backward_weight_gemm",
    &[(1, Read), (2, Read), (3, Write)],
)
.with_constants(CONSTANTS);

/// Output tile of the weight gradient: (tap, ci) columns, and channels unmeasured.
pub(super) const WEIGHT_TILE: usize = 64;

/// Pixels a K slice of the weight gradient holds.
const SLICE: usize = 16;

/// The weight gradient's tiles in output channels worth measuring for `cout` channels: 64
/// (4 × 4 a thread; what runs unmeasured), and 128 (8 × 4 a thread: each input gather feeds
/// twice the channels, half the workgroups) where there are more than 64.
pub(crate) fn weight_tiles(cout: usize) -> Vec<usize> {
    if cout > WEIGHT_TILE {
        vec![WEIGHT_TILE, 2 * WEIGHT_TILE]
    } else {
        vec![WEIGHT_TILE]
    }
}

/// Split-K over the pixels: enough splits to fill the adapter, each a multiple of the
/// 16-pixel slice and at most `SERIAL_TERMS` pixels (a thread's serial sum); tiles of
/// `tile_co` output channels × 64 (tap, ci) columns.
pub(super) fn weight_gradient_with_tile(
    rec: &mut Recording<'_>,
    c: &WeightGradArgs<'_>,
    tile_co: usize,
) -> Result<()> {
    let [cout, cin, kh, kw] = c.g.w;
    let tiles = cout.div_ceil(tile_co) * (cin * kh * kw).div_ceil(WEIGHT_TILE);
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
    let mut constants = a.geometry_constants().to_vec();
    constants.push(("WG_TILE_CO", tile_co as f64));
    let kernel = BACKWARD_WEIGHT.specialised(&constants);
    rec.launch(kernel, &[a.bytes()], &buffers, &[], grid, cost)?;
    partials.reduce_weight(rec, c)
}
