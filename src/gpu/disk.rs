//! What skipgrad remembers about an adapter between processes: the folder it keeps it in,
//! the adapter's identity (a file per adapter, driver and backend), and writes that a
//! crashing or concurrent process cannot leave half done.
//!
//! The folder is `SKIPGRAD_CACHE_DIR` where set (`off` or empty: none), else
//! `$XDG_CACHE_HOME/skipgrad`, else `~/.cache/skipgrad` (`%LOCALAPPDATA%\skipgrad` on
//! Windows). A folder that cannot be made or written just means nothing is remembered:
//! every cache is an optimisation, never a requirement.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where a `Gpu` keeps its disk caches: [`GpuOptions::cache`](crate::GpuOptions).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum DiskCache {
    /// `SKIPGRAD_CACHE_DIR` where set (`off` or empty: no cache), else the user's cache
    /// folder (`$XDG_CACHE_HOME/skipgrad`, `~/.cache/skipgrad`).
    #[default]
    Default,
    /// This folder (made if missing).
    Dir(PathBuf),
    /// Nothing on disk: every process tunes and compiles afresh.
    Off,
}

impl DiskCache {
    /// The folder this names, made if missing; `None` where there is none or it cannot be
    /// made.
    pub fn folder(&self) -> Option<PathBuf> {
        let dir = match self {
            DiskCache::Off => return None,
            DiskCache::Dir(d) => d.clone(),
            DiskCache::Default => default_folder()?,
        };
        std::fs::create_dir_all(&dir).ok()?;
        Some(dir)
    }
}

impl DiskCache {
    /// Deletes every file skipgrad keeps in this cache's folder (tuning caches, their locks
    /// and journals, compiled pipelines; other files are left alone) and returns how many
    /// it deleted.
    pub fn clear(&self) -> crate::Result<usize> {
        let Some(dir) = self.folder() else {
            return Ok(0);
        };
        let listing = std::fs::read_dir(&dir).map_err(|e| crate::Error::Io {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut removed = 0;
        for path in listing.flatten().map(|e| e.path()) {
            let ours = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("tune-") || n.starts_with("pipelines-"));
            if ours && std::fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// The folder [`DiskCache::Default`] names.
fn default_folder() -> Option<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = std::env::var_os("SKIPGRAD_CACHE_DIR") {
        let off = dir.is_empty() || dir.to_string_lossy().trim().eq_ignore_ascii_case("off");
        return (!off).then(|| PathBuf::from(dir));
    }
    if let Some(xdg) = var("XDG_CACHE_HOME") {
        return Some(PathBuf::from(xdg).join("skipgrad"));
    }
    if cfg!(windows) {
        if let Some(local) = var("LOCALAPPDATA") {
            return Some(PathBuf::from(local).join("skipgrad"));
        }
    }
    var("HOME").map(|home| PathBuf::from(home).join(".cache").join("skipgrad"))
}

/// FNV-1a, 64 bits: a hash that is the same in every build and process (file names and
/// fingerprints must not change with the standard library's hasher).
pub(crate) fn fnv64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // A separator, so ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// What identifies an adapter and its driver: a choice measured, or a kernel that crashed
/// its compiler, holds for this and nothing else.
pub(crate) fn adapter_identity(info: &wgpu::AdapterInfo) -> serde_json::Value {
    serde_json::json!({
        "name": info.name,
        "vendor": info.vendor,
        "device": info.device,
        "device_type": format!("{:?}", info.device_type),
        "driver": info.driver,
        "driver_info": info.driver_info,
        "backend": info.backend.to_str(),
    })
}

/// Writes `bytes` to `path` whole or not at all: into a temporary file beside it, then
/// renamed over it (readers see the old file or the new one, never a part).
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let written = File::create(&tmp).and_then(|mut f| f.write_all(bytes));
    match written.and_then(|()| std::fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// An exclusive lock on `path` (made if missing), held until dropped: processes that
/// read, merge and write one cache file take turns.
pub(crate) fn lock_file(path: &Path) -> Option<File> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .ok()?;
    f.lock().ok()?;
    Some(f)
}
