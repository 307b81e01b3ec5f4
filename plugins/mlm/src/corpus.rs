//! One streaming pass over text files: read line by line (never a whole file), skip empty and
//! non-UTF-8 lines (counted, with a warning naming the file), and tokenize chunks of lines in
//! parallel.

use crate::text_tokenizer::TextTokenizer;
use pt_kit::text::TextLines;
use pt_sdk::{PtError, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Tokenize this many bytes of text at once: large enough to keep every core busy, small enough
/// to keep memory flat.
const CHUNK_BYTES: usize = 1 << 20;
const CHUNK_LINES: usize = 16_384;
/// Bad lines reported one by one before only the total is.
const REPORTED_BAD_LINES: u64 = 5;

/// Where a kept line is: for `pread` later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineRef {
    pub file: u32,
    pub offset: u64,
    pub len: u32,
}

/// What a pass saw, kept in cache headers and shown in dataset notes.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct PassStats {
    pub lines: u64,
    pub kept_lines: u64,
    pub empty_lines: u64,
    pub non_utf8_lines: u64,
    /// UTF-8 lines holding NUL bytes: binary data, not text.
    pub binary_lines: u64,
    /// Lines the extractor rejected (malformed JSON...) while skipping was allowed.
    pub bad_lines: u64,
    pub empty_files: Vec<String>,
    pub non_utf8_by_file: BTreeMap<String, u64>,
}

/// Reads every line of `files`. `extract` turns a line (and its 1-based number) into the text to tokenize plus per-line
/// data `T`, or rejects it with a reason: with `skip_bad` the line is counted and skipped,
/// otherwise the pass fails with `file:line: reason`. `sink` gets each chunk's lines and token
/// ids (without special tokens), in file order. Parquet files are read as the rows of `column`
/// and tar shards as their `.txt` members (each value is the text, `T` its default; a line's
/// offset is its index).
pub fn tokenize_files<T: Default>(
    files: &[PathBuf],
    column: Option<&str>,
    tokenizer: &TextTokenizer,
    skip_bad: bool,
    mut extract: impl FnMut(&str, u64) -> std::result::Result<(String, T), String>,
    mut sink: impl FnMut(Vec<(LineRef, T)>, Vec<Vec<u32>>) -> Result<()>,
) -> Result<PassStats> {
    let mut stats = PassStats::default();
    let mut items: Vec<(LineRef, T)> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    let mut chunk_bytes = 0usize;
    let mut flush = |items: &mut Vec<(LineRef, T)>, texts: &mut Vec<String>| -> Result<()> {
        if texts.is_empty() {
            return Ok(());
        }
        let ids = tokenizer.encode_many(texts.iter().map(String::as_str).collect())?;
        texts.clear();
        sink(std::mem::take(items), ids)
    };

    for (file_index, path) in files.iter().enumerate() {
        let mut reader = TextLines::open_with_column(path, column)?;
        let is_document = reader.holds_documents();
        let (mut kept_here, mut non_utf8_here, mut first_non_utf8) = (0u64, 0u64, 0u64);
        let mut binary_here = 0u64;
        while let Some(line) = reader.next_line()? {
            stats.lines += 1;
            let Some(text) = line.text() else {
                non_utf8_here += 1;
                if first_non_utf8 == 0 {
                    first_non_utf8 = line.number;
                }
                continue;
            };
            if text.contains('\0') {
                binary_here += 1;
                continue;
            }
            if text.trim().is_empty() {
                stats.empty_lines += 1;
                continue;
            }
            let len = u32::try_from(line.bytes.len())
                .map_err(|_| PtError::data(format!("{}:{}: a line longer than 4 GiB", path.display(), line.number)))?;
            let extracted = if is_document { Ok((text.to_string(), T::default())) } else { extract(text, line.number) };
            let (text, extra) = match extracted {
                Ok(v) => v,
                Err(why) if skip_bad => {
                    stats.bad_lines += 1;
                    if stats.bad_lines <= REPORTED_BAD_LINES {
                        tracing::warn!("skipping {}:{}: {why}", path.display(), line.number);
                    }
                    continue;
                }
                Err(why) => {
                    return Err(PtError::data(format!(
                        "{}:{}: {why} (set skip_bad_lines = true to skip such lines)",
                        path.display(),
                        line.number
                    )))
                }
            };
            chunk_bytes += text.len();
            texts.push(text);
            items.push((LineRef { file: file_index as u32, offset: line.offset, len }, extra));
            kept_here += 1;
            if chunk_bytes >= CHUNK_BYTES || texts.len() >= CHUNK_LINES {
                flush(&mut items, &mut texts)?;
                chunk_bytes = 0;
            }
        }
        if non_utf8_here > 0 {
            tracing::warn!(
                file = %path.display(),
                lines = non_utf8_here,
                first_line = first_non_utf8,
                "skipped lines that are not valid UTF-8"
            );
            stats.non_utf8_lines += non_utf8_here;
            stats.non_utf8_by_file.insert(path.display().to_string(), non_utf8_here);
        }
        if binary_here > 0 {
            tracing::warn!(file = %path.display(), lines = binary_here, "skipped lines holding NUL bytes (binary data)");
            stats.binary_lines += binary_here;
        }
        let not_text = non_utf8_here + binary_here;
        if not_text > kept_here {
            return Err(PtError::data(format!(
                "{}: {not_text} of its {} non-empty lines are not UTF-8 text ({non_utf8_here} invalid UTF-8, {binary_here} with NUL bytes): is it a binary file? Remove it from `files`, or convert it to UTF-8 (e.g. `iconv -f latin1 -t utf-8`)",
                path.display(),
                not_text + kept_here
            )));
        }
        if kept_here == 0 {
            tracing::warn!(file = %path.display(), "no text in this file");
            stats.empty_files.push(path.display().to_string());
        }
        stats.kept_lines += kept_here;
    }
    flush(&mut items, &mut texts)?;
    if stats.bad_lines > REPORTED_BAD_LINES {
        tracing::warn!(lines = stats.bad_lines, "skipped malformed lines in all");
    }
    Ok(stats)
}

impl PassStats {
    /// Adds the counts worth showing to dataset notes.
    pub fn notes(&self, notes: &mut serde_json::Map<String, serde_json::Value>) {
        use serde_json::json;
        notes.insert("lines".into(), json!(self.kept_lines));
        notes.insert("skipped_empty_lines".into(), json!(self.empty_lines));
        notes.insert("skipped_non_utf8_lines".into(), json!(self.non_utf8_lines));
        if self.binary_lines > 0 {
            notes.insert("skipped_binary_lines".into(), json!(self.binary_lines));
        }
        if !self.non_utf8_by_file.is_empty() {
            notes.insert("non_utf8_lines_by_file".into(), json!(self.non_utf8_by_file));
        }
        if self.bad_lines > 0 {
            notes.insert("skipped_bad_lines".into(), json!(self.bad_lines));
        }
        if !self.empty_files.is_empty() {
            notes.insert("empty_files".into(), json!(self.empty_files));
        }
    }
}
