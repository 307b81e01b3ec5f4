//! Batched image augmentation on the training device: supervised crop-and-flip (CIFAR/ImageNet
//! ResNet recipes) and SimCLR's view pipeline (Chen et al. 2020, appendix A).
//!
//! Images are float32 `[batch, channels, height, width]` on any device. Every transform is a
//! whole-batch tensor op (affine grid sampling, blends, a grouped convolution); only the
//! per-sample random *parameters* are drawn on the CPU, each sample from its own [`CounterRng`]
//! (see [`sample_rngs`]), and turned into small tensors — for SimCLR views on the loader thread,
//! so they reach the device with the batch (see [`super::view_plan`]). A sample's view thus
//! depends only on (seed, stream, epoch, sample index, view), never on which other samples share
//! its batch, and a resumed run reproduces it exactly.
//!
//! Samples that skip a random transform (jitter, grayscale, blur) are left out of it with
//! `index_select`/`index_copy` rather than computed and masked away, so a transform applied with
//! probability p costs p of a full-batch pass.

use crate::rng::CounterRng;
use crate::upload::upload;
use crate::{PtError, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// `grid_sampler` interpolation modes and padding modes (libtorch's enum values).
const BILINEAR: i64 = 0;
const NEAREST: i64 = 1;
const PAD_ZEROS: i64 = 0;
const PAD_BORDER: i64 = 1;

/// Per-sample random streams: sample `i` uses `CounterRng::new(seed, &[stream, epoch,
/// indices[i], view])`. `view` tells apart the two views of one image in contrastive learning.
pub fn sample_rngs(seed: u64, stream: u64, epoch: u64, indices: &[i64], view: u64) -> Vec<CounterRng> {
    indices.iter().map(|&i| CounterRng::new(seed, &[stream, epoch, i as u64, view])).collect()
}

/// A batch's `image` tensor and its `sample_index` values (on the CPU), checked to match: what
/// an objective's per-sample augmentation draws from. `who` names the objective in errors.
pub fn images_and_indices<'a>(batch: &'a crate::Tensors, who: &str) -> Result<(&'a Tensor, Vec<i64>)> {
    let index = Vec::<i64>::try_from(&batch.require("sample_index")?.f_to_device(tch::Device::Cpu)?)?;
    let images = batch.require("image")?;
    if images.size().first() != Some(&(index.len() as i64)) {
        return Err(PtError::shape(format!("{who}: {} sample indices for images {:?}", index.len(), images.size())));
    }
    Ok((images, index))
}

// ---------------------------------------------------------------------------------------------
// Normalisation
// ---------------------------------------------------------------------------------------------

/// Per-channel normalisation statistics. One entry applies to every channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

impl Normalization {
    /// The ImageNet RGB statistics used by torchvision's pretrained models.
    pub fn imagenet() -> Self {
        Normalization { mean: vec![0.485, 0.456, 0.406], std: vec![0.229, 0.224, 0.225] }
    }

    /// Checks the statistics: same non-zero length, finite, std > 0.
    pub fn validate(&self) -> Result<()> {
        if self.mean.is_empty() || self.mean.len() != self.std.len() {
            return Err(PtError::config(format!(
                "normalization: mean has {} entries and std {}; give one per channel (or one for all)",
                self.mean.len(),
                self.std.len()
            )));
        }
        if self.mean.iter().any(|m| !m.is_finite()) {
            return Err(PtError::config(format!("normalization: mean {:?} is not finite", self.mean)));
        }
        if self.std.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return Err(PtError::config(format!("normalization: std {:?} must be finite and > 0", self.std)));
        }
        Ok(())
    }

    /// `(x - mean) / std` over channel dim 1 of `x` (`[batch, channels, ...]`).
    pub fn normalize(&self, x: &Tensor) -> Result<Tensor> {
        let (mean, std) = self.stats_for(x)?;
        Ok(x.f_sub(&mean)?.f_div(&std)?)
    }

    /// `x * std + mean`: back to pixel space.
    pub fn denormalize(&self, x: &Tensor) -> Result<Tensor> {
        let (mean, std) = self.stats_for(x)?;
        Ok(x.f_mul(&std)?.f_add(&mean)?)
    }

    /// The statistics as tensors shaped `[1, C, 1, ...]` on `x`'s device and dtype.
    fn stats_for(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        self.validate()?;
        let size = x.size();
        if size.len() < 2 {
            return Err(PtError::shape(format!("normalization: expected [batch, channels, ...], got shape {size:?}")));
        }
        if !x.f_is_floating_point()? {
            return Err(PtError::shape(format!("normalization: expected floating-point pixels, got {:?}", x.kind())));
        }
        let channels = size[1];
        let n = self.mean.len() as i64;
        if n != 1 && n != channels {
            return Err(PtError::shape(format!(
                "normalization: {n} mean/std entries for images with {channels} channels; give \
                 {channels} (or 1)"
            )));
        }
        let mut shape = vec![1i64; size.len()];
        shape[1] = n;
        let to = |v: &[f64]| -> Result<Tensor> {
            Ok(upload(&Tensor::f_from_slice(v)?.f_reshape(&shape)?, x.device())?.f_to_kind(x.kind())?)
        };
        Ok((to(&self.mean)?, to(&self.std)?))
    }
}

// ---------------------------------------------------------------------------------------------
// Supervised crop + flip
// ---------------------------------------------------------------------------------------------

/// Supervised training augmentation: random translation by up to `padding` pixels (as
/// torchvision's `RandomCrop(size, padding)` with zero fill) and horizontal flip with probability
/// `hflip_p`. Apply it before normalising, so the fill is black as in torchvision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CropFlip {
    pub padding: i64,
    pub hflip_p: f64,
}

impl Default for CropFlip {
    /// The CIFAR ResNet recipe (He et al. 2016): pad 4, flip half the time.
    fn default() -> Self {
        CropFlip { padding: 4, hflip_p: 0.5 }
    }
}

/// One sample's crop-flip draw: the output pixel `(y, x)` reads input `(y + dy, x' + dx)` where
/// `x' = x` or, flipped, `width - 1 - x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropFlipParams {
    pub dy: i64,
    pub dx: i64,
    pub flip: bool,
}

impl CropFlip {
    pub fn validate(&self) -> Result<()> {
        if self.padding < 0 {
            return Err(PtError::config(format!("crop_flip.padding is {}; must be >= 0", self.padding)));
        }
        check_probability("crop_flip.hflip_p", self.hflip_p)
    }

    /// Draws one sample's parameters: crop offsets as torchvision's `RandomCrop.get_params` on
    /// the padded image (top, then left), then the flip.
    pub fn sample(&self, rng: &mut CounterRng) -> CropFlipParams {
        let span = 2 * self.padding.max(0) as u64 + 1;
        let dy = rng.below(span) as i64 - self.padding.max(0);
        let dx = rng.below(span) as i64 - self.padding.max(0);
        let flip = rng.next_f64() < self.hflip_p;
        CropFlipParams { dy, dx, flip }
    }
}

/// Random translation (zero fill) + horizontal flip, one draw per sample from `rngs[i]`.
pub fn crop_flip(images: &Tensor, rngs: &mut [CounterRng], cfg: &CropFlip) -> Result<Tensor> {
    cfg.validate()?;
    let batch = batch_of(images, "crop_flip")?;
    check_rngs(rngs.len(), batch, "crop_flip")?;
    let params: Vec<CropFlipParams> = rngs.iter_mut().map(|rng| cfg.sample(rng)).collect();
    crop_flip_with(images, &params)
}

/// [`crop_flip`] with given parameters.
pub fn crop_flip_with(images: &Tensor, params: &[CropFlipParams]) -> Result<Tensor> {
    let [batch, _, height, width] = image_shape(images, "crop_flip")?;
    check_rngs(params.len(), batch, "crop_flip")?;
    crop_flip_by(images, &upload(&crop_flip_theta(params, height, width)?, images.device())?)
}

