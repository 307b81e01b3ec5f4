//! The shared trainer: one loop for every objective.

pub mod eval;
pub mod observer;
pub mod prefetch;
pub mod sampler;
pub mod session;
pub mod trainer;
pub mod weights;

pub use observer::{NullObserver, Observer};
pub use session::{data_dir, Session, SessionOptions};
pub use trainer::{RunSummary, StopReason, Trainer};
