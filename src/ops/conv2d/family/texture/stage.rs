//! Staging for the texture family: before a kernel that reads its operands through the
//! texture unit runs, the activation and the weights are copied into `rgba32float`
//! textures, four channels a texel, zero padding and ReLU already applied
//! (`shaders/conv2d/texture/stage.wgsl`, `conv2d_weight_layout_texture`).

use crate::error::Result;
use crate::gpu::{Access, KernelSpec, Shader, StagingKind};
use crate::ops::conv2d::args::{narrow_input, view, Geometry};
use crate::ops::conv2d::family::pack::{LayoutArgs, PACK_TEXTURE};
use crate::ops::conv2d::Conv2dParams;
use crate::record::{read, Cost, Grid, Recording};
use crate::tensor::Tensor;
use StagingKind::{Activation, Weights};

const STAGE: Shader = wgsl!("conv2d/texture/stage.wgsl");
/// This shader's own constants.
const STAGE_CONSTANTS: &[(&str, f64)] = &[("COPY_WIDTH", COPY_WIDTH as f64)];

/// `texture_pack_activation`: a view (binding 1) → its staged texture (2).
pub(crate) const STAGE_VIEW: KernelSpec =
    KernelSpec::new(STAGE, "texture_pack_activation", &[(1, Access::Read)])
        .with_textures(&[2])
        .with_constants(STAGE_CONSTANTS);
/// `texture_pack_from_copy`: a view's texture copy (binding 4) → its staged texture (2).
pub(crate) const STAGE_COPY: KernelSpec = KernelSpec::new(STAGE, "texture_pack_from_copy", &[])
    .with_textures(&[2, 4])
    .with_constants(STAGE_CONSTANTS);

/// A staged texture: its view for binding, given back to the recording with
/// [`Staged::done`] once the dispatches that read it are recorded.
pub(crate) struct Staged {
    texture: wgpu::Texture,
    pub view: wgpu::TextureView,
}

impl Staged {
    /// A `width` × `height` staging texture, a new one `width` × `reserve`.
    pub(crate) fn new(
        rec: &mut Recording<'_>,
        kind: StagingKind,
        width: usize,
        height: usize,
        reserve: usize,
    ) -> Result<Staged> {
        let (w, h, r) = (width as u32, height as u32, reserve as u32);
        let (texture, view) = rec.staging_texture(kind, w, h, r)?;
        Ok(Staged { texture, view })
    }

    /// Every reader is recorded: later staging may reuse the texture.
    pub fn done(self, rec: &mut Recording<'_>) {
        rec.staging_done(&self.texture);
    }
}

/// Where an activation sits in its staged texture: `rows` texture rows per (image,
/// 4-channel group) plane, `cols` texels a row, the image starting `top` rows and `left`
/// columns in (the zero padding before it).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Extent {
    pub rows: usize,
    pub cols: usize,
    pub top: usize,
    pub left: usize,
}

impl Extent {
    /// The input of a conv: zero padding stored, and wide and tall enough for every tap of
    /// every 16-pixel block (the last block may hang over the row's end) to stay inside.
    pub fn input(g: &Geometry, p: &Conv2dParams) -> Extent {
        let [_, _, kh, kw] = g.w;
        let [_, _, oh, ow] = g.y;
        Extent {
            rows: (oh - 1) * p.stride[0] + (kh - 1) * p.dilation[0] + 1,
            cols: (ow.next_multiple_of(16) - 1) * p.stride[1] + (kw - 1) * p.dilation[1] + 1,
            top: p.padding[0],
            left: p.padding[1],
        }
    }

    /// A tensor staged as it is (no padding).
    pub fn plain(shape: [usize; 4]) -> Extent {
        Extent {
            rows: shape[2],
            cols: shape[3],
            top: 0,
            left: 0,
        }
    }

    /// The texture's size for a tensor of `shape`: (width, height) in texels.
    fn size(&self, shape: [usize; 4]) -> (usize, usize) {
        (self.cols, shape[0] * shape[1].div_ceil(4) * self.rows)
    }
}

/// The staged weights' texture size (width, height) in texels: output channels (input
/// channels when `transpose`) rounded up to 8, four a texel; a row per (tap, channel).
fn weight_size(weight: [usize; 4], transpose: bool) -> (usize, usize) {
    let [cout, cin, kh, kw] = weight;
    let (rows, cols) = if transpose { (cout, cin) } else { (cin, cout) };
    (
        cols.next_multiple_of(8) / 4,
        kh * kw * rows.next_multiple_of(4),
    )
}

