//! Loss functions and their gradients (`shaders/loss.wgsl`): what a training step differentiates.

use super::{same_shape, Access};
use crate::error::{Error, Result};
use crate::gpu::KernelSpec;
use crate::memory::Purpose;
use crate::record::{read, write, Cost, Grid, Recording};
use crate::tensor::Tensor;

/// `mse_forward_backward`: y, target → grad (views), and the squares (whole, binding 4).
pub(crate) const MSE: KernelSpec = KernelSpec::new(
    wgsl!("loss.wgsl"),
    "mse_forward_backward",
    &[
        (1, Access::Write),
        (2, Access::Write),
        (3, Access::Write),
        (4, Access::Write),
    ],
);
/// `sum_chunks`: src → dst, one chunk a workgroup.
pub(crate) const SUM: KernelSpec = KernelSpec::new(
    wgsl!("reduce.wgsl"),
    "sum_chunks",
    &[(1, Access::Write), (2, Access::Write)],
);

/// The mean squared error of a prediction and its gradient, both on the GPU.
#[derive(Debug)]
pub struct MseLoss {
    /// `mean((y - target)^2)` as a `[1, 1, 1, 1]` tensor: read it back only when needed.
    pub loss: Tensor,
    /// `d loss / d y = 2 (y - target) / numel`, shaped like `y`.
    pub grad: Tensor,
}

/// Elements a workgroup of `sum_chunks` adds: 64 per lane, 64 loop iterations.
const SUM_CHUNK: usize = 64 * 64;

/// `mean((y - target)^2)` (PyTorch's `F.mse_loss`, reduction `mean`) and its gradient.
pub fn mse(rec: &mut Recording<'_>, y: &Tensor, target: &Tensor) -> Result<MseLoss> {
    same_shape("mse", "prediction and target", y, target)?;
    let gpu = rec.gpu();
    let count = y.numel();
    let grad = Tensor::zeros(gpu, y.shape(), Purpose::Gradient)?;
    let sq = Tensor::zeros(gpu, [count, 1, 1, 1], Purpose::Scratch)?;
    // The squares are indexed by element, so the views cannot be split across bindings.
    if !super::bindable(gpu, &[y, target, &grad]) {
        return Err(Error::param(
            "mse",
            "the prediction is larger than one binding of this device; compute the loss in parts",
        ));
    }
    // The gradient into its view slot; the squares at binding 4 (a whole tensor, index i).
    super::dispatch_elementwise_extra(
        rec,
        &MSE,
        &[y, target, &grad],
        &[0, 1, 2],
        &[write(&sq)],
        3,
    )?;
    let loss = sum(rec, &sq, 1.0 / count as f32)?;
    rec.retain(sq);
    Ok(MseLoss { loss, grad })
}

/// Arguments of `sum_chunks` (`Sum` in `shaders/reduce.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SumArgs {
    len: u32,
    chunk: u32,
    scale: f32,
    _pad: u32,
}

/// `scale * sum(src)` as a `[1, 1, 1, 1]` tensor: chunks of 4,096 summed per workgroup,
/// level by level, in a fixed order (bit-reproducible), every loop bounded.
pub(crate) fn sum(rec: &mut Recording<'_>, src: &Tensor, scale: f32) -> Result<Tensor> {
    let gpu = rec.gpu();
    let mut level = src.clone();
    loop {
        let len = level.numel();
        let groups = len.div_ceil(SUM_CHUNK);
        let last = groups == 1;
        let purpose = if last {
            Purpose::Activation
        } else {
            Purpose::Scratch
        };
        let dst = Tensor::zeros(gpu, [groups, 1, 1, 1], purpose)?;
        let a = SumArgs {
            len: len as u32,
            chunk: SUM_CHUNK as u32,
            scale: if last { scale } else { 1.0 },
            _pad: 0,
        };
        rec.launch(
            &SUM,
            &[bytemuck::bytes_of(&a)],
            &[Some(read(&level)), Some(write(&dst))],
            &[],
            Grid::Workgroups(groups as u64),
            Cost {
                flops: len as u64,
                bytes: 4 * (len + groups) as u64,
            },
        )?;
        rec.retain(level);
        if last {
            return Ok(dst);
        }
        level = dst;
    }
}
