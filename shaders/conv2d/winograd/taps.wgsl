// conv2d/winograd/taps.wgsl — the problem's 3 × 3 kernels as the filter transform and the
// output transform's direct fallback read them; prepended after conv2d/winograd/common.wgsl.
//
// Binding 2: the OIHW weights [cout, cin, 3, 3] of the problem as written — or, with
// wp.transpose (an input gradient, the problem's channels swapped), the original weights
// [p.cin, p.cout, 3, 3] read transposed and flipped. Binding 0 (`p`) is declared by the file.

@group(0) @binding(2) var<storage, read> weight: array<f32>;

// Tap (ky, kx) of the problem's kernel for output channel co (< cout) and input channel k.
fn tap(co: u32, k: u32, ky: u32, kx: u32) -> f32 {
    if wp.transpose != 0u {
        // The input gradient: input channel k is the original's output channel, co its input.
        return weight[((k * p.cout + co) * 3u + 2u - ky) * 3u + 2u - kx];
    }
    return weight[((co * p.cin + k) * 3u + ky) * 3u + kx];
}
