//! `clip`: an image architecture (role `image`) and a text architecture (role `text`) trained
//! together on captioned images. Each tower's `features` is projected (no bias) into a shared
//! space and L2-normalised; the loss is the symmetric InfoNCE over the global batch with a
//! learnt temperature (CLIP: Radford et al. 2021; names as in Hugging Face's `CLIPModel`:
//! `visual_projection.weight`, `text_projection.weight`, `logit_scale`).

use crate::loss::{clip_loss, gather_rows, l2_normalize};
use pt_kit::params::{Created, Params};
use pt_kit::text::{ids_outside, IDS_CHECKED};
use pt_kit::vision::augment::{
    image_shape, images_and_indices, sample_rngs, Normalization, SimclrAugment, SimclrParams,
};
use pt_kit::vision::view_plan::{apply_simclr_view, simclr_view_tensors};
use pt_sdk::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PluginConfig)]
#[serde(default, deny_unknown_fields)]
pub struct ClipConfig {
    /// width of the joint embedding space
    #[config(default = 128, min = 1)]
    pub embed_dim: i64,
    /// width of the image architecture's `features` (from [arch.image])
    #[config(input = "image.feature_dim")]
    pub image_dim: i64,
    /// width of the text architecture's `features` (from [arch.text])
    #[config(input = "text.feature_dim")]
    pub text_dim: i64,
    /// the text architecture's vocabulary (from [arch.text]): caption ids are checked against it
    /// on the loader thread, so the text tower need not read them back
    #[config(input = "text.vocab_size", optional)]
    pub text_vocab_size: Option<i64>,
    /// starting temperature: logits are cosine similarities divided by it (CLIP: 0.07)
    #[config(default = 0.07, above = 0.0)]
    pub init_temperature: f64,
    /// largest logit scale (1 / smallest temperature; CLIP clamps at 100)
    #[config(default = 100.0, above = 0.0)]
    pub max_logit_scale: f64,
    /// learn the temperature (false: keep init_temperature)
    #[config(default = true)]
    pub learn_temperature: bool,
    /// training images: random resized crops covering at least this share of the image (1: no crop)
    #[config(default = 1.0, above = 0.0, max = 1.0)]
    pub min_scale: f64,
    /// training images: colour jitter at this strength (SimCLR's: brightness, contrast and
    /// saturation 0.8·s, hue 0.2·s; 0: none), applied to 80 % of them
    #[config(min = 0.0)]
    pub jitter_strength: f64,
    /// training images: share turned to grayscale
    #[config(min = 0.0, max = 1.0)]
    pub grayscale_p: f64,
    /// per-channel mean the dataset normalised with (for augmenting pixels)
    #[config(input, optional)]
    pub mean: Option<Vec<f64>>,
    /// per-channel std the dataset normalised with
    #[config(input, optional)]
    pub std: Option<Vec<f64>>,
}

impl ClipConfig {
    /// The training images' augmentation, or None when every knob is off.
    fn augmentation(&self, size: i64) -> Option<SimclrAugment> {
        let off = self.min_scale >= 1.0 && self.jitter_strength == 0.0 && self.grayscale_p == 0.0;
        (!off).then(|| SimclrAugment {
            out_size: size,
            scale: (self.min_scale, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            // Emoji and text point somewhere: a mirrored arrow is another caption.
            hflip_p: 0.0,
            strength: self.jitter_strength,
            jitter_p: if self.jitter_strength > 0.0 { 0.8 } else { 0.0 },
            grayscale_p: self.grayscale_p,
            blur_p: 0.0,
        })
    }
}

/// Random stream of the image augmentation (see `pt_sdk::rng`).
const STREAM_AUGMENT: u64 = 0xC11A;

/// Prefix of the augmentation's drawn tensors (see `pt_kit::vision::view_plan`).
const DRAWN: &str = "clip/view/";

pub struct Clip {
    cfg: ClipConfig,
    visual_projection: Tensor, // [embed_dim, image_dim]
    text_projection: Tensor,   // [embed_dim, text_dim]
    logit_scale: Tensor,       // [] (log of 1 / temperature)
    params: Vec<(String, Tensor)>,
}

impl Component for Clip {
    const NAME: &'static str = "clip";
    const ABOUT: &'static str =
        "CLIP: image and text towers (roles image, text) projected into one space, symmetric InfoNCE over the global batch";
    const ROLES: &'static [&'static str] = &["image", "text"];
    type Config = ClipConfig;

