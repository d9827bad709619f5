// conv2d/partials.wgsl — bindings and helpers of the weight-gradient kernels of the
// register-blocked, pixel and texture families (prepended to each): which block of the
// gradient a thread owns, and the stores of its partial sums.
//
// Bindings: 0: Conv args, 1: x (input view), 2: grad_out (view y), 3: partial
// [splits][cout*cin*kh*kw] (the gradient itself when there is one split).

@group(0) @binding(0) var<uniform> p: Conv;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> grad_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;

// Offsets of channels first .. first + 3 (clamped into range: clamped lanes are never
// stored) in a tensor whose channels are `plane` elements apart.
fn channel_offsets(first: u32, channels: u32, plane: u32) -> vec4<u32> {
    return min(vec4<u32>(first) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(channels - 1u)) * plane;
}

// The block of the weight gradient that thread (or workgroup) t owns: a co_block (co) ×
// ci_block (ci) block of one tap over one split of the reduction; ci block fastest, then co block, tap.
// Row-split kernels (`per_split` = output rows a split) reduce over rows [row0, row1).
struct WeightBlock { cib: u32, cob: u32, tap: u32, split: u32, ky: u32, kx: u32, row0: u32, row1: u32 }

fn weight_block(t: u32, co_block: u32, ci_block: u32) -> WeightBlock {
    let blocks_ci = (p.cin + ci_block - 1u) / ci_block;
    let blocks_co = (p.cout + co_block - 1u) / co_block;
    let taps = p.kh * p.kw;
    let tap = (t / (blocks_ci * blocks_co)) % taps;
    let split = t / (blocks_ci * blocks_co * taps);
    let row0 = split * p.per_split;
    return WeightBlock(t % blocks_ci, (t / blocks_ci) % blocks_co, tap, split, tap / p.kw, tap % p.kw,
                       row0, min(row0 + p.per_split, p.n * p.oh));
}

// Stores an 8 (co) × 8 (ci) block of one tap, acc[2*j + h] holding co0 + j's channels
// ci0 + 4*h .. +3. Constant accumulator indices only (see store_output4 in
// conv2d/store.wgsl).
fn store_partial_8x8(base: u32, co0: u32, ci0: u32, tap: u32, acc: ptr<function, array<vec4<f32>, 16>>) {
    store_partial8(base, co0, ci0, tap, (*acc)[0], (*acc)[1]);
    store_partial8(base, co0 + 1u, ci0, tap, (*acc)[2], (*acc)[3]);
    store_partial8(base, co0 + 2u, ci0, tap, (*acc)[4], (*acc)[5]);
    store_partial8(base, co0 + 3u, ci0, tap, (*acc)[6], (*acc)[7]);
    store_partial8(base, co0 + 4u, ci0, tap, (*acc)[8], (*acc)[9]);
    store_partial8(base, co0 + 5u, ci0, tap, (*acc)[10], (*acc)[11]);
    store_partial8(base, co0 + 6u, ci0, tap, (*acc)[12], (*acc)[13]);
    store_partial8(base, co0 + 7u, ci0, tap, (*acc)[14], (*acc)[15]);
}

// Stores partial[base + (co, ci, tap)] for ci = ci0 .. ci0+7 from v0, v1; channels past
// cout or cin are skipped.
fn store_partial8(base: u32, co: u32, ci0: u32, tap: u32, v0: vec4<f32>, v1: vec4<f32>) {
    store_partial4(base, co, ci0, tap, v0);
    store_partial4(base, co, ci0 + 4u, tap, v1);
}

// Stores partial[base + (co, ci, tap)] for ci = ci0 .. ci0+3 from v, skipping channels past
// cout or cin.
fn store_partial4(base: u32, co: u32, ci0: u32, tap: u32, v: vec4<f32>) {
    if co >= p.cout { return; }
    let taps = p.kh * p.kw;
    for (var k = 0u; k < 4u; k++) {
        let ci = ci0 + k;
        if ci >= p.cin { return; }
        partial[base + (co * p.cin + ci) * taps + tap] = v[k];
    }
}
