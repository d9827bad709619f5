//! Kernels as the device runs them: a WGSL source, what an entry point binds
//! ([`KernelSpec`]), and the pipelines compiled from them, cached per `Gpu` by shader, entry
//! point and override constants.

use super::{lock, Gpu, WORKGROUP_SIZE};
use crate::error::{Error, Result};

/// A WGSL source file: its name (for the pipeline cache and error messages) and its text.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shader {
    pub name: &'static str,
    pub source: &'static str,
}

/// Whether a kernel declares a binding read-only or read-write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// What a kernel is, as its WGSL declares it: the shader, the entry point, and the bindings
/// the entry point uses — uniforms (the argument structs), storage buffers with their
/// declared access, and textures. `Recording::launch` binds exactly these (a missing
/// optional buffer gets a small dummy), and a unit test reads every spec's shader with naga
/// and fails if the sets differ, so a wrong binding is caught by `cargo test`, not by a
/// validation error at run time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KernelSpec {
    pub shader: Shader,
    pub entry: &'static str,
    /// Uniform bindings, each filled from one argument struct (binding 0 in every kernel).
    pub uniforms: &'static [u32],
    /// Storage-buffer bindings in the order `launch` takes them, with their declared access.
    pub buffers: &'static [(u32, Access)],
    /// Texture bindings (sampled or storage), in the order `launch` takes them.
    pub textures: &'static [u32],
    /// The shader's own `override` constants (beside [`PIPELINE_CONSTANTS`]).
    pub constants: &'static [(&'static str, f64)],
}

impl KernelSpec {
    /// A kernel with its arguments at binding 0 and the given storage buffers.
    pub const fn new(
        shader: Shader,
        entry: &'static str,
        buffers: &'static [(u32, Access)],
    ) -> KernelSpec {
        KernelSpec {
            shader,
            entry,
            uniforms: &[0],
            buffers,
            textures: &[],
            constants: &[],
        }
    }

    /// The same kernel with its own override constants.
    pub const fn with_constants(self, constants: &'static [(&'static str, f64)]) -> KernelSpec {
        KernelSpec { constants, ..self }
    }

    /// The same kernel with texture bindings too.
    pub const fn with_textures(self, textures: &'static [u32]) -> KernelSpec {
        KernelSpec { textures, ..self }
    }

    /// The same kernel with more uniform bindings (after binding 0).
    pub const fn with_uniforms(self, uniforms: &'static [u32]) -> KernelSpec {
        KernelSpec { uniforms, ..self }
    }
}

/// A kernel with override constants chosen per launch (a problem's geometry, a tile size):
/// one pipeline is compiled, and cached, per distinct set. Plain `&KernelSpec`s convert
/// into it with no extra constants.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Specialised<'a> {
    pub spec: &'a KernelSpec,
    /// Constants beside the spec's own, as `(name, value)`.
    pub constants: &'a [(&'static str, f64)],
}

impl<'a> From<&'a KernelSpec> for Specialised<'a> {
    fn from(spec: &'a KernelSpec) -> Specialised<'a> {
        Specialised {
            spec,
            constants: &[],
        }
    }
}

impl KernelSpec {
    /// This kernel with per-launch override constants.
    pub(crate) fn specialised<'a>(
        &'a self,
        constants: &'a [(&'static str, f64)],
    ) -> Specialised<'a> {
        Specialised {
            spec: self,
            constants,
        }
    }
}

/// Values of the WGSL `override` constants every shader declares (in `shaders/common.wgsl`),
/// set when a pipeline is created: the one place these numbers are defined.
pub(crate) const PIPELINE_CONSTANTS: &[(&str, f64)] = &[("WORKGROUP_SIZE", WORKGROUP_SIZE as f64)];

/// A compiled kernel: its pipeline and the layout of its bind group 0.
#[derive(Clone)]
pub(crate) struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

