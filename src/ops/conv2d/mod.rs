//! 2-D convolution, forward and backward (`shaders/conv2d_*.wgsl`), with PyTorch's semantics:
//! cross-correlation, zero padding, stride, dilation and groups per axis; NCHW activations,
//! OIHW weights `[cout, cin / groups, kh, kw]`, bias `[cout]` (as a `[cout, 1, 1, 1]` tensor).
//!
//! `H_out = (H + 2 * pad_h - dilation_h * (kh - 1) - 1) / stride_h + 1` (floor), same for W.

mod split;
mod texture;

use super::{bindable, no_overlap, rebase, shaders, Half};
use crate::error::{Error, Result};
use crate::gpu::{ConvKernels, WORKGROUP_SIZE};
use crate::memory::Purpose;
use crate::record::{read, write, Cost, Recording};
use crate::tensor::Tensor;
use texture::Extent;

/// Stride, padding, dilation (each `[h, w]`) and groups of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    /// Step between output pixels, in input pixels.
    pub stride: [usize; 2],
    /// Zero rows added at top and bottom, zero columns at left and right.
    pub padding: [usize; 2],
    /// Spacing between kernel taps.
    pub dilation: [usize; 2],
    /// Input and output channels are split into this many independent groups.
    pub groups: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
        }
    }
}

impl Conv2dParams {
    /// Square stride and padding, no dilation, one group.
    pub fn new(stride: usize, padding: usize) -> Self {
        Conv2dParams {
            stride: [stride, stride],
            padding: [padding, padding],
            ..Default::default()
        }
    }

    /// The output shape for an input of shape `x` and a weight of shape `weight`, after
    /// checking that they and the parameters fit together.
    pub fn output_shape(&self, x: [usize; 4], weight: [usize; 4]) -> Result<[usize; 4]> {
        const OP: &str = "conv2d";
        let [n, cin, h, w] = x;
        let [cout, cin_g, kh, kw] = weight;
        if self.stride.contains(&0) || self.dilation.contains(&0) {
            return Err(Error::param(
                OP,
                format!(
                    "stride {:?} and dilation {:?} must be at least 1",
                    self.stride, self.dilation
                ),
            ));
        }
        let g = self.groups;
        if g == 0 || cin % g != 0 || cout % g != 0 {
            return Err(Error::param(
                OP,
                format!("groups = {g} must divide both input channels ({cin}) and output channels ({cout})"),
            ));
        }
        if cin_g * g != cin {
            return Err(Error::shape(
                OP,
                format!(
                    "weight {weight:?} has {cin_g} input channels per group, but the input has {cin} channels in {g} group(s) (expected {})",
                    cin / g
                ),
            ));
        }
        // Kernels index with 32-bit integers (signed where padding makes coordinates
        // negative): every size and parameter, and every coordinate they can form, must
        // fit, or the arithmetic would wrap into a wrong answer. Checked here, once.
        const KERNEL_MAX: usize = i32::MAX as usize;
        let too_large = |what: String| {
            Error::param(
                OP,
                format!(
                    "{what} is too large for the kernels' 32-bit indices (at most {KERNEL_MAX}; input {x:?}, weight {weight:?}, {self:?})"
                ),
            )
        };
        for (what, v) in [
            ("batch", n),
            ("input channels", cin),
            ("height", h),
            ("width", w),
            ("output channels", cout),
            ("kernel height", kh),
            ("kernel width", kw),
            ("stride", self.stride[0].max(self.stride[1])),
            ("padding", self.padding[0].max(self.padding[1])),
            ("dilation", self.dilation[0].max(self.dilation[1])),
            ("groups", g),
        ] {
            if v > KERNEL_MAX {
                return Err(too_large(format!("{what} {v}")));
            }
        }
        let size = |len: usize, pad: usize, dil: usize, k: usize, s: usize, axis: &str| {
            let span = k
                .checked_sub(1)
                .and_then(|k1| dil.checked_mul(k1))
                .and_then(|d| d.checked_add(1))
                .filter(|&v| v <= KERNEL_MAX)
                .ok_or_else(|| too_large(format!("the dilated kernel's {axis}")))?;
            let padded = pad
                .checked_mul(2)
                .and_then(|p2| p2.checked_add(len))
                .filter(|&v| v <= KERNEL_MAX)
                .ok_or_else(|| too_large(format!("the padded input {axis}")))?;
            if padded < span {
                return Err(Error::shape(
                    OP,
                    format!(
                        "output {axis} would be below 1: padded input {axis} {padded} is smaller than the dilated kernel's {span} (input {x:?}, weight {weight:?}, {self:?})"
                    ),
                ));
            }
            Ok((padded - span) / s + 1)
        };
        let oh = size(
            h,
            self.padding[0],
            self.dilation[0],
            kh,
            self.stride[0],
            "height",
        )?;
        let ow = size(
            w,
            self.padding[1],
            self.dilation[1],
            kw,
            self.stride[1],
            "width",
        )?;
        Ok([n, cout, oh, ow])
    }
}

/// Arguments of the conv kernels (`Conv` in `shaders/conv2d_common.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct ConvArgs {
    input: [u32; 4],
    output: [u32; 4],
    kernel_stride: [u32; 4],
    pad_dilation: [u32; 4],
    x_view: [u32; 2],
    y_view: [u32; 2],
    gx_view: [u32; 2],
    count: u32,
    has_bias: u32,
    relu_input: u32,
    accumulate: u32,
    blocks: u32,
    mask_output: u32,
    tex_rows: u32,
    tex_left: u32,
    tex_blocks: u32,
    vec4_ok: u32,
}

/// How a conv kernel reads its input and stores its result; blocks fuse with these.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fusion {
    /// Apply ReLU to the input as it is loaded (and, in backward, mask the input gradient by
    /// `x > 0` as it is stored), so no ReLU copy of the input is ever kept.
    pub relu_input: bool,
    /// Add the result into the destination instead of overwriting it.
    pub accumulate: bool,
}

struct Geometry {
    x: [usize; 4],
    w: [usize; 4],
    y: [usize; 4],
}

fn geometry(x: &Tensor, w: &Tensor, p: &Conv2dParams) -> Result<Geometry> {
    let y = p.output_shape(x.shape(), w.shape())?;
    check_whole("the weight (or its gradient)", w)?;
    Ok(Geometry {
        x: x.shape(),
        w: w.shape(),
        y,
    })
}

