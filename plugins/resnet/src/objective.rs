//! `supervised`: cross-entropy on the architecture's `logits`, with optional label smoothing and
//! train-time random crop / flip made on the device in batch form.

use pt_kit::losses::{labelled_cross_entropy, IGNORE_LABEL};
use pt_kit::vision::augment::{crop_flip, sample_rngs, CropFlip};
use pt_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// Random stream of the supervised augmentation (see `pt_sdk::rng`).
const STREAM_CROP_FLIP: u64 = 0xC60F;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, PluginConfig)]
#[serde(default, deny_unknown_fields)]
pub struct SupervisedConfig {
    /// cross-entropy label smoothing in [0, 1)
    #[config(min = 0.0, below = 1.0)]
    pub label_smoothing: f64,
    /// random translation by up to N pixels (RandomCrop with zero padding N; 0: off)
    #[config(min = 0)]
    pub crop_padding: i64,
    /// probability of a horizontal flip (0 for digits and text)
    #[config(min = 0.0, max = 1.0)]
    pub hflip_p: f64,
}

pub struct Supervised {
    cfg: SupervisedConfig,
}

impl Component for Supervised {
    const NAME: &'static str = "supervised";
    const ABOUT: &'static str = "supervised classification: cross-entropy on `logits` (label smoothing, crop/flip)";
    type Config = SupervisedConfig;
    fn new(cfg: SupervisedConfig, _ctx: &CreateCtx) -> Result<Self> {
        Ok(Supervised { cfg })
    }
}

impl Objective for Supervised {
    fn info(&self) -> ObjectiveInfo {
        ObjectiveInfo {
            needs_fields: vec!["image".into(), "label".into()],
            needs_outputs: vec!["logits".into()],
            adds_fields: vec![],
            metrics: vec!["accuracy".into(), "labelled_samples".into()],
            ..Default::default()
        }
    }

    /// In training, a partly labelled batch keeps only its labelled samples (the others add
    /// nothing to the loss: no need to run the model on them), and each image is translated /
    /// flipped with randomness from (seed, stream, epoch, sample index), so a resumed run makes
    /// the same views.
    fn prepare(&self, batch: Tensors, ctx: &StepCtx) -> Result<Tensors> {
        if !ctx.train {
            return Ok(batch);
        }
        let augment = self.cfg.crop_padding != 0 || self.cfg.hflip_p != 0.0;
        let (labels, index) = host_labels_and_indices(&batch, augment)?;
        let (mut batch, index) = match labelled_positions(&labels) {
            Some(keep) => (select_rows(&batch, &keep)?, keep.iter().filter_map(|&k| index.get(k).copied()).collect()),
            None => (batch, index),
        };
        if !augment {
            return Ok(batch);
        }
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
        // Samples of the batch that carry a label (all of them unless the data is partly labelled).
        let labelled = labels.f_ne(IGNORE_LABEL)?.f_to_kind(Kind::Float)?.f_sum(Kind::Float)?;
        Ok(LossOutput { loss, metrics: vec![("accuracy".into(), accuracy), ("labelled_samples".into(), labelled)] })
    }
}

/// The batch's labels and, with `indices`, its sample indices, on the host: the labels are the
/// one device-to-host copy of a training step.
fn host_labels_and_indices(batch: &Tensors, indices: bool) -> Result<(Vec<i64>, Vec<i64>)> {
    let labels = batch.require("label")?.f_to_kind(Kind::Int64)?; // [B]
    if !indices {
        return Ok((Vec::<i64>::try_from(&labels.f_to_device(Device::Cpu)?)?, Vec::new()));
    }
    let index = batch.require("sample_index")?;
    if index.size() != labels.size() {
        bail!(Shape, "supervised: sample indices {:?} do not match labels {:?}", index.size(), labels.size());
    }
    // The host keeps `sample_index` on the CPU: only the labels come back from the device.
    let index = index.f_to_device(Device::Cpu)?.f_to_kind(Kind::Int64)?;
    Ok((Vec::<i64>::try_from(&labels.f_to_device(Device::Cpu)?)?, Vec::<i64>::try_from(&index)?))
}

