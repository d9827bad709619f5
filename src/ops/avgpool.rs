//! AvgPool2d and its gradient (`shaders/avgpool.wgsl`): PyTorch's `nn.AvgPool2d(k, s)` with
//! no padding and floor mode — DenseNet's transition pools with k = s = 2.

use super::{no_overlap, rebase, Access};
use crate::error::{Error, Result};
use crate::gpu::{KernelSpec, Shader};
use crate::memory::Purpose;
use crate::record::{read, write, Cost, Grid, Recording};
use crate::tensor::Tensor;

const AVGPOOL: Shader = wgsl!("avgpool.wgsl");
/// `avgpool_forward`: x → out.
pub(crate) const FORWARD: KernelSpec = KernelSpec::new(
    AVGPOOL,
    "avgpool_forward",
    &[(1, Access::Write), (2, Access::Write)],
);
/// `avgpool_backward`: grad_out → grad_x.
pub(crate) const BACKWARD: KernelSpec = KernelSpec::new(
    AVGPOOL,
    "avgpool_backward",
    &[(1, Access::Write), (2, Access::Write)],
);

/// Arguments of both kernels (`Pool` in `shaders/avgpool.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct PoolArgs {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    k: u32,
    s: u32,
    src: [u32; 2],
    dst: [u32; 2],
    accumulate: u32,
    _pad: [u32; 3],
}

/// The output shape of a `kernel` × `kernel` average pool with `stride` over `x` of shape
/// `[n, c, h, w]`, or an error where the window does not fit or a size is 0.
pub fn avg_pool2d_output_shape(x: [usize; 4], kernel: usize, stride: usize) -> Result<[usize; 4]> {
    let [n, c, h, w] = x;
    if kernel == 0 || stride == 0 {
        return Err(Error::param(
            "avg_pool2d",
            format!("kernel {kernel} and stride {stride} must both be at least 1"),
        ));
    }
    if h < kernel || w < kernel {
        return Err(Error::shape(
            "avg_pool2d",
            format!("a {kernel}×{kernel} window does not fit the {h}×{w} input of shape {x:?}"),
        ));
    }
    Ok([n, c, (h - kernel) / stride + 1, (w - kernel) / stride + 1])
}

/// `AvgPool2d(kernel, stride)` of `x` into a new activation tensor.
pub fn avg_pool2d(
    rec: &mut Recording<'_>,
    x: &Tensor,
    kernel: usize,
    stride: usize,
) -> Result<Tensor> {
    let shape = avg_pool2d_output_shape(x.shape(), kernel, stride)?;
    let out = Tensor::zeros(rec.gpu(), shape, Purpose::Activation)?;
    avg_pool2d_into(rec, x, &out, kernel, stride, false)?;
    Ok(out)
}

/// `out (=|+=) AvgPool2d(kernel, stride)(x)`; both may be channel views.
pub fn avg_pool2d_into(
    rec: &mut Recording<'_>,
    x: &Tensor,
    out: &Tensor,
    kernel: usize,
    stride: usize,
    accumulate: bool,
) -> Result<()> {
    let want = avg_pool2d_output_shape(x.shape(), kernel, stride)?;
    if out.shape() != want {
        return Err(Error::shape(
            "avg_pool2d",
            format!(
                "the output is {:?}; pooling {:?} gives {want:?}",
                out.shape(),
                x.shape()
            ),
        ));
    }
    no_overlap("avg_pool2d", out, x)?;
    launch(
        rec,
        &FORWARD,
        x,
        out,
        x.shape(),
        want,
        kernel,
        stride,
        accumulate,
    )
}

/// The gradient of `AvgPool2d(kernel, stride)` over an input of `grad_x`'s shape:
/// `grad_x (=|+=)` each output's gradient spread evenly over its window.
pub fn avg_pool2d_backward_into(
    rec: &mut Recording<'_>,
    grad_out: &Tensor,
    grad_x: &Tensor,
    kernel: usize,
    stride: usize,
    accumulate: bool,
) -> Result<()> {
    let want = avg_pool2d_output_shape(grad_x.shape(), kernel, stride)?;
    if grad_out.shape() != want {
        return Err(Error::shape(
            "avg_pool2d backward",
            format!(
                "the output gradient is {:?}; pooling {:?} gives {want:?}",
                grad_out.shape(),
                grad_x.shape()
            ),
        ));
    }
    no_overlap("avg_pool2d backward", grad_x, grad_out)?;
    launch(
        rec,
        &BACKWARD,
        grad_out,
        grad_x,
        grad_x.shape(),
        want,
        kernel,
        stride,
        accumulate,
    )
}

/// Records one pooling kernel reading `src` and writing `dst` (each thread one element of
/// `dst`), for an input of shape `x` pooled to `y`.
#[allow(clippy::too_many_arguments)]
fn launch(
    rec: &mut Recording<'_>,
    spec: &KernelSpec,
    src: &Tensor,
    dst: &Tensor,
    x: [usize; 4],
    y: [usize; 4],
    kernel: usize,
    stride: usize,
    accumulate: bool,
) -> Result<()> {
    let gpu = rec.gpu();
    super::require_bindable("avg_pool2d", gpu, &[src, dst], "pool a smaller batch")?;
    let (src, dst) = (rebase(gpu, src), rebase(gpu, dst));
    let a = PoolArgs {
        n: x[0] as u32,
        c: x[1] as u32,
        h: x[2] as u32,
        w: x[3] as u32,
        oh: y[2] as u32,
        ow: y[3] as u32,
        k: kernel as u32,
        s: stride as u32,
        src: [src.offset_u32(), src.batch_stride_u32()],
        dst: [dst.offset_u32(), dst.batch_stride_u32()],
        accumulate: accumulate as u32,
        _pad: [0; 3],
    };
    let written = dst.numel() as u64;
    rec.launch(
        spec,
        &[bytemuck::bytes_of(&a)],
        &[Some(read(&src)), Some(write(&dst))],
        &[],
        Grid::Threads(written),
        Cost {
            flops: (src.numel() + dst.numel()) as u64,
            bytes: 4 * (src.numel() + dst.numel()) as u64,
        },
    )
}
