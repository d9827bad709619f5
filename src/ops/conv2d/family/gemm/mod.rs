//! The GEMM family (`shaders/conv2d/gemm/`): implicit GEMM tiled in workgroup memory — the
//! shape fp32 convolution takes on a GPU. Forward and stride-1 input gradient
//! (`forward.rs`): 128 × 128, 128 × 64 or 64 × 64 output tiles, 16-deep K slices, threads of
//! 8 × 8 accumulators read as vec4s from workgroup memory, the next slice prefetched into
//! registers; the weights packed by a pass of their own first, or read from the OIHW tensor
//! in place. Weight gradient (`backward_weight.rs`): 64 × 64 or 128 × 64 tiles of (co) ×
//! (tap, ci) over 16-pixel slices, split-K into partial sums. groups = 1. Tiles and loaders
//! are the family's variants, which the tuner measures on GPUs.
//!
//! Every pipeline is specialised to its problem's geometry (kernel, stride, padding,
//! dilation, channels, image sizes as override constants: `ConvArgs::geometry_constants`)
//! and the forward to its tile, so the index arithmetic divides by constants; one pipeline
//! is compiled per distinct geometry and cached by the `Gpu`.
//!
//! On a CPU adapter it is slow (lavapipe runs barriers and workgroup memory as loops), so
//! `auto` only measures it on GPUs.

mod backward_weight;
mod forward;
#[cfg(all(test, feature = "oracle"))]
mod oracle_tests;

pub(crate) use backward_weight::{weight_variants, WeightVariant, BACKWARD_WEIGHT};
#[cfg(test)]
pub(crate) use forward::compiled_forward_variants;
#[cfg(test)]
pub(crate) use forward::Weights;
pub(crate) use forward::{output_variants, ForwardVariant, FORWARD, FORWARD_OIHW};

use backward_weight::weight_gradient_with;
use forward::gemm_with;

use crate::error::Result;
use crate::gpu::KernelSpec;
use crate::ops::conv2d::args::{GemmCall, WeightGradArgs};
use crate::ops::conv2d::family::shaped::GemmShaped;
use crate::ops::conv2d::family::Info;
use crate::ops::conv2d::family::{no_variant, Pass, TuneKey};
use crate::ops::conv2d::Conv2dParams;
use crate::record::Recording;
use crate::Gpu;

/// Threads of the largest GEMM workgroup (the weight gradient's, and the 128 × 128 forward).
const THREADS: u32 = 256;
const CONSTANTS: &[(&str, f64)] = &[("GEMM_THREADS", THREADS as f64)];

/// The GEMM family.
pub(crate) struct Gemm;

impl Info for Gemm {
    fn name(&self) -> &'static str {
        "gemm"
    }

    fn summary(&self) -> &'static str {
        "implicit GEMM tiled in workgroup memory (tiles and weight loaders measured on GPUs), split-K weight gradient"
    }

    /// Many threads, workgroup memory and barriers: never measured on CPU adapters.
    fn gpu_shaped(&self) -> bool {
        true
    }

    fn kernels(&self) -> &'static [&'static KernelSpec] {
        &[&FORWARD, &FORWARD_OIHW, &BACKWARD_WEIGHT]
    }
}

impl GemmShaped for Gemm {
    /// Packs the weights and runs the tiled forward kernel with the rule's tile.
    fn gemm(&self, rec: &mut Recording<'_>, c: &GemmCall<'_>) -> Result<()> {
        self.gemm_variant(rec, c, 0)
    }

    /// Its forward tiles on packed and on in-place weights ([`output_variants`]).
    fn gemm_variants(&self, c: &GemmCall<'_>) -> usize {
        output_variants(c.g.y, c.g.taps()).len()
    }

    /// The forward kernel as variant `v` of [`output_variants`].
    fn gemm_variant(&self, rec: &mut Recording<'_>, c: &GemmCall<'_>, v: usize) -> Result<()> {
        match output_variants(c.g.y, c.g.taps()).get(v) {
            Some(&variant) => gemm_with(rec, c, variant),
            None => Err(no_variant("gemm", v)),
        }
    }

    /// Where the device allows 256-thread workgroups and 16 KiB of workgroup memory.
    fn fits(&self, gpu: &Gpu) -> bool {
        let limits = gpu.limits();
        limits.max_compute_invocations_per_workgroup >= THREADS
            && limits.max_compute_workgroup_size_x >= THREADS
            && limits.max_compute_workgroup_storage_size >= 16 << 10
    }

    /// The 64-channel tile with the rule's splits ([`weight_variants`]' first).
    fn weight_gradient(&self, rec: &mut Recording<'_>, c: &WeightGradArgs<'_>) -> Result<()> {
        weight_gradient_with(rec, c, weight_variants(c.g.w[0])[0])
    }

    /// Variant `v`: forward and input gradient `tile <pixels>x<channels>` of the GEMM the
    /// pass runs (`, OIHW in place` where it reads the weights unpacked), weight gradient
    /// `tile <channels>x64` (`, splits x<f>` with more splits than the rule's).
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
        let taps = key.w[2] * key.w[3];
        let variants = match key.pass {
            Pass::Forward => output_variants(y, taps),
            Pass::BackwardInput => output_variants(key.x, taps),
            Pass::BackwardWeight => {
                return weight_variants(y[1])
                    .get(v)
                    .map(WeightVariant::to_string)
                    .unwrap_or_default()
            }
        };
        variants
            .get(v)
            .map(ForwardVariant::to_string)
            .unwrap_or_default()
    }

    /// Its weight-gradient tiles and split factors ([`weight_variants`]).
    fn weight_variants(&self, c: &WeightGradArgs<'_>) -> usize {
        weight_variants(c.g.w[0]).len()
    }

    /// The weight gradient as variant `v` of [`weight_variants`].
    fn weight_variant(
        &self,
        rec: &mut Recording<'_>,
        c: &WeightGradArgs<'_>,
        v: usize,
    ) -> Result<()> {
        match weight_variants(c.g.w[0]).get(v) {
            Some(&variant) => weight_gradient_with(rec, c, variant),
            None => Err(no_variant("gemm", v)),
        }
    }
}
#[cfg(test)]
mod tests {
    use super::forward::*;
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
        let variants = output_variants(y, 9);
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

    /// Reports name a variant by its tile, as the pass's GEMM sees it, and by where it reads
    /// the weights.
    #[test]
    fn variants_are_described_by_their_tiles() {
        use crate::ops::conv2d::family::TuneKey;
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
        assert_eq!(Gemm.describe(&weight, 0), "tile 64x64");
        assert_eq!(Gemm.describe(&weight, 1), "tile 64x64, splits x4");
        assert_eq!(Gemm.describe(&weight, 2), "tile 64x64, splits x16");
        assert_eq!(Gemm.describe(&weight, 3), "tile 128x64");
        assert_eq!(Gemm.describe(&weight, 5), "tile 128x64, splits x16");
        assert_eq!(Gemm.describe(&weight, 6), "");
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
        for tile_co in backward_weight::weight_tiles(512) {
            assert!((4 * tile_co + 256) * 16 <= 16 << 10, "{tile_co}");
        }
    }
}