/// The `[B, 2, 3]` float32 affines (on the CPU) that make [`crop_flip`]'s views of images of
/// `height` × `width` from `params`: what a loader thread draws for [`crop_flip_by`].
pub fn crop_flip_theta(params: &[CropFlipParams], height: i64, width: i64) -> Result<Tensor> {
    // With align_corners = false, x_in = sign * x_out + 2 dx / W in normalised coordinates puts
    // every sampling point on an input pixel centre; nearest sampling then copies pixels exactly
    // (bilinear would mix in float rounding of the grid), and points off the image read zero.
    let theta: Vec<f32> = params
        .iter()
        .flat_map(|p| {
            let sign = if p.flip { -1.0 } else { 1.0 };
            let tx = 2.0 * p.dx as f64 / width as f64;
            let ty = 2.0 * p.dy as f64 / height as f64;
            [sign, 0.0, tx, 0.0, 1.0, ty].map(|v| v as f32)
        })
        .collect();
    Ok(Tensor::f_from_slice(&theta)?.f_reshape([-1, 2, 3])?)
}

/// [`crop_flip`]'s views of `images` from affines [`crop_flip_theta`] made (on the images'
/// device): reads nothing back and builds no host tensor.
pub fn crop_flip_by(images: &Tensor, theta: &Tensor) -> Result<Tensor> {
    let _no_grad = tch::no_grad_guard();
    let (x, [batch, _, height, width]) = float_images(images, "crop_flip")?;
    if theta.size() != [batch, 2, 3] {
        return Err(PtError::shape(format!(
            "crop_flip: affines {:?} for a batch of {batch} images; expected [{batch}, 2, 3], drawn for the batch as it reaches prepare",
            theta.size()
        )));
    }
    if batch == 0 {
        return Ok(x);
    }
    let grid = affine_grid(&x, theta, height, width)?;
    Ok(x.f_grid_sampler(&grid, NEAREST, PAD_ZEROS, false)?)
}

// ---------------------------------------------------------------------------------------------
// SimCLR views
// ---------------------------------------------------------------------------------------------

/// SimCLR's view pipeline (Chen et al. 2020, appendix A): random resized crop (area `scale`
/// range, aspect `ratio` range, square `out_size` output), horizontal flip with `hflip_p`,
/// colour jitter with probability `jitter_p` (brightness, contrast, saturation 0.8·strength, hue
/// 0.2·strength, in a random order per sample as torchvision's `ColorJitter`), grayscale with
/// `grayscale_p`, and Gaussian blur with `blur_p` (kernel 10% of `out_size`, made odd; sigma
/// uniform in [0.1, 2.0]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimclrAugment {
    pub out_size: i64,
    pub scale: (f64, f64),
    pub ratio: (f64, f64),
    pub hflip_p: f64,
    pub strength: f64,
    pub jitter_p: f64,
    pub grayscale_p: f64,
    pub blur_p: f64,
}

/// A crop box in input pixels: rows `top..top + height`, columns `left..left + width`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    pub top: i64,
    pub left: i64,
    pub height: i64,
    pub width: i64,
}

/// The four colour-jitter adjustments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JitterOp {
    Brightness,
    Contrast,
    Saturation,
    Hue,
}

impl JitterOp {
    pub const ALL: [JitterOp; 4] = [JitterOp::Brightness, JitterOp::Contrast, JitterOp::Saturation, JitterOp::Hue];
}

/// One sample's colour-jitter factors (1, 1, 1, 0 is the identity) and the order to apply them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JitterParams {
    pub brightness: f64,
    pub contrast: f64,
    pub saturation: f64,
    pub hue: f64,
    pub order: [JitterOp; 4],
}

impl JitterParams {
    pub(super) fn factor(&self, op: JitterOp) -> f64 {
        match op {
            JitterOp::Brightness => self.brightness,
            JitterOp::Contrast => self.contrast,
            JitterOp::Saturation => self.saturation,
            JitterOp::Hue => self.hue,
        }
    }
}

/// One sample's SimCLR draw.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SimclrParams {
    pub crop: CropBox,
    pub flip: bool,
    /// `None`: no colour jitter for this sample.
    pub jitter: Option<JitterParams>,
    pub grayscale: bool,
    /// `None`: no blur for this sample.
    pub blur_sigma: Option<f64>,
}

impl SimclrAugment {
    /// The paper's ImageNet setting: 224 px, scale (0.08, 1), ratio (3/4, 4/3), strength 1,
    /// blur half the time.
    pub fn imagenet() -> Self {
        SimclrAugment {
            out_size: 224,
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            hflip_p: 0.5,
            strength: 1.0,
            jitter_p: 0.8,
            grayscale_p: 0.2,
            blur_p: 0.5,
        }
    }

    /// The paper's CIFAR-10 setting for small (28-32 px) images: strength 0.5, no blur.
    pub fn small(size: i64) -> Self {
        SimclrAugment { out_size: size, strength: 0.5, blur_p: 0.0, ..Self::imagenet() }
    }

    pub fn validate(&self) -> Result<()> {
        if self.out_size < 1 {
            return Err(PtError::config(format!("simclr.out_size is {}; must be >= 1", self.out_size)));
        }
        let (lo, hi) = self.scale;
        if !(lo > 0.0 && lo <= hi && hi.is_finite()) {
            return Err(PtError::config(format!(
                "simclr.scale is ({lo}, {hi}); need 0 < min <= max (fractions of the image area, \
                 e.g. (0.08, 1.0))"
            )));
        }
        let (lo, hi) = self.ratio;
        if !(lo > 0.0 && lo <= hi && hi.is_finite()) {
            return Err(PtError::config(format!(
                "simclr.ratio is ({lo}, {hi}); need 0 < min <= max (width / height, e.g. (0.75, 1.333))"
            )));
        }
        // Hue factors must stay within half a turn, as torchvision's ColorJitter requires.
        if !(self.strength >= 0.0 && 0.2 * self.strength <= 0.5) {
            return Err(PtError::config(format!(
                "simclr.strength is {}; must be in [0, 2.5] (hue jitter 0.2·strength <= 0.5)",
                self.strength
            )));
        }
        check_probability("simclr.hflip_p", self.hflip_p)?;
        check_probability("simclr.jitter_p", self.jitter_p)?;
        check_probability("simclr.grayscale_p", self.grayscale_p)?;
        check_probability("simclr.blur_p", self.blur_p)
    }

    /// Blur kernel side: 10% of the output side, rounded down, made odd, at least 3.
    pub fn blur_kernel_size(&self) -> i64 {
        (((self.out_size as f64) * 0.1) as i64 | 1).max(3)
    }

    /// Draws one sample's parameters for an input of `height` x `width`. Every draw is made
    /// whether or not it is used, so a sample's stream does not shift with the probabilities.
    pub fn sample(&self, rng: &mut CounterRng, height: i64, width: i64) -> SimclrParams {
        let crop = random_resized_crop_box(rng, height, width, self.scale, self.ratio);
        let flip = rng.next_f64() < self.hflip_p;
        let jitter_on = rng.next_f64() < self.jitter_p;
        // As torchvision's ColorJitter.get_params: order first, then the four factors.
        let mut order = JitterOp::ALL;
        rng.shuffle(&mut order);
        let spread = 0.8 * self.strength;
        let factor = |rng: &mut CounterRng| uniform(rng, (1.0 - spread).max(0.0), 1.0 + spread);
        let brightness = factor(rng);
        let contrast = factor(rng);
        let saturation = factor(rng);
        let hue_spread = 0.2 * self.strength;
        let hue = uniform(rng, -hue_spread, hue_spread);
        let grayscale = rng.next_f64() < self.grayscale_p;
        let blur_on = rng.next_f64() < self.blur_p;
        let sigma = uniform(rng, 0.1, 2.0);
        SimclrParams {
            crop,
            flip,
            jitter: jitter_on.then_some(JitterParams { brightness, contrast, saturation, hue, order }),
            grayscale,
            blur_sigma: blur_on.then_some(sigma),
        }
    }
}

/// One SimCLR view of each image, drawing sample `i`'s parameters from `rngs[i]`. Input and
/// output are in [0, 1] pixel space, `[batch, channels, H, W]` with 1 or 3 channels (for 1
/// channel, saturation, hue and grayscale are skipped); the output is `out_size` square, float32,
/// on the input's device.
pub fn simclr_view(images: &Tensor, rngs: &mut [CounterRng], cfg: &SimclrAugment) -> Result<Tensor> {
    cfg.validate()?;
    let [batch, _, height, width] = image_shape(images, "simclr_view")?;
    check_rngs(rngs.len(), batch, "simclr_view")?;
    if height < 1 || width < 1 {
        return Err(PtError::shape(format!("simclr_view: images are {height}x{width}; nothing to crop")));
    }
    let params: Vec<SimclrParams> = rngs.iter_mut().map(|rng| cfg.sample(rng, height, width)).collect();
    simclr_view_with(images, &params, cfg)
}

