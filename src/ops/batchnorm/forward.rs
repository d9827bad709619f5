//! BatchNorm's forwards: training (batch statistics, running statistics updated) and eval,
//! and the re-application of saved statistics a schedule that kept no normalised copy runs.

use crate::error::{Error, Result};
use crate::memory::Purpose;
use crate::ops::{rebase, same_shape};
use crate::record::Recording;
use crate::tensor::Tensor;

use super::kernels::*;
use super::{BatchNorm2d, BatchNormSaved};

impl BatchNorm2d {
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
        crate::ops::no_overlap("batchnorm", out, x)?;
        let gpu = rec.gpu();
        check_bindable(gpu, &[x, out])?;
        let c = x.shape()[1];
        if training {
            check_trainable(x)?;
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
            // Pass 1: the mean; pass 2: the deviations from it, then the statistics.
            launch_two_pass_statistics(
                rec,
                &mut args,
                &x,
                &chan,
                (MODE_TRAIN, FinishInto::Module(self)),
            )?;
        } else {
            args.mode = MODE_EVAL;
            // No partial sums in eval: a token binding.
            let none = rec.scratch_tensor([1, 1, 1, 1])?;
            launch_finish_stats(rec, &args, &none, &chan, FinishInto::Module(self))?;
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
        crate::ops::no_overlap("batchnorm", out, x)?;
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
}