/// Weights, biases and their gradients are whole tensors: the kernels index them from 0.
fn check_whole(what: &str, t: &Tensor) -> Result<()> {
    if !t.is_contiguous() {
        return Err(Error::param(
            "conv2d",
            format!("{what} must be a whole tensor, not a channel view"),
        ));
    }
    Ok(())
}

fn check_bias(bias: &Tensor, cout: usize) -> Result<()> {
    check_whole("bias", bias)?;
    if bias.shape() != [cout, 1, 1, 1] {
        return Err(Error::shape(
            "conv2d",
            format!(
                "bias has shape {:?}, expected [{cout}] (as [{cout}, 1, 1, 1])",
                bias.shape()
            ),
        ));
    }
    Ok(())
}

fn expect_shape(what: &str, t: &Tensor, shape: [usize; 4]) -> Result<()> {
    if t.shape() != shape {
        return Err(Error::shape(
            "conv2d",
            format!("{what} has shape {:?}, expected {shape:?}", t.shape()),
        ));
    }
    Ok(())
}

fn args(g: &Geometry, p: &Conv2dParams, count: usize, fusion: Fusion) -> ConvArgs {
    let u = |v: usize| v as u32;
    ConvArgs {
        input: [u(g.x[0]), u(g.x[1]), u(g.x[2]), u(g.x[3])],
        output: [u(g.y[1]), u(g.y[2]), u(g.y[3]), u(p.groups)],
        kernel_stride: [u(g.w[2]), u(g.w[3]), u(p.stride[0]), u(p.stride[1])],
        pad_dilation: [
            u(p.padding[0]),
            u(p.padding[1]),
            u(p.dilation[0]),
            u(p.dilation[1]),
        ],
        count: u(count),
        relu_input: fusion.relu_input as u32,
        accumulate: fusion.accumulate as u32,
        ..Default::default()
    }
}

/// FLOPs of one pass over all taps: an FMA (2 flops) per (output element, input channel of
/// its group, kernel tap), zero padding included, as is conventional.
fn tap_flops(g: &Geometry) -> u64 {
    2 * (g.y.iter().product::<usize>() * g.w[1] * g.w[2] * g.w[3]) as u64
}

/// Bytes of tensors read or written once each.
fn bytes_of(tensors: &[usize]) -> u64 {
    4 * tensors.iter().sum::<usize>() as u64
}

fn view(t: &Tensor) -> [u32; 2] {
    [t.offset_u32(), t.batch_stride_u32()]
}

/// Arguments of the weight-layout kernels (`Layout` in `shaders/conv2d_weight_layout.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct LayoutArgs {
    dims: [u32; 4],
    cols: u32,
    transpose: u32,
    count: u32,
    _pad: u32,
}

impl LayoutArgs {
    /// For OIHW `weight`, `cols` packed columns (channels), `count` threads.
    fn new(weight: [usize; 4], cols: usize, transpose: bool, count: usize) -> LayoutArgs {
        LayoutArgs {
            dims: weight.map(|d| d as u32),
            cols: cols as u32,
            transpose: transpose as u32,
            count: count as u32,
            _pad: 0,
        }
    }
}

/// Packs OIHW weights for the register-blocked kernel (see `conv2d_weight_layout.wgsl`):
/// `[kh*kw*cin][co_pad]`, or transposed and flipped `[kh*kw*cout][ci_pad]`. The packed copy
/// is a scratch tensor held by the recording, rebuilt each time (weights are small).
fn pack_weights(rec: &mut Recording<'_>, weight: &Tensor, transpose: bool) -> Result<Tensor> {
    let [cout, cin, kh, kw] = weight.shape();
    let (rows, cols) = if transpose {
        (cout, cin.next_multiple_of(8))
    } else {
        (cin, cout.next_multiple_of(8))
    };
    let packed = Tensor::zeros(rec.gpu(), [kh * kw * rows, cols, 1, 1], Purpose::Scratch)?;
    let a = LayoutArgs::new(weight.shape(), cols, transpose, packed.numel());
    rec.dispatch(
        shaders::CONV2D_WEIGHT_LAYOUT,
        "conv2d_weight_layout",
        bytemuck::bytes_of(&a),
        &[(1, read(weight)), (2, write(&packed))],
        packed.numel() as u64,
        Cost {
            flops: 0,
            bytes: bytes_of(&[weight.numel(), packed.numel()]),
        },
    )?;
    rec.retain(packed.clone());
    Ok(packed)
}

/// Records an implicit-GEMM kernel (register-blocked or tiled) for geometry `g` (input `x`
/// → `out`), with packed weights, an optional bias, and an optional output mask (the ReLU
/// gradient applied on store).
#[allow(clippy::too_many_arguments)]
fn implicit_gemm(
    rec: &mut Recording<'_>,
    family: ConvKernels,
    g: &Geometry,
    p: &Conv2dParams,
    x: &Tensor,
    packed: &Tensor,
    bias: &Tensor,
    has_bias: bool,
    out: &Tensor,
    mask: Option<&Tensor>,
    fusion: Fusion,
    cost: Cost,
) -> Result<()> {
    let blocks = g.y[1].div_ceil(8);
    let pixels = g.y[0] * g.y[2] * g.y[3];
    let tiles = pixels.div_ceil(64) * g.y[1].div_ceil(64);
    // (shader, entry, `count` argument, workgroups to dispatch)
    let (shader, entry, count, workgroups) = match family {
        ConvKernels::Tiled => (
            shaders::CONV2D_FORWARD_TILED,
            "conv2d_forward_tiled",
            tiles,
            tiles,
        ),
        ConvKernels::Tiled8x8 => (
            shaders::CONV2D_FORWARD_TILED,
            "conv2d_forward_tiled_8x8",
            tiles,
            tiles,
        ),
        ConvKernels::Pixel => (
            shaders::CONV2D_FORWARD_REGBLOCK,
            "conv2d_forward_pixel",
            pixels,
            pixels.div_ceil(64) * blocks,
        ),
        _ => {
            let threads = g.y[0] * g.y[2] * g.y[3].div_ceil(8) * blocks;
            (
                shaders::CONV2D_FORWARD_REGBLOCK,
                "conv2d_forward_regblock",
                threads,
                threads.div_ceil(64),
            )
        }
    };
    let mut a = args(g, p, count, fusion);
    a.x_view = view(x);
    a.y_view = view(out);
    a.has_bias = has_bias as u32;
    a.blocks = blocks as u32;
    if let Some(m) = mask {
        a.gx_view = view(m);
        a.mask_output = 1;
    }
    let mask_buf = read(mask.unwrap_or(out));
    let mut bindings = vec![
        (1, read(x)),
        (2, read(packed)),
        (3, read(bias)),
        (4, write(out)),
        (5, mask_buf),
    ];
    // The 8×8 kernels also see output and mask as vec4s, for whole-block stores.
    if matches!(
        entry,
        "conv2d_forward_regblock" | "conv2d_forward_tiled_8x8"
    ) {
        bindings.extend([(8, write(out)), (9, mask_buf)]);
        a.vec4_ok = vec4_stores(out, mask) as u32;
    }
    rec.dispatch_workgroups(
        shader,
        entry,
        bytemuck::bytes_of(&a),
        &bindings,
        workgroups as u64,
        cost,
    )
}

