//! `text`: plain-text files (one paragraph per line) for MLM pretraining, either packed into
//! full blocks or one line per sample.

use crate::cache::{cache_key, file_fingerprints, open_or_build, CacheFile, CacheWriter};
use crate::collate::{collate, single_sequence, text_fields};
use crate::corpus::{tokenize_files, PassStats};
use crate::paths;
use crate::records::{Record, RecordIndex, NO_LABEL};
use crate::text_tokenizer::{TextTokenizer, TrainSpec};
use pt_sdk::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::PathBuf;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum TextMode {
    /// All lines as one token stream, `[SEP]` between lines, cut into full blocks with `[CLS]`
    /// first (RoBERTa's FULL-SENTENCES): no padding, every token trains.
    #[default]
    Packed,
    /// One line per sample: `[CLS] line [SEP]`, cut to `block_size`, padded per batch.
    Lines,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, PluginConfig)]
#[serde(default, deny_unknown_fields)]
pub struct TextConfig {
    /// text files (one paragraph per line), directories (every file with one of `extensions`, at
    /// any depth) or patterns (`*`, `?`, `**`); `{data}/...` is under the data directory, `~` is
    /// home
    pub files: Vec<String>,
    /// file extensions taken from directories (null: txt, text and tar, or jsonl, json, parquet
    /// and tar with `text_field`)
    pub extensions: Option<Vec<String>>,
    /// empty: every line is text; else every line is a JSON object and this field holds the text
    /// (for Parquet files: the column that holds it)
    pub text_field: String,
    /// with `text_field`: skip (and count) lines that are not JSON objects with that string field
    pub skip_bad_lines: bool,
    /// tokenizer.json to use; empty: the run's (<run_dir>/assets/tokenizer.json), else one trained
    /// on `files` and kept under {data}/cache/tokenizers
    pub tokenizer: String,
    /// train a WordPiece tokenizer on `files` when `tokenizer` does not exist yet
    #[config(default = true)]
    pub train_tokenizer: bool,
    /// vocabulary size of a tokenizer trained here
    #[config(default = 8000)]
    pub vocab_size: usize,
    /// minimum pair frequency when training a tokenizer here
    #[config(default = 2)]
    pub min_frequency: u64,
    /// lowercase (and strip accents) in a tokenizer trained here
    #[config(default = true)]
    pub lowercase: bool,
    /// tokens per sample, [CLS] and [SEP] included
    #[config(default = 128)]
    pub block_size: usize,
    /// `packed`: lines joined with [SEP] and cut into full blocks; `lines`: one line per sample
    #[config(default = TextMode::Packed)]
    pub mode: TextMode,
}

pub struct TextDataset {
    tokenizer: TextTokenizer,
    /// JSON-lines files: the field holding the text (lines mode reads lines back at batch time).
    json_field: Option<String>,
    block_size: usize,
    source: Source,
    num_samples: u64,
    notes: serde_json::Map<String, serde_json::Value>,
}

enum Source {
    /// The token stream (without [CLS]); block i is `[CLS]` + tokens `[i(B-1), (i+1)(B-1))`.
    Packed(CacheFile),
    Lines(RecordIndex),
}

