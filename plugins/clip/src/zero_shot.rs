//! Judging a CLIP model without training anything: `zero_shot` classifies a labelled split's
//! images by the caption "a picture of {class}" they are closest to; `retrieval` ranks a
//! captioned split's captions for each image and its images for each caption (R@1/5/10).
//! Both read the joint space the objective's `embed` gives (`image/embedding`, `text/embedding`).

use pt_kit::pairs::{encode, load_plain, padded};
use pt_kit::text::Tokenizer;
use pt_sdk::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

const IMAGE_EMBEDDING: &str = "image/embedding";
const TEXT_EMBEDDING: &str = "text/embedding";

/// `[start, end)` batches over `n` samples.
fn index_batches(n: u64, batch_size: u64) -> impl Iterator<Item = Vec<u64>> {
    let bs = batch_size.max(1);
    (0..n.div_ceil(bs)).map(move |b| (b * bs..((b + 1) * bs).min(n)).collect())
}

/// The tokenizer captions were made with: the configured one, the split's (its `tokenizer`
/// note), or the run's.
fn tokenizer(configured: &Option<String>, info: &DatasetInfo, ctx: &CreateCtx) -> Result<Tokenizer> {
    let from_split = info.notes.get("tokenizer").and_then(|v| v.as_str()).map(String::from);
    let path = match (configured, from_split) {
        (Some(t), _) => PathBuf::from(pt_sdk::expand_setting(t, &ctx.data_dir, &ctx.run_dir)),
        (None, Some(t)) => PathBuf::from(t),
        (None, None) if !ctx.run_dir.is_empty() => PathBuf::from(&ctx.run_dir).join("assets/tokenizer.json"),
        (None, None) => {
            bail!(Config, "no tokenizer for the prompts: set [[eval]] tokenizer = \"<run>/assets/tokenizer.json\"")
        }
    };
    load_plain(&path)
}

/// Unit embeddings of `texts` [N, D] through the text tower and the objective's projection.
fn embed_texts(
    model: &HostModel<'_>,
    tok: &Tokenizer,
    texts: &[String],
    max_len: usize,
    ctx: &StepCtx,
) -> Result<Tensor> {
    let device = ctx.device();
    let mut parts = Vec::new();
    for chunk in texts.chunks(256) {
        let rows = encode(tok, chunk.iter().map(String::as_str).collect(), max_len)?;
        let rows: Vec<&[i64]> = rows.iter().map(Vec::as_slice).collect();
        let (ids, mask) = padded(&rows, tok.token_to_id("[PAD]").map_or(0, |i| i as i64))?;
        let inputs = Tensors::new()
            .with("text/input_ids", ids.f_to_device(device)?)
            .with("text/attention_mask", mask.f_to_device(device)?);
        parts.push(model.forward(&inputs, ctx)?.require(TEXT_EMBEDDING)?.f_to_kind(Kind::Float)?);
    }
    Ok(Tensor::f_cat(&parts, 0)?)
}

