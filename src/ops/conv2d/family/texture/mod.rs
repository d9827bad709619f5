//! The texture family (`shaders/conv2d/texture/`): register-blocked kernels that read both
//! operands through the texture unit, staged first (`stage.rs`). Forward 16 pixels × 8
//! channels a thread; input gradients of any stride (stride 1: the forward kernel on the
//! transposed problem; otherwise by stride class); weight gradient 16 × 8 (16 × 4 for
//! inputs of 1–4 channels). groups = 1, where the staged textures fit the device.
//!
//! Why: lavapipe turns every storage-buffer load into a loop over its SIMD lanes with a
//! bounds check per lane and component, but a texel fetch into one vectorised gather of four
//! floats; staging costs one pass over each operand, the conv reads them many times.

mod stage;

use crate::error::Result;
use crate::gpu::{Access, KernelSpec, Shader};
use crate::ops::conv2d::args::{
    narrow_input, ConvArgs, ForwardArgs, GemmCall, Geometry, InputGradArgs, WeightGradArgs,
};
use crate::ops::conv2d::budget::rows_per_split;
use crate::ops::conv2d::family::pack::PACK_TEXTURE;
use crate::ops::conv2d::partials::Partials;
use crate::ops::conv2d::select::{Family, Pass};
use crate::ops::conv2d::{Conv2dParams, ConvKernels, Fusion};
use crate::record::{write, Grid, Recording};
use crate::Gpu;
use stage::{fits, stage_activation, stage_weights, Extent, StridedInput};

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
    _pad: u32,
}

/// The texture family.
pub(crate) struct Texture;

impl Texture {
    /// Stages `c.x` and the weights, then runs `conv2d_forward_texture`.
    fn gemm(&self, rec: &mut Recording<'_>, c: &GemmCall<'_>) -> Result<()> {
        let e = Extent::input(&c.g, &c.p);
        let x_tex = stage_activation(rec, c.x, e, c.fusion.relu_input)?;
        let w_tex = stage_weights(rec, c.weight, c.transpose)?;
        let blocks = c.g.y[1].div_ceil(8);
        let threads = c.g.y[0] * c.g.y[2] * c.g.y[3].div_ceil(16) * blocks;
        let mut a = c.args(threads, blocks);
        a.relu_input = 0;
        let staged = StagedArgs {
            rows: e.rows as u32,
            ..Default::default()
        };
        let [bias, out, mask] = c.outputs();
        let [out4, mask4] = c.outputs4();
        let args = [a.bytes(), bytemuck::bytes_of(&staged)];
        let grid = Grid::Threads(threads as u64);
        let buffers = [bias, out, mask, out4, mask4];
        rec.launch(&FORWARD, &args, &buffers, &[&x_tex, &w_tex], grid, c.cost)?;
        rec.staging_consumed();
        Ok(())
    }

    /// The input gradient of a conv of any stride, by stride class.
    fn backward_input_strided(&self, rec: &mut Recording<'_>, c: &InputGradArgs<'_>) -> Result<()> {
        let (g, p) = (&c.g, &c.p);
        let plan = StridedInput::new(g, p);
        let g_tex = stage_activation(rec, c.grad_out, plan.extent, false)?;
        let w_tex = stage_weights(rec, c.weight, true)?;
        // The transposed problem: grad_out in, grad_x out; the forward's kernel parameters.
        let t = Geometry {
            x: g.y,
            w: [g.x[1], g.y[1], g.w[2], g.w[3]],
            y: g.x,
        };
        let blocks = g.x[1].div_ceil(if plan.narrow { 4 } else { 8 });
        let rows_hi = g.x[2].div_ceil(p.stride[0]);
        let threads = p.stride[1] * p.stride[0] * g.x[0] * rows_hi * plan.blocks * blocks;
        let call = GemmCall {
            g: t,
            p: c.p,
            x: c.grad_out,
            weight: c.weight,
            transpose: true,
            bias: None,
            out: c.grad_x,
            mask: c.mask(),
            fusion: Fusion {
                relu_input: false,
                accumulate: c.fusion.accumulate,
            },
            cost: c.cost(),
        };
        let mut a = call.args(threads, blocks);
        a.relu_input = 0;
        let staged = StagedArgs {
            rows: plan.extent.rows as u32,
            left: plan.extent.left as u32,
            blocks: plan.blocks as u32,
            _pad: 0,
        };
        let spec = if plan.narrow {
            &BACKWARD_INPUT_NARROW
        } else {
            &BACKWARD_INPUT
        };
        let args = [a.bytes(), bytemuck::bytes_of(&staged)];
        let grid = Grid::Threads(threads as u64);
        let buffers = call.outputs();
        rec.launch(spec, &args, &buffers, &[&g_tex, &w_tex], grid, call.cost)?;
        rec.staging_consumed();
        Ok(())
    }
}

