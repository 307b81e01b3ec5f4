//! `image_text`: captioned images from a JSONL file, one pair per line —
//! `{"image": "images/1f600.png", "captions": ["grinning face", "grinning"], "group": "…"}`
//! (`caption` for a single one; image paths relative to the file). Images are decoded once
//! (transparency over white), captions tokenized once. A training batch draws one of each
//! image's captions from (seed, epoch, sample), so every epoch pairs an image with another of
//! its descriptions; evaluation always takes the first.

use pt_kit::text::{self, Tokenizer};
use pt_kit::vision::decode::{decode_image, decoding_pool, ImageParams, ResizeMode};
use pt_kit::vision::store::{ImageStore, UNLABELLED};
use pt_kit::vision::Normalization;
use pt_sdk::prelude::*;
use pt_sdk::rng::derive_seed;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Random stream of the caption drawn per (epoch, sample).
const STREAM_CAPTION: u64 = 0xCA97;

#[derive(Serialize, Deserialize, Clone, Debug, PluginConfig)]
#[serde(default, deny_unknown_fields)]
pub struct ImageTextConfig {
    /// JSONL file of pairs: `image` (path relative to the file) and `caption` or `captions`
    #[config(non_empty)]
    pub path: String,
    /// images are resized to this square size (shorter side, then the centre)
    #[config(default = 32, min = 8)]
    pub image_size: i64,
    /// tokenizer.json (null: the run's assets/tokenizer.json when there is one, else a WordPiece
    /// tokenizer trained on this file's captions and saved there)
    pub tokenizer: Option<String>,
    /// vocabulary of a tokenizer trained on the captions
    #[config(default = 2000, min = 16)]
    pub vocab_size: i64,
    /// tokens per caption with [CLS] and [SEP] (longer captions are cut)
    #[config(default = 32, min = 3)]
    pub max_len: i64,
    /// a string field of each line whose values are the classes (`label`), e.g. "group"
    pub label_field: Option<String>,
    /// per-channel mean in [0, 1] units (null: computed from the images)
    pub mean: Option<Vec<f64>>,
    /// per-channel standard deviation (null: computed from the images)
    pub std: Option<Vec<f64>>,
    /// threads decoding images (0: one per CPU)
    pub workers: usize,
}

/// One line of the file.
#[derive(Deserialize)]
struct PairLine {
    image: String,
    #[serde(default)]
    caption: Option<String>,
    #[serde(default)]
    captions: Vec<String>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

pub struct ImageText {
    store: ImageStore,
    norm: Normalization,
    /// Token ids of each sample's captions, [CLS] … [SEP].
    captions: Vec<Vec<Vec<i64>>>,
    pad_id: i64,
    notes: serde_json::Map<String, serde_json::Value>,
}

impl Component for ImageText {
    const NAME: &'static str = "image_text";
    const ABOUT: &'static str =
        "captioned images from JSONL (image path + caption or captions), for CLIP-style pretraining";
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
        let (lines, classes) = read_lines(&path, cfg.label_field.as_deref())?;
        let (tokenizer, tok_path) = tokenizer_for(&cfg, ctx, &data_dir, &path, &lines)?;
        let store = decode_images(&path, &lines, &classes, &cfg)?;
        let norm = store.normalization(&cfg.mean, &cfg.std, "image_text")?;
        let captions = encode_captions(&tokenizer, &lines, cfg.max_len, &path)?;
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
        Ok(ImageText { store, norm, captions, pad_id, notes })
    }
}

/// The file's pairs and, with `label_field`, the sorted distinct values of that field.
fn read_lines(path: &Path, label_field: Option<&str>) -> Result<(Vec<PairLine>, Vec<String>)> {
    let text = std::fs::read_to_string(path).map_err(|e| PtError::io(path, e))?;
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = || format!("{}:{}", path.display(), n + 1);
        let mut pair: PairLine = serde_json::from_str(line).map_err(|e| {
            PtError::data(format!("{}: not a pair object ({e}); expected {{\"image\": …, \"caption\": …}}", at()))
        })?;
        pair.captions.extend(pair.caption.take());
        pair.captions.retain(|c| !c.trim().is_empty());
        if pair.captions.is_empty() {
            bail!(Data, "{}: no caption (give `caption` or a non-empty `captions` list)", at());
        }
        if let Some(field) = label_field {
            if !pair.rest.get(field).is_some_and(|v| v.is_string()) {
                bail!(Data, "{}: no string field '{field}' (label_field)", at());
            }
        }
        lines.push(pair);
    }
    if lines.is_empty() {
        bail!(Data, "{}: no pairs", path.display());
    }
    let mut classes: Vec<String> = match label_field {
        Some(f) => lines.iter().filter_map(|l| l.rest.get(f).and_then(|v| v.as_str()).map(String::from)).collect(),
        None => Vec::new(),
    };
    classes.sort();
    classes.dedup();
    Ok((lines, classes))
}

