// conv2d/texture/common.wgsl — what the texture family's forward and input-gradient kernels
// share (prepended to each, after conv2d/store.wgsl): the staged operands' bindings and the
// reduction steps that read them. 6: x_tex — the input staged by conv2d/texture/stage.wgsl;
// 7: w_tex — the weights staged by conv2d_weight_layout_texture (conv2d/pack.wgsl).

@group(0) @binding(6) var x_tex: texture_2d<f32>;
@group(0) @binding(7) var w_tex: texture_2d<f32>;


// One reduction step of the texture kernels: input texels (c + q*s, row) for the block's
// pixels q (4 channels each) times weight rows wr .. wr+3 (texels wc, wc+1: 8 output
// channels): pixels 0..7 into lo, and with `both` (a constant at every call) 8..15 into hi.
fn texture_step(lo: ptr<function, array<vec4<f32>, 16>>, hi: ptr<function, array<vec4<f32>, 16>>, both: bool,
                c: i32, s: i32, row: i32, wc: i32, wr: i32) {
    let x0 = textureLoad(x_tex, vec2<i32>(c, row), 0);
    let x1 = textureLoad(x_tex, vec2<i32>(c + s, row), 0);
    let x2 = textureLoad(x_tex, vec2<i32>(c + 2 * s, row), 0);
    let x3 = textureLoad(x_tex, vec2<i32>(c + 3 * s, row), 0);
    let x4 = textureLoad(x_tex, vec2<i32>(c + 4 * s, row), 0);
    let x5 = textureLoad(x_tex, vec2<i32>(c + 5 * s, row), 0);
    let x6 = textureLoad(x_tex, vec2<i32>(c + 6 * s, row), 0);
    let x7 = textureLoad(x_tex, vec2<i32>(c + 7 * s, row), 0);
    var y0 = vec4<f32>(0.0); var y1 = vec4<f32>(0.0); var y2 = vec4<f32>(0.0); var y3 = vec4<f32>(0.0);
    var y4 = vec4<f32>(0.0); var y5 = vec4<f32>(0.0); var y6 = vec4<f32>(0.0); var y7 = vec4<f32>(0.0);
    if both {
        y0 = textureLoad(x_tex, vec2<i32>(c + 8 * s, row), 0);
        y1 = textureLoad(x_tex, vec2<i32>(c + 9 * s, row), 0);
        y2 = textureLoad(x_tex, vec2<i32>(c + 10 * s, row), 0);
        y3 = textureLoad(x_tex, vec2<i32>(c + 11 * s, row), 0);
        y4 = textureLoad(x_tex, vec2<i32>(c + 12 * s, row), 0);
        y5 = textureLoad(x_tex, vec2<i32>(c + 13 * s, row), 0);
        y6 = textureLoad(x_tex, vec2<i32>(c + 14 * s, row), 0);
        y7 = textureLoad(x_tex, vec2<i32>(c + 15 * s, row), 0);
    }
    texture_channels(lo, hi, both, wc, wr, x0, x1, x2, x3, x4, x5, x6, x7, y0, y1, y2, y3, y4, y5, y6, y7);
}

// The four input channels of a step: pixels 0..7 (x0..x7, 4 channels each) into lo and,
// with `both`, pixels 8..15 (y0..y7) into hi, times weight rows wr .. wr+3.
fn texture_channels(lo: ptr<function, array<vec4<f32>, 16>>, hi: ptr<function, array<vec4<f32>, 16>>, both: bool,
                    wc: i32, wr: i32, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>,
                    x4: vec4<f32>, x5: vec4<f32>, x6: vec4<f32>, x7: vec4<f32>,
                    y0: vec4<f32>, y1: vec4<f32>, y2: vec4<f32>, y3: vec4<f32>,
                    y4: vec4<f32>, y5: vec4<f32>, y6: vec4<f32>, y7: vec4<f32>) {
    texture_channel(lo, hi, both, wc, wr, vec4<f32>(x0.x, x1.x, x2.x, x3.x), vec4<f32>(x4.x, x5.x, x6.x, x7.x),
                    vec4<f32>(y0.x, y1.x, y2.x, y3.x), vec4<f32>(y4.x, y5.x, y6.x, y7.x));
    texture_channel(lo, hi, both, wc, wr + 1, vec4<f32>(x0.y, x1.y, x2.y, x3.y), vec4<f32>(x4.y, x5.y, x6.y, x7.y),
                    vec4<f32>(y0.y, y1.y, y2.y, y3.y), vec4<f32>(y4.y, y5.y, y6.y, y7.y));
    texture_channel(lo, hi, both, wc, wr + 2, vec4<f32>(x0.z, x1.z, x2.z, x3.z), vec4<f32>(x4.z, x5.z, x6.z, x7.z),
                    vec4<f32>(y0.z, y1.z, y2.z, y3.z), vec4<f32>(y4.z, y5.z, y6.z, y7.z));
    texture_channel(lo, hi, both, wc, wr + 3, vec4<f32>(x0.w, x1.w, x2.w, x3.w), vec4<f32>(x4.w, x5.w, x6.w, x7.w),
                    vec4<f32>(y0.w, y1.w, y2.w, y3.w), vec4<f32>(y4.w, y5.w, y6.w, y7.w));
}

// One input channel of a texture step: weight row wr (8 output channels) times pixels
// 0..7 (a0, a1) into lo and, with `both`, pixels 8..15 (b0, b1) into hi.
fn texture_channel(lo: ptr<function, array<vec4<f32>, 16>>, hi: ptr<function, array<vec4<f32>, 16>>, both: bool,
                   wc: i32, wr: i32, a0: vec4<f32>, a1: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>) {
    let w0 = textureLoad(w_tex, vec2<i32>(wc, wr), 0);
    let w1 = textureLoad(w_tex, vec2<i32>(wc + 1, wr), 0);
    outer_8x8(lo, a0, a1, w0, w1);
    if both { outer_8x8(hi, b0, b1, w0, w1); }
}