/// Whether every texture a texture-family pass would stage fits the device's
/// `max_texture_dimension_2d`: activations of the given shapes (the least part of the
/// batch or channels the pass stages at once), and the weights (the family falls back to
/// register-blocked where not).
pub(crate) fn fits(
    gpu: &crate::Gpu,
    staged: &[([usize; 4], Extent)],
    weight: Option<([usize; 4], bool)>,
) -> bool {
    let limit = gpu.limits().max_texture_dimension_2d as usize;
    let ok = |(w, h): (usize, usize)| w.max(h) <= limit;
    staged.iter().all(|(shape, e)| ok(e.size(*shape)))
        && weight.is_none_or(|(shape, transpose)| ok(weight_size(shape, transpose)))
}

/// Rows of a `width`-texel staging texture that hold the scratch budget (within the
/// device's limit).
fn budget_rows(gpu: &crate::Gpu, width: usize) -> usize {
    let limit = gpu.limits().max_texture_dimension_2d as usize;
    (gpu.scratch_budget() as usize / (16 * width)).clamp(1, limit)
}

/// The height to allocate for a new `width` × `height` activation staging texture: the
/// budget's where it takes an eighth of the budget or more and fits it (a batch in parts
/// asks as much again at every layer, so one texture serves them all), else the next power
/// of two (a sequence of growing needs reuses a few: small ones, and ones past the budget
/// that a part of one image, or the Winograd family's busy floor, asks).
fn activation_reserve(gpu: &crate::Gpu, width: usize, height: usize) -> usize {
    let budget = budget_rows(gpu, width);
    if 8 * 16 * width * height >= gpu.scratch_budget() as usize && height <= budget {
        budget
    } else {
        pow2_reserve(gpu, height)
    }
}

/// `height` rounded up to a power of two, within the device's limit.
pub(crate) fn pow2_reserve(gpu: &crate::Gpu, height: usize) -> usize {
    let limit = gpu.limits().max_texture_dimension_2d as usize;
    Some(height.next_power_of_two())
        .filter(|&h| h <= limit)
        .unwrap_or(height)
}

/// How a pass that reduces over the channels of an activation of `shape` staged by `e`
/// works within the scratch budget.
pub(crate) enum Parts {
    /// Parts of the batch, each written once.
    Batch(Vec<std::ops::Range<usize>>),
    /// Parts of the channels, each after the first adding to the output.
    Channels(Vec<std::ops::Range<usize>>),
}

/// The parts: the whole batch where it fits the budget; else parts of the batch where each
/// still runs `min_threads` of the kernel's `threads_per_image` (enough to keep the
/// adapter busy, and no output read back and written again); else parts of the channels,
/// which keep every image in each launch.
pub(crate) fn parts(
    gpu: &crate::Gpu,
    shape: [usize; 4],
    e: Extent,
    threads_per_image: usize,
    min_threads: usize,
) -> Parts {
    let batch = batch_parts(gpu, shape[0], &[(shape, e)]);
    let busy = batch[0].len() * threads_per_image >= min_threads;
    if batch.len() == 1 || busy {
        Parts::Batch(batch)
    } else {
        Parts::Channels(channel_parts(gpu, shape, e))
    }
}

/// The parts of the channels of an activation of `shape` staged by `e` that a pass
/// reducing over them works through (each adding to the output): as many 4-channel groups
/// a part as its staged texture, and the copy it is staged from, holds within the scratch
/// budget for the whole batch (at least one group), the parts as even as they can be.
/// Every part but the last is a multiple of 4 channels, as the staged weights' rows are.
fn channel_parts(
    gpu: &crate::Gpu,
    [n, c, h, w]: [usize; 4],
    e: Extent,
) -> Vec<std::ops::Range<usize>> {
    let groups = c.div_ceil(4);
    let by_staged = budget_rows(gpu, e.cols) / (n * e.rows).max(1);
    let by_copy = budget_rows(gpu, COPY_WIDTH) / (n * (4 * h * w).div_ceil(4 * COPY_WIDTH)).max(1);
    let per = by_staged.min(by_copy).clamp(1, groups.max(1));
    let parts = groups.div_ceil(per);
    let per = groups.div_ceil(parts.max(1));
    (0..parts)
        .map(|k| 4 * k * per..(4 * (k + 1) * per).min(c))
        .collect()
}

