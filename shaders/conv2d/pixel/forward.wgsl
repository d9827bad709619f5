// conv2d/pixel/forward.wgsl — the pixel family's forward (and stride-1 input gradient):
// the contract of conv2d/regblock/forward.wgsl (output bindings in conv2d/store.wgsl).
//
// Bindings 1 and 2: the input view and the packed weights [kh*kw*cin][co_pad] as vec4
// (conv2d/pack.wgsl).
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<vec4<f32>>;

// conv2d_forward_pixel — the same contract with one output pixel × 8 channels per thread:
// many more threads for the small layers a big GPU would otherwise leave idle. A workgroup
// is 64 consecutive output pixels (count = N*OH*OW) of one 8-channel block (from the
// workgroup index: every lane reads the same weights, one broadcast load each, and
// consecutive lanes read consecutive activations). Workgroups: ceil(count / 64) * blocks.
@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_forward_pixel(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let wg = workgroup_index(wid, nwg);
    let cb = wg % p.blocks;
    let m_raw = (wg / p.blocks) * WORKGROUP_SIZE + lid;
    let live = m_raw < p.count;
    let m = min(m_raw, p.count - 1u);
    let ox = m % p.ow;
    let oy = (m / p.ow) % p.oh;
    let n = m / (p.ow * p.oh);
    let hw = p.h * p.w;
    let x_n = p.x_off + n * p.x_bs;
    let wt_row = p.blocks * 2u;
    let relu = p.relu_input != 0u;   // ReLU on load (NaN kept, as in PyTorch)
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    for (var ky = 0u; ky < p.kh; ky++) {
        let iy = i32(oy * p.sh + ky * p.dh) - i32(p.ph);
        for (var kx = 0u; kx < p.kw; kx++) {
            let ix = i32(ox * p.sw + kx * p.dw) - i32(p.pw);
            let ok = iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w);
            var xo = x_n + select(0u, u32(iy) * p.w + u32(ix), ok);
            var wi = ((ky * p.kw + kx) * p.cin) * wt_row + cb * 2u;
            for (var ci = 0u; ci < p.cin; ci++) {
                let v = vec4<f32>(select(0.0, relu_if(x[xo], relu), ok));
                a0 = fma(v, wt[wi], a0);
                a1 = fma(v, wt[wi + 1u], a1);
                wi += wt_row;
                xo += hw;
            }
        }
    }
    if !live { return; }
    store_output8_flat(m, cb * 8u, a0, a1);
}
