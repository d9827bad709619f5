//! Optimizers on the GPU (`shaders/optim.wgsl`): SGD (momentum, dampening, weight decay,
//! Nesterov) and Adam / AdamW with exactly `torch.optim`'s update rules. Parameters are
//! updated in place; their state lives in buffers accounted as [`Purpose::Optimizer`].

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::gpu::{Access, KernelSpec, Shader};
use crate::memory::Purpose;
use crate::record::{read, write, Cost, Grid, Recording};
use crate::tensor::Tensor;

const OPTIM: Shader = wgsl!("optim.wgsl");
/// `sgd_step`: param (binding 1, updated), grad (2), momentum buffer (3).
pub(crate) const SGD: KernelSpec = KernelSpec::new(
    OPTIM,
    "sgd_step",
    &[(1, Access::Write), (2, Access::Read), (3, Access::Write)],
);
/// `adam_step`: param, grad, first and second moments.
pub(crate) const ADAM: KernelSpec = KernelSpec::new(
    OPTIM,
    "adam_step",
    &[
        (1, Access::Write),
        (2, Access::Read),
        (3, Access::Write),
        (4, Access::Write),
    ],
);

/// `torch.optim.SGD`'s settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor (0: plain SGD, no state).
    pub momentum: f32,
    /// Dampening of the momentum.
    pub dampening: f32,
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
    /// Nesterov momentum (needs momentum > 0 and dampening 0, as in PyTorch).
    pub nesterov: bool,
}

impl Default for Sgd {
    fn default() -> Self {
        Sgd {
            lr: 0.01,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}

/// `torch.optim.Adam`'s (and `AdamW`'s) settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam {
    /// Learning rate.
    pub lr: f32,
    /// Decay rates of the first and second moment estimates.
    pub betas: (f32, f32),
    /// Added to the denominator.
    pub eps: f32,
    /// Adam: L2 penalty added to the gradient; AdamW: decoupled decay of the weights.
    pub weight_decay: f32,
}

impl Default for Adam {
    fn default() -> Self {
        Adam {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Which update rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerKind {
    /// `torch.optim.SGD`.
    Sgd(Sgd),
    /// `torch.optim.Adam`.
    Adam(Adam),
    /// `torch.optim.AdamW` (its default weight decay is 0.01).
    AdamW(Adam),
}

impl std::fmt::Display for OptimizerKind {
    /// As a user writes it: `SGD lr 0.01 momentum 0.9`, `AdamW lr 0.001 betas (0.9, 0.999)
    /// eps 1e-8 weight decay 0.01` (terms at their inactive value left out).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OptimizerKind::Sgd(s) => {
                write!(f, "SGD lr {}", s.lr)?;
                if s.momentum != 0.0 {
                    write!(f, " momentum {}", s.momentum)?;
                }
                if s.dampening != 0.0 {
                    write!(f, " dampening {}", s.dampening)?;
                }
                if s.weight_decay != 0.0 {
                    write!(f, " weight decay {}", s.weight_decay)?;
                }
                if s.nesterov {
                    write!(f, " nesterov")?;
                }
                Ok(())
            }
            OptimizerKind::Adam(a) | OptimizerKind::AdamW(a) => {
                let name = match self {
                    OptimizerKind::AdamW(_) => "AdamW",
                    _ => "Adam",
                };
                write!(
                    f,
                    "{name} lr {} betas ({}, {}) eps {:e}",
                    a.lr, a.betas.0, a.betas.1, a.eps
                )?;
                if a.weight_decay != 0.0 {
                    write!(f, " weight decay {}", a.weight_decay)?;
                }
                Ok(())
            }
        }
    }
}

/// An optimizer and its per-parameter state, keyed by `state_dict` name.
pub struct Optimizer {
    kind: OptimizerKind,
    step: u32,
    state: HashMap<String, (Tensor, Tensor)>,
}

/// Arguments of the optimizer kernels (`Optim` in `shaders/optim.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct OptimArgs {
    count: u32,
    step: u32,
    nesterov: u32,
    decoupled: u32,
    lr: f32,
    momentum: f32,
    dampening: f32,
    weight_decay: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    bias_c1: f32,
    bias_c2_sqrt: f32,
    _pad: [u32; 3],
}

impl Optimizer {
    /// A fresh optimizer (no state yet; step 0). Refuses settings PyTorch refuses.
    pub fn new(kind: OptimizerKind) -> Result<Optimizer> {
        let bad = |d: String| Err(Error::param("optimizer", d));
        match kind {
            OptimizerKind::Sgd(s) => {
                if !(s.lr >= 0.0 && s.momentum >= 0.0 && s.weight_decay >= 0.0) {
                    return bad(format!(
                        "lr, momentum and weight decay must be >= 0 (got {kind})"
                    ));
                }
                if s.nesterov && (s.momentum <= 0.0 || s.dampening != 0.0) {
                    return bad("Nesterov momentum needs momentum > 0 and dampening 0".into());
                }
            }
            OptimizerKind::Adam(a) | OptimizerKind::AdamW(a) => {
                let (b1, b2) = a.betas;
                let valid = a.lr >= 0.0
                    && a.eps >= 0.0
                    && a.weight_decay >= 0.0
                    && (0.0..1.0).contains(&b1)
                    && (0.0..1.0).contains(&b2);
                if !valid {
                    return bad(format!(
                        "lr, eps and weight decay must be >= 0 and betas in [0, 1) (got {kind})"
                    ));
                }
            }
        }
        Ok(Optimizer {
            kind,
            step: 0,
            state: HashMap::new(),
        })
    }

