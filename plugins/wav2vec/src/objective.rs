//! `wav2vec2`: the self-supervised objective of wav2vec 2.0 (Baevski et al., 2020). `prepare`
//! draws span masks over the frames the architecture will make and the negatives of each masked
//! frame; `loss` quantises the masked frames' (layer-normed) conv features with a Gumbel product
//! quantiser it owns, and combines the contrastive loss, the diversity loss and the feature
//! penalty per masked frame, as fairseq normalises them:
//! `L = L_m / M + α · L_d + β · mean(conv features²)`.
//! Parameter names follow transformers' `Wav2Vec2ForPreTraining` (`quantizer.*`, `project_hid`,
//! `project_q`).

use crate::feature_encoder::{audio_input, output_length, receptive_field};
use crate::loss::{contrastive_loss, diversity_loss};
use crate::masking::{draw_batch, SpanMasking};
use crate::model::FRAMES_CHECKED;
use crate::quantizer::GumbelQuantizer;
use pt_kit::params::{Created, Linear, Params};
use pt_sdk::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, PluginConfig)]
#[serde(default, deny_unknown_fields)]
#[config(validate = Wav2Vec2ObjectiveConfig::check_gumbel)]
pub struct Wav2Vec2ObjectiveConfig {
    /// share of frames that start a masked span (overlaps make ~half the frames masked)
    #[config(default = 0.65, min = 0.0, max = 1.0)]
    pub mask_time_prob: f64,
    /// frames per masked span
    #[config(default = 10, min = 1)]
    pub mask_time_length: usize,
    /// spans per utterance at least
    #[config(default = 2)]
    pub mask_time_min_masks: usize,
    /// distractors per masked frame, from masked frames of the same utterance
    #[config(default = 100, min = 1)]
    pub num_negatives: usize,
    /// codebooks of the product quantiser (G)
    #[config(default = 2)]
    pub num_codevector_groups: i64,
    /// codewords per codebook (V)
    #[config(default = 320)]
    pub num_codevectors_per_group: i64,
    /// width of a quantised vector (all groups together)
    #[config(default = 256)]
    pub codevector_dim: i64,
    /// width of the space context and targets are compared in
    #[config(default = 256)]
    pub proj_codevector_dim: i64,
    /// kappa: cosine similarities are divided by it
    #[config(default = 0.1, above = 0.0)]
    pub contrastive_logits_temperature: f64,
    /// alpha: weight of the codebook diversity loss
    #[config(default = 0.1)]
    pub diversity_loss_weight: f64,
    /// weight of the L2 penalty on the conv features
    #[config(default = 10.0)]
    pub feature_penalty_weight: f64,
    /// Gumbel-softmax temperature at step 0
    #[config(default = 2.0)]
    pub max_gumbel_temperature: f64,
    /// floor of the annealed temperature
    #[config(default = 0.5)]
    pub min_gumbel_temperature: f64,
    /// temperature = max(max * decay^step, min)
    #[config(default = 0.999995)]
    pub gumbel_temperature_decay: f64,
    /// dropout on the features before quantisation
    #[config(default = 0.1)]
    pub feat_quantizer_dropout: f64,
    /// feature-encoder kernels
    #[config(input)]
    pub conv_kernel: Option<Vec<i64>>,
    /// feature-encoder strides
    #[config(input)]
    pub conv_stride: Option<Vec<i64>>,
    /// feature-encoder widths
    #[config(input)]
    pub conv_dim: Option<Vec<i64>>,
    /// transformer width
    #[config(input)]
    pub hidden_size: Option<i64>,
}

impl Wav2Vec2ObjectiveConfig {
    /// The annealing's bounds, which the keys' own checks cannot see together.
    fn check_gumbel(&self) -> Result<()> {
        if !(self.min_gumbel_temperature > 0.0 && self.max_gumbel_temperature >= self.min_gumbel_temperature) {
            bail!(Config, "wav2vec2 objective: need 0 < min_gumbel_temperature <= max_gumbel_temperature");
        }
        Ok(())
    }
}

/// What the objective builds from the architecture's geometry.
struct Parts {
    kernels: Vec<i64>,
    strides: Vec<i64>,
    quantizer: GumbelQuantizer,
    project_hid: Linear,
    project_q: Linear,
}

