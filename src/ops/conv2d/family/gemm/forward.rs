//! The GEMM family's forward (and stride-1 input gradient: the same kernel on the
//! transposed problem), `shaders/conv2d/gemm/forward.wgsl` with one of its two weight
//! loaders: output tiles of 128 × 128, 128 × 64 or 64 × 64 ([`forward_tiles`], measured by
//! the tuner on GPUs; unmeasured, the largest that gives two waves of an H200,
//! [`forward_tile`]), the weights packed first or read from the OIHW tensor in place — each
//! tile both ways, the family's variants ([`output_variants`]).

use crate::error::Result;
use crate::gpu::{Access, KernelSpec, Shader};
use crate::ops::conv2d::args::GemmCall;
use crate::ops::conv2d::family::pack::with_packed_weights;
use crate::record::{read, Grid, Recording};
use crate::tensor::Tensor;
#[cfg(test)]
use crate::Gpu;

use Access::{Read, Write};

const FORWARD_WGSL: Shader = wgsl!(
    "conv2d/gemm/weights_packed.wgsl",
    "conv2d/common.wgsl",
    "conv2d/gemm/geometry.wgsl",
    "conv2d/store.wgsl",
    "conv2d/gemm/forward.wgsl"
);
const FORWARD_OIHW_WGSL: Shader = wgsl!(
    "conv2d/gemm/weights_oihw.wgsl",
    "conv2d/common.wgsl",
    "conv2d/gemm/geometry.wgsl",
    "conv2d/store.wgsl",
    "conv2d/gemm/forward.wgsl"
);

/// The forward's buffers: x, the weights, then the store epilogue's bias, out, mask.
const FORWARD_BUFFERS: &[(u32, Access)] =
    &[(1, Write), (2, Read), (3, Read), (4, Write), (5, Write)];
/// `conv2d_forward_gemm`: the forward on packed weights. Launched with its tile's and the
/// geometry's constants.
pub(crate) const FORWARD: KernelSpec =
    KernelSpec::new(FORWARD_WGSL, "conv2d_forward_gemm", FORWARD_BUFFERS);
/// `conv2d_forward_gemm_oihw`: the forward reading the OIHW weights in place (no packing
/// pass). Launched with its tile's, the geometry's and the weight layout's constants.
pub(crate) const FORWARD_OIHW: KernelSpec = KernelSpec::new(
    FORWARD_OIHW_WGSL,
    "conv2d_forward_gemm_oihw",
    FORWARD_BUFFERS,
);

/// A forward output tile: `pixels` × `channels`, one 8 × 8 block per thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tile {
    pub pixels: usize,
    pub channels: usize,
}

impl Tile {
    /// Workgroups for `pixels` output pixels and `co_pad` channels.
    fn workgroups(self, pixels: usize, co_pad: usize) -> usize {
        pixels.div_ceil(self.pixels) * co_pad.div_ceil(self.channels)
    }

    /// Its override constants (`TILE_M`, `TILE_N`; the thread layout follows from them).
    fn constants(self) -> [(&'static str, f64); 2] {
        [
            ("TILE_M", self.pixels as f64),
            ("TILE_N", self.channels as f64),
        ]
    }
}

/// The forward tiles, largest first: the shader's thread layout holds for these.
pub(super) const TILES: [Tile; 3] = [
    Tile {
        pixels: 128,
        channels: 128,
    },
    Tile {
        pixels: 128,
        channels: 64,
    },
    Tile {
        pixels: 64,
        channels: 64,
    },
];

/// Workgroups that give every compute unit of a large GPU two to run: two waves of the
/// 132 SMs of the H200, the GPU this family was written for (wgpu does not report an
/// adapter's compute units). Fewer than this and SMs idle through the whole dispatch — the
/// round-1 H200 profile of ResNet-50's deep layers (98 tiles of 128 × 128 for 132 SMs).
const WAVE_WORKGROUPS: usize = 2 * 132;

/// The forward tile for `pixels` output pixels and `co_pad` channels (a multiple of 8): the
/// largest (most reuse of each staged value) that still gives [`WAVE_WORKGROUPS`], never a
/// channel tile twice the channels (128-wide tiles over 64 channels would multiply zeros
/// half the time); where none does, the one that gives the most workgroups.
pub(crate) fn forward_tile(pixels: usize, co_pad: usize) -> Tile {
    let fitting = TILES
        .into_iter()
        .filter(|t| t.channels <= co_pad.next_multiple_of(64));
    let mut smallest = TILES[TILES.len() - 1];
    for t in fitting {
        if t.workgroups(pixels, co_pad) >= WAVE_WORKGROUPS {
            return t;
        }
        smallest = t;
    }
    smallest
}

/// The forward tiles worth measuring for `pixels` output pixels and `co_pad` channels:
/// [`forward_tile`]'s choice first (what runs unmeasured), then every other tile no wider in
/// channels than the channels rounded up to 64, largest first. wgpu reports no adapter's
/// compute-unit count, so on a GPU the tuner measures these rather than trust the H200's.
pub(crate) fn forward_tiles(pixels: usize, co_pad: usize) -> Vec<Tile> {
    let rule = forward_tile(pixels, co_pad);
    let others = TILES
        .into_iter()
        .filter(|t| *t != rule && t.channels <= co_pad.next_multiple_of(64));
    std::iter::once(rule).chain(others).collect()
}

/// Where the forward kernel reads its weights from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Weights {
    /// Packed by a pass of their own first (`conv2d/pack.wgsl`; `FORWARD`): a vec4 load a
    /// row of a K slice.
    Packed,
    /// The OIHW tensor read in place (`FORWARD_OIHW`): one dispatch fewer, scalar loads.
    InPlace,
}

