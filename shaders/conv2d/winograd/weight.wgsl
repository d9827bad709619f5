// conv2d/winograd/weight.wgsl — the weight gradient of a 3×3 stride-1 convolution as
// Winograd F(3×3, 2×2): the gradient is a correlation of the input with the output
// gradient, and over a 2 × 2 tile of output pixels (origin 2ty, 2tx) its 3 × 3 taps are
//   dW[co, ci] += Gᵀ [ (Bᵀ d B) ⊙ (A h Aᵀ) ] G,
// d the 4 × 4 input patch of the tile (the forward's F(2×2) patch: conv2d_winograd_input
// writes its transform V unchanged), h the tile's 2 × 2 output gradient, A (4 × 2) and
// G (4 × 3) the forward's F(2×2, 3×3) matrices with their roles swapped: 16 products a
// tile for 36 direct ones. Three entry points (V comes from conv2d_winograd_input):
//   conv2d_winograd_grad_transform  D = A h Aᵀ per (tile, quad of output channels)
//   conv2d_winograd_weight_gemm     S[split][a][co][ci] (+)= Σ over the split's tiles D[a]ᵀ V[a]
//   conv2d_winograd_weight_output   dW = Gᵀ (Σ over splits S) G, into the weight gradient
// Layouts (conv2d/winograd/common.wgsl, WINO_M = 2): V texel (t, a * cq_in + g); D texel
// (t, a * cq + q) holds output channels 4q .. 4q+3 of tile t (zero for tiles past
// real_tiles, pixels past the image and channels past cout). S: [splits][16][cout][cin].

