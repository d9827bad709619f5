//! Plain, readable f64 CPU implementations of every op and gradient. They are the oracle
//! the tests and the benchmark's correctness guard compare the GPU kernels against, so they
//! favour obviousness over speed: one loop nest per formula, straight from the definitions.

mod blocks;
mod sampled;

pub use blocks::{
    dense_block, dense_block_backward, residual_block, residual_block_backward, BlockGradsHost,
    HostConv,
};
pub use sampled::{conv2d_at, conv2d_backward_input_at, conv2d_backward_weight_at, index4, noise};

use crate::error::Result;
use crate::ops::conv2d::Conv2dParams;

/// Index of `(a, b, c, d)` in a contiguous 4-D array of shape `s`.
fn at(s: [usize; 4], a: usize, b: usize, c: usize, d: usize) -> usize {
    ((a * s[1] + b) * s[2] + c) * s[3] + d
}

/// The input pixel read by output pixel `o` at kernel tap `k`, if it is inside the image.
fn tap(o: usize, k: usize, stride: usize, pad: usize, dil: usize, len: usize) -> Option<usize> {
    let i = (o * stride + k * dil) as isize - pad as isize;
    (i >= 0 && (i as usize) < len).then_some(i as usize)
}

/// `conv2d(x, w, b)`; returns the output and its shape.
pub fn conv2d(
    x: &[f64],
    xs: [usize; 4],
    w: &[f64],
    ws: [usize; 4],
    b: Option<&[f64]>,
    p: &Conv2dParams,
) -> Result<(Vec<f64>, [usize; 4])> {
    let ys = p.output_shape(xs, ws)?;
    let mut y = vec![0.0; ys.iter().product()];
    for_each_tap(xs, ws, p, |xi, wi, yi| y[yi] += x[xi] * w[wi])?;
    if let Some(b) = b {
        let plane = ys[2] * ys[3];
        for (i, v) in y.iter_mut().enumerate() {
            *v += b[(i / plane) % ys[1]];
        }
    }
    Ok((y, ys))
}