/// The parts of a batch of `n` images a pass that stages the activations `staged` works
/// through: as many images a part as each staged texture, and the copy it is staged from,
/// holds within the scratch budget (at least one), the parts as even as they can be.
pub(crate) fn batch_parts(
    gpu: &crate::Gpu,
    n: usize,
    staged: &[([usize; 4], Extent)],
) -> Vec<std::ops::Range<usize>> {
    let images = |width: usize, rows: usize| budget_rows(gpu, width) / rows.max(1);
    let per = staged
        .iter()
        .map(|&([_, c, h, w], e)| {
            let staged_rows = e.size([1, c, h, w]).1;
            let copy_rows = (c * h * w).div_ceil(4 * COPY_WIDTH);
            images(e.cols, staged_rows).min(images(COPY_WIDTH, copy_rows))
        })
        .min()
        .unwrap_or(n)
        .clamp(1, n.max(1));
    let parts = n.div_ceil(per);
    let per = n.div_ceil(parts.max(1));
    (0..parts)
        .map(|k| k * per..((k + 1) * per).min(n))
        .collect()
}

/// Stages the view `t` (ReLU'd when `relu`) in a texture laid out by `e`.
pub(crate) fn stage_activation(
    rec: &mut Recording<'_>,
    t: &Tensor,
    e: Extent,
    relu: bool,
) -> Result<Staged> {
    let [_, c, h, w] = t.shape();
    let (width, height) = e.size(t.shape());
    let reserve = activation_reserve(rec.gpu(), width, height);
    let tex = Staged::new(rec, Activation, width, height, reserve)?;
    #[repr(C)]
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    struct Pack {
        dims: [u32; 4],
        place: [u32; 4],
        view: [u32; 2],
        relu: u32,
        count: u32,
        quads: u32,
        quad0: u32,
        image_rows: u32,
        _pad: u32,
    }
    // Threads take quads of 4 image columns (aligned to the image) covering the texture's
    // columns, image columns -left .. cols - left.
    let quad0 = e.left.div_ceil(4);
    let quads = quad0 + e.cols.saturating_sub(e.left).div_ceil(4);
    let threads = height * quads;
    let aligned = w.is_multiple_of(4)
        && t.offset().is_multiple_of(4)
        && t.batch_stride_u32().is_multiple_of(4);
    let a = Pack {
        dims: [c as u32, h as u32, w as u32, c.div_ceil(4) as u32],
        place: [e.rows as u32, e.cols as u32, e.top as u32, e.left as u32],
        view: view(t),
        relu: relu as u32,
        count: threads as u32,
        quads: quads as u32,
        quad0: quad0 as u32,
        image_rows: 0,
        _pad: 0,
    };
    let texels = width * height;
    let cost = Cost {
        flops: 0,
        bytes: 4 * (t.numel() + 4 * texels) as u64,
    };
    let grid = Grid::Threads(threads as u64);
    // Where the view is 4-aligned and the copy fits a texture, copy it (a memcpy on CPU
    // adapters) and stage from the copy: texel fetches instead of per-lane buffer loads.
    let sample = c * h * w;
    let image_rows = sample.div_ceil(4 * COPY_WIDTH);
    let limit = rec.gpu().limits().max_texture_dimension_2d as usize;
    if aligned && t.shape()[0] * image_rows <= limit {
        let rows = t.shape()[0] * image_rows;
        let reserve = activation_reserve(rec.gpu(), COPY_WIDTH, rows);
        let copy = Staged::new(rec, Activation, COPY_WIDTH, rows, reserve)?;
        copy_view_into(rec, t, &copy.texture, image_rows)?;
        let a = Pack {
            image_rows: image_rows as u32,
            ..a
        };
        let args = [bytemuck::bytes_of(&a)];
        rec.launch(
            &STAGE_COPY,
            &args,
            &[],
            &[&tex.view, &copy.view],
            grid,
            cost,
        )?;
        copy.done(rec);
        return Ok(tex);
    }
    let args = [bytemuck::bytes_of(&a)];
    rec.launch(
        &STAGE_VIEW,
        &args,
        &[Some(read(t))],
        &[&tex.view],
        grid,
        cost,
    )?;
    Ok(tex)
}

