//! The tokenizer a text dataset uses: where it comes from (the run's, a configured file, or one
//! trained on the dataset's files), its special-token ids, and parallel batch encoding.

use crate::cache::{file_fingerprints, sha256_hex};
use crate::paths;
use pt_kit::text::{self, Tokenizer};
use pt_sdk::{CreateCtx, PtError, Result};
use std::path::{Path, PathBuf};

/// Ids of the special tokens, found by name (BERT's `[CLS]` or RoBERTa's `<s>` style).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecialIds {
    pub pad: u32,
    pub unk: u32,
    pub cls: u32,
    pub sep: u32,
    pub mask: u32,
}

impl SpecialIds {
    fn find(tokenizer: &Tokenizer, path: &Path) -> Result<Self> {
        let id = |names: &[&str]| {
            names.iter().find_map(|n| tokenizer.token_to_id(n)).ok_or_else(|| {
                PtError::data(format!(
                    "tokenizer {} has no {} token (looked for {}); MLM needs [PAD] [UNK] [CLS] [SEP] [MASK]",
                    path.display(),
                    names[0],
                    names.join(", ")
                ))
            })
        };
        Ok(SpecialIds {
            pad: id(&["[PAD]", "<pad>"])?,
            unk: id(&["[UNK]", "<unk>"])?,
            cls: id(&["[CLS]", "<s>"])?,
            sep: id(&["[SEP]", "</s>"])?,
            mask: id(&["[MASK]", "<mask>"])?,
        })
    }

    /// Sorted, without duplicates.
    pub fn all(&self) -> Vec<u32> {
        let mut v = vec![self.pad, self.unk, self.cls, self.sep, self.mask];
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// How to train a tokenizer when the configured one does not exist yet.
pub struct TrainSpec<'a> {
    pub files: &'a [PathBuf],
    /// JSON-lines files: the field holding the text.
    pub json_field: Option<&'a str>,
    pub vocab_size: usize,
    pub min_frequency: u64,
    pub lowercase: bool,
}

pub struct TextTokenizer {
    tokenizer: Tokenizer,
    pub path: PathBuf,
    /// sha256 of the tokenizer.json bytes: part of every token-cache key.
    pub fingerprint: String,
    /// Largest id + 1: the embedding rows a model needs.
    pub vocab_size: usize,
    pub special: SpecialIds,
    bytes: Vec<u8>,
}

impl TextTokenizer {
    pub fn load(path: &Path) -> Result<Self> {
        let mut tokenizer = text::load_tokenizer(path)?;
        // A Hugging Face tokenizer.json may carry padding/truncation settings; datasets do their
        // own, on token ids.
        tokenizer.with_padding(None);
        tokenizer.with_truncation(None).map_err(|e| PtError::data(format!("{}: {e}", path.display())))?;
        let bytes = std::fs::read(path).map_err(|e| PtError::io(path, e))?;
        let vocab_size = tokenizer.get_vocab(true).values().max().map_or(0, |&m| m as usize + 1);
        let special = SpecialIds::find(&tokenizer, path)?;
        Ok(TextTokenizer {
            tokenizer,
            path: path.to_path_buf(),
            fingerprint: sha256_hex(&bytes),
            vocab_size,
            special,
            bytes,
        })
    }

