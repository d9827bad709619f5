//! The texture family (`shaders/conv2d/texture/`): register-blocked kernels that read both
//! operands through the texture unit, staged first (`stage.rs`). Forward 16 pixels × 8
//! channels a thread; input gradients of any stride (stride 1: the forward kernel on the
//! transposed problem; otherwise by stride class); weight gradient 16 × 8 (16 × 4 for
//! inputs of 1–4 channels). groups = 1, where the staged textures fit the device.
//!
//! Why: lavapipe turns every storage-buffer load into a loop over its SIMD lanes with a
//! bounds check per lane and component, but a texel fetch into one vectorised gather of four
//! floats; staging costs one pass over each operand, the conv reads them many times.

mod backward_input;
mod backward_weight;
pub(crate) mod stage;

use crate::error::Result;
use crate::gpu::{Access, KernelSpec, Shader};
use crate::ops::conv2d::args::{
    narrow_input, plane_vec4_stores, ConvArgs, ForwardArgs, GemmCall, Geometry, InputGradArgs,
    WeightGradArgs,
};
use crate::ops::conv2d::budget::rows_per_split;
use crate::ops::conv2d::family::pack::PACK_TEXTURE;
use crate::ops::conv2d::family::{Family, Info, Pass};
use crate::ops::conv2d::partials::{target_threads, Partials};
use crate::ops::conv2d::{Conv2dParams, Fusion};
use crate::ops::rebase;
use crate::record::{write, Cost, Grid, Recording};
use crate::tensor::Tensor;
use crate::Gpu;
use stage::{
    batch_parts, fits, parts, stage_activation, stage_weights, Extent, Parts, Staged, StridedInput,
};
use std::ops::Range;

use Access::{Read, Write};

const FORWARD_WGSL: Shader = wgsl!(
    "conv2d/texture/forward.wgsl",
    "conv2d/common.wgsl",
    "conv2d/store.wgsl",
    "conv2d/texture/staged.wgsl",
    "conv2d/texture/common.wgsl"
);
const BACKWARD_INPUT_WGSL: Shader = wgsl!(
    "conv2d/texture/backward_input.wgsl",
    "conv2d/common.wgsl",
    "conv2d/store.wgsl",
    "conv2d/texture/staged.wgsl",
    "conv2d/texture/common.wgsl"
);
const BACKWARD_WEIGHT_WGSL: Shader = wgsl!(
    "conv2d/texture/backward_weight.wgsl",
    "conv2d/common.wgsl",
    "conv2d/partials.wgsl",
    "conv2d/texture/staged.wgsl"
);

/// The store epilogue's buffers: bias, out, mask.
const STORES: &[(u32, Access)] = &[(3, Read), (4, Write), (5, Write)];

/// `conv2d_forward_texture`: the store epilogue (also as vec4s) and the staged input and
/// weights; the staging's layout at binding 10.
pub(crate) const FORWARD: KernelSpec = KernelSpec::new(
    FORWARD_WGSL,
    "conv2d_forward_texture",
    &[(3, Read), (4, Write), (5, Write), (8, Write), (9, Write)],
)
.with_textures(&[6, 7])
.with_uniforms(&[0, 10]);
/// `conv2d_backward_input_texture`: grad_x through the store epilogue, staged grad_out
/// and transposed weights.
pub(crate) const BACKWARD_INPUT: KernelSpec =
    KernelSpec::new(BACKWARD_INPUT_WGSL, "conv2d_backward_input_texture", STORES)
        .with_textures(&[6, 7])
        .with_uniforms(&[0, 10]);
/// The same, 4 channels a thread.
pub(crate) const BACKWARD_INPUT_NARROW: KernelSpec = KernelSpec {
    entry: "conv2d_backward_input_texture_narrow",
    ..BACKWARD_INPUT
};
/// `conv2d_backward_weight_texture`: staged x and grad_out → partial sums.
pub(crate) const BACKWARD_WEIGHT: KernelSpec = KernelSpec::new(
    BACKWARD_WEIGHT_WGSL,
    "conv2d_backward_weight_texture",
    &[(3, Write)],
)
.with_textures(&[5, 6])
.with_uniforms(&[0, 10]);
/// The same, 4 input channels a thread.
pub(crate) const BACKWARD_WEIGHT_NARROW: KernelSpec = KernelSpec {
    entry: "conv2d_backward_weight_texture_narrow",
    ..BACKWARD_WEIGHT
};

/// Where the staged operands lie (`Staged` in `shaders/conv2d/texture/staged.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct StagedArgs {
    rows: u32,
    left: u32,
    blocks: u32,
    /// The staged weights' 4-channel groups a tap, and the first of their channels this
    /// launch reduces over (a part of the input channels reads its rows of weights staged
    /// whole).
    w_groups: u32,
    w_c0: u32,
    _pad: [u32; 3],
}