/// Whether `channels` fill 4-channel blocks better than 8-channel ones (channels % 8 in
/// 1..=4): the texture family's narrow kernels take 4 channels a thread there.
fn narrow_input(channels: usize) -> bool {
    channels.next_multiple_of(4) < channels.next_multiple_of(8)
}

/// Whether the 8×8 kernels may store whole blocks as vec4s into `out` (and read `mask` so):
/// rows of whole blocks, and views whose elements start 4-aligned.
fn vec4_stores(out: &Tensor, mask: Option<&Tensor>) -> bool {
    let aligned = |t: &Tensor| {
        t.shape()[3].is_multiple_of(8)
            && t.offset_u32().is_multiple_of(4)
            && t.batch_stride_u32().is_multiple_of(4)
    };
    aligned(out) && mask.is_none_or(aligned)
}

/// Which pass of a convolution a kernel computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Pass {
    Forward,
    BackwardInput,
    BackwardWeight,
}

/// The concrete kernel family for one pass: the recording's choice where that family applies
/// to the shape (`applicable`: groups = 1, and stride 1 for input gradients), else direct.
/// `Auto` measures the plausible families once per shape and pass (see [`autotune`]).
fn choose(
    rec: &Recording<'_>,
    pass: Pass,
    g: &Geometry,
    p: &Conv2dParams,
    applicable: bool,
) -> Result<ConvKernels> {
    if !applicable {
        return Ok(ConvKernels::Direct);
    }
    match rec.conv_kernels() {
        ConvKernels::Auto => autotune(rec.gpu(), pass, g, p),
        family => Ok(family),
    }
}

/// The texture family where its staged textures fit the device, else register-blocked
/// (the same kernels with storage-buffer loads); other families pass through.
fn texture_if_fits(
    rec: &Recording<'_>,
    family: ConvKernels,
    staged: &[([usize; 4], Extent)],
    weight: Option<([usize; 4], bool)>,
) -> ConvKernels {
    match family {
        ConvKernels::Texture if !texture::fits(rec.gpu(), staged, weight) => {
            ConvKernels::RegisterBlocked
        }
        f => f,
    }
}

/// Picks the fastest family for one pass and shape by running each plausible one on
/// scratch tensors of that shape (best of 3 after a warm-up; GPU timestamps on GPUs, the
/// host clock on CPU adapters); the result is cached per `Gpu`, so each shape is measured
/// once.
///
/// Which families are plausible is the rule the benchmark justified (benches/NOTES.md): on
/// a CPU adapter (lavapipe) the texture family beats register-blocked 1.5–2× on every
/// standard case, which beats the tiled kernels 3× and the direct ones 5×, so only tiny
/// shapes, where launch overhead rules, are measured (against register-blocked and
/// direct); on a GPU every family is fast enough to measure, so all are.
fn autotune(gpu: &crate::Gpu, pass: Pass, g: &Geometry, p: &Conv2dParams) -> Result<ConvKernels> {
    let mut dims = [0; 14];
    dims[..4].copy_from_slice(&g.x);
    dims[4..8].copy_from_slice(&g.w);
    dims[8..].copy_from_slice(&[
        p.stride[0],
        p.stride[1],
        p.padding[0],
        p.padding[1],
        p.dilation[0],
        p.dilation[1],
    ]);
    let key = crate::gpu::TuneKey {
        pass: pass as u8,
        dims,
    };
    if let Some(f) = gpu.tuned(&key) {
        return Ok(f);
    }
    let flops = tap_flops(g);
    let cpu = gpu.adapter_info().device_type == wgpu::DeviceType::Cpu;
    let candidates: Vec<ConvKernels> = match (cpu, flops < 2_000_000) {
        (true, false) => vec![ConvKernels::Texture],
        (true, true) => vec![
            ConvKernels::Texture,
            ConvKernels::RegisterBlocked,
            ConvKernels::Direct,
        ],
        // The weight gradient has one tiled kernel (both tiled families use it).
        (false, _) => ConvKernels::CONCRETE
            .into_iter()
            .filter(|f| !(pass == Pass::BackwardWeight && *f == ConvKernels::Tiled8x8))
            .collect(),
    };
    let choice = if candidates.len() == 1 {
        candidates[0]
    } else if gpu.deterministic() {
        // A fixed rule instead of a measurement, so every process makes the same choice
        // (timings vary between runs, and families sum in different orders): the direct
        // family for tiny shapes on CPU adapters (launch overhead rules there), the pixel
        // family on GPUs (the H200's winner for every pass, benches/NOTES.md).
        if cpu {
            ConvKernels::Direct
        } else {
            ConvKernels::Pixel
        }
    } else {
        // Non-zero inputs: zeros can run faster than real data on some GPUs.
        let filled = |shape: [usize; 4]| {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n).map(|i| (i % 7) as f32 * 0.25 - 0.75).collect();
            Tensor::from_slice(gpu, shape, &v, Purpose::Scratch)
        };
        let (x, w, y) = (filled(g.x)?, filled(g.w)?, filled(g.y)?);
        let out = match pass {
            Pass::Forward => Tensor::zeros(gpu, g.y, Purpose::Scratch)?,
            Pass::BackwardInput => Tensor::zeros(gpu, g.x, Purpose::Scratch)?,
            Pass::BackwardWeight => Tensor::zeros(gpu, g.w, Purpose::Scratch)?,
        };
        let mut best = (f64::INFINITY, candidates[0]);
        for &family in &candidates {
            let mut fastest = f64::INFINITY;
            for run in 0..4 {
                let mut rec = Recording::timed(gpu);
                rec.set_conv_kernels(family);
                let f = Fusion::default();
                match pass {
                    Pass::Forward => conv2d_into(&mut rec, &x, &w, None, p, &out, f)?,
                    Pass::BackwardInput => {
                        conv2d_backward_input_into(&mut rec, &x, &w, &y, p, &out, f)?
                    }
                    Pass::BackwardWeight => {
                        conv2d_backward_weight_into(&mut rec, &x, &y, p, &out, f)?
                    }
                }
                let t = rec.finish_timed()?;
                // lavapipe's timestamps are unreliable for recordings this small (seen off
                // by a whole dispatch either way): the host clock decides there.
                let ms = match (cpu, t.gpu_ms) {
                    (false, Some(gpu_ms)) => gpu_ms,
                    _ => t.wall_ms,
                };
                if run > 0 {
                    fastest = fastest.min(ms);
                }
            }
            if fastest < best.0 {
                best = (fastest, family);
            }
        }
        best.1
    };
    gpu.set_tuned(key, choice);
    Ok(choice)
}

