// conv2d_backward_weight.wgsl — gradients of conv2d with respect to weight and bias.
//
// Contract (Conv args at binding 0, see conv2d_common.wgsl):
//   conv2d_backward_weight: bindings 1: x (input view), 2: grad_out (view y), 3: grad_weight.
//     grad_w[oc, ic, ky, kx] (=|+=) sum_{n, oy, ox} grad_out[n, oc, oy, ox] * f(x[n, g*cin_g + ic, iy, ix])
//     (f = ReLU when relu_input = 1). One thread per weight element; count = cout*cin_g*kh*kw.
//   conv2d_backward_bias: bindings 2: grad_out, 4: grad_bias.
//     grad_b[oc] (=|+=) sum_{n, oy, ox} grad_out[n, oc, oy, ox].
//     One workgroup per output channel: 64 threads stride over N*OH*OW, then a tree reduction
//     in workgroup memory (a bias gradient is a long reduction to few outputs).

@group(0) @binding(0) var<uniform> p: Conv;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> grad_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad_weight: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad_bias: array<f32>;

@compute @workgroup_size(64)
fn conv2d_backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= p.count { return; }
    let cin_g = p.cin / p.groups;
    let cout_g = p.cout / p.groups;
    let kx = i % p.kw;
    let ky = (i / p.kw) % p.kh;
    let ic = (i / (p.kw * p.kh)) % cin_g;
    let oc = i / (p.kw * p.kh * cin_g);
    let c = (oc / cout_g) * cin_g + ic;
    var acc = 0.0;
    for (var n = 0u; n < p.n; n++) {
        let x_base = p.x_off + n * p.x_bs + c * p.h * p.w;
        let go_base = p.y_off + n * p.y_bs + oc * p.oh * p.ow;
        for (var oy = 0u; oy < p.oh; oy++) {
            let iy = i32(oy * p.sh + ky * p.dh) - i32(p.ph);
            if iy < 0 || iy >= i32(p.h) { continue; }
            let x_row = x_base + u32(iy) * p.w;
            let go_row = go_base + oy * p.ow;
            for (var ox = 0u; ox < p.ow; ox++) {
                let ix = i32(ox * p.sw + kx * p.dw) - i32(p.pw);
                if ix < 0 || ix >= i32(p.w) { continue; }
                var v = x[x_row + u32(ix)];
                if p.relu_input != 0u { v = max(v, 0.0); }
                acc = fma(grad_out[go_row + ox], v, acc);
            }
        }
    }
    if p.accumulate != 0u { grad_weight[i] += acc; } else { grad_weight[i] = acc; }
}

var<workgroup> partial: array<f32, 64>;

@compute @workgroup_size(64)
fn conv2d_backward_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    // workgroup_index is uniform across the workgroup, so every thread reaches the barriers.
    let oc = workgroup_index(wid, nwg);
    let ohw = p.oh * p.ow;
    let total = p.n * ohw;
    var acc = 0.0;
    if oc < p.cout {
        for (var j = lid; j < total; j += WORKGROUP_SIZE) {
            let n = j / ohw;
            acc += grad_out[p.y_off + n * p.y_bs + oc * ohw + j % ohw];
        }
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
        if lid < stride { partial[lid] += partial[lid + stride]; }
        workgroupBarrier();
    }
    if lid == 0u && oc < p.cout {
        if p.accumulate != 0u { grad_bias[oc] += partial[0]; } else { grad_bias[oc] = partial[0]; }
    }
}
