//! `image_shards`: images in WebDataset-style tar shards (`key.png|jpg|jpeg|svg` + `key.cls`),
//! read by offset and decoded per batch on a pool of threads, so a dataset larger than memory
//! trains, and a resumed run reaches its position at once (samples are numbered over the sorted
//! shards; the trainer's sampler orders them from (seed, epoch) as for every dataset).

use super::augment::Normalization;
use super::decode::{decode_on, decoding_pool, spread_indices, ImageParams, ResizeMode};
use super::pixel_csv::MAX_CLASSES;
use super::store::{pixel_field, ImageStore};
use crate::shards::{index_samples, Shard, ShardSample, TarMember};
use crate::{Component, CreateCtx, Dataset, DatasetInfo, FieldInfo, PtError, Result, StepCtx, Tensors};
use pt_sdk::PluginConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use tch::Tensor;

use super::decode::IMAGE_EXTENSIONS as IMAGE_FIELDS;

#[derive(Serialize, Deserialize, Clone, Debug, PluginConfig)]
#[serde(default, deny_unknown_fields)]
pub struct ImageShardsConfig {
    /// tar shards: files, directories (every .tar, any depth) or patterns (`train-*.tar`)
    pub shards: Vec<String>,
    /// the member holding a sample's class number (`cls`: key.cls); empty: unlabelled
    #[config(default = "cls")]
    pub label_field: String,
    /// number of classes (null: the largest label + 1)
    pub num_classes: Option<i64>,
    /// every image becomes this square size
    #[config(default = 224)]
    pub image_size: i64,
    /// crop: shorter side to image_size, then the centre square; stretch: both sides
    #[config(default = ResizeMode::Crop)]
    pub resize: ResizeMode,
    /// 3 (RGB) or 1 (grayscale)
    #[config(default = 3)]
    pub channels: i64,
    /// per-channel mean in [0, 1] units (null: from statistics_samples images spread over the set)
    pub mean: Option<Vec<f64>>,
    /// per-channel standard deviation (null: as mean)
    pub std: Option<Vec<f64>>,
    /// images decoded to compute mean/std when they are not given
    #[config(default = 256)]
    pub statistics_samples: u64,
    /// refuse an image larger than this many pixels, read from its header before decoding
    #[config(default = 50_000_000)]
    pub max_pixels: u64,
    /// threads decoding a batch's images (0: one per CPU)
    pub workers: usize,
    /// skip (and count) samples without an image or with an unreadable label, instead of failing
    pub skip_bad: bool,
}

struct Item {
    shard: u32,
    image: TarMember,
    label: i64,
}

pub struct ImageShards {
    /// Held open: the loader reads every sample by offset without reopening its shard.
    shards: Vec<Shard>,
    items: Vec<Item>,
    classes: Vec<String>,
    params: ImageParams,
    norm: Normalization,
    pool: rayon::ThreadPool,
    notes: serde_json::Map<String, serde_json::Value>,
}

/// A sample's image member and label (-1 when unlabelled), or why it has none.
fn item_of(shards: &[Shard], s: &ShardSample, label_field: &str) -> std::result::Result<Item, String> {
    let image = s.field(&IMAGE_FIELDS).ok_or_else(|| {
        let fields: Vec<&str> = s.fields.iter().map(|(f, _)| f.as_str()).collect();
        format!("sample '{}' has no .png/.jpg/.jpeg/.svg member (fields: {})", s.key, fields.join(", "))
    })?;
    let label = if label_field.is_empty() {
        -1
    } else {
        let member =
            s.field(&[label_field]).ok_or_else(|| format!("sample '{}' has no .{label_field} member", s.key))?;
        let text = shards[s.shard as usize].read(member).map_err(|e| e.message)?;
        let text = String::from_utf8_lossy(&text);
        match text.trim().parse::<i64>() {
            Ok(l) if (0..MAX_CLASSES).contains(&l) => l,
            _ => return Err(format!("{}: '{}' is not a class number", member.name, text.trim())),
        }
    };
    Ok(Item { shard: s.shard, image: image.clone(), label })
}