/// [`simclr_view`] with given parameters: their tensors ([`super::view_plan`]) built here and
/// moved to the images' device, then applied there.
pub fn simclr_view_with(images: &Tensor, params: &[SimclrParams], cfg: &SimclrAugment) -> Result<Tensor> {
    let shape = image_shape(images, "simclr_view")?;
    let planned = super::view_plan::simclr_view_tensors(params, cfg, shape, "")?;
    let on_device = planned.into_iter().map(|(n, t)| Ok((n, upload(&t, images.device())?))).collect::<Result<_>>()?;
    super::view_plan::apply_simclr_view(images, &on_device, "", cfg)
}

/// torchvision's `RandomResizedCrop.get_params`: up to 10 tries of (area fraction uniform in
/// `scale`, aspect ratio log-uniform in `ratio`) that fit, else a centre crop clamped to `ratio`.
pub fn random_resized_crop_box(
    rng: &mut CounterRng,
    height: i64,
    width: i64,
    scale: (f64, f64),
    ratio: (f64, f64),
) -> CropBox {
    let area = (height * width) as f64;
    let (log_lo, log_hi) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target_area = area * uniform(rng, scale.0, scale.1);
        let aspect = uniform(rng, log_lo, log_hi).exp();
        let w = (target_area * aspect).sqrt().round() as i64;
        let h = (target_area / aspect).sqrt().round() as i64;
        if 0 < w && w <= width && 0 < h && h <= height {
            let top = rng.below((height - h + 1) as u64) as i64;
            let left = rng.below((width - w + 1) as u64) as i64;
            return CropBox { top, left, height: h, width: w };
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (w, h) = if in_ratio < ratio.0 {
        (width, ((width as f64 / ratio.0).round() as i64).max(1).min(height.max(1)))
    } else if in_ratio > ratio.1 {
        (((height as f64 * ratio.1).round() as i64).max(1).min(width.max(1)), height)
    } else {
        (width, height)
    };
    CropBox { top: (height - h) / 2, left: (width - w) / 2, height: h, width: w }
}

/// Resamples each sample's crop box (optionally mirrored) to `out_h` x `out_w` with bilinear
/// interpolation, as torchvision's `resized_crop(..., antialias=False)`: sampling points are
/// clamped to the box's outer pixel centres, so pixels outside the box never bleed in. (Unlike
/// torchvision's default, large downscales are not antialiased.)
pub fn resized_crop(images: &Tensor, boxes: &[CropBox], flips: &[bool], out_h: i64, out_w: i64) -> Result<Tensor> {
    let (x, [batch, _, height, width]) = float_images(images, "resized_crop")?;
    if boxes.len() as i64 != batch || flips.len() as i64 != batch {
        return Err(PtError::shape(format!(
            "resized_crop: {} crop boxes and {} flips for a batch of {batch}",
            boxes.len(),
            flips.len()
        )));
    }
    let [theta, lowest, highest] = crop_grid(boxes, flips, height, width)?;
    let dev = |t: Tensor| upload(&t, x.device());
    resized_crop_by(&x, &dev(theta)?, &dev(lowest)?, &dev(highest)?, out_h, out_w)
}

/// The CPU tensors [`resized_crop_by`] takes for `boxes` of `height` x `width` images:
/// the per-sample affine `[B, 2, 3]` and the grid's bounds `[B, 1, 1, 2]`, lowest and highest.
pub(super) fn crop_grid(boxes: &[CropBox], flips: &[bool], height: i64, width: i64) -> Result<[Tensor; 3]> {
    let (h, w) = (height as f64, width as f64);
    let batch = boxes.len() as i64;
    // Output normalised coordinate u in [-1, 1] maps to input pixel edge left + (u + 1) / 2 * bw,
    // i.e. normalised input coordinate u * bw / W + (2 left + bw) / W - 1.
    let theta: Vec<f32> = boxes
        .iter()
        .zip(flips)
        .flat_map(|(b, &flip)| {
            let sign = if flip { -1.0 } else { 1.0 };
            let sx = sign * b.width as f64 / w;
            let tx = (2 * b.left + b.width) as f64 / w - 1.0;
            let sy = b.height as f64 / h;
            let ty = (2 * b.top + b.height) as f64 / h - 1.0;
            [sx, 0.0, tx, 0.0, sy, ty].map(|v| v as f32)
        })
        .collect();
    // Normalised coordinates of the box's first and last pixel centres, (x, y) as in the grid.
    let centre = |pixel: i64, side: f64| ((2 * pixel + 1) as f64 / side - 1.0) as f32;
    let lowest: Vec<f32> = boxes.iter().flat_map(|b| [centre(b.left, w), centre(b.top, h)]).collect();
    let highest: Vec<f32> =
        boxes.iter().flat_map(|b| [centre(b.left + b.width - 1, w), centre(b.top + b.height - 1, h)]).collect();
    let bound = |v: &[f32]| -> Result<Tensor> { Ok(Tensor::f_from_slice(v)?.f_reshape([batch, 1, 1, 2])?) };
    Ok([Tensor::f_from_slice(&theta)?.f_reshape([batch, 2, 3])?, bound(&lowest)?, bound(&highest)?])
}

/// [`resized_crop`] from [`crop_grid`]'s tensors, on the images' device.
pub(super) fn resized_crop_by(
    x: &Tensor,
    theta: &Tensor,
    lowest: &Tensor,
    highest: &Tensor,
    out_h: i64,
    out_w: i64,
) -> Result<Tensor> {
    let grid = affine_grid(x, theta, out_h, out_w)?.f_clamp_min_tensor(lowest)?.f_clamp_max_tensor(highest)?;
    Ok(x.f_grid_sampler(&grid, BILINEAR, PAD_BORDER, false)?)
}

// ---------------------------------------------------------------------------------------------
// Colour ops (per-sample factors; match torchvision.transforms.functional on float tensors)
// ---------------------------------------------------------------------------------------------

/// `clamp(f * x, 0, 1)` per sample (torchvision `adjust_brightness`).
pub fn adjust_brightness(x: &Tensor, factors: &[f64]) -> Result<Tensor> {
    adjust_brightness_by(x, &per_sample(x, factors, "adjust_brightness")?)
}

/// [`adjust_brightness`] by factors `f` `[B, 1, 1, 1]` on `x`'s device (so the rest below).
pub(super) fn adjust_brightness_by(x: &Tensor, f: &Tensor) -> Result<Tensor> {
    Ok(x.f_mul(f)?.f_clamp(0.0, 1.0)?)
}

/// Blend with the mean of the image's grayscale (of the image itself for 1 channel), per
/// sample (torchvision `adjust_contrast`).
pub fn adjust_contrast(x: &Tensor, factors: &[f64]) -> Result<Tensor> {
    adjust_contrast_by(x, &per_sample(x, factors, "adjust_contrast")?)
}

pub(super) fn adjust_contrast_by(x: &Tensor, f: &Tensor) -> Result<Tensor> {
    let gray = if x.size()[1] == 3 { rgb_to_grayscale(x)? } else { x.shallow_clone() };
    let mean = gray.f_mean_dim([1i64, 2, 3].as_slice(), true, Kind::Float)?;
    blend(x, &mean, f)
}

/// Blend with the image's grayscale, per sample (torchvision `adjust_saturation`); 1-channel
/// images are returned unchanged.
pub fn adjust_saturation(x: &Tensor, factors: &[f64]) -> Result<Tensor> {
    adjust_saturation_by(x, &per_sample(x, factors, "adjust_saturation")?)
}

pub(super) fn adjust_saturation_by(x: &Tensor, f: &Tensor) -> Result<Tensor> {
    if x.size()[1] == 1 {
        return Ok(x.shallow_clone());
    }
    blend(x, &rgb_to_grayscale(x)?, f)
}

/// Rotates the hue by `factor` turns (in [-0.5, 0.5]) in HSV, per sample (torchvision
/// `adjust_hue`); 1-channel images are returned unchanged.
pub fn adjust_hue(x: &Tensor, factors: &[f64]) -> Result<Tensor> {
    let f = per_sample(x, factors, "adjust_hue")?;
    if let Some(bad) = factors.iter().find(|h| !(-0.5..=0.5).contains(*h)) {
        return Err(PtError::config(format!("adjust_hue: hue factor {bad} is outside [-0.5, 0.5]")));
    }
    adjust_hue_by(x, &f)
}

/// [`adjust_hue`] by turns `f` `[B, 1, 1, 1]` in [-0.5, 0.5] (not checked here).
pub(super) fn adjust_hue_by(x: &Tensor, f: &Tensor) -> Result<Tensor> {
    if x.size()[1] == 1 {
        return Ok(x.shallow_clone());
    }
    let hsv = rgb_to_hsv(x)?;
    let hue = hsv.f_narrow(1, 0, 1)?.f_add(f)?.f_remainder(1.0)?;
    let hsv = Tensor::f_cat(&[hue, hsv.f_narrow(1, 1, 2)?], 1)?;
    hsv_to_rgb(&hsv)
}

/// Luma `[B, 1, H, W]` of RGB `[B, 3, H, W]` with torchvision's ITU-R 601 weights
/// (0.2989, 0.587, 0.114).
pub fn rgb_to_grayscale(x: &Tensor) -> Result<Tensor> {
    let [r, g, b] = rgb_planes(x, "rgb_to_grayscale")?;
    Ok(r.f_mul_scalar(0.2989)?.f_add(&g.f_mul_scalar(0.587)?)?.f_add(&b.f_mul_scalar(0.114)?)?)
}

/// RGB `[B, 3, H, W]` in [0, 1] to HSV with hue in [0, 1) turns (torchvision's `_rgb2hsv`).
pub fn rgb_to_hsv(x: &Tensor) -> Result<Tensor> {
    let [r, g, b] = rgb_planes(x, "rgb_to_hsv")?;
    let maxc = x.f_amax([1i64].as_slice(), true)?;
    let minc = x.f_amin([1i64].as_slice(), true)?;
    let gray = maxc.f_eq_tensor(&minc)?;
    let chroma = maxc.f_sub(&minc)?;
    let ones = maxc.f_ones_like()?;
    // Gray pixels have no hue and zero saturation; the `where`s avoid 0/0.
    let saturation = chroma.f_div(&ones.f_where_self(&gray, &maxc)?)?;
    let chroma_div = ones.f_where_self(&gray, &chroma)?;
    let rc = maxc.f_sub(&r)?.f_div(&chroma_div)?;
    let gc = maxc.f_sub(&g)?.f_div(&chroma_div)?;
    let bc = maxc.f_sub(&b)?.f_div(&chroma_div)?;
    let max_r = maxc.f_eq_tensor(&r)?;
    let max_g = maxc.f_eq_tensor(&g)?;
    let not_r = max_r.f_logical_not()?;
    let hr = max_r.f_to_kind(Kind::Float)?.f_mul(&bc.f_sub(&gc)?)?;
    let hg = max_g.f_logical_and(&not_r)?.f_to_kind(Kind::Float)?.f_mul(&rc.f_sub(&bc)?.f_add_scalar(2.0)?)?;
    let hb = max_g
        .f_logical_not()?
        .f_logical_and(&not_r)?
        .f_to_kind(Kind::Float)?
        .f_mul(&gc.f_sub(&rc)?.f_add_scalar(4.0)?)?;
    let hue = hr.f_add(&hg)?.f_add(&hb)?.f_div_scalar(6.0)?.f_add_scalar(1.0)?.f_fmod(1.0)?;
    Ok(Tensor::f_cat(&[hue, saturation, maxc], 1)?)
}

/// HSV `[B, 3, H, W]` (hue in turns) back to RGB (torchvision's `_hsv2rgb`).
pub fn hsv_to_rgb(x: &Tensor) -> Result<Tensor> {
    let [h, s, v] = rgb_planes(x, "hsv_to_rgb")?;
    let h6 = h.f_mul_scalar(6.0)?;
    let sector = h6.f_floor()?;
    let frac = h6.f_sub(&sector)?;
    let p = v.f_mul(&s.f_rsub_scalar(1.0)?)?.f_clamp(0.0, 1.0)?;
    let q = v.f_mul(&s.f_mul(&frac)?.f_rsub_scalar(1.0)?)?.f_clamp(0.0, 1.0)?;
    let t = v.f_mul(&s.f_mul(&frac.f_rsub_scalar(1.0)?)?.f_rsub_scalar(1.0)?)?.f_clamp(0.0, 1.0)?;
    let sector = sector.f_to_kind(Kind::Int64)?.f_remainder(6)?;
    let pick = |candidates: [&Tensor; 6]| -> Result<Tensor> {
        Ok(Tensor::f_cat(&candidates, 1)?.f_gather(1, &sector, false)?)
    };
    let r = pick([&v, &q, &p, &p, &t, &v])?;
    let g = pick([&t, &v, &v, &q, &p, &p])?;
    let b = pick([&p, &p, &t, &v, &v, &q])?;
    Ok(Tensor::f_cat(&[r, g, b], 1)?)
}

/// Separable Gaussian blur with one sigma per sample and reflect padding (torchvision
/// `gaussian_blur`), as two grouped convolutions over `[1, B*C, H, W]`. `kernel_size` must be
/// odd and smaller than twice each image side.
pub fn gaussian_blur(x: &Tensor, sigmas: &[f64], kernel_size: i64) -> Result<Tensor> {
    let (batch, channels, height, width) = x
        .size4()
        .map_err(|_| PtError::shape(format!("gaussian_blur: expected [batch, channels, H, W], got {:?}", x.size())))?;
    check_rngs(sigmas.len(), batch, "gaussian_blur")?;
    if kernel_size < 1 || kernel_size % 2 == 0 {
        return Err(PtError::config(format!("gaussian_blur: kernel size {kernel_size} must be odd and positive")));
    }
    let pad = kernel_size / 2;
    if pad >= height || pad >= width {
        return Err(PtError::shape(format!(
            "gaussian_blur: kernel size {kernel_size} is too large for {height}x{width} images \
             (reflect padding needs kernel_size / 2 < each side)"
        )));
    }
    if let Some(bad) = sigmas.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return Err(PtError::config(format!("gaussian_blur: sigma {bad} must be finite and > 0")));
    }
    if batch == 0 {
        return Ok(x.shallow_clone());
    }
    let weight = upload(&Tensor::f_from_slice(&blur_kernels(sigmas, channels, kernel_size))?, x.device())?;
    gaussian_blur_by(x, &weight, kernel_size)
}

