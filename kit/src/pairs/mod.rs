//! `image_text`: captioned images for CLIP-style pretraining, from a JSONL file, a folder of
//! images with sidecar captions, or tar shards ([`sources`]). Images are decoded once
//! (transparency over white), captions tokenized once ([`captions`]). A training batch draws one
//! of each image's captions from (seed, epoch, sample), so every epoch pairs an image with
//! another of its descriptions; evaluation always takes the first.

pub mod captions;
pub mod sources;

pub use captions::{encode, load_plain, padded};
use captions::{encode_captions, tokenizer_for};
use sources::{read_pairs, Pair};

use crate::text;
use crate::vision::decode::{decode_on, decoding_pool, spread_indices, ImageParams, ResizeMode};
use crate::vision::store::{ImageStore, UNLABELLED};
use crate::vision::Normalization;
use crate::{Component, CreateCtx, Dataset, DatasetInfo, FieldInfo, PtError, Result, StepCtx, Tensors};
use pt_sdk::rng::derive_seed;
use pt_sdk::PluginConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Random stream of the caption drawn per (epoch, sample).
const STREAM_CAPTION: u64 = 0xCA97;

/// Decoded images above this many bytes are not held in memory (`decode = "auto"`).
const HOLD_LIMIT_BYTES: u64 = 2 << 30;

/// Images (spread over the set) decoded to compute mean/std when images are decoded per batch
/// and these are not given.
const STATISTICS_SAMPLES: usize = 1000;

/// When the images are decoded.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum DecodeMode {
    /// Once at the start while the decoded set fits in 2 GiB, else per batch.
    #[default]
    Auto,
    /// Once at the start, the whole set held in memory (fastest per step).
    Start,
    /// Read and decoded per batch on the decoding threads: any size of set, nothing held.
    PerBatch,
}

#[derive(Serialize, Deserialize, Clone, Debug, PluginConfig)]
#[serde(default, deny_unknown_fields)]
pub struct ImageTextConfig {
    /// the pairs: a JSONL file (`image` path relative to it, `caption` or `captions`), a folder of
    /// images with sidecar .txt captions, or tar shards (key.png|jpg|svg + key.txt [+ key.json])
    #[config(non_empty)]
    pub path: String,
    /// images are resized to this square size (shorter side, then the centre)
    #[config(default = 32, min = 8)]
    pub image_size: i64,
    /// tokenizer.json, copied to the run's assets/tokenizer.json (null: the run's when there is
    /// one, else a WordPiece tokenizer trained on these captions and saved there)
    pub tokenizer: Option<String>,
    /// vocabulary of a tokenizer trained on the captions
    #[config(default = 2000, min = 16)]
    pub vocab_size: i64,
    /// tokens per caption with [CLS] and [SEP] (longer captions are cut)
    #[config(default = 32, min = 3)]
    pub max_len: i64,
    /// a string field of each pair whose values are the classes (`label`), e.g. "group"; "folder"
    /// for a folder's sub-folders
    pub label_field: Option<String>,
    /// fields the captions come from, each a string or a list of strings, e.g. ["captions",
    /// "captions_de"] (one caption is drawn per epoch from all of them); [] (default): `caption`
    /// / `captions`, or the .txt beside the image
    pub caption_fields: Vec<String>,
    /// per-channel mean in [0, 1] units (null: computed from the images)
    pub mean: Option<Vec<f64>>,
    /// per-channel standard deviation (null: computed from the images)
    pub std: Option<Vec<f64>>,
    /// threads decoding images (0: one per CPU)
    pub workers: usize,
    /// auto (at the start while the decoded images fit in 2 GiB, else per batch), start or
    /// per_batch (mean/std then from the first 1,000 images unless given)
    pub decode: DecodeMode,
}

pub struct ImageText {
    /// The labels, classes and sizes; the pixels too when they are held.
    store: ImageStore,
    /// Set when images are read and decoded per batch.
    streamed: Option<Streamed>,
    norm: Normalization,
    /// Token ids of each sample's captions, [CLS] … [SEP].
    captions: Vec<Vec<Vec<i64>>>,
    pad_id: i64,
    notes: serde_json::Map<String, serde_json::Value>,
}

