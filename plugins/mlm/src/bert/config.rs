//! BERT's configuration: Hugging Face `BertConfig` key names, size presets, and the user-facing
//! arguments (a preset plus explicit overrides).

use pt_sdk::{PluginConfig, PtError, Result};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// GELU with the exact erf (BERT's `gelu`).
    #[default]
    Gelu,
    /// GELU's tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh")]
    GeluTanh,
    Relu,
    #[serde(alias = "swish")]
    Silu,
}

impl Activation {
    pub fn forward(self, xs: &tch::Tensor) -> Result<tch::Tensor> {
        Ok(match self {
            Activation::Gelu => xs.f_gelu("none")?,
            Activation::GeluTanh => xs.f_gelu("tanh")?,
            Activation::Relu => xs.f_relu()?,
            Activation::Silu => xs.f_silu()?,
        })
    }
}

/// How `features` summarises a sequence.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum FeaturePooling {
    /// The [CLS] position's hidden state (BERT's convention for classification).
    #[default]
    Cls,
    /// The mean over real (unpadded) tokens: what MLM alone trains best, as it gives [CLS] no
    /// objective of its own.
    Mean,
}

/// The resolved configuration (what the model is built from). Keys are Hugging Face's, so its
/// JSON (plus `architectures`/`model_type`, see [`BertConfig::hf_json`]) is a loadable
/// `config.json`. `Default` is BERT-base.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BertConfig {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub intermediate_size: i64,
    pub hidden_act: Activation,
    pub hidden_dropout_prob: f64,
    pub attention_probs_dropout_prob: f64,
    pub max_position_embeddings: i64,
    pub type_vocab_size: i64,
    pub initializer_range: f64,
    pub layer_norm_eps: f64,
    pub pad_token_id: i64,
    /// pt's key (Hugging Face's `add_pooling_layer` argument): build `bert.pooler`.
    pub add_pooling_layer: bool,
    /// pt's key: what the `features` output is (Hugging Face ignores it).
    #[serde(default)]
    pub feature_pooling: FeaturePooling,
    /// pt's key: build the masked-LM head `cls.predictions` (false: the encoder alone, Hugging
    /// Face's `BertModel`, for objectives that read only token states).
    #[serde(default = "yes")]
    pub mlm_head: bool,
}

fn yes() -> bool {
    true
}

impl Default for BertConfig {
    fn default() -> Self {
        BertConfig {
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: Activation::Gelu,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            initializer_range: 0.02,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
            add_pooling_layer: true,
            feature_pooling: FeaturePooling::Cls,
            mlm_head: true,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// 2 layers, 128 hidden, 2 heads, FFN 512.
    Tiny,
    /// 4 layers, 256 hidden, 4 heads, FFN 1024.
    Mini,
    /// 4 layers, 512 hidden, 8 heads, FFN 2048.
    Small,
    /// 8 layers, 512 hidden, 8 heads, FFN 2048.
    Medium,
    /// 12 layers, 768 hidden, 12 heads, FFN 3072.
    #[default]
    Base,
}

impl BertConfig {
    pub fn preset(preset: Preset) -> Self {
        let (layers, hidden, heads, ffn) = match preset {
            Preset::Tiny => (2, 128, 2, 512),
            Preset::Mini => (4, 256, 4, 1024),
            Preset::Small => (4, 512, 8, 2048),
            Preset::Medium => (8, 512, 8, 2048),
            Preset::Base => (12, 768, 12, 3072),
        };
        BertConfig {
            hidden_size: hidden,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            intermediate_size: ffn,
            ..Default::default()
        }
    }

    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads
    }

    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ];
        for (key, v) in positive {
            if v <= 0 {
                return Err(PtError::config(format!("bert: {key} must be positive, got {v}")));
            }
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(PtError::config(format!(
                "bert: hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        for (key, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            ("attention_probs_dropout_prob", self.attention_probs_dropout_prob),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(PtError::config(format!("bert: {key} must be in [0, 1), got {p}")));
            }
        }
        if self.initializer_range <= 0.0 || self.layer_norm_eps <= 0.0 {
            return Err(PtError::config("bert: initializer_range and layer_norm_eps must be positive"));
        }
        if self.pad_token_id < 0 || self.pad_token_id >= self.vocab_size {
            return Err(PtError::config(format!(
                "bert: pad_token_id {} outside the vocabulary (size {})",
                self.pad_token_id, self.vocab_size
            )));
        }
        pt_kit::memory::check_parameters(
            "bert",
            self.parameter_count(),
            "hidden_size, num_hidden_layers, intermediate_size or vocab_size",
        )
    }

    /// Parameters of `BertForMaskedLM` with these sizes (the MLM head's decoder shares the word
    /// embeddings), as f64 so that absurd sizes do not overflow.
    pub fn parameter_count(&self) -> f64 {
        let [v, h, l, i] =
            [self.vocab_size, self.hidden_size, self.num_hidden_layers, self.intermediate_size].map(|x| x as f64);
        let embeddings = (v + (self.max_position_embeddings + self.type_vocab_size) as f64) * h + 2.0 * h;
        let layer = 4.0 * (h * h + h) + 2.0 * h * i + i + h + 4.0 * h;
        let pooler = h * h + h;
        let head = if self.mlm_head { h * h + h + 2.0 * h + v } else { 0.0 };
        embeddings + l * layer + pooler + head
    }

    /// A Hugging Face `config.json` for `BertForMaskedLM`.
    pub fn hf_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(map) = v.as_object_mut() {
            let class = if self.mlm_head { "BertForMaskedLM" } else { "BertModel" };
            map.insert("architectures".into(), serde_json::json!([class]));
            map.insert("model_type".into(), serde_json::json!("bert"));
            map.insert("position_embedding_type".into(), serde_json::json!("absolute"));
            map.insert("tie_word_embeddings".into(), serde_json::json!(true));
            map.insert("use_cache".into(), serde_json::json!(true));
            map.insert("classifier_dropout".into(), serde_json::Value::Null);
        }
        v
    }
}

