//! A basic residual block, forward and backward, in two submissions.
//!
//! `cargo run --release --example residual_block`

use skipgrad::{Gpu, Init, Purpose, Recording, ResidualBlock, ResidualVariant, Tensor};

fn main() -> skipgrad::Result<()> {
    let gpu = Gpu::new()?;
    println!("{gpu:?}");
    let shape = [2, 16, 8, 8];
    let values: Vec<f32> = (0..2 * 16 * 64)
        .map(|i| ((i % 13) as f32 - 6.0) / 6.0)
        .collect();
    let x = Tensor::from_slice(&gpu, shape, &values, Purpose::Activation)?;
    let mut block = ResidualBlock::with_init(&gpu, ResidualVariant::Basic, 16, Init::Torch(1))?;

    // y = relu(conv2(relu(conv1(x))) + x): the skip add is fused into conv2's store.
    let mut rec = Recording::new(&gpu);
    let y = block.forward(&mut rec, &x)?;
    println!("forward: {} dispatches", rec.dispatch_count());
    rec.finish()?;

    // Backward for the gradient of sum(y): ones.
    let ones = Tensor::from_slice(&gpu, y.shape(), &vec![1.0; y.numel()], Purpose::Gradient)?;
    let mut rec = Recording::new(&gpu);
    let grads = block.backward(&mut rec, &ones)?;
    println!("backward: {} dispatches", rec.dispatch_count());
    rec.finish()?;
    for (name, g) in &grads.params {
        let v = g.to_vec(&gpu)?;
        let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt();
        println!("  d sum(y) / d {name:<14} norm {norm:.4}");
    }
    let gx = grads.grad_x.to_vec(&gpu)?;
    println!(
        "  d sum(y) / d x: {} values, mean {:.4}",
        gx.len(),
        gx.iter().sum::<f32>() / gx.len() as f32
    );
    Ok(())
}
