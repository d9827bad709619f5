// conv2d/reduce_bias.wgsl — the weight gradient's reduce and the bias gradient in one
// dispatch (composed after conv2d/reduce.wgsl and conv2d/bias.wgsl, whose bindings are
// disjoint): the launch, and the barrier before it, that a separate bias pass costs.
//
// Contract (Reduce args at binding 0, Bias args at 3; buffers as those files say):
//   workgroups [0, ceil(r.count / WORKGROUP_SIZE)) reduce the weight gradient's partial
//   sums, one thread an element, exactly as conv2d_backward_weight_reduce; the workgroups
//   after them compute the bias gradient, workgroup k as conv2d_backward_bias's workgroup k
//   (k >= b.count does nothing). Neither half reads what the other writes.

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_backward_weight_reduce_and_bias(@builtin(workgroup_id) wid: vec3<u32>,
                                          @builtin(num_workgroups) nwg: vec3<u32>,
                                          @builtin(local_invocation_index) lid: u32) {
    // Both are uniform across a workgroup, so the bias half's barriers are reached by all.
    let wg = workgroup_index(wid, nwg);
    let reduce_workgroups = (r.count + WORKGROUP_SIZE - 1u) / WORKGROUP_SIZE;
    if wg < reduce_workgroups {
        reduce_partials(wg * WORKGROUP_SIZE + lid);
    } else {
        bias_sum(wg - reduce_workgroups, lid);
    }
}
