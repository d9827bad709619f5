//! BatchNorm's backward: the gradient through the batch statistics (training) or the affine
//! map (eval), and its form for relu(bn(x)) that masks by the recomputed sign.

use crate::error::{Error, Result};
use crate::ops::{rebase, same_shape};
use crate::record::{read, write, Cost, Grid, Recording};
use crate::tensor::Tensor;

use super::kernels::*;
use super::{BatchNorm2d, BatchNormSaved};

impl BatchNorm2d {
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
        crate::ops::no_overlap("batchnorm backward", grad_x, x)?;
        crate::ops::no_overlap("batchnorm backward", grad_x, grad_out)?;
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
}
