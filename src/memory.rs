//! The one allocator: every GPU buffer the engine creates goes through [`Gpu::alloc`], which
//! tags it with a [`Purpose`] and counts live and peak bytes per purpose.
//!
//! The counts are exact byte sizes of the buffers we asked for. Where the backend offers it
//! (Vulkan, DX12: `Device::generate_allocator_report`), [`MemoryReport::driver_allocated_bytes`]
//! gives the driver allocator's own figure beside ours, so the two can be compared.
//!
//! [`Gpu::alloc`]: crate::Gpu

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};

/// Why a buffer exists. Peak bytes are kept per purpose, so a report can say how much of a
/// block's footprint is activations (what concatenation costs) and how much is gradients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Purpose {
    /// Forward activations (inputs, outputs, intermediate feature maps).
    Activation,
    /// Gradients of activations and of parameters.
    Gradient,
    /// Learned parameters (weights, biases).
    Parameter,
    /// Temporary working memory of a kernel or block.
    Scratch,
    /// Host-visible buffers for upload and read-back.
    Staging,
    /// Small uniform buffers holding kernel arguments.
    Uniform,
    /// Optimizer state (momentum buffers, Adam's moment estimates).
    Optimizer,
}

impl Purpose {
    /// All purposes, in report order.
    pub const ALL: [Purpose; 7] = [
        Purpose::Activation,
        Purpose::Gradient,
        Purpose::Parameter,
        Purpose::Scratch,
        Purpose::Staging,
        Purpose::Uniform,
        Purpose::Optimizer,
    ];

    /// Lower-case name, as used in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Purpose::Activation => "activation",
            Purpose::Gradient => "gradient",
            Purpose::Parameter => "parameter",
            Purpose::Scratch => "scratch",
            Purpose::Staging => "staging",
            Purpose::Uniform => "uniform",
            Purpose::Optimizer => "optimizer",
        }
    }

    /// Whether buffers of this purpose hold the model's data (activations, gradients,
    /// parameters) rather than kernel working memory.
    pub fn is_data(self) -> bool {
        matches!(
            self,
            Purpose::Activation | Purpose::Gradient | Purpose::Parameter
        )
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Default, Clone, Copy)]
struct Counts {
    live: [u64; 7],
    peak: [u64; 7],
    live_total: u64,
    peak_total: u64,
    /// Activations, gradients and parameters only: the model's data, without the kernels'
    /// working memory (scratch, staging, uniforms).
    live_data: u64,
    peak_data: u64,
    /// `live` when `peak_data` was reached: what the data's peak is made of.
    at_data_peak: [u64; 7],
}

/// Live and peak byte counters, shared by every buffer of one [`crate::Gpu`]. It also names
/// its `Gpu` (every buffer holds it), so an op handed a tensor of another `Gpu` can say
/// which two devices were mixed.
#[derive(Default)]
pub(crate) struct MemoryTracker {
    counts: Mutex<Counts>,
    /// "Gpu #k (adapter, backend)".
    pub(crate) owner: String,
}

impl MemoryTracker {
    pub(crate) fn new(owner: String) -> Self {
        MemoryTracker {
            counts: Mutex::default(),
            owner,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // A poisoned lock only means another thread panicked mid-update of plain integers.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn on_alloc(&self, purpose: Purpose, bytes: u64) {
        let mut c = self.lock();
        let i = purpose.index();
        c.live[i] += bytes;
        c.peak[i] = c.peak[i].max(c.live[i]);
        c.live_total += bytes;
        c.peak_total = c.peak_total.max(c.live_total);
        if purpose.is_data() {
            c.live_data += bytes;
            if c.live_data > c.peak_data {
                c.peak_data = c.live_data;
                c.at_data_peak = c.live;
            }
        }
    }

    pub(crate) fn on_free(&self, purpose: Purpose, bytes: u64) {
        let mut c = self.lock();
        c.live[purpose.index()] -= bytes;
        c.live_total -= bytes;
        if purpose.is_data() {
            c.live_data -= bytes;
        }
    }

    pub(crate) fn reset_peaks(&self) {
        let mut c = self.lock();
        c.peak = c.live;
        c.peak_total = c.live_total;
        c.peak_data = c.live_data;
        c.at_data_peak = c.live;
    }

    pub(crate) fn report(&self, driver: Option<(u64, u64)>) -> MemoryReport {
        let c = *self.lock();
        MemoryReport {
            live: c.live,
            peak: c.peak,
            live_total: c.live_total,
            peak_total: c.peak_total,
            live_data: c.live_data,
            peak_data: c.peak_data,
            at_data_peak: c.at_data_peak,
            driver_allocated_bytes: driver.map(|d| d.0),
            driver_wgpu_internal_bytes: driver.map(|d| d.1),
        }
    }
}

/// A snapshot of the allocator's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryReport {
    live: [u64; 7],
    peak: [u64; 7],
    at_data_peak: [u64; 7],
    /// Bytes held by live buffers, all purposes together.
    pub live_total: u64,
    /// Highest `live_total` since creation or the last [`crate::Gpu::reset_peak_memory`].
    /// This is the peak of the sum, not the sum of per-purpose peaks.
    pub peak_total: u64,
    /// Bytes held now by activations, gradients and parameters (the model's data).
    pub live_data: u64,
    /// Highest `live_data`: the data's peak, without the kernels' working memory.
    pub peak_data: u64,
    /// The driver allocator's own count of allocated bytes, where the backend reports one.
    pub driver_allocated_bytes: Option<u64>,
    /// Of those, what wgpu allocates for itself: its zero-fill buffer and the staging of
    /// host writes not yet submitted (`Tensor::from_slice` before the first submission).
    /// The rest is the engine's, and its live counters match it (textures are accounted at
    /// the driver's size for them).
    pub driver_wgpu_internal_bytes: Option<u64>,
}

