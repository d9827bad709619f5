//! The bias gradient (`shaders/conv2d/bias.wgsl`): the sum of grad_out over batch and
//! pixels per output channel — the same kernel for every family.

use super::args::{bytes_of, check_bias, view, WeightGradArgs};
use super::budget::{rows_per_split, LOOP_BUDGET};
use super::partials::{gpu_shapes, Partials};
use super::split;
use crate::error::Result;
use crate::gpu::{Access, KernelSpec, WORKGROUP_SIZE};
use crate::ops::{bindable, no_overlap, rebase, Half};
use crate::record::{read, write, Binding, Cost, Grid, Recording};
use crate::tensor::Tensor;

/// `conv2d_backward_weight_reduce_and_bias`: the reduce's bindings (1, 2) and the bias
/// sum's (4, 5, 6) in one launch, workgroups of the reduce first.
pub(crate) const REDUCE_AND_BIAS: KernelSpec = KernelSpec::new(
    wgsl!(
        "conv2d/reduce_bias.wgsl",
        "conv2d/reduce.wgsl",
        "conv2d/bias.wgsl"
    ),
    "conv2d_backward_weight_reduce_and_bias",
    &[
        (1, Access::Read),
        (2, Access::Write),
        (4, Access::Write),
        (5, Access::Write),
        (6, Access::Write),
    ],
)
.with_uniforms(&[0, 3])
.with_constants(BIAS_CONSTANTS);

/// The bias gradient riding with a weight gradient's reduce: the reduce is the partial
/// sums' (`partials.rs`), the bias sum this module's; this is where the two meet, so the
/// partial sums need not know the bias.
impl Partials {
    /// Sums a weight gradient's partial sums into `c.grad_weight` (=|+= by
    /// `c.fusion.accumulate`), and the bias gradient `c.bias` owes in the same launch where
    /// [`gpu_shapes`], it is not yet recorded, its output gradient binds whole
    /// and one split sums it: one launch (and one barrier) fewer than two passes. Otherwise as [`Partials::reduce`],
    /// and the bias gradient is left to `backward_weight.rs`.
    pub fn reduce_weight(self, rec: &mut Recording<'_>, c: &WeightGradArgs<'_>) -> Result<()> {
        let (dst, accumulate) = (c.grad_weight, c.fusion.accumulate);
        let bias = c.bias.filter(|b| {
            gpu_shapes(rec.gpu())
                && !b.done()
                && !self.direct(dst)
                && self.splits <= LOOP_BUDGET
                && bindable(rec.gpu(), &[b.grad_out])
        });
        let Some(bias) = bias else {
            return self.reduce(rec, dst, accumulate);
        };
        let grad_out = &rebase(rec.gpu(), bias.grad_out);
        let sum = BiasSum::plan(grad_out, false, BiasShape::Workgroups)?;
        if sum.splits != 1 {
            return self.reduce(rec, dst, accumulate);
        }
        let (a, mut cost) = self.reduce_args(dst, accumulate);
        cost += sum.cost;
        let [y, y4, grad_bias] = sum.buffers(grad_out, bias.grad_bias);
        let buffers = [Some(read(&self.tensor)), Some(write(dst)), y, y4, grad_bias];
        let workgroups = (a.count as u64).div_ceil(WORKGROUP_SIZE as u64) + sum.count() as u64;
        rec.launch(
            &REDUCE_AND_BIAS,
            &[bytemuck::bytes_of(&a), sum.bytes()],
            &buffers,
            &[],
            Grid::Workgroups(workgroups),
            cost,
        )?;
        bias.mark_done();
        rec.scratch_done(self.tensor);
        Ok(())
    }
}

/// `conv2d_backward_bias`: grad_out (binding 4, and 5 as vec4s) → grad_bias or its partial
/// sums (6); arguments at binding 3 (see the shader's contract).
pub(crate) const BIAS: KernelSpec = KernelSpec::new(
    wgsl!("conv2d/bias.wgsl"),
    "conv2d_backward_bias",
    &[(4, Access::Write), (5, Access::Write), (6, Access::Write)],
)
.with_uniforms(&[3])
.with_constants(BIAS_CONSTANTS);

/// `conv2d_backward_bias_serial`: the same sum, a thread per (channel, split), no barriers
/// (CPU adapters).
pub(crate) const BIAS_SERIAL: KernelSpec = KernelSpec::new(
    wgsl!("conv2d/bias.wgsl"),
    "conv2d_backward_bias_serial",
    &[(4, Access::Write), (5, Access::Write), (6, Access::Write)],
)
.with_uniforms(&[3])
.with_constants(BIAS_CONSTANTS);

