//! The GPU context: instance, adapter, device and queue, the device's real limits, a cache of
//! compiled pipelines, the accounting allocator, and error scopes that turn wgpu's validation
//! and out-of-memory reports into [`Error`] values instead of panics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::memory::{GpuBuffer, GpuTexture, MemoryReport, MemoryTracker, Purpose};

/// Threads per workgroup of every 1-D kernel; the shaders use the same constant.
pub(crate) const WORKGROUP_SIZE: u32 = 64;

/// A WGSL source file: its name (for the pipeline cache and error messages) and its text.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shader {
    pub name: &'static str,
    pub source: &'static str,
}

/// Whether a kernel declares a binding read-only or read-write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// What a kernel is, as its WGSL declares it: the shader, the entry point, and the bindings
/// the entry point uses — uniforms (the argument structs), storage buffers with their
/// declared access, and textures. `Recording::launch` binds exactly these (a missing
/// optional buffer gets a small dummy), and a unit test reads every spec's shader with naga
/// and fails if the sets differ, so a wrong binding is caught by `cargo test`, not by a
/// validation error at run time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KernelSpec {
    pub shader: Shader,
    pub entry: &'static str,
    /// Uniform bindings, each filled from one argument struct (binding 0 in every kernel).
    pub uniforms: &'static [u32],
    /// Storage-buffer bindings in the order `launch` takes them, with their declared access.
    pub buffers: &'static [(u32, Access)],
    /// Texture bindings (sampled or storage), in the order `launch` takes them.
    pub textures: &'static [u32],
    /// The shader's own `override` constants (beside [`PIPELINE_CONSTANTS`]).
    pub constants: &'static [(&'static str, f64)],
}

impl KernelSpec {
    /// A kernel with its arguments at binding 0 and the given storage buffers.
    pub const fn new(
        shader: Shader,
        entry: &'static str,
        buffers: &'static [(u32, Access)],
    ) -> KernelSpec {
        KernelSpec {
            shader,
            entry,
            uniforms: &[0],
            buffers,
            textures: &[],
            constants: &[],
        }
    }

    /// The same kernel with its own override constants.
    pub const fn with_constants(self, constants: &'static [(&'static str, f64)]) -> KernelSpec {
        KernelSpec { constants, ..self }
    }

    /// The same kernel with texture bindings too.
    pub const fn with_textures(self, textures: &'static [u32]) -> KernelSpec {
        KernelSpec { textures, ..self }
    }

    /// The same kernel with more uniform bindings (after binding 0).
    pub const fn with_uniforms(self, uniforms: &'static [u32]) -> KernelSpec {
        KernelSpec { uniforms, ..self }
    }
}

/// Values of the WGSL `override` constants every shader declares (in `shaders/common.wgsl`),
/// set when a pipeline is created: the one place these numbers are defined.
pub(crate) const PIPELINE_CONSTANTS: &[(&str, f64)] = &[("WORKGROUP_SIZE", WORKGROUP_SIZE as f64)];

/// A compiled kernel: its pipeline and the layout of its bind group 0.
#[derive(Clone)]
pub(crate) struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

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
    pipelines: Mutex<HashMap<PipelineKey, Kernel>>,
    memory: Arc<MemoryTracker>,
    uncaptured: Arc<Mutex<Vec<String>>>,
    deterministic: std::sync::atomic::AtomicBool,
    /// Bound in place of absent optional bindings (a kernel that has no bias, no mask): one
    /// for read-only slots and one for read-write ones (wgpu refuses one buffer bound both
    /// ways in a dispatch).
    dummies: [GpuBuffer; 2],
    /// State that layers above keep per `Gpu` (the conv kernel policy and its tuning
    /// cache), one value per type: the device context does not know what they are.
    extensions: Mutex<HashMap<std::any::TypeId, Arc<dyn std::any::Any + Send + Sync>>>,
}

