//! Split reductions: the weight and bias gradients sum over N·OH·OW, which one thread may
//! not loop over (see `budget.rs`) and which a GPU wants spread over many threads; each
//! split writes a partial sum, and `conv2d_backward_weight_reduce`
//! (`shaders/conv2d/reduce.wgsl`) adds them up in a fixed order.

use super::args::{bytes_of, WeightGradArgs};
use super::budget::LOOP_BUDGET;
use crate::error::{Error, Result};
use crate::gpu::{Access, KernelSpec};
use crate::record::{read, write, Cost, Grid, Recording};
use crate::tensor::Tensor;

/// `conv2d_backward_weight_reduce`: partial (binding 1) → dst (2).
pub(crate) const REDUCE: KernelSpec = KernelSpec::new(
    wgsl!("conv2d/reduce.wgsl"),
    "conv2d_backward_weight_reduce",
    &[(1, Access::Read), (2, Access::Write)],
);

/// Arguments of the reduce kernel (`Reduce` in `shaders/conv2d/reduce.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ReduceArgs {
    pub count: u32,
    splits: u32,
    accumulate: u32,
    _pad: u32,
}

/// Where the splits of a reduction write: `[splits][dst.numel()]` scratch partial sums, or
/// the destination itself when one split writes it directly.
pub(crate) struct Partials {
    pub splits: usize,
    pub tensor: Tensor,
}

impl Partials {
    /// Partial sums for `splits` splits of a reduction into `dst`; with `direct` (one split
    /// whose kernel stores the result itself) the destination is written in place.
    pub fn new(
        rec: &mut Recording<'_>,
        dst: &Tensor,
        splits: usize,
        direct: bool,
    ) -> Result<Partials> {
        // Scratch of the recording: every split writes all its partial sums.
        let tensor = if direct {
            dst.clone()
        } else {
            rec.scratch_tensor([splits, dst.numel(), 1, 1])?
        };
        Ok(Partials { splits, tensor })
    }

    /// Whether the splits write the destination itself.
    pub fn direct(&self, dst: &Tensor) -> bool {
        self.tensor.shares_buffer(dst)
    }

    /// Sums the partial sums into `dst` (=|+= by `accumulate`); nothing to do when one
    /// split wrote `dst` itself. The sum is one thread's loop over the splits, so their
    /// count is bounded too.
    pub fn reduce(self, rec: &mut Recording<'_>, dst: &Tensor, accumulate: bool) -> Result<()> {
        if self.direct(dst) {
            return Ok(());
        }
        if self.splits > LOOP_BUDGET {
            return Err(Error::param(
                "conv2d backward",
                format!(
                    "the reduction needs {} partial sums, more than one GPU thread may add up \
                     ({LOOP_BUDGET}); use smaller images or batches",
                    self.splits
                ),
            ));
        }
        let (a, cost) = self.reduce_args(dst, accumulate);
        rec.launch(
            &REDUCE,
            &[bytemuck::bytes_of(&a)],
            &[Some(read(&self.tensor)), Some(write(dst))],
            &[],
            Grid::Threads(a.count as u64),
            cost,
        )?;
        rec.scratch_done(self.tensor);
        Ok(())
    }

    /// The reduce kernel's arguments for summing into `dst`, and its cost.
    pub(crate) fn reduce_args(&self, dst: &Tensor, accumulate: bool) -> (ReduceArgs, Cost) {
        let size = dst.numel();
        let a = ReduceArgs {
            count: size as u32,
            splits: self.splits as u32,
            accumulate: accumulate as u32,
            _pad: 0,
        };
        let partial = self.tensor.numel();
        let cost = Cost {
            flops: partial as u64,
            bytes: bytes_of(&[partial, size * (1 + accumulate as usize)]),
        };
        (a, cost)
    }
}

/// Whether the reductions' kernels take their GPU shapes — workgroups that cooperate through
/// barriers, and the bias riding with the weight gradient's reduce: under the GPU policy
/// ([`AdapterPolicy`](crate::AdapterPolicy)), where that saves a launch and a barrier. Not
/// under the CPU adapter's, which runs a workgroup with barriers far slower (lavapipe: the
/// reduce's workgroups, once in the kernel with the bias sum's barriers, cost ≈ 85 µs each —
/// a 16-channel conv's backward took 3.5 ms longer with one launch fewer).
pub(crate) fn gpu_shapes(gpu: &crate::Gpu) -> bool {
    !gpu.cpu_decisions()
}

/// Threads a kernel wants in flight: a GPU needs tens of thousands to hide latency, a CPU
/// adapter (lavapipe) only enough workgroups for its cores, and prefers long loops.
pub(crate) fn target_threads(gpu: &crate::Gpu) -> usize {
    if gpu.cpu_decisions() {
        512
    } else {
        // On an H200, 1<<18 (four times the workgroups) measured no better: mixed, ±15%.
        1 << 16
    }
}

/// How a GEMM-shaped weight gradient splits its reduction of `units` (rows or pixel groups)
/// when one split runs `base_threads` threads: enough splits for the adapter's appetite,
/// at most `per_max` units a split (the loop budget), partial sums of a `weight_len`-element
/// gradient within the scratch budget and one binding. Returns (splits, units per split).
pub(crate) fn plan(
    gpu: &crate::Gpu,
    weight_len: usize,
    units: usize,
    base_threads: usize,
    per_max: usize,
) -> (usize, usize) {
    let binding = gpu.limits().max_storage_buffer_binding_size;
    let max_bytes = gpu.scratch_budget().min(binding) as usize;
    let max_splits = (max_bytes / (4 * weight_len)).clamp(1, 256);
    let splits = target_threads(gpu)
        .div_ceil(base_threads)
        .clamp(1, max_splits.min(units));
    let per = units.div_ceil(splits).min(per_max);
    (units.div_ceil(per), per)
}

impl Partials {
    /// The partial sums of a GEMM-shaped weight gradient `c` whose reduction has `units`
    /// units (rows, or groups of pixels), `base_threads` threads a split and at most
    /// `per_max` units a split (see [`plan`]); one split that overwrites writes the
    /// gradient itself. Returns them, the units per split and the kernel's cost.
    pub fn for_weight_gradient(
        rec: &mut Recording<'_>,
        c: &WeightGradArgs<'_>,
        units: usize,
        base_threads: usize,
        per_max: usize,
    ) -> Result<(Partials, usize, Cost)> {
        let (splits, per) = plan(
            rec.gpu(),
            c.grad_weight.numel(),
            units,
            base_threads,
            per_max,
        );
        let direct = splits == 1 && !c.fusion.accumulate;
        let partials = Partials::new(rec, c.grad_weight, splits, direct)?;
        let cost = Cost {
            flops: c.g.tap_flops(),
            bytes: bytes_of(&[c.x.numel(), c.grad_out.numel(), partials.tensor.numel()]),
        };
        Ok((partials, per, cost))
    }
}
