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
