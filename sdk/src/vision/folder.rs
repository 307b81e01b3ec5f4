//! `image_folder`: a folder per class of PNG/JPEG files (`root/<class>/*.png`), like
//! torchvision's `ImageFolder`. Images are decoded once at start and kept as bytes.

use super::augment::Normalization;
use super::store::ImageStore;
use crate::{Component, Config, CreateCtx, Dataset, DatasetInfo, PtError, Result, StepCtx, Tensors};
use image::imageops::FilterType;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct ImageFolderConfig {
    pub path: String,
    pub image_size: Option<i64>,
    pub channels: i64,
    pub mean: Option<Vec<f64>>,
    pub std: Option<Vec<f64>>,
    pub max_per_class: u64,
    pub skip_bad: bool,
    pub label_fraction: f64,
}

impl Default for ImageFolderConfig {
    fn default() -> Self {
        ImageFolderConfig {
            path: String::new(),
            image_size: None,
            channels: 3,
            mean: None,
            std: None,
            max_per_class: 0,
            skip_bad: false,
            label_fraction: 1.0,
        }
    }
}

impl Config for ImageFolderConfig {
    fn describe() -> &'static [(&'static str, &'static str)] {
        &[
            (
                "path",
                "root folder with one sub-folder of .png/.jpg/.jpeg images per class (sorted names = class order)",
            ),
            ("image_size", "resize every image to this square size (null: all images must share one size)"),
            ("channels", "3 (RGB) or 1 (grayscale)"),
            ("mean", "per-channel mean in [0, 1] units (null: computed from the images)"),
            ("std", "per-channel standard deviation (null: computed from the images)"),
            ("max_per_class", "keep the first N images of each class, in file-name order (0: all)"),
            ("skip_bad", "skip unreadable images and empty class folders (counted) instead of failing"),
            ("label_fraction", "keep the labels of this fraction of each class (file order) and serve -100 for the rest, for semi-supervised runs"),
        ]
    }
}

pub struct ImageFolder {
    store: ImageStore,
    norm: Normalization,
    notes: serde_json::Map<String, serde_json::Value>,
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(dir).map_err(|e| PtError::io(dir, e))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    Ok(entries)
}

/// Decodes `path` into `[channels, size, size]` (or native size) bytes.
fn decode(path: &Path, channels: i64, size: Option<i64>) -> std::result::Result<(Vec<u8>, i64, i64), String> {
    let img = image::open(path).map_err(|e| e.to_string())?;
    let img = match size {
        Some(s) if img.width() as i64 != s || img.height() as i64 != s => {
            img.resize_exact(s as u32, s as u32, FilterType::Triangle)
        }
        _ => img,
    };
    let (w, h) = (img.width() as i64, img.height() as i64);
    let interleaved = if channels == 1 { img.to_luma8().into_raw() } else { img.to_rgb8().into_raw() };
    // HWC → CHW
    let plane = (w * h) as usize;
    let c = channels as usize;
    let mut chw = vec![0u8; plane * c];
    for (p, px) in interleaved.chunks_exact(c).enumerate() {
        for (ch, &v) in px.iter().enumerate() {
            chw[ch * plane + p] = v;
        }
    }
    Ok((chw, h, w))
}

impl ImageFolder {
    pub fn load(cfg: &ImageFolderConfig) -> Result<Self> {
        if cfg.path.is_empty() {
            return Err(PtError::config("image_folder: set path to the root folder (one sub-folder per class)"));
        }
        if cfg.channels != 1 && cfg.channels != 3 {
            return Err(PtError::config(format!("image_folder: channels must be 1 or 3, got {}", cfg.channels)));
        }
        let root = Path::new(&cfg.path);
        let class_dirs: Vec<PathBuf> = sorted_entries(root)?.into_iter().filter(|p| p.is_dir()).collect();
        if class_dirs.is_empty() {
            return Err(PtError::data(format!(
                "{}: no class sub-folders (expected root/<class>/<image>.png)",
                root.display()
            )));
        }
        let mut classes = Vec::new();
        let mut pixels = Vec::new();
        let mut labels = Vec::new();
        let mut shape: Option<(i64, i64)> = cfg.image_size.map(|s| (s, s));
        let (mut bad_files, mut empty_classes) = (0u64, Vec::new());
        for dir in &class_dirs {
            let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let files: Vec<PathBuf> = sorted_entries(dir)?.into_iter().filter(|p| is_image(p)).collect();
            if files.is_empty() {
                if cfg.skip_bad {
                    empty_classes.push(name);
                    continue;
                }
                return Err(PtError::data(format!(
                    "{}: class folder has no .png/.jpg/.jpeg images; add images, remove the folder, or set skip_bad = true",
                    dir.display()
                )));
            }
            let label = classes.len() as i64;
            classes.push(name);
            let mut kept = 0u64;
            for file in files {
                if cfg.max_per_class > 0 && kept >= cfg.max_per_class {
                    break;
                }
                match decode(&file, cfg.channels, cfg.image_size) {
                    Ok((bytes, h, w)) => {
                        match shape {
                            None => shape = Some((h, w)),
                            Some(s) if s != (h, w) => {
                                return Err(PtError::data(format!(
                                "{}: {w}×{h} pixels but earlier images are {}×{}; set image_size to resize all images",
                                file.display(),
                                s.1,
                                s.0
                            )))
                            }
                            _ => {}
                        }
                        pixels.extend_from_slice(&bytes);
                        labels.push(label);
                        kept += 1;
                    }
                    Err(why) if cfg.skip_bad => {
                        tracing::warn!(file = %file.display(), %why, "skipping unreadable image");
                        bad_files += 1;
                    }
                    Err(why) => {
                        return Err(PtError::data(format!(
                            "{}: cannot decode the image ({why}); fix or remove it, or set skip_bad = true",
                            file.display()
                        )))
                    }
                }
            }
        }
        let Some((height, width)) = shape.filter(|_| !labels.is_empty()) else {
            return Err(PtError::data(format!("{}: no readable images", root.display())));
        };
        let mut store = ImageStore {
            pixels,
            channels: cfg.channels,
            height,
            width,
            scale: 1.0 / 255.0,
            labels,
            classes,
            labelled: None,
        };
        store.keep_label_fraction(cfg.label_fraction)?;
        let norm = store.normalization(&cfg.mean, &cfg.std, "image_folder")?;
        let mut notes = serde_json::Map::new();
        if bad_files > 0 {
            notes.insert("skipped_images".into(), bad_files.into());
        }
        if !empty_classes.is_empty() {
            notes.insert("skipped_empty_classes".into(), serde_json::json!(empty_classes));
        }
        Ok(ImageFolder { store, norm, notes })
    }
}

impl Component for ImageFolder {
    const NAME: &'static str = "image_folder";
    const ABOUT: &'static str = "labelled PNG/JPEG images, one sub-folder per class";
    const PROVIDES: &'static [&'static str] = &["num_classes", "image_size", "mean", "std", "channels"];
    type Config = ImageFolderConfig;
    fn new(mut cfg: ImageFolderConfig, ctx: &CreateCtx) -> Result<Self> {
        cfg.path = ctx.expand(&cfg.path);
        Self::load(&cfg)
    }
}

impl Dataset for ImageFolder {
    fn info(&self) -> DatasetInfo {
        self.store.info(&self.norm, self.notes.clone())
    }
    fn get_batch(&self, indices: &[u64], _ctx: &StepCtx) -> Result<Tensors> {
        self.store.batch(indices, &self.norm)
    }
}
