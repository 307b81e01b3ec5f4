//! Issue 4: checkpoints through the real `pt` — listing and inspection, corruption detected and
//! skipped, `kill -9` in the middle of writes, and a disk that fills up.

use pt_tests::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Names in `run/checkpoints` left by interrupted writes (`.tmp-*` dirs, `.latest.tmp-PID`...).
fn temp_leftovers(run: &Path) -> Vec<String> {
    std::fs::read_dir(run.join("checkpoints"))
        .expect("checkpoints/")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with('.') && n.contains("tmp"))
        .collect()
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).len()
}

#[test]
fn list_and_inspect_show_steps_sizes_verification_plugins_and_metrics() {
    let (pt, tmp, recipe) = tiny_mlm_setup(8, "");
    let run = tmp.path().join("run");
    pt.ok(&["train", "--recipe", s(&recipe), "--run-dir", s(&run), "--set", "checkpoint.every=4", "--quiet"]);

    let list = pt.ok(&["checkpoint", "list", s(&run)]);
    let header = list.lines().next().unwrap();
    for col in ["CHECKPOINT", "STEP", "SIZE", "VERIFIED", "TAGS", "METRICS"] {
        assert!(header.contains(col), "{list}");
    }
    let rows: Vec<Vec<&str>> = list.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 2, "{list}");
    for (row, step) in rows.iter().zip([4, 8]) {
        assert_eq!(row[0], format!("step-{step:08}"), "{list}");
        assert_eq!(row[1], step.to_string());
        let dir = checkpoint_dir(&run, step);
        let bytes = file_size(&dir.join("model.safetensors")) + file_size(&dir.join("optimizer.safetensors"));
        let shown: f64 = row[2].strip_suffix('M').expect("size in MB").parse().unwrap();
        assert!((shown - bytes as f64 / 1e6).abs() < 0.2, "size {shown}M for {bytes} bytes of tensors: {list}");
        assert_eq!(row[3], "ok", "{list}");
        assert!(row.iter().any(|c| c.starts_with("loss=")), "{list}");
    }
    assert_eq!(rows[1][4], "latest", "{list}");

    let ckpt = checkpoint_dir(&run, 8);
    let text = pt.ok(&["checkpoint", "inspect", s(&ckpt)]);
    let json: serde_json::Value =
        serde_json::from_str(&pt.ok(&["checkpoint", "inspect", s(&ckpt), "--json"])).expect("--json");
    assert!(text.contains("step 8") && text.contains("verified ok"), "{text}");
    assert!(text.contains("data position: epoch 0, micro-batch 8"), "{text}");
    assert!(text.contains("optimizer: adamw (8 steps)"), "{text}");
    assert!(text.contains("model: ") && text.contains(" tensors"), "{text}");
    assert_eq!(json["step"], 8);
    assert_eq!(json["seed"], 3);
    assert_eq!(json["components"]["arch"], "mlm:bert", "{json}");
    let plugin =
        json["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "mlm").expect("the mlm plugin is recorded");
    let version = plugin["version"].as_str().unwrap();
    assert!(!version.is_empty() && plugin["sha256"].as_str().unwrap().len() == 64, "{plugin}");
    assert!(text.contains(&format!("mlm {version}")), "the plugin version is shown: {text}");
    let loss = json["metrics"]["loss"].as_f64().expect("the step's loss is recorded");
    assert_eq!(Some(loss), metric_at(&run, 8, "loss"));
    assert!(text.contains("loss"), "{text}");
    for file in ["model.safetensors", "optimizer.safetensors", "assets/tokenizer.json"] {
        assert_eq!(json["files"][file]["bytes"].as_u64(), Some(file_size(&ckpt.join(file))), "{file}: {json}");
        assert!(text.contains(file), "{text}");
    }
    // The config inside the checkpoint is the run's.
    assert!(json["config"].as_str().unwrap().contains("[checkpoint]\nevery = 4"), "{json}");
}

