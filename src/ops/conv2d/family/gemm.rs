//! The GEMM family (`shaders/conv2d/gemm/`): implicit GEMM tiled in workgroup memory — the
//! shape fp32 convolution takes on a GPU. Forward (and stride-1 input gradient, the same
//! kernel on the transposed problem): 128 × 128, 128 × 64 or 64 × 64 output tiles (the
//! tuner measures them as the family's variants on GPUs, [`forward_tiles`]; unmeasured, the
//! largest that gives two waves of an H200, [`forward_tile`]), 16-deep K slices, threads of
//! 8 × 8 accumulators read as vec4s from workgroup memory, the next slice prefetched into
//! registers. Weight gradient: 64 × 64 tiles of (co) × (tap, ci) over 16-pixel slices —
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
use crate::Gpu;

use Access::{Read, Write};

/// Threads of the largest GEMM workgroup (the weight gradient's, and the 128 × 128 forward).
const THREADS: u32 = 256;
const CONSTANTS: &[(&str, f64)] = &[("GEMM_THREADS", THREADS as f64)];

const FORWARD_WGSL: Shader = wgsl!(
    "conv2d/gemm/forward.wgsl",
    "conv2d/common.wgsl",
    "conv2d/gemm/geometry.wgsl",
    "conv2d/store.wgsl"
);
const BACKWARD_WEIGHT_WGSL: Shader = wgsl!(
    "conv2d/gemm/backward_weight.wgsl",
    "conv2d/common.wgsl",
    "conv2d/gemm/geometry.wgsl",
    "conv2d/partials.wgsl"
);

