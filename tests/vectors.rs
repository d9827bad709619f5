//! Every bundled PyTorch reference case (tests/vectors/), forward and backward, on the GPU.
//! One test per case file, so a failure names the case.

mod common;

fn check(case: &str) {
    common::check_case_file(&format!("{case}.safetensors"));
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        $( #[test] fn $name() { check(stringify!($name)); } )*

        /// Every file in tests/vectors has a test above (a new case cannot be forgotten).
        #[test]
        fn every_vector_file_is_tested() {
            common::assert_every_case_listed("", &[$(stringify!($name)),*]);
        }
    };
}

cases!(
    add_1x16x13x17,
    add_2x4x6x6,
    add_4x64x8x8,
    concat_2in_c3_5,
    concat_3in_c1_4_7,
    concat_4in_c16_12_12_12,
    conv2d_1x1_b5,
    conv2d_1x1_c64to32,
    conv2d_1x1_c8to16,
    conv2d_1x1_s2_c16to8,
    conv2d_1x3_p01,
    conv2d_2x2_s2p2_c3to6,
    conv2d_2x2_s2p2_c3to6_b4,
    conv2d_3x1_p10,
    conv2d_3x3_p0_odd13x17,
    conv2d_3x3_p1_b4,
    conv2d_3x3_p1_c1to1,
    conv2d_3x3_p1_depthwise16,
    conv2d_3x3_p1_g2,
    conv2d_3x3_p1_nobias,
    conv2d_3x3_p1_nonsquare5x11,
    conv2d_3x3_p2_d2,
    conv2d_3x3_s1p1_c3to8,
    conv2d_3x3_s1p1_c64to64,
    conv2d_3x3_s21_p10,
    conv2d_3x3_s2p0_floor,
    conv2d_3x3_s2p1_c8to16,
    conv2d_3x3_s2p1_d2,
    conv2d_3x3_s2p1_dw_mult2,
    conv2d_3x3_s2p1_odd13x17,
    conv2d_4x4_s4_patchify,
    conv2d_5x5_p2_c3to8,
    conv2d_7x7_s2p3_stem,
    relu_1x16x13x17,
    relu_2x3x5x7,
    relu_4x64x8x8,
    residual_block_basic_c16_8x8,
    residual_block_skipconnection_n2,
    dense_block_c4_k4_l3_8x8,
    dense_block_c16_k12_l6_16x16,
);
