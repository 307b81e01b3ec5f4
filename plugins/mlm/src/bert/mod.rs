//! `bert`: BERT with its masked-LM head, parameter-compatible with Hugging Face's
//! `BertForMaskedLM` (same state-dict keys; the decoder is tied to the word embeddings).

pub mod config;
pub mod layers;
pub mod model;

use config::{BertArgs, BertConfig, FeaturePooling};
use layers::Params;
use model::BertForMaskedLM;
use pt_kit::params::Created;
/// Ids an objective checked on the host (MLM, ELECTRA, CLIP's captions) are not read back.
pub use pt_kit::text::IDS_CHECKED;
use pt_sdk::prelude::*;
use pt_sdk::taps::{tap_output, wants_any_tap, wants_tap};

/// The masking rate assumed when counting the MLM head's FLOPs (the `mlm` objective's default).
const ASSUMED_MASK_RATE: f64 = 0.15;

pub struct Bert {
    config: BertConfig,
    model: BertForMaskedLM,
    params: Vec<(String, Tensor)>,
    train: bool,
}

impl Component for Bert {
    const NAME: &'static str = "bert";
    const ABOUT: &'static str = "BERT encoder + MLM head (Hugging Face BertForMaskedLM parameter names)";
    // vocab_size: an MLM objective draws replacements from it and checks ids against it.
    const PROVIDES: &'static [&'static str] = &["feature_dim", "hidden_size", "vocab_size"];
    type Config = BertArgs;

    fn new(args: BertArgs, ctx: &CreateCtx) -> Result<Self> {
        let config = args.resolve()?;
        Self::from_config(config, ctx.seed, ctx.device())
    }
}

impl Bert {
    /// Builds the model on `device` with weights drawn from `seed` (identical on every device).
    pub fn from_config(config: BertConfig, seed: u64, device: Device) -> Result<Self> {
        let created = Created::default();
        let p = Params::new(seed, config.initializer_range, device, &created);
        let model = BertForMaskedLM::new(&p, &config)?;
        drop(p);
        Ok(Bert { config, model, params: created.into_parts().0, train: true })
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// Training FLOPs (forward + backward) per sample of `seq` tokens, counted as 3 × the forward
    /// matmuls (2 FLOPs per multiply-add): the encoder's weight matmuls (6 · params · seq), the
    /// attention scores and weighted sums (12 · layers · hidden · seq²), and the MLM head on the
    /// masked 15 % of positions only (6 · (hidden² + hidden · vocab) · 0.15 · seq). Embedding
    /// lookups, biases, norms and softmax are left out.
    pub fn train_flops_per_sample(&self, seq: i64) -> f64 {
        let c = &self.config;
        let (h, f, layers, v, l) = (
            c.hidden_size as f64,
            c.intermediate_size as f64,
            c.num_hidden_layers as f64,
            c.vocab_size as f64,
            seq as f64,
        );
        let encoder_weights = layers * (4.0 * h * h + 2.0 * h * f);
        let masked = if c.mlm_head { (ASSUMED_MASK_RATE * l).ceil() } else { 0.0 };
        6.0 * encoder_weights * l + 12.0 * layers * h * l * l + 6.0 * (h * h + h * v) * masked
    }

    /// Fails when an id is outside the embedding (a tokenizer with a larger vocabulary than the
    /// model), instead of an index error deep in libtorch (or a device-side assert on CUDA).
    /// One read of the device: skipped for ids an objective checked on the host
    /// ([`IDS_CHECKED`]), where it would be a wait for the GPU every step.
    fn check_ids(&self, ids: &Tensor) -> Result<()> {
        if ids.numel() == 0 {
            return Ok(());
        }
        let vocab = self.config.vocab_size;
        let bad = ids.f_ge(vocab)?.f_logical_or(&ids.f_lt(0)?)?.f_any()?.f_int64_value(&[])? != 0;
        if bad {
            return Err(ids_outside_vocab(ids.f_min()?.f_int64_value(&[])?, ids.f_max()?.f_int64_value(&[])?, vocab));
        }
        Ok(())
    }
}

/// The error for input ids over [min, max] that bert's vocabulary of `vocab` does not hold.
pub fn ids_outside_vocab(min: i64, max: i64, vocab: i64) -> PtError {
    PtError::data(format!(
        "input_ids range over [{min}, {max}] but bert's vocab_size is {vocab}: the tokenizer's vocabulary is \
         larger than the model's embedding. Leave architecture vocab_size unset (it then comes from the \
         dataset's tokenizer) or set it to at least {}",
        max + 1
    ))
}

impl Bert {
    /// `features` from `hidden` [batch, seq, hidden]: the [CLS] state or the mean over real tokens.
    fn pool(&self, hidden: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        Ok(match (self.config.feature_pooling, mask) {
            (FeaturePooling::Cls, _) => hidden.f_select(1, 0)?,
            (FeaturePooling::Mean, None) => hidden.f_mean_dim(1, false, None)?,
            (FeaturePooling::Mean, Some(mask)) => {
                let weights = mask.f_to_kind(hidden.kind())?.f_unsqueeze(-1)?; // [batch, seq, 1]
                let count = weights.f_sum_dim_intlist(1, false, None)?.f_clamp_min(1.0)?; // [batch, 1]
                hidden.f_mul(&weights)?.f_sum_dim_intlist(1, false, None)?.f_div(&count)?
            }
        })
    }
}

impl Bert {
    /// `embeddings` and `layer1..N`, pooled as `features` (`layerN` is `features`).
    fn taps(&self) -> Vec<FeatureTap> {
        let (h, pooling) = (self.config.hidden_size, self.config.feature_pooling);
        let pooled = format!("pooled as features ({pooling:?})").to_lowercase();
        let mut taps = vec![FeatureTap::new("embeddings", h, format!("the embeddings' output, {pooled}"))];
        for k in 1..=self.config.num_hidden_layers {
            taps.push(FeatureTap::new(format!("layer{k}"), h, format!("output of encoder layer {k}, {pooled}")));
        }
        taps
    }

