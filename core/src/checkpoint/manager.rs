//! Saving checkpoints atomically and deciding which to keep.
//!
//! A save snapshots tensors to CPU copies on the training thread, then a writer thread writes
//! them into `checkpoints/.tmp-step-N-PID/`, fsyncs every file and the directory, renames it to
//! `step-N`, and only then moves the `latest` pointer — so a crash or `kill -9` at any moment
//! leaves the previous checkpoint and pointer intact. Retention keeps the last `keep_last`, the
//! `best` by a chosen metric, and whatever `latest` points at.

use super::format::{Checkpoint, CheckpointManifest, CursorState, FileEntry, PluginRecord, FORMAT_VERSION, MANIFEST};
use crate::plugin::store::write_atomic;
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use tch::Tensor;

const LATEST: &str = "latest";
const BEST: &str = "best";

/// Everything one save writes. Tensors must already be CPU copies (not views of live weights).
pub struct SaveRequest {
    pub step: u64,
    pub cursor: CursorState,
    pub world_size: u64,
    pub lr: f64,
    pub seed: u64,
    pub optimizer: String,
    pub optimizer_steps: u64,
    pub metrics: BTreeMap<String, f64>,
    pub skipped_steps: u64,
    pub config: String,
    pub components: BTreeMap<String, String>,
    pub plugins: Vec<PluginRecord>,
    pub libtorch_version: String,
    pub model: Vec<(String, Tensor)>,
    pub objective: Vec<(String, Tensor)>,
    pub optimizer_state: Vec<(String, Tensor)>,
    /// Copied into `assets/` (e.g. the run's tokenizer).
    pub assets_dir: Option<PathBuf>,
}

/// Snapshot of tensors for a save: CPU, contiguous, detached copies.
pub fn snapshot(tensors: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    tensors.iter().map(|(n, t)| (n.clone(), t.detach().to_device(tch::Device::Cpu).contiguous().copy())).collect()
}

pub struct CheckpointManager {
    pub root: PathBuf,
    keep_last: usize,
    best_metric: String,
    higher_is_better: bool,
    pending: Option<JoinHandle<Result<PathBuf>>>,
}

pub fn step_dir_name(step: u64) -> String {
    format!("step-{step:08}")
}

impl CheckpointManager {
    pub fn new(run_dir: &Path, keep_last: usize, best_metric: &str, higher_is_better: bool) -> Result<Self> {
        let root = run_dir.join("checkpoints");
        std::fs::create_dir_all(&root).map_err(|e| Error::io(format!("creating {}", root.display()), e))?;
        // Leftovers of a process killed mid-save or mid-prune (`.tmp-*` directories) or while
        // moving a pointer (`.latest.tmp-PID`): never valid, safe to drop.
        if let Ok(rd) = std::fs::read_dir(&root) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if name.starts_with(".tmp-") || (name.starts_with('.') && name.contains(".tmp-")) {
                    tracing::info!(path = %e.path().display(), "removing what an interrupted save left behind");
                    let _ = if e.path().is_dir() {
                        std::fs::remove_dir_all(e.path())
                    } else {
                        std::fs::remove_file(e.path())
                    };
                }
            }
        }
        Ok(CheckpointManager {
            root,
            keep_last: keep_last.max(1),
            best_metric: best_metric.to_string(),
            higher_is_better,
            pending: None,
        })
    }

    /// Starts writing `req` in the background (after the previous save has finished).
    pub fn save(&mut self, req: SaveRequest) -> Result<()> {
        self.wait()?;
        let root = self.root.clone();
        let keep_last = self.keep_last;
        let best = (self.best_metric.clone(), self.higher_is_better);
        self.pending = Some(std::thread::spawn(move || {
            let dir = write_checkpoint(&root, req)?;
            update_best(&root, &dir, &best.0, best.1)?;
            prune(&root, keep_last)?;
            Ok(dir)
        }));
        Ok(())
    }

    /// Waits for the save in flight; returns its directory.
    pub fn wait(&mut self) -> Result<Option<PathBuf>> {
        match self.pending.take() {
            None => Ok(None),
            Some(h) => match h.join() {
                Ok(r) => r.map(Some),
                Err(_) => Err(Error::Checkpoint("the checkpoint writer thread panicked".into())),
            },
        }
    }

    /// The save in flight if it has finished (its directory), without waiting for it.
    pub fn poll(&mut self) -> Result<Option<PathBuf>> {
        match &self.pending {
            Some(h) if h.is_finished() => self.wait(),
            _ => Ok(None),
        }
    }

    /// Checkpoint directories by step, oldest first.
    pub fn list(&self) -> Vec<(u64, PathBuf)> {
        list_steps(&self.root)
    }

    /// The newest checkpoint that verifies: `latest` first, then older ones, newest first.
    /// Corrupt ones are reported and skipped.
    pub fn latest_valid(&self) -> Result<Option<Checkpoint>> {
        latest_valid(&self.root)
    }
}

