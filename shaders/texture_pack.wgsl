// texture_pack.wgsl — stages an activation view in an rgba32float texture for the kernels
// that read their operands through the texture unit (conv2d_forward_texture,
// conv2d_backward_weight_texture): four channels a texel, zero padding stored, so those
// kernels fetch 4 channels at once and never check bounds.
//
// Contract (Pack args at binding 0; 1: src view, 2: dst texture):
//   dst(col, (n*groups + g)*rows + row) = f(src[n, 4g + j, row - top, col - left]) for
//   j = 0..3, zero where the pixel is outside the image or 4g + j >= c;
//   f = ReLU when relu = 1.

struct Pack {
    c: u32, h: u32, w: u32, groups: u32,       // source channels, height, width; ceil(c / 4)
    rows: u32, cols: u32, top: u32, left: u32, // texture rows per plane and width; zero rows / columns before the image
    off: u32, bs: u32, relu: u32, count: u32,  // source view (offset, batch stride), ReLU, threads
    quads: u32, quad0: u32, vec4_ok: u32, _pad: u32, // 4-column quads a row; quads before the image; aligned source
}

@group(0) @binding(0) var<uniform> a: Pack;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var dst: texture_storage_2d<rgba32float, write>;
@group(0) @binding(3) var<storage, read> src4: array<vec4<f32>>;   // src again, as vec4s

// One thread per texture row and quad of 4 image columns (quads aligned to the image, so
// those inside it read each channel's 4 pixels as one vec4 where the source is 4-aligned:
// a storage-buffer load is a loop over the SIMD lanes on CPU adapters, per component for
// scalars). count = N * groups * rows * quads.
@compute @workgroup_size(64)
fn texture_pack_activation(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= a.count { return; }
    let ix0 = 4 * (i32(i % a.quads) - i32(a.quad0));
    let r = i / a.quads;
    let plane = r / a.rows;
    let g = plane % a.groups;
    let n = plane / a.groups;
    let iy = i32(r % a.rows) - i32(a.top);
    let row_in = iy >= 0 && iy < i32(a.h);
    let base = a.off + n * a.bs + u32(max(iy, 0)) * a.w;
    let plane_size = a.h * a.w;
    if row_in && a.vec4_ok != 0u && ix0 >= 0 && ix0 + 4 <= i32(a.w) {
        // A whole quad inside the image: each channel's 4 pixels in one load.
        let q = (base + u32(ix0)) / 4u;
        let v0 = channel_quad(q, 4u * g);
        let v1 = channel_quad(q, 4u * g + 1u);
        let v2 = channel_quad(q, 4u * g + 2u);
        let v3 = channel_quad(q, 4u * g + 3u);
        store_texel(ix0, r, vec4<f32>(v0.x, v1.x, v2.x, v3.x));
        store_texel(ix0 + 1, r, vec4<f32>(v0.y, v1.y, v2.y, v3.y));
        store_texel(ix0 + 2, r, vec4<f32>(v0.z, v1.z, v2.z, v3.z));
        store_texel(ix0 + 3, r, vec4<f32>(v0.w, v1.w, v2.w, v3.w));
        return;
    }
    for (var k = 0; k < 4; k++) {
        let ix = ix0 + k;
        var v = vec4<f32>(0.0);
        if row_in && ix >= 0 && ix < i32(a.w) {
            for (var j = 0u; j < 4u; j++) {
                let c = 4u * g + j;
                if c < a.c { v[j] = src[base + u32(ix) + c * plane_size]; }
            }
        }
        store_texel(ix, r, v);
    }
}

// The 4 pixels at vec4 index q of channel 0, in channel c (zero past the channel count).
fn channel_quad(q: u32, c: u32) -> vec4<f32> {
    if c >= a.c { return vec4<f32>(0.0); }
    return src4[q + c * (a.h * a.w / 4u)];
}

// Stores texel v of image column ix in texture row r (ReLU'd when asked), if the column
// lies inside the texture.
fn store_texel(ix: i32, r: u32, v: vec4<f32>) {
    let col = ix + i32(a.left);
    if col < 0 || col >= i32(a.cols) { return; }
    var t = v;
    if a.relu != 0u { t = max(t, vec4<f32>(0.0)); }
    textureStore(dst, vec2<i32>(col, i32(r)), t);
}
