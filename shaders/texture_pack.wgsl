// texture_pack.wgsl — stages an activation view in an rgba32float texture for the kernels
// that read their operands through the texture unit (conv2d_forward_texture,
// conv2d_backward_weight_texture): four channels a texel, zero padding stored, so those
// kernels fetch 4 channels at once and never check bounds.
//
// Contract (Pack args at binding 0; 1: src view, 2: dst texture):
//   dst(col, (n*groups + g)*rows + row) = f(src[n, 4g + j, row - top, col - left]) for
//   j = 0..3, zero where the pixel is outside the image or 4g + j >= c;
//   f = ReLU when relu = 1. One thread per texel: count = N * groups * rows * cols.

struct Pack {
    c: u32, h: u32, w: u32, groups: u32,       // source channels, height, width; ceil(c / 4)
    rows: u32, cols: u32, top: u32, left: u32, // texture rows per plane and width; zero rows / columns before the image
    off: u32, bs: u32, relu: u32, count: u32,  // source view (offset, batch stride), ReLU, texels
}

@group(0) @binding(0) var<uniform> a: Pack;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var dst: texture_storage_2d<rgba32float, write>;

@compute @workgroup_size(64)
fn texture_pack_activation(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= a.count { return; }
    let col = i % a.cols;
    let r = i / a.cols;
    let plane = r / a.rows;
    let g = plane % a.groups;
    let n = plane / a.groups;
    let iy = i32(r % a.rows) - i32(a.top);
    let ix = i32(col) - i32(a.left);
    var v = vec4<f32>(0.0);
    if iy >= 0 && iy < i32(a.h) && ix >= 0 && ix < i32(a.w) {
        let base = a.off + n * a.bs + u32(iy) * a.w + u32(ix);
        let plane_size = a.h * a.w;
        for (var j = 0u; j < 4u; j++) {
            let c = 4u * g + j;
            if c < a.c { v[j] = src[base + c * plane_size]; }
        }
        if a.relu != 0u { v = max(v, vec4<f32>(0.0)); }
    }
    textureStore(dst, vec2<u32>(col, r), v);
}
