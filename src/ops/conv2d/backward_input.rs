//! The input gradient: checks, splits what one launch cannot hold (`split.rs`), then lets
//! the selection choose a family.

use super::args::{expect_shape, Geometry, InputGradArgs};
use super::budget::channels_fit;
use super::family::Call;
use super::select;
use super::{split, strided_pointwise, Conv2dParams, Fusion};
use crate::error::Result;
use crate::ops::{bindable, no_overlap, rebase, Half};
use crate::record::Recording;
use crate::tensor::Tensor;

/// Input gradient into `grad_x` (a tensor or view). With `fusion.relu_input`, `x` is the
/// forward's pre-ReLU input and the result is masked by `x > 0`; else `x` only gives shapes.
/// `grad_out` and `grad_x` may be disjoint views of one buffer.
pub fn conv2d_backward_input_into(
    rec: &mut Recording<'_>,
    x: &Tensor,
    weight: &Tensor,
    grad_out: &Tensor,
    params: &Conv2dParams,
    grad_x: &Tensor,
    fusion: Fusion,
) -> Result<()> {
    let g = Geometry::of(x, weight, params)?;
    expect_shape("output gradient", grad_out, g.y)?;
    expect_shape("input gradient", grad_x, g.x)?;
    no_overlap("conv2d backward input", grad_x, grad_out)?;
    no_overlap("conv2d backward input", grad_x, x)?;
    let gpu = rec.gpu();
    let whole = InputGradArgs {
        g,
        p: *params,
        x,
        weight,
        grad_out,
        grad_x,
        fusion,
    };
    let params_fit = bindable(gpu, &[weight]);
    if !bindable(gpu, &[x, grad_out, grad_x]) || !params_fit {
        if let Some(halves) = Half::of(g.x, false).filter(|_| params_fit) {
            for half in halves {
                let (xh, goh, gxh) = (
                    half.of_tensor(x)?,
                    half.of_tensor(grad_out)?,
                    half.of_tensor(grad_x)?,
                );
                conv2d_backward_input_into(rec, &xh, weight, &goh, params, &gxh, fusion)?;
            }
            return Ok(());
        }
        if params.groups == 1 {
            let fits = params_fit && bindable(gpu, &[grad_out]);
            return split::backward_input_channels(rec, &whole, fits);
        }
    }
    let (x, grad_out, grad_x) = (
        &rebase(gpu, x),
        &rebase(gpu, grad_out),
        &rebase(gpu, grad_x),
    );
    let a = InputGradArgs {
        x,
        grad_out,
        grad_x,
        ..whole
    };
    if strided_pointwise::applies(&a) {
        return strided_pointwise::backward_input(rec, &a);
    }
    if !channels_fit(g.w[2], g.w[3], g.y[1] / params.groups) {
        return split::backward_input(rec, &a);
    }
    select::run(rec, Call::BackwardInput(&a))
}
