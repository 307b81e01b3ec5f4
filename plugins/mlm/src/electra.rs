//! `electra`: replaced-token detection (Clark et al. 2020, "ELECTRA: Pre-training Text Encoders
//! as Discriminators Rather Than Generators", <https://arxiv.org/abs/2003.10555>).
//!
//! A small generator (role `generator`: a `bert` with its MLM head) predicts masked tokens and
//! fills the masked positions with samples from its predictions; the discriminator (role
//! `discriminator`: a `bert`, its MLM head off) learns for every token whether it was replaced.
//! The two share their embeddings (token, position, type and their LayerNorm, as the paper's
//! code does), so the generator must be as wide as the discriminator: make it smaller in depth
//! and feed-forward width. Loss: L_MLM(generator) + λ · L_Disc, λ = 50. The discriminator's head
//! is the objective's, named as Hugging Face's `ElectraForPreTraining`'s
//! (`discriminator_predictions.dense`, `discriminator_predictions.dense_prediction`).

use crate::bert::IDS_CHECKED;
use crate::masking::{Masking, MaskingConfig};
use crate::objective::mask_by_sample;
use pt_kit::params::{Created, Params};
use pt_sdk::prelude::*;
use pt_sdk::Tie;
use serde::{Deserialize, Serialize};
use tch::Reduction;

#[derive(Serialize, Deserialize, Clone, Debug, PluginConfig)]
#[serde(default, deny_unknown_fields)]
pub struct ElectraConfig {
    /// share of (non-special, non-padding) tokens the generator predicts (ELECTRA: 0.15)
    #[config(default = 0.15, above = 0.0, max = 1.0)]
    pub mask_prob: f64,
    /// share of those shown to the generator as [MASK]; the rest stay as they are (ELECTRA: 0.85)
    #[config(default = 0.85, min = 0.0, max = 1.0)]
    pub mask_token_prob: f64,
    /// λ, the weight of the discriminator's loss against the generator's (ELECTRA: 50)
    #[config(default = 50.0, min = 0.0)]
    pub discriminator_weight: f64,
    /// the generator's logits are divided by it before sampling replacements (ELECTRA: 1)
    #[config(default = 1.0, above = 0.0)]
    pub temperature: f64,
    /// width of the discriminator's token states (from [arch.discriminator])
    #[config(input = "discriminator.hidden_size")]
    pub hidden_size: i64,
    /// std of the head's normal initialisation (BERT's initializer_range)
    #[config(default = 0.02, above = 0.0)]
    pub initializer_range: f64,
    /// parameter-name prefixes the generator shares with the discriminator (ELECTRA: the
    /// embeddings; [] shares nothing; [""] every parameter, for towers of one size)
    #[config(default = vec!["bert.embeddings.".to_string()])]
    pub shared_prefixes: Vec<String>,
    /// id of [MASK] (4 when neither the recipe nor the dataset sets it)
    #[config(input, optional)]
    pub mask_token_id: Option<i64>,
    /// id of [PAD], never chosen (0 when neither the recipe nor the dataset sets it)
    #[config(input, optional)]
    pub pad_token_id: Option<i64>,
    /// ids never chosen ([0, 1, 2, 3, 4] when neither the recipe nor the dataset sets them)
    #[config(input, optional)]
    pub special_token_ids: Option<Vec<i64>>,
    /// the generator's vocabulary (from [arch.generator]): input ids are checked against it on
    /// the loader thread, so the towers need not read them back
    #[config(input = "generator.vocab_size", optional)]
    pub generator_vocab_size: Option<i64>,
    /// the discriminator's vocabulary (from [arch.discriminator]): its inputs, the originals and
    /// the generator's samples, are checked against it as well
    #[config(input = "discriminator.vocab_size", optional)]
    pub discriminator_vocab_size: Option<i64>,
}

/// Random stream of the generator's masks: counters (epoch, sample index).
const STREAM_ELECTRA: u64 = 0x454c_4543;
/// Keeps log(−log u) finite (the paper's code adds the same).
const GUMBEL_EPS: f64 = 1e-9;

pub struct Electra {
    cfg: ElectraConfig,
    masking: Masking,
    dense: Tensor,            // [hidden, hidden]
    dense_bias: Tensor,       // [hidden]
    dense_prediction: Tensor, // [1, hidden]
    prediction_bias: Tensor,  // [1]
    params: Vec<(String, Tensor)>,
}

