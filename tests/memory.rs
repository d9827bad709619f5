//! What a dense block holds: the allocator's peak against the analytic count, the
//! allocator's count against the driver's report, and kernel scratch that does not grow with
//! depth.

mod common;

use skipgrad::{ConcatStrategy, DenseBlock, Purpose, Recording, Tensor};

/// The allocator's measured peak of activations, gradients and parameters over one
/// forward+backward equals the analytic count, for both strategies (what `skipgrad memory`
/// reports). A Gpu of its own, so no other test's buffers are counted.
#[test]
fn dense_block_peak_memory_matches_the_formula() {
    let gpu = skipgrad::Gpu::new().expect("GPU adapter");
    let (n, c0, k, layers, hw) = (2, 3, 2, 4, 5);
    for strategy in ConcatStrategy::ALL {
        let base = gpu.memory_report().live_data;
        let mut block = DenseBlock::new(&gpu, c0, k, layers, strategy).unwrap();
        let x = Tensor::zeros(&gpu, [n, c0, hw, hw], Purpose::Activation).unwrap();
        let go = Tensor::zeros(&gpu, [n, block.out_channels(), hw, hw], Purpose::Gradient).unwrap();
        // One pass first (kernel autotuning allocates scratch of its own), then measure.
        for measured in [false, true] {
            if measured {
                gpu.reset_peak_memory();
            }
            let mut rec = Recording::new(&gpu);
            let out = block.forward(&mut rec, &x).unwrap();
            let grads = block.backward(&mut rec, &go).unwrap();
            rec.finish().unwrap();
            drop((out, grads));
        }
        let measured = gpu.memory_report().peak_data - base;
        let analytic = DenseBlock::analytic_peak_bytes(strategy, c0, k, layers, n, hw, hw).total();
        assert_eq!(measured, analytic, "{strategy:?}");
    }
}

/// What the engine accounts is what the driver holds for it: with a shared dense block's
/// whole forward+backward recorded (its staging textures and partial sums live), the
/// driver allocator's total less wgpu's own allocations equals the allocator's live bytes
/// within 1%, for both strategies, on backends that report allocations (Vulkan; CI's
/// lavapipe). A Gpu of its own, so other tests' buffers do not count.
#[test]
fn accounting_matches_the_driver_report() {
    let gpu = skipgrad::Gpu::new().expect("GPU adapter");
    if gpu.device().generate_allocator_report().is_none() {
        assert_ne!(
            gpu.backend_name(),
            "vulkan",
            "Vulkan reports its allocations"
        );
        return;
    }
    let (n, c0, k, layers, hw) = (4, 24, 12, 8, 16);
    for strategy in ConcatStrategy::ALL {
        let mut block = DenseBlock::new(&gpu, c0, k, layers, strategy).unwrap();
        let x = Tensor::zeros(&gpu, [n, c0, hw, hw], Purpose::Activation).unwrap();
        let go = Tensor::zeros(&gpu, [n, block.out_channels(), hw, hw], Purpose::Gradient).unwrap();
        for _ in 0..2 {
            let mut rec = Recording::new(&gpu);
            let out = block.forward(&mut rec, &x).unwrap();
            let grads = block.backward(&mut rec, &go).unwrap();
            let r = gpu.memory_report();
            let driver = r.driver_allocated_bytes.unwrap() - r.driver_wgpu_internal_bytes.unwrap();
            let drift = (driver as f64 - r.live_total as f64).abs() / driver as f64;
            assert!(
                drift < 0.01,
                "{strategy:?}: the driver holds {driver} bytes for the engine, it accounts {} \
                 (scratch {})",
                r.live_total,
                r.live(Purpose::Scratch)
            );
            rec.finish().unwrap();
            drop((out, grads));
        }
    }
}

