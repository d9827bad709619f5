// conv2d_backward_weight_tiled.wgsl — weight gradient of conv2d (groups = 1) as a GEMM tiled
// in workgroup memory: grad_w[co, k] = sum_p grad_out[p, co] * X[p, k] with p = (n, oy, ox)
// and k = (ci, ky, kx) in OIHW order, X gathered from the input on the fly. A workgroup of
// 256 threads computes a 64 (co) × 64 (k) tile over one split of the pixels, staging
// 16-pixel slices of both operands in workgroup memory; each thread keeps 4 co × 4 k.
//
// Contract (Conv args at binding 0, see conv2d_common.wgsl):
//   bindings 1: x (input view), 2: grad_out (view y), 3: partial [splits][cout * cin*kh*kw]
//   (summed by conv2d_backward_weight_reduce in conv2d_backward_weight_regblock.wgsl).
//   f = ReLU on loading x when relu_input = 1. `blocks` carries pixels per split,
//   `count` the number of workgroups: tiles_k * tiles_co * splits, k tile fastest.

const BM: u32 = 64u;   // output channels per tile
const BN: u32 = 64u;   // (ci, ky, kx) per tile
const BK: u32 = 16u;   // pixels per slice

@group(0) @binding(0) var<uniform> p: Conv;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> grad_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;

var<workgroup> g_tile: array<f32, 1024>;          // [BK][BM]
var<workgroup> x_tile: array<vec4<f32>, 256>;     // [BK][BN / 4]

@compute @workgroup_size(256)
fn conv2d_backward_weight_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                @builtin(local_invocation_index) lid: u32) {
    let wg = workgroup_index(wid, nwg);
    if wg >= p.count { return; }
    let taps = p.kh * p.kw;
    let k_total = p.cin * taps;
    let tiles_k = (k_total + BN - 1u) / BN;
    let tiles_co = (p.cout + BM - 1u) / BM;
    let tk = wg % tiles_k;
    let tc = (wg / tiles_k) % tiles_co;
    let split = wg / (tiles_k * tiles_co);
    let ohw = p.oh * p.ow;
    let p_total = p.n * ohw;
    let p0 = split * p.blocks;
    let p1 = min(p0 + p.blocks, p_total);
    let hw = p.h * p.w;
    let relu = p.relu_input != 0u;   // ReLU on load (NaN kept, as in PyTorch)

    // Loading: slice row kk = lid % 16 (consecutive threads, consecutive pixels), and four
    // columns lid / 16 + 16*j of each operand.
    let kk_l = lid % BK;
    let col_l = lid / BK;
    // The (ci, ky, kx) of this thread's four X columns, fixed for the whole reduction.
    var xk_off: array<u32, 4>;
    var xk_dy: array<i32, 4>;
    var xk_dx: array<i32, 4>;
    var xk_ok: array<bool, 4>;
    for (var j = 0u; j < 4u; j++) {
        let k = tk * BN + col_l + 16u * j;
        xk_ok[j] = k < k_total;
        let kc = min(k, k_total - 1u);
        let ci = kc / taps;
        let tap = kc % taps;
        xk_off[j] = ci * hw;
        xk_dy[j] = i32((tap / p.kw) * p.dh) - i32(p.ph);
        xk_dx[j] = i32((tap % p.kw) * p.dw) - i32(p.pw);
    }

    let tx = lid % 16u;   // k columns 4*tx .. 4*tx + 3
    let ty = lid / 16u;   // channels ty + 16*i
    var acc: array<vec4<f32>, 4>;

    for (var q0 = p0; q0 < p1; q0 += BK) {
        let q = q0 + kk_l;
        let q_ok = q < p1;
        let qq = select(p0, q, q_ok);
        let ox = qq % p.ow;
        let oy = (qq / p.ow) % p.oh;
        let n = qq / ohw;
        let g_base = p.y_off + n * p.y_bs + oy * p.ow + ox;
        let x_base = p.x_off + n * p.x_bs;
        for (var j = 0u; j < 4u; j++) {
            let co = tc * BM + col_l + 16u * j;
            var g = 0.0;
            if q_ok && co < p.cout { g = grad_out[g_base + co * ohw]; }
            g_tile[kk_l * BM + col_l + 16u * j] = g;
            let iy = i32(oy * p.sh) + xk_dy[j];
            let ix = i32(ox * p.sw) + xk_dx[j];
            var v = 0.0;
            if q_ok && xk_ok[j] && iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w) {
                v = relu_if(x[x_base + xk_off[j] + u32(iy) * p.w + u32(ix)], relu);
            }
            let c = col_l + 16u * j;
            x_tile[kk_l * 16u + c / 4u][c % 4u] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let b = x_tile[kk * 16u + tx];
            let a = kk * BM + ty;
            acc[0] = fma(vec4<f32>(g_tile[a]), b, acc[0]);
            acc[1] = fma(vec4<f32>(g_tile[a + 16u]), b, acc[1]);
            acc[2] = fma(vec4<f32>(g_tile[a + 32u]), b, acc[2]);
            acc[3] = fma(vec4<f32>(g_tile[a + 48u]), b, acc[3]);
        }
        workgroupBarrier();
    }

    // Constant accumulator indices only (see store_output4 in conv2d_forward_common.wgsl).
    let base = split * p.cout * k_total;
    let k0 = tk * BN + tx * 4u;
    let co0 = tc * BM + ty;
    store_partial_row4(base + co0 * k_total, co0, k0, acc[0]);
    store_partial_row4(base + (co0 + 16u) * k_total, co0 + 16u, k0, acc[1]);
    store_partial_row4(base + (co0 + 32u) * k_total, co0 + 32u, k0, acc[2]);
    store_partial_row4(base + (co0 + 48u) * k_total, co0 + 48u, k0, acc[3]);
}

// Stores columns k0 .. k0+3 of partial row `row` (output channel co) from v, skipping
// channels past cout and columns past cin*kh*kw.
fn store_partial_row4(row: u32, co: u32, k0: u32, v: vec4<f32>) {
    if co >= p.cout { return; }
    let k_total = p.cin * p.kh * p.kw;
    for (var j = 0u; j < 4u; j++) {
        if k0 + j >= k_total { return; }
        partial[row + k0 + j] = v[j];
    }
}
