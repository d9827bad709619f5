//! BatchNorm2d (`shaders/batchnorm.wgsl`), PyTorch's semantics in both modes.
//!
//! Training: each channel is normalised with its batch mean and biased variance over
//! (N, H, W), summed by a two-level reduction (≤ 64 terms a lane, a tree over the lanes, the
//! splits added in order) in two passes — the mean, then the squares of the deviations from
//! it (the corrected two-pass sum), so a long channel (batch 256 × 56 × 56) keeps float32's
//! accuracy; the running statistics move by `momentum` towards the batch mean and the
//! unbiased variance, `num_batches_tracked` counts the forward, and the gradient flows
//! through the statistics. Eval: the affine map of the running statistics.
//!
//! A forward is four dispatches in training (two sums, two finishes… then the map) and two
//! in eval; a backward three: the sums of `grad_out` and `grad_out·(x − mean)`, a finish that
//! writes the weight and bias gradients, and the input gradient.
//!
//! `kernels.rs`: the kernels' arguments and launches; `forward.rs`: the training and eval
//! forwards and the re-application of saved statistics; `backward.rs`: the backward (and
//! its ReLU-masked form).

mod backward;
mod forward;
mod kernels;
mod statistics;

pub use statistics::batch_statistics_into;

use crate::error::{Error, Result};
use crate::memory::Purpose;
use crate::tensor::Tensor;
use crate::Gpu;

use kernels::CHAN_ROWS;
#[cfg(test)]
pub(crate) use kernels::KERNELS;

/// `torch.nn.BatchNorm2d(C)`: an affine per-channel normalisation with running statistics.
/// Its tensors are `[C, 1, 1, 1]`, under PyTorch's `state_dict` names: `weight`, `bias`,
/// `running_mean`, `running_var`, and the counter `num_batches_tracked`.
#[derive(Debug)]
pub struct BatchNorm2d {
    /// γ, learned (PyTorch's default 1).
    pub weight: Tensor,
    /// β, learned (default 0).
    pub bias: Tensor,
    /// The running mean (default 0), updated by every training forward.
    pub running_mean: Tensor,
    /// The running (unbiased) variance (default 1), updated by every training forward.
    pub running_var: Tensor,
    /// Training forwards so far.
    pub num_batches_tracked: i64,
    /// Added to the variance before its square root (default 1e-5).
    pub eps: f32,
    /// How far a training forward moves the running statistics (default 0.1); `None`: by
    /// a cumulative average, `1 / num_batches_tracked`, as PyTorch's `momentum=None`.
    pub momentum: Option<f32>,
}

/// What a BatchNorm forward leaves its backward: the mean and 1/σ it normalised with (the
/// batch's in training, the running statistics' in eval) and the mode.
#[derive(Debug)]
pub struct BatchNormSaved {
    chan: Tensor,
    training: bool,
}

impl BatchNormSaved {
    /// Whether the forward normalised with the batch statistics.
    pub fn training(&self) -> bool {
        self.training
    }
}

impl BatchNorm2d {
    /// Bytes a forward over `channels` channels saves for its backward (its
    /// [`BatchNormSaved`]: the statistics it normalised with and what the kernels derive
    /// from them, a few numbers a channel).
    pub fn saved_bytes(channels: usize) -> u64 {
        (4 * CHAN_ROWS * channels).max(16) as u64
    }

    /// A BatchNorm over `channels` with PyTorch's initial values (weight 1, bias 0, running
    /// mean 0, running variance 1, eps 1e-5, momentum 0.1).
    pub fn new(gpu: &Gpu, channels: usize) -> Result<BatchNorm2d> {
        if channels == 0 {
            return Err(Error::param("batchnorm", "it needs at least one channel"));
        }
        let filled = |v: f32| {
            Tensor::from_slice(
                gpu,
                [channels, 1, 1, 1],
                &vec![v; channels],
                Purpose::Parameter,
            )
        };
        Ok(BatchNorm2d {
            weight: filled(1.0)?,
            bias: filled(0.0)?,
            running_mean: filled(0.0)?,
            running_var: filled(1.0)?,
            num_batches_tracked: 0,
            eps: 1e-5,
            momentum: Some(0.1),
        })
    }

    /// A BatchNorm from a PyTorch `state_dict` (`weight`, `bias`, `running_mean`,
    /// `running_var`, and `num_batches_tracked` where the file has it), eps and momentum
    /// PyTorch's defaults. Every tensor must be `[C]` for the same C.
    pub fn from_state_dict(gpu: &Gpu, file: &crate::weights::TensorFile) -> Result<BatchNorm2d> {
        let names = ["weight", "bias", "running_mean", "running_var"];
        let mut tensors = Vec::with_capacity(names.len());
        for name in names {
            let t = file.tensor(name)?;
            if t.shape.len() != 1 || t.shape != file.tensor("weight")?.shape {
                return Err(Error::Content(format!(
                    "BatchNorm2d {name} has shape {:?}; every one of {names:?} must be [C], the same C",
                    t.shape
                )));
            }
            let c = t.shape[0];
            tensors.push(Tensor::from_slice(
                gpu,
                [c, 1, 1, 1],
                &t.data,
                Purpose::Parameter,
            )?);
        }
        let num_batches_tracked = match file.integers.get("num_batches_tracked") {
            Some(_) => file.integer("num_batches_tracked")?,
            None => 0,
        };
        let mut it = tensors.into_iter();
        let mut next = || it.next().expect("four tensors");
        Ok(BatchNorm2d {
            weight: next(),
            bias: next(),
            running_mean: next(),
            running_var: next(),
            num_batches_tracked,
            eps: 1e-5,
            momentum: Some(0.1),
        })
    }

    /// Adds its `state_dict` to `file` under `prefix` (`bn1.` → `bn1.weight`, …): the four
    /// tensors as `[C]`, `num_batches_tracked` as an integer (I64 when written), as PyTorch
    /// saves them.
    pub fn save_into(
        &self,
        gpu: &Gpu,
        prefix: &str,
        file: &mut crate::weights::TensorFile,
    ) -> Result<()> {
        let c = self.channels();
        for (name, t) in [
            ("weight", &self.weight),
            ("bias", &self.bias),
            ("running_mean", &self.running_mean),
            ("running_var", &self.running_var),
        ] {
            file.tensors.insert(
                format!("{prefix}{name}"),
                crate::weights::HostTensor {
                    shape: vec![c],
                    data: t.to_vec(gpu)?,
                },
            );
        }
        file.integers.insert(
            format!("{prefix}num_batches_tracked"),
            vec![self.num_batches_tracked],
        );
        Ok(())
    }

    /// Its channels.
    pub fn channels(&self) -> usize {
        self.weight.shape()[0]
    }

    /// Checks that `x` (or a gradient shaped like it) has this BatchNorm's channels.
    fn check_input(&self, what: &str, x: &Tensor) -> Result<()> {
        if x.shape()[1] != self.channels() {
            return Err(Error::shape(
                "batchnorm",
                format!(
                    "{what} has {} channels, the BatchNorm {} (shape {:?})",
                    x.shape()[1],
                    self.channels(),
                    x.shape()
                ),
            ));
        }
        Ok(())
    }
}
