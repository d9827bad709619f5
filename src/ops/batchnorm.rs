//! BatchNorm2d (`shaders/batchnorm.wgsl`), PyTorch's semantics in both modes.
//!
//! Training: each channel is normalised with its batch mean and biased variance over
//! (N, H, W), summed by a two-level reduction (≤ 64 terms a lane, a tree over the lanes, the
//! splits added in order) in two passes — the mean, then the squares of the deviations from
//! it (the corrected two-pass sum), so a long channel (batch 256 × 56 × 56) keeps float32's
//! accuracy; the running statistics move by `momentum` towards the batch mean and the
//! unbiased variance, `num_batches_tracked` counts the forward, and the gradient flows
//! through the statistics. Eval: the affine map of the running statistics.
//!
//! A forward is four dispatches in training (two sums, two finishes… then the map) and two
//! in eval; a backward three: the sums of `grad_out` and `grad_out·(x − mean)`, a finish that
//! writes the weight and bias gradients, and the input gradient.

use super::{rebase, same_shape, Access};
use crate::error::{Error, Result};
use crate::gpu::{KernelSpec, Shader};
use crate::memory::Purpose;
use crate::record::{read, write, Binding, Cost, Grid, Recording};
use crate::tensor::Tensor;
use crate::Gpu;

use Access::Write;

const BATCHNORM: Shader = wgsl!("batchnorm.wgsl");
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
pub(crate) const KERNELS: [&KernelSpec; 6] = [
    &STAT_SUMS,
    &GRAD_SUMS,
    &FINISH_STATS,
    &FINISH_GRADS,
    &APPLY,
    &BACKWARD_INPUT,
];

/// Rows of the per-channel state (`chan` in the shader): mean, 1/σ, scale, shift, and the
/// backward's three coefficients.
const CHAN_ROWS: usize = 7;
const MEAN_ROW: u32 = 0;
const NO_ROW: u32 = u32::MAX;
const MODE_MEAN: u32 = 0;
const MODE_TRAIN: u32 = 1;
const MODE_EVAL: u32 = 2;
/// Elements of a channel one lane sums in a split: 64 (loops stay short on every driver),
/// more only where the splits would pass [`MAX_LOOP`].
const PER_LANE: usize = 64;
/// The most iterations of any loop (Mesa's software drivers stop an invocation at 65,535):
/// the finishing thread adds one partial a split.
const MAX_LOOP: usize = 65_535;

/// How a channel of `total` elements is summed by workgroups of `lanes`: the elements a
/// split covers and the splits. Each lane loops over `PER_LANE` of its split's elements,
/// or more where `total` would otherwise need over [`MAX_LOOP`] splits, so neither the
/// lanes' loops nor the finishing loop over the splits passes it for any `u32` size.
fn split_plan(total: usize, lanes: usize) -> (usize, usize) {
    let per_lane = PER_LANE.max(total.div_ceil(MAX_LOOP * lanes));
    let per_split = per_lane * lanes;
    (per_split, total.div_ceil(per_split).max(1))
}

/// Arguments of every BatchNorm kernel (`Bn` in `shaders/batchnorm.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct BnArgs {
    n: u32,
    c: u32,
    hw: u32,
    splits: u32,
    x_view: [u32; 2],
    g_view: [u32; 2],
    o_view: [u32; 2],
    per_split: u32,
    mode: u32,
    count: f32,
    eps: f32,
    momentum: f32,
    accumulate: u32,
    shift_row: u32,
    relu: u32,
    _pad: [u32; 2],
}

/// `torch.nn.BatchNorm2d(C)`: an affine per-channel normalisation with running statistics.
/// Its tensors are `[C, 1, 1, 1]`, under PyTorch's `state_dict` names: `weight`, `bias`,
/// `running_mean`, `running_var`, and the counter `num_batches_tracked`.
#[derive(Debug)]
pub struct BatchNorm2d {
    /// γ, learned (PyTorch's default 1).
    pub weight: Tensor,
    /// β, learned (default 0).
    pub bias: Tensor,
    /// The running mean (default 0), updated by every training forward.
    pub running_mean: Tensor,
    /// The running (unbiased) variance (default 1), updated by every training forward.
    pub running_var: Tensor,
    /// Training forwards so far.
    pub num_batches_tracked: i64,
    /// Added to the variance before its square root (default 1e-5).
    pub eps: f32,
    /// How far a training forward moves the running statistics (default 0.1); `None`: by
    /// a cumulative average, `1 / num_batches_tracked`, as PyTorch's `momentum=None`.
    pub momentum: Option<f32>,
}

