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
pub mod avgpool;
pub mod batchnorm;
pub mod concat;
pub mod conv2d;
pub mod loss;
pub mod relu;

#[cfg(test)]
mod binding_tests;

use crate::error::{Error, Result};
pub(crate) use crate::gpu::Access;
use crate::gpu::KernelSpec;
use crate::record::{read, write, Binding, Cost, Grid, Recording};
use crate::tensor::Tensor;

/// Every kernel of the elementwise ops, the loss and the optimizers (the conv kernels are
/// listed by their families): what the binding test checks.
#[cfg(test)]
pub(crate) fn elementwise_kernels() -> Vec<&'static KernelSpec> {
    vec![
        &relu::FORWARD,
        &relu::BACKWARD,
        &add::ADD,
        &add::ACCUMULATE,
        &concat::COPY_VIEW,
        &loss::MSE,
        &loss::SUM,
        &crate::train::optim::SGD,
        &crate::train::optim::ADAM,
    ]
    .into_iter()
    .chain([&avgpool::FORWARD, &avgpool::BACKWARD])
    .chain(batchnorm::KERNELS)
    .collect()
}

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

/// Fails unless every tensor fits one binding of the device, for ops that do not split
/// their work across bindings (their reductions or windows span the whole batch): the
/// message says what to do instead.
pub(crate) fn require_bindable(
    op: &'static str,
    gpu: &crate::Gpu,
    tensors: &[&Tensor],
    instead: &str,
) -> Result<()> {
    if bindable(gpu, tensors) {
        return Ok(());
    }
    Err(Error::param(
        op,
        format!(
            "a tensor of shape {:?} is larger than one binding of this device ({} bytes); {instead}",
            tensors[0].shape(),
            gpu.binding_limits().0
        ),
    ))
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

/// Records one elementwise kernel over tensors of equal shape. `views` are the tensors in
/// the order of the kernel's view slots 0, 1, 2, the last one written; `slots` gives the
/// view slot of each of the kernel's buffers (in its spec's order); `flops_per_element` is
/// what the kernel computes per element. Tensors larger than one binding are split by
/// batch, then by channels.
pub(crate) fn dispatch_elementwise(
    rec: &mut Recording<'_>,
    spec: &KernelSpec,
    views: &[&Tensor],
    slots: &[usize],
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
                dispatch_elementwise(rec, spec, &refs, slots, accumulate, flops_per_element)?;
            }
            return Ok(());
        }
    }
    let call = Elementwise {
        views,
        slots,
        accumulate,
        flops_per_element,
    };
    call.record(rec, spec, &[])
}

/// An elementwise kernel with more, whole, buffers after its views' (no splitting: the
/// caller checks that everything fits one binding); never accumulates.
pub(crate) fn dispatch_elementwise_extra(
    rec: &mut Recording<'_>,
    spec: &KernelSpec,
    views: &[&Tensor],
    slots: &[usize],
    extra: &[Binding<'_>],
    flops_per_element: u64,
) -> Result<()> {
    let call = Elementwise {
        views,
        slots,
        accumulate: false,
        flops_per_element,
    };
    call.record(rec, spec, extra)
}

/// One elementwise dispatch's views and what it does with them.
struct Elementwise<'a> {
    views: &'a [&'a Tensor],
    slots: &'a [usize],
    accumulate: bool,
    flops_per_element: u64,
}

impl Elementwise<'_> {
    /// Records the dispatch over views that fit their bindings.
    fn record(
        &self,
        rec: &mut Recording<'_>,
        spec: &KernelSpec,
        extra: &[Binding<'_>],
    ) -> Result<()> {
        let gpu = rec.gpu();
        let views: Vec<Tensor> = self.views.iter().map(|t| rebase(gpu, t)).collect();
        let first = &views[0];
        let mut args = ElementwiseArgs {
            count: first.numel() as u32,
            sample: first.sample_len() as u32,
            accumulate: self.accumulate as u32,
            ..Default::default()
        };
        for (slot, t) in views.iter().enumerate() {
            args.views[slot] = [t.offset_u32(), t.batch_stride_u32()];
        }
        let written = views.len() - 1;
        let mut buffers: Vec<Option<Binding<'_>>> = self
            .slots
            .iter()
            .map(|&slot| {
                let t = &views[slot];
                Some(if slot == written { write(t) } else { read(t) })
            })
            .collect();
        buffers.extend(extra.iter().copied().map(Some));
        let count = first.numel() as u64;
        // Distinct tensors touched (relu_forward names x twice), the output read too when
        // accumulating.
        let mut touched: Vec<usize> = Vec::new();
        for &slot in self.slots {
            if !touched.contains(&slot) {
                touched.push(slot);
            }
        }
        let cost = Cost {
            flops: self.flops_per_element * count,
            bytes: 4 * count * ((touched.len() + extra.len()) as u64 + self.accumulate as u64),
        };
        rec.launch(
            spec,
            &[bytemuck::bytes_of(&args)],
            &buffers,
            &[],
            Grid::Threads(count),
            cost,
        )
    }
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
