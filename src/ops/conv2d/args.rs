//! What every conv kernel is given: the geometry of the problem, the argument struct that
//! mirrors `Conv` in `shaders/conv2d/common.wgsl`, the checks on weights and biases, and the
//! argument structs of the three passes that the selection hands to a family.

use super::{Conv2dParams, Fusion};
use crate::error::{Error, Result};
use crate::record::{read, write, Binding, Cost};
use crate::tensor::Tensor;

/// The shapes of one convolution: input `x`, weight `w` (OIHW) and output `y`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub x: [usize; 4],
    pub w: [usize; 4],
    pub y: [usize; 4],
}

impl Geometry {
    /// The geometry of `x` convolved with `w`, after checking that they fit together and
    /// that `w` is a whole tensor.
    pub fn of(x: &Tensor, w: &Tensor, p: &Conv2dParams) -> Result<Geometry> {
        let y = p.output_shape(x.shape(), w.shape())?;
        check_whole("the weight (or its gradient)", w)?;
        Ok(Geometry {
            x: x.shape(),
            w: w.shape(),
            y,
        })
    }

    /// The same problem on a batch of `n` images (a part of the batch).
    pub fn with_batch(&self, n: usize) -> Geometry {
        let mut g = *self;
        g.x[0] = n;
        g.y[0] = n;
        g
    }

    /// Taps of the kernel (kh · kw).
    pub fn taps(&self) -> usize {
        self.w[2] * self.w[3]
    }

    /// FLOPs of one pass over all taps: an FMA (2 flops) per (output element, input channel
    /// of its group, kernel tap), zero padding included, as is conventional.
    pub fn tap_flops(&self) -> u64 {
        2 * (self.y.iter().product::<usize>() * self.w[1] * self.w[2] * self.w[3]) as u64
    }

    /// Whether the input gradient is a stride-1 conv of grad_out with the transposed,
    /// flipped kernel (padding `d(k-1) - p` must not be negative): what the GEMM-shaped
    /// kernels compute.
    pub fn transposable(&self, p: &Conv2dParams) -> bool {
        let [_, _, kh, kw] = self.w;
        p.stride == [1, 1]
            && p.padding[0] <= p.dilation[0] * (kh - 1)
            && p.padding[1] <= p.dilation[1] * (kw - 1)
    }

    /// The input gradient of a stride-1 conv as a forward conv: grad_out in, grad_x out,
    /// the transposed kernel and padding `d(k-1) - p` (see [`Geometry::transposable`]).
    pub fn transposed(&self, p: &Conv2dParams) -> (Geometry, Conv2dParams) {
        let [_, _, kh, kw] = self.w;
        let g = Geometry {
            x: self.y,
            w: [self.x[1], self.y[1], kh, kw],
            y: self.x,
        };
        let tp = Conv2dParams {
            stride: [1, 1],
            padding: [
                p.dilation[0] * (kh - 1) - p.padding[0],
                p.dilation[1] * (kw - 1) - p.padding[1],
            ],
            dilation: p.dilation,
            groups: 1,
        };
        (g, tp)
    }
}

/// Arguments of the conv kernels (`Conv` in `shaders/conv2d/common.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ConvArgs {
    pub input: [u32; 4],
    pub output: [u32; 4],
    pub kernel_stride: [u32; 4],
    pub pad_dilation: [u32; 4],
    pub x_view: [u32; 2],
    pub y_view: [u32; 2],
    pub gx_view: [u32; 2],
    pub count: u32,
    pub has_bias: u32,
    pub relu_input: u32,
    pub accumulate: u32,
    pub blocks: u32,
    pub mask_output: u32,
    pub per_split: u32,
    pub vec4_ok: u32,
    pub _pad: [u32; 2],
}

