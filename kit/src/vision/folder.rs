//! `image_folder`: PNG/JPEG files, a folder per class (`root/<class>/…`, like torchvision's
//! `ImageFolder`) or unlabelled at any depth. Images are decoded once at start, on a pool of
//! threads, resized keeping their aspect ratio (shorter side, then the centre square), and kept
//! as bytes.

use super::augment::Normalization;
pub use super::decode::ResizeMode;
use super::decode::{decode_image, decoding_pool, ImageParams};
use super::store::{ImageStore, UNLABELLED};
use crate::{Component, CreateCtx, Dataset, DatasetInfo, PtError, Result, StepCtx, Tensors};
use pt_sdk::PluginConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum FolderLabels {
    /// `folders` when the root holds sub-folders and no images, else `none`.
    #[default]
    Auto,
    /// One sub-folder per class (torchvision's `ImageFolder`); images at any depth inside it.
    Folders,
    /// Every image under the root, at any depth, unlabelled (self-supervised pretraining).
    None,
}

#[derive(Serialize, Deserialize, Clone, Debug, PluginConfig)]
#[serde(default, deny_unknown_fields)]
pub struct ImageFolderConfig {
    /// root folder of .png/.jpg/.jpeg/.svg images
    pub path: String,
    /// folders: one sub-folder per class (sorted names = class order); none: every image under path, any depth,
    /// unlabelled; auto: folders when path holds only sub-folders, else none
    #[config(default = FolderLabels::Auto)]
    pub labels: FolderLabels,
    /// make every image this square size (null: all images must share one size)
    pub image_size: Option<i64>,
    /// crop: shorter side to image_size, then the centre square; stretch: both sides to image_size
    #[config(default = ResizeMode::Crop)]
    pub resize: ResizeMode,
    /// 3 (RGB) or 1 (grayscale)
    #[config(default = 3)]
    pub channels: i64,
    /// per-channel mean in [0, 1] units (null: computed from the images)
    pub mean: Option<Vec<f64>>,
    /// per-channel standard deviation (null: computed from the images)
    pub std: Option<Vec<f64>>,
    /// keep the first N images of each class, in file-name order (0: all)
    pub max_per_class: u64,
    /// refuse an image larger than this many pixels, read from its header before decoding
    #[config(default = 50_000_000)]
    pub max_pixels: u64,
    /// threads decoding images (0: one per CPU)
    pub workers: usize,
    /// skip unreadable images and empty class folders (counted) instead of failing
    pub skip_bad: bool,
    /// keep the labels of this fraction of each class (file order) and serve -100 for the rest,
    /// for semi-supervised runs
    #[config(default = 1.0)]
    pub label_fraction: f64,
}

pub struct ImageFolder {
    store: ImageStore,
    norm: Normalization,
    notes: serde_json::Map<String, serde_json::Value>,
}

use super::decode::IMAGE_EXTENSIONS;

fn is_image(path: &Path) -> bool {
    path.is_file()
        && path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(dir).map_err(|e| PtError::io(dir, e))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    Ok(entries)
}

/// Every image under `dir`, any depth, sorted (none: empty).
fn images_under(dir: &Path) -> Vec<PathBuf> {
    crate::files::expand_sources(&[dir.to_path_buf()], &IMAGE_EXTENSIONS, "image_folder").unwrap_or_default()
}

/// Decodes `path` into `[channels, size, size]` (or native size) bytes.
fn decode(path: &Path, cfg: &ImageFolderConfig) -> std::result::Result<(Vec<u8>, i64, i64), String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let params = ImageParams {
        image_size: cfg.image_size.map(|s| s as u32),
        resize: cfg.resize,
        channels: cfg.channels,
        max_pixels: cfg.max_pixels,
    };
    decode_image(&bytes, &params)
}

/// The images to read, with their labels, the class names, and the empty class folders.
fn list(cfg: &ImageFolderConfig, root: &Path) -> Result<(Vec<(PathBuf, i64)>, Vec<String>, Vec<String>)> {
    let entries = sorted_entries(root)?;
    let labels = match cfg.labels {
        FolderLabels::Auto if entries.iter().any(|p| is_image(p)) || !entries.iter().any(|p| p.is_dir()) => {
            FolderLabels::None
        }
        FolderLabels::Auto => FolderLabels::Folders,
        chosen => chosen,
    };
    if labels == FolderLabels::None {
        let files = images_under(root).into_iter().map(|f| (f, UNLABELLED)).collect();
        return Ok((files, Vec::new(), Vec::new()));
    }
    let class_dirs: Vec<PathBuf> = entries.into_iter().filter(|p| p.is_dir()).collect();
    if class_dirs.is_empty() {
        return Err(PtError::data(format!(
            "{}: no class sub-folders (expected root/<class>/<image>.png; labels = \"none\" reads unlabelled images)",
            root.display()
        )));
    }
    let (mut files, mut classes, mut empty) = (Vec::new(), Vec::new(), Vec::new());
    for dir in &class_dirs {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut images = images_under(dir);
        if images.is_empty() {
            if cfg.skip_bad {
                empty.push(name);
                continue;
            }
            return Err(PtError::data(format!(
                "{}: class folder has no .png/.jpg/.jpeg/.svg images; add images, remove the folder, or set skip_bad = true",
                dir.display()
            )));
        }
        if cfg.max_per_class > 0 {
            images.truncate(cfg.max_per_class as usize);
        }
        let label = classes.len() as i64;
        classes.push(name);
        files.extend(images.into_iter().map(|f| (f, label)));
    }
    Ok((files, classes, empty))
}

