//! The GEMM family (`shaders/conv2d/gemm/`): implicit GEMM tiled in workgroup memory — the
//! shape fp32 convolution takes on a GPU. Forward (and stride-1 input gradient, the same
//! kernel on the transposed problem): 128 × 128, 128 × 64 or 64 × 64 output tiles (the
//! tuner measures them as the family's variants on GPUs, [`forward_tiles`]; unmeasured, the
//! largest that gives two waves of an H200, [`forward_tile`]), 16-deep K slices, threads of
//! 8 × 8 accumulators read as vec4s from workgroup memory, the next slice prefetched into
//! registers; the weights packed by a pass of their own first, or read from the OIHW tensor
//! in place (one dispatch fewer; each tile both ways, all variants, [`output_variants`]).
//! Weight gradient: 64 × 64 tiles of (co) × (tap, ci) over 16-pixel slices —
//! or 128 × 64, 8 × 4 a thread, which the tuner measures as a variant on GPUs
//! ([`weight_tiles`]) — split-K into partial sums. groups = 1.
//!
//! Every pipeline is specialised to its problem's geometry (kernel, stride, padding,
//! dilation, channels, image sizes as override constants: `ConvArgs::geometry_constants`)
//! and the forward to its tile, so the index arithmetic divides by constants; one pipeline
//! is compiled per distinct geometry and cached by the `Gpu`.
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
use crate::ops::conv2d::select::{no_variant, Pass, TuneKey};
use crate::ops::conv2d::Conv2dParams;
use crate::ops::conv2d::ConvKernels;
use crate::record::{read, write, Cost, Grid, Recording};
use crate::tensor::Tensor;
use crate::Gpu;

use Access::{Read, Write};

/// Threads of the largest GEMM workgroup (the weight gradient's, and the 128 × 128 forward).
const THREADS: u32 = 256;
const CONSTANTS: &[(&str, f64)] = &[("GEMM_THREADS", THREADS as f64)];

const FORWARD_WGSL: Shader = wgsl!(
    "conv2d/gemm/weights_packed.wgsl",
    "conv2d/common.wgsl",
    "conv2d/gemm/geometry.wgsl",
    "conv2d/store.wgsl",
    "conv2d/gemm/forward.wgsl"
);
const FORWARD_OIHW_WGSL: Shader = wgsl!(
    "conv2d/gemm/weights_oihw.wgsl",
    "conv2d/common.wgsl",
    "conv2d/gemm/geometry.wgsl",
    "conv2d/store.wgsl",
    "conv2d/gemm/forward.wgsl"
);
const BACKWARD_WEIGHT_WGSL: Shader = wgsl!(
    "conv2d/gemm/backward_weight.wgsl",
    "conv2d/common.wgsl",
    "conv2d/gemm/geometry.wgsl",
    "conv2d/partials.wgsl"
);

/// The forward's buffers: x, the weights, then the store epilogue's bias, out, mask.
const FORWARD_BUFFERS: &[(u32, Access)] =
    &[(1, Write), (2, Read), (3, Read), (4, Write), (5, Write)];
/// `conv2d_forward_gemm`: the forward on packed weights. Launched with its tile's and the
/// geometry's constants.
pub(crate) const FORWARD: KernelSpec =
    KernelSpec::new(FORWARD_WGSL, "conv2d_forward_gemm", FORWARD_BUFFERS);
/// `conv2d_forward_gemm_oihw`: the forward reading the OIHW weights in place (no packing
/// pass). Launched with its tile's, the geometry's and the weight layout's constants.
pub(crate) const FORWARD_OIHW: KernelSpec = KernelSpec::new(
    FORWARD_OIHW_WGSL,
    "conv2d_forward_gemm_oihw",
    FORWARD_BUFFERS,
);
/// `conv2d_backward_weight_gemm`: x, grad_out → partial sums.
pub(crate) const BACKWARD_WEIGHT: KernelSpec = KernelSpec::new(
    BACKWARD_WEIGHT_WGSL,
    "conv2d_backward_weight_gemm",
    &[(1, Read), (2, Read), (3, Write)],
)
.with_constants(CONSTANTS);

/// Output tile of the weight gradient: (tap, ci) columns, and channels unmeasured.
const WEIGHT_TILE: usize = 64;

/// A forward output tile: `pixels` × `channels`, one 8 × 8 block per thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tile {
    pub pixels: usize,
    pub channels: usize,
}

impl Tile {
    /// Workgroups for `pixels` output pixels and `co_pad` channels.
    fn workgroups(self, pixels: usize, co_pad: usize) -> usize {
        pixels.div_ceil(self.pixels) * co_pad.div_ceil(self.channels)
    }

