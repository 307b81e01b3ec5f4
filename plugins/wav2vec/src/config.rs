//! wav2vec 2.0's configuration under Hugging Face `Wav2Vec2Config` key names, size presets, and
//! the user-facing arguments (a preset plus explicit overrides).
//! Reference: <https://github.com/huggingface/transformers/blob/main/src/transformers/models/wav2vec2/configuration_wav2vec2.py>

use pt_sdk::{PluginConfig, PtError, Result};
use serde::{Deserialize, Serialize};

/// Normalisation inside the convolutional feature encoder.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FeatExtractNorm {
    /// GroupNorm (one group per channel) on the first conv layer only (wav2vec 2.0 base).
    Group,
    /// LayerNorm over channels after every conv layer (wav2vec 2.0 large / LV-60).
    Layer,
}

/// The model's hyper-parameters (what `config.json` of a `Wav2Vec2Model` holds).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Wav2Vec2Config {
    pub hidden_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub intermediate_size: i64,
    pub hidden_dropout: f64,
    pub activation_dropout: f64,
    pub attention_dropout: f64,
    pub feat_proj_dropout: f64,
    pub layerdrop: f64,
    pub layer_norm_eps: f64,
    pub initializer_range: f64,
    pub feat_extract_norm: FeatExtractNorm,
    pub conv_dim: Vec<i64>,
    pub conv_kernel: Vec<i64>,
    pub conv_stride: Vec<i64>,
    pub conv_bias: bool,
    pub num_conv_pos_embeddings: i64,
    pub num_conv_pos_embedding_groups: i64,
    /// Pre-LayerNorm transformer layers (large models) instead of post-LayerNorm (base).
    pub do_stable_layer_norm: bool,
    /// Gradient reaching the feature encoder is scaled by this (fairseq's `feature_grad_mult`).
    pub feature_grad_mult: f64,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// conv 128 wide; 2 layers, 128 hidden, 2 heads, FFN 512; positional conv 32 / 8 groups.
    Tiny,
    /// conv 256 wide; 4 layers, 256 hidden, 4 heads, FFN 1024; positional conv 64 / 16 groups.
    Small,
    /// The paper's BASE: conv 512 wide; 12 layers, 768 hidden, 12 heads, FFN 3072; positional conv 128 / 16 groups.
    #[default]
    Base,
}

