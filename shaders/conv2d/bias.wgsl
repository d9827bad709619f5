// conv2d/bias.wgsl — the bias gradient of conv2d: the sum of grad_out over batch and pixels,
// per output channel, split so that no thread loops past the budget on any plane size.
//
// Contract (Bias args at binding 3; 4: grad_out view y, 5: grad_out's buffer again as vec4s,
// 6: grad_b [splits][cout]; bindings from 3 so that conv2d/reduce_bias.wgsl can run this sum
// beside the weight gradient's reduce, in one dispatch):
//   grad_b[s][oc] (=|+=) sum over split s of grad_out[n, oc, oy, ox]. The reduction's units
//   are (image, chunk of `chunk` plane elements), `per_split` units a split; one workgroup
//   per (oc, split), oc fastest (count = cout * splits); its 64 lanes stride over each
//   unit, then a tree reduction in workgroup memory (conv2d_backward_bias; GPUs) — or one
//   thread per (oc, split) summing serially (conv2d_backward_bias_serial; CPU adapters). With
//   several splits the partial sums go through conv2d/reduce.wgsl. vec4 loads where planes,
//   view and chunks are 4-aligned (vec4_ok = 1). grad_out is read_write only so it may share
//   a buffer with other views.

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

// Threads of a serial workgroup (set by the host): one SIMD row of a CPU adapter (lavapipe
// runs a workgroup on one core, so few threads need small workgroups to use every core).
override SERIAL_LANES: u32;


@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_backward_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    // workgroup_index is uniform across the workgroup, so every thread reaches the barriers.
    bias_sum(workgroup_index(wid, nwg), lid);
}

// The reduction's units are (image, chunk of `chunk` plane elements); split s sums units
// [x, y), `per_split` a split, so that no thread loops past the budget on any plane size.
fn split_units(s: u32) -> vec2<u32> {
    let chunks = (b.oh * b.ow + b.chunk - 1u) / b.chunk;
    let u0 = s * b.per_split;
    return vec2<u32>(u0, min(u0 + b.per_split, b.n * chunks));
}

// The elements [x, y) of y that unit u of channel oc covers.
fn unit_span(u: u32, oc: u32) -> vec2<u32> {
    let ohw = b.oh * b.ow;
    let chunks = (ohw + b.chunk - 1u) / b.chunk;
    let plane = b.y_off + (u / chunks) * b.y_bs + oc * ohw;
    let c0 = (u % chunks) * b.chunk;
    return vec2<u32>(plane + c0, plane + min(c0 + b.chunk, ohw));
}

// Workgroup `wg`'s share of the bias gradient: (oc, split) = (wg % cout, wg / cout); `wg`
// must be uniform across the workgroup (the tree reduction has barriers).
fn bias_sum(wg: u32, lid: u32) {
    let in_range = wg < b.count;
    let oc = wg % b.cout;
    let units = split_units(wg / b.cout);
    var acc = 0.0;
    if in_range && b.vec4_ok != 0u {
        // Planes, view and chunks 4-aligned: vec4 loads (a load is a lane loop on CPU adapters).
        var acc4 = vec4<f32>(0.0);
        for (var u = units.x; u < units.y; u++) {
            let span = unit_span(u, oc) / 4u;
            for (var j = span.x + lid; j < span.y; j += WORKGROUP_SIZE) {
                acc4 += y4[j];
            }
        }
        acc = acc4.x + acc4.y + acc4.z + acc4.w;
    } else if in_range {
        for (var u = units.x; u < units.y; u++) {
            let span = unit_span(u, oc);
            for (var j = span.x + lid; j < span.y; j += WORKGROUP_SIZE) {
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

// The same sum with one thread per (oc, split) and no workgroup memory or barriers: what a
// CPU adapter runs fastest (lavapipe runs a workgroup with barriers as coroutines, ≈ 85 µs
// a workgroup more). Same arguments and units, thread t = oc + cout * split (count threads);
// the host makes `chunk` at most a plane and `per_split` small enough that a thread's loop
// stays within the budget and each lane of its sum adds at most SERIAL_TERMS terms.
@compute @workgroup_size(SERIAL_LANES)
fn conv2d_backward_bias_serial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                               @builtin(local_invocation_index) lid: u32) {
    let t = workgroup_index(wid, nwg) * SERIAL_LANES + lid;
    if t >= b.count { return; }
    let oc = t % b.cout;
    let units = split_units(t / b.cout);
    var acc = 0.0;
    if b.vec4_ok != 0u {
        var acc4 = vec4<f32>(0.0);
        for (var u = units.x; u < units.y; u++) {
            let span = unit_span(u, oc) / 4u;
            for (var j = span.x; j < span.y; j++) {
                acc4 += y4[j];
            }
        }
        acc = acc4.x + acc4.y + acc4.z + acc4.w;
    } else {
        for (var u = units.x; u < units.y; u++) {
            let span = unit_span(u, oc);
            for (var j = span.x; j < span.y; j++) {
                acc += y[j];
            }
        }
    }
    if b.accumulate != 0u { grad_bias[t] += acc; } else { grad_bias[t] = acc; }
}
