//! The tuner's file: one per adapter, driver, backend, policy and build of the kernels, a
//! JSON object whose `choices` and `failed` hold one entry a line (readable, and diffable
//! between machines). Each entry names its problem (the whole [`TuneKey`]), its family and
//! variant, and what the variant is, so an entry whose index now means another kernel is
//! dropped on reading; the reports users see ([`TunedChoice`], [`TuneCacheFile`]) are made
//! from them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gpu::DiskCache;
use crate::ops::conv2d::family::{family, Choice, Pass, TuneKey};
use crate::ConvKernels;

/// The version of the file's layout.
pub(super) const FORMAT: u32 = 1;

/// One choice the `Auto` tuner made (or found in its cache) for a problem, or a variant
/// recorded as failed.
#[derive(Clone, Debug, PartialEq)]
pub struct TunedChoice {
    /// `forward`, `input gradient` or `weight gradient`.
    pub pass: &'static str,
    /// The input's shape (NCHW).
    pub input: [usize; 4],
    /// The weight's shape (OIHW).
    pub weight: [usize; 4],
    /// Stride (height, width).
    pub stride: [usize; 2],
    /// Padding (height, width).
    pub padding: [usize; 2],
    /// Dilation (height, width).
    pub dilation: [usize; 2],
    /// Groups.
    pub groups: usize,
    /// The family.
    pub family: ConvKernels,
    /// Its variant (the GEMM family: the tile, e.g. `tile 128x64`); empty where the family
    /// has one kernel for the pass.
    pub variant: String,
    /// The median time measured, in milliseconds, where known.
    pub ms: Option<f64>,
    /// Why a failed variant failed; `None` for a choice.
    pub failure: Option<String>,
}

/// What the tuner's file holds for one adapter: its identity, and each choice and failure.
#[derive(Clone, Debug)]
pub struct TuneCacheFile {
    /// The file.
    pub path: PathBuf,
    /// The adapter, driver and backend it was written for, in words.
    pub adapter: String,
    /// The policy (`gpu` or `cpu`) the choices were made under.
    pub policy: String,
    /// The choices, one per problem and pass.
    pub choices: Vec<TunedChoice>,
    /// The variants recorded as failed.
    pub failed: Vec<TunedChoice>,
}

/// A choice or failure as the file holds it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Entry {
    #[serde(flatten)]
    pub(super) key: TuneKey,
    pub(super) family: String,
    pub(super) variant: usize,
    /// What the variant is ([`Family::describe_variant`]): checked on reading, so an entry
    /// whose index now means another kernel is dropped.
    pub(super) variant_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) failure: Option<String>,
}

/// The file.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct CacheFile {
    pub(super) format: u32,
    pub(super) identity: serde_json::Value,
    pub(super) choices: Vec<Entry>,
    pub(super) failed: Vec<Entry>,
}

impl Entry {
    pub(super) fn new(
        key: TuneKey,
        choice: Choice,
        ms: Option<f64>,
        failure: Option<String>,
    ) -> Entry {
        Entry {
            key,
            family: choice.kind().name().to_string(),
            variant: choice.variant,
            variant_name: choice.family.describe_variant(&key, choice.variant),
            ms,
            failure,
        }
    }

    /// The choice this entry names, if that family still has that variant for its key.
    pub(super) fn choice(&self) -> Option<Choice> {
        let kind = ConvKernels::parse(&self.family).ok()?;
        if kind == ConvKernels::AUTO {
            return None;
        }
        let f = family(kind);
        (f.describe_variant(&self.key, self.variant) == self.variant_name).then_some(Choice {
            family: f,
            variant: self.variant,
        })
    }

    pub(super) fn report(&self) -> Option<TunedChoice> {
        let kind = ConvKernels::parse(&self.family).ok()?;
        let k = &self.key;
        Some(TunedChoice {
            pass: match k.pass {
                Pass::Forward => "forward",
                Pass::BackwardInput => "input gradient",
                Pass::BackwardWeight => "weight gradient",
            },
            input: k.x,
            weight: k.w,
            stride: k.stride,
            padding: k.padding,
            dilation: k.dilation,
            groups: k.groups,
            family: kind,
            variant: self.variant_name.clone(),
            ms: self.ms,
            failure: self.failure.clone(),
        })
    }