impl Component for Electra {
    const NAME: &'static str = "electra";
    const ABOUT: &'static str = "ELECTRA replaced-token detection: a generator (role generator, MLM) corrupts, a discriminator (role discriminator) detects; shared embeddings";
    const ROLES: &'static [&'static str] = &["generator", "discriminator"];
    type Config = ElectraConfig;

    fn new(cfg: ElectraConfig, ctx: &CreateCtx) -> Result<Self> {
        let masking = Masking::new(
            MaskingConfig {
                mask_prob: cfg.mask_prob,
                mask_token_prob: cfg.mask_token_prob,
                random_token_prob: 0.0,
                mask_token_id: cfg.mask_token_id,
                pad_token_id: cfg.pad_token_id,
                special_token_ids: cfg.special_token_ids.clone(),
                // No random replacements: the size only checks the ids, against both towers.
                vocab_size: match (cfg.generator_vocab_size, cfg.discriminator_vocab_size) {
                    (Some(g), Some(d)) => Some(g.min(d)),
                    (g, d) => g.or(d),
                },
            },
            "electra",
        )?;
        let created = Created::default();
        let h = cfg.hidden_size;
        let p = Params::new(ctx.seed ^ 0xE1EC, cfg.initializer_range, ctx.device(), &created);
        let head = p.sub("discriminator_predictions");
        let dense = head.normal("dense.weight", &[h, h], None)?;
        let dense_bias = head.constant("dense.bias", &[h], 0.0)?;
        let dense_prediction = head.normal("dense_prediction.weight", &[1, h], None)?;
        let prediction_bias = head.constant("dense_prediction.bias", &[1], 0.0)?;
        drop((p, head));
        let params = created.into_parts().0;
        Ok(Electra { cfg, masking, dense, dense_bias, dense_prediction, prediction_bias, params })
    }
}

/// One draw per row of `logits` [M, V] from softmax(logits), by the Gumbel-max trick with
/// torch's generator (seeded by the host per step). → [M] int64
pub fn sample_from_logits(logits: &Tensor) -> Result<Tensor> {
    let u = logits.f_rand_like()?;
    let gumbel = u.f_add_scalar(GUMBEL_EPS)?.f_log()?.f_neg()?.f_add_scalar(GUMBEL_EPS)?.f_log()?.f_neg()?;
    Ok(logits.f_add(&gumbel)?.f_argmax(-1, false)?)
}

/// The discriminator's ids and labels: `original` [B, L] with `sampled` [M] written at the flat
/// `positions` [M], and 1.0 where the written token differs from the original (a sample equal
/// to the original token counts as original, as in the paper). → ([B, L] int64, [B, L] f32)
pub fn corrupt(original: &Tensor, positions: &Tensor, sampled: &Tensor) -> Result<(Tensor, Tensor)> {
    let flat = original.f_flatten(0, -1)?.f_to_kind(Kind::Int64)?;
    let was = flat.f_index_select(0, positions)?;
    let ids = flat.f_index_copy(0, positions, sampled)?.f_view_as(original)?;
    let changed = sampled.f_ne_tensor(&was)?.f_to_kind(Kind::Float)?;
    let replaced = flat.f_zeros_like()?.f_to_kind(Kind::Float)?.f_index_copy(0, positions, &changed)?;
    Ok((ids, replaced.f_view_as(original)?))
}

/// 1.0 at real (unpadded) tokens: `real` [B, L] of 0/1 as floats, or all ones like `like`.
fn real_weights(real: Option<&Tensor>, like: &Tensor) -> Result<Tensor> {
    Ok(match real {
        Some(r) => r.f_to_kind(Kind::Float)?,
        None => like.f_ones_like()?.f_to_kind(Kind::Float)?,
    })
}

/// The discriminator's loss: binary cross-entropy of `logits` [B, L] against `replaced`
/// [B, L], averaged over the tokens `weights` [B, L] marks (see [`real_weights`]). → scalar
pub fn discriminator_loss(logits: &Tensor, replaced: &Tensor, weights: &Tensor) -> Result<Tensor> {
    let sum = logits.f_binary_cross_entropy_with_logits(replaced, Some(weights), None::<&Tensor>, Reduction::Sum)?;
    Ok(sum.f_div(&weights.f_sum(Kind::Float)?.f_clamp_min(1.0)?)?)
}

impl Electra {
    /// Per-token logits of "replaced" from the discriminator's states [B, L, H] → [B, L] (fp32).
    fn head(&self, hidden: &Tensor) -> Result<Tensor> {
        let x = hidden.f_to_kind(Kind::Float)?.f_linear(&self.dense, Some(&self.dense_bias))?.f_gelu("none")?;
        Ok(x.f_linear(&self.dense_prediction, Some(&self.prediction_bias))?.f_squeeze_dim(-1)?)
    }
}

