//! Checkpoints: a directory per save with safetensors for every tensor and a JSON manifest for
//! the rest ([`format`]); atomic writes, `latest`/`best` pointers and retention ([`manager`]).

pub mod format;
pub mod manager;

pub use format::{Checkpoint, CheckpointManifest, CursorState, FileEntry, PluginRecord, FORMAT_VERSION};
pub use manager::{CheckpointManager, SaveRequest};