/// A variant of the forward kernel (and of the stride-1 input gradient's): its output tile
/// and where it reads the weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ForwardVariant {
    pub tile: Tile,
    pub weights: Weights,
}

impl std::fmt::Display for ForwardVariant {
    /// `tile 128x64`, and `, OIHW in place` where the weights are not packed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tile {}x{}", self.tile.pixels, self.tile.channels)?;
        match self.weights {
            Weights::Packed => Ok(()),
            Weights::InPlace => write!(f, ", OIHW in place"),
        }
    }
}

/// The forward variants worth measuring for a GEMM that writes an output of shape `y`
/// (NCHW) with a kernel of `taps` taps: every tile of [`forward_tiles`] on packed weights
/// (the first is what runs unmeasured), then, for kernels of more than one tap, every one
/// reading the weights in place.
///
/// A kernel of one tap (1×1) never reads its weights in place: NVIDIA's driver 580.159.04
/// crashes the process in its SPIR-V compiler (`_nv002nvvm`, inside
/// `vkCreateComputePipelines`) on the in-place loader specialised to one tap, forward and
/// input gradient alike (H200 runs of 2026-12-04; every packed variant of the same
/// problems compiled and passed). A 1×1's packing pass is a transposed copy of a weight
/// far smaller than its activations, so nothing measurable is lost.
pub(crate) fn output_variants(y: [usize; 4], taps: usize) -> Vec<ForwardVariant> {
    let tiles = forward_tiles(y[0] * y[2] * y[3], y[1].next_multiple_of(8));
    let loaders: &[Weights] = if taps > 1 {
        &[Weights::Packed, Weights::InPlace]
    } else {
        &[Weights::Packed]
    };
    loaders
        .iter()
        .flat_map(|&weights| {
            tiles
                .iter()
                .map(move |&tile| ForwardVariant { tile, weights })
        })
        .collect()
}

/// Records the forward kernel for `c` as variant `v`: packing the weights first, or reading
/// them in place.
pub(super) fn gemm_with(
    rec: &mut Recording<'_>,
    c: &GemmCall<'_>,
    v: ForwardVariant,
) -> Result<()> {
    match v.weights {
        Weights::Packed => with_packed_weights(rec, c.weight, c.transpose, |rec, packed| {
            launch_forward(rec, c, &FORWARD, packed, v.tile, &[])
        }),
        Weights::InPlace => {
            let layout = in_place_constants(c.weight.shape(), c.transpose);
            launch_forward(rec, c, &FORWARD_OIHW, c.weight, v.tile, &layout)
        }
    }
}

/// How `conv2d/gemm/weights_oihw.wgsl` addresses OIHW weights of shape `weight`: the
/// strides of an output and an input channel of the problem, and whether the kernel is
/// flipped (the input gradient's transposed problem, `transpose`). Never asked for a 1×1
/// kernel ([`output_variants`] says why).
pub(super) fn in_place_constants(weight: [usize; 4], transpose: bool) -> [(&'static str, f64); 3] {
    let [_, cin, kh, kw] = weight;
    debug_assert!(kh * kw > 1, "1x1 kernels are packed (see output_variants)");
    let (n_stride, c_stride) = if transpose {
        (kh * kw, cin * kh * kw)
    } else {
        (cin * kh * kw, kh * kw)
    };
    [
        ("B_N_STRIDE", n_stride as f64),
        ("B_C_STRIDE", c_stride as f64),
        ("B_FLIP", f64::from(u8::from(transpose))),
    ]
}

/// Launches a forward kernel for `c` with `tile` on `weights` (packed or OIHW, as `kernel`
/// reads them), specialised to the geometry, the tile and the weights' `layout` constants.
fn launch_forward(
    rec: &mut Recording<'_>,
    c: &GemmCall<'_>,
    kernel: &KernelSpec,
    weights: &Tensor,
    tile: Tile,
    layout: &[(&'static str, f64)],
) -> Result<()> {
    let co_pad = c.g.y[1].next_multiple_of(8);
    let pixels = c.g.y[0] * c.g.y[2] * c.g.y[3];
    let tiles = tile.workgroups(pixels, co_pad);
    let a = c.args(tiles, co_pad / 8);
    let mut constants = a.geometry_constants().to_vec();
    constants.extend(tile.constants());
    constants.extend_from_slice(layout);
    let [bias, out, mask] = c.outputs();
    let buffers = [Some(read(c.x)), Some(read(weights)), bias, out, mask];
    let grid = Grid::Workgroups(tiles as u64);
    let kernel = kernel.specialised(&constants);
    rec.launch(kernel, &[a.bytes()], &buffers, &[], grid, c.cost)
}

/// The variant of every GEMM forward pipeline compiled so far, by entry point (its loader)
/// and tile constants (tests assert with it which variant ran).
#[cfg(test)]
pub(crate) fn compiled_forward_variants(gpu: &Gpu) -> Vec<ForwardVariant> {
    let get = |c: &[(&str, f64)], name| {
        c.iter()
            .find(|(k, _)| *k == name)
            .map(|&(_, v)| v as usize)
            .unwrap_or_else(|| panic!("{name} in {c:?}"))
    };
    [
        (FORWARD.entry, Weights::Packed),
        (FORWARD_OIHW.entry, Weights::InPlace),
    ]
    .into_iter()
    .flat_map(|(entry, weights)| {
        gpu.compiled_constants(entry)
            .into_iter()
            .map(move |c| ForwardVariant {
                tile: Tile {
                    pixels: get(&c, "TILE_M"),
                    channels: get(&c, "TILE_N"),
                },
                weights,
            })
    })
    .collect()
}