impl Objective for Electra {
    fn info(&self) -> ObjectiveInfo {
        let fields = [
            "generator/input_ids",
            "generator/mlm_positions",
            "generator/attention_mask",
            "discriminator/input_ids",
            "discriminator/attention_mask",
            "original_ids",
            "mlm_positions",
            "mlm_labels",
            "replaced",
        ];
        ObjectiveInfo {
            needs_fields: vec!["input_ids".into()],
            needs_outputs: vec!["generator/mlm_logits".into(), "discriminator/hidden_states".into()],
            adds_fields: fields.map(String::from).to_vec(),
            metrics: [
                "generator_loss",
                "discriminator_loss",
                "mlm_accuracy",
                "discriminator_accuracy",
                "replaced_share",
            ]
            .map(String::from)
            .to_vec(),
            // Masks come from each sample's counter stream: drawn on the loader thread.
            prepare_on_host: true,
            stages: vec![vec!["generator".into()], vec!["discriminator".into()]],
            ties: self
                .cfg
                .shared_prefixes
                .iter()
                .map(|p| Tie { alias: format!("generator.{p}"), owner: format!("discriminator.{p}") })
                .collect(),
            ..Default::default()
        }
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
    }

    /// The generator's input: the batch masked per sample from the stream (seed, STREAM_ELECTRA,
    /// epoch, `sample_index`); the original ids are kept for the discriminator.
    fn prepare(&self, batch: Tensors, ctx: &StepCtx) -> Result<Tensors> {
        let original = batch.require("input_ids")?.shallow_clone();
        let token_types = batch.get("token_type_ids").map(Tensor::shallow_clone);
        let masked = mask_by_sample(&self.masking, batch, ctx, STREAM_ELECTRA, "electra")?;
        let positions = masked.require("mlm_positions")?;
        let mut out = Tensors::new()
            .with("generator/input_ids", masked.require("input_ids")?.shallow_clone())
            .with("generator/mlm_positions", positions.shallow_clone())
            .with("mlm_positions", positions.shallow_clone())
            .with("mlm_labels", masked.require("mlm_labels")?.shallow_clone())
            .with("original_ids", original);
        // mask_batch dropped an attention mask without padding.
        for (field, value) in
            [("attention_mask", masked.get("attention_mask")), ("token_type_ids", token_types.as_ref())]
        {
            if let Some(v) = value {
                out.insert(format!("generator/{field}"), v.shallow_clone());
                out.insert(format!("discriminator/{field}"), v.shallow_clone());
            }
        }
        if let Some(i) = masked.get("sample_index") {
            out.insert("sample_index", i.shallow_clone());
        }
        if let Some(checked) = masked.get(IDS_CHECKED) {
            out.insert(format!("generator/{IDS_CHECKED}"), checked.shallow_clone());
        }
        Ok(out)
    }

    /// After the generator: its samples at the masked positions make the discriminator's input.
    fn next_stage(&self, _stage: usize, inputs: &Tensors, outputs: &Tensors, _ctx: &StepCtx) -> Result<Tensors> {
        let logits = outputs.require("generator/mlm_logits")?.detach().f_to_kind(Kind::Float)?; // [M, V]
        let sampled = sample_from_logits(&logits.f_div_scalar(self.cfg.temperature)?)?; // [M]
        let (ids, replaced) = corrupt(inputs.require("original_ids")?, inputs.require("mlm_positions")?, &sampled)?;
        let mut out = Tensors::new();
        // The originals were checked against both towers; the samples are ids of the
        // generator's vocabulary (one per logit), which must fit the discriminator's.
        let samples_fit = self.cfg.discriminator_vocab_size.is_some_and(|d| logits.size()[1] <= d);
        if inputs.contains(&format!("generator/{IDS_CHECKED}")) && samples_fit {
            out.insert(format!("discriminator/{IDS_CHECKED}"), Tensor::f_ones([1], (Kind::Int64, ids.device()))?);
        }
        Ok(out.with("discriminator/input_ids", ids).with("replaced", replaced))
    }

