//! Kernel scratch between recordings, and the budget that bounds it.
//!
//! Kernels stage operands in textures and reduce through partial sums; a recording hands
//! that working memory out and takes it back as its readers are recorded (`record/`). What a
//! submitted recording no longer needs comes here, so that the next recording reuses it
//! instead of allocating while the device still holds the old copy (the queue runs
//! submissions in order, and wgpu orders the next writes after the earlier readers). The
//! pool is emptied when the device is idle ([`Gpu::synchronize`]): the engine holds scratch
//! only while work is in flight.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{lock, Gpu};
use crate::error::{Error, Result};
use crate::memory::{GpuBuffer, GpuTexture};

/// What a staging texture holds. Textures are reused within their kind only: a thin
/// request (a layer's weights, a few texels wide) must not take the texture the next staged
/// activation needs, nor an activation the weights'.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StagingKind {
    /// Activations and gradients of activations, and the copies they are staged from.
    Activation,
    /// Weights laid out for a kernel.
    Weights,
}

/// A staging texture and its kind.
pub(crate) type Staging = (StagingKind, GpuTexture);

/// Scratch that submitted recordings gave back, and the budget.
#[derive(Default)]
pub(crate) struct ScratchPool {
    textures: Mutex<Vec<Staging>>,
    buffers: Mutex<Vec<Arc<GpuBuffer>>>,
    /// The scratch budget in bytes; 0 until set (then the adapter's default applies).
    budget: AtomicU64,
}

/// The index of the smallest item that `fits`, by `size`.
pub(crate) fn best_fit<T>(
    items: &[T],
    fits: impl Fn(&T) -> bool,
    size: impl Fn(&T) -> u64,
) -> Option<usize> {
    (0..items.len())
        .filter(|&i| fits(&items[i]))
        .min_by_key(|&i| size(&items[i]))
}

/// The default scratch budget on CPU adapters: kernels there saturate the cores with a few
/// images' work, so smaller steps cost little time and keep what the device holds near the
/// data itself (measured: `skipgrad memory --scratch-budget-mib`, README).
const CPU_DEFAULT_BUDGET: u64 = 1 << 20;
/// On GPUs: enough for wide launches (split-K partial sums of large layers, batch tiles of
/// many waves).
const GPU_DEFAULT_BUDGET: u64 = 64 << 20;

/// The budget `SKIPGRAD_SCRATCH_BUDGET_MIB` asks for (MiB, fractions allowed), if set.
pub(crate) fn budget_from_env() -> Result<Option<u64>> {
    mib_from_env("SKIPGRAD_SCRATCH_BUDGET_MIB")
}

/// The bytes the environment variable `name` asks for in MiB (fractions allowed), if set.
pub(crate) fn mib_from_env(name: &'static str) -> Result<Option<u64>> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => match v.trim().parse::<f64>() {
            Ok(mib) if mib.is_finite() && mib > 0.0 => Ok(Some((mib * (1 << 20) as f64) as u64)),
            _ => Err(Error::param(
                name,
                format!("{v:?} is not a positive number of MiB (for example 1 or 0.5)"),
            )),
        },
        _ => Ok(None),
    }
}

impl Gpu {
    /// The scratch budget: the most bytes one piece of a conv pass's working memory should
    /// take — a staged copy of an operand, the copy it is staged from, the partial sums of a
    /// reduction. Passes whose pieces would exceed it work through the batch in parts (one
    /// image is the least a part holds; the Winograd family's parts also hold enough work to
    /// be worth their launches, within 16 MiB) or split their reductions less. Default: 1 MiB on
    /// CPU adapters, 64 MiB on GPUs; `SKIPGRAD_SCRATCH_BUDGET_MIB` or
    /// [`GpuOptions::scratch_budget`](crate::GpuOptions) set it when the `Gpu` is created.
    pub fn scratch_budget(&self) -> u64 {
        match self
            .extension::<ScratchPool>()
            .budget
            .load(Ordering::Relaxed)
        {
            0 if self.cpu_decisions() => CPU_DEFAULT_BUDGET,
            0 => GPU_DEFAULT_BUDGET,
            bytes => bytes,
        }
    }

    /// Sets the scratch budget for work recorded from now on (at least 1 byte; passes never
    /// split finer than one image). Smaller: less device memory, more dispatches.
    pub fn set_scratch_budget(&self, bytes: u64) {
        self.extension::<ScratchPool>()
            .budget
            .store(bytes.max(1), Ordering::Relaxed);
    }

    /// The smallest pooled staging texture that `fits`, by `area`.
    pub(crate) fn pooled_texture(
        &self,
        fits: impl Fn(&Staging) -> bool,
        area: impl Fn(&Staging) -> u64,
    ) -> Option<Staging> {
        let pool = self.extension::<ScratchPool>();
        let mut textures = lock(&pool.textures);
        best_fit(&textures, fits, area).map(|i| textures.swap_remove(i))
    }

    /// A pooled scratch buffer of at least `bytes` (the smallest).
    pub(crate) fn pooled_buffer(&self, bytes: u64) -> Option<Arc<GpuBuffer>> {
        let pool = self.extension::<ScratchPool>();
        let mut buffers = lock(&pool.buffers);
        let size = |b: &Arc<GpuBuffer>| b.account.bytes;
        best_fit(&buffers, |b| size(b) >= bytes, size).map(|i| buffers.swap_remove(i))
    }

    /// Takes back the scratch of a submitted recording, for the next.
    pub(crate) fn pool_scratch(&self, textures: Vec<Staging>, buffers: Vec<Arc<GpuBuffer>>) {
        let pool = self.extension::<ScratchPool>();
        lock(&pool.textures).extend(textures);
        lock(&pool.buffers).extend(buffers);
    }

    /// Frees the pool (the device is idle: nothing in it is in use).
    pub(crate) fn free_pooled_scratch(&self) {
        let pool = self.extension::<ScratchPool>();
        lock(&pool.textures).clear();
        lock(&pool.buffers).clear();
    }
}