/// The 1-D Gaussian kernels [`gaussian_blur_by`] takes: `kernel_size` weights per sample and
/// channel, each set summing to 1, sample by sample.
pub(super) fn blur_kernels(sigmas: &[f64], channels: i64, kernel_size: i64) -> Vec<f32> {
    let half = (kernel_size - 1) as f64 * 0.5;
    let mut weights = Vec::with_capacity(sigmas.len() * (channels * kernel_size) as usize);
    for &sigma in sigmas {
        let pdf: Vec<f64> = (0..kernel_size)
            .map(|k| {
                let t = (k as f64 - half) / sigma;
                (-0.5 * t * t).exp()
            })
            .collect();
        let total: f64 = pdf.iter().sum();
        for _ in 0..channels {
            weights.extend(pdf.iter().map(|v| (v / total) as f32));
        }
    }
    weights
}

/// [`gaussian_blur`] with [`blur_kernels`]' `weight` on `x`'s device (`x` checked by the caller).
pub(super) fn gaussian_blur_by(x: &Tensor, weight: &Tensor, kernel_size: i64) -> Result<Tensor> {
    let (batch, channels, height, width) = x.size4()?;
    let pad = kernel_size / 2;
    let groups = batch * channels;
    let across = weight.f_reshape([groups, 1, 1, kernel_size])?;
    let down = weight.f_reshape([groups, 1, kernel_size, 1])?;
    let flat = x.f_reshape([1, groups, height, width])?;
    let rows = flat.f_pad([pad, pad, 0, 0], "reflect", None::<f64>)?.f_conv2d(
        &across,
        None::<Tensor>,
        [1, 1],
        [0, 0],
        [1, 1],
        groups,
    )?;
    let both = rows.f_pad([0, 0, pad, pad], "reflect", None::<f64>)?.f_conv2d(
        &down,
        None::<Tensor>,
        [1, 1],
        [0, 0],
        [1, 1],
        groups,
    )?;
    Ok(both.f_reshape([batch, channels, height, width])?)
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// `[B, C, H, W]` of a batch of images, or a shape error naming `what`.
pub fn image_shape(images: &Tensor, what: &str) -> Result<[i64; 4]> {
    let (b, c, h, w) = images.size4().map_err(|_| {
        PtError::shape(format!("{what}: images must be [batch, channels, height, width], got {:?}", images.size()))
    })?;
    Ok([b, c, h, w])
}

/// Checks `[B, C, H, W]` floating-point images and returns them as float32 with their sizes.
pub(super) fn float_images(images: &Tensor, what: &str) -> Result<(Tensor, [i64; 4])> {
    let shape = image_shape(images, what)?;
    if !images.f_is_floating_point()? {
        return Err(PtError::shape(format!(
            "{what}: images are {:?}; expected floating-point pixels in [0, 1] (convert uint8 with \
             to_kind(Float) / 255)",
            images.kind()
        )));
    }
    let x = if images.kind() == Kind::Float { images.shallow_clone() } else { images.f_to_kind(Kind::Float)? };
    Ok((x, shape))
}

fn batch_of(images: &Tensor, what: &str) -> Result<i64> {
    match images.size().first() {
        Some(&b) if images.dim() == 4 => Ok(b),
        _ => Err(PtError::shape(format!(
            "{what}: images must be [batch, channels, height, width], got {:?}",
            images.size()
        ))),
    }
}

fn check_rngs(given: usize, batch: i64, what: &str) -> Result<()> {
    if given as i64 != batch {
        return Err(PtError::shape(format!(
            "{what}: {given} per-sample random streams/parameters for a batch of {batch}; give one per image"
        )));
    }
    Ok(())
}

fn check_probability(field: &str, p: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&p) {
        return Err(PtError::config(format!("{field} is {p}; must be a probability in [0, 1]")));
    }
    Ok(())
}

