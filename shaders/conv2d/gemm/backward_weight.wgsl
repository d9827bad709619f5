// conv2d/gemm/backward_weight.wgsl — the GEMM family's weight gradient (groups = 1):
// M = cout, N = kh*kw*cin (tap-major: n = (ky*kw + kx)*cin + ci), K = the N*OH*OW output
// pixels, split across workgroups (split-K) into partial sums that conv2d/reduce.wgsl adds.
//
// A workgroup of GEMM_THREADS = 256 threads owns a WG_TILE_CO (co: 64 or 128) × 64 (tap, ci)
// tile of one split and walks its pixels 16 at a time: the slice of grad_out (16 pixels ×
// WG_TILE_CO channels, read along pixels) and of the input (16 pixels × 64 (tap, ci)
// gathers, zero padding selected, ReLU on load) is staged in workgroup memory, and each
// thread accumulates a 4 × 4 block (channels 4*tm; with 128 channels also 64 + 4*tm: an
// 8 × 4 block, each input gather feeding twice the channels) from vec4 reads of it; the
// next slice is fetched into registers meanwhile. The geometry is constant per pipeline
// (conv2d/gemm/geometry.wgsl): the pixel and (tap, ci) decompositions divide by constants.
//
// Contract (Conv args at binding 0; bindings in conv2d/partials.wgsl: 1: x, 2: grad_out,
// 3: partial [splits][cout*cin*kh*kw]):
//   partial[s][co, ci, ky, kx] = sum_{pixels of split s} grad_out[n, co, oy, ox] * f(x[n, ci, iy, ix])
//   f = ReLU when relu_input = 1. Split s covers pixels [s*per_split, (s+1)*per_split) of
//   N*OH*OW (per_split a multiple of 16). count = tiles_co * tiles_n * splits workgroups,
//   the (tap, ci) tile fastest, then the co tile (WG_TILE_CO channels a tile).

override GEMM_THREADS: u32;   // 256: the thread layout below assumes it
override WG_TILE_CO: u32;     // output channels of a tile: 64 or 128

// Quads of channels in a row of g_tile.
const G_QUADS_64: u32 = 16u;
// [16 pixels][WG_TILE_CO / 4 vec4s]: output channels of a slice; [16 pixels][16 vec4s]:
// its (tap, ci) columns.
var<workgroup> g_tile: array<vec4<f32>, 4u * WG_TILE_CO>;
var<workgroup> x_tile: array<vec4<f32>, 256>;

// One pixel of the reduction: its image offset (n), flat index in the plane, and padded
// input origin; `live` when it belongs to the split.
struct Pixel { n: u32, pix: u32, iy0: i32, ix0: i32, live: bool }

fn pixel_at(q: u32, q1: u32) -> Pixel {
    let ohw = G_OH * G_OW;
    let qq = min(q, p.n * ohw - 1u);
    let pix = qq % ohw;
    return Pixel(qq / ohw, pix, i32((pix / G_OW) * G_SH) - i32(G_PH),
                 i32((pix % G_OW) * G_SW) - i32(G_PW), q < q1);
}

// grad_out at pixel px for output channels co0 .. co0+3 (zero past cout or the split).
fn grad_quad(px: Pixel, co0: u32) -> vec4<f32> {
    let ohw = G_OH * G_OW;
    let co = vec4<u32>(co0) + vec4<u32>(0u, 1u, 2u, 3u);
    let ok = vec4<bool>(px.live) & (co < vec4<u32>(G_COUT));
    let o = vec4<u32>(p.y_off + px.n * p.y_bs + px.pix) + min(co, vec4<u32>(G_COUT - 1u)) * ohw;
    return select(vec4<f32>(0.0), vec4<f32>(grad_out[o.x], grad_out[o.y], grad_out[o.z], grad_out[o.w]), ok);
}

// f(x) at pixel px for columns n0 .. n0+3 (tap-major (tap, ci)), zero outside the image.
fn input_quad(px: Pixel, n0: u32, relu: bool) -> vec4<f32> {
    let nn = vec4<u32>(n0) + vec4<u32>(0u, 1u, 2u, 3u);
    let cols = G_KH * G_KW * G_CIN;
    let tap = nn / G_CIN;
    let ci = nn % G_CIN;
    let iy = vec4<i32>(px.iy0) + vec4<i32>((tap / G_KW) * G_DH);
    let ix = vec4<i32>(px.ix0) + vec4<i32>((tap % G_KW) * G_DW);
    let inside = vec4<bool>(px.live) & (nn < vec4<u32>(cols)) & (iy >= vec4<i32>(0))
        & (iy < vec4<i32>(i32(G_H))) & (ix >= vec4<i32>(0)) & (ix < vec4<i32>(i32(G_W)));
    let o = vec4<u32>(p.x_off + px.n * p.x_bs) + min(ci, vec4<u32>(G_CIN - 1u)) * G_H * G_W
        + vec4<u32>(select(vec4<i32>(0), iy * i32(G_W) + ix, inside));
    let v = vec4<f32>(x[o.x], x[o.y], x[o.z], x[o.w]);
    return select(vec4<f32>(0.0), relu_if4(v, relu), inside);
}