/// What a BatchNorm forward leaves its backward: the mean and 1/σ it normalised with (the
/// batch's in training, the running statistics' in eval) and the mode.
#[derive(Debug)]
pub struct BatchNormSaved {
    chan: Tensor,
    training: bool,
}

impl BatchNormSaved {
    /// Whether the forward normalised with the batch statistics.
    pub fn training(&self) -> bool {
        self.training
    }
}

impl BatchNorm2d {
    /// Bytes a forward over `channels` channels saves for its backward (its
    /// [`BatchNormSaved`]: the statistics it normalised with and what the kernels derive
    /// from them, a few numbers a channel).
    pub fn saved_bytes(channels: usize) -> u64 {
        (4 * CHAN_ROWS * channels).max(16) as u64
    }

    /// A BatchNorm over `channels` with PyTorch's initial values (weight 1, bias 0, running
    /// mean 0, running variance 1, eps 1e-5, momentum 0.1).
    pub fn new(gpu: &Gpu, channels: usize) -> Result<BatchNorm2d> {
        if channels == 0 {
            return Err(Error::param("batchnorm", "it needs at least one channel"));
        }
        let filled = |v: f32| {
            Tensor::from_slice(
                gpu,
                [channels, 1, 1, 1],
                &vec![v; channels],
                Purpose::Parameter,
            )
        };
        Ok(BatchNorm2d {
            weight: filled(1.0)?,
            bias: filled(0.0)?,
            running_mean: filled(0.0)?,
            running_var: filled(1.0)?,
            num_batches_tracked: 0,
            eps: 1e-5,
            momentum: Some(0.1),
        })
    }

    /// A BatchNorm from a PyTorch `state_dict` (`weight`, `bias`, `running_mean`,
    /// `running_var`, and `num_batches_tracked` where the file has it), eps and momentum
    /// PyTorch's defaults. Every tensor must be `[C]` for the same C.
    pub fn from_state_dict(gpu: &Gpu, file: &crate::weights::TensorFile) -> Result<BatchNorm2d> {
        let names = ["weight", "bias", "running_mean", "running_var"];
        let mut tensors = Vec::with_capacity(names.len());
        for name in names {
            let t = file.tensor(name)?;
            if t.shape.len() != 1 || t.shape != file.tensor("weight")?.shape {
                return Err(Error::Content(format!(
                    "BatchNorm2d {name} has shape {:?}; every one of {names:?} must be [C], the same C",
                    t.shape
                )));
            }
            let c = t.shape[0];
            tensors.push(Tensor::from_slice(
                gpu,
                [c, 1, 1, 1],
                &t.data,
                Purpose::Parameter,
            )?);
        }
        let num_batches_tracked = match file.integers.get("num_batches_tracked") {
            Some(_) => file.integer("num_batches_tracked")?,
            None => 0,
        };
        let mut it = tensors.into_iter();
        let mut next = || it.next().expect("four tensors");
        Ok(BatchNorm2d {
            weight: next(),
            bias: next(),
            running_mean: next(),
            running_var: next(),
            num_batches_tracked,
            eps: 1e-5,
            momentum: Some(0.1),
        })
    }

