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
// A slice's 16 × TILE_N weights are fetched in groups of 4 rows of one column (4 scalar
// loads: 16 contiguous bytes in a forward), B_GROUPS groups a thread: group
// e = lid + j * GEMM_THREADS is rows 4 * (e / TILE_N) .. +3 of column e % TILE_N, so
// neighbouring threads store to neighbouring columns (no two on one bank) and a thread
// loops no more than the packed loader does.

@group(0) @binding(2) var<storage, read> w_oihw: array<f32>;

override B_N_STRIDE: u32;
override B_C_STRIDE: u32;
override B_FLIP: bool;
override B_GROUPS: u32 = 4u * TILE_N / GEMM_THREADS;   // 2 or 4

// (tap, input channel) of K index k.
fn k_tap_channel(k: u32) -> vec2<u32> {
    return vec2<u32>(k % (G_KH * G_KW), k / (G_KH * G_KW));
}

// B[k][n]: zero past K or past the problem's output channels.
fn weight_at(k: u32, n: u32) -> f32 {
    let taps = G_KH * G_KW;
    let tap = k % taps;
    let o = n * B_N_STRIDE + (k / taps) * B_C_STRIDE + select(tap, taps - 1u - tap, B_FLIP);
    let ok = k < taps * G_CIN && n < G_COUT;
    return select(0.0, w_oihw[select(0u, o, ok)], ok);
}

// A thread's share of one K slice of the weights, in registers: group j's 4 rows.
struct WeightSlice { groups: array<vec4<f32>, 4> }

// The thread's groups of the slice starting at K index k0 (co4 unused: the real channel
// count G_COUT bounds the columns).
fn fetch_weights(k0: u32, lid: u32, tile_n: u32, co4: u32) -> WeightSlice {
    var s: WeightSlice;
    for (var j = 0u; j < B_GROUPS; j++) {
        let e = lid + j * GEMM_THREADS;
        let k = k0 + 4u * (e / TILE_N);
        let n = tile_n * TILE_N + e % TILE_N;
        s.groups[j] = vec4<f32>(weight_at(k, n), weight_at(k + 1u, n), weight_at(k + 2u, n),
                                weight_at(k + 3u, n));
    }
    return s;
}

// Writes the thread's share into b_tile ([16][B_QUADS] vec4s of channels).
fn stage_weights(s: WeightSlice, lid: u32) {
    for (var j = 0u; j < B_GROUPS; j++) {
        let e = lid + j * GEMM_THREADS;
        let n = e % TILE_N;
        let i = 4u * (e / TILE_N) * B_QUADS + n / 4u;
        let c = n % 4u;
        let v = s.groups[j];
        b_tile[i][c] = v.x;
        b_tile[i + B_QUADS][c] = v.y;
        b_tile[i + 2u * B_QUADS][c] = v.z;
        b_tile[i + 3u * B_QUADS][c] = v.w;
    }
}

@compute @workgroup_size(GEMM_THREADS)
fn conv2d_forward_gemm_oihw(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                            @builtin(local_invocation_index) lid: u32) {
    gemm_forward(wid, nwg, lid);
}