/// Threads a kernel wants in flight: a GPU needs tens of thousands to hide latency, a CPU
/// adapter (lavapipe) only enough workgroups for its cores, and prefers long loops.
fn target_threads(gpu: &crate::Gpu) -> usize {
    match gpu.adapter_info().device_type {
        wgpu::DeviceType::Cpu => 512,
        // On an H200, 1<<18 (four times the workgroups) measured no better: mixed, ±15%.
        _ => 1 << 16,
    }
}

/// The split-reduction weight gradient (groups = 1), register-blocked or tiled, followed by
/// the reduction of the splits' partial sums.
#[allow(clippy::too_many_arguments)]
fn backward_weight_gemm(
    rec: &mut Recording<'_>,
    family: ConvKernels,
    g: &Geometry,
    p: &Conv2dParams,
    x: &Tensor,
    grad_out: &Tensor,
    grad_weight: &Tensor,
    fusion: Fusion,
) -> Result<()> {
    let [cout, cin, kh, kw] = g.w;
    let wsize = grad_weight.numel();
    let x_extent = Extent::input(g, p);
    let staged = [(g.x, x_extent), (g.y, Extent::plain(g.y))];
    let family = texture_if_fits(rec, family, &staged, None);
    // Tiled8x8 has no weight-gradient kernel of its own and uses the tiled one.
    let tiled = matches!(family, ConvKernels::Tiled | ConvKernels::Tiled8x8);
    let pixel = family == ConvKernels::Pixel;
    // The reduction runs over output rows (register-blocked) or pixels (tiled); it is split
    // so that enough threads run, keeping the partial sums under 64 MiB.
    let (units, base_threads) = if tiled {
        let tiles = (cin * kh * kw).div_ceil(64) * cout.div_ceil(64);
        (g.y[0] * g.y[2] * g.y[3], tiles * 256)
    } else if pixel {
        // Each workgroup's 64 lanes share a split: at least 64 pixels a split.
        let blocks = cin.div_ceil(8) * cout.div_ceil(8) * kh * kw;
        ((g.y[0] * g.y[2] * g.y[3]).div_ceil(64), blocks * 64)
    } else {
        // Register-blocked threads own 8 (co) × 8 (ci) blocks, texture threads 16 × 8, or
        // 16 × 4 for inputs whose channels waste most of an 8-channel block.
        let (co_block, ci_block) = match family {
            ConvKernels::Texture if narrow_input(cin) => (16, 4),
            ConvKernels::Texture => (16, 8),
            _ => (8, 8),
        };
        (
            g.y[0] * g.y[2],
            cin.div_ceil(ci_block) * cout.div_ceil(co_block) * kh * kw,
        )
    };
    // Partial sums: at most 64 MiB, and one binding.
    let max_bytes = (64 << 20).min(rec.gpu().limits().max_storage_buffer_binding_size as usize);
    let max_splits = (max_bytes / (4 * wsize)).clamp(1, 256);
    let splits = target_threads(rec.gpu())
        .div_ceil(base_threads)
        .clamp(1, max_splits.min(units));
    // The most units one split may hold and keep each thread's loops within the budget
    // (see split.rs): tiled threads run ~1.3 iterations a pixel (16-pixel slices with inner
    // loops), pixel-family lanes one per 64-pixel unit plus their final 64-lane sum, row
    // kernels a row's pixels plus the row itself.
    let per_max = if tiled {
        split::SERIAL_TERMS.min(split::LOOP_BUDGET * 2 / 3) / 16 * 16
    } else if pixel {
        split::LOOP_BUDGET - 2 * WORKGROUP_SIZE as usize
    } else {
        split::rows_per_split(g.y[3], 2, "weight gradient")?
    };
    let mut per = units.div_ceil(splits).min(per_max);
    if tiled {
        per = per.next_multiple_of(16);
    }
    let splits = units.div_ceil(per);
    if pixel {
        // Units were groups of 64 pixels; the kernel counts pixels.
        per *= 64;
    }
    // One split that overwrites: the kernel writes the gradient itself, no partial sums.
    let direct_store = splits == 1 && !fusion.accumulate;
    let partial = if direct_store {
        grad_weight.clone()
    } else {
        Tensor::zeros(rec.gpu(), [splits, wsize, 1, 1], Purpose::Scratch)?
    };
    let cost = Cost {
        flops: tap_flops(g),
        bytes: bytes_of(&[x.numel(), grad_out.numel(), partial.numel()]),
    };
    let mut a = args(g, p, 0, fusion);
    a.x_view = view(x);
    a.y_view = view(grad_out);
    a.blocks = per as u32;
    if family == ConvKernels::Texture {
        // Same threads and splits as register-blocked; both operands staged first.
        let x_tex = texture::stage_activation(rec, x, x_extent, fusion.relu_input)?;
        let g_tex = texture::stage_activation(rec, grad_out, Extent::plain(g.y), false)?;
        let threads = base_threads * splits;
        a.count = threads as u32;
        a.relu_input = 0;
        a.tex_rows = x_extent.rows as u32;
        rec.dispatch_with_textures(
            shaders::CONV2D_BACKWARD_WEIGHT_REGBLOCK,
            if narrow_input(cin) {
                "conv2d_backward_weight_texture_narrow"
            } else {
                "conv2d_backward_weight_texture"
            },
            bytemuck::bytes_of(&a),
            &[(3, write(&partial))],
            &[(5, &x_tex), (6, &g_tex)],
            threads.div_ceil(64) as u64,
            cost,
        )?;
        rec.staging_consumed();
        return reduce_partials(rec, partial, grad_weight, splits, fusion.accumulate);
    }
    let bindings = [(1, read(x)), (2, read(grad_out)), (3, write(&partial))];
    // (shader, entry, `count` argument, workgroups to dispatch)
    let (shader, entry, count, workgroups) = if tiled {
        let workgroups = base_threads / 256 * splits;
        (
            shaders::CONV2D_BACKWARD_WEIGHT_TILED,
            "conv2d_backward_weight_tiled",
            workgroups,
            workgroups,
        )
    } else if pixel {
        let workgroups = base_threads / 64 * splits;
        (
            shaders::CONV2D_BACKWARD_WEIGHT_REGBLOCK,
            "conv2d_backward_weight_pixel",
            workgroups,
            workgroups,
        )
    } else {
        let threads = base_threads * splits;
        (
            shaders::CONV2D_BACKWARD_WEIGHT_REGBLOCK,
            "conv2d_backward_weight_regblock",
            threads,
            threads.div_ceil(64),
        )
    };
    a.count = count as u32;
    rec.dispatch_workgroups(
        shader,
        entry,
        bytemuck::bytes_of(&a),
        &bindings,
        workgroups as u64,
        cost,
    )?;
    reduce_partials(rec, partial, grad_weight, splits, fusion.accumulate)
}

