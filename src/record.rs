//! Recording GPU work: ops append dispatches to a [`Recording`], which is submitted as one
//! command buffer. A whole block pass is one recording, so it runs with no CPU round trip.

use crate::error::Result;
use crate::gpu::{Access, Gpu, KernelSpec, WORKGROUP_SIZE};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::memory::{GpuBuffer, GpuTexture, Purpose, UseState};
use crate::tensor::Tensor;

/// A command encoder and the small buffers its dispatches need, submitted together.
///
/// Ops append to it; nothing runs until [`Recording::submit`] (or [`Recording::finish`], which
/// also waits). Dropping a recording without submitting discards its work.
pub struct Recording<'g> {
    gpu: &'g Gpu,
    /// The command encoder; taken out when the recording is submitted.
    encoder: Option<wgpu::CommandEncoder>,
    /// Uniform buffers of recorded dispatches; they must outlive the submission's recording.
    keep: Vec<GpuBuffer>,
    /// Temporaries that recorded work reads or writes, held (and so counted as live by the
    /// allocator) until the work is submitted.
    retained: Vec<Tensor>,
    /// Textures recorded work stages its operands in, held likewise: those the next
    /// dispatches will read, and those already read (free for later staging in this
    /// recording: the queue orders their reuse after their readers).
    textures: Vec<GpuTexture>,
    free_textures: Vec<GpuTexture>,
    dispatches: usize,
    cost: Cost,
    /// With timing on: a query set whose slot 0 gets the first pass's start and slot 1 each
    /// pass's end (the last one wins), so the pair spans all recorded work on the GPU.
    timer: Option<wgpu::QuerySet>,
    /// The open compute pass: all dispatches go into one pass (wgpu orders them and inserts
    /// the barriers between them), which saves a pass's begin/end cost per dispatch.
    pass: Option<wgpu::ComputePass<'static>>,
    passes: usize,
    /// Choices that layers above make per recording (the conv kernel family), one value per
    /// type: the recording does not know what they are.
    options: Vec<Box<dyn std::any::Any + Send>>,
    entries: Vec<&'static str>,
    /// Every buffer the recorded dispatches bind, once per (buffer, access).
    uses: Vec<Use>,
}

/// The work a recording holds: floating-point operations (an FMA counts 2) and the fewest
/// bytes its kernels must move (each input read once, each output written once; read too
/// when accumulated into). Every op declares its own when it records a dispatch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// Floating-point operations.
    pub flops: u64,
    /// Bytes read plus bytes written.
    pub bytes: u64,
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, o: Cost) {
        self.flops += o.flops;
        self.bytes += o.bytes;
    }
}

fn new_encoder(gpu: &Gpu) -> wgpu::CommandEncoder {
    gpu.device()
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("skipgrad"),
        })
}

impl Drop for Recording<'_> {
    fn drop(&mut self) {
        // Dropped without submit: whatever it was to write was never computed.
        self.release_uses(false);
    }
}

/// How long a submitted recording took.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    /// From the first dispatch's start to the last one's end, by GPU timestamps (None when
    /// the device has no timestamp queries or nothing was dispatched).
    pub gpu_ms: Option<f64>,
    /// Host wall-clock from submission until the GPU reported completion.
    pub wall_ms: f64,
}

/// One storage binding of a dispatch: a buffer bound whole (kernels address views by offsets
/// in their uniform arguments, so no binding offset alignment applies), and whether the
/// kernel writes it. The recording checks that the buffer belongs to its `Gpu` and keeps
/// track of the use until it is submitted (see [`UseState`]).
#[derive(Clone, Copy)]
pub(crate) struct Binding<'a> {
    pub buf: &'a GpuBuffer,
    pub write: bool,
    /// `(byte offset, byte size)` of the part bound, for buffers larger than one binding
    /// may be (see `Tensor::rebased`); `None` binds the whole buffer.
    pub window: Option<(u64, u64)>,
}