impl Component for ImageText {
    const NAME: &'static str = "image_text";
    const ABOUT: &'static str =
        "captioned images (JSONL, image folders with .txt captions, or tar shards), for CLIP-style pretraining";
    const PROVIDES: &'static [&'static str] = &[
        "vocab_size",
        "pad_token_id",
        "cls_token_id",
        "sep_token_id",
        "mask_token_id",
        "special_token_ids",
        "image_size",
        "mean",
        "std",
        "channels",
    ];
    type Config = ImageTextConfig;

    fn new(cfg: ImageTextConfig, ctx: &CreateCtx) -> Result<Self> {
        let data_dir = if ctx.data_dir.is_empty() { pt_sdk::default_data_dir() } else { PathBuf::from(&ctx.data_dir) };
        let path = PathBuf::from(pt_sdk::expand_setting(&cfg.path, &data_dir.display().to_string(), &ctx.run_dir));
        let mut pairs = read_pairs(&path, !cfg.caption_fields.is_empty())?;
        if !cfg.caption_fields.is_empty() {
            select_captions(&mut pairs, &cfg.caption_fields, &path)?;
        }
        let classes = classes_of(&pairs, &path, cfg.label_field.as_deref())?;
        let (tokenizer, tok_path) = tokenizer_for(&cfg, ctx, &data_dir, &path, &pairs)?;
        let (store, streamed, norm) = images_of(&pairs, &classes, &cfg)?;
        let per_batch = streamed.is_some();
        let captions = encode_captions(&tokenizer, &pairs, cfg.max_len, &path)?;
        let pad_id = tokenizer.token_to_id("[PAD]").map_or(0, |i| i as i64);
        let mut notes = serde_json::Map::new();
        notes.insert("tokenizer".into(), serde_json::json!(tok_path.display().to_string()));
        notes.insert("vocab_size".into(), serde_json::json!(tokenizer.get_vocab_size(true)));
        notes.insert("pad_token_id".into(), serde_json::json!(pad_id));
        // The special tokens' ids, for objectives that corrupt captions (masking, replacing).
        let special: Vec<u32> = text::SPECIAL_TOKENS.iter().filter_map(|t| tokenizer.token_to_id(t)).collect();
        for (key, token) in [("cls_token_id", "[CLS]"), ("sep_token_id", "[SEP]"), ("mask_token_id", "[MASK]")] {
            if let Some(id) = tokenizer.token_to_id(token) {
                notes.insert(key.into(), serde_json::json!(id));
            }
        }
        notes.insert("special_token_ids".into(), serde_json::json!(special));
        notes.insert("max_len".into(), serde_json::json!(cfg.max_len));
        notes.insert("captions".into(), serde_json::json!(captions.iter().map(Vec::len).sum::<usize>()));
        notes.insert("decoded".into(), serde_json::json!(if per_batch { "per batch" } else { "at the start" }));
        Ok(ImageText { store, streamed, norm, captions, pad_id, notes })
    }
}

/// The pairs' images: decoded now and held in the store, or (per `decode`) left to decode per
/// batch; and their normalisation (given, or their statistics).
fn images_of(
    pairs: &[Pair],
    classes: &[String],
    cfg: &ImageTextConfig,
) -> Result<(ImageStore, Option<Streamed>, Normalization)> {
    let per_batch = match cfg.decode {
        DecodeMode::Auto => pairs.len() as u64 * 3 * (cfg.image_size * cfg.image_size) as u64 > HOLD_LIMIT_BYTES,
        DecodeMode::Start => false,
        DecodeMode::PerBatch => true,
    };
    let mut store = image_store(pairs, classes, cfg);
    let images = Streamed {
        sources: pairs.iter().map(|p| p.image.clone()).collect(),
        params: ImageParams {
            image_size: Some(cfg.image_size as u32),
            resize: ResizeMode::Crop,
            channels: 3,
            max_pixels: 50_000_000,
        },
        pool: decoding_pool(cfg.workers)?,
    };
    if !per_batch {
        store.pixels = images.decode(&(0..pairs.len()).collect::<Vec<_>>())?;
        let norm = store.normalization(&cfg.mean, &cfg.std, "image_text")?;
        return Ok((store, None, norm));
    }
    // Statistics from images spread over the set, unless given.
    let given = cfg.mean.is_some() && cfg.std.is_some();
    let chosen = spread_indices(pairs.len(), if given { 0 } else { STATISTICS_SAMPLES });
    let sample = ImageStore {
        pixels: images.decode(&chosen)?,
        labels: vec![UNLABELLED; chosen.len()],
        ..image_store(&[], &[], cfg)
    };
    let norm = sample.normalization(&cfg.mean, &cfg.std, "image_text")?;
    Ok((store, Some(images), norm))
}