/// The configured tokenizer, else the run's, else one trained on these captions (saved as the
/// run's, or in the data cache outside a run). A configured one becomes the run's too, so the
/// evaluation splits, exports and pictures tokenize as training did.
fn tokenizer_for(
    cfg: &ImageTextConfig,
    ctx: &CreateCtx,
    data_dir: &Path,
    pairs: &Path,
    lines: &[PairLine],
) -> Result<(Tokenizer, PathBuf)> {
    let run_tok = (!ctx.run_dir.is_empty()).then(|| PathBuf::from(&ctx.run_dir).join("assets/tokenizer.json"));
    let path = match (&cfg.tokenizer, &run_tok) {
        (Some(t), _) => PathBuf::from(pt_sdk::expand_setting(t, &data_dir.display().to_string(), &ctx.run_dir)),
        (None, Some(r)) => r.clone(),
        (None, None) => {
            data_dir.join("cache").join(format!("clip-tokenizer-{}-{}.json", cfg.vocab_size, fingerprint(pairs)))
        }
    };
    if !path.exists() && cfg.tokenizer.is_none() {
        let staging = std::env::temp_dir().join(format!("pt-clip-captions-{}", std::process::id()));
        std::fs::create_dir_all(&staging).map_err(|e| PtError::io(&staging, e))?;
        let corpus = staging.join("captions.txt");
        let all: Vec<&str> = lines.iter().flat_map(|l| l.captions.iter().map(String::as_str)).collect();
        std::fs::write(&corpus, all.join("\n")).map_err(|e| PtError::io(&corpus, e))?;
        tracing::info!(path = %path.display(), vocab_size = cfg.vocab_size, "training a WordPiece tokenizer on the captions");
        let trained = text::train_wordpiece(&[corpus], cfg.vocab_size as usize, 1, true, &path);
        let _ = std::fs::remove_dir_all(&staging);
        trained?;
    }
    let tok = load_plain(&path)?;
    if let (Some(_), Some(dest)) = (&cfg.tokenizer, &run_tok) {
        adopt(&path, dest)?;
    }
    Ok((tok, path))
}

/// `path`'s tokenizer without the padding or truncation a tokenizer.json may carry: pt pads and
/// cuts captions itself (keeping [SEP] last).
pub fn load_plain(path: &Path) -> Result<Tokenizer> {
    let mut tok = text::load_tokenizer(path)?;
    tok.with_padding(None);
    tok.with_truncation(None).map_err(|e| PtError::data(format!("{}: {e}", path.display())))?;
    Ok(tok)
}

/// Copies the configured tokenizer to the run's `assets/tokenizer.json`; a different one already
/// there is an error (a run has one tokenizer).
fn adopt(path: &Path, dest: &Path) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| PtError::io(path, e))?;
    match std::fs::read(dest) {
        Ok(existing) if existing == bytes => Ok(()),
        Ok(_) => bail!(
            Config,
            "{} holds another tokenizer than {}: a run keeps one tokenizer (set every split's `tokenizer` to the same file, or start a new run directory)",
            dest.display(),
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dest.parent().unwrap_or(Path::new("."))).map_err(|e| PtError::io(dest, e))?;
            text::write_atomically(dest, &bytes)
        }
        Err(e) => Err(PtError::io(dest, e)),
    }
}

/// A short hash of the pairs file's path, size and modification time (names the tokenizer
/// trained on it outside a run).
fn fingerprint(path: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    if let Ok(m) = std::fs::metadata(path) {
        m.len().hash(&mut h);
        m.modified().ok().hash(&mut h);
    }
    format!("{:016x}", h.finish())
}

