//! Batch statistics computed once per feature map. Every BatchNorm that reads channel `c` of
//! a dense block's feature buffer in training computes the same batch mean and variance of
//! it (the same values, summed in the same order), so the block computes them once, as each
//! feature map is written ([`batch_statistics_into`], into a table of every map's), and each
//! later BatchNorm finishes from the table ([`BatchNorm2d::forward_with_statistics_into`]):
//! its two reductions over every earlier feature map — a quadratic amount of reading over a
//! block — become one over each map's new channels.

use crate::error::{Error, Result};
use crate::memory::Purpose;
use crate::ops::{rebase, same_shape};
use crate::record::{read, write, Cost, Grid, Recording};
use crate::tensor::Tensor;

use super::kernels::*;
use super::{BatchNorm2d, BatchNormSaved};

/// Checks a statistics table (`[2, C, 1, 1]`: the means, then the biased variances) for
/// `channels` channels from `offset`, and returns its row length `C`.
fn check_table(stats: &Tensor, offset: usize, channels: usize) -> Result<usize> {
    let [rows, width, h, w] = stats.shape();
    if rows != 2 || h != 1 || w != 1 || !stats.is_contiguous() {
        return Err(Error::shape(
            "batch statistics",
            format!(
                "the table is {:?}: it must be a whole [2, C, 1, 1] tensor (means, then variances)",
                stats.shape()
            ),
        ));
    }
    if offset + channels > width {
        return Err(Error::shape(
            "batch statistics",
            format!(
                "channels {offset}..{} are past the table's {width}",
                offset + channels
            ),
        ));
    }
    Ok(width)
}

/// The batch mean and biased variance of every channel of `x` (a tensor or channel view,
/// at least two values a channel) into columns `offset..offset + C` of `stats` (`[2, W, 1,
/// 1]`: row 0 the means, row 1 the variances), as a training BatchNorm's forward computes
/// them (the same two-pass sums): what [`BatchNorm2d::forward_with_statistics_into`] reads.
pub fn batch_statistics_into(
    rec: &mut Recording<'_>,
    x: &Tensor,
    stats: &Tensor,
    offset: usize,
) -> Result<()> {
    let c = x.shape()[1];
    let width = check_table(stats, offset, c)?;
    check_trainable(x)?;
    crate::ops::no_overlap("batch statistics", stats, x)?;
    let gpu = rec.gpu();
    check_bindable(gpu, &[x])?;
    let x = rebase(gpu, x);
    let mut args = base_args(&x, true);
    args.stats_off = offset as u32;
    args.stats_stride = width as u32;
    // The first pass's mean, the shift of the second, lives in a channel state of its own.
    let chan = rec.scratch_tensor([CHAN_ROWS, c, 1, 1])?;
    launch_two_pass_statistics(
        rec,
        &mut args,
        &x,
        &chan,
        (MODE_STATS, FinishInto::Table(stats)),
    )?;
    rec.scratch_done(chan);
    Ok(())
}

impl BatchNorm2d {
    /// A training forward into `out` whose batch statistics were computed already: columns
    /// `offset..offset + C` of `stats` hold the mean and biased variance of `x`'s channels
    /// ([`batch_statistics_into`] of the same values). Everything else is
    /// [`BatchNorm2d::forward_into`]'s in training — the running statistics and
    /// `num_batches_tracked` updated, the same saved state for the backward — in two
    /// dispatches instead of five, none of them a reduction.
    pub fn forward_with_statistics_into(
        &mut self,
        rec: &mut Recording<'_>,
        x: &Tensor,
        (stats, offset): (&Tensor, usize),
        out: &Tensor,
        relu: bool,
    ) -> Result<BatchNormSaved> {
        self.check_input("the input", x)?;
        same_shape("batchnorm", "input and output", x, out)?;
        crate::ops::no_overlap("batchnorm", out, x)?;
        crate::ops::no_overlap("batchnorm", out, stats)?;
        let c = x.shape()[1];
        let width = check_table(stats, offset, c)?;
        check_trainable(x)?;
        let gpu = rec.gpu();
        check_bindable(gpu, &[x, out])?;
        let chan = Tensor::zeros(gpu, [CHAN_ROWS, c, 1, 1], Purpose::Scratch)?;
        let (x, out) = (rebase(gpu, x), rebase(gpu, out));
        let mut args = self.args(&x, true);
        args.o_view = [out.offset_u32(), out.batch_stride_u32()];
        args.stats_off = offset as u32;
        args.stats_stride = width as u32;
        self.num_batches_tracked += 1;
        args.momentum = match self.momentum {
            Some(m) => m,
            None => 1.0 / self.num_batches_tracked as f32,
        };
        rec.launch(
            &FINISH_GIVEN,
            &[bytemuck::bytes_of(&args)],
            &[
                Some(write(&chan)),
                Some(read(&self.weight)),
                Some(read(&self.bias)),
                Some(write(&self.running_mean)),
                Some(write(&self.running_var)),
                Some(read(stats)),
            ],
            &[],
            Grid::Threads(c as u64),
            Cost {
                flops: 8 * c as u64,
                bytes: 4 * 12 * c as u64,
            },
        )?;
        args.relu = relu as u32;
        launch_apply(rec, &args, &x, &out, &chan)?;
        Ok(BatchNormSaved {
            chan,
            training: true,
        })
    }
}
