//! Building the plugins the host tests load from source: the out-of-tree examples
//! (`examples/denoise`, `examples/rotnet`), the `faulty` fixture (`tests/fixtures/faulty_plugin`), and two variants of
//! the example made here — a fork that provides the same objective name under another plugin
//! name, and a copy built against a pt-sdk whose version is bumped to 0.2.0.
//!
//! Each is a standalone cargo project built with `CARGO_TARGET_DIR` = pt's target directory, so
//! only the plugin crates compile and pt's torch-sys is reused. Cargo copies each result into
//! `target/release`, where every `pt` would find it as a plugin "next to pt"; so each is moved
//! to `target/pt-test-plugins/`, and all of them are built once per test process, before any
//! test runs `pt` (call [`plugins`] first). `PT_TEST_SHOW_BUILDS=1` prints cargo's output.

use pt_tests::{release_dir, repo_root};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// This pt's SDK version (`sdk/Cargo.toml`'s, its own) and the next incompatible one
/// (0.1.x → 0.2.0), which the "built against another SDK" variant is built with.
pub fn sdk_versions() -> (String, String) {
    let mut manifest = read_toml(&repo_root().join("sdk/Cargo.toml"));
    let version = table(&mut manifest, "package")
        .get("version")
        .and_then(|v| v.as_str())
        .expect("sdk/Cargo.toml sets its own package.version")
        .to_string();
    let parts: Vec<u64> = version.split('.').map(|p| p.parse().expect("numeric version")).collect();
    let next = match parts.as_slice() {
        [0, minor, ..] => format!("0.{}.0", minor + 1),
        [major, ..] => format!("{}.0.0", major + 1),
        [] => panic!("empty version"),
    };
    (version, next)
}

pub struct Plugins {
    /// `examples/denoise`: plugin `denoise`, objective `denoise`.
    pub denoise: PathBuf,
    /// `examples/rotnet`: plugin `rotnet`, objective `rotnet` (what `pt plugin new --kind
    /// objective` writes).
    #[allow(dead_code)] // each test crate that includes this module uses some of the plugins
    pub rotnet: PathBuf,
    /// `tests/fixtures/faulty_plugin`: plugin `faulty` (dataset `toy`, architecture `faulty`,
    /// objective `regression`).
    pub faulty: PathBuf,
    /// The example renamed to plugin `denoise_fork`: also provides objective `denoise`.
    pub denoise_fork: PathBuf,
    /// The example built against the next pt-sdk version ([`sdk_versions`]).
    pub denoise_next_sdk: PathBuf,
}

/// Builds (or finds up to date) every plugin above, once per process.
pub fn plugins() -> &'static Plugins {
    static BUILT: OnceLock<Plugins> = OnceLock::new();
    BUILT.get_or_init(|| {
        let _lock = DirLock::acquire(&out_dir());
        let root = repo_root();
        let work = target_root().join("pt-test-build");
        let denoise = build(&root.join("examples/denoise"), "denoise");
        let rotnet = build(&root.join("examples/rotnet"), "rotnet");
        let faulty = build(&root.join("tests/fixtures/faulty_plugin"), "faulty_plugin");
        let fork_dir = work.join("denoise-fork");
        copy_example(&fork_dir, "denoise-fork", "denoise_fork", &root, Some("denoise_fork"));
        let denoise_fork = build(&fork_dir, "denoise_fork");
        let next_dir = work.join("sdk-next");
        copy_sdk_and_kit(&next_dir, &sdk_versions().1);
        copy_example(&next_dir.join("denoise"), "denoise-next-sdk", "denoise_next_sdk", &next_dir, None);
        let denoise_next_sdk = build(&next_dir.join("denoise"), "denoise_next_sdk");
        Plugins { denoise, rotnet, faulty, denoise_fork, denoise_next_sdk }
    })
}

/// Where the built plugins are kept (out of `pt`'s sight).
fn out_dir() -> PathBuf {
    let d = target_root().join("pt-test-plugins");
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("creating {}: {e}", d.display()));
    d
}

/// `cargo build --release` of the project in `dir` (from the repository root, so pt's
/// `.cargo/config.toml` applies), then moves `lib<lib>.so` out of `target/release`.
fn build(dir: &Path, lib: &str) -> PathBuf {
    build_from(dir, lib, &repo_root())
}

/// [`build`] with cargo started in `cwd` (whose `.cargo/config.toml` applies) and pt's target
/// directory, so pt's compiled dependencies are reused.
pub fn build_from(dir: &Path, lib: &str, cwd: &Path) -> PathBuf {
    let out = cargo_in(cwd, &["build", "--release", "--manifest-path"], dir)
        .env("CARGO_TARGET_DIR", target_root())
        .output()
        .expect("running cargo");
    assert!(
        out.status.success(),
        "building the plugin in {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    if std::env::var_os("PT_TEST_SHOW_BUILDS").is_some() {
        eprintln!("cargo build of {}:\n{}", dir.display(), String::from_utf8_lossy(&out.stderr));
    }
    let built = release_dir().join(format!("lib{lib}.so"));
    let kept = out_dir().join(format!("lib{lib}.so"));
    // Cargo hard-links its output, so an up-to-date build leaves `built` and an earlier `kept`
    // as one file, and rename() between two links of one file does nothing: unlink first.
    if let Err(e) = std::fs::remove_file(&kept) {
        assert!(e.kind() == std::io::ErrorKind::NotFound, "removing {}: {e}", kept.display());
    }
    std::fs::rename(&built, &kept).unwrap_or_else(|e| panic!("moving {} to {}: {e}", built.display(), kept.display()));
    kept
}

