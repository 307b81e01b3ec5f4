//! Which rank stopped making progress. A thread of every rank publishes, once a second, the last
//! step the rank finished (`pt/heartbeat/<rank>` = `<step> <unix ms>` in the store). A rank that
//! is stopped (SIGSTOP, a frozen machine) falls silent while the healthy ones, even those
//! waiting in a collective, keep beating; when a collective fails, the rank that notices reads
//! the others' heartbeats, names the silent one, and tells a local `pt launch` through
//! `$PT_LAUNCH_DIR/stalled` so its summary blames that rank rather than the healthy one that
//! gave up waiting.

use super::group::Group;
use crate::Result;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const BEAT_EVERY: Duration = Duration::from_secs(1);
/// A heartbeat older than this means the rank is not running.
const SILENT_AFTER: Duration = Duration::from_secs(3);
/// How long a diagnosis waits for the store.
const READ_LIMIT: Duration = Duration::from_secs(5);
/// Where `pt launch` hears which rank stalled (a directory it made; absent without `pt launch`).
pub const LAUNCH_DIR_ENV: &str = "PT_LAUNCH_DIR";
/// The file in it: `<rank> <step>` of the rank that stopped making progress.
pub const STALLED_FILE: &str = "stalled";

/// This rank's side: the step to publish and whether to stop.
#[derive(Default)]
pub(crate) struct Progress {
    step: AtomicU64,
    closing: AtomicBool,
}

fn key(rank: u64) -> String {
    format!("pt/heartbeat/{rank}")
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A peer's last published progress.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Beat {
    rank: u64,
    step: u64,
    age_s: f64,
}

/// The peer silent for longest, if it is silent (None: every peer is running; the failure is
/// something else).
fn laggard(beats: &[Beat]) -> Option<Beat> {
    let worst = beats.iter().max_by(|a, b| a.age_s.total_cmp(&b.age_s))?;
    (worst.age_s >= SILENT_AFTER.as_secs_f64()).then_some(*worst)
}

impl Group {
    /// Starts this rank's heartbeat thread (it ends with the group).
    pub fn start_heartbeat(self: &Arc<Self>) {
        let group: Weak<Group> = Arc::downgrade(self);
        let spawned = std::thread::Builder::new().name("pt-heartbeat".into()).spawn(move || loop {
            let Some(g) = group.upgrade().filter(|g| !g.progress.closing.load(Ordering::SeqCst)) else { return };
            let beat = format!("{} {}", g.progress.step.load(Ordering::SeqCst), unix_ms());
            if let Err(e) = g.store_set_plain(&key(g.rank), beat.as_bytes()) {
                tracing::debug!("heartbeat not published: {e}");
            }
            drop(g);
            std::thread::sleep(BEAT_EVERY);
        });
        if let Err(e) = spawned {
            tracing::warn!("no heartbeat thread ({e}): a stalled rank will not be named");
        }
    }

    /// Records that this rank finished `step` (published by the heartbeat thread).
    pub fn heartbeat(&self, step: u64) {
        self.progress.step.store(step, Ordering::SeqCst);
    }

    /// Stops the heartbeat thread (at shutdown).
    pub(super) fn stop_heartbeat(&self) {
        self.progress.closing.store(true, Ordering::SeqCst);
    }

    fn read_beat(&self, rank: u64) -> Result<Option<Beat>> {
        let bytes = self.store_get_within(&key(rank), Some(READ_LIMIT))?;
        let text = String::from_utf8_lossy(&bytes);
        let mut parts = text.split_whitespace().map(str::parse::<u64>);
        Ok(match (parts.next(), parts.next()) {
            (Some(Ok(step)), Some(Ok(ms))) => {
                Some(Beat { rank, step, age_s: unix_ms().saturating_sub(ms) as f64 / 1000.0 })
            }
            _ => None,
        })
    }

    /// After a failed collective: `"; rank R stopped making progress …"`, or an empty string
    /// when the heartbeats do not tell (none published yet, everyone current).
    pub(super) fn diagnose_stall(&self) -> String {
        let own_step = self.progress.step.load(Ordering::SeqCst);
        let mut beats = Vec::new();
        for rank in (0..self.world_size).filter(|r| *r != self.rank) {
            match self.read_beat(rank) {
                Ok(Some(beat)) => beats.push(beat),
                Ok(None) => {}
                // The store lives in rank 0: no answer means rank 0 is stopped, hung or gone.
                Err(_) if self.rank != 0 => return self.blame(0, None, "the store it serves does not answer"),
                Err(_) => return String::new(),
            }
        }
        match laggard(&beats) {
            Some(b) => self.blame(
                b.rank,
                Some(b.step),
                &format!(
                    "its last heartbeat was at step {}, {:.0} s ago; this rank is at step {own_step}",
                    b.step, b.age_s
                ),
            ),
            None => String::new(),
        }
    }

    fn blame(&self, rank: u64, step: Option<u64>, evidence: &str) -> String {
        if let Some(dir) = std::env::var_os(LAUNCH_DIR_ENV) {
            let line = format!("{rank} {}", step.map_or("-".to_string(), |s| s.to_string()));
            let _ = std::fs::write(std::path::Path::new(&dir).join(STALLED_FILE), line);
        }
        format!("; rank {rank} stopped making progress ({evidence})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_silent_peer_is_named_and_running_peers_are_not() {
        let beat = |rank, step, age_s| Beat { rank, step, age_s };
        assert_eq!(laggard(&[beat(1, 41, 12.0), beat(2, 41, 0.5)]), Some(beat(1, 41, 12.0)));
        assert_eq!(laggard(&[beat(1, 42, 0.4), beat(2, 42, 1.9)]), None, "waiting in a collective is not silence");
        assert_eq!(laggard(&[]), None);
    }
}