/// Threads of a workgroup of the serial shape.
const SERIAL_LANES: usize = 8;

/// The override constants of `conv2d/bias.wgsl` (every kernel composed of it sets them).
pub(crate) const BIAS_CONSTANTS: &[(&str, f64)] = &[("SERIAL_LANES", SERIAL_LANES as f64)];

/// Which shape the bias sum takes: a workgroup per (channel, split) with a tree reduction
/// (GPUs), or a thread per (channel, split) summing serially (CPU adapters, which run a
/// workgroup with barriers far slower: ≈ 85 µs each on lavapipe).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BiasShape {
    Workgroups,
    Serial,
}

impl BiasShape {
    /// The shape for `gpu`.
    pub fn of(gpu: &crate::Gpu) -> BiasShape {
        if gpu_shapes(gpu) {
            BiasShape::Workgroups
        } else {
            BiasShape::Serial
        }
    }
}

/// Arguments of the bias kernel (`Bias` in `shaders/conv2d/bias.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct BiasArgs {
    shape: [u32; 4],
    y_view: [u32; 2],
    count: u32,
    accumulate: u32,
    per_split: u32,
    chunk: u32,
    vec4_ok: u32,
    _pad: u32,
}

/// Plane elements one unit of the reduction covers; a split's workgroup lanes loop
/// `BIAS_CHUNK / 64` times a unit.
const BIAS_CHUNK: usize = 4096;

/// Bias gradient (the sum of `grad_out` over batch and pixels) into `grad_bias` `[cout]`
/// (=|+= by `accumulate`).
pub fn conv2d_backward_bias_into(
    rec: &mut Recording<'_>,
    grad_out: &Tensor,
    grad_bias: &Tensor,
    accumulate: bool,
) -> Result<()> {
    check_bias(grad_bias, grad_out.shape()[1])?;
    no_overlap("conv2d backward bias", grad_bias, grad_out)?;
    if !bindable(rec.gpu(), &[grad_out]) {
        if let Some(halves) = Half::of(grad_out.shape(), false) {
            for half in halves {
                let goh = half.of_tensor(grad_out)?;
                let acc = accumulate || half.is_second();
                conv2d_backward_bias_into(rec, &goh, grad_bias, acc)?;
            }
            return Ok(());
        }
        return split::backward_bias_channels(rec, grad_out, grad_bias, accumulate);
    }
    let grad_out = &rebase(rec.gpu(), grad_out);
    let sum = BiasSum::plan(grad_out, accumulate, BiasShape::of(rec.gpu()))?;
    let partials = Partials::new(rec, grad_bias, sum.splits, sum.splits == 1)?;
    let buffers = sum.buffers(grad_out, &partials.tensor);
    let (kernel, grid) = match sum.shape {
        BiasShape::Workgroups => (&BIAS, Grid::Workgroups(sum.count() as u64)),
        BiasShape::Serial => (
            &BIAS_SERIAL,
            Grid::Workgroups(sum.count().div_ceil(SERIAL_LANES) as u64),
        ),
    };
    rec.launch(kernel, &[sum.bytes()], &buffers, &[], grid, sum.cost)?;
    partials.reduce(rec, grad_bias, accumulate)
}

/// One launch of the bias sum over a bindable (rebased) grad_out: its arguments, how many
/// splits its reduction takes (one: it writes the gradient itself) and its cost.
pub(crate) struct BiasSum {
    args: BiasArgs,
    pub shape: BiasShape,
    pub splits: usize,
    pub cost: Cost,
}