    /// Adds its `state_dict` to `file` under `prefix` (`bn1.` → `bn1.weight`, …): the four
    /// tensors as `[C]`, `num_batches_tracked` as an integer (I64 when written), as PyTorch
    /// saves them.
    pub fn save_into(
        &self,
        gpu: &Gpu,
        prefix: &str,
        file: &mut crate::weights::TensorFile,
    ) -> Result<()> {
        let c = self.channels();
        for (name, t) in [
            ("weight", &self.weight),
            ("bias", &self.bias),
            ("running_mean", &self.running_mean),
            ("running_var", &self.running_var),
        ] {
            file.tensors.insert(
                format!("{prefix}{name}"),
                crate::weights::HostTensor {
                    shape: vec![c],
                    data: t.to_vec(gpu)?,
                },
            );
        }
        file.integers.insert(
            format!("{prefix}num_batches_tracked"),
            vec![self.num_batches_tracked],
        );
        Ok(())
    }

    /// Its channels.
    pub fn channels(&self) -> usize {
        self.weight.shape()[0]
    }

    /// Checks that `x` (or a gradient shaped like it) has this BatchNorm's channels.
    fn check_input(&self, what: &str, x: &Tensor) -> Result<()> {
        if x.shape()[1] != self.channels() {
            return Err(Error::shape(
                "batchnorm",
                format!(
                    "{what} has {} channels, the BatchNorm {} (shape {:?})",
                    x.shape()[1],
                    self.channels(),
                    x.shape()
                ),
            ));
        }
        Ok(())
    }

    /// The forward into `out` (a tensor or view shaped like `x`; never overlapping it),
    /// with the batch statistics (`training`, which also updates the running statistics and
    /// `num_batches_tracked`) or the running ones; `relu` applies ReLU to the result (the
    /// BN-ReLU of torchvision's blocks, one pass). Returns what the backward needs.
    pub fn forward_into(
        &mut self,
        rec: &mut Recording<'_>,
        x: &Tensor,
        out: &Tensor,
        training: bool,
        relu: bool,
    ) -> Result<BatchNormSaved> {
        self.check_input("the input", x)?;
        same_shape("batchnorm", "input and output", x, out)?;
        super::no_overlap("batchnorm", out, x)?;
        let gpu = rec.gpu();
        check_bindable(gpu, &[x, out])?;
        let [n, c, h, w] = x.shape();
        if training && n * h * w < 2 {
            return Err(Error::param(
                "batchnorm",
                format!(
                    "training needs more than one value per channel (input {:?}), as PyTorch does: use eval mode or a larger batch",
                    x.shape()
                ),
            ));
        }
        let chan = Tensor::zeros(gpu, [CHAN_ROWS, c, 1, 1], Purpose::Scratch)?;
        let (x, out) = (rebase(gpu, x), rebase(gpu, out));
        let mut args = self.args(&x, training);
        args.o_view = [out.offset_u32(), out.batch_stride_u32()];
        if training {
            self.num_batches_tracked += 1;
            args.momentum = match self.momentum {
                Some(m) => m,
                None => 1.0 / self.num_batches_tracked as f32,
            };
            let partials = partials(rec, &args)?;
            // Pass 1: the mean; pass 2: the deviations from it, then the statistics.
            args.shift_row = NO_ROW;
            launch_sums(rec, &STAT_SUMS, &args, &x, None, &partials, &chan)?;
            args.mode = MODE_MEAN;
            self.launch_finish_stats(rec, &args, &partials, &chan)?;
            args.shift_row = MEAN_ROW;
            launch_sums(rec, &STAT_SUMS, &args, &x, None, &partials, &chan)?;
            args.mode = MODE_TRAIN;
            self.launch_finish_stats(rec, &args, &partials, &chan)?;
            rec.scratch_done(partials);
        } else {
            args.mode = MODE_EVAL;
            // No partial sums in eval: a token binding.
            let none = rec.scratch_tensor([1, 1, 1, 1])?;
            self.launch_finish_stats(rec, &args, &none, &chan)?;
            rec.scratch_done(none);
        }
        args.relu = relu as u32;
        launch_apply(rec, &args, &x, &out, &chan)?;
        Ok(BatchNormSaved { chan, training })
    }

