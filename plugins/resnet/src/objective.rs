//! `supervised`: cross-entropy on the architecture's `logits`, with optional label smoothing and
//! train-time random crop / flip made on the device in batch form.

use pt_kit::losses::{labelled_cross_entropy, IGNORE_LABEL};
use pt_kit::upload::upload;
use pt_kit::vision::augment::{crop_flip_by, crop_flip_theta, image_shape, sample_rngs, CropFlip, CropFlipParams};
use pt_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// Random stream of the supervised augmentation (see `pt_sdk::rng`).
const STREAM_CROP_FLIP: u64 = 0xC60F;

/// Fields the loader thread draws for `prepare`: the rows to keep `[K]` (every row when the
/// batch is fully labelled or not at all) and, when augmenting, their crop/flip affines
/// `[K, 2, 3]`.
const DRAWN_KEEP: &str = "supervised/keep";
const DRAWN_THETA: &str = "supervised/theta";

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
            draws_on_host: true,
            ..Default::default()
        }
    }

    /// On the loader thread, where the labels are host values: the labelled rows and their
    /// crop/flip affines, so the training step reads nothing back from the device. A partly
    /// labelled batch's `sample_index` is replaced by its kept rows' (it stays on the host).
    fn draw_on_host(&self, batch: &Tensors, ctx: &StepCtx) -> Result<Tensors> {
        let (keep, kept_index, theta) = self.draw(batch, ctx)?;
        let mut drawn = Tensors::new().with(DRAWN_KEEP, Tensor::f_from_slice(&keep)?);
        if let Some(index) = kept_index {
            drawn.insert("sample_index", Tensor::f_from_slice(&index)?);
        }
        if let Some(theta) = theta {
            drawn.insert(DRAWN_THETA, theta);
        }
        Ok(drawn)
    }

    /// In training, a partly labelled batch keeps only its labelled samples (the others add
    /// nothing to the loss: no need to run the model on them), and each image is translated /
    /// flipped with randomness from (seed, stream, epoch, sample index), so a resumed run makes
    /// the same views. Drawn on the loader thread, or here (reading the labels back) for a
    /// batch the loader did not draw.
    fn prepare(&self, mut batch: Tensors, ctx: &StepCtx) -> Result<Tensors> {
        if !ctx.train {
            return Ok(batch);
        }
        let (keep, theta) = match batch.remove(DRAWN_KEEP) {
            Some(keep) => (keep, batch.remove(DRAWN_THETA)),
            None => {
                let (keep, kept_index, theta) = self.draw(&batch, ctx)?;
                // The kept rows' sample indices, like the batch's own, stay on the host.
                if let Some(index) = kept_index {
                    batch.insert("sample_index", Tensor::f_from_slice(&index)?);
                }
                let device = batch.require("label")?.device();
                (upload(&Tensor::f_from_slice(&keep)?, device)?, theta.map(|t| upload(&t, device)).transpose()?)
            }
        };
        let mut batch = select_rows(batch, &keep)?;
        if let Some(theta) = theta {
            let images = crop_flip_by(batch.require("image")?, &theta)?;
            batch.insert("image", images);
        }
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

impl Supervised {
    fn augments(&self) -> bool {
        self.cfg.crop_padding != 0 || self.cfg.hflip_p != 0.0
    }

    /// What `prepare` needs, from the batch's labels and sample indices as host values: the rows
    /// to keep, their sample indices when that narrows the batch (they replace its own), and
    /// their crop/flip affines when augmenting.
    fn draw(&self, batch: &Tensors, ctx: &StepCtx) -> Result<(Vec<i64>, Option<Vec<i64>>, Option<Tensor>)> {
        let (keep, index) = self.labelled_rows(batch)?;
        let theta = self.affines(batch, index.as_deref(), ctx)?;
        let narrowed = keep.len() as i64 != batch.require("label")?.size()[0];
        Ok((keep, index.filter(|_| narrowed), theta))
    }

    /// The rows of `batch` to train on, and their sample indices when the batch has them: the
    /// labelled rows when some but not all carry a label, else every row (a batch without
    /// labels then has loss zero). Reads the labels as host values.
    fn labelled_rows(&self, batch: &Tensors) -> Result<(Vec<i64>, Option<Vec<i64>>)> {
        let labels = batch.require("label")?.f_to_kind(Kind::Int64)?; // [B]
        let labels = Vec::<i64>::try_from(&labels.f_to_device(Device::Cpu)?)?;
        let labelled: Vec<i64> = (0..labels.len() as i64).filter(|&i| labels[i as usize] != IGNORE_LABEL).collect();
        let keep = match labelled.is_empty() || labelled.len() == labels.len() {
            true => (0..labels.len() as i64).collect(),
            false => labelled,
        };
        // The host keeps `sample_index` on the CPU.
        let Some(index) = batch.get("sample_index") else { return Ok((keep, None)) };
        let index = Vec::<i64>::try_from(&index.f_to_kind(Kind::Int64)?)?;
        if index.len() != labels.len() {
            bail!(Shape, "supervised: {} sample indices for {} labels", index.len(), labels.len());
        }
        let kept_index = keep.iter().map(|&k| index[k as usize]).collect();
        Ok((keep, Some(kept_index)))
    }

    /// The kept samples' crop/flip affines `[K, 2, 3]` (on the CPU), from (seed, stream, epoch,
    /// sample index); None when not augmenting.
    fn affines(&self, batch: &Tensors, index: Option<&[i64]>, ctx: &StepCtx) -> Result<Option<Tensor>> {
        if !self.augments() {
            return Ok(None);
        }
        let Some(index) = index else {
            bail!(Shape, "supervised: crop_padding / hflip_p need the batch's sample_index (the host adds it)")
        };
        let [_, _, height, width] = image_shape(batch.require("image")?, "supervised")?;
        let cfg = CropFlip { padding: self.cfg.crop_padding, hflip_p: self.cfg.hflip_p };
        let params: Vec<CropFlipParams> = sample_rngs(ctx.seed, STREAM_CROP_FLIP, ctx.epoch, index, 0)
            .iter_mut()
            .map(|rng| cfg.sample(rng))
            .collect();
        Ok(Some(crop_flip_theta(&params, height, width)?))
    }
}

/// Every tensor with the batch's rows narrowed to `keep` (on their device; `sample_index`,
/// on the host, is already narrowed), or the batch as it is when `keep` is every row.
fn select_rows(batch: Tensors, keep: &Tensor) -> Result<Tensors> {
    let rows = batch.require("label")?.size()[0];
    if keep.size()[0] == rows {
        return Ok(batch);
    }
    let mut out = Tensors::new();
    for (name, t) in batch.into_iter() {
        let narrow = t.dim() > 0 && t.size()[0] == rows && name != "sample_index";
        out.insert(name, if narrow { t.f_index_select(0, keep)? } else { t });
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

    /// What the loader thread draws gives `prepare` the batch it makes by itself (kept rows,
    /// their views, their sample indices), and it is all the step needs: no field left over.
    #[test]
    fn loader_drawn_rows_and_views_equal_those_drawn_in_prepare() {
        let ctx = StepCtx { seed: 5, epoch: 1, step: 0, rank: 0, world_size: 1, device: -1, train: true };
        let augmenting = SupervisedConfig { crop_padding: 2, hflip_p: 0.5, ..SupervisedConfig::default() };
        let images = Tensor::rand([6, 3, 7, 7], (Kind::Float, Device::Cpu));
        let partly = vec![3i64, IGNORE_LABEL, 1, IGNORE_LABEL, 0, 2];
        for (cfg, labels) in [
            (augmenting.clone(), partly.clone()),
            (augmenting, vec![1, 2, 3, 4, 5, 6]),
            (SupervisedConfig::default(), partly),
        ] {
            let augments = cfg.crop_padding != 0;
            let objective = Supervised::new(cfg, &CreateCtx::default()).unwrap();
            let batch = Tensors::new()
                .with("image", images.shallow_clone())
                .with("label", Tensor::from_slice(&labels))
                .with("sample_index", Tensor::from_slice(&[20i64, 21, 22, 23, 24, 25]));
            let drawn = objective.draw_on_host(&batch, &ctx).unwrap();
            assert!(drawn.iter().all(|(_, t)| t.device() == Device::Cpu));
            let merged: Tensors = batch.share().into_iter().chain(drawn).collect();
            let from_loader = objective.prepare(merged, &ctx).unwrap();
            let in_prepare = objective.prepare(batch.share(), &ctx).unwrap();
            let mut names: Vec<&str> = from_loader.names().collect();
            names.sort();
            assert_eq!(names, ["image", "label", "sample_index"]);
            for name in names {
                assert!(from_loader.require(name).unwrap().equal(in_prepare.require(name).unwrap()), "{name}");
            }
            let rows: Vec<i64> = (0..6).filter(|&i| labels[i as usize] != IGNORE_LABEL).collect();
            assert_eq!(from_loader.require("image").unwrap().size(), [rows.len() as i64, 3, 7, 7]);
            // Views, not the kept images themselves (translations and flips of random pixels).
            let kept_images = images.index_select(0, &Tensor::from_slice(&rows));
            assert_eq!(from_loader.require("image").unwrap().equal(&kept_images), !augments);
            let kept_index: Vec<i64> = rows.iter().map(|r| 20 + r).collect();
            assert_eq!(Vec::<i64>::try_from(from_loader.require("sample_index").unwrap()).unwrap(), kept_index);
        }
    }
}
