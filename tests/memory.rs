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

/// torchvision's DenseNet-BC block (`TorchDenseBlock`) under each strategy, on a Gpu of its
/// own: the peak (everything: activations, gradients, parameters, scratch) over one training
/// forward+backward, above what was live before, and the results.
fn densenet_bc_run(
    gpu: &skipgrad::Gpu,
    strategy: ConcatStrategy,
    layers: usize,
) -> (u64, Vec<Vec<f32>>) {
    use skipgrad::{HostTensor, TensorFile, TorchDenseBlock};
    let (n, c0, k, wide, hw) = (2, 8, 4, 16, 6);
    let mut rng = common::Rng(41);
    let mut file = TensorFile::default();
    let mut put = |name: String, shape: Vec<usize>, base: f32, spread: f32| {
        let len = shape.iter().product();
        let data = rng.vec(len).iter().map(|v| base + spread * v).collect();
        file.tensors.insert(name, HostTensor { shape, data });
    };
    for j in 1..=layers {
        let reads = c0 + (j - 1) * k;
        for (unit, c) in [(1, reads), (2, wide)] {
            let norm = format!("denselayer{j}.norm{unit}");
            put(format!("{norm}.weight"), vec![c], 1.0, 0.2);
            put(format!("{norm}.bias"), vec![c], 0.0, 0.2);
            put(format!("{norm}.running_mean"), vec![c], 0.0, 0.1);
            put(format!("{norm}.running_var"), vec![c], 1.0, 0.3);
        }
        put(
            format!("denselayer{j}.conv1.weight"),
            vec![wide, reads, 1, 1],
            0.0,
            0.3,
        );
        put(
            format!("denselayer{j}.conv2.weight"),
            vec![k, wide, 3, 3],
            0.0,
            0.1,
        );
    }
    let mut block = TorchDenseBlock::from_state_dict(gpu, &file).unwrap();
    block.set_strategy(strategy);
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
    let mut results = Vec::new();
    let mut peak = 0;
    // One pass first (kernel choices, pipelines), then measure.
    for measured in [false, true] {
        gpu.synchronize().unwrap();
        let base = gpu.memory_report().live_total;
        gpu.reset_peak_memory();
        let mut rec = Recording::new(gpu);
        let out = block.forward(&mut rec, &x, true).unwrap();
        let grads = block.backward(&mut rec, &go).unwrap();
        rec.finish().unwrap();
        peak = gpu.memory_report().peak_total - base;
        if measured {
            results.push(out.to_vec(gpu).unwrap());
            results.push(grads.grad_x.to_vec(gpu).unwrap());
            for (_, g) in &grads.params {
                results.push(g.to_vec(gpu).unwrap());
            }
        }
    }
    (peak, results)
}

/// DenseNet-BC without the normalised copies: the Shared strategy gives the Naive one's
/// results bit for bit (the same kernels read the same values: ReLU on load instead of a
/// ReLU'd copy), and what Naive holds beyond it is the layers' normalised copies — each as
/// wide as every feature map before it, so quadratic in depth: all of them, less Shared's
/// scratch (the widest input and its gradient), from 8 layers on, and more than twice as
/// much at 16 layers as at 8. (Both peaks include the parameters, which DenseNet makes
/// quadratic in depth either way, and pooled scratch, which moves in powers of two.)
#[test]
fn densenet_bc_shared_drops_the_quadratic_copies_and_gives_the_same_bits() {
    let gpu = skipgrad::Gpu::new().expect("GPU adapter");
    let mut peaks = std::collections::BTreeMap::new();
    for strategy in ConcatStrategy::ALL {
        for layers in [4, 8, 16] {
            let (peak, results) = densenet_bc_run(&gpu, strategy, layers);
            peaks.insert((strategy.name(), layers), (peak, results));
        }
    }
    let mut extra = std::collections::BTreeMap::new();
    for layers in [4, 8, 16] {
        let (naive, shared) = (&peaks[&("naive", layers)], &peaks[&("shared", layers)]);
        assert_eq!(naive.1, shared.1, "{layers} layers: the strategies differ");
        // Σ_j n · (c0 + (j - 1) k) · hw floats: the normalised copies (n 2, c0 8, k 4, 6×6).
        let copies: u64 = (1..=layers as u64)
            .map(|j| 2 * (8 + (j - 1) * 4) * 36 * 4)
            .sum();
        let more = naive.0 as i64 - shared.0 as i64;
        println!(
            "{layers} layers: naive {} B, shared {} B, naive - shared {more} B, copies {copies} B",
            naive.0, shared.0
        );
        // Less Shared's scratch: the widest layer's input and its gradient.
        let widest = 2 * (8 + (layers as i64 - 1) * 4) * 36 * 4;
        if layers >= 8 {
            assert!(
                more >= copies as i64 - 2 * widest,
                "{layers} layers: {more} < {copies} - 2 x {widest}"
            );
        }
        extra.insert(layers, more);
    }
    assert!(extra[&16] > 2 * extra[&8], "{extra:?}");
}
