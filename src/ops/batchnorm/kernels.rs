//! BatchNorm's kernels (`shaders/batchnorm.wgsl`): their arguments, the split plan of the
//! per-channel sums, and the launches the forward and backward share.

use crate::error::Result;
use crate::gpu::{KernelSpec, Shader};
use crate::ops::Access;
use crate::record::{read, write, Binding, Cost, Grid, Recording};
use crate::tensor::Tensor;
use crate::Gpu;

use Access::Write;

use super::BatchNorm2d;

pub(super) const BATCHNORM: Shader = wgsl!("batchnorm.wgsl");
/// `batchnorm_stat_sums`: x → partials, shifted by a row of the channel state.
pub(crate) const STAT_SUMS: KernelSpec = KernelSpec::new(
    BATCHNORM,
    "batchnorm_stat_sums",
    &[(1, Write), (4, Write), (5, Write)],
);
/// `batchnorm_grad_sums`: x, grad_out → partials.
pub(crate) const GRAD_SUMS: KernelSpec = KernelSpec::new(
    BATCHNORM,
    "batchnorm_grad_sums",
    &[(1, Write), (2, Write), (4, Write), (5, Write)],
);
/// `batchnorm_finish_stats`: partials → channel state (and the running statistics).
pub(crate) const FINISH_STATS: KernelSpec = KernelSpec::new(
    BATCHNORM,
    "batchnorm_finish_stats",
    &[
        (4, Write),
        (5, Write),
        (6, Write),
        (7, Write),
        (8, Write),
        (9, Write),
        (12, Write),
    ],
);
/// `batchnorm_finish_given`: a block's table of feature-map statistics → channel state (and
/// the running statistics), no reduction.
pub(crate) const FINISH_GIVEN: KernelSpec = KernelSpec::new(
    BATCHNORM,
    "batchnorm_finish_given",
    &[
        (5, Write),
        (6, Write),
        (7, Write),
        (8, Write),
        (9, Write),
        (12, Write),
    ],
);
/// `batchnorm_finish_grads`: partials → weight and bias gradients, channel coefficients.
pub(crate) const FINISH_GRADS: KernelSpec = KernelSpec::new(
    BATCHNORM,
    "batchnorm_finish_grads",
    &[(4, Write), (5, Write), (6, Write), (10, Write), (11, Write)],
);
/// `batchnorm_apply`: x → out, the per-channel affine map (and an optional ReLU).
pub(crate) const APPLY: KernelSpec = KernelSpec::new(
    BATCHNORM,
    "batchnorm_apply",
    &[(1, Write), (3, Write), (5, Write)],
);
/// `batchnorm_backward_input`: x, grad_out → grad_x.
pub(crate) const BACKWARD_INPUT: KernelSpec = KernelSpec::new(
    BATCHNORM,
    "batchnorm_backward_input",
    &[(1, Write), (2, Write), (3, Write), (5, Write)],
);

/// Every BatchNorm kernel (the binding test checks them).
#[cfg(test)]
pub(crate) const KERNELS: [&KernelSpec; 7] = [
    &STAT_SUMS,
    &GRAD_SUMS,
    &FINISH_STATS,
    &FINISH_GIVEN,
    &FINISH_GRADS,
    &APPLY,
    &BACKWARD_INPUT,
];

/// Rows of the per-channel state (`chan` in the shader): mean, 1/σ, scale, shift, and the
/// backward's three coefficients.
pub(super) const CHAN_ROWS: usize = 7;
pub(super) const MEAN_ROW: u32 = 0;
pub(super) const NO_ROW: u32 = u32::MAX;
pub(super) const MODE_MEAN: u32 = 0;
pub(super) const MODE_TRAIN: u32 = 1;
pub(super) const MODE_EVAL: u32 = 2;
pub(super) const MODE_STATS: u32 = 3;
/// Elements of a channel one lane sums in a split: 64 (loops stay short on every driver),
/// more only where the splits would pass [`MAX_LOOP`].
pub(super) const PER_LANE: usize = 64;
/// The most iterations of any loop (Mesa's software drivers stop an invocation at 65,535):
/// the finishing thread adds one partial a split.
pub(super) const MAX_LOOP: usize = 65_535;

