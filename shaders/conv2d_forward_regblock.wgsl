// conv2d_forward_regblock.wgsl — implicit-GEMM conv2d (groups = 1), register blocked:
// each thread computes 8 output pixels along a row × 8 output channels (two vec4s), with no
// workgroup memory and no barriers. Threads are laid out with the channel block fastest, so
// neighbouring lanes share every activation address and read adjacent vec4s of weights —
// what a SIMD-on-CPU adapter (lavapipe) runs best, and a fair shape on GPUs too.
//
// Contract (Conv args at binding 0, see conv2d_common.wgsl; ph/pw may be any padding):
//   bindings 1: x (input view), 2: packed weights [kh*kw*cin][co_pad] as vec4
//   (conv2d_weight_layout.wgsl), 3: bias [cout] (unread when has_bias = 0),
//   4: out (output view y), 5: mask view gx (read when mask_output = 1).
//   out[n, co, oy, ox] (=|+=) m * (bias[co] + sum_{ky, kx, ci} f(x[n, ci, iy, ix]) * w[co, ci, ky, kx])
//   f = ReLU when relu_input = 1; m = (mask[n, co, oy, ox] > 0) when mask_output = 1, else 1.
//   The same kernel computes a stride-1 input gradient: x = grad_out, packed = the
//   transposed flipped weights, padding d*(k-1) - p, mask = the forward input.
// `count` = N * OH * ceil(OW / 8) * blocks threads, blocks = co_pad / 8.

@group(0) @binding(0) var<uniform> p: Conv;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> mask: array<f32>;

@compute @workgroup_size(64)
fn conv2d_forward_regblock(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32) {
    let t = thread_index(wid, nwg, lid);
    if t >= p.count { return; }
    let blocks_co = p.blocks;
    let cb = t % blocks_co;
    let pb = t / blocks_co;
    let blocks_x = (p.ow + 7u) / 8u;
    let ox0 = (pb % blocks_x) * 8u;
    let oy = (pb / blocks_x) % p.oh;
    let n = pb / (blocks_x * p.oh);
    let hw = p.h * p.w;
    let x_n = p.x_off + n * p.x_bs;
    let wt_row = blocks_co * 2u;       // vec4s per packed row
    let lo = select(-3.0e38, 0.0, p.relu_input != 0u);

    var acc: array<vec4<f32>, 16>;     // acc[2*q + h]: pixel ox0+q, channels 8*cb + 4*h .. +3
    for (var ky = 0u; ky < p.kh; ky++) {
        let iy = i32(oy * p.sh + ky * p.dh) - i32(p.ph);
        if iy < 0 || iy >= i32(p.h) { continue; }
        let row = x_n + u32(iy) * p.w;
        for (var kx = 0u; kx < p.kw; kx++) {
            // Padding is decided once per (ky, kx) for the 8 pixels, then reused for every ci.
            // Taps outside the image read offset 0 of the row and are multiplied by 0.
            let s = i32(p.sw);
            let ixa = vec4<i32>(i32(ox0 * p.sw + kx * p.dw) - i32(p.pw)) + vec4<i32>(0, 1, 2, 3) * s;
            let ixb = ixa + vec4<i32>(4 * s);
            let oka = (ixa >= vec4<i32>(0)) & (ixa < vec4<i32>(i32(p.w)));
            let okb = (ixb >= vec4<i32>(0)) & (ixb < vec4<i32>(i32(p.w)));
            let oa = row + vec4<u32>(select(vec4<i32>(0), ixa, oka));
            let ob = row + vec4<u32>(select(vec4<i32>(0), ixb, okb));
            let ma = select(vec4<f32>(0.0), vec4<f32>(1.0), oka);
            let mb = select(vec4<f32>(0.0), vec4<f32>(1.0), okb);
            var wi = ((ky * p.kw + kx) * p.cin) * wt_row + cb * 2u;
            var xo = 0u;
            for (var ci = 0u; ci < p.cin; ci++) {
                let xa = max(vec4<f32>(x[oa.x + xo], x[oa.y + xo], x[oa.z + xo], x[oa.w + xo]), vec4<f32>(lo)) * ma;
                let xb = max(vec4<f32>(x[ob.x + xo], x[ob.y + xo], x[ob.z + xo], x[ob.w + xo]), vec4<f32>(lo)) * mb;
                let w0 = wt[wi];
                let w1 = wt[wi + 1u];
                outer_8x8(&acc, xa, xb, w0, w1);
                wi += wt_row;
                xo += hw;
            }
        }
    }
    // Epilogue: bias, mask, accumulate; skip pixels past the row and channels past cout.
    let y_n = p.y_off + n * p.y_bs;
    let m_n = p.gx_off + n * p.gx_bs;
    let ohw = p.oh * p.ow;
    for (var q = 0u; q < 8u; q++) {
        let ox = ox0 + q;
        if ox >= p.ow { break; }
        for (var h = 0u; h < 2u; h++) {
            let v = acc[2u * q + h];
            for (var j = 0u; j < 4u; j++) {
                let co = cb * 8u + h * 4u + j;
                if co >= p.cout { break; }
                let pix = (co * p.oh + oy) * p.ow + ox;
                var r = v[j];
                if p.has_bias != 0u { r += bias[co]; }
                if p.mask_output != 0u && mask[m_n + pix] <= 0.0 { r = 0.0; }
                let o = y_n + pix;
                if p.accumulate != 0u { out[o] += r; } else { out[o] = r; }
            }
        }
    }
}

