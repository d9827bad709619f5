// conv2d_backward_input.wgsl — gradient of conv2d with respect to its input.
//
// Contract (Conv args at binding 0, see conv2d_common.wgsl):
//   bindings 1: x (forward input view; read only when relu_input = 1), 2: weight,
//   3: grad_out (view y), 4: grad_x (view gx).
//   grad_x[n, c, iy, ix] (=|+=) m * sum_{oc in c's group, ky, kx} grad_out[n, oc, oy, ox] * w[oc, c % cin_g, ky, kx]
//   over the (oy, ox) with oy*sh = iy + ph - ky*dh (likewise x); m = (x > 0) when the forward
//   applied ReLU on load (so the mask is applied as the gradient is stored), else 1.
// This is the transposed convolution, read straight from the forward weights: no flipped
// copy is kept. One thread per input element.
// grad_out is read_write only so that it may share a buffer with grad_x (dense block).

@group(0) @binding(0) var<uniform> p: Conv;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad_x: array<f32>;

@compute @workgroup_size(64)
fn conv2d_backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= p.count { return; }
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
    for (var ky = 0u; ky < p.kh; ky++) {
        let ty = i32(iy + p.ph) - i32(ky * p.dh);
        if ty < 0 || u32(ty) % p.sh != 0u { continue; }
        let oy = u32(ty) / p.sh;
        if oy >= p.oh { continue; }
        for (var kx = 0u; kx < p.kw; kx++) {
            let tx = i32(ix + p.pw) - i32(kx * p.dw);
            if tx < 0 || u32(tx) % p.sw != 0u { continue; }
            let ox = u32(tx) / p.sw;
            if ox >= p.ow { continue; }
            var gi = go_base + oy * p.ow + ox;
            var wi = w_base + ky * p.kw + kx;
            for (var o = 0u; o < cout_g; o++) {
                acc = fma(grad_out[gi], weight[wi], acc);
                gi += ohw;
                wi += cin_g * khw;
            }
        }
    }
    if p.relu_input != 0u {
        let xv = x[p.x_off + n * p.x_bs + (c * p.h + iy) * p.w + ix];
        acc = select(0.0, acc, xv > 0.0);
    }
    let o = p.gx_off + n * p.gx_bs + (c * p.h + iy) * p.w + ix;
    if p.accumulate != 0u { grad_x[o] += acc; } else { grad_x[o] = acc; }
}