    /// One line naming the kernel and the problem, for warnings.
    pub(super) fn describe(&self) -> String {
        let k = &self.key;
        let variant = if self.variant_name.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.variant_name)
        };
        let pass = self.report().map(|r| r.pass).unwrap_or("pass");
        format!(
            "the {} kernel{variant} for the {pass} of input {:?}, weight {:?}, stride {:?}, \
             padding {:?}, dilation {:?}, groups {}",
            self.family, k.x, k.w, k.stride, k.padding, k.dilation, k.groups
        )
    }
}

pub(super) fn sort(choices: &mut [TunedChoice]) {
    choices.sort_by(|a, b| {
        (a.pass, a.input, a.weight, a.stride, a.padding, a.dilation)
            .cmp(&(b.pass, b.input, b.weight, b.stride, b.padding, b.dilation))
            .then(a.family.name().cmp(b.family.name()))
    });
}

impl CacheFile {
    /// The file's text: JSON, one entry a line (readable, and diffable between machines).
    pub(super) fn to_text(&self) -> Option<String> {
        let lines = |entries: &[Entry]| -> Option<String> {
            let rows: Vec<String> = entries
                .iter()
                .map(|e| serde_json::to_string(e).ok())
                .collect::<Option<_>>()?;
            Some(if rows.is_empty() {
                "[]".into()
            } else {
                format!("[\n  {}\n]", rows.join(",\n  "))
            })
        };
        Some(format!(
            "{{\n\"format\": {},\n\"identity\": {},\n\"choices\": {},\n\"failed\": {}\n}}\n",
            self.format,
            serde_json::to_string(&self.identity).ok()?,
            lines(&self.choices)?,
            lines(&self.failed)?
        ))
    }
}

/// The cache file at `path`: `None` where there is none, an error where it does not parse.
pub(super) fn read(path: &Path) -> std::result::Result<Option<CacheFile>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| format!("it is not a tuning cache ({e})"))
}

/// Every tuning cache file in `cache`'s folder, with what it holds (no `Gpu` needed);
/// files that do not parse are listed as errors in `skipped`.
pub fn tune_cache_files(cache: &DiskCache) -> Result<(Vec<TuneCacheFile>, Vec<String>)> {
    let Some(dir) = cache.folder() else {
        return Ok((Vec::new(), Vec::new()));
    };
    let listing = std::fs::read_dir(&dir).map_err(|e| Error::Io {
        path: dir.display().to_string(),
        reason: e.to_string(),
    })?;
    let mut paths: Vec<PathBuf> = listing
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("tune-") && n.ends_with(".json"))
        })
        .collect();
    paths.sort();
    let (mut files, mut skipped) = (Vec::new(), Vec::new());
    for path in paths {
        match read(&path) {
            Ok(Some(f)) => {
                let a = &f.identity["adapter"];
                let s = |k: &str| a[k].as_str().unwrap_or("?").to_string();
                let mut choices: Vec<TunedChoice> =
                    f.choices.iter().filter_map(Entry::report).collect();
                let mut failed: Vec<TunedChoice> =
                    f.failed.iter().filter_map(Entry::report).collect();
                sort(&mut choices);
                sort(&mut failed);
                files.push(TuneCacheFile {
                    adapter: format!(
                        "{} ({}, driver {} {})",
                        s("name"),
                        s("backend"),
                        s("driver"),
                        s("driver_info")
                    ),
                    policy: f.identity["policy"].as_str().unwrap_or("?").to_string(),
                    path,
                    choices,
                    failed,
                });
            }
            Ok(None) => {}
            Err(e) => skipped.push(format!("{}: {e}", path.display())),
        }
    }
    Ok((files, skipped))
}
