//! Compiled pipelines kept on disk between processes, where the adapter can
//! (`Features::PIPELINE_CACHE`: Vulkan): a driver's compile of a specialised GEMM kernel
//! takes tens to hundreds of milliseconds, and a process compiles one per conv geometry.
//!
//! The file sits beside the tuning cache, named by `wgpu::util::pipeline_cache_key`
//! (vendor and device; wgpu and the driver check the driver version inside it). What wgpu
//! hands back is stored behind a magic and a checksum of our own: a file that was cut
//! short, altered or is not ours is not given to the driver (which is trusted with this
//! data unchecked), but ignored with a warning — the cache then starts empty.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use super::disk::{fnv64, write_atomically};

/// The first bytes of a pipeline cache file.
const MAGIC: &[u8; 8] = b"SGPIPE01";

/// A `Gpu`'s pipeline cache and where it is saved.
pub(crate) struct PipelineCache {
    pub cache: wgpu::PipelineCache,
    path: PathBuf,
    /// Whether a pipeline was compiled through it since it was read (then it is saved).
    dirty: AtomicBool,
}

impl PipelineCache {
    /// The cache for `info`'s adapter in `dir`, filled from its file where that is valid;
    /// `None` where the backend keeps no pipeline cache.
    pub fn open(
        device: &wgpu::Device,
        info: &wgpu::AdapterInfo,
        dir: PathBuf,
    ) -> Option<PipelineCache> {
        let key = wgpu::util::pipeline_cache_key(info)?;
        let path = dir.join(format!("pipelines-{key}.bin"));
        let data = match std::fs::read(&path) {
            Ok(bytes) => match unwrap(&bytes) {
                Some(data) => Some(data.to_vec()),
                None => {
                    eprintln!(
                        "skipgrad: warning: ignoring the pipeline cache {}: it is not one this \
                         program wrote, or it was cut short (it will be replaced)",
                        path.display()
                    );
                    None
                }
            },
            Err(_) => None,
        };
        // SAFETY: the data is what `PipelineCache::get_data` returned for an adapter of
        // this cache key (the file's magic and checksum say it is what we wrote); wgpu and
        // the driver check the adapter and driver version it was made by, and `fallback`
        // starts an empty cache where they refuse it.
        let cache = unsafe {
            device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
                label: Some("skipgrad pipelines"),
                data: data.as_deref(),
                fallback: true,
            })
        };
        Some(PipelineCache {
            cache,
            path,
            dirty: AtomicBool::new(false),
        })
    }

    /// Notes that a pipeline was compiled through the cache.
    pub fn compiled(&self) {
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Writes the cache to its file if a pipeline was compiled since it was read (whole or
    /// not at all; a failure only means the next process compiles again).
    pub fn save(&self) {
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return;
        }
        if let Some(data) = self.cache.get_data() {
            let _ = write_atomically(&self.path, &wrap(&data));
        }
    }
}

/// `data` behind the magic and its checksum.
fn wrap(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&fnv64(&[data]).to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// The data of a file [`wrap`] wrote, if it is whole.
fn unwrap(bytes: &[u8]) -> Option<&[u8]> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let (sum, data) = rest.split_at_checked(8)?;
    (sum == fnv64(&[data]).to_le_bytes()).then_some(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_files_of_ours_are_read() {
        let data = b"driver bytes".to_vec();
        let file = wrap(&data);
        assert_eq!(unwrap(&file), Some(&data[..]));
        assert_eq!(unwrap(&file[..file.len() - 1]), None, "cut short");
        let mut altered = file.clone();
        altered[20] ^= 1;
        assert_eq!(unwrap(&altered), None, "altered");
        assert_eq!(unwrap(b"{\"format\": 1}"), None, "not ours");
        assert_eq!(unwrap(MAGIC), None, "no checksum");
    }
}
