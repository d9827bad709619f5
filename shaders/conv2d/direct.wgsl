// conv2d/direct.wgsl — direct 2-D convolution, forward and all gradients: one thread per
// output element, every shape, stride, dilation and groups. Slow for large convolutions,
// and the fewest launches for tiny ones (conv2d_backward_fused: all three gradients in one
// dispatch).
//
// Contract (Conv args at binding 0, see conv2d/common.wgsl). Bindings:
//   1: x (input view), 2: weight [cout, cin/groups, kh, kw], 3: bias [cout],
//   4: y (forward: output view; backward: grad_out view), 5: grad_x (view gx),
//   6: grad_weight, 7: grad_bias. Each entry point uses the subset it names (the host's
//   kernel descriptors in src/ops/conv2d/family/direct.rs list the same sets; a test checks).
//   conv2d_forward (1, 2, 3, 4):
//     y[n, oc, oy, ox] (=|+=) bias[oc] + sum_{ic, ky, kx} f(x[n, g*cin_g + ic, iy, ix]) * w[oc, ic, ky, kx]
//     iy = oy*sh - ph + ky*dh, ix = ox*sw - pw + kx*dw, zero outside the image,
//     g = oc / (cout/groups), f = ReLU when relu_input = 1. count = N*cout*OH*OW.
//   conv2d_backward_input (1, 2, 4, 5):
//     grad_x[n, c, iy, ix] (=|+=) m * sum_{oc in c's group, ky, kx} grad_out[n, oc, oy, ox] * w[oc, c % cin_g, ky, kx]
//     over (oy, ox) with oy*sh = iy + ph - ky*dh (likewise x); m = !(x <= 0) when relu_input = 1 (NaN passes).
//     The transposed convolution read straight from the forward weights. count = N*cin*H*W.
//   conv2d_backward_weight (1, 4, 6):
//     grad_w[s][oc, ic, ky, kx] (=|+=) sum_{(n, oy) in split s, ox} grad_out[n, oc, oy, ox] * f(x[n, g*cin_g + ic, iy, ix])
//     over `per_split` of the N*OH output rows per split s; count = splits * cout*cin_g*kh*kw
//     (one split: grad_w itself; several: partial sums for conv2d/reduce.wgsl).
// Every loop is bounded by the host's choice of `per_split` and of channel chunks (see
// src/ops/conv2d/split.rs).
//   conv2d_backward_fused (1, 2, 4, 5, 6, 7): all three gradients in one dispatch, thread i
//     over [grad_x | grad_weight | grad_bias]; grad_x (=|+=) as above, grad_weight and
//     grad_bias overwritten. count = all three sizes. For tiny convolutions only: a bias
//     element is one thread's serial sum.
// Padding is tested once per (ky, kx), channels innermost. x and y are read_write only so
// that they may be disjoint views of one buffer (a dense block reads channels [0, c) and
// writes channels [c, c + k) of its feature buffer; its gradient buffer likewise).

@group(0) @binding(0) var<uniform> p: Conv;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> grad_x: array<f32>;
@group(0) @binding(6) var<storage, read_write> grad_weight: array<f32>;
@group(0) @binding(7) var<storage, read_write> grad_bias: array<f32>;

// One computed element and where it goes.
struct Element {
    value: f32,
    index: u32,
}

// Output element i of the forward, and its index in y.
fn forward_at(i: u32) -> Element {
    let ox = i % p.ow;
    let oy = (i / p.ow) % p.oh;
    let oc = (i / (p.ow * p.oh)) % p.cout;
    let n = i / (p.ow * p.oh * p.cout);
    let cin_g = p.cin / p.groups;
    let cout_g = p.cout / p.groups;
    let g = oc / cout_g;
    let hw = p.h * p.w;
    let khw = p.kh * p.kw;
    let x_base = p.x_off + n * p.x_bs + g * cin_g * hw;
    let w_base = oc * cin_g * khw;
    var acc = 0.0;
    for (var ky = 0u; ky < p.kh; ky++) {
        let iy = i32(oy * p.sh + ky * p.dh) - i32(p.ph);
        if iy < 0 || iy >= i32(p.h) { continue; }
        for (var kx = 0u; kx < p.kw; kx++) {
            let ix = i32(ox * p.sw + kx * p.dw) - i32(p.pw);
            if ix < 0 || ix >= i32(p.w) { continue; }
            var xi = x_base + u32(iy) * p.w + u32(ix);
            var wi = w_base + ky * p.kw + kx;
            for (var ic = 0u; ic < cin_g; ic++) {
                acc = fma(relu_on_load(x[xi]), weight[wi], acc);
                xi += hw;
                wi += khw;
            }
        }
    }
    if p.has_bias != 0u { acc += bias[oc]; }
    let o = p.y_off + n * p.y_bs + (oc * p.oh + oy) * p.ow + ox;
    return Element(acc, o);
}