/// Uniform in [lo, hi).
fn uniform(rng: &mut CounterRng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.next_f64()
}

/// The largest odd number below `n` (the biggest kernel reflect padding allows), at least 1.
pub(super) fn odd_below(n: i64) -> i64 {
    let k = n - 1;
    (if k % 2 == 0 { k - 1 } else { k }).max(1)
}

/// The `[B, out_h, out_w, 2]` sampling grid (x, y normalised) of per-sample affines `theta`
/// `[B, 2, 3]` (on `x`'s device).
fn affine_grid(x: &Tensor, theta: &Tensor, out_h: i64, out_w: i64) -> Result<Tensor> {
    let (batch, channels, _, _) = x.size4()?;
    Ok(Tensor::f_affine_grid_generator(theta, [batch, channels, out_h, out_w], false)?)
}

/// Per-sample factors as a `[B, 1, 1, 1]` float32 tensor on `x`'s device.
fn per_sample(x: &Tensor, factors: &[f64], what: &str) -> Result<Tensor> {
    let size = x.size();
    if size.len() != 4 {
        return Err(PtError::shape(format!("{what}: expected [batch, channels, H, W], got {size:?}")));
    }
    check_rngs(factors.len(), size[0], what)?;
    let values: Vec<f32> = factors.iter().map(|&f| f as f32).collect();
    upload(&Tensor::f_from_slice(&values)?.f_reshape([size[0], 1, 1, 1])?, x.device())
}

/// `clamp(ratio * a + (1 - ratio) * b, 0, 1)`, torchvision's `_blend`.
fn blend(a: &Tensor, b: &Tensor, ratio: &Tensor) -> Result<Tensor> {
    Ok(a.f_mul(ratio)?.f_add(&b.f_mul(&ratio.f_rsub_scalar(1.0)?)?)?.f_clamp(0.0, 1.0)?)
}

/// The three channel planes of a `[B, 3, H, W]` tensor, each `[B, 1, H, W]`.
fn rgb_planes(x: &Tensor, what: &str) -> Result<[Tensor; 3]> {
    let size = x.size();
    if size.len() != 4 || size[1] != 3 {
        return Err(PtError::shape(format!("{what}: expected [batch, 3, H, W], got {size:?}")));
    }
    Ok([x.f_narrow(1, 0, 1)?, x.f_narrow(1, 1, 1)?, x.f_narrow(1, 2, 1)?])
}