impl Wav2Vec2Config {
    pub fn preset(preset: Preset) -> Self {
        let (conv, hidden, layers, heads, ffn, pos, groups) = match preset {
            Preset::Tiny => (128, 128, 2, 2, 512, 32, 8),
            Preset::Small => (256, 256, 4, 4, 1024, 64, 16),
            Preset::Base => (512, 768, 12, 12, 3072, 128, 16),
        };
        Wav2Vec2Config {
            hidden_size: hidden,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            intermediate_size: ffn,
            // fairseq's wav2vec 2.0 BASE pretraining: dropout 0.1, attention 0.1, activation 0,
            // dropout_input 0.1, encoder_layerdrop 0.05, feature_grad_mult 0.1.
            hidden_dropout: 0.1,
            activation_dropout: 0.0,
            attention_dropout: 0.1,
            feat_proj_dropout: 0.1,
            layerdrop: 0.05,
            layer_norm_eps: 1e-5,
            initializer_range: 0.02,
            feat_extract_norm: FeatExtractNorm::Group,
            conv_dim: vec![conv; 7],
            conv_kernel: vec![10, 3, 3, 3, 3, 2, 2],
            conv_stride: vec![5, 2, 2, 2, 2, 2, 2],
            conv_bias: false,
            num_conv_pos_embeddings: pos,
            num_conv_pos_embedding_groups: groups,
            do_stable_layer_norm: false,
            feature_grad_mult: 0.1,
        }
    }

    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads
    }

    /// Audio samples per frame (320 for the paper's stack: 20 ms at 16 kHz).
    pub fn total_stride(&self) -> i64 {
        self.conv_stride.iter().product()
    }

    /// Samples one frame sees (400 for the paper's stack: 25 ms at 16 kHz).
    pub fn receptive_field(&self) -> i64 {
        crate::feature_encoder::receptive_field(&self.conv_kernel, &self.conv_stride)
    }

    /// Parameters of the encoder with these sizes, about (biases of the feature encoder aside),
    /// as f64 so that absurd sizes do not overflow.
    pub fn parameter_count(&self) -> f64 {
        let [h, l, i] = [self.hidden_size, self.num_hidden_layers, self.intermediate_size].map(|x| x as f64);
        let mut conv = 0.0;
        let mut channels = 1.0;
        for (d, k) in self.conv_dim.iter().zip(&self.conv_kernel) {
            conv += channels * *d as f64 * *k as f64 + 2.0 * *d as f64;
            channels = *d as f64;
        }
        let projection = channels * h + h + 2.0 * channels;
        let positional = h * h / self.num_conv_pos_embedding_groups.max(1) as f64 * self.num_conv_pos_embeddings as f64;
        let layer = 4.0 * (h * h + h) + 2.0 * h * i + i + h + 4.0 * h;
        conv + projection + positional + l * layer
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(PtError::config(format!("wav2vec2: {msg}")));
        for (key, v) in [
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("num_conv_pos_embeddings", self.num_conv_pos_embeddings),
            ("num_conv_pos_embedding_groups", self.num_conv_pos_embedding_groups),
        ] {
            if v <= 0 {
                return bad(format!("{key} must be positive, got {v}"));
            }
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.hidden_size % self.num_conv_pos_embedding_groups != 0 {
            return bad(format!(
                "hidden_size {} is not a multiple of num_conv_pos_embedding_groups {}",
                self.hidden_size, self.num_conv_pos_embedding_groups
            ));
        }
        let n = self.conv_dim.len();
        if n == 0 || self.conv_kernel.len() != n || self.conv_stride.len() != n {
            return bad(format!(
                "conv_dim, conv_kernel and conv_stride must have the same, non-zero length (got {}, {}, {})",
                n,
                self.conv_kernel.len(),
                self.conv_stride.len()
            ));
        }
        if self.conv_dim.iter().chain(&self.conv_kernel).chain(&self.conv_stride).any(|&v| v <= 0) {
            return bad("conv_dim, conv_kernel and conv_stride entries must be positive".into());
        }
        for (key, p) in [
            ("hidden_dropout", self.hidden_dropout),
            ("activation_dropout", self.activation_dropout),
            ("attention_dropout", self.attention_dropout),
            ("feat_proj_dropout", self.feat_proj_dropout),
            ("layerdrop", self.layerdrop),
        ] {
            if !(0.0..1.0).contains(&p) {
                return bad(format!("{key} must be in [0, 1), got {p}"));
            }
        }
        if self.layer_norm_eps <= 0.0 || self.initializer_range <= 0.0 || self.feature_grad_mult < 0.0 {
            return bad("layer_norm_eps and initializer_range must be positive, feature_grad_mult >= 0".into());
        }
        pt_kit::memory::check_parameters(
            "wav2vec2",
            self.parameter_count(),
            "hidden_size, num_hidden_layers, intermediate_size or conv_dim",
        )
    }

    /// A Hugging Face `config.json` for `Wav2Vec2Model` / `Wav2Vec2ForPreTraining`.
    pub fn hf_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(map) = v.as_object_mut() {
            map.remove("feature_grad_mult");
            map.insert("model_type".into(), "wav2vec2".into());
            map.insert("architectures".into(), serde_json::json!(["Wav2Vec2Model"]));
            map.insert("num_feat_extract_layers".into(), self.conv_dim.len().into());
            map.insert("feat_extract_activation".into(), "gelu".into());
            map.insert("hidden_act".into(), "gelu".into());
        }
        v
    }
}

/// How `features` (the utterance vector probes and fine-tuning use) pools the frames.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum FeaturePooling {
    /// Mean of the transformer's output over unpadded frames.
    #[default]
    Mean,
    /// Mean of the (layer-normed) feature-encoder output over unpadded frames.
    Conv,
}

