//! Issue 3: the plugin host. An out-of-tree plugin (examples/denoise) installs, describes itself,
//! trains and is removed; broken plugins and misbehaving components give one clear error and
//! leave the host working; name clashes and component mismatches are explained; no tensor handle
//! outlives a run.
//!
//! Every test has its own PT_HOME. The plugins are built from source by `support::plugin_builds`
//! (about a minute the first time; seconds once cargo has them).

#[path = "support/plugin_builds.rs"]
mod plugin_builds;

use plugin_builds::{plugins, sdk_versions};
use pt_tests::*;
use std::path::{Path, PathBuf};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The `--set` overrides that make `pt train --objective X --arch bert --data text` tiny.
fn tiny_text_bert_sets() -> Vec<String> {
    [
        "data.files=[\"{data}/text/tiny/train.txt\"]",
        "data.vocab_size=500",
        "data.block_size=32",
        "arch.preset=\"tiny\"",
        "arch.max_position_embeddings=32",
        "run.batch_size=8",
        "run.num_threads=1",
        "run.log_every=1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `pt train --objective OBJ --arch bert --data text` on the tiny text set.
fn train_text_bert(pt: &Pt, objective: &str, run_dir: &Path, steps: u64, extra_sets: &[&str]) -> std::process::Output {
    data_dir("text");
    let mut args: Vec<String> =
        ["train", "--objective", objective, "--arch", "bert", "--data", "text", "--device", "cpu", "--quiet"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    args.extend(["--run-dir".into(), s(run_dir).into(), "--max-steps".into(), steps.to_string()]);
    for set in tiny_text_bert_sets().iter().map(String::as_str).chain(extra_sets.iter().copied()) {
        args.extend(["--set".into(), set.into()]);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    pt.run(&refs)
}

/// A recipe for the `faulty` plugin's toy regression, with `arch_extra` under `[arch]`.
fn toy_recipe(dir: &Path, max_steps: u64, arch_extra: &str) -> PathBuf {
    let text = format!(
        r#"
[run]
seed = 1
device = "cpu"
batch_size = 8
max_steps = {max_steps}
log_every = 1
num_threads = 1
max_bad_steps = 3

[data]
name = "toy"

[arch]
name = "faulty"
{arch_extra}

[objective]
name = "regression"

[optim]
lr = 1e-2
"#
    );
    let path = dir.join("toy.toml");
    std::fs::write(&path, text).expect("writing the toy recipe");
    path
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn assert_ok(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    );
}

/// The error a failed `pt` printed: one line starting `pt: error:`, followed at most by the
/// pointer to `-v`, preceded at most by `pt train`'s "training ..." header, and no Rust panic
/// report or C++ backtrace anywhere.
fn assert_one_line_error(err: &str) -> &str {
    for wall in ["stack backtrace", "RUST_BACKTRACE", "thread '", "Exception raised from", "frame #", "libc10.so"] {
        assert!(!err.contains(wall), "a backtrace or panic report leaked ('{wall}'):\n{err}");
    }
    let lines: Vec<&str> = err.trim().lines().filter(|l| !l.starts_with("training ")).collect();
    assert!(!lines.is_empty() && lines[0].starts_with("pt: error: "), "the error comes first and alone:\n{err}");
    assert!(lines[1..].iter().all(|l| *l == "(run with -v for details)"), "one line expected:\n{err}");
    lines[0]
}

/// The host still lists its plugins (after a failure, in the same PT_HOME).
fn assert_host_works(pt: &Pt) -> String {
    let list = pt.ok(&["plugin", "list"]);
    assert!(list.lines().any(|l| l.starts_with("mlm ")), "the mlm plugin next to pt is still listed:\n{list}");
    list
}

/// The last run's `summary.json`, checked to have ended at `steps` with a finite loss and
/// without leaked tensor handles.
fn assert_clean_finish(run_dir: &Path, steps: u64) -> serde_json::Value {
    let sum = summary(run_dir);
    assert_eq!(sum["step"], steps, "{sum}");
    let loss = sum["last_loss"].as_f64().unwrap_or(f64::NAN);
    assert!(loss.is_finite(), "last loss {loss}: {sum}");
    assert_eq!(sum["leaked_tensor_handles"], 0, "tensor handles outlived the run: {sum}");
    sum
}

#[test]
fn example_plugin_installs_describes_trains_and_is_removed() {
    let built = plugins();
    let pt = Pt::new();
    let installed = pt.ok(&["plugin", "install", s(&built.denoise)]);
    assert!(installed.contains("installed denoise 0.1.0"), "{installed}");
    assert!(installed.contains("components: objective:denoise"), "{installed}");
    assert!(pt.home.path().join("plugins/libdenoise.so").is_file(), "copied into PT_HOME/plugins");

    let list = pt.ok(&["plugin", "list"]);
    let row = list.lines().find(|l| l.starts_with("denoise ")).unwrap_or_else(|| panic!("denoise listed:\n{list}"));
    assert!(row.contains(" denoise ") && row.contains("installed"), "{row}");

    // Every config key with its default and description.
    let info = pt.ok(&["plugin", "info", "denoise"]);
    assert!(info.contains(&format!("denoise 0.1.0  (pt-sdk {}", sdk_versions().0)), "{info}");
    assert!(info.contains("objective denoise — predict clean features"), "{info}");
    for (key, default, words) in [
        ("field", "\"input_ids\"", "the batch field to corrupt"),
        ("corrupt_prob", "0.15", "replaced by [MASK]"),
        ("noise_std", "0.5", "Gaussian noise"),
        ("mask_token_id", "null", "notes.mask_token_id"),
        ("special_token_ids", "null", "never corrupted"),
        ("feature_dim", "null", "unset: filled by pt from the run's `feature_dim`"),
        ("predictor_hidden", "512", "predictor head"),
        ("variance_weight", "1.0", "collapsing"),
    ] {
        let line = info
            .lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("key {key} in:\n{info}"));
        assert!(line.contains(&format!("= {default}")) && line.contains(words), "{key}: {line}");
    }

    // Trains with bert on real text; the head is the objective's and is optimised.
    let run = pt.home.path().join("run-denoise");
    let out = train_text_bert(&pt, "denoise", &run, 3, &["checkpoint.every=1", "checkpoint.keep_last=5"]);
    assert_ok(&out, "pt train --objective denoise --arch bert");
    assert_clean_finish(&run, 3);
    let cosine = metric_at(&run, 3, "cosine").expect("the objective's metrics are logged");
    assert!((-1.0..=1.0).contains(&cosine), "{cosine}");
    let first = read_safetensors(&checkpoint_dir(&run, 1).join("objective.safetensors"));
    let last = read_safetensors(&checkpoint_dir(&run, 3).join("objective.safetensors"));
    let names: Vec<&str> = last.keys().map(String::as_str).collect();
    assert_eq!(names, ["predictor.0.bias", "predictor.0.weight", "predictor.2.bias", "predictor.2.weight"]);
    // feature_dim came from bert tiny (hidden 128).
    assert_eq!(last["predictor.0.weight"].shape, [512, 128]);
    assert_eq!(last["predictor.2.weight"].shape, [128, 512]);
    assert!(last["predictor.0.weight"].f32s().iter().all(|v| v.is_finite()));
    assert_ne!(first["predictor.2.weight"], last["predictor.2.weight"], "the trainer updates the head");
    let model = read_safetensors(&checkpoint_dir(&run, 3).join("model.safetensors"));
    assert!(model.contains_key("bert.embeddings.word_embeddings.weight"), "the encoder is saved as the model");
    assert!(!model.keys().any(|k| k.starts_with("predictor.")), "the head is not part of the model");

    let removed = pt.ok(&["plugin", "remove", "denoise"]);
    assert!(removed.contains("removed denoise 0.1.0"), "{removed}");
    let list = pt.ok(&["plugin", "list"]);
    assert!(!list.lines().any(|l| l.starts_with("denoise ")), "{list}");
    let out = train_text_bert(&pt, "denoise", &pt.home.path().join("run-gone"), 1, &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("no objective called 'denoise'"), "{err}");
    assert!(err.contains("Available objectives: clip (clip), mlm (mlm)"), "lists what there is: {err}");
    assert!(
        err.contains("Searched:") && err.contains(s(&pt.home.path().join("plugins"))),
        "says where it looked: {err}"
    );
    assert!(err.contains("pt plugin install"), "says how to fix it: {err}");
}

#[test]
fn mlm_run_leaks_no_tensor_handles() {
    plugins();
    let pt = Pt::new();
    let recipe = write_file(pt.home.path(), "mlm.toml", &tiny_mlm_recipe(&data_dir("text"), 3, ""));
    let run = pt.home.path().join("run-mlm");
    pt.ok(&["train", "--recipe", s(&recipe), "--run-dir", s(&run), "--quiet"]);
    assert_clean_finish(&run, 3);
}

#[test]
fn a_file_that_is_not_a_shared_library_is_refused_in_one_line() {
    plugins();
    let pt = Pt::new();
    let fake = pt.home.path().join("x.so");
    std::fs::write(&fake, "this is text, not a plugin\n").unwrap();
    let err = pt.fails(&["plugin", "install", s(&fake)]);
    let line = assert_one_line_error(&err);
    assert!(line.contains("x.so") && line.contains("not a shared library"), "{line}");
    assert_host_works(&pt);
    // Copied into the plugin directory by hand: listed as failed, the rest still works.
    std::fs::create_dir_all(pt.home.path().join("plugins")).unwrap();
    std::fs::copy(&fake, pt.home.path().join("plugins/x.so")).unwrap();
    let list = assert_host_works(&pt);
    assert!(list.lines().any(|l| l.starts_with("failed: ") && l.contains("not a shared library")), "{list}");
    let recipe = write_file(pt.home.path(), "mlm.toml", &tiny_mlm_recipe(&data_dir("text"), 1, ""));
    pt.ok(&["train", "--recipe", s(&recipe), "--run-dir", s(&pt.home.path().join("run")), "--quiet"]);
}

/// A real shared library that is no pt plugin, built with `cc`, whose constructor creates the
/// file `$PT_TEST_CTOR_MARK` when the library is opened.
fn foreign_shared_library(dir: &Path) -> PathBuf {
    let dest = dir.join("libforeign.so");
    let src = dir.join("foreign.c");
    std::fs::write(
        &src,
        r#"#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void opened(void) {
    const char *mark = getenv("PT_TEST_CTOR_MARK");
    if (mark) { FILE *f = fopen(mark, "w"); if (f) fclose(f); }
}
int foreign_answer(void) { return 42; }
"#,
    )
    .unwrap();
    let st =
        std::process::Command::new("cc").args(["-shared", "-fPIC", "-o"]).arg(&dest).arg(&src).status().expect("cc");
    assert!(st.success(), "cc -shared failed");
    dest
}

/// Issue 19 (7): a library that exports no pt root module is refused from the file alone —
/// installing or listing it never runs its constructors.
#[test]
fn a_shared_library_that_is_not_a_plugin_is_refused_in_one_line_without_being_opened() {
    plugins();
    let pt = Pt::new();
    let lib = foreign_shared_library(pt.home.path());
    let mark = pt.home.path().join("constructor-ran");
    let out = pt.cmd().env("PT_TEST_CTOR_MARK", &mark).args(["plugin", "install", s(&lib)]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    let line = assert_one_line_error(&err);
    assert!(line.contains("libforeign.so") && line.contains("not a pt plugin"), "{line}");
    assert!(line.contains("export_plugin!"), "says what a plugin needs: {line}");
    let out =
        pt.cmd().env("PT_TEST_CTOR_MARK", &mark).env("PT_PLUGIN_PATH", &lib).args(["plugin", "list"]).output().unwrap();
    let listed = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(listed.contains("libforeign.so") && listed.contains("not a pt plugin"), "{listed}");
    assert!(!mark.exists(), "the library's constructor ran");
    assert_host_works(&pt);
}

/// Issue 19 (7): an installed plugin whose file changed after `pt plugin install` is refused
/// at load, naming the fix; reinstalling makes it usable again.
#[test]
fn an_installed_plugin_that_changed_is_refused_until_reinstalled() {
    let built = plugins();
    let pt = Pt::new();
    pt.ok(&["plugin", "install", s(&built.denoise)]);
    let installed = pt.home.path().join("plugins/libdenoise.so");
    let mut bytes = std::fs::read(&installed).unwrap();
    bytes.extend_from_slice(b"tampered");
    std::fs::write(&installed, bytes).unwrap();
    let err = pt.fails(&["plugin", "info", "denoise"]);
    assert!(err.contains("libdenoise.so") && err.contains("changed since it was installed"), "{err}");
    assert!(err.contains("pt plugin install"), "says how to fix it: {err}");
    pt.ok(&["plugin", "install", s(&built.denoise)]);
    assert!(pt.ok(&["plugin", "info", "denoise"]).contains("denoise 0.1.0"));
}

#[test]
fn a_plugin_built_against_another_sdk_version_is_one_line_and_v_shows_the_detail() {
    let built = plugins();
    let pt = Pt::new();
    let (ours, next) = sdk_versions();
    let err = pt.fails(&["plugin", "install", s(&built.denoise_next_sdk)]);
    assert!(err.trim().ends_with("\n(run with -v for details)"), "points to -v: {err}");
    let line = assert_one_line_error(&err);
    assert!(
        line.contains(&format!("was built against pt-sdk {next}, but this pt uses pt-sdk {ours}"))
            && line.contains(&format!("rebuild the plugin against pt-sdk {ours}")),
        "{line}"
    );
    let verbose = pt.run(&["-v", "plugin", "install", s(&built.denoise_next_sdk)]);
    assert!(!verbose.status.success());
    let detail = stderr(&verbose);
    assert!(detail.contains("detail:") && detail.lines().count() > 2, "-v shows abi_stable's report:\n{detail}");
    assert!(detail.contains(&next), "{detail}");
    assert!(!pt.home.path().join("plugins/libdenoise.so").exists(), "nothing was installed");
    assert_host_works(&pt);
}

/// A PT_HOME with the `faulty` fixture installed.
fn with_faulty() -> Pt {
    let pt = Pt::new();
    pt.ok(&["plugin", "install", s(&plugins().faulty)]);
    pt
}

#[test]
fn a_panic_in_forward_is_one_line_naming_the_component() {
    let pt = with_faulty();
    let recipe = toy_recipe(pt.home.path(), 4, "fault = \"panic\"");
    let err = pt.fails(&["train", "--recipe", s(&recipe), "--run-dir", s(&pt.home.path().join("run")), "--quiet"]);
    let line = assert_one_line_error(&err);
    assert!(line.contains("panic error in faulty:faulty"), "{line}");
    assert!(line.contains("deliberate fault in forward at step 0"), "the panic message is kept: {line}");
    assert_host_works(&pt);
    // The same component without the fault trains (nothing stuck from the panic).
    let ok = toy_recipe(pt.home.path(), 4, "fault = \"none\"");
    let run = pt.home.path().join("run-ok");
    pt.ok(&["train", "--recipe", s(&ok), "--run-dir", s(&run), "--quiet"]);
    assert_clean_finish(&run, 4);
}

#[test]
fn a_wrong_shaped_output_is_one_line_without_the_cpp_backtrace() {
    let pt = with_faulty();
    pt.ok(&["plugin", "install", s(&plugins().denoise)]);
    let recipe = toy_recipe(pt.home.path(), 4, "fault = \"wrong_shape\"");
    // The fixture's objective feeds it straight to libtorch, whose error has a C++ backtrace.
    let err = pt.fails(&["train", "--recipe", s(&recipe), "--run-dir", s(&pt.home.path().join("run")), "--quiet"]);
    let line = assert_one_line_error(&err);
    assert!(line.contains("faulty:regression"), "{line}");
    assert!(
        line.contains("The size of tensor a (7) must match the size of tensor b (8)"),
        "libtorch's message is kept: {line}"
    );
    // denoise checks the shape itself and says what it expected.
    let err = pt.fails(&[
        "train",
        "--recipe",
        s(&recipe),
        "--run-dir",
        s(&pt.home.path().join("run-dn")),
        "--quiet",
        "--objective",
        "denoise",
        "--set",
        "objective.field=\"x\"",
    ]);
    let line = assert_one_line_error(&err);
    assert!(
        line.contains("shape error in denoise:denoise") && line.contains("[2·batch, 16]") && line.contains("[16, 17]"),
        "{line}"
    );
    assert_host_works(&pt);
}

#[test]
fn nan_steps_are_skipped_and_counted_then_stop_the_run_naming_the_step() {
    let pt = with_faulty();
    // One NaN step (the second) is skipped and counted; training goes on.
    let once = toy_recipe(pt.home.path(), 5, "fault = \"nan\"\nfault_steps = [1]");
    let run = pt.home.path().join("run-once");
    pt.ok(&["train", "--recipe", s(&once), "--run-dir", s(&run), "--quiet"]);
    let sum = assert_clean_finish(&run, 5);
    assert_eq!(sum["skipped_steps"], 1, "{sum}");
    assert_eq!(metric_at(&run, 5, "skipped_steps"), Some(1.0));
    assert!(metric_at(&run, 2, "loss").is_none(), "the NaN step logs no loss");

    // NaN every step: max_bad_steps (3) in a row stop the run with a diagnostic.
    let always = toy_recipe(pt.home.path(), 10, "fault = \"nan\"");
    let out = pt.run(&["train", "--recipe", s(&always), "--run-dir", s(&pt.home.path().join("run-always")), "--quiet"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    let last = err.trim().lines().last().unwrap_or("");
    assert!(last.starts_with("pt: error: 3 non-finite steps in a row"), "{err}");
    assert!(last.contains("to 3") || last.contains("step 3"), "names the step: {last}");
    assert!(last.contains("max_bad_steps"), "says what to change: {last}");
    assert!(err.lines().filter(|l| l.contains("step skipped")).count() == 3, "each skipped step is reported: {err}");
    assert_host_works(&pt);
}

#[test]
fn a_component_name_two_plugins_provide_needs_the_plugin_prefix() {
    let built = plugins();
    let pt = Pt::new();
    pt.ok(&["plugin", "install", s(&built.denoise)]);
    let out = pt.ok(&["plugin", "install", s(&built.denoise_fork)]);
    assert!(out.contains("objective 'denoise' is also provided by denoise: select with denoise_fork:denoise"), "{out}");
    let run = pt.home.path().join("run");
    let out = train_text_bert(&pt, "denoise", &run, 1, &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    let line = assert_one_line_error(&err);
    assert!(line.contains("objective 'denoise' is provided by more than one plugin"), "{line}");
    assert!(line.contains("'denoise' (") && line.contains("'denoise_fork' ("), "names both plugins: {line}");
    assert!(line.contains("--objective PLUGIN:denoise"), "says how to choose: {line}");
    let out = train_text_bert(&pt, "denoise_fork:denoise", &run, 2, &[]);
    assert_ok(&out, "pt train --objective denoise_fork:denoise");
    assert_clean_finish(&run, 2);
    let manifest = std::fs::read_to_string(checkpoint_dir(&run, 2).join("manifest.json")).unwrap();
    assert!(manifest.contains("\"objective\": \"denoise_fork:denoise\""), "{manifest}");
}

#[test]
fn components_that_do_not_fit_are_named_with_what_is_missing() {
    let pt = with_faulty();
    pt.ok(&["plugin", "install", s(&plugins().denoise)]);
    let home = pt.home.path();
    // An objective needing an output the architecture lacks, and a field the dataset lacks.
    let recipe = toy_recipe(home, 2, "");
    let err = pt.fails(&[
        "train",
        "--recipe",
        s(&recipe),
        "--run-dir",
        s(&home.join("r1")),
        "--quiet",
        "--objective",
        "mlm",
        "--set",
        "objective.vocab_size=100",
    ]);
    assert!(err.contains("do not fit together"), "{err}");
    assert!(err.contains("objective mlm:mlm needs model output 'mlm_logits', but architecture faulty:faulty outputs only: features, prediction"), "{err}");
    assert!(
        err.contains("objective mlm:mlm needs dataset field 'input_ids', but dataset faulty:toy provides only: x, y"),
        "{err}"
    );
    // An architecture needing an input nothing provides.
    let err = pt.fails(&[
        "train",
        "--recipe",
        s(&recipe),
        "--run-dir",
        s(&home.join("r3")),
        "--quiet",
        "--objective",
        "regression",
        "--arch",
        "bert",
        "--set",
        "arch.preset=\"tiny\"",
        "--set",
        "arch.vocab_size=100",
    ]);
    assert!(
        err.contains("architecture mlm:bert needs input 'input_ids', but dataset faulty:toy provides x, y"),
        "{err}"
    );
    assert!(
        err.contains(
            "objective faulty:regression needs model output 'prediction', but architecture mlm:bert outputs only"
        ),
        "{err}"
    );
    // denoise's default field is token ids; the toy data has none.
    let err = pt.fails(&[
        "train",
        "--recipe",
        s(&recipe),
        "--run-dir",
        s(&home.join("r4")),
        "--quiet",
        "--objective",
        "denoise",
    ]);
    assert!(
        err.contains(
            "objective denoise:denoise needs dataset field 'input_ids', but dataset faulty:toy provides only: x, y"
        ),
        "{err}"
    );
    assert_host_works(&pt);
}

#[test]
fn the_example_plugins_own_unit_tests_pass() {
    plugins();
    // What docs/plugin-authoring.md tells authors to run: the objective tested in-process.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["test", "--release", "--manifest-path", "examples/denoise/Cargo.toml"])
        .env("CARGO_TARGET_DIR", release_dir().parent().expect("target dir"))
        .current_dir(repo_root())
        .output()
        .expect("running cargo test");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("the_loss_trains_the_predictor_head ... ok"), "{text}");
}

#[test]
fn components_are_created_with_the_real_rank_and_world_size() {
    let pt = with_faulty();
    let recipe = toy_recipe(pt.home.path(), 2, "");
    let run = pt.home.path().join("run-ranks");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    pt.ok(&[
        "launch",
        "--nproc-per-node",
        "2",
        "--master-port",
        &port,
        "--",
        "train",
        "--recipe",
        s(&recipe),
        "--run-dir",
        s(&run),
        "--quiet",
        "--set",
        "data.record_ctx=true",
        "--set",
        "run.dist_timeout_s=60",
    ]);
    for rank in 0..2u64 {
        let path = run.join(format!("create-ctx-rank{rank}.json"));
        let ctx: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!((ctx["rank"].as_u64(), ctx["world_size"].as_u64()), (Some(rank), Some(2)), "{ctx}");
        assert_eq!(ctx["device"].as_i64(), Some(-1), "{ctx}");
        assert_eq!(ctx["run_dir"].as_str(), Some(s(&run)), "{ctx}");
    }
}

#[test]
fn parameters_that_never_get_a_gradient_are_named_by_owner() {
    // faulty:stale_head's parameters() returns copies of its head (the trap), and it reads
    // only `features`, so the architecture's `prediction` layer never trains either.
    let pt = with_faulty();
    let recipe = toy_recipe(pt.home.path(), 4, "");
    let run = pt.home.path().join("run-stale");
    let out = pt.run(&[
        "train",
        "--recipe",
        s(&recipe),
        "--run-dir",
        s(&run),
        "--quiet",
        "--set",
        "objective.name=\"stale_head\"",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(
            "objective faulty:stale_head: objective.head.weight got no gradient in the first steps and will not train"
        ),
        "{err}"
    );
    assert!(err.contains("never copies or detached tensors"), "says what to do: {err}");
    assert!(
        err.contains("architecture faulty:faulty: ")
            && err.contains("outputs no objective of this run reads: prediction"),
        "{err}"
    );
    assert_eq!(err.matches("got no gradient").count(), 2, "each owner warned once: {err}");
    // The regression objective uses every parameter: no warning.
    let run = pt.home.path().join("run-regression");
    let out = pt.run(&["train", "--recipe", s(&recipe), "--run-dir", s(&run), "--quiet"]);
    assert!(out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("got no gradient"));
}
