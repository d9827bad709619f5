//! Kernel selection: the one place that knows every conv kernel family. For each pass it
//! asks the families whether they support the problem, takes the one the user forced or
//! measures the plausible ones (once per problem and `Gpu`), and falls back — here and
//! nowhere else — when a forced family refuses. Families never reroute to each other.
//!
//! Adding a family: a module under `family/` implementing [`Family`], its shaders, a
//! [`ConvKernels`] variant and an entry in [`FAMILIES`].

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::args::{vec4_stores, ForwardArgs, Geometry, InputGradArgs, WeightGradArgs};
use super::family::{
    direct::Direct, gemm::Gemm, pixel::Pixel, regblock::RegisterBlocked, texture::Texture,
};
use super::tune;
use super::{Conv2dParams, Fusion};
use crate::error::{Error, Result};
use crate::gpu::{lock, KernelSpec};
use crate::record::Recording;
use crate::tensor::Tensor;
use crate::Gpu;

/// Which conv2d kernel family the ops use. Every family computes the same function; they
/// differ in speed per adapter and shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvKernels {
    /// Pick per adapter, pass and shape: a rule on CPU adapters (texture family; tiny shapes
    /// measured), a one-time measurement of every family on GPUs; cached per `Gpu`.
    Auto,
    /// One thread per output element; every shape, groups and stride.
    Direct,
    /// Register-blocked implicit GEMM (8 pixels × 8 channels per thread, no workgroup
    /// memory): groups = 1, stride-1 input gradients.
    RegisterBlocked,
    /// One output pixel × 8 channels per thread, weights broadcast across the workgroup
    /// (forward and input gradient), and a weight gradient whose reduction is spread over
    /// the lanes of a workgroup: many threads for small layers on big GPUs.
    Pixel,
    /// Implicit GEMM tiled in workgroup memory: 128 × 128, 128 × 64 or 64 × 64 output tiles
    /// (under `Auto` on a GPU, measured per shape; else the largest that gives two waves of
    /// an H200), 16-deep K slices, 8 × 8 a thread, the next slice
    /// prefetched, pipelines specialised to the geometry; a split-K weight gradient of
    /// 64 × 64 or (measured on GPUs) 128 × 64 tiles. groups = 1, stride-1 input gradients. The shape fp32 convolution takes on a
    /// GPU; slow on CPU adapters (measured only on GPUs under `Auto`).
    Gemm,
    /// Register-blocked (16 pixels × 8 channels per thread) with both operands staged in
    /// `rgba32float` textures and read four channels a fetch: what a CPU adapter (lavapipe,
    /// whose storage-buffer loads are per-lane loops) runs fastest. groups = 1, input
    /// gradients of any stride, where the staged textures fit the device's limits.
    Texture,
}

impl ConvKernels {
    /// The concrete families (all but `Auto`).
    pub const CONCRETE: [ConvKernels; 5] = [
        ConvKernels::Direct,
        ConvKernels::RegisterBlocked,
        ConvKernels::Pixel,
        ConvKernels::Gemm,
        ConvKernels::Texture,
    ];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            ConvKernels::Auto => "auto",
            ConvKernels::Direct => "direct",
            ConvKernels::RegisterBlocked => "regblock",
            ConvKernels::Pixel => "pixel",
            ConvKernels::Gemm => "gemm",
            ConvKernels::Texture => "texture",
        }
    }

    /// Parses `auto`, `direct`, `regblock`, `pixel`, `gemm` or `texture`.
    pub fn parse(name: &str) -> Result<ConvKernels> {
        match name.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(ConvKernels::Auto),
            "direct" => Ok(ConvKernels::Direct),
            "regblock" | "register-blocked" => Ok(ConvKernels::RegisterBlocked),
            "pixel" => Ok(ConvKernels::Pixel),
            "gemm" => Ok(ConvKernels::Gemm),
            "texture" => Ok(ConvKernels::Texture),
            "tiled" | "tiled8x8" => Err(Error::param(
                "conv kernels",
                format!(
                    "the {name} family was removed (it won on no adapter measured; see \
                     benches/NOTES.md); use auto, direct, regblock, pixel, gemm or texture"
                ),
            )),
            other => Err(Error::param(
                "conv kernels",
                format!(
                    "unknown family {other:?} (expected auto, direct, regblock, pixel, gemm or texture)"
                ),
            )),
        }
    }
}

