//! `pt doctor`: what this pt is built on and what it can see.

use pt_core::plugin::{registry, Registry};
use pt_core::runtime;
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cuda_lib = runtime::init();
    let lib_dir = runtime::libtorch_lib_dir();
    let libtorch_version = lib_dir.as_deref().and_then(runtime::libtorch_version);
    let cuda = tch::Cuda::is_available();
    let devices = if cuda { runtime::cuda_device_names() } else { Vec::new() };
    // Whether the step's GPU waits can be counted (device_syncs_per_step): one read must count.
    let sync_counting = if cuda { pt_core::train::device_syncs::count_one_read(tch::Device::Cuda(0)) } else { None };
    let reg = Registry::discover();
    // A real computation through libtorch: [1,2,3]·[4,5,6] = 32.
    let tensor_check = tch::Tensor::from_slice(&[1f32, 2., 3.])
        .f_dot(&tch::Tensor::from_slice(&[4f32, 5., 6.]))
        .and_then(|t| t.f_double_value(&[]))
        .map_err(|e| anyhow::anyhow!("libtorch failed a basic tensor operation: {e}"))?;
    let report = json!({
        "tensor_check": tensor_check,
        "pt_version": env!("CARGO_PKG_VERSION"),
        "sdk_version": pt_sdk::SDK_VERSION,
        "abi": "pt_plugin (abi_stable 0.11 prefix module)",
        "tch_version": pt_sdk::TCH_VERSION,
        "libtorch_version": libtorch_version,
        "libtorch_lib": lib_dir,
        "libtorch_cuda": cuda_lib,
        "cuda_available": cuda,
        "cuda_device_count": if cuda { tch::Cuda::device_count() } else { 0 },
        "cuda_devices": devices,
        "nccl_built": pt_core::dist::Backend::nccl_built(),
        "cudnn_available": cuda && tch::Cuda::cudnn_is_available(),
        "cudnn_version": if cuda { Some(tch::utils::version_cudnn()) } else { None },
        "sync_counting": sync_counting,
        "threads": tch::get_num_threads(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "pt_home": registry::pt_home(),
        "data_dir": pt_sdk::default_data_dir(),
        "search_path": reg.searched,
        "plugins": reg.plugins.iter().map(|f| json!({
            "name": f.plugin.manifest.name,
            "version": f.plugin.manifest.version,
            "sdk_version": f.plugin.manifest.sdk_version,
            "path": f.plugin.path,
            "from": f.from,
            "components": f.plugin.manifest.components.iter().map(|c| format!("{}:{}", c.kind, c.name)).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "failed_plugins": reg.failed.iter().map(|f| json!({"path": f.path, "error": f.error.to_string()})).collect::<Vec<_>>(),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "pt {}  (pt-sdk {}, plugin ABI: abi_stable prefix module)",
        env!("CARGO_PKG_VERSION"),
        pt_sdk::SDK_VERSION
    );
    println!(
        "tch {}  libtorch {}  at {}",
        pt_sdk::TCH_VERSION,
        libtorch_version.as_deref().unwrap_or("(version unknown)"),
        lib_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_else(|| "?".into())
    );
    match (&cuda_lib.loaded, &cuda_lib.error) {
        (true, _) => println!("libtorch_cuda.so: loaded"),
        (false, Some(e)) => println!("libtorch_cuda.so: not loaded ({e})"),
        (false, None) => println!("libtorch_cuda.so: not loaded"),
    }
    println!(
        "distributed backends: gloo{}",
        if pt_core::dist::Backend::nccl_built() { ", nccl" } else { " (this pt was built without NCCL)" }
    );
    if cuda {
        println!("CUDA: {} device(s)", tch::Cuda::device_count());
        for d in &devices {
            println!("  {d}");
        }
        println!(
            "cuDNN: {}",
            if tch::Cuda::cudnn_is_available() {
                format!("available (version {})", tch::utils::version_cudnn())
            } else {
                "not available".into()
            }
        );
        println!(
            "GPU wait counting (device_syncs_per_step): {}",
            match sync_counting {
                Some(n) if n > 0 => format!("works ({n} counted for one read)"),
                Some(_) => "BROKEN: a read of the GPU counted nothing".into(),
                None => "unavailable (this pt was built without CUDA headers)".into(),
            }
        );
    } else {
        println!("CUDA: not available (training runs on the CPU)");
    }
    println!("threads: {} intra-op ({} CPUs)", tch::get_num_threads(), report["cpus"]);
    println!("tensor check: [1,2,3]·[4,5,6] = {tensor_check}");
    println!("PT_HOME: {}", registry::pt_home().display());
    println!("data: {}", pt_sdk::default_data_dir().display());
    println!("plugin search path:");
    for d in &reg.searched {
        println!("  {:<16} {}", d.kind.label(), d.path.display());
    }
    if reg.plugins.is_empty() {
        println!("plugins: none found");
    } else {
        println!("plugins:");
        for f in &reg.plugins {
            println!(
                "  {} {}  [{}] {}",
                f.plugin.manifest.name,
                f.plugin.manifest.version,
                f.from.label(),
                f.plugin.path.display()
            );
        }
    }
    for f in &reg.failed {
        println!("  failed: {}: {}", f.path.display(), f.error);
    }
    Ok(())
}
