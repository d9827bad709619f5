// conv2d/texture/backward_input.wgsl (bindings: conv2d/store.wgsl, conv2d/texture/common.wgsl)
//
// conv2d_backward_input_texture — the input gradient of a conv of any stride for the
// texture family (stride-1 input gradients run conv2d_forward_texture on the flipped
// kernel). The arguments describe the transposed problem: input = grad_out
// [N, cin, h, w] (= [N, Cout, OH, OW]), output = grad_x [N, cout, oh, ow] (= [N, Cin, H, W]);
// kernel, stride, padding and dilation are the forward conv's.
// The pixels of an output row fall into sw classes by r = (ix + pw) mod sw. Within a class,
// pixels ix = m*sw + r - pw take the same taps (kx*dw ≡ r mod sw) and consecutive m read
// consecutive grad_out columns, so a thread computes 8 of them (m0 .. m0+7) × 8 channels.
//   6: x_tex — grad_out staged with staged.left zero columns before it and after it up to the
//      last block (conv2d/texture/stage.wgsl), h rows a plane; 7: w_tex — the weights staged
//      transposed and flipped (conv2d_weight_layout_texture, transpose = 1).
// Threads: count = sw * sh * N * ceil(oh / sh) * staged.blocks * blocks (see the body for
// their order).
@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_backward_input_texture(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                 @builtin(local_invocation_index) lid: u32) {
    backward_input_strided(thread_index(wid, nwg, lid), false);
}

// conv2d_backward_input_texture_narrow — the same with 16 pixels × 4 channels a thread, for
// outputs whose channel count wastes most of an 8-channel block (an RGB stem's input
// gradient: 3 channels). staged.blocks then counts 16-pixel blocks; w_tex is read one texel a
// row (texel cb: channels 4*cb .. 4*cb+3).
@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_backward_input_texture_narrow(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                        @builtin(local_invocation_index) lid: u32) {
    backward_input_strided(thread_index(wid, nwg, lid), true);
}

// The body of both: `narrow` is a constant at each call.
fn backward_input_strided(t: u32, narrow: bool) {
    if t >= p.count { return; }
    // Threads are ordered so that neighbours (the SIMD lanes of a CPU adapter) share the
    // column class r and the row class iy % sh, which decide the taps (lanes that took
    // different taps would diverge): those two vary slowest, then image and row / sh,
    // then pixel block and channel block.
    let used = staged.blocks * p.blocks;
    let local = t % used;
    let cb = local % p.blocks;
    let m0 = (local / p.blocks) * select(8u, 16u, narrow);
    let rows_hi = (p.oh + p.sh - 1u) / p.sh;
    var rest = t / used;
    let iy_hi = rest % rows_hi;
    rest /= rows_hi;
    let n = rest % p.n;
    rest /= p.n;
    let iy = iy_hi * p.sh + rest % p.sh;
    let r = rest / p.sh;
    if iy >= p.oh { return; }
    let groups = (p.cin + 3u) / 4u;
    let wc = i32(select(2u * cb, cb, narrow));

    // Wide: acc[2*q + h] = pixel m0+q of class r, channels 8*cb + 4*h ..; narrow: acc[q] =
    // pixel m0+q, channels 4*cb ...
    var acc: array<vec4<f32>, 16>;
    // texture_step's second block, never touched here (the same array twice would alias).
    var unused: array<vec4<f32>, 16>;
    for (var ky = 0u; ky < p.kh; ky++) {
        // Rows: output row oy reaches input row iy through tap ky if oy*sh = iy + ph - ky*dh.
        let num = i32(iy + p.ph) - i32(ky * p.dh);
        if num < 0 || num % i32(p.sh) != 0 { continue; }
        let oy = u32(num) / p.sh;
        if oy >= p.h { continue; }
        let row0 = i32(n * groups * p.h + oy);
        for (var kx = 0u; kx < p.kw; kx++) {
            if (kx * p.dw) % p.sw != r { continue; }
            // Column of pixel m through tap kx: ox = m - (kx*dw - r)/sw, shifted by staged.left.
            let c = i32(m0 + staged.left) - i32((kx * p.dw - r) / p.sw);
            let tap_flipped = (p.kh - 1u - ky) * p.kw + (p.kw - 1u - kx);
            var row = row0;
            var wr = i32(tap_flipped * staged.w_groups * 4u + staged.w_c0);
            for (var g = 0u; g < groups; g++) {
                if narrow {
                    texture_step_narrow(&acc, c, row, wc, wr);
                } else {
                    texture_step(&acc, &unused, false, c, 1, row, wc, wr);
                }
                row += i32(p.h);
                wr += 4;
            }
        }
    }
    if narrow {
        let c0 = cb * 4u;
        store_class_pixel4(n, iy, m0, r, c0, acc[0]);
        store_class_pixel4(n, iy, m0 + 1u, r, c0, acc[1]);
        store_class_pixel4(n, iy, m0 + 2u, r, c0, acc[2]);
        store_class_pixel4(n, iy, m0 + 3u, r, c0, acc[3]);
        store_class_pixel4(n, iy, m0 + 4u, r, c0, acc[4]);
        store_class_pixel4(n, iy, m0 + 5u, r, c0, acc[5]);
        store_class_pixel4(n, iy, m0 + 6u, r, c0, acc[6]);
        store_class_pixel4(n, iy, m0 + 7u, r, c0, acc[7]);
        store_class_pixel4(n, iy, m0 + 8u, r, c0, acc[8]);
        store_class_pixel4(n, iy, m0 + 9u, r, c0, acc[9]);
        store_class_pixel4(n, iy, m0 + 10u, r, c0, acc[10]);
        store_class_pixel4(n, iy, m0 + 11u, r, c0, acc[11]);
        store_class_pixel4(n, iy, m0 + 12u, r, c0, acc[12]);
        store_class_pixel4(n, iy, m0 + 13u, r, c0, acc[13]);
        store_class_pixel4(n, iy, m0 + 14u, r, c0, acc[14]);
        store_class_pixel4(n, iy, m0 + 15u, r, c0, acc[15]);
        return;
    }
    let c0 = cb * 8u;
    store_class_pixel(n, iy, m0, r, c0, acc[0], acc[1]);
    store_class_pixel(n, iy, m0 + 1u, r, c0, acc[2], acc[3]);
    store_class_pixel(n, iy, m0 + 2u, r, c0, acc[4], acc[5]);
    store_class_pixel(n, iy, m0 + 3u, r, c0, acc[6], acc[7]);
    store_class_pixel(n, iy, m0 + 4u, r, c0, acc[8], acc[9]);
    store_class_pixel(n, iy, m0 + 5u, r, c0, acc[10], acc[11]);
    store_class_pixel(n, iy, m0 + 6u, r, c0, acc[12], acc[13]);
    store_class_pixel(n, iy, m0 + 7u, r, c0, acc[14], acc[15]);
}

