//! The shared trainer: one loop for every objective.

pub(crate) mod checkpointing;
pub mod device_syncs;
pub mod eval;
mod grad_watch;
mod health;
mod host_read;
pub mod interrupt;
pub mod observer;
pub mod prefetch;
pub mod resume;
pub mod run_lock;
mod run_log;
pub mod sampler;
pub mod session;
mod step;
pub mod trainer;
pub mod weights;

pub use observer::{NullObserver, Observer};
pub use session::Session;
pub use trainer::{RunSummary, StopReason, Trainer};
