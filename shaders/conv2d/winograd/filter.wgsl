// conv2d/winograd/filter.wgsl — the filter transform U = G g Gᵀ: entry point
// conv2d_winograd_filter. One thread per (input channel k, quad of output channels q):
// the 3 × 3 kernels of output channels 4q .. 4q+3 (zero past cout, and for k past cin),
// transformed side by side as vec4s, written as α² texels of U (layout:
// conv2d/winograd/common.wgsl).
//
// Contract: binding 2: the weights as conv2d/winograd/taps.wgsl reads them (transposed and
// flipped for an input gradient). count = 4 * cq_in * cout_pad / 4 threads.

@group(0) @binding(0) var<uniform> p: Conv;
@group(0) @binding(11) var u_tex: texture_storage_2d<rgba32float, write>;

// G g for one column of g (g0, g1, g2 down the kernel), α values.
fn g_col(g0: vec4<f32>, g1: vec4<f32>, g2: vec4<f32>) -> array<vec4<f32>, 6> {
    var u: array<vec4<f32>, 6>;
    if WINO_M == 4u {
        // Points 0, ±3/2, ±2/3 (common.wgsl says why).
        let even = g0 * (8.0 / 65.0) + g2 * (18.0 / 65.0);
        let odd = g1 * (12.0 / 65.0);
        let even2 = g0 * (-81.0 / 130.0) + g2 * (-18.0 / 65.0);
        let odd2 = g1 * (27.0 / 65.0);
        u[0] = g0;
        u[1] = even + odd;
        u[2] = even - odd;
        u[3] = even2 - odd2;
        u[4] = even2 + odd2;
        u[5] = g2;
    } else {
        u[0] = g0;
        u[1] = (g0 + g1 + g2) * 0.5;
        u[2] = (g0 - g1 + g2) * 0.5;
        u[3] = g2;
    }
    return u;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_winograd_filter(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= wp.count { return; }
    let cq = wp.cout_pad / 4u;
    let q = i % cq;
    let k = i / cq;
    // The kernels of the quad's four channels, tap by tap (zero past cout).
    var g: array<vec4<f32>, 9>;
    for (var t = 0u; t < 9u; t++) {
        var v = vec4<f32>(0.0);
        for (var j = 0u; j < 4u; j++) {
            let co = 4u * q + j;
            if co < p.cout && k < p.cin { v[j] = tap(co, k, t / 3u, t % 3u); }
        }
        g[t] = v;
    }
    // G g column by column (c_j[r] = (G g)[r][j]), then (G g) Gᵀ row by row: G applied to
    // row r of G g gives row r of U.
    let c0 = g_col(g[0], g[3], g[6]);
    let c1 = g_col(g[1], g[4], g[7]);
    let c2 = g_col(g[2], g[5], g[8]);
    for (var r = 0u; r < ALPHA; r++) {
        let row = g_col(c0[r], c1[r], c2[r]);
        for (var c = 0u; c < ALPHA; c++) {
            let a = r * ALPHA + c;
            textureStore(u_tex, vec2<i32>(i32(a * cq + q), i32(k)), row[c]);
        }
    }
}
