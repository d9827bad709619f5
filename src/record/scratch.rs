//! A recording's scratch: staging textures and scratch buffers handed to kernels and taken
//! back once the dispatches that read them are recorded, so that later dispatches of the
//! same recording reuse them (wgpu puts a barrier between a dispatch that reads and a later
//! one that writes). At submission all of it goes to the `Gpu`'s pool for the next
//! recording (`gpu/scratch.rs`): what the device holds for scratch stays what one pass needs
//! at a time, not the sum over a block's passes.

use std::sync::Arc;

use super::Recording;
use crate::error::{Error, Result};
use crate::gpu::{best_fit, Staging, StagingKind};
use crate::memory::{GpuBuffer, Purpose};
use crate::tensor::Tensor;

impl Recording<'_> {
    /// A staging texture of `kind` and at least `width` × `height` texels for the next
    /// dispatches: the smallest free one of its kind (this recording's, then the `Gpu`'s
    /// pool) that is large enough, else a new `width` × `reserve` one (`reserve` ≥ `height`:
    /// room for what later dispatches of its kind will ask, so that growing needs do not
    /// leave a texture of every size behind). Give it back with [`Recording::staging_done`]
    /// once its readers are recorded.
    pub(crate) fn staging_texture(
        &mut self,
        kind: StagingKind,
        width: u32,
        height: u32,
        reserve: u32,
    ) -> Result<(wgpu::Texture, wgpu::TextureView)> {
        let area = |(_, t): &Staging| t.size.0 as u64 * t.size.1 as u64;
        let fits = |(k, t): &Staging| *k == kind && t.size.0 >= width && t.size.1 >= height;
        let t = match best_fit(&self.free_textures, fits, area) {
            Some(i) => self.free_textures.swap_remove(i),
            None => match self.gpu.pooled_texture(fits, area) {
                Some(t) => t,
                None => {
                    let reserve = reserve.max(height);
                    (
                        kind,
                        self.gpu.alloc_texture(width, reserve, Purpose::Scratch)?,
                    )
                }
            },
        };
        let handles = (t.1.raw.clone(), t.1.view.clone());
        self.textures.push(t);
        Ok(handles)
    }

    /// Gives back a staging texture: every dispatch that reads it is recorded, so later
    /// staging in this recording may overwrite it.
    pub(crate) fn staging_done(&mut self, texture: &wgpu::Texture) {
        if let Some(i) = self.textures.iter().position(|(_, t)| &t.raw == texture) {
            let t = self.textures.swap_remove(i);
            self.free_textures.push(t);
        }
    }

    /// A scratch tensor of `shape` whose contents are undefined (the kernels that use it
    /// write every element before reading it): a free scratch buffer of this recording or
    /// the `Gpu`'s pool where one is large enough, else a new one of the next power of two
    /// bytes (within the binding limit). Give it back with [`Recording::scratch_done`] once
    /// its readers are recorded.
    ///
    /// Why the power of two: a buffer too small for a request cannot be freed while the
    /// recording's commands use it, so requests that grow a little each time (a dense
    /// block's packed weights and partial sums, layer after layer) left one buffer of every
    /// size behind — scratch that grew with depth (3.9 MB at 32 layers, 0.3 MB at 8, in the
    /// GEMM-shaped families). Rounded up, a few sizes serve all the layers: at most twice
    /// the largest request in all.
    pub(crate) fn scratch_tensor(&mut self, shape: [usize; 4]) -> Result<Tensor> {
        let elements = shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| Error::shape("scratch", format!("{shape:?} has too many elements")))?;
        let bytes = (4 * elements as u64).max(16);
        let buf = match self.free_scratch_buffer(bytes) {
            Some(b) => b,
            None => {
                let (max_binding, _) = self.gpu.binding_limits();
                let rounded = bytes.next_power_of_two().min(max_binding).max(bytes);
                Arc::new(self.gpu.alloc_storage(rounded, Purpose::Scratch)?)
            }
        };
        Ok(Tensor::over(buf, shape))
    }

    /// The smallest free scratch buffer of at least `bytes`: this recording's, else the
    /// `Gpu`'s pool's.
    fn free_scratch_buffer(&mut self, bytes: u64) -> Option<Arc<GpuBuffer>> {
        let size = |b: &Arc<GpuBuffer>| b.account.bytes;
        match best_fit(&self.free_buffers, |b| size(b) >= bytes, size) {
            Some(i) => Some(self.free_buffers.swap_remove(i)),
            None => self.gpu.pooled_buffer(bytes),
        }
    }

    /// Makes sure this recording has free scratch buffers of at least these sizes in bytes
    /// (one per entry), allocating what is missing at its exact size: a block that knows
    /// its widest request asks for it once, and requests that grow layer after layer then
    /// fit in it instead of leaving a buffer of every power of two behind.
    pub(crate) fn reserve_scratch(&mut self, sizes: &[u64]) -> Result<()> {
        let mut taken = Vec::new();
        for &bytes in sizes {
            let bytes = bytes.max(16);
            let buf = match self.free_scratch_buffer(bytes) {
                Some(b) => b,
                None => Arc::new(self.gpu.alloc_storage(bytes, Purpose::Scratch)?),
            };
            taken.push(buf);
        }
        self.free_buffers.append(&mut taken);
        Ok(())
    }

    /// Gives back a tensor from [`Recording::scratch_tensor`]: every dispatch that uses it is
    /// recorded, so later dispatches may take its buffer over.
    pub(crate) fn scratch_done(&mut self, t: Tensor) {
        self.free_buffers.push(t.shared_buffer().clone());
    }

    /// Hands this recording's scratch to the `Gpu`'s pool (at submission: every dispatch
    /// that uses it is recorded, and the queue orders the next recording's after them).
    pub(super) fn pool_scratch(&mut self) {
        let mut textures = std::mem::take(&mut self.textures);
        textures.append(&mut self.free_textures);
        let buffers = std::mem::take(&mut self.free_buffers);
        self.gpu.pool_scratch(textures, buffers);
    }
}
