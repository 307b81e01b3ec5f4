//! BERT's masking, decided per sample on the CPU from counter-based random streams: a sample's
//! mask depends on (seed, stream, epoch, sample index) only, never on batch composition,
//! world size or resume point.

use pt_sdk::rng::CounterRng;
use pt_sdk::{PluginConfig, PtError, Result};
use serde::{Deserialize, Serialize};

/// Random stream of training masks: counters (epoch, sample index).
pub const STREAM_MLM: u64 = 0x004d_4c4d;
/// Random stream of evaluation masks: counters (sample index), fixed across checkpoints.
pub const STREAM_MLM_EVAL: u64 = 0x0045_564d_4c4d;

/// The masking parameters, shared by the `mlm` objective and the `mlm_eval` evaluator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, PluginConfig)]
#[serde(default, deny_unknown_fields)]
#[config(validate = MaskingConfig::check_shares)]
pub struct MaskingConfig {
    /// share of (non-special, non-padding) tokens chosen for prediction
    #[config(default = 0.15)]
    pub mask_prob: f64,
    /// share of chosen tokens replaced by [MASK]
    #[config(default = 0.8)]
    pub mask_token_prob: f64,
    /// share of chosen tokens replaced by a random non-special token (the rest stay as they are)
    #[config(default = 0.1)]
    pub random_token_prob: f64,
    /// id of [MASK] (4 when neither the recipe nor the dataset sets it)
    #[config(input, optional)]
    pub mask_token_id: Option<i64>,
    /// id of [PAD], never chosen (0 when neither the recipe nor the dataset sets it)
    #[config(input, optional)]
    pub pad_token_id: Option<i64>,
    /// ids never chosen ([PAD] [UNK] [CLS] [SEP] [MASK]; [0, 1, 2, 3, 4] when neither the recipe nor
    /// the dataset sets them)
    #[config(input, optional)]
    pub special_token_ids: Option<Vec<i64>>,
    /// the model's vocabulary (from the architecture, else the dataset): random replacements
    /// are drawn from [0, vocab_size), and input ids are checked against it
    #[config(input, optional)]
    pub vocab_size: Option<i64>,
}

/// What a null id key means when the dataset did not fill it: the layout of tokenizers that
/// `pt_kit::text::train_wordpiece` makes.
const DEFAULT_MASK_TOKEN_ID: i64 = 4;
const DEFAULT_PAD_TOKEN_ID: i64 = 0;
const DEFAULT_SPECIAL_TOKEN_IDS: [i64; 5] = [0, 1, 2, 3, 4];

impl MaskingConfig {
    /// The checks across keys (and `mask_prob`'s range, in the words recipes see).
    fn check_shares(&self) -> Result<()> {
        if !(self.mask_prob > 0.0 && self.mask_prob <= 1.0) {
            return Err(PtError::config(format!("mask_prob must be in (0, 1], got {}", self.mask_prob)));
        }
        let (m, r) = (self.mask_token_prob, self.random_token_prob);
        if !(m >= 0.0 && r >= 0.0 && m + r <= 1.0) {
            return Err(PtError::config(format!(
                "mask_token_prob ({m}) and random_token_prob ({r}) must be >= 0 and sum to at most 1"
            )));
        }
        Ok(())
    }
}

/// What masking did to a batch: `positions` are flat indices (row * len + t) in row-major order,
/// `labels` the original ids there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Masked {
    pub positions: Vec<i64>,
    pub labels: Vec<i64>,
}

#[derive(Debug)]
pub struct Masking {
    config: MaskingConfig,
    mask_token_id: i64,
    /// Sorted ids never chosen nor drawn as random replacements.
    never: Vec<i64>,
}

impl Masking {
    pub fn new(config: MaskingConfig, who: &str) -> Result<Self> {
        let c = &config;
        pt_sdk::Config::validate(c).map_err(|e| e.context(who))?;
        let mask_token_id = c.mask_token_id.unwrap_or(DEFAULT_MASK_TOKEN_ID);
        let mut never = c.special_token_ids.clone().unwrap_or_else(|| DEFAULT_SPECIAL_TOKEN_IDS.to_vec());
        never.push(c.pad_token_id.unwrap_or(DEFAULT_PAD_TOKEN_ID));
        never.push(mask_token_id);
        never.sort_unstable();
        never.dedup();
        if c.random_token_prob > 0.0 {
            let vocab = c.vocab_size.ok_or_else(|| {
                PtError::config(format!(
                    "{who}: vocab_size is not set, and random replacement (random_token_prob {}) needs it. pt fills it \
                     from the architecture's vocab_size or the dataset's notes.vocab_size; otherwise set it to the \
                     tokenizer's vocabulary size",
                    c.random_token_prob
                ))
            })?;
            let specials_inside = never.iter().filter(|&&t| (0..vocab).contains(&t)).count() as i64;
            if vocab <= specials_inside {
                return Err(PtError::config(format!(
                    "{who}: vocab_size {vocab} leaves no ordinary token to draw random replacements from"
                )));
            }
        }
        if c.mask_token_prob > 0.0 && mask_token_id < 0 {
            return Err(PtError::config(format!("{who}: mask_token_id {mask_token_id} is negative")));
        }
        Ok(Masking { config, mask_token_id, never })
    }