/// Which pass of a convolution a kernel computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum Pass {
    Forward,
    BackwardInput,
    BackwardWeight,
}

/// A kernel family: one module under `family/`, next to its shaders.
pub(crate) trait Family: Sync {
    /// Which family this is.
    fn kind(&self) -> ConvKernels;
    /// Every kernel it may launch (the binding test checks each against its WGSL).
    #[cfg_attr(not(test), allow(dead_code))]
    fn kernels(&self) -> &'static [&'static KernelSpec];
    /// Whether it has kernels for `pass` of this problem on `gpu` (it refuses, never
    /// reroutes, what it cannot do).
    fn supports(&self, gpu: &Gpu, pass: Pass, g: &Geometry, p: &Conv2dParams) -> bool;
    /// Records a forward convolution.
    fn forward(&self, rec: &mut Recording<'_>, a: &ForwardArgs<'_>) -> Result<()>;
    /// Records an input gradient.
    fn backward_input(&self, rec: &mut Recording<'_>, a: &InputGradArgs<'_>) -> Result<()>;
    /// Records a weight gradient.
    fn backward_weight(&self, rec: &mut Recording<'_>, a: &WeightGradArgs<'_>) -> Result<()>;
    /// Variants of its kernels worth measuring for `call` (the GEMM family: its forward
    /// output tiles); variant 0 is what it runs by its own rule. 1: none.
    fn variants(&self, _call: &Call<'_, '_>) -> usize {
        1
    }
    /// What variant `v` is for the problem `key` names (the GEMM family: its tile), for
    /// reports; empty where the family has one kernel per pass.
    fn describe_variant(&self, _key: &TuneKey, _v: usize) -> String {
        String::new()
    }
    /// Records `call` with variant `v` (`0 < v < variants(call)`).
    fn run_variant(&self, _rec: &mut Recording<'_>, _call: &Call<'_, '_>, v: usize) -> Result<()> {
        Err(no_variant(self.kind(), v))
    }
}

/// The error of asking a family for a variant it does not have (a bug in the tuner).
pub(crate) fn no_variant(kind: ConvKernels, v: usize) -> Error {
    Error::Gpu {
        during: "recording a convolution".into(),
        message: format!(
            "internal error: the {} family has no kernel variant {v}",
            kind.name()
        ),
    }
}

/// What runs one pass: a family and its variant (0: the family's own rule).
#[derive(Clone, Copy)]
pub(crate) struct Choice {
    pub family: &'static dyn Family,
    pub variant: usize,
}

impl Choice {
    /// A family by its own rule.
    pub fn rule(family: &'static dyn Family) -> Choice {
        Choice { family, variant: 0 }
    }

    /// Which family.
    pub fn kind(&self) -> ConvKernels {
        self.family.kind()
    }
}

/// Every family, in the order a forced family's fallback is looked for (after itself).
pub(crate) const FAMILIES: [&dyn Family; 5] = [&Texture, &RegisterBlocked, &Pixel, &Gemm, &Direct];

/// The family of a concrete kind.
pub(crate) fn family(kind: ConvKernels) -> &'static dyn Family {
    FAMILIES
        .into_iter()
        .find(|f| f.kind() == kind)
        .unwrap_or(&Direct)
}

/// One pass of one convolution, as the selection sees it.
#[derive(Clone, Copy)]
pub(crate) enum Call<'r, 'a> {
    Forward(&'r ForwardArgs<'a>),
    BackwardInput(&'r InputGradArgs<'a>),
    BackwardWeight(&'r WeightGradArgs<'a>),
}

