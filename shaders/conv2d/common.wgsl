// conv2d/common.wgsl — the arguments every conv2d kernel of every family reads (binding 0),
// and the outer product of the register-blocked ones; prepended to each conv kernel file.
//
// PyTorch semantics: cross-correlation, zero padding, stride, dilation and groups per axis.
// Activations are strided NCHW views (element (n, c, y, x) of view v at
// v_off + n * v_bs + (c * H + y) * W + x); weights are contiguous OIHW
// [cout, cin / groups, kh, kw]; bias is [cout].
struct Conv {
    n: u32, cin: u32, h: u32, w: u32,          // input
    cout: u32, oh: u32, ow: u32, groups: u32,  // output, groups
    kh: u32, kw: u32, sh: u32, sw: u32,        // kernel, stride
    ph: u32, pw: u32, dh: u32, dw: u32,        // padding, dilation
    x_off: u32, x_bs: u32,                     // input view
    y_off: u32, y_bs: u32,                     // output view (forward) / grad_output view
    gx_off: u32, gx_bs: u32,                   // grad_input view
    count: u32,                                // threads doing work
    has_bias: u32,
    relu_input: u32,   // 1: the forward applied ReLU to x as it loaded it (dense block)
    accumulate: u32,   // 1: add into the destination instead of overwriting it
    blocks: u32,       // GEMM-shaped forward kernels: output-channel blocks per pixel block
    mask_output: u32,  // GEMM-shaped forward kernels: zero results where mask (view gx) <= 0
    per_split: u32,    // weight-gradient kernels: units of the reduction one split sums
    vec4_ok: u32,      // 1: out and mask allow whole-block vec4 stores (ow % 8 = 0, 4-aligned views)
    _pad0: u32, _pad1: u32,
}

// The 8 × 8 outer product at the heart of the register-blocked kernels:
// acc[2*j + h] += a[j] * b_h, with a = (a0, a1) eight scalars and b_0, b_1 two vec4s.
fn outer_8x8(acc: ptr<function, array<vec4<f32>, 16>>, a0: vec4<f32>, a1: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>) {
    (*acc)[0] = fma(vec4<f32>(a0.x), b0, (*acc)[0]);   (*acc)[1] = fma(vec4<f32>(a0.x), b1, (*acc)[1]);
    (*acc)[2] = fma(vec4<f32>(a0.y), b0, (*acc)[2]);   (*acc)[3] = fma(vec4<f32>(a0.y), b1, (*acc)[3]);
    (*acc)[4] = fma(vec4<f32>(a0.z), b0, (*acc)[4]);   (*acc)[5] = fma(vec4<f32>(a0.z), b1, (*acc)[5]);
    (*acc)[6] = fma(vec4<f32>(a0.w), b0, (*acc)[6]);   (*acc)[7] = fma(vec4<f32>(a0.w), b1, (*acc)[7]);
    (*acc)[8] = fma(vec4<f32>(a1.x), b0, (*acc)[8]);   (*acc)[9] = fma(vec4<f32>(a1.x), b1, (*acc)[9]);
    (*acc)[10] = fma(vec4<f32>(a1.y), b0, (*acc)[10]); (*acc)[11] = fma(vec4<f32>(a1.y), b1, (*acc)[11]);
    (*acc)[12] = fma(vec4<f32>(a1.z), b0, (*acc)[12]); (*acc)[13] = fma(vec4<f32>(a1.z), b1, (*acc)[13]);
    (*acc)[14] = fma(vec4<f32>(a1.w), b0, (*acc)[14]); (*acc)[15] = fma(vec4<f32>(a1.w), b1, (*acc)[15]);
}