    fn new(cfg: ClipConfig, ctx: &CreateCtx) -> Result<Self> {
        if let Some(augment) = cfg.augmentation(32) {
            augment.validate()?;
        }
        let created = Created::default();
        let p = Params::new(ctx.seed ^ 0xC11F, 0.0, ctx.device(), &created);
        // open_clip's init for its projections: normal with std = width^-1/2.
        let visual_projection = p.normal_std(
            "visual_projection.weight",
            &[cfg.embed_dim, cfg.image_dim],
            (cfg.image_dim as f64).powf(-0.5),
            None,
        )?;
        let text_projection = p.normal_std(
            "text_projection.weight",
            &[cfg.embed_dim, cfg.text_dim],
            (cfg.text_dim as f64).powf(-0.5),
            None,
        )?;
        let logit_scale = p.constant("logit_scale", &[], (1.0 / cfg.init_temperature).ln() as f32)?;
        drop(p);
        let mut params = created.into_parts().0;
        let logit_scale = if cfg.learn_temperature {
            logit_scale
        } else {
            params.retain(|(n, _)| n != "logit_scale");
            logit_scale.detach()
        };
        Ok(Clip { cfg, visual_projection, text_projection, logit_scale, params })
    }
}

impl Clip {
    /// Unit-norm embeddings of a tower's `features` ([B, width] → [B, embed_dim]), in fp32.
    fn project(&self, features: &Tensor, projection: &Tensor) -> Result<Tensor> {
        l2_normalize(&features.f_to_kind(Kind::Float)?.f_linear::<Tensor>(projection, None)?)
    }

    /// The augmentation's tensors (on the CPU) for images of `shape` whose samples are `index`,
    /// drawn per (seed, epoch, sample) so a resumed run makes the same views; none when every
    /// knob is off.
    fn draw(&self, shape: [i64; 4], index: &[i64], ctx: &StepCtx) -> Result<Tensors> {
        let Some(augment) = self.cfg.augmentation(shape[3]) else { return Ok(Tensors::new()) };
        let params: Vec<SimclrParams> = sample_rngs(ctx.seed, STREAM_AUGMENT, ctx.epoch, index, 0)
            .iter_mut()
            .map(|rng| augment.sample(rng, shape[2], shape[3]))
            .collect();
        simclr_view_tensors(&params, &augment, shape, DRAWN)
    }

    /// The batch's images with this step's crops and colour changes, from the tensors the
    /// loader thread drew, or drawn here for a batch it did not draw.
    fn augment(&self, batch: &Tensors, ctx: &StepCtx) -> Result<Tensor> {
        let images = batch.require("image")?;
        let shape = image_shape(images, "clip")?;
        let Some(augment) = self.cfg.augmentation(shape[3]) else { return Ok(images.shallow_clone()) };
        let norm = match (&self.cfg.mean, &self.cfg.std) {
            (Some(mean), Some(std)) => Normalization { mean: mean.clone(), std: std.clone() },
            _ => bail!(Config, "clip: augmenting needs the dataset's mean and std: use an image dataset that reports them or set objective.mean and objective.std"),
        };
        let drawn_here;
        let drawn = match batch.contains(&format!("{DRAWN}theta")) {
            true => batch,
            false => {
                let (_, index) = images_and_indices(batch, "clip")?;
                drawn_here = self.draw(shape, &index, ctx)?.to_device(images.device())?;
                &drawn_here
            }
        };
        let pixels = norm.denormalize(images)?.f_clamp(0.0, 1.0)?; // [B, C, H, W] in [0, 1]
        norm.normalize(&apply_simclr_view(&pixels, drawn, DRAWN, &augment)?)
    }