impl Call<'_, '_> {
    /// The pass.
    pub fn pass(&self) -> Pass {
        match self {
            Call::Forward(_) => Pass::Forward,
            Call::BackwardInput(_) => Pass::BackwardInput,
            Call::BackwardWeight(_) => Pass::BackwardWeight,
        }
    }

    /// The problem's geometry and parameters.
    pub fn problem(&self) -> (&Geometry, &Conv2dParams) {
        match self {
            Call::Forward(a) => (&a.g, &a.p),
            Call::BackwardInput(a) => (&a.g, &a.p),
            Call::BackwardWeight(a) => (&a.g, &a.p),
        }
    }

    /// Records this pass with `family`'s kernels, by its own rule.
    pub fn run(&self, family: &dyn Family, rec: &mut Recording<'_>) -> Result<()> {
        match self {
            Call::Forward(a) => family.forward(rec, a),
            Call::BackwardInput(a) => family.backward_input(rec, a),
            Call::BackwardWeight(a) => family.backward_weight(rec, a),
        }
    }

    /// Records this pass as `choice` says.
    pub fn run_choice(&self, choice: Choice, rec: &mut Recording<'_>) -> Result<()> {
        match choice.variant {
            0 => self.run(choice.family, rec),
            v => choice.family.run_variant(rec, self, v),
        }
    }

    /// Everything that can change which family is fastest.
    pub fn key(&self) -> TuneKey {
        let (g, p) = self.problem();
        let aligned =
            |t: &Tensor| t.offset_u32().is_multiple_of(4) && t.batch_stride_u32().is_multiple_of(4);
        let (fusion, bias, mask, input, vec4) = match self {
            Call::Forward(a) => (
                a.fusion,
                a.bias.is_some(),
                false,
                a.x,
                vec4_stores(a.out, None),
            ),
            Call::BackwardInput(a) => (
                a.fusion,
                false,
                a.fusion.relu_input,
                a.grad_out,
                vec4_stores(a.grad_x, a.mask()),
            ),
            Call::BackwardWeight(a) => (a.fusion, a.bias.is_some(), false, a.x, false),
        };
        TuneKey {
            pass: self.pass(),
            x: g.x,
            w: g.w,
            stride: p.stride,
            padding: p.padding,
            dilation: p.dilation,
            groups: p.groups,
            bias,
            fusion: (fusion.relu_input, fusion.accumulate),
            mask,
            input_aligned: aligned(input),
            vec4_stores: vec4,
        }
    }
}

/// What a measured choice is keyed on: the pass, every dimension and parameter of the
/// problem, and what the kernels do on load and store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct TuneKey {
    pub pass: Pass,
    pub x: [usize; 4],
    pub w: [usize; 4],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
    pub bias: bool,
    /// (ReLU on load, accumulate on store).
    pub fusion: (bool, bool),
    /// The input gradient is masked by the forward input.
    pub mask: bool,
    /// The input view starts and strides 4-aligned.
    pub input_aligned: bool,
    /// The output allows whole-block vec4 stores.
    pub vec4_stores: bool,
}

/// The conv policy a `Gpu` keeps: the family forced for every recording (from
/// `SKIPGRAD_CONV_KERNELS` at first use, or [`Gpu::set_conv_kernels`]).
pub(crate) struct Policy {
    forced: Mutex<std::result::Result<ConvKernels, String>>,
}

impl ConvKernels {
    /// The family `SKIPGRAD_CONV_KERNELS` names (`Auto` when it is unset or empty), or an
    /// error saying what is wrong with its value.
    pub fn from_env() -> Result<ConvKernels> {
        match std::env::var("SKIPGRAD_CONV_KERNELS") {
            Ok(v) if !v.trim().is_empty() => ConvKernels::parse(&v).map_err(|e| match e {
                Error::InvalidParameter { detail, .. } => {
                    Error::param("SKIPGRAD_CONV_KERNELS", format!("{v:?}: {detail}"))
                }
                other => other,
            }),
            _ => Ok(ConvKernels::Auto),
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            forced: Mutex::new(ConvKernels::from_env().map_err(|e| e.to_string())),
        }
    }
}