pub struct Wav2Vec2Objective {
    cfg: Wav2Vec2ObjectiveConfig,
    spans: SpanMasking,
    /// The model parts, or why they could not be built (an architecture that does not report its
    /// conv geometry): reported when a batch arrives, so the host's composition check can first
    /// name an architecture without the outputs this objective needs.
    parts: std::result::Result<Parts, PtError>,
    params: Vec<(String, Tensor)>,
    train: bool,
}

/// The architecture's geometry the host filled in: conv kernels, strides, conv width, hidden width.
struct Geometry {
    kernels: Vec<i64>,
    strides: Vec<i64>,
    conv_out: i64,
    hidden: i64,
}

fn geometry(cfg: &Wav2Vec2ObjectiveConfig) -> Result<Geometry> {
    let missing = |key: &str| {
        PtError::config(format!(
            "wav2vec2 objective: {key} is unknown: use the wav2vec2 architecture (pt fills it from there) or set objective.{key}"
        ))
    };
    let kernels = cfg.conv_kernel.clone().ok_or_else(|| missing("conv_kernel"))?;
    let strides = cfg.conv_stride.clone().ok_or_else(|| missing("conv_stride"))?;
    let conv_out = *cfg.conv_dim.as_ref().and_then(|d| d.last()).ok_or_else(|| missing("conv_dim"))?;
    let hidden = cfg.hidden_size.ok_or_else(|| missing("hidden_size"))?;
    Ok(Geometry { kernels, strides, conv_out, hidden })
}

impl Component for Wav2Vec2Objective {
    const NAME: &'static str = "wav2vec2";
    const ABOUT: &'static str =
        "wav2vec 2.0: span masking, Gumbel product quantiser, contrastive + diversity loss (arch wav2vec2)";
    type Config = Wav2Vec2ObjectiveConfig;

    fn new(cfg: Wav2Vec2ObjectiveConfig, ctx: &CreateCtx) -> Result<Self> {
        let created = Created::default();
        let parts = match geometry(&cfg) {
            Ok(g) => Ok(build_parts(&cfg, g, ctx, &created)?),
            Err(e) => Err(e),
        };
        let params = created.into_parts().0;
        let spans =
            SpanMasking { prob: cfg.mask_time_prob, length: cfg.mask_time_length, min_masks: cfg.mask_time_min_masks };
        Ok(Wav2Vec2Objective { cfg, spans, parts, params, train: true })
    }
}

/// The quantiser and projections (transformers' `Wav2Vec2ForPreTraining` names).
fn build_parts(cfg: &Wav2Vec2ObjectiveConfig, g: Geometry, ctx: &CreateCtx, created: &Created) -> Result<Parts> {
    if g.kernels.len() != g.strides.len() || g.kernels.is_empty() {
        bail!(Config, "wav2vec2 objective: conv_kernel and conv_stride must have the same, non-zero length");
    }
    let p = Params::new(ctx.seed ^ 0x5741_5632, 1.0, ctx.device(), created);
    let quantizer = GumbelQuantizer::new(
        &p.sub("quantizer"),
        g.conv_out,
        cfg.num_codevector_groups,
        cfg.num_codevectors_per_group,
        cfg.codevector_dim,
    )?;
    let project_hid = Linear::new(&p.sub("project_hid"), g.hidden, cfg.proj_codevector_dim)?;
    let project_q = Linear::new(&p.sub("project_q"), cfg.codevector_dim, cfg.proj_codevector_dim)?;
    Ok(Parts { kernels: g.kernels, strides: g.strides, quantizer, project_hid, project_q })
}

impl Wav2Vec2Objective {
    /// max(max · decay^step, min), fairseq's annealing.
    pub fn gumbel_temperature(&self, step: u64) -> f64 {
        let c = &self.cfg;
        (c.max_gumbel_temperature * c.gumbel_temperature_decay.powf(step as f64)).max(c.min_gumbel_temperature)
    }
}