/// Each pair's captions from `fields` (`caption`/`captions`: those read with the image; any
/// other: a string or a list of strings among its fields), every field required, each caption
/// once.
fn select_captions(pairs: &mut [Pair], fields: &[String], path: &Path) -> Result<()> {
    for p in pairs.iter_mut() {
        let mut chosen: Vec<String> = Vec::new();
        for field in fields {
            let found: Vec<String> = match (field.as_str(), p.fields.get(field)) {
                ("caption" | "captions", _) => p.captions.clone(),
                (_, Some(serde_json::Value::String(c))) => vec![c.clone()],
                (_, Some(serde_json::Value::Array(list))) => {
                    list.iter().filter_map(|c| c.as_str().map(String::from)).collect()
                }
                _ => Vec::new(),
            };
            let found: Vec<String> = found.into_iter().filter(|c| !c.trim().is_empty()).collect();
            if found.is_empty() {
                let keys: Vec<&str> = p.fields.keys().map(String::as_str).collect();
                return Err(PtError::data(format!(
                    "{}: {} has no caption in field '{field}' (caption_fields: a string or a list of strings; its fields: {})",
                    path.display(),
                    p.image.describe(),
                    keys.join(", ")
                )));
            }
            for c in found {
                if !chosen.contains(&c) {
                    chosen.push(c);
                }
            }
        }
        p.captions = chosen;
    }
    Ok(())
}

/// With `label_field`, the sorted distinct values of that field (every pair must have it).
fn classes_of(pairs: &[Pair], path: &Path, label_field: Option<&str>) -> Result<Vec<String>> {
    let Some(field) = label_field else { return Ok(Vec::new()) };
    let mut classes = Vec::with_capacity(pairs.len());
    for p in pairs {
        match p.fields.get(field).and_then(|v| v.as_str()) {
            Some(c) => classes.push(c.to_string()),
            None => {
                return Err(PtError::data(format!(
                    "{}: {} has no string field '{field}' (label_field)",
                    path.display(),
                    p.image.describe()
                )))
            }
        }
    }
    classes.sort();
    classes.dedup();
    Ok(classes)
}

/// The images' sources and how to decode them, on a pool of threads.
struct Streamed {
    sources: Vec<sources::ImageSource>,
    params: ImageParams,
    pool: rayon::ThreadPool,
}

impl Streamed {
    /// `[3, size, size]` bytes of each image in `indices`, back to back.
    fn decode(&self, indices: &[usize]) -> Result<Vec<u8>> {
        decode_on(&self.pool, indices, &self.params, |i| {
            let source = &self.sources[i];
            Ok((source.read()?, source.describe()))
        })
    }
}

/// The pairs' labels, classes and image size, as a store without pixels yet.
fn image_store(pairs: &[Pair], classes: &[String], cfg: &ImageTextConfig) -> ImageStore {
    // Without a label field every sample is unlabelled (the store serves no `label`).
    let label_of = |p: &Pair| -> i64 {
        cfg.label_field
            .as_deref()
            .and_then(|f| p.fields.get(f)?.as_str())
            .and_then(|v| classes.iter().position(|c| c == v))
            .map_or(UNLABELLED, |i| i as i64)
    };
    ImageStore {
        pixels: Vec::new(),
        channels: 3,
        height: cfg.image_size,
        width: cfg.image_size,
        scale: 1.0 / 255.0,
        labels: pairs.iter().map(label_of).collect(),
        classes: classes.to_vec(),
        labelled: None,
    }
}

impl Dataset for ImageText {
    fn info(&self) -> DatasetInfo {
        let mut info = self.store.info(&self.norm, self.notes.clone());
        info.fields.push(FieldInfo::new("input_ids", "int64", &[-1], "a caption's token ids, [CLS] … [SEP], padded"));
        info.fields.push(FieldInfo::new("attention_mask", "int64", &[-1], "1 on the caption's tokens, 0 on padding"));
        info
    }

