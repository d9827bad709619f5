//! [`Tensor`]: a 4-D f32 array in NCHW order on the GPU, possibly a channel-slice view of a
//! larger buffer.
//!
//! Element `(n, c, h, w)` of a tensor lives at `offset + n * batch_stride + (c * H + h) * W + w`
//! in its buffer. A contiguous tensor has `offset = 0` and `batch_stride = C * H * W`; a view of
//! channels `[c0, c1)` of a tensor with `C` channels has `offset = c0 * H * W` and keeps the
//! parent's batch stride. Every kernel takes the offset and batch stride as arguments, so ops
//! read and write views directly: that is what makes a zero-copy concatenation possible.
//!
//! Weights are OIHW tensors; a bias of `C` values is a tensor of shape `[C, 1, 1, 1]`.

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::memory::{GpuBuffer, Purpose};

/// A 4-D f32 tensor on the GPU (NCHW for activations, OIHW for weights).
#[derive(Clone)]
pub struct Tensor {
    buf: Arc<GpuBuffer>,
    shape: [usize; 4],
    offset: usize,
    batch_stride: usize,
    /// Where a dispatch binds the buffer from, in elements, when the whole buffer is larger
    /// than one binding may be (see [`Tensor::rebased`]); kernels then address the view
    /// relative to it. `None`: bound whole.
    base: Option<usize>,
}

/// Pads a shape of rank 1 to 4 with trailing ones (`[C]` → `[C, 1, 1, 1]`).
pub(crate) fn shape4(dims: &[usize]) -> Result<[usize; 4]> {
    if dims.is_empty() || dims.len() > 4 {
        return Err(Error::shape(
            "tensor",
            format!("expected 1 to 4 dimensions, got {dims:?}"),
        ));
    }
    let mut s = [1; 4];
    s[..dims.len()].copy_from_slice(dims);
    Ok(s)
}

fn numel(shape: [usize; 4]) -> usize {
    shape.iter().product()
}

/// The element count of `shape`, refused when it is zero or overflows (so a shape such as
/// `[2^62 + 1, 4, 1, 1]` cannot wrap around to a small tensor).
fn checked_numel(shape: [usize; 4]) -> Result<usize> {
    let n = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            Error::shape(
                "tensor",
                format!("shape {shape:?} has more elements than an address space holds"),
            )
        })?;
    if n == 0 {
        return Err(Error::shape(
            "tensor",
            format!("shape {shape:?} has no elements"),
        ));
    }
    Ok(n)
}

/// An empty vector with room for `n` values, or [`Error::HostMemory`] where the host cannot
/// give it (sizes a user chose must not abort the process).
pub(crate) fn host_vec<T>(n: usize, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| Error::HostMemory {
        bytes: (n as u64).saturating_mul(std::mem::size_of::<T>() as u64),
        what: what.to_string(),
    })?;
    Ok(v)
}

impl Tensor {
    /// Fails, as [`Tensor::zeros`] would, where a tensor of `shape` cannot exist on `gpu`
    /// (no elements, more than an address space holds, past the device's
    /// `max_buffer_size`) — without allocating anything: check before making host data of
    /// that size.
    pub fn check_size(gpu: &Gpu, shape: [usize; 4]) -> Result<u64> {
        let elements = checked_numel(shape)?;
        let limit = gpu.limits().max_buffer_size;
        match (elements as u64).checked_mul(4) {
            Some(bytes) if bytes <= limit => Ok(bytes),
            bytes => Err(Error::TooLarge {
                bytes: bytes.unwrap_or(u64::MAX),
                limit_name: "max_buffer_size",
                limit,
            }),
        }
    }

    /// A new tensor of zeros (wgpu zero-initialises buffers).
    pub fn zeros(gpu: &Gpu, shape: [usize; 4], purpose: Purpose) -> Result<Tensor> {
        let bytes = Tensor::check_size(gpu, shape)?;
        let buf = gpu.alloc_storage(bytes, purpose)?;
        Ok(Tensor {
            buf: Arc::new(buf),
            shape,
            offset: 0,
            batch_stride: shape[1] * shape[2] * shape[3],
            base: None,
        })
    }

    /// A whole tensor of `shape` over the start of `buf` (at least that large): scratch a
    /// recording reuses.
    pub(crate) fn over(buf: Arc<GpuBuffer>, shape: [usize; 4]) -> Tensor {
        Tensor {
            buf,
            shape,
            offset: 0,
            batch_stride: shape[1] * shape[2] * shape[3],
            base: None,
        }
    }

