// conv2d_forward.wgsl — direct 2-D convolution, forward.
//
// Contract (Conv args at binding 0, see conv2d_common.wgsl):
//   bindings 1: x (input view), 2: weight [cout, cin/groups, kh, kw], 3: bias [cout]
//   (any buffer when has_bias = 0), 4: out (output view).
//   out[n, oc, oy, ox] (=|+=) bias[oc] + sum_{ic, ky, kx} f(x[n, g*cin_g + ic, iy, ix]) * w[oc, ic, ky, kx]
//   with iy = oy*sh - ph + ky*dh, ix = ox*sw - pw + kx*dw, zero outside the image,
//   g = oc / (cout/groups), f = ReLU when relu_input = 1 else identity.
// One thread per output element; padding is tested once per (ky, kx), channels innermost.
// x is declared read_write only so that it may be a view of the same buffer as out
// (a dense block reads channels [0, c) and writes channels [c, c + k) of one buffer).

@group(0) @binding(0) var<uniform> p: Conv;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn conv2d_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= p.count { return; }
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
                var v = x[xi];
                if p.relu_input != 0u { v = max(v, 0.0); }
                acc = fma(v, weight[wi], acc);
                xi += hw;
                wi += khw;
            }
        }
    }
    if p.has_bias != 0u { acc += bias[oc]; }
    let o = p.y_off + n * p.y_bs + (oc * p.oh + oy) * p.ow + ox;
    if p.accumulate != 0u { out[o] += acc; } else { out[o] = acc; }
}