/// How many threads or workgroups a dispatch runs (laid out as a 2-D/3-D grid past the
/// per-dimension limit).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Grid {
    /// Threads, in workgroups of `WORKGROUP_SIZE`.
    Threads(u64),
    /// Workgroups (kernels whose workgroup cooperates on one output).
    Workgroups(u64),
}

/// A binding the kernel only reads.
pub(crate) fn read(t: &Tensor) -> Binding<'_> {
    Binding {
        buf: t.buffer(),
        write: false,
        window: t.binding_window(),
    }
}

/// A binding the kernel writes (or accumulates into).
pub(crate) fn write(t: &Tensor) -> Binding<'_> {
    Binding {
        buf: t.buffer(),
        write: true,
        window: t.binding_window(),
    }
}

/// One buffer's use by a recording, undone when the recording is submitted or dropped.
struct Use {
    state: Arc<UseState>,
    write: bool,
}

impl<'g> Recording<'g> {
    /// Starts an empty recording on `gpu`.
    pub fn new(gpu: &'g Gpu) -> Recording<'g> {
        Recording {
            gpu,
            encoder: Some(new_encoder(gpu)),
            keep: Vec::new(),
            retained: Vec::new(),
            textures: Vec::new(),
            free_textures: Vec::new(),
            dispatches: 0,
            cost: Cost::default(),
            timer: None,
            pass: None,
            passes: 0,
            options: Vec::new(),
            entries: Vec::new(),
            uses: Vec::new(),
        }
    }

    /// Starts a recording whose work is timed on the GPU (with timestamp queries, where the
    /// device has them); submit it with [`Recording::finish_timed`].
    pub fn timed(gpu: &'g Gpu) -> Recording<'g> {
        let mut rec = Recording::new(gpu);
        if gpu.has_timestamps() {
            rec.timer = Some(gpu.device().create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("skipgrad timer"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            }));
        }
        rec
    }

    /// The GPU this recording belongs to.
    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    /// The option of type `T` a layer above set on this recording, if any.
    pub(crate) fn option<T: Copy + Send + 'static>(&self) -> Option<T> {
        self.options
            .iter()
            .find_map(|o| o.downcast_ref::<T>().copied())
    }

