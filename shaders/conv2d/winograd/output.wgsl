// conv2d/winograd/output.wgsl — the output transform Y = Aᵀ M A and the store: entry point
// conv2d_winograd_output. One thread per (real tile, quad of output channels): the α × α
// products of channels 4q .. 4q+3 as vec4s, transformed into the tile's m × m outputs and
// stored through the shared epilogue (bias, ReLU mask, accumulate: conv2d/store.wgsl), the
// tile's pixels past the output's edge skipped.
//
// Non-finite values: where any output of the tile is NaN or ±Inf, the transforms have mixed
// its inputs (one Inf in a patch turns every output of the tile into Inf − Inf = NaN), so
// the tile's outputs for these channels are computed again tap by tap from x and the
// weights, giving what PyTorch gives (an Inf where the direct sum has one, finite values
// where it has none). Only tiles that touch such values pay for it.
//
// Stores: with F(4×4) and p.vec4_ok (ow % 4 = 0, out and mask views 4-aligned), each
// channel's row of 4 pixels as one vec4 (bindings 8 and 9); else pixel by pixel.
//
// Contract: binding 1: x, the problem's whole input view, read only for the fallback;
// binding 2: as conv2d/winograd/taps.wgsl; binding 13: M; bindings 3, 4, 5 (8, 9): the
// store epilogue's. count = real_tiles * ceil(cout / 4) threads.

@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(13) var m_tex: texture_2d<f32>;

// Aᵀ m for one column m (α values): m values.
fn at_col(d: array<vec4<f32>, 6>) -> array<vec4<f32>, 4> {
    var r: array<vec4<f32>, 4>;
    if WINO_M == 4u {
        let s12 = d[1] + d[2];
        let d12 = d[1] - d[2];
        let s34 = d[3] + d[4];
        let d34 = d[3] - d[4];
        r[0] = d[0] + s12 + s34;
        r[1] = 1.5 * d12 + (2.0 / 3.0) * d34;
        r[2] = 2.25 * s12 + (4.0 / 9.0) * s34;
        r[3] = 3.375 * d12 + (8.0 / 27.0) * d34 + d[5];
    } else {
        r[0] = d[0] + d[1] + d[2];
        r[1] = d[1] - d[2] - d[3];
    }
    return r;
}

// Output (n, oy, ox) of channels co0 .. co0+3 (zero past cout) summed tap by tap, as the
// direct kernel does.
fn direct4(n: u32, oy: u32, ox: u32, co0: u32) -> vec4<f32> {
    let relu = p.relu_input != 0u;
    var acc = vec4<f32>(0.0);
    for (var k = 0u; k < p.cin; k++) {
        let plane = p.x_off + n * p.x_bs + k * p.h * p.w;
        for (var ky = 0u; ky < 3u; ky++) {
            let iy = i32(oy + ky) - i32(p.ph);
            if iy < 0 || iy >= i32(p.h) { continue; }
            for (var kx = 0u; kx < 3u; kx++) {
                let ix = i32(ox + kx) - i32(p.pw);
                if ix < 0 || ix >= i32(p.w) { continue; }
                let v = relu_if(x[plane + u32(iy) * p.w + u32(ix)], relu);
                var w = vec4<f32>(0.0);
                for (var j = 0u; j < 4u; j++) {
                    if co0 + j < p.cout { w[j] = tap(co0 + j, k, ky, kx); }
                }
                acc = fma(vec4<f32>(v), w, acc);
            }
        }
    }
    return acc;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_winograd_output(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= wp.count { return; }
    let quads = (p.cout + 3u) / 4u;
    let q = i % quads;
    let t = i / quads;
    let cq = wp.cout_pad / 4u;
    // Aᵀ M column by column: cols[c][r] = (Aᵀ M)[r][c].
    var cols: array<array<vec4<f32>, 4>, 6>;
    for (var c = 0u; c < ALPHA; c++) {
        var d: array<vec4<f32>, 6>;
        for (var r = 0u; r < ALPHA; r++) {
            d[r] = textureLoad(m_tex, vec2<u32>(t, (r * ALPHA + c) * cq + q), 0);
        }
        cols[c] = at_col(d);
    }
    // (Aᵀ M) A row by row.
    var y: array<array<vec4<f32>, 4>, 4>;
    var finite = true;
    for (var r = 0u; r < WINO_M; r++) {
        var row: array<vec4<f32>, 6>;
        for (var c = 0u; c < ALPHA; c++) { row[c] = cols[c][r]; }
        y[r] = at_col(row);
        for (var c = 0u; c < WINO_M; c++) { finite = finite && all(is_finite4(y[r][c])); }
    }
    let pos = tile_pos(t);
    let co0 = 4u * q;
    if !finite {
        for (var r = 0u; r < WINO_M; r++) {
            for (var c = 0u; c < WINO_M; c++) {
                let oy = pos.y * WINO_M + r;
                let ox = pos.z * WINO_M + c;
                if oy < p.oh && ox < p.ow { store_output4(pos.x, oy, ox, co0, direct4(pos.x, oy, ox, co0)); }
            }
        }
        return;
    }
    if WINO_M == 4u && p.vec4_ok != 0u {
        for (var r = 0u; r < WINO_M; r++) {
            let oy = pos.y * WINO_M + r;
            if oy >= p.oh { break; }
            store_row4(pos.x, oy, pos.z * WINO_M, co0, y[r][0], y[r][1], y[r][2], y[r][3]);
        }
        return;
    }
    for (var r = 0u; r < WINO_M; r++) {
        for (var c = 0u; c < WINO_M; c++) {
            let oy = pos.y * WINO_M + r;
            let ox = pos.z * WINO_M + c;
            if oy < p.oh && ox < p.ow { store_output4(pos.x, oy, ox, co0, y[r][c]); }
        }
    }
}

// Stores pixels ox .. ox+3 of row oy (ox a multiple of 4, inside the row) of channels
// co0 .. co0+3 from the pixels' channel vectors v0 .. v3: one vec4 per channel.
fn store_row4(n: u32, oy: u32, ox: u32, co0: u32, v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>, v3: vec4<f32>) {
    store_channel4(n, oy, ox, co0, vec4<f32>(v0.x, v1.x, v2.x, v3.x));
    store_channel4(n, oy, ox, co0 + 1u, vec4<f32>(v0.y, v1.y, v2.y, v3.y));
    store_channel4(n, oy, ox, co0 + 2u, vec4<f32>(v0.z, v1.z, v2.z, v3.z));
    store_channel4(n, oy, ox, co0 + 3u, vec4<f32>(v0.w, v1.w, v2.w, v3.w));
}

// Channel co's pixels ox .. ox+3 of row oy: bias, mask, accumulate.
fn store_channel4(n: u32, oy: u32, ox: u32, co: u32, v: vec4<f32>) {
    if co >= p.cout { return; }
    let pix = (co * p.oh + oy) * p.ow + ox;
    var r = v;
    if p.has_bias != 0u { r += vec4<f32>(bias[co]); }
    if p.mask_output != 0u {
        r = select(vec4<f32>(0.0), r, relu_grad_passes4(mask4[(p.gx_off + n * p.gx_bs + pix) / 4u]));
    }
    let i = (p.y_off + n * p.y_bs + pix) / 4u;
    if p.accumulate != 0u { r += out4[i]; }
    out4[i] = r;
}
