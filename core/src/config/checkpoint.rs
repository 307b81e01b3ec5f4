//! `[checkpoint]`: when a run saves and which checkpoints it keeps (saving itself is the
//! checkpoint manager's; this is the strategy).

use super::section::Check;
use crate::Result;
use serde::{Deserialize, Serialize};

/// Whether a lower or a higher `best_metric` is better.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum BestMode {
    #[default]
    Min,
    Max,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Save every N optimizer steps (0: only at the end of the run).
    pub every: u64,
    /// Checkpoints kept besides the best one and `latest`.
    pub keep_last: u64,
    /// The metric that picks the best checkpoint (e.g. `mlm_eval/mlm_loss`); empty: none.
    pub best_metric: String,
    pub best_mode: BestMode,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig { every: 0, keep_last: 2, best_metric: String::new(), best_mode: BestMode::Min }
    }
}

impl CheckpointConfig {
    pub fn validate(&self) -> Result<()> {
        Check::new("checkpoint").at_least("keep_last", self.keep_last, 1)
    }
}
