// conv2d_forward_tiled.wgsl — implicit-GEMM conv2d (groups = 1) tiled in workgroup memory:
// the classic shape GPUs want. A workgroup of 256 threads computes a 64-pixel × 64-channel
// output tile; for each 16-deep slice of the reduction K = kh*kw*cin it stages the input
// slice (gathered im2col-style on the fly, never materialised) and the weight slice in
// workgroup memory, then each thread accumulates a 4-pixel × 4-channel block.
//
// Contract: as conv2d_forward_regblock.wgsl (bindings in conv2d_forward_common.wgsl), so it
// also computes stride-1 input gradients from the transposed flipped weights.
// Workgroups: ceil(N*OH*OW / 64) * ceil(cout / 64), channel tile fastest; `blocks` = co_pad / 8.
//
// Two entry points share the tiles and differ in threads per tile:
//   conv2d_forward_tiled     256 threads, 4 pixels × 4 channels each;
//   conv2d_forward_tiled_8x8  64 threads, 8 pixels × 8 channels each (fewer workgroup-memory
//                            loads per FMA, fewer threads in flight).

const BM: u32 = 64u;   // pixels per tile
const BN: u32 = 64u;   // channels per tile
const BK: u32 = 16u;   // reduction slice


// Bindings 1 and 2 (the others are in conv2d_forward_common.wgsl): the input view and the
// packed weights [kh*kw*cin][co_pad] as vec4 (conv2d_weight_layout.wgsl).
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<vec4<f32>>;

var<workgroup> a_tile: array<f32, 1024>;          // [BK][BM]
var<workgroup> b_tile: array<vec4<f32>, 256>;     // [BK][BN / 4]

@compute @workgroup_size(256)
fn conv2d_forward_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let tiles_n = (p.cout + BN - 1u) / BN;
    let wg = workgroup_index(wid, nwg);
    let m_total = p.n * p.oh * p.ow;
    // Uniform per workgroup: padding workgroups of a 2-D grid leave before any barrier.
    if wg >= p.count { return; }
    let tn = wg % tiles_n;
    let tm = wg / tiles_n;
    let row4 = p.blocks * 2u;             // vec4s per packed weight row
    let k_total = p.kh * p.kw * p.cin;
    let hw = p.h * p.w;
    let relu = p.relu_input != 0u;   // ReLU on load (NaN kept, as in PyTorch)

    // This thread's pixel for loading the input slice (fixed for the whole reduction).
    let m_load = tm * BM + lid % BM;
    let m_ok = m_load < m_total;
    let mm = select(0u, m_load, m_ok);
    let l_ox = mm % p.ow;
    let l_oy = (mm / p.ow) % p.oh;
    let l_n = mm / (p.ow * p.oh);
    let iy0 = i32(l_oy * p.sh) - i32(p.ph);
    let ix0 = i32(l_ox * p.sw) - i32(p.pw);
    let x_n = p.x_off + l_n * p.x_bs;

    let tx = lid % 16u;   // pixels tx + 16*i
    let ty = lid / 16u;   // channels 4*ty .. 4*ty + 3
    var acc: array<vec4<f32>, 4>;

    for (var k0 = 0u; k0 < k_total; k0 += BK) {
        for (var j = 0u; j < 4u; j++) {
            let kk = lid / BM + 4u * j;
            let k = k0 + kk;
            var v = 0.0;
            if m_ok && k < k_total {
                let ci = k % p.cin;
                let tap = k / p.cin;
                let iy = iy0 + i32((tap / p.kw) * p.dh);
                let ix = ix0 + i32((tap % p.kw) * p.dw);
                if iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w) {
                    v = relu_if(x[x_n + ci * hw + u32(iy) * p.w + u32(ix)], relu);
                }
            }
            a_tile[kk * BM + lid % BM] = v;
        }
        {
            let kk = lid / 16u;
            let c4 = tn * 16u + lid % 16u;
            let k = k0 + kk;
            var w = vec4<f32>(0.0);
            if k < k_total && c4 < row4 { w = wt[k * row4 + c4]; }
            b_tile[lid] = w;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let b = b_tile[kk * 16u + ty];
            let a = kk * BM + tx;
            acc[0] = fma(vec4<f32>(a_tile[a]), b, acc[0]);
            acc[1] = fma(vec4<f32>(a_tile[a + 16u]), b, acc[1]);
            acc[2] = fma(vec4<f32>(a_tile[a + 32u]), b, acc[2]);
            acc[3] = fma(vec4<f32>(a_tile[a + 48u]), b, acc[3]);
        }
        workgroupBarrier();
    }

    let m0 = tm * BM + tx;
    let c0 = tn * BN + ty * 4u;
    store_output4_flat(m0, c0, acc[0]);
    store_output4_flat(m0 + 16u, c0, acc[1]);
    store_output4_flat(m0 + 32u, c0, acc[2]);
    store_output4_flat(m0 + 48u, c0, acc[3]);
}

