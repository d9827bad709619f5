//! Bad input gets a clear `Error`, never a panic, a hang or a silent wrong answer.

mod common;

use common::{gpu, upload};
use skipgrad::ops::{add, concat, conv2d, relu};
use skipgrad::{Conv2dParams, Error, Purpose, Recording, Tensor};

fn zeros(shape: [usize; 4]) -> Tensor {
    Tensor::zeros(gpu(), shape, Purpose::Activation).unwrap()
}

fn conv_err(x: [usize; 4], w: [usize; 4], p: Conv2dParams) -> Error {
    let mut rec = Recording::new(gpu());
    conv2d::conv2d(&mut rec, &zeros(x), &zeros(w), None, &p).unwrap_err()
}

#[test]
fn conv_weight_channels_must_match_input() {
    let e = conv_err([1, 4, 5, 5], [2, 3, 3, 3], Conv2dParams::default());
    assert!(matches!(e, Error::Shape { .. }), "{e}");
    assert!(e.to_string().contains("input channels per group"), "{e}");
}

#[test]
fn conv_channels_must_divide_by_groups() {
    let p = Conv2dParams {
        groups: 3,
        ..Default::default()
    };
    let e = conv_err([1, 4, 5, 5], [3, 1, 3, 3], p);
    assert!(matches!(e, Error::InvalidParameter { .. }), "{e}");
    assert!(e.to_string().contains("groups = 3"), "{e}");
    let p = Conv2dParams {
        groups: 0,
        ..Default::default()
    };
    assert!(matches!(
        conv_err([1, 4, 5, 5], [4, 4, 3, 3], p),
        Error::InvalidParameter { .. }
    ));
}

#[test]
fn conv_output_below_one_is_refused() {
    let e = conv_err([1, 1, 2, 2], [1, 1, 3, 3], Conv2dParams::default());
    assert!(e.to_string().contains("below 1"), "{e}");
    let p = Conv2dParams {
        dilation: [3, 1],
        ..Default::default()
    };
    assert!(conv_err([1, 1, 6, 6], [1, 1, 3, 3], p)
        .to_string()
        .contains("height"));
}

#[test]
fn conv_zero_stride_is_refused() {
    let p = Conv2dParams {
        stride: [0, 1],
        ..Default::default()
    };
    assert!(matches!(
        conv_err([1, 1, 4, 4], [1, 1, 3, 3], p),
        Error::InvalidParameter { .. }
    ));
}

#[test]
fn conv_bias_and_gradient_shapes_are_checked() {
    let g = gpu();
    let mut rec = Recording::new(g);
    let x = zeros([1, 2, 4, 4]);
    let w = zeros([3, 2, 3, 3]);
    let e = conv2d::conv2d(
        &mut rec,
        &x,
        &w,
        Some(&zeros([2, 1, 1, 1])),
        &Default::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("bias"), "{e}");
    let e = conv2d::conv2d_backward(
        &mut rec,
        &x,
        &w,
        true,
        &zeros([1, 3, 4, 4]),
        &Default::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("output gradient"), "{e}");
}

#[test]
fn elementwise_shapes_must_match() {
    let mut rec = Recording::new(gpu());
    let e = add::add(&mut rec, &zeros([1, 2, 3, 3]), &zeros([1, 2, 3, 4])).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
    let e = relu::relu_backward(&mut rec, &zeros([1, 2, 3, 3]), &zeros([2, 2, 3, 3])).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
}

#[test]
fn concat_inputs_must_agree_on_batch_and_size() {
    let mut rec = Recording::new(gpu());
    let e = concat::concat(&mut rec, &[&zeros([1, 2, 3, 3]), &zeros([2, 2, 3, 3])]).unwrap_err();
    assert!(e.to_string().contains("batch"), "{e}");
    let e = concat::concat(&mut rec, &[]).unwrap_err();
    assert!(matches!(e, Error::InvalidParameter { .. }), "{e}");
    let e = concat::concat_backward(&mut rec, &zeros([1, 5, 2, 2]), &[2, 2]).unwrap_err();
    assert!(e.to_string().contains("do not sum"), "{e}");
}

#[test]
fn outputs_may_not_overlap_inputs() {
    let mut rec = Recording::new(gpu());
    let t = zeros([1, 4, 3, 3]);
    let a = t.channels(0..2).unwrap();
    let b = t.channels(1..3).unwrap();
    let e = relu::relu_into(&mut rec, &a, &b, false).unwrap_err();
    assert!(e.to_string().contains("overlaps"), "{e}");
    // Disjoint views of one buffer are fine.
    relu::relu_into(&mut rec, &a, &t.channels(2..4).unwrap(), false).unwrap();
    rec.finish().unwrap();
}