    /// Sets this recording's option of type `T`.
    pub(crate) fn set_option<T: Copy + Send + 'static>(&mut self, value: T) {
        self.options.retain(|o| !o.is::<T>());
        self.options.push(Box::new(value));
    }

    /// The operations and bytes of everything recorded so far.
    pub fn cost(&self) -> Cost {
        self.cost
    }

    /// The kernels (entry points) recorded so far, each once, in order of first use.
    pub fn kernels(&self) -> &[&'static str] {
        &self.entries
    }

    /// How many kernel dispatches have been recorded.
    pub fn dispatch_count(&self) -> usize {
        self.dispatches
    }

    /// Records one dispatch of `spec` over `grid`. `args` fill the kernel's uniform bindings
    /// (`spec.uniforms`, in order); `buffers` and `textures` its other bindings, in the
    /// spec's order, `None` for an absent optional buffer (bound to a small dummy).
    pub(crate) fn launch(
        &mut self,
        spec: &KernelSpec,
        args: &[&[u8]],
        buffers: &[Option<Binding<'_>>],
        textures: &[&wgpu::TextureView],
        grid: Grid,
        cost: Cost,
    ) -> Result<()> {
        let (shader, entry) = (spec.shader, spec.entry);
        let mismatch = |what: &str, got: usize, want: usize| crate::Error::Gpu {
            during: format!("recording {}::{entry}", shader.name),
            message: format!("internal error: {got} {what} given, the kernel declares {want}"),
        };
        if args.len() != spec.uniforms.len() {
            return Err(mismatch(
                "argument structs",
                args.len(),
                spec.uniforms.len(),
            ));
        }
        if buffers.len() != spec.buffers.len() {
            return Err(mismatch("buffers", buffers.len(), spec.buffers.len()));
        }
        if textures.len() != spec.textures.len() {
            return Err(mismatch("textures", textures.len(), spec.textures.len()));
        }
        let gpu = self.gpu;
        let mut storage = Vec::with_capacity(buffers.len());
        for (b, &(binding, access)) in buffers.iter().zip(spec.buffers) {
            match b {
                Some(b) if b.write && access == Access::Read => {
                    return Err(crate::Error::Gpu {
                        during: format!("recording {}::{entry}", shader.name),
                        message: format!(
                            "internal error: binding {binding} is declared read-only but given a buffer to write"
                        ),
                    })
                }
                Some(b) => storage.push((binding, *b)),
                None => storage.push((
                    binding,
                    Binding {
                        buf: gpu.dummy(access),
                        write: false,
                        window: None,
                    },
                )),
            }
        }
        let workgroups = match grid {
            Grid::Threads(n) => n.div_ceil(WORKGROUP_SIZE as u64),
            Grid::Workgroups(n) => n,
        };
        let textures: Vec<(u32, &wgpu::TextureView)> = spec
            .textures
            .iter()
            .copied()
            .zip(textures.iter().copied())
            .collect();
        self.record(spec, args, &storage, &textures, workgroups, cost)
    }

    fn record(
        &mut self,
        spec: &KernelSpec,
        args: &[&[u8]],
        storage: &[(u32, Binding<'_>)],
        textures: &[(u32, &wgpu::TextureView)],
        workgroups: u64,
        cost: Cost,
    ) -> Result<()> {
        let (shader, entry) = (spec.shader, spec.entry);
        let limit = self.gpu.limits().max_storage_buffer_binding_size;
        for (_, b) in storage {
            self.gpu
                .check_owner(b.buf, &format!("recording {}::{entry}", shader.name))?;
            let bytes = b.window.map_or(b.buf.account.bytes, |(_, size)| size);
            if bytes > limit {
                return Err(crate::Error::TooLarge {
                    bytes,
                    limit_name: "max_storage_buffer_binding_size (one binding of a tensor that could not be split further)",
                    limit,
                });
            }
        }
        if workgroups == 0 {
            return Ok(());
        }
        let grid = self.gpu.workgroup_grid(workgroups)?;
        let kernel = self.gpu.pipeline(spec)?;
        // The argument structs go into one small uniform buffer written while mapped at
        // creation (no staging copy), each at an offset the device allows for a uniform
        // binding; buffer and bind group are made under one error scope.
        let align = (self.gpu.limits().min_uniform_buffer_offset_alignment as usize).max(16);
        let mut padded = Vec::new();
        let mut ranges = Vec::with_capacity(args.len());
        for a in args {
            let start = padded.len().next_multiple_of(align);
            padded.resize(start, 0);
            padded.extend_from_slice(a);
            padded.resize(start + a.len().max(16).next_multiple_of(16), 0);
            ranges.push((start as u64, (padded.len() - start) as u64));
        }
        let size = padded.len() as u64;
        let device = self.gpu.device();
        let made = self.gpu.scoped("recording a dispatch", || {
            let raw = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("kernel arguments"),
                size,
                usage: wgpu::BufferUsages::UNIFORM,
                mapped_at_creation: true,
            });
            if let Ok(mut view) = raw.slice(..).get_mapped_range_mut() {
                view.copy_from_slice(&padded);
            }
            raw.unmap();
            let mut entries = Vec::with_capacity(storage.len() + args.len());
            entries.extend(
                spec.uniforms
                    .iter()
                    .zip(&ranges)
                    .map(|(&binding, &(offset, size))| wgpu::BindGroupEntry {
                        binding,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &raw,
                            offset,
                            size: wgpu::BufferSize::new(size),
                        }),
                    }),
            );
            entries.extend(storage.iter().map(|(binding, b)| wgpu::BindGroupEntry {
                binding: *binding,
                resource: match b.window {
                    None => b.buf.raw.as_entire_binding(),
                    Some((offset, size)) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &b.buf.raw,
                        offset,
                        size: wgpu::BufferSize::new(size.max(4).next_multiple_of(4)),
                    }),
                },
            }));
            entries.extend(textures.iter().map(|(binding, v)| wgpu::BindGroupEntry {
                binding: *binding,
                resource: wgpu::BindingResource::TextureView(v),
            }));
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(entry),
                layout: &kernel.layout,
                entries: &entries,
            });
            (raw, bind_group)
        });
        let (raw, bind_group) = made.map_err(|e| match e {
            crate::Error::Gpu { message, .. } => crate::Error::Gpu {
                during: format!("recording {}::{entry}", shader.name),
                message,
            },
            other => other,
        })?;
        let uniform = self.gpu.track(raw, size, Purpose::Uniform);
        if self.pass.is_none() {
            // With timing on, the first pass writes the start timestamp and every pass its
            // end (the last one wins), so the pair spans all recorded work.
            let timestamp_writes =
                self.timer
                    .as_ref()
                    .map(|query_set| wgpu::ComputePassTimestampWrites {
                        query_set,
                        beginning_of_pass_write_index: (self.passes == 0).then_some(0),
                        end_of_pass_write_index: Some(1),
                    });
            let gpu = self.gpu;
            let pass = self
                .encoder
                .get_or_insert_with(|| new_encoder(gpu))
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("skipgrad"),
                    timestamp_writes,
                });
            self.pass = Some(pass.forget_lifetime());
            self.passes += 1;
        }
        if let Some(pass) = self.pass.as_mut() {
            pass.set_pipeline(&kernel.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(grid[0], grid[1], grid[2]);
        }
        self.keep.push(uniform);
        for (_, b) in storage {
            self.note_use(&b.buf.uses, b.write);
        }
        self.dispatches += 1;
        self.cost += cost;
        if !self.entries.contains(&entry) {
            self.entries.push(entry);
        }
        Ok(())
    }

    /// Counts one more unsubmitted use of a buffer (once per recording and access).
    fn note_use(&mut self, state: &Arc<UseState>, write: bool) {
        if self
            .uses
            .iter()
            .any(|u| u.write == write && Arc::ptr_eq(&u.state, state))
        {
            return;
        }
        let counter = if write {
            &state.pending_writes
        } else {
            &state.pending_reads
        };
        counter.fetch_add(1, Ordering::AcqRel);
        self.uses.push(Use {
            state: state.clone(),
            write,
        });
    }

    /// Marks that recorded work reads `t` by other means than a dispatch (a copy command).
    pub(crate) fn note_read(&mut self, t: &Tensor) {
        let state = t.buffer().uses.clone();
        self.note_use(&state, false);
    }

    /// Ends this recording's uses of its buffers: `submitted` or dropped unsubmitted (then
    /// what it was to write is marked as not computed).
    fn release_uses(&mut self, submitted: bool) {
        for u in self.uses.drain(..) {
            if u.write {
                u.state.discarded.store(!submitted, Ordering::Release);
                u.state.pending_writes.fetch_sub(1, Ordering::AcqRel);
            } else {
                u.state.pending_reads.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Keeps `t` alive until this recording is submitted. Blocks hand their temporaries
    /// here, so the allocator's live and peak counts include every buffer the recorded work
    /// uses, as the device must hold them until it runs.
    pub fn retain(&mut self, t: Tensor) {
        self.retained.push(t);
    }

    /// A staging texture of at least `width` × `height` texels for the next dispatches: the
    /// smallest one this recording has freed that is large enough, else a new one. It lives
    /// (and counts as scratch) until the recording is submitted.
    pub(crate) fn staging_texture(
        &mut self,
        width: u32,
        height: u32,
    ) -> Result<(wgpu::Texture, wgpu::TextureView)> {
        let fits = |t: &GpuTexture| t.size.0 >= width && t.size.1 >= height;
        let best = (0..self.free_textures.len())
            .filter(|&i| fits(&self.free_textures[i]))
            .min_by_key(|&i| {
                let (w, h) = self.free_textures[i].size;
                w as u64 * h as u64
            });
        let t = match best {
            Some(i) => self.free_textures.swap_remove(i),
            None => {
                // New ones get a power-of-two height (within the device's limit), so that a
                // sequence of growing needs (a dense block's layers) reuses a few textures
                // instead of leaving one of every size behind.
                let limit = self.gpu.limits().max_texture_dimension_2d;
                let rounded = height.checked_next_power_of_two().unwrap_or(height);
                let height = if rounded <= limit { rounded } else { height };
                self.gpu.alloc_texture(width, height, Purpose::Scratch)?
            }
        };
        let handles = (t.raw.clone(), t.view.clone());
        self.textures.push(t);
        Ok(handles)
    }

    /// Marks every staging texture handed out so far as read by the dispatches recorded since
    /// (so later staging in this recording may reuse it).
    pub(crate) fn staging_consumed(&mut self) {
        self.free_textures.append(&mut self.textures);
    }

    /// Access to the encoder, to record your own commands between skipgrad's (ends the open
    /// compute pass; the next dispatch opens another). Commands recorded here are yours to
    /// order: the checks that refuse reading back unsubmitted results, or writing under a
    /// recorded read, only see skipgrad's own dispatches.
    pub fn encoder(&mut self) -> &mut wgpu::CommandEncoder {
        self.pass = None;
        self.encoder_mut()
    }

    fn encoder_mut(&mut self) -> &mut wgpu::CommandEncoder {
        let gpu = self.gpu;
        self.encoder.get_or_insert_with(|| new_encoder(gpu))
    }

    /// Submits the recorded work without waiting for it.
    pub fn submit(mut self) -> Result<()> {
        self.pass = None;
        let gpu = self.gpu;
        let encoder = self.encoder.take().unwrap_or_else(|| new_encoder(gpu));
        let submitted = gpu.scoped("submitting recorded work", || {
            gpu.queue().submit([encoder.finish()]);
        });
        // Submitted or refused, this recording's uses end here (a refused submission is
        // as good as dropped: its work never runs).
        self.release_uses(submitted.is_ok());
        submitted?;
        let keep = std::mem::take(&mut self.keep);
        let retained = std::mem::take(&mut self.retained);
        let textures = std::mem::take(&mut self.textures);
        let free_textures = std::mem::take(&mut self.free_textures);
        // The uniforms are referenced by the submitted command buffer; wgpu keeps them alive
        // until it completes, so our handles (and their accounting) can go now.
        drop(keep);
        drop(retained);
        drop(textures);
        drop(free_textures);
        Ok(())
    }

    /// Submits the recorded work, waits for it, and reports how long it took on the GPU
    /// (timestamps, for a recording made with [`Recording::timed`]) and by the host clock.
    pub fn finish_timed(mut self) -> Result<Timing> {
        let gpu = self.gpu;
        self.pass = None;
        let resolved = match (self.timer.take(), self.dispatches) {
            (Some(query_set), d) if d > 0 => {
                let buf = gpu.alloc(
                    16,
                    Purpose::Scratch,
                    wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                )?;
                self.encoder_mut()
                    .resolve_query_set(&query_set, 0..2, &buf.raw, 0);
                Some(buf)
            }
            _ => None,
        };
        let start = std::time::Instant::now();
        self.submit()?;
        gpu.synchronize()?;
        let wall_ms = start.elapsed().as_secs_f64() * 1e3;
        let gpu_ms = match resolved {
            Some(buf) => {
                let bytes = gpu.read_bytes(&buf.raw, 0, 16)?;
                // A Vec<u8> need not be 8-aligned: decode rather than cast.
                let stamp = |i: usize| {
                    u64::from_le_bytes(bytes[8 * i..8 * i + 8].try_into().unwrap_or([0; 8]))
                };
                let ticks = stamp(1).saturating_sub(stamp(0)) as f64;
                Some(ticks * gpu.queue().get_timestamp_period() as f64 / 1e6)
            }
            None => None,
        };
        Ok(Timing { gpu_ms, wall_ms })
    }

    /// Submits the recorded work and waits for it to finish.
    pub fn finish(self) -> Result<()> {
        let gpu = self.gpu;
        self.submit()?;
        gpu.synchronize()
    }
}
