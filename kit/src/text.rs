//! Text helpers for plugins and `pt tokenizer train` (cargo feature `text`): BERT-style WordPiece
//! training and loading with the Hugging Face `tokenizers` crate, and a line reader that keeps
//! byte offsets and skips lines that are not UTF-8 instead of failing the whole file.
//!
//! A trained tokenizer is a standard `tokenizer.json`: `transformers`' `PreTrainedTokenizerFast`
//! and `tokenizers.Tokenizer.from_file` load it, and [`load_tokenizer`] loads theirs.

pub use crate::text_parquet::{is_parquet, parquet_columns, ParquetColumn};
use crate::{PtError, Result};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::{WordPiece, WordPieceTrainer};
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, TokenizerImpl};

pub use tokenizers;
pub use tokenizers::Tokenizer;

/// An input field (any value) beside `input_ids` saying they were checked against the text
/// architecture's vocabulary where they were host values (an objective's `prepare` or
/// `draw_on_host` on the loader thread), so the architecture need not read them back from the
/// device to check them (on a GPU a wait every step). bert honours it.
pub const IDS_CHECKED: &str = "input_ids_checked";

/// The smallest and largest of `ids` when one is outside `[0, vocab)`.
pub fn ids_outside(ids: &[i64], vocab: i64) -> Option<(i64, i64)> {
    let (&min, &max) = (ids.iter().min()?, ids.iter().max()?);
    (min < 0 || max >= vocab).then_some((min, max))
}

/// The special tokens of a trained tokenizer; their ids are their positions (`[PAD]` = 0 ...
/// `[MASK]` = 4), which is what the MLM objective's defaults assume.
pub const SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// Trains a BERT WordPiece tokenizer (BERT normaliser and pre-tokeniser, `##` continuation
/// pieces, `[CLS] $A [SEP]` template) on the lines of `files` and writes it to `out` as
/// `tokenizer.json`, atomically (temp file + rename), creating `out`'s folder. Lines that are not
/// UTF-8 are skipped with a warning naming the file.
pub fn train_wordpiece(
    files: &[PathBuf],
    vocab_size: usize,
    min_frequency: u64,
    lowercase: bool,
    out: &Path,
) -> Result<()> {
    train_wordpiece_on(files, None, vocab_size, min_frequency, lowercase, out)
}