var<workgroup> a_tile8: array<vec4<f32>, 256>;    // [BK][BM / 4]: 4 consecutive pixels a vec4

@compute @workgroup_size(64)
fn conv2d_forward_tiled_8x8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                            @builtin(local_invocation_index) lid: u32) {
    let tiles_n = (p.cout + BN - 1u) / BN;
    let wg = workgroup_index(wid, nwg);
    let m_total = p.n * p.oh * p.ow;
    if wg >= p.count { return; }
    let tn = wg % tiles_n;
    let tm = wg / tiles_n;
    let row4 = p.blocks * 2u;
    let k_total = p.kh * p.kw * p.cin;
    let hw = p.h * p.w;
    let relu = p.relu_input != 0u;   // ReLU on load (NaN kept, as in PyTorch)

    // Loading: this thread gathers pixel lid of the tile for all 16 rows of the slice.
    let m_load = tm * BM + lid;
    let m_ok = m_load < m_total;
    let mm = select(0u, m_load, m_ok);
    let l_ox = mm % p.ow;
    let l_oy = (mm / p.ow) % p.oh;
    let l_n = mm / (p.ow * p.oh);
    let iy0 = i32(l_oy * p.sh) - i32(p.ph);
    let ix0 = i32(l_ox * p.sw) - i32(p.pw);
    let x_n = p.x_off + l_n * p.x_bs;

    let tx = lid % 8u;    // pixels 8*tx .. 8*tx + 7
    let ty = lid / 8u;    // channels 8*ty .. 8*ty + 7
    var acc: array<vec4<f32>, 16>;   // acc[2*q + h]: pixel 8*tx + q, channels 8*ty + 4*h ..

    for (var k0 = 0u; k0 < k_total; k0 += BK) {
        for (var kk = 0u; kk < BK; kk++) {
            let k = k0 + kk;
            var v = 0.0;
            if m_ok && k < k_total {
                let ci = k % p.cin;
                let tap = k / p.cin;
                let iy = iy0 + i32((tap / p.kw) * p.dh);
                let ix = ix0 + i32((tap % p.kw) * p.dw);
                if iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w) {
                    v = relu_if(x[x_n + ci * hw + u32(iy) * p.w + u32(ix)], relu);
                }
            }
            a_tile8[kk * 16u + lid / 4u][lid % 4u] = v;
        }
        for (var j = 0u; j < 4u; j++) {
            let e = lid + 64u * j;
            let kk = e / 16u;
            let c4 = tn * 16u + e % 16u;
            let k = k0 + kk;
            var w = vec4<f32>(0.0);
            if k < k_total && c4 < row4 { w = wt[k * row4 + c4]; }
            b_tile[e] = w;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let a0 = a_tile8[kk * 16u + 2u * tx];
            let a1 = a_tile8[kk * 16u + 2u * tx + 1u];
            let b0 = b_tile[kk * 16u + 2u * ty];
            let b1 = b_tile[kk * 16u + 2u * ty + 1u];
            outer_8x8(&acc, a0, a1, b0, b1);
        }
        workgroupBarrier();
    }

    store_output_8x8(tm * BM + tx * 8u, 8u, tn * BN + ty * 8u, &acc);
}
