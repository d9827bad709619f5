// conv2d/texture/stage.wgsl — stages an activation view in an rgba32float texture for the kernels
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
    quads: u32, quad0: u32, image_rows: u32, _pad: u32, // 4-column quads a row; quads before the image; copy rows an image
}

@group(0) @binding(0) var<uniform> a: Pack;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var dst: texture_storage_2d<rgba32float, write>;
// texture_pack_from_copy's source: the view copied as it lies, 4 consecutive floats a texel,
// COPY_WIDTH texels a row, each image from a new row (image_rows rows an image).
@group(0) @binding(4) var src_copy: texture_2d<f32>;
override COPY_WIDTH: u32;   // set by the host (COPY_WIDTH in stage.rs)

// One thread per texture row and quad of 4 image columns (quads aligned to the image):
// count = N * groups * rows * quads. This entry reads the view through storage-buffer loads
// (any view); texture_pack_from_copy below is the faster way for 4-aligned ones.
@compute @workgroup_size(WORKGROUP_SIZE)
fn texture_pack_activation(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= a.count { return; }
    let pq = pack_quad(i);
    let row_in = pq.iy >= 0 && pq.iy < i32(a.h);
    let base = a.off + pq.n * a.bs + u32(max(pq.iy, 0)) * a.w;
    let plane_size = a.h * a.w;
    for (var k = 0; k < 4; k++) {
        let ix = pq.ix0 + k;
        var v = vec4<f32>(0.0);
        if row_in && ix >= 0 && ix < i32(a.w) {
            for (var j = 0u; j < 4u; j++) {
                let c = 4u * pq.g + j;
                if c < a.c { v[j] = src[base + u32(ix) + c * plane_size]; }
            }
        }
        store_texel(ix, pq.r, v);
    }
}

// Stores texel v of image column ix in texture row r (ReLU'd when asked), if the column
// lies inside the texture.
fn store_texel(ix: i32, r: u32, v: vec4<f32>) {
    let col = ix + i32(a.left);
    if col < 0 || col >= i32(a.cols) { return; }
    var t = v;
    if a.relu != 0u { t = relu4(t); }
    textureStore(dst, vec2<i32>(col, i32(r)), t);
}

// Thread i's quad: image columns ix0 .. ix0+3 of texture row r, which holds row iy of
// image n's channel group g (iy outside the image in the padding rows).
struct PackQuad { ix0: i32, r: u32, g: u32, n: u32, iy: i32 }

fn pack_quad(i: u32) -> PackQuad {
    let r = i / a.quads;
    let plane = r / a.rows;
    return PackQuad(4 * (i32(i % a.quads) - i32(a.quad0)), r, plane % a.groups, plane / a.groups,
                    i32(r % a.rows) - i32(a.top));
}

// Stores the 4 texels of image columns ix0 .. ix0+3 from 4 channels' quads (transposed).
fn store_quad(ix0: i32, r: u32, v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>, v3: vec4<f32>) {
    store_texel(ix0, r, vec4<f32>(v0.x, v1.x, v2.x, v3.x));
    store_texel(ix0 + 1, r, vec4<f32>(v0.y, v1.y, v2.y, v3.y));
    store_texel(ix0 + 2, r, vec4<f32>(v0.z, v1.z, v2.z, v3.z));
    store_texel(ix0 + 3, r, vec4<f32>(v0.w, v1.w, v2.w, v3.w));
}

// texture_pack_from_copy — the same staging from a copy of the view in src_copy instead of
// storage-buffer loads (on a CPU adapter the copy is a memcpy and a texel fetch one
// vectorised gather, where a buffer load is a loop over the SIMD lanes). Needs width and
// view 4-aligned (every quad of a row is one texel). Threads as texture_pack_activation.
@compute @workgroup_size(WORKGROUP_SIZE)
fn texture_pack_from_copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= a.count { return; }
    let pq = pack_quad(i);
    var v0 = vec4<f32>(0.0);
    var v1 = vec4<f32>(0.0);
    var v2 = vec4<f32>(0.0);
    var v3 = vec4<f32>(0.0);
    if pq.iy >= 0 && pq.iy < i32(a.h) && pq.ix0 >= 0 && pq.ix0 < i32(a.w) {
        // Texel index of (channel 4g, row iy, column ix0) within image n's copy.
        let k = ((4u * pq.g) * a.h + u32(pq.iy)) * a.w / 4u + u32(pq.ix0) / 4u;
        let plane4 = a.h * a.w / 4u;
        v0 = copied_quad(pq.n, k, 4u * pq.g);
        v1 = copied_quad(pq.n, k + plane4, 4u * pq.g + 1u);
        v2 = copied_quad(pq.n, k + 2u * plane4, 4u * pq.g + 2u);
        v3 = copied_quad(pq.n, k + 3u * plane4, 4u * pq.g + 3u);
    }
    store_quad(pq.ix0, pq.r, v0, v1, v2, v3);
}

// Texel k of image n's copy, if channel c exists (zero past the channel count).
fn copied_quad(n: u32, k: u32, c: u32) -> vec4<f32> {
    if c >= a.c { return vec4<f32>(0.0); }
    return textureLoad(src_copy, vec2<u32>(k % COPY_WIDTH, n * a.image_rows + k / COPY_WIDTH), 0);
}
