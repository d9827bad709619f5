// conv2d/regblock/backward_weight.wgsl — weight gradient of conv2d (groups = 1) as an
// implicit GEMM over the long reduction N*OH*OW, register blocked and split across threads.
//
// Contract (Conv args at binding 0, see conv2d/common.wgsl):
//   conv2d_backward_weight_regblock: bindings 1: x (input view), 2: grad_out (view y),
//     3: partial [splits][cout*cin*kh*kw]. Thread t computes an 8 (co) × 8 (ci) block of
//     one tap (ky, kx) over rows [split*rows_per, (split+1)*rows_per) of the N*OH output rows:
//       partial[split][co, ci, ky, kx] = sum_{rows, ox} grad_out[n, co, oy, ox] * f(x[n, ci, iy, ix])
//     f = ReLU when relu_input = 1. Threads: count = blocks_ci * blocks_co * kh*kw * splits,
//     ci block fastest; `per_split` = output rows a split. Several splits' partial sums are
//     added by conv2d/reduce.wgsl. Bindings and helpers: conv2d/partials.wgsl.
// No workgroup memory and no barriers; splitting the reduction keeps a GPU busy when the
// weight is small and the reduction long (1×1 and stem convs).

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_backward_weight_regblock(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                   @builtin(local_invocation_index) lid: u32) {
    let t = thread_index(wid, nwg, lid);
    if t >= p.count { return; }
    let b = weight_block(t, 8u, 8u);
    let taps = p.kh * p.kw;
    let hw = p.h * p.w;
    let ohw = p.oh * p.ow;
    // Channel offsets of the block, clamped into range (clamped lanes are never stored).
    let cia = channel_offsets(b.cib * 8u, p.cin, hw);
    let cibb = channel_offsets(b.cib * 8u + 4u, p.cin, hw);
    let coa = channel_offsets(b.cob * 8u, p.cout, ohw);
    let cobb = channel_offsets(b.cob * 8u + 4u, p.cout, ohw);
    let relu = p.relu_input != 0u;   // ReLU on load (NaN kept, as in PyTorch)

    // The output columns whose tap kx lands inside the image: ox*sw + kx*dw - pw in [0, W).
    // Computed once, so the inner loop has no bounds branch.
    let shift = i32(b.kx * p.dw) - i32(p.pw);
    let s = i32(p.sw);
    let ox_lo = u32(max(0, (-shift + s - 1) / s));
    let last = i32(p.w) - 1 - shift;   // floor division below needs last >= 0
    let ox_hi = u32(select(0, clamp(last / s + 1, 0, i32(p.ow)), last >= 0));

    var acc: array<vec4<f32>, 16>;   // acc[2*j + h]: co = 8*b.cob + j, ci = 8*b.cib + 4*h .. +3
    for (var r = b.row0; r < b.row1; r++) {
        let n = r / p.oh;
        let oy = r % p.oh;
        let iy = i32(oy * p.sh + b.ky * p.dh) - i32(p.ph);
        if iy < 0 || iy >= i32(p.h) { continue; }
        let xr = p.x_off + n * p.x_bs + u32(iy) * p.w;
        let gr = p.y_off + n * p.y_bs + oy * p.ow;
        for (var ox = ox_lo; ox < ox_hi; ox++) {
            let xo = xr + u32(i32(ox * p.sw) + shift);
            let go = gr + ox;
            let xa = relu_if4(vec4<f32>(x[xo + cia.x], x[xo + cia.y], x[xo + cia.z], x[xo + cia.w]), relu);
            let xb = relu_if4(vec4<f32>(x[xo + cibb.x], x[xo + cibb.y], x[xo + cibb.z], x[xo + cibb.w]), relu);
            let ga = vec4<f32>(grad_out[go + coa.x], grad_out[go + coa.y], grad_out[go + coa.z], grad_out[go + coa.w]);
            let gb = vec4<f32>(grad_out[go + cobb.x], grad_out[go + cobb.y], grad_out[go + cobb.z], grad_out[go + cobb.w]);
            outer_8x8(&acc, ga, gb, xa, xb);
        }
    }
    store_partial_8x8(b.split * p.cout * p.cin * taps, b.cob * 8u, b.cib * 8u, b.tap, &acc);
}
