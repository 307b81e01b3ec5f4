//! `[objective]` keys of `denoise`, with their defaults and descriptions (`pt plugin info denoise`).

use pt_sdk::{Config, InputDecl};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DenoiseConfig {
    pub field: String,
    pub corrupt_prob: f64,
    pub noise_std: f64,
    pub mask_token_id: Option<i64>,
    pub special_token_ids: Option<Vec<i64>>,
    pub feature_dim: Option<i64>,
    pub predictor_hidden: i64,
    pub variance_weight: f64,
}

impl Default for DenoiseConfig {
    fn default() -> Self {
        DenoiseConfig {
            field: "input_ids".into(),
            corrupt_prob: 0.15,
            noise_std: 0.5,
            // `null` keys are filled in by pt: token ids from the dataset's notes (a text
            // dataset reports its tokenizer's), `feature_dim` from the architecture.
            mask_token_id: None,
            special_token_ids: None,
            feature_dim: None,
            predictor_hidden: 512,
            variance_weight: 1.0,
        }
    }
}

impl Config for DenoiseConfig {
    fn inputs() -> Vec<InputDecl> {
        // Filled by pt from the run's other components when the recipe leaves them unset.
        vec![
            InputDecl::key("mask_token_id").optional(),
            InputDecl::key("special_token_ids").optional(),
            InputDecl::key("feature_dim"),
        ]
    }

    fn describe() -> &'static [(&'static str, &'static str)] {
        &[
            ("field", "the batch field to corrupt: integer token ids are masked, float inputs get Gaussian noise"),
            ("corrupt_prob", "share of ordinary (non-special) tokens replaced by [MASK] in the corrupted view"),
            ("noise_std", "standard deviation of the Gaussian noise added to a float field"),
            ("mask_token_id", "id of [MASK]; null: the dataset's notes.mask_token_id"),
            (
                "special_token_ids",
                "ids never corrupted ([PAD] [CLS] [SEP]...); null: the dataset's notes.special_token_ids",
            ),
            ("feature_dim", "width of the architecture's `features`; null: filled in by pt from the architecture"),
            ("predictor_hidden", "hidden width of the predictor head (Linear → GELU → Linear)"),
            (
                "variance_weight",
                "weight of the variance term that keeps features from collapsing (VICReg's std hinge); 0: off",
            ),
        ]
    }
}

impl DenoiseConfig {
    /// Rejects values that cannot work, naming the key.
    pub fn validate(&self) -> pt_sdk::Result<()> {
        let bad = |msg: String| Err(pt_sdk::PtError::config(msg));
        if self.field.is_empty() {
            return bad("field must name a batch field (e.g. \"input_ids\")".into());
        }
        if !(0.0..=1.0).contains(&self.corrupt_prob) {
            return bad(format!("corrupt_prob must be in [0, 1], got {}", self.corrupt_prob));
        }
        if self.noise_std.is_nan() || self.noise_std < 0.0 {
            return bad(format!("noise_std must be >= 0, got {}", self.noise_std));
        }
        if self.predictor_hidden < 1 {
            return bad(format!("predictor_hidden must be >= 1, got {}", self.predictor_hidden));
        }
        if self.variance_weight.is_nan() || self.variance_weight < 0.0 {
            return bad(format!("variance_weight must be >= 0, got {}", self.variance_weight));
        }
        match self.feature_dim {
            None => bad("feature_dim is unset and the architecture reports none: set [objective] feature_dim to the width of its `features` output".into()),
            Some(d) if d < 1 => bad(format!("feature_dim must be >= 1, got {d}")),
            Some(_) => Ok(()),
        }
    }
}
