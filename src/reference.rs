//! Plain, readable f64 CPU implementations of every op and gradient. They are the oracle
//! the tests and the benchmark's correctness guard compare the GPU kernels against, so they
//! favour obviousness over speed: one loop nest per formula, straight from the definitions.

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

/// One conv layer of a block, on the host: weight, its shape, bias.
pub struct HostConv<'a> {
    /// OIHW weight values.
    pub weight: &'a [f64],
    /// OIHW weight shape.
    pub shape: [usize; 4],
    /// Bias values.
    pub bias: &'a [f64],
}

/// Forward of a residual block: `basic` gives `relu(conv2(relu(conv1(x))) + x)`, else the
/// skip-connection block `relu(conv2(relu(conv1(x)))) + x`. Both convs use `p`.
pub fn residual_block(
    x: &[f64],
    xs: [usize; 4],
    conv1: &HostConv<'_>,
    conv2: &HostConv<'_>,
    p: &Conv2dParams,
    basic: bool,
) -> Result<Vec<f64>> {
    let (a1, s1) = conv2d(x, xs, conv1.weight, conv1.shape, Some(conv1.bias), p)?;
    let (a2, _) = conv2d(
        &relu(&a1),
        s1,
        conv2.weight,
        conv2.shape,
        Some(conv2.bias),
        p,
    )?;
    Ok(if basic {
        relu(&add(&a2, x))
    } else {
        add(&relu(&a2), x)
    })
}

/// Forward of a dense block: `feat_{i+1} = conv_i(relu(concat(feat_0 … feat_i)))` with 3×3,
/// padding-1 convs; returns `concat(feat_0 … feat_L)`.
pub fn dense_block(x: &[f64], xs: [usize; 4], layers: &[HostConv<'_>]) -> Result<Vec<f64>> {
    let p = Conv2dParams::new(1, 1);
    let mut feats = vec![x.to_vec()];
    let mut shapes = vec![xs];
    for l in layers {
        let refs: Vec<&[f64]> = feats.iter().map(|f| f.as_slice()).collect();
        let cat = concat(&refs, &shapes);
        let cs = [xs[0], shapes.iter().map(|s| s[1]).sum(), xs[2], xs[3]];
        let (f, fs) = conv2d(&relu(&cat), cs, l.weight, l.shape, Some(l.bias), &p)?;
        feats.push(f);
        shapes.push(fs);
    }
    let refs: Vec<&[f64]> = feats.iter().map(|f| f.as_slice()).collect();
    Ok(concat(&refs, &shapes))
}

/// Gradients of a block: input gradient and parameter gradients in `state_dict` order
/// (weight, bias per conv).
pub struct BlockGradsHost {
    /// Gradient of the input.
    pub grad_x: Vec<f64>,
    /// Per conv: (weight gradient, bias gradient).
    pub params: Vec<(Vec<f64>, Vec<f64>)>,
}

/// Backward of [`residual_block`] for the output gradient `grad_y`.
pub fn residual_block_backward(
    x: &[f64],
    xs: [usize; 4],
    conv1: &HostConv<'_>,
    conv2: &HostConv<'_>,
    p: &Conv2dParams,
    basic: bool,
    grad_y: &[f64],
) -> Result<BlockGradsHost> {
    let (a1, s1) = conv2d(x, xs, conv1.weight, conv1.shape, Some(conv1.bias), p)?;
    let h1 = relu(&a1);
    let (a2, s2) = conv2d(&h1, s1, conv2.weight, conv2.shape, Some(conv2.bias), p)?;
    let (g_a2, skip) = if basic {
        let g_s = relu_backward(&add(&a2, x), grad_y);
        (g_s.clone(), g_s)
    } else {
        (relu_backward(&a2, grad_y), grad_y.to_vec())
    };
    let gw2 = conv2d_backward_weight(&h1, s1, &g_a2, conv2.shape, p)?;
    let gb2 = conv2d_backward_bias(&g_a2, s2);
    let g_a1 = relu_backward(
        &a1,
        &conv2d_backward_input(&g_a2, s1, conv2.weight, conv2.shape, p)?,
    );
    let gw1 = conv2d_backward_weight(x, xs, &g_a1, conv1.shape, p)?;
    let gb1 = conv2d_backward_bias(&g_a1, s1);
    let grad_x = add(
        &skip,
        &conv2d_backward_input(&g_a1, xs, conv1.weight, conv1.shape, p)?,
    );
    Ok(BlockGradsHost {
        grad_x,
        params: vec![(gw1, gb1), (gw2, gb2)],
    })
}

/// Backward of [`dense_block`] for the output gradient `grad_y`.
pub fn dense_block_backward(
    x: &[f64],
    xs: [usize; 4],
    layers: &[HostConv<'_>],
    grad_y: &[f64],
) -> Result<BlockGradsHost> {
    let p = Conv2dParams::new(1, 1);
    let mut feats = vec![x.to_vec()];
    let mut shapes = vec![xs];
    let mut cats = Vec::new();
    for l in layers {
        let refs: Vec<&[f64]> = feats.iter().map(|f| f.as_slice()).collect();
        let cs = [xs[0], shapes.iter().map(|s| s[1]).sum(), xs[2], xs[3]];
        let cat = concat(&refs, &shapes);
        let (f, fs) = conv2d(&relu(&cat), cs, l.weight, l.shape, Some(l.bias), &p)?;
        cats.push((cat, cs));
        feats.push(f);
        shapes.push(fs);
    }
    let mut g_feats = concat_backward(grad_y, &shapes);
    let mut params = Vec::new();
    for (i, l) in layers.iter().enumerate().rev() {
        let (cat, cs) = &cats[i];
        let g_f = g_feats[i + 1].clone();
        let gw = conv2d_backward_weight(&relu(cat), *cs, &g_f, l.shape, &p)?;
        let gb = conv2d_backward_bias(&g_f, shapes[i + 1]);
        let g_cat = relu_backward(
            cat,
            &conv2d_backward_input(&g_f, *cs, l.weight, l.shape, &p)?,
        );
        for (j, part) in concat_backward(&g_cat, &shapes[..=i])
            .into_iter()
            .enumerate()
        {
            for (a, b) in g_feats[j].iter_mut().zip(part) {
                *a += b;
            }
        }
        params.push((gw, gb));
    }
    params.reverse();
    Ok(BlockGradsHost {
        grad_x: g_feats.swap_remove(0),
        params,
    })
}

/// Values in [-1, 1), hashed from the index and a stream number (a SplitMix64 step): test
/// data in which two streams do not correlate and long sums cancel as real data's do.
pub fn noise(n: usize, stream: u64) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let mut h = (i ^ (stream << 40)).wrapping_add(0x9E37_79B9_7F4A_7C15);
            h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((h ^ (h >> 31)) % 4096) as f32 / 2048.0 - 1.0
        })
        .collect()
}