/// A dense block's kernel scratch does not grow with its depth beyond a copy of its widest
/// layer's weights: each pass stages its operands in parts within the scratch budget, the
/// staging textures and partial sums serve every layer and, through the `Gpu`'s pool, the
/// backward recorded while the forward runs; scratch buffers come in powers of two, so a
/// request that grows a little each layer (packed weights, partial sums) reuses one. (It
/// grew 4× from 8 to 32 layers when every layer staged its whole input, and 13× in the
/// GEMM-shaped families when each layer's packed weights took a buffer of their own size:
/// 0.3 → 3.9 MB.) The GEMM-shaped families pack a layer's weights whole, and the 32-layer
/// block's last layer is 3.7× wider than the 8-layer one's: that copy (twice, rounded up)
/// is allowed on top. With the CPU adapters' 1 MiB budget on either policy, and kernels
/// chosen by rule (under the GPU policy on a CPU adapter, measuring every family for each
/// of 40 layer shapes takes minutes and says nothing about scratch).
#[test]
fn dense_block_scratch_does_not_grow_with_depth() {
    let gpu = skipgrad::Gpu::new().expect("GPU adapter");
    gpu.set_deterministic(true);
    gpu.set_scratch_budget(1 << 20);
    let (n, c0, k, hw) = (8, 24, 12, 16);
    let peak_scratch = |layers| {
        let mut block = DenseBlock::new(&gpu, c0, k, layers, ConcatStrategy::Shared).unwrap();
        let x = Tensor::zeros(&gpu, [n, c0, hw, hw], Purpose::Activation).unwrap();
        let go = Tensor::zeros(&gpu, [n, block.out_channels(), hw, hw], Purpose::Gradient).unwrap();
        gpu.synchronize().unwrap();
        let base = gpu.memory_report().live(Purpose::Scratch);
        gpu.reset_peak_memory();
        let mut rec = Recording::new(&gpu);
        let out = block.forward(&mut rec, &x).unwrap();
        rec.submit().unwrap();
        let mut rec = Recording::new(&gpu);
        let grads = block.backward(&mut rec, &go).unwrap();
        rec.finish().unwrap();
        drop((out, grads));
        gpu.memory_report().peak(Purpose::Scratch) - base
    };
    let (shallow, deep) = (peak_scratch(8), peak_scratch(32));
    // The widest layer's weights, packed (output channels padded to 8), rounded up.
    let widest = (4 * 9 * (c0 + 31 * k) * k.next_multiple_of(8)).next_power_of_two();
    assert!(
        deep as f64 <= 1.5 * shallow as f64 + 2.0 * widest as f64,
        "scratch at 32 layers {deep} bytes, at 8 layers {shallow} (widest weights {widest})"
    );
}

/// What one training forward+backward of torchvision's DenseNet-BC block
/// (`TorchDenseBlock`) holds, measured as `skipgrad memory --bc` does: the data's peak
/// (activations, gradients, parameters) and the scratch's, above what was live before the
/// block was made, and the results.
struct BcRun {
    data_peak: u64,
    scratch_peak: u64,
    results: Vec<Vec<f32>>,
}

/// n 2, 8 input channels, growth 4, bn_size 4, 6×6: small enough for lavapipe, with a
/// bottleneck (16) wider than the first layers' inputs.
const BC: (usize, usize, usize, usize, usize) = (2, 8, 4, 4, 6);

fn densenet_bc_run(gpu: &skipgrad::Gpu, strategy: ConcatStrategy, layers: usize) -> BcRun {
    use skipgrad::{Init, TorchDenseBlock};
    let (n, c0, k, bn_size, hw) = BC;
    gpu.synchronize().unwrap();
    let base = gpu.memory_report();
    let mut block = TorchDenseBlock::with_init(gpu, c0, k, bn_size, layers, Init::He(7)).unwrap();
    block.set_strategy(strategy);
    let mut rng = common::Rng(41);
    let x = Tensor::from_slice(
        gpu,
        [n, c0, hw, hw],
        &rng.vec(n * c0 * hw * hw),
        Purpose::Activation,
    )
    .unwrap();
    let out_c = block.out_channels();
    let go = Tensor::from_slice(
        gpu,
        [n, out_c, hw, hw],
        &rng.vec(n * out_c * hw * hw),
        Purpose::Gradient,
    )
    .unwrap();
    // One pass first (kernel choices, pipelines), then measure.
    let mut run = BcRun {
        data_peak: 0,
        scratch_peak: 0,
        results: Vec::new(),
    };
    for measured in [false, true] {
        gpu.synchronize().unwrap();
        gpu.reset_peak_memory();
        let mut rec = Recording::new(gpu);
        let out = block.forward(&mut rec, &x, true).unwrap();
        let grads = block.backward(&mut rec, &go).unwrap();
        rec.finish().unwrap();
        if measured {
            let r = gpu.memory_report();
            run.data_peak = r.peak_data - base.live_data;
            run.scratch_peak = r.peak(Purpose::Scratch) - base.live(Purpose::Scratch);
            run.results.push(out.to_vec(gpu).unwrap());
            run.results.push(grads.grad_x.to_vec(gpu).unwrap());
            for (_, g) in &grads.params {
                run.results.push(g.to_vec(gpu).unwrap());
            }
        }
    }
    run
}

