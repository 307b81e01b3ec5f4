//! Issue 4: the shared trainer through `pt train` — exact resume, SIGINT, gradient accumulation,
//! non-finite steps, config typos, and the files a run leaves behind. CPU, one thread, tiny BERT
//! on the fetched tiny text set: every run takes about a second.

use pt_tests::*;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

/// A private `pt`, a scratch directory and the tiny MLM recipe (with `extra` appended) in it.
fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Runs `pt train ARGS`, asserting success; returns its output.
fn train_ok(pt: &Pt, args: &[&str]) -> Output {
    let mut all = vec!["train"];
    all.extend_from_slice(args);
    let out = pt.run(&all);
    assert!(
        out.status.success(),
        "pt {} failed ({}):\n{}\n{}",
        all.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// The step of the first per-step progress line (`step      9  loss ...`) on stderr.
fn first_logged_step(err: &str) -> Option<u64> {
    err.lines().find_map(|l| l.strip_prefix("step ").and_then(|rest| rest.split_whitespace().next()?.parse().ok()))
}

fn manifest(run_dir: &Path, step: u64) -> serde_json::Value {
    let text = std::fs::read_to_string(checkpoint_dir(run_dir, step).join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("manifest is JSON")
}

/// Asserts two runs logged bit-identical losses and gradient norms at `steps`.
fn assert_same_steps(a: &Path, b: &Path, steps: std::ops::RangeInclusive<u64>) {
    for step in steps {
        for metric in ["loss", "grad_norm"] {
            let (x, y) = (metric_at(a, step, metric), metric_at(b, step, metric));
            assert!(x.is_some(), "{} has no {metric} at step {step}", a.display());
            assert_eq!(
                x.map(f64::to_bits),
                y.map(f64::to_bits),
                "{metric} at step {step}: {x:?} uninterrupted vs {y:?} resumed"
            );
        }
    }
}

fn assert_same_tensors(a: &Path, b: &Path) {
    let (ta, tb) = (read_safetensors(a), read_safetensors(b));
    assert!(!ta.is_empty(), "{} holds no tensors", a.display());
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>(), "tensor names differ");
    for (name, t) in &ta {
        assert!(tb[name] == *t, "tensor {name} differs between {} and {}", a.display(), b.display());
    }
}

#[test]
fn resume_continues_bit_identically_from_the_saved_cursor() {
    let (pt, tmp, recipe) = tiny_mlm_setup(12, "");
    // Dropout stays on: the trainer reseeds it per (seed, step, micro-batch). The schedule is
    // constant after warm-up because a decay's horizon is max_steps, so a first leg run with
    // --max-steps 8 would follow another schedule (the SIGINT test covers decaying schedules).
    let common = [
        "--set",
        "run.batch_size=4",
        "--set",
        "run.grad_accum=2",
        "--set",
        "checkpoint.every=4",
        "--set",
        "schedule.decay=\"constant\"",
    ];
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let mut args = vec!["--recipe", s(&recipe), "--run-dir", s(&a)];
    args.extend(common);
    train_ok(&pt, &args);
    let mut args = vec!["--recipe", s(&recipe), "--run-dir", s(&b), "--max-steps", "8"];
    args.extend(common);
    train_ok(&pt, &args);

    // The checkpoint records where the data stream stands: 8 steps × 2 micro-batches, inside the
    // first epoch (its 'epoch' metric is still a fraction).
    let m = manifest(&b, 8);
    assert_eq!(m["step"], 8);
    assert_eq!(m["optimizer_steps"], 8);
    assert_eq!(m["cursor"], serde_json::json!({"epoch": 0, "micro_batch": 16}), "{m}");
    assert!(metric_at(&b, 8, "epoch").unwrap() < 1.0);

    let out = train_ok(&pt, &["--resume", s(&b), "--max-steps", "12"]);
    let err = stderr(&out);
    assert!(err.contains("resuming at step 8"), "{err}");
    assert_eq!(first_logged_step(&err), Some(9), "the resumed run starts at step 9, replaying nothing:\n{err}");
    assert_eq!(summary(&b)["step"], 12);

    assert_same_steps(&a, &b, 1..=12);
    assert_eq!(train_steps(&b), (1..=12).collect::<Vec<_>>(), "each step logged once");
    assert_eq!(manifest(&b, 12)["cursor"], serde_json::json!({"epoch": 0, "micro_batch": 24}));
    for file in ["model.safetensors", "optimizer.safetensors"] {
        assert_same_tensors(&checkpoint_dir(&a, 12).join(file), &checkpoint_dir(&b, 12).join(file));
    }
}

#[test]
fn sigint_finishes_the_step_saves_and_resumes_exactly() {
    // Linear decay over 150 steps, no periodic saves: the checkpoint is the interrupt's own.
    let (pt, tmp, recipe) = tiny_mlm_setup(150, "");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    train_ok(&pt, &["--recipe", s(&recipe), "--run-dir", s(&a), "--quiet"]);

    let err_path = tmp.path().join("b.stderr");
    let mut child = pt
        .cmd()
        .args(["train", "--recipe", s(&recipe), "--run-dir", s(&b)])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("starting pt train");
    wait_for(Duration::from_secs(120), "three logged steps", || {
        b.join("metrics.jsonl").exists() && train_steps(&b).len() >= 3
    });
    send_signal(&child, libc::SIGINT);
    let status = child.wait().expect("waiting for pt");
    let err = std::fs::read_to_string(&err_path).expect("stderr");
    assert!(status.success(), "an interrupted run exits 0, got {status}:\n{err}");

    let stopped = summary(&b);
    assert_eq!(stopped["stop"], "interrupted", "{stopped}");
    let k = stopped["step"].as_u64().expect("step");
    assert!((3..150).contains(&k), "interrupted at step {k}");
    assert!(err.contains(&format!("interrupted at step {k}")), "{err}");
    assert!(err.contains(&format!("Resume with: pt train --resume {}", b.display())), "{err}");
    assert_eq!(listed_checkpoints(&pt, &b), vec![(format!("step-{k:08}"), true)]);
    assert_eq!(train_steps(&b), (1..=k).collect::<Vec<_>>(), "the step in flight was finished and logged");

    let out = train_ok(&pt, &["--resume", s(&b)]);
    let err = stderr(&out);
    assert!(err.contains(&format!("resuming at step {k}")), "{err}");
    assert_eq!(first_logged_step(&err), Some(k + 1), "{err}");
    assert_eq!(summary(&b)["stop"], "max_steps");
    assert_same_steps(&a, &b, 1..=150);
    assert_eq!(train_steps(&b), (1..=150).collect::<Vec<_>>());
    assert_same_tensors(
        &checkpoint_dir(&a, 150).join("model.safetensors"),
        &checkpoint_dir(&b, 150).join("model.safetensors"),
    );
}

/// L2 norm of the difference of two models' f32 tensors.
fn distance(a: &Path, b: &Path) -> f64 {
    let (ta, tb) = (read_safetensors(a), read_safetensors(b));
    let mut sum = 0.0;
    for (name, t) in &ta {
        for (x, y) in t.f32s().iter().zip(tb[name].f32s()) {
            sum += (*x as f64 - y as f64).powi(2);
        }
    }
    sum.sqrt()
}

/// pt's accumulation semantics (documented on `[run] grad_accum`): a step's loss and gradient
/// are the mean over its micro-batches of each micro-batch's loss. MLM's loss is a mean over the
/// masked tokens of a batch, so four micro-batches of 8 equal one batch of 32 exactly when every
/// micro-batch has the same number of masked tokens — arranged here by masking every token
/// (mask_prob 1, only [PAD] special, packed blocks without padding). With the usual random
/// masking the two differ, and the test checks each side computes what it should.
#[test]
fn gradient_accumulation_matches_one_large_batch() {
    let (pt, tmp, recipe) = tiny_mlm_setup(2, "");
    let base = [
        "--set",
        "arch.hidden_dropout_prob=0.0",
        "--set",
        "arch.attention_probs_dropout_prob=0.0",
        "--set",
        "optim.name=\"sgd\"",
        "--set",
        "optim.momentum=0.0",
        "--set",
        "run.grad_clip=0.0",
        "--set",
        "schedule.decay=\"constant\"",
        "--set",
        "schedule.warmup_steps=0",
        "--quiet",
    ];
    let every_token = ["--set", "objective.mask_prob=1.0", "--set", "objective.special_token_ids=[0]"];
    let run = |name: &str, extra: &[&str]| -> PathBuf {
        let dir = tmp.path().join(name);
        let mut args = vec!["--recipe", s(&recipe), "--run-dir", s(&dir)];
        args.extend(base);
        args.extend(extra);
        train_ok(&pt, &args);
        dir
    };
    let big = run("big", &[&every_token[..], &["--set", "run.batch_size=32", "--set", "optim.lr=0.5"]].concat());
    let accum = run(
        "accum",
        &[&every_token[..], &["--set", "run.batch_size=8", "--set", "run.grad_accum=4", "--set", "optim.lr=0.5"]]
            .concat(),
    );
    // lr 0: four micro-batches of 8, each scored by the initial weights (which stay put).
    let frozen = run("frozen", &["--set", "run.batch_size=8", "--set", "optim.lr=0.0", "--max-steps", "4"]);

    for step in 1..=2 {
        let (l_big, l_acc) = (metric_at(&big, step, "loss").unwrap(), metric_at(&accum, step, "loss").unwrap());
        assert!((l_big - l_acc).abs() <= 1e-6 * l_big.abs(), "step {step}: loss {l_big} (batch 32) vs {l_acc} (8 × 4)");
    }
    // Every token of 32-token blocks is masked: 1024 per batch of 32, 256 per micro-batch of 8
    // (metrics are averaged over a step's micro-batches).
    assert_eq!(metric_at(&big, 1, "masked_tokens"), Some(1024.0));
    assert_eq!(metric_at(&accum, 1, "masked_tokens"), Some(256.0));
    let init = checkpoint_dir(&frozen, 4).join("model.safetensors");
    let (w_big, w_acc) =
        (checkpoint_dir(&big, 2).join("model.safetensors"), checkpoint_dir(&accum, 2).join("model.safetensors"));
    let moved = distance(&w_big, &init);
    let apart = distance(&w_big, &w_acc);
    assert!(moved > 1e-2, "two SGD steps moved the weights by only {moved}");
    assert!(apart <= 1e-5 * moved, "batch 32 and 8 × 4 ended {apart} apart after moving {moved}");

    // Random masking: micro-batches hold different numbers of masked tokens.
    let one_step_big = run("one_step_big", &["--set", "run.batch_size=32", "--max-steps", "1"]);
    let one_step_accum =
        run("one_step_accum", &["--set", "run.batch_size=8", "--set", "run.grad_accum=4", "--max-steps", "1"]);
    let losses: Vec<f64> = (1..=4).map(|s| metric_at(&frozen, s, "loss").unwrap()).collect();
    let counts: Vec<f64> = (1..=4).map(|s| metric_at(&frozen, s, "masked_tokens").unwrap()).collect();
    assert!(
        counts.iter().any(|c| *c != counts[0]),
        "masked counts {counts:?} happen to be equal: the check below means nothing"
    );
    let mean_of_means = losses.iter().sum::<f64>() / 4.0;
    let token_weighted = losses.iter().zip(&counts).map(|(l, c)| l * c).sum::<f64>() / counts.iter().sum::<f64>();
    let l_acc = metric_at(&one_step_accum, 1, "loss").unwrap();
    let l_big = metric_at(&one_step_big, 1, "loss").unwrap();
    assert!(
        (l_acc - mean_of_means).abs() < 1e-6,
        "accumulated loss {l_acc} is the mean of micro-batch losses {losses:?}"
    );
    assert!(
        (l_big - token_weighted).abs() < 1e-5,
        "one batch's loss {l_big} is the token-weighted mean {token_weighted}"
    );
    assert!((mean_of_means - token_weighted).abs() > 1e-5, "the two semantics coincide here: {mean_of_means}");
}

#[test]
fn non_finite_steps_are_skipped_counted_and_a_streak_stops_the_run() {
    // lr 1e30 (reached after two warm-up steps) wrecks the weights at step 2; from step 3 on every
    // loss is NaN.
    let (pt, tmp, recipe) = tiny_mlm_setup(5, "");
    let common =
        ["--set", "optim.lr=1e30", "--set", "schedule.decay=\"constant\"", "--set", "checkpoint.every=1", "--quiet"];
    let tolerant = tmp.path().join("tolerant");
    let mut args = vec!["--recipe", s(&recipe), "--run-dir", s(&tolerant), "--set", "run.max_bad_steps=100"];
    args.extend(common);
    train_ok(&pt, &args);
    let sum = summary(&tolerant);
    assert_eq!(sum["skipped_steps"], 3, "{sum}");
    assert_eq!(sum["step"], 5);
    for (step, skipped) in [(2, 0.0), (3, 1.0), (4, 2.0), (5, 3.0)] {
        assert_eq!(metric_at(&tolerant, step, "skipped_steps"), Some(skipped), "step {step}");
    }
    assert!(metric_at(&tolerant, 2, "loss").is_some_and(f64::is_finite));
    assert_eq!(metric_at(&tolerant, 3, "loss"), None, "a skipped step logs no loss");
    // No periodic saves while steps are being skipped: the weights are not moving.
    let names: Vec<String> = listed_checkpoints(&pt, &tolerant)
        .into_iter()
        .map(|(n, ok)| {
            assert!(ok);
            n
        })
        .collect();
    assert_eq!(names, ["step-00000001", "step-00000002", "step-00000005"]);

    let strict = tmp.path().join("strict");
    let mut args = vec![
        "train",
        "--recipe",
        s(&recipe),
        "--run-dir",
        s(&strict),
        "--set",
        "run.max_bad_steps=3",
        "--max-steps",
        "20",
    ];
    args.extend(common);
    let err = pt.fails(&args);
    assert!(err.contains("3 non-finite steps in a row (steps 3 to 5)"), "{err}");
    let good = checkpoint_dir(&strict, 2);
    assert!(err.contains(&format!("The last good checkpoint is {}", good.display())), "{err}");
    assert!(listed_checkpoints(&pt, &strict).contains(&("step-00000002".to_string(), true)));
}

#[test]
fn unknown_config_keys_suggest_the_intended_one() {
    let (pt, tmp, recipe) = tiny_mlm_setup(3, "");
    let run_dir = tmp.path().join("run");
    let fails = |set: &str| pt.fails(&["train", "--recipe", s(&recipe), "--run-dir", s(&run_dir), "--set", set]);

    let err = fails("arch.hiden_size=8");
    assert!(err.contains("unknown key 'hiden_size' in [arch]") && err.contains("Did you mean 'hidden_size'?"), "{err}");
    assert!(
        err.contains("Accepted keys:") && err.contains("num_hidden_layers") && err.contains("hidden_dropout_prob"),
        "{err}"
    );
    let err = fails("run.batch_szie=8");
    assert!(err.contains("unknown key 'batch_szie' in [run]") && err.contains("Did you mean 'batch_size'?"), "{err}");
    assert!(err.contains(s(&recipe)) && err.contains("grad_accum"), "names the recipe and lists the keys: {err}");
    let err = fails("objective.mask_prb=0.2");
    assert!(
        err.contains("unknown key 'mask_prb' in [objective]") && err.contains("Did you mean 'mask_prob'?"),
        "{err}"
    );
    let err = fails("optim.wieght_decay=0.1");
    assert!(
        err.contains("unknown key 'wieght_decay' in [optim]") && err.contains("Did you mean 'weight_decay'?"),
        "{err}"
    );
    assert!(err.contains("lr_mult") && err.contains("beta2"), "{err}");
    let err = fails("schedule.warmup_step=3");
    assert!(
        err.contains("unknown key 'warmup_step' in [schedule]") && err.contains("Did you mean 'warmup_steps'?"),
        "{err}"
    );

    // In the recipe file itself, too.
    let typo = write_file(
        tmp.path(),
        "typo.toml",
        &std::fs::read_to_string(&recipe).unwrap().replace("log_every", "log_evry"),
    );
    let err = pt.fails(&["train", "--recipe", s(&typo), "--run-dir", s(&run_dir)]);
    assert!(err.contains(s(&typo)) && err.contains("Did you mean 'log_every'?"), "{err}");
    assert!(!run_dir.join("metrics.jsonl").exists(), "nothing trained");
}

#[test]
fn run_files_record_each_step_once_across_a_resume() {
    let (pt, tmp, recipe) = tiny_mlm_setup(6, "");
    let run = tmp.path().join("run");
    train_ok(&pt, &["--recipe", s(&recipe), "--run-dir", s(&run), "--set", "checkpoint.every=3", "--quiet"]);
    assert_eq!(train_steps(&run), (1..=6).collect::<Vec<_>>());
    // As if the process had died after logging steps 4-6 but before checkpointing step 6.
    std::fs::remove_dir_all(checkpoint_dir(&run, 6)).unwrap();
    let out = train_ok(&pt, &["--resume", s(&run), "--max-steps", "8", "--quiet"]);
    assert!(stderr(&out).contains("resuming at step 3"), "{}", stderr(&out));

    let steps: Vec<u64> = (1..=8).collect();
    assert_eq!(train_steps(&run), steps, "metrics.jsonl");
    let rows = metrics_rows(&run);
    assert!(rows.iter().all(|r| r.get("loss").is_some_and(f64::is_finite) && r.get("grad_norm").is_some()));
    let csv = std::fs::read_to_string(run.join("metrics.csv")).expect("metrics.csv");
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    assert_eq!(&header[..2], ["step", "wall_time"]);
    assert!(header.contains(&"loss") && header.contains(&"lr"), "{header:?}");
    let csv_steps: Vec<u64> = csv.lines().skip(1).map(|l| l.split(',').next().unwrap().parse().unwrap()).collect();
    assert_eq!(csv_steps, steps, "metrics.csv");
    let scalars =
        pt_report::tensorboard::read_scalars(&run.join("tb")).expect("tb/ event files read back with valid CRCs");
    let mut tb_steps: Vec<u64> = scalars.iter().filter(|s| s.tag == "loss").map(|s| s.step as u64).collect();
    tb_steps.sort();
    assert_eq!(tb_steps, steps, "TensorBoard loss scalars");
    for r in &rows {
        let tb = scalars.iter().find(|s| s.tag == "loss" && s.step as u64 == r.step).unwrap();
        assert_eq!(tb.value, r.get("loss").unwrap() as f32, "step {}", r.step);
    }

    let config: toml::Table =
        std::fs::read_to_string(run.join("config.toml")).unwrap().parse().expect("config.toml parses");
    assert_eq!(config["run"]["max_steps"].as_integer(), Some(8), "the resumed run's settings");
    assert_eq!(config["checkpoint"]["every"].as_integer(), Some(3));
    assert_eq!(config["arch"]["name"].as_str(), Some("bert"));
    assert_eq!(config["data"]["block_size"].as_integer(), Some(32));
    let sum = summary(&run);
    assert_eq!(sum["step"], 8);
    assert_eq!(sum["leaked_tensor_handles"], 0, "{sum}");
    // pt reads its own config.toml back: a resume with nothing left to do.
    let out = train_ok(&pt, &["--resume", s(&run), "--quiet"]);
    assert!(stderr(&out).contains("resuming at step 8"), "{}", stderr(&out));
    assert_eq!(train_steps(&run), steps);
    let png = image::open(run.join("loss.png")).expect("loss.png decodes");
    assert!(png.width() >= 200 && png.height() >= 100, "{}x{}", png.width(), png.height());
}

#[test]
fn bf16_autocast_computes_in_bf16_over_fp32_master_weights() {
    // On the CPU `precision = "bf16"` runs libtorch's CPU autocast (on CUDA, `auto` picks it).
    let (pt, tmp, recipe) = tiny_mlm_setup(6, "");
    let (a, b) = (tmp.path().join("fp32"), tmp.path().join("bf16"));
    train_ok(&pt, &["--recipe", s(&recipe), "--run-dir", s(&a), "--set", "checkpoint.every=6"]);
    let out = train_ok(
        &pt,
        &["--recipe", s(&recipe), "--run-dir", s(&b), "--set", "checkpoint.every=6", "--set", "run.precision=\"bf16\""],
    );
    let (mut differ, mut close) = (false, true);
    for step in 1..=6 {
        let (x, y) = (metric_at(&a, step, "loss").unwrap(), metric_at(&b, step, "loss").unwrap());
        assert!(y.is_finite(), "bf16 loss at step {step}: {y}\n{}", stderr(&out));
        differ |= x != y;
        close &= (x - y).abs() < 0.05 * x.abs();
    }
    assert!(differ, "bf16 autocast changed nothing: the forward did not run in bf16");
    assert!(close, "bf16 losses stray more than 5 % from fp32's");
    // The optimizer updates fp32 master weights: the checkpoint holds float32 tensors only.
    let weights = read_safetensors(&checkpoint_dir(&b, 6).join("model.safetensors"));
    assert!(!weights.is_empty());
    for (name, t) in &weights {
        assert_eq!(t.dtype, "F32", "{name} saved as {}", t.dtype);
    }
    let config = std::fs::read_to_string(b.join("config.toml")).unwrap();
    assert!(config.contains("precision = \"bf16\""), "{config}");
}

/// Issue 19 (1): two `pt train` on one run directory at once. The second is one line naming the
/// directory and the first's PID, and leaves the first alone; once the first is killed its lock
/// is taken over.
#[test]
fn a_run_directory_is_trained_by_one_process_at_a_time() {
    let (pt, dir, recipe) = tiny_mlm_setup(1_000_000, "");
    let run = dir.path().join("run");
    let args = ["train", "--recipe", s(&recipe), "--run-dir", s(&run), "--quiet"];
    let mut first = pt.cmd().args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for(Duration::from_secs(120), "the first run's first steps", || {
        run.join("metrics.jsonl").exists() && train_steps(&run).len() >= 2
    });
    let err = pt.fails(&[&args[..], &["--max-steps", "3"]].concat());
    let line = err.lines().find(|l| l.starts_with("pt: error")).unwrap_or_default();
    assert!(line.contains(&format!("run directory {} is in use", run.display())), "{err}");
    assert!(line.contains(&format!("PID {}", first.id())), "{err}");
    assert!(first.try_wait().unwrap().is_none(), "the first run goes on");
    send_signal(&first, libc::SIGKILL);
    first.wait().unwrap();
    pt.ok(&[&args[..], &["--max-steps", "3"]].concat());
    assert_eq!(summary(&run)["step"], 3);
}

/// Starts `pt train` on `recipe` into `run` with `args`, stderr into `run.stderr`.
fn spawn_train(pt: &Pt, recipe: &Path, run: &Path, args: &[&str]) -> (std::process::Child, PathBuf) {
    let err_path = run.with_extension("stderr");
    let child = pt
        .cmd()
        .args(["train", "--recipe", s(recipe), "--run-dir", s(run)])
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("starting pt train");
    (child, err_path)
}

/// Issue 19 (8): SIGHUP (a closed terminal or ssh session) stops a run like Ctrl-C and SIGTERM:
/// the step finishes and is saved.
#[test]
fn sighup_saves_and_stops_like_ctrl_c() {
    let (pt, tmp, recipe) = tiny_mlm_setup(1000, "");
    let run = tmp.path().join("run");
    let (mut child, err_path) = spawn_train(&pt, &recipe, &run, &["--quiet"]);
    wait_for(Duration::from_secs(120), "two logged steps", || {
        run.join("metrics.jsonl").exists() && train_steps(&run).len() >= 2
    });
    send_signal(&child, libc::SIGHUP);
    let status = child.wait().unwrap();
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert!(status.success(), "{status}: {err}");
    let k = summary(&run)["step"].as_u64().unwrap();
    assert_eq!(summary(&run)["stop"], "interrupted");
    assert_eq!(listed_checkpoints(&pt, &run), vec![(format!("step-{k:08}"), true)]);
}

/// Issue 19 (8): a second Ctrl-C exits at once, says no final checkpoint was made, and no
/// checkpoint path is ever printed before that checkpoint is complete.
#[test]
fn a_second_ctrl_c_exits_at_once_and_never_names_an_unwritten_checkpoint() {
    let (pt, tmp, recipe) = tiny_mlm_setup(1000, "");
    let run = tmp.path().join("run");
    let (mut child, err_path) = spawn_train(&pt, &recipe, &run, &["--set", "checkpoint.every=1"]);
    wait_for(Duration::from_secs(120), "three logged steps", || {
        run.join("metrics.jsonl").exists() && train_steps(&run).len() >= 3
    });
    send_signal(&child, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(20));
    send_signal(&child, libc::SIGINT);
    let status = child.wait().unwrap();
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("stopped at once by a second signal, without a final checkpoint"), "{err}");
    assert!(err.contains(&format!("pt train --resume {}", run.display())), "{err}");
    let announced: Vec<&str> =
        err.lines().filter_map(|l| l.split_once("checkpoint @ step ")?.1.split_once(": ").map(|p| p.1)).collect();
    assert!(!announced.is_empty(), "periodic saves are announced:\n{err}");
    for path in announced {
        assert!(Path::new(path).join("manifest.json").is_file(), "announced but not written: {path}\n{err}");
    }
    let out = pt.ok(&["checkpoint", "verify", s(&run)]);
    assert!(out.contains("resume starts from step"), "{out}");
}

/// Issue 19 (8): Ctrl-C during the end-of-run fine-tune stops it (it used to run to the end),
/// says which evaluations did not run, and keeps the final checkpoint.
#[test]
fn ctrl_c_during_the_end_of_run_evaluations_stops_them() {
    let data = data_dir("text");
    let split = |f: &str| {
        format!("{{ name = \"jsonl\", files = [\"{}/text/fortunes-cls/{f}.jsonl\"], tokenizer = \"{{run}}/assets/tokenizer.json\", block_size = 32 }}", data.display())
    };
    let eval = format!(
        "[[eval]]\nname = \"finetune\"\ncompare_random_init = true\nsteps = 100000\nbatch_size = 8\nsplits.train = {}\nsplits.test = {}\n",
        split("train"),
        split("test")
    );
    let (pt, tmp, recipe) = tiny_mlm_setup(2, &eval);
    let run = tmp.path().join("run");
    let (mut child, err_path) = spawn_train(&pt, &recipe, &run, &["--quiet"]);
    wait_for(Duration::from_secs(120), "the last training step", || {
        run.join("metrics.jsonl").exists() && train_steps(&run).len() >= 2
    });
    std::thread::sleep(Duration::from_millis(300)); // into the fine-tune
    send_signal(&child, libc::SIGINT);
    let status = child.wait().unwrap();
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(
        err.contains("interrupted during the end-of-run evaluations (finetune, finetune/random_init not run)"),
        "{err}"
    );
    assert!(err.contains(&format!("pt train --resume {}` runs them", run.display())), "{err}");
    assert_eq!(summary(&run)["stop"], "interrupted");
    assert_eq!(listed_checkpoints(&pt, &run), vec![("step-00000002".to_string(), true)]);
}

/// Issue 19 (8): output into a pipe that closes (`| head`) neither panics a short command nor
/// stops a run.
#[test]
fn a_closed_output_pipe_is_not_a_panic() {
    let (pt, tmp, recipe) = tiny_mlm_setup(3, "");
    for args in [vec!["recipes"], vec!["train", "--recipe", s(&recipe), "--print-config"]] {
        let mut child = pt.cmd().args(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        drop(child.stdout.take()); // the reader is gone before pt writes
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "pt {args:?}: {err}");
    }
    // A run whose stdout and stderr readers are gone trains to the end and writes its summary.
    let run = tmp.path().join("run");
    let mut child = pt
        .cmd()
        .args(["train", "--recipe", s(&recipe), "--run-dir", s(&run)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(summary(&run)["step"], 3);
}

/// Issue 19 (11): a binary file among the text files is refused by name (it used to be trained
/// on as garbage, exit 0).
#[test]
fn a_binary_file_given_as_text_is_refused_by_name() {
    let (pt, tmp, _) = tiny_mlm_setup(1, "");
    let binary = tmp.path().join("weights.bin");
    let mut state = 1u64;
    let bytes: Vec<u8> = (0..200_000)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect();
    std::fs::write(&binary, bytes).unwrap();
    let text = data_dir("text").join("text/tiny/train.txt");
    let recipe = write_file(
        tmp.path(),
        "binary.toml",
        &tiny_mlm_recipe(&data_dir("text"), 1, "").replace(
            &format!("files = [\"{}\"]", text.display()),
            &format!("files = [\"{}\", \"{}\"]", text.display(), binary.display()),
        ),
    );
    let err = pt.fails(&["train", "--recipe", s(&recipe), "--run-dir", s(&tmp.path().join("run")), "--quiet"]);
    let line = err.lines().find(|l| l.starts_with("pt: error")).unwrap_or_default();
    assert!(
        line.contains("weights.bin") && line.contains("are not UTF-8 text") && line.contains("binary file"),
        "{err}"
    );
}

/// Issue 21: every logged step says how long it waited for data and what the loader alone
/// delivers, so a starved device is visible.
#[test]
fn steps_report_the_wait_for_data_and_the_loader_rate() {
    let (pt, tmp, recipe) = tiny_mlm_setup(3, "");
    let run = tmp.path().join("run");
    train_ok(&pt, &["--recipe", s(&recipe), "--run-dir", s(&run)]);
    for step in 1..=3 {
        let wait = metric_at(&run, step, "loader_wait_share").expect("loader_wait_share logged");
        assert!((0.0..=1.0).contains(&wait), "step {step}: {wait}");
        let rate = metric_at(&run, step, "loader_samples_per_s").expect("loader_samples_per_s logged");
        assert!(rate.is_finite() && rate > 0.0, "step {step}: {rate}");
        let seconds = metric_at(&run, step, "data_wait_s").expect("data_wait_s logged");
        let step_time = metric_at(&run, step, "step_time_s").unwrap();
        assert!((0.0..=step_time).contains(&seconds), "step {step}: waited {seconds} s of {step_time} s");
    }
}

/// Issue 22: the step reads nothing back from the device; the loss, metrics and skip count
/// come to the host once per log line (on a GPU each read would stall the queue).
#[test]
fn the_step_reads_the_device_only_at_log_lines() {
    let (pt, tmp, recipe) = tiny_mlm_setup(12, "");
    let run = tmp.path().join("run");
    // Clipping (folded into the update) costs no read either.
    let args = ["--set", "run.log_every=4", "--set", "run.grad_clip=1.0", "--quiet"];
    train_ok(&pt, &[&["--recipe", s(&recipe), "--run-dir", s(&run)][..], &args[..]].concat());
    let steps = train_steps(&run);
    assert_eq!(steps, [4, 8, 12]);
    for step in steps {
        let reads = metric_at(&run, step, "host_reads_per_step").expect("host_reads_per_step logged");
        assert!(reads * 4.0 <= 1.0 + 1e-9, "step {step}: {reads} host reads per step (one per log line expected)");
        assert!(metric_at(&run, step, "loss").is_some_and(f64::is_finite), "step {step}: the window's mean loss");
        assert!(metric_at(&run, step, "mlm_accuracy").is_some(), "step {step}: objective metrics still logged");
        // GPU waits are counted on CUDA only: a CPU run has no such column (not a false 0).
        assert!(
            metric_at(&run, step, "device_syncs_per_step").is_none(),
            "step {step}: device syncs counted on the CPU"
        );
    }
    // MLM draws its masks from the host's copy of the batch, on the loader thread.
    let log = std::fs::read_to_string(run.join("train.log")).unwrap();
    assert!(log.contains("prepares its inputs on the loader thread"), "{log}");
}

/// Issue 19 (8): under `nohup` (SIGHUP ignored by the parent) a closed terminal does not stop
/// the run: an inherited "ignore" is kept.
#[test]
fn an_ignored_sighup_stays_ignored() {
    let (pt, tmp, recipe) = tiny_mlm_setup(30, "");
    let run = tmp.path().join("run");
    let mut cmd = pt.cmd();
    cmd.args(["train", "--recipe", s(&recipe), "--run-dir", s(&run), "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec, as nohup does.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    wait_for(Duration::from_secs(120), "two logged steps", || {
        run.join("metrics.jsonl").exists() && train_steps(&run).len() >= 2
    });
    send_signal(&child, libc::SIGHUP);
    assert!(child.wait().unwrap().success());
    assert_eq!(summary(&run)["stop"], "max_steps", "the run went on to its end");
}

/// Issue 22: `[run] profile_steps` writes PyTorch's profiler trace of those steps (each a named
/// range) into the run directory; a malformed range is refused by key.
#[test]
fn profile_steps_write_a_chrome_trace_of_those_steps() {
    let (pt, tmp, recipe) = tiny_mlm_setup(4, "");
    let run = tmp.path().join("run");
    let out = train_ok(&pt, &["--recipe", s(&recipe), "--run-dir", s(&run), "--set", "run.profile_steps=[2, 3]"]);
    let trace_path = run.join("profile/steps-2-3.trace.json");
    assert!(String::from_utf8_lossy(&out.stderr).contains("profile written"), "the trace is announced");
    let trace: serde_json::Value = serde_json::from_slice(&std::fs::read(&trace_path).unwrap()).expect("JSON trace");
    let names: Vec<&str> = trace["traceEvents"].as_array().unwrap().iter().filter_map(|e| e["name"].as_str()).collect();
    for step in ["pt::step 2", "pt::step 3"] {
        assert!(names.contains(&step), "{step} is a range of the trace");
    }
    assert!(!names.contains(&"pt::step 1") && !names.contains(&"pt::step 4"), "only the asked steps are profiled");
    assert!(names.iter().any(|n| n.starts_with("aten::")), "libtorch's ops are in it");

    let err = pt.fails(&["train", "--recipe", s(&recipe), "--run-dir", s(&run), "--set", "run.profile_steps=[3, 2]"]);
    assert!(err.contains("profile_steps") && err.contains("first ≤ last"), "{err}");
}
