//! The direct family (`shaders/conv2d/direct.wgsl`): one thread per output element, every
//! shape, stride, dilation and groups — the family every other one falls back to, and the
//! fewest launches for tiny convolutions (all three gradients in one fused dispatch).

use crate::error::Result;
use crate::gpu::{Access, KernelSpec, Shader};
use crate::ops::conv2d::args::{
    bytes_of, view, ConvArgs, ForwardArgs, Geometry, InputGradArgs, WeightGradArgs,
};
use crate::ops::conv2d::budget::rows_per_split;
use crate::ops::conv2d::family::{Family, Info, Pass};
use crate::ops::conv2d::partials::Partials;
use crate::ops::conv2d::Conv2dParams;
use crate::record::{read, write, Cost, Grid, Recording};
use crate::tensor::Tensor;
use crate::Gpu;

use Access::{Read, Write};

const DIRECT: Shader = wgsl!("conv2d/direct.wgsl", "conv2d/common.wgsl");

/// `conv2d_forward`: x, weight, bias (optional) → y.
pub(crate) const FORWARD: KernelSpec = KernelSpec::new(
    DIRECT,
    "conv2d_forward",
    &[(1, Write), (2, Read), (3, Read), (4, Write)],
);
/// `conv2d_backward_input`: x (the ReLU mask), weight, grad_out → grad_x.
pub(crate) const BACKWARD_INPUT: KernelSpec = KernelSpec::new(
    DIRECT,
    "conv2d_backward_input",
    &[(1, Write), (2, Read), (4, Write), (5, Write)],
);
/// `conv2d_backward_weight`: x, grad_out → grad_weight (or its partial sums).
pub(crate) const BACKWARD_WEIGHT: KernelSpec = KernelSpec::new(
    DIRECT,
    "conv2d_backward_weight",
    &[(1, Write), (4, Write), (6, Write)],
);
/// `conv2d_backward_fused`: x, weight, grad_out → grad_x, grad_weight, grad_bias (optional).
pub(crate) const BACKWARD_FUSED: KernelSpec = KernelSpec::new(
    DIRECT,
    "conv2d_backward_fused",
    &[
        (1, Write),
        (2, Read),
        (4, Write),
        (5, Write),
        (6, Write),
        (7, Write),
    ],
);

/// The direct family.
pub(crate) struct Direct;

impl Info for Direct {
    fn name(&self) -> &'static str {
        "direct"
    }

    fn summary(&self) -> &'static str {
        "one thread per output element; every shape, stride, dilation and group count"
    }

    fn kernels(&self) -> &'static [&'static KernelSpec] {
        &[&FORWARD, &BACKWARD_INPUT, &BACKWARD_WEIGHT, &BACKWARD_FUSED]
    }
}

impl Family for Direct {
    fn supports(&self, _: &Gpu, _: Pass, _: &Geometry, _: &Conv2dParams) -> bool {
        true
    }

    fn forward(&self, rec: &mut Recording<'_>, c: &ForwardArgs<'_>) -> Result<()> {
        let mut a = ConvArgs::new(&c.g, &c.p, c.out.numel(), c.fusion);
        a.x_view = view(c.x);
        a.y_view = view(c.out);
        a.has_bias = c.bias.is_some() as u32;
        let buffers = [
            Some(read(c.x)),
            Some(read(c.weight)),
            c.bias.map(read),
            Some(write(c.out)),
        ];
        let grid = Grid::Threads(c.out.numel() as u64);
        rec.launch(&FORWARD, &[a.bytes()], &buffers, &[], grid, c.cost())
    }

    fn backward_input(&self, rec: &mut Recording<'_>, c: &InputGradArgs<'_>) -> Result<()> {
        let mut a = ConvArgs::new(&c.g, &c.p, c.grad_x.numel(), c.fusion);
        a.x_view = view(c.x);
        a.y_view = view(c.grad_out);
        a.gx_view = view(c.grad_x);
        let buffers = [
            Some(read(c.x)),
            Some(read(c.weight)),
            Some(read(c.grad_out)),
            Some(write(c.grad_x)),
        ];
        let grid = Grid::Threads(c.grad_x.numel() as u64);
        rec.launch(&BACKWARD_INPUT, &[a.bytes()], &buffers, &[], grid, c.cost())
    }

    /// The reduction over the N*OH output rows, split so no thread loops past the budget;
    /// several splits write partial sums that a second pass adds up.
    fn backward_weight(&self, rec: &mut Recording<'_>, c: &WeightGradArgs<'_>) -> Result<()> {
        let wsize = c.grad_weight.numel();
        let rows = c.g.y[0] * c.g.y[2];
        let per = rows_per_split(c.g.y[3], 2, "weight gradient")?.min(rows);
        let splits = rows.div_ceil(per);
        let partials = Partials::new(rec, c.grad_weight, splits, splits == 1)?;
        let mut a = ConvArgs::new(&c.g, &c.p, wsize * splits, c.fusion);
        a.x_view = view(c.x);
        a.y_view = view(c.grad_out);
        a.per_split = per as u32;
        a.accumulate = (c.fusion.accumulate && splits == 1) as u32;
        let cost = Cost {
            flops: c.g.tap_flops(),
            bytes: bytes_of(&[
                c.x.numel(),
                c.grad_out.numel(),
                wsize * splits * (1 + c.fusion.accumulate as usize),
            ]),
        };
        let buffers = [
            Some(read(c.x)),
            Some(read(c.grad_out)),
            Some(write(&partials.tensor)),
        ];
        let grid = Grid::Threads((wsize * splits) as u64);
        rec.launch(&BACKWARD_WEIGHT, &[a.bytes()], &buffers, &[], grid, cost)?;
        partials.reduce_weight(rec, c)
    }
}

/// The three gradients of a tiny convolution in one dispatch: the input gradient as
/// `input` says, the weight gradient and the bias gradient (where given) overwritten.
pub(crate) fn backward_fused(
    rec: &mut Recording<'_>,
    input: &InputGradArgs<'_>,
    grad_weight: &Tensor,
    grad_bias: Option<&Tensor>,
) -> Result<()> {
    let c = input;
    // The bias range of the threads is empty without a bias gradient.
    let cout = if grad_bias.is_some() { c.g.y[1] } else { 0 };
    let count = c.grad_x.numel() + grad_weight.numel() + cout;
    let mut a = ConvArgs::new(&c.g, &c.p, count, c.fusion);
    a.x_view = view(c.x);
    a.y_view = view(c.grad_out);
    a.gx_view = view(c.grad_x);
    let cost = Cost {
        flops: 2 * c.g.tap_flops() + c.grad_out.numel() as u64,
        bytes: bytes_of(&[
            c.x.numel(),
            c.weight.numel(),
            c.grad_out.numel(),
            c.grad_x.numel() * (1 + c.fusion.accumulate as usize),
            grad_weight.numel(),
            cout,
        ]),
    };
    let buffers = [
        Some(read(c.x)),
        Some(read(c.weight)),
        Some(read(c.grad_out)),
        Some(write(c.grad_x)),
        Some(write(grad_weight)),
        grad_bias.map(write),
    ];
    let grid = Grid::Threads(count as u64);
    rec.launch(&BACKWARD_FUSED, &[a.bytes()], &buffers, &[], grid, cost)
}