#[test]
fn corrupt_checkpoints_are_named_and_resume_falls_back_to_the_previous_one() {
    let (pt, tmp, recipe) = tiny_mlm_setup(12, "");
    let run = tmp.path().join("run");
    pt.ok(&["train", "--recipe", s(&recipe), "--run-dir", s(&run), "--set", "checkpoint.every=4", "--quiet"]);
    let model12 = checkpoint_dir(&run, 12).join("model.safetensors");
    let original = read_safetensors(&model12);

    // One bit flipped inside step 12's weights; step 8's optimizer state cut short.
    let mut bytes = std::fs::read(&model12).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&model12, bytes).unwrap();
    let opt8 = checkpoint_dir(&run, 8).join("optimizer.safetensors");
    let f = std::fs::OpenOptions::new().write(true).open(&opt8).unwrap();
    f.set_len(file_size(&opt8) - 100).unwrap();
    drop(f);

    let err = pt.fails(&["checkpoint", "inspect", s(&checkpoint_dir(&run, 12))]);
    assert!(err.contains(s(&model12)) && err.contains("checksum mismatch"), "{err}");
    let err = pt.fails(&["checkpoint", "inspect", s(&checkpoint_dir(&run, 8))]);
    assert!(err.contains(s(&opt8)) && err.contains("truncated"), "{err}");
    let listed = listed_checkpoints(&pt, &run);
    let expected: Vec<(String, bool)> =
        [(4, true), (8, false), (12, false)].iter().map(|(s, ok)| (format!("step-{s:08}"), *ok)).collect();
    assert_eq!(listed, expected);
    let list = pt.ok(&["checkpoint", "list", s(&run)]);
    assert!(list.contains("CORRUPT") && list.contains("checksum mismatch"), "{list}");

    let out = pt.run(&["train", "--resume", s(&run), "--quiet"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for bad in [checkpoint_dir(&run, 12), checkpoint_dir(&run, 8)] {
        assert!(
            err.contains(&format!("skipping checkpoint {}", bad.display())),
            "warns about {}: {err}",
            bad.display()
        );
    }
    assert!(err.contains("resuming at step 4"), "{err}");
    // Steps 5-12 are replayed exactly and the bad checkpoints replaced by good ones.
    let expected: Vec<(String, bool)> = [4, 8, 12].iter().map(|s| (format!("step-{s:08}"), true)).collect();
    assert_eq!(listed_checkpoints(&pt, &run), expected);
    assert!(read_safetensors(&model12) == original, "the re-trained step 12 equals the original");
    assert_eq!(train_steps(&run), (1..=12).collect::<Vec<_>>());
    assert!(temp_leftovers(&run).is_empty(), "{:?}", temp_leftovers(&run));
}

/// A counter-based generator for kill timings; the seed is printed so a failure can be replayed
/// with `PT_TEST_SEED`.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn kill_9_during_checkpoint_writes_never_loses_the_previous_checkpoint() {
    let (pt, tmp, recipe) = tiny_mlm_setup(24, "");
    let run = tmp.path().join("run");
    let seed = std::env::var("PT_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    eprintln!("kill timings from PT_TEST_SEED={seed}");
    let mut rng = Rng(seed);
    // A 40 MB checkpoint every step (BERT mini with its AdamW moments): writes take a while.
    let first = [
        "train",
        "--recipe",
        s(&recipe),
        "--run-dir",
        s(&run),
        "--set",
        "arch.preset=\"mini\"",
        "--set",
        "checkpoint.every=1",
        "--set",
        "checkpoint.keep_last=2",
        "--quiet",
    ];
    let resume = ["train", "--resume", s(&run), "--quiet"];
    let mut kills_inside_writes = 0;
    let mut latest_step = 0u64;
    for round in 0..4 {
        let err_path = tmp.path().join(format!("round{round}.stderr"));
        let mut child = pt
            .cmd()
            .args(if round == 0 { &first[..] } else { &resume[..] })
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .expect("starting pt train");
        // Kill during this process's 2nd to 4th checkpoint write (by the 2nd, one is complete),
        // right as it starts or up to 40 ms into it.
        let target = 2 + rng.below(3) as usize;
        let delay = if round == 0 { 0 } else { rng.below(40) };
        let own = format!("-{}", child.id());
        let mut seen = std::collections::BTreeSet::new();
        wait_for(Duration::from_secs(120), "checkpoint writes", || {
            for e in std::fs::read_dir(run.join("checkpoints")).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if name.starts_with(".tmp-step-") && name.ends_with(&own) {
                    seen.insert(name);
                }
            }
            let exited = child.try_wait().ok().flatten();
            assert!(
                exited.is_none(),
                "pt exited ({exited:?}) before being killed: {}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
            seen.len() >= target
        });
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        let err = std::fs::read_to_string(&err_path).unwrap();
        if round > 0 {
            assert!(err.contains(&format!("resuming at step {latest_step}")), "round {round}: {err}");
        }
        if !temp_leftovers(&run).is_empty() {
            kills_inside_writes += 1;
        }
        // Whatever the moment, every checkpoint left verifies and `latest` names one of them.
        let listed = listed_checkpoints(&pt, &run);
        assert!(!listed.is_empty() && listed.iter().all(|(_, ok)| *ok), "round {round} (delay {delay} ms): {listed:?}");
        let latest = std::fs::read_to_string(run.join("checkpoints/latest")).expect("a latest pointer");
        assert!(listed.iter().any(|(n, _)| *n == latest.trim()), "latest = {latest}, listed {listed:?}");
        let step: u64 = latest.trim().trim_start_matches("step-").parse().unwrap();
        assert!(step >= latest_step.max(1), "round {round}: latest went from {latest_step} to {step}");
        latest_step = step;
    }
    assert!(kills_inside_writes > 0, "no kill landed inside a checkpoint write: the test proved nothing");

    let out = pt.run(&resume);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("resuming at step {latest_step}")), "{err}");
    assert_eq!(summary(&run)["step"], 24);
    assert!(temp_leftovers(&run).is_empty(), "leftovers cleaned: {:?}", temp_leftovers(&run));
    let listed = listed_checkpoints(&pt, &run);
    assert!(listed.iter().all(|(_, ok)| *ok) && listed.last().unwrap().0 == "step-00000024", "{listed:?}");
    assert_eq!(train_steps(&run), (1..=24).collect::<Vec<_>>(), "no step logged twice across the kills");
}

