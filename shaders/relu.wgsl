// relu.wgsl — ReLU and its gradient on strided views.
//
// Contract (Elementwise args at binding 0; views as in common.wgsl):
//   relu_forward:  out[view2] = x < 0 ? 0 : x[view0]                   bindings 1: x, 3: out
//   relu_backward: grad_x[view2] (=|+=) grad_out[view1] * (x[view0] > 0)
//                                                   bindings 1: x, 2: grad_out, 3: grad_x
// The gradient at x = 0 is 0, as in PyTorch; NaN propagates as in PyTorch (relu(NaN) = NaN,
// and the gradient passes where x is NaN: threshold_backward zeroes only where x <= 0). One thread per element.

@group(0) @binding(0) var<uniform> args: Elementwise;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn relu_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= args.count { return; }
    let xv = x[view_index(i, args.sample, args.off0, args.bs0)];
    let v = relu1(xv);   // NaN stays NaN, as in PyTorch
    let o = view_index(i, args.sample, args.off2, args.bs2);
    if args.accumulate != 0u { out[o] += v; } else { out[o] = v; }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn relu_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= args.count { return; }
    let pass_through = relu_grad_passes(x[view_index(i, args.sample, args.off0, args.bs0)]);
    let g = select(0.0, grad_out[view_index(i, args.sample, args.off1, args.bs1)], pass_through);
    let o = view_index(i, args.sample, args.off2, args.bs2);
    if args.accumulate != 0u { out[o] += g; } else { out[o] = g; }
}
