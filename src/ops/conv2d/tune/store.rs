//! The tuner's memory: the kernel measured fastest for each problem, and the variants that
//! failed (an error, or a process that died inside them). Kept per `Gpu`, and — where a
//! disk cache is on ([`DiskCache`](crate::DiskCache)) — in one file per adapter, driver,
//! backend, policy and build of the kernels, so that a shape is tuned once per machine,
//! every process runs the same kernels, and a variant that crashed the driver's compiler is
//! never tried again on that driver.
//!
//! The file is read when a `Gpu` first tunes, and merged and rewritten (under a lock, whole
//! or not at all) after each measurement. A file that does not parse, or was written for
//! another adapter, is ignored with a warning, never trusted; an entry whose variant no
//! longer exists or means another kernel is dropped.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use super::cache_file::{read, sort, CacheFile, Entry, TunedChoice, FORMAT};
use super::journal::{self, Journal};
use crate::gpu::disk::{adapter_identity, fnv64, lock_file, write_atomically};
use crate::gpu::lock;
use crate::ops::conv2d::family::{Choice, TuneKey};
use crate::Gpu;

/// What the tuner knows on one `Gpu`.
#[derive(Default)]
pub(crate) struct TuneStore {
    memory: Mutex<Memory>,
    disk: OnceLock<Option<Disk>>,
}

#[derive(Default)]
struct Memory {
    choices: HashMap<TuneKey, Entry>,
    failed: HashMap<TuneKey, Vec<Entry>>,
    /// The problems this process has asked about (what its reports list).
    used: HashSet<TuneKey>,
}

/// The tuner's file for this `Gpu`'s adapter and policy, and this `Gpu`'s journal.
struct Disk {
    dir: PathBuf,
    stem: String,
    identity: serde_json::Value,
    adapter: String,
    journal: Mutex<Option<Journal>>,
}

/// A variant being measured, journalled until [`Trying::done`].
pub(crate) struct Trying<'s> {
    store: &'s TuneStore,
    id: Option<u64>,
}

impl Trying<'_> {
    /// The variant returned (well or with an error): crossed off the journal.
    pub fn done(self) {
        if let (Some(id), Some(disk)) = (self.id, self.store.disk()) {
            if let Some(j) = lock(&disk.journal).as_mut() {
                j.end(id);
            }
        }
    }
}

impl TuneStore {
    /// The store of `gpu`, its file read (and dead processes' journals recovered) on first
    /// use.
    pub fn of(gpu: &Gpu) -> Arc<TuneStore> {
        let store = gpu.extension::<TuneStore>();
        store.disk.get_or_init(|| Disk::open(gpu, &store));
        store
    }

    fn disk(&self) -> Option<&Disk> {
        self.disk.get().and_then(Option::as_ref)
    }

    /// The choice made for `key`, if any (this process's, or one read from the file).
    pub fn choice(&self, key: &TuneKey) -> Option<Choice> {
        let mut m = lock(&self.memory);
        m.used.insert(*key);
        m.choices.get(key).and_then(Entry::choice)
    }

    /// Whether `choice` failed for `key` on this driver.
    pub fn failed(&self, key: &TuneKey, choice: Choice) -> bool {
        lock(&self.memory).failed.get(key).is_some_and(|f| {
            f.iter()
                .any(|e| e.family == choice.kind().name() && e.variant == choice.variant)
        })
    }

    /// Journals `choice` for `key` as being tried, until the returned value's `done`.
    pub fn trying(&self, key: &TuneKey, choice: Choice) -> Trying<'_> {
        let id = self.disk().and_then(|disk| {
            let mut journal = lock(&disk.journal);
            if journal.is_none() {
                *journal = Journal::create(&disk.dir, &disk.stem);
            }
            let entry = serde_json::to_value(Entry::new(*key, choice, None, None)).ok()?;
            journal.as_mut().map(|j| j.begin(&entry))
        });
        Trying { store: self, id }
    }

    /// Keeps `choice` (measured at `ms`) for `key`, here and in the file.
    pub fn record_choice(&self, key: TuneKey, choice: Choice, ms: f64) {
        let entry = Entry::new(key, choice, Some(ms), None);
        lock(&self.memory).choices.insert(key, entry.clone());
        if let Some(disk) = self.disk() {
            disk.merge(self, vec![entry], Vec::new());
        }
    }

    /// Records `choice` as failed for `key` (`why`), here and in the file.
    pub fn record_failure(&self, key: TuneKey, choice: Choice, why: &str) {
        let entry = Entry::new(key, choice, None, Some(why.to_string()));
        self.remember_failure(entry.clone());
        if let Some(disk) = self.disk() {
            disk.merge(self, Vec::new(), vec![entry]);
        }
    }

    fn remember_failure(&self, entry: Entry) {
        let mut m = lock(&self.memory);
        let failed = m.failed.entry(entry.key).or_default();
        if !failed
            .iter()
            .any(|e| e.family == entry.family && e.variant == entry.variant)
        {
            failed.push(entry);
        }
    }

    /// The choices this process asked about, as reports.
    pub fn used_choices(&self) -> Vec<TunedChoice> {
        let m = lock(&self.memory);
        let mut out: Vec<TunedChoice> = m
            .used
            .iter()
            .filter_map(|k| m.choices.get(k))
            .filter_map(Entry::report)
            .collect();
        sort(&mut out);
        out
    }

    /// For tests: makes every choice `kind`'s rule, here only.
    #[cfg(test)]
    pub fn override_choices(&self, kind: crate::ConvKernels) {
        for e in lock(&self.memory).choices.values_mut() {
            e.family = kind.name().to_string();
            e.variant = 0;
            e.variant_name = String::new();
        }
    }
}

