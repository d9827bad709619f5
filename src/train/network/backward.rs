//! A network's backward pass: through the plain stack layer by layer (the ReLU of each
//! layer's input fused into the conv below it), or through its residual or dense blocks.

use super::{Body, Network};
use crate::blocks::{forward_missing, BlockGrads, ConvLayer, NamedGrads};
use crate::error::{Error, Result};
use crate::memory::Purpose;
use crate::ops::conv2d::{self, Fusion};
use crate::ops::relu;
use crate::record::Recording;
use crate::tensor::Tensor;

impl Network {
    /// Records the backward pass for `grad_out` and returns the gradients of the input and
    /// of every parameter (by `state_dict` name, in forward order). Uses up the saved state.
    pub fn backward(&mut self, rec: &mut Recording<'_>, grad_out: &Tensor) -> Result<BlockGrads> {
        let (grad_x, params) = self.record_backward(rec, grad_out, true)?;
        match grad_x {
            Some(grad_x) => Ok(BlockGrads { grad_x, params }),
            None => Err(Error::param(
                "network backward",
                "no input gradient recorded",
            )),
        }
    }

    /// [`Network::backward`] without the input's gradient, which training never needs: the
    /// parameters' gradients alone (by `state_dict` name, in forward order). The first
    /// layer's (plain) or first block's (residual) input-gradient pass is not recorded; the
    /// dense stack's block writes its input's gradient as part of every layer's, so it
    /// records the same as `backward`. Uses up the saved state.
    pub fn backward_params(
        &mut self,
        rec: &mut Recording<'_>,
        grad_out: &Tensor,
    ) -> Result<Vec<(String, Tensor)>> {
        let (grad_x, params) = self.record_backward(rec, grad_out, false)?;
        if let Some(g) = grad_x {
            rec.retain(g);
        }
        Ok(params)
    }

    /// The backward pass; the input's gradient only where `input_gradient` asks (and the
    /// architecture can leave it out).
    fn record_backward(
        &mut self,
        rec: &mut Recording<'_>,
        grad_out: &Tensor,
        input_gradient: bool,
    ) -> Result<(Option<Tensor>, NamedGrads)> {
        let gpu = rec.gpu();
        let order: Vec<String> = self.parameters().into_iter().map(|(n, _)| n).collect();
        let grads = match &mut self.body {
            Body::Plain(layers) => {
                let saved = self
                    .saved
                    .as_ref()
                    .ok_or_else(|| forward_missing("network"))?;
                let last = &saved[layers.len()];
                if grad_out.shape() != last.shape() {
                    return Err(Error::shape(
                        "network backward",
                        format!("grad_out {:?}, output {:?}", grad_out.shape(), last.shape()),
                    ));
                }
                // g holds d loss / d pre_i, from the last layer down.
                let mut g = Some(relu::relu_backward(rec, last, grad_out)?);
                let mut params = Vec::with_capacity(2 * layers.len());
                for i in (0..layers.len()).rev() {
                    let l = &layers[i];
                    let gw = Tensor::zeros(gpu, l.weight.shape(), Purpose::Gradient)?;
                    let gb = Tensor::zeros(gpu, l.bias.shape(), Purpose::Gradient)?;
                    let grad_at_out = g.take().ok_or_else(|| forward_missing("network"))?;
                    // Below the first layer the input was ReLU'd on load: its gradient is
                    // masked by pre_{i-1} > 0 as it is stored.
                    let backward = conv2d::Conv2dBackward {
                        x: &saved[i],
                        weight: &l.weight,
                        grad_out: &grad_at_out,
                        params: &l.params,
                        fusion: Fusion {
                            relu_input: i > 0,
                            accumulate: false,
                        },
                    };
                    if i > 0 || input_gradient {
                        let gx = Tensor::zeros(gpu, saved[i].shape(), Purpose::Gradient)?;
                        backward.record_into(rec, &gx, &gw, Some(&gb))?;
                        g = Some(gx);
                    } else {
                        backward.record_params_into(rec, &gw, Some(&gb))?;
                    }
                    params.push((format!("{}.bias", l.name), gb));
                    params.push((format!("{}.weight", l.name), gw));
                }
                params.reverse();
                (g, params)
            }
            Body::Residual(blocks) => {
                if self.saved.is_none() {
                    return Err(forward_missing("network"));
                }
                let mut g = grad_out.clone();
                let mut grad_x = None;
                let mut params = Vec::new();
                for (i, b) in blocks.iter_mut().enumerate().rev() {
                    let block_params = if i > 0 || input_gradient {
                        let bg = b.backward(rec, &g)?;
                        g = bg.grad_x.clone();
                        grad_x = Some(bg.grad_x);
                        bg.params
                    } else {
                        grad_x = None;
                        b.backward_params(rec, &g)?
                    };
                    for (n, t) in block_params.into_iter().rev() {
                        params.push((format!("blocks.{i}.{n}"), t));
                    }
                }
                params.reverse();
                (grad_x, params)
            }
            Body::Dense(dense) => {
                let (block, t) = &mut **dense;
                let features = self
                    .dense_features
                    .as_ref()
                    .ok_or_else(|| forward_missing("network"))?;
                transition_then_block(rec, features, t, grad_out, |rec, g| block.backward(rec, g))?
            }
            Body::ResNetBn(layer) => {
                if self.saved.is_none() {
                    return Err(forward_missing("network"));
                }
                let bg = layer.backward(rec, grad_out)?;
                let params = bg
                    .params
                    .into_iter()
                    .map(|(n, t)| (format!("blocks.{n}"), t))
                    .collect::<Vec<_>>();
                (Some(bg.grad_x), in_order(params, &order))
            }
            Body::DenseNetBc(dense) => {
                let (block, t) = &mut **dense;
                let features = self
                    .dense_features
                    .as_ref()
                    .ok_or_else(|| forward_missing("network"))?;
                let (grad_x, params) =
                    transition_then_block(rec, features, t, grad_out, |rec, g| {
                        block.backward(rec, g)
                    })?;
                (grad_x, in_order(params, &order))
            }
        };
        self.saved = None;
        self.dense_features = None;
        Ok(grads)
    }
}

/// `params` in the order of `order` (the names [`Network::parameters`] gives, forward
/// order): the torchvision modules return theirs from the last layer down.
fn in_order(mut params: Vec<(String, Tensor)>, order: &[String]) -> Vec<(String, Tensor)> {
    params.sort_by_key(|(n, _)| order.iter().position(|o| o == n).unwrap_or(usize::MAX));
    params
}

/// The dense stacks' backward: the 1×1 transition's gradients from `grad_out`, then the
/// block's (`block_backward`) from the transition's input gradient; the block's parameters
/// named `block.*`, then `transition.*`.
fn transition_then_block(
    rec: &mut Recording<'_>,
    features: &Tensor,
    t: &ConvLayer,
    grad_out: &Tensor,
    block_backward: impl FnOnce(&mut Recording<'_>, &Tensor) -> Result<BlockGrads>,
) -> Result<(Option<Tensor>, NamedGrads)> {
    let g = conv2d::conv2d_backward(rec, features, &t.weight, true, grad_out, &t.params)?;
    let bg = block_backward(rec, &g.grad_x)?;
    let mut params: Vec<(String, Tensor)> = bg
        .params
        .into_iter()
        .map(|(n, t)| (format!("block.{n}"), t))
        .collect();
    params.push(("transition.weight".into(), g.grad_weight));
    if let Some(gb) = g.grad_bias {
        params.push(("transition.bias".into(), gb));
    }
    rec.retain(g.grad_x);
    Ok((Some(bg.grad_x), params))
}
