//! Issue 18: a recipe becomes one typed run plan before anything is built. Bad keys and values
//! fail before any dataset, cache or run directory exists; `--print-config` prints the plan and
//! feeds back to the same plan; the run's `config.toml` holds every value it used; unknown
//! components get one error path; recipes are found by name.

use pt_tests::*;
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A private data directory holding only the tiny text set, so what a run creates there shows.
fn private_text_data(dir: &Path) -> std::path::PathBuf {
    let src = data_dir("text").join("text/tiny/train.txt");
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("text/tiny")).unwrap();
    std::fs::copy(&src, data.join("text/tiny/train.txt")).unwrap();
    data
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    v.sort();
    v
}

#[test]
fn bad_keys_and_values_fail_before_anything_is_built() {
    let pt = Pt::new();
    let dir = tempfile::tempdir().unwrap();
    let data = private_text_data(dir.path());
    let recipe = write_file(dir.path(), "r.toml", &tiny_mlm_recipe(Path::new("{data}"), 2, ""));
    let run = dir.path().join("run");
    let train = |set: &str| {
        let out = pt
            .cmd()
            .env("PT_DATA", &data)
            .args(["train", "--recipe", s(&recipe), "--run-dir", s(&run), "--quiet", "--set", set])
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    for (set, expect) in [
        ("optim.weight_decy=0.1", "unknown key 'weight_decy' in [optim]. Did you mean 'weight_decay'?"),
        ("optim.lr=-1", "[optim] lr = -1: expected a finite number ≥ 0"),
        ("run.grad_clip=nan", "[run] grad_clip = NaN"),
        ("checkpoint.evry=2", "Did you mean 'every'?"),
        // Components' keys: names checked by pt, types and values by the plugin, neither built.
        (
            "arch.hiden_size=8",
            "unknown key 'hiden_size' in [arch] for architecture 'bert'. Did you mean 'hidden_size'?",
        ),
        (
            "data.block_size=\"long\"",
            "[data] config error in mlm:text: config of text: block_size = \"long\": invalid type",
        ),
        ("data.vocab_size=-3", "vocab_size = -3: invalid value: integer `-3`"),
        ("objective.mask_token_prob=nan", "[objective] mask_token_prob = NaN: expected a finite number"),
        (
            "objective.mask_prob=1.5",
            "[objective] config error in mlm:mlm: config of mlm: mask_prob must be in (0, 1], got 1.5",
        ),
        // Issue 19 (6): sizes whose parameters alone exceed the machine's memory (this used to
        // spend minutes building layers, or abort in an allocation).
        ("arch.num_hidden_layers=10000000", "bert: these sizes make"),
        ("arch.hidden_size=100000000", "more than this machine's"),
    ] {
        let (ok, err) = train(set);
        assert!(!ok, "--set {set} should fail");
        assert!(err.contains(expect), "--set {set}: {err}");
        assert_eq!(err.lines().filter(|l| l.starts_with("pt: error")).count(), 1, "{err}");
        assert!(!run.exists(), "--set {set} created the run directory");
        assert_eq!(entries(&data), ["text"], "--set {set}: something was built in the data directory");
    }
    // The same recipe without the mistake builds (a tokenizer cache) and trains: the checks
    // above could fail.
    let (ok, err) = train("run.seed=3");
    assert!(ok, "{err}");
    assert!(run.join("config.toml").exists());
    assert!(entries(&data).contains(&"cache".to_string()), "{:?}", entries(&data));
}

#[test]
fn print_config_is_the_plan_and_feeds_back_to_the_same_plan() {
    let pt = Pt::new();
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--objective", "mlm", "--arch", "bert"],
        vec!["--recipe", "semi-supervised-fixmatch-resnet18"],
        vec!["--recipe", "wav2vec2-wav2vec2", "--set", "~arch.preset", "--set", "optim.weight_decay=0.05"],
    ] {
        let mut first = vec!["train"];
        first.extend(&args);
        first.extend(["--run-dir", "never-created", "--print-config"]);
        let plan = pt.ok(&first);
        assert!(!Path::new("never-created").exists());
        for section in ["[run]", "[checkpoint]", "[data]", "[arch]", "[optim]", "[schedule]"] {
            assert!(plan.contains(&format!("\n{section}\n")), "{section} missing:\n{plan}");
        }
        // Every default is there: [run] keys nobody set, an optimizer's own defaults.
        assert!(plan.contains("dist_timeout_s = 1800") && plan.contains("eps = "), "{plan}");
        let path = write_file(dir.path(), "plan.toml", &plan);
        let again = pt.ok(&["train", "--recipe", s(&path), "--print-config"]);
        assert_eq!(again, plan, "the printed plan, fed back, plans the same run");
    }
    // Inputs filled from another component are named with their provider, not guessed.
    let mlm = pt.ok(&["train", "--objective", "mlm", "--arch", "bert", "--print-config"]);
    assert!(mlm.contains("#   [arch] vocab_size  <- [data] mlm:text (vocab_size)"), "{mlm}");
    // The objective checks ids against the model's vocabulary, not the tokenizer's.
    assert!(mlm.contains("#   [objective] vocab_size  <- [arch] mlm:bert (vocab_size)"), "{mlm}");
    let wav = pt.ok(&["train", "--recipe", "wav2vec2-wav2vec2", "--print-config"]);
    assert!(wav.contains("#   [objective] conv_kernel  <- [arch] wav2vec:wav2vec2 (conv_kernel)"), "{wav}");
    // `~key` removes a key: the component's default applies again.
    assert!(!pt
        .ok(&["train", "--recipe", "mlm-bert", "--set", "~arch.preset", "--print-config"])
        .contains("preset = \"tiny\""));
}

