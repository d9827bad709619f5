//! The `skipgrad` command line: one module per subcommand. Nothing in the library knows it.

pub mod bench;
pub mod check;
pub mod gradflow;
pub mod info;
pub mod memory;
pub mod stress;
pub mod train;

use skipgrad::{Gpu, Result};

/// Opens the GPU: `--backend` wins over `SKIPGRAD_BACKEND`.
pub fn open_gpu(backend: Option<&str>) -> Result<Gpu> {
    match backend {
        Some(b) => Gpu::with_backend(Some(b)),
        None => Gpu::new(),
    }
}

/// One line naming the adapter, for table headers.
pub fn adapter_line(gpu: &Gpu) -> String {
    let i = gpu.adapter_info();
    format!(
        "{} ({:?}, {}, driver {} {})",
        i.name,
        i.device_type,
        gpu.backend_name(),
        i.driver,
        i.driver_info
    )
}

/// Formats a byte count with a binary unit.
pub fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A progress bar on stderr; indicatif draws nothing when stderr is not a terminal.
pub fn progress_bar(len: u64, prefix: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.with_prefix(prefix)
}
