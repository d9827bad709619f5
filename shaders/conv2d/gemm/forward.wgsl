// conv2d/gemm/forward.wgsl — implicit-GEMM conv2d (groups = 1) tiled in workgroup memory:
// the GEMM family's forward, and its stride-1 input gradient (the same kernel on the
// transposed problem). M = N*OH*OW output pixels, N = output channels, K = kh*kw*cin taps ×
// channels, in the order of the weight loader it is composed with (below).
//
// A workgroup owns a TILE_M-pixel × TILE_N-channel output tile (128 × 128, 128 × 64 or
// 64 × 64: the host picks the largest that still gives the adapter enough workgroups) and
// walks K in 16-deep slices: each slice of the input (gathered, zero padding selected, ReLU
// on load) and of the weights is staged in workgroup memory, and every one of its
// (TILE_M / 8) * (TILE_N / 8) threads accumulates an 8-pixel × 8-channel block from vec4
// reads of it (pixels 4*tm .. +3 and TILE_M/2 + 4*tm .. +3, channels likewise by tn: the two
// halves keep neighbouring threads on neighbouring vec4s). The next slice is fetched into
// registers while the current one is multiplied (double buffering), so global latency hides
// behind 16 × 64 FMAs a thread. The geometry is constant per pipeline
// (conv2d/gemm/geometry.wgsl): the K decomposition divides by constants.
//
// The weight operand comes from one of two loaders, each a file with its own entry point
// that calls gemm_forward and defines k_tap_channel (the K order), WeightSlice,
// fetch_weights and stage_weights:
//   conv2d/gemm/weights_packed.wgsl (conv2d_forward_gemm): weights packed by
//     conv2d/pack.wgsl, K tap-major — one vec4 load a row, but a packing pass first;
//   conv2d/gemm/weights_oihw.wgsl (conv2d_forward_gemm_oihw): the OIHW tensor read in
//     place, K channel-major — no packing pass, scalar loads.
//
// Contract (Conv args at binding 0; output bindings in conv2d/store.wgsl):
//   out[n, co, oy, ox] (=|+=) m * (bias[co] + sum_{ky, kx, ci} f(x[n, ci, iy, ix]) * w[co, ci, ky, kx])
//   as conv2d/regblock/forward.wgsl. 1: x (input view), 2: the weights (the loader's).
//   p.blocks = co_pad / 8 (co_pad: output channels rounded up to 8).
//   count = tiles = ceil(M / TILE_M) * ceil(co_pad / TILE_N) workgroups, channel tile fastest.
//   TILE_M, TILE_N ∈ {64, 128}; the thread layout needs TILE_M * TILE_N / 64 ≥ TILE_M / 4
//   and ≥ TILE_N / 4 threads (true for those tiles).

override TILE_M: u32;   // output pixels of a workgroup's tile
override TILE_N: u32;   // output channels of it
override GEMM_THREADS: u32 = (TILE_M / 8u) * (TILE_N / 8u);   // one 8 × 8 block each
// A slice in workgroup memory: [16 K rows][TILE_M / 4 pixel quads], [16][TILE_N / 4].
override A_QUADS: u32 = TILE_M / 4u;
override B_QUADS: u32 = TILE_N / 4u;
override A_LEN: u32 = 16u * A_QUADS;
override B_LEN: u32 = 16u * B_QUADS;
// Loader layout: a thread fetches quad lid % QUADS of rows lid / QUADS + j * ROW_STEP.
override A_ROW_STEP: u32 = GEMM_THREADS / A_QUADS;
override A_LOADS: u32 = 16u / A_ROW_STEP;   // 2 or 4

@group(0) @binding(1) var<storage, read_write> x: array<f32>;

var<workgroup> a_tile: array<vec4<f32>, A_LEN>;
var<workgroup> b_tile: array<vec4<f32>, B_LEN>;

// Where a thread's 4 input pixels start: padded origin (iy0, ix0), image offset, validity.
struct Quad { iy0: vec4<i32>, ix0: vec4<i32>, base: vec4<u32>, live: vec4<bool> }

fn pixel_quad(m0: u32) -> Quad {
    let m = vec4<u32>(m0) + vec4<u32>(0u, 1u, 2u, 3u);
    let total = p.n * G_OH * G_OW;
    let live = m < vec4<u32>(total);
    let mm = min(m, vec4<u32>(total - 1u));
    let ox = mm % G_OW;
    let oy = (mm / G_OW) % G_OH;
    let n = mm / (G_OW * G_OH);
    return Quad(vec4<i32>(oy * G_SH) - i32(G_PH), vec4<i32>(ox * G_SW) - i32(G_PW),
                p.x_off + n * p.x_bs, live);
}