    /// Resolves the `tokenizer` config key. Empty means: the run's tokenizer
    /// (`<run_dir>/assets/tokenizer.json`) when there is one, else (with `train`) one trained on
    /// the dataset's files and kept under `<data>/cache/tokenizers/`. A configured path that does
    /// not exist is trained there when `train` is given.
    pub fn resolve(configured: &str, ctx: &CreateCtx, train: Option<TrainSpec>) -> Result<Self> {
        let path = if configured.is_empty() {
            match paths::run_tokenizer(ctx).filter(|p| p.is_file()) {
                Some(run_tok) => run_tok,
                None => match &train {
                    Some(spec) => default_trained_path(spec, ctx)?,
                    None => {
                        return Err(PtError::config(
                            "no tokenizer: set `tokenizer` to a tokenizer.json (the one the model was pretrained \
                             with, e.g. <run_dir>/assets/tokenizer.json)",
                        ))
                    }
                },
            }
        } else {
            paths::expand(configured, ctx)?
        };
        if !path.exists() {
            match train {
                Some(spec) => {
                    tracing::info!(
                        path = %path.display(),
                        vocab_size = spec.vocab_size,
                        "training a WordPiece tokenizer on the dataset's files"
                    );
                    text::train_wordpiece_on(
                        spec.files,
                        spec.json_field,
                        spec.vocab_size,
                        spec.min_frequency,
                        spec.lowercase,
                        &path,
                    )?;
                }
                None => {
                    return Err(PtError::io(
                        &path,
                        "tokenizer not found (set train_tokenizer = true to train one, or run `pt tokenizer train`)",
                    ))
                }
            }
        }
        Self::load(&path)
    }

    /// Encodes texts without special tokens, in parallel (the tokenizers library's rayon pool).
    pub fn encode_many(&self, texts: Vec<&str>) -> Result<Vec<Vec<u32>>> {
        let encodings = self
            .tokenizer
            .encode_batch_fast(texts, false)
            .map_err(|e| PtError::data(format!("tokenizing with {}: {e}", self.path.display())))?;
        Ok(encodings.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Copies the tokenizer to `<run_dir>/assets/tokenizer.json` (saved with every checkpoint and
    /// export). A run has one tokenizer: a different one already there is an error.
    pub fn copy_to_run(&self, ctx: &CreateCtx) -> Result<()> {
        let Some(dest) = paths::run_tokenizer(ctx) else {
            return Ok(());
        };
        match std::fs::read(&dest) {
            Ok(existing) if existing == self.bytes => Ok(()),
            Ok(_) => Err(PtError::config(format!(
                "{} holds a different tokenizer than {}: a run keeps one tokenizer (set `tokenizer` to the run's, \
                 or start a new run directory)",
                dest.display(),
                self.path.display()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => text::write_atomically(&dest, &self.bytes),
            Err(e) => Err(PtError::io(&dest, e)),
        }
    }

    /// Facts for `DatasetInfo.notes`.
    pub fn notes(&self, notes: &mut serde_json::Map<String, serde_json::Value>) {
        use serde_json::json;
        notes.insert("tokenizer".into(), json!(self.path.display().to_string()));
        notes.insert("vocab_size".into(), json!(self.vocab_size));
        notes.insert("pad_token_id".into(), json!(self.special.pad));
        notes.insert("cls_token_id".into(), json!(self.special.cls));
        notes.insert("sep_token_id".into(), json!(self.special.sep));
        notes.insert("mask_token_id".into(), json!(self.special.mask));
        notes.insert("special_token_ids".into(), json!(self.special.all()));
    }
}

/// `<data>/cache/tokenizers/wordpiece-<vocab>-<hash>.json`, the hash over the training files
/// (paths, sizes, mtimes) and options, so changed data trains a new tokenizer.
fn default_trained_path(spec: &TrainSpec, ctx: &CreateCtx) -> Result<PathBuf> {
    let key = serde_json::json!({
        "files": file_fingerprints(spec.files)?,
        "vocab_size": spec.vocab_size,
        "min_frequency": spec.min_frequency,
        "lowercase": spec.lowercase,
        "json_field": spec.json_field,
        // Tokenizers trained before training was deterministic are not reused.
        "trainer": text::WORDPIECE_TRAINER_VERSION,
    });
    let hash = sha256_hex(key.to_string().as_bytes());
    Ok(paths::cache_dir(ctx)?.join("tokenizers").join(format!("wordpiece-{}-{}.json", spec.vocab_size, &hash[..16])))
}
