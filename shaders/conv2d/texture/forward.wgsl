// conv2d/texture/forward.wgsl (bindings: conv2d/store.wgsl, conv2d/texture/common.wgsl)
//
// conv2d_forward_texture — a register-blocked kernel with both operands read through the
// texture unit: on lavapipe a storage-buffer load is a loop over the SIMD lanes with a
// bounds check per lane, a texel fetch one vectorised gather of four floats. A thread
// computes 16 pixels × 8 channels (two 8 × 8 blocks sharing every weight fetch): each step
// fetches 16 pixels × 4 channels and 4 channels × 8 weights (24 fetches) for 512 FMAs.
// (8 × 8 blocks measured 15% slower, 4 × 8 40% slower: fetches, not the spilled
// accumulators, bound this kernel.)
//   6: x_tex — x staged by conv2d/texture/stage.wgsl: texel (col, (n*ceil(cin/4) + g)*staged.rows + row)
//      = channels 4g .. 4g+3 of input pixel (row - ph, col - pw), zero outside the image and
//      past cin, ReLU already applied; wide and tall enough that no tap leaves it.
//   7: w_tex — weights staged by conv2d_weight_layout_texture: texel (c, tap*cin4 + ci) =
//      output channels 4c .. 4c+3 of input channel ci, tap (ky, kx); cin4 = cin rounded up
//      to 4, zero past cout and cin. Where x is a part of the input channels, from w_c0 on,
//      its rows are those of channels w_c0 + ci (see conv2d/texture/staged.wgsl).
// Threads: count = N * OH * ceil(OW / 16) * blocks, channel block fastest; everything else
// as conv2d_forward_regblock (relu_input is unused: the staging applied it).
@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_forward_texture(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let t = thread_index(wid, nwg, lid);
    if t >= p.count { return; }
    let cb = t % p.blocks;
    let pb = t / p.blocks;
    let blocks_x = (p.ow + 15u) / 16u;
    let ox0 = (pb % blocks_x) * 16u;
    let oy = (pb / blocks_x) % p.oh;
    let n = pb / (blocks_x * p.oh);
    let groups = (p.cin + 3u) / 4u;
    let s = i32(p.sw);
    let wc = i32(2u * cb);

    var lo: array<vec4<f32>, 16>;   // lo[2*q + h]: pixel ox0+q, channels 8*cb + 4*h .. +3
    var hi: array<vec4<f32>, 16>;   // the same for pixel ox0+8+q
    for (var ky = 0u; ky < p.kh; ky++) {
        let row0 = i32(n * groups * staged.rows + oy * p.sh + ky * p.dh);
        for (var kx = 0u; kx < p.kw; kx++) {
            let c = i32(ox0 * p.sw + kx * p.dw);
            var row = row0;
            var wr = i32((ky * p.kw + kx) * staged.w_groups * 4u + staged.w_c0);
            for (var g = 0u; g < groups; g++) {
                texture_step(&lo, &hi, true, c, s, row, wc, wr);
                row += i32(staged.rows);
                wr += 4;
            }
        }
    }
    let m0 = (n * p.oh + oy) * p.ow + ox0;
    store_output_8x8(m0, min(8u, p.ow - ox0), cb * 8u, &lo);
    if ox0 + 8u < p.ow {
        store_output_8x8(m0 + 8u, min(8u, p.ow - ox0 - 8u), cb * 8u, &hi);
    }
}