/// The `bert` architecture's config: a size preset, and any key set here overrides it. Null
/// means "the preset's value"; `vocab_size` normally comes from the dataset's tokenizer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, PluginConfig)]
#[serde(default, deny_unknown_fields)]
#[config(validate = BertArgs::check_sizes)]
pub struct BertArgs {
    /// size: tiny (2 layers, 128 wide), mini (4, 256), small (4, 512), medium (8, 512), base (12, 768)
    #[config(default = Preset::Base)]
    pub preset: Preset,
    /// embedding rows (the tokenizer's vocabulary size)
    #[config(input)]
    pub vocab_size: Option<i64>,
    /// width (null: the preset's)
    pub hidden_size: Option<i64>,
    /// transformer layers (null: the preset's)
    pub num_hidden_layers: Option<i64>,
    /// attention heads (null: the preset's)
    pub num_attention_heads: Option<i64>,
    /// feed-forward width (null: the preset's)
    pub intermediate_size: Option<i64>,
    /// gelu (erf), gelu_new (tanh approximation), relu or silu (null: gelu)
    pub hidden_act: Option<Activation>,
    /// dropout after embeddings and each sublayer (null: 0.1)
    pub hidden_dropout_prob: Option<f64>,
    /// dropout on attention probabilities (null: 0.1)
    pub attention_probs_dropout_prob: Option<f64>,
    /// longest sequence (null: 512)
    pub max_position_embeddings: Option<i64>,
    /// segment types (null: 2)
    pub type_vocab_size: Option<i64>,
    /// std of the normal initialisation (null: 0.02)
    pub initializer_range: Option<f64>,
    /// LayerNorm epsilon (null: 1e-12)
    pub layer_norm_eps: Option<f64>,
    /// padding id (0 when neither the recipe nor the dataset sets it); its embedding row starts
    /// at zero and gets no gradient
    #[config(input, optional)]
    pub pad_token_id: Option<i64>,
    /// build bert.pooler (tanh dense over [CLS]; output `pooled_output`) (null: true)
    pub add_pooling_layer: Option<bool>,
    /// the `features` output: cls ([CLS] state) or mean (over unpadded tokens) (null: cls)
    pub feature_pooling: Option<FeaturePooling>,
    /// build the masked-LM head cls.predictions (output `mlm_logits`); false for objectives that
    /// read only token states, e.g. ELECTRA's discriminator (null: true)
    pub mlm_head: Option<bool>,
}

impl BertArgs {
    /// Checked when the plan is, before the dataset says how large the vocabulary is: the
    /// sizes set here must hold (and fit in memory) with the smallest vocabulary they allow;
    /// the real one is checked again when the model is built.
    fn check_sizes(&self) -> Result<()> {
        let smallest_vocab = self.pad_token_id.unwrap_or(0).max(0) + 1;
        BertArgs { vocab_size: Some(self.vocab_size.unwrap_or(smallest_vocab)), ..self.clone() }.resolve().map(|_| ())
    }

    /// The preset with every explicitly set key applied, validated.
    pub fn resolve(&self) -> Result<BertConfig> {
        let vocab_size = self.vocab_size.ok_or_else(|| {
            PtError::config(
                "bert: vocab_size is not set. pt fills it from the dataset's tokenizer (DatasetInfo.notes.vocab_size); \
                 with a dataset that does not report one, set architecture vocab_size explicitly",
            )
        })?;
        let mut c = BertConfig::preset(self.preset);
        c.vocab_size = vocab_size;
        macro_rules! apply {
            ($($key:ident),*) => { $( if let Some(v) = self.$key { c.$key = v; } )* };
        }
        apply!(
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            intermediate_size,
            hidden_act,
            hidden_dropout_prob,
            attention_probs_dropout_prob,
            max_position_embeddings,
            type_vocab_size,
            initializer_range,
            layer_norm_eps,
            pad_token_id,
            add_pooling_layer,
            feature_pooling,
            mlm_head
        );
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_keys_override_the_preset() {
        let args: BertArgs =
            serde_json::from_str(r#"{"preset": "tiny", "vocab_size": 100, "num_hidden_layers": 3}"#).unwrap();
        let c = args.resolve().unwrap();
        assert_eq!((c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.vocab_size), (3, 128, 2, 100));
        assert_eq!(BertArgs { vocab_size: Some(5), ..Default::default() }.resolve().unwrap().hidden_size, 768);
    }

    #[test]
    fn missing_vocab_size_and_bad_heads_are_errors() {
        let e = BertArgs::default().resolve().unwrap_err();
        assert!(e.message.contains("vocab_size is not set"), "{e}");
        let args = BertArgs { vocab_size: Some(10), num_attention_heads: Some(5), ..Default::default() };
        assert!(args.resolve().unwrap_err().message.contains("multiple"));
    }

    #[test]
    fn hf_json_has_the_keys_transformers_reads() {
        let v = BertConfig::preset(Preset::Mini).hf_json();
        assert_eq!(v["model_type"], "bert");
        assert_eq!(v["architectures"][0], "BertForMaskedLM");
        assert_eq!(v["hidden_act"], "gelu");
        assert_eq!(v["intermediate_size"], 1024);
    }
}
