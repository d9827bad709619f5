// add.wgsl — elementwise addition and gradient accumulation on strided views.
//
// Contract (Elementwise args at binding 0; views 0, 1, 2 as in common.wgsl):
//   add:        out[view2] = a[view0] + b[view1]          bindings 1: a, 2: b, 3: out
//   accumulate: out[view1] += a[view0]                    bindings 1: a (source), 3: out
// `accumulate` is the backward of an add: the gradient reaching a tensor that feeds two
// paths (y = F(x) + x) is the sum of both paths' gradients, summed into one buffer.
// One thread per element.

@group(0) @binding(0) var<uniform> args: Elementwise;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= args.count { return; }
    let v = a[view_index(i, args.sample, args.off0, args.bs0)]
          + b[view_index(i, args.sample, args.off1, args.bs1)];
    let o = view_index(i, args.sample, args.off2, args.bs2);
    if args.accumulate != 0u { out[o] += v; } else { out[o] = v; }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn accumulate(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= args.count { return; }
    out[view_index(i, args.sample, args.off1, args.bs1)] +=
        a[view_index(i, args.sample, args.off0, args.bs0)];
}