/// The NCHW index `[n, c, y, x]` of flat element `i` of a tensor of shape `s`.
pub fn index4(i: usize, s: [usize; 4]) -> [usize; 4] {
    [
        i / (s[1] * s[2] * s[3]),
        i / (s[2] * s[3]) % s[1],
        i / s[3] % s[2],
        i % s[3],
    ]
}

/// One element `(n, oc, oy, ox)` of `conv2d(x, w, b)`: for checking large outputs at samples.
pub fn conv2d_at(
    x: &[f64],
    xs: [usize; 4],
    w: &[f64],
    ws: [usize; 4],
    b: Option<&[f64]>,
    p: &Conv2dParams,
    [ni, oc, oy, ox]: [usize; 4],
) -> f64 {
    let cin_g = ws[1];
    let g = oc / (ws[0] / p.groups);
    let mut acc = b.map_or(0.0, |b| b[oc]);
    for ic in 0..cin_g {
        for ky in 0..ws[2] {
            let Some(iy) = tap(oy, ky, p.stride[0], p.padding[0], p.dilation[0], xs[2]) else {
                continue;
            };
            for kx in 0..ws[3] {
                let Some(ix) = tap(ox, kx, p.stride[1], p.padding[1], p.dilation[1], xs[3]) else {
                    continue;
                };
                acc += x[at(xs, ni, g * cin_g + ic, iy, ix)] * w[at(ws, oc, ic, ky, kx)];
            }
        }
    }
    acc
}

/// One element `(oc, ic, ky, kx)` of the weight gradient.
pub fn conv2d_backward_weight_at(
    x: &[f64],
    xs: [usize; 4],
    grad_y: &[f64],
    ys: [usize; 4],
    ws: [usize; 4],
    p: &Conv2dParams,
    [oc, ic, ky, kx]: [usize; 4],
) -> f64 {
    let c = (oc / (ws[0] / p.groups)) * ws[1] + ic;
    let mut acc = 0.0;
    for ni in 0..ys[0] {
        for oy in 0..ys[2] {
            let Some(iy) = tap(oy, ky, p.stride[0], p.padding[0], p.dilation[0], xs[2]) else {
                continue;
            };
            for ox in 0..ys[3] {
                let Some(ix) = tap(ox, kx, p.stride[1], p.padding[1], p.dilation[1], xs[3]) else {
                    continue;
                };
                acc += grad_y[at(ys, ni, oc, oy, ox)] * x[at(xs, ni, c, iy, ix)];
            }
        }
    }
    acc
}

/// One element `(n, c, iy, ix)` of the input gradient.
pub fn conv2d_backward_input_at(
    grad_y: &[f64],
    ys: [usize; 4],
    w: &[f64],
    ws: [usize; 4],
    p: &Conv2dParams,
    [ni, c, iy, ix]: [usize; 4],
) -> f64 {
    let (cin_g, cout_g) = (ws[1], ws[0] / p.groups);
    let g = c / cin_g;
    let mut acc = 0.0;
    for oc in g * cout_g..(g + 1) * cout_g {
        for ky in 0..ws[2] {
            let ty = (iy + p.padding[0]) as isize - (ky * p.dilation[0]) as isize;
            if ty < 0
                || !(ty as usize).is_multiple_of(p.stride[0])
                || ty as usize / p.stride[0] >= ys[2]
            {
                continue;
            }
            for kx in 0..ws[3] {
                let tx = (ix + p.padding[1]) as isize - (kx * p.dilation[1]) as isize;
                if tx < 0
                    || !(tx as usize).is_multiple_of(p.stride[1])
                    || tx as usize / p.stride[1] >= ys[3]
                {
                    continue;
                }
                acc += grad_y[at(
                    ys,
                    ni,
                    oc,
                    ty as usize / p.stride[0],
                    tx as usize / p.stride[1],
                )] * w[at(ws, oc, c % cin_g, ky, kx)];
            }
        }
    }
    acc
}