    /// A new tensor holding `data` (row-major NCHW, `data.len()` must equal the shape's size).
    pub fn from_slice(
        gpu: &Gpu,
        shape: [usize; 4],
        data: &[f32],
        purpose: Purpose,
    ) -> Result<Tensor> {
        let expected = checked_numel(shape)?;
        if data.len() != expected {
            return Err(Error::DataLength {
                got: data.len(),
                expected,
                shape,
            });
        }
        let t = Tensor::zeros(gpu, shape, purpose)?;
        t.write(gpu, data)?;
        Ok(t)
    }

    /// Overwrites the tensor's elements with `data` (row-major over its own shape).
    ///
    /// Refused while a [`crate::Recording`] that uses this tensor's buffer is not yet
    /// submitted: host writes reach the GPU before any command buffer submitted after
    /// them, so the write would change the result of work recorded *before* it. Submit the
    /// recording first (or write before recording).
    pub fn write(&self, gpu: &Gpu, data: &[f32]) -> Result<()> {
        gpu.check_owner(&self.buf, "Tensor::write")?;
        let uses = &self.buf.uses;
        if uses.pending_reads.load(Ordering::Acquire) + uses.pending_writes.load(Ordering::Acquire)
            > 0
        {
            return Err(Error::Recording(
                "Tensor::write: a recording that is not yet submitted uses this tensor; the \
                 write would land before that recorded work and change its result. Submit the \
                 recording (Recording::submit or finish) first, or write before recording"
                    .into(),
            ));
        }
        if data.len() != self.numel() {
            return Err(Error::DataLength {
                got: data.len(),
                expected: self.numel(),
                shape: self.shape,
            });
        }
        let sample = self.sample_len();
        for (n, chunk) in data.chunks(sample).enumerate() {
            let at = (self.offset + n * self.batch_stride) as u64 * 4;
            gpu.queue()
                .write_buffer(&self.buf.raw, at, bytemuck::cast_slice(chunk));
        }
        if self.is_contiguous() {
            // The whole buffer holds known values again.
            uses.discarded.store(false, Ordering::Release);
        }
        Ok(())
    }

    /// Reads the tensor back to the host, row-major over its shape (views are gathered).
    ///
    /// Refused while a [`crate::Recording`] that writes the tensor is not yet submitted
    /// (its contents would be the old ones), and after such a recording was dropped
    /// unsubmitted (they are not what it meant to compute).
    pub fn to_vec(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        gpu.check_owner(&self.buf, "Tensor::to_vec")?;
        let uses = &self.buf.uses;
        if uses.pending_writes.load(Ordering::Acquire) > 0 {
            return Err(Error::Recording(
                "Tensor::to_vec: the recording that computes this tensor has not been \
                 submitted yet; submit it (Recording::submit or finish) before reading back"
                    .into(),
            ));
        }
        if uses.discarded.load(Ordering::Acquire) {
            return Err(Error::Recording(
                "Tensor::to_vec: the recording that was to compute this tensor was dropped \
                 without being submitted, so the tensor does not hold that result; submit \
                 recordings (Recording::submit or finish) instead of dropping them"
                    .into(),
            ));
        }
        let sample = self.sample_len();
        let span = (self.shape[0] - 1) * self.batch_stride + sample;
        let bytes = gpu.read_bytes(&self.buf.raw, self.offset as u64 * 4, span as u64 * 4)?;
        // Decoded rather than cast: a Vec<u8> carries no f32 alignment guarantee.
        let all: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
        if self.is_contiguous() {
            return Ok(all[..span].to_vec());
        }
        let mut out = Vec::with_capacity(self.numel());
        for n in 0..self.shape[0] {
            let s = n * self.batch_stride;
            out.extend_from_slice(&all[s..s + sample]);
        }
        Ok(out)
    }

    /// A view of channels `range` (no copy): reads and writes go to this tensor's buffer.
    pub fn channels(&self, range: Range<usize>) -> Result<Tensor> {
        if range.start >= range.end || range.end > self.shape[1] {
            return Err(Error::shape(
                "channel view",
                format!(
                    "channels {}..{} of a tensor with {} channels",
                    range.start, range.end, self.shape[1]
                ),
            ));
        }
        let hw = self.shape[2] * self.shape[3];
        Ok(Tensor {
            buf: self.buf.clone(),
            shape: [
                self.shape[0],
                range.end - range.start,
                self.shape[2],
                self.shape[3],
            ],
            offset: self.offset + range.start * hw,
            batch_stride: self.batch_stride,
            base: None,
        })
    }

    /// `[N, C, H, W]` (or `[O, I, KH, KW]` for a weight).
    pub fn shape(&self) -> [usize; 4] {
        self.shape
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        numel(self.shape)
    }

    /// Whether the elements are dense in the buffer from offset 0 (not a channel view).
    pub fn is_contiguous(&self) -> bool {
        self.offset == 0 && self.batch_stride == self.sample_len()
    }