/// Applies `op` to the samples at `index` (ascending, non-empty, int64 on `x`'s device) and
/// leaves the rest as they are.
pub(super) fn on_subset_by(x: &Tensor, index: &Tensor, op: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    if index.size()[0] == x.size()[0] {
        return op(x);
    }
    let part = op(&x.f_index_select(0, index)?)?;
    // Under autocast `op` may compute in bf16: the batch keeps its own dtype.
    Ok(x.f_index_copy(0, index, &part.f_to_kind(x.kind())?.f_contiguous()?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use std::path::PathBuf;

    /// Deterministic pixels in [0, 1).
    fn images(shape: [i64; 4], seed: u64) -> Tensor {
        let mut rng = CounterRng::new(seed, &[]);
        let n: i64 = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|_| rng.next_f64() as f32).collect();
        Tensor::from_slice(&values).reshape(shape)
    }

    fn values(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t.flatten(0, -1).to_kind(Kind::Float)).expect("float tensor")
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        assert_eq!(a.size(), b.size(), "shapes differ");
        a.f_sub(b).unwrap().abs().max().double_value(&[])
    }

    #[test]
    fn a_transform_on_a_subset_keeps_the_batch_dtype_when_it_computes_in_bf16() {
        // As under bf16 autocast on CUDA, where a blur's conv returns bf16 into an fp32 batch.
        let x = images([4, 3, 5, 5], 3);
        let index = Tensor::from_slice(&[1i64, 3]);
        let out = on_subset_by(&x, &index, |part| Ok(part.f_mul_scalar(0.5)?.f_to_kind(Kind::BFloat16)?)).unwrap();
        assert_eq!(out.kind(), Kind::Float);
        assert!(max_diff(&out.narrow(0, 0, 1), &x.narrow(0, 0, 1)) == 0.0, "unselected samples untouched");
        assert!(max_diff(&out.narrow(0, 1, 1), &x.narrow(0, 1, 1).f_mul_scalar(0.5).unwrap()) < 4e-3);
    }

    /// torchvision's `RandomCrop(padding)` reference: zero-pad, cut the window at (p+dy, p+dx).
    fn padded_window(x: &Tensor, p: CropFlipParams, pad: i64) -> Tensor {
        let (_, _, h, w) = x.size4().unwrap();
        let padded = x.f_pad([pad, pad, pad, pad], "constant", 0.0).unwrap();
        let window = padded.narrow(2, pad + p.dy, h).narrow(3, pad + p.dx, w);
        if p.flip {
            window.flip([3])
        } else {
            window
        }
    }

    /// A small RGB batch with gray, primary, secondary and tied-channel pixels next to random ones.
    fn colour_images() -> Tensor {
        let x = images([4, 3, 6, 7], 11);
        let special: [[f32; 3]; 9] = [
            [0.5, 0.5, 0.5],
            [1.0, 0.0, 0.0],
            [0.0, 1.0, 0.0],
            [0.0, 0.0, 1.0],
            [1.0, 1.0, 0.0],
            [0.0, 0.0, 0.0],
            [1.0, 1.0, 1.0],
            [0.7, 0.7, 0.2],
            [0.3, 0.8, 0.8],
        ];
        for (k, rgb) in special.iter().enumerate() {
            let (row, col) = (k as i64 / 7, k as i64 % 7);
            for (c, v) in rgb.iter().enumerate() {
                let _ = x.get(0).get(c as i64).get(row).get(col).fill_(*v as f64);
            }
        }
        x
    }

    fn no_op_params(n: usize, h: i64, w: i64) -> Vec<SimclrParams> {
        vec![
            SimclrParams {
                crop: CropBox { top: 0, left: 0, height: h, width: w },
                flip: false,
                jitter: None,
                grayscale: false,
                blur_sigma: None,
            };
            n
        ]
    }

    #[test]
    fn sample_rngs_follow_the_documented_counters() {
        let mut rngs = sample_rngs(5, 2, 3, &[10, 42], 1);
        assert_eq!(rngs.len(), 2);
        assert_eq!(rngs[0].next_u64(), CounterRng::new(5, &[2, 3, 10, 1]).next_u64());
        assert_eq!(rngs[1].next_u64(), CounterRng::new(5, &[2, 3, 42, 1]).next_u64());
        // The view counter gives the second view of an image its own stream.
        let mut second_view = sample_rngs(5, 2, 3, &[42], 2);
        assert_ne!(second_view[0].next_u64(), CounterRng::new(5, &[2, 3, 42, 1]).next_u64());
    }

    #[test]
    fn normalize_uses_channel_stats_and_round_trips() {
        let norm = Normalization { mean: vec![0.5, 0.25, 0.0], std: vec![0.5, 0.25, 2.0] };
        let x = Tensor::from_slice(&[1.0f32, 0.5, 1.0]).reshape([1, 3, 1, 1]);
        let y = norm.normalize(&x).unwrap();
        assert_eq!(values(&y), vec![1.0, 1.0, 0.5]);
        let x = images([2, 3, 4, 5], 1);
        assert!(max_diff(&norm.denormalize(&norm.normalize(&x).unwrap()).unwrap(), &x) < 1e-6);

        let one = Normalization { mean: vec![0.5], std: vec![0.25] };
        let y = one.normalize(&Tensor::from_slice(&[0.75f32, 0.25]).reshape([1, 2, 1, 1])).unwrap();
        assert_eq!(values(&y), vec![1.0, -1.0]);

        let err = norm.normalize(&images([1, 2, 2, 2], 0)).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Shape);
        let bad = Normalization { mean: vec![0.0], std: vec![0.0] };
        assert_eq!(bad.normalize(&x).unwrap_err().kind, ErrorKind::Config);
    }

    #[test]
    fn crop_flip_without_padding_or_flip_is_exact_identity() {
        let x = images([3, 3, 8, 6], 2);
        let cfg = CropFlip { padding: 0, hflip_p: 0.0 };
        let y = crop_flip(&x, &mut sample_rngs(1, 0, 0, &[0, 1, 2], 0), &cfg).unwrap();
        assert!(y.equal(&x));
    }

    #[test]
    fn crop_flip_always_flipping_equals_flip() {
        let x = images([3, 1, 5, 7], 3);
        let cfg = CropFlip { padding: 0, hflip_p: 1.0 };
        let y = crop_flip(&x, &mut sample_rngs(1, 0, 0, &[0, 1, 2], 0), &cfg).unwrap();
        assert!(y.equal(&x.flip([3])));
    }

    #[test]
    fn crop_flip_copies_the_padded_window_exactly() {
        let x = images([6, 3, 8, 9], 4);
        let cfg = CropFlip { padding: 3, hflip_p: 0.5 };
        let indices: Vec<i64> = (0..6).collect();
        let drawn: Vec<CropFlipParams> = sample_rngs(9, 1, 0, &indices, 0).iter_mut().map(|r| cfg.sample(r)).collect();
        assert!(drawn.iter().any(|p| p.flip) && drawn.iter().any(|p| !p.flip));
        assert!(drawn.iter().any(|p| p.dy != 0 || p.dx != 0));
        assert!(drawn.iter().all(|p| p.dy.abs() <= 3 && p.dx.abs() <= 3));
        let y = crop_flip(&x, &mut sample_rngs(9, 1, 0, &indices, 0), &cfg).unwrap();
        for (i, p) in drawn.iter().enumerate() {
            let expected = padded_window(&x.narrow(0, i as i64, 1), *p, 3);
            assert!(y.narrow(0, i as i64, 1).equal(&expected), "sample {i} with {p:?}");
        }
        // Extreme shifts: everything but one row/column is fill.
        let edge = [CropFlipParams { dy: 7, dx: -8, flip: true }];
        let y = crop_flip_with(&x.narrow(0, 0, 1), &edge).unwrap();
        assert!(y.equal(&padded_window(&x.narrow(0, 0, 1), edge[0], 8)));
    }

    #[test]
    fn crop_flip_is_reproducible_and_changes_with_the_epoch() {
        let x = images([4, 3, 10, 10], 5);
        let cfg = CropFlip::default();
        let indices = [3, 1, 4, 1];
        let a = crop_flip(&x, &mut sample_rngs(1, 0, 0, &indices, 0), &cfg).unwrap();
        let b = crop_flip(&x, &mut sample_rngs(1, 0, 0, &indices, 0), &cfg).unwrap();
        let c = crop_flip(&x, &mut sample_rngs(1, 0, 1, &indices, 0), &cfg).unwrap();
        assert!(a.equal(&b));
        assert!(!a.equal(&c));
    }

    #[test]
    fn bad_inputs_get_clear_errors() {
        let x = images([2, 3, 8, 8], 6);
        let cfg = CropFlip::default();
        let err = crop_flip(&x, &mut sample_rngs(1, 0, 0, &[0], 0), &cfg).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Shape);
        assert!(err.message.contains("batch of 2"), "{}", err.message);
        let err = crop_flip(&x.to_kind(Kind::Uint8), &mut sample_rngs(1, 0, 0, &[0, 1], 0), &cfg).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Shape);
        let err =
            crop_flip(&x, &mut sample_rngs(1, 0, 0, &[0, 1], 0), &CropFlip { padding: -1, hflip_p: 0.5 }).unwrap_err();
        assert!(err.message.contains("crop_flip.padding"), "{}", err.message);
        let cfg = SimclrAugment { jitter_p: 1.5, ..SimclrAugment::small(8) };
        let err = simclr_view(&x, &mut sample_rngs(1, 0, 0, &[0, 1], 0), &cfg).unwrap_err();
        assert!(err.message.contains("simclr.jitter_p"), "{}", err.message);
        let err =
            simclr_view(&images([2, 2, 8, 8], 0), &mut sample_rngs(1, 0, 0, &[0, 1], 0), &SimclrAugment::small(8))
                .unwrap_err();
        assert!(err.message.contains("2 channels"), "{}", err.message);
    }

    #[test]
    fn presets_match_the_paper_and_serialize() {
        let imagenet = SimclrAugment::imagenet();
        assert_eq!(imagenet.blur_kernel_size(), 23);
        assert_eq!((imagenet.strength, imagenet.blur_p, imagenet.out_size), (1.0, 0.5, 224));
        let small = SimclrAugment::small(32);
        assert_eq!((small.strength, small.blur_p, small.out_size), (0.5, 0.0, 32));
        let json = serde_json::to_string(&small).unwrap();
        assert_eq!(serde_json::from_str::<SimclrAugment>(&json).unwrap(), small);
        small.validate().unwrap();
    }

    #[test]
    fn simclr_view_is_reproducible_in_range_and_batch_independent() {
        let x = images([6, 3, 20, 16], 7);
        let cfg = SimclrAugment { blur_p: 0.5, ..SimclrAugment::small(12) };
        let indices: Vec<i64> = (100..106).collect();
        let a = simclr_view(&x, &mut sample_rngs(3, 0, 0, &indices, 0), &cfg).unwrap();
        let b = simclr_view(&x, &mut sample_rngs(3, 0, 0, &indices, 0), &cfg).unwrap();
        let other_epoch = simclr_view(&x, &mut sample_rngs(3, 0, 1, &indices, 0), &cfg).unwrap();
        let other_view = simclr_view(&x, &mut sample_rngs(3, 0, 0, &indices, 1), &cfg).unwrap();
        assert_eq!(a.size(), vec![6, 3, 12, 12]);
        assert_eq!(a.kind(), Kind::Float);
        assert!(a.equal(&b));
        assert!(!a.equal(&other_epoch));
        assert!(!a.equal(&other_view));
        let v = values(&a);
        assert!(v.iter().all(|p| (0.0..=1.0).contains(p)));
        // The same sample gets the same view in a different batch.
        let part = simclr_view(&x.narrow(0, 2, 3), &mut sample_rngs(3, 0, 0, &indices[2..5], 0), &cfg).unwrap();
        assert!(max_diff(&part, &a.narrow(0, 2, 3)) < 1e-6);

        let gray = simclr_view(&x.narrow(1, 0, 1), &mut sample_rngs(3, 0, 0, &indices, 0), &cfg).unwrap();
        assert_eq!(gray.size(), vec![6, 1, 12, 12]);
        assert!(values(&gray).iter().all(|p| (0.0..=1.0).contains(p)));
        assert!(x.equal(&images([6, 3, 20, 16], 7)), "the input was modified");
    }

    #[test]
    fn simclr_view_with_identity_params_returns_the_input() {
        let x = images([2, 3, 9, 9], 8);
        let cfg = SimclrAugment::small(9);
        let y = simclr_view_with(&x, &no_op_params(2, 9, 9), &cfg).unwrap();
        assert!(max_diff(&y, &x) < 1e-5);
        let mut flipped = no_op_params(2, 9, 9);
        flipped[1].flip = true;
        let y = simclr_view_with(&x, &flipped, &cfg).unwrap();
        assert!(max_diff(&y.narrow(0, 1, 1), &x.narrow(0, 1, 1).flip([3])) < 1e-5);
        assert!(max_diff(&y.narrow(0, 0, 1), &x.narrow(0, 0, 1)) < 1e-5);
    }

    #[test]
    fn resized_crop_upsamples_the_box_only() {
        // Left half 0.25, right half 0.75; the crop of the left 4 columns, resized, is all 0.25.
        let left = Tensor::full([1, 1, 6, 4], 0.25, (Kind::Float, tch::Device::Cpu));
        let right = Tensor::full([1, 1, 6, 4], 0.75, (Kind::Float, tch::Device::Cpu));
        let x = Tensor::cat(&[left, right], 3);
        let crop = CropBox { top: 1, left: 0, height: 4, width: 4 };
        let y = resized_crop(&x, &[crop], &[false], 10, 10).unwrap();
        assert!(values(&y).iter().all(|v| (v - 0.25).abs() < 1e-6));
        let crop = CropBox { top: 0, left: 4, height: 6, width: 4 };
        let y = resized_crop(&x, &[crop], &[true], 3, 5).unwrap();
        assert_eq!(y.size(), vec![1, 1, 3, 5]);
        assert!(values(&y).iter().all(|v| (v - 0.75).abs() < 1e-6));
    }

    #[test]
    fn random_resized_crop_boxes_fit_and_respect_the_ranges() {
        let mut rng = CounterRng::new(4, &[]);
        for _ in 0..500 {
            let b = random_resized_crop_box(&mut rng, 30, 40, (0.08, 1.0), (0.75, 4.0 / 3.0));
            assert!(b.top >= 0 && b.left >= 0 && b.top + b.height <= 30 && b.left + b.width <= 40, "{b:?}");
            let area = (b.height * b.width) as f64 / 1200.0;
            // Rounding the sides to pixels moves area and ratio a little.
            assert!((0.06..=1.0).contains(&area), "{b:?}");
            let ratio = b.width as f64 / b.height as f64;
            assert!((0.6..=1.6).contains(&ratio), "{b:?}");
        }
        // No sample can fit a 3:1 box covering 99% of a square: centre-crop fallback.
        let b = random_resized_crop_box(&mut rng, 30, 30, (0.99, 1.0), (3.0, 4.0));
        assert_eq!(b, CropBox { top: 10, left: 0, height: 10, width: 30 });
    }

    #[test]
    fn neutral_colour_factors_are_identities() {
        let x = colour_images();
        let ones = [1.0; 4];
        assert!(max_diff(&adjust_brightness(&x, &ones).unwrap(), &x) < 1e-5);
        assert!(max_diff(&adjust_contrast(&x, &ones).unwrap(), &x) < 1e-5);
        assert!(max_diff(&adjust_saturation(&x, &ones).unwrap(), &x) < 1e-5);
        assert!(max_diff(&adjust_hue(&x, &[0.0; 4]).unwrap(), &x) < 1e-5);
        let gray = x.narrow(1, 0, 1);
        assert!(max_diff(&adjust_contrast(&gray, &ones).unwrap(), &gray) < 1e-5);
        assert!(adjust_hue(&x, &[0.0, 0.6, 0.0, 0.0]).is_err());
    }

    #[test]
    fn colour_factors_do_what_they_say() {
        let x = colour_images();
        // Saturation 0 and contrast 0 give gray and the flat mean.
        let desaturated = adjust_saturation(&x, &[0.0; 4]).unwrap();
        let gray = rgb_to_grayscale(&x).unwrap();
        assert!(max_diff(&desaturated, &gray.expand([-1, 3, -1, -1], false)) < 1e-6);
        let flat = adjust_contrast(&x, &[0.0; 4]).unwrap();
        let mean = gray.mean_dim([1i64, 2, 3].as_slice(), true, Kind::Float);
        assert!(max_diff(&flat, &mean.expand_as(&x)) < 1e-6);
        // A third of a turn maps pure red to pure green.
        let red = Tensor::from_slice(&[1.0f32, 0.0, 0.0]).reshape([1, 3, 1, 1]);
        assert!(max_diff(&adjust_hue(&red, &[1.0 / 3.0]).unwrap(), &red.roll([1], [1])) < 1e-5);
        // Brightness scales, then clamps.
        let bright = adjust_brightness(&x, &[2.0; 4]).unwrap();
        assert!(max_diff(&bright, &x.f_mul_scalar(2.0).unwrap().clamp(0.0, 1.0)) < 1e-7);
    }

    #[test]
    fn hsv_round_trip_is_exact_enough() {
        let x = colour_images();
        let hsv = rgb_to_hsv(&x).unwrap();
        let h = hsv.narrow(1, 0, 1);
        assert!(values(&h).iter().all(|v| (0.0..1.0).contains(v)));
        assert!(max_diff(&hsv_to_rgb(&hsv).unwrap(), &x) < 1e-5);
        // Pure blue: hue 2/3, full saturation and value.
        let blue = Tensor::from_slice(&[0.0f32, 0.0, 1.0]).reshape([1, 3, 1, 1]);
        let hsv = values(&rgb_to_hsv(&blue).unwrap());
        assert!((hsv[0] - 2.0 / 3.0).abs() < 1e-6 && hsv[1] == 1.0 && hsv[2] == 1.0, "{hsv:?}");
    }

    #[test]
    fn grayscale_views_have_equal_channels() {
        let x = images([3, 3, 8, 8], 9);
        let mut params = no_op_params(3, 8, 8);
        params[0].grayscale = true;
        params[2].grayscale = true;
        let y = simclr_view_with(&x, &params, &SimclrAugment::small(8)).unwrap();
        for i in [0, 2] {
            let s = y.get(i);
            assert!(max_diff(&s.get(0), &s.get(1)) < 1e-7 && max_diff(&s.get(1), &s.get(2)) < 1e-7);
        }
        assert!(max_diff(&y.get(1), &x.get(1)) < 1e-5, "sample 1 was not grayscaled");
        let red = Tensor::from_slice(&[1.0f32, 0.0, 0.0]).reshape([1, 3, 1, 1]);
        assert!((values(&rgb_to_grayscale(&red).unwrap())[0] - 0.2989).abs() < 1e-7);
    }

    #[test]
    fn blur_keeps_constants_and_blurs_only_chosen_samples() {
        let constant = Tensor::full([2, 3, 9, 11], 0.375, (Kind::Float, tch::Device::Cpu));
        let y = gaussian_blur(&constant, &[0.3, 2.0], 7).unwrap();
        assert!(max_diff(&y, &constant) < 1e-6);
        // An impulse spreads symmetrically and keeps its mass away from the borders.
        let impulse = Tensor::zeros([1, 1, 9, 9], (Kind::Float, tch::Device::Cpu));
        let _ = impulse.get(0).get(0).get(4).get(4).fill_(1.0);
        let y = gaussian_blur(&impulse, &[1.0], 5).unwrap();
        assert!((y.sum(Kind::Float).double_value(&[]) - 1.0).abs() < 1e-5);
        assert!(max_diff(&y, &y.flip([2])) < 1e-7 && max_diff(&y, &y.transpose(2, 3)) < 1e-7);
        assert!(y.double_value(&[0, 0, 4, 4]) < 0.2);

        let x = images([3, 3, 10, 10], 10);
        let mut params = no_op_params(3, 10, 10);
        params[1].blur_sigma = Some(1.5);
        let y = simclr_view_with(&x, &params, &SimclrAugment::small(10)).unwrap();
        assert!(max_diff(&y.narrow(0, 0, 1), &x.narrow(0, 0, 1)) < 1e-5);
        assert!(max_diff(&y.narrow(0, 2, 1), &x.narrow(0, 2, 1)) < 1e-5);
        assert!(max_diff(&y.narrow(0, 1, 1), &x.narrow(0, 1, 1)) > 0.05);
        assert!(gaussian_blur(&x, &[1.0; 3], 21).is_err(), "kernel too large for reflect padding");
    }

    #[test]
    fn jitter_runs_each_samples_ops_in_its_own_order() {
        // Square images and a full-image crop of the same size: the crop resamples nothing.
        let x = colour_images().narrow(3, 0, 6);
        use JitterOp::*;
        let orders = [
            [Brightness, Contrast, Saturation, Hue],
            [Hue, Saturation, Contrast, Brightness],
            [Contrast, Hue, Brightness, Saturation],
        ];
        let factors = [(1.6, 0.5, 1.7, 0.3), (0.4, 1.8, 0.2, -0.4), (1.3, 1.4, 0.6, 0.1)];
        let mut params = no_op_params(4, 6, 6);
        for (p, ((brightness, contrast, saturation, hue), order)) in
            params.iter_mut().zip(factors.into_iter().zip(orders))
        {
            p.jitter = Some(JitterParams { brightness, contrast, saturation, hue, order });
        }
        let y = simclr_view_with(&x, &params, &SimclrAugment::small(6)).unwrap();
        for (i, p) in params.iter().enumerate() {
            let mut expected = x.narrow(0, i as i64, 1);
            if let Some(j) = p.jitter {
                for op in j.order {
                    let f = [j.factor(op)];
                    expected = match op {
                        Brightness => adjust_brightness(&expected, &f),
                        Contrast => adjust_contrast(&expected, &f),
                        Saturation => adjust_saturation(&expected, &f),
                        Hue => adjust_hue(&expected, &f),
                    }
                    .unwrap();
                }
            }
            assert!(max_diff(&y.narrow(0, i as i64, 1), &expected) < 1e-5, "sample {i}");
        }
    }

    #[test]
    fn cuda_matches_cpu_when_a_gpu_is_present() {
        if !tch::Cuda::is_available() {
            eprintln!("skipping the CUDA check: no CUDA device");
            return;
        }
        let cuda = tch::Device::Cuda(0);
        let x = images([8, 3, 40, 36], 12);
        let indices: Vec<i64> = (0..8).collect();
        let cfg = CropFlip::default();
        let cpu = crop_flip(&x, &mut sample_rngs(1, 0, 0, &indices, 0), &cfg).unwrap();
        let gpu = crop_flip(&x.to_device(cuda), &mut sample_rngs(1, 0, 0, &indices, 0), &cfg).unwrap();
        assert_eq!(gpu.device(), cuda);
        assert!(gpu.to_device(tch::Device::Cpu).equal(&cpu));
        let cfg = SimclrAugment { blur_p: 0.5, ..SimclrAugment::small(24) };
        let cpu = simclr_view(&x, &mut sample_rngs(1, 0, 0, &indices, 0), &cfg).unwrap();
        let gpu = simclr_view(&x.to_device(cuda), &mut sample_rngs(1, 0, 0, &indices, 0), &cfg).unwrap();
        assert_eq!((gpu.device(), gpu.kind()), (cuda, Kind::Float));
        assert!(max_diff(&gpu.to_device(tch::Device::Cpu), &cpu) < 1e-4);
    }

    fn python() -> Option<PathBuf> {
        let path = match std::env::var_os("PT_PYTHON") {
            Some(p) => PathBuf::from(p),
            None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.pt/venv/bin/python"),
        };
        path.exists().then_some(path)
    }

    const TORCHVISION_REFERENCE: &str = r#"