impl ConvArgs {
    /// The arguments for geometry `g` and parameters `p`, `count` threads (or workgroups)
    /// doing work, loading and storing as `fusion` says.
    pub fn new(g: &Geometry, p: &Conv2dParams, count: usize, fusion: Fusion) -> ConvArgs {
        let u = |v: usize| v as u32;
        ConvArgs {
            input: g.x.map(u),
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

    /// The problem's geometry as the GEMM family's override constants
    /// (`shaders/conv2d/gemm/geometry.wgsl`): taken from these arguments, so each `G_*`
    /// equals the uniform field it names by construction. The batch is left out: one
    /// pipeline serves every batch size (and every part of a batch).
    pub fn geometry_constants(&self) -> [(&'static str, f64); 14] {
        let [_, cin, h, w] = self.input;
        let [cout, oh, ow, _groups] = self.output;
        let [kh, kw, sh, sw] = self.kernel_stride;
        let [ph, pw, dh, dw] = self.pad_dilation;
        [
            ("G_CIN", cin),
            ("G_H", h),
            ("G_W", w),
            ("G_COUT", cout),
            ("G_OH", oh),
            ("G_OW", ow),
            ("G_KH", kh),
            ("G_KW", kw),
            ("G_SH", sh),
            ("G_SW", sw),
            ("G_PH", ph),
            ("G_PW", pw),
            ("G_DH", dh),
            ("G_DW", dw),
        ]
        .map(|(name, v)| (name, v as f64))
    }

    /// As bytes, for `Recording::launch`.
    pub fn bytes(&self) -> &[u8] {
        bytemuck::bytes_of(self)
    }
}

/// A view's (offset, batch stride) in elements, as the kernels address it.
pub(crate) fn view(t: &Tensor) -> [u32; 2] {
    [t.offset_u32(), t.batch_stride_u32()]
}

/// Bytes of tensors read or written once each.
pub(crate) fn bytes_of(tensors: &[usize]) -> u64 {
    4 * tensors.iter().sum::<usize>() as u64
}

/// Weights, biases and their gradients are whole tensors: the kernels index them from 0.
pub(crate) fn check_whole(what: &str, t: &Tensor) -> Result<()> {
    if !t.is_contiguous() {
        return Err(Error::param(
            "conv2d",
            format!("{what} must be a whole tensor, not a channel view"),
        ));
    }
    Ok(())
}

/// Fails unless `bias` is a whole `[cout, 1, 1, 1]` tensor.
pub(crate) fn check_bias(bias: &Tensor, cout: usize) -> Result<()> {
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

/// Fails unless `t` has shape `shape`.
pub(crate) fn expect_shape(what: &str, t: &Tensor, shape: [usize; 4]) -> Result<()> {
    if t.shape() != shape {
        return Err(Error::shape(
            "conv2d",
            format!("{what} has shape {:?}, expected {shape:?}", t.shape()),
        ));
    }
    Ok(())
}

/// Whether `channels` fill 4-channel blocks better than 8-channel ones (channels % 8 in
/// 1..=4): the texture family's narrow kernels take 4 channels a thread there.
pub(crate) fn narrow_input(channels: usize) -> bool {
    channels.next_multiple_of(4) < channels.next_multiple_of(8)
}

/// Whether the 8×8 kernels may store whole blocks as vec4s into `out` (and read `mask` so):
/// rows of whole blocks, and views whose elements start 4-aligned.
pub(crate) fn vec4_stores(out: &Tensor, mask: Option<&Tensor>) -> bool {
    vec4_stores_of(out, mask, |[_, _, _, w]| w)
}

/// The same for kernels whose 8-pixel blocks run on across rows (flat pixel order within an
/// image): the image's plane, not its row, must be a multiple of 8.
pub(crate) fn plane_vec4_stores(out: &Tensor, mask: Option<&Tensor>) -> bool {
    vec4_stores_of(out, mask, |[_, _, h, w]| h * w)
}

fn vec4_stores_of(out: &Tensor, mask: Option<&Tensor>, unit: fn([usize; 4]) -> usize) -> bool {
    let aligned = |t: &Tensor| {
        unit(t.shape()).is_multiple_of(8)
            && t.offset_u32().is_multiple_of(4)
            && t.batch_stride_u32().is_multiple_of(4)
    };
    aligned(out) && mask.is_none_or(aligned)
}

/// A forward convolution for a family: `out (=|+=) conv(f(x), weight) + bias`, on views
/// that fit one binding each and a reduction that fits the loop budget.
pub(crate) struct ForwardArgs<'a> {
    pub g: Geometry,
    pub p: Conv2dParams,
    pub x: &'a Tensor,
    pub weight: &'a Tensor,
    pub bias: Option<&'a Tensor>,
    pub out: &'a Tensor,
    pub fusion: Fusion,
}

impl ForwardArgs<'_> {
    /// The work it declares.
    pub fn cost(&self) -> Cost {
        Cost {
            flops: self.g.tap_flops() + self.bias.map_or(0, |_| self.out.numel() as u64),
            bytes: bytes_of(&[
                self.x.numel(),
                self.weight.numel(),
                self.bias.map_or(0, |b| b.numel()),
                self.out.numel() * (1 + self.fusion.accumulate as usize),
            ]),
        }
    }

    /// As a GEMM-shaped forward launch.
    pub fn gemm(&self) -> GemmCall<'_> {
        GemmCall {
            g: self.g,
            p: self.p,
            x: self.x,
            weight: self.weight,
            transpose: false,
            bias: self.bias,
            out: self.out,
            mask: None,
            fusion: self.fusion,
            cost: self.cost(),
        }
    }
}

/// An input gradient for a family: `grad_x (=|+=) m · conv_transpose(grad_out, weight)`,
/// `m = (x > 0)` with `fusion.relu_input` (else `x` only gives shapes).
pub(crate) struct InputGradArgs<'a> {
    pub g: Geometry,
    pub p: Conv2dParams,
    pub x: &'a Tensor,
    pub weight: &'a Tensor,
    pub grad_out: &'a Tensor,
    pub grad_x: &'a Tensor,
    pub fusion: Fusion,
}