/// As [`train_wordpiece`]; with `json_field`, every line is a JSON object and the text is that
/// field's string (lines without it are skipped).
pub fn train_wordpiece_on(
    files: &[PathBuf],
    json_field: Option<&str>,
    vocab_size: usize,
    min_frequency: u64,
    lowercase: bool,
    out: &Path,
) -> Result<()> {
    if files.is_empty() {
        return Err(PtError::config("train_wordpiece: no training files given"));
    }
    if vocab_size <= SPECIAL_TOKENS.len() {
        return Err(PtError::config(format!(
            "train_wordpiece: vocab_size {vocab_size} leaves no room beyond the {} special tokens",
            SPECIAL_TOKENS.len()
        )));
    }
    let started = std::time::Instant::now();
    let normalizer = BertNormalizer::new(true, true, None, lowercase);
    let mut tokenizer: TokenizerImpl<
        WordPiece,
        BertNormalizer,
        BertPreTokenizer,
        TemplateProcessing,
        WordPieceDecoder,
    > = TokenizerImpl::new(WordPiece::default());
    tokenizer
        .with_normalizer(Some(normalizer.clone()))
        .map_err(|e| PtError::data(format!("setting up the tokenizer: {e}")))?;
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer.with_decoder(Some(WordPieceDecoder::default()));

    // The trainer numbers the `##c` pieces in the order it meets words in a randomly seeded hash
    // map, and breaks ties between equally frequent merges by those numbers: the same corpus gave
    // a different tokenizer.json on each run. Fixing the alphabet and numbering every piece of it
    // up front (as reserved tokens) leaves the trainer nothing to number by chance.
    let mut lines = CorpusLines::new(files.to_vec(), json_field);
    let alphabet = alphabet(&normalizer, lines.by_ref(), ALPHABET_LIMIT)?;
    if let Some(err) = lines.error.take() {
        return Err(err.context("reading the tokenizer's training text"));
    }
    let mut reserved: Vec<AddedToken> = SPECIAL_TOKENS.iter().map(|t| AddedToken::from(*t, true)).collect();
    reserved.extend(alphabet.iter().map(|c| AddedToken::from(c.to_string(), true)));
    reserved.extend(alphabet.iter().map(|c| AddedToken::from(format!("##{c}"), true)));
    let mut trainer = WordPieceTrainer::builder()
        .vocab_size(vocab_size.max(reserved.len()))
        .min_frequency(min_frequency)
        .show_progress(false)
        .limit_alphabet(alphabet.len())
        .initial_alphabet(alphabet.iter().copied().collect())
        .special_tokens(reserved)
        .build();

    let mut lines = CorpusLines::new(files.to_vec(), json_field);
    let trained = tokenizer.train(&mut trainer, lines.by_ref());
    if let Some(err) = lines.error.take() {
        return Err(err.context("reading the tokenizer's training text"));
    }
    trained.map_err(|e| PtError::data(format!("training the WordPiece tokenizer: {e}")))?;
    if lines.text_lines == 0 {
        return Err(PtError::data(format!(
            "no text to train a tokenizer on: {} hold no non-empty UTF-8 lines",
            display_paths(files)
        )));
    }

    let id = |token: &str| {
        tokenizer
            .token_to_id(token)
            .ok_or_else(|| PtError::data(format!("the trained tokenizer lacks the special token {token}")))
    };
    let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
    let template = TemplateProcessing::builder()
        .try_single("[CLS] $A [SEP]")
        .and_then(|b| b.try_pair("[CLS] $A [SEP] $B:1 [SEP]:1"))
        .map_err(|e| PtError::data(format!("tokenizer template: {e}")))?
        .special_tokens(vec![("[CLS]", cls), ("[SEP]", sep)])
        .build()
        .map_err(|e| PtError::data(format!("tokenizer template: {e}")))?;
    tokenizer.with_post_processor(Some(template));

    let tokenizer: Tokenizer = tokenizer.into();
    let json = tokenizer.to_string(false).map_err(|e| PtError::data(format!("serialising the tokenizer: {e}")))?;
    let json = only_special_tokens_added(&json)?;
    write_atomically(out, json.as_bytes())?;
    tracing::info!(
        path = %out.display(),
        vocab_size = tokenizer.get_vocab_size(true),
        lines = lines.text_lines,
        skipped_non_utf8 = lines.non_utf8_lines,
        seconds = started.elapsed().as_secs_f64(),
        "trained WordPiece tokenizer"
    );
    Ok(())
}

/// Changes when the same corpus and settings would train another tokenizer (part of cache keys).
pub const WORDPIECE_TRAINER_VERSION: u32 = 2;

/// As Hugging Face's BertWordPieceTokenizer: rare characters must not eat the vocabulary.
const ALPHABET_LIMIT: usize = 1000;

/// The characters the trainer will see (the normalised text's, whitespace aside), the `limit`
/// most frequent (ties by code point), in code-point order.
fn alphabet(normalizer: &BertNormalizer, lines: impl Iterator<Item = String>, limit: usize) -> Result<Vec<char>> {
    use tokenizers::{NormalizedString, Normalizer};
    let mut counts: std::collections::BTreeMap<char, u64> = Default::default();
    for line in lines {
        let mut n = NormalizedString::from(line.as_str());
        normalizer.normalize(&mut n).map_err(|e| PtError::data(format!("normalising text: {e}")))?;
        for c in n.get().chars().filter(|c| !c.is_whitespace()) {
            *counts.entry(c).or_default() += 1;
        }
    }
    let mut by_count: Vec<(char, u64)> = counts.into_iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut kept: Vec<char> = by_count.into_iter().take(limit).map(|(c, _)| c).collect();
    kept.sort_unstable();
    Ok(kept)
}

