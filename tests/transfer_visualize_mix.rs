//! Issue 9 through the `pt` binary on real digits: `pt transfer` (checkpoint against random
//! init, curves, speed-up, report files), `pt visualize` (PCA by class, first-layer filters), and
//! a semi-supervised objective mix (SimCLR on every image + cross-entropy on the labelled 20 %).

use pt_tests::*;

fn digits(split: &str, extra: &str) -> String {
    format!(
        r#"{{ name = "pixel_csv", path = "{{data}}/images/digits/digits.csv", split = "{split}", mean = [0.305], std = [0.376]{extra} }}"#
    )
}

fn supervised_run(dir: &std::path::Path, pt: &Pt) -> std::path::PathBuf {
    let recipe = digits_resnet_recipe(
        "seed = 4\nbatch_size = 64\nmax_steps = 30\nlog_every = 10\nnum_threads = 2\n\n[checkpoint]\nevery = 30",
        "width = 16",
        "lr = 0.05",
    );
    let path = write_file(dir, "pretrain.toml", &recipe);
    let run = dir.join("pretrain");
    pt.ok(&["train", "--recipe", path.to_str().unwrap(), "--run-dir", run.to_str().unwrap(), "--quiet"]);
    run
}

fn png_size(path: &std::path::Path) -> (u32, u32) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{} does not decode: {e}", path.display()));
    (img.width(), img.height())
}

