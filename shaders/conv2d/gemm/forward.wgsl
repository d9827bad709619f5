// conv2d/gemm/forward.wgsl — implicit-GEMM conv2d (groups = 1) tiled in workgroup memory:
// the GEMM family's forward, and its stride-1 input gradient (the same kernel on the
// transposed problem). M = N*OH*OW output pixels, N = output channels, K = kh*kw*cin taps ×
// channels, tap-major (k = (ky*kw + kx)*cin + ci), so when cin is a multiple of 16 a K slice
// stays within one tap.
//
// A workgroup of GEMM_THREADS = 256 threads owns a 128-pixel × 128-channel output tile and
// walks K in 16-deep slices: each slice of the input (gathered, zero padding selected, ReLU
// on load) and of the packed weights is staged in workgroup memory, and every thread
// accumulates an 8-pixel × 8-channel block from vec4 reads of it (pixels 4*tm .. +3 and
// 64 + 4*tm .. +3, channels likewise by tn: the two halves keep neighbouring threads on
// neighbouring vec4s). The next slice is fetched into registers while the current one is
// multiplied (double buffering), so global latency hides behind 16 × 64 FMAs a thread.
//
// Contract (Conv args at binding 0; output bindings in conv2d/store.wgsl):
//   out[n, co, oy, ox] (=|+=) m * (bias[co] + sum_{ky, kx, ci} f(x[n, ci, iy, ix]) * w[co, ci, ky, kx])
//   as conv2d/regblock/forward.wgsl. 1: x (input view), 2: the packed weights
//   [kh*kw*cin][co_pad] as vec4 (conv2d/pack.wgsl, co_pad a multiple of 8).
//   count = tiles = ceil(M / 128) * ceil(co_pad / 128) workgroups, channel tile fastest.

override GEMM_THREADS: u32;   // 256: the thread layout below assumes it

@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<vec4<f32>>;

// [16 K rows][32 vec4s]: input pixels (a_tile) and output channels (b_tile) of one slice.
var<workgroup> a_tile: array<vec4<f32>, 512>;
var<workgroup> b_tile: array<vec4<f32>, 512>;

// The staged slice a thread fetches: rows r and r + 8 of its pixel quad and channel quad.
struct Slice { a0: vec4<f32>, a1: vec4<f32>, b0: vec4<f32>, b1: vec4<f32> }

// Where a thread's 4 input pixels start: padded origin (iy0, ix0), image offset, validity.
struct Quad { iy0: vec4<i32>, ix0: vec4<i32>, base: vec4<u32>, live: vec4<bool> }

fn pixel_quad(m0: u32) -> Quad {
    let m = vec4<u32>(m0) + vec4<u32>(0u, 1u, 2u, 3u);
    let total = p.n * p.oh * p.ow;
    let live = m < vec4<u32>(total);
    let mm = min(m, vec4<u32>(total - 1u));
    let ox = mm % p.ow;
    let oy = (mm / p.ow) % p.oh;
    let n = mm / (p.ow * p.oh);
    return Quad(vec4<i32>(oy * p.sh) - i32(p.ph), vec4<i32>(ox * p.sw) - i32(p.pw),
                p.x_off + n * p.x_bs, live);
}

// Row k of the slice for the thread's pixel quad: f(x) at tap k, zero outside the image.
fn gather(q: Quad, k: u32, kk: u32, relu: bool) -> vec4<f32> {
    let tap = k / p.cin;
    let ci = k % p.cin;
    let iy = q.iy0 + vec4<i32>(i32((tap / p.kw) * p.dh));
    let ix = q.ix0 + vec4<i32>(i32((tap % p.kw) * p.dw));
    let inside = q.live & (iy >= vec4<i32>(0)) & (iy < vec4<i32>(i32(p.h)))
        & (ix >= vec4<i32>(0)) & (ix < vec4<i32>(i32(p.w))) & vec4<bool>(k < kk);
    let o = q.base + vec4<u32>(ci * p.h * p.w) + vec4<u32>(select(vec4<i32>(0), iy * i32(p.w) + ix, inside));
    let v = vec4<f32>(x[o.x], x[o.y], x[o.z], x[o.w]);
    return select(vec4<f32>(0.0), relu_if4(v, relu), inside);
}

