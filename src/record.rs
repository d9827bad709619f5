//! Recording GPU work: ops append dispatches to a [`Recording`], which is submitted as one
//! command buffer. A whole block pass is one recording, so it runs with no CPU round trip.

use crate::error::Result;
use crate::gpu::{Gpu, Shader, WORKGROUP_SIZE};
use crate::memory::{GpuBuffer, Purpose};
use crate::tensor::Tensor;

/// A command encoder and the small buffers its dispatches need, submitted together.
///
/// Ops append to it; nothing runs until [`Recording::submit`] (or [`Recording::finish`], which
/// also waits). Dropping a recording without submitting discards its work.
pub struct Recording<'g> {
    gpu: &'g Gpu,
    encoder: wgpu::CommandEncoder,
    /// Uniform buffers of recorded dispatches; they must outlive the submission's recording.
    keep: Vec<GpuBuffer>,
    /// Temporaries that recorded work reads or writes, held (and so counted as live by the
    /// allocator) until the work is submitted.
    retained: Vec<Tensor>,
    dispatches: usize,
}

/// One storage binding of a dispatch: a buffer bound whole; kernels address views by offsets
/// in their uniform arguments, so no binding offset alignment applies.
pub(crate) type Binding<'a> = &'a wgpu::Buffer;

impl<'g> Recording<'g> {
    /// Starts an empty recording on `gpu`.
    pub fn new(gpu: &'g Gpu) -> Recording<'g> {
        let encoder = gpu
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("skipgrad"),
            });
        Recording {
            gpu,
            encoder,
            keep: Vec::new(),
            retained: Vec::new(),
            dispatches: 0,
        }
    }

    /// The GPU this recording belongs to.
    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    /// How many kernel dispatches have been recorded.
    pub fn dispatch_count(&self) -> usize {
        self.dispatches
    }

    /// Records one dispatch of `entry` in `shader` over `invocations` threads (1-D, any size:
    /// laid out as a 2-D/3-D grid past the per-dimension limit). Binding 0 is the uniform
    /// `args`; `storage` pairs the kernel's other binding numbers with buffers.
    pub(crate) fn dispatch(
        &mut self,
        shader: Shader,
        entry: &'static str,
        args: &[u8],
        storage: &[(u32, Binding<'_>)],
        invocations: u64,
    ) -> Result<()> {
        let workgroups = invocations.div_ceil(WORKGROUP_SIZE as u64);
        self.dispatch_workgroups(shader, entry, args, storage, workgroups)
    }

    /// Like [`Recording::dispatch`], but counting workgroups rather than threads (for kernels
    /// where one workgroup cooperates on one output).
    pub(crate) fn dispatch_workgroups(
        &mut self,
        shader: Shader,
        entry: &'static str,
        args: &[u8],
        storage: &[(u32, Binding<'_>)],
        workgroups: u64,
    ) -> Result<()> {
        if workgroups == 0 {
            return Ok(());
        }
        let grid = self.gpu.workgroup_grid(workgroups)?;
        let pipeline = self.gpu.pipeline(shader, entry)?;
        let uniform = self.gpu.alloc(
            args.len() as u64,
            Purpose::Uniform,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        )?;
        self.gpu.queue().write_buffer(&uniform.raw, 0, args);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: uniform.raw.as_entire_binding(),
        }];
        entries.extend(storage.iter().map(|(binding, b)| wgpu::BindGroupEntry {
            binding: *binding,
            resource: b.as_entire_binding(),
        }));
        let bind_group = self
            .gpu
            .scoped(&format!("binding {}::{entry}", shader.name), || {
                self.gpu
                    .device()
                    .create_bind_group(&wgpu::BindGroupDescriptor {
                        label: Some(entry),
                        layout: &pipeline.get_bind_group_layout(0),
                        entries: &entries,
                    })
            })?;
        {
            let mut pass = self
                .encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(entry),
                    timestamp_writes: None,
                });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(grid[0], grid[1], grid[2]);
        }
        self.keep.push(uniform);
        self.dispatches += 1;
        Ok(())
    }

    /// Keeps `t` alive until this recording is submitted. Blocks hand their temporaries
    /// here, so the allocator's live and peak counts include every buffer the recorded work
    /// uses, as the device must hold them until it runs.
    pub fn retain(&mut self, t: Tensor) {
        self.retained.push(t);
    }

    /// Access to the encoder, e.g. to write timestamps around the recorded work.
    pub fn encoder(&mut self) -> &mut wgpu::CommandEncoder {
        &mut self.encoder
    }

    /// Submits the recorded work without waiting for it.
    pub fn submit(self) -> Result<()> {
        let Recording {
            gpu,
            encoder,
            keep,
            retained,
            ..
        } = self;
        gpu.scoped("submitting recorded work", || {
            gpu.queue().submit([encoder.finish()]);
        })?;
        // The uniforms are referenced by the submitted command buffer; wgpu keeps them alive
        // until it completes, so our handles (and their accounting) can go now.
        drop(keep);
        drop(retained);
        Ok(())
    }

    /// Submits the recorded work and waits for it to finish.
    pub fn finish(self) -> Result<()> {
        let gpu = self.gpu;
        self.submit()?;
        gpu.synchronize()
    }
}