    /// The normalisation a forward applied (its saved statistics — the batch's in training —
    /// and this BatchNorm's weight and bias), applied again to `x` into `out` (=, then ReLU
    /// where `relu`): one elementwise pass, no reduction, nothing updated. What a schedule
    /// that keeps the statistics instead of the normalised tensor runs in backward.
    pub fn apply_saved_into(
        &self,
        rec: &mut Recording<'_>,
        x: &Tensor,
        saved: &BatchNormSaved,
        out: &Tensor,
        relu: bool,
    ) -> Result<()> {
        self.check_input("the input", x)?;
        same_shape("batchnorm", "input and output", x, out)?;
        super::no_overlap("batchnorm", out, x)?;
        if saved.chan.shape()[1] != self.channels() {
            return Err(Error::param(
                "batchnorm",
                "the saved statistics are another BatchNorm's (a different channel count)",
            ));
        }
        let gpu = rec.gpu();
        check_bindable(gpu, &[x, out])?;
        let (x, out) = (rebase(gpu, x), rebase(gpu, out));
        let mut args = self.args(&x, saved.training);
        args.o_view = [out.offset_u32(), out.batch_stride_u32()];
        args.relu = relu as u32;
        launch_apply(rec, &args, &x, &out, &saved.chan)
    }

    /// The forward into a new activation tensor.
    pub fn forward(
        &mut self,
        rec: &mut Recording<'_>,
        x: &Tensor,
        training: bool,
    ) -> Result<(Tensor, BatchNormSaved)> {
        let out = Tensor::zeros(rec.gpu(), x.shape(), Purpose::Activation)?;
        let saved = self.forward_into(rec, x, &out, training, false)?;
        Ok((out, saved))
    }

