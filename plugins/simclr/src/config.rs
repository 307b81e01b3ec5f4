//! The `simclr` objective's options: augmentation preset and overrides, the projection head, the
//! temperature, and what the dataset and architecture fill in (statistics, sizes, classes).

use pt_kit::vision::augment::SimclrAugment;
use pt_sdk::{PluginConfig, PtError, Result};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, PluginConfig)]
#[serde(default, deny_unknown_fields)]
pub struct SimclrConfig {
    /// augmentation preset: imagenet (blur, strength 1), small (28-32 px: no blur, strength 0.5), auto (small
    /// below 64 px)
    #[config(default = "auto", one_of = ["auto", "small", "imagenet"])]
    pub augment: String,
    /// colour-jitter strength s: brightness/contrast/saturation 0.8·s, hue 0.2·s (null: the preset's)
    pub strength: Option<f64>,
    /// probability of Gaussian blur (null: the preset's)
    pub blur_p: Option<f64>,
    /// smallest crop area as a fraction of the image (null: the preset's 0.08)
    pub min_scale: Option<f64>,
    /// NT-Xent temperature (0.1-0.5 in the paper)
    #[config(default = 0.5, above = 0.0)]
    pub temperature: f64,
    /// hidden width of the projection head (null: the encoder's feature_dim, e.g. 2048 for resnet50)
    pub proj_hidden: Option<i64>,
    /// output width of the projection head
    #[config(default = 128, min = 1)]
    pub proj_dim: i64,
    /// train a linear classifier on detached features alongside (needs labels); reports probe_accuracy
    #[config(default = true)]
    pub online_probe: bool,
    /// width of the encoder's `features`
    #[config(input, min = 1)]
    pub feature_dim: i64,
    /// [height, width] of the dataset's images; views keep this size
    #[config(input, optional)]
    pub image_size: Option<Vec<i64>>,
    /// per-channel mean the dataset normalised with
    #[config(input, optional)]
    pub mean: Option<Vec<f64>>,
    /// per-channel std the dataset normalised with
    #[config(input, optional)]
    pub std: Option<Vec<f64>>,
    /// classes for the online probe
    #[config(input, optional)]
    pub num_classes: Option<i64>,
}

impl SimclrConfig {
    /// The augmentation: the preset (chosen by image size under `auto`) plus explicit overrides.
    pub fn augmentation(&self) -> Result<SimclrAugment> {
        let size = match self.image_size.as_deref() {
            Some([h, w]) if h == w && *h > 0 => *h,
            Some(other) => {
                return Err(PtError::config(format!(
                    "simclr: image_size {other:?} is not square; views are square crops of the image"
                )))
            }
            None => {
                return Err(PtError::config(
                    "simclr: image_size is unknown: use an image dataset that reports it or set objective.image_size = [h, w]",
                ))
            }
        };
        let mut aug = match self.augment.as_str() {
            "imagenet" => SimclrAugment { out_size: size, ..SimclrAugment::imagenet() },
            "small" => SimclrAugment::small(size),
            "auto" if size < 64 => SimclrAugment::small(size),
            "auto" => SimclrAugment { out_size: size, ..SimclrAugment::imagenet() },
            other => {
                return Err(PtError::config(format!("simclr: augment must be auto, small or imagenet, got '{other}'")))
            }
        };
        if let Some(s) = self.strength {
            aug.strength = s;
        }
        if let Some(p) = self.blur_p {
            aug.blur_p = p;
        }
        if let Some(m) = self.min_scale {
            aug.scale.0 = m;
        }
        aug.validate()?;
        Ok(aug)
    }
}