#[test]
fn config_toml_records_every_value_the_run_used() {
    let (pt, dir, recipe) = tiny_mlm_setup(2, "");
    let run = dir.path().join("run");
    pt.ok(&["train", "--recipe", s(&recipe), "--run-dir", s(&run), "--quiet", "--set", "checkpoint.every=1"]);
    let saved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    let config: toml::Table = toml::from_str(&saved).unwrap();
    let vocab = config["arch"]["vocab_size"].as_integer().expect("the wired vocab_size is recorded");
    assert_eq!(Some(vocab), config["objective"]["vocab_size"].as_integer(), "{saved}");
    assert!(saved.contains(&format!("#   [arch] vocab_size = {vocab}  <- [data] mlm:text (vocab_size)")), "{saved}");
    // [checkpoint] is honoured (every = 1: a checkpoint per step), not accepted and ignored.
    assert!(checkpoint_dir(&run, 1).join("manifest.json").exists());
    // The saved config plans again with nothing left to wire.
    let replanned = pt.ok(&["train", "--recipe", s(&run.join("config.toml")), "--print-config"]);
    assert!(!replanned.contains("<- [data]") && replanned.contains(&format!("vocab_size = {vocab}")), "{replanned}");
}

#[test]
fn unknown_components_have_one_error_path() {
    let pt = Pt::new();
    let e = pt.fails(&["train", "--objective", "no_such", "--arch", "bert", "--print-config"]);
    assert!(
        e.contains("no objective called 'no_such'") && e.contains("Available objectives: clip (clip), mlm (mlm)"),
        "{e}"
    );
    let e = pt.fails(&["train", "--objective", "mlm", "--arch", "bret", "--print-config"]);
    assert!(e.contains("no architecture called 'bret'") && e.contains("Did you mean 'bert'?"), "{e}");
    let e = pt.fails(&["train", "--recipe", "mlm-bret"]);
    assert!(e.contains("--recipe mlm-bret: no such file, and no built-in recipe of that name"), "{e}");
    // A required input nothing provides is a composition error before anything is built.
    let dir = tempfile::tempdir().unwrap();
    let images = write_file(
        dir.path(),
        "r.toml",
        "[data]\nname = \"idx_images\"\n[arch]\nname = \"bert\"\n[objective]\nname = \"mlm\"\n",
    );
    let e = pt.fails(&["train", "--recipe", s(&images), "--print-config"]);
    assert!(e.contains("needs 'vocab_size', which no component of this run provides"), "{e}");
    assert!(e.contains("set [arch] vocab_size = ..."), "{e}");
}

#[test]
fn every_recipe_is_built_in_and_plans() {
    let pt = Pt::new();
    let listed = pt.ok(&["recipes"]);
    let mut files: Vec<String> = std::fs::read_dir(repo_root().join("recipes"))
        .unwrap()
        .filter_map(|e| e.ok()?.path().file_stem().map(|s| s.to_string_lossy().to_string()))
        .filter(|n| n != "tasks")
        .collect();
    files.sort();
    for name in &files {
        assert!(
            listed.lines().any(|l| l.starts_with(&format!("{name} "))),
            "recipes/{name}.toml not listed:\n{listed}"
        );
        pt.ok(&["train", "--recipe", name, "--print-config"]);
    }
}

#[test]
fn several_architectures_under_roles_are_planned_and_refused_by_a_single_architecture_objective() {
    let pt = Pt::new();
    let dir = tempfile::tempdir().unwrap();
    let recipe = write_file(
        dir.path(),
        "two.toml",
        "[data]\nname = \"idx_images\"\n[arch.image]\nname = \"resnet18\"\nwidth = 8\n[arch.text]\nname = \"bert\"\nvocab_size = 100\n[objective]\nname = \"supervised\"\n",
    );
    let e = pt.fails(&["train", "--recipe", s(&recipe), "--print-config"]);
    assert!(
        e.contains("trains one architecture, but the recipe gives 2 under roles ([arch.image], [arch.text])"),
        "{e}"
    );
    assert!(!dir.path().join("runs").exists());
    // `--objective electra --arch bert`: the built-in recipe's two roles, both `bert`.
    let plan = pt.ok(&["train", "--objective", "electra", "--arch", "bert", "--print-config"]);
    for role in ["[arch.discriminator]", "[arch.generator]"] {
        assert!(plan.contains(&format!("{role}\nname = \"bert\"")), "{role}:\n{plan}");
    }
}

/// Issue 19 (6): a head of 1e11 classes is an error naming the parameter, not an allocation abort.
#[test]
fn a_parameter_too_big_for_the_machine_is_an_error_naming_it() {
    let pt = Pt::new();
    let dir = tempfile::tempdir().unwrap();
    let recipe = write_file(
        dir.path(),
        "r.toml",
        &digits_resnet_recipe("max_steps = 1\nbatch_size = 8", "num_classes = 100000000000", "lr = 0.1"),
    );
    let err = pt.fails(&["train", "--recipe", s(&recipe), "--run-dir", s(&dir.path().join("run")), "--quiet"]);
    let line = err.lines().find(|l| l.starts_with("pt: error")).unwrap_or_default();
    assert!(line.contains("fc.weight [100000000000, 512]") && line.contains("more than this machine's"), "{err}");
}