/// The trained tokenizer's JSON with only the real special tokens among its added tokens: the
/// alphabet was reserved through the trainer's special tokens, but those pieces are ordinary
/// vocabulary (matched by WordPiece, not split out of the raw text).
fn only_special_tokens_added(json: &str) -> Result<String> {
    let bad = |e: String| PtError::data(format!("rewriting the trained tokenizer: {e}"));
    let mut v: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
    let added =
        v.get_mut("added_tokens").and_then(|a| a.as_array_mut()).ok_or_else(|| bad("no added_tokens".into()))?;
    added.retain(|t| t.get("content").and_then(|c| c.as_str()).is_some_and(|c| SPECIAL_TOKENS.contains(&c)));
    serde_json::to_string(&v).map_err(|e| bad(e.to_string()))
}

/// Loads a `tokenizer.json` (one [`train_wordpiece`] wrote, or any Hugging Face fast tokenizer's).
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => PtError::io(
            path,
            "tokenizer file not found (train one with `pt tokenizer train`, or point to a Hugging Face tokenizer.json)",
        ),
        _ => PtError::io(path, e),
    })?;
    Tokenizer::from_bytes(&bytes).map_err(|e| {
        PtError::data(format!("{}: not a tokenizer.json that the tokenizers library can load: {e}", path.display()))
    })
}

/// Writes `bytes` to `path` through a temp file in the same folder and a rename, so readers
/// never see a partial file (and concurrent writers of the same content are harmless).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| PtError::io(dir, e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}.{}", std::process::id(), unique_suffix()));
    let written = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(PtError::io(path, e));
    }
    Ok(())
}

fn unique_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    crate::rng::derive_seed(nanos as u64, &[COUNTER.fetch_add(1, Ordering::Relaxed)])
}

fn display_paths(files: &[PathBuf]) -> String {
    files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// One line of a text file: its 1-based number, the byte offset where it starts and its bytes
/// without the line ending (`\n` or `\r\n`).
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    pub number: u64,
    pub offset: u64,
    pub bytes: &'a [u8],
}

impl<'a> Line<'a> {
    /// The line as text, or `None` when it is not valid UTF-8.
    pub fn text(&self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes).ok()
    }
}

/// Reads a file line by line with byte offsets (for random access later with `pread`), never
/// holding more than one line. A UTF-8 byte-order mark at the start is skipped.
///
/// Two sources hold whole documents instead, each read as one "line" (its number 1-based, its
/// offset the document's index) whose text is the value itself: a Parquet file's rows of one
/// string column, and a tar shard's `.txt` members (WebDataset-style, in member order).
pub struct TextLines {
    path: PathBuf,
    source: LineSource,
    buf: Vec<u8>,
    number: u64,
    offset: u64,
}

enum LineSource {
    File(BufReader<File>),
    Column(ParquetColumn),
    Members(crate::shards::Shard, std::vec::IntoIter<crate::shards::TarMember>),
}

fn is_tar(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("tar"))
}

/// Whether `path` holds whole documents (Parquet values, tar shard members) rather than lines
/// of text, judged by its name as [`TextLines::open`] does.
pub fn holds_documents(path: &Path) -> bool {
    is_parquet(path) || is_tar(path)
}

