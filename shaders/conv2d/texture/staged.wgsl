// conv2d/texture/staged.wgsl — prepended to every texture-family conv kernel.
//
// Where the staged operands lie in their textures (binding 10; the Conv args at 0 describe
// the problem): `rows` texture rows per (image, 4-channel group) plane of the staged input,
// `left` zero columns before it and `blocks` pixel blocks per row and stride class (the
// strided input gradient only); the forward and input-gradient kernels read weight rows
// (tap * w_groups + g) * 4 + w_c0 + k for the input's group g, channel k: the weights are
// staged whole (w_groups 4-channel groups a tap) while the input may be a part of its
// channels, from channel w_c0 on, staged on its own.
struct Staged {
    rows: u32,
    left: u32,
    blocks: u32,
    w_groups: u32,
    w_c0: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(10) var<uniform> staged: Staged;
