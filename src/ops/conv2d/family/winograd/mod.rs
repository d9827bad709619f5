//! The Winograd family (`shaders/conv2d/winograd/`): 3 × 3 convolutions of stride 1 as
//! F(2×2, 3×3) (16 multiplies a 2 × 2 output tile where the direct sum takes 36) or
//! F(4×4, 3×3) (36 for 144); variant 0 is the rule's tile, variant 1 the other. The forward
//! and the stride-1 input gradient (the forward on the transposed problem); the weight
//! gradient as F(3×3, 2×2) or F(3×3, 4×4) (`backward_weight.rs`: the same products a tile,
//! the forward's input transform, NaN and Inf recomputed as the direct sum).
//!
//! A pass is four launches: the filter transform into a texture (once), and for each part of
//! the batch's tiles the input transform into a texture, the products as one
//! register-blocked GEMM per position of the α × α tile (`gemm.wgsl`, the texture family's
//! 16 × 8 block) into a scratch buffer, and the output transform through the shared store
//! epilogue. Parts keep the scratch within its budget (`plan.rs`).
//!
//! Which tile: the rule (a forced `winograd`, and the CPU rule) takes F(4×4) (the weight
//! gradient: F(3×3, 4×4)) where the pass has at least [`RULE_F4_MIN_TILES`] of its 4 × 4
//! tiles, F(2×2) below ([`tile_side`]); the tuner measures both.
//!
//! Rounding: F(2×2) stays near the direct sum. F(4×4) interpolates at 0, ±3/2, ±2/3 (not
//! Lavin's 0, ±1, ±2, whose transforms scale values by up to 8) and the products sum each
//! quad of input channels apart before the running sum (`gemm.wgsl`): through BatchNorm
//! (torchvision's `resnet18.layer1`, tolerance 1e-4·(1+|ref|)) its conv weight gradients
//! err 6–9e-5 from PyTorch's, F(2×2)'s 2–5e-5, PyTorch's own float32 4.4e-5 — where Lavin's
//! points and a plain running sum erred 2–3e-4 and failed (benches/NOTES.md, v31).
//! Non-finite inputs: a tile whose outputs are not all finite is computed again tap by tap
//! (`output.wgsl`), so NaN and Inf land where PyTorch puts them.

mod backward_weight;
mod forward;
#[cfg(all(test, feature = "oracle"))]
mod oracle_tests;
mod plan;

use crate::error::Result;
use crate::gpu::{Access, KernelSpec, Shader, Specialised, StagingKind};
use crate::ops::conv2d::args::{ForwardArgs, Geometry, InputGradArgs, WeightGradArgs};
use crate::ops::conv2d::family::texture::stage::{pow2_reserve, stage_activation, Staged};
use crate::ops::conv2d::family::{Call, Family, Info, Pass, TuneKey};
use crate::ops::conv2d::Conv2dParams;
use crate::ops::rebase;
use crate::record::{Cost, Grid, Recording};
use crate::tensor::Tensor;
use crate::Gpu;
use plan::Plan;

use Access::{Read, Write};

const FILTER_WGSL: Shader = wgsl!(
    "conv2d/winograd/filter.wgsl",
    "conv2d/common.wgsl",
    "conv2d/winograd/common.wgsl",
    "conv2d/winograd/taps.wgsl"
);
const INPUT_WGSL: Shader = wgsl!(
    "conv2d/winograd/input.wgsl",
    "conv2d/common.wgsl",
    "conv2d/winograd/common.wgsl"
);
const GEMM_WGSL: Shader = wgsl!(
    "conv2d/winograd/gemm.wgsl",
    "conv2d/common.wgsl",
    "conv2d/winograd/common.wgsl"
);
const WEIGHT_WGSL: Shader = wgsl!(
    "conv2d/winograd/weight.wgsl",
    "conv2d/common.wgsl",
    "conv2d/winograd/common.wgsl"
);
const OUTPUT_WGSL: Shader = wgsl!(
    "conv2d/winograd/output.wgsl",
    "conv2d/common.wgsl",
    "conv2d/store.wgsl",
    "conv2d/winograd/common.wgsl",
    "conv2d/winograd/taps.wgsl"
);

