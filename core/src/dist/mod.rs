//! Multi-process data parallelism on PyTorch's c10d (TCPStore + Gloo or NCCL): the torchrun environment,
//! the process group, and the start-up agreement check. The trainer shards data by rank from
//! the same seed counters, all-reduces the flat gradient buffer in buckets (overlapped with
//! backward), reduces metrics and lets rank 0 write checkpoints; `pt launch` starts the
//! processes. docs/distributed.md.

mod env;
mod group;
mod heartbeat;
mod overlap;

pub use env::DistEnv;
pub use group::{Backend, Group};
pub use heartbeat::{LAUNCH_DIR_ENV, STALLED_FILE};
pub use overlap::GradReducer;

use crate::checkpoint::PluginRecord;
use crate::{Error, Result};
use pt_sdk::abi_stable::std_types::RResult;
use pt_sdk::ffi::HostServices;
use pt_sdk::{ErrorKind, PtError, PtTensor};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};

/// The process group of this process, once joined (plugins reach it through [`host_services`]).
static CURRENT: OnceLock<Arc<Group>> = OnceLock::new();

/// Makes `group` the one plugins' collectives use (set once, when the process joins).
pub fn set_current(group: Arc<Group>) {
    let _ = CURRENT.set(group);
}

/// What the host offers every plugin it loads.
pub fn host_services() -> HostServices {
    HostServices { all_gather: host_all_gather, all_reduce_sum: host_all_reduce_sum }
}

extern "C" fn host_all_gather(t: &PtTensor) -> RResult<PtTensor, PtError> {
    host_collective("all_gather", || {
        let input = t.share().detach();
        match CURRENT.get() {
            None => Ok(input),
            Some(group) => group.all_gather(&input),
        }
    })
}

extern "C" fn host_all_reduce_sum(t: &PtTensor) -> RResult<PtTensor, PtError> {
    host_collective("all_reduce_sum", || match CURRENT.get() {
        None => Ok(t.share()),
        Some(group) => group.all_reduce_sum_differentiable(&t.share()),
    })
}

/// A collective for a plugin: errors and panics become the plugin's `PtError`.
fn host_collective(name: &str, body: impl FnOnce() -> Result<tch::Tensor>) -> RResult<PtTensor, PtError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(Ok(out)) => RResult::ROk(PtTensor::from_tch(out)),
        Ok(Err(e)) => RResult::RErr(PtError::new(ErrorKind::Other, e.to_string())),
        Err(_) => RResult::RErr(PtError::new(ErrorKind::Panic, format!("the host's {name} panicked"))),
    }
}

/// What every rank must agree on before training: world size, plugin builds, resolved config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub world_size: u64,
    /// Every loaded plugin, sorted by name (as recorded in checkpoints).
    pub plugins: Vec<PluginRecord>,
    pub config: String,
}

