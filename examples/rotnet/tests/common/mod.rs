//! What a plugin's tests need to run it through the real `pt`: the plugin as cargo built it,
//! `pt` itself (on `PATH`, or its path in `$PT`), and a small image set. Each test file uses
//! some of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// This crate's plugin as `cargo test` built it: `target/<profile>/deps/lib<crate>.so` (the test
/// binary is in that `deps/` folder).
pub fn built_plugin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("target/<profile>/deps");
    deps.join(format!("lib{}.so", env!("CARGO_PKG_NAME").replace('-', "_")))
}

/// `pt` with this crate's freshly built plugin first on its search path.
pub fn pt() -> Command {
    let mut cmd = Command::new(std::env::var_os("PT").unwrap_or_else(|| "pt".into()));
    cmd.env("PT_PLUGIN_PATH", built_plugin());
    cmd
}

/// Runs `cmd`, failing the test with pt's output when it fails; returns that output.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("running pt: put it on PATH or set $PT to its path");
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "pt failed:\n{log}");
    log
}

/// A fresh scratch folder for one test.
pub fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating a scratch folder");
    dir
}

/// `count` 8×8 one-channel images as a `pixel_csv` file (values 0..=16, label last): a bright
/// bar whose length is the label's over a gradient, so classes and rotations both differ.
pub fn write_images(path: &Path, count: usize) {
    let mut text = String::new();
    for i in 0..count {
        let label = i % 2;
        let pixels: Vec<String> = (0..64)
            .map(|p| {
                let (row, col) = (p / 8, p % 8);
                let bar = if row < 2 && col < 3 + 3 * label { 16 } else { 0 };
                bar.max((col + i) % 5).to_string()
            })
            .collect();
        text.push_str(&format!("{},{label}\n", pixels.join(",")));
    }
    std::fs::write(path, text).expect("writing the images");
}

/// `--set data.path="..."` for `path`.
pub fn data_path(path: &Path) -> String {
    format!("data.path={:?}", path.display().to_string())
}
