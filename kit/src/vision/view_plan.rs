//! SimCLR views in two halves: [`simclr_view_tensors`] turns a batch's drawn parameters into
//! small tensors where they are drawn (the loader thread, on the CPU), and
//! [`apply_simclr_view`] makes the views from them on the training device. The tensors travel
//! with the batch (pinned, copied asynchronously), so the training thread builds none of them
//! and never waits on an upload from pageable memory (on a GPU each such upload is a wait; a
//! SimCLR step has dozens).
//!
//! Tensors, under the caller's prefix (`view0/`, …): `theta` `[B, 2, 3]` and `lowest`,
//! `highest` `[B, 1, 1, 2]` (the crop grid, see `resized_crop`); per jitter stage `s` and op,
//! `jitter{s}.{op}.index` `[k]` (ascending samples) and `.factor` `[k, 1, 1, 1]`; `gray.index`;
//! `blur.index` and `blur.weight` `[k · C · K]`. A transform no sample takes has no entry.

use super::augment::{
    adjust_brightness_by, adjust_contrast_by, adjust_hue_by, adjust_saturation_by, blur_kernels, crop_grid,
    float_images, gaussian_blur_by, odd_below, on_subset_by, resized_crop_by, rgb_to_grayscale, CropBox, JitterOp,
    SimclrAugment, SimclrParams,
};
use crate::{PtError, Result, Tensors};
use tch::{Kind, Tensor};

fn op_name(op: JitterOp) -> &'static str {
    match op {
        JitterOp::Brightness => "brightness",
        JitterOp::Contrast => "contrast",
        JitterOp::Saturation => "saturation",
        JitterOp::Hue => "hue",
    }
}

/// Whether `op` applies to images with `channels` channels (gray images skip the colour ones).
fn applies(op: JitterOp, channels: i64) -> bool {
    channels == 3 || !matches!(op, JitterOp::Saturation | JitterOp::Hue)
}

/// The blur's kernel size for `cfg` at the views' side (at most the largest odd size reflect
/// padding allows; below 3 there is no blur).
fn blur_kernel(cfg: &SimclrAugment) -> i64 {
    cfg.blur_kernel_size().min(odd_below(cfg.out_size))
}

/// `params`' tensors (on the CPU) for views of images of `shape` `[B, C, H, W]`, named under
/// `prefix`, after [`check_draws`].
pub fn simclr_view_tensors(
    params: &[SimclrParams],
    cfg: &SimclrAugment,
    shape: [i64; 4],
    prefix: &str,
) -> Result<Tensors> {
    check_draws(params, cfg, shape)?;
    let [batch, channels, height, width] = shape;
    let mut out = Tensors::new();
    if batch == 0 {
        return Ok(out); // apply_simclr_view makes empty views without any tensor
    }
    let name = |n: &str| format!("{prefix}{n}");
    let indices = |keep: &dyn Fn(&SimclrParams) -> bool| -> Vec<i64> {
        (0..params.len()).filter(|&i| keep(&params[i])).map(|i| i as i64).collect()
    };
    let boxes: Vec<CropBox> = params.iter().map(|p| p.crop).collect();
    let flips: Vec<bool> = params.iter().map(|p| p.flip).collect();
    let [theta, lowest, highest] = crop_grid(&boxes, &flips, height, width)?;
    out.insert(name("theta"), theta);
    out.insert(name("lowest"), lowest);
    out.insert(name("highest"), highest);
    for stage in 0..4 {
        for op in JitterOp::ALL.into_iter().filter(|&op| applies(op, channels)) {
            let selected = indices(&|p| p.jitter.is_some_and(|j| j.order[stage] == op));
            if selected.is_empty() {
                continue;
            }
            let factors: Vec<f32> =
                selected.iter().filter_map(|&i| params[i as usize].jitter.map(|j| j.factor(op) as f32)).collect();
            let key = format!("jitter{stage}.{}", op_name(op));
            out.insert(name(&format!("{key}.index")), Tensor::f_from_slice(&selected)?);
            out.insert(name(&format!("{key}.factor")), Tensor::f_from_slice(&factors)?.f_reshape([-1, 1, 1, 1])?);
        }
    }
    let gray = indices(&|p| p.grayscale);
    if channels == 3 && !gray.is_empty() {
        out.insert(name("gray.index"), Tensor::f_from_slice(&gray)?);
    }
    let blurred = indices(&|p| p.blur_sigma.is_some());
    let kernel = blur_kernel(cfg);
    if kernel >= 3 && !blurred.is_empty() {
        let sigmas: Vec<f64> = blurred.iter().filter_map(|&i| params[i as usize].blur_sigma).collect();
        out.insert(name("blur.index"), Tensor::f_from_slice(&blurred)?);
        out.insert(name("blur.weight"), Tensor::f_from_slice(&blur_kernels(&sigmas, channels, kernel))?);
    }
    Ok(out)
}