    /// exp(logit_scale), clamped at `max_logit_scale`.
    fn scale(&self) -> Result<Tensor> {
        Ok(self.logit_scale.f_clamp_max(self.cfg.max_logit_scale.ln())?.f_exp()?)
    }
}

impl Objective for Clip {
    fn info(&self) -> ObjectiveInfo {
        ObjectiveInfo {
            needs_fields: vec!["image".into(), "input_ids".into()],
            needs_outputs: vec!["image/features".into(), "text/features".into()],
            adds_fields: vec!["image/image".into(), "text/input_ids".into(), "text/attention_mask".into()],
            metrics: vec!["logit_scale".into(), "image_to_text_accuracy".into(), "text_to_image_accuracy".into()],
            embeds: vec!["image/embedding".into(), "text/embedding".into()],
            draws_on_host: self.cfg.augmentation(1).is_some() || self.cfg.text_vocab_size.is_some(),
            ..Default::default()
        }
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
    }

    /// On the loader thread: the training images' crops and colour factors as small tensors,
    /// and the captions' ids checked against the text tower's vocabulary.
    fn draw_on_host(&self, batch: &Tensors, ctx: &StepCtx) -> Result<Tensors> {
        let (images, index) = images_and_indices(batch, "clip")?;
        let mut drawn = self.draw(image_shape(images, "clip")?, &index, ctx)?;
        if let Some(vocab) = self.cfg.text_vocab_size {
            let ids = batch.require("input_ids")?.f_flatten(0, -1)?.f_to_kind(Kind::Int64)?;
            if let Some((min, max)) = ids_outside(&Vec::<i64>::try_from(&ids)?, vocab) {
                return Err(PtError::data(format!(
                    "clip: caption token ids range over [{min}, {max}] but the text architecture's vocab_size is \
                     {vocab}: leave [arch.text] vocab_size unset (it then comes from the dataset's tokenizer) or set \
                     it to at least {}",
                    max + 1
                )));
            }
            drawn.insert(format!("text/{IDS_CHECKED}"), Tensor::f_from_slice(&[1i64])?);
        }
        Ok(drawn)
    }

    /// The dataset's `image` (augmented in training, when asked) to the image tower,
    /// `input_ids` and `attention_mask` to the text tower.
    fn prepare(&self, batch: Tensors, ctx: &StepCtx) -> Result<Tensors> {
        let image = match ctx.train {
            true => self.augment(&batch, ctx)?,
            false => batch.require("image")?.shallow_clone(),
        };
        let mut inputs = Tensors::new().with("image/image", image);
        inputs.insert("text/input_ids", batch.require("input_ids")?.shallow_clone());
        if let Some(mask) = batch.get("attention_mask") {
            inputs.insert("text/attention_mask", mask.shallow_clone());
        }
        if let Some(index) = batch.get("sample_index") {
            inputs.insert("sample_index", index.shallow_clone());
        }
        let checked = format!("text/{IDS_CHECKED}");
        if let Some(marker) = batch.get(&checked) {
            inputs.insert(checked, marker.shallow_clone());
        }
        Ok(inputs)
    }

    fn loss(&self, _batch: &Tensors, outputs: &Tensors, ctx: &StepCtx) -> Result<LossOutput> {
        let image = self.project(outputs.require("image/features")?, &self.visual_projection)?;
        let text = self.project(outputs.require("text/features")?, &self.text_projection)?;
        let (rank, world) = (ctx.rank as i64, ctx.world_size.max(1) as i64);
        let (all_image, offset) = gather_rows(&image, rank, world)?;
        let (all_text, _) = gather_rows(&text, rank, world)?;
        let scale = self.scale()?;
        let out = clip_loss(&image, &text, &all_image, &all_text, offset, &scale)?;
        Ok(LossOutput {
            loss: out.loss,
            metrics: vec![
                ("logit_scale".into(), scale.detach()),
                ("image_to_text_accuracy".into(), out.image_to_text_accuracy),
                ("text_to_image_accuracy".into(), out.text_to_image_accuracy),
            ],
        })
    }

