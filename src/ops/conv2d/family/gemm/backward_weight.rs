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

/// How many times the splits of the adapter-sized rule ([`plan`]: enough threads in flight
/// for a GPU of unknown size) a variant takes. More splits: more workgroups for a large GPU
/// and shorter serial sums, more partial sums to write and add up — which pays depends on
/// the GPU and the shape (ResNet's deep 3×3 layers have few pixels and long rows of (tap,
/// ci)), so the tuner measures it instead of a rule written for one GPU.
const SPLIT_FACTORS: [usize; 3] = [1, 4, 16];

/// A weight-gradient kernel: its tile in output channels and its split factor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WeightVariant {
    /// Output channels a workgroup's tile covers.
    pub tile_co: usize,
    /// How many times the rule's splits of the pixel reduction (one of [`SPLIT_FACTORS`]).
    pub split_factor: usize,
}

impl std::fmt::Display for WeightVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tile {}x{WEIGHT_TILE}", self.tile_co)?;
        if self.split_factor > 1 {
            write!(f, ", splits x{}", self.split_factor)?;
        }
        Ok(())
    }
}

/// The weight-gradient variants worth measuring for `cout` output channels: every tile of
/// [`weight_tiles`] with every split factor, the rule's (64 channels, the rule's splits)
/// first.
pub(crate) fn weight_variants(cout: usize) -> Vec<WeightVariant> {
    weight_tiles(cout)
        .into_iter()
        .flat_map(|tile_co| {
            SPLIT_FACTORS.map(|split_factor| WeightVariant {
                tile_co,
                split_factor,
            })
        })
        .collect()
}

/// Split-K over the pixels: the rule's splits ([`plan`]: enough to fill the adapter, within
/// the scratch budget) times the variant's factor, each a multiple of the 16-pixel slice and
/// at most `SERIAL_TERMS` pixels (a thread's serial sum); tiles of `tile_co` output channels
/// × 64 (tap, ci) columns.
pub(super) fn weight_gradient_with(
    rec: &mut Recording<'_>,
    c: &WeightGradArgs<'_>,
    WeightVariant {
        tile_co,
        split_factor,
    }: WeightVariant,
) -> Result<()> {
    let [cout, cin, kh, kw] = c.g.w;
    let tiles = cout.div_ceil(tile_co) * (cin * kh * kw).div_ceil(WEIGHT_TILE);
    let pixels = c.g.y[0] * c.g.y[2] * c.g.y[3];
    // A thread loops ~17 times a slice of 16 pixels.
    let per_max = SERIAL_TERMS.min(LOOP_BUDGET * 3 / 4) / SLICE * SLICE;
    // A factor f asks for f times the rule's threads: as if a split ran 1/f of its threads.
    let (_, per) = plan(
        rec.gpu(),
        c.grad_weight.numel(),
        pixels,
        (tiles * THREADS as usize).div_ceil(split_factor),
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