/// A small tmpfs at `dir` (root with mount rights only), unmounted on drop.
struct Tmpfs(PathBuf);
impl Tmpfs {
    fn mount(dir: &Path, bytes: u64) -> Option<Tmpfs> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={}k", bytes / 1024), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Makes `dir` unwritable: `chmod 555` for a normal user, `chattr +i` for root (whom modes do
/// not stop); undone on drop.
struct ReadOnly(PathBuf, bool);
impl ReadOnly {
    fn make(dir: &Path) -> Option<ReadOnly> {
        use std::os::unix::fs::PermissionsExt;
        if unsafe { libc::geteuid() } != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).ok()?;
            return Some(ReadOnly(dir.to_path_buf(), false));
        }
        let ok = Command::new("chattr").arg("+i").arg(dir).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
        ok.then(|| ReadOnly(dir.to_path_buf(), true))
    }
}
impl Drop for ReadOnly {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if self.1 {
            let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
        } else {
            let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
        }
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| if e.path().is_dir() { dir_bytes(&e.path()) } else { e.metadata().unwrap().len() })
        .sum()
}

/// Asserts the failed save at step 4 was reported naming both checkpoints, and step 2 survived.
fn assert_failed_save_kept_previous(pt: &Pt, run: &Path, err: &str, reference: &Path) {
    assert!(err.contains("saving checkpoint step-00000004 failed"), "{err}");
    let previous = checkpoint_dir(run, 2);
    assert!(err.contains(&format!("The previous checkpoint {} is intact", previous.display())), "{err}");
    assert_eq!(listed_checkpoints(pt, run), vec![("step-00000002".to_string(), true)]);
    pt.ok(&["checkpoint", "inspect", s(&previous)]);
    assert!(read_safetensors(&previous.join("model.safetensors")) == read_safetensors(reference));
}

