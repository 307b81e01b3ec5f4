//! `wav2vec2`: transformers' `Wav2Vec2Model` — feature encoder, feature projection, optional
//! time masking with a learned embedding, transformer encoder.
//! Reference: <https://github.com/huggingface/transformers/blob/main/src/transformers/models/wav2vec2/modeling_wav2vec2.py>
//!
//! Inputs: `input_values` [batch, samples] (f32), optional `attention_mask` [batch, samples]
//! (1 = real sample) and `mask_time_indices` [batch, frames] (bool; frames replaced by
//! `masked_spec_embed`, what a pretraining objective supplies).
//! Outputs: `last_hidden_state` [batch, frames, hidden], `extract_features` [batch, frames, conv]
//! (the layer-normed conv features a quantiser reads), `frame_mask` [batch, frames] (bool),
//! `feature_penalty` (mean square of the conv features, wav2vec 2.0's L2 penalty) and `features`
//! [batch, hidden] (mean over real frames) for probes and fine-tuning.

use crate::config::{FeaturePooling, Wav2Vec2Args, Wav2Vec2Config};
use crate::encoder::Encoder;
use crate::feature_encoder::{audio_input, FeatureEncoder};
use pt_kit::params::dropout;
use pt_kit::params::{Created, LayerNorm, Params};
use pt_sdk::prelude::*;
use pt_sdk::taps::{tap_output, wants_any_tap, wants_tap};

/// `feature_projection`: LayerNorm over conv channels, then a linear map to the model width.
struct FeatureProjection {
    layer_norm: LayerNorm,
    projection: pt_kit::params::Linear,
    dropout: f64,
}

/// An input field (any value) saying every clip of the batch was checked, where its length was
/// a host value, to give at least one frame: the model then need not read the lengths back.
pub const FRAMES_CHECKED: &str = "frames_checked";

pub struct Wav2Vec2 {
    pub config: Wav2Vec2Config,
    pooling: FeaturePooling,
    feature_extractor: FeatureEncoder,
    feature_projection: FeatureProjection,
    masked_spec_embed: Tensor,
    encoder: Encoder,
    params: Vec<(String, Tensor)>,
    train: bool,
}

impl Wav2Vec2 {
    pub fn new(config: Wav2Vec2Config, pooling: FeaturePooling, seed: u64, device: Device) -> Result<Self> {
        config.validate()?;
        let created = Created::default();
        let p = Params::new(seed, config.initializer_range, device, &created);
        let conv_out = *config.conv_dim.last().unwrap_or(&1);
        let feature_extractor = FeatureEncoder::new(&p.sub("feature_extractor.conv_layers"), &config)?;
        let fp = p.sub("feature_projection");
        let bound = 1.0 / (conv_out as f64).sqrt(); // transformers: uniform(±1/sqrt(in)) here
        let feature_projection = FeatureProjection {
            layer_norm: LayerNorm::new(&fp.sub("layer_norm"), conv_out, config.layer_norm_eps)?,
            projection: pt_kit::params::Linear {
                weight: fp.sub("projection").uniform("weight", &[config.hidden_size, conv_out], bound)?,
                bias: fp.sub("projection").uniform("bias", &[config.hidden_size], bound)?,
            },
            dropout: config.feat_proj_dropout,
        };
        let mut masked_spec_embed = p.uniform("masked_spec_embed", &[config.hidden_size], 1.0)?;
        // transformers draws it from uniform(0, 1).
        let _ = tch::no_grad(|| masked_spec_embed.f_abs_())?;
        let encoder = Encoder::new(&p.sub("encoder"), &config)?;
        drop(p);
        let params = created.into_parts().0;
        Ok(Wav2Vec2 {
            config,
            pooling,
            feature_extractor,
            feature_projection,
            masked_spec_embed,
            encoder,
            params,
            train: true,
        })
    }

    /// The parameters under their transformers names.
    pub fn params_named(&self) -> Vec<(String, Tensor)> {
        self.params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
    }

    pub fn set_train(&mut self, train: bool) {
        self.train = train;
    }

    /// Frames per clip of `samples` audio samples.
    pub fn frames(&self, samples: i64) -> i64 {
        self.feature_extractor.output_length(samples)
    }

