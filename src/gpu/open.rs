//! Opening a [`Gpu`]: the adapter (by backend, native APIs first), its real limits (lowered
//! where the options ask), the device with the features skipgrad uses, and the state kept
//! beside it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{lock, options, pipeline_cache, scratch, AdapterPolicy, Gpu, GpuOptions};
use crate::error::{Error, Result};
use crate::memory::{GpuBuffer, MemoryTracker, Purpose};

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
fn parse_backend(name: &str) -> Result<wgpu::Backends> {
    match name.trim().to_ascii_lowercase().as_str() {
        "vulkan" | "vk" => Ok(wgpu::Backends::VULKAN),
        "gl" | "gles" | "opengl" => Ok(wgpu::Backends::GL),
        "metal" | "mtl" => Ok(wgpu::Backends::METAL),
        "dx12" | "d3d12" => Ok(wgpu::Backends::DX12),
        other => Err(Error::UnknownBackend(other.to_string())),
    }
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
}
