//! Issue 10 through the real `pt` binary: data parallelism on c10d's Gloo over loopback.
//! Two ranks train the weights one process trains with the same global batch; a killed or
//! hung rank stops the others with an error; ranks with different plugin builds refuse to train;
//! a run resumes with a different number of processes.

use pt_tests::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A free TCP port on loopback for the rendezvous (bound once, released for pt to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).lines().filter(|l| !l.starts_with("[W")).collect::<Vec<_>>().join("\n")
}

/// The tiny MLM recipe (bert tiny: dropout, AdamW, no BatchNorm) with a per-rank batch of 8.
fn recipe(dir: &Path, max_steps: u64, extra: &str) -> PathBuf {
    let text = tiny_mlm_recipe(&data_dir("text"), max_steps, &format!("{extra}\n"))
        .replace("[checkpoint]\nevery = 0", "[checkpoint]\nevery = 2")
        .replace("[run]\n", "[run]\ndist_timeout_s = 20\n");
    write_file(dir, "recipe.toml", &text)
}

/// Parameters of a checkpoint's model (BatchNorm statistics and counters excluded).
fn params(run: &Path, step: u64) -> Vec<(String, Vec<f32>)> {
    read_safetensors(&checkpoint_dir(run, step).join("model.safetensors"))
        .into_iter()
        .filter(|(n, t)| t.dtype == "F32" && !n.contains("running_"))
        .map(|(n, t)| (n, t.f32s()))
        .collect()
}