/// `conv2d_winograd_filter`: weights (2) → U (texture 11).
pub(crate) const FILTER: KernelSpec =
    KernelSpec::new(FILTER_WGSL, "conv2d_winograd_filter", &[(2, Read)])
        .with_textures(&[11])
        .with_uniforms(&[0, 10]);
/// `conv2d_winograd_input`: the staged input (texture 6) → V (texture 12).
pub(crate) const INPUT: KernelSpec = KernelSpec::new(INPUT_WGSL, "conv2d_winograd_input", &[])
    .with_textures(&[6, 12])
    .with_uniforms(&[10]);
/// `conv2d_winograd_gemm`: U, V (textures 11, 12) → M (texture 13).
pub(crate) const GEMM: KernelSpec = KernelSpec::new(GEMM_WGSL, "conv2d_winograd_gemm", &[])
    .with_textures(&[11, 12, 13])
    .with_uniforms(&[10]);
/// `conv2d_winograd_output`: M (texture 13) → out through the store epilogue (bias 3, out
/// 4, mask 5, and out and mask as vec4s 8, 9); x (1) and the weights (2) for tiles
/// recomputed directly.
pub(crate) const OUTPUT: KernelSpec = KernelSpec::new(
    OUTPUT_WGSL,
    "conv2d_winograd_output",
    &[
        (1, Write),
        (2, Read),
        (3, Read),
        (4, Write),
        (5, Write),
        (8, Write),
        (9, Write),
    ],
)
.with_textures(&[13])
.with_uniforms(&[0, 10]);

/// Where a launch's tiles and channels lie (`Wino` in `shaders/conv2d/winograd/common.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct WinoArgs {
    tiles_h: u32,
    tiles_w: u32,
    tiles: u32,
    real_tiles: u32,
    cq_in: u32,
    cout_pad: u32,
    transpose: u32,
    count: u32,
    t0: u32,
    n0: u32,
    rows: u32,
    _pad: u32,
}

/// `part` of `whole` of `v`.
fn share(v: u64, part: usize, whole: usize) -> u64 {
    (v as u128 * part as u128 / whole.max(1) as u128) as u64
}

/// The output tile sides: F(2×2, 3×3) and F(4×4, 3×3).
const TILE_SIDES: [usize; 2] = [2, 4];

/// Tiles of side 4 a pass (over the batch) from which the rule takes F(4×4). Below, its
/// 2.25× larger filter transform (U), read once a part, costs more than its fewer products
/// save: on lavapipe (minimum of interleaved runs, forward) F(4×4) took 4.6 ms against
/// F(2×2)'s 6.5 at 196 tiles (64 channels, 56², batch 1), 17.6 against 21.7 at 64 (256
/// channels, 14², batch 4), 80 against 133 at 64 (512 channels, 7², batch 16), but 5.9 against
/// 5.3 at 49 and 10.0 against 7.3 at 16 (benches/NOTES.md, v31).
const RULE_F4_MIN_TILES: usize = 64;

/// The tile side of variant `variant` for the image `out` a pass tiles (the forward's y,
/// whose gradient the weight gradient tiles too; the input gradient's grad_x): variant 0 is
/// the rule's — F(4×4) (or F(3×3, 4×4)) from [`RULE_F4_MIN_TILES`] tiles a pass, F(2×2)
/// below — and variant 1 the other.
fn tile_side(variant: usize, out: [usize; 4]) -> usize {
    let [n, _, oh, ow] = out;
    let rule = if n * oh.div_ceil(4) * ow.div_ceil(4) >= RULE_F4_MIN_TILES {
        4
    } else {
        2
    };
    match variant {
        0 => rule,
        _ => 6 - rule,
    }
}