impl MemoryReport {
    /// Bytes held now by buffers of this purpose.
    pub fn live(&self, purpose: Purpose) -> u64 {
        self.live[purpose.index()]
    }
    /// Highest bytes held at once by buffers of this purpose.
    pub fn peak(&self, purpose: Purpose) -> u64 {
        self.peak[purpose.index()]
    }
    /// Bytes held by buffers of this purpose at the moment `peak_data` was reached: what
    /// the data's peak is made of (the per-purpose peaks may fall at other moments).
    pub fn at_data_peak(&self, purpose: Purpose) -> u64 {
        self.at_data_peak[purpose.index()]
    }
}

/// One allocation's entry in the accounts: counted when made, released when dropped.
pub(crate) struct Account {
    pub(crate) bytes: u64,
    pub(crate) purpose: Purpose,
    pub(crate) tracker: Arc<MemoryTracker>,
}

impl Account {
    pub(crate) fn new(bytes: u64, purpose: Purpose, tracker: Arc<MemoryTracker>) -> Self {
        tracker.on_alloc(purpose, bytes);
        Account {
            bytes,
            purpose,
            tracker,
        }
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        // The wgpu handle is released with its owner; wgpu keeps the memory alive until any
        // submission still using it completes.
        self.tracker.on_free(self.purpose, self.bytes);
    }
}

/// A GPU buffer known to the allocator. Dropping it frees the buffer and the count.
pub(crate) struct GpuBuffer {
    pub(crate) raw: wgpu::Buffer,
    /// Its size and purpose, as counted.
    /// Shared, so a submitted recording can keep the bytes counted until the GPU is done
    /// with them, even after the handle itself is let go.
    pub(crate) account: Arc<Account>,
    /// Which unsubmitted recordings use it (see [`UseState`]).
    pub(crate) uses: Arc<UseState>,
}

/// How recordings that are not yet submitted use a buffer. Queue operations (a host write,
/// a read-back) run in submission order, so a host write made while an unsubmitted
/// recording reads the buffer would land *before* that recorded work, and a read-back
/// before the recording that computes the buffer is submitted would return old contents:
/// both are refused instead of giving a wrong number.
#[derive(Default, Debug)]
pub(crate) struct UseState {
    /// Unsubmitted recordings that read the buffer.
    pub(crate) pending_reads: AtomicUsize,
    /// Unsubmitted recordings that write it.
    pub(crate) pending_writes: AtomicUsize,
    /// A recording that wrote it was dropped without being submitted, and nothing has
    /// written it since: its contents are not what that recording meant to compute.
    pub(crate) discarded: AtomicBool,
}

impl GpuBuffer {
    pub(crate) fn new(
        raw: wgpu::Buffer,
        bytes: u64,
        purpose: Purpose,
        tracker: Arc<MemoryTracker>,
    ) -> Self {
        GpuBuffer {
            raw,
            account: Arc::new(Account::new(bytes, purpose, tracker)),
            uses: Arc::default(),
        }
    }
}

/// A 2-D texture known to the allocator (kernels that read their operands through the
/// texture unit stage them in these). Dropping it frees the texture and the count.
pub(crate) struct GpuTexture {
    pub(crate) view: wgpu::TextureView,
    /// Width and height in texels.
    pub(crate) size: (u32, u32),
    pub(crate) raw: wgpu::Texture,
    /// Counts the texture's bytes while it lives.
    _account: Account,
}

impl GpuTexture {
    pub(crate) fn new(
        raw: wgpu::Texture,
        size: (u32, u32),
        bytes: u64,
        purpose: Purpose,
        tracker: Arc<MemoryTracker>,
    ) -> Self {
        GpuTexture {
            view: raw.create_view(&wgpu::TextureViewDescriptor::default()),
            size,
            raw,
            _account: Account::new(bytes, purpose, tracker),
        }
    }
}

impl std::fmt::Debug for GpuBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GpuBuffer({} bytes, {})",
            self.account.bytes,
            self.account.purpose.name()
        )
    }
}