// Row k of the slice for the thread's pixel quad: f(x) at tap k, zero outside the image.
fn gather(q: Quad, k: u32, relu: bool) -> vec4<f32> {
    let tc = k_tap_channel(k);
    let tap = tc.x;
    let ci = tc.y;
    let iy = q.iy0 + vec4<i32>(i32((tap / G_KW) * G_DH));
    let ix = q.ix0 + vec4<i32>(i32((tap % G_KW) * G_DW));
    let inside = q.live & (iy >= vec4<i32>(0)) & (iy < vec4<i32>(i32(G_H)))
        & (ix >= vec4<i32>(0)) & (ix < vec4<i32>(i32(G_W))) & vec4<bool>(k < G_KH * G_KW * G_CIN);
    let o = q.base + vec4<u32>(ci * G_H * G_W) + vec4<u32>(select(vec4<i32>(0), iy * i32(G_W) + ix, inside));
    let v = vec4<f32>(x[o.x], x[o.y], x[o.z], x[o.w]);
    return select(vec4<f32>(0.0), relu_if4(v, relu), inside);
}

// Stores channels co0 .. co0+3 of flat output pixel m, if inside the output: store.wgsl's
// store_output4_flat with the pixel decomposed by the constant G_OH, G_OW.
fn store4(m: u32, co0: u32, v: vec4<f32>) {
    if m >= p.n * G_OH * G_OW { return; }
    store_output4(m / (G_OW * G_OH), (m / G_OW) % G_OH, m % G_OW, co0, v);
}

// The kernel: the loader's entry point calls this.
fn gemm_forward(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) {
    let wg = workgroup_index(wid, nwg);
    if wg >= p.count { return; }   // uniform across the workgroup: no barrier is skipped by some
    let co4 = p.blocks * 2u;       // vec4s of channels (blocks = co_pad / 8)
    let tiles_n = (co4 + B_QUADS - 1u) / B_QUADS;
    let tile_n = wg % tiles_n;
    let tile_m = wg / tiles_n;
    let kk = G_KH * G_KW * G_CIN;
    let relu = p.relu_input != 0u;
    // Input loader role: pixel quad qa of rows ra + j * A_ROW_STEP.
    let qa = lid % A_QUADS;
    let ra = lid / A_QUADS;
    let quad = pixel_quad(tile_m * TILE_M + 4u * qa);
    // Compute roles: pixels 4*tm (+TILE_M/2), channels 4*tn (+TILE_N/2) of the tile.
    let tm = lid % (TILE_M / 8u);
    let tn = lid / (TILE_M / 8u);

    var acc: array<vec4<f32>, 16>;   // acc[2*j + h]: pixel j of the thread, channel half h
    var sa: array<vec4<f32>, 4>;     // the thread's rows of the next slice (A_LOADS used)
    for (var j = 0u; j < A_LOADS; j++) { sa[j] = gather(quad, ra + j * A_ROW_STEP, relu); }
    var sb = fetch_weights(0u, lid, tile_n, co4);
    let slices = (kk + 15u) / 16u;
    for (var k0 = 0u; k0 < slices * 16u; k0 += 16u) {
        for (var j = 0u; j < A_LOADS; j++) { a_tile[(ra + j * A_ROW_STEP) * A_QUADS + qa] = sa[j]; }
        stage_weights(sb, lid);
        workgroupBarrier();
        // The next slice into registers while this one is multiplied.
        let k1 = k0 + 16u;
        if k1 < kk {
            for (var j = 0u; j < A_LOADS; j++) { sa[j] = gather(quad, k1 + ra + j * A_ROW_STEP, relu); }
            sb = fetch_weights(k1, lid, tile_n, co4);
        }
        for (var i = 0u; i < 16u; i++) {
            outer_8x8(&acc, a_tile[i * A_QUADS + tm], a_tile[i * A_QUADS + A_QUADS / 2u + tm],
                      b_tile[i * B_QUADS + tn], b_tile[i * B_QUADS + B_QUADS / 2u + tn]);
        }
        workgroupBarrier();
    }
    // Epilogue (constant accumulator indices only).
    let m0 = tile_m * TILE_M + 4u * tm;
    let m1 = m0 + TILE_M / 2u;
    let c0 = tile_n * TILE_N + 4u * tn;
    let c1 = c0 + TILE_N / 2u;
    store4(m0, c0, acc[0]);        store4(m0, c1, acc[1]);
    store4(m0 + 1u, c0, acc[2]);   store4(m0 + 1u, c1, acc[3]);
    store4(m0 + 2u, c0, acc[4]);   store4(m0 + 2u, c1, acc[5]);
    store4(m0 + 3u, c0, acc[6]);   store4(m0 + 3u, c1, acc[7]);
    store4(m1, c0, acc[8]);        store4(m1, c1, acc[9]);
    store4(m1 + 1u, c0, acc[10]);  store4(m1 + 1u, c1, acc[11]);
    store4(m1 + 2u, c0, acc[12]);  store4(m1 + 2u, c1, acc[13]);
    store4(m1 + 3u, c0, acc[14]);  store4(m1 + 3u, c1, acc[15]);
}
