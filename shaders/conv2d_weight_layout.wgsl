// conv2d_weight_layout.wgsl — rearranges OIHW weights (groups = 1) for the register-blocked
// kernels, which read 8 output channels as two adjacent vec4s.
//
// Contract (Layout args at binding 0; bindings 1: weight [cout, cin, kh, kw], 2: packed):
//   forward (transpose = 0):  packed[((ky*kw + kx)*cin + ci) * co_pad + co] = w[co, ci, ky, kx]
//   backward-input (transpose = 1), the transposed, flipped kernel:
//                             packed[((ky*kw + kx)*cout + co) * ci_pad + ci] = w[co, ci, kh-1-ky, kw-1-kx]
//   Padding columns (co >= cout, resp. ci >= cin) are zero, so kernels load them unchecked.
// One thread per packed element. A temporary: rebuilt in the same recording as the conv
// that reads it, so weights updated in place are always seen.

struct Layout {
    cout: u32, cin: u32, kh: u32, kw: u32,
    cols: u32,        // co_pad (forward) or ci_pad (transpose), a multiple of 8
    transpose: u32,
    count: u32,       // kh*kw*rows*cols
    _pad: u32,
}

@group(0) @binding(0) var<uniform> l: Layout;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read_write> packed: array<f32>;

@compute @workgroup_size(64)
fn conv2d_weight_layout(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= l.count { return; }
    let col = i % l.cols;
    let row = i / l.cols;
    if l.transpose == 0u {
        let ci = row % l.cin;
        let tap = row / l.cin;
        let co = col;
        var v = 0.0;
        if co < l.cout { v = weight[((co * l.cin + ci) * l.kh + tap / l.kw) * l.kw + tap % l.kw]; }
        packed[i] = v;
    } else {
        let co = row % l.cout;
        let tap = row / l.cout;
        let ci = col;
        let ky = l.kh - 1u - tap / l.kw;
        let kx = l.kw - 1u - tap % l.kw;
        var v = 0.0;
        if ci < l.cin { v = weight[((co * l.cin + ci) * l.kh + ky) * l.kw + kx]; }
        packed[i] = v;
    }
}
