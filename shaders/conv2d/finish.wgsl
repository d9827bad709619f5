// conv2d/finish.wgsl — the end of a weight gradient in one dispatch: the reduce of its
// split partial sums (conv2d/reduce.wgsl, workgroups 0 .. ceil(count / WORKGROUP_SIZE)) and
// the bias gradient (conv2d/bias.wgsl, one workgroup per output channel after them, one
// split only), both prepended. Saves the bias gradient's own dispatch.
//
// Contract: the two files' — Reduce args at binding 0, partial 1, dst 2; Bias args at 10,
// grad_out 3 and 4, grad_bias 5 — over ceil(count / WORKGROUP_SIZE) + cout workgroups.

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_backward_finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let wg = workgroup_index(wid, nwg);
    let reduce_groups = (r.count + WORKGROUP_SIZE - 1u) / WORKGROUP_SIZE;
    if wg < reduce_groups {
        reduce_element(wg * WORKGROUP_SIZE + lid);
        return;
    }
    bias_workgroup(wg - reduce_groups, lid);
}