/// A compiled pipeline is one per shader, entry point and override constants.
type PipelineKey = (&'static str, &'static str, Vec<(&'static str, u64)>);

/// How to open a [`Gpu`]: [`Gpu::with_options`]. The default is what [`Gpu::new`] does
/// without `SKIPGRAD_BACKEND`.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Backend name (`vulkan`, `gl`, `metal`, `dx12`); `None`: any, native APIs first.
    pub backend: Option<String>,
    /// Lowers the device's `max_storage_buffer_binding_size` to this many bytes (at least
    /// four storage offset alignments). Tensors larger than one binding still work: ops
    /// split their work into bindings that fit (by batch, then channels). Mostly for
    /// testing that path on small tensors.
    pub max_storage_binding_bytes: Option<u64>,
    /// Choose kernel families by rule, not by timing (see [`Gpu::deterministic`]).
    pub deterministic: bool,
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
pub fn parse_backend(name: &str) -> Result<wgpu::Backends> {
    match name.trim().to_ascii_lowercase().as_str() {
        "vulkan" | "vk" => Ok(wgpu::Backends::VULKAN),
        "gl" | "gles" | "opengl" => Ok(wgpu::Backends::GL),
        "metal" | "mtl" => Ok(wgpu::Backends::METAL),
        "dx12" | "d3d12" => Ok(wgpu::Backends::DX12),
        other => Err(Error::UnknownBackend(other.to_string())),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
        if let Some(max) = options.max_storage_binding_bytes {
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
        let features = adapter.features() & wgpu::Features::TIMESTAMP_QUERY;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("skipgrad"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
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
            GpuBuffer::new(raw, 16, Purpose::Scratch, memory.clone())
        };
        let dummies = [dummy(), dummy()];
        Ok(Gpu {
            device,
            queue,
            info,
            limits,
            features,
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            memory,
            uncaptured,
            deterministic: (options.deterministic || env_flag("SKIPGRAD_DETERMINISTIC")).into(),
            dummies,
            extensions: Mutex::new(HashMap::new()),
        })
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
    pub(crate) fn dummy(&self, access: Access) -> &GpuBuffer {
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
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
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
        let driver = self
            .device
            .generate_allocator_report()
            .map(|r| r.total_allocated_bytes);
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

    /// Allocates an accounted buffer of `bytes` (at least 16, rounded up to 4) for `purpose`,
    /// checking the device's buffer limit first. A buffer may exceed the binding limit: ops
    /// bind windows of it and split their work (see `Tensor::rebased`).
    pub(crate) fn alloc(
        &self,
        bytes: u64,
        purpose: Purpose,
        usage: wgpu::BufferUsages,
    ) -> Result<GpuBuffer> {
        // At least 16 bytes: kernels may bind any buffer as an array of vec4s.
        let bytes = bytes.max(16).next_multiple_of(4);
        if bytes > self.limits.max_buffer_size {
            return Err(Error::TooLarge {
                bytes,
                limit_name: "max_buffer_size",
                limit: self.limits.max_buffer_size,
            });
        }
        let raw = self.scoped("buffer allocation", || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(purpose.name()),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        })?;
        Ok(GpuBuffer::new(raw, bytes, purpose, self.memory.clone()))
    }

    /// Allocates an accounted `width` × `height` texture of four f32 channels
    /// (`Rgba32Float`) that kernels write as a storage texture and read with `textureLoad`,
    /// checking `max_texture_dimension_2d` first.
    pub(crate) fn alloc_texture(
        &self,
        width: u32,
        height: u32,
        purpose: Purpose,
    ) -> Result<GpuTexture> {
        let limit = self.limits.max_texture_dimension_2d;
        if width.max(height) > limit {
            return Err(Error::TooLarge {
                bytes: 16 * width as u64 * height as u64,
                limit_name: "max_texture_dimension_2d (texels a side)",
                limit: limit as u64,
            });
        }
        let raw = self.scoped("texture allocation", || {
            self.device.create_texture(&wgpu::TextureDescriptor {
                label: Some(purpose.name()),
                size: wgpu::Extent3d {
                    width: width.max(1),
                    height: height.max(1),
                    depth_or_array_layers: 1,
                },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::Rgba32Float,
                usage: wgpu::TextureUsages::TEXTURE_BINDING
                    | wgpu::TextureUsages::STORAGE_BINDING
                    | wgpu::TextureUsages::COPY_DST,
                view_formats: &[],
            })
        })?;
        let bytes = 16 * width.max(1) as u64 * height.max(1) as u64;
        Ok(GpuTexture::new(
            raw,
            (width, height),
            bytes,
            purpose,
            self.memory.clone(),
        ))
    }

    /// Accounts for a buffer created inside the caller's own error scope.
    pub(crate) fn track(&self, raw: wgpu::Buffer, bytes: u64, purpose: Purpose) -> GpuBuffer {
        GpuBuffer::new(raw, bytes, purpose, self.memory.clone())
    }

    /// A storage buffer usable as kernel input and output, copy source and destination.
    pub(crate) fn alloc_storage(&self, bytes: u64, purpose: Purpose) -> Result<GpuBuffer> {
        self.alloc(
            bytes,
            purpose,
            wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        )
    }

    /// The compiled pipeline of a kernel, compiled once per `Gpu` (per shader, entry point
    /// and override constants) and cached.
    pub(crate) fn pipeline(&self, spec: &KernelSpec) -> Result<Kernel> {
        let (shader, entry) = (spec.shader, spec.entry);
        let constants: Vec<(&'static str, f64)> = PIPELINE_CONSTANTS
            .iter()
            .chain(spec.constants)
            .copied()
            .collect();
        let key: PipelineKey = (
            shader.name,
            entry,
            constants.iter().map(|&(k, v)| (k, v.to_bits())).collect(),
        );
        if let Some(p) = lock(&self.pipelines).get(&key) {
            return Ok(p.clone());
        }
        let module = {
            let mut modules = lock(&self.modules);
            match modules.get(shader.name) {
                Some(m) => m.clone(),
                None => {
                    let m = self.scoped(&format!("compiling {}", shader.name), || {
                        self.device
                            .create_shader_module(wgpu::ShaderModuleDescriptor {
                                label: Some(shader.name),
                                source: wgpu::ShaderSource::Wgsl(shader.source.into()),
                            })
                    })?;
                    modules.insert(shader.name, m.clone());
                    m
                }
            }
        };
        let pipeline = self.scoped(
            &format!("creating pipeline {}::{entry}", shader.name),
            || {
                self.device
                    .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: Some(entry),
                        layout: None,
                        module: &module,
                        entry_point: Some(entry),
                        compilation_options: wgpu::PipelineCompilationOptions {
                            constants: &constants,
                            ..Default::default()
                        },
                        cache: None,
                    })
            },
        )?;
        let kernel = Kernel {
            layout: pipeline.get_bind_group_layout(0),
            pipeline,
        };
        lock(&self.pipelines).insert(key, kernel.clone());
        Ok(kernel)
    }

    /// Lays `workgroups` out as a grid within `max_compute_workgroups_per_dimension`:
    /// 1-D when it fits, else 2-D (x full, y rows), else 3-D. The kernels rebuild the linear
    /// workgroup index from `workgroup_id` and `num_workgroups`.
    pub(crate) fn workgroup_grid(&self, workgroups: u64) -> Result<[u32; 3]> {
        let max = self.limits.max_compute_workgroups_per_dimension.max(1) as u64;
        let workgroups = workgroups.max(1);
        if workgroups <= max {
            return Ok([workgroups as u32, 1, 1]);
        }
        let y = workgroups.div_ceil(max);
        if y <= max {
            return Ok([max as u32, y as u32, 1]);
        }
        let z = y.div_ceil(max);
        if z <= max {
            return Ok([max as u32, max as u32, z as u32]);
        }
        Err(Error::DispatchTooLarge {
            workgroups,
            limit: max as u32,
        })
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

    /// Reads `bytes` bytes of `src` starting at byte `offset` back to the host: copy into a
    /// staging buffer, `map_async`, a one-shot channel, one blocking poll.
    pub(crate) fn read_bytes(
        &self,
        src: &wgpu::Buffer,
        offset: u64,
        bytes: u64,
    ) -> Result<Vec<u8>> {
        let staging = self.alloc(
            bytes,
            Purpose::Staging,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?;
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("read back"),
            });
        let copy = bytes.next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT);
        encoder.copy_buffer_to_buffer(src, offset, &staging.raw, 0, copy);
        self.scoped("read-back copy", || self.queue.submit([encoder.finish()]))?;
        let slice = staging.raw.slice(..);
        let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            // The receiver outlives the callback; a failed send cannot happen here.
            let _ = sender.send(r);
        });
        self.synchronize()?;
        match pollster::block_on(receiver.receive()) {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(Error::ReadBack(e.to_string())),
            None => return Err(Error::ReadBack("the map callback never ran".into())),
        }
        let data = slice
            .get_mapped_range()
            .map_err(|e| Error::ReadBack(e.to_string()))?[..bytes as usize]
            .to_vec();
        staging.raw.unmap();
        Ok(data)
    }
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gpu({} on {})", self.info.name, self.backend_name())
    }
}