/// Which rows of weights staged whole a launch over a part of the channels reads.
#[derive(Clone, Copy)]
struct WeightRows {
    groups: usize,
    c0: usize,
}

/// `cost`'s share for channels (or images) `r` of `total`, the shares adding up to it.
fn share(cost: Cost, r: &Range<usize>, total: usize) -> Cost {
    let upto = |v: u64, i: usize| (v as u128 * i as u128 / total.max(1) as u128) as u64;
    Cost {
        flops: upto(cost.flops, r.end) - upto(cost.flops, r.start),
        bytes: upto(cost.bytes, r.end) - upto(cost.bytes, r.start),
    }
}

/// The texture family.
pub(crate) struct Texture;

/// Samples `r` of `t`, bound as a window where its buffer exceeds one binding.
fn part(rec: &Recording<'_>, t: &Tensor, r: &Range<usize>) -> Result<Tensor> {
    Ok(rebase(rec.gpu(), &t.batches(r.clone())?))
}

/// Records `f(rec, images, k)` for each part `k` of a batch of `n` images whose staged
/// activations `staged` take more than the scratch budget at once ([`batch_parts`]).
fn in_parts(
    rec: &mut Recording<'_>,
    n: usize,
    staged: &[([usize; 4], Extent)],
    mut f: impl FnMut(&mut Recording<'_>, &Range<usize>, usize) -> Result<()>,
) -> Result<()> {
    for (k, r) in batch_parts(rec.gpu(), n, staged).iter().enumerate() {
        f(rec, r, k)?;
    }
    Ok(())
}

impl Texture {
    /// `conv2d_forward_texture` with the staged weights `w`, by parts of the batch or of
    /// `c.x`'s channels where staging it whole would exceed the budget ([`parts`]).
    fn gemm(&self, rec: &mut Recording<'_>, c: &GemmCall<'_>, w: &Staged) -> Result<()> {
        let [n, cin, _, _] = c.g.x;
        let whole = WeightRows {
            groups: cin.div_ceil(4),
            c0: 0,
        };
        let e = Extent::input(&c.g, &c.p);
        let per_image = (c.g.y[2] * c.g.y[3]).div_ceil(16) * c.g.y[1].div_ceil(8);
        match parts(rec.gpu(), c.g.x, e, per_image, target_threads(rec.gpu())) {
            Parts::Batch(images) => {
                for r in images {
                    let (x, out) = (part(rec, c.x, &r)?, part(rec, c.out, &r)?);
                    let mask = c.mask.map(|m| part(rec, m, &r)).transpose()?;
                    let part = GemmCall {
                        g: c.g.with_batch(r.len()),
                        x: &x,
                        out: &out,
                        mask: mask.as_ref(),
                        cost: share(c.cost, &r, n),
                        ..*c
                    };
                    self.gemm_part(rec, &part, w, whole)?;
                }
            }
            Parts::Channels(channels) => {
                for (k, r) in channels.into_iter().enumerate() {
                    let x = rebase(rec.gpu(), &c.x.channels(r.clone())?);
                    let mut g = c.g;
                    g.x[1] = r.len();
                    let part = GemmCall {
                        g,
                        x: &x,
                        bias: c.bias.filter(|_| k == 0),
                        fusion: c.fusion.after_part(k),
                        cost: share(c.cost, &r, cin),
                        ..*c
                    };
                    let rows = WeightRows {
                        c0: r.start,
                        ..whole
                    };
                    self.gemm_part(rec, &part, w, rows)?;
                }
            }
        }
        Ok(())
    }

    /// Stages `c.x` and runs `conv2d_forward_texture` with the rows `rows` of `w`.
    fn gemm_part(
        &self,
        rec: &mut Recording<'_>,
        c: &GemmCall<'_>,
        w: &Staged,
        rows: WeightRows,
    ) -> Result<()> {
        let e = Extent::input(&c.g, &c.p);
        let x_tex = stage_activation(rec, c.x, e, c.fusion.relu_input)?;
        let blocks = c.g.y[1].div_ceil(8);
        // 16 consecutive pixels a thread, across rows and images.
        let [n, _, oh, ow] = c.g.y;
        let threads = (n * oh * ow).div_ceil(16) * blocks;
        let mut a = c.args(threads, blocks);
        a.relu_input = 0;
        a.vec4_ok = plane_vec4_stores(c.out, c.mask) as u32;
        let staged = StagedArgs {
            rows: e.rows as u32,
            w_groups: rows.groups as u32,
            w_c0: rows.c0 as u32,
            ..Default::default()
        };
        let [bias, out, mask] = c.outputs();
        let [out4, mask4] = c.outputs4();
        let args = [a.bytes(), bytemuck::bytes_of(&staged)];
        let grid = Grid::Threads(threads as u64);
        let buffers = [bias, out, mask, out4, mask4];
        let textures = [&x_tex.view, &w.view];
        rec.launch(&FORWARD, &args, &buffers, &textures, grid, c.cost)?;
        x_tex.done(rec);
        Ok(())
    }

    /// The input gradient by the forward kernel on the transposed problem (stride 1).
    fn backward_input_transposed(
        &self,
        rec: &mut Recording<'_>,
        c: &InputGradArgs<'_>,
    ) -> Result<()> {
        let w = stage_weights(rec, c.weight, true)?;
        self.gemm(rec, &c.gemm(), &w)?;
        w.done(rec);
        Ok(())
    }
}

impl Info for Texture {
    fn name(&self) -> &'static str {
        "texture"
    }

    fn summary(&self) -> &'static str {
        "register-blocked with both operands staged in rgba32float textures: lavapipe's fastest"
    }

    /// First on CPU adapters: 1.5–2× register-blocked on every standard case on lavapipe
    /// (a texel fetch is one vectorised gather there, a storage-buffer load a loop over the
    /// SIMD lanes).
    fn cpu_rank(&self, _pass: Pass, _g: &Geometry) -> Option<u8> {
        Some(1)
    }

    fn kernels(&self) -> &'static [&'static KernelSpec] {
        &[
            &FORWARD,
            &BACKWARD_INPUT,
            &BACKWARD_INPUT_NARROW,
            &BACKWARD_WEIGHT,
            &BACKWARD_WEIGHT_NARROW,
            &PACK_TEXTURE,
        ]
    }
}