impl TextLines {
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with_column(path, None)
    }

    /// As [`Self::open`]; a Parquet file needs `column`, the string column to read.
    pub fn open_with_column(path: &Path, column: Option<&str>) -> Result<Self> {
        let source = match (is_parquet(path), column) {
            (true, Some(column)) => LineSource::Column(ParquetColumn::open(path, column)?),
            (true, None) => {
                return Err(PtError::config(format!(
                    "{}: a Parquet file: set text_field to the column that holds the text",
                    path.display()
                )))
            }
            (false, _) if is_tar(path) => {
                let texts = crate::shards::read_tar_index(path)?
                    .into_iter()
                    .filter(|m| m.name.to_ascii_lowercase().ends_with(".txt"))
                    .collect::<Vec<_>>();
                LineSource::Members(crate::shards::Shard::open(path)?, texts.into_iter())
            }
            (false, _) => {
                let file = File::open(path).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => PtError::io(path, "file not found"),
                    _ => PtError::io(path, e),
                })?;
                LineSource::File(BufReader::with_capacity(1 << 20, file))
            }
        };
        Ok(TextLines { path: path.to_path_buf(), source, buf: Vec::new(), number: 0, offset: 0 })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether "lines" are whole documents (Parquet values, shard members): already the text,
    /// no JSON to parse.
    pub fn holds_documents(&self) -> bool {
        !matches!(self.source, LineSource::File(_))
    }

    /// The next line, or `None` at the end of the file.
    pub fn next_line(&mut self) -> Result<Option<Line<'_>>> {
        self.buf.clear();
        let reader = match &mut self.source {
            LineSource::File(reader) => reader,
            LineSource::Column(column) => {
                if column.next_row(&self.path, &mut self.buf)?.is_none() {
                    return Ok(None);
                }
                self.number += 1;
                return Ok(Some(Line { number: self.number, offset: self.number - 1, bytes: &self.buf }));
            }
            LineSource::Members(shard, members) => {
                let Some(member) = members.next() else { return Ok(None) };
                self.buf = shard.read(&member)?;
                self.number += 1;
                return Ok(Some(Line { number: self.number, offset: self.number - 1, bytes: &self.buf }));
            }
        };
        let n = reader.read_until(b'\n', &mut self.buf).map_err(|e| PtError::io(&self.path, e))?;
        if n == 0 {
            return Ok(None);
        }
        let mut start = 0;
        if self.number == 0 && self.buf.starts_with(&[0xEF, 0xBB, 0xBF]) {
            start = 3;
        }
        let mut end = self.buf.len();
        if self.buf[..end].ends_with(b"\n") {
            end -= 1;
            if self.buf[start..end].ends_with(b"\r") {
                end -= 1;
            }
        }
        self.number += 1;
        let line = Line { number: self.number, offset: self.offset + start as u64, bytes: &self.buf[start..end] };
        self.offset += n as u64;
        Ok(Some(line))
    }
}

/// The non-empty UTF-8 lines of several files, as an iterator for the tokenizer trainer. An I/O
/// error ends the iteration and is kept in `error` (the trainer's iterator cannot fail).
struct CorpusLines {
    files: std::vec::IntoIter<PathBuf>,
    /// Lines are JSON objects and the text is this field's string.
    json_field: Option<String>,
    current: Option<TextLines>,
    skipped_in_file: u64,
    text_lines: u64,
    non_utf8_lines: u64,
    error: Option<PtError>,
}

impl CorpusLines {
    fn new(files: Vec<PathBuf>, json_field: Option<&str>) -> Self {
        CorpusLines {
            files: files.into_iter(),
            json_field: json_field.map(str::to_owned),
            current: None,
            skipped_in_file: 0,
            text_lines: 0,
            non_utf8_lines: 0,
            error: None,
        }
    }

    fn finish_file(&mut self) {
        if let Some(done) = self.current.take() {
            if self.skipped_in_file > 0 {
                tracing::warn!(
                    file = %done.path().display(),
                    lines = self.skipped_in_file,
                    "skipped lines that are not valid UTF-8"
                );
            }
        }
        self.skipped_in_file = 0;
    }
}

