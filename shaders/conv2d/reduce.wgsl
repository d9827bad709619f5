// conv2d/reduce.wgsl — adds up the partial sums of a split reduction (the weight- and
// bias-gradient kernels of every family write one partial sum per split of N*OH*OW).
//
// Contract (Reduce args at binding 0; 1: partial [splits][count], 2: dst [count]):
//   dst[i] (=|+=) sum_{s < splits} partial[s][i], one thread per element, s ascending (a
//   fixed order: the result is bit-reproducible). splits is at most the loop budget
//   (src/ops/conv2d/split.rs), so no thread loops past it.

struct Reduce {
    count: u32,       // elements of dst
    splits: u32,      // partial sums per element
    accumulate: u32,  // 1: dst += sum, 0: dst = sum
    _pad: u32,
}

@group(0) @binding(0) var<uniform> r: Reduce;
@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_backward_weight_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                 @builtin(local_invocation_index) lid: u32) {
    reduce_partials(thread_index(wid, nwg, lid));
}

// Element i's sum (nothing past count).
fn reduce_partials(i: u32) {
    if i >= r.count { return; }
    var s = 0.0;
    for (var k = 0u; k < r.splits; k++) {
        s += partial[k * r.count + i];
    }
    if r.accumulate != 0u { dst[i] += s; } else { dst[i] = s; }
}