impl Component for TextDataset {
    const NAME: &'static str = "text";
    const ABOUT: &'static str = "plain-text files (one paragraph per line), tokenized for MLM";
    const PROVIDES: &'static [&'static str] =
        &["vocab_size", "pad_token_id", "cls_token_id", "sep_token_id", "mask_token_id", "special_token_ids"];
    type Config = TextConfig;

    fn new(config: TextConfig, ctx: &CreateCtx) -> Result<Self> {
        if config.files.is_empty() {
            return Err(PtError::config("text: `files` is empty; list the text files to read"));
        }
        let min_block = if config.mode == TextMode::Packed { 2 } else { 3 };
        if config.block_size < min_block {
            return Err(PtError::config(format!(
                "text: block_size {} is too small (at least {min_block} in {:?} mode)",
                config.block_size, config.mode
            )));
        }
        let files = source_files(&config, ctx)?;
        let documents = files.iter().find(|f| pt_kit::text::holds_documents(f));
        if let (TextMode::Lines, Some(documents)) = (config.mode, documents) {
            return Err(PtError::config(format!(
                "text: mode = \"lines\" reads text and JSON-lines files; {} holds documents (Parquet or tar \
                 shards): use mode = \"packed\"",
                documents.display()
            )));
        }
        let fingerprints = file_fingerprints(&files)?; // fails early, naming a missing file
        let json_field = Some(config.text_field.as_str()).filter(|f| !f.is_empty());
        let train = config.train_tokenizer.then_some(TrainSpec {
            files: &files,
            json_field,
            vocab_size: config.vocab_size,
            min_frequency: config.min_frequency,
            lowercase: config.lowercase,
        });
        let tokenizer = TextTokenizer::resolve(&config.tokenizer, ctx, train)?;
        tokenizer.copy_to_run(ctx)?;

        let mode = match config.mode {
            TextMode::Packed => "packed",
            TextMode::Lines => "lines",
        };
        let kind = format!("text-{mode}");
        let key = cache_key(
            &kind,
            &json!({"files": fingerprints, "tokenizer": tokenizer.fingerprint, "text_field": json_field, "skip_bad_lines": config.skip_bad_lines}),
        );
        let reader = LineText { json_field, skip_bad: config.skip_bad_lines };
        let cache_path = paths::cache_dir(ctx)?.join(format!("{kind}-{}.bin", &key[..16]));

        let mut notes = serde_json::Map::new();
        tokenizer.notes(&mut notes);
        notes.insert("mode".into(), json!(mode));
        notes.insert("block_size".into(), json!(config.block_size));
        let (source, num_samples, stats, num_tokens) = match config.mode {
            TextMode::Packed => {
                let cache = open_or_build(&cache_path, &key, &kind, |w| build_packed(&files, &tokenizer, &reader, w))?;
                let stats: PassStats = serde_json::from_value(cache.header.meta["stats"].clone())?;
                let tokens = cache.header.items;
                let span = config.block_size as u64 - 1;
                (Source::Packed(cache), tokens.div_ceil(span), stats, tokens)
            }
            TextMode::Lines => {
                let index = RecordIndex::open_or_build(&files, &cache_path, &key, &kind, || {
                    build_lines(&files, &tokenizer, &reader)
                })?;
                let stats: PassStats = serde_json::from_value(index.meta["stats"].clone())?;
                let room = config.block_size as u32 - 2;
                let truncated = index.records.iter().filter(|r| r.num_tokens > room).count();
                let tokens: u64 = index.records.iter().map(|r| r.num_tokens as u64).sum();
                notes.insert("truncated_lines".into(), json!(truncated));
                let n = index.len() as u64;
                (Source::Lines(index), n, stats, tokens)
            }
        };
        if num_samples == 0 {
            return Err(PtError::data(format!(
                "text: no text in {} (every file is empty or holds only empty / non-UTF-8 lines)",
                files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            )));
        }
        notes.insert("num_tokens".into(), json!(num_tokens));
        stats.notes(&mut notes);
        notes.insert(
            "cache".into(),
            json!(match &source {
                Source::Packed(c) => c.path.display().to_string(),
                Source::Lines(i) => i.cache_path.display().to_string(),
            }),
        );
        tracing::info!(samples = num_samples, tokens = num_tokens, mode, "text dataset ready");
        Ok(TextDataset {
            tokenizer,
            json_field: json_field.map(str::to_owned),
            block_size: config.block_size,
            source,
            num_samples,
            notes,
        })
    }
}

/// `files` expanded: directories and patterns to the files they hold, sorted.
fn source_files(config: &TextConfig, ctx: &CreateCtx) -> Result<Vec<PathBuf>> {
    let entries = config.files.iter().map(|f| paths::expand(f, ctx)).collect::<Result<Vec<PathBuf>>>()?;
    let default: &[&str] =
        if config.text_field.is_empty() { &["txt", "text", "tar"] } else { &["jsonl", "json", "parquet", "tar"] };
    let chosen: Vec<String> = config.extensions.clone().unwrap_or_default();
    let extensions: Vec<&str> = match &config.extensions {
        Some(_) => chosen.iter().map(|e| e.trim_start_matches('.')).collect(),
        None => default.to_vec(),
    };
    pt_kit::files::expand_sources(&entries, &extensions, "text: files")
}

/// What a line of the files holds: the text itself, or a JSON object with the text in a field.
struct LineText<'a> {
    json_field: Option<&'a str>,
    skip_bad: bool,
}