/// Texels a row of the copy `texture_pack_from_copy` stages from (`COPY_WIDTH` there): 4 KiB
/// rows, a multiple of the 256 bytes a buffer-to-texture copy's rows must be.
const COPY_WIDTH: usize = 256;

/// Copies view `t` into `copy` as it lies, 4 floats a texel, `COPY_WIDTH` texels a row,
/// image `n` from row `n * image_rows` (the view must be 4-aligned).
fn copy_view_into(
    rec: &mut Recording<'_>,
    t: &Tensor,
    copy: &wgpu::Texture,
    image_rows: usize,
) -> Result<()> {
    rec.gpu().check_owner(t.buffer(), "staging a texture")?;
    rec.note_read(t);
    let [n, c, h, w] = t.shape();
    let sample = c * h * w;
    let row_floats = 4 * COPY_WIDTH;
    let full = sample / row_floats;
    let rest = sample % row_floats;
    let encoder = rec.encoder();
    for i in 0..n {
        let offset = 4 * (t.offset() as u64 + i as u64 * t.batch_stride_u32() as u64);
        let y = (i * image_rows) as u32;
        // Whole rows, then the partial last one.
        for (rows, width, skip) in [
            (full, COPY_WIDTH, 0),
            (usize::from(rest > 0), rest / 4, full),
        ] {
            if rows == 0 || width == 0 {
                continue;
            }
            encoder.copy_buffer_to_texture(
                wgpu::TexelCopyBufferInfo {
                    buffer: t.raw(),
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: offset + (skip * row_floats * 4) as u64,
                        bytes_per_row: Some((row_floats * 4) as u32),
                        rows_per_image: Some(rows as u32),
                    },
                },
                wgpu::TexelCopyTextureInfo {
                    texture: copy,
                    mip_level: 0,
                    origin: wgpu::Origin3d {
                        x: 0,
                        y: y + skip as u32,
                        z: 0,
                    },
                    aspect: wgpu::TextureAspect::All,
                },
                wgpu::Extent3d {
                    width: width as u32,
                    height: rows as u32,
                    depth_or_array_layers: 1,
                },
            );
        }
    }
    Ok(())
}

/// Stages OIHW weights (transposed and flipped when `transpose`, for the input gradient)
/// as `conv2d_weight_layout_texture` lays them out.
pub(crate) fn stage_weights(
    rec: &mut Recording<'_>,
    weight: &Tensor,
    transpose: bool,
) -> Result<Staged> {
    let (width, height) = weight_size(weight.shape(), transpose);
    let tex = Staged::new(rec, Weights, width, height, pow2_reserve(rec.gpu(), height))?;
    let texels = width * height;
    let a = LayoutArgs::new(weight.shape(), 4 * width, transpose, texels);
    rec.launch(
        &PACK_TEXTURE,
        &[bytemuck::bytes_of(&a)],
        &[Some(read(weight))],
        &[&tex.view],
        Grid::Threads(texels as u64),
        Cost {
            flops: 0,
            bytes: 4 * (weight.numel() + 4 * texels) as u64,
        },
    )?;
    Ok(tex)
}

/// How the strided input-gradient kernel stages grad_out: `left` zero columns before it
/// (the farthest a tap reaches back), and blocks of `pixels` (8, or 16 when `narrow`) per
/// row and stride class; `narrow` kernels take 4 output channels a thread instead of 8.
pub(crate) struct StridedInput {
    pub extent: Extent,
    pub blocks: usize,
    pub narrow: bool,
}

impl StridedInput {
    /// For a forward conv of geometry `g` and parameters `p`.
    pub fn new(g: &Geometry, p: &Conv2dParams) -> StridedInput {
        let [_, cin, _, w] = g.x;
        let [_, _, oh, ow] = g.y;
        let [_, _, _, kw] = g.w;
        let (s, d, pad) = (p.stride[1], p.dilation[1], p.padding[1]);
        let narrow = narrow_input(cin);
        let pixels = if narrow { 16 } else { 8 };
        // Pixels ix = m*s + r - pad of a class r: m < ceil((w + pad) / s) covers the row.
        let blocks = (w + pad).div_ceil(s).div_ceil(pixels);
        let left = ((kw - 1) * d).div_ceil(s);
        StridedInput {
            extent: Extent {
                rows: oh,
                cols: left + ow.max(pixels * blocks),
                top: 0,
                left,
            },
            blocks,
            narrow,
        }
    }
}
