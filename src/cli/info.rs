//! `skipgrad info`: the adapter and the limits that matter to the engine.

use super::{adapter_line, fmt_bytes, open_gpu};

/// Prints the adapter and its limits (as JSON with `json`).
pub fn run(backend: Option<&str>, json: bool) -> skipgrad::Result<()> {
    let gpu = open_gpu(backend)?;
    let i = gpu.adapter_info();
    let l = gpu.limits();
    if json {
        let v = serde_json::json!({
            "adapter": i.name,
            "backend": gpu.backend_name(),
            "device_type": format!("{:?}", i.device_type),
            "driver": i.driver,
            "driver_info": i.driver_info,
            "timestamp_queries": gpu.has_timestamps(),
            "policy": gpu.policy().name(),
            "pipeline_cache": gpu.has_pipeline_cache(),
            "conv_families": skipgrad::ConvKernels::families().iter().map(|k| k.name()).collect::<Vec<_>>(),
            "limits": {
                "max_buffer_size": l.max_buffer_size,
                "max_storage_buffer_binding_size": l.max_storage_buffer_binding_size,
                "max_storage_buffers_per_shader_stage": l.max_storage_buffers_per_shader_stage,
                "max_compute_workgroups_per_dimension": l.max_compute_workgroups_per_dimension,
                "max_compute_invocations_per_workgroup": l.max_compute_invocations_per_workgroup,
                "max_compute_workgroup_storage_size": l.max_compute_workgroup_storage_size,
            }
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    println!("adapter      {}", adapter_line(&gpu));
    println!("device type  {:?}", i.device_type);
    println!("backend      {}", gpu.backend_name());
    println!(
        "timestamps   {}",
        if gpu.has_timestamps() { "yes" } else { "no" }
    );
    println!("policy       {} (SKIPGRAD_POLICY)", gpu.policy().name());
    println!(
        "pipelines    {}",
        if gpu.has_pipeline_cache() {
            "cached on disk"
        } else {
            "compiled in each process"
        }
    );
    println!("conv kernel families (SKIPGRAD_CONV_KERNELS, --kernels):");
    for line in skipgrad::ConvKernels::help().lines() {
        println!("  {line}");
    }
    println!("limits");
    println!(
        "  max_buffer_size                       {}",
        fmt_bytes(l.max_buffer_size)
    );
    println!(
        "  max_storage_buffer_binding_size       {}",
        fmt_bytes(l.max_storage_buffer_binding_size)
    );
    println!(
        "  max_storage_buffers_per_shader_stage  {}",
        l.max_storage_buffers_per_shader_stage
    );
    println!(
        "  max_compute_workgroups_per_dimension  {}",
        l.max_compute_workgroups_per_dimension
    );
    println!(
        "  max_compute_invocations_per_workgroup {}",
        l.max_compute_invocations_per_workgroup
    );
    println!(
        "  max_compute_workgroup_storage_size    {}",
        fmt_bytes(l.max_compute_workgroup_storage_size as u64)
    );
    Ok(())
}
