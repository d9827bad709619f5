//! The Winograd family's weight gradient, F(3×3, m×m) for m = 2 or 4
//! (`shaders/conv2d/winograd/weight.wgsl`): per part of the batch the input staged and
//! transformed as the F(m×m) forward does (V), the output gradient staged and transformed by
//! A h Aᵀ (D), and one GEMM per position of the α × α tile summing Dᵀ V over the part's tiles
//! into split partial sums S (each part after the first adds to them); then one launch sums
//! the splits and transforms them back to the 3 × 3 taps. 16 products a 2 × 2 tile for 36
//! direct ones; 36 a 4 × 4 tile for 144. Where a (co, ci)'s taps
//! come out NaN or Inf (a non-finite input spreads through the transforms), two launches more
//! compute that (co, ci) again as the direct sum, the other threads returning at once, so
//! the gradient's NaN and Inf are where PyTorch's are.

use super::{input_transform, plan::Plan, share, wino_texture, WinoArgs, WEIGHT_WGSL};
use crate::error::Result;
use crate::gpu::{Access, KernelSpec, Specialised, StagingKind};
use crate::ops::conv2d::args::{bytes_of, view, ConvArgs, Geometry, WeightGradArgs};
use crate::ops::conv2d::budget::{rows_per_split, LOOP_BUDGET, SERIAL_TERMS};
use crate::ops::conv2d::family::texture::stage::{stage_activation, Extent};
use crate::ops::conv2d::partials::target_threads;
use crate::ops::conv2d::Conv2dParams;
use crate::ops::rebase;
use crate::record::{read, write, Cost, Grid, Recording};
use crate::Gpu;

use Access::{Read, Write};

/// `conv2d_winograd_grad_transform`: the staged output gradient (texture 6) → D (11).
pub(crate) const GRAD_TRANSFORM: KernelSpec =
    KernelSpec::new(WEIGHT_WGSL, "conv2d_winograd_grad_transform", &[])
        .with_textures(&[6, 11])
        .with_uniforms(&[10, 14]);
/// `conv2d_winograd_weight_gemm`: V, D (textures 12, 13) → the partial sums S (3).
pub(crate) const WEIGHT_GEMM: KernelSpec =
    KernelSpec::new(WEIGHT_WGSL, "conv2d_winograd_weight_gemm", &[(3, Write)])
        .with_textures(&[12, 13])
        .with_uniforms(&[10, 14]);
/// `conv2d_winograd_weight_output`: S (4) → the weight gradient (5) where finite, and the
/// flags (7) of the (co, ci) that are not.
pub(crate) const WEIGHT_OUTPUT: KernelSpec = KernelSpec::new(
    WEIGHT_WGSL,
    "conv2d_winograd_weight_output",
    &[(4, Read), (5, Write), (7, Write)],
)
.with_uniforms(&[14]);
/// `conv2d_winograd_weight_direct`: x (1), the output gradient (2) and the flags (7) → the
/// flagged (co, ci)'s direct partial sums (3).
pub(crate) const WEIGHT_DIRECT: KernelSpec = KernelSpec::new(
    WEIGHT_WGSL,
    "conv2d_winograd_weight_direct",
    &[(1, Write), (2, Write), (3, Write), (7, Write)],
)
.with_uniforms(&[0]);
/// `conv2d_winograd_weight_direct_sum`: the direct partial sums (4) and the flags (7) → the
/// flagged (co, ci)'s weight gradient (5).
pub(crate) const WEIGHT_DIRECT_SUM: KernelSpec = KernelSpec::new(
    WEIGHT_WGSL,
    "conv2d_winograd_weight_direct_sum",
    &[(4, Read), (5, Write), (7, Write)],
)
.with_uniforms(&[14]);

/// The weight kernels' arguments (`WinoWeight` in the shader).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct WeightArgs {
    cin: u32,
    cout: u32,
    splits: u32,
    per_split: u32,
    add: u32,
    accumulate: u32,
    w_offset: u32,
    count: u32,
    oh: u32,
    ow: u32,
    _pad: [u32; 2],
}

/// Tiles one partial sum runs through in a part, at most: a running sum in the Winograd
/// domain rounds like any other, and the output transform magnifies it; 256 tiles of 4 × 4
/// a sum (64 channels, 32², parts of four images) put a weight gradient 1.7e-4 from the
/// oracle's where 1e-4·(1 + |ref|) is the bound, 64 (parts of one image) stayed within it
/// (benches/NOTES.md, v35).
const SPLIT_TILES: usize = 64;

/// The parts of the batch the weight gradient works in: as the forward's, but within at
/// least one split's sums' size (α² × cout × cin values) rather than the scratch budget
/// alone — each part reads and writes every split's sums once, so parts whose textures are
/// smaller than the sums spend more on them than on the products (benches/NOTES.md, v34).
fn weight_parts(gpu: &Gpu, g: &Geometry, plan: &Plan) -> Vec<std::ops::Range<usize>> {
    let sums = 4 * plan.alpha * plan.alpha * g.y[1] * g.x[1];
    let budget = (gpu.scratch_budget() as usize).max(sums);
    plan.image_parts_within(gpu, g.x[0], budget)
}