    /// Its override constants (`TILE_M`, `TILE_N`; the thread layout follows from them).
    fn constants(self) -> [(&'static str, f64); 2] {
        [
            ("TILE_M", self.pixels as f64),
            ("TILE_N", self.channels as f64),
        ]
    }
}

/// The forward tiles, largest first: the shader's thread layout holds for these.
const TILES: [Tile; 3] = [
    Tile {
        pixels: 128,
        channels: 128,
    },
    Tile {
        pixels: 128,
        channels: 64,
    },
    Tile {
        pixels: 64,
        channels: 64,
    },
];

/// Workgroups that give every compute unit of a large GPU two to run: two waves of the
/// 132 SMs of the H200, the GPU this family was written for (wgpu does not report an
/// adapter's compute units). Fewer than this and SMs idle through the whole dispatch — the
/// round-1 H200 profile of ResNet-50's deep layers (98 tiles of 128 × 128 for 132 SMs).
const WAVE_WORKGROUPS: usize = 2 * 132;

/// The forward tile for `pixels` output pixels and `co_pad` channels (a multiple of 8): the
/// largest (most reuse of each staged value) that still gives [`WAVE_WORKGROUPS`], never a
/// channel tile twice the channels (128-wide tiles over 64 channels would multiply zeros
/// half the time); where none does, the one that gives the most workgroups.
pub(crate) fn forward_tile(pixels: usize, co_pad: usize) -> Tile {
    let fitting = TILES
        .into_iter()
        .filter(|t| t.channels <= co_pad.next_multiple_of(64));
    let mut smallest = TILES[TILES.len() - 1];
    for t in fitting {
        if t.workgroups(pixels, co_pad) >= WAVE_WORKGROUPS {
            return t;
        }
        smallest = t;
    }
    smallest
}

/// The forward tiles worth measuring for `pixels` output pixels and `co_pad` channels:
/// [`forward_tile`]'s choice first (what runs unmeasured), then every other tile no wider in
/// channels than the channels rounded up to 64, largest first. wgpu reports no adapter's
/// compute-unit count, so on a GPU the tuner measures these rather than trust the H200's.
pub(crate) fn forward_tiles(pixels: usize, co_pad: usize) -> Vec<Tile> {
    let rule = forward_tile(pixels, co_pad);
    let others = TILES
        .into_iter()
        .filter(|t| *t != rule && t.channels <= co_pad.next_multiple_of(64));
    std::iter::once(rule).chain(others).collect()
}

/// Pixels a K slice of the weight gradient holds.
const SLICE: usize = 16;

/// Where the forward kernel reads its weights from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Weights {
    /// Packed by a pass of their own first (`conv2d/pack.wgsl`; `FORWARD`): a vec4 load a
    /// row of a K slice.
    Packed,
    /// The OIHW tensor read in place (`FORWARD_OIHW`): one dispatch fewer, scalar loads.
    InPlace,
}

/// A variant of the forward kernel (and of the stride-1 input gradient's): its output tile
/// and where it reads the weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ForwardVariant {
    pub tile: Tile,
    pub weights: Weights,
}

impl std::fmt::Display for ForwardVariant {
    /// `tile 128x64`, and `, OIHW in place` where the weights are not packed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tile {}x{}", self.tile.pixels, self.tile.channels)?;
        match self.weights {
            Weights::Packed => Ok(()),
            Weights::InPlace => write!(f, ", OIHW in place"),
        }
    }
}

/// The forward variants worth measuring for a GEMM that writes an output of shape `y`
/// (NCHW): every tile of [`forward_tiles`] on packed weights (the first is what runs
/// unmeasured), then every one reading the weights in place.
pub(crate) fn output_variants(y: [usize; 4]) -> Vec<ForwardVariant> {
    let tiles = forward_tiles(y[0] * y[2] * y[3], y[1].next_multiple_of(8));
    [Weights::Packed, Weights::InPlace]
        .into_iter()
        .flat_map(|weights| {
            tiles
                .iter()
                .map(move |&tile| ForwardVariant { tile, weights })
        })
        .collect()
}

/// Records the forward kernel for `c` as variant `v`: packing the weights first, or reading
/// them in place.
fn gemm_with(rec: &mut Recording<'_>, c: &GemmCall<'_>, v: ForwardVariant) -> Result<()> {
    match v.weights {
        Weights::Packed => with_packed_weights(rec, c.weight, c.transpose, |rec, packed| {
            launch_forward(rec, c, &FORWARD, packed, v.tile, &[])
        }),
        Weights::InPlace => {
            let layout = in_place_constants(c.weight.shape(), c.transpose);
            launch_forward(rec, c, &FORWARD_OIHW, c.weight, v.tile, &layout)
        }
    }
}

