// conv2d_common.wgsl — the arguments shared by the three conv2d kernels (prepended to each).
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
    blocks: u32,       // register-blocked kernels: 8-channel blocks per pixel block
    mask_output: u32,  // register-blocked kernels: zero results where mask (view gx) <= 0
    tex_rows: u32,     // texture kernels: rows of one (image, 4-channel group) plane of x's texture
    tex_left: u32,     // strided input gradient: zero columns before grad_out in its texture
    tex_blocks: u32,   // strided input gradient: 8-pixel blocks per row and stride class
    vec4_ok: u32,      // 1: the views allow vec4 access (8x8 kernels: whole-block stores, ow % 8 = 0;
                       // bias gradient: 4-aligned planes)
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
