//! torchvision's `resnet18().layer1`, saved by PyTorch, trained one step here.
//!
//! The state_dict and PyTorch's own numbers come from a reference case
//! (`tests/vectors/bn/resnet18_layer1_train_n2_8x8.safetensors`: the layer's state_dict with
//! its int64 `num_batches_tracked`, an input, an output gradient, and what PyTorch computed
//! from them in training mode). The example loads the layer under torchvision's names, runs
//! the forward and backward on the GPU, checks the output, the input gradient, every
//! parameter's gradient and the updated running statistics against PyTorch's, takes one SGD
//! step, and saves the state_dict back the way PyTorch saves it.
//!
//! `cargo run --release --example torchvision_layer`

use std::path::Path;

use skipgrad::train::Sgd;
use skipgrad::{
    Gpu, Optimizer, OptimizerKind, Purpose, Recording, ResNetLayer, Tensor, TensorFile,
};

fn main() -> skipgrad::Result<()> {
    let gpu = Gpu::new()?;
    let case = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/bn/resnet18_layer1_train_n2_8x8.safetensors");
    let file = TensorFile::read(&case)?;
    // The layer's state_dict: the file without the input, results and gradients.
    let state = file.filter(|k| {
        !k.starts_with("grad_") && !k.starts_with("new_") && !["x", "out"].contains(&k)
    });
    let mut layer = ResNetLayer::from_state_dict(&gpu, &state, 1)?; // layer1: stride 1
    println!(
        "loaded resnet18().layer1: {} blocks, {} parameters",
        layer.blocks().len(),
        layer.parameters().len()
    );

    let upload = |name: &str, purpose| -> skipgrad::Result<Tensor> {
        let t = file.tensor(name)?;
        Tensor::from_slice(
            &gpu,
            [t.shape[0], t.shape[1], t.shape[2], t.shape[3]],
            &t.data,
            purpose,
        )
    };
    let x = upload("x", Purpose::Activation)?;
    let grad_out = upload("grad_out", Purpose::Gradient)?;

    // Forward in training mode and backward, one recording.
    let mut rec = Recording::new(&gpu);
    let out = layer.forward(&mut rec, &x, true)?;
    let grads = layer.backward(&mut rec, &grad_out)?;
    rec.finish()?;

    // Against PyTorch's numbers: |got - want| <= 1e-4 (1 + |want|) everywhere.
    let mut worst = 0.0f32;
    let mut check = |name: &str, got: &Tensor| -> skipgrad::Result<()> {
        let want = &file.tensor(name)?.data;
        for (g, w) in got.to_vec(&gpu)?.iter().zip(want) {
            worst = worst.max((g - w).abs() / (1.0 + w.abs()));
        }
        Ok(())
    };
    check("out", &out)?;
    check("grad_x", &grads.grad_x)?;
    for (name, g) in &grads.params {
        check(&format!("grad_{name}"), g)?;
    }
    for (name, bn) in layer.batchnorms() {
        check(&format!("new_{name}.running_mean"), &bn.running_mean)?;
        check(&format!("new_{name}.running_var"), &bn.running_var)?;
        assert_eq!(
            bn.num_batches_tracked,
            file.integer(&format!("new_{name}.num_batches_tracked"))?
        );
    }
    println!(
        "output, input gradient, {} parameter gradients and the running statistics: within {worst:.1e}·(1+|ref|) of PyTorch",
        grads.params.len()
    );
    assert!(worst <= 1e-4, "not PyTorch's numbers");

    // One SGD step (lr 0.1) on every parameter, in place.
    let mut sgd = Optimizer::new(OptimizerKind::Sgd(Sgd {
        lr: 0.1,
        ..Sgd::default()
    }))?;
    let before = layer.parameters()[0].1.to_vec(&gpu)?;
    let mut rec = Recording::new(&gpu);
    sgd.step(&mut rec, &layer.parameters(), &grads.params)?;
    rec.finish()?;
    let after = layer.parameters()[0].1.to_vec(&gpu)?;
    let g0 = grads
        .params
        .iter()
        .find(|(n, _)| n == "0.conv1.weight")
        .unwrap();
    let g0 = g0.1.to_vec(&gpu)?;
    let step_ok = before
        .iter()
        .zip(&after)
        .zip(&g0)
        .all(|((b, a), g)| (a - (b - 0.1 * g)).abs() <= 1e-6 * (1.0 + b.abs()));
    println!("one SGD step: 0.conv1.weight moved by -0.1 x its gradient: {step_ok}");
    assert!(step_ok);

    // Saved as PyTorch saves it: safetensors.torch.load_file(...) gives the state_dict.
    let path = std::env::temp_dir().join("skipgrad_resnet18_layer1.safetensors");
    layer.state_dict(&gpu)?.write(&path)?;
    let saved = TensorFile::read(&path)?;
    println!(
        "saved {} tensors and {} int64 counters to {}",
        saved.tensors.len(),
        saved.integers.len(),
        path.display()
    );
    Ok(())
}