/// Sums the splits' partial weight or bias gradients, `partial` `[splits][dst.numel()]`,
/// into `dst` (=|+=); nothing to do when one split wrote `dst` itself (`partial` is then
/// `dst`). The sum is one thread's loop over the splits, so their count is bounded too.
fn reduce_partials(
    rec: &mut Recording<'_>,
    partial: Tensor,
    dst: &Tensor,
    splits: usize,
    accumulate: bool,
) -> Result<()> {
    if partial.shares_buffer(dst) {
        return Ok(());
    }
    if splits > split::LOOP_BUDGET {
        return Err(Error::param(
            "conv2d backward",
            format!(
                "the reduction needs {splits} partial sums, more than one GPU thread may add up \
                 ({}); use smaller images or batches",
                split::LOOP_BUDGET
            ),
        ));
    }
    let size = dst.numel();
    let r = ConvArgs {
        count: size as u32,
        mask_output: splits as u32,
        accumulate: accumulate as u32,
        ..Default::default()
    };
    rec.dispatch(
        shaders::CONV2D_BACKWARD_WEIGHT_REGBLOCK,
        "conv2d_backward_weight_reduce",
        bytemuck::bytes_of(&r),
        &[(3, read(&partial)), (4, write(dst))],
        size as u64,
        Cost {
            flops: partial.numel() as u64,
            bytes: bytes_of(&[partial.numel(), size * (1 + accumulate as usize)]),
        },
    )?;
    rec.retain(partial);
    Ok(())
}

/// Forward convolution into a new activation tensor.
pub fn conv2d(
    rec: &mut Recording<'_>,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    params: &Conv2dParams,
) -> Result<Tensor> {
    let y = params.output_shape(x.shape(), weight.shape())?;
    let out = Tensor::zeros(rec.gpu(), y, Purpose::Activation)?;
    conv2d_into(rec, x, weight, bias, params, &out, Fusion::default())?;
    Ok(out)
}

/// Forward convolution into `out` (a tensor or a channel view). `x` and `out` may be disjoint
/// views of one buffer (a dense block reads earlier channels and writes the next ones).
pub fn conv2d_into(
    rec: &mut Recording<'_>,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    params: &Conv2dParams,
    out: &Tensor,
    fusion: Fusion,
) -> Result<()> {
    let g = geometry(x, weight, params)?;
    if let Some(b) = bias {
        check_bias(b, g.y[1])?;
    }
    expect_shape("output", out, g.y)?;
    no_overlap("conv2d", out, x)?;
    // Tensors larger than one binding: halves of the batch, else of the channels.
    let params_fit = bindable(rec.gpu(), &[weight]);
    if !bindable(rec.gpu(), &[x, out]) || !params_fit {
        match Half::of(g.x, false) {
            Some(halves) if params_fit => {
                for half in halves {
                    let (xh, oh) = (half.of_tensor(x)?, half.of_tensor(out)?);
                    conv2d_into(rec, &xh, weight, bias, params, &oh, fusion)?;
                }
                return Ok(());
            }
            _ if params.groups == 1 => {
                let out_fits = params_fit && bindable(rec.gpu(), &[out]);
                return split::forward_channels(
                    rec, params, x, weight, bias, out, fusion, out_fits,
                );
            }
            _ => {}
        }
    }
    let (x, out) = (&rebase(rec.gpu(), x), &rebase(rec.gpu(), out));
    if !split::channels_fit(g.w[2], g.w[3], g.w[1]) {
        return split::forward(rec, &g, params, x, weight, bias, out, fusion);
    }
    let cost = Cost {
        flops: tap_flops(&g) + bias.map_or(0, |_| out.numel() as u64),
        bytes: bytes_of(&[
            x.numel(),
            weight.numel(),
            bias.map_or(0, |b| b.numel()),
            out.numel() * (1 + fusion.accumulate as usize),
        ]),
    };
    let family = choose(rec, Pass::Forward, &g, params, params.groups == 1)?;
    let staged = [(g.x, Extent::input(&g, params))];
    let family = texture_if_fits(rec, family, &staged, Some((g.w, false)));
    if family == ConvKernels::Texture {
        return texture::forward(
            rec, &g, params, x, weight, false, bias, out, None, fusion, cost,
        );
    }
    if family != ConvKernels::Direct {
        let packed = pack_weights(rec, weight, false)?;
        return implicit_gemm(
            rec,
            family,
            &g,
            params,
            x,
            &packed,
            bias.unwrap_or(weight),
            bias.is_some(),
            out,
            None,
            fusion,
            cost,
        );
    }
    let mut a = args(&g, params, out.numel(), fusion);
    a.x_view = view(x);
    a.y_view = view(out);
    a.has_bias = bias.is_some() as u32;
    // Without a bias the kernel never reads binding 3; the weight stands in for it.
    let bias_buf = read(bias.unwrap_or(weight));
    rec.dispatch(
        shaders::CONV2D_DIRECT,
        "conv2d_forward",
        bytemuck::bytes_of(&a),
        &[
            (1, read(x)),
            (2, read(weight)),
            (3, bias_buf),
            (4, write(out)),
        ],
        out.numel() as u64,
        cost,
    )
}

