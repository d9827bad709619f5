//! The forward pass: checks, splits what one launch cannot hold (`split.rs`), then lets
//! the selection choose a family.

use super::args::{check_bias, expect_shape, ForwardArgs, Geometry};
use super::budget::channels_fit;
use super::family::Call;
use super::select;
use super::{split, Conv2dParams, Fusion};
use crate::error::Result;
use crate::memory::Purpose;
use crate::ops::{bindable, no_overlap, rebase, Half};
use crate::record::Recording;
use crate::tensor::Tensor;

/// Forward convolution into a new activation tensor.
pub fn conv2d(
    rec: &mut Recording<'_>,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    params: &Conv2dParams,
) -> Result<Tensor> {
    let y = params.output_shape(x.shape(), weight.shape())?;
    let out = Tensor::zeros(rec.gpu(), y, Purpose::Activation)?;
    conv2d_into(rec, x, weight, bias, params, &out, Fusion::default())?;
    Ok(out)
}

/// Forward convolution into `out` (a tensor or a channel view). `x` and `out` may be disjoint
/// views of one buffer (a dense block reads earlier channels and writes the next ones).
pub fn conv2d_into(
    rec: &mut Recording<'_>,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    params: &Conv2dParams,
    out: &Tensor,
    fusion: Fusion,
) -> Result<()> {
    let g = Geometry::of(x, weight, params)?;
    if let Some(b) = bias {
        check_bias(b, g.y[1])?;
    }
    expect_shape("output", out, g.y)?;
    no_overlap("conv2d", out, x)?;
    let gpu = rec.gpu();
    let whole = ForwardArgs {
        g,
        p: *params,
        x,
        weight,
        bias,
        out,
        fusion,
    };
    // Tensors larger than one binding: halves of the batch, else of the channels.
    let params_fit = bindable(gpu, &[weight]);
    if !bindable(gpu, &[x, out]) || !params_fit {
        match Half::of(g.x, false) {
            Some(halves) if params_fit => {
                for half in halves {
                    let (xh, oh) = (half.of_tensor(x)?, half.of_tensor(out)?);
                    conv2d_into(rec, &xh, weight, bias, params, &oh, fusion)?;
                }
                return Ok(());
            }
            _ if params.groups == 1 => {
                let out_fits = params_fit && bindable(gpu, &[out]);
                return split::forward_channels(rec, &whole, out_fits);
            }
            _ => {}
        }
    }
    let (x, out) = (&rebase(gpu, x), &rebase(gpu, out));
    let a = ForwardArgs { x, out, ..whole };
    if !channels_fit(g.w[2], g.w[3], g.w[1]) {
        return split::forward(rec, &a);
    }
    select::run(rec, Call::Forward(&a))
}
