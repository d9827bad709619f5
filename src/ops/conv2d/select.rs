//! Kernel selection: for each pass, the family the user forced where it supports the
//! problem (else the next in the registry's order that does — the one fallback, here and
//! nowhere else), or under `Auto` the tuner's choice (`tune/`). Families never reroute to
//! each other; the registry (`family/mod.rs`) is the one list of them.

use std::sync::Mutex;

use super::family::{no_variant, Call, Choice, ConvKernels, Family, FALLBACK, FAMILIES};
use super::tune;
use super::Fusion;
use crate::error::{Error, Result};
use crate::gpu::lock;
use crate::record::Recording;
use crate::Gpu;

/// The conv policy a `Gpu` keeps: the family forced for every recording (from
/// `SKIPGRAD_CONV_KERNELS` at first use, or [`Gpu::set_conv_kernels`]).
pub(crate) struct Policy {
    forced: Mutex<std::result::Result<ConvKernels, String>>,
    /// The variant of the forced family every recording runs where it sets none (tests).
    variant: Mutex<Option<usize>>,
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
            _ => Ok(ConvKernels::AUTO),
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            forced: Mutex::new(ConvKernels::from_env().map_err(|e| e.to_string())),
            variant: Mutex::new(None),
        }
    }
}

impl Gpu {
    /// The conv kernel family ops use (`SKIPGRAD_CONV_KERNELS` sets the initial choice; an
    /// invalid value reads as `Auto` here and fails the first convolution).
    pub fn conv_kernels(&self) -> ConvKernels {
        lock(&self.extension::<Policy>().forced)
            .clone()
            .unwrap_or(ConvKernels::AUTO)
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

#[cfg(test)]
impl Gpu {
    /// Runs variant `v` of the forced family, where it has one for the pass, in every
    /// recording that forces none (`None`: the family's rule): the reference cases run whole
    /// on one variant.
    pub(crate) fn set_conv_variant(&self, v: Option<usize>) {
        *lock(&self.extension::<Policy>().variant) = v;
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
        ConvKernels::AUTO => tune::choose(gpu, call),
        kind => {
            let first = super::family::family(kind);
            let rest = FAMILIES
                .into_iter()
                .skip_while(|f| f.kind() != kind)
                .skip(1);
            let chosen = std::iter::once(first)
                .chain(rest)
                .find(supported)
                .unwrap_or(FALLBACK);
            let family_variant = |v: usize| Choice {
                family: chosen,
                variant: v,
            };
            match rec.option::<RecordingVariant>() {
                Some(RecordingVariant(v)) if chosen.kind() == kind => {
                    if v >= chosen.variants(call) {
                        return Err(no_variant(kind.name(), v));
                    }
                    Ok(family_variant(v))
                }
                None => match *lock(&gpu.extension::<Policy>().variant) {
                    Some(v) if chosen.kind() == kind && v < chosen.variants(call) => {
                        Ok(family_variant(v))
                    }
                    _ => Ok(Choice::rule(chosen)),
                },
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
