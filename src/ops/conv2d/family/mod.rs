//! The conv kernel families and their registry. A family is one module here, next to its
//! shaders (`shaders/conv2d/<family>/`), implementing [`Family`]: its name, what it
//! supports, its kernels and variants, and how it records each pass — refusing what it
//! cannot do, never rerouting. [`FAMILIES`] is the one list of them: the selection
//! (`select.rs`) chooses from it, the tuner (`tune/`) measures what it offers, the
//! `SKIPGRAD_CONV_KERNELS` parser, the CLI's help and the tests read it. Adding a family
//! is its module, its shaders and one line there.

pub(crate) mod direct;
pub(crate) mod gemm;
pub(crate) mod pack;
pub(crate) mod pixel;
pub(crate) mod regblock;
pub(crate) mod shaped;
pub(crate) mod texture;
pub(crate) mod winograd;

use serde::{Deserialize, Serialize};

use super::args::{vec4_stores, ForwardArgs, Geometry, InputGradArgs, WeightGradArgs};
use super::Conv2dParams;
use crate::error::{Error, Result};
use crate::gpu::KernelSpec;
use crate::record::Recording;
use crate::tensor::Tensor;
use crate::Gpu;

/// Every family, in the order a forced family's fallback is looked for (after itself).
/// The last, [`FALLBACK`], runs every problem.
pub(crate) const FAMILIES: [&dyn Family; 6] = [
    &winograd::Winograd,
    &texture::Texture,
    &regblock::RegisterBlocked,
    &pixel::Pixel,
    &gemm::Gemm,
    &direct::Direct,
];

/// The family that runs every problem (every shape, stride, dilation and group count):
/// where nothing else applies, and the fewest launches for tiny convolutions.
pub(crate) const FALLBACK: &dyn Family = &direct::Direct;

/// The family a [`ConvKernels`] names (the fallback for `AUTO` or an unknown name).
pub(crate) fn family(kind: ConvKernels) -> &'static dyn Family {
    FAMILIES
        .into_iter()
        .find(|f| f.kind() == kind)
        .unwrap_or(FALLBACK)
}

/// Which conv2d kernel family the ops use: [`ConvKernels::AUTO`] (chosen per adapter, pass
/// and shape), or one family of the registry by name. Every family computes the same
/// function; they differ in speed per adapter and shape.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvKernels(Option<&'static str>);

impl ConvKernels {
    /// Pick per adapter, pass and shape: a rule on CPU adapters (the texture family; tiny
    /// shapes measured), a measurement of every family and variant on GPUs, kept on disk.
    pub const AUTO: ConvKernels = ConvKernels(None);
    /// One thread per output element; every shape, groups and stride.
    pub const DIRECT: ConvKernels = ConvKernels(Some("direct"));
    /// Register-blocked implicit GEMM (8 pixels × 8 channels per thread, no workgroup
    /// memory): groups = 1, stride-1 input gradients.
    pub const REGBLOCK: ConvKernels = ConvKernels(Some("regblock"));
    /// One output pixel × 8 channels per thread, weights broadcast across the workgroup,
    /// and a weight gradient spread over a workgroup's lanes: many threads for small
    /// layers on big GPUs.
    pub const PIXEL: ConvKernels = ConvKernels(Some("pixel"));
    /// Implicit GEMM tiled in workgroup memory (tiles and weight loaders measured as
    /// variants on GPUs), a split-K weight gradient (tile and split factor measured): the
    /// shape fp32 convolution takes on a GPU.
    pub const GEMM: ConvKernels = ConvKernels(Some("gemm"));
    /// Register-blocked with both operands staged in `rgba32float` textures: what a CPU
    /// adapter (lavapipe) runs fastest.
    pub const TEXTURE: ConvKernels = ConvKernels(Some("texture"));
    /// Winograd F(4×4, 3×3) and F(2×2, 3×3) for 3 × 3 stride-1 forwards and input
    /// gradients (1/4 and 4/9 of the multiplies; F(4×4) where the pass has enough tiles),
    /// and F(3×3, 4×4) and F(3×3, 2×2) for their weight gradients.
    pub const WINOGRAD: ConvKernels = ConvKernels(Some("winograd"));

    /// Every family of the registry, in its order.
    pub fn families() -> Vec<ConvKernels> {
        FAMILIES.iter().map(|f| f.kind()).collect()
    }