impl Family for Texture {
    /// groups = 1, and every texture the pass would stage within the device's limit: the
    /// weights, and the least part of the activations it stages (4 channels of the whole
    /// batch where it works through channels, one image where it works through the batch).
    fn supports(&self, gpu: &Gpu, pass: Pass, g: &Geometry, p: &Conv2dParams) -> bool {
        if p.groups != 1 {
            return false;
        }
        let four = |[n, c, h, w]: [usize; 4]| [n, c.min(4), h, w];
        match pass {
            Pass::Forward => fits(gpu, &[(four(g.x), Extent::input(g, p))], Some((g.w, false))),
            Pass::BackwardInput if g.transposable(p) => {
                let (t, tp) = g.transposed(p);
                fits(
                    gpu,
                    &[(four(t.x), Extent::input(&t, &tp))],
                    Some((g.w, true)),
                )
            }
            Pass::BackwardInput => {
                let plan = StridedInput::new(g, p);
                fits(gpu, &[(four(g.y), plan.extent)], Some((g.w, true)))
            }
            Pass::BackwardWeight => {
                let image = |[_, c, h, w]: [usize; 4]| [1, c, h, w];
                let staged = [
                    (image(g.x), Extent::input(g, p)),
                    (image(g.y), Extent::plain(g.y)),
                ];
                fits(gpu, &staged, None)
            }
        }
    }

    fn forward(&self, rec: &mut Recording<'_>, c: &ForwardArgs<'_>) -> Result<()> {
        let w = stage_weights(rec, c.weight, false)?;
        self.gemm(rec, &c.gemm(), &w)?;
        w.done(rec);
        Ok(())
    }

    fn backward_input(&self, rec: &mut Recording<'_>, c: &InputGradArgs<'_>) -> Result<()> {
        if c.g.transposable(&c.p) {
            self.backward_input_transposed(rec, c)
        } else {
            self.backward_input_strided(rec, c)
        }
    }

    /// Threads own 16 (co) × 8 (ci) blocks of one tap — 16 × 4 for inputs whose channels
    /// waste most of an 8-channel block — over a split of the N*OH output rows; by parts of
    /// the batch, each after the first adding to the gradient.
    fn backward_weight(&self, rec: &mut Recording<'_>, c: &WeightGradArgs<'_>) -> Result<()> {
        let staged = [
            (c.g.x, Extent::input(&c.g, &c.p)),
            (c.g.y, Extent::plain(c.g.y)),
        ];
        in_parts(rec, c.g.x[0], &staged, |rec, r, k| {
            let (x, go) = (part(rec, c.x, r)?, part(rec, c.grad_out, r)?);
            let fusion = c.fusion.after_part(k);
            let g = c.g.with_batch(r.len());
            let a = WeightGradArgs {
                g,
                x: &x,
                grad_out: &go,
                fusion,
                ..*c
            };
            self.weight_part(rec, &a)
        })
    }
}