// conv2d_forward_pixel — the same contract with one output pixel × 8 channels per thread:
// many more threads for the small layers a big GPU would otherwise leave idle. A workgroup
// is 64 consecutive output pixels (count = N*OH*OW) of one 8-channel block (from the
// workgroup index: every lane reads the same weights, one broadcast load each, and
// consecutive lanes read consecutive activations). Workgroups: ceil(count / 64) * blocks.
@compute @workgroup_size(64)
fn conv2d_forward_pixel(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let wg = workgroup_index(wid, nwg);
    let cb = wg % p.blocks;
    let m_raw = (wg / p.blocks) * WORKGROUP_SIZE + lid;
    let live = m_raw < p.count;
    let m = min(m_raw, p.count - 1u);
    let ox = m % p.ow;
    let oy = (m / p.ow) % p.oh;
    let n = m / (p.ow * p.oh);
    let hw = p.h * p.w;
    let x_n = p.x_off + n * p.x_bs;
    let wt_row = p.blocks * 2u;
    let lo = select(-3.0e38, 0.0, p.relu_input != 0u);
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    for (var ky = 0u; ky < p.kh; ky++) {
        let iy = i32(oy * p.sh + ky * p.dh) - i32(p.ph);
        for (var kx = 0u; kx < p.kw; kx++) {
            let ix = i32(ox * p.sw + kx * p.dw) - i32(p.pw);
            let ok = iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w);
            let mk = select(0.0, 1.0, ok);
            var xo = x_n + select(0u, u32(iy) * p.w + u32(ix), ok);
            var wi = ((ky * p.kw + kx) * p.cin) * wt_row + cb * 2u;
            for (var ci = 0u; ci < p.cin; ci++) {
                let v = vec4<f32>(max(x[xo], lo) * mk);
                a0 = fma(v, wt[wi], a0);
                a1 = fma(v, wt[wi + 1u], a1);
                wi += wt_row;
                xo += hw;
            }
        }
    }
    if !live { return; }
    let pix0 = oy * p.ow + ox;
    for (var j = 0u; j < 8u; j++) {
        let co = cb * 8u + j;
        if co >= p.cout { break; }
        let pix = co * p.oh * p.ow + pix0;
        var r = select(a1[(j + 4u) % 4u], a0[j % 4u], j < 4u);
        if p.has_bias != 0u { r += bias[co]; }
        if p.mask_output != 0u && mask[p.gx_off + n * p.gx_bs + pix] <= 0.0 { r = 0.0; }
        let o = p.y_off + n * p.y_bs + pix;
        if p.accumulate != 0u { out[o] += r; } else { out[o] = r; }
    }
}
