//! `pt checkpoint list RUN_DIR`, `pt checkpoint verify RUN_DIR` and `pt checkpoint inspect CKPT`.

use pt_core::checkpoint::manager::{list_steps, read_pointer};
use pt_core::checkpoint::Checkpoint;
use pt_core::plugin::Registry;
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand)]
pub enum CheckpointCommand {
    /// The checkpoints of a run: step, size, key metrics, whether they verify.
    List { run_dir: PathBuf },
    /// Checks a whole run in one go: every checkpoint (complete, checksums), the `latest` and
    /// `best` pointers, the run's lock, and the plugins it was trained with. Exits 1 on a problem.
    Verify { run_dir: PathBuf },
    /// One checkpoint in full, with checksum verification.
    Inspect {
        checkpoint: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

fn dir_size(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| if e.path().is_dir() { dir_size(&e.path()) } else { e.metadata().map(|m| m.len()).unwrap_or(0) })
        .sum()
}

pub fn run(cmd: CheckpointCommand) -> anyhow::Result<()> {
    match cmd {
        CheckpointCommand::Verify { run_dir } => verify(&run_dir)?,
        CheckpointCommand::List { run_dir } => {
            let root = run_dir.join("checkpoints");
            if !root.is_dir() {
                anyhow::bail!("{} has no checkpoints/ directory: is it a pt run directory?", run_dir.display());
            }
            let pointer = |n: &str| std::fs::read_to_string(root.join(n)).ok().map(|s| s.trim().to_string());
            let (latest, best) = (pointer("latest"), pointer("best"));
            println!("{:<16} {:>8} {:>10} {:<10} {:<8} METRICS", "CHECKPOINT", "STEP", "SIZE", "VERIFIED", "TAGS");
            for (step, dir) in list_steps(&root) {
                let name = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
                let (ok, metrics) = match Checkpoint::open_verified(&dir) {
                    Ok(c) => (
                        "ok".to_string(),
                        c.manifest
                            .metrics
                            .iter()
                            .filter(|(k, _)| k.contains('/') || *k == "loss")
                            .map(|(k, v)| format!("{k}={v:.4}"))
                            .collect::<Vec<_>>()
                            .join(" "),
                    ),
                    Err(e) => ("CORRUPT".to_string(), e.to_string()),
                };
                let mut tags = Vec::new();
                if latest.as_deref() == Some(&name) {
                    tags.push("latest");
                }
                if best.as_deref() == Some(&name) {
                    tags.push("best");
                }
                println!(
                    "{name:<16} {step:>8} {:>9.1}M {ok:<10} {:<8} {metrics}",
                    dir_size(&dir) as f64 / 1e6,
                    tags.join(",")
                );
            }
        }
        CheckpointCommand::Inspect { checkpoint, json } => {
            let c = Checkpoint::open_verified(&checkpoint)?;
            let m = &c.manifest;
            if json {
                println!("{}", serde_json::to_string_pretty(m)?);
                return Ok(());
            }
            println!("{}: step {}, format {}, verified ok", checkpoint.display(), m.step, m.format_version);
            println!("data position: epoch {}, micro-batch {}", m.cursor.epoch, m.cursor.micro_batch);
            println!(
                "optimizer: {} ({} steps), lr at this step {:.3e}, seed {}",
                m.optimizer, m.optimizer_steps, m.lr, m.seed
            );
            println!("skipped non-finite steps: {}", m.skipped_steps);
            println!("pt {}  libtorch {}", m.pt_version, m.libtorch_version);
            println!("components:");
            for (k, v) in &m.components {
                println!("  {k:<10} {v}");
            }
            println!("plugins:");
            for p in &m.plugins {
                println!("  {} {}  sha256 {}", p.name, p.version, &p.sha256[..p.sha256.len().min(16)]);
            }
            println!("metrics:");
            for (k, v) in &m.metrics {
                println!("  {k:<32} {v:.6}");
            }
            println!("files:");
            for (f, e) in &m.files {
                println!("  {f:<32} {:>12} bytes  sha256 {}", e.bytes, &e.sha256[..16]);
            }
            let model = c.tensors("model")?;
            let numel: i64 = model.iter().map(|(_, t)| t.numel() as i64).sum();
            println!("model: {} tensors, {:.2}M values", model.len(), numel as f64 / 1e6);
        }
    }
    Ok(())
}

fn verify(run_dir: &Path) -> anyhow::Result<()> {
    let root = run_dir.join("checkpoints");
    if !root.is_dir() {
        anyhow::bail!("{} has no checkpoints/ directory: is it a pt run directory?", run_dir.display());
    }
    let mut problems = 0;
    let steps = list_steps(&root);
    // Each checkpoint is verified once (every file hashed); resume's choice is made from these.
    let mut verified: Vec<(String, Checkpoint)> = Vec::new();
    for (_, dir) in &steps {
        let name = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        match Checkpoint::open_verified(dir) {
            Ok(c) => {
                println!("{name:<16} ok");
                verified.push((name, c));
            }
            Err(e) => {
                problems += 1;
                println!("{name:<16} FAILS: {e}");
            }
        }
    }
    for pointer in ["latest", "best"] {
        if !root.join(pointer).exists() {
            continue;
        }
        match read_pointer(&root, pointer) {
            Some(name) if root.join(&name).is_dir() => println!("{pointer:<16} -> {name}"),
            Some(name) => {
                problems += 1;
                println!("{pointer:<16} FAILS: names {name}, which does not exist");
            }
            None => {
                problems += 1;
                println!("{pointer:<16} FAILS: names no checkpoint of this run (ignored by resume)");
            }
        }
    }
    match pt_core::train::run_lock::holder(run_dir) {
        Some(pid) => println!("{:<16} held by PID {pid}: a run is training here now", "lock"),
        None => println!("{:<16} free", "lock"),
    }
    // As resume chooses (`latest_valid`): what `latest` names if it verifies, else the newest.
    let latest = read_pointer(&root, "latest");
    let resumable =
        verified.iter().find(|(name, _)| latest.as_deref() == Some(name)).or(verified.last()).map(|(_, c)| c);
    if let Some(c) = resumable {
        problems += verify_plugins(c);
    }
    println!(
        "{} of {} checkpoints verify; {}",
        verified.len(),
        steps.len(),
        match resumable {
            Some(c) => format!("resume starts from step {}", c.manifest.step),
            None => "resume has nothing to start from".to_string(),
        }
    );
    if problems > 0 {
        anyhow::bail!("{}: {problems} problem(s) found (listed above)", run_dir.display());
    }
    Ok(())
}

/// The plugins the run was trained with against those this pt would load now; a plugin that
/// fails to load (changed since it was installed, wrong SDK) is a problem, another build a note.
fn verify_plugins(c: &Checkpoint) -> usize {
    let reg = Registry::discover();
    let mut problems = 0;
    for recorded in &c.manifest.plugins {
        let short = |sha: &str| sha[..sha.len().min(12)].to_string();
        let failed = reg.failed.iter().find(|f| {
            f.path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().trim_start_matches("lib").trim_end_matches(".so") == recorded.name)
        });
        match (reg.plugin(&recorded.name), failed) {
            (Some(found), _) if found.plugin.sha256.is_empty() => {
                println!("plugin {:<9} {}: built into pt", recorded.name, recorded.version)
            }
            (Some(found), _) if found.plugin.sha256 == recorded.sha256 => {
                println!(
                    "plugin {:<9} {} {}: the build the run used",
                    recorded.name,
                    recorded.version,
                    short(&recorded.sha256)
                )
            }
            (Some(found), _) => println!(
                "plugin {:<9} {} {}: another build than the run used ({} {}); results may differ",
                recorded.name,
                found.plugin.manifest.version,
                short(&found.plugin.sha256),
                recorded.version,
                short(&recorded.sha256)
            ),
            (None, Some(f)) => {
                problems += 1;
                println!("plugin {:<9} FAILS: {}", recorded.name, f.error);
            }
            (None, None) => {
                problems += 1;
                println!(
                    "plugin {:<9} FAILS: not installed (the run used {} {})",
                    recorded.name,
                    recorded.version,
                    short(&recorded.sha256)
                );
            }
        }
    }
    problems
}
