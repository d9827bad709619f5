//! State dicts exactly as PyTorch users save them load unchanged (tests/vectors/interop/,
//! made by `make_interop_vectors.py` there): the seed notebook's SkipConnection module
//! (`conv_layer1.*`), in float32, float64 with an unused int64 entry, and bfloat16; convs
//! made with `bias=False`; one block out of a network's state_dict by prefix.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_close, gpu, to_f64};
use skipgrad::TensorFile;
use skipgrad::{Arch, Init, Network, Purpose, Recording, ResidualBlock, ResidualVariant, Tensor};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/interop")
}

fn read(name: &str) -> TensorFile {
    TensorFile::read(&dir().join(format!("{name}.safetensors"))).unwrap()
}

/// Loads `state` into a block of `variant` and checks its output on `io`'s input.
fn check(state: &str, io: &str, variant: ResidualVariant, channels: usize) {
    let g = gpu();
    let block = ResidualBlock::from_state_dict(g, variant, channels, &read(state)).unwrap();
    let io = read(io);
    let x = &io.tensors["x"];
    let shape = x.shape4().unwrap();
    let xt = Tensor::from_slice(g, shape, &x.data, Purpose::Activation).unwrap();
    let mut rec = Recording::new(g);
    let y = block.forward_inference(&mut rec, &xt).unwrap();
    rec.finish().unwrap();
    let want = to_f64(&io.tensors["out"].data);
    assert_close(state, &y.to_vec(g).unwrap(), &want, 1e-4);
}

#[test]
fn the_notebooks_own_state_dict_loads_unchanged() {
    let sc = ResidualVariant::SkipConnection;
    check(
        "notebook_skipconnection",
        "notebook_skipconnection_io",
        sc,
        3,
    );
    check(
        "notebook_skipconnection_f64",
        "notebook_skipconnection_io",
        sc,
        3,
    );
    check(
        "notebook_skipconnection_bf16",
        "notebook_skipconnection_bf16_io",
        sc,
        3,
    );
}

#[test]
fn convs_without_bias_load_with_a_zero_bias() {
    check("basic_nobias", "basic_nobias_io", ResidualVariant::Basic, 4);
}

#[test]
fn one_block_out_of_a_network_by_prefix_and_save_round_trip() {
    let g = gpu();
    let net = Network::new(g, Arch::Residual, 4, 4, Init::He(5)).unwrap();
    let path = std::env::temp_dir().join("skipgrad_interop_net.safetensors");
    net.save(g, &path).unwrap();
    let file = TensorFile::read(&path).unwrap();
    // The network's state_dict reloads as a network, and its block 1 as a block.
    let again = Network::from_state_dict(g, Arch::Residual, 4, 4, &file).unwrap();
    let block = ResidualBlock::from_state_dict(
        g,
        ResidualVariant::Basic,
        4,
        &file.with_prefix("blocks.1."),
    )
    .unwrap();
    let by_name = |ps: Vec<(String, Tensor)>| -> Vec<(String, Vec<f32>)> {
        ps.into_iter()
            .map(|(n, t)| (n, t.to_vec(g).unwrap()))
            .collect()
    };
    assert_eq!(by_name(net.parameters()), by_name(again.parameters()));
    let block_params = by_name(block.parameters());
    let from_net: Vec<(String, Vec<f32>)> = by_name(net.parameters())
        .into_iter()
        .filter_map(|(n, v)| n.strip_prefix("blocks.1.").map(|s| (s.to_string(), v)))
        .collect();
    assert_eq!(block_params, from_net);
    // He init: biases 0, layers all different.
    let ps = net.parameters();
    assert!(ps
        .iter()
        .filter(|(n, _)| n.ends_with("bias"))
        .all(|(_, t)| t.to_vec(g).unwrap().iter().all(|&v| v == 0.0)));
    let w0 = ps[0].1.to_vec(g).unwrap();
    let w1 = ps[2].1.to_vec(g).unwrap();
    assert_ne!(w0, w1, "two layers drew the same weights");
    let _ = std::fs::remove_file(path);
}
