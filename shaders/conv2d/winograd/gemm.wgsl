// conv2d/winograd/gemm.wgsl — the products in the Winograd domain: entry point
// conv2d_winograd_gemm. For each of the α² positions a, M[a] = V[a] · U[a] summed over the
// input channels: one thread per (a, block of 16 tiles, block of 8 output channels), a
// 16 × 8 register block (two 8 × 8 halves) fed, per quad of input channels, by 16 texels
// of V and 8 of U — 512 FMAs for 24 fetches.
//
// Contract: bindings 11 (U) and 12 (V) as conv2d_winograd_filter and conv2d_winograd_input
// wrote them; binding 13: M, written whole (layouts in conv2d/winograd/common.wgsl).
// count = α² * tiles / 16 * cout_pad / 8 threads.

@group(0) @binding(11) var u_tex: texture_2d<f32>;
@group(0) @binding(12) var v_tex: texture_2d<f32>;
@group(0) @binding(13) var m_tex: texture_storage_2d<rgba32float, write>;

// The 8 tiles t0 .. t0+7 of a half, output-channel quads q, q+1 (acc[2*j + h]: tile t0 + j,
// quad q + h), by constant indices (a dynamic one would keep the block out of registers).
fn store_half(row: u32, t0: u32, acc: ptr<function, array<vec4<f32>, 16>>) {
    let r1 = row + 1u;
    textureStore(m_tex, vec2<u32>(t0, row), (*acc)[0]);       textureStore(m_tex, vec2<u32>(t0, r1), (*acc)[1]);
    textureStore(m_tex, vec2<u32>(t0 + 1u, row), (*acc)[2]);  textureStore(m_tex, vec2<u32>(t0 + 1u, r1), (*acc)[3]);
    textureStore(m_tex, vec2<u32>(t0 + 2u, row), (*acc)[4]);  textureStore(m_tex, vec2<u32>(t0 + 2u, r1), (*acc)[5]);
    textureStore(m_tex, vec2<u32>(t0 + 3u, row), (*acc)[6]);  textureStore(m_tex, vec2<u32>(t0 + 3u, r1), (*acc)[7]);
    textureStore(m_tex, vec2<u32>(t0 + 4u, row), (*acc)[8]);  textureStore(m_tex, vec2<u32>(t0 + 4u, r1), (*acc)[9]);
    textureStore(m_tex, vec2<u32>(t0 + 5u, row), (*acc)[10]); textureStore(m_tex, vec2<u32>(t0 + 5u, r1), (*acc)[11]);
    textureStore(m_tex, vec2<u32>(t0 + 6u, row), (*acc)[12]); textureStore(m_tex, vec2<u32>(t0 + 6u, r1), (*acc)[13]);
    textureStore(m_tex, vec2<u32>(t0 + 7u, row), (*acc)[14]); textureStore(m_tex, vec2<u32>(t0 + 7u, r1), (*acc)[15]);
}

// Component j of four tiles' texels, as one vec4 (the tiles side by side).
fn lane(a: vec4<f32>, b: vec4<f32>, c: vec4<f32>, d: vec4<f32>, j: u32) -> vec4<f32> {
    return vec4<f32>(a[j], b[j], c[j], d[j]);
}

// Adds input channel j of the quad to both halves: tiles v[0..16] (as four vec4 groups per
// half), U's 8 channels (u0, u1).
fn step(lo: ptr<function, array<vec4<f32>, 16>>, hi: ptr<function, array<vec4<f32>, 16>>,
        v: ptr<function, array<vec4<f32>, 16>>, j: u32, u0: vec4<f32>, u1: vec4<f32>) {
    outer_8x8(lo, lane((*v)[0], (*v)[1], (*v)[2], (*v)[3], j), lane((*v)[4], (*v)[5], (*v)[6], (*v)[7], j), u0, u1);
    outer_8x8(hi, lane((*v)[8], (*v)[9], (*v)[10], (*v)[11], j), lane((*v)[12], (*v)[13], (*v)[14], (*v)[15], j), u0, u1);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_winograd_gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= wp.count { return; }
    let cq = wp.cout_pad / 4u;
    let cblocks = wp.cout_pad / 8u;
    let tblocks = wp.tiles / 16u;
    let cb = i % cblocks;
    let tb = (i / cblocks) % tblocks;
    let a = i / (cblocks * tblocks);
    var lo: array<vec4<f32>, 16>;   // tiles 0..7 of the block
    var hi: array<vec4<f32>, 16>;   // tiles 8..15
    var v: array<vec4<f32>, 16>;
    let t0 = 16u * tb;
    let ux = a * cq + 2u * cb;
    for (var g = 0u; g < wp.cq_in; g++) {
        let vy = a * wp.cq_in + g;
        v[0] = textureLoad(v_tex, vec2<u32>(t0, vy), 0);
        v[1] = textureLoad(v_tex, vec2<u32>(t0 + 1u, vy), 0);
        v[2] = textureLoad(v_tex, vec2<u32>(t0 + 2u, vy), 0);
        v[3] = textureLoad(v_tex, vec2<u32>(t0 + 3u, vy), 0);
        v[4] = textureLoad(v_tex, vec2<u32>(t0 + 4u, vy), 0);
        v[5] = textureLoad(v_tex, vec2<u32>(t0 + 5u, vy), 0);
        v[6] = textureLoad(v_tex, vec2<u32>(t0 + 6u, vy), 0);
        v[7] = textureLoad(v_tex, vec2<u32>(t0 + 7u, vy), 0);
        v[8] = textureLoad(v_tex, vec2<u32>(t0 + 8u, vy), 0);
        v[9] = textureLoad(v_tex, vec2<u32>(t0 + 9u, vy), 0);
        v[10] = textureLoad(v_tex, vec2<u32>(t0 + 10u, vy), 0);
        v[11] = textureLoad(v_tex, vec2<u32>(t0 + 11u, vy), 0);
        v[12] = textureLoad(v_tex, vec2<u32>(t0 + 12u, vy), 0);
        v[13] = textureLoad(v_tex, vec2<u32>(t0 + 13u, vy), 0);
        v[14] = textureLoad(v_tex, vec2<u32>(t0 + 14u, vy), 0);
        v[15] = textureLoad(v_tex, vec2<u32>(t0 + 15u, vy), 0);
        let k = 4u * g;
        step(&lo, &hi, &v, 0u, textureLoad(u_tex, vec2<u32>(ux, k), 0), textureLoad(u_tex, vec2<u32>(ux + 1u, k), 0));
        step(&lo, &hi, &v, 1u, textureLoad(u_tex, vec2<u32>(ux, k + 1u), 0), textureLoad(u_tex, vec2<u32>(ux + 1u, k + 1u), 0));
        step(&lo, &hi, &v, 2u, textureLoad(u_tex, vec2<u32>(ux, k + 2u), 0), textureLoad(u_tex, vec2<u32>(ux + 1u, k + 2u), 0));
        step(&lo, &hi, &v, 3u, textureLoad(u_tex, vec2<u32>(ux, k + 3u), 0), textureLoad(u_tex, vec2<u32>(ux + 1u, k + 3u), 0));
    }
    store_half(ux, t0, &lo);
    store_half(ux, t0 + 8u, &hi);
}