    /// Lower-case name (`auto`, or the family's).
    pub fn name(self) -> &'static str {
        self.0.unwrap_or("auto")
    }

    /// Every name [`ConvKernels::parse`] takes, comma-separated: `auto, texture, …`.
    pub fn names() -> String {
        std::iter::once("auto")
            .chain(FAMILIES.iter().map(|f| f.name()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `auto`, and each family's name and summary, one per line (help texts).
    pub fn help() -> String {
        let mut lines = vec!["auto: chosen per adapter, pass and shape (the default)".to_string()];
        lines.extend(
            FAMILIES
                .iter()
                .map(|f| format!("{}: {}", f.name(), f.summary())),
        );
        lines.join("\n")
    }

    /// Parses `auto` or a family's name (or alias), case-insensitively.
    pub fn parse(name: &str) -> Result<ConvKernels> {
        let wanted = name.trim().to_ascii_lowercase();
        if wanted == "auto" {
            return Ok(ConvKernels::AUTO);
        }
        if let Some(f) = FAMILIES
            .iter()
            .find(|f| f.name() == wanted || f.aliases().contains(&wanted.as_str()))
        {
            return Ok(f.kind());
        }
        let detail = match wanted.as_str() {
            "tiled" | "tiled8x8" => format!(
                "the {wanted} family was removed (it won on no adapter measured; see \
                 benches/NOTES.md); use {}",
                ConvKernels::names()
            ),
            _ => format!(
                "unknown family {wanted:?} (expected {})",
                ConvKernels::names()
            ),
        };
        Err(Error::param("conv kernels", detail))
    }

    /// The family whose kernel (entry point) `entry` is; `None` for the kernels the
    /// families share (weight packing, activation staging, partial-sum reduce, bias
    /// gradient) and non-conv ones. Tests and reports tell what ran by it.
    pub fn of_kernel(entry: &str) -> Option<ConvKernels> {
        FAMILIES
            .iter()
            .find(|f| f.kernels().iter().any(|k| k.entry == entry))
            .map(|f| f.kind())
    }
}

impl std::fmt::Debug for ConvKernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for ConvKernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a family is, as the registry, the rules and the reports see it.
pub(crate) trait Info {
    /// Its name, lower case: what `SKIPGRAD_CONV_KERNELS`, `--kernels` and reports call it.
    fn name(&self) -> &'static str;
    /// Other names it answers to.
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }
    /// One line on what it is, for help texts.
    fn summary(&self) -> &'static str;
    /// Which family this is, as users name it.
    fn kind(&self) -> ConvKernels {
        ConvKernels(Some(self.name()))
    }
    /// Every kernel it may launch (the binding test checks each against its WGSL; reports
    /// tell a family by its kernels).
    fn kernels(&self) -> &'static [&'static KernelSpec];
    /// Its place in the CPU adapters' rule (the CPU policy) for `pass` of problem `g`: a problem that
    /// is not tiny runs, unmeasured, on the family of the lowest rank that supports it (the
    /// benchmark justified the order on lavapipe, and where a family takes part). `None`:
    /// not part of the rule for `g`.
    fn cpu_rank(&self, _pass: Pass, _g: &Geometry) -> Option<u8> {
        None
    }
    /// A GPU shape (many threads, workgroup memory and barriers, which a CPU adapter runs
    /// as loops): never the fastest there, so never measured under the CPU policy.
    fn gpu_shaped(&self) -> bool {
        false
    }
    /// Its place in the GPUs' deterministic rule (`SKIPGRAD_DETERMINISTIC`): the supporting
    /// family of the lowest rank runs every pass, unmeasured. `None`: not part of it.
    fn deterministic_rank(&self) -> Option<u8> {
        None
    }
}

/// A kernel family: one module under `family/`, next to its shaders.
pub(crate) trait Family: Info + Sync {
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
    /// How many of its variants (the first ones) an automatic choice may take: the tuner
    /// measures these alone. All of them, unless a pass is not yet fit to be chosen unasked
    /// (Winograd's weight gradient: 0).
    fn tuned_variants(&self, call: &Call<'_, '_>) -> usize {
        self.variants(call)
    }
    /// What variant `v` is for the problem `key` names (the GEMM family: its tile), for
    /// reports; empty where the family has one kernel per pass.
    fn describe_variant(&self, _key: &TuneKey, _v: usize) -> String {
        String::new()
    }
    /// Records `call` with variant `v` (`0 < v < variants(call)`).
    fn run_variant(&self, _rec: &mut Recording<'_>, _call: &Call<'_, '_>, v: usize) -> Result<()> {
        Err(no_variant(self.name(), v))
    }
}

/// The error of asking family `name` for a variant it does not have.
pub(crate) fn no_variant(name: &str, v: usize) -> Error {
    Error::Gpu {
        during: "recording a convolution".into(),
        message: format!("internal error: the {name} family has no kernel variant {v}"),
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

/// Which pass of a convolution a kernel computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum Pass {
    Forward,
    BackwardInput,
    BackwardWeight,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The named constants are families of the registry, and every family parses back
    /// from its name and tells its own kernels.
    #[test]
    fn the_registry_names_every_family_once() {
        for k in [
            ConvKernels::DIRECT,
            ConvKernels::REGBLOCK,
            ConvKernels::PIXEL,
            ConvKernels::GEMM,
            ConvKernels::TEXTURE,
            ConvKernels::WINOGRAD,
        ] {
            assert!(ConvKernels::families().contains(&k), "{k}");
        }
        let families = ConvKernels::families();
        for (i, f) in FAMILIES.iter().enumerate() {
            assert_eq!(ConvKernels::parse(f.name()).unwrap(), f.kind());
            assert!(!families[..i].contains(&f.kind()), "{} twice", f.name());
            for k in f.kernels() {
                assert_eq!(
                    ConvKernels::of_kernel(k.entry),
                    Some(f.kind()),
                    "{}",
                    k.entry
                );
            }
        }
        assert_eq!(ConvKernels::parse(" AUTO ").unwrap(), ConvKernels::AUTO);
        assert!(ConvKernels::parse("tiled").is_err());
        assert_eq!(
            ConvKernels::parse("register-blocked").unwrap(),
            ConvKernels::REGBLOCK
        );
    }
}
