//! Training on the GPU: [`Network`] (the plain, residual and dense stacks with PyTorch's
//! `state_dict` names), the MSE loss ([`crate::ops::loss`]) and [`Optimizer`] (SGD, Adam,
//! AdamW with `torch.optim`'s rules). [`train_step`] records forward, loss, backward and
//! update into one recording: one submission a step, nothing read back unless asked.

pub(crate) mod network;
pub(crate) mod optim;

// The network and the optimizer are the crate root's (`skipgrad::Network`, …); the
// settings of each rule and the step function are this module's.
use network::Network;
use optim::Optimizer;
pub use optim::{Adam, Sgd};

use crate::error::Result;
use crate::ops::loss;
use crate::record::Recording;
use crate::tensor::Tensor;

/// Records one training step — forward, `mse(net(x), target)`, backward, the optimizer's
/// update of every parameter — and returns the loss of this step's forward (before the
/// update, as a PyTorch loop prints it) as a `[1, 1, 1, 1]` tensor, read back only if the
/// caller asks.
pub fn train_step(
    rec: &mut Recording<'_>,
    net: &mut Network,
    optimizer: &mut Optimizer,
    x: &Tensor,
    target: &Tensor,
) -> Result<Tensor> {
    let y = net.forward(rec, x)?;
    let l = loss::mse(rec, &y, target)?;
    // The input's gradient is never used in a step: its pass is not recorded.
    let grads = net.backward_params(rec, &l.grad)?;
    optimizer.step(rec, &net.parameters(), &grads)?;
    rec.retain(y);
    rec.retain(l.grad);
    for (_, g) in grads {
        rec.retain(g);
    }
    Ok(l.loss)
}