import json, sys, torch
import torchvision.transforms.functional as F
d = json.load(open(sys.argv[1]))
x = torch.tensor(d["image"], dtype=torch.float32).reshape(d["shape"])
def per(fn, key):
    return torch.stack([fn(x[i], f) for i, f in enumerate(d[key])]).flatten().tolist()
k = d["kernel"]
out = {
    "brightness": per(F.adjust_brightness, "brightness"),
    "contrast": per(F.adjust_contrast, "contrast"),
    "saturation": per(F.adjust_saturation, "saturation"),
    "hue": per(F.adjust_hue, "hue"),
    "grayscale": F.rgb_to_grayscale(x).flatten().tolist(),
    "blur": per(lambda img, s: F.gaussian_blur(img, [k, k], [s, s]), "sigma"),
}
crops = []
for i, ((top, left, h, w), flip) in enumerate(zip(d["boxes"], d["flips"])):
    c = F.resized_crop(x[i], top, left, h, w, d["out"], antialias=False)
    crops.append(F.hflip(c) if flip else c)
out["resized_crop"] = torch.stack(crops).flatten().tolist()
json.dump(out, open(sys.argv[2], "w"))
"#;

    #[test]
    fn colour_ops_blur_and_resized_crop_match_torchvision() {
        let Some(python) = python() else {
            eprintln!(
                "skipping the torchvision parity check: no Python at $PT_PYTHON or .pt/venv (run scripts/setup.sh)"
            );
            return;
        };
        let x = colour_images();
        let brightness = [0.2, 0.9, 1.0, 1.8];
        let contrast = [0.2, 1.0, 1.5, 1.8];
        let saturation = [0.0, 0.5, 1.0, 1.8];
        let hue = [-0.5, -0.2, 0.0, 0.35];
        let sigma = [0.1, 0.7, 1.3, 2.0];
        let kernel = 5;
        // Heights shrink (6 -> 4 rows), widths grow (to 9 columns).
        let boxes = [
            CropBox { top: 0, left: 0, height: 6, width: 7 },
            CropBox { top: 1, left: 2, height: 3, width: 4 },
            CropBox { top: 2, left: 1, height: 4, width: 5 },
            CropBox { top: 0, left: 3, height: 5, width: 2 },
        ];
        let flips = [false, true, false, true];
        let (out_h, out_w) = (4, 9);
        let dir = std::env::temp_dir();
        let input = dir.join(format!("pt_augment_parity_{}_in.json", std::process::id()));
        let output = dir.join(format!("pt_augment_parity_{}_out.json", std::process::id()));
        let request = serde_json::json!({
            "shape": x.size(), "image": values(&x), "kernel": kernel,
            "brightness": brightness, "contrast": contrast, "saturation": saturation, "hue": hue, "sigma": sigma,
            "boxes": boxes.iter().map(|b| [b.top, b.left, b.height, b.width]).collect::<Vec<_>>(),
            "flips": flips, "out": [out_h, out_w],
        });
        std::fs::write(&input, request.to_string()).unwrap();
        let run = std::process::Command::new(&python)
            .arg("-c")
            .arg(TORCHVISION_REFERENCE)
            .arg(&input)
            .arg(&output)
            .output()
            .unwrap();
        assert!(run.status.success(), "{} failed: {}", python.display(), String::from_utf8_lossy(&run.stderr));
        let reference: serde_json::Value = serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();
        let _ = std::fs::remove_file(&input);
        let _ = std::fs::remove_file(&output);

        let ours = [
            ("brightness", adjust_brightness(&x, &brightness).unwrap()),
            ("contrast", adjust_contrast(&x, &contrast).unwrap()),
            ("saturation", adjust_saturation(&x, &saturation).unwrap()),
            ("hue", adjust_hue(&x, &hue).unwrap()),
            ("grayscale", rgb_to_grayscale(&x).unwrap()),
            ("blur", gaussian_blur(&x, &sigma, kernel).unwrap()),
            ("resized_crop", resized_crop(&x, &boxes, &flips, out_h, out_w).unwrap()),
        ];
        for (name, tensor) in ours {
            let expected: Vec<f64> = serde_json::from_value(reference[name].clone()).unwrap();
            let got = values(&tensor);
            assert_eq!(got.len(), expected.len(), "{name}");
            let worst = got.iter().zip(&expected).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
            assert!(worst < 1e-4, "{name}: differs from torchvision by {worst}");
        }
    }
}