/// One draw per image of 1 or 3 channels, every crop inside its image, hue shifts in
/// [-0.5, 0.5] turns, blur sigmas finite and positive: what [`apply_simclr_view`] relies on.
fn check_draws(params: &[SimclrParams], cfg: &SimclrAugment, [batch, channels, height, width]: [i64; 4]) -> Result<()> {
    cfg.validate()?;
    if params.len() as i64 != batch {
        return Err(PtError::shape(format!(
            "simclr_view: {} per-sample random streams/parameters for a batch of {batch}; give one per image",
            params.len()
        )));
    }
    if channels != 1 && channels != 3 {
        return Err(PtError::shape(format!(
            "simclr_view: images have {channels} channels; colour augmentation needs 1 (gray) or 3 (RGB)"
        )));
    }
    if height < 1 || width < 1 {
        return Err(PtError::shape(format!("simclr_view: images are {height}x{width}; nothing to crop")));
    }
    for (i, p) in params.iter().enumerate() {
        let c = p.crop;
        let inside = c.height >= 1 && c.width >= 1 && c.top >= 0 && c.left >= 0;
        if !inside || c.top + c.height > height || c.left + c.width > width {
            return Err(PtError::shape(format!(
                "simclr_view: sample {i}'s crop {c:?} is not inside its {height}x{width} image"
            )));
        }
        if let Some(hue) = p.jitter.map(|j| j.hue).filter(|h| !(-0.5..=0.5).contains(h)) {
            return Err(PtError::config(format!("simclr_view: sample {i}'s hue shift {hue} is outside [-0.5, 0.5]")));
        }
        if let Some(sigma) = p.blur_sigma.filter(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(PtError::config(format!(
                "simclr_view: sample {i}'s blur sigma {sigma} must be finite and > 0"
            )));
        }
    }
    Ok(())
}

