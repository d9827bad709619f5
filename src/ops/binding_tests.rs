//! Every kernel spec against its WGSL: the uniform, storage and texture bindings the entry
//! point uses (read with naga, the front end wgpu compiles with) must be exactly the ones
//! the spec declares, with the declared access — so a launch that binds the wrong set fails
//! here, not as a validation error on some adapter at run time.

use std::collections::BTreeSet;

use crate::gpu::{Access, KernelSpec};

/// (uniforms, storage buffers with access, textures) that `spec`'s entry point uses.
type Bindings = (BTreeSet<u32>, BTreeSet<(u32, bool)>, BTreeSet<u32>);

fn used_bindings(spec: &KernelSpec) -> Bindings {
    let module = naga::front::wgsl::parse_str(spec.shader.source).unwrap_or_else(|e| {
        panic!(
            "{}: {}",
            spec.shader.name,
            e.emit_to_string(spec.shader.source)
        )
    });
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{}: {e:?}", spec.shader.name));
    let index = module
        .entry_points
        .iter()
        .position(|ep| ep.name == spec.entry)
        .unwrap_or_else(|| panic!("{} has no entry point {}", spec.shader.name, spec.entry));
    let uses = info.get_entry_point(index);
    let mut found: Bindings = Default::default();
    for (handle, var) in module.global_variables.iter() {
        let Some(binding) = &var.binding else {
            continue;
        };
        if uses[handle].is_empty() {
            continue;
        }
        assert_eq!(binding.group, 0, "{}: group {}", spec.entry, binding.group);
        match var.space {
            naga::AddressSpace::Uniform => {
                found.0.insert(binding.binding);
            }
            naga::AddressSpace::Storage { access } => {
                let writes = access.contains(naga::StorageAccess::STORE);
                found.1.insert((binding.binding, writes));
            }
            naga::AddressSpace::Handle => {
                found.2.insert(binding.binding);
            }
            other => panic!("{}: binding {} in {other:?}", spec.entry, binding.binding),
        }
    }
    found
}

fn declared(spec: &KernelSpec) -> Bindings {
    (
        spec.uniforms.iter().copied().collect(),
        spec.buffers
            .iter()
            .map(|&(b, a)| (b, a == Access::Write))
            .collect(),
        spec.textures.iter().copied().collect(),
    )
}

#[test]
fn every_kernel_spec_matches_its_wgsl() {
    let mut specs = super::conv2d::kernels();
    specs.extend(super::elementwise_kernels());
    #[cfg(feature = "cli")]
    specs.extend([
        &crate::bench::ceilings::FMA_PEAK,
        &crate::bench::ceilings::COPY_PEAK,
    ]);
    let mut wrong = Vec::new();
    for spec in &specs {
        let (used, want) = (used_bindings(spec), declared(spec));
        if used != want {
            wrong.push(format!(
                "{}::{}: the WGSL uses (uniforms, buffers (binding, writable), textures) {used:?}, the spec declares {want:?}",
                spec.shader.name, spec.entry
            ));
        }
        // Buffers in ascending binding order, each once (launch binds them in this order).
        let order: Vec<u32> = spec.buffers.iter().map(|b| b.0).collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "{}: {order:?}",
            spec.entry
        );
    }
    assert!(
        wrong.is_empty(),
        "{} of {} kernels:\n{}",
        wrong.len(),
        specs.len(),
        wrong.join("\n")
    );
    // Every kernel of the crate is here: the conv families, the elementwise ops and the probes.
    assert!(specs.len() >= 23, "{} specs", specs.len());
}

/// The check can fail: a spec that leaves out a buffer its entry point writes, or declares
/// a read-write buffer read-only, differs from what the WGSL uses.
#[test]
fn a_wrong_spec_is_caught() {
    use crate::ops::relu::BACKWARD;
    let missing = KernelSpec {
        buffers: &[(1, Access::Write), (2, Access::Write)],
        ..BACKWARD
    };
    assert_ne!(used_bindings(&missing), declared(&missing));
    let read_only = KernelSpec {
        buffers: &[(1, Access::Write), (2, Access::Write), (3, Access::Read)],
        ..BACKWARD
    };
    assert_ne!(used_bindings(&read_only), declared(&read_only));
    assert_eq!(used_bindings(&BACKWARD), declared(&BACKWARD));
}
