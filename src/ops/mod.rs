//! The kernels' Rust wrappers, one module per kernel family. Each wrapper checks its inputs
//! (shapes, parameters, aliasing), fills the kernel's argument struct (which mirrors the
//! contract at the top of its `.wgsl` file) and records one dispatch into a [`Recording`].
//!
//! Every op comes in two forms: `op(rec, …) -> Tensor`, which allocates its result, and
//! `op_into(rec, …, out, accumulate)`, which writes (or, with `accumulate`, adds) into a
//! tensor or view the caller owns — what blocks use to avoid copies.
//!
//! [`Recording`]: crate::Recording

pub mod add;
pub mod concat;
pub mod conv2d;
pub mod loss;
pub mod relu;

use crate::error::{Error, Result};
use crate::gpu::Shader;
use crate::record::{read, write, Binding, Cost, Recording};
use crate::tensor::Tensor;

/// Arguments of the elementwise kernels (`Elementwise` in `shaders/common.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ElementwiseArgs {
    count: u32,
    sample: u32,
    accumulate: u32,
    _pad: u32,
    views: [[u32; 2]; 3],
    _pad1: [u32; 2],
}

/// Whether one dispatch can bind every tensor: whole, or as a window of a buffer larger
/// than the device's binding limit.
pub(crate) fn bindable(gpu: &crate::Gpu, tensors: &[&Tensor]) -> bool {
    let (limit, align) = gpu.binding_limits();
    tensors
        .iter()
        .all(|t| t.binding_bytes(limit, align) <= limit)
}

/// `t`, bound as a window where its buffer is larger than one binding may be.
pub(crate) fn rebase(gpu: &crate::Gpu, t: &Tensor) -> Tensor {
    let (limit, align) = gpu.binding_limits();
    t.rebased(limit, align)
}

/// How a part of an op's work is cut out when its tensors do not fit one binding: the
/// first or second half of the batch, else of the channels.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Half {
    Batch(usize, usize),
    Channels(usize, usize),
}

impl Half {
    /// The two halves of tensors of `shape`, batch first; `None` for one sample of one
    /// channel (nothing left to split).
    pub(crate) fn of(shape: [usize; 4], channels_too: bool) -> Option<[Half; 2]> {
        let [n, c, _, _] = shape;
        if n > 1 {
            Some([Half::Batch(0, n / 2), Half::Batch(n / 2, n)])
        } else if channels_too && c > 1 {
            Some([Half::Channels(0, c / 2), Half::Channels(c / 2, c)])
        } else {
            None
        }
    }

    /// The part of `t` this half covers.
    pub(crate) fn of_tensor(self, t: &Tensor) -> Result<Tensor> {
        match self {
            Half::Batch(a, b) => t.batches(a..b),
            Half::Channels(a, b) => t.channels(a..b),
        }
    }

    /// Whether this is the second half (which accumulates onto the first's result).
    pub(crate) fn is_second(self) -> bool {
        matches!(self, Half::Batch(a, _) | Half::Channels(a, _) if a > 0)
    }
}

/// Whether a binding is read or written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// Records one elementwise kernel over tensors of equal shape. `views` are the tensors in the
/// order of the kernel's view slots 0, 1, 2, the last one written; `bindings` pairs binding
/// numbers with view slots, read or written; `flops_per_element` is what the kernel computes
/// per element. Tensors larger than one binding are split by batch, then by channels.
pub(crate) fn dispatch_elementwise(
    rec: &mut Recording<'_>,
    shader: Shader,
    entry: &'static str,
    views: &[&Tensor],
    bindings: &[(u32, usize, Access)],
    accumulate: bool,
    flops_per_element: u64,
) -> Result<()> {
    let gpu = rec.gpu();
    if !bindable(gpu, views) {
        if let Some(halves) = Half::of(views[0].shape(), true) {
            for half in halves {
                let parts = views
                    .iter()
                    .map(|t| half.of_tensor(t))
                    .collect::<Result<Vec<_>>>()?;
                let refs: Vec<&Tensor> = parts.iter().collect();
                dispatch_elementwise(
                    rec,
                    shader,
                    entry,
                    &refs,
                    bindings,
                    accumulate,
                    flops_per_element,
                )?;
            }
            return Ok(());
        }
    }
    record_elementwise(
        rec,
        shader,
        entry,
        views,
        bindings,
        &[],
        accumulate,
        flops_per_element,
    )
}