    /// `image/embedding` and `text/embedding` (unit rows in the joint space) for the towers that ran.
    fn embed(&self, outputs: &Tensors, _ctx: &StepCtx) -> Result<Tensors> {
        let mut out = Tensors::new();
        if let Some(f) = outputs.get("image/features") {
            out.insert("image/embedding", self.project(f, &self.visual_projection)?);
        }
        if let Some(f) = outputs.get("text/features") {
            out.insert("text/embedding", self.project(f, &self.text_projection)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loader thread's draw makes the views `prepare` draws for itself; with every
    /// augmentation knob off the objective draws nothing and passes images through.
    #[test]
    fn loader_drawn_image_views_equal_views_drawn_in_prepare() {
        let cfg: ClipConfig = serde_json::from_str(
            r#"{"image_dim": 4, "text_dim": 4, "min_scale": 0.5, "jitter_strength": 0.5, "grayscale_p": 0.2,
                "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}"#,
        )
        .unwrap();
        let clip = Clip::new(cfg.clone(), &CreateCtx::default()).unwrap();
        assert!(clip.info().draws_on_host);
        let images = Tensor::rand([3, 3, 10, 10], (Kind::Float, Device::Cpu)).f_sub_scalar(0.5).unwrap();
        let batch = Tensors::new()
            .with("image", images.shallow_clone())
            .with("input_ids", Tensor::from_slice(&[1i64, 2, 3]).view([3, 1]))
            .with("sample_index", Tensor::from_slice(&[8i64, 2, 5]));
        let ctx = StepCtx { seed: 3, epoch: 1, train: true, ..StepCtx::default() };
        let drawn = clip.draw_on_host(&batch, &ctx).unwrap();
        assert!(drawn.contains("clip/view/theta") && drawn.iter().all(|(_, t)| t.device() == Device::Cpu));
        assert!(!drawn.contains("text/input_ids_checked"), "no vocabulary given: nothing checked");
        let merged: Tensors = batch.share().into_iter().chain(drawn).collect();
        let from_loader = clip.prepare(merged, &ctx).unwrap();
        assert!(from_loader.names().all(|n| !n.starts_with("clip/")));
        let in_prepare = clip.prepare(batch.share(), &ctx).unwrap();
        let views = from_loader.require("image/image").unwrap();
        assert!(views.equal(in_prepare.require("image/image").unwrap()));
        assert!(!views.allclose(&images, 1e-3, 1e-3, false));

        let plain = ClipConfig { min_scale: 1.0, jitter_strength: 0.0, grayscale_p: 0.0, ..cfg.clone() };
        let plain = Clip::new(plain, &CreateCtx::default()).unwrap();
        assert!(!plain.info().draws_on_host);
        assert_eq!(plain.draw_on_host(&batch, &ctx).unwrap().len(), 0);
        assert!(plain.prepare(batch.share(), &ctx).unwrap().require("image/image").unwrap().equal(&images));

        // Given the text tower's vocabulary, the captions are checked on the loader thread and
        // the text tower is told so; an id outside it is a clear error there.
        let checking =
            Clip::new(ClipConfig { text_vocab_size: Some(4), ..cfg.clone() }, &CreateCtx::default()).unwrap();
        let drawn = checking.draw_on_host(&batch, &ctx).unwrap();
        let merged: Tensors = batch.share().into_iter().chain(drawn).collect();
        assert!(checking.prepare(merged, &ctx).unwrap().contains("text/input_ids_checked"));
        let small = Clip::new(ClipConfig { text_vocab_size: Some(3), ..cfg }, &CreateCtx::default()).unwrap();
        let err = small.draw_on_host(&batch, &ctx).unwrap_err();
        assert!(err.message.contains("range over [1, 3]") && err.message.contains("vocab_size is 3"), "{err}");
    }
}
