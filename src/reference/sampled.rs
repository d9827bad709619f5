//! Single elements of the oracle's convolutions, for checking outputs too large to compute
//! whole, and the deterministic test data they are checked on.

use super::{at, tap};
use crate::ops::conv2d::Conv2dParams;

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
