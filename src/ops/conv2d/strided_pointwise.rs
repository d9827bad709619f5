//! The input gradient of a 1×1 convolution of stride > 1 and no padding (ResNet's
//! downsample): the forward read only the input pixels on the stride's grid, so the gradient
//! is the stride-1 problem's on those pixels — a pointwise GEMM every GEMM-shaped family
//! runs — scattered onto the grid, zero elsewhere (`shaders/conv2d/scatter.wgsl`). By stride
//! class it was three empty classes and one run 8 pixels a thread: on lavapipe 2.4× the
//! forward's time for the same FLOPs (benches/NOTES.md, v30).

use super::args::InputGradArgs;
use super::{conv2d_backward_input_into, Conv2dParams, Fusion};
use crate::error::Result;
use crate::gpu::{Access, KernelSpec};
use crate::record::{read, write, Cost, Grid, Recording};
use crate::tensor::Tensor;

/// `conv2d_scatter_strided`: the stride-1 gradient (1), x for the mask (2) → grad_x (3).
pub(crate) const SCATTER: KernelSpec = KernelSpec::new(
    wgsl!("conv2d/scatter.wgsl"),
    "conv2d_scatter_strided",
    &[(1, Access::Read), (2, Access::Read), (3, Access::Write)],
);

/// The scatter's arguments (`Scatter` in the shader).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct ScatterArgs {
    count: u32,
    c: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    sy: u32,
    sx: u32,
    accumulate: u32,
    mask: u32,
    x_off: u32,
    x_bs: u32,
    gx_off: u32,
    gx_bs: u32,
    _pad: [u32; 2],
}

/// Whether `a` is a 1×1, unpadded, strided input gradient this module computes.
pub(crate) fn applies(a: &InputGradArgs<'_>) -> bool {
    a.g.w[2..] == [1, 1] && a.p.padding == [0, 0] && a.p.stride != [1, 1]
}

/// Records the input gradient `a` (see [`applies`]) as the stride-1 problem's, scattered;
/// its tensors fit their bindings.
pub(crate) fn backward_input(rec: &mut Recording<'_>, a: &InputGradArgs<'_>) -> Result<()> {
    let [n, cin, h, w] = a.g.x;
    let [_, _, oh, ow] = a.g.y;
    // The stride-1 problem: an input of the output's size, whose values are never read (no
    // fused ReLU there) — x's own buffer, which holds at least that many elements, where it
    // binds whole, else scratch — and the gradient into scratch.
    let shape = [n, cin, oh, ow];
    let (limit, _) = rec.gpu().binding_limits();
    let shapes_only = if a.x.buffer_bytes() <= limit {
        Tensor::over(a.x.shared_buffer().clone(), shape)
    } else {
        rec.scratch_tensor(shape)?
    };
    let strided = rec.scratch_tensor(shape)?;
    let p1 = Conv2dParams {
        stride: [1, 1],
        dilation: [1, 1],
        ..a.p
    };
    conv2d_backward_input_into(
        rec,
        &shapes_only,
        a.weight,
        a.grad_out,
        &p1,
        &strided,
        Fusion::default(),
    )?;
    let count = n * cin * h * w;
    let args = ScatterArgs {
        count: count as u32,
        c: cin as u32,
        h: h as u32,
        w: w as u32,
        oh: oh as u32,
        ow: ow as u32,
        sy: a.p.stride[0] as u32,
        sx: a.p.stride[1] as u32,
        accumulate: a.fusion.accumulate as u32,
        mask: a.fusion.relu_input as u32,
        x_off: a.x.offset_u32(),
        x_bs: a.x.batch_stride_u32(),
        gx_off: a.grad_x.offset_u32(),
        gx_bs: a.grad_x.batch_stride_u32(),
        ..Default::default()
    };
    let reads = strided.numel() + if a.fusion.relu_input { count } else { 0 };
    let writes = count * (1 + a.fusion.accumulate as usize);
    rec.launch(
        &SCATTER,
        &[bytemuck::bytes_of(&args)],
        // x only for the mask (a placeholder otherwise: x and grad_x may be views of one
        // buffer, which one dispatch may not bind both ways).
        &[
            Some(read(&strided)),
            a.fusion.relu_input.then(|| read(a.x)),
            Some(write(a.grad_x)),
        ],
        &[],
        Grid::Threads(count as u64),
        Cost {
            flops: 0,
            bytes: 4 * (reads + writes) as u64,
        },
    )?;
    if !shapes_only.shares_buffer(a.x) {
        rec.scratch_done(shapes_only);
    }
    rec.scratch_done(strided);
    Ok(())
}