/// The images under `root` with their labels (-100 when unlabelled) and the class names, as
/// `image_folder` reads them (for `pt data pack`).
pub fn list_images(root: &Path, labels: FolderLabels) -> Result<(Vec<(PathBuf, i64)>, Vec<String>)> {
    let cfg = ImageFolderConfig { labels, ..Default::default() };
    list(&cfg, root).map(|(files, classes, _)| (files, classes))
}

/// Decodes `files` on `workers` threads (0: one per CPU), results in file order.
fn decode_all(
    files: &[(PathBuf, i64)],
    cfg: &ImageFolderConfig,
) -> Result<Vec<std::result::Result<(Vec<u8>, i64, i64), String>>> {
    use rayon::prelude::*;
    let pool = decoding_pool(cfg.workers)?;
    let progress = pt_sdk::log::Progress::new("decoding images", Some(files.len() as u64));
    let decoded = pool.install(|| {
        files
            .par_iter()
            .map(|(f, _)| {
                let image = decode(f, cfg);
                progress.add(1);
                image
            })
            .collect()
    });
    progress.finish();
    Ok(decoded)
}

impl ImageFolder {
    pub fn load(cfg: &ImageFolderConfig) -> Result<Self> {
        if cfg.path.is_empty() {
            return Err(PtError::config("image_folder: set path to the root folder of the images"));
        }
        if cfg.channels != 1 && cfg.channels != 3 {
            return Err(PtError::config(format!("image_folder: channels must be 1 or 3, got {}", cfg.channels)));
        }
        if cfg.image_size.is_some_and(|s| s <= 0) {
            return Err(PtError::config("image_folder: image_size must be positive"));
        }
        let root = Path::new(&cfg.path);
        let (files, classes, empty_classes) = list(cfg, root)?;
        let started = std::time::Instant::now();
        let decoded = decode_all(&files, cfg)?;
        let mut pixels = Vec::new();
        let mut labels = Vec::new();
        let mut shape: Option<(i64, i64)> = cfg.image_size.map(|s| (s, s));
        let mut bad_files = 0u64;
        for ((file, label), result) in files.iter().zip(decoded) {
            match result {
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
                    labels.push(*label);
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
        let Some((height, width)) = shape.filter(|_| !labels.is_empty()) else {
            return Err(PtError::data(format!("{}: no readable images", root.display())));
        };
        tracing::info!(images = labels.len(), seconds = started.elapsed().as_secs_f64(), "images decoded");
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
        if store.unlabelled() {
            notes.insert("labels".into(), "none".into());
        }
        Ok(ImageFolder { store, norm, notes })
    }
}

impl Component for ImageFolder {
    const NAME: &'static str = "image_folder";
    const ABOUT: &'static str = "PNG/JPEG images: one sub-folder per class, or unlabelled at any depth";
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
        self.store.batch(indices)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    /// 40×20: the left quarter black, the rest white.
    fn wide(path: &Path) {
        let img = RgbImage::from_fn(40, 20, |x, _| if x < 10 { Rgb([0, 0, 0]) } else { Rgb([255, 255, 255]) });
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        img.save(path).unwrap();
    }

    fn load(root: &Path, edit: impl FnOnce(&mut ImageFolderConfig)) -> Result<ImageFolder> {
        let mut cfg =
            ImageFolderConfig { path: root.display().to_string(), image_size: Some(20), ..Default::default() };
        edit(&mut cfg);
        ImageFolder::load(&cfg)
    }

    /// Issue 21: a flat (any depth) folder is unlabelled, images keep their aspect ratio
    /// (centre crop) unless stretched, decoding on several threads gives the same bytes, and a
    /// too-large image is refused from its header.
    #[test]
    fn flat_folders_crop_keep_aspect_and_bombs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let flat = dir.path().join("flat");
        wide(&flat.join("a.png"));
        wide(&flat.join("trip/2024/b.png"));
        std::fs::write(flat.join("notes.txt"), "not an image").unwrap();
        let ds = load(&flat, |_| {}).unwrap();
        let info = ds.info();
        assert_eq!(info.num_samples, 2);
        assert!(info.classes.is_empty() && info.field_names() == ["image"], "{:?}", info.field_names());
        assert_eq!(info.notes["labels"], "none");
        assert_eq!(ds.store.pixels.len(), 2 * 3 * 20 * 20);
        // Centre crop of the resized 40×20: columns 10..30, all white.
        assert!(ds.store.pixels.iter().all(|&v| v == 255), "the crop kept the black quarter");
        let batch = ds.get_batch(&[0, 1], &StepCtx::default()).unwrap();
        assert!(batch.get("label").is_none());
        let stretched = load(&flat, |c| c.resize = ResizeMode::Stretch).unwrap();
        assert!(stretched.store.pixels[..20].iter().take(4).all(|&v| v == 0), "stretching keeps the black edge");
        let one = load(&flat, |c| c.workers = 1).unwrap();
        assert_eq!(one.store.pixels, ds.store.pixels);
        let e = load(&flat, |c| c.max_pixels = 100).err().unwrap().to_string();
        assert!(e.contains("a.png") && e.contains("40×20 = 800 pixels, more than max_pixels = 100"), "{e}");

        // Class folders as before (images at any depth inside each).
        let classes = dir.path().join("classes");
        wide(&classes.join("cat/x.png"));
        wide(&classes.join("dog/more/y.png"));
        let ds = load(&classes, |_| {}).unwrap();
        assert_eq!(ds.info().classes, ["cat", "dog"]);
        assert_eq!(ds.store.labels, [0, 1]);
        let e = load(&classes, |c| c.labels = FolderLabels::Folders).map(|d| d.store.len()).unwrap();
        assert_eq!(e, 2);
        let unlabelled = load(&classes, |c| c.labels = FolderLabels::None).unwrap();
        assert!(unlabelled.store.unlabelled() && unlabelled.store.len() == 2);
    }
}
