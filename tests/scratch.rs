//! The scratch budget: passes whose working memory would exceed it work in parts (the
//! texture family stages a part of the channels, or of the batch, at a time) and still give
//! PyTorch's numbers.

mod common;

use skipgrad::cases::run_case_file;
use skipgrad::ops::conv2d::{
    conv2d_backward_input_into, conv2d_backward_weight_into, conv2d_into, Conv2dParams, Fusion,
};
use skipgrad::{ConvKernels, Gpu, Purpose, Recording, Tensor};

/// A `Gpu` running the texture family with a budget of one byte: every staged pass works
/// through its smallest parts (4 channels, or one image, at a time).
fn smallest_parts_gpu() -> Gpu {
    let gpu = Gpu::new().expect("GPU tests need an adapter");
    gpu.set_conv_kernels(ConvKernels::TEXTURE);
    gpu.set_scratch_budget(1);
    gpu
}

#[test]
fn every_reference_case_passes_in_the_smallest_parts() {
    let gpu = smallest_parts_gpu();
    for path in common::case_files("tests/vectors") {
        let report = run_case_file(&gpu, &path);
        let case = &report.case;
        if let Some(e) = &report.error {
            panic!("{case}: {e}");
        }
        assert!(!report.comparisons.is_empty(), "{case}: nothing compared");
        for c in &report.comparisons {
            assert!(c.passed, "{case}: {} differs in parts: {c:?}", c.name);
        }
    }
}

/// One conv's three passes on `gpu`: the results and each pass's dispatch count.
fn conv_passes(gpu: &Gpu, [n, cin, cout, hw]: [usize; 4]) -> (Vec<Vec<f32>>, [usize; 3]) {
    let mut rng = common::Rng(7);
    let up = |shape: [usize; 4], rng: &mut common::Rng| {
        let v = rng.vec(shape.iter().product());
        Tensor::from_slice(gpu, shape, &v, Purpose::Activation).unwrap()
    };
    let x = up([n, cin, hw, hw], &mut rng);
    let w = up([cout, cin, 3, 3], &mut rng);
    let b = up([cout, 1, 1, 1], &mut rng);
    let go = up([n, cout, hw, hw], &mut rng);
    let p = Conv2dParams::new(1, 1);
    let relu = Fusion {
        relu_input: true,
        accumulate: false,
    };
    let zeros = |shape| Tensor::zeros(gpu, shape, Purpose::Activation).unwrap();
    let (y, gx, gw) = (
        zeros([n, cout, hw, hw]),
        zeros([n, cin, hw, hw]),
        zeros([cout, cin, 3, 3]),
    );
    let mut counts = [0; 3];
    let mut rec = Recording::new(gpu);
    conv2d_into(&mut rec, &x, &w, Some(&b), &p, &y, relu).unwrap();
    counts[0] = rec.dispatch_count();
    conv2d_backward_input_into(&mut rec, &x, &w, &go, &p, &gx, relu).unwrap();
    counts[1] = rec.dispatch_count() - counts[0];
    conv2d_backward_weight_into(&mut rec, &x, &go, &p, &gw, relu).unwrap();
    counts[2] = rec.dispatch_count() - counts[0] - counts[1];
    assert!(
        rec.kernels().contains(&"conv2d_forward_texture")
            && rec
                .kernels()
                .iter()
                .any(|k| k.starts_with("conv2d_backward_weight_texture")),
        "the texture family ran: {:?}",
        rec.kernels()
    );
    rec.finish().unwrap();
    let read = |t: &Tensor| t.to_vec(gpu).unwrap();
    (vec![read(&y), read(&gx), read(&gw)], counts)
}

/// The three passes whole and in the smallest parts: results and dispatch counts.
fn whole_and_in_parts(shape: [usize; 4]) -> [(Vec<Vec<f32>>, [usize; 3]); 2] {
    let whole = Gpu::new().expect("GPU tests need an adapter");
    whole.set_conv_kernels(ConvKernels::TEXTURE);
    [
        conv_passes(&whole, shape),
        conv_passes(&smallest_parts_gpu(), shape),
    ]
}

/// Over the budget, a small image's forward stages 4 input channels at a time (one launch
/// and its staging each, the weights staged once: an image alone would leave the adapter
/// idle), the weight gradient one image at a time; the results are those of the whole pass.
#[test]
fn passes_over_the_budget_work_in_parts() {
    let (n, cin) = (3, 16);
    let [(want, whole_counts), (got, part_counts)] = whole_and_in_parts([n, cin, 8, 8]);
    // Whole: stage the weights, stage x, the conv. In parts: the weights once, then x's
    // staging and the conv for each of the 4 parts.
    assert_eq!(whole_counts[0], 3, "forward, whole");
    assert_eq!(part_counts[0], 1 + 2 * cin.div_ceil(4), "forward in parts");
    assert!(
        part_counts[2] >= n * whole_counts[2].saturating_sub(1),
        "the weight gradient works image by image: {part_counts:?} vs {whole_counts:?}"
    );
    for (name, (g, w)) in ["y", "grad_x", "grad_w"].iter().zip(got.iter().zip(&want)) {
        common::assert_close(name, g, &common::to_f64(w), 1e-4);
    }
}

/// Over the budget, an image big enough to keep the adapter busy alone is a part of its
/// own: the forward stages and runs one image at a time (the weights staged once), not 4
/// channels at a time, and no part reads the output back.
#[test]
fn busy_images_are_parts_of_the_batch() {
    let (n, cin) = (2, 12);
    let [(want, whole_counts), (got, part_counts)] = whole_and_in_parts([n, cin, 64, 32]);
    assert_eq!(whole_counts[0], 3, "forward, whole");
    assert_eq!(
        part_counts[0],
        1 + 2 * n,
        "forward by images, not channel groups"
    );
    for (name, (g, w)) in ["y", "grad_x", "grad_w"].iter().zip(got.iter().zip(&want)) {
        common::assert_close(name, g, &common::to_f64(w), 1e-4);
    }
}
