// probe.wgsl — the adapter's own ceilings, measured the way our kernels run.
//
// fma_peak: each thread runs `iterations` rounds of 8 independent vec4 FMAs (64 flops a
//   round) on registers and writes one value, so nothing is optimised away and memory
//   traffic is negligible. bindings 0: Probe args, 1: out (one f32 per thread).
// copy_peak: out[i] = src[i] over `count` vec4s, a grid-stride loop — bandwidth bound.
//   bindings 0: Probe args, 1: out, 2: src.

struct Probe {
    count: u32,       // threads (fma_peak) or vec4 elements (copy_peak)
    iterations: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> probe: Probe;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> src: array<vec4<f32>>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn fma_peak(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= probe.count { return; }
    let f = f32(i) * 1e-9;
    var a0 = vec4<f32>(f, f + 0.1, f + 0.2, f + 0.3);
    var a1 = a0 + 1.0; var a2 = a0 + 2.0; var a3 = a0 + 3.0;
    var a4 = a0 + 4.0; var a5 = a0 + 5.0; var a6 = a0 + 6.0; var a7 = a0 + 7.0;
    let m = vec4<f32>(0.999999);
    let c = vec4<f32>(1e-7);
    for (var k = 0u; k < probe.iterations; k++) {
        a0 = fma(a0, m, c); a1 = fma(a1, m, c); a2 = fma(a2, m, c); a3 = fma(a3, m, c);
        a4 = fma(a4, m, c); a5 = fma(a5, m, c); a6 = fma(a6, m, c); a7 = fma(a7, m, c);
    }
    let s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
    // Written for one thread in 1024 (keeps the result live, costs no bandwidth).
    if (i & 1023u) == 0u { out[i >> 10u] = s; }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn copy_peak(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= probe.count { return; }
    out[i] = src[i];
}