impl Wav2Vec2Objective {
    /// transformers' `Wav2Vec2ForPreTraining`: the encoder under `wav2vec2.`, the quantiser and
    /// projections under their own (already transformers') names, and the settings they need.
    fn pretraining_export(&self) -> ObjectiveExport {
        let c = &self.cfg;
        ObjectiveExport {
            name: "hf-pretraining".into(),
            extends: "hf".into(),
            loads_with: "transformers Wav2Vec2ForPreTraining.from_pretrained(DIR)".into(),
            config: serde_json::json!({
                "architectures": ["Wav2Vec2ForPreTraining"],
                "num_codevector_groups": c.num_codevector_groups,
                "num_codevectors_per_group": c.num_codevectors_per_group,
                "codevector_dim": c.codevector_dim,
                "proj_codevector_dim": c.proj_codevector_dim,
                "num_negatives": c.num_negatives,
                "contrastive_logits_temperature": c.contrastive_logits_temperature,
                "diversity_loss_weight": c.diversity_loss_weight,
                "feat_quantizer_dropout": c.feat_quantizer_dropout,
                "mask_time_prob": c.mask_time_prob,
                "mask_time_length": c.mask_time_length,
                "mask_time_min_masks": c.mask_time_min_masks,
            }),
            model_prefix: "wav2vec2.".into(),
            names: Vec::new(),
        }
    }
}

impl Objective for Wav2Vec2Objective {
    fn info(&self) -> ObjectiveInfo {
        ObjectiveInfo {
            needs_fields: vec!["input_values".into()],
            needs_outputs: vec!["last_hidden_state".into(), "extract_features".into(), "feature_penalty".into()],
            adds_fields: ["mask_time_indices", "negative_indices", "masked_frames", "masked_fraction"]
                .map(String::from)
                .to_vec(),
            metrics: [
                "contrastive_loss",
                "diversity_loss",
                "feature_penalty",
                "contrastive_accuracy",
                "code_perplexity",
                "prob_perplexity",
                "gumbel_temperature",
                "masked_fraction",
                "code_usage",
            ]
            .map(String::from)
            .to_vec(),
            // Spans and negatives come from each clip's counter stream: drawn on the loader thread.
            prepare_on_host: true,
            export: Some(self.pretraining_export()),
            ..Default::default()
        }
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
    }

    fn set_train(&mut self, train: bool) {
        self.train = train;
    }

    /// Masks the frames the architecture will compute from each clip's real samples.
    fn prepare(&self, mut batch: Tensors, ctx: &StepCtx) -> Result<Tensors> {
        let (audio, b, samples) = audio_input(&batch)?;
        let device = audio.device();
        let lengths: Vec<i64> = match batch.get("attention_mask") {
            Some(m) => Vec::<i64>::try_from(&m.f_sum_dim_intlist(-1, false, Kind::Int64)?.f_to_device(Device::Cpu)?)?,
            None => vec![samples; b as usize],
        };
        let index = Vec::<i64>::try_from(&batch.require("sample_index")?.f_to_device(Device::Cpu)?)?;
        let parts = self.parts.as_ref().map_err(Clone::clone)?;
        let frames = output_length(&parts.kernels, &parts.strides, samples);
        let frame_lengths: Vec<usize> =
            lengths.iter().map(|&l| output_length(&parts.kernels, &parts.strides, l) as usize).collect();
        // Checked here, on the host: the architecture on a GPU computes its frame mask without
        // reading the lengths back.
        if let Some(i) = frame_lengths.iter().position(|&f| f == 0) {
            bail!(
                Shape,
                "wav2vec2: clip {i} of the batch has {} samples, fewer than the feature encoder's receptive field ({}): \
                 raise the dataset's min_samples",
                lengths[i],
                receptive_field(&parts.kernels, &parts.strides)
            );
        }
        batch.insert(FRAMES_CHECKED, Tensor::f_from_slice(&[1i64])?);
        let masks = draw_batch(
            &self.spans,
            self.cfg.num_negatives,
            &frame_lengths,
            frames as usize,
            &index,
            ctx.seed,
            ctx.epoch,
        );
        let mask = Tensor::f_from_slice(&masks.mask)?.f_view([b, frames])?.f_to_device(device)?;
        let negatives = Tensor::f_from_slice(&masks.negatives)?
            .f_view([masks.masked as i64, self.cfg.num_negatives as i64])?
            .f_to_device(device)?;
        // Flat [B × F] positions of the masked frames, known here, so `loss` needs no device sync.
        let masked: Vec<i64> = (0..masks.mask.len()).filter(|&i| masks.mask[i]).map(|i| i as i64).collect();
        let real = frame_lengths.iter().sum::<usize>().max(1) as f64;
        batch.insert("mask_time_indices", mask);
        batch.insert("negative_indices", negatives);
        batch.insert("masked_frames", Tensor::f_from_slice(&masked)?.f_to_device(device)?);
        batch.insert("masked_fraction", Tensor::f_from_slice(&[(masked.len() as f64 / real) as f32])?);
        if lengths.iter().all(|&l| l == samples) {
            // No clip is padded: without a mask, attention can take its fastest (flash) kernel.
            batch.remove("attention_mask");
        }
        Ok(batch)
    }

