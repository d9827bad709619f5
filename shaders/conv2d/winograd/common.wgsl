// conv2d/winograd/common.wgsl — Winograd F(m×m, 3×3) for 3×3 convolutions of stride 1 and
// dilation 1 (groups = 1, any zero padding): the output in m × m tiles, each from an
// α × α input patch (α = m + 2), as Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A. m = WINO_M: 4
// (F(4×4, 3×3): 36 products a tile for 144 direct ones, 4× fewer multiplies) or 2
// (F(2×2, 3×3): 16 for 36, 2.25× fewer, a tenth of the rounding). Interpolation points
// 0, ±1, ±2 (Lavin & Gray).
//
// Four passes (src/ops/conv2d/family/winograd/): the filter transform U = G g Gᵀ; the input
// transform V = Bᵀ d B, from the input staged as the texture family stages it (zero padding
// and ReLU on load applied, four channels a texel); one GEMM per position a of the α × α
// products, M[a] = V[a] · U[a] over the input channels (register-blocked, every operand
// fetched four values a texel); and the output transform Y = Aᵀ M A through the store
// epilogue. U, V and M are rgba32float textures (on a CPU adapter a texel fetch is one
// vectorised gather, a storage-buffer load a loop over the SIMD lanes). Prepended after
// conv2d/common.wgsl.
//
// The batch's tiles are numbered image by image, row-major within an image; a launch takes
// the tiles of a part of the images (t0 .. t0 + real_tiles, images n0 ..). Layouts (t: a
// tile of the part, padded to a multiple of 16; g: a quad of input channels, cq_in of them;
// cq = cout_pad / 4 quads of output channels):
//   X: texel (col, ((n - n0) * cq_in + g) * rows + row): conv2d/texture/stage.wgsl's staging,
//      the patch of tile (ty, tx) at rows ty * m .., columns tx * m ..
//   U: texel (a * cq + co / 4, k) holds output channels co .. co+3 of input channel k (zero
//      past cin)
//   V: texel (t, a * cq_in + g) holds input channels 4g .. 4g+3 of tile t
//   M: texel (t, a * cq + co / 4) holds output channels co .. co+3 of tile t

override WINO_M: u32 = 4u;               // output tile side: 4, or 2
override ALPHA: u32 = WINO_M + 2u;       // input patch side
override ALPHA2: u32 = ALPHA * ALPHA;    // products a tile

// Where a launch's tiles and channels lie (binding 10; the Conv args at 0 give the problem).
struct Wino {
    tiles_h: u32,    // tiles per image, down
    tiles_w: u32,    // and across
    tiles: u32,      // tiles of this part, a multiple of 16
    real_tiles: u32, // of which real (the rest are padding)
    cq_in: u32,      // quads of input channels
    cout_pad: u32,   // output channels rounded up to 8
    transpose: u32,  // taps: the input gradient's transposed, flipped kernel
    count: u32,      // threads doing work
    t0: u32,         // the part's first tile, counted over the whole batch
    n0: u32,         // the part's first image (image 0 of the staged X)
    rows: u32,       // X: texture rows per (image, channel quad) plane
    _pad: u32,
}

@group(0) @binding(10) var<uniform> wp: Wino;

// (image, tile row, tile column) of tile t of the part.
fn tile_pos(t: u32) -> vec3<u32> {
    let per_image = wp.tiles_h * wp.tiles_w;
    let g = wp.t0 + t;
    return vec3<u32>(g / per_image, (g % per_image) / wp.tiles_w, g % wp.tiles_w);
}

// Whether each component is finite, by its bits (drivers may assume floats are finite and
// fold comparisons; integer tests cannot be folded).
fn is_finite4(v: vec4<f32>) -> vec4<bool> {
    let e = vec4<u32>(0x7f800000u);
    return (bitcast<vec4<u32>>(v) & e) != e;
}
