// conv2d_forward_regblock.wgsl — implicit-GEMM conv2d (groups = 1), register blocked:
// each thread computes 8 output pixels along a row × 8 output channels (two vec4s), with no
// workgroup memory and no barriers. Threads are laid out with the channel block fastest, so
// neighbouring lanes share every activation address and read adjacent vec4s of weights —
// what a SIMD-on-CPU adapter (lavapipe) runs best, and a fair shape on GPUs too.
//
// Contract (bindings in conv2d_forward_common.wgsl; ph/pw may be any padding):
//   out[n, co, oy, ox] (=|+=) m * (bias[co] + sum_{ky, kx, ci} f(x[n, ci, iy, ix]) * w[co, ci, ky, kx])
//   f = ReLU when relu_input = 1; m = !(mask[n, co, oy, ox] <= 0) when mask_output = 1 (NaN passes, as in PyTorch), else 1.
//   The same kernel computes a stride-1 input gradient: x = grad_out, packed = the
//   transposed flipped weights, padding d*(k-1) - p, mask = the forward input.
// `count` = N * OH * ceil(OW / 8) * blocks threads, blocks = co_pad / 8.

// Bindings 1 and 2 (the others are in conv2d_forward_common.wgsl): the input view and the
// packed weights [kh*kw*cin][co_pad] as vec4 (conv2d_weight_layout.wgsl).
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<vec4<f32>>;

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
    let relu = p.relu_input != 0u;   // ReLU on load (NaN kept, as in PyTorch)
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    for (var ky = 0u; ky < p.kh; ky++) {
        let iy = i32(oy * p.sh + ky * p.dh) - i32(p.ph);
        for (var kx = 0u; kx < p.kw; kx++) {
            let ix = i32(ox * p.sw + kx * p.dw) - i32(p.pw);
            let ok = iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w);
            var xo = x_n + select(0u, u32(iy) * p.w + u32(ix), ok);
            var wi = ((ky * p.kw + kx) * p.cin) * wt_row + cb * 2u;
            for (var ci = 0u; ci < p.cin; ci++) {
                let v = vec4<f32>(select(0.0, relu_if(x[xo], relu), ok));
                a0 = fma(v, wt[wi], a0);
                a1 = fma(v, wt[wi + 1u], a1);
                wi += wt_row;
                xo += hw;
            }
        }
    }
    if !live { return; }
    store_output8_flat(m, cb * 8u, a0, a1);
}

// conv2d_forward_texture — a register-blocked kernel with both operands read through the
// texture unit: on lavapipe a storage-buffer load is a loop over the SIMD lanes with a
// bounds check per lane, a texel fetch one vectorised gather of four floats. A thread
// computes 16 pixels × 8 channels (two 8 × 8 blocks sharing every weight fetch): each step
// fetches 16 pixels × 4 channels and 4 channels × 8 weights (24 fetches) for 512 FMAs.
// (8 × 8 blocks measured 15% slower, 4 × 8 40% slower: fetches, not the spilled
// accumulators, bound this kernel.)
//   6: x_tex — x staged by texture_pack.wgsl: texel (col, (n*ceil(cin/4) + g)*tex_rows + row)
//      = channels 4g .. 4g+3 of input pixel (row - ph, col - pw), zero outside the image and
//      past cin, ReLU already applied; wide and tall enough that no tap leaves it.
//   7: w_tex — weights staged by conv2d_weight_layout_texture: texel (c, tap*cin4 + ci) =
//      output channels 4c .. 4c+3 of input channel ci, tap (ky, kx); cin4 = cin rounded up
//      to 4, zero past cout and cin.
// Threads: count = N * OH * ceil(OW / 16) * blocks, channel block fastest; everything else
// as conv2d_forward_regblock (relu_input is unused: the staging applied it).
@group(0) @binding(6) var x_tex: texture_2d<f32>;
@group(0) @binding(7) var w_tex: texture_2d<f32>;