/// An elementwise kernel with more, whole, bindings beside its views (no splitting: the
/// caller checks that everything fits one binding); never accumulates.
pub(crate) fn dispatch_elementwise_extra(
    rec: &mut Recording<'_>,
    shader: Shader,
    entry: &'static str,
    views: &[&Tensor],
    bindings: &[(u32, usize, Access)],
    extra: &[(u32, Binding<'_>)],
    flops_per_element: u64,
) -> Result<()> {
    record_elementwise(
        rec,
        shader,
        entry,
        views,
        bindings,
        extra,
        false,
        flops_per_element,
    )
}

/// Records one elementwise dispatch over views that fit their bindings.
#[allow(clippy::too_many_arguments)]
fn record_elementwise(
    rec: &mut Recording<'_>,
    shader: Shader,
    entry: &'static str,
    views: &[&Tensor],
    bindings: &[(u32, usize, Access)],
    extra: &[(u32, Binding<'_>)],
    accumulate: bool,
    flops_per_element: u64,
) -> Result<()> {
    let gpu = rec.gpu();
    let views: Vec<Tensor> = views.iter().map(|t| rebase(gpu, t)).collect();
    let first = &views[0];
    let mut args = ElementwiseArgs {
        count: first.numel() as u32,
        sample: first.sample_len() as u32,
        accumulate: accumulate as u32,
        ..Default::default()
    };
    for (slot, t) in views.iter().enumerate() {
        args.views[slot] = [t.offset_u32(), t.batch_stride_u32()];
    }
    let mut storage: Vec<(u32, Binding<'_>)> = bindings
        .iter()
        .map(|&(binding, slot, access)| {
            let t = &views[slot];
            let b = match access {
                Access::Read => read(t),
                Access::Write => write(t),
            };
            (binding, b)
        })
        .collect();
    storage.extend_from_slice(extra);
    let count = first.numel() as u64;
    // Distinct tensors touched (relu_forward names x twice), the output read too when
    // accumulating.
    let mut touched: Vec<usize> = Vec::new();
    for &(_, slot, _) in bindings {
        if !touched.contains(&slot) {
            touched.push(slot);
        }
    }
    let cost = Cost {
        flops: flops_per_element * count,
        bytes: 4 * count * ((touched.len() + extra.len()) as u64 + accumulate as u64),
    };
    rec.dispatch(
        shader,
        entry,
        bytemuck::bytes_of(&args),
        &storage,
        count,
        cost,
    )
}

/// Fails unless `a` and `b` have the same shape.
pub(crate) fn same_shape(op: &'static str, what: &str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.shape() != b.shape() {
        return Err(Error::shape(
            op,
            format!("{what}: {:?} vs {:?}", a.shape(), b.shape()),
        ));
    }
    Ok(())
}

/// Fails if `out` may share elements with `input` (a kernel would read what it writes).
pub(crate) fn no_overlap(op: &'static str, out: &Tensor, input: &Tensor) -> Result<()> {
    if out.overlaps(input) {
        return Err(Error::param(
            op,
            "the output overlaps an input; write into a separate tensor or a disjoint view",
        ));
    }
    Ok(())
}

/// Every kernel source, with `common.wgsl` prepended (and `conv2d_common.wgsl` for convs).
pub(crate) mod shaders {
    use crate::gpu::Shader;

    macro_rules! shader {
        ($name:literal $(, $prefix:literal)*) => {
            Shader {
                name: $name,
                source: concat!(
                    include_str!("../../shaders/common.wgsl"),
                    $(include_str!(concat!("../../shaders/", $prefix)),)*
                    include_str!(concat!("../../shaders/", $name))
                ),
            }
        };
    }

    pub const ADD: Shader = shader!("add.wgsl");
    pub const LOSS: Shader = shader!("loss.wgsl");
    pub const REDUCE: Shader = shader!("reduce.wgsl");
    pub const OPTIM: Shader = shader!("optim.wgsl");
    pub const RELU: Shader = shader!("relu.wgsl");
    pub const CONCAT: Shader = shader!("concat.wgsl");
    pub const CONV2D_DIRECT: Shader = shader!("conv2d_direct.wgsl", "conv2d_common.wgsl");
    pub const CONV2D_FORWARD_REGBLOCK: Shader = shader!(
        "conv2d_forward_regblock.wgsl",
        "conv2d_common.wgsl",
        "conv2d_forward_common.wgsl"
    );
    pub const CONV2D_WEIGHT_LAYOUT: Shader = shader!("conv2d_weight_layout.wgsl");
    pub const TEXTURE_PACK: Shader = shader!("texture_pack.wgsl");
    pub const CONV2D_FORWARD_TILED: Shader = shader!(
        "conv2d_forward_tiled.wgsl",
        "conv2d_common.wgsl",
        "conv2d_forward_common.wgsl"
    );
    pub const CONV2D_BACKWARD_WEIGHT_TILED: Shader =
        shader!("conv2d_backward_weight_tiled.wgsl", "conv2d_common.wgsl");
    pub const CONV2D_BACKWARD_WEIGHT_REGBLOCK: Shader =
        shader!("conv2d_backward_weight_regblock.wgsl", "conv2d_common.wgsl");
}
