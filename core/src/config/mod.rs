//! Run configuration: a TOML recipe parsed into typed sections, `--set key=value` / `--set ~key`
//! overrides, every key and value checked at parse time with did-you-mean.
//!
//! ```toml
//! [run]            # host settings: see RunConfig
//! max_steps = 300
//! [checkpoint]     # when to save, what to keep: see CheckpointConfig
//! [data]           # `name` picks the dataset; every other key is the dataset's config
//! name = "text"
//! [arch]           # same for the architecture (or [arch.ROLE] tables, one per role) ...
//! name = "bert"
//! [objective]      # ... and the objective (or [[objective.mix]] entries)
//! name = "mlm"
//! [optim]          # lr, freeze, lr_mult and the optimizer (pt-optim)
//! [schedule]       # learning-rate schedule (pt-optim)
//! [[eval]]         # evaluators: `name`, `every`, `splits` (split -> dataset table), config keys
//! ```
//! Components' own keys are checked against the components when the recipe becomes a run plan
//! ([`crate::plan`]).

mod checkpoint;
mod diff;
mod init_from;
mod keys;
mod optim;
mod overrides;
mod recipe;
mod run;
mod section;

pub use checkpoint::{BestMode, CheckpointConfig};
pub use diff::{changes, Change};
pub use init_from::InitFrom;
pub use keys::{check_keys, suggest};
pub use optim::OptimSettings;
pub use overrides::apply_override;
pub use recipe::*;
pub use run::{cpu_count, DeviceSetting, DistBackendSetting, MemoryFormatSetting, PrecisionSetting, RunConfig};
pub use section::{keys_of, parse_section};
