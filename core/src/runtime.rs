//! Process-wide libtorch facts and set-up: which libtorch is loaded, CUDA, threads.

use serde::Serialize;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The directory of the libtorch_cpu.so this process loaded (from /proc/self/maps).
pub fn libtorch_lib_dir() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libtorch_cpu.so"))
        .and_then(|p| PathBuf::from(p).parent().map(|d| d.to_path_buf()))
}

/// The libtorch version, read from the install's `version.py` (PyTorch wheel) or `build-version`.
pub fn libtorch_version(lib_dir: &std::path::Path) -> Option<String> {
    let root = lib_dir.parent()?;
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("__version__") {
                return Some(rest.trim_start_matches([' ', '=']).trim().trim_matches(['\'', '"']).to_string());
            }
        }
    }
    std::fs::read_to_string(root.join("build-version")).ok().map(|s| s.trim().to_string())
}

/// Whether libtorch_cuda.so was loaded, and why not.
#[derive(Clone, Debug, Serialize)]
pub struct CudaLibStatus {
    pub loaded: bool,
    pub path: Option<PathBuf>,
    pub error: Option<String>,
}

static CUDA_LIB: OnceLock<CudaLibStatus> = OnceLock::new();

/// Loads `libtorch_cuda.so` into the process (RTLD_GLOBAL) before the first CUDA query.
///
/// Why: the linker's --as-needed drops libtorch_cuda.so from binaries that never call into it
/// directly, and then libtorch silently reports no CUDA. Loading it registers the CUDA backend.
/// Idempotent; call it first thing in every process that trains.
pub fn init() -> &'static CudaLibStatus {
    CUDA_LIB.get_or_init(|| {
        let Some(dir) = libtorch_lib_dir() else {
            return CudaLibStatus { loaded: false, path: None, error: Some("libtorch_cpu.so not mapped".into()) };
        };
        let path = dir.join("libtorch_cuda.so");
        if !path.exists() {
            return CudaLibStatus {
                loaded: false,
                path: Some(path),
                error: Some("not present (CPU-only libtorch)".into()),
            };
        }
        // SAFETY: loading libtorch's own CUDA library; its initialisers only register kernels.
        let lib = unsafe { libloading::os::unix::Library::open(Some(&path), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        match lib {
            Ok(lib) => {
                std::mem::forget(lib); // never unloaded
                tracing::debug!(path = %path.display(), "loaded libtorch_cuda.so");
                CudaLibStatus { loaded: true, path: Some(path), error: None }
            }
            Err(e) => CudaLibStatus { loaded: false, path: Some(path), error: Some(e.to_string()) },
        }
    })
}

/// The GPU of this process: `LOCAL_RANK` in a multi-process run (torchrun, `pt launch`), else 0.
fn local_cuda_index() -> u64 {
    match crate::dist::DistEnv::from_env() {
        Ok(Some(env)) => env.local_rank,
        _ => 0,
    }
}

/// The device training runs on: `auto` picks CUDA when available.
pub fn resolve_device(name: &str) -> crate::Result<tch::Device> {
    init();
    match name {
        "auto" if tch::Cuda::is_available() => resolve_device(&format!("cuda:{}", local_cuda_index())),
        "auto" => Ok(tch::Device::Cpu),
        "cpu" => Ok(tch::Device::Cpu),
        "cuda" => resolve_device(&format!("cuda:{}", local_cuda_index())),
        other => {
            let idx = other
                .strip_prefix("cuda:")
                .and_then(|i| i.parse::<usize>().ok())
                .ok_or_else(|| crate::Error::Config(format!("device '{other}': use auto, cpu, cuda or cuda:N")))?;
            if !tch::Cuda::is_available() {
                return Err(crate::Error::Config(format!(
                    "device '{other}' asked for but CUDA is not available here (see `pt doctor`); use --device cpu"
                )));
            }
            if idx as i64 >= tch::Cuda::device_count() {
                return Err(crate::Error::Config(format!(
                    "device '{other}': only {} CUDA device(s) present",
                    tch::Cuda::device_count()
                )));
            }
            Ok(tch::Device::Cuda(idx))
        }
    }
}

/// Names of the CUDA devices, from nvidia-smi when it is there.
pub fn cuda_device_names() -> Vec<String> {
    std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name,memory.total", "--format=csv,noheader"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().map(|l| l.trim().to_string()).collect())
        .unwrap_or_default()
}
