//! `fixmatch`: semi-supervised consistency from unlabelled images (Sohn et al. 2020, "FixMatch",
//! <https://arxiv.org/abs/2001.07685>). Each image is seen twice in one forward: weakly augmented
//! (translate + flip) and strongly augmented (SimCLR's crop and colour jitter, then Cutout). Where
//! the model's prediction on the weak view is confident (max probability ≥ `threshold`), its
//! arg-max is a pseudo-label that the strong view is trained to predict. Labels are not used, so
//! it learns from every image; mixed with `supervised` on the labelled fraction
//! (`[[objective.mix]]`) it is FixMatch's semi-supervised loss `ℓs + λu·ℓu`.

use pt_kit::losses::IGNORE_LABEL;
use pt_kit::vision::augment::{
    crop_flip_by, crop_flip_theta, image_shape, images_and_indices, sample_rngs, CropFlip, SimclrAugment, SimclrParams,
};
use pt_kit::vision::view_plan::{apply_simclr_view, simclr_view_tensors};
use pt_kit::vision::Normalization;
use pt_sdk::prelude::*;
use pt_sdk::rng::CounterRng;
use serde::{Deserialize, Serialize};

/// Random streams of the two views (see `pt_sdk::rng`).
const STREAM_WEAK: u64 = 0xF1C5;
const STREAM_STRONG: u64 = 0xF1C6;

/// What is drawn for `prepare` (on the loader thread, or in `prepare` itself): the weak views'
/// affines `[B, 2, 3]`, the strong views' tensors (see `pt_kit::vision::view_plan`) and the
/// Cutout boxes `[B, 4]` (top, bottom, left, right; absent when Cutout is off).
const WEAK_THETA: &str = "fixmatch/weak/theta";
const STRONG: &str = "fixmatch/strong/";
const CUTOUT: &str = "fixmatch/cutout";

/// The defaults are the paper's: threshold 0.95, weak = flip + translation by up to 12.5 % (4 px
/// of 32), Cutout of up to half the side.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, PluginConfig)]
#[serde(default, deny_unknown_fields)]
pub struct FixMatchConfig {
    /// confidence (max softmax probability on the weak view) that makes a pseudo-label
    #[config(default = 0.95, above = 0.0, max = 1.0)]
    pub threshold: f64,
    /// weak view: random translation by up to N pixels
    #[config(default = 4, min = 0)]
    pub crop_padding: i64,
    /// weak and strong views: probability of a horizontal flip (0 for digits and text)
    #[config(default = 0.5, min = 0.0, max = 1.0)]
    pub hflip_p: f64,
    /// strong view: smallest random-resized-crop area, as a fraction of the image
    #[config(default = 0.2)]
    pub min_scale: f64,
    /// strong view: colour-jitter strength (SimCLR's s)
    #[config(default = 0.5)]
    pub strength: f64,
    /// strong view: side of the Cutout square as a fraction of the image side (0: off)
    #[config(default = 0.5, min = 0.0, below = 1.0)]
    pub cutout: f64,
    /// [height, width] of the images
    #[config(input, optional)]
    pub image_size: Option<Vec<i64>>,
    /// per-channel mean the dataset normalised with
    #[config(input, optional)]
    pub mean: Option<Vec<f64>>,
    /// per-channel std the dataset normalised with
    #[config(input, optional)]
    pub std: Option<Vec<f64>>,
}

pub struct FixMatch {
    cfg: FixMatchConfig,
    /// The strong augmentation and the dataset's normalisation, or why they are unknown.
    views: std::result::Result<(SimclrAugment, Normalization), PtError>,
}

impl Component for FixMatch {
    const NAME: &'static str = "fixmatch";
    const ABOUT: &'static str =
        "semi-supervised consistency (FixMatch): confident predictions on weak views are pseudo-labels for strong views";
    type Config = FixMatchConfig;
    fn new(cfg: FixMatchConfig, _ctx: &CreateCtx) -> Result<Self> {
        let views = Self::views(&cfg);
        Ok(FixMatch { cfg, views })
    }
}

