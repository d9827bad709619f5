// conv2d_backward_weight_regblock.wgsl — weight gradient of conv2d (groups = 1) as an
// implicit GEMM over the long reduction N*OH*OW, register blocked and split across threads.
//
// Contract (Conv args at binding 0, see conv2d_common.wgsl):
//   conv2d_backward_weight_regblock: bindings 1: x (input view), 2: grad_out (view y),
//     3: partial [splits][cout*cin*kh*kw]. Thread t computes an 8 (co) × 8 (ci) block of
//     one tap (ky, kx) over rows [split*rows_per, (split+1)*rows_per) of the N*OH output rows:
//       partial[split][co, ci, ky, kx] = sum_{rows, ox} grad_out[n, co, oy, ox] * f(x[n, ci, iy, ix])
//     f = ReLU when relu_input = 1. Threads: count = blocks_ci * blocks_co * kh*kw * splits,
//     ci block fastest. `blocks` carries rows_per, `mask_output` the number of splits.
//   conv2d_backward_weight_reduce: bindings 3: partial, 4: grad_weight.
//     grad_weight[i] (=|+=) sum_s partial[s][i]; count = cout*cin*kh*kw.
// No workgroup memory and no barriers; splitting the reduction keeps a GPU busy when the
// weight is small and the reduction long (1×1 and stem convs).

@group(0) @binding(0) var<uniform> p: Conv;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> grad_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad_weight: array<f32>;

// Offsets of channels first .. first + 3 (clamped into range: clamped lanes are never
// stored) in a tensor whose channels are `plane` elements apart.
fn channel_offsets(first: u32, channels: u32, plane: u32) -> vec4<u32> {
    return min(vec4<u32>(first) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(channels - 1u)) * plane;
}

// The block of the weight gradient that thread (or workgroup) t owns: a co_block (co) ×
// ci_block (ci) block of one tap over one split of the reduction; ci block fastest, then co block, tap.
// Row-split kernels (`blocks` = output rows per split) reduce over rows [row0, row1).
struct WeightBlock { cib: u32, cob: u32, tap: u32, split: u32, ky: u32, kx: u32, row0: u32, row1: u32 }

fn weight_block(t: u32, co_block: u32, ci_block: u32) -> WeightBlock {
    let blocks_ci = (p.cin + ci_block - 1u) / ci_block;
    let blocks_co = (p.cout + co_block - 1u) / co_block;
    let taps = p.kh * p.kw;
    let tap = (t / (blocks_ci * blocks_co)) % taps;
    let split = t / (blocks_ci * blocks_co * taps);
    let row0 = split * p.blocks;
    return WeightBlock(t % blocks_ci, (t / blocks_ci) % blocks_co, tap, split, tap / p.kw, tap % p.kw,
                       row0, min(row0 + p.blocks, p.n * p.oh));
}

@compute @workgroup_size(64)
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

// Stores an 8 (co) × 8 (ci) block of one tap, acc[2*j + h] holding co0 + j's channels
// ci0 + 4*h .. +3. Constant accumulator indices only (see store_output4 in
// conv2d_forward_common.wgsl).
fn store_partial_8x8(base: u32, co0: u32, ci0: u32, tap: u32, acc: ptr<function, array<vec4<f32>, 16>>) {
    store_partial8(base, co0, ci0, tap, (*acc)[0], (*acc)[1]);
    store_partial8(base, co0 + 1u, ci0, tap, (*acc)[2], (*acc)[3]);
    store_partial8(base, co0 + 2u, ci0, tap, (*acc)[4], (*acc)[5]);
    store_partial8(base, co0 + 3u, ci0, tap, (*acc)[6], (*acc)[7]);
    store_partial8(base, co0 + 4u, ci0, tap, (*acc)[8], (*acc)[9]);
    store_partial8(base, co0 + 5u, ci0, tap, (*acc)[10], (*acc)[11]);
    store_partial8(base, co0 + 6u, ci0, tap, (*acc)[12], (*acc)[13]);
    store_partial8(base, co0 + 7u, ci0, tap, (*acc)[14], (*acc)[15]);
}