/// Publishes this rank's fingerprint and compares every other rank's with it; a mismatch is
/// the same one-line error on every rank, naming the rank and what differs.
pub fn check_agreement(group: &Group, mine: &Fingerprint) -> Result<()> {
    let json = serde_json::to_vec(mine).map_err(|e| Error::Distributed(format!("fingerprint: {e}")))?;
    group.store_set(&format!("pt/fingerprint/{}", group.rank), &json)?;
    let mut problems = Vec::new();
    let rank0: Fingerprint = read(group, 0)?;
    for r in 1..group.world_size {
        let other: Fingerprint = read(group, r)?;
        if let Some(d) = difference(&rank0, &other) {
            problems.push(format!("rank {r} differs from rank 0: {d}"));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::Distributed(format!(
        "the ranks disagree, so none will train: {}. Give every rank the same plugin files, recipe and WORLD_SIZE",
        problems.join("; ")
    )))
}

/// Rank 0 tells the others how work only it does went: "" or its error. On an error it waits
/// (a few seconds at most) until every rank has read it, since the store it serves goes when it
/// exits. A failure to tell is logged: the caller still returns its own error.
pub fn publish_outcome(group: &Group, key: &str, error: Option<&Error>) {
    let message = error.map(|e| e.to_string()).unwrap_or_default();
    if let Err(e) = group.store_set(&format!("pt/outcome/{key}"), message.as_bytes()) {
        tracing::warn!("could not tell the other ranks how rank 0's {key} went: {e}");
        return;
    }
    if error.is_some() {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        for r in 1..group.world_size {
            // A rank that cannot answer by then is stopping anyway.
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || group.store_get_within(&format!("pt/outcome/{key}/read/{r}"), Some(left)).is_err() {
                break;
            }
        }
    }
}

/// The other ranks' side of [`publish_outcome`]: Ok when rank 0 succeeded, else its error (so
/// every rank stops with the same message), or that rank 0 stopped before it could say.
pub fn await_outcome(group: &Group, key: &str, what: &str) -> Result<()> {
    let message = group.store_get(&format!("pt/outcome/{key}")).map_err(|e| {
        Error::Distributed(format!(
            "rank {} stops: rank 0 stopped before it could {what} (its error is in its output and train.log): {e}",
            group.rank
        ))
    })?;
    if message.is_empty() {
        return Ok(());
    }
    group.stop_heartbeat();
    let _ = group.store_set(&format!("pt/outcome/{key}/read/{}", group.rank), b"1");
    Err(Error::Distributed(format!(
        "rank {} stops: rank 0 could not {what}: {}",
        group.rank,
        String::from_utf8_lossy(&message)
    )))
}

fn read(group: &Group, rank: u64) -> Result<Fingerprint> {
    let bytes = group.store_get(&format!("pt/fingerprint/{rank}"))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Distributed(format!("rank {rank}'s fingerprint: {e}")))
}

/// The first thing that differs, in words.
fn difference(a: &Fingerprint, b: &Fingerprint) -> Option<String> {
    if a.world_size != b.world_size {
        return Some(format!("WORLD_SIZE {} vs {}", b.world_size, a.world_size));
    }
    let short = |sha: &str| sha[..sha.len().min(12)].to_string();
    for mine in &a.plugins {
        match b.plugins.iter().find(|p| p.name == mine.name) {
            None => return Some(format!("plugin {} is not loaded there", mine.name)),
            Some(theirs) if theirs != mine => {
                return Some(format!(
                    "plugin {} {} (sha256 {}) there vs {} (sha256 {}) on rank 0",
                    mine.name,
                    theirs.version,
                    short(&theirs.sha256),
                    mine.version,
                    short(&mine.sha256)
                ))
            }
            _ => {}
        }
    }
    if let Some(extra) = b.plugins.iter().find(|p| !a.plugins.iter().any(|m| m.name == p.name)) {
        return Some(format!("plugin {} is loaded there but not on rank 0", extra.name));
    }
    if a.config != b.config {
        let line = a.config.lines().zip(b.config.lines()).find(|(x, y)| x != y);
        return Some(match line {
            Some((x, y)) => format!("config line `{y}` there vs `{x}` on rank 0"),
            None => "the resolved config differs".to_string(),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_named() {
        let a = Fingerprint {
            world_size: 2,
            plugins: vec![PluginRecord {
                name: "resnet".into(),
                version: "0.1.0".into(),
                sha256: "abcdef0123456789".into(),
            }],
            config: "[run]\nseed = 0\n".into(),
        };
        assert_eq!(difference(&a, &a.clone()), None);
        let mut b = a.clone();
        b.plugins[0].sha256 = "ffffff0123456789".into();
        assert!(difference(&a, &b).unwrap().contains("plugin resnet 0.1.0 (sha256 ffffff012345) there"));
        let mut c = a.clone();
        c.config = "[run]\nseed = 1\n".into();
        assert!(difference(&a, &c).unwrap().contains("`seed = 1` there vs `seed = 0`"));
        let mut d = a.clone();
        d.plugins.clear();
        assert!(difference(&a, &d).unwrap().contains("not loaded there"));
    }
}
