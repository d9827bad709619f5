//! Tensors in `.safetensors` files: the reference cases and block parameters, read and
//! written with the `safetensors` crate. Float tensors (F32, F64, F16, BF16) are read as
//! f32; integer entries (BatchNorm's `num_batches_tracked`, I64 as PyTorch saves it) are
//! kept apart, as i64; names are kept as they are (PyTorch `state_dict` names such as
//! `conv1.weight`). Files are written as F32, integers as I64.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::error::{Error, Result};

/// One named host tensor: its shape as stored and its values.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// Shape as stored in the file (any rank).
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// The contents of a safetensors file: string metadata and named f32 tensors.
#[derive(Clone, Debug, Default)]
pub struct TensorFile {
    /// The `__metadata__` map.
    pub metadata: HashMap<String, String>,
    /// Tensors by name.
    pub tensors: BTreeMap<String, HostTensor>,
    /// Integer entries by name (I64, I32, I16, I8, U8 read as i64; values row-major): never
    /// parameters, so [`TensorFile::check_fits`] does not count them.
    pub integers: BTreeMap<String, Vec<i64>>,
}

fn file_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::TensorFile {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// The largest header a safetensors file may declare (the format's own limit).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Appends exactly `n` more bytes from `reader` to `bytes`.
fn read_more<R: std::io::Read>(reader: &mut R, bytes: &mut Vec<u8>, n: u64) -> std::io::Result<()> {
    let start = bytes.len();
    let read = std::io::Read::read_to_end(&mut std::io::Read::take(reader, n), bytes)?;
    if (read as u64) < n {
        bytes.truncate(start);
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("{read} of {n} bytes"),
        ));
    }
    Ok(())
}

/// The bytes of tensor data a safetensors header declares: the largest end offset of its
/// tensors (the full check of the header is `safetensors`' own, after reading).
fn declared_data_len(header: &[u8]) -> Result<u64> {
    let v: serde_json::Value = serde_json::from_slice(header)
        .map_err(|e| content(format!("header is not a safetensors JSON header: {e}")))?;
    let entries = v
        .as_object()
        .ok_or_else(|| content("header is not a JSON object of tensors"))?;
    let mut end = 0u64;
    for (name, entry) in entries {
        if name == "__metadata__" {
            continue;
        }
        let offsets = entry
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .ok_or_else(|| content(format!("tensor {name:?} has no data_offsets")))?;
        for o in offsets {
            let o = o.as_u64().ok_or_else(|| {
                content(format!(
                    "tensor {name:?} has a data offset that is not a byte count"
                ))
            })?;
            end = end.max(o);
        }
    }
    Ok(end)
}

/// Names for a message: the first 8, then how many in all.
fn name_list<S: AsRef<str>>(names: &[S]) -> String {
    let shown: Vec<&str> = names.iter().take(8).map(|n| n.as_ref()).collect();
    match names.len() {
        n if n > shown.len() => format!("{}, … ({n} in all)", shown.join(", ")),
        _ => shown.join(", "),
    }
}

/// What is wrong with a stream's content.
fn content(reason: impl Into<String>) -> Error {
    Error::Content(reason.into())
}

/// The largest tensor file read: 1 GiB. Larger files (or endless ones such as `/dev/zero`)
/// are refused before they are read, rather than filling memory.
pub(crate) const MAX_FILE_BYTES: u64 = 1 << 30;

impl HostTensor {
    /// Its shape as the 4-D `[N, C, H, W]` a [`crate::Tensor`] has (a lower rank padded
    /// with trailing 1s: a bias `[C]` is `[C, 1, 1, 1]`), or an error past 4 dimensions.
    pub fn shape4(&self) -> Result<[usize; 4]> {
        crate::tensor::shape4(&self.shape)
    }
}

impl TensorFile {
    /// Reads and validates a safetensors file (every tensor must be `F32`). Files larger
    /// than 1 GiB (`MAX_FILE_BYTES`) are refused; at most that many bytes are ever read, even
    /// from a file that claims less and grows (a pipe, a device).
    pub fn read(path: &Path) -> Result<TensorFile> {
        let io = |e: std::io::Error| Error::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if meta.is_dir() {
            return Err(file_error(path, "is a folder, not a .safetensors file"));
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(file_error(
                path,
                format!(
                    "{} bytes, more than the {MAX_FILE_BYTES}-byte limit for tensor files",
                    meta.len()
                ),
            ));
        }
        Self::from_reader(file).map_err(|e| match e {
            Error::Content(reason) => file_error(path, reason),
            other => other,
        })
    }

