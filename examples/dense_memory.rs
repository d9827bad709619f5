//! A dense block with both concatenation strategies: same output, and what each holds.
//!
//! `cargo run --release --example dense_memory`

use skipgrad::{ConcatStrategy, DenseBlock, Gpu, Purpose, Recording, Tensor};

fn main() -> skipgrad::Result<()> {
    let gpu = Gpu::new()?;
    let shape = [4, 24, 16, 16];
    let values: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|i| ((i % 17) as f32 - 8.0) / 8.0)
        .collect();
    let x = Tensor::from_slice(&gpu, shape, &values, Purpose::Activation)?;
    let mut outputs = Vec::new();
    for strategy in [ConcatStrategy::Naive, ConcatStrategy::Shared] {
        let mut block = DenseBlock::new(&gpu, 24, 12, 8, strategy)?;
        gpu.reset_peak_memory();
        let mut rec = Recording::new(&gpu);
        let y = block.forward(&mut rec, &x)?;
        let go = Tensor::from_slice(&gpu, y.shape(), &vec![0.01; y.numel()], Purpose::Gradient)?;
        let grads = block.backward(&mut rec, &go)?;
        rec.finish()?;
        let m = gpu.memory_report();
        println!(
            "{:<6} output {:?}: peak of data {:.2} MiB (activations {:.2} MiB), {} parameter gradients",
            strategy.name(),
            y.shape(),
            m.peak_data as f64 / (1 << 20) as f64,
            m.peak(Purpose::Activation) as f64 / (1 << 20) as f64,
            grads.params.len()
        );
        outputs.push(y.to_vec(&gpu)?);
    }
    let diff = outputs[0]
        .iter()
        .zip(&outputs[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!("largest difference between the strategies' outputs: {diff:.2e}");
    Ok(())
}