/// The rows that carry a label, when some but not all do (otherwise the whole batch is kept:
/// its loss then is zero, or uses every sample).
fn labelled_positions(labels: &[i64]) -> Option<Vec<usize>> {
    let keep: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] != IGNORE_LABEL).collect();
    (!keep.is_empty() && keep.len() < labels.len()).then_some(keep)
}

/// Every tensor with the batch's first dimension narrowed to the rows `keep`.
fn select_rows(batch: &Tensors, keep: &[usize]) -> Result<Tensors> {
    let rows = batch.require("label")?.size()[0];
    let keep = Tensor::f_from_slice(&keep.iter().map(|&k| k as i64).collect::<Vec<_>>())?; // [kept], host
    let mut out = Tensors::new();
    for (name, t) in batch.iter() {
        let t = if t.dim() > 0 && t.size()[0] == rows {
            t.f_index_select(0, &keep.f_to_device(t.device())?)?
        } else {
            t.shallow_clone()
        };
        out.insert(name, t);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_keeps_only_labelled_rows() {
        let batch = Tensors::new()
            .with("image", Tensor::arange(4, (Kind::Float, Device::Cpu)).view([4, 1, 1, 1]))
            .with("label", Tensor::from_slice(&[3i64, IGNORE_LABEL, 1, IGNORE_LABEL]))
            .with("sample_index", Tensor::from_slice(&[10i64, 11, 12, 13]));
        let ctx = StepCtx { seed: 0, epoch: 0, step: 0, rank: 0, world_size: 1, device: -1, train: true };
        let plain = Supervised::new(SupervisedConfig::default(), &CreateCtx::default()).unwrap();
        let kept = plain.prepare(batch.share(), &ctx).unwrap();
        assert_eq!(Vec::<i64>::try_from(kept.require("label").unwrap()).unwrap(), vec![3, 1]);
        assert_eq!(Vec::<i64>::try_from(kept.require("sample_index").unwrap()).unwrap(), vec![10, 12]);
        assert_eq!(Vec::<f32>::try_from(kept.require("image").unwrap().flatten(0, -1)).unwrap(), vec![0.0, 2.0]);
        // No labelled sample: the batch as it was.
        let none = Tensors::new().with("label", Tensor::from_slice(&[IGNORE_LABEL, IGNORE_LABEL]));
        assert_eq!(plain.prepare(none, &ctx).unwrap().require("label").unwrap().size(), vec![2]);
        // Augmented, the kept rows get the views of their own sample indices: the same as a
        // batch of just those rows.
        let cfg = SupervisedConfig { crop_padding: 1, hflip_p: 0.5, ..SupervisedConfig::default() };
        let augmenting = Supervised::new(cfg, &CreateCtx::default()).unwrap();
        let images = Tensor::rand([4, 1, 5, 5], (Kind::Float, Device::Cpu));
        let rows = Tensor::from_slice(&[0i64, 2]);
        let partial = Tensors::new()
            .with("image", images.shallow_clone())
            .with("label", Tensor::from_slice(&[3i64, IGNORE_LABEL, 1, IGNORE_LABEL]))
            .with("sample_index", Tensor::from_slice(&[10i64, 11, 12, 13]));
        let labelled = Tensors::new()
            .with("image", images.index_select(0, &rows))
            .with("label", Tensor::from_slice(&[3i64, 1]))
            .with("sample_index", Tensor::from_slice(&[10i64, 12]));
        let a = augmenting.prepare(partial, &ctx).unwrap();
        let b = augmenting.prepare(labelled, &ctx).unwrap();
        assert!(a.require("image").unwrap().equal(b.require("image").unwrap()));
    }
}
