//! The `simclr` objective's options: augmentation preset and overrides, the projection head, the
//! temperature, and what the dataset and architecture fill in (statistics, sizes, classes).

use pt_sdk::vision::augment::SimclrAugment;
use pt_sdk::{Config, PtError, Result};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SimclrConfig {
    pub augment: String,
    pub strength: Option<f64>,
    pub blur_p: Option<f64>,
    pub min_scale: Option<f64>,
    pub temperature: f64,
    pub proj_hidden: Option<i64>,
    pub proj_dim: i64,
    pub online_probe: bool,
    pub feature_dim: Option<i64>,
    pub image_size: Option<Vec<i64>>,
    pub mean: Option<Vec<f64>>,
    pub std: Option<Vec<f64>>,
    pub num_classes: Option<i64>,
}

impl Default for SimclrConfig {
    fn default() -> Self {
        SimclrConfig {
            augment: "auto".into(),
            strength: None,
            blur_p: None,
            min_scale: None,
            temperature: 0.5,
            proj_hidden: None,
            proj_dim: 128,
            online_probe: true,
            feature_dim: None,
            image_size: None,
            mean: None,
            std: None,
            num_classes: None,
        }
    }
}

impl Config for SimclrConfig {
    fn validate(&self) -> pt_sdk::Result<()> {
        if self.proj_dim < 1 || !(self.temperature > 0.0) {
            pt_sdk::bail!(Config, "simclr: proj_dim must be >= 1 and temperature > 0");
        }
        if !["auto", "small", "imagenet"].contains(&self.augment.as_str()) {
            pt_sdk::bail!(Config, "simclr: augment must be auto, small or imagenet, got '{}'", self.augment);
        }
        Ok(())
    }

    fn inputs() -> Vec<pt_sdk::InputDecl> {
        let mut v = vec![pt_sdk::InputDecl::key("feature_dim")];
        v.extend(["image_size", "mean", "std", "num_classes"].iter().map(|k| pt_sdk::InputDecl::key(k).optional()));
        v
    }

    fn describe() -> &'static [(&'static str, &'static str)] {
        &[
            ("augment", "augmentation preset: imagenet (blur, strength 1), small (28-32 px: no blur, strength 0.5), auto (small below 64 px)"),
            ("strength", "colour-jitter strength s: brightness/contrast/saturation 0.8·s, hue 0.2·s (null: the preset's)"),
            ("blur_p", "probability of Gaussian blur (null: the preset's)"),
            ("min_scale", "smallest crop area as a fraction of the image (null: the preset's 0.08)"),
            ("temperature", "NT-Xent temperature (0.1-0.5 in the paper)"),
            ("proj_hidden", "hidden width of the projection head (null: the encoder's feature_dim, e.g. 2048 for resnet50)"),
            ("proj_dim", "output width of the projection head"),
            ("online_probe", "train a linear classifier on detached features alongside (needs labels); reports probe_accuracy"),
            ("feature_dim", "width of the encoder's `features` (null: from the architecture)"),
            ("image_size", "[height, width] of the dataset's images; views keep this size (null: from the dataset)"),
            ("mean", "per-channel mean the dataset normalised with (null: from the dataset)"),
            ("std", "per-channel std the dataset normalised with (null: from the dataset)"),
            ("num_classes", "classes for the online probe (null: from the dataset)"),
        ]
    }
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
