// loss.wgsl — the mean squared error with its gradient.
//
// Contract (bindings; views as in common.wgsl):
//   mse_forward_backward (Elementwise args at binding 0): 1: y (view 0), 2: target (view 1),
//     3: grad (view 2), 4: sq [count]. With d = y - target over `count` elements:
//       grad[i] = 2 d / count        (the gradient of mean(d^2) with respect to y)
//       sq[i]   = d * d              (summed by sum_chunks into the loss)
//     One thread per element. NaN and Inf propagate.
// The loss itself is sum(sq) / count, by reduce.wgsl.

@group(0) @binding(0) var<uniform> args: Elementwise;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> target_values: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> sq: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn mse_forward_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= args.count { return; }
    let d = y[view_index(i, args.sample, args.off0, args.bs0)]
        - target_values[view_index(i, args.sample, args.off1, args.bs1)];
    grad[view_index(i, args.sample, args.off2, args.bs2)] = 2.0 * d / f32(args.count);
    sq[i] = d * d;
}