#[test]
fn transfer_compares_the_checkpoint_with_random_init_and_visualize_draws_features() {
    let _data = data_dir("images");
    let dir = tempfile::tempdir().unwrap();
    let pt = Pt::new();
    let run = supervised_run(dir.path(), &pt);

    let task = format!(
        "[[eval]]\nname = \"finetune\"\nsteps = 20\nbatch_size = 32\neval_every = 5\nsplits.train = {}\nsplits.test = {}\n\n\
         [[eval]]\nname = \"linear_probe\"\nepochs = 20\nsplits.train = {}\nsplits.test = {}\n\n\
         [[eval]]\nname = \"knn\"\nk = 10\nsplits.train = {}\nsplits.test = {}\n",
        digits("train", ""),
        digits("test", ""),
        digits("train", ""),
        digits("test", ""),
        digits("train", ""),
        digits("test", "")
    );
    let task = write_file(dir.path(), "task.toml", &task);
    let out = pt.ok(&["transfer", run.to_str().unwrap(), "--task", task.to_str().unwrap()]);
    for evaluator in ["finetune", "linear_probe", "knn"] {
        assert!(out.lines().any(|l| l.starts_with(evaluator) && l.matches('%').count() == 2), "{evaluator} row: {out}");
    }
    let report_dir = run.join("transfer-task");
    // Issue 24: the curves are drawn in % (the text says %), with their points beside them.
    let curve = std::fs::read_to_string(report_dir.join("finetune-steps.csv")).unwrap();
    let ys: Vec<f64> = curve.lines().skip(1).map(|l| l.rsplit(',').next().unwrap().parse().unwrap()).collect();
    assert!(ys.iter().any(|y| *y > 1.0) && ys.iter().all(|y| (0.0..=100.0).contains(y)), "{curve}");
    assert!(report_dir.join("finetune-steps.svg").is_file());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report_dir.join("transfer.json")).unwrap()).unwrap();
    assert_eq!(report["checkpoint_step"], 30);
    let comparisons = report["comparisons"].as_array().unwrap();
    assert_eq!(comparisons.len(), 3);
    let finetune = &comparisons[0];
    let curve = finetune["pretrained"]["curves"]["accuracy_by_step"].as_array().unwrap();
    assert_eq!(curve.len(), 4, "accuracy every 5 of 20 steps");
    assert!(finetune["speedup"]["random_best_accuracy"].as_f64().is_some());
    // 30 supervised steps on the same digits: the pretrained encoder's probe is far ahead.
    let probe = &comparisons[1];
    let (p, r) = (
        probe["pretrained"]["metrics"]["accuracy"].as_f64().unwrap(),
        probe["random_init"]["metrics"]["accuracy"].as_f64().unwrap(),
    );
    assert!(p > r, "linear probe: pretrained {p} vs random init {r}");
    for png in ["finetune-steps.png", "finetune-time.png"] {
        assert_eq!(png_size(&report_dir.join(png)), (800, 500), "{png}");
    }
    let md = std::fs::read_to_string(report_dir.join("transfer.md")).unwrap();
    assert!(md.contains("| finetune |") && md.contains("![finetune-steps.png]"), "{md}");

    // The fine-tune's head on standardised features learns as well (statistics of the
    // encoder's features at the start; a broken scale would leave it near chance).
    let standardized = dir.path().join("standardized");
    pt.ok(&[
        "transfer",
        run.to_str().unwrap(),
        "--task",
        task.to_str().unwrap(),
        "--no-baseline",
        "--set",
        "eval.0.standardize_features=true",
        "--out",
        standardized.to_str().unwrap(),
    ]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(standardized.join("transfer.json")).unwrap()).unwrap();
    let acc = report["comparisons"][0]["pretrained"]["metrics"]["accuracy"].as_f64().unwrap();
    let plain = finetune["pretrained"]["metrics"]["accuracy"].as_f64().unwrap();
    assert!(acc > 0.5 && acc > plain - 0.1, "standardised fine-tune {acc} vs {plain}");

    // Issue 25: LP-FT. The head starts as the linear probe of the same features (the probe
    // evaluator above, same epochs and seed), so fine-tuning starts from its accuracy.
    let lpft = dir.path().join("lpft");
    let task_arg = task.to_str().unwrap();
    let sets = ["eval.0.head_init=linear_probe", "eval.0.probe_epochs=20", "eval.0.steps=10"];
    let mut args = vec!["transfer", run.to_str().unwrap(), "--task", task_arg, "--no-baseline", "--out"];
    args.push(lpft.to_str().unwrap());
    args.extend(sets.iter().flat_map(|s| ["--set", *s]));
    pt.ok(&args);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lpft.join("transfer.json")).unwrap()).unwrap();
    let finetuned = &report["comparisons"][0]["pretrained"];
    let start = finetuned["metrics"]["probe_accuracy"].as_f64().unwrap();
    let probe_acc = comparisons[1]["pretrained"]["metrics"]["accuracy"].as_f64().unwrap();
    assert!((start - probe_acc).abs() < 0.02, "LP-FT starts at {start}, the linear probe scored {probe_acc}");
    assert_eq!(finetuned["curves"]["accuracy_by_step"][0][0].as_f64(), Some(0.0));
    assert_eq!(finetuned["curves"]["accuracy_by_step"][0][1].as_f64(), Some(start));
    assert_eq!(finetuned["curves"]["accuracy_by_step"].as_array().unwrap().len(), 3, "steps 0, 5 and 10");
    let metric = |name: &str| finetuned["metrics"][name].as_f64().unwrap();
    let (end, best) = (metric("accuracy"), metric("best_accuracy"));
    assert!(end > 0.5 && best >= start, "LP-FT from {start} ended at {end}, best {best}");
    let err = pt.fails(&["transfer", run.to_str().unwrap(), "--task", task_arg, "--set", "eval.0.head_init=probe"]);
    assert!(err.contains("head_init") && err.contains("linear_probe"), "{err}");

    // Bad input: a task without [[eval]] entries, and a directory that is no run.
    let empty = write_file(dir.path(), "empty.toml", "# nothing\n");
    let err = pt.fails(&["transfer", run.to_str().unwrap(), "--task", empty.to_str().unwrap()]);
    assert!(err.contains("no [[eval]] entries"), "{err}");
    let err = pt.fails(&["transfer", dir.path().to_str().unwrap(), "--task", "mnist"]);
    assert!(err.contains("no checkpoint here"), "{err}");

    // Issue 25: seeds. Each arm three times (the run's seed 4, then 5 and 6), mean ± spread and
    // a verdict that counts only a gain beyond the spread.
    let probe = format!(
        "[[eval]]\nname = \"linear_probe\"\nepochs = 20\nsplits.train = {}\nsplits.test = {}\n",
        digits("train", ""),
        digits("test", "")
    );
    let probe = write_file(dir.path(), "probe.toml", &probe);
    let out = pt.ok(&["transfer", run.to_str().unwrap(), "--task", probe.to_str().unwrap(), "--seeds", "3"]);
    assert!(out.contains("3 seeds: 4, 5, 6"), "{out}");
    let line = out.lines().find(|l| l.starts_with("linear_probe")).unwrap_or_default();
    assert!(line.contains(" ± ") && line.ends_with("gain beyond the seed spread"), "{out}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("transfer-probe/transfer.json")).unwrap()).unwrap();
    let random: Vec<f64> = report["comparisons"][0]["random_init_by_seed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metrics"]["accuracy"].as_f64().unwrap())
        .collect();
    assert_eq!(random.len(), 3);
    assert!(random.windows(2).any(|w| w[0] != w[1]), "each seed initialises anew: {random:?}");
    let md = std::fs::read_to_string(run.join("transfer-probe/transfer.md")).unwrap();
    assert!(md.contains("| verdict |") && md.contains("gain beyond the seed spread"), "{md}");
    let err = pt.fails(&["transfer", run.to_str().unwrap(), "--task", probe.to_str().unwrap(), "--seeds", "0"]);
    assert!(err.contains("--seeds 0 must be 1 to 100"), "{err}");

    // The random-init arm with another architecture setting (--baseline-set) is built from the
    // changed config, and the report says so.
    let changed = dir.path().join("changed");
    let (run_s, probe_s, changed_s) = (run.to_str().unwrap(), probe.to_str().unwrap(), changed.to_str().unwrap());
    let changed_arg = ["--baseline-set", "arch.zero_init_residual=true"];
    let out = pt.ok(&[&["transfer", run_s, "--task", probe_s, "--out", changed_s][..], &changed_arg[..]].concat());
    assert!(out.contains("random init with arch.zero_init_residual=true"), "{out}");
    let other: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(changed.join("transfer.json")).unwrap()).unwrap();
    let first = |r: &serde_json::Value, arm: &str| r["comparisons"][0][arm]["metrics"]["accuracy"].as_f64().unwrap();
    assert_ne!(
        first(&other, "random_init"),
        first(&report, "random_init"),
        "the baseline is built from the changed config"
    );
    assert_eq!(other["baseline_overrides"][0], "arch.zero_init_residual=true");
    let md = std::fs::read_to_string(changed.join("transfer.md")).unwrap();
    assert!(md.contains("(with `arch.zero_init_residual=true`)"), "{md}");
    let err = pt.fails(&["transfer", run_s, "--task", probe_s, "--baseline-set", "optim.lr=1"]);
    assert!(err.contains("--baseline-set optim.lr=1: expected arch.KEY=VALUE"), "{err}");
    let err = pt.fails(&["transfer", run_s, "--task", probe_s, "--baseline-set", "arch.width"]);
    assert!(err.contains("--baseline-set arch.width: expected arch.KEY=VALUE"), "{err}");
    let err = pt.fails(&["transfer", run_s, "--task", probe_s, "--baseline-set", "arch.zero_init_residul=true"]);
    assert!(err.contains("--baseline-set") && err.contains("zero_init_residual"), "a did-you-mean: {err}");

    // Issue 24: a probe at several feature taps, one row per layer; the last stage's is the
    // plain probe's (the same features, the same seed).
    let layers = dir.path().join("layers");
    let probe_s = probe.to_str().unwrap();
    let at = ["transfer", run.to_str().unwrap(), "--task", probe_s, "--no-baseline", "--out", layers.to_str().unwrap()];
    let out = pt.ok(&[&at[..], &["--set", r#"eval.0.layer=["stem", "layer4"]"#]].concat());
    assert!(out.contains("linear_probe @ stem") && out.contains("linear_probe @ layer4"), "{out}");
    let by_layer: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(layers.join("transfer.json")).unwrap()).unwrap();
    let metrics = &by_layer["comparisons"][0]["pretrained"];
    assert_eq!(metrics["layers"], serde_json::json!(["stem", "layer4"]));
    let plain = report["comparisons"][0]["pretrained_by_seed"][0]["metrics"]["accuracy"].as_f64().unwrap();
    assert_eq!(metrics["metrics"]["accuracy@layer4"].as_f64(), Some(plain), "{metrics}");
    assert!(metrics["metrics"]["feature_dim@stem"].as_f64() == Some(16.0), "{metrics}");
    let err = pt.fails(&[&at[..], &["--set", "eval.0.layer=layer9"]].concat());
    assert!(err.contains("layer 'layer9' is not a tap") && err.contains("its taps: stem, layer1"), "{err}");
    let task_s = task.to_str().unwrap();
    let err =
        pt.fails(&["transfer", run.to_str().unwrap(), "--task", task_s, "--set", r#"eval.0.layer=["stem", "layer1"]"#]);
    assert!(err.contains("finetune reads one tap"), "{err}");
    // Fine-tuning from a middle tap: the head reads layer2's 32 channels.
    let tap_task = format!(
        "[[eval]]\nname = \"finetune\"\nlayer = \"layer2\"\nsteps = 10\neval_every = 10\nmax_test_samples = 200\nsplits.train = {}\nsplits.test = {}\n",
        digits("train", ""),
        digits("test", "")
    );
    let tap_task = write_file(dir.path(), "tap.toml", &tap_task);
    let tap_out = dir.path().join("tap");
    pt.ok(&[
        "transfer",
        run.to_str().unwrap(),
        "--task",
        tap_task.to_str().unwrap(),
        "--no-baseline",
        "--out",
        tap_out.to_str().unwrap(),
    ]);
    let tap: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tap_out.join("transfer.json")).unwrap()).unwrap();
    let metrics = &tap["comparisons"][0]["pretrained"]["metrics"];
    assert_eq!(metrics["feature_dim"].as_f64(), Some(32.0), "the head reads layer2's channels: {metrics}");
    assert!(metrics["accuracy"].as_f64().unwrap() > 0.15, "10 steps from layer2 beat chance (10 %): {metrics}");

    let out = pt.ok(&["visualize", run.to_str().unwrap(), "--samples", "300"]);
    assert!(out.contains("pca-pretrained.png"), "{out}");
    for png in ["pca-pretrained.png", "pca-random_init.png", "tsne-pretrained.png", "tsne-random_init.png"] {
        assert_eq!(png_size(&run.join("visualize").join(png)), (800, 500), "{png}");
    }
    // 16 filters of 7×7 drawn at 8× in 8 columns with 2-pixel gaps.
    let (w, h) = png_size(&run.join("visualize/filters-pretrained.png"));
    assert!(w > 8 * 7 * 8 && h > 2 * 7 * 8, "filters grid {w}×{h}");
    // … and in TensorBoard's IMAGES tab, at the checkpoint's step, as a run beside the training's.
    assert!(out.contains("TensorBoard's IMAGES tab"), "{out}");
    let tb = "import sys\nfrom tensorboard.backend.event_processing.event_accumulator import EventAccumulator\n\
a = EventAccumulator(sys.argv[1], size_guidance={'images': 0}); a.Reload()\n\
i = a.Images('visualize/pca-pretrained')[-1]\n\
print(sorted(t for t in a.Tags()['images'] if t.startswith('visualize/')), i.step, i.width, i.height)";
    let out = std::process::Command::new(python()).arg("-c").arg(tb).arg(run.join("tb/visualize")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let step = summary(&run)["step"].as_u64().unwrap_or_else(|| panic!("summary step"));
    let want = format!("['visualize/filters-pretrained', 'visualize/filters-random_init', 'visualize/pca-pretrained', 'visualize/pca-random_init', 'visualize/tsne-pretrained', 'visualize/tsne-random_init'] {step} 800 500");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want);
}

#[test]
fn an_objective_mix_trains_simclr_and_supervised_on_partly_labelled_data() {
    let _data = data_dir("images");
    let dir = tempfile::tempdir().unwrap();
    let recipe = r#"
[run]
seed = 5
device = "cpu"
batch_size = 32
max_steps = 4
log_every = 1
grad_clip = 0.0
num_threads = 2

[checkpoint]
every = 4
[data]
name = "pixel_csv"
path = "{data}/images/digits/digits.csv"
split = "train"
label_fraction = 0.2
mean = [0.305]
std = [0.376]

[arch]
name = "resnet18"
width = 8

[[objective.mix]]
name = "simclr"
online_probe = false

[[objective.mix]]
name = "supervised"
weight = 0.5

[optim]
name = "sgd"
lr = 0.05
"#;
    let path = write_file(dir.path(), "mix.toml", recipe);
    let run = dir.path().join("mix");
    let pt = Pt::new();
    pt.ok(&["train", "--recipe", path.to_str().unwrap(), "--run-dir", run.to_str().unwrap(), "--quiet"]);
    let rows = metrics_rows(&run);
    let value = |r: &pt_report::MetricsRow, name: &str| r.values.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    let first = rows.iter().find(|r| value(r, "loss").is_some()).unwrap();
    let (total, simclr, supervised) =
        (value(first, "loss").unwrap(), value(first, "simclr/loss").unwrap(), value(first, "supervised/loss").unwrap());
    assert!(
        (total - (simclr + 0.5 * supervised)).abs() < 1e-4 * total.abs().max(1.0),
        "loss {total} = simclr {simclr} + 0.5 × supervised {supervised}"
    );
    assert!(value(first, "supervised/accuracy").is_some() && value(first, "simclr/contrastive_accuracy").is_some());
    let objective = read_safetensors(&checkpoint_dir(&run, 4).join("objective.safetensors"));
    assert!(objective.contains_key("simclr.projector.0.weight"), "{:?}", objective.keys());
    // Resuming a mix restores every term: two more steps continue from step 4.
    pt.ok(&[
        "train",
        "--recipe",
        path.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
        "--quiet",
        "--max-steps",
        "6",
    ]);
    assert_eq!(summary(&run)["step"], 6);

    // Only about 20 % of each class carries a label: a batch of 32 drawn from all samples holds
    // about 6 labelled ones, one with `labelled_per_batch = 16` at least 16.
    let info = pt.ok(&["plugin", "info", "resnet"]);
    assert!(info.contains("label_fraction"), "{info}");
    let labelled = |run: &std::path::Path| {
        let rows = metrics_rows(run);
        let v: Vec<f64> = rows.iter().filter_map(|r| value(r, "supervised/labelled_samples")).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    assert!(labelled(&run) < 0.4 * 32.0, "labelled samples without labelled_per_batch: {}", labelled(&run));
    let fixed = dir.path().join("fixed");
    let args = ["train", "--recipe", path.to_str().unwrap(), "--run-dir", fixed.to_str().unwrap(), "--quiet"];
    pt.ok(&[&args[..], &["--set", "run.labelled_per_batch=16"]].concat());
    assert!(labelled(&fixed) >= 16.0, "labelled samples with 16 of 32 drawn from the labelled: {}", labelled(&fixed));
    let bad = dir.path().join("bad");
    let args = ["train", "--recipe", path.to_str().unwrap(), "--run-dir", bad.to_str().unwrap(), "--quiet"];
    let err = pt.fails(&[&args[..], &["--set", "run.labelled_per_batch=32"]].concat());
    assert!(err.contains("labelled_per_batch"), "{err}");

    // `update_buffers = false` keeps a term's forwards out of the BatchNorm running statistics:
    // with both terms so marked they stay at their initial values (mean 0, variance 1), which
    // the run above moved.
    let stats = |run: &std::path::Path| {
        let model = read_safetensors(&checkpoint_dir(run, 4).join("model.safetensors"));
        (model["bn1.running_mean"].f32s(), model["layer1.0.bn2.running_var"].f32s())
    };
    let (mean, var) = stats(&run);
    assert!(mean.iter().any(|m| *m != 0.0) && var.iter().any(|v| *v != 1.0), "{mean:?} {var:?}");
    let frozen_recipe = recipe
        .replace("weight = 0.5", "weight = 0.5\nupdate_buffers = false")
        .replace("online_probe = false", "online_probe = false\nupdate_buffers = false");
    let path = write_file(dir.path(), "mix-frozen.toml", &frozen_recipe);
    let frozen = dir.path().join("frozen-stats");
    pt.ok(&["train", "--recipe", path.to_str().unwrap(), "--run-dir", frozen.to_str().unwrap(), "--quiet"]);
    let (mean, var) = stats(&frozen);
    assert!(mean.iter().all(|m| *m == 0.0) && var.iter().all(|v| *v == 1.0), "{mean:?} {var:?}");
    let saved = std::fs::read_to_string(frozen.join("config.toml")).unwrap();
    assert_eq!(saved.matches("update_buffers = false").count(), 2, "{saved}");
}

#[test]
fn visualize_draws_bert_attention_with_the_runs_tokens() {
    let data = data_dir("text");
    let dir = tempfile::tempdir().unwrap();
    let pt = Pt::new();
    let recipe = write_file(dir.path(), "mlm.toml", &tiny_mlm_recipe(&data, 4, ""));
    let run = dir.path().join("mlm");
    pt.ok(&["train", "--recipe", recipe.to_str().unwrap(), "--run-dir", run.to_str().unwrap()]);
    let out = pt.ok(&["visualize", run.to_str().unwrap(), "--samples", "64"]);
    let (a, b) = (run.join("visualize/attention-pretrained.png"), run.join("visualize/attention-random_init.png"));
    assert!(out.contains("attention-pretrained.png"), "{out}");
    // 24 tokens of a block of 32: a square grid of cells plus labels and a colour bar.
    let (w, h) = png_size(&a);
    assert!(w > 24 * 14 && h > 24 * 14, "attention map {w}×{h}");
    assert_eq!(png_size(&b), (w, h));
    assert_ne!(
        std::fs::read(&a).unwrap(),
        std::fs::read(&b).unwrap(),
        "pretrained and random maps are the same picture"
    );
    // Issue 24: the two maps share one colour scale (probability 1 at the top), so the flat
    // random-init map is not drawn as saturated as a peaked one.
    for (png, label) in [(&a, "pretrained"), (&b, "random init")] {
        let data: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(png.with_extension("json")).unwrap()).unwrap();
        assert_eq!(data["scale_top"], 1000, "{label}: {data}");
    }
}

/// Issue 24: a user task whose test split lacks a class scores by class name, not by each split's
/// own numbering (three classes, each one repeated word: kNN is exact once labels agree; it
/// scored only the first class when the test split renumbered its two classes 0 and 1), and a
/// test class the training split never had is refused by name.
#[test]
fn task_splits_number_classes_as_the_training_split_does() {
    let (pt, tmp, recipe) = tiny_mlm_setup(2, "");
    let run = tmp.path().join("run");
    pt.ok(&["train", "--recipe", recipe.to_str().unwrap(), "--run-dir", run.to_str().unwrap(), "--quiet"]);
    let lines = |classes: &[(&str, &str)], each: usize| -> String {
        let mut out = String::new();
        for i in 0..each {
            for (label, word) in classes {
                out += &format!("{{\"text\": \"{}\", \"label\": \"{label}\"}}\n", vec![*word; 3 + i % 3].join(" "));
            }
        }
        out
    };
    let all = [("alpha", "apple"), ("beta", "river"), ("gamma", "stone")];
    write_file(tmp.path(), "train.jsonl", &lines(&all, 8));
    write_file(tmp.path(), "test.jsonl", &lines(&[all[0], all[2]], 4));
    write_file(tmp.path(), "unknown.jsonl", &lines(&[all[0], ("delta", "cloud")], 2));
    let split = |file: &str| {
        let path = tmp.path().join(file);
        format!(
            r#"{{ name = "jsonl", files = ["{}"], tokenizer = "{{run}}/assets/tokenizer.json", block_size = 16 }}"#,
            path.display()
        )
    };
    let task = |test: &str| {
        let text = format!(
            "[[eval]]\nname = \"knn\"\nk = 1\nsplits.train = {}\nsplits.test = {}\n",
            split("train.jsonl"),
            split(test)
        );
        write_file(tmp.path(), "task.toml", &text)
    };
    let out = pt.ok(&["transfer", run.to_str().unwrap(), "--task", task("test.jsonl").to_str().unwrap()]);
    let row = out.lines().find(|l| l.starts_with("knn")).unwrap_or_else(|| panic!("no knn row: {out}"));
    assert_eq!(row.matches("100.0 %").count(), 2, "both arms score every test sample: {out}");
    let err = pt.fails(&["transfer", run.to_str().unwrap(), "--task", task("unknown.jsonl").to_str().unwrap()]);
    assert!(
        err.contains("has class 'delta', which the training split does not (its classes: alpha, beta, gamma)"),
        "{err}"
    );
}

#[test]
fn transfer_prints_every_evaluators_metrics_and_can_skip_the_baseline() {
    // Issue 24: mlm_eval reports no `accuracy`, so the table shows each of its metrics; with
    // --no-baseline only the checkpoint is evaluated.
    let (pt, dir, recipe) = tiny_mlm_setup(4, "");
    let run = dir.path().join("run");
    pt.ok(&["train", "--recipe", recipe.to_str().unwrap(), "--run-dir", run.to_str().unwrap(), "--quiet"]);
    let task = write_file(
        dir.path(),
        "mlm-task.toml",
        &format!(
            "[[eval]]\nname = \"mlm_eval\"\nmax_batches = 2\nsplits.validation = {{ name = \"text\", files = [\"{}/text/tiny/valid.txt\"], tokenizer = \"{{run}}/assets/tokenizer.json\", block_size = 32 }}\n",
            data_dir("text").display()
        ),
    );
    let (run_s, task_s) = (run.to_str().unwrap(), task.to_str().unwrap());
    let out = pt.run(&["transfer", run_s, "--task", task_s]);
    let (both, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{err}");
    // One line as each evaluation starts and ends.
    for line in ["[1/2] mlm_eval from the checkpoint …", "[2/2] mlm_eval from random initialisation: done in"] {
        assert!(err.contains(line), "{line} in:\n{err}");
    }
    let row = both.lines().find(|l| l.starts_with("mlm_eval perplexity")).unwrap_or_else(|| panic!("{both}"));
    assert_eq!(row.split_whitespace().count(), 4, "pretrained and random-init values: {row}");
    assert!(both.lines().any(|l| l.starts_with("mlm_eval mlm_accuracy") && l.matches('%').count() == 2), "{both}");

    let alone = pt.ok(&[
        "transfer",
        run_s,
        "--task",
        task_s,
        "--no-baseline",
        "--out",
        dir.path().join("alone").to_str().unwrap(),
    ]);
    assert!(!alone.contains("random init"), "{alone}");
    let row = alone.lines().find(|l| l.starts_with("mlm_eval perplexity")).unwrap_or_else(|| panic!("{alone}"));
    assert_eq!(row.split_whitespace().count(), 3, "the checkpoint's value only: {row}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("alone/transfer.json")).unwrap()).unwrap();
    assert!(report["comparisons"][0].get("random_init").is_none(), "{report}");
    let md = std::fs::read_to_string(dir.path().join("alone/transfer.md")).unwrap();
    assert!(md.contains("| evaluator | pretrained | best |") && !md.contains("random init"), "{md}");
    assert!(report["comparisons"][0]["pretrained"]["metrics"]["perplexity"].as_f64().is_some());
}