/// `conv2d_forward_gemm`: x, packed weights, then the store epilogue's bias, out, mask.
/// Launched with its tile's and the geometry's constants.
pub(crate) const FORWARD: KernelSpec = KernelSpec::new(
    FORWARD_WGSL,
    "conv2d_forward_gemm",
    &[(1, Write), (2, Read), (3, Read), (4, Write), (5, Write)],
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

/// The geometry of `a` and the tile, as the override constants of the forward's pipeline.
fn forward_constants(a: &ConvArgs, tile: Tile) -> Vec<(&'static str, f64)> {
    let mut c = a.geometry_constants().to_vec();
    c.extend(tile.constants());
    c
}

/// Pixels a K slice of the weight gradient holds.
const SLICE: usize = 16;

/// Records the forward kernel for `c` with the given tile (packing the weights first).
fn gemm_with_tile(rec: &mut Recording<'_>, c: &GemmCall<'_>, tile: Tile) -> Result<()> {
    with_packed_weights(rec, c.weight, c.transpose, |rec, packed| {
        let co_pad = c.g.y[1].next_multiple_of(8);
        let pixels = c.g.y[0] * c.g.y[2] * c.g.y[3];
        let tiles = tile.workgroups(pixels, co_pad);
        let a = c.args(tiles, co_pad / 8);
        let constants = forward_constants(&a, tile);
        let [bias, out, mask] = c.outputs();
        let buffers = [Some(read(c.x)), Some(read(packed)), bias, out, mask];
        let grid = Grid::Workgroups(tiles as u64);
        let kernel = FORWARD.specialised(&constants);
        rec.launch(kernel, &[a.bytes()], &buffers, &[], grid, c.cost)
    })
}

/// The tiles worth measuring for `c`'s output.
fn call_tiles(c: &GemmCall<'_>) -> Vec<Tile> {
    output_tiles(c.g.y)
}

/// The tiles worth measuring for a GEMM that writes an output of shape `y` (NCHW).
fn output_tiles(y: [usize; 4]) -> Vec<Tile> {
    forward_tiles(y[0] * y[2] * y[3], y[1].next_multiple_of(8))
}

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
        self.gemm_variant(rec, c, 0)
    }

    /// Its forward tiles ([`forward_tiles`]).
    fn gemm_variants(&self, c: &GemmCall<'_>) -> usize {
        call_tiles(c).len()
    }

    /// The forward kernel with tile `v` of [`forward_tiles`].
    fn gemm_variant(&self, rec: &mut Recording<'_>, c: &GemmCall<'_>, v: usize) -> Result<()> {
        match call_tiles(c).get(v) {
            Some(&tile) => gemm_with_tile(rec, c, tile),
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

    /// The tile of variant `v`: forward and input gradient `tile <pixels>x<channels>` of
    /// the GEMM the pass runs, weight gradient `tile <channels>x64`.
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
        let tiles = match key.pass {
            Pass::Forward => output_tiles(y),
            Pass::BackwardInput => output_tiles(key.x),
            Pass::BackwardWeight => {
                return weight_tiles(y[1])
                    .get(v)
                    .map(|t| format!("tile {t}x{WEIGHT_TILE}"))
                    .unwrap_or_default()
            }
        };
        tiles
            .get(v)
            .map(|t| format!("tile {}x{}", t.pixels, t.channels))
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

    /// Reports name a variant by its tile, as the pass's GEMM sees it.
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
        assert_eq!(Gemm.describe(&forward, 2), "");
        let weight = key(Pass::BackwardWeight, [8, 64, 14, 14], [256, 64, 3, 3]);
        assert_eq!(Gemm.describe(&weight, 1), "tile 128x64");
        // The input gradient's GEMM writes the 128 input channels (392 tiles of 128 x 64 by
        // the rule): a 128-wide tile is among the variants; the forward's 64 channels have none.
        let input = key(Pass::BackwardInput, [32, 128, 28, 28], [64, 128, 3, 3]);
        assert_eq!(Gemm.describe(&input, 0), "tile 128x64");
        assert_eq!(Gemm.describe(&input, 1), "tile 128x128");
        let forward = key(Pass::Forward, [32, 128, 28, 28], [64, 128, 3, 3]);
        assert!((0..3).all(|v| Gemm.describe(&forward, v) != "tile 128x128"));
    }

    /// What `conv2d/gemm/forward.wgsl`'s thread layout assumes of a tile (a tile past it
    /// would index its 4-entry register arrays out of bounds, which naga clamps into a wrong
    /// number, not an error): every row of a slice fetched by whole rows of threads, at most
    /// 4 fetches a thread per operand, at most `THREADS` threads and 16 KiB of workgroup
    /// memory (what `fits` checks the device for).
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

    /// Every tile against the f64 reference on a problem that leaves every tile partial
    /// (156 pixels, 72 channels) and crosses taps inside K slices (cin = 5), with stride,
    /// padding and dilation different per axis: what the geometry constants must get right.
    #[cfg(feature = "oracle")]
    #[test]
    fn every_forward_tile_matches_the_reference() {
        use crate::memory::Purpose;
        use crate::ops::conv2d::args::{ForwardArgs, Geometry};
        use crate::ops::conv2d::Fusion;
        use crate::tensor::Tensor;

        let (gpu, p) = (test_gpu(), skewed_params());
        let (xs, ws) = ([2, 5, 11, 13], [72, 5, 3, 3]);
        let value = |i: usize, k: usize| ((i * k) % 23) as f32 / 11.0 - 1.0;
        let xv: Vec<f32> = (0..xs.iter().product()).map(|i| value(i, 7)).collect();
        let wv: Vec<f32> = (0..ws.iter().product()).map(|i| value(i, 5)).collect();
        let bv: Vec<f32> = (0..ws[0]).map(|i| value(i, 3)).collect();
        let f64s = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
        let (want, ys) =
            crate::reference::conv2d(&f64s(&xv), xs, &f64s(&wv), ws, Some(&f64s(&bv)), &p).unwrap();
        let x = Tensor::from_slice(&gpu, xs, &xv, Purpose::Activation).unwrap();
        let w = Tensor::from_slice(&gpu, ws, &wv, Purpose::Parameter).unwrap();
        let b = Tensor::from_slice(&gpu, [ws[0], 1, 1, 1], &bv, Purpose::Parameter).unwrap();
        for t in TILES {
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
            let mut rec = Recording::new(&gpu);
            gemm_with_tile(&mut rec, &args.gemm(), t).unwrap();
            assert!(rec.kernels().contains(&"conv2d_forward_gemm"));
            rec.finish().unwrap();
            let got = out.to_vec(&gpu).unwrap();
            for (i, (&g, &e)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g as f64 - e).abs() <= 1e-4 * (1.0 + e.abs()),
                    "tile {t:?}, element {i}: {g} vs {e}"
                );
            }
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
