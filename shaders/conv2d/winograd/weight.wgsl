// conv2d/winograd/weight.wgsl — the weight gradient of a 3×3 stride-1 convolution as
// Winograd F(3×3, m×m), m = WINO_M (2 or 4): the gradient is a correlation of the input with
// the output gradient, and over an m × m tile of output pixels (origin m·ty, m·tx) its
// 3 × 3 taps are
//   dW[co, ci] += Gᵀ [ (Bᵀ d B) ⊙ (A h Aᵀ) ] G,
// d the α × α input patch of the tile (the forward F(m×m)'s patch: conv2d_winograd_input
// writes its transform V unchanged), h the tile's m × m output gradient, A (α × m) and
// G (α × 3) the forward F(m×m, 3×3)'s matrices with their roles swapped: 16 products a
// 2 × 2 tile for 36 direct ones, or 36 a 4 × 4 tile for 144. Five entry points (V comes from conv2d_winograd_input):
//   conv2d_winograd_grad_transform  D = A h Aᵀ per (tile, quad of output channels)
//   conv2d_winograd_weight_gemm     S[split][a][co][ci] (+)= Σ over the split's tiles D[a]ᵀ V[a]
//   conv2d_winograd_weight_output   dW = Gᵀ (Σ over splits S) G, into the weight gradient,
//                                   where all 9 taps of (co, ci) are finite; else flags it
//   conv2d_winograd_weight_direct   for flagged (co, ci) only: the direct sum's partial sums
//                                   over splits of the output rows, into S's memory
//   conv2d_winograd_weight_direct_sum  for flagged (co, ci): the partial sums into dW
// Why the last two: a NaN or Inf in x or the output gradient (or a transform overflowing on
// finite values) spreads through the transforms over every tap of the (co, ci) it meets —
// NaN where PyTorch's direct sum has ±Inf, or where it has finite taps. Those (co, ci) are
// computed again as the direct sum, so the gradient is PyTorch's; only they pay for it.
// Layouts (conv2d/winograd/common.wgsl, WINO_M = 2): V texel (t, a * cq_in + g); D texel
// (t, a * cq + q) holds output channels 4q .. 4q+3 of tile t (zero for tiles past
// real_tiles, pixels past the image and channels past cout). S: [splits][α²][cout][cin].

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
// The direct fallback's: the problem (x and the output gradient as views), x, the output
// gradient, and one flag per (co, ci): 1 where the transformed taps were not all finite.
@group(0) @binding(0) var<uniform> p: Conv;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> flags: array<u32>;

// A h for a column h (m values down the tile): the α values of the forward F(m×m, 3×3)'s
// A (the transpose of its Aᵀ: conv2d/winograd/output.wgsl) times it.
fn a_col(h: array<vec4<f32>, 4>) -> array<vec4<f32>, 6> {
    var r: array<vec4<f32>, 6>;
    if WINO_M == 4u {
        // Points 0, ±3/2, ±2/3 and ∞: row j of A is (1, a_j, a_j², a_j³).
        let even_a = h[0] + 2.25 * h[2];
        let odd_a = 1.5 * h[1] + 3.375 * h[3];
        let even_b = h[0] + (4.0 / 9.0) * h[2];
        let odd_b = (2.0 / 3.0) * h[1] + (8.0 / 27.0) * h[3];
        r[0] = h[0];
        r[1] = even_a + odd_a;
        r[2] = even_a - odd_a;
        r[3] = even_b + odd_b;
        r[4] = even_b - odd_b;
        r[5] = h[3];
    } else {
        r[0] = h[0];
        r[1] = h[0] + h[1];
        r[2] = h[0] - h[1];
        r[3] = -h[1];
    }
    return r;
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
        for (var a = 0u; a < ALPHA2; a++) { textureStore(d_out, vec2<u32>(t, a * dq + q), vec4<f32>(0.0)); }
        return;
    }
    let pos = tile_pos(t);
    let n = pos.x - wp.n0;
    let oy = WINO_M * pos.y;
    let ox = WINO_M * pos.z;
    // A h Aᵀ: A down each column of the m × m tile, then across each resulting row.
    var cols: array<array<vec4<f32>, 6>, 4>;
    for (var c = 0u; c < WINO_M; c++) {
        var h: array<vec4<f32>, 4>;
        for (var r = 0u; r < WINO_M; r++) { h[r] = grad_at(n, q, oy + r, ox + c, cq, ww.oh, ww.ow); }
        cols[c] = a_col(h);
    }
    for (var r = 0u; r < ALPHA; r++) {
        var h: array<vec4<f32>, 4>;
        for (var c = 0u; c < WINO_M; c++) { h[c] = cols[c][r]; }
        let row = a_col(h);
        for (var c = 0u; c < ALPHA; c++) {
            textureStore(d_out, vec2<u32>(t, (r * ALPHA + c) * dq + q), row[c]);
        }
    }
}

