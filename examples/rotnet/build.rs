// The unit tests (`cargo test`) run the component in-process, so their binary must find
// libtorch. `.cargo/config.toml` sets LIBTORCH (pt plugin new writes it); or export it.
// The plugin itself needs no rpath: `pt` has loaded libtorch before it loads the plugin.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Some(root) = std::env::var_os("LIBTORCH").filter(|v| !v.is_empty()) {
        let lib = std::path::Path::new(&root).join("lib");
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
}