// Input-gradient element i (masked when relu_input = 1), and its index in grad_x.
fn backward_input_at(i: u32) -> Element {
    let ix = i % p.w;
    let iy = (i / p.w) % p.h;
    let c = (i / (p.w * p.h)) % p.cin;
    let n = i / (p.w * p.h * p.cin);
    let cin_g = p.cin / p.groups;
    let cout_g = p.cout / p.groups;
    let g = c / cin_g;
    let ic = c % cin_g;
    let ohw = p.oh * p.ow;
    let khw = p.kh * p.kw;
    let go_base = p.y_off + n * p.y_bs + g * cout_g * ohw;
    let w_base = (g * cout_g * cin_g + ic) * khw;
    var acc = 0.0;
    // Only taps with (iy + ph - ky*dh) divisible by the stride reach an output pixel; with
    // dilation 1 they are every sh-th tap from (iy + ph) % sh, so a strided conv visits
    // 1/(sh*sw) of the taps. (The divisibility test stays: it is what decides for d > 1.)
    let ky0 = select(0u, (iy + p.ph) % p.sh, p.dh == 1u);
    let kx0 = select(0u, (ix + p.pw) % p.sw, p.dw == 1u);
    let ky_step = select(1u, p.sh, p.dh == 1u);
    let kx_step = select(1u, p.sw, p.dw == 1u);
    for (var ky = ky0; ky < p.kh; ky += ky_step) {
        let ty = i32(iy + p.ph) - i32(ky * p.dh);
        if ty < 0 || u32(ty) % p.sh != 0u { continue; }
        let oy = u32(ty) / p.sh;
        if oy >= p.oh { continue; }
        for (var kx = kx0; kx < p.kw; kx += kx_step) {
            let tx = i32(ix + p.pw) - i32(kx * p.dw);
            if tx < 0 || u32(tx) % p.sw != 0u { continue; }
            let ox = u32(tx) / p.sw;
            if ox >= p.ow { continue; }
            var gi = go_base + oy * p.ow + ox;
            var wi = w_base + ky * p.kw + kx;
            for (var o = 0u; o < cout_g; o++) {
                acc = fma(y[gi], weight[wi], acc);
                gi += ohw;
                wi += cin_g * khw;
            }
        }
    }
    if p.relu_input != 0u {
        // ReLU's gradient passes where x > 0 or x is NaN (PyTorch's threshold_backward).
        let xv = x[p.x_off + n * p.x_bs + (c * p.h + iy) * p.w + ix];
        acc = select(0.0, acc, relu_grad_passes(xv));
    }
    let o = p.gx_off + n * p.gx_bs + (c * p.h + iy) * p.w + ix;
    return Element(acc, o);
}

// Weight-gradient element i, summed over output rows [row0, row1) of the N*OH rows.
fn backward_weight_at(i: u32, row0: u32, row1: u32) -> f32 {
    let cin_g = p.cin / p.groups;
    let cout_g = p.cout / p.groups;
    let kx = i % p.kw;
    let ky = (i / p.kw) % p.kh;
    let ic = (i / (p.kw * p.kh)) % cin_g;
    let oc = i / (p.kw * p.kh * cin_g);
    let c = (oc / cout_g) * cin_g + ic;
    var acc = 0.0;
    for (var r = row0; r < row1; r++) {
        let n = r / p.oh;
        let oy = r % p.oh;
        let iy = i32(oy * p.sh + ky * p.dh) - i32(p.ph);
        if iy < 0 || iy >= i32(p.h) { continue; }
        let x_row = p.x_off + n * p.x_bs + c * p.h * p.w + u32(iy) * p.w;
        let go_row = p.y_off + n * p.y_bs + oc * p.oh * p.ow + oy * p.ow;
        for (var ox = 0u; ox < p.ow; ox++) {
            let ix = i32(ox * p.sw + kx * p.dw) - i32(p.pw);
            if ix < 0 || ix >= i32(p.w) { continue; }
            acc = fma(y[go_row + ox], relu_on_load(x[x_row + u32(ix)]), acc);
        }
    }
    return acc;
}

// x as the forward loaded it: ReLU'd when relu_input = 1 (NaN stays NaN, as in PyTorch).
fn relu_on_load(v: f32) -> f32 {
    return relu_if(v, p.relu_input != 0u);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= p.count { return; }
    let r = forward_at(i);
    if p.accumulate != 0u { y[r.index] += r.value; } else { y[r.index] = r.value; }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= p.count { return; }
    let r = backward_input_at(i);
    if p.accumulate != 0u { grad_x[r.index] += r.value; } else { grad_x[r.index] = r.value; }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= p.count { return; }
    // Thread i: element i % nw over split i / nw of the rows (`per_split` rows a split); with
    // several splits, grad_weight is the partial sums [split][nw].
    let nw = p.cout * (p.cin / p.groups) * p.kh * p.kw;
    let row0 = (i / nw) * p.per_split;
    let v = backward_weight_at(i % nw, row0, min(row0 + p.per_split, p.n * p.oh));
    if p.accumulate != 0u { grad_weight[i] += v; } else { grad_weight[i] = v; }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_backward_fused(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    // count stops before the bias range when there is no bias gradient.
    if i >= p.count { return; }
    let nx = p.n * p.cin * p.h * p.w;
    let nw = p.cout * (p.cin / p.groups) * p.kh * p.kw;
    if i < nx {
        let r = backward_input_at(i);
        if p.accumulate != 0u { grad_x[r.index] += r.value; } else { grad_x[r.index] = r.value; }
    } else if i < nx + nw {
        grad_weight[i - nx] = backward_weight_at(i - nx, 0u, p.n * p.oh);
    } else if i < nx + nw + p.cout {
        let oc = i - nx - nw;
        let ohw = p.oh * p.ow;
        var s = 0.0;
        for (var j = 0u; j < p.n * ohw; j++) {
            s += y[p.y_off + (j / ohw) * p.y_bs + oc * ohw + j % ohw];
        }
        grad_bias[oc] = s;
    }
}