impl FixMatch {
    fn views(cfg: &FixMatchConfig) -> std::result::Result<(SimclrAugment, Normalization), PtError> {
        let size = match cfg.image_size.as_deref() {
            Some([h, w]) if h == w && *h > 0 => *h,
            Some(other) => return Err(PtError::config(format!("fixmatch: image_size {other:?} is not square"))),
            None => {
                return Err(PtError::config(
                    "fixmatch: image_size is unknown: use an image dataset that reports it or set objective.image_size = [h, w]",
                ))
            }
        };
        let (Some(mean), Some(std)) = (cfg.mean.clone(), cfg.std.clone()) else {
            return Err(PtError::config(
                "fixmatch: mean/std are unknown: use a dataset that reports its normalisation or set objective.mean and objective.std",
            ));
        };
        let augment = SimclrAugment {
            scale: (cfg.min_scale, 1.0),
            strength: cfg.strength,
            hflip_p: cfg.hflip_p,
            ..SimclrAugment::small(size)
        };
        augment.validate()?;
        let norm = Normalization { mean, std };
        norm.validate()?;
        Ok((augment, norm))
    }

    /// Both views' parameters for images of `shape` whose samples are `index`, as CPU tensors.
    fn draw(&self, shape: [i64; 4], index: &[i64], ctx: &StepCtx) -> Result<Tensors> {
        let (augment, _) = self.views.as_ref().map_err(Clone::clone)?;
        let [_, _, height, width] = shape;
        let weak_cfg = CropFlip { padding: self.cfg.crop_padding, hflip_p: self.cfg.hflip_p };
        let weak: Vec<_> =
            sample_rngs(ctx.seed, STREAM_WEAK, ctx.epoch, index, 0).iter_mut().map(|r| weak_cfg.sample(r)).collect();
        let mut drawn = Tensors::new().with(WEAK_THETA, crop_flip_theta(&weak, height, width)?);
        // The strong view's parameters, then its Cutout, from one stream per sample.
        let mut strong_rngs = sample_rngs(ctx.seed, STREAM_STRONG, ctx.epoch, index, 0);
        let strong: Vec<SimclrParams> = strong_rngs.iter_mut().map(|r| augment.sample(r, height, width)).collect();
        for (name, t) in simclr_view_tensors(&strong, augment, shape, STRONG)? {
            drawn.insert(name, t);
        }
        let side = augment.out_size;
        if let Some(boxes) = cutout_boxes(&mut strong_rngs, self.cfg.cutout, side, side) {
            drawn.insert(CUTOUT, Tensor::f_from_slice(&boxes)?.f_reshape([-1, 4])?);
        }
        Ok(drawn)
    }

    /// Weak and strong views of `images` ([B, C, H, W], normalised) from `drawn` (on their
    /// device), stacked as [2B, C, H, W].
    fn two_views(&self, images: &Tensor, drawn: &Tensors) -> Result<Tensor> {
        let (augment, norm) = self.views.as_ref().map_err(Clone::clone)?;
        let pixels = norm.denormalize(images)?.f_clamp(0.0, 1.0)?; // [B, C, H, W] in [0, 1]
        let need = |n: &str| drawn.require(n).map_err(|e| e.context("fixmatch (drawn views)"));
        let weak = crop_flip_by(&pixels, need(WEAK_THETA)?)?;
        let mut strong = apply_simclr_view(&pixels, drawn, STRONG, augment)?;
        if let Some(boxes) = drawn.get(CUTOUT) {
            strong = cutout_by(&strong, boxes)?;
        }
        Ok(Tensor::f_cat(&[norm.normalize(&weak)?, norm.normalize(&strong)?], 0)?)
    }
}

