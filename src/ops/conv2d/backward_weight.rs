//! The weight gradient: checks, splits what one binding cannot hold (`split.rs`), then
//! lets the selection choose a family (each splits its long pixel reduction itself, see
//! `partials.rs`) — with the bias gradient riding along where it can.

use super::args::{check_bias, expect_shape, BiasGradient, Geometry, WeightGradArgs};
use super::family::Call;
use super::select;
use super::{conv2d_backward_bias_into, split, Conv2dParams, Fusion};
use crate::error::Result;
use crate::ops::{bindable, no_overlap, rebase, Half};
use crate::record::Recording;
use crate::tensor::Tensor;

/// Weight gradient into `grad_weight` (=|+= by `fusion.accumulate`). With
/// `fusion.relu_input` the forward's input was ReLU'd on load, and so it is here.
pub fn conv2d_backward_weight_into(
    rec: &mut Recording<'_>,
    x: &Tensor,
    grad_out: &Tensor,
    params: &Conv2dParams,
    grad_weight: &Tensor,
    fusion: Fusion,
) -> Result<()> {
    weight_gradient(rec, x, grad_out, params, grad_weight, fusion, None)
}

/// The weight gradient as [`conv2d_backward_weight_into`], and with `grad_bias` the bias
/// gradient (overwritten): in the launch that reduces the weight gradient's partial sums
/// where the family has one (one launch fewer), else on its own after it.
pub(crate) fn conv2d_backward_weight_and_bias_into(
    rec: &mut Recording<'_>,
    x: &Tensor,
    grad_out: &Tensor,
    params: &Conv2dParams,
    grad_weight: &Tensor,
    grad_bias: Option<&Tensor>,
    fusion: Fusion,
) -> Result<()> {
    let Some(grad_bias) = grad_bias else {
        return conv2d_backward_weight_into(rec, x, grad_out, params, grad_weight, fusion);
    };
    check_bias(grad_bias, grad_out.shape()[1])?;
    no_overlap("conv2d backward bias", grad_bias, grad_out)?;
    no_overlap("conv2d backward bias", grad_bias, grad_weight)?;
    let bias = BiasGradient::new(grad_out, grad_bias);
    weight_gradient(rec, x, grad_out, params, grad_weight, fusion, Some(&bias))?;
    if !bias.done() {
        conv2d_backward_bias_into(rec, grad_out, grad_bias, false)?;
    }
    Ok(())
}

fn weight_gradient(
    rec: &mut Recording<'_>,
    x: &Tensor,
    grad_out: &Tensor,
    params: &Conv2dParams,
    grad_weight: &Tensor,
    fusion: Fusion,
    bias: Option<&BiasGradient<'_>>,
) -> Result<()> {
    let g = Geometry::of(x, grad_weight, params)?;
    expect_shape("output gradient", grad_out, g.y)?;
    no_overlap("conv2d backward weight", grad_weight, x)?;
    no_overlap("conv2d backward weight", grad_weight, grad_out)?;
    let gpu = rec.gpu();
    let whole = WeightGradArgs {
        g,
        p: *params,
        x,
        grad_out,
        grad_weight,
        fusion,
        bias,
    };
    let params_fit = bindable(gpu, &[grad_weight]);
    if !bindable(gpu, &[x, grad_out]) || !params_fit {
        if let Some(halves) = Half::of(g.x, false).filter(|_| params_fit) {
            for half in halves {
                let f = Fusion {
                    relu_input: fusion.relu_input,
                    accumulate: fusion.accumulate || half.is_second(),
                };
                let (xh, goh) = (half.of_tensor(x)?, half.of_tensor(grad_out)?);
                weight_gradient(rec, &xh, &goh, params, grad_weight, f, bias)?;
            }
            return Ok(());
        }
        if params.groups == 1 {
            let fits = params_fit && bindable(gpu, &[grad_out]);
            return split::backward_weight_channels(rec, &whole, fits);
        }
    }
    let (x, grad_out) = (&rebase(gpu, x), &rebase(gpu, grad_out));
    let a = WeightGradArgs {
        x,
        grad_out,
        ..whole
    };
    select::run(rec, Call::BackwardWeight(&a))
}
