//! `pt checkpoint list RUN_DIR` and `pt checkpoint inspect CKPT`.

use pt_core::checkpoint::manager::list_steps;
use pt_core::checkpoint::Checkpoint;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum CheckpointCommand {
    /// The checkpoints of a run: step, size, key metrics, whether they verify.
    List { run_dir: PathBuf },
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
