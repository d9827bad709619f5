// conv2d/winograd/input.wgsl — the input transform V = Bᵀ d B: entry point
// conv2d_winograd_input. One thread per (tile t of the part, quad g of input channels): the
// α × α patch of the tile for channels 4g .. 4g+3, fetched from the staged input (zero
// padding and ReLU on load already applied) a texel a pixel, transformed side by side as
// vec4s, written as α² texels of V (layouts: conv2d/winograd/common.wgsl). Padding tiles
// (t ≥ real_tiles) are written as zeros.
//
// Contract: binding 6: X, the part's images staged (conv2d/texture/stage.wgsl, rows =
// wp.rows a plane, tiles_h * m + 2 rows and tiles_w * m + 2 columns of the padded image);
// binding 12: V. count = tiles * cq_in threads.

@group(0) @binding(6) var x_tex: texture_2d<f32>;
@group(0) @binding(12) var v_tex: texture_storage_2d<rgba32float, write>;

// Bᵀ d for one column d (α values down the patch).
fn bt_col(d: array<vec4<f32>, 6>) -> array<vec4<f32>, 6> {
    var r: array<vec4<f32>, 6>;
    if WINO_M == 4u {
        // Points 0, ±3/2, ±2/3 (common.wgsl says why).
        let a = d[4] - (4.0 / 9.0) * d[2];
        let b = (2.0 / 3.0) * d[1] - 1.5 * d[3];
        let c = d[4] - 2.25 * d[2];
        let e = 1.5 * d[1] - (2.0 / 3.0) * d[3];
        r[0] = d[0] - (97.0 / 36.0) * d[2] + d[4];
        r[1] = a - b;
        r[2] = a + b;
        r[3] = c - e;
        r[4] = c + e;
        r[5] = d[1] - (97.0 / 36.0) * d[3] + d[5];
    } else {
        r[0] = d[0] - d[2];
        r[1] = d[1] + d[2];
        r[2] = d[2] - d[1];
        r[3] = d[1] - d[3];
    }
    return r;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_winograd_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= wp.count { return; }
    let g = i % wp.cq_in;
    let t = i / wp.cq_in;
    if t >= wp.real_tiles {
        for (var a = 0u; a < ALPHA2; a++) {
            textureStore(v_tex, vec2<u32>(t, a * wp.cq_in + g), vec4<f32>(0.0));
        }
        return;
    }
    let pos = tile_pos(t);
    let top = ((pos.x - wp.n0) * wp.cq_in + g) * wp.rows + pos.y * WINO_M;
    let left = pos.z * WINO_M;
    // Bᵀ d column by column: cols[c] = Bᵀ (column c of the patch).
    var cols: array<array<vec4<f32>, 6>, 6>;
    for (var c = 0u; c < ALPHA; c++) {
        var d: array<vec4<f32>, 6>;
        for (var r = 0u; r < ALPHA; r++) {
            d[r] = textureLoad(x_tex, vec2<u32>(left + c, top + r), 0);
        }
        cols[c] = bt_col(d);
    }
    // (Bᵀ d) B: row r of the result is Bᵀ applied across row r of Bᵀ d.
    for (var r = 0u; r < ALPHA; r++) {
        var row: array<vec4<f32>, 6>;
        for (var c = 0u; c < ALPHA; c++) { row[c] = cols[c][r]; }
        let v = bt_col(row);
        for (var c = 0u; c < ALPHA; c++) {
            textureStore(v_tex, vec2<u32>(t, (r * ALPHA + c) * wp.cq_in + g), v[c]);
        }
    }
}
