//! BatchNorm2d and torchvision's ResNet and DenseNet modules: PyTorch's reference cases of
//! `op = torchvision_module` (tests/vectors/bn/), the kernels each BatchNorm mode runs,
//! channel views, the fused ReLU, and clear errors.

mod common;

use std::path::Path;

use common::{gpu, upload, Rng};
use skipgrad::ops::batchnorm::BatchNorm2d;
use skipgrad::{Purpose, Recording, Tensor, TorchvisionModule};

/// Runs one case file of tests/vectors/bn: every comparison passes, and every output, gradient
/// and (training) updated statistic is compared.
fn check(case: &str) {
    // A module case fails unless the engine computed every result the file holds.
    let names = common::check_case_file(&format!("bn/{case}.safetensors"));
    let bare = case.starts_with("bn_");
    let mut want = vec!["out", "grad_x"];
    if bare {
        want.extend(["grad_weight", "grad_bias"]);
    }
    if bare && case.contains("_train_") {
        want.extend([
            "new_running_mean",
            "new_running_var",
            "new_num_batches_tracked",
        ]);
    }
    for w in want {
        assert!(names.iter().any(|n| n == w), "{case}: {w} not compared");
    }
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        $( #[test] fn $name() { check(stringify!($name)); } )*

        /// Every file in tests/vectors/bn is tested above.
        #[test]
        fn every_bn_vector_file_is_tested() {
            common::assert_every_case_listed("bn", &[$(stringify!($name)),*]);
        }
    };
}

cases!(
    bn_train_c6_4x5x7,
    bn_eval_c6_4x5x7,
    bn_train_c3_1x9x11_n1,
    bn_eval_c3_1x9x11_n1,
    bn_train_c4_2x96x96_offset,
    bn_train_c5_64x1x1,
    bn_train_c3_2x6x6_momentum_none,
    resnet18_layer1_train_n2_8x8,
    resnet18_layer1_eval_n2_8x8,
    resnet18_layer2_train_n1_8x8,
    resnet18_layer2_eval_n2_8x8,
    resnet50_layer1_eval_n1_4x4,
    densenet121_denseblock1_train_n1_4x4,
    densenet121_denseblock1_eval_n1_4x4,
    densenet121_transition1_train_n2_8x8,
    densenet121_transition1_eval_n2_8x8,
);

/// A module the engine does not build is an error that lists what it does build.
#[test]
fn unknown_modules_say_what_is_built() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/bn/resnet18_layer1_eval_n2_8x8.safetensors");
    let mut file = skipgrad::TensorFile::read(&path).unwrap();
    for module in [
        "vgg16.features",
        "resnet18.layer5",
        "densenet121.features.pool0",
    ] {
        file.metadata.insert("module".into(), module.into());
        let e = skipgrad::cases::run_case(gpu(), &file)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("is not built yet") && e.contains("densenet<depth>.features.denseblock<n>"),
            "{module}: {e}"
        );
    }
}

/// A BatchNorm of `c` channels with weight, bias and running statistics away from their
/// defaults.
fn batchnorm(c: usize, rng: &mut Rng) -> BatchNorm2d {
    let mut bn = BatchNorm2d::new(gpu(), c).unwrap();
    let shifted = |rng: &mut Rng, base: f32| -> Vec<f32> {
        rng.vec(c).iter().map(|v| base + 0.4 * v).collect()
    };
    bn.weight = upload([c, 1, 1, 1], &shifted(rng, 1.0), Purpose::Parameter);
    bn.bias = upload([c, 1, 1, 1], &shifted(rng, 0.0), Purpose::Parameter);
    bn.running_mean = upload([c, 1, 1, 1], &shifted(rng, 0.0), Purpose::Parameter);
    bn.running_var = upload([c, 1, 1, 1], &shifted(rng, 1.0), Purpose::Parameter);
    bn
}

