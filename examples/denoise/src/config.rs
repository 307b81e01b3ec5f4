//! `[objective]` keys of `denoise`, with their defaults and descriptions (`pt plugin info denoise`).
//!
//! Each key is written once: its doc comment is the description, `#[config(...)]` its default,
//! its checks (pt runs them when it plans a run, before anything is built) and, with `input`,
//! that pt fills it from another component of the run when the recipe leaves it unset.

use pt_sdk::PluginConfig;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, PluginConfig)]
#[serde(default, deny_unknown_fields)]
pub struct DenoiseConfig {
    /// the batch field to corrupt: integer token ids are masked, float inputs get Gaussian noise
    #[config(default = "input_ids", non_empty)]
    pub field: String,
    /// share of ordinary (non-special) tokens replaced by [MASK] in the corrupted view
    #[config(default = 0.15, min = 0.0, max = 1.0)]
    pub corrupt_prob: f64,
    /// standard deviation of the Gaussian noise added to a float field
    #[config(default = 0.5, min = 0.0)]
    pub noise_std: f64,
    /// id of [MASK] (a text dataset's notes.mask_token_id)
    #[config(input, optional)]
    pub mask_token_id: Option<i64>,
    /// ids never corrupted ([PAD] [CLS] [SEP]...)
    #[config(input, optional)]
    pub special_token_ids: Option<Vec<i64>>,
    /// width of the architecture's `features`
    #[config(input, min = 1)]
    pub feature_dim: i64,
    /// hidden width of the predictor head (Linear → GELU → Linear)
    #[config(default = 512, min = 1)]
    pub predictor_hidden: i64,
    /// weight of the variance term that keeps features from collapsing (VICReg's std hinge); 0: off
    #[config(default = 1.0, min = 0.0)]
    pub variance_weight: f64,
}
