//! A network's `state_dict`: its names, in PyTorch's order, and the fresh state the
//! BatchNorm stacks are built from (torchvision's modules load from a state_dict, so a new
//! network makes one first).

use super::*;

impl Network {
    /// The `state_dict` names of a network of `arch` and `depth`, in forward order (what
    /// [`Network::parameters`] names).
    pub fn parameter_names(arch: Arch, depth: usize) -> Vec<String> {
        let conv = |n: String| [format!("{n}.weight"), format!("{n}.bias")];
        // A conv without bias and its BatchNorm (torchvision's blocks).
        let conv_bn = |(c, n): (String, String)| {
            [
                format!("{c}.weight"),
                format!("{n}.weight"),
                format!("{n}.bias"),
            ]
        };
        match arch {
            Arch::Plain => (0..depth)
                .flat_map(|i| conv(format!("layers.{i}")))
                .collect(),
            Arch::Residual => (0..depth / 2)
                .flat_map(|i| [1, 2].map(|c| format!("blocks.{i}.conv{c}")))
                .flat_map(conv)
                .collect(),
            Arch::Dense => (0..depth)
                .map(|i| format!("block.layer{i}"))
                .chain(std::iter::once("transition".to_string()))
                .flat_map(conv)
                .collect(),
            Arch::ResNetBn => (0..depth / 2)
                .flat_map(|i| {
                    [1, 2].map(|c| (format!("blocks.{i}.conv{c}"), format!("blocks.{i}.bn{c}")))
                })
                .flat_map(conv_bn)
                .collect(),
            Arch::DenseNetBc => (1..=depth)
                .flat_map(|j| {
                    [1, 2].map(|u| {
                        (
                            format!("block.denselayer{j}.conv{u}"),
                            format!("block.denselayer{j}.norm{u}"),
                        )
                    })
                })
                .flat_map(|(c, n)| {
                    // torchvision's order: norm, then conv.
                    let [w, bw, bb] = conv_bn((c, n));
                    [bw, bb, w]
                })
                .chain(conv("transition".to_string()))
                .collect(),
        }
    }

    /// Every tensor of its `state_dict`: [`Network::parameter_names`], and the BatchNorm
    /// stacks' running statistics (what a strict load expects besides).
    pub fn state_names(arch: Arch, depth: usize) -> Vec<String> {
        let mut names = Self::parameter_names(arch, depth);
        let norms: Vec<String> = names
            .iter()
            .filter_map(|n| n.strip_suffix(".bias"))
            .filter(|n| n.contains(".bn") || n.contains(".norm"))
            .map(str::to_string)
            .collect();
        for n in norms {
            names.push(format!("{n}.running_mean"));
            names.push(format!("{n}.running_var"));
        }
        names
    }

