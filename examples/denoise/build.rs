// The unit tests (`cargo test`) run the objective in-process, so their binary must find
// libtorch. pt's `.cargo/config.toml` sets LIBTORCH; elsewhere export it (or LD_LIBRARY_PATH).
// The plugin itself needs no rpath: `pt` has loaded libtorch before it loads the plugin.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Some(root) = std::env::var_os("LIBTORCH").filter(|v| !v.is_empty()) {
        let lib = std::path::Path::new(&root).join("lib");
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
}