/// A training forward runs the two statistics passes, their two finishes and the map; eval
/// the running statistics' finish and the map; a backward its sums, finish and input
/// gradient.
#[test]
fn each_mode_runs_its_kernels() {
    let mut rng = Rng(11);
    let x = upload([2, 3, 5, 5], &rng.vec(150), Purpose::Activation);
    let go = upload([2, 3, 5, 5], &rng.vec(150), Purpose::Gradient);
    let mut bn = batchnorm(3, &mut rng);
    let zeros = |s| Tensor::zeros(gpu(), s, Purpose::Gradient).unwrap();
    for (training, forward, dispatches) in [
        (
            true,
            vec![
                "batchnorm_stat_sums",
                "batchnorm_finish_stats",
                "batchnorm_apply",
            ],
            5,
        ),
        (false, vec!["batchnorm_finish_stats", "batchnorm_apply"], 2),
    ] {
        let mut rec = Recording::new(gpu());
        let (_, saved) = bn.forward(&mut rec, &x, training).unwrap();
        // Kernels are listed once each: training runs the sums and finish twice.
        assert_eq!(rec.kernels(), forward.as_slice());
        assert_eq!(rec.dispatch_count(), dispatches);
        let (gx, gw, gb) = (zeros(x.shape()), zeros([3, 1, 1, 1]), zeros([3, 1, 1, 1]));
        let mut rec = Recording::new(gpu());
        bn.backward_into(&mut rec, &x, &saved, &go, &gx, &gw, &gb, false)
            .unwrap();
        assert_eq!(
            rec.kernels(),
            [
                "batchnorm_grad_sums",
                "batchnorm_finish_grads",
                "batchnorm_backward_input"
            ]
        );
        assert_eq!(rec.dispatch_count(), 3);
        rec.finish().unwrap();
    }
    // The training forward counted, the eval one not.
    assert_eq!(bn.num_batches_tracked, 1);
}

/// On a channel view of a wider buffer (a dense block's features) BatchNorm gives the same
/// bits as on a contiguous copy, forward and backward, and writes nothing outside its view;
/// `relu` gives ReLU of the same result.
#[test]
fn channel_views_and_the_fused_relu_match_the_plain_op() {
    let mut rng = Rng(12);
    let (n, c, wide, h, w) = (3, 4, 9, 6, 7);
    let plane = h * w;
    let whole = rng.vec(n * wide * plane);
    let buffer = upload([n, wide, h, w], &whole, Purpose::Activation);
    let view = buffer.channels(2..2 + c).unwrap();
    let contiguous: Vec<f32> = (0..n)
        .flat_map(|i| whole[(i * wide + 2) * plane..(i * wide + 2 + c) * plane].to_vec())
        .collect();
    let x = upload([n, c, h, w], &contiguous, Purpose::Activation);
    let go = upload([n, c, h, w], &rng.vec(n * c * plane), Purpose::Gradient);
    let mut plain = batchnorm(c, &mut Rng(13));
    let mut viewed = batchnorm(c, &mut Rng(13));
    let out_buffer = Tensor::zeros(gpu(), [n, wide, h, w], Purpose::Activation).unwrap();
    let out_view = out_buffer.channels(5..5 + c).unwrap();
    let zeros = |s| Tensor::zeros(gpu(), s, Purpose::Gradient).unwrap();
    let results = |bn: &mut BatchNorm2d, x: &Tensor, out: &Tensor, relu: bool| {
        let mut rec = Recording::new(gpu());
        let saved = bn.forward_into(&mut rec, x, out, true, relu).unwrap();
        let (gx, gw, gb) = (
            zeros([n, c, h, w]),
            zeros([c, 1, 1, 1]),
            zeros([c, 1, 1, 1]),
        );
        bn.backward_into(&mut rec, x, &saved, &go, &gx, &gw, &gb, false)
            .unwrap();
        rec.finish().unwrap();
        [out, &gx, &gw, &gb].map(|t| t.to_vec(gpu()).unwrap())
    };
    let out_plain = Tensor::zeros(gpu(), [n, c, h, w], Purpose::Activation).unwrap();
    let want = results(&mut plain, &x, &out_plain, false);
    let got = results(&mut viewed, &view, &out_view, false);
    assert_eq!(got, want, "a view computes what a copy does");
    let outside: Vec<f32> = out_buffer
        .to_vec(gpu())
        .unwrap()
        .chunks(plane)
        .enumerate()
        .filter(|(i, _)| !(5..5 + c).contains(&(i % wide)))
        .flat_map(|(_, p)| p.to_vec())
        .collect();
    assert!(outside.iter().all(|&v| v == 0.0), "wrote outside its view");
    let mut fused = batchnorm(c, &mut Rng(13));
    let relu_out = Tensor::zeros(gpu(), [n, c, h, w], Purpose::Activation).unwrap();
    let relu = results(&mut fused, &x, &relu_out, true);
    let want_relu: Vec<f32> = want[0].iter().map(|&v| v.max(0.0)).collect();
    assert_eq!(relu[0], want_relu);
}

