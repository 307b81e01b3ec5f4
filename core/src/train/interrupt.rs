//! The user's request to stop (Ctrl-C, SIGTERM, SIGHUP), visible to long work that runs inside
//! one trainer call: pt's own evaluators check it between their steps, so an interrupt during
//! the end-of-run fine-tunes stops them instead of being noticed only once they finish.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Makes `flag` (the trainer's stop flag, set by the binary's signal handlers) the one
/// [`requested`] reads. The first call wins: a process has one set of signal handlers.
pub fn watch(flag: Arc<AtomicBool>) {
    let _ = FLAG.set(flag);
}

/// Whether the user asked the run to stop.
pub fn requested() -> bool {
    FLAG.get().is_some_and(|f| f.load(Ordering::SeqCst))
}

/// The error a built-in evaluator returns when it stops early for an interrupt.
pub fn check(evaluator: &str) -> pt_sdk::Result<()> {
    if requested() {
        return Err(pt_sdk::PtError::new(pt_sdk::ErrorKind::Other, format!("{evaluator}: stopped by an interrupt")));
    }
    Ok(())
}