    fn get_batch(&self, indices: &[u64], ctx: &StepCtx) -> Result<Tensors> {
        let mut batch = match &self.streamed {
            None => self.store.batch(indices)?,
            Some(images) => {
                if let Some(&bad) = indices.iter().find(|&&i| i as usize >= self.store.len()) {
                    return Err(PtError::data(format!(
                        "sample index {bad} is out of range (dataset has {})",
                        self.store.len()
                    )));
                }
                let at: Vec<usize> = indices.iter().map(|&i| i as usize).collect();
                let labels = at.iter().map(|&i| self.store.labels[i]).collect();
                let s = &self.store;
                let held = ImageStore {
                    pixels: images.decode(&at)?,
                    channels: s.channels,
                    height: s.height,
                    width: s.width,
                    scale: s.scale,
                    labels,
                    classes: s.classes.clone(),
                    labelled: None,
                };
                held.batch(&(0..at.len() as u64).collect::<Vec<_>>())?
            }
        };
        let chosen: Vec<&[i64]> = indices
            .iter()
            .map(|&i| {
                let all = &self.captions[i as usize];
                let k = if ctx.train {
                    derive_seed(ctx.seed, &[STREAM_CAPTION, ctx.epoch, i]) as usize % all.len()
                } else {
                    0
                };
                all[k].as_slice()
            })
            .collect();
        let (ids, mask) = padded(&chosen, self.pad_id)?;
        batch.insert("input_ids", ids); // [B, L]
        batch.insert("attention_mask", mask); // [B, L]
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::select_captions;
    use super::sources::{ImageSource, Pair};
    use std::path::Path;

    fn pair(fields: serde_json::Value) -> Pair {
        let fields = fields.as_object().unwrap().clone();
        Pair { image: ImageSource::File("a.png".into()), captions: vec!["a fox".into()], fields }
    }

    /// A JSONL of three captioned images — two PNGs and an SVG — read through `image_text`.
    fn dataset(dir: &Path, decode: &str) -> super::ImageText {
        use crate::{Component, CreateCtx};
        for (name, shade) in [("a.png", 40u8), ("b.png", 200)] {
            image::RgbImage::from_pixel(10, 6, image::Rgb([shade, 0, 255 - shade])).save(dir.join(name)).unwrap();
        }
        let svg = "<svg xmlns='http://www.w3.org/2000/svg' width='8' height='8'><circle cx='4' cy='4' r='3' fill='green'/></svg>";
        std::fs::write(dir.join("c.svg"), svg).unwrap();
        let lines = "{\"image\": \"a.png\", \"caption\": \"a blue square\", \"kind\": \"square\"}\n\
                     {\"image\": \"b.png\", \"caption\": \"a red square\", \"kind\": \"square\"}\n\
                     {\"image\": \"c.svg\", \"caption\": \"a green circle\", \"kind\": \"circle\"}\n";
        std::fs::write(dir.join("p.jsonl"), lines).unwrap();
        let cfg = serde_json::json!({"path": dir.join("p.jsonl"), "image_size": 8, "vocab_size": 40,
                                     "label_field": "kind", "decode": decode, "workers": 1});
        let ctx = CreateCtx { run_dir: dir.join(decode).display().to_string(), ..Default::default() };
        std::fs::create_dir_all(&ctx.run_dir).unwrap();
        super::ImageText::new(serde_json::from_value(cfg).unwrap(), &ctx).unwrap()
    }

    #[test]
    fn images_decoded_per_batch_are_those_held_in_memory() {
        use crate::{Dataset, StepCtx};
        let dir = tempfile::tempdir().unwrap();
        let (held, streamed) = (dataset(dir.path(), "start"), dataset(dir.path(), "per_batch"));
        assert_eq!(held.info().notes["decoded"], "at the start");
        assert_eq!(streamed.info().notes["decoded"], "per batch");
        assert_eq!(held.info().notes["mean"], streamed.info().notes["mean"], "statistics of the same images");
        let ctx = StepCtx::default();
        let (a, b) = (held.get_batch(&[2, 0], &ctx).unwrap(), streamed.get_batch(&[2, 0], &ctx).unwrap());
        for field in ["image", "label", "input_ids"] {
            assert!(a.require(field).unwrap().equal(b.require(field).unwrap()), "{field}");
        }
        assert_eq!(a.require("image").unwrap().size(), [2, 3, 8, 8]);
        assert!(streamed.get_batch(&[3], &ctx).unwrap_err().to_string().contains("out of range"));
    }

    #[test]
    fn captions_come_from_the_fields_asked_and_a_missing_one_is_named() {
        let mut pairs = vec![pair(serde_json::json!({"captions_de": ["ein Fuchs", "Fuchs, Tier"], "title": "fox"}))];
        let fields = ["captions", "captions_de", "title"].map(String::from);
        select_captions(&mut pairs, &fields, Path::new("p.jsonl")).unwrap();
        assert_eq!(pairs[0].captions, ["a fox", "ein Fuchs", "Fuchs, Tier", "fox"]);
        let mut pairs = vec![pair(serde_json::json!({"captions_de": ["ein Fuchs"]}))];
        select_captions(&mut pairs, &["captions_de".to_string()], Path::new("p.jsonl")).unwrap();
        assert_eq!(pairs[0].captions, ["ein Fuchs"], "English dropped when not asked for");
        let mut pairs = vec![pair(serde_json::json!({"captions_fr": []}))];
        let e = select_captions(&mut pairs, &["captions_fr".to_string()], Path::new("p.jsonl")).unwrap_err();
        assert!(e.to_string().contains("p.jsonl: a.png has no caption in field 'captions_fr'"), "{e}");
        let mut pairs = vec![pair(serde_json::json!({}))];
        let both = ["caption", "captions"].map(String::from);
        select_captions(&mut pairs, &both, Path::new("p.jsonl")).unwrap();
        assert_eq!(pairs[0].captions, ["a fox"], "each caption once");
    }
}
