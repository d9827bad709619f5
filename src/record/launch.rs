//! Recording one dispatch: the kernel's bindings checked against its spec (absent optional
//! ones bound to a dummy), its arguments in one uniform buffer, its bind group, and every
//! buffer's use tracked until the recording is submitted or dropped.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{new_encoder, Cost, Recording};
use crate::error::Result;
use crate::gpu::{Access, Specialised, WORKGROUP_SIZE};
use crate::memory::{GpuBuffer, Purpose};
use crate::tensor::Tensor;

/// One storage binding of a dispatch: a buffer bound whole (kernels address views by offsets
/// in their uniform arguments, so no binding offset alignment applies), and whether the
/// kernel writes it. The recording checks that the buffer belongs to its `Gpu` and keeps
/// track of the use until it is submitted (see `Use`).
#[derive(Clone, Copy)]
pub(crate) struct Binding<'a> {
    pub buf: &'a Arc<GpuBuffer>,
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
        buf: t.shared_buffer(),
        write: false,
        window: t.binding_window(),
    }
}

/// A binding the kernel writes (or accumulates into).
pub(crate) fn write(t: &Tensor) -> Binding<'_> {
    Binding {
        buf: t.shared_buffer(),
        write: true,
        window: t.binding_window(),
    }
}

/// One buffer's use by a recording, undone when the recording is submitted or dropped.
pub(super) struct Use {
    /// Held until the recording is submitted or dropped: the device holds a buffer that
    /// recorded work binds that long whether or not its tensor is still alive, so the
    /// allocator keeps counting it (a block that drops a temporary after recording the
    /// kernel that reads it still holds those bytes).
    pub(super) buf: Arc<GpuBuffer>,
    write: bool,
}

impl Recording<'_> {
    /// Records one dispatch of `spec` over `grid`. `args` fill the kernel's uniform bindings
    /// (`spec.uniforms`, in order); `buffers` and `textures` its other bindings, in the
    /// spec's order, `None` for an absent optional buffer (bound to a small dummy).
    pub(crate) fn launch<'k>(
        &mut self,
        kernel: impl Into<Specialised<'k>>,
        args: &[&[u8]],
        buffers: &[Option<Binding<'_>>],
        textures: &[&wgpu::TextureView],
        grid: Grid,
        cost: Cost,
    ) -> Result<()> {
        let kernel = kernel.into();
        let spec = kernel.spec;
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
        self.record(kernel, args, &storage, &textures, workgroups, cost)
    }

    fn record(
        &mut self,
        specialised: Specialised<'_>,
        args: &[&[u8]],
        storage: &[(u32, Binding<'_>)],
        textures: &[(u32, &wgpu::TextureView)],
        workgroups: u64,
        cost: Cost,
    ) -> Result<()> {
        let spec = specialised.spec;
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
        let kernel = self.gpu.pipeline(specialised)?;
        // The argument structs go into the recording's argument arena (a few mapped
        // uniform buffers, unmapped at submission), each at an offset the device allows
        // for a uniform binding; the bind group is made under one error scope.
        let mut ranges = Vec::with_capacity(args.len());
        for a in args {
            ranges.push(self.arguments(a)?);
        }
        let device = self.gpu.device();
        let made = self.gpu.scoped("recording a dispatch", || {
            let mut entries = Vec::with_capacity(storage.len() + args.len());
            entries.extend(spec.uniforms.iter().zip(&ranges).map(
                |(&binding, (raw, offset, size))| wgpu::BindGroupEntry {
                    binding,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: raw,
                        offset: *offset,
                        size: wgpu::BufferSize::new(*size),
                    }),
                },
            ));
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
            device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(entry),
                layout: &kernel.layout,
                entries: &entries,
            })
        });
        let bind_group = made.map_err(|e| match e {
            crate::Error::Gpu { message, .. } => crate::Error::Gpu {
                during: format!("recording {}::{entry}", shader.name),
                message,
            },
            other => other,
        })?;
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
        for (_, b) in storage {
            self.note_use(b.buf, b.write);
        }
        self.dispatches += 1;
        self.cost += cost;
        match self.entries.iter().position(|e| *e == entry) {
            Some(i) => self.entry_dispatches[i] += 1,
            None => {
                self.entries.push(entry);
                self.entry_dispatches.push(1);
            }
        }
        Ok(())
    }

    /// Counts one more unsubmitted use of a buffer (once per recording and access).
    fn note_use(&mut self, buf: &Arc<GpuBuffer>, write: bool) {
        if !self.use_set.insert((Arc::as_ptr(buf) as usize, write)) {
            return;
        }
        let counter = if write {
            &buf.uses.pending_writes
        } else {
            &buf.uses.pending_reads
        };
        counter.fetch_add(1, Ordering::AcqRel);
        self.uses.push(Use {
            buf: buf.clone(),
            write,
        });
    }

    /// Marks that recorded work reads `t` by other means than a dispatch (a copy command).
    pub(crate) fn note_read(&mut self, t: &Tensor) {
        self.note_use(t.shared_buffer(), false);
    }

    /// Ends this recording's uses of its buffers: `submitted` or dropped unsubmitted (then
    /// what it was to write is marked as not computed).
    pub(super) fn release_uses(&mut self, submitted: bool) {
        self.use_set.clear();
        for u in self.uses.drain(..) {
            let state = &u.buf.uses;
            if u.write {
                state.discarded.store(!submitted, Ordering::Release);
                state.pending_writes.fetch_sub(1, Ordering::AcqRel);
            } else {
                state.pending_reads.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Writes one argument struct into the arena: the current chunk where it has room at
    /// the next aligned offset, else a new chunk (mapped at creation: no staging copy per
    /// dispatch). Returns the chunk's buffer, the offset and the bound size.
    fn arguments(&mut self, bytes: &[u8]) -> Result<(wgpu::Buffer, u64, u64)> {
        let align = (self.gpu.limits().min_uniform_buffer_offset_alignment as u64).max(16);
        let size = (bytes.len() as u64).max(16).next_multiple_of(16);
        let fits = |c: &GpuBuffer, at: u64| at + size <= c.account.bytes;
        let at = self.args_used.next_multiple_of(align);
        if !self.args.last().is_some_and(|c| fits(c, at)) {
            // Chunks grow from 1 KiB (a tiny recording's few dispatches) to 64 KiB.
            let grown = (1u64 << 10) << (2 * self.args.len()).min(6);
            let chunk_bytes = grown.min(ARGUMENT_CHUNK).max(size);
            let device = self.gpu.device();
            let raw = self.gpu.scoped("allocating kernel arguments", || {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("kernel arguments"),
                    size: chunk_bytes,
                    usage: wgpu::BufferUsages::UNIFORM,
                    mapped_at_creation: true,
                })
            })?;
            self.args
                .push(self.gpu.track(raw, chunk_bytes, Purpose::Uniform));
            self.args_used = 0;
        }
        let at = self.args_used.next_multiple_of(align);
        let chunk = &self.args[self.args.len() - 1];
        let mut padded = bytes.to_vec();
        padded.resize(size as usize, 0);
        if let Ok(mut view) = chunk.raw.slice(at..at + size).get_mapped_range_mut() {
            view.copy_from_slice(&padded);
        }
        self.args_used = at + size;
        Ok((chunk.raw.clone(), at, size))
    }
}

/// Bytes of the largest chunk of a recording's argument arena: 256 dispatches at the usual
/// 256-byte uniform offset alignment.
const ARGUMENT_CHUNK: u64 = 64 << 10;
