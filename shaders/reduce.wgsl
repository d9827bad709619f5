// reduce.wgsl — a bounded, deterministic sum.
//
// Contract (Sum args at binding 0): 1: src [len], 2: dst [ceil(len / chunk)]:
//   sum_chunks: dst[w] = scale * sum_{i in [w*chunk, min((w+1)*chunk, len))} src[i]
// One workgroup per chunk; its 64 lanes stride over the chunk (chunk / 64 iterations each,
// bounded by the host), then a tree sum in a fixed order: the same bits every run. The host
// repeats it level by level until one value is left.

struct Sum {
    len: u32,
    chunk: u32,
    scale: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> sum_args: Sum;
@group(0) @binding(1) var<storage, read_write> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

var<workgroup> lanes: array<f32, WORKGROUP_SIZE>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn sum_chunks(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    // Uniform across the workgroup, so every lane reaches the barriers.
    let w = workgroup_index(wid, nwg);
    let start = w * sum_args.chunk;
    let end = min(start + sum_args.chunk, sum_args.len);
    var acc = 0.0;
    for (var i = start + lid; i < end; i += WORKGROUP_SIZE) {
        acc += src[i];
    }
    lanes[lid] = acc;
    workgroupBarrier();
    for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
        if lid < stride { lanes[lid] += lanes[lid + stride]; }
        workgroupBarrier();
    }
    if lid == 0u && start < sum_args.len {
        dst[w] = lanes[0] * sum_args.scale;
    }
}