/// `cargo ARGS <dir>/Cargo.toml`, started in `cwd`.
pub fn cargo_in(cwd: &Path, args: &[&str], dir: &Path) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(args).arg(dir.join("Cargo.toml")).current_dir(cwd);
    cmd
}

/// The cargo target directory `pt` was built in.
pub fn target_root() -> PathBuf {
    release_dir().parent().expect("release dir has a parent").to_path_buf()
}

/// Writes `bytes` unless the file already holds them, so cargo sees unchanged sources as fresh.
fn write_if_changed(path: &Path, bytes: &[u8]) {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return;
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
    }
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Copies the files under `from` into `to` (skipping `skip` names at the top level).
fn copy_tree(from: &Path, to: &Path, skip: &[&str]) {
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("reading {}: {e}", from.display())) {
        let entry = entry.expect("directory entry");
        let name = entry.file_name();
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        let src = entry.path();
        if src.is_dir() {
            copy_tree(&src, &to.join(&name), &[]);
        } else {
            write_if_changed(&to.join(&name), &std::fs::read(&src).expect("reading a source file"));
        }
    }
}

fn read_toml(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn table<'a>(t: &'a mut toml::Table, key: &str) -> &'a mut toml::Table {
    t.get_mut(key).and_then(|v| v.as_table_mut()).unwrap_or_else(|| panic!("manifest has no [{key}]"))
}

/// The example project copied to `dir` as package `package` with library `lib`, depending on
/// the SDK and kit in `source` (`source/sdk`, `source/kit`); with `plugin_name`, its
/// `export_plugin!` name is changed to it.
fn copy_example(dir: &Path, package: &str, lib: &str, source: &Path, plugin_name: Option<&str>) {
    let example = repo_root().join("examples/denoise");
    copy_tree(&example, dir, &["Cargo.toml", "Cargo.lock", "target"]);
    if !dir.join("Cargo.lock").exists() {
        // Same dependency versions as the example (and pt), without asking the registry.
        write_if_changed(
            &dir.join("Cargo.lock"),
            &std::fs::read(example.join("Cargo.lock")).expect("example Cargo.lock"),
        );
    }
    let mut manifest = read_toml(&example.join("Cargo.toml"));
    table(&mut manifest, "package").insert("name".into(), package.into());
    table(&mut manifest, "lib").insert("name".into(), lib.into());
    let deps = table(&mut manifest, "dependencies");
    for (dep, folder) in [("pt-sdk", "sdk"), ("pt-kit", "kit")] {
        let spec =
            deps.get_mut(dep).and_then(|v| v.as_table_mut()).expect("the example depends on pt-sdk and pt-kit by path");
        spec.insert("path".into(), source.join(folder).display().to_string().into());
    }
    write_if_changed(&dir.join("Cargo.toml"), toml::to_string(&manifest).expect("manifest serialises").as_bytes());
    if let Some(name) = plugin_name {
        let lib_rs = dir.join("src/lib.rs");
        let text = std::fs::read_to_string(&lib_rs).expect("src/lib.rs");
        let renamed = text.replace("name: \"denoise\"", &format!("name: \"{name}\""));
        assert_ne!(text, renamed, "examples/denoise/src/lib.rs no longer exports `name: \"denoise\"`");
        write_if_changed(&lib_rs, renamed.as_bytes());
    }
}

/// pt's `sdk/` (with its derive crate) and `kit/` copied out of the checkout into `dir` with
/// the SDK at version `version`: both are standalone packages, so only versions change.
fn copy_sdk_and_kit(dir: &Path, version: &str) {
    let root = repo_root();
    for folder in ["sdk", "kit"] {
        copy_tree(&root.join(folder), &dir.join(folder), &["Cargo.toml", "target"]);
        let mut manifest = read_toml(&root.join(folder).join("Cargo.toml"));
        if folder == "sdk" {
            table(&mut manifest, "package").insert("version".into(), version.into());
        } else {
            // The kit's `pt-sdk = { path = "../sdk" }` now reaches the copy: ask for its version.
            let deps = table(&mut manifest, "dependencies");
            let sdk = deps.get_mut("pt-sdk").and_then(|v| v.as_table_mut()).expect("the kit depends on pt-sdk");
            sdk.insert("version".into(), version.into());
        }
        // Its own workspace, not a member of the temp directory's parents' workspaces.
        manifest.insert("workspace".into(), toml::Value::Table(toml::Table::new()));
        let text = toml::to_string(&manifest).expect("manifest serialises");
        write_if_changed(&dir.join(folder).join("Cargo.toml"), text.as_bytes());
    }
}

/// An exclusive `flock` on `dir/.lock`, so concurrent test processes build one at a time.
struct DirLock {
    _file: std::fs::File,
}

impl DirLock {
    fn acquire(dir: &Path) -> DirLock {
        use std::os::fd::AsRawFd;
        let path = dir.join(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "locking {}: {}", path.display(), std::io::Error::last_os_error());
        DirLock { _file: file }
    }
}