/// The three gradients of a convolution.
#[derive(Debug)]
pub struct Conv2dGrads {
    /// Gradient with respect to the input.
    pub grad_x: Tensor,
    /// Gradient with respect to the weight.
    pub grad_weight: Tensor,
    /// Gradient with respect to the bias (when the conv has one).
    pub grad_bias: Option<Tensor>,
}

/// All gradients of `conv2d(x, weight, bias?)` given the output gradient, in new tensors.
pub fn conv2d_backward(
    rec: &mut Recording<'_>,
    x: &Tensor,
    weight: &Tensor,
    has_bias: bool,
    grad_out: &Tensor,
    params: &Conv2dParams,
) -> Result<Conv2dGrads> {
    let gpu = rec.gpu();
    let grad_x = Tensor::zeros(gpu, x.shape(), Purpose::Gradient)?;
    let grad_weight = Tensor::zeros(gpu, weight.shape(), Purpose::Gradient)?;
    let grad_bias = if has_bias {
        Some(Tensor::zeros(
            gpu,
            [weight.shape()[0], 1, 1, 1],
            Purpose::Gradient,
        )?)
    } else {
        None
    };
    conv2d_backward_into(
        rec,
        x,
        weight,
        grad_out,
        params,
        &grad_x,
        &grad_weight,
        grad_bias.as_ref(),
        Fusion::default(),
    )?;
    Ok(Conv2dGrads {
        grad_x,
        grad_weight,
        grad_bias,
    })
}

/// Whether the input gradient is a stride-1 conv of grad_out with the transposed, flipped
/// kernel (padding `d(k-1) - p` must not be negative): what the GEMM kernels compute.
fn transposable(g: &Geometry, p: &Conv2dParams) -> bool {
    let [_, _, kh, kw] = g.w;
    p.stride == [1, 1]
        && p.padding[0] <= p.dilation[0] * (kh - 1)
        && p.padding[1] <= p.dilation[1] * (kw - 1)
}

/// Convolutions this small (in FLOPs of one pass) take their three gradients from one
/// fused direct dispatch when the direct family is chosen for every pass: launch overhead
/// is their whole cost.
const FUSED_BACKWARD_MAX_FLOPS: u64 = 2_000_000;

/// All gradients of a convolution into tensors the caller owns: `grad_x` (=|+=, by
/// `fusion.accumulate`; a view is fine), `grad_weight` and `grad_bias` (overwritten). With
/// `fusion.relu_input`, `x` is the forward's pre-ReLU input: ReLU'd as the weight gradient
/// loads it, and the input gradient masked by `x > 0` as it is stored. Tiny convolutions run
/// as one fused dispatch; others as one dispatch (or kernel family) per gradient.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward_into(
    rec: &mut Recording<'_>,
    x: &Tensor,
    weight: &Tensor,
    grad_out: &Tensor,
    params: &Conv2dParams,
    grad_x: &Tensor,
    grad_weight: &Tensor,
    grad_bias: Option<&Tensor>,
    fusion: Fusion,
) -> Result<()> {
    let g = geometry(x, weight, params)?;
    // The fused kernel sums each weight and bias element in one thread: only where those
    // loops (N*OH*OW pixels, channels × taps) stay within the budget.
    let [_, cin_g, kh, kw] = g.w;
    let loops_fit = g.y[0] * g.y[2] * (g.y[3] + 2) <= split::LOOP_BUDGET
        && split::channels_fit(kh, kw, cin_g.max(g.y[1] / params.groups));
    let tiny = tap_flops(&g) <= FUSED_BACKWARD_MAX_FLOPS
        && loops_fit
        && bindable(rec.gpu(), &[x, grad_out, grad_x]);
    if tiny
        && rec.conv_kernels() != ConvKernels::Tiled
        && rec.conv_kernels() != ConvKernels::Tiled8x8
    {
        let gemm = params.groups == 1;
        let all_direct = choose(
            rec,
            Pass::BackwardInput,
            &g,
            params,
            gemm && transposable(&g, params),
        )? == ConvKernels::Direct
            && choose(rec, Pass::BackwardWeight, &g, params, gemm)? == ConvKernels::Direct;
        if all_direct {
            return backward_fused(
                rec,
                &g,
                params,
                x,
                weight,
                grad_out,
                grad_x,
                grad_weight,
                grad_bias,
                fusion,
            );
        }
    }
    conv2d_backward_input_into(rec, x, weight, grad_out, params, grad_x, fusion)?;
    let load = Fusion {
        relu_input: fusion.relu_input,
        accumulate: false,
    };
    conv2d_backward_weight_into(rec, x, grad_out, params, grad_weight, load)?;
    if let Some(gb) = grad_bias {
        conv2d_backward_bias_into(rec, grad_out, gb, false)?;
    }
    Ok(())
}