#[test]
fn a_full_disk_fails_the_save_by_name_and_keeps_the_previous_checkpoint() {
    let (pt, tmp, recipe) = tiny_mlm_setup(4, "");
    // Constant LR: runs of 2 and 4 steps agree on their first two.
    let common = ["--set", "schedule.decay=\"constant\"", "--set", "checkpoint.every=2", "--quiet"];
    let reference = tmp.path().join("reference");
    let mut args = vec!["train", "--recipe", s(&recipe), "--run-dir", s(&reference), "--max-steps", "2"];
    args.extend(common);
    pt.ok(&args);
    let reference_model = checkpoint_dir(&reference, 2).join("model.safetensors");
    let checkpoint_bytes = dir_bytes(&checkpoint_dir(&reference, 2));

    // Room for the run's small files and one checkpoint, not two.
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    if let Some(_disk) = Tmpfs::mount(&mnt, checkpoint_bytes * 3 / 2 + (512 << 10)) {
        let run = mnt.join("run");
        let mut args = vec!["train", "--recipe", s(&recipe), "--run-dir", s(&run)];
        args.extend(common);
        let err = pt.fails(&args);
        assert!(err.contains("No space left on device"), "{err}");
        assert_failed_save_kept_previous(&pt, &run, &err, &reference_model);
        assert!(temp_leftovers(&run).is_empty(), "the failed write cleaned up: {:?}", temp_leftovers(&run));
        return;
    }
    // Without mount rights: a checkpoints/ directory that cannot be written to.
    let run = tmp.path().join("run");
    let mut args = vec!["train", "--recipe", s(&recipe), "--run-dir", s(&run), "--max-steps", "2"];
    args.extend(common);
    pt.ok(&args);
    let Some(_locked) = ReadOnly::make(&run.join("checkpoints")) else {
        eprintln!("SKIPPED: cannot mount a tmpfs nor make a directory read-only here");
        return;
    };
    let err = pt.fails(&["train", "--resume", s(&run), "--max-steps", "4", "--quiet"]);
    assert_failed_save_kept_previous(&pt, &run, &err, &reference_model);
}

