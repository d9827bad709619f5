// conv2d/gemm/weights_packed.wgsl — the GEMM forward's weight operand from packed weights:
// entry point conv2d_forward_gemm (conv2d/gemm/forward.wgsl's kernel).
//
// Contract: binding 2: the weights packed by conv2d/pack.wgsl, [kh*kw*cin][co_pad] as vec4
// (forward), or transposed and flipped (input gradient); padding columns zero. K is
// tap-major, k = (ky*kw + kx)*cin + ci (cin of the problem), so when cin is a multiple of 16
// a K slice stays within one tap. A thread fetches channel quad lid % B_QUADS of rows
// lid / B_QUADS + j * B_ROW_STEP (j < B_LOADS): one vec4 load and one workgroup store each.

@group(0) @binding(2) var<storage, read> wt: array<vec4<f32>>;

override B_ROW_STEP: u32 = GEMM_THREADS / B_QUADS;
override B_LOADS: u32 = 16u / B_ROW_STEP;   // 2 or 4

// (tap, input channel) of K index k.
fn k_tap_channel(k: u32) -> vec2<u32> {
    return vec2<u32>(k / G_CIN, k % G_CIN);
}

// A thread's share of one K slice of the weights, in registers.
struct WeightSlice { rows: array<vec4<f32>, 4> }

// The thread's rows of the slice starting at K index k0, zero past K or co_pad.
fn fetch_weights(k0: u32, lid: u32, tile_n: u32, co4: u32) -> WeightSlice {
    var s: WeightSlice;
    let c4 = tile_n * B_QUADS + lid % B_QUADS;
    for (var j = 0u; j < B_LOADS; j++) {
        let k = k0 + lid / B_QUADS + j * B_ROW_STEP;
        let ok = k < G_KH * G_KW * G_CIN && c4 < co4;
        s.rows[j] = select(vec4<f32>(0.0), wt[select(0u, k * co4 + c4, ok)], ok);
    }
    return s;
}

// Writes the thread's share into b_tile ([16][B_QUADS] vec4s of channels).
fn stage_weights(s: WeightSlice, lid: u32) {
    for (var j = 0u; j < B_LOADS; j++) {
        b_tile[(lid / B_QUADS + j * B_ROW_STEP) * B_QUADS + lid % B_QUADS] = s.rows[j];
    }
}

@compute @workgroup_size(GEMM_THREADS)
fn conv2d_forward_gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    gemm_forward(wid, nwg, lid);
}