    /// What the tensor's buffer is accounted as.
    pub fn purpose(&self) -> Purpose {
        self.buf.account.purpose
    }

    /// Bytes of the whole underlying buffer (shared by all views of it).
    pub fn buffer_bytes(&self) -> u64 {
        self.buf.account.bytes
    }

    /// Offset of element 0 in the buffer, in elements.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Elements between consecutive samples of the batch.
    pub fn batch_stride(&self) -> usize {
        self.batch_stride
    }

    /// Whether two tensors are views of the same buffer.
    pub fn shares_buffer(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.buf, &other.buf)
    }

    /// Whether two tensors (views) may touch a common element.
    pub fn overlaps(&self, other: &Tensor) -> bool {
        if !self.shares_buffer(other) {
            return false;
        }
        let (a0, a1) = self.extent();
        let (b0, b1) = other.extent();
        if a1 <= b0 || b1 <= a0 {
            return false;
        }
        // Same batch stride and disjoint per-sample ranges cannot meet (channel views).
        if self.batch_stride == other.batch_stride {
            let s = self.batch_stride;
            let (x0, x1) = (self.offset % s, self.offset % s + self.sample_len());
            let (y0, y1) = (other.offset % s, other.offset % s + other.sample_len());
            if self.offset / s == other.offset / s && (x1 <= y0 || y1 <= x0) {
                return false;
            }
        }
        true
    }

    fn extent(&self) -> (usize, usize) {
        (
            self.offset,
            self.offset + (self.shape[0] - 1) * self.batch_stride + self.sample_len(),
        )
    }

    pub(crate) fn sample_len(&self) -> usize {
        self.shape[1] * self.shape[2] * self.shape[3]
    }

    pub(crate) fn raw(&self) -> &wgpu::Buffer {
        &self.buf.raw
    }

    /// The accounted buffer behind the tensor (what a recorded dispatch binds).
    pub(crate) fn buffer(&self) -> &GpuBuffer {
        &self.buf
    }

    /// The buffer, shared: what a recording holds until it is submitted.
    pub(crate) fn shared_buffer(&self) -> &Arc<GpuBuffer> {
        &self.buf
    }

    /// A view of samples `range` of the batch (rows `range` of a weight): no copy.
    pub(crate) fn batches(&self, range: Range<usize>) -> Result<Tensor> {
        if range.start >= range.end || range.end > self.shape[0] {
            return Err(Error::shape(
                "batch view",
                format!(
                    "samples {}..{} of a tensor with {} samples",
                    range.start, range.end, self.shape[0]
                ),
            ));
        }
        Ok(Tensor {
            buf: self.buf.clone(),
            shape: [
                range.end - range.start,
                self.shape[1],
                self.shape[2],
                self.shape[3],
            ],
            offset: self.offset + range.start * self.batch_stride,
            batch_stride: self.batch_stride,
            base: None,
        })
    }

    /// Offset (relative to where the buffer is bound) and batch stride as kernel
    /// arguments.
    pub(crate) fn offset_u32(&self) -> u32 {
        (self.offset - self.base.unwrap_or(0)) as u32
    }

    /// Bytes from the first to one past the last element of the view.
    fn span_bytes(&self) -> u64 {
        let (a, b) = self.extent();
        4 * (b - a) as u64
    }

    /// What a dispatch binds: `(byte offset, byte size)` of a window of the buffer, or
    /// `None` for the whole buffer.
    pub(crate) fn binding_window(&self) -> Option<(u64, u64)> {
        self.base.map(|base| {
            let start = 4 * base as u64;
            (start, 4 * self.extent().1 as u64 - start)
        })
    }

    /// Bytes one dispatch must bind for this view: the whole buffer where it fits the
    /// device's binding limit, else a window from the aligned offset before the view to
    /// its end.
    pub(crate) fn binding_bytes(&self, limit: u64, align: u64) -> u64 {
        if self.buffer_bytes() <= limit {
            return self.buffer_bytes();
        }
        let start = 4 * self.offset as u64;
        self.span_bytes() + (start - start / align * align)
    }

    /// The same view, bound as a window of its buffer when the buffer is larger than the
    /// binding limit (`align`: the device's storage offset alignment, a multiple of 4).
    pub(crate) fn rebased(&self, limit: u64, align: u64) -> Tensor {
        let mut t = self.clone();
        t.base = (self.buffer_bytes() > limit)
            .then(|| ((4 * self.offset as u64) / align * align / 4) as usize);
        t
    }
    pub(crate) fn batch_stride_u32(&self) -> u32 {
        self.batch_stride as u32
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor({:?}, offset {}, batch stride {}, {})",
            self.shape,
            self.offset,
            self.batch_stride,
            self.buf.account.purpose.name()
        )
    }
}