impl LineText<'_> {
    fn extract(&self, line: &str) -> std::result::Result<(String, ()), String> {
        let Some(field) = self.json_field else { return Ok((line.to_string(), ())) };
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not a JSON object ({e})"))?;
        match value.get(field) {
            Some(serde_json::Value::String(text)) => Ok((text.clone(), ())),
            Some(other) => Err(format!("field '{field}' is not a string ({other})")),
            None => Err(format!("no field '{field}' (set text_field)")),
        }
    }
}

/// Streams the token ids of every line, each followed by `[SEP]`, into the cache.
fn build_packed(
    files: &[PathBuf],
    tokenizer: &TextTokenizer,
    reader: &LineText,
    writer: &mut CacheWriter,
) -> Result<(u32, serde_json::Value)> {
    let wide = tokenizer.vocab_size > 1 << 16;
    let sep = tokenizer.special.sep;
    let mut bytes = Vec::new();
    let stats = tokenize_files(
        files,
        reader.json_field,
        tokenizer,
        reader.skip_bad,
        |t, _| reader.extract(t),
        |_, ids| {
            bytes.clear();
            for line in ids {
                for &t in line.iter().chain(std::iter::once(&sep)) {
                    if wide {
                        bytes.extend_from_slice(&t.to_le_bytes());
                    } else {
                        bytes.extend_from_slice(&(t as u16).to_le_bytes());
                    }
                }
            }
            writer.write(&bytes)
        },
    )?;
    Ok((if wide { 4 } else { 2 }, json!({"stats": stats})))
}

fn build_lines(
    files: &[PathBuf],
    tokenizer: &TextTokenizer,
    reader: &LineText,
) -> Result<(Vec<Record>, serde_json::Value)> {
    let mut records = Vec::new();
    let stats = tokenize_files(
        files,
        reader.json_field,
        tokenizer,
        reader.skip_bad,
        |t, _| reader.extract(t),
        |lines, ids| {
            records.extend(lines.iter().zip(ids).map(|((line, ()), ids)| Record {
                line: *line,
                num_tokens: ids.len() as u32,
                label: NO_LABEL,
            }));
            Ok(())
        },
    )?;
    Ok((records, json!({"stats": stats})))
}

impl TextDataset {
    fn check_index(&self, i: u64) -> Result<()> {
        if i >= self.num_samples {
            return Err(PtError::data(format!("sample {i} out of range (text dataset has {})", self.num_samples)));
        }
        Ok(())
    }

    fn packed_row(&self, cache: &CacheFile, i: u64, buf: &mut Vec<u8>) -> Result<Vec<i64>> {
        let span = self.block_size as u64 - 1;
        let start = i * span;
        let count = span.min(cache.header.items - start);
        cache.read_items(start, count, buf)?;
        let mut row = Vec::with_capacity(self.block_size);
        row.push(self.tokenizer.special.cls as i64);
        if cache.header.width == 4 {
            row.extend(buf.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64));
        } else {
            row.extend(buf.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]) as i64));
        }
        Ok(row)
    }
}

impl Dataset for TextDataset {
    fn info(&self) -> DatasetInfo {
        let len = match self.source {
            Source::Packed(_) => self.block_size as i64,
            Source::Lines(_) => -1,
        };
        DatasetInfo {
            num_samples: self.num_samples,
            fields: text_fields(len),
            notes: self.notes.clone(),
            ..Default::default()
        }
    }

    fn get_batch(&self, indices: &[u64], _ctx: &StepCtx) -> Result<Tensors> {
        for &i in indices {
            self.check_index(i)?;
        }
        let special = &self.tokenizer.special;
        let rows = match &self.source {
            Source::Packed(cache) => {
                let mut buf = Vec::new();
                indices.iter().map(|&i| self.packed_row(cache, i, &mut buf)).collect::<Result<Vec<_>>>()?
            }
            Source::Lines(index) => {
                let reader = LineText { json_field: self.json_field.as_deref(), skip_bad: false };
                let texts = indices
                    .iter()
                    .map(|&i| {
                        let line = index.line_text(i as usize)?;
                        reader
                            .extract(&line)
                            .map(|(text, ())| text)
                            .map_err(|why| PtError::data(format!("sample {i}: {why}")))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let ids = self.tokenizer.encode_many(texts.iter().map(String::as_str).collect())?;
                ids.iter().map(|ids| single_sequence(ids, self.block_size, special).0).collect()
            }
        };
        let len = match self.source {
            Source::Packed(_) => self.block_size,
            Source::Lines(_) => 0,
        };
        collate(&rows, len, special.pad)
    }
}
