//! Fuzzing the loaders: arbitrary bytes and mutated valid files through the case-file and
//! `state_dict` readers must give an `Err`, never a panic, a hang or a huge allocation.
//!
//! `SKIPGRAD_FUZZ_CASES` sets the number of inputs of each byte-level property (default
//! 100,000, what CI runs); the properties that go on to the GPU run a tenth of that.

mod common;

use common::gpu;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use skipgrad::cases::run_case;
use skipgrad::TensorFile;
use skipgrad::{ConcatStrategy, DenseBlock, ResidualBlock, ResidualVariant};

fn cases() -> u32 {
    std::env::var("SKIPGRAD_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Small valid files of every op, as seeds for mutation.
fn seeds() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .filter(|b| b.len() < 64 << 10)
        .collect();
    assert!(
        seeds.len() >= 10,
        "expected the small reference cases as seeds"
    );
    seeds
}

/// A mutation: overwrite, insert or delete bytes, or truncate.
#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, v)| Edit::Insert(i, v)),
        1 => (any::<usize>(), 1usize..64).prop_map(|(i, n)| Edit::Delete(i, n)),
        1 => any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn mutate(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for e in edits {
        let len = b.len().max(1);
        match e {
            Edit::Set(i, v) if !b.is_empty() => b[i % len] = *v,
            Edit::Insert(i, v) => {
                let at = i % (b.len() + 1);
                b.splice(at..at, v.iter().copied());
            }
            Edit::Delete(i, n) if !b.is_empty() => {
                let at = i % len;
                let end = (at + n).min(b.len());
                b.drain(at..end);
            }
            Edit::Truncate(i) => b.truncate(i % (b.len() + 1)),
            _ => {}
        }
    }
    b
}

#[test]
fn arbitrary_bytes_are_errors_not_panics() {
    let (ok, runs) = (std::cell::Cell::new(0u32), std::cell::Cell::new(0u32));
    // Half raw bytes, half with a plausible 8-byte header length in front.
    let strategy = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        (0u64..600, prop::collection::vec(any::<u8>(), 0..512)).prop_map(|(n, rest)| {
            let mut b = n.to_le_bytes().to_vec();
            b.extend(rest);
            b
        }),
    ];
    runner(cases())
        .run(&strategy, |bytes| {
            runs.set(runs.get() + 1);
            if TensorFile::from_reader(&bytes[..]).is_ok() {
                ok.set(ok.get() + 1);
            }
            Ok(())
        })
        .unwrap();
    println!("{} arbitrary inputs, {} parsed", runs.get(), ok.get());
    assert_eq!(runs.get(), cases(), "every input went through the reader");
}

#[test]
fn mutated_case_files_are_errors_not_panics() {
    let seeds = seeds();
    let (parsed, runs) = (std::cell::Cell::new(0u32), std::cell::Cell::new(0u32));
    let strategy = (0..seeds.len(), prop::collection::vec(edit(), 1..6));
    runner(cases())
        .run(&strategy, |(i, edits)| {
            runs.set(runs.get() + 1);
            let bytes = mutate(&seeds[i], &edits);
            if TensorFile::from_reader(&bytes[..]).is_ok() {
                parsed.set(parsed.get() + 1);
            }
            Ok(())
        })
        .unwrap();
    println!("{} mutated files, {} parsed", runs.get(), parsed.get());
    // Both outcomes exercised: mutations the reader accepts (data edits) and refuses.
    assert_eq!(runs.get(), cases());
    assert!(
        parsed.get() > 0 && parsed.get() < runs.get(),
        "{} of {}",
        parsed.get(),
        runs.get()
    );
}

#[test]
fn mutated_files_that_parse_run_or_fail_cleanly_on_the_gpu() {
    let g = gpu();
    let seeds = seeds();
    let (parsed, ran) = (std::cell::Cell::new(0u32), std::cell::Cell::new(0u32));
    // Edits of the tensor data keep the file valid more often than not: those run.
    let strategy = (0..seeds.len(), prop::collection::vec(edit(), 1..3));
    runner((cases() / 100).max(50))
        .run(&strategy, |(i, edits)| {
            let bytes = mutate(&seeds[i], &edits);
            if let Ok(file) = TensorFile::from_reader(&bytes[..]) {
                parsed.set(parsed.get() + 1);
                if run_case(g, &file).is_ok() {
                    ran.set(ran.get() + 1);
                }
                // The same file as a state_dict of every block: refused or loaded, no panic.
                let _ = ResidualBlock::from_state_dict(g, ResidualVariant::Basic, 16, &file);
                let _ =
                    ResidualBlock::from_state_dict(g, ResidualVariant::SkipConnection, 3, &file);
                let _ = DenseBlock::from_state_dict(g, 4, 4, 3, ConcatStrategy::Shared, &file);
            }
            Ok(())
        })
        .unwrap();
    println!("{} mutated files parsed, {} ran", parsed.get(), ran.get());
    // Valid mutations reached the GPU and ran there: the property exercised the kernels.
    assert!(
        parsed.get() > 0 && ran.get() > 0,
        "{} parsed, {} ran",
        parsed.get(),
        ran.get()
    );
}
