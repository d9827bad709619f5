//! The bias gradient (`shaders/conv2d/bias.wgsl`): the sum of grad_out over batch and
//! pixels per output channel — the same kernel for every family.

use super::args::{bytes_of, check_bias, view};
use super::budget::rows_per_split;
use super::partials::Partials;
use super::split;
use crate::error::Result;
use crate::gpu::{Access, KernelSpec, WORKGROUP_SIZE};
use crate::ops::{bindable, no_overlap, rebase, Half};
use crate::record::{read, write, Cost, Grid, Recording};
use crate::tensor::Tensor;

/// `conv2d_backward_bias`: grad_out (binding 1, and 2 as vec4s) → grad_bias or its partial
/// sums (3).
pub(crate) const BIAS: KernelSpec = KernelSpec::new(
    wgsl!("conv2d/bias.wgsl"),
    "conv2d_backward_bias",
    &[(1, Access::Write), (2, Access::Write), (3, Access::Write)],
);

/// Arguments of the bias kernel (`Bias` in `shaders/conv2d/bias.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct BiasArgs {
    shape: [u32; 4],
    y_view: [u32; 2],
    count: u32,
    accumulate: u32,
    per_split: u32,
    chunk: u32,
    vec4_ok: u32,
    _pad: u32,
}

/// Plane elements one unit of the reduction covers; a split's workgroup lanes loop
/// `BIAS_CHUNK / 64` times a unit.
const BIAS_CHUNK: usize = 4096;

/// Bias gradient (the sum of `grad_out` over batch and pixels) into `grad_bias` `[cout]`
/// (=|+= by `accumulate`).
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
    // Units of the reduction: (image, chunk of BIAS_CHUNK plane elements).
    let units = n * (oh * ow).div_ceil(BIAS_CHUNK);
    let lane_loops = BIAS_CHUNK / WORKGROUP_SIZE as usize;
    let per = rows_per_split(lane_loops, 2, "bias gradient")?.min(units);
    let splits = units.div_ceil(per);
    let partials = Partials::new(rec, grad_bias, splits, splits == 1)?;
    let aligned = |v: u32| v.is_multiple_of(4);
    let [off, bs] = view(grad_out);
    let a = BiasArgs {
        shape: [n as u32, cout as u32, oh as u32, ow as u32],
        y_view: [off, bs],
        count: (cout * splits) as u32,
        accumulate: (accumulate && splits == 1) as u32,
        per_split: per as u32,
        chunk: BIAS_CHUNK as u32,
        vec4_ok: ((oh * ow).is_multiple_of(4) && aligned(off) && aligned(bs)) as u32,
        _pad: 0,
    };
    let buffers = [
        Some(read(grad_out)),
        Some(read(grad_out)),
        Some(write(&partials.tensor)),
    ];
    let cost = Cost {
        flops: grad_out.numel() as u64,
        bytes: bytes_of(&[grad_out.numel(), cout * (1 + accumulate as usize)]),
    };
    let grid = Grid::Workgroups((cout * splits) as u64);
    rec.launch(&BIAS, &[bytemuck::bytes_of(&a)], &buffers, &[], grid, cost)?;
    partials.reduce(rec, grad_bias, accumulate)
}
