//! The bias gradient (`shaders/conv2d/bias.wgsl`): the sum of grad_out over batch and
//! pixels per output channel — the same kernel for every family.

use super::args::{bytes_of, check_bias, view};
use super::budget::rows_per_split;
use super::partials::Partials;
use super::split;
use crate::error::Result;
use crate::gpu::{Access, KernelSpec, WORKGROUP_SIZE};
use crate::ops::{bindable, no_overlap, rebase, Half};
use crate::record::{read, write, Binding, Cost, Grid, Recording};
use crate::tensor::Tensor;

/// `conv2d_backward_bias`: grad_out (binding 4, and 5 as vec4s) → grad_bias or its partial
/// sums (6); arguments at binding 3 (see the shader's contract).
pub(crate) const BIAS: KernelSpec = KernelSpec::new(
    wgsl!("conv2d/bias.wgsl"),
    "conv2d_backward_bias",
    &[(4, Access::Write), (5, Access::Write), (6, Access::Write)],
)
.with_uniforms(&[3]);

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
    check_bias(grad_bias, grad_out.shape()[1])?;
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
    let sum = BiasSum::plan(grad_out, accumulate)?;
    let partials = Partials::new(rec, grad_bias, sum.splits, sum.splits == 1)?;
    let buffers = sum.buffers(grad_out, &partials.tensor);
    let grid = Grid::Workgroups(sum.workgroups() as u64);
    rec.launch(&BIAS, &[sum.bytes()], &buffers, &[], grid, sum.cost)?;
    partials.reduce(rec, grad_bias, accumulate)
}

/// One launch of the bias sum over a bindable (rebased) grad_out: its arguments, how many
/// splits its reduction takes (one: it writes the gradient itself) and its cost.
pub(crate) struct BiasSum {
    args: BiasArgs,
    pub splits: usize,
    pub cost: Cost,
}

impl BiasSum {
    /// The sum of `grad_out` per channel (=|+= by `accumulate` where one split does it all).
    pub fn plan(grad_out: &Tensor, accumulate: bool) -> Result<BiasSum> {
        let [n, cout, oh, ow] = grad_out.shape();
        // Units of the reduction: (image, chunk of BIAS_CHUNK plane elements).
        let units = n * (oh * ow).div_ceil(BIAS_CHUNK);
        let lane_loops = BIAS_CHUNK / WORKGROUP_SIZE as usize;
        let per = rows_per_split(lane_loops, 2, "bias gradient")?.min(units);
        let splits = units.div_ceil(per);
        let aligned = |v: u32| v.is_multiple_of(4);
        let [off, bs] = view(grad_out);
        let args = BiasArgs {
            shape: [n as u32, cout as u32, oh as u32, ow as u32],
            y_view: [off, bs],
            count: (cout * splits) as u32,
            accumulate: (accumulate && splits == 1) as u32,
            per_split: per as u32,
            chunk: BIAS_CHUNK as u32,
            vec4_ok: ((oh * ow).is_multiple_of(4) && aligned(off) && aligned(bs)) as u32,
            _pad: 0,
        };
        let cost = Cost {
            flops: grad_out.numel() as u64,
            bytes: bytes_of(&[grad_out.numel(), cout * (1 + accumulate as usize)]),
        };
        Ok(BiasSum { args, splits, cost })
    }

    /// Workgroups the sum runs: one per (channel, split).
    pub fn workgroups(&self) -> usize {
        self.args.count as usize
    }

    /// The argument struct (`Bias` in the shader).
    pub fn bytes(&self) -> &[u8] {
        bytemuck::bytes_of(&self.args)
    }

    /// Its bindings: grad_out twice (scalars, vec4s), then where the sums go.
    pub fn buffers<'t>(&self, grad_out: &'t Tensor, sums: &'t Tensor) -> [Option<Binding<'t>>; 3] {
        [
            Some(read(grad_out)),
            Some(read(grad_out)),
            Some(write(sums)),
        ]
    }
}