#[test]
fn data_length_and_views_are_checked() {
    let e = Tensor::from_slice(gpu(), [1, 2, 2, 2], &[0.0; 7], Purpose::Activation).unwrap_err();
    assert!(
        matches!(
            e,
            Error::DataLength {
                got: 7,
                expected: 8,
                ..
            }
        ),
        "{e}"
    );
    let t = zeros([1, 2, 2, 2]);
    assert!(t.channels(1..3).is_err());
    assert!(t.channels(1..1).is_err());
    assert!(Tensor::zeros(gpu(), [0, 1, 1, 1], Purpose::Activation).is_err());
}

#[test]
fn tensor_past_the_buffer_limit_is_refused() {
    let g = gpu();
    let limit = g.limits().max_buffer_size as usize;
    let e = Tensor::zeros(g, [1, 1, 1, limit / 4 + 1], Purpose::Activation).unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("max_buffer_size"), "{e}");
}

/// Past the binding limit ops split their work (tests/binding_limit.rs); one channel plane
/// of one sample larger than a binding cannot be split, and is refused clearly.
#[test]
fn an_unsplittable_binding_is_refused() {
    let g = skipgrad::Gpu::with_options(&skipgrad::GpuOptions {
        max_storage_binding_bytes: Some(256 << 10),
        ..Default::default()
    })
    .unwrap();
    let plane = (256 << 10) / 4 + 1;
    let x = Tensor::zeros(&g, [1, 1, 1, plane], Purpose::Activation).unwrap();
    let mut rec = Recording::new(&g);
    let e = skipgrad::ops::relu::relu(&mut rec, &x).unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    assert!(
        e.to_string().contains("max_storage_buffer_binding_size"),
        "{e}"
    );
}

#[test]
fn unknown_backend_is_an_error() {
    let e = skipgrad::Gpu::with_backend(Some("glide")).unwrap_err();
    assert!(matches!(e, Error::UnknownBackend(_)), "{e}");
}

