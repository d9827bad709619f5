// conv2d/pixel/backward_weight.wgsl
//
// conv2d_backward_weight_pixel — the same partial sums with the reduction spread over lanes:
// a workgroup owns one tap, an 8 (co) × 8 (ci) block and one split of the pixels; its 64
// lanes take every 64th pixel of the split (consecutive lanes, consecutive pixels: every
// load coalesces), each keeping its own 8 × 8 block, and the lanes' blocks are summed in
// workgroup memory at the end. Many threads and no barrier in the loop: the shape a big GPU
// wants for the small, long-reduction weight gradients of these layers.
// Workgroups (count): blocks_ci * blocks_co * kh*kw * splits, ci block fastest;
// `per_split` = pixels a split. Bindings and helpers: conv2d/partials.wgsl.
var<workgroup> lanes: array<vec4<f32>, WORKGROUP_SIZE * 16u>;   // [lanes][16 accumulators]

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_backward_weight_pixel(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                @builtin(local_invocation_index) lid: u32) {
    let wg = workgroup_index(wid, nwg);
    if wg >= p.count { return; }
    let b = weight_block(wg, 8u, 8u);
    let taps = p.kh * p.kw;
    let cib = b.cib;
    let cob = b.cob;
    let tap = b.tap;
    let ky = b.ky;
    let kx = b.kx;
    let split = b.split;
    let hw = p.h * p.w;
    let ohw = p.oh * p.ow;
    let q0 = split * p.per_split;
    let q1 = min(q0 + p.per_split, p.n * ohw);
    let cia = channel_offsets(cib * 8u, p.cin, hw);
    let cibb = channel_offsets(cib * 8u + 4u, p.cin, hw);
    let coa = channel_offsets(cob * 8u, p.cout, ohw);
    let cobb = channel_offsets(cob * 8u + 4u, p.cout, ohw);
    let relu = p.relu_input != 0u;   // ReLU on load (NaN kept, as in PyTorch)

    var acc: array<vec4<f32>, 16>;   // acc[2*j + h]: co = 8*cob + j, ci = 8*cib + 4*h .. +3
    for (var q = q0 + lid; q < q1; q += WORKGROUP_SIZE) {
        let ox = q % p.ow;
        let oy = (q / p.ow) % p.oh;
        let n = q / ohw;
        let iy = i32(oy * p.sh + ky * p.dh) - i32(p.ph);
        let ix = i32(ox * p.sw + kx * p.dw) - i32(p.pw);
        let ok = iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w);
        let xo = p.x_off + n * p.x_bs + select(0u, u32(iy) * p.w + u32(ix), ok);
        let go = p.y_off + n * p.y_bs + oy * p.ow + ox;
        let xa = select(vec4<f32>(0.0), relu_if4(vec4<f32>(x[xo + cia.x], x[xo + cia.y], x[xo + cia.z], x[xo + cia.w]), relu), ok);
        let xb = select(vec4<f32>(0.0), relu_if4(vec4<f32>(x[xo + cibb.x], x[xo + cibb.y], x[xo + cibb.z], x[xo + cibb.w]), relu), ok);
        let ga = vec4<f32>(grad_out[go + coa.x], grad_out[go + coa.y], grad_out[go + coa.z], grad_out[go + coa.w]);
        let gb = vec4<f32>(grad_out[go + cobb.x], grad_out[go + cobb.y], grad_out[go + cobb.z], grad_out[go + cobb.w]);
        outer_8x8(&acc, ga, gb, xa, xb);
    }
    let l = lid * 16u;
    lanes[l] = acc[0];        lanes[l + 1u] = acc[1];   lanes[l + 2u] = acc[2];   lanes[l + 3u] = acc[3];
    lanes[l + 4u] = acc[4];   lanes[l + 5u] = acc[5];   lanes[l + 6u] = acc[6];   lanes[l + 7u] = acc[7];
    lanes[l + 8u] = acc[8];   lanes[l + 9u] = acc[9];   lanes[l + 10u] = acc[10]; lanes[l + 11u] = acc[11];
    lanes[l + 12u] = acc[12]; lanes[l + 13u] = acc[13]; lanes[l + 14u] = acc[14]; lanes[l + 15u] = acc[15];
    workgroupBarrier();
    // Lanes 0..15 each sum one accumulator over the 64 lanes and store its 4 channels.
    if lid < 16u {
        var s = vec4<f32>(0.0);
        for (var l = 0u; l < WORKGROUP_SIZE; l++) {
            s += lanes[l * 16u + lid];
        }
        let co = cob * 8u + lid / 2u;
        let base = split * p.cout * p.cin * taps;
        if co < p.cout {
            for (var k = 0u; k < 4u; k++) {
                let ci = cib * 8u + (lid % 2u) * 4u + k;
                if ci < p.cin {
                    partial[base + (co * p.cin + ci) * taps + tap] = s[k];
                }
            }
        }
    }
}