    /// A fresh `state_dict` of a BatchNorm stack: convs drawn as `init` says (every conv its
    /// own stream), BatchNorms as PyTorch makes them (weight 1, bias 0, running mean 0,
    /// running variance 1, no batches tracked).
    pub(super) fn initial_state(
        gpu: &Gpu,
        arch: Arch,
        depth: usize,
        channels: usize,
        init: Init,
    ) -> Result<TensorFile> {
        let mut file = TensorFile::default();
        let mut conv = |name: &str, shape: [usize; 4], bias: bool| -> Result<()> {
            let layer = ConvLayer::init(gpu, name, shape, Conv2dParams::default(), init)?;
            let host = |t: &Tensor, shape: Vec<usize>| -> Result<HostTensor> {
                Ok(HostTensor {
                    shape,
                    data: t.to_vec(gpu)?,
                })
            };
            file.tensors.insert(
                format!("{name}.weight"),
                host(&layer.weight, shape.to_vec())?,
            );
            if bias {
                file.tensors
                    .insert(format!("{name}.bias"), host(&layer.bias, vec![shape[0]])?);
            }
            Ok(())
        };
        let mut norms = Vec::new();
        match arch {
            Arch::ResNetBn => {
                for i in 0..depth / 2 {
                    for c in [1, 2] {
                        conv(
                            &format!("blocks.{i}.conv{c}"),
                            [channels, channels, 3, 3],
                            false,
                        )?;
                        norms.push((format!("blocks.{i}.bn{c}"), channels));
                    }
                }
            }
            _ => {
                let (growth, wide) = (DENSE_GROWTH, BC_BN_SIZE * DENSE_GROWTH);
                for j in 1..=depth {
                    let reads = channels + (j - 1) * growth;
                    let layer = format!("block.denselayer{j}");
                    conv(&format!("{layer}.conv1"), [wide, reads, 1, 1], false)?;
                    conv(&format!("{layer}.conv2"), [growth, wide, 3, 3], false)?;
                    norms.push((format!("{layer}.norm1"), reads));
                    norms.push((format!("{layer}.norm2"), wide));
                }
                conv(
                    "transition",
                    [channels, channels + depth * growth, 1, 1],
                    true,
                )?;
            }
        }
        for (name, c) in norms {
            for (what, v) in [
                ("weight", 1.0),
                ("bias", 0.0),
                ("running_mean", 0.0),
                ("running_var", 1.0),
            ] {
                file.tensors.insert(
                    format!("{name}.{what}"),
                    HostTensor {
                        shape: vec![c],
                        data: vec![v; c],
                    },
                );
            }
            file.integers
                .insert(format!("{name}.num_batches_tracked"), vec![0]);
        }
        Ok(file)
    }

    /// Every parameter with its `state_dict` name, in forward order. The tensors share the
    /// network's buffers: an optimizer updates them in place.
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        match &self.body {
            Body::Plain(layers) => layers.iter().flat_map(|l| l.parameters()).collect(),
            Body::Residual(blocks) => blocks
                .iter()
                .enumerate()
                .flat_map(|(i, b)| {
                    b.parameters()
                        .into_iter()
                        .map(move |(n, t)| (format!("blocks.{i}.{n}"), t))
                })
                .collect(),
            Body::Dense(dense) => dense
                .0
                .parameters()
                .into_iter()
                .map(|(n, t)| (format!("block.{n}"), t))
                .chain(dense.1.parameters())
                .collect(),
            Body::ResNetBn(layer) => layer
                .parameters()
                .into_iter()
                .map(|(n, t)| (format!("blocks.{n}"), t))
                .collect(),
            Body::DenseNetBc(dense) => dense
                .0
                .parameters()
                .into_iter()
                .map(|(n, t)| (format!("block.{n}"), t))
                .chain(dense.1.parameters())
                .collect(),
        }
    }

    /// Writes the parameters as a safetensors `state_dict` (PyTorch names).
    pub fn save(&self, gpu: &Gpu, path: &std::path::Path) -> Result<()> {
        let mut file = TensorFile::default();
        // The BatchNorm stacks: the module's own state_dict (its BatchNorms' running
        // statistics and int64 counters, every tensor in PyTorch's shape), then the
        // transition conv of DenseNet-BC.
        let module = match &self.body {
            Body::ResNetBn(layer) => Some(("blocks.", layer.state_dict(gpu)?, None)),
            Body::DenseNetBc(dense) => Some(("block.", dense.0.state_dict(gpu)?, Some(&dense.1))),
            _ => None,
        };
        if let Some((prefix, state, transition)) = module {
            for (k, v) in state.tensors {
                file.tensors.insert(format!("{prefix}{k}"), v);
            }
            for (k, v) in state.integers {
                file.integers.insert(format!("{prefix}{k}"), v);
            }
            if let Some(t) = transition {
                t.save(gpu, &mut file)?;
            }
            return file.write(path);
        }
        for (name, t) in self.parameters() {
            let shape = if name.ends_with(".bias") {
                vec![t.shape()[0]]
            } else {
                t.shape().to_vec()
            };
            file.tensors.insert(
                name,
                crate::weights::HostTensor {
                    shape,
                    data: t.to_vec(gpu)?,
                },
            );
        }
        file.write(path)
    }
}
