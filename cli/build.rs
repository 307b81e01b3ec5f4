// pt-engine finds libtorch through an rpath; the launcher is told at build time where that is.
// The path is canonicalised so it does not depend on the repo's .pt/libtorch link.
fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        let lib = std::fs::canonicalize(&lib).map(|p| p.display().to_string()).unwrap_or(lib);
        println!("cargo:rustc-link-arg-bin=pt-engine=-Wl,-rpath,{lib}");
        println!("cargo:rustc-env=PT_BUILD_LIBTORCH_LIB={lib}");
    }
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
}