impl BiasSum {
    /// The sum of `grad_out` per channel (=|+= by `accumulate` where one split does it all)
    /// in the given shape.
    pub fn plan(grad_out: &Tensor, accumulate: bool, shape: BiasShape) -> Result<BiasSum> {
        let [n, cout, oh, ow] = grad_out.shape();
        let aligned = |v: u32| v.is_multiple_of(4);
        let [off, bs] = view(grad_out);
        let vec4_ok = (oh * ow).is_multiple_of(4) && aligned(off) && aligned(bs);
        // Units of the reduction: (image, chunk of plane elements). A workgroup's lanes loop
        // chunk / 64 times a unit; a serial thread chunk times (a quarter with vec4 loads),
        // so its chunks are at most a plane (small planes do not pay for a whole one).
        let (chunk, lane_loops) = match shape {
            BiasShape::Workgroups => (BIAS_CHUNK, BIAS_CHUNK / WORKGROUP_SIZE as usize),
            BiasShape::Serial => {
                let chunk = BIAS_CHUNK.min(oh * ow).max(1);
                (chunk, if vec4_ok { chunk / 4 } else { chunk })
            }
        };
        let units = n * (oh * ow).div_ceil(chunk);
        let per = rows_per_split(lane_loops, 2, "bias gradient")?.min(units);
        let splits = units.div_ceil(per);
        let args = BiasArgs {
            shape: [n as u32, cout as u32, oh as u32, ow as u32],
            y_view: [off, bs],
            count: (cout * splits) as u32,
            accumulate: (accumulate && splits == 1) as u32,
            per_split: per as u32,
            chunk: chunk as u32,
            vec4_ok: vec4_ok as u32,
            _pad: 0,
        };
        let cost = Cost {
            flops: grad_out.numel() as u64,
            bytes: bytes_of(&[grad_out.numel(), cout * (1 + accumulate as usize)]),
        };
        Ok(BiasSum {
            args,
            shape,
            splits,
            cost,
        })
    }

    /// Workgroups (or serial threads) the sum runs: one per (channel, split).
    pub fn count(&self) -> usize {
        self.args.count as usize
    }

    /// The argument struct (`Bias` in the shader).
    pub fn bytes(&self) -> &[u8] {
        bytemuck::bytes_of(&self.args)
    }

    /// Its bindings: grad_out twice (scalars, vec4s), then where the sums go.
    pub fn buffers<'t>(&self, grad_out: &'t Tensor, sums: &'t Tensor) -> [Option<Binding<'t>>; 3] {
        [
            Some(read(grad_out)),
            Some(read(grad_out)),
            Some(write(sums)),
        ]
    }
}

/// Both shapes of the bias sum against the f64 oracle, on whatever adapter runs the tests
/// (the GPU shape forced onto a CPU adapter): several splits, planes longer than a chunk,
/// planes not 4-aligned, a channel view; each asserting which kernel ran.
#[cfg(all(test, feature = "oracle"))]
mod tests {
    use super::*;
    use crate::gpu::test_gpu;
    use crate::memory::Purpose;
    use crate::AdapterPolicy;

    #[test]
    fn both_shapes_match_the_reference() {
        let value = |i: usize| ((i as u64 * 2_654_435_761) % 4096) as f32 / 2048.0 - 1.0;
        for policy in [AdapterPolicy::Cpu, AdapterPolicy::Gpu] {
            let gpu = test_gpu(policy);
            let expected = match BiasShape::of(&gpu) {
                BiasShape::Workgroups => "conv2d_backward_bias",
                BiasShape::Serial => "conv2d_backward_bias_serial",
            };
            // [n, c, h, w] of the whole buffer, and the channels the gradient is a view of.
            for (shape, view) in [
                ([65, 3, 8, 8], 0..3),
                ([2, 3, 70, 70], 1..3),
                ([3, 2, 69, 69], 0..2),
                ([1, 5, 3, 5], 2..5),
            ] {
                let v: Vec<f32> = (0..shape.iter().product()).map(value).collect();
                let whole = Tensor::from_slice(&gpu, shape, &v, Purpose::Gradient).unwrap();
                let grad_out = whole.channels(view.clone()).unwrap();
                let ys = grad_out.shape();
                let gb = Tensor::zeros(&gpu, [ys[1], 1, 1, 1], Purpose::Gradient).unwrap();
                let mut rec = Recording::new(&gpu);
                conv2d_backward_bias_into(&mut rec, &grad_out, &gb, false).unwrap();
                assert!(
                    rec.kernels().contains(&expected),
                    "{shape:?}: {:?}",
                    rec.kernels()
                );
                rec.finish().unwrap();
                let plane = shape[2] * shape[3];
                let host: Vec<f64> = (0..ys[0])
                    .flat_map(|n| view.clone().map(move |c| (n, c)))
                    .flat_map(|(n, c)| (0..plane).map(move |i| (n * shape[1] + c) * plane + i))
                    .map(|i| v[i] as f64)
                    .collect();
                let want = crate::reference::conv2d_backward_bias(&host, ys);
                let got = gb.to_vec(&gpu).unwrap();
                for (c, (&g, &e)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g as f64 - e).abs() <= 1e-4 * (1.0 + e.abs()),
                        "{expected} {shape:?} channel {c}: {g} vs {e}"
                    );
                }
            }
        }
    }
}