// A narrow step: input texels (c + q, row) for 16 pixels q (4 channels each) times weight
// rows wr .. wr+3 (texel wc: 4 output channels), acc[q] += sum_j x_q[j] * w_j.
fn texture_step_narrow(acc: ptr<function, array<vec4<f32>, 16>>, c: i32, row: i32, wc: i32, wr: i32) {
    let w0 = textureLoad(w_tex, vec2<i32>(wc, wr), 0);
    let w1 = textureLoad(w_tex, vec2<i32>(wc, wr + 1), 0);
    let w2 = textureLoad(w_tex, vec2<i32>(wc, wr + 2), 0);
    let w3 = textureLoad(w_tex, vec2<i32>(wc, wr + 3), 0);
    (*acc)[0] = mac4((*acc)[0], textureLoad(x_tex, vec2<i32>(c, row), 0), w0, w1, w2, w3);
    (*acc)[1] = mac4((*acc)[1], textureLoad(x_tex, vec2<i32>(c + 1, row), 0), w0, w1, w2, w3);
    (*acc)[2] = mac4((*acc)[2], textureLoad(x_tex, vec2<i32>(c + 2, row), 0), w0, w1, w2, w3);
    (*acc)[3] = mac4((*acc)[3], textureLoad(x_tex, vec2<i32>(c + 3, row), 0), w0, w1, w2, w3);
    (*acc)[4] = mac4((*acc)[4], textureLoad(x_tex, vec2<i32>(c + 4, row), 0), w0, w1, w2, w3);
    (*acc)[5] = mac4((*acc)[5], textureLoad(x_tex, vec2<i32>(c + 5, row), 0), w0, w1, w2, w3);
    (*acc)[6] = mac4((*acc)[6], textureLoad(x_tex, vec2<i32>(c + 6, row), 0), w0, w1, w2, w3);
    (*acc)[7] = mac4((*acc)[7], textureLoad(x_tex, vec2<i32>(c + 7, row), 0), w0, w1, w2, w3);
    (*acc)[8] = mac4((*acc)[8], textureLoad(x_tex, vec2<i32>(c + 8, row), 0), w0, w1, w2, w3);
    (*acc)[9] = mac4((*acc)[9], textureLoad(x_tex, vec2<i32>(c + 9, row), 0), w0, w1, w2, w3);
    (*acc)[10] = mac4((*acc)[10], textureLoad(x_tex, vec2<i32>(c + 10, row), 0), w0, w1, w2, w3);
    (*acc)[11] = mac4((*acc)[11], textureLoad(x_tex, vec2<i32>(c + 11, row), 0), w0, w1, w2, w3);
    (*acc)[12] = mac4((*acc)[12], textureLoad(x_tex, vec2<i32>(c + 12, row), 0), w0, w1, w2, w3);
    (*acc)[13] = mac4((*acc)[13], textureLoad(x_tex, vec2<i32>(c + 13, row), 0), w0, w1, w2, w3);
    (*acc)[14] = mac4((*acc)[14], textureLoad(x_tex, vec2<i32>(c + 14, row), 0), w0, w1, w2, w3);
    (*acc)[15] = mac4((*acc)[15], textureLoad(x_tex, vec2<i32>(c + 15, row), 0), w0, w1, w2, w3);
}

// a + x.x*w0 + x.y*w1 + x.z*w2 + x.w*w3.
fn mac4(a: vec4<f32>, x: vec4<f32>, w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>) -> vec4<f32> {
    return fma(vec4<f32>(x.w), w3, fma(vec4<f32>(x.z), w2, fma(vec4<f32>(x.y), w1, fma(vec4<f32>(x.x), w0, a))));
}

// Stores channels c0 .. c0+7 of pixel m of stride class r in row iy, if inside the row.
fn store_class_pixel(n: u32, iy: u32, m: u32, r: u32, c0: u32, v0: vec4<f32>, v1: vec4<f32>) {
    store_class_pixel4(n, iy, m, r, c0, v0);
    store_class_pixel4(n, iy, m, r, c0 + 4u, v1);
}

// Stores channels c0 .. c0+3 of pixel m of stride class r in row iy, if inside the row.
fn store_class_pixel4(n: u32, iy: u32, m: u32, r: u32, c0: u32, v: vec4<f32>) {
    let ix = i32(m * p.sw + r) - i32(p.pw);
    if ix < 0 || ix >= i32(p.ow) { return; }
    store_output4(n, iy, u32(ix), c0, v);
}
