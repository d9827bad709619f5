//! The tuner's crash journal: before it compiles and measures a kernel variant, the tuner
//! writes down what it is about to try, and crosses it off when it returns. A driver whose
//! compiler crashes takes the process down with it (no error to catch), so the only trace
//! is an entry never crossed off — which the next process finds and records as failed.
//!
//! One journal file per `Gpu` that tunes, locked by its process for as long as it lives: a
//! journal whose lock can be taken belongs to a process that is gone, and only those are
//! read (a process tuning beside this one is not mistaken for a dead one). Entries are
//! lines (`begin <id> <json>`, `end <id>`), appended and never rewritten, so a process that
//! dies mid-write leaves at worst a last line that does not parse.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Numbers the journals of one process.
static NEXT_JOURNAL: AtomicU64 = AtomicU64::new(0);

/// A journal of this process, locked while it lives and removed when dropped.
pub(crate) struct Journal {
    file: File,
    path: PathBuf,
    next_id: u64,
}

impl Journal {
    /// A new journal for the cache file named `stem` in `dir`; `None` where it cannot be
    /// made and locked (then nothing is journalled: a crash is not remembered).
    pub fn create(dir: &Path, stem: &str) -> Option<Journal> {
        let n = NEXT_JOURNAL.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{stem}.journal-{}-{n}", std::process::id()));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .ok()?;
        if file.try_lock().is_err() {
            return None;
        }
        Some(Journal {
            file,
            path,
            next_id: 0,
        })
    }

    /// Writes down `entry` as begun; returns its id for [`Journal::end`]. Written straight
    /// to the file (the operating system keeps it when the process dies; only a machine
    /// crash could lose it).
    pub fn begin(&mut self, entry: &serde_json::Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let _ = writeln!(self.file, "begin {id} {entry}");
        id
    }

    /// Crosses entry `id` off.
    pub fn end(&mut self, id: u64) {
        let _ = writeln!(self.file, "end {id}");
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // Removed while still locked: no other process reads a journal being removed.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The entries begun and never ended in the journals of dead processes for cache file
/// `stem` in `dir`; those journals are removed (each crash is reported once).
pub(crate) fn recover(dir: &Path, stem: &str) -> Vec<serde_json::Value> {
    let prefix = format!("{stem}.journal-");
    let Ok(listing) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut pending = Vec::new();
    for path in listing.flatten().map(|e| e.path()) {
        let ours = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&prefix));
        if !ours {
            continue;
        }
        let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
            continue;
        };
        match file.try_lock() {
            Ok(()) => {}
            // Its process is alive (or another process is recovering it right now).
            Err(TryLockError::WouldBlock) => continue,
            Err(TryLockError::Error(_)) => continue,
        }
        pending.extend(unfinished(&file));
        let _ = std::fs::remove_file(&path);
    }
    pending
}

/// The entries of a journal that were begun and not ended, in order.
fn unfinished(file: &File) -> Vec<serde_json::Value> {
    let mut begun: Vec<(u64, serde_json::Value)> = Vec::new();
    for line in BufReader::new(file).lines().map_while(|l| l.ok()) {
        let mut parts = line.splitn(3, ' ');
        let (Some(what), Some(id)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(id) = id.parse::<u64>() else { continue };
        match what {
            "begin" => {
                if let Some(Ok(entry)) = parts.next().map(serde_json::from_str) {
                    begun.push((id, entry));
                }
            }
            "end" => begun.retain(|(b, _)| *b != id),
            _ => {}
        }
    }
    begun.into_iter().map(|(_, entry)| entry).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A journal dropped normally leaves nothing; one whose process "died" (its file left
    /// behind, unlocked) yields exactly the entries never ended, once.
    #[test]
    fn only_dead_journals_are_recovered_and_only_their_open_entries() {
        let dir = std::env::temp_dir().join(format!("skipgrad-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        {
            let mut j = Journal::create(&dir, "t").unwrap();
            let a = j.begin(&serde_json::json!({"v": 1}));
            j.end(a);
        }
        assert!(
            recover(&dir, "t").is_empty(),
            "a finished journal is removed"
        );

        let mut alive = Journal::create(&dir, "t").unwrap();
        alive.begin(&serde_json::json!({"v": 2}));
        assert!(recover(&dir, "t").is_empty(), "a live journal is not read");

        // A dead process's journal: its lock is gone with it, its file stays.
        std::fs::write(
            dir.join("t.journal-999999-0"),
            "begin 0 {\"v\":3}\nend 0\nbegin 1 {\"v\":4}\nbegin 2 {\"v\":5}\nend 2\nbegin 3 {\"v\"",
        )
        .unwrap();
        assert_eq!(recover(&dir, "t"), [serde_json::json!({"v": 4})]);
        assert!(recover(&dir, "t").is_empty(), "reported once");
        drop(alive);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