/// The three gradients of a tiny convolution in one direct dispatch.
#[allow(clippy::too_many_arguments)]
fn backward_fused(
    rec: &mut Recording<'_>,
    g: &Geometry,
    params: &Conv2dParams,
    x: &Tensor,
    weight: &Tensor,
    grad_out: &Tensor,
    grad_x: &Tensor,
    grad_weight: &Tensor,
    grad_bias: Option<&Tensor>,
    fusion: Fusion,
) -> Result<()> {
    expect_shape("output gradient", grad_out, g.y)?;
    expect_shape("input gradient", grad_x, g.x)?;
    expect_shape("weight gradient", grad_weight, g.w)?;
    if let Some(gb) = grad_bias {
        check_bias(gb, g.y[1])?;
    }
    for t in [Some(grad_x), Some(grad_weight), grad_bias]
        .into_iter()
        .flatten()
    {
        no_overlap("conv2d backward", t, x)?;
        no_overlap("conv2d backward", t, grad_out)?;
    }
    let gpu = rec.gpu();
    let (x, grad_out, grad_x) = (
        &rebase(gpu, x),
        &rebase(gpu, grad_out),
        &rebase(gpu, grad_x),
    );
    // Without a bias gradient its slot is bound to the weight gradient and never written.
    let cout = if grad_bias.is_some() { g.y[1] } else { 0 };
    let count = grad_x.numel() + grad_weight.numel() + cout;
    let mut a = args(g, params, count, fusion);
    a.x_view = view(x);
    a.y_view = view(grad_out);
    a.gx_view = view(grad_x);
    let cost = Cost {
        flops: 2 * tap_flops(g) + grad_out.numel() as u64,
        bytes: bytes_of(&[
            x.numel(),
            weight.numel(),
            grad_out.numel(),
            grad_x.numel() * (1 + fusion.accumulate as usize),
            grad_weight.numel(),
            cout,
        ]),
    };
    rec.dispatch(
        shaders::CONV2D_DIRECT,
        "conv2d_backward_fused",
        bytemuck::bytes_of(&a),
        &[
            (1, read(x)),
            (2, read(weight)),
            (4, read(grad_out)),
            (5, write(grad_x)),
            (6, write(grad_weight)),
            (7, write(grad_bias.unwrap_or(grad_weight))),
        ],
        count as u64,
        cost,
    )
}

/// Input gradient into `grad_x` (a tensor or view). With `fusion.relu_input`, `x` is the
/// forward's pre-ReLU input and the result is masked by `x > 0`; else `x` only gives shapes.
/// `grad_out` and `grad_x` may be disjoint views of one buffer.
pub fn conv2d_backward_input_into(
    rec: &mut Recording<'_>,
    x: &Tensor,
    weight: &Tensor,
    grad_out: &Tensor,
    params: &Conv2dParams,
    grad_x: &Tensor,
    fusion: Fusion,
) -> Result<()> {
    let g = geometry(x, weight, params)?;
    expect_shape("output gradient", grad_out, g.y)?;
    expect_shape("input gradient", grad_x, g.x)?;
    no_overlap("conv2d backward input", grad_x, grad_out)?;
    no_overlap("conv2d backward input", grad_x, x)?;
    let params_fit = bindable(rec.gpu(), &[weight]);
    if !bindable(rec.gpu(), &[x, grad_out, grad_x]) || !params_fit {
        if let Some(halves) = Half::of(g.x, false).filter(|_| params_fit) {
            for half in halves {
                let (xh, goh, gxh) = (
                    half.of_tensor(x)?,
                    half.of_tensor(grad_out)?,
                    half.of_tensor(grad_x)?,
                );
                conv2d_backward_input_into(rec, &xh, weight, &goh, params, &gxh, fusion)?;
            }
            return Ok(());
        }
        if params.groups == 1 {
            let fits = params_fit && bindable(rec.gpu(), &[grad_out]);
            return split::backward_input_channels(
                rec, params, x, weight, grad_out, grad_x, fusion, fits,
            );
        }
    }
    let gpu = rec.gpu();
    let (x, grad_out, grad_x) = (
        &rebase(gpu, x),
        &rebase(gpu, grad_out),
        &rebase(gpu, grad_x),
    );
    if !split::channels_fit(g.w[2], g.w[3], g.y[1] / params.groups) {
        return split::backward_input(rec, &g, params, x, weight, grad_out, grad_x, fusion);
    }
    let cost = Cost {
        flops: tap_flops(&g),
        bytes: bytes_of(&[
            grad_out.numel(),
            weight.numel(),
            if fusion.relu_input { x.numel() } else { 0 },
            grad_x.numel() * (1 + fusion.accumulate as usize),
        ]),
    };
    let [_, _, kh, kw] = g.w;
    let family = choose(rec, Pass::BackwardInput, &g, params, params.groups == 1)?;
    let mask = fusion.relu_input.then_some(x);
    let f = Fusion {
        relu_input: false,
        accumulate: fusion.accumulate,
    };
    let family = if transposable(&g, params) {
        family
    } else {
        // Only the texture family has a kernel for input gradients that are not a
        // stride-1 conv of grad_out.
        let plan = texture::StridedInput::new(&g, params);
        if family == ConvKernels::Texture
            && texture::fits(rec.gpu(), &[(g.y, plan.extent)], Some((g.w, true)))
        {
            return texture::backward_input_strided(
                rec, &g, params, &plan, weight, grad_out, grad_x, mask, f, cost,
            );
        }
        ConvKernels::Direct
    };
    if family != ConvKernels::Direct {
        // The input gradient of a stride-1 conv is a conv of grad_out with the transposed,
        // flipped kernel and padding d*(k-1) - p.
        let t = Geometry {
            x: g.y,
            w: [g.x[1], g.y[1], kh, kw],
            y: g.x,
        };
        let tp = Conv2dParams {
            stride: [1, 1],
            padding: [
                params.dilation[0] * (kh - 1) - params.padding[0],
                params.dilation[1] * (kw - 1) - params.padding[1],
            ],
            dilation: params.dilation,
            groups: 1,
        };
        let staged = [(t.x, Extent::input(&t, &tp))];
        let family = texture_if_fits(rec, family, &staged, Some((g.w, true)));
        if family == ConvKernels::Texture {
            return texture::forward(
                rec, &t, &tp, grad_out, weight, true, None, grad_x, mask, f, cost,
            );
        }
        let packed = pack_weights(rec, weight, true)?;
        return implicit_gemm(
            rec, family, &t, &tp, grad_out, &packed, weight, false, grad_x, mask, f, cost,
        );
    }
    let mut a = args(&g, params, grad_x.numel(), fusion);
    a.x_view = view(x);
    a.y_view = view(grad_out);
    a.gx_view = view(grad_x);
    rec.dispatch(
        shaders::CONV2D_DIRECT,
        "conv2d_backward_input",
        bytemuck::bytes_of(&a),
        &[
            (1, read(x)),
            (2, read(weight)),
            (4, read(grad_out)),
            (5, write(grad_x)),
        ],
        grad_x.numel() as u64,
        cost,
    )
}