/// DenseNet-BC in linear memory: each strategy's data peak is exactly what
/// `DenseBcShape::analytic_memory` counts (Shared: the feature buffer, one bottleneck a
/// layer, the gradients; Naive: the normalised copies besides, quadratic in depth), the
/// block's own scratch is within its formula (kernels' staging comes on top, bounded here by
/// the widest layer's input twice over), and the two strategies compute the same thing: the
/// forward bit for bit (the same kernels read the same values: ReLU on load instead of a
/// ReLU'd copy), the gradients within the reference tolerance (Shared takes the weight and input gradients
/// in separate passes and lets the BatchNorm mask the ReLU).
#[test]
fn densenet_bc_shared_holds_its_analytic_minimum_and_computes_what_naive_does() {
    use skipgrad::DenseBcShape;
    let gpu = skipgrad::Gpu::new().expect("GPU adapter");
    // Kernels by rule: a choice by timing (the CPU adapter times its weight-gradient
    // families) may take a family that stages its operands, and the scratch bound below is
    // the block's, not every family's (a CI run under load once took one: 80 KiB more).
    gpu.set_deterministic(true);
    let (n, c0, k, bn_size, hw) = BC;
    let mut peaks = std::collections::BTreeMap::new();
    for layers in [1, 4, 8, 16] {
        let naive = densenet_bc_run(&gpu, ConcatStrategy::Naive, layers);
        let shared = densenet_bc_run(&gpu, ConcatStrategy::Shared, layers);
        for (run, strategy) in [
            (&naive, ConcatStrategy::Naive),
            (&shared, ConcatStrategy::Shared),
        ] {
            let shape = DenseBcShape {
                in_channels: c0,
                growth: k,
                bn_size,
                layers,
                batch: n,
                height: hw,
                width: hw,
            };
            let analytic = shape.analytic_memory(strategy);
            assert_eq!(
                run.data_peak,
                analytic.total(),
                "{layers} layers, {}: data peak {} B, analytic {analytic:?}",
                strategy.name(),
                run.data_peak
            );
            let block_scratch = shape.analytic_scratch_bytes(strategy);
            let widest = 4 * (n * (c0 + (layers - 1) * k).max(bn_size * k) * hw * hw) as u64;
            assert!(
                run.scratch_peak >= block_scratch
                    && run.scratch_peak <= block_scratch + 2 * widest + (64 << 10),
                "{layers} layers, {}: scratch peak {} B, the block's own {block_scratch} B",
                strategy.name(),
                run.scratch_peak
            );
        }
        assert_eq!(
            naive.results[0], shared.results[0],
            "{layers} layers: forwards differ"
        );
        assert_eq!(naive.results.len(), shared.results.len());
        for (i, (a, b)) in naive
            .results
            .iter()
            .zip(&shared.results)
            .enumerate()
            .skip(1)
        {
            for (x, y) in a.iter().zip(b) {
                assert!(
                    (x - y).abs() <= 1e-4 * (1.0 + x.abs()),
                    "{layers} layers, gradient {i}: naive {x}, shared {y}"
                );
            }
        }
        peaks.insert(layers, (naive.data_peak, shared.data_peak));
    }
    // What Naive holds beyond Shared grows with the square of the depth (more than twice
    // from 8 layers to 16); what Shared holds from one layer to the next, only linearly
    // (besides the parameters, which DenseNet makes quadratic either way).
    let extra = |l: usize| peaks[&l].0 - peaks[&l].1;
    assert!(extra(16) > 2 * extra(8), "{peaks:?}");
}