/// One view of each image of `images` (`[B, C, H, W]` floats in [0, 1]) from the tensors
/// [`simclr_view_tensors`] made for them (under `prefix` in `planned`, on the images' device):
/// resized crop + flip, colour jitter in each sample's own op order, grayscale, blur, a final
/// clamp to [0, 1]. Float32, `cfg.out_size` square. Reads nothing back from the device.
pub fn apply_simclr_view(images: &Tensor, planned: &Tensors, prefix: &str, cfg: &SimclrAugment) -> Result<Tensor> {
    let _no_grad = tch::no_grad_guard();
    let (x, [batch, channels, _, _]) = float_images(images, "simclr_view")?;
    let side = cfg.out_size;
    if batch == 0 {
        return Ok(x.f_new_zeros([0, channels, side, side], (Kind::Float, x.device()))?);
    }
    let get = |n: &str| planned.get(&format!("{prefix}{n}"));
    let need = |n: &str| {
        get(n).ok_or_else(|| {
            PtError::shape(format!("simclr_view: the batch has no '{prefix}{n}' (drawn views' tensors)"))
        })
    };
    let theta = need("theta")?;
    if theta.size()[0] != batch {
        return Err(PtError::shape(format!(
            "simclr_view: '{prefix}theta' was drawn for {} images, the batch has {batch}: draw for the batch as it reaches prepare",
            theta.size()[0]
        )));
    }
    let mut x = resized_crop_by(&x, theta, need("lowest")?, need("highest")?, side, side)?;
    for stage in 0..4 {
        for op in JitterOp::ALL.into_iter().filter(|&op| applies(op, channels)) {
            let key = format!("jitter{stage}.{}", op_name(op));
            let Some(index) = get(&format!("{key}.index")) else { continue };
            let f = need(&format!("{key}.factor"))?;
            x = on_subset_by(&x, index, |sub| match op {
                JitterOp::Brightness => adjust_brightness_by(sub, f),
                JitterOp::Contrast => adjust_contrast_by(sub, f),
                JitterOp::Saturation => adjust_saturation_by(sub, f),
                JitterOp::Hue => adjust_hue_by(sub, f),
            })?;
        }
    }
    if let (Some(index), 3) = (get("gray.index"), channels) {
        x = on_subset_by(&x, index, |sub| Ok(rgb_to_grayscale(sub)?.f_expand([-1, 3, -1, -1], false)?))?;
    }
    if let Some(index) = get("blur.index") {
        let weight = need("blur.weight")?;
        x = on_subset_by(&x, index, |sub| gaussian_blur_by(sub, weight, blur_kernel(cfg)))?;
    }
    Ok(x.f_clamp(0.0, 1.0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::augment::JitterParams;

    fn params(jitter: bool, grayscale: bool, blur: bool) -> SimclrParams {
        SimclrParams {
            crop: CropBox { top: 1, left: 2, height: 5, width: 6 },
            flip: true,
            jitter: jitter.then_some(JitterParams {
                brightness: 1.2,
                contrast: 0.9,
                saturation: 1.1,
                hue: 0.05,
                order: [JitterOp::Hue, JitterOp::Brightness, JitterOp::Contrast, JitterOp::Saturation],
            }),
            grayscale,
            blur_sigma: blur.then_some(0.7),
        }
    }

    /// What crosses to the device: CPU tensors for the transforms some sample takes, none for
    /// the others, read under their prefix.
    #[test]
    fn only_the_transforms_some_sample_takes_get_tensors() {
        let cfg = SimclrAugment { out_size: 8, ..SimclrAugment::imagenet() };
        let draws = [params(false, false, false), params(true, true, false), params(false, false, true)];
        let planned = simclr_view_tensors(&draws, &cfg, [3, 3, 9, 10], "v/").unwrap();
        let mut names: Vec<&str> = planned.names().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "v/blur.index",
                "v/blur.weight",
                "v/gray.index",
                "v/highest",
                "v/jitter0.hue.factor",
                "v/jitter0.hue.index",
                "v/jitter1.brightness.factor",
                "v/jitter1.brightness.index",
                "v/jitter2.contrast.factor",
                "v/jitter2.contrast.index",
                "v/jitter3.saturation.factor",
                "v/jitter3.saturation.index",
                "v/lowest",
                "v/theta",
            ]
        );
        assert!(planned.iter().all(|(_, t)| t.device() == tch::Device::Cpu));
        assert_eq!(Vec::<i64>::try_from(planned.get("v/gray.index").unwrap()).unwrap(), [1]);
        let images = Tensor::rand([3, 3, 9, 10], (Kind::Float, tch::Device::Cpu));
        assert_eq!(apply_simclr_view(&images, &planned, "v/", &cfg).unwrap().size(), [3, 3, 8, 8]);
        let err = apply_simclr_view(&images, &planned, "w/", &cfg).unwrap_err().to_string();
        assert!(err.contains("no 'w/theta'"), "{err}");
        let err = apply_simclr_view(&images.narrow(0, 0, 2), &planned, "v/", &cfg).unwrap_err().to_string();
        assert!(err.contains("drawn for 3 images, the batch has 2"), "{err}");
        let mut bad = draws;
        bad[2].blur_sigma = Some(f64::NAN);
        let err = simclr_view_tensors(&bad, &cfg, [3, 3, 9, 10], "v/").unwrap_err().to_string();
        assert!(err.contains("sample 2's blur sigma NaN"), "{err}");
    }
}