/// Weight gradient into `grad_weight`. With `fusion.relu_input` the forward's input was
/// ReLU'd on load, and so it is here.
pub fn conv2d_backward_weight_into(
    rec: &mut Recording<'_>,
    x: &Tensor,
    grad_out: &Tensor,
    params: &Conv2dParams,
    grad_weight: &Tensor,
    fusion: Fusion,
) -> Result<()> {
    let g = geometry(x, grad_weight, params)?;
    expect_shape("output gradient", grad_out, g.y)?;
    no_overlap("conv2d backward weight", grad_weight, x)?;
    no_overlap("conv2d backward weight", grad_weight, grad_out)?;
    let params_fit = bindable(rec.gpu(), &[grad_weight]);
    if !bindable(rec.gpu(), &[x, grad_out]) || !params_fit {
        if let Some(halves) = Half::of(g.x, false).filter(|_| params_fit) {
            for half in halves {
                let f = Fusion {
                    relu_input: fusion.relu_input,
                    accumulate: fusion.accumulate || half.is_second(),
                };
                let (xh, goh) = (half.of_tensor(x)?, half.of_tensor(grad_out)?);
                conv2d_backward_weight_into(rec, &xh, &goh, params, grad_weight, f)?;
            }
            return Ok(());
        }
        if params.groups == 1 {
            let fits = params_fit && bindable(rec.gpu(), &[grad_out]);
            return split::backward_weight_channels(
                rec,
                params,
                x,
                grad_out,
                grad_weight,
                fusion,
                fits,
            );
        }
    }
    let (x, grad_out) = (&rebase(rec.gpu(), x), &rebase(rec.gpu(), grad_out));
    let family = choose(rec, Pass::BackwardWeight, &g, params, params.groups == 1)?;
    if family != ConvKernels::Direct {
        return backward_weight_gemm(rec, family, &g, params, x, grad_out, grad_weight, fusion);
    }
    // The reduction over the N*OH output rows, split so no thread loops past the budget;
    // several splits write partial sums that a second pass adds up.
    let wsize = grad_weight.numel();
    let rows = g.y[0] * g.y[2];
    let per = split::rows_per_split(g.y[3], 2, "weight gradient")?.min(rows);
    let splits = rows.div_ceil(per);
    let partial = if splits == 1 {
        grad_weight.clone()
    } else {
        Tensor::zeros(rec.gpu(), [splits, wsize, 1, 1], Purpose::Scratch)?
    };
    let mut a = args(&g, params, wsize * splits, fusion);
    a.x_view = view(x);
    a.y_view = view(grad_out);
    a.blocks = per as u32;
    a.accumulate = (fusion.accumulate && splits == 1) as u32;
    let cost = Cost {
        flops: tap_flops(&g),
        bytes: bytes_of(&[
            x.numel(),
            grad_out.numel(),
            wsize * splits * (1 + fusion.accumulate as usize),
        ]),
    };
    rec.dispatch(
        shaders::CONV2D_DIRECT,
        "conv2d_backward_weight",
        bytemuck::bytes_of(&a),
        &[(1, read(x)), (4, read(grad_out)), (6, write(&partial))],
        (wsize * splits) as u64,
        cost,
    )?;
    reduce_partials(rec, partial, grad_weight, splits, fusion.accumulate)
}

/// Bias gradient (the sum of `grad_out` over batch and pixels) into `grad_bias` `[cout]`.
pub fn conv2d_backward_bias_into(
    rec: &mut Recording<'_>,
    grad_out: &Tensor,
    grad_bias: &Tensor,
    accumulate: bool,
) -> Result<()> {
    let [n, cout, oh, ow] = grad_out.shape();
    check_bias(grad_bias, cout)?;
    no_overlap("conv2d backward bias", grad_bias, grad_out)?;
    if !bindable(rec.gpu(), &[grad_out]) {
        if let Some(halves) = Half::of(grad_out.shape(), false) {
            for half in halves {
                let goh = half.of_tensor(grad_out)?;
                let acc = accumulate || half.is_second();
                conv2d_backward_bias_into(rec, &goh, grad_bias, acc)?;
            }
            return Ok(());
        }
        return split::backward_bias_channels(rec, grad_out, grad_bias, accumulate);
    }
    let grad_out = &rebase(rec.gpu(), grad_out);
    // Units of the reduction: (image, chunk of BIAS_CHUNK plane elements); a split's
    // workgroup lanes loop BIAS_CHUNK / 64 times a unit.
    const BIAS_CHUNK: usize = 4096;
    let chunks = (oh * ow).div_ceil(BIAS_CHUNK);
    let units = n * chunks;
    let per =
        split::rows_per_split(BIAS_CHUNK / WORKGROUP_SIZE as usize, 2, "bias gradient")?.min(units);
    let splits = units.div_ceil(per);
    let partial = if splits == 1 {
        grad_bias.clone()
    } else {
        Tensor::zeros(rec.gpu(), [splits * cout, 1, 1, 1], Purpose::Scratch)?
    };
    let a = ConvArgs {
        input: [n as u32, 0, 0, 0],
        output: [cout as u32, oh as u32, ow as u32, 1],
        y_view: view(grad_out),
        count: (cout * splits) as u32,
        accumulate: (accumulate && splits == 1) as u32,
        blocks: per as u32,
        tex_rows: BIAS_CHUNK as u32,
        vec4_ok: ((oh * ow).is_multiple_of(4)
            && grad_out.offset_u32().is_multiple_of(4)
            && grad_out.batch_stride_u32().is_multiple_of(4)) as u32,
        ..Default::default()
    };
    rec.dispatch_workgroups(
        shaders::CONV2D_DIRECT,
        "conv2d_backward_bias",
        bytemuck::bytes_of(&a),
        &[
            (4, read(grad_out)),
            (7, write(&partial)),
            (8, read(grad_out)),
        ],
        (cout * splits) as u64,
        Cost {
            flops: grad_out.numel() as u64,
            bytes: bytes_of(&[grad_out.numel(), cout * (1 + accumulate as usize)]),
        },
    )?;
    reduce_partials(rec, partial, grad_bias, splits, accumulate)
}