@compute @workgroup_size(64)
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
        let row0 = i32(n * groups * p.tex_rows + oy * p.sh + ky * p.dh);
        for (var kx = 0u; kx < p.kw; kx++) {
            let c = i32(ox0 * p.sw + kx * p.dw);
            var row = row0;
            var wr = i32((ky * p.kw + kx) * groups * 4u);
            for (var g = 0u; g < groups; g++) {
                texture_step(&lo, &hi, true, c, s, row, wc, wr);
                row += i32(p.tex_rows);
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

// One reduction step of the texture kernels: input texels (c + q*s, row) for the block's
// pixels q (4 channels each) times weight rows wr .. wr+3 (texels wc, wc+1: 8 output
// channels): pixels 0..7 into lo, and with `both` (a constant at every call) 8..15 into hi.
fn texture_step(lo: ptr<function, array<vec4<f32>, 16>>, hi: ptr<function, array<vec4<f32>, 16>>, both: bool,
                c: i32, s: i32, row: i32, wc: i32, wr: i32) {
    let x0 = textureLoad(x_tex, vec2<i32>(c, row), 0);
    let x1 = textureLoad(x_tex, vec2<i32>(c + s, row), 0);
    let x2 = textureLoad(x_tex, vec2<i32>(c + 2 * s, row), 0);
    let x3 = textureLoad(x_tex, vec2<i32>(c + 3 * s, row), 0);
    let x4 = textureLoad(x_tex, vec2<i32>(c + 4 * s, row), 0);
    let x5 = textureLoad(x_tex, vec2<i32>(c + 5 * s, row), 0);
    let x6 = textureLoad(x_tex, vec2<i32>(c + 6 * s, row), 0);
    let x7 = textureLoad(x_tex, vec2<i32>(c + 7 * s, row), 0);
    var y0 = vec4<f32>(0.0); var y1 = vec4<f32>(0.0); var y2 = vec4<f32>(0.0); var y3 = vec4<f32>(0.0);
    var y4 = vec4<f32>(0.0); var y5 = vec4<f32>(0.0); var y6 = vec4<f32>(0.0); var y7 = vec4<f32>(0.0);
    if both {
        y0 = textureLoad(x_tex, vec2<i32>(c + 8 * s, row), 0);
        y1 = textureLoad(x_tex, vec2<i32>(c + 9 * s, row), 0);
        y2 = textureLoad(x_tex, vec2<i32>(c + 10 * s, row), 0);
        y3 = textureLoad(x_tex, vec2<i32>(c + 11 * s, row), 0);
        y4 = textureLoad(x_tex, vec2<i32>(c + 12 * s, row), 0);
        y5 = textureLoad(x_tex, vec2<i32>(c + 13 * s, row), 0);
        y6 = textureLoad(x_tex, vec2<i32>(c + 14 * s, row), 0);
        y7 = textureLoad(x_tex, vec2<i32>(c + 15 * s, row), 0);
    }
    texture_channel(lo, hi, both, wc, wr, vec4<f32>(x0.x, x1.x, x2.x, x3.x), vec4<f32>(x4.x, x5.x, x6.x, x7.x),
                    vec4<f32>(y0.x, y1.x, y2.x, y3.x), vec4<f32>(y4.x, y5.x, y6.x, y7.x));
    texture_channel(lo, hi, both, wc, wr + 1, vec4<f32>(x0.y, x1.y, x2.y, x3.y), vec4<f32>(x4.y, x5.y, x6.y, x7.y),
                    vec4<f32>(y0.y, y1.y, y2.y, y3.y), vec4<f32>(y4.y, y5.y, y6.y, y7.y));
    texture_channel(lo, hi, both, wc, wr + 2, vec4<f32>(x0.z, x1.z, x2.z, x3.z), vec4<f32>(x4.z, x5.z, x6.z, x7.z),
                    vec4<f32>(y0.z, y1.z, y2.z, y3.z), vec4<f32>(y4.z, y5.z, y6.z, y7.z));
    texture_channel(lo, hi, both, wc, wr + 3, vec4<f32>(x0.w, x1.w, x2.w, x3.w), vec4<f32>(x4.w, x5.w, x6.w, x7.w),
                    vec4<f32>(y0.w, y1.w, y2.w, y3.w), vec4<f32>(y4.w, y5.w, y6.w, y7.w));
}

// One input channel of a texture step: weight row wr (8 output channels) times pixels
// 0..7 (a0, a1) into lo and, with `both`, pixels 8..15 (b0, b1) into hi.
fn texture_channel(lo: ptr<function, array<vec4<f32>, 16>>, hi: ptr<function, array<vec4<f32>, 16>>, both: bool,
                   wc: i32, wr: i32, a0: vec4<f32>, a1: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>) {
    let w0 = textureLoad(w_tex, vec2<i32>(wc, wr), 0);
    let w1 = textureLoad(w_tex, vec2<i32>(wc + 1, wr), 0);
    outer_8x8(lo, a0, a1, w0, w1);
    if both { outer_8x8(hi, b0, b1, w0, w1); }
}

// conv2d_backward_input_texture — the input gradient of a conv of any stride for the
// texture family (stride-1 input gradients run conv2d_forward_texture on the flipped
// kernel). The arguments describe the transposed problem: input = grad_out
// [N, cin, h, w] (= [N, Cout, OH, OW]), output = grad_x [N, cout, oh, ow] (= [N, Cin, H, W]);
// kernel, stride, padding and dilation are the forward conv's.
// The pixels of an output row fall into sw classes by r = (ix + pw) mod sw. Within a class,
// pixels ix = m*sw + r - pw take the same taps (kx*dw ≡ r mod sw) and consecutive m read
// consecutive grad_out columns, so a thread computes 8 of them (m0 .. m0+7) × 8 channels.
//   6: x_tex — grad_out staged with tex_left zero columns before it and after it up to the
//      last block (texture_pack.wgsl), h rows a plane; 7: w_tex — the weights staged
//      transposed and flipped (conv2d_weight_layout_texture, transpose = 1).
// Threads: count = sw * sh * N * ceil(oh / sh) * tex_blocks * blocks (see the body for
// their order).
@compute @workgroup_size(64)
fn conv2d_backward_input_texture(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                 @builtin(local_invocation_index) lid: u32) {
    backward_input_strided(thread_index(wid, nwg, lid), false);
}

// conv2d_backward_input_texture_narrow — the same with 16 pixels × 4 channels a thread, for
// outputs whose channel count wastes most of an 8-channel block (an RGB stem's input
// gradient: 3 channels). tex_blocks then counts 16-pixel blocks; w_tex is read one texel a
// row (texel cb: channels 4*cb .. 4*cb+3).
@compute @workgroup_size(64)
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
    let used = p.tex_blocks * p.blocks;
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
            // Column of pixel m through tap kx: ox = m - (kx*dw - r)/sw, shifted by tex_left.
            let c = i32(m0 + p.tex_left) - i32((kx * p.dw - r) / p.sw);
            let tap_flipped = (p.kh - 1u - ky) * p.kw + (p.kw - 1u - kx);
            var row = row0;
            var wr = i32(tap_flipped * groups * 4u);
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