/// A compiled pipeline is one per shader, entry point and override constants.
pub(crate) type PipelineKey = (&'static str, &'static str, Vec<(&'static str, u64)>);

impl Gpu {
    /// The compiled pipeline of a kernel, compiled once per `Gpu` (per shader, entry point
    /// and override constants) and cached.
    pub(crate) fn pipeline(&self, kernel: Specialised<'_>) -> Result<Kernel> {
        let spec = kernel.spec;
        let (shader, entry) = (spec.shader, spec.entry);
        let constants: Vec<(&'static str, f64)> = PIPELINE_CONSTANTS
            .iter()
            .chain(spec.constants)
            .chain(kernel.constants)
            .copied()
            .collect();
        let key: PipelineKey = (
            shader.name,
            entry,
            constants.iter().map(|&(k, v)| (k, v.to_bits())).collect(),
        );
        if let Some(p) = lock(&self.pipelines).get(&key) {
            return Ok(p.clone());
        }
        let module = {
            let mut modules = lock(&self.modules);
            match modules.get(shader.name) {
                Some(m) => m.clone(),
                None => {
                    let m = self.scoped(&format!("compiling {}", shader.name), || {
                        self.device
                            .create_shader_module(wgpu::ShaderModuleDescriptor {
                                label: Some(shader.name),
                                source: wgpu::ShaderSource::Wgsl(shader.source.into()),
                            })
                    })?;
                    modules.insert(shader.name, m.clone());
                    m
                }
            }
        };
        let pipeline = self.scoped(
            &format!("creating pipeline {}::{entry}", shader.name),
            || {
                self.device
                    .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: Some(entry),
                        layout: None,
                        module: &module,
                        entry_point: Some(entry),
                        compilation_options: wgpu::PipelineCompilationOptions {
                            constants: &constants,
                            // Every kernel writes its workgroup memory before a barrier and
                            // reads it after (see each shader's contract): zero-filling it
                            // first would be a pass over it per workgroup for nothing.
                            zero_initialize_workgroup_memory: false,
                        },
                        cache: self.pipeline_cache.as_ref().map(|c| &c.cache),
                    })
            },
        )?;
        if let Some(cache) = &self.pipeline_cache {
            cache.compiled();
        }
        let kernel = Kernel {
            layout: pipeline.get_bind_group_layout(0),
            pipeline,
        };
        lock(&self.pipelines).insert(key, kernel.clone());
        Ok(kernel)
    }

    /// The override constants of every pipeline compiled so far for `entry` (tests assert
    /// with it which specialisation ran).
    #[cfg(test)]
    pub(crate) fn compiled_constants(&self, entry: &str) -> Vec<Vec<(&'static str, f64)>> {
        lock(&self.pipelines)
            .keys()
            .filter(|(_, e, _)| *e == entry)
            .map(|(_, _, c)| c.iter().map(|&(k, v)| (k, f64::from_bits(v))).collect())
            .collect()
    }

    /// Forgets every compiled pipeline (tests: to see which one a launch compiles).
    #[cfg(test)]
    pub(crate) fn clear_pipelines(&self) {
        lock(&self.pipelines).clear();
    }

    /// Lays `workgroups` out as a grid within `max_compute_workgroups_per_dimension`:
    /// 1-D when it fits, else 2-D (x full, y rows), else 3-D. The kernels rebuild the linear
    /// workgroup index from `workgroup_id` and `num_workgroups`.
    pub(crate) fn workgroup_grid(&self, workgroups: u64) -> Result<[u32; 3]> {
        let max = self.limits.max_compute_workgroups_per_dimension.max(1) as u64;
        let workgroups = workgroups.max(1);
        if workgroups <= max {
            return Ok([workgroups as u32, 1, 1]);
        }
        let y = workgroups.div_ceil(max);
        if y <= max {
            return Ok([max as u32, y as u32, 1]);
        }
        let z = y.div_ceil(max);
        if z <= max {
            return Ok([max as u32, max as u32, z as u32]);
        }
        Err(Error::DispatchTooLarge {
            workgroups,
            limit: max as u32,
        })
    }
}