// The weight kernels' arguments (binding 14).
struct WinoWeight {
    cin: u32,
    cout: u32,
    splits: u32,    // partial sums S holds
    per_split: u32, // tiles of the part a split sums
    add: u32,       // the GEMM adds to S (every part of the batch after the first)
    accumulate: u32, // the output transform adds to the weight gradient
    w_offset: u32,  // the weight gradient's first element in its buffer
    count: u32,     // threads doing work
    oh: u32,        // the output gradient's image size
    ow: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(14) var<uniform> ww: WinoWeight;
@group(0) @binding(6) var g_staged: texture_2d<f32>;
@group(0) @binding(11) var d_out: texture_storage_2d<rgba32float, write>;
@group(0) @binding(12) var v_tex: texture_2d<f32>;
@group(0) @binding(13) var d_tex: texture_2d<f32>;
@group(0) @binding(3) var<storage, read_write> sums: array<f32>;
@group(0) @binding(4) var<storage, read> sums_in: array<f32>;
@group(0) @binding(5) var<storage, read_write> grad_w: array<f32>;

// A h for a column h = (h0, h1) of the tile: the 4 values of F(2×2, 3×3)'s A times it.
fn a_col(h0: vec4<f32>, h1: vec4<f32>) -> array<vec4<f32>, 4> {
    return array<vec4<f32>, 4>(h0, h0 + h1, h0 - h1, -h1);
}

// Output-gradient texel of output channels 4q .. 4q+3 at (oy, ox) of image n of the part,
// zero outside the image (conv2d/texture/stage.wgsl's plain staging: rows = OH a plane).
fn grad_at(n: u32, q: u32, oy: u32, ox: u32, cq: u32, oh: u32, ow: u32) -> vec4<f32> {
    if oy >= oh || ox >= ow { return vec4<f32>(0.0); }
    return textureLoad(g_staged, vec2<u32>(ox, (n * cq + q) * oh + oy), 0);
}

// Contract: binding 6: the part's output gradient staged plain (OH rows a plane, quads of
// channels); 11: D. count = tiles * ceil(cout / 4) threads.
@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_winograd_grad_transform(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                  @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= ww.count { return; }
    let cq = (ww.cout + 3u) / 4u;
    let q = i % cq;
    let t = i / cq;
    let dq = wp.cout_pad / 4u;
    if t >= wp.real_tiles {
        for (var a = 0u; a < 16u; a++) { textureStore(d_out, vec2<u32>(t, a * dq + q), vec4<f32>(0.0)); }
        return;
    }
    let pos = tile_pos(t);
    let n = pos.x - wp.n0;
    let oy = 2u * pos.y;
    let ox = 2u * pos.z;
    let oh = ww.oh;
    let ow = ww.ow;
    // A h Aᵀ: A down each column of the 2 × 2 tile, then across each resulting row.
    let c0 = a_col(grad_at(n, q, oy, ox, cq, oh, ow), grad_at(n, q, oy + 1u, ox, cq, oh, ow));
    let c1 = a_col(grad_at(n, q, oy, ox + 1u, cq, oh, ow), grad_at(n, q, oy + 1u, ox + 1u, cq, oh, ow));
    for (var r = 0u; r < 4u; r++) {
        let row = a_col(c0[r], c1[r]);
        for (var c = 0u; c < 4u; c++) {
            textureStore(d_out, vec2<u32>(t, (r * 4u + c) * dq + q), row[c]);
        }
    }
}

// Stores (or adds) output channel co's partial sums of input channels ci0 .. ci0+3 at
// position a of split s; channels past cout or cin are skipped.
fn store_sums4(s: u32, a: u32, co: u32, ci0: u32, v: vec4<f32>) {
    if co >= ww.cout { return; }
    let base = ((s * 16u + a) * ww.cout + co) * ww.cin;
    for (var k = 0u; k < 4u; k++) {
        let ci = ci0 + k;
        if ci < ww.cin {
            var sum = v[k];
            if ww.add != 0u { sum += sums[base + ci]; }
            sums[base + ci] = sum;
        }
    }
}

// Contract: bindings 12 (V) and 13 (D) of the part; 3: S. One thread per (input-channel
// block of 8, output-channel block of 16, position a, split), the ci block fastest: a 16 × 8
// register block, per tile 2 texels of V and 4 of D for 128 FMAs. count = that product.
@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_winograd_weight_gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                               @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= ww.count { return; }
    let blocks_ci = (ww.cin + 7u) / 8u;
    let blocks_co = (ww.cout + 15u) / 16u;
    let cib = i % blocks_ci;
    let cob = (i / blocks_ci) % blocks_co;
    let a = (i / (blocks_ci * blocks_co)) % 16u;
    let s = i / (blocks_ci * blocks_co * 16u);
    let dq = wp.cout_pad / 4u;
    // The block's quads (past the last: the last again; those lanes are never stored).
    let va = a * wp.cq_in + min(2u * cib, wp.cq_in - 1u);
    let vb = a * wp.cq_in + min(2u * cib + 1u, wp.cq_in - 1u);
    let cq = (ww.cout + 3u) / 4u;   // quads the grad transform wrote
    let d0 = a * dq + min(4u * cob, cq - 1u);
    let d1 = a * dq + min(4u * cob + 1u, cq - 1u);
    let d2 = a * dq + min(4u * cob + 2u, cq - 1u);
    let d3 = a * dq + min(4u * cob + 3u, cq - 1u);
    var lo: array<vec4<f32>, 16>;   // lo[2*j + h]: co 16*cob + j, ci 8*cib + 4*h .. +3
    var hi: array<vec4<f32>, 16>;   // the same for co + 8
    let t1 = min((s + 1u) * ww.per_split, wp.real_tiles);
    for (var t = s * ww.per_split; t < t1; t++) {
        let xa = textureLoad(v_tex, vec2<u32>(t, va), 0);
        let xb = textureLoad(v_tex, vec2<u32>(t, vb), 0);
        let g0 = textureLoad(d_tex, vec2<u32>(t, d0), 0);
        let g1 = textureLoad(d_tex, vec2<u32>(t, d1), 0);
        let g2 = textureLoad(d_tex, vec2<u32>(t, d2), 0);
        let g3 = textureLoad(d_tex, vec2<u32>(t, d3), 0);
        outer_8x8(&lo, g0, g1, xa, xb);
        outer_8x8(&hi, g2, g3, xa, xb);
    }
    let co = 16u * cob;
    let ci = 8u * cib;
    store_sums4(s, a, co, ci, lo[0]);        store_sums4(s, a, co, ci + 4u, lo[1]);
    store_sums4(s, a, co + 1u, ci, lo[2]);   store_sums4(s, a, co + 1u, ci + 4u, lo[3]);
    store_sums4(s, a, co + 2u, ci, lo[4]);   store_sums4(s, a, co + 2u, ci + 4u, lo[5]);
    store_sums4(s, a, co + 3u, ci, lo[6]);   store_sums4(s, a, co + 3u, ci + 4u, lo[7]);
    store_sums4(s, a, co + 4u, ci, lo[8]);   store_sums4(s, a, co + 4u, ci + 4u, lo[9]);
    store_sums4(s, a, co + 5u, ci, lo[10]);  store_sums4(s, a, co + 5u, ci + 4u, lo[11]);
    store_sums4(s, a, co + 6u, ci, lo[12]);  store_sums4(s, a, co + 6u, ci + 4u, lo[13]);
    store_sums4(s, a, co + 7u, ci, lo[14]);  store_sums4(s, a, co + 7u, ci + 4u, lo[15]);
    store_sums4(s, a, co + 8u, ci, hi[0]);   store_sums4(s, a, co + 8u, ci + 4u, hi[1]);
    store_sums4(s, a, co + 9u, ci, hi[2]);   store_sums4(s, a, co + 9u, ci + 4u, hi[3]);
    store_sums4(s, a, co + 10u, ci, hi[4]);  store_sums4(s, a, co + 10u, ci + 4u, hi[5]);
    store_sums4(s, a, co + 11u, ci, hi[6]);  store_sums4(s, a, co + 11u, ci + 4u, hi[7]);
    store_sums4(s, a, co + 12u, ci, hi[8]);  store_sums4(s, a, co + 12u, ci + 4u, hi[9]);
    store_sums4(s, a, co + 13u, ci, hi[10]); store_sums4(s, a, co + 13u, ci + 4u, hi[11]);
    store_sums4(s, a, co + 14u, ci, hi[12]); store_sums4(s, a, co + 14u, ci + 4u, hi[13]);
    store_sums4(s, a, co + 15u, ci, hi[14]); store_sums4(s, a, co + 15u, ci + 4u, hi[15]);
}

