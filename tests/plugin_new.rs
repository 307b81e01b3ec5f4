//! Issue 20: `pt plugin new` writes a crate that builds, installs and trains as written, for
//! every component kind; its own test (a tiny real `pt train`) passes.
//!
//! The crates are built with cargo started in their own folder (so their generated
//! `.cargo/config.toml`, which names `LIBTORCH`, is what cargo reads) and pt's target
//! directory (so pt's compiled dependencies are reused, as the shared build cache does for users).

#[allow(dead_code)]
#[path = "support/plugin_builds.rs"]
mod plugin_builds;

use plugin_builds::{build_from, cargo_in, target_root};
use pt_tests::*;
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `pt plugin new NAME --kind KIND` into `dir/NAME`.
fn new_plugin(pt: &Pt, dir: &Path, name: &str, kind: &str) -> std::path::PathBuf {
    let crate_dir = dir.join(name);
    let out = pt.ok(&["plugin", "new", name, "--kind", kind, "--dir", s(&crate_dir)]);
    assert!(out.contains("cargo build --release") && out.contains("pt plugin install"), "says what is next: {out}");
    crate_dir
}

/// The crate's own `cargo test --release` (its unit tests and its tiny `pt train`), with pt's
/// target directory.
fn run_its_tests(pt: &Pt, crate_dir: &Path, name: &str) -> String {
    let out = cargo_in(crate_dir, &["test", "--release", "--manifest-path"], crate_dir)
        .env("CARGO_TARGET_DIR", target_root())
        .env("PT", pt_bin())
        .env("PT_HOME", pt.home.path())
        .output()
        .expect("running cargo test");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "cargo test of the new {name} plugin failed:\n{text}");
    text
}

#[test]
fn a_new_objective_builds_installs_and_trains_with_resnet18() {
    data_dir("images");
    let pt = Pt::new();
    let dir = tempfile::tempdir().unwrap();
    // Not `rotnet`: cargo names a cdylib without a hash, and examples/rotnet builds in this
    // target directory too.
    let crate_dir = new_plugin(&pt, dir.path(), "my_rotnet", "objective");
    // One source file, a test, pt's lock file, the build set-up.
    for file in ["Cargo.toml", "Cargo.lock", "src/lib.rs", "tests/train.rs", "tests/common/mod.rs"] {
        assert!(crate_dir.join(file).is_file(), "{file} written");
    }
    let config = std::fs::read_to_string(crate_dir.join(".cargo/config.toml")).unwrap();
    assert!(config.contains("target-dir = ") && config.contains("plugin-build"), "{config}");
    assert!(config.contains("LIBTORCH = "), "pt names the libtorch it runs on: {config}");
    let lib = std::fs::read_to_string(crate_dir.join("src/lib.rs")).unwrap();
    assert!(lib.contains("#[derive(Serialize, Deserialize, Clone, Debug, PluginConfig)]"), "{lib}");
    assert!(lib.contains("name: \"my_rotnet\"") && lib.contains("objectives: [MyRotnet]"), "{lib}");
    // A second `new` into the same folder refuses to overwrite it.
    let err = pt.fails(&["plugin", "new", "my_rotnet", "--kind", "objective", "--dir", s(&crate_dir)]);
    assert!(err.contains("already exists and is not empty"), "{err}");

    let so = build_from(&crate_dir, "my_rotnet", &crate_dir);
    // Shipped without debug information: a few MB, not ~120.
    let size = std::fs::metadata(&so).unwrap().len();
    assert!(size < 20 << 20, "the plugin is {size} bytes: the release profile should strip it");
    let installed = pt.ok(&["plugin", "install", s(&so)]);
    assert!(installed.contains("installed my_rotnet 0.1.0") && installed.contains("components: objective:my_rotnet"));
    let run = pt.home.path().join("run");
    let out = pt.run(&[
        "train",
        "--objective",
        "my_rotnet",
        "--arch",
        "resnet18",
        "--data",
        "pixel_csv",
        "--device",
        "cpu",
        "--max-steps",
        "3",
        "--run-dir",
        s(&run),
        "--quiet",
        "--set",
        "run.batch_size=8",
        "--set",
        "run.log_every=1",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // Four rows per sample: throughput counts the rows the architecture computed.
    let (samples, rows) = (metric_at(&run, 3, "samples_per_s").unwrap(), metric_at(&run, 3, "rows_per_s").unwrap());
    assert!((rows / samples - 4.0).abs() < 1e-6, "rows/s {rows} = 4 × samples/s {samples}");
    assert!(metric_at(&run, 3, "rotation_accuracy").is_some());
    // resnet18 grew a classifier head (the dataset has classes) that rotnet never reads.
    assert!(err.contains("architecture resnet:resnet18: fc.weight, fc.bias got no gradient"), "{err}");
    assert!(!err.contains("objective my_rotnet:my_rotnet"), "the head the objective owns trains: {err}");

    let text = run_its_tests(&pt, &crate_dir, "my_rotnet");
    assert!(text.contains("test trains_with_a_resnet_on_images ... ok"), "{text}");
}

#[test]
fn every_other_kind_passes_its_own_tests() {
    let pt = Pt::new();
    let dir = tempfile::tempdir().unwrap();
    for (name, kind, test) in [
        ("tiny_mlp", "architecture", "trains_with_simclr_on_images"),
        ("csv_rows", "dataset", "pt_reads_every_sample"),
        ("centroid", "evaluator", "evaluates_after_training"),
    ] {
        let crate_dir = new_plugin(&pt, dir.path(), name, kind);
        let text = run_its_tests(&pt, &crate_dir, name);
        assert!(text.contains(&format!("test {test} ... ok")), "{kind}:\n{text}");
    }
    let err = pt.fails(&["plugin", "new", "Bad-Name", "--kind", "dataset", "--dir", s(&dir.path().join("x"))]);
    assert!(err.contains("plugin name 'Bad-Name'"), "{err}");
    // Names the generated code could not compile with are refused before anything is written.
    for clash in ["dataset", "linear", "match", "serde"] {
        let err = pt.fails(&["plugin", "new", clash, "--kind", "dataset", "--dir", s(&dir.path().join(clash))]);
        assert!(err.contains(&format!("plugin name '{clash}'")) && err.contains("choose another"), "{err}");
        assert!(!dir.path().join(clash).exists());
    }
}