    /// The backward of a forward that read `x` and saved `saved`: `grad_x` (=|+=) the input
    /// gradient of `grad_out`, and the weight and bias gradients (=|+=) into `grad_weight`
    /// and `grad_bias` (`[C, 1, 1, 1]`). In training the gradient flows through the batch
    /// statistics; in eval it is the affine map's.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_into(
        &self,
        rec: &mut Recording<'_>,
        x: &Tensor,
        saved: &BatchNormSaved,
        grad_out: &Tensor,
        grad_x: &Tensor,
        grad_weight: &Tensor,
        grad_bias: &Tensor,
        accumulate: bool,
    ) -> Result<()> {
        let grads = [grad_x, grad_weight, grad_bias];
        self.backward_masked_into(rec, x, saved, grad_out, grads, accumulate, false)
    }

    /// As [`BatchNorm2d::backward_into`], for `relu(bn(x))`: `grad_out` is the gradient at
    /// the ReLU's output, masked here by the sign of `bn(x)`, which the kernels recompute
    /// from `x` and the saved statistics (as the forward computed it) — so no one keeps the
    /// normalised tensor for its mask.
    #[allow(clippy::too_many_arguments)]
    pub fn relu_backward_into(
        &self,
        rec: &mut Recording<'_>,
        x: &Tensor,
        saved: &BatchNormSaved,
        grad_out: &Tensor,
        grad_x: &Tensor,
        grad_weight: &Tensor,
        grad_bias: &Tensor,
        accumulate: bool,
    ) -> Result<()> {
        let grads = [grad_x, grad_weight, grad_bias];
        self.backward_masked_into(rec, x, saved, grad_out, grads, accumulate, true)
    }

    #[allow(clippy::too_many_arguments)]
    fn backward_masked_into(
        &self,
        rec: &mut Recording<'_>,
        x: &Tensor,
        saved: &BatchNormSaved,
        grad_out: &Tensor,
        [grad_x, grad_weight, grad_bias]: [&Tensor; 3],
        accumulate: bool,
        relu: bool,
    ) -> Result<()> {
        self.check_input("the input", x)?;
        same_shape(
            "batchnorm backward",
            "input and output gradient",
            x,
            grad_out,
        )?;
        same_shape("batchnorm backward", "input and input gradient", x, grad_x)?;
        same_shape(
            "batchnorm backward",
            "weight and weight gradient",
            &self.weight,
            grad_weight,
        )?;
        same_shape(
            "batchnorm backward",
            "weight and bias gradient",
            &self.weight,
            grad_bias,
        )?;
        super::no_overlap("batchnorm backward", grad_x, x)?;
        super::no_overlap("batchnorm backward", grad_x, grad_out)?;
        if saved.chan.shape()[1] != self.channels() {
            return Err(Error::param(
                "batchnorm backward",
                "the saved statistics are another BatchNorm's (a different channel count)",
            ));
        }
        let gpu = rec.gpu();
        check_bindable(gpu, &[x, grad_out, grad_x])?;
        let (x, go, gx) = (rebase(gpu, x), rebase(gpu, grad_out), rebase(gpu, grad_x));
        let mut args = self.args(&x, saved.training);
        args.g_view = [go.offset_u32(), go.batch_stride_u32()];
        args.o_view = [gx.offset_u32(), gx.batch_stride_u32()];
        args.mode = if saved.training {
            MODE_TRAIN
        } else {
            MODE_EVAL
        };
        args.accumulate = accumulate as u32;
        args.relu = relu as u32;
        let partials = partials(rec, &args)?;
        launch_sums(
            rec,
            &GRAD_SUMS,
            &args,
            &x,
            Some(&go),
            &partials,
            &saved.chan,
        )?;
        let c = self.channels() as u64;
        rec.launch(
            &FINISH_GRADS,
            &[bytemuck::bytes_of(&args)],
            &[
                Some(read(&partials)),
                Some(write(&saved.chan)),
                Some(read(&self.weight)),
                Some(write(grad_weight)),
                Some(write(grad_bias)),
            ],
            &[],
            Grid::Threads(c),
            Cost {
                flops: 2 * c * args.splits as u64,
                bytes: 4 * c * (2 * args.splits as u64 + 8),
            },
        )?;
        rec.scratch_done(partials);
        let count = x.numel() as u64;
        rec.launch(
            &BACKWARD_INPUT,
            &[bytemuck::bytes_of(&args)],
            &[
                Some(read(&x)),
                Some(read(&go)),
                Some(write(&gx)),
                Some(read(&saved.chan)),
            ],
            &[],
            Grid::Threads(count),
            Cost {
                flops: 5 * count,
                bytes: 4 * count * (3 + accumulate as u64),
            },
        )
    }

    /// The arguments every kernel shares for input `x` (bound as it is).
    fn args(&self, x: &Tensor, training: bool) -> BnArgs {
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
            eps: self.eps,
            momentum: self.momentum.unwrap_or(0.0),
            shift_row: NO_ROW,
            mode: if training { MODE_TRAIN } else { MODE_EVAL },
            ..Default::default()
        }
    }

    /// One thread per channel: the statistics (or the running ones) into `chan`.
    fn launch_finish_stats(
        &self,
        rec: &mut Recording<'_>,
        args: &BnArgs,
        partials: &Tensor,
        chan: &Tensor,
    ) -> Result<()> {
        let c = self.channels() as u64;
        rec.launch(
            &FINISH_STATS,
            &[bytemuck::bytes_of(args)],
            &[
                Some(read(partials)),
                Some(write(chan)),
                Some(read(&self.weight)),
                Some(read(&self.bias)),
                Some(write(&self.running_mean)),
                Some(write(&self.running_var)),
            ],
            &[],
            Grid::Threads(c),
            Cost {
                flops: 2 * c * args.splits as u64,
                bytes: 4 * c * (2 * args.splits as u64 + 8),
            },
        )
    }
}

/// Fails unless every tensor fits one binding (BatchNorm's reductions span the batch).
fn check_bindable(gpu: &Gpu, tensors: &[&Tensor]) -> Result<()> {
    super::require_bindable(
        "batchnorm",
        gpu,
        tensors,
        "run the BatchNorm on a smaller batch",
    )
}

/// The per-channel map of `chan` from `x` into `out`, one thread an element.
fn launch_apply(
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
fn partials(rec: &mut Recording<'_>, args: &BnArgs) -> Result<Tensor> {
    // Scratch: reused by later dispatches of the recording once its readers are recorded
    // (every element is written by the sums before the finish reads it).
    rec.scratch_tensor([args.splits as usize, args.c as usize, 2, 1])
}

/// One workgroup per (channel, split): the two per-channel sums of `kernel`.
fn launch_sums(
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