impl InputGradArgs<'_> {
    /// The work it declares.
    pub fn cost(&self) -> Cost {
        Cost {
            flops: self.g.tap_flops(),
            bytes: bytes_of(&[
                self.grad_out.numel(),
                self.weight.numel(),
                if self.fusion.relu_input {
                    self.x.numel()
                } else {
                    0
                },
                self.grad_x.numel() * (1 + self.fusion.accumulate as usize),
            ]),
        }
    }

    /// The ReLU mask the result is stored through, if any.
    pub fn mask(&self) -> Option<&Tensor> {
        self.fusion.relu_input.then_some(self.x)
    }

    /// The stride-1 input gradient as a GEMM-shaped forward launch on the transposed
    /// problem (only where [`Geometry::transposable`]).
    pub fn gemm(&self) -> GemmCall<'_> {
        let (g, p) = self.g.transposed(&self.p);
        GemmCall {
            g,
            p,
            x: self.grad_out,
            weight: self.weight,
            transpose: true,
            bias: None,
            out: self.grad_x,
            mask: self.mask(),
            fusion: Fusion {
                relu_input: false,
                accumulate: self.fusion.accumulate,
            },
            cost: self.cost(),
        }
    }
}

/// A weight gradient for a family: `grad_weight (=|+=) Σ grad_out ⊗ f(x)`, and the bias
/// gradient that may ride with its reduce (see `partials.rs`).
pub(crate) struct WeightGradArgs<'a> {
    pub g: Geometry,
    pub p: Conv2dParams,
    pub x: &'a Tensor,
    pub grad_out: &'a Tensor,
    pub grad_weight: &'a Tensor,
    pub fusion: Fusion,
    pub bias: Option<&'a BiasGradient<'a>>,
}

/// A bias gradient owed beside a weight gradient: the sum of the *whole* output gradient
/// (whatever part of the batch or channels a family's launch covers) into `grad_bias`,
/// overwritten. The first reduce of the weight gradient's partial sums that can take it
/// along does (one launch fewer) and marks it done; `backward_weight.rs` runs it on its own
/// where none did, so it is computed exactly once either way.
pub(crate) struct BiasGradient<'a> {
    pub grad_out: &'a Tensor,
    pub grad_bias: &'a Tensor,
    done: std::cell::Cell<bool>,
}

impl<'a> BiasGradient<'a> {
    /// The bias gradient of `grad_out` into `grad_bias`, not yet recorded.
    pub fn new(grad_out: &'a Tensor, grad_bias: &'a Tensor) -> BiasGradient<'a> {
        BiasGradient {
            grad_out,
            grad_bias,
            done: std::cell::Cell::new(false),
        }
    }

    /// Whether it has been recorded.
    pub fn done(&self) -> bool {
        self.done.get()
    }

    /// Marks it recorded.
    pub fn mark_done(&self) {
        self.done.set(true);
    }
}

/// A GEMM-shaped launch (register-blocked, pixel and texture families): `out (=|+=)
/// m · (conv(f(x), weight) + bias)` where the weights are packed transposed and flipped
/// (`transpose`) for an input gradient; `mask` gives `m`.
pub(crate) struct GemmCall<'a> {
    pub g: Geometry,
    pub p: Conv2dParams,
    pub x: &'a Tensor,
    pub weight: &'a Tensor,
    pub transpose: bool,
    pub bias: Option<&'a Tensor>,
    pub out: &'a Tensor,
    pub mask: Option<&'a Tensor>,
    pub fusion: Fusion,
    pub cost: Cost,
}

impl GemmCall<'_> {
    /// The kernel arguments for `count` threads (or workgroups) over `blocks` channel
    /// blocks: views, bias, mask and whole-block stores filled in.
    pub fn args(&self, count: usize, blocks: usize) -> ConvArgs {
        let mut a = ConvArgs::new(&self.g, &self.p, count, self.fusion);
        a.x_view = view(self.x);
        a.y_view = view(self.out);
        a.has_bias = self.bias.is_some() as u32;
        a.blocks = blocks as u32;
        if let Some(m) = self.mask {
            a.gx_view = view(m);
            a.mask_output = 1;
        }
        a.vec4_ok = vec4_stores(self.out, self.mask) as u32;
        a
    }
}

impl GemmCall<'_> {
    /// The buffers of the shared store epilogue (`shaders/conv2d/store.wgsl`): bias (3),
    /// out (4) and mask (5).
    pub fn outputs(&self) -> [Option<Binding<'_>>; 3] {
        [
            self.bias.map(read),
            Some(write(self.out)),
            self.mask.map(read),
        ]
    }

    /// The same buffers as vec4s for whole-block stores: out (8) and mask (9).
    pub fn outputs4(&self) -> [Option<Binding<'_>>; 2] {
        [Some(write(self.out)), self.mask.map(read)]
    }
}