    /// A transformers directory: `BertForMaskedLM` with the MLM head (which has no pooler: an
    /// MLM run never trains one, and transformers would report it unused), else `BertModel`.
    fn hf_export(&self) -> ExportFormat {
        let head = self.config.mlm_head;
        let class = if head { "BertForMaskedLM" } else { "BertModel" };
        let names = self
            .params
            .iter()
            .map(|(n, _)| n)
            .filter(|n| !(head && n.starts_with("bert.pooler.")))
            .map(|n| (n.clone(), n.clone()))
            .collect();
        ExportFormat {
            name: "hf".into(),
            loads_with: format!("transformers {class}.from_pretrained(DIR) and AutoTokenizer.from_pretrained(DIR)"),
            config: self.config.hf_json(),
            names,
        }
    }

    /// The last hidden state [batch, seq, hidden] and, into `out`, the taps `inputs` ask for.
    fn hidden_with_taps(&self, ids: &Tensor, inputs: &Tensors, out: &mut Tensors) -> Result<Tensor> {
        let (types, mask) = (inputs.get("token_type_ids"), inputs.get("attention_mask"));
        if !wants_any_tap(inputs) {
            return self.model.bert.forward(ids, types, mask, self.train);
        }
        let states = self.model.bert.hidden_states(ids, types, mask, self.train)?;
        for (k, state) in states.iter().enumerate() {
            let tap = if k == 0 { "embeddings".to_string() } else { format!("layer{k}") };
            if wants_tap(inputs, &tap) {
                out.insert(tap_output(&tap), self.pool(state, mask)?); // [batch, hidden]
            }
        }
        Ok(states.into_iter().last().expect("the embeddings' state at least"))
    }
}

impl Architecture for Bert {
    fn info(&self) -> ArchitectureInfo {
        let c = &self.config;
        let mut layer_prefixes = vec!["bert.embeddings".to_string()];
        layer_prefixes.extend((0..c.num_hidden_layers).map(|i| format!("bert.encoder.layer.{i}")));
        if c.add_pooling_layer {
            layer_prefixes.push("bert.pooler".into());
        }
        let mut outputs = vec!["hidden_states".to_string(), "features".into()];
        if c.mlm_head {
            layer_prefixes.push("cls.predictions".into());
            outputs.push("mlm_logits".into());
        }
        if c.add_pooling_layer {
            outputs.push("pooled_output".into());
        }
        ArchitectureInfo {
            inputs: vec!["input_ids".into()],
            optional_inputs: ["attention_mask", "token_type_ids", "mlm_positions", "output_attentions"]
                .map(String::from)
                .to_vec(),
            outputs,
            feature_dim: Some(c.hidden_size),
            // At the usual pretraining length; the host may rescale for other lengths.
            train_flops_per_sample: Some(self.train_flops_per_sample(128.min(c.max_position_embeddings))),
            layer_prefixes,
            config: c.hf_json(),
            taps: self.taps(),
            exports: vec![self.hf_export()],
            ..Default::default()
        }
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
    }

