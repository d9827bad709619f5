// conv2d/pack.wgsl — rearranges OIHW weights (groups = 1) for the register-blocked
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

@compute @workgroup_size(WORKGROUP_SIZE)
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

// conv2d_weight_layout_texture — the same arrangement in an rgba32float texture (binding 3)
// for conv2d_forward_texture: texel (c, tap*rows4 + r) holds columns 4c .. 4c+3 of packed
// row (tap, r), rows4 = the row count (cin, resp. cout) rounded up to 4, zero padded.
// One thread per texel: count = kh*kw*rows4 * cols/4.
@group(0) @binding(3) var packed_tex: texture_storage_2d<rgba32float, write>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_weight_layout_texture(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= l.count { return; }
    let texels = l.cols / 4u;
    let c = i % texels;
    let row = i / texels;
    let rows = select(l.cout, l.cin, l.transpose == 0u);
    let rows4 = (rows + 3u) / 4u * 4u;
    let r = row % rows4;
    let tap = row / rows4;
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        let col = 4u * c + j;
        if l.transpose == 0u {
            // r = ci, col = co
            if r < l.cin && col < l.cout {
                v[j] = weight[((col * l.cin + r) * l.kh + tap / l.kw) * l.kw + tap % l.kw];
            }
        } else {
            // r = co, col = ci, kernel flipped
            let ky = l.kh - 1u - tap / l.kw;
            let kx = l.kw - 1u - tap % l.kw;
            if r < l.cout && col < l.cin {
                v[j] = weight[((r * l.cin + col) * l.kh + ky) * l.kw + kx];
            }
        }
    }
    textureStore(packed_tex, vec2<u32>(c, row), v);
}
