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
mod options;
pub use options::{AdapterPolicy, GpuOptions};
pub(crate) use scratch::{best_fit, Staging, StagingKind};

use crate::error::{Error, Result};
use crate::memory::{GpuBuffer, MemoryReport, MemoryTracker, Purpose};
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

/// Numbers the `Gpu`s of a process, so messages about mixed-up tensors can name them.
static NEXT_GPU_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Whether an environment variable is set to something other than empty, `0`, `false`
/// or `off`.
fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| {
        !matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "" | "0" | "false" | "off" | "no"
        )
    })
}

/// Parses a backend name as accepted by `SKIPGRAD_BACKEND` and `--backend`.
pub(crate) fn parse_backend(name: &str) -> Result<wgpu::Backends> {
    match name.trim().to_ascii_lowercase().as_str() {
        "vulkan" | "vk" => Ok(wgpu::Backends::VULKAN),
        "gl" | "gles" | "opengl" => Ok(wgpu::Backends::GL),
        "metal" | "mtl" => Ok(wgpu::Backends::METAL),
        "dx12" | "d3d12" => Ok(wgpu::Backends::DX12),
        other => Err(Error::UnknownBackend(other.to_string())),
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Gpu {
    /// Opens the preferred adapter. `SKIPGRAD_BACKEND=vulkan|gl|metal|dx12` restricts the
    /// choice to one backend.
    pub fn new() -> Result<Gpu> {
        match std::env::var("SKIPGRAD_BACKEND") {
            Ok(name) if !name.trim().is_empty() => Gpu::with_backend(Some(&name)),
            _ => Gpu::with_backend(None),
        }
    }

    /// Opens an adapter of the named backend (`None`: any backend, high performance first).
    pub fn with_backend(backend: Option<&str>) -> Result<Gpu> {
        Gpu::with_options(&GpuOptions {
            backend: backend.map(str::to_string),
            ..GpuOptions::default()
        })
    }

    /// Opens an adapter as `options` say (see [`GpuOptions`]).
    pub fn with_options(options: &GpuOptions) -> Result<Gpu> {
        let scratch_budget = match options.scratch_budget {
            Some(bytes) => Some(bytes),
            None => scratch::budget_from_env()?,
        };
        let policy = match options.policy {
            Some(policy) => policy,
            None => AdapterPolicy::from_env()?.unwrap_or_default(),
        };
        let backend = options.backend.as_deref();
        let adapter = match backend {
            Some(name) => Self::request_adapter(parse_backend(name)?),
            // Native APIs first; GL only when none of them has an adapter (probing GL on a
            // headless machine also prints EGL warnings, so it is not done needlessly).
            None => Self::request_adapter(wgpu::Backends::PRIMARY)
                .or_else(|_| Self::request_adapter(wgpu::Backends::GL)),
        }
        .map_err(|e| Error::NoAdapter {
            backend: backend
                .map(|b| format!(" for backend {b}"))
                .unwrap_or_default(),
            hint: format!(
                "{e}. Install a GPU driver; on headless Linux without a GPU install Mesa's \
                 software Vulkan driver (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers`), \
                 or try SKIPGRAD_BACKEND=gl for Mesa's llvmpipe"
            ),
        })?;
        let info = adapter.get_info();
        // The adapter's real limits, not wgpu's conservative defaults (128 MiB bindings),
        // with the binding size lowered where the options ask.
        let mut limits = adapter.limits();
        let max_binding = match options.max_storage_binding_bytes {
            Some(bytes) => Some(bytes),
            None => scratch::mib_from_env("SKIPGRAD_MAX_BINDING_MIB")?,
        };
        if let Some(max) = max_binding {
            let align = limits.min_storage_buffer_offset_alignment as u64;
            if max < 4 * align.max(16) {
                return Err(Error::InvalidParameter {
                    op: "Gpu options",
                    detail: format!(
                        "max_storage_binding_bytes {max} is below {} (four storage offset alignments)",
                        4 * align.max(16)
                    ),
                });
            }
            let max = max / 4 * 4;
            limits.max_storage_buffer_binding_size =
                limits.max_storage_buffer_binding_size.min(max);
        }
        let cache_dir = options.cache.folder();
        let wanted = if cache_dir.is_some() {
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::PIPELINE_CACHE
        } else {
            wgpu::Features::TIMESTAMP_QUERY
        };
        let features = adapter.features() & wanted;
        let memory_hints = options::memory_hints_from_env()?;
        let buffer_align = scratch::mib_from_env("SKIPGRAD_BUFFER_ALIGN_MIB")?.unwrap_or(0);
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("skipgrad"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::RequestDevice {
            adapter: info.name.clone(),
            reason: e.to_string(),
        })?;
        // wgpu's default handler panics; errors outside our scopes are kept and reported by
        // the next `synchronize` instead.
        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            lock(&sink).push(e.to_string());
        }));
        let id = NEXT_GPU_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let owner = format!("Gpu #{id} ({}, {})", info.name, info.backend.to_str());
        let memory = Arc::new(MemoryTracker::new(owner));
        let dummy = || {
            let raw = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("absent binding"),
                size: 16,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            });
            Arc::new(GpuBuffer::new(raw, 16, Purpose::Scratch, memory.clone()))
        };
        let dummies = [dummy(), dummy()];
        let pipeline_cache = cache_dir
            .filter(|_| features.contains(wgpu::Features::PIPELINE_CACHE))
            .and_then(|dir| pipeline_cache::PipelineCache::open(&device, &info, dir));
        let cpu_decisions = match policy {
            AdapterPolicy::Auto => info.device_type == wgpu::DeviceType::Cpu,
            AdapterPolicy::Gpu => false,
            AdapterPolicy::Cpu => true,
        };
        let gpu = Gpu {
            device,
            queue,
            info,
            limits,
            features,
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            pipeline_cache,
            disk_cache: options.cache.clone(),
            memory,
            uncaptured,
            deterministic: (options.deterministic || env_flag("SKIPGRAD_DETERMINISTIC")).into(),
            buffer_align,
            cpu_decisions,
            dummies,
            extensions: Mutex::new(HashMap::new()),
        };
        if let Some(bytes) = scratch_budget {
            gpu.set_scratch_budget(bytes);
        }
        Ok(gpu)
    }

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

    fn request_adapter(
        backends: wgpu::Backends,
    ) -> std::result::Result<wgpu::Adapter, wgpu::RequestAdapterError> {
        // wgpu's own variables apply (WGPU_VALIDATION=1 turns on the API validation layers).
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        desc.backends = backends;
        let instance = wgpu::Instance::new(desc);
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            compatible_surface: None,
            // The real limits, not a bucketed approximation.
            apply_limit_buckets: false,
        }))
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
