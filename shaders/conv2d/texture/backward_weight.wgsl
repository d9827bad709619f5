// conv2d/texture/backward_weight.wgsl
//
// conv2d_backward_weight_texture — the weight gradient with both operands read through the
// texture unit (see conv2d_forward_texture): a thread owns 16 (co) × 8 (ci) of one tap, and
// per output pixel two fetches of x (8 input channels) and four of grad_out (16 output
// channels) feed 128 FMAs.
//   5: x_tex — x staged as for conv2d_forward_texture (zero padded, staged.rows rows a plane,
//      ReLU applied), so no tap needs a bounds check.
//   6: g_tex — grad_out staged unpadded: texel (ox, (n*ceil(cout/4) + g)*OH + oy).
// Threads: blocks_ci * ceil(cout/16) * kh*kw * splits (ci block fastest); splits and
// partial sums as conv2d_backward_weight_regblock (conv2d/partials.wgsl).
@group(0) @binding(5) var x_tex: texture_2d<f32>;
@group(0) @binding(6) var g_tex: texture_2d<f32>;


@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_backward_weight_texture(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                  @builtin(local_invocation_index) lid: u32) {
    weight_texture(thread_index(wid, nwg, lid), false);
}

// conv2d_backward_weight_texture_narrow — the same with 16 (co) × 4 (ci) a thread, for
// inputs whose channel count wastes most of an 8-channel block (an RGB stem: 3 channels):
// per pixel one fetch of x and four of grad_out feed 64 FMAs.
@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_backward_weight_texture_narrow(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                         @builtin(local_invocation_index) lid: u32) {
    weight_texture(thread_index(wid, nwg, lid), true);
}

// The body of both: `narrow` is a constant at each call.
fn weight_texture(t: u32, narrow: bool) {
    if t >= p.count { return; }
    let b = weight_block(t, 16u, select(8u, 4u, narrow));
    let taps = p.kh * p.kw;
    let gin = (p.cin + 3u) / 4u;
    let gout = (p.cout + 3u) / 4u;
    // The block's 4-channel groups of x and of grad_out (groups past the channel count read
    // the last one again; those lanes are never stored).
    let xga = select(2u * b.cib, b.cib, narrow) * staged.rows;
    let xgb = min(2u * b.cib + 1u, gin - 1u) * staged.rows;
    let gg = vec4<u32>(4u * b.cob) + vec4<u32>(0u, 1u, 2u, 3u);
    let ggo = min(gg, vec4<u32>(gout - 1u)) * p.oh;
    let s = i32(p.sw);

    // Wide: lo[2*j + h] = co 16*cob + j, ci 8*cib + 4*h .. +3; hi the same for co + 8.
    // Narrow: lo[j] = co 16*cob + j, ci 4*cib .. +3.
    var lo: array<vec4<f32>, 16>;
    var hi: array<vec4<f32>, 16>;
    for (var r = b.row0; r < b.row1; r++) {
        let n = r / p.oh;
        let oy = r % p.oh;
        let xr = n * gin * staged.rows + oy * p.sh + b.ky * p.dh;
        let gr = vec4<i32>(vec4<u32>(n * gout * p.oh + oy) + ggo);
        let xra = i32(xr + xga);
        let xrb = i32(xr + xgb);
        var xc = i32(b.kx * p.dw);
        for (var ox = 0; ox < i32(p.ow); ox++) {
            let xa = textureLoad(x_tex, vec2<i32>(xc, xra), 0);
            let g0 = textureLoad(g_tex, vec2<i32>(ox, gr.x), 0);
            let g1 = textureLoad(g_tex, vec2<i32>(ox, gr.y), 0);
            let g2 = textureLoad(g_tex, vec2<i32>(ox, gr.z), 0);
            let g3 = textureLoad(g_tex, vec2<i32>(ox, gr.w), 0);
            if narrow {
                outer_16x4(&lo, g0, g1, g2, g3, xa);
            } else {
                let xb = textureLoad(x_tex, vec2<i32>(xc, xrb), 0);
                outer_8x8(&lo, g0, g1, xa, xb);
                outer_8x8(&hi, g2, g3, xa, xb);
            }
            xc += s;
        }
    }
    let base = b.split * p.cout * p.cin * taps;
    if narrow {
        let co0 = b.cob * 16u;
        let ci0 = b.cib * 4u;
        store_partial4(base, co0, ci0, b.tap, lo[0]);
        store_partial4(base, co0 + 1u, ci0, b.tap, lo[1]);
        store_partial4(base, co0 + 2u, ci0, b.tap, lo[2]);
        store_partial4(base, co0 + 3u, ci0, b.tap, lo[3]);
        store_partial4(base, co0 + 4u, ci0, b.tap, lo[4]);
        store_partial4(base, co0 + 5u, ci0, b.tap, lo[5]);
        store_partial4(base, co0 + 6u, ci0, b.tap, lo[6]);
        store_partial4(base, co0 + 7u, ci0, b.tap, lo[7]);
        store_partial4(base, co0 + 8u, ci0, b.tap, lo[8]);
        store_partial4(base, co0 + 9u, ci0, b.tap, lo[9]);
        store_partial4(base, co0 + 10u, ci0, b.tap, lo[10]);
        store_partial4(base, co0 + 11u, ci0, b.tap, lo[11]);
        store_partial4(base, co0 + 12u, ci0, b.tap, lo[12]);
        store_partial4(base, co0 + 13u, ci0, b.tap, lo[13]);
        store_partial4(base, co0 + 14u, ci0, b.tap, lo[14]);
        store_partial4(base, co0 + 15u, ci0, b.tap, lo[15]);
        return;
    }
    store_partial_8x8(base, b.cob * 16u, b.cib * 8u, b.tap, &lo);
    store_partial_8x8(base, b.cob * 16u + 8u, b.cib * 8u, b.tap, &hi);
}