// Channels 4*c4 .. +3 of packed row k, zero past K or co_pad.
fn weights(k: u32, kk: u32, c4: u32, co4: u32) -> vec4<f32> {
    let ok = k < kk && c4 < co4;
    return select(vec4<f32>(0.0), wt[select(0u, k * co4 + c4, ok)], ok);
}

@compute @workgroup_size(GEMM_THREADS)
fn conv2d_forward_gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let wg = workgroup_index(wid, nwg);
    if wg >= p.count { return; }   // uniform across the workgroup: no barrier is skipped by some
    let co4 = p.blocks * 2u;       // vec4s per packed row (blocks = co_pad / 8)
    let tiles_n = (co4 + 31u) / 32u;
    let tile_n = wg % tiles_n;
    let tile_m = wg / tiles_n;
    let kk = p.kh * p.kw * p.cin;
    let relu = p.relu_input != 0u;
    // Loader roles: pixel quad q and channel quad (both lid % 32), K rows r and r + 8.
    let q = lid % 32u;
    let r = lid / 32u;
    let quad = pixel_quad(tile_m * 128u + 4u * q);
    let c4 = tile_n * 32u + q;
    // Compute roles: pixels 4*tm (+64), channels 4*tn (+64) of the tile.
    let tm = lid % 16u;
    let tn = lid / 16u;

    var acc: array<vec4<f32>, 16>;   // acc[2*j + h]: pixel j of the thread, channel half h
    var s = Slice(gather(quad, r, kk, relu), gather(quad, r + 8u, kk, relu),
                  weights(r, kk, c4, co4), weights(r + 8u, kk, c4, co4));
    let slices = (kk + 15u) / 16u;
    for (var k0 = 0u; k0 < slices * 16u; k0 += 16u) {
        a_tile[r * 32u + q] = s.a0;
        a_tile[(r + 8u) * 32u + q] = s.a1;
        b_tile[r * 32u + q] = s.b0;
        b_tile[(r + 8u) * 32u + q] = s.b1;
        workgroupBarrier();
        // The next slice into registers while this one is multiplied.
        let k1 = k0 + 16u;
        if k1 < kk {
            s = Slice(gather(quad, k1 + r, kk, relu), gather(quad, k1 + r + 8u, kk, relu),
                      weights(k1 + r, kk, c4, co4), weights(k1 + r + 8u, kk, c4, co4));
        }
        for (var i = 0u; i < 16u; i++) {
            outer_8x8(&acc, a_tile[i * 32u + tm], a_tile[i * 32u + 16u + tm],
                      b_tile[i * 32u + tn], b_tile[i * 32u + 16u + tn]);
        }
        workgroupBarrier();
    }
    // Epilogue (constant accumulator indices only).
    let m0 = tile_m * 128u + 4u * tm;
    let c0 = tile_n * 128u + 4u * tn;
    store_output4_flat(m0, c0, acc[0]);              store_output4_flat(m0, c0 + 64u, acc[1]);
    store_output4_flat(m0 + 1u, c0, acc[2]);         store_output4_flat(m0 + 1u, c0 + 64u, acc[3]);
    store_output4_flat(m0 + 2u, c0, acc[4]);         store_output4_flat(m0 + 2u, c0 + 64u, acc[5]);
    store_output4_flat(m0 + 3u, c0, acc[6]);         store_output4_flat(m0 + 3u, c0 + 64u, acc[7]);
    store_output4_flat(m0 + 64u, c0, acc[8]);        store_output4_flat(m0 + 64u, c0 + 64u, acc[9]);
    store_output4_flat(m0 + 65u, c0, acc[10]);       store_output4_flat(m0 + 65u, c0 + 64u, acc[11]);
    store_output4_flat(m0 + 66u, c0, acc[12]);       store_output4_flat(m0 + 66u, c0 + 64u, acc[13]);
    store_output4_flat(m0 + 67u, c0, acc[14]);       store_output4_flat(m0 + 67u, c0 + 64u, acc[15]);
}