/// Issue 19 (4): resuming with a changed config. Keys that change what is trained are refused
/// with the list of changes, leaving config.toml and the metrics as they were; the run's length
/// may change; `--accept-changes` goes on and records old, new and the step.
#[test]
fn resume_refuses_a_changed_config_unless_accepted() {
    let (pt, dir, recipe) = tiny_mlm_setup(4, "");
    let run = dir.path().join("run");
    let train = |extra: &[&str]| {
        let mut a =
            vec!["train", "--recipe", s(&recipe), "--run-dir", s(&run), "--quiet", "--set", "checkpoint.every=2"];
        a.extend(extra);
        pt.run(&a)
    };
    assert!(train(&[]).status.success());
    let read = |name: &str| std::fs::read_to_string(run.join(name)).unwrap();
    let (config, metrics) = (read("config.toml"), read("metrics.jsonl"));
    for (set, change) in [
        ("optim.lr=0.01", "optim.lr: 0.001 -> 0.01"),
        ("run.batch_size=4", "run.batch_size: 8 -> 4"),
        ("objective.mask_prob=0.3", "objective.mask_prob: 0.15 -> 0.3"),
        ("run.seed=9", "run.seed: 3 -> 9"),
        ("data.block_size=16", "data.block_size: 32 -> 16"),
    ] {
        let out = train(&["--max-steps", "6", "--set", set]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "--set {set} resumed silently");
        let line = err.lines().find(|l| l.starts_with("pt: error")).unwrap_or_default();
        assert!(line.contains("resuming at step 4 with a changed config") && line.contains(change), "{err}");
        assert!(line.contains("--accept-changes"), "{err}");
        assert_eq!((read("config.toml"), read("metrics.jsonl")), (config.clone(), metrics.clone()), "--set {set}");
    }
    assert!(train(&["--max-steps", "6"]).status.success(), "a longer run is not a changed config");
    assert_eq!(summary(&run)["step"], 6);
    let out = train(&["--max-steps", "8", "--set", "optim.lr=0.01", "--accept-changes"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(summary(&run)["step"], 8);
    let changes = read("config-changes.jsonl");
    let last: serde_json::Value = serde_json::from_str(changes.lines().last().unwrap()).unwrap();
    assert_eq!(last["step"], 6, "{changes}");
    assert!(
        last["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["key"] == "optim.lr" && c["old"] == "0.001" && c["new"] == "0.01"),
        "{changes}"
    );
    assert!(read("config.toml").contains("lr = 0.01"));
}

/// Issue 19 (2): every checkpoint corrupt. `--resume` (and the automatic resume) refuse, changing
/// nothing; `--restart` starts over from step 0 with the old checkpoints and metrics kept aside.
#[test]
fn every_checkpoint_corrupt_is_refused_and_restart_keeps_the_history() {
    let (pt, tmp, recipe) = tiny_mlm_setup(4, "");
    let run = tmp.path().join("run");
    pt.ok(&["train", "--recipe", s(&recipe), "--run-dir", s(&run), "--set", "checkpoint.every=2", "--quiet"]);
    for step in [2, 4] {
        let model = checkpoint_dir(&run, step).join("model.safetensors");
        let mut bytes = std::fs::read(&model).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x10;
        std::fs::write(&model, bytes).unwrap();
    }
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    for args in [
        vec!["train", "--resume", s(&run), "--quiet"],
        vec!["train", "--recipe", s(&recipe), "--run-dir", s(&run), "--quiet"],
    ] {
        let err = pt.fails(&args);
        let line = err.lines().find(|l| l.starts_with("pt: error")).unwrap_or_default();
        assert!(
            line.contains(&format!("no valid checkpoint in {}", run.display())) && line.contains("--restart"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(run.join("metrics.jsonl")).unwrap(), metrics, "metrics kept whole");
        assert!(checkpoint_dir(&run, 4).exists() && checkpoint_dir(&run, 2).exists());
    }
    pt.ok(&["train", "--recipe", s(&recipe), "--run-dir", s(&run), "--quiet", "--restart", "--max-steps", "2"]);
    assert_eq!(summary(&run)["step"], 2);
    assert_eq!(train_steps(&run), [1, 2]);
    let aside: Vec<String> =
        std::fs::read_dir(&run).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    let kept =
        aside.iter().find(|n| n.starts_with("metrics-before-restart-") && n.ends_with(".jsonl")).expect("metrics kept");
    assert_eq!(std::fs::read_to_string(run.join(kept)).unwrap(), metrics);
    let old = aside.iter().find(|n| n.starts_with("checkpoints-before-restart-")).expect("checkpoints kept");
    assert!(run.join(old).join("step-00000004").exists());
}

/// Issue 19 (5): `pt export` never overwrites another directory without --force, never writes
/// into a run's checkpoints, and replaces an export only once the new one is complete.
#[test]
fn export_refuses_to_overwrite_and_replaces_only_whole() {
    let (pt, tmp, recipe) = tiny_mlm_setup(2, "");
    let run = tmp.path().join("run");
    pt.ok(&["train", "--recipe", s(&recipe), "--run-dir", s(&run), "--quiet"]);
    let other = tmp.path().join("notes");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("keep.txt"), "mine").unwrap();
    let err = pt.fails(&["export", s(&run), s(&other)]);
    assert!(err.contains("exists and is not empty: pass --force"), "{err}");
    assert_eq!(std::fs::read_to_string(other.join("keep.txt")).unwrap(), "mine");
    for inside in [checkpoint_dir(&run, 2), run.join("checkpoints/exported")] {
        let err = pt.fails(&["export", s(&run), s(&inside), "--force"]);
        assert!(err.contains("will not export into a run's checkpoints"), "{err}");
    }
    assert!(!run.join("checkpoints/exported").exists());
    let out = tmp.path().join("hf");
    pt.ok(&["export", s(&run), s(&out)]);
    std::fs::write(out.join("stale.txt"), "from before").unwrap();
    pt.ok(&["export", s(&run), s(&out), "--force"]);
    assert!(out.join("model.safetensors").exists() && !out.join("stale.txt").exists());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().to_string_lossy().to_string();
            n.starts_with('.').then_some(n)
        })
        .collect();
    assert!(leftovers.is_empty(), "no staging or old copies left: {leftovers:?}");
}

/// Rewrites `file` of a checkpoint without the tensor `drop` and records the new size and
/// checksum in its manifest: a checkpoint that verifies but lacks a tensor.
fn drop_tensor_and_reseal(ckpt: &Path, file: &str, drop: &str) {
    let path = ckpt.join(file);
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView)> =
        st.tensors().into_iter().filter(|(n, _)| n != drop).collect();
    assert_eq!(kept.len() + 1, st.len(), "{drop} is in {file}");
    let out = safetensors::tensor::serialize(kept, None).unwrap();
    std::fs::write(&path, &out).unwrap();
    let sha = Command::new("sha256sum").arg(&path).output().unwrap();
    let sha = String::from_utf8_lossy(&sha.stdout).split_whitespace().next().unwrap().to_string();
    let manifest = ckpt.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    m["files"][file] = serde_json::json!({ "sha256": sha, "bytes": out.len() });
    std::fs::write(&manifest, m.to_string()).unwrap();
}

