//! How a Winograd pass cuts its work to fit the device: the batch in parts of whole images
//! whose staged input, transformed input (V) and products (M) stay within the scratch
//! budget (at least enough tiles to keep the adapter busy and enough work to be worth a
//! part's launches) and the texture limit.

use std::ops::Range;

use crate::ops::conv2d::args::Geometry;
use crate::ops::conv2d::family::texture::stage::Extent;
use crate::ops::conv2d::partials::target_threads;
use crate::Conv2dParams;
use crate::Gpu;

/// The tiles of a pass and the sizes of its textures, for output tiles of side `m`.
pub(super) struct Plan {
    pub alpha: usize,
    pub tiles_h: usize,
    pub tiles_w: usize,
    /// Quads of input channels, and of output channels rounded up to 8.
    pub cq_in: usize,
    pub cq: usize,
    /// Where the input is staged: every tile's α × α patch inside, zero padding around.
    pub staged: Extent,
    limit: usize,
    /// The direct sum's FLOPs an image (what a part's share of the work is measured in).
    image_flops: usize,
}

/// The least work a part of the batch holds, in the direct sum's FLOPs, where the batch has
/// that much: each part costs its own staging and three launches (on lavapipe about 0.2 ms
/// a part, a tenth of a 64-channel 32² image's F(4×4) forward), so parts of one image under
/// a CPU adapter's 1 MiB budget spent 10–20% of forward+backward on launches (conv3x3_c128
/// 16² n8: 85 dispatches, 33.9 ms; the batch whole, 19 and 26.7). Never for more than
/// [`WORTH_MAX_BYTES`] of a part's textures (benches/NOTES.md, v35).
const MIN_PART_FLOPS: usize = 256_000_000;
/// The most a part grows to for [`MIN_PART_FLOPS`]: 4–6 MiB at 64 channels and more, where
/// a 256-MFLOP part lies (a few channels' convs have far more pixels a FLOP).
const WORTH_MAX_BYTES: usize = 16 << 20;

impl Plan {
    /// The plan for geometry `g` and parameters `p` (the transposed problem for an input
    /// gradient).
    pub fn new(gpu: &Gpu, g: &Geometry, p: &Conv2dParams, m: usize) -> Plan {
        let [_, cin, _, _] = g.x;
        let [_, cout, oh, ow] = g.y;
        let (tiles_h, tiles_w) = (oh.div_ceil(m), ow.div_ceil(m));
        Plan {
            alpha: m + 2,
            tiles_h,
            tiles_w,
            cq_in: cin.div_ceil(4),
            cq: cout.next_multiple_of(8) / 4,
            staged: Extent {
                rows: tiles_h * m + 2,
                cols: tiles_w * m + 2,
                top: p.padding[0],
                left: p.padding[1],
            },
            limit: gpu.limits().max_texture_dimension_2d as usize,
            image_flops: 2 * cin * cout * 9 * oh * ow,
        }
    }

    /// Tiles an image.
    pub fn per_image(&self) -> usize {
        self.tiles_h * self.tiles_w
    }

    /// U's size (width, height): the α² positions of every quad of output channels across,
    /// a row per input channel (rounded up to 4).
    pub fn filter_size(&self) -> (usize, usize) {
        (self.alpha * self.alpha * self.cq, 4 * self.cq_in)
    }

    /// V's size for `tiles` (a multiple of 16): a column per tile, a row per (position, quad
    /// of input channels).
    pub fn input_size(&self, tiles: usize) -> (usize, usize) {
        (tiles, self.alpha * self.alpha * self.cq_in)
    }

    /// M's size for `tiles`: a column per tile, a row per (position, quad of output
    /// channels).
    pub fn product_size(&self, tiles: usize) -> (usize, usize) {
        (tiles, self.alpha * self.alpha * self.cq)
    }

    /// The staged input's height for `images`.
    fn staged_rows(&self, images: usize) -> usize {
        images * self.cq_in * self.staged.rows
    }

    /// Whether `images` a part fit the texture limit.
    fn part_fits(&self, images: usize) -> bool {
        let tiles = (images * self.per_image()).next_multiple_of(16);
        [
            self.filter_size(),
            self.input_size(tiles),
            self.product_size(tiles),
            (self.staged.cols, self.staged_rows(images)),
        ]
        .iter()
        .all(|&(w, h)| w.max(h) <= self.limit)
    }

    /// Whether F(m×m, 3×3) fits the device for this problem at all (one image a part).
    pub fn fits(&self) -> bool {
        self.part_fits(1)
    }

    /// The fewest images (at most `n`) whose tiles waste at most an eighth of the GEMM's
    /// 16-tile blocks on padding: F(4×4) on a 7 × 7 image has 4 tiles, and a part of one
    /// image ran 16 tiles' products for 4 (lavapipe, 512 channels: 2.6× F(2×2)'s time).
    fn whole_blocks(&self, n: usize) -> usize {
        let per_image = self.per_image();
        (1..=n)
            .find(|k| (k * per_image).next_multiple_of(16) * 8 <= k * per_image * 9)
            .unwrap_or(n)
    }

    /// The parts of a batch of `n` images: as many a part as the staged input, V and M
    /// hold within the scratch budget, but enough tiles for the GEMM to run the adapter's
    /// target threads, few padding tiles ([`Plan::whole_blocks`]) and enough work to be worth
    /// a part's launches ([`MIN_PART_FLOPS`]), within the texture limit; as even as can be.
    pub fn image_parts(&self, gpu: &Gpu, n: usize) -> Vec<Range<usize>> {
        self.image_parts_within(gpu, n, gpu.scratch_budget() as usize)
    }

    /// [`Plan::image_parts`] within `budget` bytes instead of the scratch budget.
    pub fn image_parts_within(&self, gpu: &Gpu, n: usize, budget: usize) -> Vec<Range<usize>> {
        let a2 = self.alpha * self.alpha;
        let texel = 16;
        let per_image = texel
            * (self.staged.cols * self.staged_rows(1)
                + self.per_image() * a2 * (self.cq_in + self.cq));
        let by_budget = budget / per_image.max(1);
        // A GEMM thread owns 16 tiles × 8 output channels of one position.
        let busy_tiles = target_threads(gpu) * 16 * 8 / (a2 * 4 * self.cq);
        let busy = busy_tiles.div_ceil(self.per_image());
        let worth = MIN_PART_FLOPS
            .div_ceil(self.image_flops.max(1))
            .min((WORTH_MAX_BYTES / per_image.max(1)).max(1));
        let mut per = by_budget
            .max(busy)
            .max(worth)
            .max(self.whole_blocks(n))
            .clamp(1, n.max(1));
        while per > 1 && !self.part_fits(per) {
            per = (per / 2).max(1);
        }
        let parts = n.div_ceil(per).max(1);
        let per = n.div_ceil(parts);
        (0..parts)
            .map(|k| k * per..((k + 1) * per).min(n))
            .filter(|r| !r.is_empty())
            .collect()
    }
}
