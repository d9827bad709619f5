// conv2d/texture/staged.wgsl — prepended to every texture-family conv kernel.
//
// Where the staged operands lie in their textures (binding 10; the Conv args at 0 describe
// the problem): `rows` texture rows per (image, 4-channel group) plane of the staged input,
// `left` zero columns before it and `blocks` pixel blocks per row and stride class (the
// strided input gradient only).
struct Staged {
    rows: u32,
    left: u32,
    blocks: u32,
    _pad: u32,
}

@group(0) @binding(10) var<uniform> staged: Staged;
