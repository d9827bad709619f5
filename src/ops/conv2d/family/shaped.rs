//! What the GEMM-shaped families that read packed weights from buffers (register-blocked,
//! pixel, GEMM) share: support (groups = 1, stride-1 input gradients), the forward and the
//! input gradient as one kernel on the (transposed) problem, and the weight gradient's split
//! into partial sums. Each implements [`GemmShaped`]; the `Family` impl is this one.

use crate::error::Result;
use crate::gpu::KernelSpec;
use crate::ops::conv2d::args::{
    view, ConvArgs, ForwardArgs, GemmCall, Geometry, InputGradArgs, WeightGradArgs,
};
use crate::ops::conv2d::family::{no_variant, Call, Family, Info, Pass, TuneKey};
use crate::ops::conv2d::partials::Partials;
use crate::ops::conv2d::Conv2dParams;
use crate::record::{read, write, Grid, Recording};
use crate::Gpu;

/// A family whose forward and stride-1 input gradient are one GEMM-shaped kernel.
pub(crate) trait GemmShaped: Info + Sync {
    /// Whether the device allows its kernels (workgroup sizes, workgroup memory).
    fn fits(&self, _gpu: &Gpu) -> bool {
        true
    }
    /// Records the GEMM-shaped kernel for `c` (a forward, or a transposed input gradient).
    fn gemm(&self, rec: &mut Recording<'_>, c: &GemmCall<'_>) -> Result<()>;
    /// Variants of that kernel worth measuring for `c` (0: what `gemm` runs); 1: none.
    fn gemm_variants(&self, _c: &GemmCall<'_>) -> usize {
        1
    }
    /// What variant `v` is for the problem `key` names (empty: nothing to say).
    fn describe(&self, _key: &TuneKey, _v: usize) -> String {
        String::new()
    }
    /// Records variant `v` of the GEMM-shaped kernel for `c`.
    fn gemm_variant(&self, rec: &mut Recording<'_>, c: &GemmCall<'_>, v: usize) -> Result<()> {
        match v {
            0 => self.gemm(rec, c),
            _ => Err(no_variant(self.name(), v)),
        }
    }
    /// Records the weight gradient.
    fn weight_gradient(&self, rec: &mut Recording<'_>, c: &WeightGradArgs<'_>) -> Result<()>;
    /// Variants of the weight gradient worth measuring for `c` (0: `weight_gradient`).
    fn weight_variants(&self, _c: &WeightGradArgs<'_>) -> usize {
        1
    }
    /// Records variant `v` of the weight gradient.
    fn weight_variant(
        &self,
        rec: &mut Recording<'_>,
        c: &WeightGradArgs<'_>,
        v: usize,
    ) -> Result<()> {
        match v {
            0 => self.weight_gradient(rec, c),
            _ => Err(no_variant(self.name(), v)),
        }
    }
}

impl<T: GemmShaped> Family for T {
    /// groups = 1, and for input gradients a stride-1 conv whose padding the transposed
    /// kernel can take (padding at most the dilated kernel's reach).
    fn supports(&self, gpu: &Gpu, pass: Pass, g: &Geometry, p: &Conv2dParams) -> bool {
        self.fits(gpu) && p.groups == 1 && (pass != Pass::BackwardInput || g.transposable(p))
    }

    fn forward(&self, rec: &mut Recording<'_>, c: &ForwardArgs<'_>) -> Result<()> {
        self.gemm(rec, &c.gemm())
    }

    fn backward_input(&self, rec: &mut Recording<'_>, c: &InputGradArgs<'_>) -> Result<()> {
        self.gemm(rec, &c.gemm())
    }

    fn backward_weight(&self, rec: &mut Recording<'_>, c: &WeightGradArgs<'_>) -> Result<()> {
        self.weight_gradient(rec, c)
    }

    fn variants(&self, call: &Call<'_, '_>) -> usize {
        match call {
            Call::Forward(a) => self.gemm_variants(&a.gemm()),
            Call::BackwardInput(a) if a.g.transposable(&a.p) => self.gemm_variants(&a.gemm()),
            Call::BackwardInput(_) => 1,
            Call::BackwardWeight(a) => self.weight_variants(a),
        }
    }

    fn describe_variant(&self, key: &TuneKey, v: usize) -> String {
        self.describe(key, v)
    }

    fn run_variant(&self, rec: &mut Recording<'_>, call: &Call<'_, '_>, v: usize) -> Result<()> {
        match call {
            Call::Forward(a) => self.gemm_variant(rec, &a.gemm(), v),
            Call::BackwardInput(a) => self.gemm_variant(rec, &a.gemm(), v),
            Call::BackwardWeight(a) => self.weight_variant(rec, a, v),
        }
    }
}

/// How a weight-gradient kernel that reads x and grad_out from buffers splits its
/// reduction: `units` of it, `base_threads` threads a split, at most `per_max` units a
/// split, and `lanes` threads of a workgroup sharing one block (1: threads are independent;
/// the kernel then counts threads, else workgroups, and units of `lanes` pixels).
pub(crate) struct WeightSplit {
    pub units: usize,
    pub base_threads: usize,
    pub per_max: usize,
    pub lanes: usize,
}

/// Records such a kernel (`conv2d/partials.wgsl`'s bindings) into partial sums and their
/// reduction.
pub(crate) fn weight_gradient(
    rec: &mut Recording<'_>,
    spec: &KernelSpec,
    c: &WeightGradArgs<'_>,
    s: WeightSplit,
) -> Result<()> {
    let (partials, per, cost) =
        Partials::for_weight_gradient(rec, c, s.units, s.base_threads, s.per_max)?;
    let count = s.base_threads / s.lanes * partials.splits;
    let mut a = ConvArgs::new(&c.g, &c.p, count, c.fusion);
    a.x_view = view(c.x);
    a.y_view = view(c.grad_out);
    a.per_split = (per * s.lanes) as u32;
    let buffers = [
        Some(read(c.x)),
        Some(read(c.grad_out)),
        Some(write(&partials.tensor)),
    ];
    let grid = if s.lanes == 1 {
        Grid::Threads(count as u64)
    } else {
        Grid::Workgroups(count as u64)
    };
    rec.launch(spec, &[a.bytes()], &buffers, &[], grid, cost)?;
    partials.reduce_weight(rec, c)
}