/// How a channel of `total` elements is summed by workgroups of `lanes`: the elements a
/// split covers and the splits. Each lane loops over `PER_LANE` of its split's elements,
/// or more where `total` would otherwise need over [`MAX_LOOP`] splits, so neither the
/// lanes' loops nor the finishing loop over the splits passes it for any `u32` size.
pub(super) fn split_plan(total: usize, lanes: usize) -> (usize, usize) {
    let per_lane = PER_LANE.max(total.div_ceil(MAX_LOOP * lanes));
    let per_split = per_lane * lanes;
    (per_split, total.div_ceil(per_split).max(1))
}

/// Arguments of every BatchNorm kernel (`Bn` in `shaders/batchnorm.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct BnArgs {
    pub(super) n: u32,
    pub(super) c: u32,
    pub(super) hw: u32,
    pub(super) splits: u32,
    pub(super) x_view: [u32; 2],
    pub(super) g_view: [u32; 2],
    pub(super) o_view: [u32; 2],
    pub(super) per_split: u32,
    pub(super) mode: u32,
    pub(super) count: f32,
    pub(super) eps: f32,
    pub(super) momentum: f32,
    pub(super) accumulate: u32,
    pub(super) shift_row: u32,
    pub(super) relu: u32,
    pub(super) stats_off: u32,
    pub(super) stats_stride: u32,
}

impl BatchNorm2d {
    /// The arguments every kernel shares for input `x` (bound as it is).
    pub(super) fn args(&self, x: &Tensor, training: bool) -> BnArgs {
        BnArgs {
            eps: self.eps,
            momentum: self.momentum.unwrap_or(0.0),
            ..base_args(x, training)
        }
    }
}

/// The arguments every kernel shares for input `x` (bound as it is), without a BatchNorm's
/// own `eps` and `momentum`.
pub(super) fn base_args(x: &Tensor, training: bool) -> BnArgs {
    let [n, c, h, w] = x.shape();
    let total = n * h * w;
    let (per_split, splits) = split_plan(total, crate::gpu::WORKGROUP_SIZE as usize);
    BnArgs {
        n: n as u32,
        c: c as u32,
        hw: (h * w) as u32,
        splits: splits as u32,
        x_view: [x.offset_u32(), x.batch_stride_u32()],
        per_split: per_split as u32,
        count: total as f32,
        shift_row: NO_ROW,
        mode: if training { MODE_TRAIN } else { MODE_EVAL },
        ..Default::default()
    }
}

