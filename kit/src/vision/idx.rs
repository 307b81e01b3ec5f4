//! `idx_images`: MNIST-style IDX files (`{train,t10k}-images-idx3-ubyte` and
//! `…-labels-idx1-ubyte`), as in the original MNIST and Fashion-MNIST distributions.

use super::augment::Normalization;
use super::store::{check_labels, ImageStore};
use crate::{Component, CreateCtx, Dataset, DatasetInfo, PtError, Result, StepCtx, Tensors};
use pt_sdk::PluginConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Serialize, Deserialize, Clone, Debug, PluginConfig)]
#[serde(default, deny_unknown_fields)]
pub struct IdxConfig {
    /// directory with {train,t10k}-{images-idx3,labels-idx1}-ubyte (and optionally classes.txt)
    #[config(default = "{data}/images/mnist")]
    pub path: String,
    /// train (train-*) or test (t10k-*)
    #[config(default = "train")]
    pub split: String,
    /// number of classes (null: classes.txt's lines, else the largest label + 1)
    pub num_classes: Option<i64>,
    /// per-channel mean in [0, 1] units (null: computed from this split)
    pub mean: Option<Vec<f64>>,
    /// per-channel standard deviation (null: computed from this split)
    pub std: Option<Vec<f64>>,
    /// keep the first N images of each class (0: all), for balanced subsets
    pub max_per_class: u64,
    /// keep the first N images (0: all)
    pub max_samples: u64,
    /// skip samples whose label is out of range (counted) instead of failing
    pub skip_bad: bool,
    /// keep the labels of this fraction of each class (file order) and serve -100 for the rest,
    /// for semi-supervised runs
    #[config(default = 1.0)]
    pub label_fraction: f64,
}

pub struct IdxImages {
    store: ImageStore,
    norm: Normalization,
    notes: serde_json::Map<String, serde_json::Value>,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        PtError::io(path, format!("{e} (fetch the image data with `python3 scripts/fetch_data.py images`)"))
    })
}

fn be_u32(data: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

/// Parses an IDX header of unsigned bytes with `dims` dimensions; returns the sizes and payload.
fn parse_idx<'a>(data: &'a [u8], dims: usize, path: &Path) -> Result<(Vec<usize>, &'a [u8])> {
    let header = 4 + 4 * dims;
    let bad = |why: String| {
        PtError::data(format!(
            "{}: not a valid IDX file ({why}); re-fetch it (python3 scripts/fetch_data.py --force images)",
            path.display()
        ))
    };
    if data.len() < header {
        return Err(bad(format!("{} bytes is shorter than the {header}-byte header", data.len())));
    }
    if data[0] != 0 || data[1] != 0 || data[2] != 0x08 || data[3] as usize != dims {
        return Err(bad(format!(
            "magic {:02x}{:02x}{:02x}{:02x}, expected 000008{dims:02x} (unsigned bytes, {dims} dimensions)",
            data[0], data[1], data[2], data[3]
        )));
    }
    let sizes: Vec<usize> = (0..dims).map(|d| be_u32(data, 4 + 4 * d) as usize).collect();
    let expected = sizes.iter().product::<usize>();
    let payload = &data[header..];
    if payload.len() != expected {
        return Err(bad(format!(
            "the header says {} ({} bytes of data) but the file has {} bytes of data",
            sizes.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("×"),
            expected,
            payload.len()
        )));
    }
    Ok((sizes, payload))
}

impl IdxImages {
    pub fn files(dir: &Path, split: &str) -> Result<(PathBuf, PathBuf)> {
        let prefix = match split {
            "train" => "train",
            "test" | "t10k" => "t10k",
            other => return Err(PtError::config(format!("split must be train or test, got '{other}'"))),
        };
        Ok((dir.join(format!("{prefix}-images-idx3-ubyte")), dir.join(format!("{prefix}-labels-idx1-ubyte"))))
    }

    pub fn load(cfg: &IdxConfig) -> Result<Self> {
        let dir = Path::new(&cfg.path);
        let (image_path, label_path) = Self::files(dir, &cfg.split)?;
        let image_data = read(&image_path)?;
        let (sizes, pixels) = parse_idx(&image_data, 3, &image_path)?;
        let label_data = read(&label_path)?;
        let (label_sizes, label_bytes) = parse_idx(&label_data, 1, &label_path)?;
        if label_sizes[0] != sizes[0] {
            return Err(PtError::data(format!(
                "{} has {} labels but {} has {} images: the two files do not belong together",
                label_path.display(),
                label_sizes[0],
                image_path.display(),
                sizes[0]
            )));
        }
        let labels: Vec<i64> = label_bytes.iter().map(|&b| b as i64).collect();
        let classes_file = dir.join("classes.txt");
        let named: Option<Vec<String>> = std::fs::read_to_string(&classes_file)
            .ok()
            .map(|t| t.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect());
        let count = match (cfg.num_classes, &named) {
            (Some(n), _) if n > 0 && n <= super::pixel_csv::MAX_CLASSES => n as usize,
            (Some(n), _) => {
                return Err(PtError::config(format!(
                    "num_classes must be 1 to {}, got {n}",
                    super::pixel_csv::MAX_CLASSES
                )))
            }
            (None, Some(names)) => names.len(),
            (None, None) => labels.iter().copied().max().map_or(0, |m| m as usize + 1),
        };
        let classes = match named {
            Some(names) if names.len() == count => names,
            _ => (0..count).map(|c| c.to_string()).collect(),
        };
        let mut store = ImageStore {
            pixels: pixels.to_vec(),
            channels: 1,
            height: sizes[1] as i64,
            width: sizes[2] as i64,
            scale: 1.0 / 255.0,
            labels,
            classes,
            labelled: None,
        };
        let (keep, dropped) =
            check_labels(&store.labels, store.classes.len(), &label_path.display().to_string(), cfg.skip_bad)?;
        store.retain(&keep);
        store.limit_per_class(cfg.max_per_class);
        store.limit(cfg.max_samples);
        if store.is_empty() {
            return Err(PtError::data(format!(
                "{}: no images left (check max_samples / max_per_class)",
                image_path.display()
            )));
        }
        store.keep_label_fraction(cfg.label_fraction)?;
        let norm = store.normalization(&cfg.mean, &cfg.std, "idx_images")?;
        let mut notes = serde_json::Map::new();
        notes.insert("images_file".into(), image_path.display().to_string().into());
        if dropped > 0 {
            tracing::warn!(file = %label_path.display(), dropped, "skipped samples with out-of-range labels");
            notes.insert("skipped_bad_labels".into(), dropped.into());
        }
        Ok(IdxImages { store, norm, notes })
    }
}

impl Component for IdxImages {
    const NAME: &'static str = "idx_images";
    const ABOUT: &'static str = "labelled images from MNIST-style IDX files (MNIST, Fashion-MNIST)";
    const PROVIDES: &'static [&'static str] = &["num_classes", "image_size", "mean", "std", "channels"];
    type Config = IdxConfig;
    fn new(mut cfg: IdxConfig, ctx: &CreateCtx) -> Result<Self> {
        cfg.path = ctx.expand(&cfg.path);
        Self::load(&cfg)
    }
}

impl Dataset for IdxImages {
    fn info(&self) -> DatasetInfo {
        self.store.info(&self.norm, self.notes.clone())
    }
    fn get_batch(&self, indices: &[u64], _ctx: &StepCtx) -> Result<Tensors> {
        self.store.batch(indices)
    }
}
