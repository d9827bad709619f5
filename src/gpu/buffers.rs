//! Device memory: accounted buffers and textures (every byte the engine allocates goes
//! through here, so `memory_report` sees it) and the read-back of results to the host.

use super::Gpu;
use crate::error::{Error, Result};
use crate::memory::{GpuBuffer, GpuTexture, Purpose};

/// Numbers textures, so each has a label the allocator report can be searched by.
static NEXT_TEXTURE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Gpu {
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
        let mut bytes = bytes.max(16).next_multiple_of(4);
        if self.buffer_align > 0 && bytes >= self.buffer_align {
            bytes = bytes.next_multiple_of(self.buffer_align);
        }
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
        // A label of its own, so the driver allocator's report can say what it really holds.
        let id = NEXT_TEXTURE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let label = format!("{} texture #{id}", purpose.name());
        let raw = self.scoped("texture allocation", || {
            self.device.create_texture(&wgpu::TextureDescriptor {
                label: Some(&label),
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
        // Accounted at what the driver allocated for it (row pitch, alignment, padding) where
        // the backend reports allocations, else at its texels' size.
        let texels = 16 * width.max(1) as u64 * height.max(1) as u64;
        let allocated = self.device.generate_allocator_report().and_then(|r| {
            r.allocations
                .iter()
                .find(|a| a.name == label)
                .map(|a| a.size)
        });
        let bytes = allocated.unwrap_or(texels).max(texels);
        Ok(GpuTexture::new(
            raw,
            (width, height),
            bytes,
            purpose,
            self.memory.clone(),
        ))
    }

    /// Where the driver allocator placed the live buffers of 1 MiB or more, where the backend
    /// reports it (Vulkan, DX12): one line per device memory block that holds one, `block
    /// <i> <size> MiB: <label> @<offset> MiB (<size> MiB), …`. A diagnostic for placement-
    /// dependent speed (`skipgrad bench --suite gpu` prints it with `SKIPGRAD_PLACEMENT=1`).
    pub fn allocator_placement(&self) -> Option<String> {
        let report = self.device.generate_allocator_report()?;
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        let lines: Vec<String> = report
            .blocks
            .iter()
            .enumerate()
            .filter_map(|(i, block)| {
                let large: Vec<String> = report.allocations[block.allocations.clone()]
                    .iter()
                    .filter(|a| a.size >= 1 << 20)
                    .map(|a| format!("{} @{:.1} ({:.1})", a.name, mib(a.offset), mib(a.size)))
                    .collect();
                (!large.is_empty())
                    .then(|| format!("block {i} {:.1} MiB: {}", mib(block.size), large.join(", ")))
            })
            .collect();
        Some(lines.join("\n"))
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