/// See [`CheckpointManager::latest_valid`]; `root` is a run's `checkpoints/` directory.
pub fn latest_valid(root: &Path) -> Result<Option<Checkpoint>> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(name) = read_pointer(root, LATEST) {
        candidates.push(root.join(name));
    }
    for (_, dir) in list_steps(root).into_iter().rev() {
        if !candidates.contains(&dir) {
            candidates.push(dir);
        }
    }
    for dir in candidates {
        if !dir.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            tracing::warn!("skipping {}: not a checkpoint directory of this run", dir.display());
            continue;
        }
        match Checkpoint::open_verified(&dir) {
            Ok(c) => return Ok(Some(c)),
            Err(e) => tracing::warn!("skipping checkpoint {}: {e}", dir.display()),
        }
    }
    Ok(None)
}

/// What a pointer file (`latest`, `best`) names, if it names one of this directory's own
/// checkpoints: a plain `step-N`, never a path that leads elsewhere.
pub fn read_pointer(root: &Path, pointer: &str) -> Option<String> {
    let name = std::fs::read_to_string(root.join(pointer)).ok()?.trim().to_string();
    let own = super::format::step_of_dir_name(Path::new(&name)).is_some() && !name.contains(['/', '\\']);
    if !own {
        tracing::warn!(pointer = %root.join(pointer).display(), %name, "ignoring a pointer that names no checkpoint of this run");
        return None;
    }
    Some(name)
}

/// The run's checkpoint directories (real directories named `step-N`; a symbolic link is never
/// one), oldest first.
pub fn list_steps(root: &Path) -> Vec<(u64, PathBuf)> {
    let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| Some((super::format::step_of_dir_name(&e.path())?, e.path())))
        .collect();
    v.sort();
    v
}

/// Removes a checkpoint directory so that a crash part-way never leaves a half-deleted
/// `step-N` that looks like a checkpoint: it is renamed to a `.tmp-` name first (cleaned up on
/// the next start if the removal is cut short).
fn retire(root: &Path, dir: &Path) -> Result<()> {
    let name = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let doomed = root.join(format!(".tmp-retired-{name}-{}", std::process::id()));
    std::fs::rename(dir, &doomed).map_err(|e| Error::io(format!("removing old checkpoint {}", dir.display()), e))?;
    std::fs::remove_dir_all(&doomed).map_err(|e| Error::io(format!("removing old checkpoint {}", dir.display()), e))
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn copy_dir(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let target = dst.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), &target)?;
            std::fs::File::open(&target)?.sync_all()?;
        }
    }
    Ok(())
}

fn checksum_tree(base: &Path, dir: &Path, out: &mut BTreeMap<String, FileEntry>) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            checksum_tree(base, &p, out)?;
        } else {
            let rel = p.strip_prefix(base).unwrap_or(&p).to_string_lossy().to_string();
            let bytes = std::fs::metadata(&p).map_err(|e| Error::io(format!("reading {}", p.display()), e))?.len();
            out.insert(rel, FileEntry { sha256: crate::plugin::loader::sha256_file(&p)?, bytes });
        }
    }
    Ok(())
}