    fn loss(&self, batch: &Tensors, outputs: &Tensors, ctx: &StepCtx) -> Result<LossOutput> {
        let Parts { quantizer, project_hid, project_q, .. } = self.parts.as_ref().map_err(Clone::clone)?;
        let hidden = outputs.require("last_hidden_state")?; // [B, F, H]
        let conv = outputs.require("extract_features")?; // [B, F, C]
        let penalty = outputs.require("feature_penalty")?.f_to_kind(Kind::Float)?;
        let mask = batch.require("mask_time_indices")?; // [B, F]
        let negatives = batch.require("negative_indices")?; // [M, K]
        if mask.size()[..] != hidden.size()[..2] {
            bail!(
                Shape,
                "wav2vec2: mask_time_indices {:?} does not fit the model's frames {:?}",
                mask.size(),
                hidden.size()
            );
        }
        let masked = batch.require("masked_frames")?; // [M], row-major positions in [B × F]
        let m = masked.size()[0];
        let temperature = self.gumbel_temperature(ctx.step);
        let penalty_term = penalty.f_mul_scalar(self.cfg.feature_penalty_weight)?;
        let scalar = |v: f64| Tensor::f_from_slice(&[v as f32]).and_then(|t| t.f_reshape([]));
        if m == 0 {
            // Every clip too short to mask: only the penalty trains (the step still counts).
            return Ok(LossOutput {
                loss: penalty_term,
                metrics: vec![("feature_penalty".into(), penalty.detach()), ("masked_fraction".into(), scalar(0.0)?)],
            });
        }
        let h = hidden.size()[2];
        let c = conv.size()[2];
        let context = project_hid.forward(&hidden.f_reshape([-1, h])?.f_index_select(0, masked)?)?; // [M, P]
        let features = conv.f_reshape([-1, c])?.f_index_select(0, masked)?; // [M, C]
        let features = pt_kit::params::dropout(features, self.cfg.feat_quantizer_dropout, self.train)?;
        let q = quantizer.forward(&features, temperature, self.train)?;
        let targets = project_q.forward(&q.vectors.f_to_kind(project_q.weight.kind())?)?; // [M, P]
        let (contrastive_sum, accuracy) =
            contrastive_loss(&context, &targets, negatives, self.cfg.contrastive_logits_temperature)?;
        let contrastive = contrastive_sum.f_div_scalar(m as f64)?;
        let codewords = quantizer.groups * quantizer.vars;
        let diversity = diversity_loss(&q.prob_perplexity, codewords)?;
        let loss = contrastive.f_add(&diversity.f_mul_scalar(self.cfg.diversity_loss_weight)?)?.f_add(&penalty_term)?;
        let metrics = vec![
            ("contrastive_loss".to_string(), contrastive.detach()),
            ("diversity_loss".into(), diversity.detach()),
            ("feature_penalty".into(), penalty.detach()),
            ("contrastive_accuracy".into(), accuracy),
            ("code_perplexity".into(), q.code_perplexity),
            ("prob_perplexity".into(), q.prob_perplexity.detach()),
            ("gumbel_temperature".into(), scalar(temperature)?),
            ("masked_fraction".into(), batch.require("masked_fraction")?.f_reshape([])?),
            // [G, V] counts: the host sums them and draws `code_usage.png` at the end of the run.
            ("code_usage".into(), q.code_counts),
        ];
        Ok(LossOutput { loss, metrics })
    }
}