/// Cutout (DeVries & Taylor 2017) as FixMatch uses it: a square of side `fraction` of the image
/// side at a uniformly drawn centre per sample, clipped at the borders, as `[top, bottom, left,
/// right]` rows (bottom and right exclusive), flattened; None when `fraction` is 0.
pub fn cutout_boxes(rngs: &mut [CounterRng], fraction: f64, height: i64, width: i64) -> Option<Vec<i64>> {
    if fraction <= 0.0 {
        return None;
    }
    let side = ((fraction * height.min(width) as f64).round() as i64).max(1);
    let mut boxes = Vec::with_capacity(4 * rngs.len());
    for rng in rngs.iter_mut() {
        let (cy, cx) = (rng.below(height as u64) as i64, rng.below(width as u64) as i64);
        let (top, left) = ((cy - side / 2).max(0), (cx - side / 2).max(0));
        boxes.extend([top, (cy - side / 2 + side).min(height), left, (cx - side / 2 + side).min(width)]);
    }
    Some(boxes)
}

/// `images` (pixel space [0, 1], `[B, C, H, W]`) greyed (0.5) inside each sample's box of
/// `boxes` `[B, 4]` (from [`cutout_boxes`], on the images' device); reads nothing back.
pub fn cutout_by(images: &Tensor, boxes: &Tensor) -> Result<Tensor> {
    let (b, _, h, w) = images.size4()?;
    if boxes.size() != [b, 4] {
        bail!(Shape, "fixmatch: Cutout boxes {:?} for a batch of {b} images; expected [{b}, 4]", boxes.size());
    }
    let device = images.device();
    let bound = |i: i64| -> Result<Tensor> { Ok(boxes.f_select(1, i)?.f_view([b, 1, 1])?) };
    let ys = Tensor::f_arange(h, (Kind::Int64, device))?.f_view([1, h, 1])?;
    let xs = Tensor::f_arange(w, (Kind::Int64, device))?.f_view([1, 1, w])?;
    // Rows [B, H, 1] and columns [B, 1, W] inside each box; keep [B, 1, H, W] is 0 inside it.
    let rows = ys.f_ge_tensor(&bound(0)?)?.f_logical_and(&ys.f_lt_tensor(&bound(1)?)?)?;
    let cols = xs.f_ge_tensor(&bound(2)?)?.f_logical_and(&xs.f_lt_tensor(&bound(3)?)?)?;
    let keep = rows.f_logical_and(&cols)?.f_logical_not()?.f_unsqueeze(1)?.f_to_kind(images.kind())?;
    // keep · x + (1 − keep) · 0.5
    Ok(images.f_sub_scalar(0.5)?.f_mul(&keep)?.f_add_scalar(0.5)?)
}

impl Objective for FixMatch {
    fn info(&self) -> ObjectiveInfo {
        ObjectiveInfo {
            needs_fields: vec!["image".into()],
            needs_outputs: vec!["logits".into()],
            adds_fields: vec![],
            metrics: vec!["confident_share".into(), "pseudo_label_accuracy".into()],
            draws_on_host: true,
            ..Default::default()
        }
    }

    /// On the loader thread: both views' crops, flips, colour factors and Cutout boxes as small
    /// tensors.
    fn draw_on_host(&self, batch: &Tensors, ctx: &StepCtx) -> Result<Tensors> {
        let (images, index) = images_and_indices(batch, "fixmatch")?;
        self.draw(image_shape(images, "fixmatch")?, &index, ctx)
    }

    /// In training, the batch's images become [weak views; strong views]; views of sample i come
    /// from (seed, stream, epoch, i), so a resumed run makes the same ones. Drawn on the loader
    /// thread, or here for a batch the loader did not draw.
    fn prepare(&self, mut batch: Tensors, ctx: &StepCtx) -> Result<Tensors> {
        if !ctx.train {
            return Ok(batch);
        }
        let images = batch.require("image")?;
        let views = match batch.contains(WEAK_THETA) {
            true => self.two_views(images, &batch)?,
            false => {
                let (images, index) = images_and_indices(&batch, "fixmatch")?;
                let drawn = self.draw(image_shape(images, "fixmatch")?, &index, ctx)?.to_device(images.device())?;
                self.two_views(images, &drawn)?
            }
        };
        let drawn: Vec<String> = batch.names().filter(|n| n.starts_with("fixmatch/")).map(String::from).collect();
        for name in drawn {
            batch.remove(&name);
        }
        batch.insert("image", views);
        Ok(batch)
    }