/// Channels (input and output both) from which the CPU rule takes F(2×2).
const CPU_MIN_CHANNELS: usize = 64;
/// FLOPs a pass (the direct sum's count) from which the CPU rule takes F(2×2).
const CPU_MIN_FLOPS: u64 = 300_000_000;
/// Tiles of 2 × 2 output pixels over the batch from which the CPU rule takes the weight
/// gradient as Winograd too (F(3×3, 2×2) or F(3×3, 4×4) by [`tile_side`]). Its split sums
/// (α² × cout × cin values a split) are read and written once a part of the batch, so few
/// tiles a weight pay more for them than the products save: on lavapipe (ResNet-50's 3×3
/// layers, minimum of interleaved runs) it took 14.7 ms against texture's 31.1 at 784 tiles
/// (128 channels, 28², batch 4), 36.2 against 50.0 at 64 (512 channels, 7², batch 4), but
/// 8.8 against 7.6 at 49 (256 channels, 14², batch 1) and 24 against 10 at 16 (512 channels,
/// 7², batch 1) (benches/NOTES.md, v34).
const CPU_WEIGHT_MIN_TILES: usize = 64;

/// The Winograd family.
pub(crate) struct Winograd;

impl Info for Winograd {
    fn name(&self) -> &'static str {
        "winograd"
    }

    fn summary(&self) -> &'static str {
        "Winograd F(4×4, 3×3) and F(2×2, 3×3): 3×3 stride-1 forward and input gradient in 1/4 or 4/9 of the multiplies (weight gradient: F(3×3, 4×4) and F(3×3, 2×2))"
    }

    /// First (F(4×4) or F(2×2) by [`tile_side`]) where both channel counts reach
    /// [`CPU_MIN_CHANNELS`] and the pass is at least [`CPU_MIN_FLOPS`]: on lavapipe F(2×2)
    /// alone ran the forward and the input gradient on a par with the texture family to
    /// 1.4× faster at 64–128 channels (14²–32² images, batch 8; minimum of interleaved runs)
    /// and 1.2–1.8× faster at 256–512 (7²–8²), but 0.8–0.9× at 64 channels on 16² (its four
    /// launches a part cost more than the multiplies saved), and below 64 channels the
    /// transforms cost more than they save (benches/NOTES.md, v29); F(4×4) where it is taken
    /// runs 1.3–1.8× faster than F(2×2) (v31).
    /// The weight gradient too where the batch has [`CPU_WEIGHT_MIN_TILES`] tiles of 2 × 2.
    fn cpu_rank(&self, pass: Pass, g: &Geometry) -> Option<u8> {
        let worth = g.x[1].min(g.y[1]) >= CPU_MIN_CHANNELS && g.tap_flops() >= CPU_MIN_FLOPS;
        let [n, _, oh, ow] = g.y;
        let tiles = n * oh.div_ceil(2) * ow.div_ceil(2);
        let taken = match pass {
            Pass::BackwardWeight => worth && tiles >= CPU_WEIGHT_MIN_TILES,
            _ => worth,
        };
        taken.then_some(0)
    }

    fn kernels(&self) -> &'static [&'static KernelSpec] {
        &[
            &FILTER,
            &INPUT,
            &GEMM,
            &OUTPUT,
            &backward_weight::GRAD_TRANSFORM,
            &backward_weight::WEIGHT_GEMM,
            &backward_weight::WEIGHT_OUTPUT,
            &backward_weight::WEIGHT_DIRECT,
            &backward_weight::WEIGHT_DIRECT_SUM,
        ]
    }
}

/// Whether Winograd F(m×m, 3×3) computes a problem: a 3 × 3 kernel, stride 1, dilation 1,
/// groups = 1 (any zero padding).
fn winograd_shaped(g: &Geometry, p: &Conv2dParams) -> bool {
    g.w[2..] == [3, 3] && p.stride == [1, 1] && p.dilation == [1, 1] && p.groups == 1
}

impl Family for Winograd {
    /// The forward and the stride-1 input gradient of Winograd-shaped problems (see
    /// [`winograd_shaped`]) whose textures and scratch fit the device for at least one
    /// part ([`Plan::fits`]); never the weight gradient.
    fn supports(&self, gpu: &Gpu, pass: Pass, g: &Geometry, p: &Conv2dParams) -> bool {
        let fits = |g: &Geometry, p: &Conv2dParams| {
            winograd_shaped(g, p) && TILE_SIDES.iter().all(|&m| Plan::new(gpu, g, p, m).fits())
        };
        match pass {
            Pass::Forward => fits(g, p),
            Pass::BackwardInput => {
                g.transposable(p) && winograd_shaped(g, p) && {
                    let (t, tp) = g.transposed(p);
                    fits(&t, &tp)
                }
            }
            Pass::BackwardWeight => {
                winograd_shaped(g, p) && backward_weight::weight_fits(gpu, g, p)
            }
        }
    }

