// conv2d/regblock/forward.wgsl — implicit-GEMM conv2d (groups = 1), register blocked:
// each thread computes 8 output pixels along a row × 8 output channels (two vec4s), with no
// workgroup memory and no barriers. Threads are laid out with the channel block fastest, so
// neighbouring lanes share every activation address and read adjacent vec4s of weights —
// what a SIMD-on-CPU adapter (lavapipe) runs best, and a fair shape on GPUs too.
//
// Contract (bindings in conv2d/store.wgsl; ph/pw may be any padding):
//   out[n, co, oy, ox] (=|+=) m * (bias[co] + sum_{ky, kx, ci} f(x[n, ci, iy, ix]) * w[co, ci, ky, kx])
//   f = ReLU when relu_input = 1; m = !(mask[n, co, oy, ox] <= 0) when mask_output = 1 (NaN passes, as in PyTorch), else 1.
//   The same kernel computes a stride-1 input gradient: x = grad_out, packed = the
//   transposed flipped weights, padding d*(k-1) - p, mask = the forward input.
// `count` = N * OH * ceil(OW / 8) * blocks threads, blocks = co_pad / 8.

// Bindings 1 and 2 (the others are in conv2d/store.wgsl): the input view and the
// packed weights [kh*kw*cin][co_pad] as vec4 (conv2d/pack.wgsl).
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<vec4<f32>>;

@compute @workgroup_size(WORKGROUP_SIZE)
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
    let relu = p.relu_input != 0u;   // ReLU on load (NaN kept, as in PyTorch)

    var acc: array<vec4<f32>, 16>;     // acc[2*q + h]: pixel ox0+q, channels 8*cb + 4*h .. +3
    for (var ky = 0u; ky < p.kh; ky++) {
        let iy = i32(oy * p.sh + ky * p.dh) - i32(p.ph);
        if iy < 0 || iy >= i32(p.h) { continue; }
        let row = x_n + u32(iy) * p.w;
        for (var kx = 0u; kx < p.kw; kx++) {
            // Padding is decided once per (ky, kx) for the 8 pixels, then reused for every ci.
            // Taps outside the image read offset 0 of the row and are replaced by 0 (selected,
            // not multiplied: an infinity there times 0 would make a NaN that no output owes).
            let s = i32(p.sw);
            let ixa = vec4<i32>(i32(ox0 * p.sw + kx * p.dw) - i32(p.pw)) + vec4<i32>(0, 1, 2, 3) * s;
            let ixb = ixa + vec4<i32>(4 * s);
            let oka = (ixa >= vec4<i32>(0)) & (ixa < vec4<i32>(i32(p.w)));
            let okb = (ixb >= vec4<i32>(0)) & (ixb < vec4<i32>(i32(p.w)));
            let oa = row + vec4<u32>(select(vec4<i32>(0), ixa, oka));
            let ob = row + vec4<u32>(select(vec4<i32>(0), ixb, okb));
            var wi = ((ky * p.kw + kx) * p.cin) * wt_row + cb * 2u;
            var xo = 0u;
            for (var ci = 0u; ci < p.cin; ci++) {
                let xa = select(vec4<f32>(0.0), relu_if4(vec4<f32>(x[oa.x + xo], x[oa.y + xo], x[oa.z + xo], x[oa.w + xo]), relu), oka);
                let xb = select(vec4<f32>(0.0), relu_if4(vec4<f32>(x[ob.x + xo], x[ob.y + xo], x[ob.z + xo], x[ob.w + xo]), relu), okb);
                let w0 = wt[wi];
                let w1 = wt[wi + 1u];
                outer_8x8(&acc, xa, xb, w0, w1);
                wi += wt_row;
                xo += hw;
            }
        }
    }
    // Epilogue (constant accumulator indices only, see store_output4).
    // A block hanging over the row's end has only its first ow - ox0 pixels.
    store_output_8x8((n * p.oh + oy) * p.ow + ox0, min(8u, p.ow - ox0), cb * 8u, &acc);
}