    /// Cross-entropy of the strong views against the confident weak views' arg-max, averaged
    /// over all B images (unconfident ones count zero, as in the paper). Outside training (one
    /// view per image) the views are the same images.
    fn loss(&self, batch: &Tensors, outputs: &Tensors, ctx: &StepCtx) -> Result<LossOutput> {
        let logits = outputs.require("logits")?.f_to_kind(Kind::Float)?; // [2B, classes] (training)
        let rows = logits.size()[0];
        let (weak, strong) = if ctx.train {
            if rows % 2 != 0 {
                bail!(Shape, "fixmatch: expected weak and strong views (an even number of rows), got {rows}");
            }
            (logits.f_narrow(0, 0, rows / 2)?, logits.f_narrow(0, rows / 2, rows / 2)?)
        } else {
            (logits.shallow_clone(), logits.shallow_clone())
        };
        let (confidence, pseudo) = weak.f_detach()?.f_softmax(-1, Kind::Float)?.f_max_dim(1, false)?; // [B], [B]
        let confident = confidence.f_ge(self.cfg.threshold)?; // [B] bool
        let mask = confident.f_to_kind(Kind::Float)?;
        let nll = strong
            .f_log_softmax(-1, Kind::Float)?
            .f_gather(1, &pseudo.f_unsqueeze(1)?, false)?
            .f_squeeze_dim(1)?
            .f_neg()?; // [B]
        let loss = nll.f_mul(&mask)?.f_mean(Kind::Float)?;
        let mut metrics = vec![("confident_share".to_string(), mask.f_mean(Kind::Float)?)];
        // How often confident pseudo-labels are right, where the true label is known.
        if let Some(labels) = batch.get("label") {
            let known = labels.f_ne(IGNORE_LABEL)?.f_logical_and(&confident)?;
            let right = pseudo.f_eq_tensor(labels)?.f_logical_and(&known)?.f_sum(Kind::Float)?;
            let accuracy = right.f_div(&known.f_sum(Kind::Float)?.f_clamp_min(1.0)?)?;
            metrics.push(("pseudo_label_accuracy".to_string(), accuracy));
        }
        Ok(LossOutput { loss, metrics })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(train: bool) -> StepCtx {
        StepCtx { seed: 1, epoch: 0, step: 0, rank: 0, world_size: 1, device: -1, train }
    }

    fn objective(threshold: f64) -> FixMatch {
        let cfg = FixMatchConfig {
            threshold,
            image_size: Some(vec![8, 8]),
            mean: Some(vec![0.5]),
            std: Some(vec![0.25]),
            ..FixMatchConfig::default()
        };
        FixMatch::new(cfg, &CreateCtx::default()).unwrap()
    }

    #[test]
    fn confident_weak_predictions_train_the_strong_views() {
        let fm = objective(0.9);
        // Weak views: row 0 confident in class 2, row 1 unsure; strong views: anything.
        let weak = Tensor::from_slice(&[0.0f32, 0.0, 10.0, 1.0, 1.0, 1.0]).view([2, 3]);
        let strong = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 5.0, 0.0, 0.0]).view([2, 3]);
        let logits = Tensor::cat(&[weak, strong.shallow_clone()], 0);
        let batch = Tensors::new().with("label", Tensor::from_slice(&[2i64, IGNORE_LABEL]));
        let out = fm.loss(&batch, &Tensors::new().with("logits", logits), &ctx(true)).unwrap();
        // Only row 0 counts: −log softmax(strong[0])[2], averaged over both rows.
        let expected = -f64::try_from(strong.log_softmax(-1, Kind::Float).get(0).get(2)).unwrap() / 2.0;
        assert!((f64::try_from(&out.loss).unwrap() - expected).abs() < 1e-6);
        let metric = |name: &str| f64::try_from(&out.metrics.iter().find(|(n, _)| n == name).unwrap().1).unwrap();
        assert_eq!(metric("confident_share"), 0.5);
        assert_eq!(metric("pseudo_label_accuracy"), 1.0);
        // Nothing confident: no loss, no pseudo-labels.
        let out = objective(1.0)
            .loss(&batch, &Tensors::new().with("logits", Tensor::cat(&[strong.shallow_clone(), strong], 0)), &ctx(true))
            .unwrap();
        assert_eq!(f64::try_from(&out.loss).unwrap(), 0.0);
    }

    #[test]
    fn training_batches_hold_weak_then_strong_views_that_repeat_per_sample() {
        let fm = objective(0.95);
        let images = Tensor::rand([3, 1, 8, 8], (Kind::Float, Device::Cpu))
            .f_sub_scalar(0.5)
            .unwrap()
            .f_mul_scalar(4.0)
            .unwrap();
        let batch = || {
            Tensors::new().with("image", images.shallow_clone()).with("sample_index", Tensor::from_slice(&[4i64, 9, 2]))
        };
        let out = fm.prepare(batch(), &ctx(true)).unwrap();
        let views = out.require("image").unwrap();
        assert_eq!(views.size(), vec![6, 1, 8, 8]);
        assert!(views
            .f_allclose(fm.prepare(batch(), &ctx(true)).unwrap().require("image").unwrap(), 0.0, 0.0, false)
            .unwrap());
        // The strong views differ from the weak ones; evaluation leaves the images alone.
        assert!(!views.narrow(0, 0, 3).allclose(&views.narrow(0, 3, 3), 1e-3, 1e-3, false));
        assert_eq!(fm.prepare(batch(), &ctx(false)).unwrap().require("image").unwrap().size(), vec![3, 1, 8, 8]);
    }

    #[test]
    fn cutout_greys_each_samples_box_and_nothing_else() {
        let images = Tensor::zeros([3, 2, 10, 10], (Kind::Float, Device::Cpu));
        let mut rngs = sample_rngs(0, 1, 0, &[0, 1, 2], 0);
        let boxes = cutout_boxes(&mut rngs, 0.4, 10, 10).unwrap();
        let out = cutout_by(&images, &Tensor::from_slice(&boxes).view([3, 4])).unwrap();
        for (i, b) in boxes.chunks(4).enumerate() {
            let [top, bottom, left, right] = [b[0], b[1], b[2], b[3]];
            // A 4 × 4 square, clipped where its centre is near a border.
            assert!(0 <= top && top < bottom && bottom <= 10 && bottom - top <= 4, "{b:?}");
            assert!(0 <= left && left < right && right <= 10 && right - left <= 4, "{b:?}");
            let grey = out.get(i as i64).eq(0.5);
            assert_eq!(i64::try_from(grey.sum(Kind::Int64)).unwrap(), 2 * (bottom - top) * (right - left));
            let inside = grey.narrow(1, top, bottom - top).narrow(2, left, right - left);
            assert!(bool::try_from(inside.all()).unwrap(), "sample {i}: not grey inside {b:?}");
        }
        assert!(cutout_boxes(&mut rngs, 0.0, 10, 10).is_none());
    }

    /// The loader thread's draw makes the views `prepare` draws for itself, and leaves no
    /// drawn field behind.
    #[test]
    fn loader_drawn_views_equal_views_drawn_in_prepare() {
        let fm = objective(0.95);
        let images = Tensor::rand([4, 3, 8, 8], (Kind::Float, Device::Cpu)).f_sub_scalar(0.5).unwrap();
        let batch = Tensors::new().with("image", images).with("sample_index", Tensor::from_slice(&[7i64, 1, 3, 5]));
        let drawn = fm.draw_on_host(&batch, &ctx(true)).unwrap();
        assert!(drawn.contains(WEAK_THETA) && drawn.contains(CUTOUT) && drawn.contains("fixmatch/strong/theta"));
        assert!(drawn.iter().all(|(_, t)| t.device() == Device::Cpu));
        let merged: Tensors = batch.share().into_iter().chain(drawn).collect();
        let from_loader = fm.prepare(merged, &ctx(true)).unwrap();
        assert!(from_loader.names().all(|n| !n.starts_with("fixmatch/")));
        let in_prepare = fm.prepare(batch, &ctx(true)).unwrap();
        assert!(from_loader.require("image").unwrap().equal(in_prepare.require("image").unwrap()));
    }
}
