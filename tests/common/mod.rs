//! Helpers shared by the integration tests: where the built `pt` and plugins are, a private
//! `PT_HOME`, and running `pt` with its output captured.
//!
//! The tests drive the release build (`cargo build --release --workspace` first; the README's
//! test command does that).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace").to_path_buf()
}

/// Where cargo put the release build (`$CARGO_TARGET_DIR` or `<repo>/target`).
pub fn release_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { repo_root().join(p) })
        .unwrap_or_else(|| repo_root().join("target"))
        .join("release")
}

/// The `pt` launcher of the release build; panics with the fix if it was not built.
pub fn pt_bin() -> PathBuf {
    let p = release_dir().join("pt");
    assert!(p.is_file(), "{} not found: run `cargo build --release --workspace` first", p.display());
    p
}

/// A first-party plugin built next to `pt` (e.g. `plugin_so("pt_mlm")`).
pub fn plugin_so(lib: &str) -> PathBuf {
    let p = release_dir().join(format!("lib{lib}.so"));
    assert!(p.is_file(), "{} not found: run `cargo build --release --workspace` first", p.display());
    p
}

/// `$PT_DATA` or `~/.cache/pt/data`, checked to hold the fetched data set `set` (`text`, `images`).
pub fn data_dir(set: &str) -> PathBuf {
    let d = std::env::var_os("PT_DATA")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/pt/data"));
    assert!(
        d.join(set).join(".complete").exists() || d.join(set).join("MANIFEST.json").exists(),
        "data set '{set}' missing under {}: run `python3 scripts/fetch_data.py`",
        d.display()
    );
    d
}

/// The Python with torch and transformers (`$PT_PYTHON` or `<repo>/.pt/venv/bin/python`).
pub fn python() -> PathBuf {
    let p = std::env::var_os("PT_PYTHON").map(PathBuf::from).unwrap_or_else(|| repo_root().join(".pt/venv/bin/python"));
    assert!(p.exists(), "{} not found: run scripts/setup.sh (it installs torch and transformers)", p.display());
    p
}

/// A `pt` command with a private, empty `PT_HOME` and no `PT_PLUGIN_PATH`.
pub struct Pt {
    pub home: tempfile::TempDir,
}

impl Default for Pt {
    fn default() -> Self {
        Self::new()
    }
}

impl Pt {
    pub fn new() -> Self {
        Pt { home: tempfile::tempdir().expect("temp PT_HOME") }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(pt_bin());
        c.env("PT_HOME", self.home.path()).env_remove("PT_PLUGIN_PATH").env_remove("PT_LOG");
        c
    }

    /// Runs `pt ARGS` and returns its output (whatever the exit status).
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("running pt")
    }

    /// Runs `pt ARGS`, asserting success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "pt {} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Runs `pt ARGS`, asserting failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "pt {} should have failed:\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).to_string()
    }
}

/// Reads `summary.json` of a finished run.
pub fn summary(run_dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(run_dir.join("summary.json")).expect("summary.json");
    serde_json::from_str(&text).expect("summary.json is JSON")
}

/// Supervised ResNet-18 on the 8×8 digits (fetched `images` set) on the CPU, SGD: `run` holds the
/// `[run]` keys beyond device and clipping, `arch` the `[arch]` keys beyond the name, `optim`
/// the `[optim]` keys beyond the name.
pub fn digits_resnet_recipe(run: &str, arch: &str, optim: &str) -> String {
    format!(
        r#"
[run]
device = "cpu"
grad_clip = 0.0
{run}

[data]
name = "pixel_csv"
path = "{{data}}/images/digits/digits.csv"
split = "train"
mean = [0.305]
std = [0.376]

[arch]
name = "resnet18"
{arch}

[objective]
name = "supervised"

[optim]
name = "sgd"
{optim}
"#
    )
}

/// A tiny MLM recipe on the fetched tiny text set: trains in seconds on a CPU.
pub fn tiny_mlm_recipe(data: &Path, max_steps: u64, extra: &str) -> String {
    format!(
        r#"
[run]
seed = 3
device = "cpu"
batch_size = 8
max_steps = {max_steps}
log_every = 1
num_threads = 1

[checkpoint]
every = 0
keep_last = 3
[data]
name = "text"
files = ["{data}/text/tiny/train.txt"]
vocab_size = 500
block_size = 32

[arch]
name = "bert"
preset = "tiny"
max_position_embeddings = 32

[objective]
name = "mlm"

[optim]
name = "adamw"
lr = 1e-3

[schedule]
decay = "linear"
warmup_steps = 2
{extra}
"#,
        data = data.display()
    )
}

/// The tiny text recipe with ELECTRA's two towers: a 2-layer discriminator and a 1-layer
/// generator of the same width.
pub fn tiny_electra_recipe(data: &Path, max_steps: u64, extra: &str) -> String {
    let text = tiny_mlm_recipe(data, max_steps, extra)
        .replace("[arch]\nname = \"bert\"\npreset = \"tiny\"\n", "[arch.discriminator]\nname = \"bert\"\npreset = \"tiny\"\nmlm_head = false\nadd_pooling_layer = false\n")
        .replace(
            "[objective]\nname = \"mlm\"",
            "[arch.generator]\nname = \"bert\"\npreset = \"tiny\"\nnum_hidden_layers = 1\nintermediate_size = 128\nmax_position_embeddings = 32\nadd_pooling_layer = false\n\n[objective]\nname = \"electra\"",
        );
    assert!(text.contains("[arch.generator]") && text.contains("mlm_head = false"), "{text}");
    text
}

