//! The GPU context: instance, adapter, device and queue, the device's real limits, a cache of
//! compiled pipelines, the accounting allocator, and error scopes that turn wgpu's validation
//! and out-of-memory reports into [`Error`] values instead of panics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

mod buffers;
pub(crate) mod disk;
mod kernel;
mod pipeline_cache;
mod scratch;
pub use disk::DiskCache;
mod open;
mod options;
pub use options::{AdapterPolicy, GpuOptions};
pub(crate) use scratch::{best_fit, Staging, StagingKind};

use crate::error::{Error, Result};
use crate::memory::{GpuBuffer, MemoryReport, MemoryTracker};
pub(crate) use kernel::{Access, Kernel, KernelSpec, Shader, Specialised};

/// Threads per workgroup of every 1-D kernel; the shaders use the same constant.
pub(crate) const WORKGROUP_SIZE: u32 = 64;

/// A GPU and everything skipgrad keeps per GPU.
///
/// Create one with [`Gpu::new`] (adapter chosen by `SKIPGRAD_BACKEND` or wgpu's preference)
/// or [`Gpu::with_backend`]. All tensors, ops and blocks work on one `Gpu`.
pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    features: wgpu::Features,
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<kernel::PipelineKey, Kernel>>,
    /// Compiled pipelines kept on disk, where the adapter and the disk cache allow.
    pipeline_cache: Option<pipeline_cache::PipelineCache>,
    disk_cache: DiskCache,
    memory: Arc<MemoryTracker>,
    uncaptured: Arc<Mutex<Vec<String>>>,
    deterministic: std::sync::atomic::AtomicBool,
    /// Buffers of at least this many bytes are allocated in whole multiples of it (0: as
    /// asked). A diagnostic (`SKIPGRAD_BUFFER_ALIGN_MIB`) for how the driver backs large
    /// buffers: see `options::memory_hints_from_env`.
    buffer_align: u64,
    /// Whether adapter-dependent decisions are the CPU adapter's ([`AdapterPolicy`],
    /// resolved at creation).
    cpu_decisions: bool,
    /// Bound in place of absent optional bindings (a kernel that has no bias, no mask): one
    /// for read-only slots and one for read-write ones (wgpu refuses one buffer bound both
    /// ways in a dispatch).
    dummies: [Arc<GpuBuffer>; 2],
    /// State that layers above keep per `Gpu` (the conv kernel policy and its tuning
    /// cache), one value per type: the device context does not know what they are.
    extensions: Mutex<HashMap<std::any::TypeId, Arc<dyn std::any::Any + Send + Sync>>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Gpu {
    /// Whether kernel families are chosen by a fixed rule instead of by timing them
    /// (`SKIPGRAD_DETERMINISTIC=1` sets it at creation). With it, every run of the same
    /// work on the same adapter, driver and kernel choice gives bit-identical results: the
    /// kernels themselves use no atomics and reduce in a fixed order; only the timing-based
    /// choice of family (whose summation orders differ) can vary between processes.
    pub fn deterministic(&self) -> bool {
        self.deterministic
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Turns the deterministic choice of kernel families on or off (see
    /// [`Gpu::deterministic`]); work recorded from then on follows it.
    pub fn set_deterministic(&self, on: bool) {
        self.deterministic
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whose decisions this `Gpu` takes where they depend on the kind of adapter:
    /// [`AdapterPolicy::Gpu`] or [`AdapterPolicy::Cpu`] (`Auto` resolved by the adapter's
    /// device type when the `Gpu` was created).
    pub fn policy(&self) -> AdapterPolicy {
        if self.cpu_decisions {
            AdapterPolicy::Cpu
        } else {
            AdapterPolicy::Gpu
        }
    }

    /// Where this `Gpu` keeps its choices and pipelines between processes.
    pub fn disk_cache(&self) -> &DiskCache {
        &self.disk_cache
    }

    /// Whether compiled pipelines are read from and saved to a disk cache (Vulkan, with
    /// the disk cache on).
    pub fn has_pipeline_cache(&self) -> bool {
        self.pipeline_cache.is_some()
    }

    /// Whether adapter-dependent decisions are the CPU adapter's: the one question every
    /// such decision asks (never the device type itself, so that CI can take either side).
    pub(crate) fn cpu_decisions(&self) -> bool {
        self.cpu_decisions
    }

    /// The state of type `T` this `Gpu` keeps for a layer above it, made on first use.
    pub(crate) fn extension<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        let mut map = lock(&self.extensions);
        let any = map
            .entry(std::any::TypeId::of::<T>())
            .or_insert_with(|| Arc::new(T::default()))
            .clone();
        // The map holds a `T` under `T`'s own type id.
        any.downcast::<T>()
            .unwrap_or_else(|_| Arc::new(T::default()))
    }

    /// The buffer bound where a kernel's optional binding of `access` is absent.
    pub(crate) fn dummy(&self, access: Access) -> &Arc<GpuBuffer> {
        &self.dummies[(access == Access::Write) as usize]
    }

    /// The most bytes one dispatch may bind of a buffer, and the alignment of a binding's
    /// offset: ops bind windows of larger buffers (see `Tensor::rebased`).
    pub(crate) fn binding_limits(&self) -> (u64, u64) {
        (
            self.limits.max_storage_buffer_binding_size,
            (self.limits.min_storage_buffer_offset_alignment as u64).max(16),
        )
    }

    /// A name for this `Gpu` in messages: `Gpu #k (adapter, backend)`.
    pub fn label(&self) -> &str {
        &self.memory.owner
    }

    /// Fails unless `buf` was allocated on this `Gpu`.
    pub(crate) fn check_owner(&self, buf: &GpuBuffer, during: &str) -> Result<()> {
        if Arc::ptr_eq(&buf.account.tracker, &self.memory) {
            return Ok(());
        }
        Err(Error::WrongGpu {
            during: during.to_string(),
            tensor_gpu: buf.account.tracker.owner.clone(),
            gpu: self.label().to_string(),
        })
    }

    /// The adapter's name, vendor, driver and backend.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// The limits the device was created with (the adapter's own).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// The backend name in lower case (`vulkan`, `gl`, `metal`, `dx12`).
    pub fn backend_name(&self) -> String {
        self.info.backend.to_str().to_string()
    }

    /// Whether the device can time work with timestamp queries.
    pub fn has_timestamps(&self) -> bool {
        self.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// The underlying wgpu device (for users who mix skipgrad with their own wgpu code).
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The underlying wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// Live and peak bytes per purpose of every buffer the engine holds, and the driver
    /// allocator's own figure where the backend reports one.
    pub fn memory_report(&self) -> MemoryReport {
        let driver = self.device.generate_allocator_report().map(|r| {
            let internal = r
                .allocations
                .iter()
                .filter(|a| a.name.starts_with("(wgpu internal)"))
                .map(|a| a.size)
                .sum();
            (r.total_allocated_bytes, internal)
        });
        self.memory.report(driver)
    }

    /// Starts a new peak measurement: peaks are set to what is live now.
    pub fn reset_peak_memory(&self) {
        self.memory.reset_peaks();
    }

    /// Runs `f` inside validation, out-of-memory and internal error scopes and returns the
    /// first error wgpu reported, as an [`Error::Gpu`].
    pub(crate) fn scoped<T>(&self, during: &str, f: impl FnOnce() -> T) -> Result<T> {
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let internal = self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let value = f();
        // Scopes pop in reverse order of pushing.
        let errors = [
            pollster::block_on(internal.pop()),
            pollster::block_on(oom.pop()),
            pollster::block_on(validation.pop()),
        ];
        match errors.into_iter().flatten().next() {
            Some(e) => Err(Error::Gpu {
                during: during.to_string(),
                message: e.to_string(),
            }),
            None => Ok(value),
        }
    }

    /// Blocks until all submitted work has finished, then reports any error wgpu raised
    /// outside a scope (for example device loss).
    pub fn synchronize(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu {
                during: "waiting for the GPU".into(),
                message: e.to_string(),
            })?;
        self.free_pooled_scratch();
        self.take_uncaptured()
    }

    pub(crate) fn take_uncaptured(&self) -> Result<()> {
        let mut errs = lock(&self.uncaptured);
        if errs.is_empty() {
            return Ok(());
        }
        let message = errs.join("; ");
        errs.clear();
        Err(Error::Gpu {
            during: "earlier GPU work".into(),
            message,
        })
    }
}

/// A `Gpu` for the library's unit tests: the adapter `SKIPGRAD_BACKEND` names (any
/// otherwise) taking `policy`'s decisions. Panics without an adapter: GPU tests fail, never
/// skip, where none is found.
#[cfg(test)]
pub(crate) fn test_gpu(policy: AdapterPolicy) -> Gpu {
    let backend = std::env::var("SKIPGRAD_BACKEND")
        .ok()
        .filter(|b| !b.trim().is_empty());
    Gpu::with_options(&GpuOptions {
        backend,
        policy: Some(policy),
        ..GpuOptions::default()
    })
    .unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"))
}

impl Drop for Gpu {
    /// Saves the pipelines compiled in this process for the next one.
    fn drop(&mut self) {
        if let Some(cache) = &self.pipeline_cache {
            cache.save();
        }
    }
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gpu({} on {})", self.info.name, self.backend_name())
    }
}
