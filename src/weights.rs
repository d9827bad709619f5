//! Tensors in `.safetensors` files: the reference cases and block parameters, read and
//! written with the `safetensors` crate. Only `F32` tensors are accepted; names are kept as
//! they are (PyTorch `state_dict` names such as `conv1.weight`).

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
}

fn file_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::TensorFile {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

impl TensorFile {
    /// Reads and validates a safetensors file (every tensor must be `F32`).
    pub fn read(path: &Path) -> Result<TensorFile> {
        let bytes = std::fs::read(path).map_err(|e| Error::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::parse(&bytes).map_err(|reason| file_error(path, reason))
    }

    fn parse(bytes: &[u8]) -> std::result::Result<TensorFile, String> {
        let (_, meta) =
            safetensors::SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
        let metadata = meta.metadata().clone().unwrap_or_default();
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != safetensors::Dtype::F32 {
                return Err(format!(
                    "tensor {name} is {:?}; only F32 is supported",
                    view.dtype()
                ));
            }
            let data: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            tensors.insert(
                name,
                HostTensor {
                    shape: view.shape().to_vec(),
                    data,
                },
            );
        }
        Ok(TensorFile { metadata, tensors })
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
        let mut views = Vec::with_capacity(bytes.len());
        for (name, data, shape) in &bytes {
            let v =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                    .map_err(|e| file_error(path, e.to_string()))?;
            views.push((name.clone(), v));
        }
        let meta = (!self.metadata.is_empty()).then(|| self.metadata.clone());
        safetensors::serialize_to_file(views, meta, path)
            .map_err(|e| file_error(path, e.to_string()))
    }

    /// The tensor `name`, or an error naming the file and what is missing.
    pub fn tensor(&self, name: &str) -> std::result::Result<&HostTensor, String> {
        self.tensors
            .get(name)
            .ok_or_else(|| format!("missing tensor {name:?}"))
    }

    /// Metadata value `key` parsed as an integer.
    pub fn meta_usize(&self, key: &str) -> std::result::Result<usize, String> {
        let v = self
            .metadata
            .get(key)
            .ok_or_else(|| format!("missing metadata {key:?}"))?;
        v.trim()
            .parse()
            .map_err(|_| format!("metadata {key:?} = {v:?} is not a non-negative integer"))
    }
}