/// How the reduction over tiles splits: (splits, tiles a split sums in each part), or `None`
/// where even the fewest splits' partial sums exceed one binding.
pub(super) fn weight_splits(gpu: &Gpu, g: &Geometry, plan: &Plan) -> Option<(usize, usize)> {
    let [n, cin, _, _] = g.x;
    let cout = g.y[1];
    let a2 = plan.alpha * plan.alpha;
    let position_sums = a2 * cout * cin;
    let part_tiles = weight_parts(gpu, g, plan).iter().map(|r| r.len()).max()? * plan.per_image();
    let total_tiles = n * plan.per_image();
    let base_threads = a2 * cin.div_ceil(8) * cout.div_ceil(16);
    // Each partial sum adds a split's tiles of every part: at most SERIAL_TERMS in all, at
    // most SPLIT_TILES a part, and a thread's loop within the budget; more splits where the
    // adapter wants threads, as many as the output transform's loop (α² sums of every split)
    // and one binding allow.
    let fewest = total_tiles
        .div_ceil(SERIAL_TERMS)
        .max(part_tiles.div_ceil(SPLIT_TILES))
        .max(part_tiles.div_ceil(LOOP_BUDGET))
        .max(1);
    let binding = gpu.limits().max_storage_buffer_binding_size as usize;
    let most = (LOOP_BUDGET / (2 * a2)).min(binding / (4 * position_sums));
    let by_budget = gpu.scratch_budget() as usize / (4 * position_sums);
    let wanted = target_threads(gpu)
        .div_ceil(base_threads)
        .min(part_tiles)
        .min(by_budget);
    (fewest <= most).then(|| {
        let splits = wanted.clamp(fewest, most);
        (splits, part_tiles.div_ceil(splits))
    })
}

