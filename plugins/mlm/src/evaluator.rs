//! `mlm_eval`: held-out MLM loss, perplexity and masked-token accuracy. Masks come from a fixed
//! stream (the config's `seed` and the sample index), so numbers compare across checkpoints and
//! runs.

use crate::masking::{Masking, MaskingConfig, STREAM_MLM_EVAL};
use crate::objective::mask_batch;
use pt_sdk::prelude::*;
use pt_sdk::rng::CounterRng;
use serde::{Deserialize, Serialize};
use tch::Reduction;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, PluginConfig)]
#[serde(default, deny_unknown_fields)]
pub struct MlmEvalConfig {
    /// samples per forward pass
    #[config(default = 32)]
    pub batch_size: usize,
    /// evaluate the first max_batches batches of the split; null: all of it
    #[config(default = Some(100))]
    pub max_batches: Option<u64>,
    /// seed of the evaluation masks (fixed, so checkpoints and runs compare)
    pub seed: u64,
    /// share of (non-special, non-padding) tokens chosen for prediction
    #[config(default = MaskingConfig::default().mask_prob)]
    pub mask_prob: f64,
    /// share of chosen tokens replaced by [MASK]
    #[config(default = MaskingConfig::default().mask_token_prob)]
    pub mask_token_prob: f64,
    /// share of chosen tokens replaced by a random non-special token (the rest stay as they are)
    #[config(default = MaskingConfig::default().random_token_prob)]
    pub random_token_prob: f64,
    /// id of [MASK]; null: the split's notes.mask_token_id, else 4
    pub mask_token_id: Option<i64>,
    /// id of [PAD], never chosen; null: the split's notes.pad_token_id, else 0
    pub pad_token_id: Option<i64>,
    /// ids never chosen; null: the split's notes.special_token_ids, else [0, 1, 2, 3, 4]
    pub special_token_ids: Option<Vec<i64>>,
    /// random replacements are drawn from [0, vocab_size); null: the model's
    pub vocab_size: Option<i64>,
}

pub struct MlmEval {
    config: MlmEvalConfig,
}

impl Component for MlmEval {
    const NAME: &'static str = "mlm_eval";
    const ABOUT: &'static str = "held-out masked-LM loss, perplexity and accuracy (fixed masks)";
    type Config = MlmEvalConfig;

    fn new(config: MlmEvalConfig, _ctx: &CreateCtx) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(PtError::config("mlm_eval: batch_size must be positive"));
        }
        Ok(MlmEval { config })
    }
}

impl MlmEval {
    /// The masking, with null keys taken from the split's notes (the tokenizer's ids) and the
    /// vocabulary size from the model.
    fn masking(&self, notes: &serde_json::Map<String, serde_json::Value>, model_vocab: Option<i64>) -> Result<Masking> {
        let c = &self.config;
        let note = |key: &str| notes.get(key).and_then(|v| v.as_i64());
        let note_ids = notes
            .get("special_token_ids")
            .and_then(|v| v.as_array())
            .map(|ids| ids.iter().filter_map(|v| v.as_i64()).collect::<Vec<_>>());
        Masking::new(
            MaskingConfig {
                mask_prob: c.mask_prob,
                mask_token_prob: c.mask_token_prob,
                random_token_prob: c.random_token_prob,
                mask_token_id: c.mask_token_id.or_else(|| note("mask_token_id")),
                pad_token_id: c.pad_token_id.or_else(|| note("pad_token_id")),
                special_token_ids: c.special_token_ids.clone().or(note_ids),
                vocab_size: c.vocab_size.or(model_vocab),
            },
            "mlm_eval",
        )
    }
}

impl Evaluator for MlmEval {
    fn info(&self) -> EvaluatorInfo {
        EvaluatorInfo {
            splits: vec!["validation".into()],
            needs_fields: vec!["input_ids".into()],
            needs_outputs: vec!["mlm_logits".into()],
            primary_metric: Some("mlm_loss".into()),
            higher_is_better: false,
        }
    }

    /// Leaves the model in eval mode; the trainer sets the mode it needs before training on.
    fn evaluate(&mut self, model: &HostModel<'_>, splits: &Splits<'_>, ctx: &StepCtx) -> Result<EvalReport> {
        let data = splits.get("validation")?;
        let info = data.info()?;
        let num_samples = info.num_samples;
        let model_vocab = model.info()?.config.get("vocab_size").and_then(|v| v.as_i64());
        let masking = self.masking(&info.notes, model_vocab)?;
        let batch_size = self.config.batch_size as u64;
        let batches = num_samples.div_ceil(batch_size).min(self.config.max_batches.unwrap_or(u64::MAX));
        if batches == 0 {
            return Err(PtError::data("mlm_eval: the validation split is empty"));
        }

        model.set_train(false)?;
        let _no_grad = tch::no_grad_guard();
        let (mut nll, mut correct, mut tokens) = (0f64, 0f64, 0u64);
        for b in 0..batches {
            let indices: Vec<u64> = (b * batch_size..((b + 1) * batch_size).min(num_samples)).collect();
            let batch = data.get_batch(&indices, ctx)?;
            let seed = self.config.seed;
            let inputs = mask_batch(&masking, batch, |row| CounterRng::new(seed, &[STREAM_MLM_EVAL, indices[row]]))?;
            let outputs = model.forward(&inputs, ctx)?;
            let logits = outputs.require("mlm_logits")?.f_to_kind(Kind::Float)?;
            let labels = inputs.require("mlm_labels")?;
            nll +=
                logits.f_cross_entropy_loss::<Tensor>(labels, None, Reduction::Sum, -100, 0.0)?.f_double_value(&[])?;
            correct += logits.f_argmax(-1, false)?.f_eq_tensor(labels)?.f_sum(Kind::Float)?.f_double_value(&[])?;
            tokens += labels.size()[0] as u64;
        }
        let loss = nll / tokens as f64;
        tracing::info!(batches, tokens, loss, "mlm_eval done");
        Ok(EvalReport::default()
            .metric("mlm_loss", loss)
            .metric("perplexity", loss.exp())
            .metric("mlm_accuracy", correct / tokens as f64)
            .metric("masked_tokens", tokens as f64))
    }
}