    fn loss(&self, batch: &Tensors, outputs: &Tensors, _ctx: &StepCtx) -> Result<LossOutput> {
        let gen_logits = outputs.require("generator/mlm_logits")?.f_to_kind(Kind::Float)?; // [M, V]
        let labels = batch.require("mlm_labels")?; // [M]
        let generator_loss = gen_logits.f_cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, -100, 0.0)?;
        let hidden = outputs.require("discriminator/hidden_states")?; // [B, L, H]
        let logits = self.head(hidden)?; // [B, L]
        let replaced = batch.require("replaced")?; // [B, L]
        let weights = real_weights(batch.get("discriminator/attention_mask"), replaced)?;
        let disc_loss = discriminator_loss(&logits, replaced, &weights)?;
        let loss = generator_loss.f_add(&disc_loss.f_mul_scalar(self.cfg.discriminator_weight)?)?;
        let count = weights.f_sum(Kind::Float)?.f_clamp_min(1.0)?;
        let share = |t: &Tensor| -> Result<Tensor> { Ok(t.f_mul(&weights)?.f_sum(Kind::Float)?.f_div(&count)?) };
        let correct =
            logits.detach().f_gt(0.0)?.f_to_kind(Kind::Float)?.f_eq_tensor(replaced)?.f_to_kind(Kind::Float)?;
        let mlm_accuracy =
            gen_logits.detach().f_argmax(-1, false)?.f_eq_tensor(labels)?.f_to_kind(Kind::Float)?.f_mean(None)?;
        Ok(LossOutput {
            loss,
            metrics: vec![
                ("generator_loss".into(), generator_loss.detach()),
                ("discriminator_loss".into(), disc_loss.detach()),
                ("mlm_accuracy".into(), mlm_accuracy),
                ("discriminator_accuracy".into(), share(&correct)?),
                ("replaced_share".into(), share(replaced)?),
            ],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32], shape: &[i64]) -> Tensor {
        Tensor::from_slice(v).view(shape)
    }

    /// The paper's L_Disc on a batch small enough to write out: −Σ_t [y log σ(x) + (1−y) log(1−σ(x))]
    /// over real tokens, divided by their count.
    #[test]
    fn discriminator_loss_is_the_papers_formula_over_real_tokens() {
        let logits = t(&[2.0, -1.0, 0.5, 3.0, -2.0, 0.0], &[2, 3]);
        let replaced = t(&[1.0, 0.0, 0.0, 0.0, 1.0, 0.0], &[2, 3]);
        let real = Tensor::from_slice(&[1i64, 1, 1, 1, 1, 0]).view([2, 3]);
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        let terms = [
            -(sig(2.0).ln()),          // replaced, logit 2
            -((1.0 - sig(-1.0)).ln()), // original, logit -1
            -((1.0 - sig(0.5)).ln()),  // original, logit 0.5
            -((1.0 - sig(3.0)).ln()),  // original, logit 3
            -(sig(-2.0).ln()),         // replaced, logit -2
        ]; // the sixth token is padding
        let expected = terms.iter().sum::<f64>() / 5.0;
        let weights = real_weights(Some(&real), &logits).unwrap();
        let got = discriminator_loss(&logits, &replaced, &weights).unwrap().double_value(&[]);
        assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");
    }

    /// Ids are checked on the host against both towers' vocabularies: both towers are told so
    /// when the generator's samples fit the discriminator, and an id outside either is an error.
    #[test]
    fn ids_are_checked_on_the_host_against_both_towers() {
        let electra = |g: i64, d: i64| {
            let cfg = format!(
                r#"{{"hidden_size": 2, "generator_vocab_size": {g}, "discriminator_vocab_size": {d}, "mask_prob": 0.5}}"#
            );
            Electra::new(serde_json::from_str(&cfg).unwrap(), &CreateCtx::default()).unwrap()
        };
        let batch = Tensors::new()
            .with("input_ids", Tensor::from_slice(&[5i64, 6, 7, 8, 9, 10]).view([2, 3]))
            .with("sample_index", Tensor::from_slice(&[0i64, 1]));
        let ctx = StepCtx { train: true, ..StepCtx::default() };
        let generator_checked = format!("generator/{IDS_CHECKED}");
        let same = electra(20, 20);
        let prepared = same.prepare(batch.share(), &ctx).unwrap();
        assert!(prepared.contains(&generator_checked));
        let positions = prepared.require("mlm_positions").unwrap().size()[0];
        let outputs =
            Tensors::new().with("generator/mlm_logits", Tensor::zeros([positions, 20], (Kind::Float, Device::Cpu)));
        let next = same.next_stage(0, &prepared, &outputs, &ctx).unwrap();
        assert!(next.contains(&format!("discriminator/{IDS_CHECKED}")));
        // A generator with a larger vocabulary could sample ids the discriminator lacks.
        let wider = electra(30, 20);
        let outputs =
            Tensors::new().with("generator/mlm_logits", Tensor::zeros([positions, 30], (Kind::Float, Device::Cpu)));
        let next = wider.next_stage(0, &wider.prepare(batch.share(), &ctx).unwrap(), &outputs, &ctx).unwrap();
        assert!(!next.contains(&format!("discriminator/{IDS_CHECKED}")));
        let err = electra(20, 10).prepare(batch, &ctx).unwrap_err();
        assert!(err.message.contains("range over [5, 10]") && err.message.contains("vocab_size is 10"), "{err}");
    }