impl super::Winograd {
    /// Records the weight gradient `c` as F(3×3, m×m) (see the module's note).
    pub(super) fn weight_gradient(
        &self,
        rec: &mut Recording<'_>,
        c: &WeightGradArgs<'_>,
        m: usize,
    ) -> Result<()> {
        let plan = Plan::new(rec.gpu(), &c.g, &c.p, m);
        let a2 = plan.alpha * plan.alpha;
        let (splits, per_split) =
            weight_splits(rec.gpu(), &c.g, &plan).ok_or_else(|| crate::Error::Gpu {
                during: "recording a convolution".into(),
                message: "internal error: the winograd weight gradient does not fit".into(),
            })?;
        let constants = [("WINO_M", m as f64)];
        let kernel = |spec| Specialised {
            spec,
            constants: &constants,
        };
        let [n, cin, _, _] = c.g.x;
        let [_, cout, oh, ow] = c.g.y;
        let base = WinoArgs {
            tiles_h: plan.tiles_h as u32,
            tiles_w: plan.tiles_w as u32,
            cq_in: plan.cq_in as u32,
            cout_pad: 4 * plan.cq as u32,
            rows: plan.staged.rows as u32,
            ..Default::default()
        };
        let weight = WeightArgs {
            cin: cin as u32,
            cout: cout as u32,
            splits: splits as u32,
            per_split: per_split as u32,
            accumulate: c.fusion.accumulate as u32,
            w_offset: c.grad_weight.offset_u32(),
            oh: oh as u32,
            ow: ow as u32,
            ..Default::default()
        };
        let (rows_per, direct_splits) =
            fallback_splits(rec.gpu(), &c.g).ok_or_else(|| crate::Error::Gpu {
                during: "recording a convolution".into(),
                message: "internal error: the winograd weight gradient's fallback does not fit"
                    .into(),
            })?;
        let taps = cout * cin * 9;
        let sums_len = (splits * a2 * cout * cin).max(direct_splits * taps);
        let sums = rec.scratch_tensor([sums_len, 1, 1, 1])?;
        let flags = rec.scratch_tensor([cout * cin, 1, 1, 1])?;
        let total = n * plan.per_image();
        for (k, images) in weight_parts(rec.gpu(), &c.g, &plan).into_iter().enumerate() {
            let real = images.len() * plan.per_image();
            let tiles = real.next_multiple_of(16);
            let part = WinoArgs {
                tiles: tiles as u32,
                real_tiles: real as u32,
                t0: (images.start * plan.per_image()) as u32,
                n0: images.start as u32,
                ..base
            };
            // V = Bᵀ d B, as the forward's.
            let v = input_transform(rec, &plan, c.x, &images, c.fusion.relu_input, &part, m)?;

            // D = A h Aᵀ from the part's output gradient.
            let go = rebase(rec.gpu(), &c.grad_out.batches(images.clone())?);
            let g_staged = stage_activation(rec, &go, Extent::plain(go.shape()), false)?;
            let d = wino_texture(rec, StagingKind::Activation, plan.product_size(tiles))?;
            let threads = tiles * cout.div_ceil(4);
            let a = WeightArgs {
                count: threads as u32,
                ..weight
            };
            rec.launch(
                kernel(&GRAD_TRANSFORM),
                &[bytemuck::bytes_of(&part), bytemuck::bytes_of(&a)],
                &[],
                &[&g_staged.view, &d.view],
                Grid::Threads(threads as u64),
                Cost {
                    flops: 0,
                    bytes: 16 * (threads * (m * m + a2)) as u64,
                },
            )?;
            g_staged.done(rec);

            // S (+)= Dᵀ V at each of the α² positions, split over the part's tiles.
            let threads = splits * a2 * cin.div_ceil(8) * cout.div_ceil(16);
            let a = WeightArgs {
                count: threads as u32,
                add: (k > 0) as u32,
                ..weight
            };
            rec.launch(
                kernel(&WEIGHT_GEMM),
                &[bytemuck::bytes_of(&part), bytemuck::bytes_of(&a)],
                &[Some(write(&sums))],
                &[&v.view, &d.view],
                Grid::Threads(threads as u64),
                Cost {
                    flops: share(c.g.tap_flops(), real, total),
                    bytes: 16 * (a2 * tiles * (plan.cq_in + plan.cq)) as u64,
                },
            )?;
            v.done(rec);
            d.done(rec);
        }

        // dW (+)= Gᵀ (Σ S) G.
        let threads = cout * cin;
        let a = WeightArgs {
            count: threads as u32,
            ..weight
        };
        let outputs = c.grad_weight.numel() * (1 + c.fusion.accumulate as usize);
        rec.launch(
            kernel(&WEIGHT_OUTPUT),
            &[bytemuck::bytes_of(&a)],
            &[
                Some(read(&sums)),
                Some(write(c.grad_weight)),
                Some(write(&flags)),
            ],
            &[],
            Grid::Threads(threads as u64),
            Cost {
                flops: (splits * a2 * cout * cin) as u64,
                bytes: 4 * (splits * a2 * cout * cin + outputs) as u64,
            },
        )?;

        // The flagged (co, ci) again, as the direct sum: partial sums over splits of the
        // output rows, then their sum into the gradient. With every tap finite (the usual
        // case) each thread reads its flag and returns; the costs say so.
        let threads = direct_splits * cout * cin;
        let mut direct = ConvArgs::new(&c.g, &c.p, threads, c.fusion);
        direct.x_view = view(c.x);
        direct.y_view = view(c.grad_out);
        direct.per_split = rows_per as u32;
        rec.launch(
            kernel(&WEIGHT_DIRECT),
            &[direct.bytes()],
            &[
                Some(read(c.x)),
                Some(read(c.grad_out)),
                Some(write(&sums)),
                Some(read(&flags)),
            ],
            &[],
            Grid::Threads(threads as u64),
            Cost {
                flops: 0,
                bytes: bytes_of(&[threads]),
            },
        )?;
        let a = WeightArgs {
            count: (cout * cin) as u32,
            splits: direct_splits as u32,
            ..weight
        };
        rec.launch(
            kernel(&WEIGHT_DIRECT_SUM),
            &[bytemuck::bytes_of(&a)],
            &[
                Some(read(&sums)),
                Some(write(c.grad_weight)),
                Some(read(&flags)),
            ],
            &[],
            Grid::Threads((cout * cin) as u64),
            Cost {
                flops: 0,
                bytes: bytes_of(&[cout * cin]),
            },
        )?;
        rec.scratch_done(sums);
        rec.scratch_done(flags);
        Ok(())
    }
}

/// The direct fallback's splits of the output rows, as the direct family's (rows a split,
/// splits), or `None` where they do not fit: its sum launch loops over 9 × splits partial
/// sums (within the loop budget) and their partial sums must fit one binding.
pub(super) fn fallback_splits(gpu: &Gpu, g: &Geometry) -> Option<(usize, usize)> {
    let [n, cin, _, _] = g.x;
    let [_, cout, oh, ow] = g.y;
    let rows = n * oh;
    let per = rows_per_split(ow, 2, "weight gradient")
        .ok()?
        .min(rows)
        .max(1);
    let splits = rows.div_ceil(per);
    let binding = gpu.limits().max_storage_buffer_binding_size as usize;
    (9 * splits <= LOOP_BUDGET && 4 * splits * cout * cin * 9 <= binding).then_some((per, splits))
}

/// Whether the weight gradient of `g`, `p` fits the device as F(3×3, m×m) for both m, its
/// direct fallback included.
pub(super) fn weight_fits(gpu: &Gpu, g: &Geometry, p: &Conv2dParams) -> bool {
    fallback_splits(gpu, g).is_some()
        && super::TILE_SIDES.iter().all(|&m| {
            let plan = Plan::new(gpu, g, p, m);
            plan.fits() && weight_splits(gpu, g, &plan).is_some()
        })
}
