// Binaries and tests of this crate find libtorch through an rpath, not LD_LIBRARY_PATH; and the
// C++ shims (csrc/: autocast, pinned host memory, c10d) compile against the same libtorch's headers.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=csrc/autocast.cpp");
    println!("cargo:rerun-if-changed=csrc/pinned.cpp");
    println!("cargo:rerun-if-changed=csrc/dist.cpp");
    println!("cargo:rerun-if-changed=csrc/dist.h");
    println!("cargo:rerun-if-changed=csrc/overlap.cpp");
    println!("cargo:rerun-if-changed=csrc/shim_error.h");
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
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .file("csrc/autocast.cpp")
        .file("csrc/pinned.cpp")
        .file("csrc/dist.cpp")
        .file("csrc/overlap.cpp")
        // c10d's Gloo process group; its headers include gloo's, from Debian's libgloo-dev
        // (scripts/setup.sh installs it). libtorch links its own gloo: never -lgloo.
        .define("USE_C10D_GLOO", None)
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag_if_supported("-w") // libtorch's headers warn a lot; the shims themselves are small
        .compile("pt_shim");
}