    /// The update rule and its settings.
    pub fn kind(&self) -> OptimizerKind {
        self.kind
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u32 {
        self.step
    }

    /// Which state buffers a parameter needs: SGD without momentum none, with momentum one
    /// (the momentum buffer), Adam two (the moment estimates).
    fn slots(&self) -> (bool, bool) {
        match self.kind {
            OptimizerKind::Sgd(s) if s.momentum == 0.0 => (false, false),
            OptimizerKind::Sgd(_) => (true, false),
            _ => (true, true),
        }
    }

    /// Records one update of every parameter from its gradient (matched by name), in place.
    pub fn step(
        &mut self,
        rec: &mut Recording<'_>,
        params: &[(String, Tensor)],
        grads: &[(String, Tensor)],
    ) -> Result<()> {
        // Everything is checked before anything is recorded or counted: a refused step
        // leaves parameters, state and the step count as they were.
        let mut pairs = Vec::with_capacity(params.len());
        for (name, p) in params {
            let g = grads
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, g)| g)
                .ok_or_else(|| {
                    Error::param("optimizer", format!("no gradient for parameter {name:?}"))
                })?;
            if g.shape() != p.shape() || !p.is_contiguous() || !g.is_contiguous() {
                return Err(Error::shape(
                    "optimizer",
                    format!(
                        "{name}: gradient {:?} does not match the parameter {:?} (both whole tensors)",
                        g.shape(),
                        p.shape()
                    ),
                ));
            }
            if let Some((s0, s1)) = self.state.get(name) {
                let (n0, n1) = self.slots();
                if (n0 && s0.shape() != p.shape()) || (n1 && s1.shape() != p.shape()) {
                    return Err(Error::shape(
                        "optimizer",
                        format!(
                            "{name}: the optimizer's state has shape {:?}, the parameter {:?}; \
                             use one optimizer per set of parameters",
                            s0.shape(),
                            p.shape()
                        ),
                    ));
                }
            }
            pairs.push((name, p, g));
        }
        self.step += 1;
        let step = self.step;
        for (name, p, g) in pairs {
            if !self.state.contains_key(name) {
                // Unused slots get a 16-byte placeholder (never read).
                let (n0, n1) = self.slots();
                let make = |full: bool| {
                    let shape = if full { p.shape() } else { [1, 1, 1, 1] };
                    Tensor::zeros(rec.gpu(), shape, Purpose::Optimizer)
                };
                self.state.insert(name.clone(), (make(n0)?, make(n1)?));
            }
            let (s0, s1) = &self.state[name];
            let mut a = OptimArgs {
                count: p.numel() as u32,
                step,
                ..Default::default()
            };
            let spec = match self.kind {
                OptimizerKind::Sgd(s) => {
                    a.lr = s.lr;
                    a.momentum = s.momentum;
                    a.dampening = s.dampening;
                    a.weight_decay = s.weight_decay;
                    a.nesterov = s.nesterov as u32;
                    &SGD
                }
                OptimizerKind::Adam(o) | OptimizerKind::AdamW(o) => {
                    a.lr = o.lr;
                    a.weight_decay = o.weight_decay;
                    a.beta1 = o.betas.0;
                    a.beta2 = o.betas.1;
                    a.eps = o.eps;
                    a.decoupled = matches!(self.kind, OptimizerKind::AdamW(_)) as u32;
                    // Bias corrections in f64 on the host, as PyTorch computes them.
                    a.bias_c1 = (1.0 - (o.betas.0 as f64).powi(step as i32)) as f32;
                    a.bias_c2_sqrt = (1.0 - (o.betas.1 as f64).powi(step as i32)).sqrt() as f32;
                    &ADAM
                }
            };
            let bindings = [
                Some(write(p)),
                Some(read(g)),
                Some(write(s0)),
                Some(write(s1)),
            ];
            // SGD keeps one state buffer, Adam two.
            rec.launch(
                spec,
                &[bytemuck::bytes_of(&a)],
                &bindings[..spec.buffers.len()],
                &[],
                Grid::Threads(p.numel() as u64),
                Cost {
                    flops: 8 * p.numel() as u64,
                    bytes: 4 * 6 * p.numel() as u64,
                },
            )?;
        }
        Ok(())
    }
}