/// Issue 19 (3): a checkpoint that verifies but lacks a tensor (or a manifest that lists no
/// model) is never resumed from with random weights; `pt checkpoint verify` reports it.
#[test]
fn resume_refuses_an_incomplete_checkpoint_and_verify_names_it() {
    let (pt, tmp, recipe) = tiny_mlm_setup(4, "");
    let run = tmp.path().join("run");
    pt.ok(&["train", "--recipe", s(&recipe), "--run-dir", s(&run), "--set", "checkpoint.every=2", "--quiet"]);
    let verified = pt.ok(&["checkpoint", "verify", s(&run)]);
    assert!(
        verified.contains("2 of 2 checkpoints verify") && verified.contains("resume starts from step 4"),
        "{verified}"
    );
    let last = checkpoint_dir(&run, 4);
    let name = read_safetensors(&last.join("model.safetensors")).into_keys().find(|n| n.contains("LayerNorm")).unwrap();
    drop_tensor_and_reseal(&last, "model.safetensors", &name);
    let err = pt.fails(&["train", "--resume", s(&run), "--max-steps", "6", "--quiet"]);
    let line = err.lines().find(|l| l.starts_with("pt: error")).unwrap_or_default();
    assert!(line.contains("lacks 1 of the run's tensors") && line.contains(&name), "{err}");
    assert_eq!(summary(&run)["step"], 4, "nothing ran");
    // The optimizer file dropped from the manifest: step 4 is incomplete, resume falls back to 2.
    let m = last.join("manifest.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&m).unwrap()).unwrap();
    v["files"].as_object_mut().unwrap().remove("optimizer.safetensors");
    std::fs::write(&m, v.to_string()).unwrap();
    let out = pt.run(&["checkpoint", "verify", s(&run)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "a run with a bad checkpoint does not verify:\n{text}");
    assert!(text.contains("step-00000004") && text.contains("lists no optimizer.safetensors"), "{text}");
    assert!(text.contains("1 of 2 checkpoints verify") && text.contains("resume starts from step 2"), "{text}");
    pt.ok(&["train", "--resume", s(&run), "--max-steps", "6", "--quiet"]);
    assert_eq!(summary(&run)["step"], 6);
}
