// conv2d/scatter.wgsl — the input gradient of a 1×1 convolution of stride (sy, sx) and no
// padding, from the stride-1 problem's: entry point conv2d_scatter_strided. Only input
// pixels on the stride's grid were read by the forward, so
//   grad_x[n, c, iy, ix] (=|+=) (iy % sy == 0 && ix % sx == 0 ? g[n, c, iy / sy, ix / sx] : 0)
//                               masked by x > 0 where `mask` (a fused ReLU's gradient)
// with g [N, C, OH, OW] the input gradient of the same conv at stride 1 on the strided
// pixels (a pointwise GEMM the families run well). Pixels off the grid get exactly 0, as
// PyTorch's sum of no terms; NaN passes the mask as in relu.wgsl. One thread per element.
//
// Contract: binding 0: Scatter; 1: g (contiguous, read); 2: x (a view, read where `mask`);
// 3: grad_x (a view). count = N * C * H * W.

struct Scatter {
    count: u32,
    c: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    sy: u32,
    sx: u32,
    accumulate: u32,
    mask: u32,
    x_off: u32,
    x_bs: u32,
    gx_off: u32,
    gx_bs: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> sc: Scatter;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad_x: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_scatter_strided(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if i >= sc.count { return; }
    let sample = sc.c * sc.h * sc.w;
    let n = i / sample;
    let r = i % sample;
    let ch = r / (sc.h * sc.w);
    let pix = r % (sc.h * sc.w);
    let iy = pix / sc.w;
    let ix = pix % sc.w;
    var v = 0.0;
    if iy % sc.sy == 0u && ix % sc.sx == 0u {
        v = g[((n * sc.c + ch) * sc.oh + iy / sc.sy) * sc.ow + ix / sc.sx];
    }
    if sc.mask != 0u && !relu_grad_passes(x[sc.x_off + n * sc.x_bs + r]) {
        v = 0.0;
    }
    let o = sc.gx_off + n * sc.gx_bs + r;
    if sc.accumulate != 0u { grad_x[o] += v; } else { grad_x[o] = v; }
}