/// The `wav2vec2` architecture's config: a size preset; any key set here overrides it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, PluginConfig)]
#[serde(default, deny_unknown_fields)]
#[config(validate = Wav2Vec2Args::check)]
pub struct Wav2Vec2Args {
    /// size: tiny (conv 128, 2 layers x 128), small (conv 256, 4 x 256), base (the paper's: conv 512, 12 x 768)
    pub preset: Preset,
    /// transformer width (null: the preset's)
    pub hidden_size: Option<i64>,
    /// transformer layers (null: the preset's)
    pub num_hidden_layers: Option<i64>,
    /// attention heads (null: the preset's)
    pub num_attention_heads: Option<i64>,
    /// feed-forward width (null: the preset's)
    pub intermediate_size: Option<i64>,
    /// dropout after attention, feed-forward and the positional embedding (null: 0.1)
    pub hidden_dropout: Option<f64>,
    /// dropout inside the feed-forward (null: 0.0)
    pub activation_dropout: Option<f64>,
    /// dropout on attention probabilities (null: 0.1)
    pub attention_dropout: Option<f64>,
    /// dropout after the feature projection (null: 0.1)
    pub feat_proj_dropout: Option<f64>,
    /// probability of skipping a transformer layer in training (null: 0.05)
    pub layerdrop: Option<f64>,
    /// LayerNorm epsilon (null: 1e-5)
    pub layer_norm_eps: Option<f64>,
    /// std of the normal initialisation of linear layers (null: 0.02)
    pub initializer_range: Option<f64>,
    /// group (GroupNorm on the first conv, base) or layer (LayerNorm on every conv) (null: group)
    pub feat_extract_norm: Option<FeatExtractNorm>,
    /// channels of each feature-encoder conv layer (null: 7 x the preset's width)
    pub conv_dim: Option<Vec<i64>>,
    /// kernel of each conv layer (null: [10, 3, 3, 3, 3, 2, 2])
    pub conv_kernel: Option<Vec<i64>>,
    /// stride of each conv layer (null: [5, 2, 2, 2, 2, 2, 2]: 320 samples = 20 ms a frame)
    pub conv_stride: Option<Vec<i64>>,
    /// conv layers have biases (null: false)
    pub conv_bias: Option<bool>,
    /// kernel of the convolutional relative positional embedding (null: the preset's)
    pub num_conv_pos_embeddings: Option<i64>,
    /// groups of that convolution (null: the preset's)
    pub num_conv_pos_embedding_groups: Option<i64>,
    /// pre-LayerNorm transformer layers, as wav2vec 2.0 large (null: false)
    pub do_stable_layer_norm: Option<bool>,
    /// scale of the gradient reaching the feature encoder (null: 0.1)
    pub feature_grad_mult: Option<f64>,
    /// the `features` output: mean (of the transformer output) or conv (of the feature encoder), over unpadded
    /// frames
    pub feature_pooling: FeaturePooling,
}

impl Wav2Vec2Args {
    /// The preset with the keys set here, checked when the plan is (sizes included).
    fn check(&self) -> Result<()> {
        self.resolve().map(|_| ())
    }

    /// The preset with every explicitly set key applied, validated.
    pub fn resolve(&self) -> Result<Wav2Vec2Config> {
        let mut c = Wav2Vec2Config::preset(self.preset);
        macro_rules! apply {
            ($($key:ident),*) => { $( if let Some(v) = self.$key.clone() { c.$key = v; } )* };
        }
        apply!(
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            intermediate_size,
            hidden_dropout,
            activation_dropout,
            attention_dropout,
            feat_proj_dropout,
            layerdrop,
            layer_norm_eps,
            initializer_range,
            feat_extract_norm,
            conv_dim,
            conv_kernel,
            conv_stride,
            conv_bias,
            num_conv_pos_embeddings,
            num_conv_pos_embedding_groups,
            do_stable_layer_norm,
            feature_grad_mult
        );
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_has_the_papers_geometry() {
        let c = Wav2Vec2Config::preset(Preset::Base);
        assert_eq!(c.total_stride(), 320);
        assert_eq!(c.receptive_field(), 400);
        c.validate().unwrap();
    }

    #[test]
    fn overrides_apply_and_are_validated() {
        let args = Wav2Vec2Args { preset: Preset::Tiny, num_attention_heads: Some(3), ..Default::default() };
        let e = args.resolve().unwrap_err();
        assert!(e.to_string().contains("num_attention_heads"), "{e}");
        let args = Wav2Vec2Args { preset: Preset::Tiny, conv_dim: Some(vec![64; 7]), ..Default::default() };
        assert_eq!(args.resolve().unwrap().conv_dim, vec![64; 7]);
    }
}
