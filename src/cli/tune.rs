//! `skipgrad tune --show | --clear`: what the conv tuner remembers between processes (its
//! choices and the variants recorded as failed, per adapter, driver, backend and policy),
//! and forgetting it. Needs no GPU: the files say which adapter they are for.

use skipgrad::ops::conv2d::{tune_cache_files, TunedChoice};
use skipgrad::DiskCache;

/// Arguments of `skipgrad tune`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TuneArgs {
    /// List the remembered choices and failed variants (the default).
    #[arg(long)]
    pub show: bool,
    /// Delete the tuning caches and compiled pipelines of every adapter.
    #[arg(long, conflicts_with = "show")]
    pub clear: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `tune`; returns whether it succeeded.
pub fn run(args: &TuneArgs) -> skipgrad::Result<bool> {
    let cache = DiskCache::Default;
    let Some(dir) = cache.folder() else {
        println!(
            "no disk cache: SKIPGRAD_CACHE_DIR is off, or no cache folder could be made \
             (set SKIPGRAD_CACHE_DIR to a writable folder)"
        );
        return Ok(true);
    };
    if args.clear {
        let removed = cache.clear()?;
        if args.json {
            let v = serde_json::json!({ "folder": dir, "removed": removed });
            println!("{v}");
        } else {
            println!("removed {removed} file(s) from {}", dir.display());
        }
        return Ok(true);
    }
    let (files, unreadable) = tune_cache_files(&cache)?;
    if args.json {
        let rows = |list: &[TunedChoice]| -> Vec<serde_json::Value> {
            list.iter().map(super::choice_json).collect()
        };
        let v = serde_json::json!({
            "folder": dir,
            "files": files.iter().map(|f| serde_json::json!({
                "path": f.path,
                "adapter": f.adapter,
                "policy": f.policy,
                "choices": rows(&f.choices),
                "failed": rows(&f.failed),
            })).collect::<Vec<_>>(),
            "unreadable": unreadable,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(true);
    }
    println!("cache folder: {}", dir.display());
    if files.is_empty() {
        println!("no tuning cache yet: the first conv a process tunes writes one");
    }
    for f in &files {
        println!();
        println!("{} — policy {}", f.adapter, f.policy);
        println!("  {}", f.path.display());
        println!("  {} choices:", f.choices.len());
        for c in &f.choices {
            let ms = c.ms.map(|m| format!("{m:.3} ms")).unwrap_or_default();
            println!("    {:<55} {:<32} {ms}", problem(c), kernel(c));
        }
        if !f.failed.is_empty() {
            println!(
                "  {} failed (never tried again on this driver):",
                f.failed.len()
            );
            for c in &f.failed {
                println!(
                    "    {:<55} {:<32} {}",
                    problem(c),
                    kernel(c),
                    c.failure.as_deref().unwrap_or("")
                );
            }
        }
    }
    for u in &unreadable {
        println!("ignored (not a tuning cache): {u}");
    }
    Ok(true)
}

fn problem(c: &TunedChoice) -> String {
    format!(
        "{} x{:?} w{:?} s{:?} p{:?}{}{}",
        c.pass,
        c.input,
        c.weight,
        c.stride,
        c.padding,
        if c.dilation == [1, 1] {
            String::new()
        } else {
            format!(" d{:?}", c.dilation)
        },
        if c.groups == 1 {
            String::new()
        } else {
            format!(" g{}", c.groups)
        }
    )
}

fn kernel(c: &TunedChoice) -> String {
    if c.variant.is_empty() {
        c.family.name().to_string()
    } else {
        format!("{} ({})", c.family.name(), c.variant)
    }
}
