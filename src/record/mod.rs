//! Recording GPU work: ops append dispatches to a [`Recording`], which is submitted as one
//! command buffer. A whole block pass is one recording, so it runs with no CPU round trip.

mod launch;
mod scratch;

use crate::error::Result;
use crate::gpu::Gpu;
use std::sync::Arc;

use crate::gpu::Staging;
use crate::memory::{Account, GpuBuffer, Purpose};
use crate::tensor::Tensor;
use launch::Use;
pub(crate) use launch::{read, write, Binding, Grid};

/// A command encoder and the small buffers its dispatches need, submitted together.
///
/// Ops append to it; nothing runs until [`Recording::submit`] (or [`Recording::finish`], which
/// also waits). Dropping a recording without submitting discards its work.
pub struct Recording<'g> {
    gpu: &'g Gpu,
    /// The command encoder; taken out when the recording is submitted.
    encoder: Option<wgpu::CommandEncoder>,
    /// The argument arena: uniform buffers holding the argument structs of recorded
    /// dispatches, mapped until submission; they must outlive the submission's recording.
    args: Vec<GpuBuffer>,
    /// Bytes of the last argument chunk in use.
    args_used: u64,
    /// Temporaries that recorded work reads or writes, held (and so counted as live by the
    /// allocator) until the work is submitted.
    retained: Vec<Tensor>,
    /// Textures recorded work stages its operands in, held likewise: those the next
    /// dispatches will read, and those already read (free for later staging in this
    /// recording: the queue orders their reuse after their readers).
    textures: Vec<Staging>,
    free_textures: Vec<Staging>,
    /// Scratch buffers whose readers are recorded, free for later dispatches likewise.
    free_buffers: Vec<Arc<GpuBuffer>>,
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
    /// The kernels (entry points) recorded, in order of first use, and the dispatches of each.
    entries: Vec<&'static str>,
    entry_dispatches: Vec<usize>,
    /// Every buffer the recorded dispatches bind, once per (buffer, access), held until
    /// submission (see `Use`).
    uses: Vec<Use>,
    use_set: std::collections::HashSet<(usize, bool)>,
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
        // wgpu frees what a discarded recording leaves (its argument chunks, still mapped)
        // only at the queue's next submission: without one, every recording dropped
        // unsubmitted kept ≈ 1 KB a dispatch and made each later one slower (3,000 dropped
        // recordings of a 27-dispatch conv: 0.33 → 4.8 ms each, 92 → 162 MB). An empty
        // submission after the chunks go releases it.
        self.pass = None;
        self.encoder = None;
        if !self.args.is_empty() {
            self.args.clear();
            self.gpu.queue().submit(std::iter::empty());
        }
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

impl<'g> Recording<'g> {
    /// Starts an empty recording on `gpu`.
    pub fn new(gpu: &'g Gpu) -> Recording<'g> {
        Recording {
            gpu,
            encoder: Some(new_encoder(gpu)),
            args: Vec::new(),
            args_used: 0,
            retained: Vec::new(),
            textures: Vec::new(),
            free_textures: Vec::new(),
            free_buffers: Vec::new(),
            dispatches: 0,
            cost: Cost::default(),
            timer: None,
            pass: None,
            passes: 0,
            options: Vec::new(),
            entries: Vec::new(),
            entry_dispatches: Vec::new(),
            uses: Vec::new(),
            use_set: Default::default(),
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

    /// How many dispatches of the kernel `entry` (an entry point's name) have been recorded.
    pub fn dispatches_of(&self, entry: &str) -> usize {
        self.entries
            .iter()
            .position(|e| *e == entry)
            .map_or(0, |i| self.entry_dispatches[i])
    }

    /// How many kernel dispatches have been recorded.
    pub fn dispatch_count(&self) -> usize {
        self.dispatches
    }

    /// Keeps `t` alive until this recording is submitted. Blocks hand their temporaries
    /// here, so the allocator's live and peak counts include every buffer the recorded work
    /// uses, as the device must hold them until it runs.
    pub fn retain(&mut self, t: Tensor) {
        self.retained.push(t);
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
        // The argument chunks were written while mapped; the GPU reads them once unmapped.
        for chunk in &self.args {
            chunk.raw.unmap();
        }
        let submitted = gpu.scoped("submitting recorded work", || {
            gpu.queue().submit([encoder.finish()]);
        });
        // The handles go now (wgpu keeps the memory until the submission completes and frees
        // it at the poll that sees it done, so the next work can reuse it), but the bytes stay
        // counted until then: their accounts go with a callback wgpu runs at that same poll.
        let mut accounts: Vec<Arc<Account>> = Vec::new();
        accounts.extend(self.args.iter().map(|b| b.account.clone()));
        accounts.extend(self.uses.iter().map(|u| u.buf.account.clone()));
        accounts.extend(self.retained.iter().map(|t| t.buffer().account.clone()));
        // Submitted or refused, this recording's uses end here (a refused submission is
        // as good as dropped: its work never runs).
        self.release_uses(submitted.is_ok());
        submitted?;
        self.args.clear();
        self.retained.clear();
        // Its scratch serves the next recording (see `gpu/scratch.rs`).
        self.pool_scratch();
        gpu.queue().on_submitted_work_done(move || drop(accounts));
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
