// avgpool.wgsl — AvgPool2d (kernel k × k, stride s, no padding, floor mode) as PyTorch
// computes it, and its gradient, on NCHW views.
//
// Contract (Pool args at binding 0; x and grad_x of shape [n, c, h, w], out and grad_out of
// [n, c, oh, ow] with oh = (h - k) / s + 1; a view v's element (n, c, y, x) lives at
// v_off + n * v_bs + (c * rows + y) * cols + x):
//   avgpool_forward:  out[n, c, oy, ox] (=|+=) Σ_{ky,kx < k} x[n, c, oy·s + ky, ox·s + kx] / k²
//                                                   bindings 1: x, 2: out
//   avgpool_backward: grad_x[n, c, iy, ix] (=|+=) Σ over the windows that hold (iy, ix) of
//                     grad_out[n, c, oy, ox] / k² (a gather: no two threads write one element)
//                                                   bindings 1: grad_out, 2: grad_x
// One thread per written element; windows are at most k × k, so loops are short.

struct Pool {
    n: u32, c: u32, h: u32, w: u32,
    oh: u32, ow: u32, k: u32, s: u32,
    src_off: u32, src_bs: u32,     // the view read (x, or grad_out)
    dst_off: u32, dst_bs: u32,     // the view written (out, or grad_x)
    accumulate: u32,
    _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Pool;
@group(0) @binding(1) var<storage, read_write> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

fn write_dst(o: u32, v: f32) {
    if p.accumulate != 0u { dst[o] += v; } else { dst[o] = v; }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn avgpool_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    let plane = p.oh * p.ow;
    if i >= p.n * p.c * plane { return; }
    let nc = i / plane;               // n * c + c
    let oy = (i % plane) / p.ow;
    let ox = i % p.ow;
    let img = nc / p.c;
    let ch = nc % p.c;
    let base = p.src_off + img * p.src_bs + ch * p.h * p.w;
    var acc = 0.0;
    for (var ky = 0u; ky < p.k; ky++) {
        let row = base + (oy * p.s + ky) * p.w + ox * p.s;
        for (var kx = 0u; kx < p.k; kx++) {
            acc += src[row + kx];
        }
    }
    write_dst(p.dst_off + img * p.dst_bs + ch * plane + oy * p.ow + ox, acc / f32(p.k * p.k));
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn avgpool_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    let plane = p.h * p.w;
    if i >= p.n * p.c * plane { return; }
    let nc = i / plane;
    let iy = (i % plane) / p.w;
    let ix = i % p.w;
    let img = nc / p.c;
    let ch = nc % p.c;
    // Windows oy with oy·s <= iy < oy·s + k, and oy < oh (rows past the last window are
    // in none).
    let oy0 = select(0u, (iy + p.s - p.k) / p.s, iy + 1u > p.k);
    let ox0 = select(0u, (ix + p.s - p.k) / p.s, ix + 1u > p.k);
    let oy1 = min(iy / p.s + 1u, p.oh);
    let ox1 = min(ix / p.s + 1u, p.ow);
    let base = p.src_off + img * p.src_bs + ch * p.oh * p.ow;
    var acc = 0.0;
    for (var oy = oy0; oy < oy1; oy++) {
        for (var ox = ox0; ox < ox1; ox++) {
            acc += src[base + oy * p.ow + ox];
        }
    }
    write_dst(p.dst_off + img * p.dst_bs + ch * plane + iy * p.w + ix, acc / f32(p.k * p.k));
}