impl Family for Texture {
    fn kind(&self) -> ConvKernels {
        ConvKernels::Texture
    }

    fn kernels(&self) -> &'static [&'static KernelSpec] {
        &[
            &FORWARD,
            &BACKWARD_INPUT,
            &BACKWARD_INPUT_NARROW,
            &BACKWARD_WEIGHT,
            &BACKWARD_WEIGHT_NARROW,
            &stage::STAGE_VIEW,
            &stage::STAGE_COPY,
            &PACK_TEXTURE,
        ]
    }

    /// groups = 1, and every texture the pass would stage within the device's limit.
    fn supports(&self, gpu: &Gpu, pass: Pass, g: &Geometry, p: &Conv2dParams) -> bool {
        if p.groups != 1 {
            return false;
        }
        match pass {
            Pass::Forward => fits(gpu, &[(g.x, Extent::input(g, p))], Some((g.w, false))),
            Pass::BackwardInput if g.transposable(p) => {
                let (t, tp) = g.transposed(p);
                fits(gpu, &[(t.x, Extent::input(&t, &tp))], Some((g.w, true)))
            }
            Pass::BackwardInput => {
                let plan = StridedInput::new(g, p);
                fits(gpu, &[(g.y, plan.extent)], Some((g.w, true)))
            }
            Pass::BackwardWeight => {
                let staged = [(g.x, Extent::input(g, p)), (g.y, Extent::plain(g.y))];
                fits(gpu, &staged, None)
            }
        }
    }

    fn forward(&self, rec: &mut Recording<'_>, c: &ForwardArgs<'_>) -> Result<()> {
        self.gemm(rec, &c.gemm())
    }

    fn backward_input(&self, rec: &mut Recording<'_>, c: &InputGradArgs<'_>) -> Result<()> {
        if c.g.transposable(&c.p) {
            self.gemm(rec, &c.gemm())
        } else {
            self.backward_input_strided(rec, c)
        }
    }

    /// Threads own 16 (co) × 8 (ci) blocks of one tap — 16 × 4 for inputs whose channels
    /// waste most of an 8-channel block — over a split of the N*OH output rows.
    fn backward_weight(&self, rec: &mut Recording<'_>, c: &WeightGradArgs<'_>) -> Result<()> {
        let [cout, cin, kh, kw] = c.g.w;
        let narrow = narrow_input(cin);
        let ci_block = if narrow { 4 } else { 8 };
        let base_threads = cin.div_ceil(ci_block) * cout.div_ceil(16) * kh * kw;
        let rows = c.g.y[0] * c.g.y[2];
        let per_max = rows_per_split(c.g.y[3], 2, "weight gradient")?;
        let (partials, per, cost) =
            Partials::for_weight_gradient(rec, c, rows, base_threads, per_max)?;
        let x_extent = Extent::input(&c.g, &c.p);
        let x_tex = stage_activation(rec, c.x, x_extent, c.fusion.relu_input)?;
        let g_tex = stage_activation(rec, c.grad_out, Extent::plain(c.g.y), false)?;
        let threads = base_threads * partials.splits;
        let mut a = ConvArgs::new(&c.g, &c.p, threads, c.fusion);
        a.relu_input = 0;
        a.per_split = per as u32;
        let staged = StagedArgs {
            rows: x_extent.rows as u32,
            ..Default::default()
        };
        let spec = if narrow {
            &BACKWARD_WEIGHT_NARROW
        } else {
            &BACKWARD_WEIGHT
        };
        let args = [a.bytes(), bytemuck::bytes_of(&staged)];
        let grid = Grid::Threads(threads as u64);
        let buffers = [Some(write(&partials.tensor))];
        rec.launch(spec, &args, &buffers, &[&x_tex, &g_tex], grid, cost)?;
        rec.staging_consumed();
        partials.reduce(rec, c.grad_weight, c.fusion.accumulate)
    }
}
