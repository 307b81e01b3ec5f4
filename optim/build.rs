// Binaries and tests of this crate find libtorch through an rpath, not LD_LIBRARY_PATH; the fused
// optimizer shim (csrc/fused.cpp) compiles against the same libtorch's headers.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=csrc/fused.cpp");
    println!("cargo:rerun-if-changed=csrc/shim_error.h");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        panic!("torch-sys did not report its libtorch (DEP_TCH_LIBTORCH_LIB): run scripts/setup.sh");
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    let root = Path::new(&lib).parent().expect("libtorch's lib directory has a parent");
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .file("csrc/fused.cpp")
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag_if_supported("-w") // libtorch's headers warn a lot; the shim itself is small
        .compile("pt_optim_shim");
}
