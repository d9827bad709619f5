// conv2d_forward_common.wgsl — bindings and epilogue shared by the GEMM-shaped forward
// kernels (register-blocked, pixel, tiled); prepended after conv2d_common.wgsl.
//
// Bindings: 0: Conv args, 1: the input x and 2: the weights (declared by each family: storage
// buffers or textures), 3: bias [cout] (unread when has_bias = 0), 4: out (output view y),
// 5: mask view gx (read when mask_output = 1).

@group(0) @binding(0) var<uniform> p: Conv;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> mask: array<f32>;

// Stores channels co0 .. co0+3 of output pixel (n, oy, ox) from v: bias, mask, accumulate;
// channels past cout are skipped. Callers pass accumulators by constant index only: a
// dynamic index into a per-thread array makes the compiler keep the whole array in memory
// rather than registers (on lavapipe that halved the speed of every blocked kernel).
fn store_output4(n: u32, oy: u32, ox: u32, co0: u32, v: vec4<f32>) {
    let y_n = p.y_off + n * p.y_bs;
    let m_n = p.gx_off + n * p.gx_bs;
    for (var j = 0u; j < 4u; j++) {
        let co = co0 + j;
        if co >= p.cout { return; }
        let pix = (co * p.oh + oy) * p.ow + ox;
        var r = v[j];
        if p.has_bias != 0u { r += bias[co]; }
        if p.mask_output != 0u && mask[m_n + pix] <= 0.0 { r = 0.0; }
        let o = y_n + pix;
        if p.accumulate != 0u { out[o] += r; } else { out[o] = r; }
    }
}

// Stores channels co0 .. co0+3 of flat output pixel m = (n*OH + oy)*OW + ox, if m is
// inside the output.
fn store_output4_flat(m: u32, co0: u32, v: vec4<f32>) {
    if m >= p.n * p.oh * p.ow { return; }
    store_output4(m / (p.ow * p.oh), (m / p.ow) % p.oh, m % p.ow, co0, v);
}

// Stores channels co0 .. co0+7 (v0, v1) of flat output pixel m, if inside the output.
fn store_output8_flat(m: u32, co0: u32, v0: vec4<f32>, v1: vec4<f32>) {
    store_output4_flat(m, co0, v0);
    store_output4_flat(m, co0 + 4u, v1);
}

// Stores an 8-pixel × 8-channel register block: pixels m0 .. m0 + pixels - 1 (flat, at most
// 8), channels c0 .. c0+7, acc[2*q + h] holding pixel q's channels c0 + 4*h .. +3.
fn store_output_8x8(m0: u32, pixels: u32, c0: u32, acc: ptr<function, array<vec4<f32>, 16>>) {
    store_output8_flat(m0, c0, (*acc)[0], (*acc)[1]);
    if pixels > 1u { store_output8_flat(m0 + 1u, c0, (*acc)[2], (*acc)[3]); }
    if pixels > 2u { store_output8_flat(m0 + 2u, c0, (*acc)[4], (*acc)[5]); }
    if pixels > 3u { store_output8_flat(m0 + 3u, c0, (*acc)[6], (*acc)[7]); }
    if pixels > 4u { store_output8_flat(m0 + 4u, c0, (*acc)[8], (*acc)[9]); }
    if pixels > 5u { store_output8_flat(m0 + 5u, c0, (*acc)[10], (*acc)[11]); }
    if pixels > 6u { store_output8_flat(m0 + 6u, c0, (*acc)[12], (*acc)[13]); }
    if pixels > 7u { store_output8_flat(m0 + 7u, c0, (*acc)[14], (*acc)[15]); }
}