/// What `batchnorm_finish_stats` writes besides the channel state: a BatchNorm's running
/// statistics (reading its weight and bias), or a block's table of feature-map statistics.
#[derive(Clone, Copy)]
pub(super) enum FinishInto<'a> {
    /// The module's own: `chan`'s scale and shift, the running statistics moved.
    Module(&'a BatchNorm2d),
    /// The statistics alone, into a [2, C] table (`MODE_STATS`); no module bound.
    Table(&'a Tensor),
}

/// One thread per channel: `batchnorm_finish_stats` in `args.mode`, from `partials` into
/// `chan` and what `into` names.
pub(super) fn launch_finish_stats(
    rec: &mut Recording<'_>,
    args: &BnArgs,
    partials: &Tensor,
    chan: &Tensor,
    into: FinishInto<'_>,
) -> Result<()> {
    let c = args.c as u64;
    let (module, table) = match into {
        FinishInto::Module(bn) => (
            [
                Some(read(&bn.weight)),
                Some(read(&bn.bias)),
                Some(write(&bn.running_mean)),
                Some(write(&bn.running_var)),
            ],
            None,
        ),
        FinishInto::Table(t) => ([None, None, None, None], Some(write(t))),
    };
    let [weight, bias, running_mean, running_var] = module;
    rec.launch(
        &FINISH_STATS,
        &[bytemuck::bytes_of(args)],
        &[
            Some(read(partials)),
            Some(write(chan)),
            weight,
            bias,
            running_mean,
            running_var,
            table,
        ],
        &[],
        Grid::Threads(c),
        Cost {
            flops: 2 * c * args.splits as u64,
            bytes: 4 * c * (2 * args.splits as u64 + 8),
        },
    )
}

/// A training forward's statistics of `x`, the corrected two-pass sum: the mean into
/// `chan`, then the deviations from it, finished in `last_mode` (`MODE_TRAIN` into a
/// module's state, `MODE_STATS` into a table). The partial sums live in scratch.
pub(super) fn launch_two_pass_statistics(
    rec: &mut Recording<'_>,
    args: &mut BnArgs,
    x: &Tensor,
    chan: &Tensor,
    (last_mode, into): (u32, FinishInto<'_>),
) -> Result<()> {
    let partials = partials(rec, args)?;
    args.shift_row = NO_ROW;
    launch_sums(rec, &STAT_SUMS, args, x, None, &partials, chan)?;
    args.mode = MODE_MEAN;
    launch_finish_stats(rec, args, &partials, chan, into)?;
    args.shift_row = MEAN_ROW;
    launch_sums(rec, &STAT_SUMS, args, x, None, &partials, chan)?;
    args.mode = last_mode;
    launch_finish_stats(rec, args, &partials, chan, into)?;
    rec.scratch_done(partials);
    Ok(())
}

/// Fails unless `x` has more than one value a channel (batch statistics need two; PyTorch
/// refuses it too).
pub(super) fn check_trainable(x: &Tensor) -> Result<()> {
    let [n, _, h, w] = x.shape();
    if n * h * w < 2 {
        return Err(crate::error::Error::param(
            "batchnorm",
            format!(
                "training needs more than one value per channel (input {:?}), as PyTorch does: use eval mode or a larger batch",
                x.shape()
            ),
        ));
    }
    Ok(())
}

/// Fails unless every tensor fits one binding (BatchNorm's reductions span the batch).
pub(super) fn check_bindable(gpu: &Gpu, tensors: &[&Tensor]) -> Result<()> {
    crate::ops::require_bindable(
        "batchnorm",
        gpu,
        tensors,
        "run the BatchNorm on a smaller batch",
    )
}

/// The per-channel map of `chan` from `x` into `out`, one thread an element.
pub(super) fn launch_apply(
    rec: &mut Recording<'_>,
    args: &BnArgs,
    x: &Tensor,
    out: &Tensor,
    chan: &Tensor,
) -> Result<()> {
    let count = x.numel() as u64;
    rec.launch(
        &APPLY,
        &[bytemuck::bytes_of(args)],
        &[Some(read(x)), Some(write(out)), Some(read(chan))],
        &[],
        Grid::Threads(count),
        Cost {
            flops: 2 * count,
            bytes: 8 * count,
        },
    )
}

/// The partial sums of one reduction: `[splits][C][2]`, in the recording's scratch.
pub(super) fn partials(rec: &mut Recording<'_>, args: &BnArgs) -> Result<Tensor> {
    // Scratch: reused by later dispatches of the recording once its readers are recorded
    // (every element is written by the sums before the finish reads it).
    rec.scratch_tensor([args.splits as usize, args.c as usize, 2, 1])
}

/// One workgroup per (channel, split): the two per-channel sums of `kernel`.
pub(super) fn launch_sums(
    rec: &mut Recording<'_>,
    kernel: &KernelSpec,
    args: &BnArgs,
    x: &Tensor,
    grad_out: Option<&Tensor>,
    partials: &Tensor,
    chan: &Tensor,
) -> Result<()> {
    let mut buffers: Vec<Option<Binding<'_>>> = vec![Some(read(x))];
    if let Some(g) = grad_out {
        buffers.push(Some(read(g)));
    }
    buffers.push(Some(write(partials)));
    buffers.push(Some(read(chan)));
    let count = x.numel() as u64;
    let inputs = 1 + grad_out.is_some() as u64;
    rec.launch(
        kernel,
        &[bytemuck::bytes_of(args)],
        &buffers,
        &[],
        Grid::Workgroups(args.c as u64 * args.splits as u64),
        Cost {
            flops: 3 * count,
            bytes: 4 * count * inputs,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::{split_plan, MAX_LOOP, PER_LANE};

    /// No loop of the reduction passes 65,535 iterations at any size a binding can hold:
    /// the finishing loop over the splits, nor a lane's over its share of a split.
    #[test]
    fn no_loop_passes_the_drivers_limit() {
        let lanes = 64;
        for total in [
            1,
            4096,
            4097,
            802_816,
            268_435_456,
            268_435_457,
            u32::MAX as usize,
        ] {
            let (per_split, splits) = split_plan(total, lanes);
            assert!(splits * per_split >= total, "{total}: not covered");
            assert!(splits <= MAX_LOOP, "{total}: {splits} splits");
            assert!(per_split / lanes <= MAX_LOOP, "{total}: {per_split}");
        }
        // Up to 64 × 64 × 65,535 elements a lane sums 64: the accurate common case.
        assert_eq!(split_plan(802_816, lanes), (PER_LANE * lanes, 196));
        assert_eq!(split_plan(268_435_457, lanes).0, 65 * lanes);
    }
}
