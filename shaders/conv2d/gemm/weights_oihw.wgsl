// conv2d/gemm/weights_oihw.wgsl — the GEMM forward's weight operand read in place from the
// OIHW tensor, with no packing pass before it: entry point conv2d_forward_gemm_oihw
// (conv2d/gemm/forward.wgsl's kernel). One dispatch fewer a pass than
// conv2d/gemm/weights_packed.wgsl, for scalar weight loads; the tuner measures both.
//
// Contract: binding 2: the weights as written, [cout, cin, kh, kw] (the whole tensor). K is
// channel-major, k = c * kh*kw + tap (c: input channel of the problem, tap = ky*kw + kx), so
// a forward's weight column is contiguous along K. Column n (output channel of the problem)
// of row k is
//   w[n * B_N_STRIDE + c * B_C_STRIDE + (B_FLIP ? kh*kw - 1 - tap : tap)]
//   forward:        B_N_STRIDE = cin*kh*kw, B_C_STRIDE = kh*kw,     B_FLIP = false
//   input gradient: B_N_STRIDE = kh*kw,     B_C_STRIDE = cin*kh*kw, B_FLIP = true
//                   (the transposed problem: c = co, n = ci, the kernel flipped)
// and zero for n ≥ G_COUT (the padding channels) or k past K.
// A slice's 16 × TILE_N weights are fetched as scalars, B_ELEMS a thread: element
// e = lid + j * GEMM_THREADS is row 4 * (e / (4 * TILE_N)) + e % 4 of column
// (e / 4) % TILE_N, so four neighbouring threads read four neighbouring K of one column (16
// contiguous bytes in a forward) and a warp's 32 stores fall on 8 columns (4 a bank).

@group(0) @binding(2) var<storage, read> w_oihw: array<f32>;

override B_N_STRIDE: u32;
override B_C_STRIDE: u32;
override B_FLIP: bool;
override B_ELEMS: u32 = 16u * TILE_N / GEMM_THREADS;   // 8 or 16

// (tap, input channel) of K index k.
fn k_tap_channel(k: u32) -> vec2<u32> {
    return vec2<u32>(k % (G_KH * G_KW), k / (G_KH * G_KW));
}

// A thread's share of one K slice of the weights, in registers.
struct WeightSlice { v: array<f32, 16> }

// Row and column within the slice of the thread's element j.
fn slice_element(lid: u32, j: u32) -> vec2<u32> {
    let e = lid + j * GEMM_THREADS;
    return vec2<u32>(4u * (e / (4u * TILE_N)) + e % 4u, (e / 4u) % TILE_N);
}

// The thread's elements of the slice starting at K index k0 (co4 unused: the real channel
// count G_COUT bounds the columns).
fn fetch_weights(k0: u32, lid: u32, tile_n: u32, co4: u32) -> WeightSlice {
    var s: WeightSlice;
    let taps = G_KH * G_KW;
    for (var j = 0u; j < B_ELEMS; j++) {
        let rc = slice_element(lid, j);
        let k = k0 + rc.x;
        let n = tile_n * TILE_N + rc.y;
        let tap = k % taps;
        let o = n * B_N_STRIDE + (k / taps) * B_C_STRIDE + select(tap, taps - 1u - tap, B_FLIP);
        let ok = k < taps * G_CIN && n < G_COUT;
        s.v[j] = select(0.0, w_oihw[select(0u, o, ok)], ok);
    }
    return s;
}

// Writes the thread's share into b_tile ([16][B_QUADS] vec4s of channels).
fn stage_weights(s: WeightSlice, lid: u32) {
    for (var j = 0u; j < B_ELEMS; j++) {
        let rc = slice_element(lid, j);
        b_tile[rc.x * B_QUADS + rc.y / 4u][rc.y % 4u] = s.v[j];
    }
}

@compute @workgroup_size(GEMM_THREADS)
fn conv2d_forward_gemm_oihw(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                            @builtin(local_invocation_index) lid: u32) {
    gemm_forward(wid, nwg, lid);
}