    /// `[batch, frames]` bool: frames computed only from real (unpadded) samples, on the mask's
    /// device. A clip too short for one frame is an error; checking reads the lengths, a wait
    /// for a GPU, so it is skipped for a batch whose lengths were checked on the host
    /// (`checked`: the wav2vec2 objective's `prepare` on the loader thread).
    fn frame_mask(
        &self,
        attention_mask: Option<&Tensor>,
        checked: bool,
        (batch, frames): (i64, i64),
        device: Device,
    ) -> Result<Tensor> {
        let Some(mask) = attention_mask else {
            return Ok(Tensor::f_ones([batch, frames], (Kind::Bool, device))?);
        };
        let samples = mask.f_sum_dim_intlist(-1, false, Kind::Int64)?; // [B]
        if !checked || samples.device() == Device::Cpu {
            let lengths = Vec::<i64>::try_from(&samples.f_to_device(Device::Cpu)?)?;
            if let Some(i) = lengths.iter().position(|&l| self.frames(l) == 0) {
                bail!(
                    Shape,
                    "wav2vec2: clip {i} of the batch has {} samples, fewer than the feature encoder's receptive field ({}): \
                     raise the dataset's min_samples",
                    lengths[i],
                    self.config.receptive_field()
                );
            }
        }
        let lengths = self.feature_extractor.output_lengths(&samples)?.f_to_device(device)?; // [B]
        let positions = Tensor::f_arange(frames, (Kind::Int64, device))?;
        Ok(positions.f_unsqueeze(0)?.f_lt_tensor(&lengths.f_unsqueeze(1)?)?)
    }

    pub fn forward(&self, inputs: &Tensors, ctx: &StepCtx) -> Result<Tensors> {
        let (audio, batch, samples) = audio_input(inputs)?;
        if self.frames(samples) == 0 {
            bail!(
                Shape,
                "wav2vec2: clips of {samples} samples are shorter than the feature encoder's receptive field ({})",
                self.config.receptive_field()
            );
        }
        let audio = if audio.kind() == Kind::Float { audio.shallow_clone() } else { audio.f_to_kind(Kind::Float)? };
        let mut conv = self.feature_extractor.forward(&audio)?; // [batch, conv, frames]
        let mult = self.config.feature_grad_mult;
        if self.train && mult != 1.0 && conv.requires_grad() {
            // Identity forward, gradient × mult backward (fairseq's GradMultiply): the difference
            // term is exactly zero in value.
            let fixed = conv.f_detach()?;
            conv = fixed.f_add(&conv.f_sub(&fixed)?.f_mul_scalar(mult)?)?;
        }
        let conv = conv.f_transpose(1, 2)?; // [batch, frames, conv]
        let frames = conv.size()[1];
        let feature_penalty = conv.f_to_kind(Kind::Float)?.f_square()?.f_mean(Kind::Float)?;
        let extract_features = self.feature_projection.layer_norm.forward(&conv)?; // [batch, frames, conv]
        let hidden = self.feature_projection.projection.forward(&extract_features)?;
        let mut hidden = dropout(hidden, self.feature_projection.dropout, self.train)?; // [batch, frames, hidden]
        if let Some(mask) = inputs.get("mask_time_indices") {
            if mask.size() != [batch, frames] {
                bail!(Shape, "wav2vec2: mask_time_indices is {:?}, expected [{batch}, {frames}]", mask.size());
            }
            let mask = mask.f_to_kind(Kind::Bool)?.f_unsqueeze(-1)?;
            hidden = hidden.f_where_self(&mask.f_logical_not()?, &self.masked_spec_embed.f_to_kind(hidden.kind())?)?;
        }
        let attention_mask = inputs.get("attention_mask");
        let checked = inputs.contains(FRAMES_CHECKED);
        let frame_mask = self.frame_mask(attention_mask, checked, (batch, frames), audio.device())?;
        let keep = attention_mask.map(|_| &frame_mask);
        // The mean over real frames: [batch, frames, dim] → [batch, dim].
        let pool = |states: &Tensor| -> Result<Tensor> {
            let weights = frame_mask.f_unsqueeze(-1)?.f_to_kind(states.kind())?; // [batch, frames, 1]
            let counts = weights.f_sum_dim_intlist(1, false, states.kind())?; // [batch, 1]
            Ok(states.f_mul(&weights)?.f_sum_dim_intlist(1, false, states.kind())?.f_div(&counts)?)
        };
        let mut out = Tensors::new();
        let last = if wants_any_tap(inputs) {
            if wants_tap(inputs, "conv") {
                out.insert(tap_output("conv"), pool(&extract_features)?);
            }
            let states = self.encoder.forward_states(&hidden, keep, ctx, self.train)?;
            for (k, state) in states.iter().enumerate().skip(1) {
                if wants_tap(inputs, &format!("layer{k}")) {
                    out.insert(tap_output(&format!("layer{k}")), pool(state)?);
                }
            }
            states.into_iter().last().expect("the encoder's input state at least")
        } else {
            self.encoder.forward(&hidden, keep, ctx, self.train)?
        };
        let features = pool(match self.pooling {
            FeaturePooling::Mean => &last,
            FeaturePooling::Conv => &extract_features,
        })?;
        out.insert("last_hidden_state", last);
        out.insert("extract_features", extract_features);
        out.insert("frame_mask", frame_mask);
        out.insert("feature_penalty", feature_penalty);
        out.insert("features", features); // [batch, hidden or conv]
        Ok(out)
    }

