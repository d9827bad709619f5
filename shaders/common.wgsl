// common.wgsl — prepended to every kernel file.
//
// Every kernel runs in workgroups of WORKGROUP_SIZE threads: a pipeline-overridable constant
// that the host sets when it creates each pipeline (`PIPELINE_CONSTANTS` in src/gpu.rs, the
// one place the number is written). Large dispatches are laid out by the host as a 2-D or
// 3-D grid of workgroups (each dimension at most the device's
// max_compute_workgroups_per_dimension); these helpers rebuild the linear indices.

override WORKGROUP_SIZE: u32;

// Linear index of a workgroup in a grid of `nwg` workgroups.
fn workgroup_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.z * nwg.y + wid.y) * nwg.x + wid.x;
}

// Linear index of a thread in a grid of 64-thread workgroups.
fn thread_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return workgroup_index(wid, nwg) * WORKGROUP_SIZE + lid;
}

// Elementwise kernels declare every storage binding read_write, inputs too: wgpu refuses one
// buffer bound both read-only and writable in a dispatch, and disjoint channel views of one
// buffer (a dense block's shared feature map) are legitimate inputs and outputs together.

// Arguments of every elementwise kernel: `count` elements of tensors with `sample` elements
// per batch item; view k's element i lives at off_k + (i / sample) * bs_k + i % sample.
struct Elementwise {
    count: u32,
    sample: u32,
    accumulate: u32, // 1: the destination is added to (dst += value), 0: overwritten
    _pad: u32,
    off0: u32, bs0: u32,
    off1: u32, bs1: u32,
    off2: u32, bs2: u32,
    _pad1: u32, _pad2: u32,
}

fn view_index(i: u32, sample: u32, off: u32, bs: u32) -> u32 {
    return off + (i / sample) * bs + i % sample;
}

// Whether v is NaN, by its bits: GL drivers may assume floats are never NaN and fold a
// comparison-based ReLU into max(v, 0), which drops NaN; integer tests cannot be folded.
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

fn is_nan4(v: vec4<f32>) -> vec4<bool> {
    return (bitcast<vec4<u32>>(v) & vec4<u32>(0x7fffffffu)) > vec4<u32>(0x7f800000u);
}

// ReLU as PyTorch computes it: negatives become 0 and NaN stays NaN.
fn relu1(v: f32) -> f32 {
    return select(select(v, 0.0, v < 0.0), v, is_nan(v));
}

fn relu4(v: vec4<f32>) -> vec4<f32> {
    return select(select(v, vec4<f32>(0.0), v < vec4<f32>(0.0)), v, is_nan4(v));
}

// A loaded activation with a conv's optional ReLU-on-load (`on`); NaN stays NaN.
fn relu_if(v: f32, on: bool) -> f32 {
    return select(v, relu1(v), on);
}

fn relu_if4(v: vec4<f32>, on: bool) -> vec4<f32> {
    return select(v, relu4(v), on);
}

// Whether ReLU's gradient passes at input x: x > 0 or x NaN (PyTorch's threshold_backward
// zeroes only where x <= 0).
fn relu_grad_passes(x: f32) -> bool {
    return x > 0.0 || is_nan(x);
}

fn relu_grad_passes4(x: vec4<f32>) -> vec4<bool> {
    return (x > vec4<f32>(0.0)) | is_nan4(x);
}
