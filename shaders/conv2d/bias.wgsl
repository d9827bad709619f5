// conv2d/bias.wgsl — the bias gradient of conv2d: the sum of grad_out over batch and pixels,
// per output channel, split so that no thread loops past the budget on any plane size.
//
// Contract (Bias args at binding 3; 4: grad_out view y, 5: grad_out's buffer again as vec4s,
// 6: grad_b [splits][cout]; bindings from 3 so that conv2d/reduce_bias.wgsl can run this sum
// beside the weight gradient's reduce, in one dispatch):
//   grad_b[s][oc] (=|+=) sum over split s of grad_out[n, oc, oy, ox]. The reduction's units
//   are (image, chunk of `chunk` plane elements), `per_split` units a split; one workgroup
//   per (oc, split), oc fastest (count = cout * splits); its 64 lanes stride over each
//   unit, then a tree reduction in workgroup memory. With several splits the partial sums
//   go through conv2d/reduce.wgsl. vec4 loads where planes, view and chunks are 4-aligned
//   (vec4_ok = 1). grad_out is read_write only so it may share a buffer with other views.

struct Bias {
    n: u32, cout: u32, oh: u32, ow: u32,   // grad_out's shape
    y_off: u32, y_bs: u32,                 // grad_out's view
    count: u32,                            // workgroups doing work: cout * splits
    accumulate: u32,                       // 1: grad_b += sum, 0: grad_b = sum
    per_split: u32,                        // units one split sums
    chunk: u32,                            // plane elements a unit
    vec4_ok: u32,
    _pad: u32,
}

@group(0) @binding(3) var<uniform> b: Bias;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> y4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> grad_bias: array<f32>;

var<workgroup> lane_sums: array<f32, WORKGROUP_SIZE>;


@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_backward_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    // workgroup_index is uniform across the workgroup, so every thread reaches the barriers.
    bias_sum(workgroup_index(wid, nwg), lid);
}

// Workgroup `wg`'s share of the bias gradient: (oc, split) = (wg % cout, wg / cout); `wg`
// must be uniform across the workgroup (the tree reduction has barriers).
fn bias_sum(wg: u32, lid: u32) {
    let in_range = wg < b.count;
    let oc = wg % b.cout;
    let ohw = b.oh * b.ow;
    // The reduction's units: (image, chunk of `chunk` plane elements); this workgroup sums
    // units [u0, u1), `per_split` a split, so no lane loops past the budget on any plane size.
    let chunks = (ohw + b.chunk - 1u) / b.chunk;
    let u0 = (wg / b.cout) * b.per_split;
    let u1 = min(u0 + b.per_split, b.n * chunks);
    var acc = 0.0;
    if in_range && b.vec4_ok != 0u {
        // Planes, view and chunks 4-aligned: vec4 loads (a load is a lane loop on CPU adapters).
        var acc4 = vec4<f32>(0.0);
        for (var u = u0; u < u1; u++) {
            let plane = b.y_off + (u / chunks) * b.y_bs + oc * ohw;
            let c0 = (u % chunks) * b.chunk;
            let c1 = min(c0 + b.chunk, ohw);
            for (var j = (plane + c0) / 4u + lid; j < (plane + c1) / 4u; j += WORKGROUP_SIZE) {
                acc4 += y4[j];
            }
        }
        acc = acc4.x + acc4.y + acc4.z + acc4.w;
    } else if in_range {
        for (var u = u0; u < u1; u++) {
            let plane = b.y_off + (u / chunks) * b.y_bs + oc * ohw;
            let c0 = (u % chunks) * b.chunk;
            let c1 = min(c0 + b.chunk, ohw);
            for (var j = plane + c0 + lid; j < plane + c1; j += WORKGROUP_SIZE) {
                acc += y[j];
            }
        }
    }
    lane_sums[lid] = acc;
    workgroupBarrier();
    for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
        if lid < stride { lane_sums[lid] += lane_sums[lid + stride]; }
        workgroupBarrier();
    }
    // Workgroup (oc, split) = oc + cout * split: with several splits, grad_bias is the
    // partial sums [split][cout].
    if lid == 0u && in_range {
        if b.accumulate != 0u { grad_bias[wg] += lane_sums[0]; } else { grad_bias[wg] = lane_sums[0]; }
    }
}