    /// L = L_MLM(generator) + λ · L_Disc on a batch small enough to compute by hand, with the
    /// head set to pass the first coordinate of each token state through GELU.
    #[test]
    fn loss_is_the_generators_mlm_loss_plus_lambda_times_the_discriminators() {
        let cfg: ElectraConfig = serde_json::from_str(r#"{"hidden_size": 2, "discriminator_weight": 50.0}"#).unwrap();
        let electra = Electra::new(cfg, &CreateCtx::default()).unwrap();
        tch::no_grad(|| {
            electra.dense.shallow_clone().copy_(&Tensor::eye(2, (Kind::Float, Device::Cpu)));
            electra.dense_prediction.shallow_clone().copy_(&t(&[1.0, 0.0], &[1, 2]));
            for bias in [&electra.dense_bias, &electra.prediction_bias] {
                let _ = bias.shallow_clone().zero_();
            }
        });
        // One masked position, vocabulary of 2: p(label 1) = 3/4.
        let gen_logits = t(&[0.0, 3f32.ln()], &[1, 2]);
        // Two tokens: the first replaced (state (2, 0)), the second original (state (-1, 0)).
        let hidden = t(&[2.0, 0.0, -1.0, 0.0], &[1, 2, 2]);
        let batch =
            Tensors::new().with("mlm_labels", Tensor::from_slice(&[1i64])).with("replaced", t(&[1.0, 0.0], &[1, 2]));
        let outputs =
            Tensors::new().with("generator/mlm_logits", gen_logits).with("discriminator/hidden_states", hidden);
        let out = electra.loss(&batch, &outputs, &StepCtx::default()).unwrap();

        let phi = |x: f64| 0.5 * (1.0 + erf(x / 2f64.sqrt()));
        let gelu = |x: f64| x * phi(x);
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        let mlm = -(0.75f64.ln());
        let disc = (-(sig(gelu(2.0)).ln()) - (1.0 - sig(gelu(-1.0))).ln()) / 2.0;
        let got = out.loss.double_value(&[]);
        assert!((got - (mlm + 50.0 * disc)).abs() < 1e-4, "{got} vs {}", mlm + 50.0 * disc);
        let metric = |n: &str| out.metrics.iter().find(|(m, _)| m == n).unwrap().1.double_value(&[]);
        assert!((metric("generator_loss") - mlm).abs() < 1e-5 && (metric("discriminator_loss") - disc).abs() < 1e-5);
        assert_eq!(
            (metric("replaced_share"), metric("discriminator_accuracy"), metric("mlm_accuracy")),
            (0.5, 1.0, 1.0)
        );
    }

    /// erf by Abramowitz–Stegun 7.1.26 (|error| < 1.5e-7).
    fn erf(x: f64) -> f64 {
        let t = 1.0 / (1.0 + 0.3275911 * x.abs());
        let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
        (1.0 - poly * (-x * x).exp()).copysign(x)
    }

    #[test]
    fn corruption_writes_samples_and_labels_only_changed_tokens() {
        let original = Tensor::from_slice(&[10i64, 11, 12, 13, 14, 15]).view([2, 3]);
        let positions = Tensor::from_slice(&[1i64, 3, 5]);
        // Position 3 draws its own original token: not a replacement.
        let sampled = Tensor::from_slice(&[20i64, 13, 21]);
        let (ids, replaced) = corrupt(&original, &positions, &sampled).unwrap();
        assert_eq!(Vec::<i64>::try_from(ids.flatten(0, -1)).unwrap(), [10, 20, 12, 13, 14, 21]);
        assert_eq!(Vec::<f32>::try_from(replaced.flatten(0, -1)).unwrap(), [0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn gumbel_samples_follow_the_softmax() {
        tch::manual_seed(1);
        // Row probabilities 0.7 / 0.2 / 0.1.
        let logits = t(&[0.7f32.ln(), 0.2f32.ln(), 0.1f32.ln()], &[1, 3]).repeat([20000, 1]);
        let draws = sample_from_logits(&logits).unwrap();
        let share = |k: i64| draws.eq(k).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
        for (k, p) in [(0, 0.7), (1, 0.2), (2, 0.1)] {
            assert!((share(k) - p).abs() < 0.015, "token {k}: {} vs {p}", share(k));
        }
    }
}