fn write_checkpoint(root: &Path, req: SaveRequest) -> Result<PathBuf> {
    let name = step_dir_name(req.step);
    let tmp = root.join(format!(".tmp-{name}-{}", std::process::id()));
    let result = (|| -> Result<PathBuf> {
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        super::format::write_tensors(&tmp.join("model.safetensors"), &req.model)?;
        if !req.objective.is_empty() {
            super::format::write_tensors(&tmp.join("objective.safetensors"), &req.objective)?;
        }
        if !req.optimizer_state.is_empty() {
            super::format::write_tensors(&tmp.join("optimizer.safetensors"), &req.optimizer_state)?;
        }
        if let Some(assets) = req.assets_dir.as_ref().filter(|a| a.is_dir()) {
            copy_dir(assets, &tmp.join("assets")).map_err(|e| Error::io(format!("copying {}", assets.display()), e))?;
        }
        let mut files = BTreeMap::new();
        checksum_tree(&tmp, &tmp, &mut files)?;
        let manifest = CheckpointManifest {
            format_version: FORMAT_VERSION,
            step: req.step,
            cursor: req.cursor,
            world_size: req.world_size,
            lr: req.lr,
            seed: req.seed,
            optimizer: req.optimizer,
            optimizer_steps: req.optimizer_steps,
            metrics: req.metrics,
            skipped_steps: req.skipped_steps,
            config: req.config,
            components: req.components,
            plugins: req.plugins,
            pt_version: env!("CARGO_PKG_VERSION").to_string(),
            libtorch_version: req.libtorch_version,
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            files,
        };
        let text = serde_json::to_string_pretty(&manifest).map_err(|e| Error::Checkpoint(e.to_string()))?;
        write_atomic(&tmp.join(MANIFEST), text.as_bytes())?;
        sync_dir(&tmp);
        let dest = root.join(&name);
        if dest.exists() {
            retire(root, &dest)?;
        }
        std::fs::rename(&tmp, &dest).map_err(|e| Error::io(format!("renaming into {}", dest.display()), e))?;
        sync_dir(root);
        write_atomic(&root.join(LATEST), name.as_bytes())?;
        tracing::info!(dir = %dest.display(), "checkpoint saved");
        Ok(dest)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result.map_err(|e| {
        let previous = std::fs::read_to_string(root.join(LATEST)).map(|s| s.trim().to_string()).ok();
        Error::Checkpoint(format!(
            "saving checkpoint {name} failed: {e}. {}",
            match previous {
                Some(p) => format!("The previous checkpoint {} is intact.", root.join(p).display()),
                None => "No earlier checkpoint exists.".to_string(),
            }
        ))
    })
}

fn update_best(root: &Path, new_dir: &Path, metric: &str, higher_is_better: bool) -> Result<()> {
    if metric.is_empty() {
        return Ok(());
    }
    let Ok(new) = super::format::read_manifest(new_dir) else {
        return Ok(());
    };
    let Some(&value) = new.metrics.get(metric) else {
        return Ok(());
    };
    let current = read_pointer(root, BEST)
        .and_then(|n| super::format::read_manifest(&root.join(n)).ok())
        .and_then(|m| m.metrics.get(metric).copied());
    let better = match current {
        None => true,
        Some(c) => (higher_is_better && value > c) || (!higher_is_better && value < c),
    };
    if better && value.is_finite() {
        let name = new_dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        write_atomic(&root.join(BEST), name.as_bytes())?;
    }
    Ok(())
}

fn prune(root: &Path, keep_last: usize) -> Result<()> {
    let keep: Vec<String> = [LATEST, BEST].iter().filter_map(|p| read_pointer(root, p)).collect();
    let steps = list_steps(root);
    let n = steps.len();
    for (i, (_, dir)) in steps.into_iter().enumerate() {
        let name = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        if i + keep_last < n && !keep.contains(&name) {
            retire(root, &dir)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(step: u64, loss: f64) -> SaveRequest {
        SaveRequest {
            step,
            cursor: CursorState { epoch: 0, micro_batch: step },
            world_size: 1,
            lr: 0.1,
            seed: 1,
            optimizer: "sgd".into(),
            optimizer_steps: step,
            metrics: [("eval/loss".to_string(), loss)].into_iter().collect(),
            skipped_steps: 0,
            config: String::new(),
            components: BTreeMap::new(),
            plugins: vec![],
            libtorch_version: "2.11.0".into(),
            model: vec![("w".into(), Tensor::from_slice(&[step as f32, 2.0]))],
            objective: vec![],
            optimizer_state: vec![("step".into(), Tensor::from(step as i64))],
            assets_dir: None,
        }
    }

    #[test]
    fn keeps_last_and_best_and_falls_back_on_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = CheckpointManager::new(dir.path(), 2, "eval/loss", false).unwrap();
        for (s, l) in [(1, 0.5), (2, 0.1), (3, 0.4), (4, 0.3)] {
            m.save(req(s, l)).unwrap();
        }
        m.wait().unwrap();
        let steps: Vec<u64> = m.list().iter().map(|(s, _)| *s).collect();
        assert_eq!(steps, vec![2, 3, 4], "last two plus the best (step 2)");
        let latest = m.latest_valid().unwrap().unwrap();
        assert_eq!(latest.manifest.step, 4);
        // Flip a byte in the newest model file: detected, and the previous checkpoint is used.
        let f = latest.dir.join("model.safetensors");
        let mut bytes = std::fs::read(&f).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&f, bytes).unwrap();
        let err = Checkpoint::open_verified(&latest.dir).unwrap_err().to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
        assert_eq!(m.latest_valid().unwrap().unwrap().manifest.step, 3);
        let w = m.latest_valid().unwrap().unwrap().tensors("model").unwrap();
        assert_eq!(Vec::<f32>::try_from(&w[0].1).unwrap(), vec![3.0, 2.0]);
    }

    #[test]
    fn non_finite_metrics_read_back_as_nan() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = CheckpointManager::new(dir.path(), 2, "", false).unwrap();
        let mut r = req(3, 1.0);
        r.metrics.insert("grad_norm".into(), f64::NAN);
        m.save(r).unwrap();
        m.wait().unwrap();
        let c = m.latest_valid().unwrap().expect("a checkpoint with a NaN metric still loads");
        assert!(c.manifest.metrics["grad_norm"].is_nan());
        assert_eq!(c.manifest.metrics["eval/loss"], 1.0);
    }

    #[test]
    fn truncated_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = CheckpointManager::new(dir.path(), 2, "", false).unwrap();
        m.save(req(7, 1.0)).unwrap();
        let d = m.wait().unwrap().unwrap();
        let f = d.join("model.safetensors");
        let len = std::fs::metadata(&f).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&f).unwrap().set_len(len - 3).unwrap();
        let err = Checkpoint::open_verified(&d).unwrap_err().to_string();
        assert!(err.contains("model.safetensors") && err.contains("truncated"), "{err}");
        assert!(m.latest_valid().unwrap().is_none());
    }

    #[test]
    fn leftover_temp_dir_is_cleaned_and_previous_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = CheckpointManager::new(dir.path(), 2, "", false).unwrap();
        m.save(req(1, 1.0)).unwrap();
        m.wait().unwrap();
        let stale = dir.path().join("checkpoints/.tmp-step-00000002-999");
        std::fs::create_dir_all(&stale).unwrap();
        std::fs::write(stale.join("model.safetensors"), b"partial").unwrap();
        let m2 = CheckpointManager::new(dir.path(), 2, "", false).unwrap();
        assert!(!stale.exists());
        assert_eq!(m2.latest_valid().unwrap().unwrap().manifest.step, 1);
    }

    fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
        let path = dir.join(MANIFEST);
        let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        edit(&mut v);
        std::fs::write(&path, v.to_string()).unwrap();
    }

    #[test]
    fn a_manifest_must_list_what_every_checkpoint_has_and_nothing_less() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = CheckpointManager::new(dir.path(), 3, "", false).unwrap();
        for s in [1, 2] {
            m.save(req(s, 1.0)).unwrap();
        }
        let d = m.wait().unwrap().unwrap();
        // The model's entry dropped from the manifest: the file is no longer verified, so the
        // checkpoint is incomplete (it used to verify "ok" and resume with random weights).
        edit_manifest(&d, |v| {
            v["files"].as_object_mut().unwrap().remove("model.safetensors");
        });
        let err = Checkpoint::open_verified(&d).unwrap_err().to_string();
        assert!(err.contains("incomplete") && err.contains("model.safetensors"), "{err}");
        assert_eq!(m.latest_valid().unwrap().unwrap().manifest.step, 1, "falls back to the complete one");
        // Both entry and file gone: still incomplete, not "ok with fewer files".
        std::fs::remove_file(d.join("model.safetensors")).unwrap();
        assert!(Checkpoint::open_verified(&d).unwrap_err().to_string().contains("lists no model.safetensors"));
        // A file the manifest does not list (here a stray objective file) is refused too.
        let one = &m.list()[0].1;
        std::fs::write(one.join("objective.safetensors"), b"not saved by pt").unwrap();
        let err = Checkpoint::open_verified(one).unwrap_err().to_string();
        assert!(err.contains("objective.safetensors is in the directory but not in the manifest"), "{err}");
    }

    #[test]
    fn latest_never_leads_outside_the_run() {
        let elsewhere = tempfile::tempdir().unwrap();
        let mut other = CheckpointManager::new(elsewhere.path(), 2, "", false).unwrap();
        other.save(req(9, 1.0)).unwrap();
        let foreign = other.wait().unwrap().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut m = CheckpointManager::new(dir.path(), 2, "", false).unwrap();
        m.save(req(1, 1.0)).unwrap();
        m.wait().unwrap();
        std::fs::write(m.root.join(LATEST), foreign.to_string_lossy().as_bytes()).unwrap();
        assert_eq!(m.latest_valid().unwrap().unwrap().manifest.step, 1, "an absolute path in `latest` is ignored");
        std::fs::write(m.root.join(LATEST), b"../../x/checkpoints/step-00000009").unwrap();
        assert_eq!(m.latest_valid().unwrap().unwrap().manifest.step, 1, "a relative escape too");
        // A step directory that is a symbolic link to another run's checkpoint is not one of ours.
        std::os::unix::fs::symlink(&foreign, m.root.join("step-00000009")).unwrap();
        std::fs::write(m.root.join(LATEST), b"step-00000009").unwrap();
        assert_eq!(m.latest_valid().unwrap().unwrap().manifest.step, 1, "a linked step directory too");
    }
}