#[test]
fn truncated_and_foreign_files_are_failed_cases() {
    let dir = std::env::temp_dir().join(format!("skipgrad-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/relu_2x3x5x7.safetensors");
    let bytes = std::fs::read(&src).unwrap();
    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let r = skipgrad::cases::run_case_file(gpu(), &truncated);
    assert!(!r.passed());
    assert!(
        r.error.as_deref().unwrap_or("").contains("bad tensor file"),
        "{:?}",
        r.error
    );

    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"not a tensor file at all").unwrap();
    assert!(skipgrad::cases::run_case_file(gpu(), &garbage)
        .error
        .is_some());

    let missing = dir.join("missing.safetensors");
    let r = skipgrad::cases::run_case_file(gpu(), &missing);
    assert!(
        r.error.as_deref().unwrap_or("").contains("cannot read"),
        "{:?}",
        r.error
    );

    // A file that parses but names an op the engine does not know.
    let mut file = skipgrad::TensorFile::read(&src).unwrap();
    file.metadata.insert("op".into(), "softmax".into());
    let foreign = dir.join("foreign.safetensors");
    file.write(&foreign).unwrap();
    let r = skipgrad::cases::run_case_file(gpu(), &foreign);
    assert!(
        r.error.as_deref().unwrap_or("").contains("unsupported op"),
        "{:?}",
        r.error
    );

    // Right op, wrong shapes: a failed case with the reason.
    let mut file = skipgrad::TensorFile::read(&src).unwrap();
    file.tensors.get_mut("grad_out").unwrap().shape = vec![2, 3, 7, 5];
    let bad = dir.join("badshape.safetensors");
    file.write(&bad).unwrap();
    let r = skipgrad::cases::run_case_file(gpu(), &bad);
    assert!(r.error.is_some(), "{r:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn memory_is_accounted_per_purpose_and_freed() {
    let g = gpu();
    let before = g.memory_report();
    {
        let _a = Tensor::zeros(g, [1, 1, 1, 1024], Purpose::Scratch).unwrap();
        let r = g.memory_report();
        assert!(r.live(Purpose::Scratch) >= before.live(Purpose::Scratch) + 4096);
        assert!(r.peak(Purpose::Scratch) >= r.live(Purpose::Scratch));
    }
    // Other tests run in parallel threads, so only our own buffer's return is checked loosely.
    let after = g.memory_report();
    assert!(after.peak_total >= 4096);
    let _ = upload([1, 1, 1, 1], &[1.0], Purpose::Parameter);
}

#[test]
fn weights_must_be_whole_tensors() {
    let g = gpu();
    let big = zeros([4, 2, 3, 3]);
    let w_view = big.channels(0..1).unwrap(); // [4, 1, 3, 3], a view
    let mut rec = Recording::new(g);
    let e = conv2d::conv2d(
        &mut rec,
        &zeros([1, 1, 5, 5]),
        &w_view,
        None,
        &Default::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("whole tensor"), "{e}");
}

/// A `state_dict` loads strictly, as PyTorch's `load_state_dict`: a depth-4 plain stack's
/// does not load as depth 2 (the error names every unexpected tensor), non-strictly it does
/// and names what it skipped, integer buffers (`num_batches_tracked`) never count, and
/// missing tensors are listed with what the file holds.
#[test]
fn state_dicts_load_strictly_naming_what_does_not_fit() {
    use skipgrad::TensorFile;
    use skipgrad::{Arch, Init, Network};
    let g = gpu();
    let dir = std::env::temp_dir().join(format!("skipgrad-strict-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("plain4.safetensors");
    Network::new(g, Arch::Plain, 4, 4, Init::Torch(1))
        .unwrap()
        .save(g, &path)
        .unwrap();
    // An integer buffer beside the parameters, as BatchNorm's state_dict has.
    let mut bytes: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::new();
    let file = TensorFile::read(&path).unwrap();
    for (name, t) in &file.tensors {
        let data: Vec<u8> = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        bytes.push((name.clone(), data, t.shape.clone()));
    }
    bytes.push((
        "layers.0.num_batches_tracked".into(),
        3i64.to_le_bytes().to_vec(),
        vec![],
    ));
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(n, d, s)| {
            let dtype = if n.ends_with("num_batches_tracked") {
                safetensors::Dtype::I64
            } else {
                safetensors::Dtype::F32
            };
            (
                n.clone(),
                safetensors::tensor::TensorView::new(dtype, s.clone(), d).unwrap(),
            )
        })
        .collect();
    let with_buffer = dir.join("plain4_buffer.safetensors");
    safetensors::serialize_to_file(views, None, &with_buffer).unwrap();
    let file = TensorFile::read(&with_buffer).unwrap();

    // The whole stack loads strictly, the integer buffer notwithstanding.
    Network::from_state_dict(g, Arch::Plain, 4, 4, &file).unwrap();
    // Depth 2: the last two layers are unexpected, all four named.
    let e = Network::from_state_dict(g, Arch::Plain, 2, 4, &file).unwrap_err();
    let msg = e.to_string();
    for name in [
        "layers.2.weight",
        "layers.2.bias",
        "layers.3.weight",
        "layers.3.bias",
    ] {
        assert!(msg.contains(name), "{msg}");
    }
    assert!(msg.contains("load non-strictly"), "{msg}");
    assert!(!msg.contains("num_batches_tracked"), "{msg}");
    // Non-strictly: loads, and says what it skipped.
    let (net, skipped) = Network::from_state_dict_lenient(g, Arch::Plain, 2, 4, &file).unwrap();
    assert_eq!(net.parameters().len(), 4);
    assert_eq!(
        skipped,
        [
            "layers.2.bias",
            "layers.2.weight",
            "layers.3.bias",
            "layers.3.weight"
        ]
    );
    // Another architecture: every missing weight named, and what the file holds.
    let e = Network::from_state_dict(g, Arch::Residual, 2, 4, &file).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("missing blocks.0.conv1.weight, blocks.0.conv2.weight")
            && msg.contains("it holds layers.0.bias"),
        "{msg}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// What `from_state_dict` checks a file against is what `parameters` names, for every
/// architecture.
#[test]
fn expected_state_dict_names_are_the_parameters_names() {
    use skipgrad::{Arch, Init, Network};
    for (arch, depth) in [(Arch::Plain, 3), (Arch::Residual, 4), (Arch::Dense, 3)] {
        let net = Network::new(gpu(), arch, depth, 4, Init::Torch(0)).unwrap();
        let names: Vec<String> = net.parameters().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, Network::parameter_names(arch, depth), "{arch:?}");
    }
}

/// Sizes too large for the device are an `Error` before any host memory is taken for
/// them, not an aborted process: a 100,000-channel network's first layer needs 360 GB.
#[test]
fn sizes_too_large_for_the_device_are_errors_before_host_memory() {
    use skipgrad::{Arch, Init, Network};
    let e = Network::new(gpu(), Arch::Plain, 2, 100_000, Init::Torch(0))
        .err()
        .unwrap();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    let e = Tensor::check_size(gpu(), [4_000_000_000, 16, 16, 16]).unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    assert!(Tensor::check_size(gpu(), [2, 3, 4, 5]).unwrap() == 480);
}
