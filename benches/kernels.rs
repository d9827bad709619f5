//! `cargo bench`: criterion micro-benchmarks of every standard case (the same definitions as
//! `skipgrad bench`), forward and forward+backward, for day-to-day kernel tuning.
//! `cargo bench -- conv3x3` picks cases by name. Times are host wall-clock around a
//! completed submission, criterion-style; `skipgrad bench` gives GPU timestamps and ceilings.

use criterion::{criterion_group, criterion_main, Criterion};
use skipgrad::bench::standard_cases;
use skipgrad::{Gpu, Recording};

fn kernels(c: &mut Criterion) {
    let gpu = match Gpu::new() {
        Ok(g) => g,
        Err(e) => panic!("benchmarks need a GPU adapter: {e}"),
    };
    let mut group = c.benchmark_group("cases");
    group.sample_size(10);
    for case in standard_cases() {
        let mut w = case.prepare(&gpu).expect("prepare case");
        group.bench_function(format!("{}/forward", case.name), |b| {
            b.iter(|| {
                let mut rec = Recording::new(&gpu);
                w.record_forward(&mut rec).expect("record");
                rec.finish().expect("run");
            })
        });
        group.bench_function(format!("{}/fwd_bwd", case.name), |b| {
            b.iter(|| {
                let mut rec = Recording::new(&gpu);
                w.record_fwd_bwd(&mut rec).expect("record");
                rec.finish().expect("run");
            })
        });
    }
    group.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