// Stores partial[base + (co, ci, tap)] for ci = ci0 .. ci0+7 from v0, v1; channels past
// cout or cin are skipped.
fn store_partial8(base: u32, co: u32, ci0: u32, tap: u32, v0: vec4<f32>, v1: vec4<f32>) {
    store_partial4(base, co, ci0, tap, v0);
    store_partial4(base, co, ci0 + 4u, tap, v1);
}

// Stores partial[base + (co, ci, tap)] for ci = ci0 .. ci0+3 from v, skipping channels past
// cout or cin.
fn store_partial4(base: u32, co: u32, ci0: u32, tap: u32, v: vec4<f32>) {
    if co >= p.cout { return; }
    let taps = p.kh * p.kw;
    for (var k = 0u; k < 4u; k++) {
        let ci = ci0 + k;
        if ci >= p.cin { return; }
        partial[base + (co * p.cin + ci) * taps + tap] = v[k];
    }
}
@compute @workgroup_size(64)
fn conv2d_backward_weight_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                 @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= p.count { return; }
    var s = 0.0;
    for (var k = 0u; k < p.mask_output; k++) {
        s += partial[k * p.count + i];
    }
    if p.accumulate != 0u { grad_weight[i] += s; } else { grad_weight[i] = s; }
}

// conv2d_backward_weight_pixel — the same partial sums with the reduction spread over lanes:
// a workgroup owns one tap, an 8 (co) × 8 (ci) block and one split of the pixels; its 64
// lanes take every 64th pixel of the split (consecutive lanes, consecutive pixels: every
// load coalesces), each keeping its own 8 × 8 block, and the lanes' blocks are summed in
// workgroup memory at the end. Many threads and no barrier in the loop: the shape a big GPU
// wants for the small, long-reduction weight gradients of these layers.
// Workgroups (count): blocks_ci * blocks_co * kh*kw * splits, ci block fastest;
// `blocks` = pixels per split, `mask_output` = splits (for the reduce pass).
var<workgroup> lanes: array<vec4<f32>, 1024>;   // [64 lanes][16 accumulators]

@compute @workgroup_size(64)
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
    let q0 = split * p.blocks;
    let q1 = min(q0 + p.blocks, p.n * ohw);
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

// conv2d_backward_weight_texture — the weight gradient with both operands read through the
// texture unit (see conv2d_forward_texture): a thread owns 16 (co) × 8 (ci) of one tap, and
// per output pixel two fetches of x (8 input channels) and four of grad_out (16 output
// channels) feed 128 FMAs.
//   5: x_tex — x staged as for conv2d_forward_texture (zero padded, tex_rows rows a plane,
//      ReLU applied), so no tap needs a bounds check.
//   6: g_tex — grad_out staged unpadded: texel (ox, (n*ceil(cout/4) + g)*OH + oy).
// Threads: blocks_ci * ceil(cout/16) * kh*kw * splits (ci block fastest); splits and
// partial sums as conv2d_backward_weight_regblock (binding 3).
@group(0) @binding(5) var x_tex: texture_2d<f32>;
@group(0) @binding(6) var g_tex: texture_2d<f32>;

@compute @workgroup_size(64)
fn conv2d_backward_weight_texture(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                  @builtin(local_invocation_index) lid: u32) {
    weight_texture(thread_index(wid, nwg, lid), false);
}

// conv2d_backward_weight_texture_narrow — the same with 16 (co) × 4 (ci) a thread, for
// inputs whose channel count wastes most of an 8-channel block (an RGB stem: 3 channels):
// per pixel one fetch of x and four of grad_out feed 64 FMAs.
@compute @workgroup_size(64)
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
    let xga = select(2u * b.cib, b.cib, narrow) * p.tex_rows;
    let xgb = min(2u * b.cib + 1u, gin - 1u) * p.tex_rows;
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
        let xr = n * gin * p.tex_rows + oy * p.sh + b.ky * p.dh;
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
