// Binaries and tests of this crate find libtorch through an rpath, not LD_LIBRARY_PATH; and the
// C++ shims (csrc/: autocast, pinned host memory, c10d, profiler, CUDA sync counting) compile
// against the same libtorch's headers.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=csrc/autocast.cpp");
    println!("cargo:rerun-if-changed=csrc/pinned.cpp");
    println!("cargo:rerun-if-changed=csrc/dist.cpp");
    println!("cargo:rerun-if-changed=csrc/dist.h");
    println!("cargo:rerun-if-changed=csrc/overlap.cpp");
    println!("cargo:rerun-if-changed=../optim/csrc/shim_error.h");
    println!("cargo:rerun-if-changed=csrc/nccl.cpp");
    println!("cargo:rerun-if-changed=csrc/profiler.cpp");
    println!("cargo:rerun-if-changed=csrc/syncs.cpp");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        panic!("torch-sys did not report its libtorch (DEP_TCH_LIBTORCH_LIB): run scripts/setup.sh");
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    let root = Path::new(&lib).parent().expect("libtorch's lib directory has a parent");
    if !Path::new("/usr/include/gloo/algorithm.h").exists() {
        panic!(
            "gloo's headers are missing (/usr/include/gloo): pt's c10d shim needs them. \
             Install Debian's libgloo-dev (apt-get install -y libgloo-dev), as scripts/setup.sh does"
        );
    }
    let nccl = nccl_headers(Path::new(&lib));
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .file("csrc/autocast.cpp")
        .file("csrc/pinned.cpp")
        .file("csrc/dist.cpp")
        .file("csrc/overlap.cpp")
        .file("csrc/nccl.cpp")
        .file("csrc/profiler.cpp")
        .file("csrc/syncs.cpp")
        // c10d's Gloo process group; its headers include gloo's, from Debian's libgloo-dev
        // (scripts/setup.sh installs it). libtorch links its own gloo: never -lgloo.
        .define("USE_C10D_GLOO", None)
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .include("../optim/csrc") // shim_error.h, shared with pt-optim's shim
        .flag_if_supported("-w"); // libtorch's headers warn a lot; the shims themselves are small
    if let Some(dirs) = &nccl {
        // c10d's NCCL process group lives in libtorch_cuda (and c10_cuda): nccl.cpp is built
        // with it, and the binaries link both (the CUDA libtorch's own RUNPATH finds CUDA).
        // syncs.cpp counts synchronising CUDA calls with c10_cuda's sync debug mode.
        build.define("PT_WITH_NCCL", None).define("PT_WITH_CUDA", None).includes(dirs);
    }
    build.compile("pt_shim");
    if nccl.is_some() {
        println!("cargo:rustc-link-search=native={lib}");
        println!("cargo:rustc-link-lib=dylib=torch_cuda");
        println!("cargo:rustc-link-lib=dylib=c10_cuda");
    }
}

/// The include directories nccl.cpp needs (CUDA runtime, crt, cccl, NCCL), when this libtorch
/// has CUDA and they are all found: in the nvidia-* wheels beside a pip-installed torch (what
/// scripts/setup.sh installs), else under $CUDA_HOME or /usr/local/cuda and /usr/include.
/// `None` builds pt without NCCL (Gloo serves CPU and CUDA tensors alike).
fn nccl_headers(lib: &Path) -> Option<Vec<std::path::PathBuf>> {
    if !lib.join("libtorch_cuda.so").exists() {
        return None;
    }
    // .pt/libtorch is a link to the wheel's torch/: its siblings are the nvidia-* packages.
    let lib = lib.canonicalize().unwrap_or_else(|_| lib.to_path_buf());
    let site = lib.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
    let cuda_home = std::env::var("CUDA_HOME").unwrap_or_else(|_| "/usr/local/cuda".into());
    let candidates = [
        site.join("nvidia/cu13/include"),
        site.join("nvidia/cuda_runtime/include"),
        site.join("nvidia/nccl/include"),
        Path::new(&cuda_home).join("include"),
        "/usr/include".into(),
    ];
    let find = |file: &str| candidates.iter().find(|d| d.join(file).exists()).cloned();
    let wanted = ["cuda_runtime_api.h", "crt/host_config.h", "nccl.h"];
    let found: Vec<_> = wanted.iter().map(|f| find(f)).collect();
    if let Some(missing) = wanted.iter().zip(&found).find(|(_, d)| d.is_none()).map(|(f, _)| f) {
        println!(
            "cargo:warning=pt builds without NCCL: {missing} was not found beside the CUDA libtorch \
             (rerun scripts/setup.sh, which installs the nvidia-* header wheels); Gloo still serves"
        );
        return None;
    }
    let mut dirs: Vec<_> = found.into_iter().flatten().collect();
    dirs.dedup(); // cuda_runtime_api.h and crt/ share a directory in the wheels
    let cccl: Vec<_> = dirs.iter().map(|d| d.join("cccl")).filter(|d| d.exists()).collect();
    dirs.extend(cccl);
    Some(dirs)
}
