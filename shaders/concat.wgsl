// concat.wgsl — copies between a tensor and a channel slice of another.
//
// Contract (Elementwise args at binding 0; views as in common.wgsl):
//   copy_view: dst[view1] (=|+=) src[view0]            bindings 1: src, 2: dst
// Concatenation along channels is one copy_view per input into its channel slice of the
// output; its backward is one copy_view per input out of the gradient's slice (accumulating
// when the input's gradient already holds another path's contribution). A block that writes
// its layers straight into channel slices of one shared buffer needs none of these copies.
// One thread per element.

@group(0) @binding(0) var<uniform> args: Elementwise;
@group(0) @binding(1) var<storage, read_write> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn copy_view(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= args.count { return; }
    let v = src[view_index(i, args.sample, args.off0, args.bs0)];
    let o = view_index(i, args.sample, args.off1, args.bs1);
    if args.accumulate != 0u { dst[o] += v; } else { dst[o] = v; }
}