/// Unit image embeddings [N, D] of the split's first `n` samples, their labels and their
/// captions' embeddings (when `with_text`), in eval mode without gradients.
fn embed_split(
    model: &HostModel<'_>,
    data: &HostData<'_>,
    n: u64,
    batch_size: u64,
    with_text: bool,
    ctx: &StepCtx,
) -> Result<(Tensor, Option<Tensor>, Option<Tensor>)> {
    let (mut images, mut texts, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    for idx in index_batches(n, batch_size) {
        let batch = data.get_batch(&idx, ctx)?;
        let mut inputs = Tensors::new().with("image/image", batch.require("image")?.shallow_clone());
        if with_text {
            inputs.insert("text/input_ids", batch.require("input_ids")?.shallow_clone());
            if let Some(m) = batch.get("attention_mask") {
                inputs.insert("text/attention_mask", m.shallow_clone());
            }
        }
        let out = model.forward(&inputs, ctx)?;
        images.push(out.require(IMAGE_EMBEDDING)?.f_to_kind(Kind::Float)?);
        if with_text {
            texts.push(out.require(TEXT_EMBEDDING)?.f_to_kind(Kind::Float)?);
        }
        if let Some(l) = batch.get("label") {
            labels.push(l.shallow_clone());
        }
    }
    let cat = |v: Vec<Tensor>| -> Result<Option<Tensor>> {
        if v.is_empty() {
            Ok(None)
        } else {
            Ok(Some(Tensor::f_cat(&v, 0)?))
        }
    };
    let images = cat(images)?.ok_or_else(|| PtError::data("the split has no samples"))?;
    Ok((images, cat(texts)?, cat(labels)?))
}

/// Share of rows whose target column (`targets[i]`) is among their `k` highest scores.
fn recall_at(scores: &Tensor, targets: &Tensor, k: i64) -> Result<f64> {
    let k = k.min(scores.size()[1]);
    let (_, top) = scores.f_topk(k, 1, true, true)?; // [N, k]
    let hit = top.f_eq_tensor(&targets.f_unsqueeze(1)?)?.f_any_dim(1, false)?;
    Ok(hit.f_to_kind(Kind::Float)?.f_mean(None)?.f_double_value(&[])?)
}

/// From `counts[true][predicted]`: the mean over the classes present of the share of their
/// samples classified right (chance: 1 / classes whatever the imbalance), and the largest
/// class's share of the samples (what always answering that class scores as plain accuracy).
fn balanced_and_majority(counts: &[Vec<u64>]) -> (f64, f64) {
    let totals: Vec<u64> = counts.iter().map(|row| row.iter().sum()).collect();
    let present: Vec<usize> = (0..counts.len()).filter(|&i| totals[i] > 0).collect();
    let recall: f64 = present.iter().map(|&i| counts[i][i] as f64 / totals[i] as f64).sum();
    let all: u64 = totals.iter().sum();
    (recall / present.len().max(1) as f64, *totals.iter().max().unwrap_or(&0) as f64 / all.max(1) as f64)
}

/// A class name as words in a prompt: `face-smiling` → `face smiling`.
fn class_words(name: &str) -> String {
    name.replace(['-', '_'], " ").to_lowercase()
}

#[derive(Serialize, Deserialize, Clone, Debug, PluginConfig)]
#[serde(default, deny_unknown_fields)]
pub struct ZeroShotConfig {
    /// caption template, `{}` standing for the class name
    #[config(default = "a picture of {}".to_string(), non_empty)]
    pub prompt: String,
    /// tokenizer.json for the prompts (null: the split's, else the run's assets/tokenizer.json)
    pub tokenizer: Option<String>,
    /// longest prompt in tokens
    #[config(default = 32, min = 3)]
    pub max_len: i64,
    /// images per forward
    #[config(default = 256, min = 1)]
    pub batch_size: u64,
    /// first N test samples (0: all)
    pub max_samples: u64,
}

pub struct ZeroShot {
    cfg: ZeroShotConfig,
    ctx: CreateCtx,
}

impl Component for ZeroShot {
    const NAME: &'static str = "zero_shot";
    const ABOUT: &'static str =
        "zero-shot classification: each test image gets the class whose prompt it is closest to in the joint space";
    type Config = ZeroShotConfig;
    fn new(cfg: ZeroShotConfig, ctx: &CreateCtx) -> Result<Self> {
        if !cfg.prompt.contains("{}") {
            bail!(Config, "zero_shot: prompt '{}' has no {{}} for the class name", cfg.prompt);
        }
        Ok(ZeroShot { cfg, ctx: ctx.clone() })
    }
}

impl Evaluator for ZeroShot {
    fn info(&self) -> EvaluatorInfo {
        EvaluatorInfo {
            splits: vec!["test".into()],
            needs_fields: vec!["image".into(), "label".into()],
            needs_outputs: vec![IMAGE_EMBEDDING.into(), TEXT_EMBEDDING.into()],
            primary_metric: Some("accuracy".into()),
            higher_is_better: true,
        }
    }

    fn evaluate(&mut self, model: &HostModel<'_>, splits: &Splits<'_>, ctx: &StepCtx) -> Result<EvalReport> {
        let _no_grad = tch::no_grad_guard();
        model.set_train(false)?;
        let data = splits.get("test")?;
        let info = data.info()?;
        if info.classes.is_empty() {
            bail!(Config, "zero_shot: the test split names no classes (set label_field on an image_text dataset)");
        }
        let tok = tokenizer(&self.cfg.tokenizer, &info, &self.ctx)?;
        let prompts: Vec<String> =
            info.classes.iter().map(|c| self.cfg.prompt.replace("{}", &class_words(c))).collect();
        let classes = embed_texts(model, &tok, &prompts, self.cfg.max_len as usize, ctx)?; // [C, D]
        let n = match self.cfg.max_samples {
            0 => info.num_samples,
            m => m.min(info.num_samples),
        };
        let (images, _, labels) = embed_split(model, data, n, self.cfg.batch_size, false, ctx)?;
        let labels = labels.ok_or_else(|| PtError::data("zero_shot: the test split served no labels"))?;
        // Samples whose label is hidden (-100) are not scored.
        let kept = labels.f_ge(0)?.f_nonzero()?.f_squeeze_dim(1)?;
        let n = kept.size()[0] as u64;
        if n == 0 {
            bail!(Data, "zero_shot: no test sample has a label");
        }
        let (images, labels) = (images.f_index_select(0, &kept)?, labels.f_index_select(0, &kept)?);
        let scores = images.f_matmul(&classes.f_transpose(0, 1)?)?; // [N, C]
        let c = info.classes.len();
        let pred = Vec::<i64>::try_from(scores.f_argmax(1, false)?.f_to_device(Device::Cpu)?)?;
        let truth = Vec::<i64>::try_from(labels.f_to_device(Device::Cpu)?)?;
        let mut counts = vec![vec![0u64; c]; c];
        for (t, p) in truth.iter().zip(&pred) {
            counts[*t as usize][*p as usize] += 1;
        }
        let (balanced, majority) = balanced_and_majority(&counts);
        let mut report = EvalReport::default()
            .metric("accuracy", recall_at(&scores, &labels, 1)?)
            .metric("balanced_accuracy", balanced)
            .metric("majority_share", majority)
            .metric("chance", 1.0 / c as f64)
            .metric("samples", n as f64);
        if c > 5 {
            report = report.metric("top5_accuracy", recall_at(&scores, &labels, 5)?);
        }
        if c <= 30 {
            report.confusion = Some(pt_sdk::ConfusionMatrix { classes: info.classes.clone(), counts });
        }
        Ok(report)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PluginConfig)]
#[serde(default, deny_unknown_fields)]
pub struct RetrievalConfig {
    /// pairs per forward
    #[config(default = 256, min = 1)]
    pub batch_size: u64,
    /// first N test pairs (0: all); chance R@1 is 1/N
    pub max_samples: u64,
}

pub struct Retrieval {
    cfg: RetrievalConfig,
}

impl Component for Retrieval {
    const NAME: &'static str = "retrieval";
    const ABOUT: &'static str = "image→text and text→image retrieval (R@1/5/10) over a captioned split's pairs";
    type Config = RetrievalConfig;
    fn new(cfg: RetrievalConfig, _ctx: &CreateCtx) -> Result<Self> {
        Ok(Retrieval { cfg })
    }
}

impl Evaluator for Retrieval {
    fn info(&self) -> EvaluatorInfo {
        EvaluatorInfo {
            splits: vec!["test".into()],
            needs_fields: vec!["image".into(), "input_ids".into()],
            needs_outputs: vec![IMAGE_EMBEDDING.into(), TEXT_EMBEDDING.into()],
            primary_metric: Some("image_to_text_r1".into()),
            higher_is_better: true,
        }
    }

    fn evaluate(&mut self, model: &HostModel<'_>, splits: &Splits<'_>, ctx: &StepCtx) -> Result<EvalReport> {
        let _no_grad = tch::no_grad_guard();
        model.set_train(false)?;
        let data = splits.get("test")?;
        let total = data.info()?.num_samples;
        let n = match self.cfg.max_samples {
            0 => total,
            m => m.min(total),
        };
        let (images, texts, _) = embed_split(model, data, n, self.cfg.batch_size, true, ctx)?;
        let texts = texts.ok_or_else(|| PtError::data("retrieval: no captions embedded"))?;
        let scores = images.f_matmul(&texts.f_transpose(0, 1)?)?; // [N images, N captions]
        let targets = Tensor::f_arange(n as i64, (Kind::Int64, scores.device()))?;
        let mut report = EvalReport::default().metric("chance_r1", 1.0 / n as f64).metric("pairs", n as f64);
        for k in [1, 5, 10] {
            report = report
                .metric(&format!("image_to_text_r{k}"), recall_at(&scores, &targets, k)?)
                .metric(&format!("text_to_image_r{k}"), recall_at(&scores.f_transpose(0, 1)?, &targets, k)?);
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_counts_the_target_among_the_top_k() {
        let scores = Tensor::from_slice(&[0.9f32, 0.1, 0.5, 0.2, 0.3, 0.8, 0.7, 0.6, 0.1]).view([3, 3]);
        let targets = Tensor::from_slice(&[0i64, 2, 1]);
        assert!((recall_at(&scores, &targets, 1).unwrap() - 2.0 / 3.0).abs() < 1e-6);
        assert_eq!(recall_at(&scores, &targets, 2).unwrap(), 1.0);
        assert_eq!(class_words("face-smiling"), "face smiling");
        // 3 of class 0 (all right), 1 of class 1 (wrong): plain 3/4, balanced (1 + 0) / 2.
        let (balanced, majority) = balanced_and_majority(&[vec![3, 0], vec![1, 0]]);
        assert_eq!((balanced, majority), (0.5, 0.75));
    }
}