/// Statistics computed once per feature map: `batch_statistics_into` (of two channel views
/// of one buffer, into columns of one table) and `forward_with_statistics_into` give what
/// `forward_into` gives in training, bit for bit — output, running statistics, counter, and
/// the saved state the backward uses — in 2 dispatches instead of 5; with `momentum=None`
/// too. A table that is not [2, C] or too narrow is a clear error.
#[test]
fn statistics_computed_once_give_what_each_batchnorm_computes() {
    use skipgrad::ops::batchnorm::batch_statistics_into;
    let mut rng = Rng(31);
    let (n, wide, h, w) = (3, 9, 5, 7);
    let buffer = upload(
        [n, wide, h, w],
        &rng.vec(n * wide * h * w),
        Purpose::Activation,
    );
    let go = upload([n, 6, h, w], &rng.vec(n * 6 * h * w), Purpose::Gradient);
    let table = Tensor::zeros(gpu(), [2, wide, 1, 1], Purpose::Scratch).unwrap();
    let mut rec = Recording::new(gpu());
    // The maps as a dense block writes them: channels 0..4, then 4..9.
    batch_statistics_into(&mut rec, &buffer.channels(0..4).unwrap(), &table, 0).unwrap();
    batch_statistics_into(&mut rec, &buffer.channels(4..9).unwrap(), &table, 4).unwrap();
    rec.finish().unwrap();
    let x = buffer.channels(1..7).unwrap();
    for momentum in [Some(0.1), None] {
        let run = |given: bool| {
            let mut bn = batchnorm(6, &mut Rng(32));
            bn.momentum = momentum;
            let out = Tensor::zeros(gpu(), [n, 6, h, w], Purpose::Activation).unwrap();
            let mut rec = Recording::new(gpu());
            let saved = if given {
                bn.forward_with_statistics_into(&mut rec, &x, (&table, 1), &out, true)
            } else {
                bn.forward_into(&mut rec, &x, &out, true, true)
            }
            .unwrap();
            let dispatches = rec.dispatch_count();
            let grads = [[n, 6, h, w], [6, 1, 1, 1], [6, 1, 1, 1]]
                .map(|s| Tensor::zeros(gpu(), s, Purpose::Gradient).unwrap());
            let [gx, gw, gb] = &grads;
            bn.relu_backward_into(&mut rec, &x, &saved, &go, gx, gw, gb, false)
                .unwrap();
            rec.finish().unwrap();
            let mut got: Vec<Vec<f32>> = [&out, &bn.running_mean, &bn.running_var]
                .into_iter()
                .chain(&grads)
                .map(|t| t.to_vec(gpu()).unwrap())
                .collect();
            got.push(vec![bn.num_batches_tracked as f32]);
            (got, dispatches)
        };
        let ((want, five), (got, two)) = (run(false), run(true));
        assert_eq!(got, want, "momentum {momentum:?}");
        assert_eq!((five, two), (5, 2));
    }
    let mut bn = batchnorm(6, &mut Rng(32));
    let out = Tensor::zeros(gpu(), [n, 6, h, w], Purpose::Activation).unwrap();
    let mut rec = Recording::new(gpu());
    let e = bn
        .forward_with_statistics_into(&mut rec, &x, (&table, 4), &out, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("past the table"), "{e}");
    let flat = Tensor::zeros(gpu(), [1, 18, 1, 1], Purpose::Scratch).unwrap();
    let e = batch_statistics_into(&mut rec, &x, &flat, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[2, C, 1, 1]"), "{e}");
    // A table that is also the input would be overwritten while it is read.
    let table = Tensor::zeros(gpu(), [2, 6, 1, 1], Purpose::Scratch).unwrap();
    let e = batch_statistics_into(&mut rec, &table.channels(0..1).unwrap(), &table, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("overlap"), "{e}");
}

/// A DenseNet-BC block in training computes each feature map's batch statistics once: the
/// block input's and each layer's output but the last (two reductions each), and every
/// layer's first BN finishes from the table (`batchnorm_finish_given`, no reduction) — only
/// the second BNs, over the bottlenecks, reduce for themselves. In eval nothing reduces.
#[test]
fn a_dense_block_reduces_each_feature_map_once() {
    use skipgrad::{Init, TorchDenseBlock};
    let (n, c0, k, layers) = (2, 5, 3, 4);
    let mut block = TorchDenseBlock::with_init(gpu(), c0, k, 2, layers, Init::He(3)).unwrap();
    let x = upload([n, c0, 4, 4], &Rng(5).vec(n * c0 * 16), Purpose::Activation);
    for training in [true, false] {
        let mut rec = Recording::new(gpu());
        block.forward(&mut rec, &x, training).unwrap();
        let (given, sums) = (
            rec.dispatches_of("batchnorm_finish_given"),
            rec.dispatches_of("batchnorm_stat_sums"),
        );
        rec.finish().unwrap();
        block.clear_saved();
        if training {
            // Maps: the input and layers 1..3's outputs; second BNs: one a layer.
            assert_eq!((given, sums), (layers, 2 * (1 + (layers - 1) + layers)));
        } else {
            assert_eq!((given, sums), (0, 0));
        }
    }
}

/// `relu_backward_into` is the backward of relu(bn(x)) with the ReLU's mask recomputed from
/// the saved statistics: what masking the gradient by the kept output and running the plain
/// backward gives, bit for bit, on a view and in both modes — and not what the unmasked
/// gradient gives (about half the outputs are negative).
#[test]
fn the_relu_mask_from_the_statistics_is_the_kept_outputs() {
    let mut rng = Rng(21);
    let (n, c, wide, h, w) = (2, 3, 7, 5, 6);
    let buffer = upload(
        [n, wide, h, w],
        &rng.vec(n * wide * h * w),
        Purpose::Activation,
    );
    let x = buffer.channels(3..3 + c).unwrap();
    let go = upload([n, c, h, w], &rng.vec(n * c * h * w), Purpose::Gradient);
    let zeros = |s| Tensor::zeros(gpu(), s, Purpose::Gradient).unwrap();
    for training in [true, false] {
        let mut bn = batchnorm(c, &mut Rng(22));
        let mut rec = Recording::new(gpu());
        let out = Tensor::zeros(gpu(), [n, c, h, w], Purpose::Activation).unwrap();
        let saved = bn.forward_into(&mut rec, &x, &out, training, true).unwrap();
        let masked = skipgrad::ops::relu::relu_backward(&mut rec, &out, &go).unwrap();
        let grads = || {
            [
                zeros([n, c, h, w]),
                zeros([c, 1, 1, 1]),
                zeros([c, 1, 1, 1]),
            ]
        };
        let (want, got, unmasked) = (grads(), grads(), grads());
        let [a, b, d] = &want;
        bn.backward_into(&mut rec, &x, &saved, &masked, a, b, d, false)
            .unwrap();
        let [a, b, d] = &got;
        bn.relu_backward_into(&mut rec, &x, &saved, &go, a, b, d, false)
            .unwrap();
        let [a, b, d] = &unmasked;
        bn.backward_into(&mut rec, &x, &saved, &go, a, b, d, false)
            .unwrap();
        rec.finish().unwrap();
        let read = |g: &[Tensor; 3]| g.each_ref().map(|t| t.to_vec(gpu()).unwrap());
        assert_eq!(read(&got), read(&want), "training {training}");
        assert_ne!(
            read(&got)[0],
            read(&unmasked)[0],
            "training {training}: nothing masked"
        );
    }
}

/// Mistakes are errors that say what to do: a channel count that does not match, training
/// on one value per channel (PyTorch refuses it too), an output that overlaps the input.
#[test]
fn mistakes_are_clear_errors() {
    let mut bn = BatchNorm2d::new(gpu(), 3).unwrap();
    let mut rec = Recording::new(gpu());
    let x4 = Tensor::zeros(gpu(), [2, 4, 3, 3], Purpose::Activation).unwrap();
    let e = bn.forward(&mut rec, &x4, true).unwrap_err().to_string();
    assert!(e.contains("4 channels") && e.contains("3"), "{e}");
    let one = Tensor::zeros(gpu(), [1, 3, 1, 1], Purpose::Activation).unwrap();
    let e = bn.forward(&mut rec, &one, true).unwrap_err().to_string();
    assert!(e.contains("more than one value per channel"), "{e}");
    assert!(
        bn.forward(&mut rec, &one, false).is_ok(),
        "eval takes one value"
    );
    let x = Tensor::zeros(gpu(), [2, 3, 3, 3], Purpose::Activation).unwrap();
    let e = bn
        .forward_into(&mut rec, &x, &x, true, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("overlaps"), "{e}");
    assert_eq!(bn.num_batches_tracked, 0, "failed forwards count nothing");
    assert!(BatchNorm2d::new(gpu(), 0).is_err());
}

fn module_of(file: &skipgrad::TensorFile) -> Box<dyn TorchvisionModule> {
    skipgrad::cases::module_of_case(gpu(), file).unwrap()
}

fn state_of(file: &skipgrad::TensorFile) -> skipgrad::TensorFile {
    skipgrad::cases::case_state_dict(file)
}

/// Every module saves the state_dict it loaded, name for name and bit for bit (the int64
/// counters included, written as I64 and read back); after a training forward, the running
/// statistics and counters PyTorch's forward left (`new_*`).
#[test]
fn modules_save_the_state_dict_they_loaded() {
    for case in [
        "resnet18_layer1_train_n2_8x8",
        "resnet18_layer2_eval_n2_8x8",
        "resnet50_layer1_eval_n1_4x4",
        "densenet121_denseblock1_train_n1_4x4",
        "densenet121_transition1_train_n2_8x8",
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/vectors/bn")
            .join(format!("{case}.safetensors"));
        let file = skipgrad::TensorFile::read(&path).unwrap();
        let want = state_of(&file);
        let mut module = module_of(&file);
        let saved = module.state_dict(gpu()).unwrap();
        assert_eq!(saved.tensors, want.tensors, "{case}");
        assert_eq!(saved.integers, want.integers, "{case}");
        let tmp = std::env::temp_dir().join(format!("skipgrad-{case}-{}.st", std::process::id()));
        saved.write(&tmp).unwrap();
        let back = skipgrad::TensorFile::read(&tmp).unwrap();
        std::fs::remove_file(&tmp).ok();
        assert_eq!(
            (back.tensors, back.integers),
            (saved.tensors, saved.integers)
        );
        // The learned parameters are the state_dict's tensors but the running statistics.
        let params: Vec<String> = module.parameters().into_iter().map(|(n, _)| n).collect();
        let learned: Vec<&String> = want
            .tensors
            .keys()
            .filter(|k| !k.contains("running_"))
            .collect();
        assert_eq!(params.len(), learned.len(), "{case}");
        assert!(learned.iter().all(|k| params.contains(k)), "{case}");
        if case.contains("_train_") {
            let x = common::upload(
                shape4(&file.tensors["x"].shape),
                &file.tensors["x"].data,
                Purpose::Activation,
            );
            let mut rec = Recording::new(gpu());
            module.forward(&mut rec, &x, true).unwrap();
            rec.finish().unwrap();
            let after = module.state_dict(gpu()).unwrap();
            for (name, v) in &after.integers {
                assert_eq!(v, &file.integers[&format!("new_{name}")], "{case}: {name}");
            }
            for (name, t) in after.tensors.iter().filter(|(k, _)| k.contains("running_")) {
                let want = &file.tensors[&format!("new_{name}")].data;
                for (g, w) in t.data.iter().zip(want) {
                    assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{case}: {name}");
                }
            }
        }
    }
}

fn shape4(s: &[usize]) -> [usize; 4] {
    [s[0], s[1], s[2], s[3]]
}

/// A second forward before the first one's backward is refused (its backward would
/// differentiate the wrong input), as is a backward with no forward; `clear_saved` forgets.
#[test]
fn modules_refuse_a_forward_over_unused_state() {
    for case in [
        "resnet18_layer1_eval_n2_8x8",
        "densenet121_denseblock1_eval_n1_4x4",
        "densenet121_transition1_eval_n2_8x8",
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/vectors/bn")
            .join(format!("{case}.safetensors"));
        let file = skipgrad::TensorFile::read(&path).unwrap();
        let mut module = module_of(&file);
        let t = &file.tensors["x"];
        let x = common::upload(shape4(&t.shape), &t.data, Purpose::Activation);
        let mut rec = Recording::new(gpu());
        let e = module.backward(&mut rec, &x).unwrap_err().to_string();
        assert!(e.contains("forward first"), "{case}: {e}");
        module.forward(&mut rec, &x, false).unwrap();
        let e = module.forward(&mut rec, &x, false).unwrap_err().to_string();
        assert!(e.contains("still saved"), "{case}: {e}");
        module.clear_saved();
        module.forward(&mut rec, &x, false).unwrap();
        rec.finish().unwrap();
    }
}