// Stores (or adds) output channel co's partial sums of input channels ci0 .. ci0+3 at
// position a of split s; channels past cout or cin are skipped.
fn store_sums4(s: u32, a: u32, co: u32, ci0: u32, v: vec4<f32>) {
    if co >= ww.cout { return; }
    let base = ((s * ALPHA2 + a) * ww.cout + co) * ww.cin;
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
    let a = (i / (blocks_ci * blocks_co)) % ALPHA2;
    let s = i / (blocks_ci * blocks_co * ALPHA2);
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

// Gᵀ m for a column m of α values: the 3 taps (G: the forward F(m×m, 3×3)'s filter
// transform, conv2d/winograd/filter.wgsl).
fn gt_col(m: array<f32, 6>) -> vec3<f32> {
    if WINO_M == 4u {
        let s12 = m[1] + m[2];
        let s34 = m[3] + m[4];
        return vec3<f32>(
            m[0] + (8.0 / 65.0) * s12 - (81.0 / 130.0) * s34,
            (12.0 / 65.0) * (m[1] - m[2]) - (27.0 / 65.0) * (m[3] - m[4]),
            (18.0 / 65.0) * (s12 - s34) + m[5],
        );
    }
    return vec3<f32>(m[0] + 0.5 * (m[1] + m[2]), 0.5 * (m[1] - m[2]), 0.5 * (m[1] + m[2]) + m[3]);
}

// Contract: binding 4: S (read); 5: the weight gradient, OIHW, from ww.w_offset (=, or +=
// with ww.accumulate), written where the taps are finite; 7: the flags, written for every
// (co, ci). One thread per (co, ci), count = cout * cin; the splits summed in order.
@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_winograd_weight_output(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                 @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= ww.count { return; }
    let per_position = ww.cout * ww.cin;
    var m: array<f32, 36>;
    for (var a = 0u; a < ALPHA2; a++) {
        var sum = 0.0;
        for (var s = 0u; s < ww.splits; s++) { sum += sums_in[(s * ALPHA2 + a) * per_position + i]; }
        m[a] = sum;
    }
    // Gᵀ M G: Gᵀ down each of M's α columns, then across each of the 3 resulting rows.
    var cols: array<vec3<f32>, 6>;
    for (var c = 0u; c < ALPHA; c++) {
        var col: array<f32, 6>;
        for (var r = 0u; r < ALPHA; r++) { col[r] = m[r * ALPHA + c]; }
        cols[c] = gt_col(col);
    }
    var rows: array<vec3<f32>, 3>;
    for (var k = 0u; k < 3u; k++) {
        var row: array<f32, 6>;
        for (var c = 0u; c < ALPHA; c++) { row[c] = cols[c][k]; }
        rows[k] = gt_col(row);
    }
    // Else conv2d_winograd_weight_direct computes this (co, ci) again.
    let finite = all(is_finite4(vec4<f32>(rows[0], 0.0))) && all(is_finite4(vec4<f32>(rows[1], 0.0)))
        && all(is_finite4(vec4<f32>(rows[2], 0.0)));
    flags[i] = select(1u, 0u, finite);
    if !finite { return; }
    let base = ww.w_offset + 9u * i;
    for (var ky = 0u; ky < 3u; ky++) {
        for (var kx = 0u; kx < 3u; kx++) {
            var v = rows[ky][kx];
            if ww.accumulate != 0u { v += grad_w[base + 3u * ky + kx]; }
            grad_w[base + 3u * ky + kx] = v;
        }
    }
}

// Whether v indexes one of n rows (or columns).
fn inside(v: i32, n: u32) -> bool {
    return v >= 0 && v < i32(n);
}

// Contract: binding 0: the problem, x and the output gradient as views (x_off/x_bs,
// y_off/y_bs), relu_input, per_split (output rows a split sums); 1: x; 2: the output
// gradient; 7: the flags; 3: the partial sums [split][cout * cin * 9] (S's memory). One
// thread per (split, co, ci), the nine taps in one pass over the split's output pixels;
// threads of unflagged (co, ci) return at once. count = splits * cout * cin. Each tap sums
// as the direct family's (ascending rows, then columns; one fma a term; taps past the
// padded edge skipped, not multiplied by zero), so its NaN and Inf are PyTorch's.
@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_winograd_weight_direct(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                 @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= p.count { return; }
    let pairs = p.cout * p.cin;
    let e = i % pairs;
    if flags[e] == 0u { return; }
    let ci = e % p.cin;
    let co = e / p.cin;
    let row0 = (i / pairs) * p.per_split;
    let row1 = min(row0 + p.per_split, p.n * p.oh);
    let relu = p.relu_input != 0u;
    var t0 = 0.0; var t1 = 0.0; var t2 = 0.0; var t3 = 0.0; var t4 = 0.0;
    var t5 = 0.0; var t6 = 0.0; var t7 = 0.0; var t8 = 0.0;
    for (var r = row0; r < row1; r++) {
        let n = r / p.oh;
        let oy = r % p.oh;
        let iy = i32(oy) - i32(p.ph);
        let rows_ok = vec3<bool>(inside(iy, p.h), inside(iy + 1, p.h), inside(iy + 2, p.h));
        // Rows out of the image are never read: clamp their offsets in range.
        let plane = p.x_off + n * p.x_bs + ci * p.h * p.w;
        let x_rows = vec3<u32>(plane + u32(clamp(iy, 0, i32(p.h) - 1)) * p.w,
                               plane + u32(clamp(iy + 1, 0, i32(p.h) - 1)) * p.w,
                               plane + u32(clamp(iy + 2, 0, i32(p.h) - 1)) * p.w);
        let go_row = p.y_off + n * p.y_bs + (co * p.oh + oy) * p.ow;
        for (var ox = 0u; ox < p.ow; ox++) {
            let g = grad_out[go_row + ox];
            let ix = i32(ox) - i32(p.pw);
            let cols_ok = vec3<bool>(inside(ix, p.w), inside(ix + 1, p.w), inside(ix + 2, p.w));
            let ix0 = u32(clamp(ix, 0, i32(p.w) - 1));
            let ix1 = u32(clamp(ix + 1, 0, i32(p.w) - 1));
            let ix2 = u32(clamp(ix + 2, 0, i32(p.w) - 1));
            if rows_ok[0] && cols_ok[0] { t0 = fma(g, relu_if(x[x_rows[0] + ix0], relu), t0); }
            if rows_ok[0] && cols_ok[1] { t1 = fma(g, relu_if(x[x_rows[0] + ix1], relu), t1); }
            if rows_ok[0] && cols_ok[2] { t2 = fma(g, relu_if(x[x_rows[0] + ix2], relu), t2); }
            if rows_ok[1] && cols_ok[0] { t3 = fma(g, relu_if(x[x_rows[1] + ix0], relu), t3); }
            if rows_ok[1] && cols_ok[1] { t4 = fma(g, relu_if(x[x_rows[1] + ix1], relu), t4); }
            if rows_ok[1] && cols_ok[2] { t5 = fma(g, relu_if(x[x_rows[1] + ix2], relu), t5); }
            if rows_ok[2] && cols_ok[0] { t6 = fma(g, relu_if(x[x_rows[2] + ix0], relu), t6); }
            if rows_ok[2] && cols_ok[1] { t7 = fma(g, relu_if(x[x_rows[2] + ix1], relu), t7); }
            if rows_ok[2] && cols_ok[2] { t8 = fma(g, relu_if(x[x_rows[2] + ix2], relu), t8); }
        }
    }
    let base = i * 9u;
    sums[base] = t0; sums[base + 1u] = t1; sums[base + 2u] = t2;
    sums[base + 3u] = t3; sums[base + 4u] = t4; sums[base + 5u] = t5;
    sums[base + 6u] = t6; sums[base + 7u] = t7; sums[base + 8u] = t8;
}

// Contract: binding 4: the partial sums as conv2d_winograd_weight_direct wrote them; 7: the
// flags; 5: the weight gradient from ww.w_offset (=, or += with ww.accumulate). One thread
// per flagged (co, ci), its nine taps; count = cout * cin, ww.splits partial sums each.
@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_winograd_weight_direct_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                     @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= ww.count { return; }
    if flags[i] == 0u { return; }
    for (var k = 0u; k < 9u; k++) {
        var v = 0.0;
        for (var s = 0u; s < ww.splits; s++) { v += sums_in[(s * ww.count + i) * 9u + k]; }
        let w = ww.w_offset + 9u * i + k;
        if ww.accumulate != 0u { v += grad_w[w]; }
        grad_w[w] = v;
    }
}