// acc[4*i + k] += g_i[k] * x: 16 output channels (four vec4s) × 4 input channels.
fn outer_16x4(acc: ptr<function, array<vec4<f32>, 16>>, g0: vec4<f32>, g1: vec4<f32>, g2: vec4<f32>, g3: vec4<f32>,
              x: vec4<f32>) {
    (*acc)[0] = fma(vec4<f32>(g0.x), x, (*acc)[0]);   (*acc)[1] = fma(vec4<f32>(g0.y), x, (*acc)[1]);
    (*acc)[2] = fma(vec4<f32>(g0.z), x, (*acc)[2]);   (*acc)[3] = fma(vec4<f32>(g0.w), x, (*acc)[3]);
    (*acc)[4] = fma(vec4<f32>(g1.x), x, (*acc)[4]);   (*acc)[5] = fma(vec4<f32>(g1.y), x, (*acc)[5]);
    (*acc)[6] = fma(vec4<f32>(g1.z), x, (*acc)[6]);   (*acc)[7] = fma(vec4<f32>(g1.w), x, (*acc)[7]);
    (*acc)[8] = fma(vec4<f32>(g2.x), x, (*acc)[8]);   (*acc)[9] = fma(vec4<f32>(g2.y), x, (*acc)[9]);
    (*acc)[10] = fma(vec4<f32>(g2.z), x, (*acc)[10]); (*acc)[11] = fma(vec4<f32>(g2.w), x, (*acc)[11]);
    (*acc)[12] = fma(vec4<f32>(g3.x), x, (*acc)[12]); (*acc)[13] = fma(vec4<f32>(g3.y), x, (*acc)[13]);
    (*acc)[14] = fma(vec4<f32>(g3.z), x, (*acc)[14]); (*acc)[15] = fma(vec4<f32>(g3.w), x, (*acc)[15]);
}
