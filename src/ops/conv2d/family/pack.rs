//! Weight packing for the GEMM-shaped families (`shaders/conv2d/pack.wgsl`): OIHW weights
//! rearranged so that a thread reads 8 output channels as two adjacent vec4s — into a
//! buffer (register-blocked and pixel families) or an `rgba32float` texture (texture
//! family); transposed and flipped for an input gradient.

use crate::error::Result;
use crate::gpu::{Access, KernelSpec, Shader};
use crate::ops::conv2d::args::bytes_of;
use crate::record::{read, write, Cost, Grid, Recording};
use crate::tensor::Tensor;

const PACK: Shader = wgsl!("conv2d/pack.wgsl");

/// `conv2d_weight_layout`: weight (binding 1) → packed buffer (2).
pub(crate) const PACK_BUFFER: KernelSpec = KernelSpec::new(
    PACK,
    "conv2d_weight_layout",
    &[(1, Access::Read), (2, Access::Write)],
);
/// `conv2d_weight_layout_texture`: weight (binding 1) → packed texture (3).
pub(crate) const PACK_TEXTURE: KernelSpec =
    KernelSpec::new(PACK, "conv2d_weight_layout_texture", &[(1, Access::Read)]).with_textures(&[3]);

/// Arguments of the packing kernels (`Layout` in `shaders/conv2d/pack.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct LayoutArgs {
    dims: [u32; 4],
    cols: u32,
    transpose: u32,
    count: u32,
    _pad: u32,
}

impl LayoutArgs {
    /// For OIHW `weight`, `cols` packed columns (channels), `count` threads.
    pub fn new(weight: [usize; 4], cols: usize, transpose: bool, count: usize) -> LayoutArgs {
        LayoutArgs {
            dims: weight.map(|d| d as u32),
            cols: cols as u32,
            transpose: transpose as u32,
            count: count as u32,
            _pad: 0,
        }
    }
}

/// Packs OIHW weights as `[kh*kw*cin][co_pad]`, or transposed and flipped
/// `[kh*kw*cout][ci_pad]`, into recording scratch, and records `f`'s kernels that read the
/// packed copy; the scratch goes back after them. Rebuilt each time (weights are small, and
/// may have been updated in place).
pub(crate) fn with_packed_weights(
    rec: &mut Recording<'_>,
    weight: &Tensor,
    transpose: bool,
    f: impl FnOnce(&mut Recording<'_>, &Tensor) -> Result<()>,
) -> Result<()> {
    let [cout, cin, kh, kw] = weight.shape();
    let (rows, cols) = if transpose {
        (cout, cin.next_multiple_of(8))
    } else {
        (cin, cout.next_multiple_of(8))
    };
    // Every element is written, the padding columns with zeros.
    let packed = rec.scratch_tensor([kh * kw * rows, cols, 1, 1])?;
    let a = LayoutArgs::new(weight.shape(), cols, transpose, packed.numel());
    rec.launch(
        &PACK_BUFFER,
        &[bytemuck::bytes_of(&a)],
        &[Some(read(weight)), Some(write(&packed))],
        &[],
        Grid::Threads(packed.numel() as u64),
        Cost {
            flops: 0,
            bytes: bytes_of(&[weight.numel(), packed.numel()]),
        },
    )?;
    f(rec, &packed)?;
    rec.scratch_done(packed);
    Ok(())
}
