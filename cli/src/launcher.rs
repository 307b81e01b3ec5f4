//! `pt`: checks libtorch, then execs `pt-engine` (which links it) with the same arguments.
//! Deliberately depends on nothing, so it always starts.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// The libtorch version tch 0.24 binds.
const LIBTORCH_VERSION: &str = "2.11.0";
const FIX: &str = "Fix: run scripts/setup.sh in the pt repository (installs PyTorch 2.11.0 into ~/.cache/pt) \
and rebuild, or export LIBTORCH=/path/to/libtorch-2.11.0";

fn fail(msg: String) -> ! {
    eprintln!("pt: error: {msg}");
    std::process::exit(3);
}

/// `__version__ = '2.11.0+cu130'` in a PyTorch wheel, or a libtorch zip's `build-version`.
fn installed_version(root: &Path) -> Option<String> {
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        let line = text.lines().find(|l| l.starts_with("__version__"))?;
        return Some(line.split_once('=')?.1.trim().trim_matches(['\'', '"']).to_string());
    }
    std::fs::read_to_string(root.join("build-version")).ok().map(|s| s.trim().to_string())
}

fn main() {
    let (lib_dir, how) = match std::env::var_os("LIBTORCH") {
        Some(root) if !root.is_empty() => (PathBuf::from(root).join("lib"), "$LIBTORCH"),
        _ => match option_env!("PT_BUILD_LIBTORCH_LIB") {
            Some(dir) => (PathBuf::from(dir), "the build"),
            None => fail(format!("this pt was built without knowing where libtorch is. {FIX}")),
        },
    };
    if !lib_dir.join("libtorch_cpu.so").is_file() {
        fail(format!(
            "libtorch not found: {} has no libtorch_cpu.so (location from {how}; pt needs libtorch {LIBTORCH_VERSION}). {FIX}",
            lib_dir.display()
        ));
    }
    if let Some(v) = lib_dir.parent().and_then(installed_version) {
        let plain = v.split('+').next().unwrap_or(&v);
        if plain != LIBTORCH_VERSION {
            fail(format!(
                "libtorch at {} is version {v}, but pt needs {LIBTORCH_VERSION} (location from {how}). {FIX}",
                lib_dir.display()
            ));
        }
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| fail(format!("cannot locate the pt binary: {e}")));
    let engine = exe.with_file_name("pt-engine");
    if !engine.is_file() {
        fail(format!("{} is missing: rebuild pt (cargo build --release)", engine.display()));
    }
    // A $LIBTORCH given at run time must win over the rpath baked into pt-engine.
    let mut ld = std::ffi::OsString::from(&lib_dir);
    if let Some(old) = std::env::var_os("LD_LIBRARY_PATH").filter(|o| !o.is_empty()) {
        ld.push(":");
        ld.push(old);
    }
    let err = std::process::Command::new(&engine)
        .arg0("pt")
        .args(std::env::args_os().skip(1))
        .env("LD_LIBRARY_PATH", ld)
        .env("PT_LIBTORCH_LIB", &lib_dir)
        .exec();
    fail(format!("cannot start {}: {err}", engine.display()));
}