    /// `conv` (the normalised convolutional features) and `layer1..N` (each transformer
    /// layer's output), averaged over real frames.
    pub fn taps(&self) -> Vec<FeatureTap> {
        let c = &self.config;
        let conv = *c.conv_dim.last().unwrap_or(&0);
        let mut taps = vec![FeatureTap::new("conv", conv, "the feature encoder's normalised output, mean over frames")];
        for k in 1..=c.num_hidden_layers {
            taps.push(FeatureTap::new(
                format!("layer{k}"),
                c.hidden_size,
                format!("output of transformer layer {k}, mean over frames"),
            ));
        }
        taps
    }

    pub fn feature_dim(&self) -> i64 {
        match self.pooling {
            FeaturePooling::Mean => self.config.hidden_size,
            FeaturePooling::Conv => *self.config.conv_dim.last().unwrap_or(&0),
        }
    }
}

/// The `wav2vec2` component.
pub struct Wav2Vec2Arch(pub Wav2Vec2);

impl Component for Wav2Vec2Arch {
    const NAME: &'static str = "wav2vec2";
    const ABOUT: &'static str =
        "wav2vec 2.0 (Hugging Face Wav2Vec2Model names): conv feature encoder + transformer, presets tiny..base";
    const PROVIDES: &'static [&'static str] = &["feature_dim", "hidden_size", "conv_dim", "conv_kernel", "conv_stride"];
    type Config = Wav2Vec2Args;
    fn new(args: Wav2Vec2Args, ctx: &CreateCtx) -> Result<Self> {
        Ok(Wav2Vec2Arch(Wav2Vec2::new(args.resolve()?, args.feature_pooling, ctx.seed, ctx.device())?))
    }
}

impl Architecture for Wav2Vec2Arch {
    fn info(&self) -> ArchitectureInfo {
        let m = &self.0;
        let mut layer_prefixes: Vec<String> = [
            "feature_extractor",
            "feature_projection",
            "masked_spec_embed",
            "encoder.pos_conv_embed",
            "encoder.layer_norm",
        ]
        .map(String::from)
        .to_vec();
        layer_prefixes.extend((0..m.config.num_hidden_layers).map(|i| format!("encoder.layers.{i}")));
        ArchitectureInfo {
            inputs: vec!["input_values".into()],
            optional_inputs: vec!["attention_mask".into(), "mask_time_indices".into()],
            outputs: ["last_hidden_state", "extract_features", "frame_mask", "feature_penalty", "features"]
                .map(String::from)
                .to_vec(),
            feature_dim: Some(m.feature_dim()),
            // Clips vary in length, so FLOPs per sample would mislead MFU: not reported.
            train_flops_per_sample: None,
            layer_prefixes,
            config: m.config.hf_json(),
            taps: m.taps(),
            exports: vec![ExportFormat {
                name: "hf".into(),
                loads_with:
                    "transformers Wav2Vec2Model.from_pretrained(DIR) and AutoFeatureExtractor.from_pretrained(DIR)"
                        .into(),
                config: m.config.hf_json(),
                names: Vec::new(),
            }],
            ..Default::default()
        }
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.0.params_named()
    }

    fn set_train(&mut self, train: bool) {
        self.0.set_train(train)
    }

    fn forward(&self, inputs: &Tensors, ctx: &StepCtx) -> Result<Tensors> {
        self.0.forward(inputs, ctx)
    }
}