@compute @workgroup_size(GEMM_THREADS)
fn conv2d_backward_weight_gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                               @builtin(local_invocation_index) lid: u32) {
    let wg = workgroup_index(wid, nwg);
    if wg >= p.count { return; }   // uniform across the workgroup
    let cols = G_KH * G_KW * G_CIN;
    let tiles_n = (cols + 63u) / 64u;
    let tiles_co = (G_COUT + WG_TILE_CO - 1u) / WG_TILE_CO;
    let tile_n = wg % tiles_n;
    let tile_co = (wg / tiles_n) % tiles_co;
    let split = wg / (tiles_n * tiles_co);
    let q0 = split * p.per_split;
    let q1 = min(q0 + p.per_split, p.n * G_OH * G_OW);
    let relu = p.relu_input != 0u;
    let wide = WG_TILE_CO == 128u;   // a pipeline constant: the compiler drops the other half
    let g_quads = WG_TILE_CO / 4u;
    // Loader roles: pixel row k (lanes along pixels: coalesced reads) and column quad c (and
    // c + 16 of the channels in a 128-wide tile).
    let k = lid % 16u;
    let c = lid / 16u;
    // Compute roles: channels 4*tm (and 64 + 4*tm), columns 4*tn of the tile.
    let tm = lid % 16u;
    let tn = lid / 16u;
    let co_base = tile_co * WG_TILE_CO;

    var acc: array<vec4<f32>, 8>;   // acc[i]: channel 4*tm + i (i >= 4: 64 + 4*tm + i - 4)
    var px = pixel_at(q0 + k, q1);
    var g = grad_quad(px, co_base + 4u * c);
    var g_hi = vec4<f32>(0.0);
    if wide { g_hi = grad_quad(px, co_base + 64u + 4u * c); }
    var xv = input_quad(px, tile_n * 64u + 4u * c, relu);
    for (var s = q0; s < q1; s += 16u) {
        g_tile[k * g_quads + c] = g;
        if wide { g_tile[k * g_quads + G_QUADS_64 + c] = g_hi; }
        x_tile[k * 16u + c] = xv;
        workgroupBarrier();
        if s + 16u < q1 {
            px = pixel_at(s + 16u + k, q1);
            g = grad_quad(px, co_base + 4u * c);
            if wide { g_hi = grad_quad(px, co_base + 64u + 4u * c); }
            xv = input_quad(px, tile_n * 64u + 4u * c, relu);
        }
        for (var i = 0u; i < 16u; i++) {
            let a = g_tile[i * g_quads + tm];
            let b = x_tile[i * 16u + tn];
            acc[0] = fma(vec4<f32>(a.x), b, acc[0]);
            acc[1] = fma(vec4<f32>(a.y), b, acc[1]);
            acc[2] = fma(vec4<f32>(a.z), b, acc[2]);
            acc[3] = fma(vec4<f32>(a.w), b, acc[3]);
            if wide {
                let a_hi = g_tile[i * g_quads + G_QUADS_64 + tm];
                acc[4] = fma(vec4<f32>(a_hi.x), b, acc[4]);
                acc[5] = fma(vec4<f32>(a_hi.y), b, acc[5]);
                acc[6] = fma(vec4<f32>(a_hi.z), b, acc[6]);
                acc[7] = fma(vec4<f32>(a_hi.w), b, acc[7]);
            }
        }
        workgroupBarrier();
    }
    let base = split * G_COUT * cols;
    let co0 = co_base + 4u * tm;
    let n0 = tile_n * 64u + 4u * tn;
    store_columns(base, co0, n0, cols, acc[0]);
    store_columns(base, co0 + 1u, n0, cols, acc[1]);
    store_columns(base, co0 + 2u, n0, cols, acc[2]);
    store_columns(base, co0 + 3u, n0, cols, acc[3]);
    if wide {
        store_columns(base, co0 + 64u, n0, cols, acc[4]);
        store_columns(base, co0 + 65u, n0, cols, acc[5]);
        store_columns(base, co0 + 66u, n0, cols, acc[6]);
        store_columns(base, co0 + 67u, n0, cols, acc[7]);
    }
}

// partial[base + OIHW index of (co, column n0 + j)] = v[j], for columns inside the weight.
fn store_columns(base: u32, co: u32, n0: u32, cols: u32, v: vec4<f32>) {
    if co >= G_COUT { return; }
    let taps = G_KH * G_KW;
    for (var j = 0u; j < 4u; j++) {
        let n = n0 + j;
        if n >= cols { return; }
        partial[base + (co * G_CIN + n % G_CIN) * taps + n / G_CIN] = v[j];
    }
}
