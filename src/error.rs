//! The one error type of the crate.
//!
//! Every failure a user can cause (bad shapes, a file that does not parse, a tensor too large
//! for the device) and every failure the GPU reports (validation, out of memory, device loss)
//! becomes an [`Error`] value with a message that says what went wrong and, where there is one,
//! how to fix it. The library never panics on bad input.

/// Everything that can go wrong in skipgrad.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No GPU adapter could be found (or none of the requested backend).
    #[error("no GPU adapter found{backend}: {hint}")]
    NoAdapter {
        /// The backend that was asked for, formatted as " for backend X", or empty.
        backend: String,
        /// What to do about it.
        hint: String,
    },
    /// `SKIPGRAD_BACKEND` (or `--backend`) named something that is not a backend.
    #[error("unknown backend {0:?}: expected one of vulkan, gl, metal, dx12")]
    UnknownBackend(String),
    /// The adapter refused to create a device.
    #[error("could not create a device on adapter {adapter}: {reason}")]
    RequestDevice {
        /// The adapter's name.
        adapter: String,
        /// wgpu's reason.
        reason: String,
    },
    /// Shapes of the operands do not fit together.
    #[error("shape mismatch in {op}: {detail}")]
    Shape {
        /// The operation that refused the input.
        op: &'static str,
        /// What does not fit, with the shapes involved.
        detail: String,
    },
    /// A parameter (stride, padding, groups...) is invalid.
    #[error("invalid parameter for {op}: {detail}")]
    InvalidParameter {
        /// The operation that refused the parameter.
        op: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// A buffer would exceed what the device can allocate or bind.
    #[error("tensor of {bytes} bytes exceeds the device's {limit_name} ({limit} bytes)")]
    TooLarge {
        /// Requested size in bytes.
        bytes: u64,
        /// Which limit is exceeded.
        limit_name: &'static str,
        /// The limit in bytes.
        limit: u64,
    },
    /// Host memory for data whose size the caller chose (a layer's initial weights, a
    /// generated batch) could not be allocated.
    #[error("cannot allocate {bytes} bytes of host memory for {what}: choose smaller sizes")]
    HostMemory {
        /// The bytes asked for.
        bytes: u64,
        /// What they were for.
        what: String,
    },
    /// A dispatch needs more workgroups than the device allows even when laid out in 2-D.
    #[error("dispatch of {workgroups} workgroups exceeds the device's limit of {limit} per dimension squared")]
    DispatchTooLarge {
        /// Workgroups needed.
        workgroups: u64,
        /// `max_compute_workgroups_per_dimension`.
        limit: u32,
    },
    /// Host data does not match the tensor's number of elements.
    #[error("data length {got} does not match shape {shape:?} ({expected} elements)")]
    DataLength {
        /// Elements supplied.
        got: usize,
        /// Elements the shape holds.
        expected: usize,
        /// The shape.
        shape: [usize; 4],
    },
    /// wgpu reported a validation, out-of-memory or internal error.
    #[error("GPU error during {during}: {message}")]
    Gpu {
        /// What the engine was doing.
        during: String,
        /// wgpu's message.
        message: String,
    },
    /// Reading a buffer back from the GPU failed (for example on device loss).
    #[error("buffer read-back failed: {0}")]
    ReadBack(String),
    /// A tensor of one [`crate::Gpu`] was handed to work on another.
    #[error("{during}: a tensor of {tensor_gpu} was used on {gpu}; tensors live on the Gpu that created them (read it back with to_vec and upload it to the other Gpu)")]
    WrongGpu {
        /// What was being done.
        during: String,
        /// The `Gpu` that owns the tensor.
        tensor_gpu: String,
        /// The `Gpu` the work was meant for.
        gpu: String,
    },
    /// A tensor is used in a way that would give a wrong result because of recorded work
    /// that has not been submitted (or was dropped unsubmitted).
    #[error("{0}")]
    Recording(String),
    /// A file could not be read.
    #[error("cannot read {path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A file or folder could not be written (an output folder, a saved `state_dict`).
    #[error("cannot write {path}: {reason} (choose a folder you can write to)")]
    Write {
        /// The file or folder.
        path: String,
        /// Why.
        reason: String,
    },
    /// A tensor stream's or a reference case's content is not what the operation needs: not
    /// safetensors, a missing tensor or metadata entry, an op the case runner does not know.
    #[error("{0}")]
    Content(String),

    /// A safetensors file is malformed or does not hold what is expected.
    #[error("bad tensor file {path}: {reason}")]
    TensorFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Shorthand for `Result<T, skipgrad::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn shape(op: &'static str, detail: impl Into<String>) -> Self {
        Error::Shape {
            op,
            detail: detail.into(),
        }
    }
    pub(crate) fn param(op: &'static str, detail: impl Into<String>) -> Self {
        Error::InvalidParameter {
            op,
            detail: detail.into(),
        }
    }
}