    pub fn config(&self) -> &MaskingConfig {
        &self.config
    }

    fn maskable(&self, id: i64) -> bool {
        self.never.binary_search(&id).is_err()
    }

    fn random_token(&self, rng: &mut CounterRng) -> i64 {
        // vocab_size is validated in `new` whenever random replacement is on.
        let vocab = self.config.vocab_size.unwrap_or(1).max(1) as u64;
        loop {
            let t = rng.below(vocab) as i64;
            if self.maskable(t) {
                return t;
            }
        }
    }

    /// Corrupts `ids` ([rows, len] row-major) in place. `real` (same shape, 1 = real token) excludes
    /// padding; `rng_for_row(r)` gives row r's random stream. Every non-special real token is
    /// chosen with `mask_prob`; a chosen one becomes [MASK] / a random token / stays, with
    /// 80/10/10 (by default). If nothing was chosen in the whole batch, one token of the first
    /// row that has candidates is (the loss needs at least one).
    pub fn apply(
        &self,
        ids: &mut [i64],
        len: usize,
        real: Option<&[i64]>,
        rng_for_row: impl Fn(usize) -> CounterRng,
    ) -> Result<Masked> {
        let c = &self.config;
        let rows = ids.len().checked_div(len).unwrap_or(0);
        let candidate = |i: usize, ids: &[i64]| real.is_none_or(|r| r[i] != 0) && self.maskable(ids[i]);
        let mut masked = Masked { positions: Vec::new(), labels: Vec::new() };
        for row in 0..rows {
            let mut rng = rng_for_row(row);
            for i in row * len..(row + 1) * len {
                if candidate(i, ids) && rng.next_f64() < c.mask_prob {
                    self.corrupt(ids, i, &mut rng, &mut masked);
                }
            }
        }
        if masked.positions.is_empty() {
            let first = (0..rows).find_map(|row| {
                let cands: Vec<usize> = (row * len..(row + 1) * len).filter(|&i| candidate(i, ids)).collect();
                (!cands.is_empty()).then_some((row, cands))
            });
            let Some((row, cands)) = first else {
                return Err(PtError::data(
                    "mlm: the batch has no token that may be masked (all padding or special tokens)",
                ));
            };
            // A stream apart from the row's ordinary draws: the choice is deterministic too.
            let mut rng = rng_for_row(row);
            rng.next_u64();
            let i = cands[rng.below(cands.len() as u64) as usize];
            self.corrupt(ids, i, &mut rng, &mut masked);
        }
        Ok(masked)
    }

    fn corrupt(&self, ids: &mut [i64], i: usize, rng: &mut CounterRng, masked: &mut Masked) {
        let c = &self.config;
        masked.positions.push(i as i64);
        masked.labels.push(ids[i]);
        let r = rng.next_f64();
        if r < c.mask_token_prob {
            ids[i] = self.mask_token_id;
        } else if r < c.mask_token_prob + c.random_token_prob {
            ids[i] = self.random_token(rng);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masking() -> Masking {
        Masking::new(MaskingConfig { vocab_size: Some(100), ..Default::default() }, "test").unwrap()
    }

    #[test]
    fn padding_and_specials_are_never_chosen() {
        let m = masking();
        let mut ids: Vec<i64> = (0..64).map(|i| if i % 8 == 0 { 2 } else { 10 + i % 50 }).collect();
        let real: Vec<i64> = (0..64).map(|i| (i % 32 < 28) as i64).collect();
        let before = ids.clone();
        let out = m.apply(&mut ids, 32, Some(&real), |r| CounterRng::new(1, &[r as u64])).unwrap();
        for &p in &out.positions {
            assert_ne!(before[p as usize], 2);
            assert_eq!(real[p as usize], 1);
        }
        for (i, (&a, &b)) in before.iter().zip(&ids).enumerate() {
            if a != b {
                assert!(out.positions.contains(&(i as i64)));
            }
        }
    }

    #[test]
    fn at_least_one_position_and_an_error_when_none_is_possible() {
        let m =
            Masking::new(MaskingConfig { mask_prob: 1e-9, vocab_size: Some(100), ..Default::default() }, "t").unwrap();
        let mut ids = vec![2, 50, 51, 3];
        let out = m.apply(&mut ids, 4, None, |r| CounterRng::new(1, &[r as u64])).unwrap();
        assert_eq!(out.positions.len(), 1);
        assert!([1, 2].contains(&out.positions[0]));
        let mut specials = vec![2, 3, 0, 0];
        assert!(m.apply(&mut specials, 4, None, |r| CounterRng::new(1, &[r as u64])).is_err());
    }

    #[test]
    fn bad_configs_are_rejected() {
        assert!(Masking::new(MaskingConfig::default(), "t").unwrap_err().message.contains("vocab_size"));
        let c =
            MaskingConfig { mask_token_prob: 0.9, random_token_prob: 0.2, vocab_size: Some(9), ..Default::default() };
        assert!(Masking::new(c, "t").is_err());
        let no_random = MaskingConfig { random_token_prob: 0.0, ..Default::default() };
        assert!(Masking::new(no_random, "t").is_ok());
    }
}