/// How `conv2d/gemm/weights_oihw.wgsl` addresses OIHW weights of shape `weight`: the
/// strides of an output and an input channel of the problem, and whether the kernel is
/// flipped (the input gradient's transposed problem, `transpose`).
///
/// A kernel of one tap is never flipped (flipping it is the identity): NVIDIA's driver
/// 580.159.04 crashed the process in its SPIR-V compiler (`_nv002nvvm`) on a GEMM variant
/// that only the GPU tuner compiles, for the input gradient of 1×1 convs; the forwards of
/// the same 1×1 convs, which compile this loader with `B_FLIP` false and take the same
/// variants, compiled, as did flipped 3×3 input gradients. The flipped 1×1 pipeline was the
/// one shape only those crashing cases had (`taps - 1 - tap` with `taps = 1`, `tap =
/// k % 1`); without the flip it is the forward's shape with other strides.
fn in_place_constants(weight: [usize; 4], transpose: bool) -> [(&'static str, f64); 3] {
    let [_, cin, kh, kw] = weight;
    let (n_stride, c_stride) = if transpose {
        (kh * kw, cin * kh * kw)
    } else {
        (cin * kh * kw, kh * kw)
    };
    let flip = transpose && kh * kw > 1;
    [
        ("B_N_STRIDE", n_stride as f64),
        ("B_C_STRIDE", c_stride as f64),
        ("B_FLIP", f64::from(u8::from(flip))),
    ]
}

/// Launches a forward kernel for `c` with `tile` on `weights` (packed or OIHW, as `kernel`
/// reads them), specialised to the geometry, the tile and the weights' `layout` constants.
fn launch_forward(
    rec: &mut Recording<'_>,
    c: &GemmCall<'_>,
    kernel: &KernelSpec,
    weights: &Tensor,
    tile: Tile,
    layout: &[(&'static str, f64)],
) -> Result<()> {
    let co_pad = c.g.y[1].next_multiple_of(8);
    let pixels = c.g.y[0] * c.g.y[2] * c.g.y[3];
    let tiles = tile.workgroups(pixels, co_pad);
    let a = c.args(tiles, co_pad / 8);
    let mut constants = a.geometry_constants().to_vec();
    constants.extend(tile.constants());
    constants.extend_from_slice(layout);
    let [bias, out, mask] = c.outputs();
    let buffers = [Some(read(c.x)), Some(read(weights)), bias, out, mask];
    let grid = Grid::Workgroups(tiles as u64);
    let kernel = kernel.specialised(&constants);
    rec.launch(kernel, &[a.bytes()], &buffers, &[], grid, c.cost)
}

/// The variant of every GEMM forward pipeline compiled so far, by entry point (its loader)
/// and tile constants (tests assert with it which variant ran).
#[cfg(test)]
pub(crate) fn compiled_forward_variants(gpu: &Gpu) -> Vec<ForwardVariant> {
    let get = |c: &[(&str, f64)], name| {
        c.iter()
            .find(|(k, _)| *k == name)
            .map(|&(_, v)| v as usize)
            .unwrap_or_else(|| panic!("{name} in {c:?}"))
    };
    [
        (FORWARD.entry, Weights::Packed),
        (FORWARD_OIHW.entry, Weights::InPlace),
    ]
    .into_iter()
    .flat_map(|(entry, weights)| {
        gpu.compiled_constants(entry)
            .into_iter()
            .map(move |c| ForwardVariant {
                tile: Tile {
                    pixels: get(&c, "TILE_M"),
                    channels: get(&c, "TILE_N"),
                },
                weights,
            })
    })
    .collect()
}

/// The GEMM family.
pub(crate) struct Gemm;

impl GemmShaped for Gemm {
    fn kind(&self) -> ConvKernels {
        ConvKernels::Gemm
    }

    fn kernels(&self) -> &'static [&'static KernelSpec] {
        &[&FORWARD, &FORWARD_OIHW, &BACKWARD_WEIGHT]
    }

    /// Packs the weights and runs the tiled forward kernel with the rule's tile.
    fn gemm(&self, rec: &mut Recording<'_>, c: &GemmCall<'_>) -> Result<()> {
        self.gemm_variant(rec, c, 0)
    }

    /// Its forward tiles on packed and on in-place weights ([`output_variants`]).
    fn gemm_variants(&self, c: &GemmCall<'_>) -> usize {
        output_variants(c.g.y).len()
    }

    /// The forward kernel as variant `v` of [`output_variants`].
    fn gemm_variant(&self, rec: &mut Recording<'_>, c: &GemmCall<'_>, v: usize) -> Result<()> {
        match output_variants(c.g.y).get(v) {
            Some(&variant) => gemm_with(rec, c, variant),
            None => Err(no_variant(ConvKernels::Gemm, v)),
        }
    }

    /// Where the device allows 256-thread workgroups and 16 KiB of workgroup memory.
    fn fits(&self, gpu: &Gpu) -> bool {
        let limits = gpu.limits();
        limits.max_compute_invocations_per_workgroup >= THREADS
            && limits.max_compute_workgroup_size_x >= THREADS
            && limits.max_compute_workgroup_storage_size >= 16 << 10
    }

    /// The 64-channel tile ([`weight_tiles`]' first).
    fn weight_gradient(&self, rec: &mut Recording<'_>, c: &WeightGradArgs<'_>) -> Result<()> {
        weight_gradient_with_tile(rec, c, WEIGHT_TILE)
    }

    /// Variant `v`: forward and input gradient `tile <pixels>x<channels>` of the GEMM the
    /// pass runs (`, OIHW in place` where it reads the weights unpacked), weight gradient
    /// `tile <channels>x64`.
    fn describe(&self, key: &TuneKey, v: usize) -> String {
        let p = Conv2dParams {
            stride: key.stride,
            padding: key.padding,
            dilation: key.dilation,
            groups: key.groups,
        };
        let Ok(y) = p.output_shape(key.x, key.w) else {
            return String::new();
        };
        // The input gradient's GEMM writes the input gradient (shaped as x).
        let variants = match key.pass {
            Pass::Forward => output_variants(y),
            Pass::BackwardInput => output_variants(key.x),
            Pass::BackwardWeight => {
                return weight_tiles(y[1])
                    .get(v)
                    .map(|t| format!("tile {t}x{WEIGHT_TILE}"))
                    .unwrap_or_default()
            }
        };
        variants
            .get(v)
            .map(ForwardVariant::to_string)
            .unwrap_or_default()
    }

    /// Its weight-gradient tiles ([`weight_tiles`]).
    fn weight_variants(&self, c: &WeightGradArgs<'_>) -> usize {
        weight_tiles(c.g.w[0]).len()
    }

    /// The weight gradient with tile `v` of [`weight_tiles`].
    fn weight_variant(
        &self,
        rec: &mut Recording<'_>,
        c: &WeightGradArgs<'_>,
        v: usize,
    ) -> Result<()> {
        match weight_tiles(c.g.w[0]).get(v) {
            Some(&tile_co) => weight_gradient_with_tile(rec, c, tile_co),
            None => Err(no_variant(ConvKernels::Gemm, v)),
        }
    }
}

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
fn weight_gradient_with_tile(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tile(pixels: usize, channels: usize) -> Tile {
        Tile { pixels, channels }
    }

    /// ResNet-50's layers at batch 32 (pixels = 32 · OH · OW): the largest tile that still
    /// gives two waves of workgroups, never 128 channels wide over 64.
    #[test]
    fn forward_tile_is_the_largest_that_fills_the_adapter() {
        // conv3x3 c64 56²: 784 pixel tiles, 64 channels.
        assert_eq!(forward_tile(32 * 56 * 56, 64), tile(128, 64));
        // conv1x1 64→256 56²: 784 × 2 workgroups of 128 × 128.
        assert_eq!(forward_tile(32 * 56 * 56, 256), tile(128, 128));
        // conv3x3 c128 28²: 196 of 128 × 128 are too few, 392 of 128 × 64 enough.
        assert_eq!(forward_tile(32 * 28 * 28, 128), tile(128, 64));
        // conv3x3 c256 14²: 98, then 196, then 392 of 64 × 64.
        assert_eq!(forward_tile(32 * 14 * 14, 256), tile(64, 64));
        // conv3x3 c512 7²: none reaches two waves; the most workgroups it can have.
        assert_eq!(forward_tile(32 * 7 * 7, 512), tile(64, 64));
        // Narrow layers never get a 128-channel tile, however many pixels.
        assert_eq!(forward_tile(1 << 24, 8), tile(128, 64));
    }

    /// The tiles the tuner measures: the rule's first, each once, none wider than the
    /// channels rounded up to 64.
    #[test]
    fn forward_tiles_start_with_the_rule() {
        for (pixels, co_pad) in [(32 * 56 * 56, 64), (32 * 14 * 14, 256), (49, 512), (1, 8)] {
            let tiles = forward_tiles(pixels, co_pad);
            assert_eq!(tiles[0], forward_tile(pixels, co_pad));
            for (i, t) in tiles.iter().enumerate() {
                assert!(!tiles[..i].contains(t), "{tiles:?}");
                assert!(t.channels <= co_pad.next_multiple_of(64), "{tiles:?}");
            }
        }
        // 64 channels: the 128-wide tiles are never measured.
        assert_eq!(forward_tiles(32 * 56 * 56, 64).len(), 2);
        assert_eq!(forward_tiles(32 * 14 * 14, 256).len(), 3);
    }

    /// The variants: every tile on packed weights, the rule's first (what runs unmeasured),
    /// then every tile again reading the weights in place.
    #[test]
    fn variants_are_each_tile_packed_then_in_place() {
        let y = [32, 256, 14, 14];
        let tiles = forward_tiles(32 * 14 * 14, 256);
        let variants = output_variants(y);
        let (packed, in_place) = variants.split_at(tiles.len());
        assert_eq!(variants.len(), 2 * tiles.len());
        for (half, weights) in [(packed, Weights::Packed), (in_place, Weights::InPlace)] {
            let got: Vec<_> = half.iter().map(|v| (v.tile, v.weights)).collect();
            let want: Vec<_> = tiles.iter().map(|&t| (t, weights)).collect();
            assert_eq!(got, want);
        }
    }

    /// The in-place loader's strides address `w[n, c, ky, kx]` in a forward and the flipped
    /// `w[c, n, kh-1-ky, kw-1-kx]` in an input gradient.
    #[test]
    fn in_place_strides_address_oihw() {
        let (cout, cin, kh, kw) = (6, 5, 3, 2);
        let flat =
            |co: usize, ci: usize, ky: usize, kx: usize| ((co * cin + ci) * kh + ky) * kw + kx;
        let addr = |c: [(&str, f64); 3], n: usize, ch: usize, tap: usize| {
            let tap = if c[2].1 != 0.0 {
                kh * kw - 1 - tap
            } else {
                tap
            };
            n * c[0].1 as usize + ch * c[1].1 as usize + tap
        };
        let forward = in_place_constants([cout, cin, kh, kw], false);
        let input = in_place_constants([cout, cin, kh, kw], true);
        for (co, ci, ky, kx) in [(0, 0, 0, 0), (5, 4, 2, 1), (3, 1, 1, 0), (2, 3, 0, 1)] {
            let tap = ky * kw + kx;
            assert_eq!(addr(forward, co, ci, tap), flat(co, ci, ky, kx));
            // The transposed problem: output channel ci, input channel co.
            assert_eq!(
                addr(input, ci, co, tap),
                flat(co, ci, kh - 1 - ky, kw - 1 - kx)
            );
        }
    }

    /// The input gradients of 1×1 convs that crashed NVIDIA's compiler (driver 580.159.04,
    /// through the tuner): the standard suite's 64 → 128 at 32×32 and the scale case's
    /// one-channel 256×256 with two outputs. Every GEMM variant against the f64 oracle, and
    /// none of them compiles the in-place loader flipped (`B_FLIP`: the one constant those
    /// pipelines had and the 1×1 forwards that compiled did not).
    #[cfg(feature = "oracle")]
    #[test]
    fn one_by_one_input_gradients_that_crashed_a_driver_run_unflipped() {
        let gpu = test_gpu();
        for shapes in [
            ([2, 64, 32, 32], [128, 64, 1, 1]),
            ([1, 1, 256, 256], [2, 1, 1, 1]),
        ] {
            let what = format!("input gradient of x {:?}, w {:?}", shapes.0, shapes.1);
            let p = crate::ops::conv2d::Conv2dParams::default();
            check_every_input_gradient_variant(&gpu, shapes, p, &what);
            // check_every_variant leaves the last variant's pipeline (in place) compiled.
            let flips: Vec<f64> = gpu
                .compiled_constants(FORWARD_OIHW.entry)
                .iter()
                .flat_map(|c| c.iter().filter(|(k, _)| *k == "B_FLIP").map(|&(_, v)| v))
                .collect();
            assert_eq!(flips, [0.0], "{what}");
        }
        // A kernel of more than one tap is still flipped.
        assert_eq!(in_place_constants([4, 3, 3, 3], true)[2], ("B_FLIP", 1.0));
        assert_eq!(in_place_constants([4, 3, 1, 1], true)[2], ("B_FLIP", 0.0));
    }

    /// Reports name a variant by its tile, as the pass's GEMM sees it, and by where it reads
    /// the weights.
    #[test]
    fn variants_are_described_by_their_tiles() {
        use crate::ops::conv2d::select::TuneKey;
        let key = |pass, x, w| TuneKey {
            pass,
            x,
            w,
            stride: [1, 1],
            padding: [1, 1],
            dilation: [1, 1],
            groups: 1,
            bias: false,
            fusion: (false, false),
            mask: false,
            input_aligned: true,
            vec4_stores: true,
        };
        let (x, w) = ([32, 64, 56, 56], [64, 64, 3, 3]);
        let forward = key(Pass::Forward, x, w);
        assert_eq!(Gemm.describe(&forward, 0), "tile 128x64");
        assert_eq!(Gemm.describe(&forward, 1), "tile 64x64");
        assert_eq!(Gemm.describe(&forward, 2), "tile 128x64, OIHW in place");
        assert_eq!(Gemm.describe(&forward, 3), "tile 64x64, OIHW in place");
        assert_eq!(Gemm.describe(&forward, 4), "");
        let weight = key(Pass::BackwardWeight, [8, 64, 14, 14], [256, 64, 3, 3]);
        assert_eq!(Gemm.describe(&weight, 1), "tile 128x64");
        // The input gradient's GEMM writes the 128 input channels (392 tiles of 128 x 64 by
        // the rule): a 128-wide tile is among the variants; the forward's 64 channels have none.
        let input = key(Pass::BackwardInput, [32, 128, 28, 28], [64, 128, 3, 3]);
        assert_eq!(Gemm.describe(&input, 0), "tile 128x64");
        assert_eq!(Gemm.describe(&input, 1), "tile 128x128");
        let forward = key(Pass::Forward, [32, 128, 28, 28], [64, 128, 3, 3]);
        assert!((0..6).all(|v| !Gemm.describe(&forward, v).starts_with("tile 128x128")));
    }

    /// What the thread layout of `conv2d/gemm/forward.wgsl` and its weight loaders assumes
    /// of a tile (a tile past it would index their register arrays out of bounds, which naga
    /// clamps into a wrong number, not an error): every row of a slice fetched by whole rows
    /// of threads, at most 4 fetches a thread per operand (of 4 weights each in place), at most
    /// `THREADS` threads and 16 KiB of workgroup memory (what `fits` checks the device for).
    #[test]
    fn every_tile_fits_the_shaders_thread_layout() {
        for t in TILES {
            let threads = (t.pixels / 8) * (t.channels / 8);
            assert!(threads <= THREADS as usize, "{t:?}");
            for quads in [t.pixels / 4, t.channels / 4] {
                assert_eq!(threads % quads, 0, "{t:?}");
                let row_step = threads / quads;
                assert_eq!(16 % row_step, 0, "{t:?}");
                assert!(16 / row_step <= 4, "{t:?}");
            }
            assert!(16 * (t.pixels + t.channels) / 4 * 16 <= 16 << 10, "{t:?}");
            // The in-place loader: a slice's 16 × TILE_N weights in groups of 4 rows of a
            // column, split evenly, at most 4 groups a thread (its register array).
            let groups = 4 * t.channels;
            assert_eq!(groups % threads, 0, "{t:?}");
            assert!(groups / threads <= 4, "{t:?}");
        }
        // The weight gradient's: g_tile of 4 × WG_TILE_CO vec4s and x_tile of 256.
        for tile_co in weight_tiles(512) {
            assert!((4 * tile_co + 256) * 16 <= 16 << 10, "{tile_co}");
        }
    }

    /// The adapter the GPU tests run on.
    #[cfg(feature = "oracle")]
    fn test_gpu() -> Gpu {
        Gpu::new().unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"))
    }

    /// Stride, padding and dilation different per axis: what the geometry constants must
    /// get right.
    #[cfg(feature = "oracle")]
    fn skewed_params() -> crate::ops::conv2d::Conv2dParams {
        crate::ops::conv2d::Conv2dParams {
            stride: [2, 1],
            padding: [1, 2],
            dilation: [1, 2],
            groups: 1,
        }
    }

    #[cfg(feature = "oracle")]
    use crate::reference::noise as values;

    /// Asserts `got` is `want` within float32 accumulation error.
    #[cfg(feature = "oracle")]
    fn assert_matches(got: &[f32], want: &[f64], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (&g, &e)) in got.iter().zip(want).enumerate() {
            assert!(
                (g as f64 - e).abs() <= 1e-4 * (1.0 + e.abs()),
                "{what}, element {i}: {g} vs {e}"
            );
        }
    }

    /// Runs every GEMM variant of `call` through the family, each from a cold pipeline cache
    /// and over an `out` of NaNs, and checks each compiled its own kernel and tile, packed
    /// its weights or not, and wrote `want` into `out`.
    #[cfg(feature = "oracle")]
    fn check_every_variant(
        gpu: &Gpu,
        call: &crate::ops::conv2d::select::Call<'_, '_>,
        out: &crate::tensor::Tensor,
        variants: &[ForwardVariant],
        want: &[f64],
        what: &str,
    ) {
        use crate::ops::conv2d::family::pack::PACK_BUFFER;
        use crate::ops::conv2d::select::{Choice, Family};
        assert_eq!(Gemm.variants(call), variants.len(), "{what}");
        for (variant, &expected) in variants.iter().enumerate() {
            gpu.clear_pipelines();
            // NaN where the variant writes nothing: the previous variant's numbers cannot pass.
            out.write(gpu, &vec![f32::NAN; out.numel()]).unwrap();
            let mut rec = Recording::new(gpu);
            let choice = Choice {
                family: &Gemm,
                variant,
            };
            call.run_choice(choice, &mut rec).unwrap();
            let packs = rec.kernels().contains(&PACK_BUFFER.entry);
            assert_eq!(
                packs,
                expected.weights == Weights::Packed,
                "{what} {expected}"
            );
            assert_eq!(
                rec.dispatch_count(),
                1 + packs as usize,
                "{what} {expected}"
            );
            assert_eq!(compiled_forward_variants(gpu), [expected], "{what}");
            rec.finish().unwrap();
            let got = out.to_vec(gpu).unwrap();
            assert_matches(&got, want, &format!("{what}, {expected}"));
        }
    }

    /// Every forward variant — each tile, on packed weights and on the OIHW tensor in place
    /// — against the f64 reference, on a problem that leaves every tile partial (156 pixels,
    /// 72 channels, not a multiple of 64) and crosses taps inside K slices (cin = 5), with
    /// stride, padding and dilation different per axis: what the geometry constants and the
    /// in-place strides must get right.
    #[cfg(feature = "oracle")]
    #[test]
    fn every_forward_variant_matches_the_reference() {
        use crate::memory::Purpose;
        use crate::ops::conv2d::args::{ForwardArgs, Geometry};
        use crate::ops::conv2d::select::Call;
        use crate::ops::conv2d::Fusion;
        use crate::tensor::Tensor;

        let (gpu, p) = (test_gpu(), skewed_params());
        let (xs, ws) = ([2, 5, 11, 13], [72, 5, 3, 3]);
        let (xv, wv) = (
            values(xs.iter().product(), 7),
            values(ws.iter().product(), 5),
        );
        let bv = values(ws[0], 3);
        let f64s = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
        let (want, ys) =
            crate::reference::conv2d(&f64s(&xv), xs, &f64s(&wv), ws, Some(&f64s(&bv)), &p).unwrap();
        let x = Tensor::from_slice(&gpu, xs, &xv, Purpose::Activation).unwrap();
        let w = Tensor::from_slice(&gpu, ws, &wv, Purpose::Parameter).unwrap();
        let b = Tensor::from_slice(&gpu, [ws[0], 1, 1, 1], &bv, Purpose::Parameter).unwrap();
        let out = Tensor::zeros(&gpu, ys, Purpose::Activation).unwrap();
        let args = ForwardArgs {
            g: Geometry::of(&x, &w, &p).unwrap(),
            p,
            x: &x,
            weight: &w,
            bias: Some(&b),
            out: &out,
            fusion: Fusion::default(),
        };
        let variants = output_variants(ys);
        assert_eq!(variants.len(), 2 * TILES.len(), "72 channels: every tile");
        let call = Call::Forward(&args);
        check_every_variant(&gpu, &call, &out, &variants, &want, "forward");
    }

    /// Every input-gradient variant of the problem `(xs, ws, p)` through the family, each
    /// against the f64 reference (see `check_every_variant`).
    #[cfg(feature = "oracle")]
    fn check_every_input_gradient_variant(
        gpu: &Gpu,
        (xs, ws): ([usize; 4], [usize; 4]),
        p: crate::ops::conv2d::Conv2dParams,
        what: &str,
    ) {
        use crate::memory::Purpose;
        use crate::ops::conv2d::args::{Geometry, InputGradArgs};
        use crate::ops::conv2d::select::Call;
        use crate::ops::conv2d::Fusion;
        use crate::tensor::Tensor;

        let ys = p.output_shape(xs, ws).unwrap();
        let (gv, wv) = (
            values(ys.iter().product(), 3),
            values(ws.iter().product(), 9),
        );
        let f64s = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
        let want =
            crate::reference::conv2d_backward_input(&f64s(&gv), xs, &f64s(&wv), ws, &p).unwrap();
        let x = Tensor::zeros(gpu, xs, Purpose::Activation).unwrap();
        let w = Tensor::from_slice(gpu, ws, &wv, Purpose::Parameter).unwrap();
        let go = Tensor::from_slice(gpu, ys, &gv, Purpose::Gradient).unwrap();
        let gx = Tensor::zeros(gpu, xs, Purpose::Gradient).unwrap();
        let args = InputGradArgs {
            g: Geometry::of(&x, &w, &p).unwrap(),
            p,
            x: &x,
            weight: &w,
            grad_out: &go,
            grad_x: &gx,
            fusion: Fusion::default(),
        };
        assert!(args.g.transposable(&p));
        let variants = output_variants(xs);
        assert!(variants.len() >= 4, "{what}: {variants:?}");
        let call = Call::BackwardInput(&args);
        check_every_variant(gpu, &call, &gx, &variants, &want, what);
    }

    /// Every input-gradient variant (the forward kernel on the transposed problem: the
    /// packing pass's transposed, flipped weights, or the in-place loader's flipped strides)
    /// against the f64 reference: 3 × 2 kernel, padding and dilation different per axis,
    /// 13 output channels (a partial quad) and 70 input-gradient channels.
    #[cfg(feature = "oracle")]
    #[test]
    fn every_input_gradient_variant_matches_the_reference() {
        let p = crate::ops::conv2d::Conv2dParams {
            stride: [1, 1],
            padding: [1, 2],
            dilation: [2, 3],
            groups: 1,
        };
        let shapes = ([2, 70, 9, 10], [13, 70, 3, 2]);
        check_every_input_gradient_variant(&test_gpu(), shapes, p, "input gradient");
    }

    /// A conv's forward and backward through the GEMM family in four dispatches on a GPU,
    /// not six: the forward and the input gradient each read the OIHW weights in place (no
    /// packing pass), the weight gradient's partial sums and the bias gradient share one
    /// reduce (the GPUs' path, turned on here). Asserted by the kernels that ran, and each
    /// result against the f64 oracle.
    #[cfg(feature = "oracle")]
    #[test]
    fn a_conv_forward_and_backward_in_four_dispatches() {
        use crate::memory::Purpose;
        use crate::ops::conv2d::args::{
            BiasGradient, ForwardArgs, Geometry, InputGradArgs, WeightGradArgs,
        };
        use crate::ops::conv2d::select::{Call, Choice};
        use crate::ops::conv2d::{Conv2dParams, Fusion};
        use crate::reference;
        use crate::tensor::Tensor;

        let gpu = crate::gpu::test_gpu(crate::AdapterPolicy::Gpu);
        let p = Conv2dParams::new(1, 1);
        // 4608 output pixels: several splits of the weight gradient's reduction.
        let (xs, ws) = ([8, 16, 24, 24], [24, 16, 3, 3]);
        let ys = p.output_shape(xs, ws).unwrap();
        let (xv, wv) = (
            values(xs.iter().product(), 1),
            values(ws.iter().product(), 2),
        );
        let (gv, bv) = (values(ys.iter().product(), 3), values(ws[0], 4));
        let up = |s, v: &[f32]| Tensor::from_slice(&gpu, s, v, Purpose::Activation).unwrap();
        let zeros = |s| Tensor::zeros(&gpu, s, Purpose::Activation).unwrap();
        let (x, w, go, b) = (
            up(xs, &xv),
            up(ws, &wv),
            up(ys, &gv),
            up([ws[0], 1, 1, 1], &bv),
        );
        let (y, gx, gw, gb) = (zeros(ys), zeros(xs), zeros(ws), zeros([ws[0], 1, 1, 1]));
        let g = Geometry::of(&x, &w, &p).unwrap();
        let fusion = Fusion::default();
        let in_place = |y: [usize; 4]| {
            let variants = output_variants(y);
            variants
                .iter()
                .position(|v| v.weights == Weights::InPlace)
                .unwrap()
        };
        let choice = |variant| Choice {
            family: &Gemm,
            variant,
        };
        let mut rec = Recording::new(&gpu);
        let forward = ForwardArgs {
            g,
            p,
            x: &x,
            weight: &w,
            bias: Some(&b),
            out: &y,
            fusion,
        };
        Call::Forward(&forward)
            .run_choice(choice(in_place(ys)), &mut rec)
            .unwrap();
        let input = InputGradArgs {
            g,
            p,
            x: &x,
            weight: &w,
            grad_out: &go,
            grad_x: &gx,
            fusion,
        };
        Call::BackwardInput(&input)
            .run_choice(choice(in_place(xs)), &mut rec)
            .unwrap();
        let bias = BiasGradient::new(&go, &gb);
        let weight = WeightGradArgs {
            g,
            p,
            x: &x,
            grad_out: &go,
            grad_weight: &gw,
            fusion,
            bias: Some(&bias),
        };
        Call::BackwardWeight(&weight)
            .run_choice(choice(0), &mut rec)
            .unwrap();
        assert!(bias.done(), "the bias rode with the reduce");
        // The distinct kernels, and four launches of them.
        assert_eq!(
            rec.kernels(),
            [
                "conv2d_forward_gemm_oihw",
                "conv2d_backward_weight_gemm",
                "conv2d_backward_weight_reduce_and_bias"
            ]
        );
        assert_eq!(rec.dispatch_count(), 4);
        rec.finish().unwrap();
        let f64s = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
        let (x64, w64, g64) = (f64s(&xv), f64s(&wv), f64s(&gv));
        let want_y = reference::conv2d(&x64, xs, &w64, ws, Some(&f64s(&bv)), &p)
            .unwrap()
            .0;
        let want_gx = reference::conv2d_backward_input(&g64, xs, &w64, ws, &p).unwrap();
        let want_gw = reference::conv2d_backward_weight(&x64, xs, &g64, ws, &p).unwrap();
        let want_gb = reference::conv2d_backward_bias(&g64, ys);
        for (what, t, want) in [
            ("forward", &y, want_y),
            ("grad x", &gx, want_gx),
            ("grad w", &gw, want_gw),
            ("grad b", &gb, want_gb),
        ] {
            assert_matches(&t.to_vec(&gpu).unwrap(), &want, what);
        }
    }

    /// Every weight-gradient tile through the family's variants, against the f64 reference:
    /// 136 output channels (every tile partial), 45 (tap, ci) columns crossing taps (cin =
    /// 5), stride, padding and dilation different per axis, ReLU on load, and enough pixels
    /// for several splits; each variant compiles its own tile's pipeline.
    #[cfg(feature = "oracle")]
    #[test]
    fn every_weight_tile_matches_the_reference() {
        use crate::memory::Purpose;
        use crate::ops::conv2d::args::{Geometry, WeightGradArgs};
        use crate::ops::conv2d::select::{Call, Choice, Family};
        use crate::ops::conv2d::Fusion;
        use crate::tensor::Tensor;

        let (gpu, p) = (test_gpu(), skewed_params());
        let (xs, ws) = ([6, 5, 40, 41], [136, 5, 3, 3]);
        let ys = p.output_shape(xs, ws).unwrap();
        assert!(ys[0] * ys[2] * ys[3] > 4096, "several splits");
        let value = |i: usize, k: usize| {
            ((i as u64 * 2_654_435_761 + k as u64 * 40_503) % 4096) as f32 / 2048.0 - 1.0
        };
        let xv: Vec<f32> = (0..xs.iter().product()).map(|i| value(i, 7)).collect();
        let gv: Vec<f32> = (0..ys.iter().product()).map(|i| value(i, 5)).collect();
        let relu: Vec<f64> = xv.iter().map(|&a| a.max(0.0) as f64).collect();
        let g64: Vec<f64> = gv.iter().map(|&a| a as f64).collect();
        let want = crate::reference::conv2d_backward_weight(&relu, xs, &g64, ws, &p).unwrap();
        let x = Tensor::from_slice(&gpu, xs, &xv, Purpose::Activation).unwrap();
        let go = Tensor::from_slice(&gpu, ys, &gv, Purpose::Gradient).unwrap();
        let gw = Tensor::zeros(&gpu, ws, Purpose::Gradient).unwrap();
        let args = WeightGradArgs {
            g: Geometry::of(&x, &gw, &p).unwrap(),
            p,
            x: &x,
            grad_out: &go,
            grad_weight: &gw,
            fusion: Fusion {
                relu_input: true,
                accumulate: false,
            },
            bias: None,
        };
        let call = Call::BackwardWeight(&args);
        let tiles = weight_tiles(ws[0]);
        assert_eq!(Gemm.variants(&call), tiles.len());
        assert_eq!(tiles, [64, 128]);
        for (variant, tile_co) in tiles.into_iter().enumerate() {
            gpu.clear_pipelines();
            // NaN where the variant writes nothing: the previous variant's numbers cannot pass.
            gw.write(&gpu, &vec![f32::NAN; gw.numel()]).unwrap();
            let mut rec = Recording::new(&gpu);
            let choice = Choice {
                family: &Gemm,
                variant,
            };
            call.run_choice(choice, &mut rec).unwrap();
            assert!(rec.kernels().contains(&"conv2d_backward_weight_gemm"));
            let compiled = gpu.compiled_constants("conv2d_backward_weight_gemm");
            let tile_of = |c: &Vec<(&str, f64)>| {
                c.iter()
                    .find(|(k, _)| *k == "WG_TILE_CO")
                    .map(|&(_, v)| v as usize)
            };
            assert_eq!(
                compiled.iter().map(tile_of).collect::<Vec<_>>(),
                [Some(tile_co)]
            );
            rec.finish().unwrap();
            let got = gw.to_vec(&gpu).unwrap();
            for (i, (&g, &e)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g as f64 - e).abs() <= 1e-4 * (1.0 + e.abs()),
                    "tile {tile_co}, element {i}: {g} vs {e}"
                );
            }
        }
    }
}
