// conv2d/store.wgsl — bindings and epilogue shared by the GEMM-shaped forward
// kernels (register-blocked, pixel, texture); prepended after conv2d/common.wgsl.
//
// Bindings: 0: Conv args, 1: the input x and 2: the weights (declared by each family: storage
// buffers or textures), 3: bias [cout] (unread when has_bias = 0), 4: out (output view y),
// 5: mask view gx (read when mask_output = 1); 8 and 9: the buffers of 4 and 5 again, as
// vec4s, for whole-block stores (vec4_ok = 1).

@group(0) @binding(0) var<uniform> p: Conv;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> mask: array<f32>;
@group(0) @binding(8) var<storage, read_write> out4: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read_write> mask4: array<vec4<f32>>;

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
        if p.mask_output != 0u && !relu_grad_passes(mask[m_n + pix]) { r = 0.0; }
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
    if p.vec4_ok != 0u && pixels == 8u && m0 < p.n * p.oh * p.ow {
        // A whole block in one row: each channel's 8 pixels as two vec4 stores (a store is a
        // loop over the SIMD lanes on CPU adapters: a quarter as many loops).
        store_channel8(m0, c0, vec4<f32>((*acc)[0].x, (*acc)[2].x, (*acc)[4].x, (*acc)[6].x),
                       vec4<f32>((*acc)[8].x, (*acc)[10].x, (*acc)[12].x, (*acc)[14].x));
        store_channel8(m0, c0 + 1u, vec4<f32>((*acc)[0].y, (*acc)[2].y, (*acc)[4].y, (*acc)[6].y),
                       vec4<f32>((*acc)[8].y, (*acc)[10].y, (*acc)[12].y, (*acc)[14].y));
        store_channel8(m0, c0 + 2u, vec4<f32>((*acc)[0].z, (*acc)[2].z, (*acc)[4].z, (*acc)[6].z),
                       vec4<f32>((*acc)[8].z, (*acc)[10].z, (*acc)[12].z, (*acc)[14].z));
        store_channel8(m0, c0 + 3u, vec4<f32>((*acc)[0].w, (*acc)[2].w, (*acc)[4].w, (*acc)[6].w),
                       vec4<f32>((*acc)[8].w, (*acc)[10].w, (*acc)[12].w, (*acc)[14].w));
        store_channel8(m0, c0 + 4u, vec4<f32>((*acc)[1].x, (*acc)[3].x, (*acc)[5].x, (*acc)[7].x),
                       vec4<f32>((*acc)[9].x, (*acc)[11].x, (*acc)[13].x, (*acc)[15].x));
        store_channel8(m0, c0 + 5u, vec4<f32>((*acc)[1].y, (*acc)[3].y, (*acc)[5].y, (*acc)[7].y),
                       vec4<f32>((*acc)[9].y, (*acc)[11].y, (*acc)[13].y, (*acc)[15].y));
        store_channel8(m0, c0 + 6u, vec4<f32>((*acc)[1].z, (*acc)[3].z, (*acc)[5].z, (*acc)[7].z),
                       vec4<f32>((*acc)[9].z, (*acc)[11].z, (*acc)[13].z, (*acc)[15].z));
        store_channel8(m0, c0 + 7u, vec4<f32>((*acc)[1].w, (*acc)[3].w, (*acc)[5].w, (*acc)[7].w),
                       vec4<f32>((*acc)[9].w, (*acc)[11].w, (*acc)[13].w, (*acc)[15].w));
        return;
    }
    store_output8_flat(m0, c0, (*acc)[0], (*acc)[1]);
    if pixels > 1u { store_output8_flat(m0 + 1u, c0, (*acc)[2], (*acc)[3]); }
    if pixels > 2u { store_output8_flat(m0 + 2u, c0, (*acc)[4], (*acc)[5]); }
    if pixels > 3u { store_output8_flat(m0 + 3u, c0, (*acc)[6], (*acc)[7]); }
    if pixels > 4u { store_output8_flat(m0 + 4u, c0, (*acc)[8], (*acc)[9]); }
    if pixels > 5u { store_output8_flat(m0 + 5u, c0, (*acc)[10], (*acc)[11]); }
    if pixels > 6u { store_output8_flat(m0 + 6u, c0, (*acc)[12], (*acc)[13]); }
    if pixels > 7u { store_output8_flat(m0 + 7u, c0, (*acc)[14], (*acc)[15]); }
}

// Stores channel co of the 8 pixels from flat pixel m0 (a multiple of 8 in a row whose
// width is a multiple of 8; views 4-aligned) as two vec4s: bias, mask, accumulate.
fn store_channel8(m0: u32, co: u32, a: vec4<f32>, b: vec4<f32>) {
    if co >= p.cout { return; }
    let ohw = p.oh * p.ow;
    let n = m0 / ohw;
    let pix = co * ohw + m0 % ohw;
    var va = a;
    var vb = b;
    if p.has_bias != 0u {
        va += vec4<f32>(bias[co]);
        vb += vec4<f32>(bias[co]);
    }
    if p.mask_output != 0u {
        let mi = (p.gx_off + n * p.gx_bs + pix) / 4u;
        va = select(vec4<f32>(0.0), va, relu_grad_passes4(mask4[mi]));
        vb = select(vec4<f32>(0.0), vb, relu_grad_passes4(mask4[mi + 1u]));
    }
    let i = (p.y_off + n * p.y_bs + pix) / 4u;
    if p.accumulate != 0u {
        va += out4[i];
        vb += out4[i + 1u];
    }
    out4[i] = va;
    out4[i + 1u] = vb;
}