    fn forward(&self, rec: &mut Recording<'_>, c: &ForwardArgs<'_>) -> Result<()> {
        let call = c.gemm();
        self.gemm(rec, &call, tile_side(0, call.g.y))
    }

    fn backward_input(&self, rec: &mut Recording<'_>, c: &InputGradArgs<'_>) -> Result<()> {
        let call = c.gemm();
        self.gemm(rec, &call, tile_side(0, call.g.y))
    }

    fn backward_weight(&self, rec: &mut Recording<'_>, c: &WeightGradArgs<'_>) -> Result<()> {
        self.weight_gradient(rec, c, tile_side(0, c.g.y))
    }

    fn variants(&self, _call: &Call<'_, '_>) -> usize {
        TILE_SIDES.len()
    }

    fn describe_variant(&self, key: &TuneKey, v: usize) -> String {
        let [n, c, h, w] = key.x;
        // The tiles' image: the forward's y (3 × 3, stride 1), whose gradient the weight
        // gradient tiles too; the input gradient's grad_x.
        let out = match key.pass {
            Pass::Forward | Pass::BackwardWeight => [
                n,
                c,
                (h + 2 * key.padding[0]).saturating_sub(2),
                (w + 2 * key.padding[1]).saturating_sub(2),
            ],
            _ => key.x,
        };
        let m = tile_side(v, out);
        match (key.pass, v) {
            (_, 2..) => String::new(),
            (Pass::BackwardWeight, _) => format!("F(3×3, {m}×{m})"),
            _ => format!("F({m}×{m}, 3×3)"),
        }
    }

    fn run_variant(&self, rec: &mut Recording<'_>, call: &Call<'_, '_>, v: usize) -> Result<()> {
        if v >= self.variants(call) {
            return Err(super::no_variant(self.name(), v));
        }
        match call {
            Call::Forward(a) => {
                let c = a.gemm();
                self.gemm(rec, &c, tile_side(v, c.g.y))
            }
            Call::BackwardInput(a) => {
                let c = a.gemm();
                self.gemm(rec, &c, tile_side(v, c.g.y))
            }
            Call::BackwardWeight(a) => self.weight_gradient(rec, a, tile_side(v, a.g.y)),
        }
    }
}

/// A texture of `(w, h)` texels for V, M or D, its height reserved to the next power of
/// two as the texture family's: a dense block's layers ask a little more each, and would
/// leave one texture of every size.
fn wino_texture(
    rec: &mut Recording<'_>,
    kind: StagingKind,
    (w, h): (usize, usize),
) -> Result<Staged> {
    let reserve = pow2_reserve(rec.gpu(), h);
    Staged::new(rec, kind, w, h, reserve)
}

/// V = Bᵀ d B for the tiles of `images` of `x` (staged first, ReLU on load with `relu`),
/// F(m×m) patches; `part` says where the part's tiles lie.
fn input_transform(
    rec: &mut Recording<'_>,
    plan: &Plan,
    x: &Tensor,
    images: &std::ops::Range<usize>,
    relu: bool,
    part: &WinoArgs,
    m: usize,
) -> Result<Staged> {
    let x = rebase(rec.gpu(), &x.batches(images.clone())?);
    let staged = stage_activation(rec, &x, plan.staged, relu)?;
    let tiles = part.tiles as usize;
    let v = wino_texture(rec, StagingKind::Activation, plan.input_size(tiles))?;
    let threads = tiles * plan.cq_in;
    let w = WinoArgs {
        count: threads as u32,
        ..*part
    };
    let bytes = 16 * (threads * (m * m + plan.alpha * plan.alpha)) as u64;
    let constants = [("WINO_M", m as f64)];
    rec.launch(
        Specialised {
            spec: &INPUT,
            constants: &constants,
        },
        &[bytemuck::bytes_of(&w)],
        &[],
        &[&staged.view, &v.view],
        Grid::Threads(threads as u64),
        Cost { flops: 0, bytes },
    )?;
    staged.done(rec);
    Ok(v)
}
