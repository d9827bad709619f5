//! The seed notebook's SkipConnection module, loaded from the state_dict PyTorch saved
//! (`conv_layer1.*`, `conv_layer2.*`) and checked against PyTorch's own output.
//!
//! `cargo run --release --example notebook`

use std::path::Path;

use skipgrad::{Gpu, Purpose, Recording, ResidualBlock, ResidualVariant, Tensor, TensorFile};

fn main() -> skipgrad::Result<()> {
    let gpu = Gpu::new()?;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/interop");
    let state = TensorFile::read(&dir.join("notebook_skipconnection.safetensors"))?;
    let block = ResidualBlock::from_state_dict(&gpu, ResidualVariant::SkipConnection, 3, &state)?;
    let io = TensorFile::read(&dir.join("notebook_skipconnection_io.safetensors"))?;
    let x = Tensor::from_slice(
        &gpu,
        [2, 3, 4, 4],
        &io.tensors["x"].data,
        Purpose::Activation,
    )?;
    let mut rec = Recording::new(&gpu);
    let y = block.forward_inference(&mut rec, &x)?;
    rec.finish()?;
    let want = &io.tensors["out"].data;
    let worst = y
        .to_vec(&gpu)?
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
        .fold(0.0f32, f32::max);
    println!("notebook SkipConnection: largest error vs PyTorch {worst:.2e}");
    if worst > 1e-4 {
        return Err(skipgrad::Error::Recording(format!(
            "output differs from PyTorch's by {worst:e}"
        )));
    }
    Ok(())
}