impl Iterator for CorpusLines {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        loop {
            if self.error.is_some() {
                return None;
            }
            if self.current.is_none() {
                let path = self.files.next()?;
                match TextLines::open_with_column(&path, self.json_field.as_deref()) {
                    Ok(lines) => self.current = Some(lines),
                    Err(e) => {
                        self.error = Some(e);
                        return None;
                    }
                }
            }
            let lines = self.current.as_mut()?;
            let is_column = lines.holds_documents();
            let text = match lines.next_line() {
                Err(e) => {
                    self.error = Some(e);
                    return None;
                }
                Ok(None) => None,
                Ok(Some(line)) => Some(line.text().map(str::to_owned)),
            };
            match text {
                None => self.finish_file(),
                Some(None) => {
                    self.non_utf8_lines += 1;
                    self.skipped_in_file += 1;
                }
                Some(Some(t)) if t.trim().is_empty() => {}
                Some(Some(t)) => {
                    let text = match &self.json_field {
                        None => Some(t),
                        Some(_) if is_column => Some(t),
                        Some(field) => serde_json::from_str::<serde_json::Value>(&t)
                            .ok()
                            .and_then(|v| v.get(field)?.as_str().map(str::to_owned)),
                    };
                    if let Some(text) = text.filter(|t| !t.trim().is_empty()) {
                        self.text_lines += 1;
                        return Some(text);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_offsets_and_strip_endings() {
        let dir = std::env::temp_dir().join(format!("pt-sdk-text-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.txt");
        std::fs::write(&path, b"\xEF\xBB\xBFone\r\ntwo\n\xFF\xFEbad\nlast").unwrap();
        let mut r = TextLines::open(&path).unwrap();
        let mut got = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            got.push((l.number, l.offset, l.bytes.to_vec(), l.text().is_some()));
        }
        assert_eq!(
            got,
            vec![
                (1, 3, b"one".to_vec(), true),
                (2, 8, b"two".to_vec(), true),
                (3, 12, b"\xFF\xFEbad".to_vec(), false),
                (4, 18, b"last".to_vec(), true),
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Issue 19 (10): the same corpus and settings give a byte-identical tokenizer.json (the
    /// trainer's hash-map order used to permute ~40 ids from one run to the next).
    #[test]
    fn training_is_deterministic_and_keeps_bert_conventions() {
        let dir = std::env::temp_dir().join(format!("pt-sdk-wordpiece-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Words of mixed letters (accents and punctuation too), with many ties in frequency.
        let mut state = 7u64;
        let mut text = String::new();
        for _ in 0..400 {
            for _ in 0..12 {
                let len = 2 + (state >> 60) as usize % 7;
                for _ in 0..len {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    text.push("abcdefghijklmnopqrstuvwxyzéü,.".chars().nth((state >> 33) as usize % 30).unwrap());
                }
                text.push(' ');
            }
            text.push('\n');
        }
        let corpus = dir.join("corpus.txt");
        std::fs::write(&corpus, text).unwrap();
        let train = |name: &str| {
            let out = dir.join(name);
            train_wordpiece(std::slice::from_ref(&corpus), 300, 2, true, &out).unwrap();
            std::fs::read(out).unwrap()
        };
        let first = train("a.json");
        for other in ["b.json", "c.json", "d.json"] {
            assert!(first == train(other), "{other} differs from a.json");
        }
        let tok = load_tokenizer(&dir.join("a.json")).unwrap();
        assert_eq!(tok.get_vocab_size(true), 300);
        for (id, t) in SPECIAL_TOKENS.iter().enumerate() {
            assert_eq!(tok.token_to_id(t), Some(id as u32));
        }
        let v: serde_json::Value = serde_json::from_slice(&first).unwrap();
        assert_eq!(
            v["added_tokens"].as_array().unwrap().len(),
            SPECIAL_TOKENS.len(),
            "only the real specials are added"
        );
        let enc = tok.encode("abc ##a [MASK]", true).unwrap();
        assert_eq!(enc.get_tokens().first().map(String::as_str), Some("[CLS]"));
        assert!(enc.get_tokens().contains(&"[MASK]".to_string()));
        assert!(
            !enc.get_tokens().contains(&"##a".to_string()),
            "'##a' in raw text is no token: {:?}",
            enc.get_tokens()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