impl ImageShards {
    pub fn load(cfg: &ImageShardsConfig) -> Result<Self> {
        if cfg.channels != 1 && cfg.channels != 3 {
            return Err(PtError::config(format!("image_shards: channels must be 1 or 3, got {}", cfg.channels)));
        }
        if cfg.image_size <= 0 {
            return Err(PtError::config("image_shards: image_size must be positive"));
        }
        if cfg.shards.is_empty() {
            return Err(PtError::config("image_shards: `shards` is empty; list the tar shards to read"));
        }
        let entries: Vec<PathBuf> = cfg.shards.iter().map(PathBuf::from).collect();
        let paths = crate::files::expand_sources(&entries, &["tar"], "image_shards: shards")?;
        let shards = paths.iter().map(|p| Shard::open(p)).collect::<Result<Vec<_>>>()?;
        let mut items = Vec::new();
        let mut skipped = 0u64;
        for s in index_samples(&paths)? {
            match item_of(&shards, &s, &cfg.label_field) {
                Ok(item) => items.push(item),
                Err(_) if cfg.skip_bad => skipped += 1,
                Err(why) => {
                    return Err(PtError::data(format!(
                        "{}: {why}; fix the shard, or set skip_bad = true",
                        paths[s.shard as usize].display()
                    )))
                }
            }
        }
        if items.is_empty() {
            return Err(PtError::data(format!("image_shards: no samples with an image in {} shard(s)", shards.len())));
        }
        let classes = match (cfg.num_classes, cfg.label_field.is_empty()) {
            (_, true) => Vec::new(),
            (Some(n), _) if n > 0 && n <= MAX_CLASSES => (0..n).map(|c| c.to_string()).collect(),
            (Some(n), _) => return Err(PtError::config(format!("num_classes must be 1 to {MAX_CLASSES}, got {n}"))),
            (None, _) => (0..=items.iter().map(|i| i.label).max().unwrap_or(0)).map(|c| c.to_string()).collect(),
        };
        if let Some(i) = items.iter().find(|i| !classes.is_empty() && i.label >= classes.len() as i64) {
            return Err(PtError::data(format!(
                "{}: label {} outside the {} classes; set num_classes",
                i.image.name,
                i.label,
                classes.len()
            )));
        }
        let params = ImageParams {
            image_size: Some(cfg.image_size as u32),
            resize: cfg.resize,
            channels: cfg.channels,
            max_pixels: cfg.max_pixels,
        };
        let pool = decoding_pool(cfg.workers)?;
        let mut ds = ImageShards {
            shards,
            items,
            classes,
            params,
            norm: Normalization { mean: vec![0.0], std: vec![1.0] },
            pool,
            notes: serde_json::Map::new(),
        };
        ds.norm = match (&cfg.mean, &cfg.std) {
            (Some(_), Some(_)) => ds.sample_store(0)?.normalization(&cfg.mean, &cfg.std, "image_shards")?,
            (None, None) => ds.sample_store(cfg.statistics_samples.max(1))?.statistics(),
            _ => {
                return Err(PtError::config("image_shards: set both mean and std, or neither (computed from the data)"))
            }
        };
        ds.notes.insert("shards".into(), ds.shards.len().into());
        if skipped > 0 {
            ds.notes.insert("skipped_samples".into(), skipped.into());
        }
        Ok(ds)
    }

    fn decode_many(&self, indices: &[usize]) -> Result<Vec<u8>> {
        decode_on(&self.pool, indices, &self.params, |i| {
            let item = &self.items[i];
            let shard = &self.shards[item.shard as usize];
            Ok((shard.read(&item.image)?, format!("{}: member {}", shard.path.display(), item.image.name)))
        })
    }

    /// `n` images spread over the set, as a store (statistics; with none, only the checks of
    /// given ones).
    fn sample_store(&self, n: u64) -> Result<ImageStore> {
        let chosen = spread_indices(self.items.len(), n as usize);
        let size = self.params.image_size.unwrap_or(1) as i64;
        Ok(ImageStore {
            pixels: self.decode_many(&chosen)?,
            channels: self.params.channels,
            height: size,
            width: size,
            scale: 1.0 / 255.0,
            labels: vec![-1; chosen.len()],
            classes: Vec::new(),
            labelled: None,
        })
    }
}

impl Component for ImageShards {
    const NAME: &'static str = "image_shards";
    const ABOUT: &'static str = "images in WebDataset-style tar shards (key.png|jpg|svg + key.cls), decoded per batch";
    const PROVIDES: &'static [&'static str] = &["num_classes", "image_size", "mean", "std", "channels"];
    type Config = ImageShardsConfig;
    fn new(mut cfg: ImageShardsConfig, ctx: &CreateCtx) -> Result<Self> {
        cfg.shards = cfg.shards.iter().map(|s| ctx.expand(s)).collect();
        Self::load(&cfg)
    }
}

impl Dataset for ImageShards {
    fn info(&self) -> DatasetInfo {
        let size = self.params.image_size.unwrap_or(0) as i64;
        let mut counts = vec![0u64; self.classes.len()];
        for item in self.items.iter().filter(|i| i.label >= 0 && !self.classes.is_empty()) {
            counts[item.label as usize] += 1;
        }
        let mut notes = self.notes.clone();
        notes.insert("mean".into(), serde_json::json!(self.norm.mean));
        notes.insert("std".into(), serde_json::json!(self.norm.std));
        notes.insert("channels".into(), serde_json::json!(self.params.channels));
        notes.insert("image_size".into(), serde_json::json!([size, size]));
        let mut fields = vec![pixel_field([self.params.channels, size, size], 1.0 / 255.0, &self.norm)];
        if !self.classes.is_empty() {
            fields.push(FieldInfo::new("label", "int64", &[], "class index"));
        }
        DatasetInfo {
            num_samples: self.items.len() as u64,
            fields,
            classes: self.classes.clone(),
            class_counts: counts,
            notes,
            ..Default::default()
        }
    }

    fn get_batch(&self, indices: &[u64], _ctx: &StepCtx) -> Result<Tensors> {
        let idx: Vec<usize> = indices.iter().map(|&i| i as usize).collect();
        if let Some(&bad) = idx.iter().find(|&&i| i >= self.items.len()) {
            return Err(PtError::data(format!(
                "sample index {bad} is out of range (dataset has {})",
                self.items.len()
            )));
        }
        let bytes = self.decode_many(&idx)?;
        let size = self.params.image_size.unwrap_or(0) as i64;
        let shape = [idx.len() as i64, self.params.channels, size, size];
        let image = Tensor::f_from_slice(&bytes)?.f_view(shape)?; // uint8, normalised on the device
        if self.classes.is_empty() {
            return Ok(Tensors::new().with("image", image));
        }
        let labels: Vec<i64> = idx.iter().map(|&i| self.items[i].label).collect();
        Ok(Tensors::new().with("image", image).with("label", Tensor::f_from_slice(&labels)?))
    }
}
