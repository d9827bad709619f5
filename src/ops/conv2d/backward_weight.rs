//! The weight gradient: checks, splits what one binding cannot hold (`split.rs`), then
//! lets the selection choose a family (each splits its long pixel reduction itself, see
//! `partials.rs`).

use super::args::{expect_shape, Geometry, WeightGradArgs};
use super::select::{self, Call};
use super::{split, Conv2dParams, Fusion};
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
                conv2d_backward_weight_into(rec, &xh, &goh, params, grad_weight, f)?;
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