fn max_difference(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|((na, x), (nb, y))| {
            assert_eq!(na, nb);
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

/// `pt train` as one rank, started directly with the torchrun environment.
fn rank(pt: &Pt, rank: u64, port: u16, args: &[&str]) -> Command {
    let mut c = pt.cmd();
    c.env("WORLD_SIZE", "2")
        .env("RANK", rank.to_string())
        .env("LOCAL_RANK", rank.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .args(args);
    c
}

/// `pt launch` of 2 ranks training `recipe` into `run`, output captured.
fn launch_two_ranks(pt: &Pt, recipe: &Path, run: &Path) -> Child {
    launch_ranks(pt, 2, recipe, run, &[])
}

/// `pt launch` of `n` ranks training `recipe` into `run`, with `extra` arguments to `train`.
fn launch_ranks(pt: &Pt, n: u32, recipe: &Path, run: &Path, extra: &[&str]) -> Child {
    let port = free_port().to_string();
    pt.cmd()
        .args([
            "launch",
            "--nproc-per-node",
            &n.to_string(),
            "--master-port",
            &port,
            "--",
            "train",
            "--recipe",
            s(recipe),
            "--run-dir",
            s(run),
            "--quiet",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `pt launch` of 2 ranks on a run with no step limit, once rank 0 has logged 3 steps.
fn endless_two_rank_run(pt: &Pt, dir: &Path, log_every: u64) -> (Child, PathBuf) {
    let recipe = recipe(dir, 1_000_000, "");
    let text =
        std::fs::read_to_string(&recipe).unwrap().replace("log_every = 1\n", &format!("log_every = {log_every}\n"));
    std::fs::write(&recipe, text).unwrap();
    let run = dir.join("run");
    let launch = launch_two_ranks(pt, &recipe, &run);
    wait_for_steps(&run, 3);
    (launch, run)
}

/// Waits until rank 0 has logged `n` training steps (a safety net of 2 minutes, not a timing).
fn wait_for_steps(run: &Path, n: usize) {
    wait_for(Duration::from_secs(120), "a few logged steps", || {
        run.join("metrics.jsonl").exists() && train_steps(run).len() >= n
    });
}

#[test]
fn two_ranks_train_what_one_process_trains_with_the_same_global_batch_and_resume_as_one() {
    let pt = Pt::new();
    let tmp = tempfile::tempdir().unwrap();
    let recipe = recipe(tmp.path(), 6, "");
    let (one, two, resumed) = (tmp.path().join("one"), tmp.path().join("two"), tmp.path().join("resumed"));
    // One process: 2 micro-batches of 8 per step = the global batch of 2 ranks × 8.
    pt.ok(&["train", "--recipe", s(&recipe), "--run-dir", s(&one), "--set", "run.grad_accum=2"]);
    // Small all-reduce buckets, so several start during backward, in the same order on both
    // ranks, while earlier layers' gradients are still being computed.
    let text = std::fs::read_to_string(&recipe).unwrap().replace("[run]\n", "[run]\nbucket_mb = 0.1\n");
    let bucketed = write_file(tmp.path(), "bucketed.toml", &text);
    let out = launch_two_ranks(&pt, &bucketed, &two).wait_with_output().unwrap();
    assert!(out.status.success(), "pt launch failed:\n{}", stderr_of(&out));
    let log = std::fs::read_to_string(two.join("train.log")).unwrap();
    let buckets: u32 = log
        .split("buckets=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no bucket count in rank 0's log:\n{log}"));
    assert!(buckets >= 4, "{buckets} buckets");

    // Same samples, same dropout streams, gradients averaged over ranks: the same weights.
    let diff = max_difference(&params(&one, 6), &params(&two, 6));
    assert!(diff < 1e-5, "2 ranks vs 1 process: weights differ by {diff}");
    for step in 1..=6 {
        let (a, b) = (metric_at(&one, step, "loss").unwrap(), metric_at(&two, step, "loss").unwrap());
        assert!((a - b).abs() < 1e-5, "step {step}: loss {a} (1 process) vs {b} (2 ranks, mean over ranks)");
    }
    // Rank 0 writes the run; rank 1 only its log.
    assert!(two.join("train.rank1.log").is_file() && two.join("config.toml").is_file());
    assert_eq!(train_steps(&two), (1..=6).collect::<Vec<_>>(), "one row per step, from rank 0 only");
    let manifest = std::fs::read_to_string(checkpoint_dir(&two, 4).join("manifest.json")).unwrap();
    assert!(manifest.contains("\"world_size\": 2"), "{manifest}");

    // One launched process is a group of one (the path NCCL takes on one GPU): same weights.
    let single = tmp.path().join("single");
    let out = launch_ranks(&pt, 1, &recipe, &single, &["--set", "run.grad_accum=2"]).wait_with_output().unwrap();
    assert!(out.status.success(), "pt launch of 1 rank failed:\n{}", stderr_of(&out));
    let log = std::fs::read_to_string(single.join("train.log")).unwrap();
    assert!(log.contains("joining the process group") && log.contains("world_size=1"), "{log}");
    let diff = max_difference(&params(&one, 6), &params(&single, 6));
    assert!(diff < 1e-6, "a group of 1 vs 1 process: weights differ by {diff}");
    // NCCL needs CUDA: asked for on the CPU, the error says what to use.
    let nccl = ["--set", "run.dist_backend=nccl", "--device", "cpu"];
    let out = launch_ranks(&pt, 1, &recipe, &tmp.path().join("nccl"), &nccl).wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("dist_backend = \"nccl\" needs a CUDA device"), "{}", stderr_of(&out));

    // The 2-rank run's step-4 checkpoint resumed by one process (same global batch) ends where
    // the 1-process run did.
    copy_dir(&two, &resumed);
    std::fs::remove_dir_all(checkpoint_dir(&resumed, 6)).unwrap();
    pt.ok(&["train", "--resume", s(&resumed), "--set", "run.grad_accum=2"]);
    let diff = max_difference(&params(&one, 6), &params(&resumed, 6));
    assert!(diff < 1e-5, "resumed with another world size: weights differ by {diff} from the 1-process run");
}

/// ELECTRA's two towers in stages, on two ranks: masks are drawn per sample, and torch's
/// generator (the replacements, dropout) per micro-batch numbered across ranks, so they train
/// what one process trains in two micro-batches.
#[test]
fn electra_on_two_ranks_trains_what_one_process_trains() {
    let pt = Pt::new();
    let tmp = tempfile::tempdir().unwrap();
    let text = tiny_electra_recipe(&data_dir("text"), 3, "").replace("[run]\n", "[run]\ndist_timeout_s = 20\n");
    let text = text.replace("[checkpoint]\nevery = 0", "[checkpoint]\nevery = 3");
    let recipe = write_file(tmp.path(), "electra.toml", &text);
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    pt.ok(&["train", "--recipe", s(&recipe), "--run-dir", s(&one), "--set", "run.grad_accum=2", "--quiet"]);
    let out = launch_two_ranks(&pt, &recipe, &two).wait_with_output().unwrap();
    assert!(out.status.success(), "pt launch failed:\n{}", stderr_of(&out));
    for step in 1..=3 {
        for metric in ["generator_loss", "discriminator_loss", "replaced_share"] {
            let (a, b) = (metric_at(&one, step, metric).unwrap(), metric_at(&two, step, metric).unwrap());
            assert!((a - b).abs() < 1e-5 * a.abs().max(1.0), "step {step}: {metric} {a} (1 process) vs {b} (2 ranks)");
        }
    }
    let diff = max_difference(&params(&one, 3), &params(&two, 3));
    assert!(diff < 1e-5, "2 ranks vs 1 process: weights differ by {diff}");
}

#[test]
fn torchrun_starts_pt_train_unchanged() {
    let pt = Pt::new();
    let tmp = tempfile::tempdir().unwrap();
    let recipe = recipe(tmp.path(), 4, "");
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    pt.ok(&["train", "--recipe", s(&recipe), "--run-dir", s(&one), "--set", "run.grad_accum=2", "--quiet"]);
    // PyTorch's own launcher: its agent serves the store, the ranks join it as clients.
    let torchrun = python().with_file_name("torchrun");
    let port = free_port().to_string();
    let pt_bin = pt_bin();
    let args = ["--nproc-per-node", "2", "--master-port", &port, "--no-python", s(&pt_bin)];
    let out = Command::new(&torchrun)
        .args(args)
        .args(["train", "--recipe", s(&recipe), "--run-dir", s(&two), "--quiet"])
        .env("PT_HOME", pt.home.path())
        .env_remove("PT_PLUGIN_PATH")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "torchrun failed:\n{stderr}");
    assert!(!stderr.contains("failed to bind"), "a rank tried to serve the agent's store:\n{stderr}");
    assert!(two.join("train.rank1.log").is_file());
    let diff = max_difference(&params(&one, 4), &params(&two, 4));
    assert!(diff < 1e-5, "torchrun's 2 ranks vs 1 process: weights differ by {diff}");
}

/// Supervised ResNet-18 (width 8) on the digits with `batch` images per process, 4 SGD steps.
fn resnet_recipe(dir: &Path, name: &str, batch: u64, sync_batchnorm: bool) -> PathBuf {
    let text = digits_resnet_recipe(
        &format!(
            "seed = 3\nbatch_size = {batch}\nmax_steps = 4\nlog_every = 1\nnum_threads = 1\ndist_timeout_s = 20\n\n[checkpoint]\nevery = 4"
        ),
        &format!("width = 8\nsync_batchnorm = {sync_batchnorm}"),
        "lr = 0.1\nmomentum = 0.9",
    );
    write_file(dir, name, &text)
}

/// Every float tensor of a checkpoint's model, BatchNorm running statistics included.
fn weights_and_statistics(run: &Path, step: u64) -> Vec<(String, Vec<f32>)> {
    read_safetensors(&checkpoint_dir(run, step).join("model.safetensors"))
        .into_iter()
        .filter(|(_, t)| t.dtype == "F32")
        .map(|(n, t)| (n, t.f32s()))
        .collect()
}

/// Set-up only rank 0 does (its evaluations) fails on a recipe mistake: every rank stops at
/// once with that error, none waits for a dead peer or blames a stall.
#[test]
fn a_bad_probe_layer_stops_every_rank_with_rank_0s_error() {
    let _data = data_dir("images");
    let pt = Pt::new();
    let tmp = tempfile::tempdir().unwrap();
    let eval = "\n[[eval]]\nname = \"knn\"\nlayer = \"layer9\"\nsplits.train = { name = \"pixel_csv\", path = \"{data}/images/digits/digits.csv\", mean = [0.3], std = [0.4] }\nsplits.test = { name = \"pixel_csv\", path = \"{data}/images/digits/digits.csv\", mean = [0.3], std = [0.4] }\n";
    let text = std::fs::read_to_string(resnet_recipe(tmp.path(), "r.toml", 8, false)).unwrap() + eval;
    let recipe = write_file(tmp.path(), "bad.toml", &text);
    let out = launch_two_ranks(&pt, &recipe, &tmp.path().join("run")).wait_with_output().unwrap();
    let err = stderr_of(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("rank 1 stops: rank 0 could not set up") && err.contains("layer 'layer9' is not a tap"),
        "{err}"
    );
    assert!(
        !err.contains("stopped making progress") && !err.contains("frame #"),
        "no stall blamed, no backtrace:\n{err}"
    );
}

#[test]
fn synchronised_batchnorm_over_two_ranks_trains_what_one_batch_of_both_trains() {
    let _data = data_dir("images");
    let pt = Pt::new();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // One process with the global batch of 16 in one micro-batch: BatchNorm sees all 16.
    let one = dir.join("one");
    pt.ok(&["train", "--recipe", s(&resnet_recipe(dir, "one.toml", 16, false)), "--run-dir", s(&one), "--quiet"]);
    let two_ranks = |recipe: PathBuf, run: &Path| {
        let out = launch_two_ranks(&pt, &recipe, run).wait_with_output().unwrap();
        assert!(out.status.success(), "pt launch failed:\n{}", stderr_of(&out));
        max_difference(&weights_and_statistics(&one, 4), &weights_and_statistics(run, 4))
    };
    // Two ranks of 8 with synchronised BatchNorm: statistics (and their gradients) over all 16,
    // so the same losses, weights and running statistics (to float rounding: the statistics
    // are summed moments here, two-pass in libtorch's BatchNorm; 2e-5 after 3 steps, amplified
    // by the loss spike of step 3 at lr 0.1 to about 1e-3 after 4).
    let synced_run = dir.join("synced");
    let synced = two_ranks(resnet_recipe(dir, "synced.toml", 8, true), &synced_run);
    assert!(synced < 3e-3, "synchronised BatchNorm, 2 ranks vs 1 process: weights differ by {synced}");
    for step in 1..=4 {
        let (a, b) = (metric_at(&one, step, "loss").unwrap(), metric_at(&synced_run, step, "loss").unwrap());
        assert!((a - b).abs() < 1e-4 * a, "step {step}: loss {a} (1 process) vs {b} (2 ranks, synced)");
    }
    // Without it each rank normalises its own 8: a different model (the check above can fail).
    let local = two_ranks(resnet_recipe(dir, "local.toml", 8, false), &dir.join("local"));
    assert!(local > 100.0 * synced.max(1e-6), "per-rank BatchNorm differs by only {local} (synced: {synced})");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// The child of `parent` whose environment says RANK=`rank`.
fn child_with_rank(parent: u32, rank: u64) -> Option<i32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command's closing parenthesis: state, ppid, ...
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid != Some(parent) {
            continue;
        }
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if env.split(|&b| b == 0).any(|v| v == format!("RANK={rank}").as_bytes()) {
            return Some(pid);
        }
    }
    None
}

#[test]
fn a_killed_rank_stops_the_other_and_launch_names_it_with_the_checkpoints_intact() {
    let pt = Pt::new();
    let tmp = tempfile::tempdir().unwrap();
    let (launch, run) = endless_two_rank_run(&pt, tmp.path(), 1);
    let victim = child_with_rank(launch.id(), 1).expect("rank 1 is a child of pt launch");
    // SAFETY: killing the test's own grandchild.
    assert_eq!(unsafe { libc::kill(victim, libc::SIGKILL) }, 0);
    let out = launch.wait_with_output().unwrap();
    let err = stderr_of(&out);
    assert!(!out.status.success(), "pt launch succeeded after a rank was killed:\n{err}");
    assert!(err.contains("rank 1 failed first: it was killed by signal 9"), "{err}");
    assert!(err.contains("rank 0 of 2:") && err.contains("failed"), "rank 0 stops with an error:\n{err}");
    assert!(!err.contains("frame #"), "no C++ backtrace:\n{err}");
    let listed = listed_checkpoints(&pt, &run);
    assert!(!listed.is_empty() && listed.iter().all(|(_, ok)| *ok), "checkpoints intact: {listed:?}");
}

#[test]
fn a_hung_rank_times_the_other_out_within_the_configured_timeout() {
    let pt = Pt::new();
    let tmp = tempfile::tempdir().unwrap();
    let recipe = recipe(tmp.path(), 1_000_000, "");
    let run = tmp.path().join("run");
    let port = free_port();
    let args = ["train", "--recipe", s(&recipe), "--run-dir", s(&run), "--quiet", "--set", "run.dist_timeout_s=3"];
    let r0 = rank(&pt, 0, port, &args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut r1 = rank(&pt, 1, port, &args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for_steps(&run, 3);
    send_signal(&r1, libc::SIGSTOP); // alive, but answers nothing
    let out = r0.wait_with_output().unwrap();
    send_signal(&r1, libc::SIGKILL);
    let _ = r1.wait();
    let err = stderr_of(&out);
    assert!(!out.status.success(), "rank 0 went on without its peer:\n{err}");
    assert!(err.contains("rank 0 of 2:") && err.contains("hung past 3 s"), "{err}");
    // Issue 19 (9): the heartbeats name the peer that stopped, not just "a peer".
    assert!(err.contains("rank 1 stopped making progress (its last heartbeat was at step"), "{err}");
}

/// Issue 19 (9): under `pt launch`, a stopped rank is the one blamed (it used to be the healthy
/// rank that gave up waiting for it).
#[test]
fn launch_names_the_rank_that_stopped_not_the_one_that_gave_up() {
    let pt = Pt::new();
    let tmp = tempfile::tempdir().unwrap();
    let recipe = recipe(tmp.path(), 1_000_000, "");
    let text = std::fs::read_to_string(&recipe).unwrap().replace("dist_timeout_s = 20", "dist_timeout_s = 4");
    std::fs::write(&recipe, text).unwrap();
    let run = tmp.path().join("run");
    let launch = launch_ranks(&pt, 2, &recipe, &run, &["--set", "checkpoint.every=0"]);
    wait_for_steps(&run, 3);
    let victim = child_with_rank(launch.id(), 1).expect("rank 1 is a child of pt launch");
    // SAFETY: stopping the test's own grandchild (pt launch kills it once rank 0 has failed).
    assert_eq!(unsafe { libc::kill(victim, libc::SIGSTOP) }, 0);
    let out = launch.wait_with_output().unwrap();
    let err = stderr_of(&out);
    assert!(!out.status.success(), "{err}");
    let last = err.lines().rev().find(|l| l.starts_with("pt: error")).unwrap_or_default();
    assert!(
        last.contains("rank 1 stopped making progress (no heartbeat since step")
            && last.contains("rank 0 gave up waiting for it"),
        "{err}"
    );
}

/// Issue 19 (9): a port another job holds is named at once (it used to take a minute to fail).
#[test]
fn launch_on_a_busy_port_fails_at_once_naming_it() {
    let pt = Pt::new();
    let tmp = tempfile::tempdir().unwrap();
    let recipe = recipe(tmp.path(), 2, "");
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let run = tmp.path().join("run");
    let err = pt.fails(&[
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
    ]);
    assert!(err.contains(&format!("--master-port {port} is in use on 127.0.0.1")), "{err}");
    assert!(!run.exists(), "no rank started");
}

#[test]
fn ranks_with_different_plugin_builds_refuse_to_train_and_a_half_set_environment_is_named() {
    let pt = Pt::new();
    let tmp = tempfile::tempdir().unwrap();
    let recipe = recipe(tmp.path(), 2, "");
    let run = tmp.path().join("run");
    // Rank 1 loads another build of the mlm plugin (same name and version, other bytes).
    let other = tmp.path().join("other-build");
    std::fs::create_dir_all(&other).unwrap();
    let so = other.join("libpt_mlm.so");
    std::fs::copy(plugin_so("pt_mlm"), &so).unwrap();
    let mut bytes = std::fs::read(&so).unwrap();
    bytes.extend_from_slice(b"another build");
    std::fs::write(&so, bytes).unwrap();
    let port = free_port();
    let args = ["train", "--recipe", s(&recipe), "--run-dir", s(&run), "--quiet"];
    let r0 = rank(&pt, 0, port, &args).stderr(Stdio::piped()).spawn().unwrap();
    let r1 = rank(&pt, 1, port, &args).env("PT_PLUGIN_PATH", &other).stderr(Stdio::piped()).spawn().unwrap();
    for (r, child) in [(0, r0), (1, r1)] {
        let out = child.wait_with_output().unwrap();
        let err = stderr_of(&out);
        assert!(!out.status.success(), "rank {r} trained despite the mismatch");
        assert!(
            err.contains("the ranks disagree") && err.contains("rank 1 differs from rank 0: plugin mlm 0.1.0"),
            "rank {r}: {err}"
        );
    }
    assert!(!checkpoint_dir(&run, 2).exists(), "nothing was trained");

    let out = pt.cmd().env("WORLD_SIZE", "2").args(args).output().unwrap();
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("WORLD_SIZE=2 but RANK is not set"), "{}", stderr_of(&out));
}

#[test]
fn simclr_contrasts_against_the_views_of_every_rank() {
    let pt = Pt::new();
    let tmp = tempfile::tempdir().unwrap();
    let digits = data_dir("images").join("images/digits/digits.csv");
    let recipe = write_file(
        tmp.path(),
        "simclr.toml",
        &format!(
            r#"
[run]
device = "cpu"
batch_size = 8
max_steps = 2
log_every = 1
num_threads = 1
dist_timeout_s = 20

[data]
name = "pixel_csv"
path = "{}"
mean = [0.305]
std = [0.376]

[arch]
name = "resnet18"
num_classes = 0
width = 8

[objective]
name = "simclr"

[optim]
name = "lars"
lr = 0.1
"#,
            digits.display()
        ),
    );
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    pt.ok(&["train", "--recipe", s(&recipe), "--run-dir", s(&one), "--quiet"]);
    let out = launch_two_ranks(&pt, &recipe, &two).wait_with_output().unwrap();
    assert!(out.status.success(), "pt launch failed:\n{}", stderr_of(&out));
    // 8 images per rank, 2 views each: alone 16 rows, with 2 ranks the 32 of the global batch.
    assert_eq!(metric_at(&one, 2, "nt_xent_views"), Some(16.0));
    assert_eq!(metric_at(&two, 2, "nt_xent_views"), Some(32.0));
    let loss = metric_at(&two, 2, "nt_xent").unwrap();
    assert!(loss.is_finite() && loss > 0.0, "{loss}");
}

#[test]
fn ctrl_c_to_launch_stops_every_rank_at_the_same_step_with_a_checkpoint() {
    let pt = Pt::new();
    let tmp = tempfile::tempdir().unwrap();
    let (launch, run) = endless_two_rank_run(&pt, tmp.path(), 7);
    send_signal(&launch, libc::SIGINT);
    let out = launch.wait_with_output().unwrap();
    assert!(out.status.success(), "an interrupted run is not a failure:\n{}", stderr_of(&out));
    // Both ranks agreed on the step to stop at (otherwise one would wait in a collective
    // and fail); rank 0 saved it and the run resumes from there.
    let summary = summary(&run);
    assert_eq!(summary["stop"], "interrupted", "{summary}");
    let step = summary["step"].as_u64().unwrap();
    assert!(checkpoint_dir(&run, step).join("manifest.json").is_file(), "checkpoint at step {step}");
    // They vote at log lines only (a vote is a wait for the device on NCCL).
    assert_eq!(step % 7, 0, "stopped at step {step}, not at a log line of log_every = 7");
}

/// Issue 21: a run over tar shards stopped mid-shard resumes with another number of ranks
/// (1 → 2 and 2 → 1, the global batch kept) and ends where an unbroken one-process run does.
#[test]
fn image_shards_resume_mid_shard_with_more_or_fewer_ranks() {
    let pt = Pt::new();
    let tmp = tempfile::tempdir().unwrap();
    let (src, shards) = (tmp.path().join("src"), tmp.path().join("shards"));
    small_class_folders(&src);
    pt.ok(&["data", "pack", s(&src), s(&shards), "--shard-size", "8"]);
    // 2 ranks × 4 per step, or one process × 2 micro-batches of 4: the same global batch of 8.
    let text = std::fs::read_to_string(image_shards_recipe(tmp.path(), &shards, 4)).unwrap();
    let recipe = write_file(tmp.path(), "ranks.toml", &text.replace("batch_size = 8", "batch_size = 4"));
    let one_process = ["--set", "run.grad_accum=2"];
    let whole = tmp.path().join("whole");
    pt.ok(&[&["train", "--recipe", s(&recipe), "--run-dir", s(&whole)], &one_process[..]].concat());

    let resume_launched = |run: &Path| {
        let port = free_port().to_string();
        let args = ["launch", "--nproc-per-node", "2", "--master-port", &port, "--", "train", "--resume", s(run)];
        pt.ok(&[&args[..], &["--quiet", "--max-steps", "4", "--set", "run.grad_accum=1"]].concat())
    };
    // 1 → 2: step 2 of 4 is sample 16 of 30, inside the third shard.
    let up = tmp.path().join("up");
    let stop_at_2 = ["--max-steps", "2"];
    pt.ok(&[&["train", "--recipe", s(&recipe), "--run-dir", s(&up)], &one_process[..], &stop_at_2[..]].concat());
    resume_launched(&up);
    // 2 → 1.
    let down = tmp.path().join("down");
    let out = launch_ranks(&pt, 2, &recipe, &down, &stop_at_2).wait_with_output().unwrap();
    assert!(out.status.success(), "pt launch failed:\n{}", stderr_of(&out));
    pt.ok(&[&["train", "--resume", s(&down), "--max-steps", "4"], &one_process[..]].concat());
    for run in [&up, &down] {
        let diff = max_difference(&params(&whole, 4), &params(run, 4));
        assert!(diff < 1e-5, "{}: weights differ by {diff} from the unbroken run", run.display());
    }
}
