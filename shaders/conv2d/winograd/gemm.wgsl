// conv2d/winograd/gemm.wgsl — the products in the Winograd domain: entry point
// conv2d_winograd_gemm. For each of the α² positions a, M[a] = V[a] · U[a] summed over the
// input channels: one thread per (a, block of 16 tiles, block of 8 output channels), a
// 16 × 8 register block (two 8 × 8 halves) fed, per quad of input channels, by 16 texels
// of V and 8 of U — 512 multiply-adds for 24 fetches, each quad's four summed apart first.
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

// Input channels 4k .. 4k+3 of one tile (v, a texel of V) against four output channels
// (u0 .. u3: a texel of U for each input channel), summed before they meet the running
// sum: a sum of four products rounded once more per quad instead of once per channel, which
// halves the GEMM's rounding through F(4×4)'s output transform (benches/NOTES.md, v31).
fn quad_dot(v: vec4<f32>, u0: vec4<f32>, u1: vec4<f32>, u2: vec4<f32>, u3: vec4<f32>) -> vec4<f32> {
    return fma(vec4<f32>(v.w), u3, fma(vec4<f32>(v.z), u2, fma(vec4<f32>(v.y), u1, v.x * u0)));
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
    let t0 = 16u * tb;
    let ux = a * cq + 2u * cb;
    for (var g = 0u; g < wp.cq_in; g++) {
        let vy = a * wp.cq_in + g;
        let k = 4u * g;
        let u00 = textureLoad(u_tex, vec2<u32>(ux, k), 0);
        let u01 = textureLoad(u_tex, vec2<u32>(ux, k + 1u), 0);
        let u02 = textureLoad(u_tex, vec2<u32>(ux, k + 2u), 0);
        let u03 = textureLoad(u_tex, vec2<u32>(ux, k + 3u), 0);
        let u10 = textureLoad(u_tex, vec2<u32>(ux + 1u, k), 0);
        let u11 = textureLoad(u_tex, vec2<u32>(ux + 1u, k + 1u), 0);
        let u12 = textureLoad(u_tex, vec2<u32>(ux + 1u, k + 2u), 0);
        let u13 = textureLoad(u_tex, vec2<u32>(ux + 1u, k + 3u), 0);
        let v0 = textureLoad(v_tex, vec2<u32>(t0, vy), 0);
        lo[0] += quad_dot(v0, u00, u01, u02, u03); lo[1] += quad_dot(v0, u10, u11, u12, u13);
        let v1 = textureLoad(v_tex, vec2<u32>(t0 + 1u, vy), 0);
        lo[2] += quad_dot(v1, u00, u01, u02, u03); lo[3] += quad_dot(v1, u10, u11, u12, u13);
        let v2 = textureLoad(v_tex, vec2<u32>(t0 + 2u, vy), 0);
        lo[4] += quad_dot(v2, u00, u01, u02, u03); lo[5] += quad_dot(v2, u10, u11, u12, u13);
        let v3 = textureLoad(v_tex, vec2<u32>(t0 + 3u, vy), 0);
        lo[6] += quad_dot(v3, u00, u01, u02, u03); lo[7] += quad_dot(v3, u10, u11, u12, u13);
        let v4 = textureLoad(v_tex, vec2<u32>(t0 + 4u, vy), 0);
        lo[8] += quad_dot(v4, u00, u01, u02, u03); lo[9] += quad_dot(v4, u10, u11, u12, u13);
        let v5 = textureLoad(v_tex, vec2<u32>(t0 + 5u, vy), 0);
        lo[10] += quad_dot(v5, u00, u01, u02, u03); lo[11] += quad_dot(v5, u10, u11, u12, u13);
        let v6 = textureLoad(v_tex, vec2<u32>(t0 + 6u, vy), 0);
        lo[12] += quad_dot(v6, u00, u01, u02, u03); lo[13] += quad_dot(v6, u10, u11, u12, u13);
        let v7 = textureLoad(v_tex, vec2<u32>(t0 + 7u, vy), 0);
        lo[14] += quad_dot(v7, u00, u01, u02, u03); lo[15] += quad_dot(v7, u10, u11, u12, u13);
        let v8 = textureLoad(v_tex, vec2<u32>(t0 + 8u, vy), 0);
        hi[0] += quad_dot(v8, u00, u01, u02, u03); hi[1] += quad_dot(v8, u10, u11, u12, u13);
        let v9 = textureLoad(v_tex, vec2<u32>(t0 + 9u, vy), 0);
        hi[2] += quad_dot(v9, u00, u01, u02, u03); hi[3] += quad_dot(v9, u10, u11, u12, u13);
        let v10 = textureLoad(v_tex, vec2<u32>(t0 + 10u, vy), 0);
        hi[4] += quad_dot(v10, u00, u01, u02, u03); hi[5] += quad_dot(v10, u10, u11, u12, u13);
        let v11 = textureLoad(v_tex, vec2<u32>(t0 + 11u, vy), 0);
        hi[6] += quad_dot(v11, u00, u01, u02, u03); hi[7] += quad_dot(v11, u10, u11, u12, u13);
        let v12 = textureLoad(v_tex, vec2<u32>(t0 + 12u, vy), 0);
        hi[8] += quad_dot(v12, u00, u01, u02, u03); hi[9] += quad_dot(v12, u10, u11, u12, u13);
        let v13 = textureLoad(v_tex, vec2<u32>(t0 + 13u, vy), 0);
        hi[10] += quad_dot(v13, u00, u01, u02, u03); hi[11] += quad_dot(v13, u10, u11, u12, u13);
        let v14 = textureLoad(v_tex, vec2<u32>(t0 + 14u, vy), 0);
        hi[12] += quad_dot(v14, u00, u01, u02, u03); hi[13] += quad_dot(v14, u10, u11, u12, u13);
        let v15 = textureLoad(v_tex, vec2<u32>(t0 + 15u, vy), 0);
        hi[14] += quad_dot(v15, u00, u01, u02, u03); hi[15] += quad_dot(v15, u10, u11, u12, u13);
    }
    store_half(ux, t0, &lo);
    store_half(ux, t0 + 8u, &hi);
}