    /// Reads a safetensors stream as [`TensorFile::read`] reads a file: only as many bytes
    /// as its header declares (the 8-byte header length, the header, the data its tensors'
    /// offsets reach), at most 1 GiB (`MAX_FILE_BYTES`), then validated. An endless or lying
    /// stream stops there, with a reason instead of a panic.
    pub fn from_reader<R: std::io::Read>(reader: R) -> Result<TensorFile> {
        use std::io::Read;
        let mut reader = std::io::BufReader::new(reader);
        let mut bytes = vec![0u8; 8];
        reader
            .read_exact(&mut bytes)
            .map_err(|e| content(format!("too short for a safetensors header: {e}")))?;
        let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8]));
        if header_len > MAX_HEADER_BYTES || header_len > MAX_FILE_BYTES {
            return Err(content(format!(
                "not a safetensors file: one starts with its JSON header's length, and these \
                 first 8 bytes read as {header_len} bytes (at most {MAX_HEADER_BYTES})"
            )));
        }
        read_more(&mut reader, &mut bytes, header_len)
            .map_err(|e| content(format!("header shorter than declared: {e}")))?;
        if bytes.get(8) != Some(&b'{') {
            return Err(content(
                "not a safetensors file: its header, after the 8-byte length, is not a JSON object",
            ));
        }
        let data_len = declared_data_len(&bytes[8..])?;
        let total = 8 + header_len + data_len;
        if total > MAX_FILE_BYTES {
            return Err(content(format!(
                "declares {total} bytes, more than the {MAX_FILE_BYTES}-byte limit"
            )));
        }
        read_more(&mut reader, &mut bytes, data_len)
            .map_err(|e| content(format!("tensor data shorter than declared: {e}")))?;
        Self::parse(&bytes)
    }

    /// Parses the bytes of a safetensors file (what [`TensorFile::read`] does after reading).
    pub fn parse(bytes: &[u8]) -> Result<TensorFile> {
        let invalid = |e: safetensors::SafeTensorError| content(e.to_string());
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(invalid)?;
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(invalid)?;
        let metadata = meta.metadata().clone().unwrap_or_default();
        let mut tensors = BTreeMap::new();
        let mut integers = BTreeMap::new();
        for (name, view) in st.tensors() {
            use safetensors::Dtype;
            let bytes = view.data();
            let ints: Option<Vec<i64>> = match view.dtype() {
                Dtype::I64 => Some(
                    bytes
                        .chunks_exact(8)
                        .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                        .collect(),
                ),
                Dtype::I32 => Some(
                    bytes
                        .chunks_exact(4)
                        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64)
                        .collect(),
                ),
                Dtype::I16 => Some(
                    bytes
                        .chunks_exact(2)
                        .map(|b| i16::from_le_bytes([b[0], b[1]]) as i64)
                        .collect(),
                ),
                Dtype::I8 => Some(bytes.iter().map(|&b| b as i8 as i64).collect()),
                Dtype::U8 => Some(bytes.iter().map(|&b| b as i64).collect()),
                _ => None,
            };
            if let Some(ints) = ints {
                integers.insert(name, ints);
                continue;
            }
            // Floats of every width become f32 (as PyTorch's `.float()` rounds them);
            // booleans and unsigned wider integers are left out.
            let data: Vec<f32> = match view.dtype() {
                Dtype::F32 => bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                Dtype::F64 => bytes
                    .chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
                    .collect(),
                Dtype::F16 => bytes
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                Dtype::BF16 => bytes
                    .chunks_exact(2)
                    .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                _ => continue,
            };
            tensors.insert(
                name,
                HostTensor {
                    shape: view.shape().to_vec(),
                    data,
                },
            );
        }
        Ok(TensorFile {
            metadata,
            tensors,
            integers,
        })
    }

    /// Writes the tensors and metadata as a safetensors file.
    pub fn write(&self, path: &Path) -> Result<()> {
        let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = self
            .tensors
            .iter()
            .map(|(n, t)| {
                (
                    n.clone(),
                    bytemuck::cast_slice(&t.data).to_vec(),
                    t.shape.clone(),
                )
            })
            .collect();
        let ints: Vec<(String, Vec<u8>, Vec<usize>)> = self
            .integers
            .iter()
            .map(|(n, v)| {
                // A single value is saved 0-dimensional, as PyTorch saves a counter.
                let shape = if v.len() == 1 { vec![] } else { vec![v.len()] };
                (n.clone(), bytemuck::cast_slice(v).to_vec(), shape)
            })
            .collect();
        let mut views = Vec::with_capacity(bytes.len() + ints.len());
        for (dtype, list) in [
            (safetensors::Dtype::F32, &bytes),
            (safetensors::Dtype::I64, &ints),
        ] {
            for (name, data, shape) in list {
                let v = safetensors::tensor::TensorView::new(dtype, shape.clone(), data)
                    .map_err(|e| file_error(path, e.to_string()))?;
                views.push((name.clone(), v));
            }
        }
        let meta = (!self.metadata.is_empty()).then(|| self.metadata.clone());
        safetensors::serialize_to_file(views, meta, path).map_err(|e| Error::Write {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// The entries whose names `keep` accepts (a file's parameters apart from the data and
    /// results beside them, before a strict load).
    pub fn filter(&self, keep: impl Fn(&str) -> bool) -> TensorFile {
        TensorFile {
            metadata: self.metadata.clone(),
            tensors: self
                .tensors
                .iter()
                .filter(|(k, _)| keep(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            integers: self
                .integers
                .iter()
                .filter(|(k, _)| keep(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// The entries whose names start with `prefix`, with the prefix removed (one block's
    /// parameters out of a whole network's `state_dict`: `blocks.3.` → `conv1.weight`, …).
    pub fn with_prefix(&self, prefix: &str) -> TensorFile {
        TensorFile {
            metadata: self.metadata.clone(),
            tensors: self
                .tensors
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(prefix).map(|s| (s.to_string(), v.clone())))
                .collect(),
            integers: self
                .integers
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(prefix).map(|s| (s.to_string(), v.clone())))
                .collect(),
        }
    }

    /// Checks that this `state_dict` fits `what`, whose parameters are `expected` (full
    /// names, as the file would hold them): every weight there (a bias may be absent: a conv
    /// made with `bias=False`), and — where `strict`, as PyTorch's `load_state_dict` is by
    /// default — nothing else (integer buffers such as `num_batches_tracked` are not read
    /// as tensors, so they never count). Returns the names it holds that `what` does not
    /// use; the error lists every missing and unexpected name at once, and what the file
    /// holds.
    pub fn check_fits(&self, what: &str, expected: &[String], strict: bool) -> Result<Vec<String>> {
        let missing: Vec<&String> = expected
            .iter()
            .filter(|n| !n.ends_with(".bias") && !self.tensors.contains_key(*n))
            .collect();
        let unexpected: Vec<String> = self
            .tensors
            .keys()
            .filter(|k| !expected.contains(k))
            .cloned()
            .collect();
        if missing.is_empty() && (!strict || unexpected.is_empty()) {
            return Ok(unexpected);
        }
        let mut problems = Vec::new();
        if !missing.is_empty() {
            problems.push(format!("missing {}", name_list(&missing)));
        }
        if strict && !unexpected.is_empty() {
            problems.push(format!(
                "unexpected {} (load non-strictly to skip them)",
                name_list(&unexpected)
            ));
        }
        let holds = if self.tensors.is_empty() {
            "it holds no float tensors".to_string()
        } else {
            format!(
                "it holds {}",
                name_list(&self.tensors.keys().collect::<Vec<_>>())
            )
        };
        Err(Error::param(
            "load state_dict",
            format!(
                "the state_dict does not fit {what}: {}; {holds}",
                problems.join("; ")
            ),
        ))
    }

    /// The tensor `name`, or an error naming the file and what is missing.
    pub fn tensor(&self, name: &str) -> Result<&HostTensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| content(format!("missing tensor {name:?}")))
    }

    /// The integer entry `name` holding one value (a 0-dimensional counter such as
    /// `num_batches_tracked`).
    pub fn integer(&self, name: &str) -> Result<i64> {
        match self.integers.get(name).map(Vec::as_slice) {
            Some([v]) => Ok(*v),
            Some(v) => Err(content(format!(
                "integer entry {name:?} holds {} values, not one",
                v.len()
            ))),
            None => Err(content(format!("missing integer entry {name:?}"))),
        }
    }

    /// Metadata value `key` parsed as an integer.
    pub fn meta_usize(&self, key: &str) -> Result<usize> {
        let v = self
            .metadata
            .get(key)
            .ok_or_else(|| content(format!("missing metadata {key:?}")))?;
        v.trim().parse().map_err(|_| {
            content(format!(
                "metadata {key:?} = {v:?} is not a non-negative integer"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::TensorFile;

    /// PyTorch's int64 `num_batches_tracked` (0-dimensional) is read as an integer, not a
    /// tensor, and written back the same way (I64, no dimensions), beside the f32 tensors.
    #[test]
    fn integer_counters_round_trip_as_pytorch_saves_them() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/bn");
        let file = TensorFile::read(&dir.join("bn_train_c6_4x5x7.safetensors")).unwrap();
        let tracked = file.integer("num_batches_tracked").unwrap();
        assert_eq!(
            file.integer("new_num_batches_tracked").unwrap(),
            tracked + 1
        );
        assert!(!file.tensors.contains_key("num_batches_tracked"));
        assert!(
            file.integer("weight").is_err(),
            "a tensor is not an integer"
        );
        let path = std::env::temp_dir().join(format!("skipgrad-ints-{}.st", std::process::id()));
        file.write(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).ok();
        let back = TensorFile::parse(&bytes).unwrap();
        assert_eq!(back.integers, file.integers);
        assert_eq!(back.tensors, file.tensors);
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let counter = st.tensor("num_batches_tracked").unwrap();
        assert_eq!(counter.dtype(), safetensors::Dtype::I64);
        assert!(counter.shape().is_empty());
    }
}
