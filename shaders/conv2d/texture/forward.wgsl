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
// Threads: count = ceil(N * OH * OW / 16) * blocks, channel block fastest: a thread's 16
// pixels are consecutive in (n, oy, ox) order, across rows and images, so no lane idles
// where a row is not a multiple of 16 wide (a 7-wide row filled 7 of 16 per row block);
// everything else as conv2d_forward_regblock (relu_input is unused: the staging applied it).

// Where flat output pixel m (clamped to the last: lanes past the end compute a copy the
// store leaves out) reads tap (0, 0): its texel column and the row of its image's first
// channel group.
fn texture_origin(m: u32, total: u32, groups: u32) -> vec2<i32> {
    let mc = min(m, total - 1u);
    let ohw = p.oh * p.ow;
    let n = mc / ohw;
    let r = mc % ohw;
    return vec2<i32>(i32((r % p.ow) * p.sw), i32(n * groups * staged.rows + (r / p.ow) * p.sh));
}

// One reduction step: input texels at origins o[q] + d for the 16 pixels (4 channels each)
// times weight rows wr .. wr+3 (texels wc, wc+1: 8 output channels).
fn texture_step_at(lo: ptr<function, array<vec4<f32>, 16>>, hi: ptr<function, array<vec4<f32>, 16>>,
                   o: ptr<function, array<vec2<i32>, 16>>, d: vec2<i32>, wc: i32, wr: i32) {
    let x0 = textureLoad(x_tex, (*o)[0] + d, 0);
    let x1 = textureLoad(x_tex, (*o)[1] + d, 0);
    let x2 = textureLoad(x_tex, (*o)[2] + d, 0);
    let x3 = textureLoad(x_tex, (*o)[3] + d, 0);
    let x4 = textureLoad(x_tex, (*o)[4] + d, 0);
    let x5 = textureLoad(x_tex, (*o)[5] + d, 0);
    let x6 = textureLoad(x_tex, (*o)[6] + d, 0);
    let x7 = textureLoad(x_tex, (*o)[7] + d, 0);
    let y0 = textureLoad(x_tex, (*o)[8] + d, 0);
    let y1 = textureLoad(x_tex, (*o)[9] + d, 0);
    let y2 = textureLoad(x_tex, (*o)[10] + d, 0);
    let y3 = textureLoad(x_tex, (*o)[11] + d, 0);
    let y4 = textureLoad(x_tex, (*o)[12] + d, 0);
    let y5 = textureLoad(x_tex, (*o)[13] + d, 0);
    let y6 = textureLoad(x_tex, (*o)[14] + d, 0);
    let y7 = textureLoad(x_tex, (*o)[15] + d, 0);
    texture_channels(lo, hi, true, wc, wr, x0, x1, x2, x3, x4, x5, x6, x7, y0, y1, y2, y3, y4, y5, y6, y7);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_forward_texture(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let t = thread_index(wid, nwg, lid);
    if t >= p.count { return; }
    let cb = t % p.blocks;
    let m0 = (t / p.blocks) * 16u;
    let total = p.n * p.oh * p.ow;
    let groups = (p.cin + 3u) / 4u;
    let wc = i32(2u * cb);
    // Constant indices only (a dynamic one would keep the array out of registers).
    var o: array<vec2<i32>, 16>;
    o[0] = texture_origin(m0, total, groups);        o[1] = texture_origin(m0 + 1u, total, groups);
    o[2] = texture_origin(m0 + 2u, total, groups);   o[3] = texture_origin(m0 + 3u, total, groups);
    o[4] = texture_origin(m0 + 4u, total, groups);   o[5] = texture_origin(m0 + 5u, total, groups);
    o[6] = texture_origin(m0 + 6u, total, groups);   o[7] = texture_origin(m0 + 7u, total, groups);
    o[8] = texture_origin(m0 + 8u, total, groups);   o[9] = texture_origin(m0 + 9u, total, groups);
    o[10] = texture_origin(m0 + 10u, total, groups); o[11] = texture_origin(m0 + 11u, total, groups);
    o[12] = texture_origin(m0 + 12u, total, groups); o[13] = texture_origin(m0 + 13u, total, groups);
    o[14] = texture_origin(m0 + 14u, total, groups); o[15] = texture_origin(m0 + 15u, total, groups);

    var lo: array<vec4<f32>, 16>;   // lo[2*q + h]: pixel m0+q, channels 8*cb + 4*h .. +3
    var hi: array<vec4<f32>, 16>;   // the same for pixel m0+8+q
    for (var ky = 0u; ky < p.kh; ky++) {
        for (var kx = 0u; kx < p.kw; kx++) {
            var d = vec2<i32>(i32(kx * p.dw), i32(ky * p.dh));
            var wr = i32((ky * p.kw + kx) * staged.w_groups * 4u + staged.w_c0);
            for (var g = 0u; g < groups; g++) {
                texture_step_at(&lo, &hi, &o, d, wc, wr);
                d.y += i32(staged.rows);
                wr += 4;
            }
        }
    }
    store_output_8x8(m0, min(8u, total - m0), cb * 8u, &lo);
    if m0 + 8u < total {
        store_output_8x8(m0 + 8u, min(8u, total - m0 - 8u), cb * 8u, &hi);
    }
}