impl Gpu {
    /// The conv kernel family ops use (`SKIPGRAD_CONV_KERNELS` sets the initial choice; an
    /// invalid value reads as `Auto` here and fails the first convolution).
    pub fn conv_kernels(&self) -> ConvKernels {
        lock(&self.extension::<Policy>().forced)
            .clone()
            .unwrap_or(ConvKernels::Auto)
    }

    /// Chooses the conv kernel family for ops recorded from now on.
    pub fn set_conv_kernels(&self, family: ConvKernels) {
        *lock(&self.extension::<Policy>().forced) = Ok(family);
    }
}

/// A recording's own choice of conv kernel family.
#[derive(Clone, Copy)]
struct RecordingKernels(ConvKernels);

impl Recording<'_> {
    /// The conv kernel family ops recorded here use (initially the `Gpu`'s).
    pub fn conv_kernels(&self) -> ConvKernels {
        match self.option::<RecordingKernels>() {
            Some(RecordingKernels(k)) => k,
            None => self.gpu().conv_kernels(),
        }
    }

    /// Chooses the conv kernel family for ops recorded here from now on.
    pub fn set_conv_kernels(&mut self, family: ConvKernels) {
        self.set_option(RecordingKernels(family));
    }
}

/// A recording's forced variant of its forced family (the self-test runs every one).
#[derive(Clone, Copy)]
struct RecordingVariant(usize);

#[cfg(feature = "oracle")]
impl Recording<'_> {
    /// Runs variant `v` of the forced family (`set_conv_kernels`) where it runs a pass;
    /// passes it does not run take the fallback's rule.
    pub(crate) fn set_conv_variant(&mut self, v: usize) {
        self.set_option(RecordingVariant(v));
    }
}

/// The family that runs `call` in `rec`: the forced one where it supports the problem
/// (else the first family in [`FAMILIES`] order after it that does), or under `Auto` the
/// measured or ruled choice (see `tune/`).
pub(crate) fn choose(rec: &Recording<'_>, call: &Call<'_, '_>) -> Result<Choice> {
    let gpu = rec.gpu();
    let forced = forced(rec)?;
    let (g, p) = call.problem();
    let supported = |f: &&dyn Family| f.supports(gpu, call.pass(), g, p);
    match forced {
        ConvKernels::Auto => tune::choose(gpu, call),
        kind => {
            let first = family(kind);
            let rest = FAMILIES
                .into_iter()
                .skip_while(|f| f.kind() != kind)
                .skip(1);
            let chosen = std::iter::once(first)
                .chain(rest)
                .find(supported)
                .unwrap_or(&Direct);
            match rec.option::<RecordingVariant>() {
                Some(RecordingVariant(v)) if chosen.kind() == kind => {
                    if v >= chosen.variants(call) {
                        return Err(no_variant(kind, v));
                    }
                    Ok(Choice {
                        family: chosen,
                        variant: v,
                    })
                }
                _ => Ok(Choice::rule(chosen)),
            }
        }
    }
}

/// The family `rec` runs its convolutions with (`Auto` or a forced one), or the error an
/// invalid `SKIPGRAD_CONV_KERNELS` makes.
pub(crate) fn forced(rec: &Recording<'_>) -> Result<ConvKernels> {
    match rec.option::<RecordingKernels>() {
        Some(RecordingKernels(k)) => Ok(k),
        None => lock(&rec.gpu().extension::<Policy>().forced)
            .clone()
            .map_err(Error::Content),
    }
}

/// Chooses and records one pass.
pub(crate) fn run(rec: &mut Recording<'_>, call: Call<'_, '_>) -> Result<()> {
    let choice = choose(rec, &call)?;
    call.run_choice(choice, rec)
}

/// The fusion of a pass that loads with `fusion.relu_input` and overwrites.
pub(crate) fn overwrite(fusion: Fusion) -> Fusion {
    Fusion {
        relu_input: fusion.relu_input,
        accumulate: false,
    }
}
