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
}
