//! `supervised`: cross-entropy on the architecture's `logits`, with optional label smoothing and
//! train-time random crop / flip made on the device in batch form.

use pt_sdk::losses::labelled_cross_entropy;
use pt_sdk::prelude::*;
use pt_sdk::vision::augment::{crop_flip, sample_rngs, CropFlip};
use serde::{Deserialize, Serialize};

/// Random stream of the supervised augmentation (see `pt_sdk::rng`).
const STREAM_CROP_FLIP: u64 = 0xC60F;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SupervisedConfig {
    pub label_smoothing: f64,
    pub crop_padding: i64,
    pub hflip_p: f64,
}

impl Default for SupervisedConfig {
    fn default() -> Self {
        SupervisedConfig { label_smoothing: 0.0, crop_padding: 0, hflip_p: 0.0 }
    }
}

impl Config for SupervisedConfig {
    fn describe() -> &'static [(&'static str, &'static str)] {
        &[
            ("label_smoothing", "cross-entropy label smoothing in [0, 1)"),
            ("crop_padding", "random translation by up to N pixels (RandomCrop with zero padding N; 0: off)"),
            ("hflip_p", "probability of a horizontal flip (0 for digits and text)"),
        ]
    }
}

pub struct Supervised {
    cfg: SupervisedConfig,
}

impl Component for Supervised {
    const NAME: &'static str = "supervised";
    const ABOUT: &'static str = "supervised classification: cross-entropy on `logits` (label smoothing, crop/flip)";
    type Config = SupervisedConfig;
    fn new(cfg: SupervisedConfig, _ctx: &CreateCtx) -> Result<Self> {
        if !(0.0..1.0).contains(&cfg.label_smoothing) {
            bail!(Config, "label_smoothing must be in [0, 1), got {}", cfg.label_smoothing);
        }
        if cfg.crop_padding < 0 || !(0.0..=1.0).contains(&cfg.hflip_p) {
            bail!(Config, "crop_padding must be >= 0 and hflip_p in [0, 1]");
        }
        Ok(Supervised { cfg })
    }
}

impl Objective for Supervised {
    fn info(&self) -> ObjectiveInfo {
        ObjectiveInfo {
            needs_fields: vec!["image".into(), "label".into()],
            needs_outputs: vec!["logits".into()],
            adds_fields: vec![],
            metrics: vec!["accuracy".into(), "labelled_fraction".into()],
        }
    }

    /// In training, each image is translated / flipped with randomness from
    /// (seed, stream, epoch, sample index), so a resumed run makes the same views.
    fn prepare(&self, mut batch: Tensors, ctx: &StepCtx) -> Result<Tensors> {
        if !ctx.train || (self.cfg.crop_padding == 0 && self.cfg.hflip_p == 0.0) {
            return Ok(batch);
        }
        let index = Vec::<i64>::try_from(&batch.require("sample_index")?.f_to_device(Device::Cpu)?)?;
        let mut rngs = sample_rngs(ctx.seed, STREAM_CROP_FLIP, ctx.epoch, &index, 0);
        let cfg = CropFlip { padding: self.cfg.crop_padding, hflip_p: self.cfg.hflip_p };
        let images = crop_flip(batch.require("image")?, &mut rngs, &cfg)?;
        batch.insert("image", images);
        Ok(batch)
    }

    /// Cross-entropy over the labelled samples (label -100 marks an unlabelled one in
    /// semi-supervised runs).
    fn loss(&self, batch: &Tensors, outputs: &Tensors, _ctx: &StepCtx) -> Result<LossOutput> {
        let logits = outputs.require("logits")?; // [B, classes]
        let labels = batch.require("label")?; // [B]
        let (loss, accuracy) =
            labelled_cross_entropy(logits, labels, self.cfg.label_smoothing).map_err(|e| e.context("supervised"))?;
        // Share of the batch that carries a label (1 unless the data is partly labelled).
        let labelled = labels.f_ne(pt_sdk::losses::IGNORE_LABEL)?.f_to_kind(Kind::Float)?.f_mean(Kind::Float)?;
        Ok(LossOutput { loss, metrics: vec![("accuracy".into(), accuracy), ("labelled_fraction".into(), labelled)] })
    }
}
