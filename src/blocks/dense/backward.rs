//! A dense block's backward pass, for both concatenation strategies: naive (fresh buffers
//! per layer, the concatenation's gradient split back into its parts) and shared (one
//! gradient buffer whose channel views the layers accumulate into).

use super::{DenseBlock, Saved};
use crate::blocks::{forward_missing, BlockGrads, ConvLayer};
use crate::error::{Error, Result};
use crate::memory::Purpose;
use crate::ops::conv2d::{self, Fusion};
use crate::ops::{concat, relu};
use crate::record::Recording;
use crate::tensor::Tensor;

impl DenseBlock {
    pub(super) fn record_backward(
        &self,
        rec: &mut Recording<'_>,
        saved: &Saved,
        grad_out: &Tensor,
    ) -> Result<BlockGrads> {
        let gpu = rec.gpu();
        let (c0, k) = (self.in_channels, self.growth);
        let [n, _, h, w] = grad_out.shape();
        let expected = match saved {
            Saved::Naive { feats, .. } => {
                let [fn_, _, fh, fw] = feats[0].shape();
                [fn_, self.out_channels(), fh, fw]
            }
            Saved::Shared { features } => features.shape(),
        };
        if grad_out.shape() != expected {
            return Err(Error::shape(
                "dense block backward",
                format!(
                    "grad_out has shape {:?}, the output has {expected:?}",
                    grad_out.shape()
                ),
            ));
        }
        let mut params = Vec::with_capacity(2 * self.layers.len());
        let param_grads = |layer: &ConvLayer| -> Result<(Tensor, Tensor)> {
            let gw = Tensor::zeros(gpu, layer.weight.shape(), Purpose::Gradient)?;
            let gb = Tensor::zeros(gpu, layer.bias.shape(), Purpose::Gradient)?;
            Ok((gw, gb))
        };
        let grad_x = match saved {
            Saved::Naive { feats, cats, relus } => {
                // The output's gradient split per feature map (copies), then each layer's
                // input gradient split again and added onto the earlier maps' gradients.
                let channels: Vec<usize> = feats.iter().map(|f| f.shape()[1]).collect();
                let g_feats = concat::concat_backward(rec, grad_out, &channels)?;
                for i in (0..self.layers.len()).rev() {
                    let layer = &self.layers[i];
                    let (gw, gb) = param_grads(layer)?;
                    let g = &g_feats[i + 1];
                    let g_relu = Tensor::zeros(gpu, relus[i].shape(), Purpose::Gradient)?;
                    conv2d::Conv2dBackward {
                        x: &relus[i],
                        weight: &layer.weight,
                        grad_out: g,
                        params: &layer.params,
                        fusion: Fusion::default(),
                    }
                    .record_into(rec, &g_relu, &gw, Some(&gb))?;
                    let g_cat = relu::relu_backward(rec, &cats[i], &g_relu)?;
                    let mut at = 0;
                    for (j, gf) in g_feats.iter().take(i + 1).enumerate() {
                        concat::copy_view(rec, &g_cat.channels(at..at + channels[j])?, gf, true)?;
                        at += channels[j];
                    }
                    // Per-layer temporaries live until the backward's submission runs.
                    rec.retain(g_relu);
                    rec.retain(g_cat);
                    params.push((gw, gb, i));
                }
                g_feats
                    .into_iter()
                    .next()
                    .ok_or_else(|| forward_missing("dense block"))?
            }
            Saved::Shared { features } => {
                // One gradient buffer for all feature maps, starting as grad_out. Layer i's
                // slice is complete once all later layers have added onto it.
                let grads = Tensor::zeros(gpu, [n, self.out_channels(), h, w], Purpose::Gradient)?;
                concat::copy_view(rec, grad_out, &grads, false)?;
                for i in (0..self.layers.len()).rev() {
                    let layer = &self.layers[i];
                    let (gw, gb) = param_grads(layer)?;
                    let ci = c0 + i * k;
                    let input = features.channels(0..ci)?;
                    let g_out = grads.channels(ci..ci + k)?;
                    // ReLU on load for the weight gradient, its mask on store for the
                    // input gradient, which accumulates into the earlier channels.
                    let masked_accumulate = Fusion {
                        relu_input: true,
                        accumulate: true,
                    };
                    conv2d::Conv2dBackward {
                        x: &input,
                        weight: &layer.weight,
                        grad_out: &g_out,
                        params: &layer.params,
                        fusion: masked_accumulate,
                    }
                    .record_into(
                        rec,
                        &grads.channels(0..ci)?,
                        &gw,
                        Some(&gb),
                    )?;
                    params.push((gw, gb, i));
                }
                grads.channels(0..c0)?
            }
        };
        params.sort_by_key(|p| p.2);
        let params = params
            .into_iter()
            .flat_map(|(gw, gb, i)| {
                [
                    (format!("layer{i}.weight"), gw),
                    (format!("layer{i}.bias"), gb),
                ]
            })
            .collect();
        Ok(BlockGrads { grad_x, params })
    }
}