/// The numbering of the families' variants (what a stored choice's index means): raise it
/// whenever a family's variants change without a shader changing — 2: the GEMM family's
/// weight-gradient variants became tile × split factor.
const VARIANT_LAYOUT: &str = "variants 2";

/// What identifies the kernels a choice was measured with: the crate's version, the
/// variants' numbering and every conv kernel's source and entry point (a changed shader is
/// re-tuned, and a crash recorded against the old one is forgotten).
fn kernels_fingerprint() -> String {
    let kernels = crate::ops::conv2d::kernels();
    let mut parts: Vec<&[u8]> = vec![
        env!("CARGO_PKG_VERSION").as_bytes(),
        VARIANT_LAYOUT.as_bytes(),
    ];
    for k in &kernels {
        parts.push(k.shader.source.as_bytes());
        parts.push(k.entry.as_bytes());
    }
    format!("{:016x}", fnv64(&parts))
}

/// Prints one warning line on stderr (the tuner has no caller to return it to: it runs
/// inside an op that succeeds).
fn warn(message: &str) {
    eprintln!("skipgrad: warning: {message}");
}

impl Disk {
    /// The file of `gpu`'s adapter and policy in its cache folder, read into `store`; dead
    /// processes' journals are recovered into failures (each named in one warning line).
    fn open(gpu: &Gpu, store: &TuneStore) -> Option<Disk> {
        let dir = gpu.disk_cache().folder()?;
        let info = gpu.adapter_info();
        let identity = serde_json::json!({
            "adapter": adapter_identity(info),
            "policy": gpu.policy().name(),
            "kernels": kernels_fingerprint(),
        });
        let stem = format!("tune-{:016x}", fnv64(&[identity.to_string().as_bytes()]));
        let adapter = format!(
            "{} ({}, driver {} {})",
            info.name,
            info.backend.to_str(),
            info.driver,
            info.driver_info
        );
        let disk = Disk {
            dir,
            stem,
            identity,
            adapter,
            journal: Mutex::new(None),
        };
        let crashed: Vec<Entry> = journal::recover(&disk.dir, &disk.stem)
            .into_iter()
            .filter_map(|v| serde_json::from_value::<Entry>(v).ok())
            .map(|mut e| {
                e.failure = Some("the process died while compiling or running it".into());
                e
            })
            .collect();
        for e in &crashed {
            warn(&format!(
                "a process died inside {} on {}: it is recorded as failed and will not be \
                 tried again on this driver (`skipgrad tune --clear` forgets it)",
                e.describe(),
                disk.adapter
            ));
        }
        disk.merge(store, Vec::new(), crashed);
        Some(disk)
    }

    fn path(&self) -> PathBuf {
        self.dir.join(format!("{}.json", self.stem))
    }

    /// Under the file's lock: reads it, adds `choices` and `failed`, takes everything it
    /// holds into `store`, and writes the union back.
    fn merge(&self, store: &TuneStore, choices: Vec<Entry>, failed: Vec<Entry>) {
        let Some(_guard) = lock_file(&self.dir.join(format!("{}.lock", self.stem))) else {
            return;
        };
        let path = self.path();
        let mut file = match read(&path) {
            Ok(Some(f)) if f.identity == self.identity && f.format == FORMAT => f,
            Ok(Some(_)) => {
                warn(&format!(
                    "ignoring the tuning cache {}: it was written for another adapter, \
                     driver or build (it will be replaced)",
                    path.display()
                ));
                self.empty()
            }
            Ok(None) => self.empty(),
            Err(e) => {
                warn(&format!(
                    "ignoring the tuning cache {}: {e}",
                    path.display()
                ));
                self.empty()
            }
        };
        let changed = !choices.is_empty() || !failed.is_empty();
        for e in choices {
            file.choices.retain(|c| c.key != e.key);
            file.choices.push(e);
        }
        for e in failed {
            let same = |f: &Entry| f.key == e.key && f.family == e.family && f.variant == e.variant;
            if !file.failed.iter().any(same) {
                file.failed.push(e);
            }
        }
        {
            let mut m = lock(&store.memory);
            for e in &file.choices {
                if e.choice().is_some() {
                    m.choices.entry(e.key).or_insert_with(|| e.clone());
                }
            }
        }
        for e in &file.failed {
            store.remember_failure(e.clone());
        }
        if changed {
            if let Some(text) = file.to_text() {
                let _ = write_atomically(&path, text.as_bytes());
            }
        }
    }

    fn empty(&self) -> CacheFile {
        CacheFile {
            format: FORMAT,
            identity: self.identity.clone(),
            choices: Vec::new(),
            failed: Vec::new(),
        }
    }
}

impl Gpu {
    /// Every choice the `Auto` tuner made or took from its cache for the work this `Gpu`
    /// has recorded (choices made by rule, not measured, are not listed), in a stable
    /// order: what a benchmark reports beside its figures, so that two runs that differ can
    /// be told apart by their kernels.
    pub fn tuned_conv_choices(&self) -> Vec<TunedChoice> {
        self.extension::<TuneStore>().used_choices()
    }
}
