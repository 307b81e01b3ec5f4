//! Run configuration: a TOML recipe, `--set key=value` overrides, validation with did-you-mean,
//! and `{data}` / `{run}` expansion in component settings.
//!
//! ```toml
//! [run]            # host settings: see RunConfig
//! max_steps = 300
//! [data]           # `name` picks the dataset; every other key is the dataset's config
//! name = "text"
//! [arch]           # same for the architecture ...
//! name = "bert"
//! [objective]      # ... and the objective
//! name = "mlm"
//! [optim]          # optimizer (pt-optim)
//! [schedule]       # learning-rate schedule (pt-optim)
//! [[eval]]         # evaluators: `name`, `every`, `splits` (split -> dataset table), config keys
//! ```

mod keys;
mod recipe;

pub use keys::{check_keys, suggest};
pub use recipe::*;