/// A private `pt`, a temporary directory and in it `recipe.toml`: the tiny MLM recipe.
pub fn tiny_mlm_setup(max_steps: u64, extra: &str) -> (Pt, tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let recipe = write_file(tmp.path(), "recipe.toml", &tiny_mlm_recipe(&data_dir("text"), max_steps, extra));
    (Pt::new(), tmp, recipe)
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
    p
}

/// `run_dir/checkpoints/step-NNNNNNNN`.
pub fn checkpoint_dir(run_dir: &Path, step: u64) -> PathBuf {
    run_dir.join("checkpoints").join(format!("step-{step:08}"))
}

/// The rows of a run's `metrics.jsonl`.
pub fn metrics_rows(run_dir: &Path) -> Vec<pt_report::MetricsRow> {
    pt_report::read_metrics(&run_dir.join("metrics.jsonl")).expect("metrics.jsonl parses")
}

/// Steps of the training rows (those with a learning rate) of a run's `metrics.jsonl`, in file order.
pub fn train_steps(run_dir: &Path) -> Vec<u64> {
    metrics_rows(run_dir).iter().filter(|r| r.get("lr").is_some()).map(|r| r.step).collect()
}

/// `metric` of the training row logged at `step`.
pub fn metric_at(run_dir: &Path, step: u64, metric: &str) -> Option<f64> {
    metrics_rows(run_dir).iter().find(|r| r.step == step && r.get("lr").is_some()).and_then(|r| r.get(metric))
}

/// A tensor of a safetensors file, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTensor {
    pub dtype: String,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl StoredTensor {
    /// The values of an F32 tensor.
    pub fn f32s(&self) -> Vec<f32> {
        assert_eq!(self.dtype, "F32", "not an f32 tensor");
        self.bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    }
}

/// Every tensor of a `.safetensors` file by name.
pub fn read_safetensors(path: &Path) -> std::collections::BTreeMap<String, StoredTensor> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .unwrap_or_else(|e| panic!("{}: not safetensors: {e}", path.display()));
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            (
                name,
                StoredTensor {
                    dtype: format!("{:?}", view.dtype()),
                    shape: view.shape().to_vec(),
                    bytes: view.data().to_vec(),
                },
            )
        })
        .collect()
}

/// Polls `done` every 2 ms until it holds; panics naming `what` after `limit` (a safety net
/// against hanging, not a timing assertion).
pub fn wait_for(limit: std::time::Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "gave up waiting for {what} after {limit:?}");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Sends `signal` (e.g. `libc::SIGINT`) to a child process.
pub fn send_signal(child: &std::process::Child, signal: i32) {
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(rc, 0, "kill({}, {signal}) failed: {}", child.id(), std::io::Error::last_os_error());
}

/// `pt checkpoint list RUN` as `(name, verified ok)` per checkpoint row.
pub fn listed_checkpoints(pt: &Pt, run_dir: &Path) -> Vec<(String, bool)> {
    let out = pt.ok(&["checkpoint", "list", run_dir.to_str().expect("utf-8 path")]);
    out.lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.len() >= 4 && cols[0].starts_with("step-")).then(|| (cols[0].to_string(), cols[3] == "ok"))
        })
        .collect()
}

/// Issue 21: 3 classes × 10 PNGs of mixed sizes, each class its own colour with noise.
pub fn small_class_folders(root: &Path) {
    let mut state = 5u64;
    for (c, name) in ["ant", "bee", "cat"].iter().enumerate() {
        for i in 0..10u32 {
            let (w, h) = (20 + (i % 3) * 6, 18 + (i % 2) * 8);
            let img = image::RgbImage::from_fn(w, h, |_, _| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let n = (state >> 59) as u8;
                let mut px = [n, n, n];
                px[c] = 200 + n;
                image::Rgb(px)
            });
            let path = root.join(name).join(format!("{i:02}.png"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            img.save(path).unwrap();
        }
    }
}

/// A tiny supervised ResNet on `image_shards` (16 px, batch 8, a checkpoint every 2 steps).
pub fn image_shards_recipe(dir: &Path, shards: &Path, max_steps: u64) -> PathBuf {
    write_file(
        dir,
        &format!("shards-{max_steps}.toml"),
        &format!(
            r#"
[run]
seed = 4
device = "cpu"
batch_size = 8
max_steps = {max_steps}
log_every = 1
num_threads = 1
grad_clip = 0.0

[checkpoint]
every = 2

[data]
name = "image_shards"
shards = ["{}"]
image_size = 16

[arch]
name = "resnet18"
width = 8
small_stem = true

[objective]
name = "supervised"

[optim]
name = "sgd"
lr = 0.05
momentum = 0.9
"#,
            shards.display()
        ),
    )
}