    fn set_train(&mut self, train: bool) {
        self.train = train;
    }

    /// Inputs: `input_ids` [B, L]; optional `attention_mask` [B, L] (1 = real), `token_type_ids`
    /// [B, L], `mlm_positions` [M] (flat indices into B·L). Outputs: `hidden_states` [B, L, H],
    /// `features` [B, H] (the [CLS] state, or the mean over real tokens with `feature_pooling = "mean"`), `pooled_output` [B, H] (with the pooler) and, given
    /// `mlm_positions`, `mlm_logits` [M, vocab]; given `output_attentions` (any tensor), every
    /// layer's attention weights `attentions` [layers, B, heads, L, L] (for pictures); given
    /// `features.layerK` (or `features.embeddings`), that state pooled as `features` [B, H].
    fn forward(&self, inputs: &Tensors, _ctx: &StepCtx) -> Result<Tensors> {
        let ids = inputs.require("input_ids")?;
        let (_, seq) = ids
            .size2()
            .map_err(|_| PtError::shape(format!("bert: input_ids must be [batch, seq], got {:?}", ids.size())))?;
        if seq > self.config.max_position_embeddings {
            return Err(PtError::shape(format!(
                "bert: sequences of {seq} tokens exceed max_position_embeddings {} (lower the dataset's sequence length: block_size, max_len)",
                self.config.max_position_embeddings
            )));
        }
        let ids = if ids.kind() == Kind::Int64 { ids.shallow_clone() } else { ids.f_to_kind(Kind::Int64)? };
        if !inputs.contains(IDS_CHECKED) {
            self.check_ids(&ids)?;
        }
        let mut out = Tensors::new();
        let hidden = self.hidden_with_taps(&ids, inputs, &mut out)?; // [batch, seq, hidden]
        out.insert("features", self.pool(&hidden, inputs.get("attention_mask"))?); // [batch, hidden]
        if let Some(pooler) = &self.model.bert.pooler {
            out.insert("pooled_output", pooler.forward(&hidden)?);
        }
        if let Some(positions) = inputs.get("mlm_positions") {
            out.insert("mlm_logits", self.model.mlm_logits(&hidden, positions)?);
            // [M, vocab]
        }
        if inputs.contains("output_attentions") {
            let maps = tch::no_grad(|| {
                self.model.bert.attention_maps(&ids, inputs.get("token_type_ids"), inputs.get("attention_mask"))
            })?;
            out.insert("attentions", maps);
        }
        out.insert("hidden_states", hidden);
        Ok(out)
    }
}