/// Visits every (input element, weight element, output element) triple of a convolution:
/// the one loop nest behind both backward passes.
fn for_each_tap(
    xs: [usize; 4],
    ws: [usize; 4],
    p: &Conv2dParams,
    mut f: impl FnMut(usize, usize, usize),
) -> Result<[usize; 4]> {
    let ys = p.output_shape(xs, ws)?;
    let [n, cout, oh, ow] = ys;
    let (cin_g, cout_g) = (ws[1], cout / p.groups);
    for ni in 0..n {
        for oc in 0..cout {
            let g = oc / cout_g;
            for oy in 0..oh {
                for ox in 0..ow {
                    for ic in 0..cin_g {
                        for ky in 0..ws[2] {
                            let Some(iy) =
                                tap(oy, ky, p.stride[0], p.padding[0], p.dilation[0], xs[2])
                            else {
                                continue;
                            };
                            for kx in 0..ws[3] {
                                let Some(ix) =
                                    tap(ox, kx, p.stride[1], p.padding[1], p.dilation[1], xs[3])
                                else {
                                    continue;
                                };
                                f(
                                    at(xs, ni, g * cin_g + ic, iy, ix),
                                    at(ws, oc, ic, ky, kx),
                                    at(ys, ni, oc, oy, ox),
                                );
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(ys)
}

/// Gradient of `sum(conv2d(x, w) * grad_y)` with respect to `x`.
pub fn conv2d_backward_input(
    grad_y: &[f64],
    xs: [usize; 4],
    w: &[f64],
    ws: [usize; 4],
    p: &Conv2dParams,
) -> Result<Vec<f64>> {
    let mut gx = vec![0.0; xs.iter().product()];
    for_each_tap(xs, ws, p, |xi, wi, yi| gx[xi] += grad_y[yi] * w[wi])?;
    Ok(gx)
}

/// Gradient of `sum(conv2d(x, w) * grad_y)` with respect to `w`.
pub fn conv2d_backward_weight(
    x: &[f64],
    xs: [usize; 4],
    grad_y: &[f64],
    ws: [usize; 4],
    p: &Conv2dParams,
) -> Result<Vec<f64>> {
    let mut gw = vec![0.0; ws.iter().product()];
    for_each_tap(xs, ws, p, |xi, wi, yi| gw[wi] += grad_y[yi] * x[xi])?;
    Ok(gw)
}

/// Gradient with respect to the bias: `grad_y` summed over batch and pixels.
pub fn conv2d_backward_bias(grad_y: &[f64], ys: [usize; 4]) -> Vec<f64> {
    let [n, c, h, w] = ys;
    let mut gb = vec![0.0; c];
    for ni in 0..n {
        for (ci, g) in gb.iter_mut().enumerate() {
            for yi in 0..h {
                for xi in 0..w {
                    *g += grad_y[at(ys, ni, ci, yi, xi)];
                }
            }
        }
    }
    gb
}

/// `max(x, 0)`, with PyTorch's NaN rule: `relu(NaN) = NaN`.
pub fn relu(x: &[f64]) -> Vec<f64> {
    x.iter().map(|&v| if v < 0.0 { 0.0 } else { v }).collect()
}

/// `grad_y` except where `x <= 0` (PyTorch's `threshold_backward`: NaN passes).
pub fn relu_backward(x: &[f64], grad_y: &[f64]) -> Vec<f64> {
    x.iter()
        .zip(grad_y)
        .map(|(&v, &g)| if v <= 0.0 { 0.0 } else { g })
        .collect()
}

/// `AvgPool2d(k, s)` (no padding, floor mode) of `x` of shape `xs`: each output the mean of
/// its k × k window, scattered back by [`avg_pool2d_backward`].
pub fn avg_pool2d(x: &[f64], xs: [usize; 4], k: usize, s: usize) -> (Vec<f64>, [usize; 4]) {
    let [n, c, h, w] = xs;
    let (oh, ow) = ((h - k) / s + 1, (w - k) / s + 1);
    let mut y = vec![0.0; n * c * oh * ow];
    for (plane, out) in y.chunks_mut(oh * ow).enumerate() {
        let src = &x[plane * h * w..(plane + 1) * h * w];
        for oy in 0..oh {
            for ox in 0..ow {
                let sum: f64 = (0..k)
                    .flat_map(|ky| (0..k).map(move |kx| (oy * s + ky) * w + ox * s + kx))
                    .map(|i| src[i])
                    .sum();
                out[oy * ow + ox] = sum / (k * k) as f64;
            }
        }
    }
    (y, [n, c, oh, ow])
}

/// The gradient of [`avg_pool2d`] with respect to its input of shape `xs`: each output's
/// gradient / k² added to every element of its window.
pub fn avg_pool2d_backward(grad_y: &[f64], xs: [usize; 4], k: usize, s: usize) -> Vec<f64> {
    let [n, c, h, w] = xs;
    let (oh, ow) = ((h - k) / s + 1, (w - k) / s + 1);
    let mut gx = vec![0.0; n * c * h * w];
    for plane in 0..n * c {
        for oy in 0..oh {
            for ox in 0..ow {
                let g = grad_y[(plane * oh + oy) * ow + ox] / (k * k) as f64;
                for ky in 0..k {
                    for kx in 0..k {
                        gx[(plane * h + oy * s + ky) * w + ox * s + kx] += g;
                    }
                }
            }
        }
    }
    gx
}

/// `a + b`.
pub fn add(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// Concatenation along channels of NCHW tensors with shapes `shapes`.
pub fn concat(inputs: &[&[f64]], shapes: &[[usize; 4]]) -> Vec<f64> {
    let n = shapes[0][0];
    let mut out = Vec::new();
    for ni in 0..n {
        for (x, s) in inputs.iter().zip(shapes) {
            let sample = s[1] * s[2] * s[3];
            out.extend_from_slice(&x[ni * sample..(ni + 1) * sample]);
        }
    }
    out
}

/// Splits a channel-concatenated gradient back into the inputs' gradients.
pub fn concat_backward(grad_y: &[f64], shapes: &[[usize; 4]]) -> Vec<Vec<f64>> {
    let n = shapes[0][0];
    let total: usize = shapes.iter().map(|s| s[1] * s[2] * s[3]).sum();
    let mut grads: Vec<Vec<f64>> = shapes.iter().map(|_| Vec::new()).collect();
    for ni in 0..n {
        let mut at = ni * total;
        for (g, s) in grads.iter_mut().zip(shapes) {
            let sample = s[1] * s[2] * s[3];
            g.extend_from_slice(&grad_y[at..at + sample]);
            at += sample;
        }
    }
    grads
}