// Gᵀ m for a column m of 4 values: the 3 taps (G: F(2×2, 3×3)'s filter transform).
fn gt_col(m0: f32, m1: f32, m2: f32, m3: f32) -> vec3<f32> {
    return vec3<f32>(m0 + 0.5 * (m1 + m2), 0.5 * (m1 - m2), 0.5 * (m1 + m2) + m3);
}

// Contract: binding 4: S (read); 5: the weight gradient, OIHW, from ww.w_offset (=, or +=
// with ww.accumulate). One thread per (co, ci), count = cout * cin; the splits summed in
// order.
@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_winograd_weight_output(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                 @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= ww.count { return; }
    let per_position = ww.cout * ww.cin;
    var m: array<f32, 16>;
    for (var a = 0u; a < 16u; a++) {
        var sum = 0.0;
        for (var s = 0u; s < ww.splits; s++) { sum += sums_in[(s * 16u + a) * per_position + i]; }
        m[a] = sum;
    }
    // Gᵀ M G: Gᵀ down each of M's 4 columns, then across each of the 3 resulting rows.
    let c0 = gt_col(m[0], m[4], m[8], m[12]);
    let c1 = gt_col(m[1], m[5], m[9], m[13]);
    let c2 = gt_col(m[2], m[6], m[10], m[14]);
    let c3 = gt_col(m[3], m[7], m[11], m[15]);
    let base = ww.w_offset + 9u * i;
    for (var ky = 0u; ky < 3u; ky++) {
        let taps = gt_col(c0[ky], c1[ky], c2[ky], c3[ky]);
        for (var kx = 0u; kx < 3u; kx++) {
            var v = taps[kx];
            if ww.accumulate != 0u { v += grad_w[base + 3u * ky + kx]; }
            grad_w[base + 3u * ky + kx] = v;
        }
    }
}
