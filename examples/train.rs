//! A short training run: a residual stack learns to map noisy images to clean ones, one
//! submission a step, the loss read back every 10 steps.
//!
//! `cargo run --release --example train`

use skipgrad::train::{self, Adam};
use skipgrad::{Arch, Gpu, Init, Network, Optimizer, OptimizerKind, Purpose, Recording, Tensor};

fn main() -> skipgrad::Result<()> {
    let gpu = Gpu::new()?;
    let shape = [4, 8, 8, 8];
    let n: usize = shape.iter().product();
    // Clean: smooth stripes; input: the same with a fixed pattern of noise.
    let clean: Vec<f32> = (0..n).map(|i| ((i % 8) as f32 * 0.7).sin()).collect();
    let noisy: Vec<f32> = clean
        .iter()
        .enumerate()
        .map(|(i, c)| c + 0.3 * (((i * 7919) % 101) as f32 / 50.0 - 1.0))
        .collect();
    let x = Tensor::from_slice(&gpu, shape, &noisy, Purpose::Activation)?;
    let target = Tensor::from_slice(&gpu, shape, &clean, Purpose::Activation)?;
    let mut net = Network::new(&gpu, Arch::Residual, 8, 8, Init::He(0))?;
    let mut opt = Optimizer::new(OptimizerKind::AdamW(Adam {
        weight_decay: 0.01,
        ..Adam::default()
    }))?;
    let mut first = None;
    for step in 0..50 {
        let mut rec = Recording::new(&gpu);
        let loss = train::train_step(&mut rec, &mut net, &mut opt, &x, &target)?;
        rec.submit()?;
        if step % 10 == 0 || step == 49 {
            let l = loss.to_vec(&gpu)?[0];
            first.get_or_insert(l);
            println!("step {step:>3}: loss {l:.5}");
        }
    }
    let m = gpu.memory_report();
    println!(
        "optimizer state {} KiB, parameters {} KiB",
        m.live(Purpose::Optimizer) >> 10,
        m.live(Purpose::Parameter) >> 10
    );
    Ok(())
}
