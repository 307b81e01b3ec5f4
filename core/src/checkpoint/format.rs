//! What a checkpoint directory holds and how it is verified.
//!
//! ```text
//! step-000300/
//!   model.safetensors       architecture parameters + buffers, reference-implementation names
//!   objective.safetensors   objective-owned parameters + buffers (heads, quantizers), if any
//!   optimizer.safetensors   optimizer state (moments...), flat
//!   assets/                 files the run needs to use the model (tokenizer.json...)
//!   manifest.json           everything else + sha256 of every file above
//! ```

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST: &str = "manifest.json";

/// Where the data stream stands: the next micro-batch to read.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CursorState {
    pub epoch: u64,
    pub micro_batch: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PluginRecord {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FileEntry {
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CheckpointManifest {
    pub format_version: u32,
    pub step: u64,
    pub cursor: CursorState,
    /// Processes that trained it: the cursor counts global micro-batches of
    /// batch_size × world_size samples (older checkpoints: one process).
    #[serde(default = "one_process")]
    pub world_size: u64,
    /// The schedule is a pure function of the step; recorded for inspection.
    pub lr: f64,
    pub seed: u64,
    pub optimizer: String,
    pub optimizer_steps: u64,
    /// Evaluation and training metrics at this step (JSON has no NaN: a non-finite value is
    /// written as `null` and read back as NaN).
    #[serde(deserialize_with = "metrics_from_json")]
    pub metrics: BTreeMap<String, f64>,
    /// Non-finite steps skipped so far.
    pub skipped_steps: u64,
    /// The resolved recipe (TOML).
    pub config: String,
    /// `data` / `arch` / `objective` → `plugin:component`.
    pub components: BTreeMap<String, String>,
    pub plugins: Vec<PluginRecord>,
    pub pt_version: String,
    pub libtorch_version: String,
    pub created_unix: u64,
    /// Relative path → checksum, for every file in the checkpoint.
    pub files: BTreeMap<String, FileEntry>,
}

fn one_process() -> u64 {
    1
}

fn metrics_from_json<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<BTreeMap<String, f64>, D::Error> {
    let m: BTreeMap<String, Option<f64>> = Deserialize::deserialize(d)?;
    Ok(m.into_iter().map(|(k, v)| (k, v.unwrap_or(f64::NAN))).collect())
}

/// A checkpoint on disk whose checksums verified.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub dir: PathBuf,
    pub manifest: CheckpointManifest,
}

impl Checkpoint {
    /// Opens `dir` and verifies it: the manifest lists the files every training checkpoint has
    /// (model and optimizer state), every listed file has its recorded size and sha256, and no
    /// file is there that the manifest does not list.
    pub fn open_verified(dir: &Path) -> Result<Checkpoint> {
        let manifest = read_manifest(dir)?;
        let incomplete = |what: String| {
            Error::Checkpoint(format!("{}: incomplete checkpoint: {what}", dir.join(MANIFEST).display()))
        };
        if let Some(missing) = REQUIRED_FILES.iter().find(|f| !manifest.files.contains_key(**f)) {
            return Err(incomplete(format!("it lists no {missing}, which every pt checkpoint has")));
        }
        if let Some(step) = step_of_dir_name(dir).filter(|s| *s != manifest.step) {
            return Err(incomplete(format!("it is for step {}, but the directory is step {step}", manifest.step)));
        }
        let mut present = Vec::new();
        list_files(dir, dir, &mut present)?;
        if let Some(extra) = present.iter().find(|f| *f != MANIFEST && !manifest.files.contains_key(*f)) {
            return Err(incomplete(format!("{extra} is in the directory but not in the manifest's files")));
        }
        for (rel, entry) in &manifest.files {
            let path = dir.join(rel);
            if !present.contains(rel) {
                return Err(Error::Checkpoint(format!("{}: file missing from checkpoint", path.display())));
            }
            let meta = std::fs::metadata(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            if meta.len() != entry.bytes {
                return Err(Error::Checkpoint(format!(
                    "{}: truncated or altered ({} bytes, manifest says {})",
                    path.display(),
                    meta.len(),
                    entry.bytes
                )));
            }
            let sha = crate::plugin::loader::sha256_file(&path)?;
            if sha != entry.sha256 {
                return Err(Error::Checkpoint(format!("{}: checksum mismatch (file corrupted)", path.display())));
            }
        }
        Ok(Checkpoint { dir: dir.to_path_buf(), manifest })
    }

    /// Named tensors of one file (`model`, `objective`, `optimizer`); empty if the file is absent.
    /// Only files the manifest lists are read (they are the ones verified).
    pub fn tensors(&self, stem: &str) -> Result<Vec<(String, Tensor)>> {
        let name = format!("{stem}.safetensors");
        if !self.manifest.files.contains_key(&name) {
            return Ok(Vec::new());
        }
        read_tensors(&self.dir.join(name))
    }
}

/// Files every checkpoint a training run saves has (the optimizer state always holds at least
/// its step count); `objective.safetensors` and `assets/` exist when there is something to keep.
pub const REQUIRED_FILES: [&str; 2] = ["model.safetensors", "optimizer.safetensors"];

/// `step-00000300` → 300.
pub fn step_of_dir_name(dir: &Path) -> Option<u64> {
    dir.file_name()?.to_str()?.strip_prefix("step-")?.parse().ok()
}

/// Regular files under `dir`, relative to `base` ('/'-separated). A symbolic link is refused: a
/// checkpoint never holds one, and following it would read outside the checkpoint.
fn list_files(base: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    for e in rd {
        let e = e.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let ty = e.file_type().map_err(|err| Error::io(format!("reading {}", e.path().display()), err))?;
        if ty.is_symlink() {
            return Err(Error::Checkpoint(format!(
                "{}: a symbolic link inside a checkpoint; pt never writes one, refusing to follow it",
                e.path().display()
            )));
        }
        if ty.is_dir() {
            list_files(base, &e.path(), out)?;
        } else {
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap_or(&p).to_string_lossy().to_string());
        }
    }
    Ok(())
}

pub fn read_manifest(dir: &Path) -> Result<CheckpointManifest> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::Checkpoint(format!("{}: cannot read ({e}); is this a pt checkpoint directory?", path.display()))
    })?;
    let m: CheckpointManifest = serde_json::from_str(&text)
        .map_err(|e| Error::Checkpoint(format!("{}: not a valid checkpoint manifest ({e})", path.display())))?;
    if m.format_version > FORMAT_VERSION {
        return Err(Error::Checkpoint(format!(
            "{}: checkpoint format {} is newer than this pt understands ({FORMAT_VERSION}); upgrade pt",
            path.display(),
            m.format_version
        )));
    }
    Ok(m)
}

pub fn read_tensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    Tensor::read_safetensors(path).map_err(|e| {
        Error::Checkpoint(format!("{}: cannot read tensors ({})", path.display(), first_line(&e.to_string())))
    })
}

/// Writes CPU copies of `tensors` to `path` and fsyncs it.
pub fn write_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    Tensor::write_safetensors(tensors, path)
        .map_err(|e| Error::Checkpoint(format!("{}: cannot write ({})", path.display(), first_line(&e.to_string()))))?;
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", path.display()), e))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}
