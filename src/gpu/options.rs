//! How to open a [`Gpu`](super::Gpu): the backend, limits, choice rules, scratch budget,
//! adapter policy and disk cache a caller may set, and the policy's parsing.

use super::DiskCache;
use crate::error::{Error, Result};

/// How to open a [`Gpu`](crate::Gpu): [`Gpu::with_options`](crate::Gpu::with_options). The default is what [`Gpu::new`](crate::Gpu::new) does
/// without `SKIPGRAD_BACKEND`.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Backend name (`vulkan`, `gl`, `metal`, `dx12`); `None`: any, native APIs first.
    pub backend: Option<String>,
    /// Lowers the device's `max_storage_buffer_binding_size` to this many bytes (at least
    /// four storage offset alignments). Tensors larger than one binding still work: ops
    /// split their work into bindings that fit (by batch, then channels). Mostly for
    /// testing that path on small tensors, and for measuring what a smaller footprint per
    /// dispatch does on a GPU. `None`: `SKIPGRAD_MAX_BINDING_MIB` where set, else the
    /// device's.
    pub max_storage_binding_bytes: Option<u64>,
    /// Choose kernel families by rule, not by timing (see [`Gpu::deterministic`](crate::Gpu::deterministic)).
    pub deterministic: bool,
    /// The scratch budget in bytes (see [`Gpu::scratch_budget`](crate::Gpu::scratch_budget)); `None`: the adapter's
    /// default, or `SKIPGRAD_SCRATCH_BUDGET_MIB` where set.
    pub scratch_budget: Option<u64>,
    /// Whose decisions the engine takes where they depend on the kind of adapter (see
    /// [`AdapterPolicy`]); `None`: `SKIPGRAD_POLICY` where set, else
    /// [`AdapterPolicy::Auto`].
    pub policy: Option<AdapterPolicy>,
    /// Where the tuner's choices and compiled pipelines are kept between processes (see
    /// [`DiskCache`]).
    pub cache: DiskCache,
}

/// Which kind of adapter the engine's adapter-dependent decisions are taken for.
///
/// A GPU and a CPU adapter (Mesa's lavapipe or llvmpipe) want different things: on a GPU
/// the conv tuner measures every kernel family and variant, the bias gradient rides with
/// the weight gradient's reduce, reductions spread over many threads and the scratch budget
/// is 64 MiB; on a CPU adapter a rule picks the texture family, reductions run as long
/// serial loops and the budget is 1 MiB. `Auto` decides by the adapter's device type;
/// `Gpu` makes any adapter take the GPU's decisions — so a machine without a GPU (CI)
/// runs every GPU-only branch — and `Cpu` the CPU adapter's. Results are the same function
/// either way; only the kernels and their speed differ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AdapterPolicy {
    /// By the adapter's device type: CPU adapters take the CPU's decisions, every other
    /// adapter the GPU's.
    #[default]
    Auto,
    /// The GPU's decisions, whatever the adapter.
    Gpu,
    /// The CPU adapter's decisions, whatever the adapter.
    Cpu,
}

impl AdapterPolicy {
    /// Parses `auto`, `gpu` or `cpu` (as `SKIPGRAD_POLICY` and `--policy` take them).
    pub fn parse(name: &str) -> Result<AdapterPolicy> {
        match name.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(AdapterPolicy::Auto),
            "gpu" => Ok(AdapterPolicy::Gpu),
            "cpu" => Ok(AdapterPolicy::Cpu),
            other => Err(Error::param(
                "adapter policy",
                format!("unknown policy {other:?} (expected auto, gpu or cpu)"),
            )),
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            AdapterPolicy::Auto => "auto",
            AdapterPolicy::Gpu => "gpu",
            AdapterPolicy::Cpu => "cpu",
        }
    }

    /// The policy `SKIPGRAD_POLICY` names, if it is set and not empty.
    pub(super) fn from_env() -> Result<Option<AdapterPolicy>> {
        match std::env::var("SKIPGRAD_POLICY") {
            Ok(v) if !v.trim().is_empty() => AdapterPolicy::parse(&v).map(Some).map_err(|_| {
                Error::param(
                    "SKIPGRAD_POLICY",
                    format!("{v:?} is not a policy (expected auto, gpu or cpu)"),
                )
            }),
            _ => Ok(None),
        }
    }
}

/// How wgpu's allocator groups buffers into device memory blocks: `SKIPGRAD_MEMORY_HINTS`
/// = `performance` (the default: blocks of 128–256 MiB, a buffer larger than the block in
/// one of its own) or `memory-usage` (blocks of 8–64 MiB). A diagnostic, with
/// `SKIPGRAD_BUFFER_ALIGN_MIB`, for the H200's slow mode: the same kernel on the same
/// shapes ran 1.6–4× slower on some buffers than on others (benches/NOTES.md).
pub(super) fn memory_hints_from_env() -> Result<wgpu::MemoryHints> {
    match std::env::var("SKIPGRAD_MEMORY_HINTS") {
        Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
            "" | "performance" => Ok(wgpu::MemoryHints::Performance),
            "memory-usage" | "memory_usage" => Ok(wgpu::MemoryHints::MemoryUsage),
            other => Err(Error::param(
                "SKIPGRAD_MEMORY_HINTS",
                format!("{other:?} is not a memory hint: use performance or memory-usage"),
            )),
        },
        Err(_) => Ok(wgpu::MemoryHints::Performance),
    }
}