fn decode_images(path: &Path, lines: &[PairLine], classes: &[String], cfg: &ImageTextConfig) -> Result<ImageStore> {
    let root = path.parent().unwrap_or(Path::new("."));
    let params = ImageParams {
        image_size: Some(cfg.image_size as u32),
        resize: ResizeMode::Crop,
        channels: 3,
        max_pixels: 50_000_000,
    };
    let pool = decoding_pool(cfg.workers)?;
    let decoded: Vec<std::result::Result<Vec<u8>, String>> = pool.install(|| {
        lines
            .par_iter()
            .map(|l| {
                let bytes = std::fs::read(root.join(&l.image)).map_err(|e| e.to_string())?;
                decode_image(&bytes, &params).map(|(px, _, _)| px)
            })
            .collect()
    });
    let mut pixels = Vec::with_capacity(lines.len() * (3 * cfg.image_size * cfg.image_size) as usize);
    for (line, image) in lines.iter().zip(decoded) {
        let px = image.map_err(|why| {
            PtError::data(format!(
                "{}: image {} cannot be read ({why})",
                path.display(),
                root.join(&line.image).display()
            ))
        })?;
        pixels.extend_from_slice(&px);
    }
    // Without a label field every sample is unlabelled (the store serves no `label`).
    let label_of = |l: &PairLine| -> i64 {
        cfg.label_field
            .as_deref()
            .and_then(|f| l.rest.get(f)?.as_str())
            .and_then(|v| classes.iter().position(|c| c == v))
            .map_or(UNLABELLED, |i| i as i64)
    };
    Ok(ImageStore {
        pixels,
        channels: 3,
        height: cfg.image_size,
        width: cfg.image_size,
        scale: 1.0 / 255.0,
        labels: lines.iter().map(label_of).collect(),
        classes: classes.to_vec(),
        labelled: None,
    })
}

/// Every caption as [CLS] … [SEP] ids, cut to `max_len` (keeping [SEP] last).
fn encode_captions(tok: &Tokenizer, lines: &[PairLine], max_len: i64, path: &Path) -> Result<Vec<Vec<Vec<i64>>>> {
    let flat: Vec<&str> = lines.iter().flat_map(|l| l.captions.iter().map(String::as_str)).collect();
    let encoded = tok
        .encode_batch_fast(flat, true)
        .map_err(|e| PtError::data(format!("{}: tokenizing the captions: {e}", path.display())))?;
    let mut ids = encoded.into_iter().map(|e| {
        let mut v: Vec<i64> = e.get_ids().iter().map(|&i| i as i64).collect();
        if v.len() > max_len as usize {
            let last = *v.last().unwrap_or(&0);
            v.truncate(max_len as usize - 1);
            v.push(last);
        }
        v
    });
    Ok(lines.iter().map(|l| (0..l.captions.len()).filter_map(|_| ids.next()).collect()).collect())
}

impl Dataset for ImageText {
    fn info(&self) -> DatasetInfo {
        let mut info = self.store.info(&self.norm, self.notes.clone());
        info.fields.push(FieldInfo::new("input_ids", "int64", &[-1], "a caption's token ids, [CLS] … [SEP], padded"));
        info.fields.push(FieldInfo::new("attention_mask", "int64", &[-1], "1 on the caption's tokens, 0 on padding"));
        info
    }

    fn get_batch(&self, indices: &[u64], ctx: &StepCtx) -> Result<Tensors> {
        let mut batch = self.store.batch(indices)?;
        let chosen: Vec<&Vec<i64>> = indices
            .iter()
            .map(|&i| {
                let all = &self.captions[i as usize];
                let k = if ctx.train {
                    derive_seed(ctx.seed, &[STREAM_CAPTION, ctx.epoch, i]) as usize % all.len()
                } else {
                    0
                };
                &all[k]
            })
            .collect();
        let width = chosen.iter().map(|c| c.len()).max().unwrap_or(1);
        let mut ids = vec![self.pad_id; chosen.len() * width];
        let mut mask = vec![0i64; chosen.len() * width];
        for (row, c) in chosen.iter().enumerate() {
            ids[row * width..row * width + c.len()].copy_from_slice(c);
            mask[row * width..row * width + c.len()].fill(1);
        }
        let shape = [chosen.len() as i64, width as i64];
        batch.insert("input_ids", Tensor::f_from_slice(&ids)?.f_view(shape)?); // [B, L]
        batch.insert("attention_mask", Tensor::f_from_slice(&mask)?.f_view(shape)?); // [B, L]
        Ok(batch)
    }
}
