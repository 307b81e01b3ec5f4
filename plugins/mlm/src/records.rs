//! A cached index of text lines (one sample per line): where each line is, how many tokens it
//! has and its label. Samples are read back with `pread` and tokenized when a batch asks.

use crate::cache::{open_or_build, CacheWriter};
use crate::corpus::LineRef;
use pt_sdk::{PtError, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const RECORD_WIDTH: u32 = 24;
/// `label` of an unlabelled record.
pub const NO_LABEL: i32 = -1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub line: LineRef,
    /// Tokens of the text, without special tokens.
    pub num_tokens: u32,
    pub label: i32,
}

impl Record {
    fn to_bytes(self) -> [u8; RECORD_WIDTH as usize] {
        let mut b = [0u8; RECORD_WIDTH as usize];
        b[0..8].copy_from_slice(&self.line.offset.to_le_bytes());
        b[8..12].copy_from_slice(&self.line.file.to_le_bytes());
        b[12..16].copy_from_slice(&self.line.len.to_le_bytes());
        b[16..20].copy_from_slice(&self.num_tokens.to_le_bytes());
        b[20..24].copy_from_slice(&self.label.to_le_bytes());
        b
    }

    fn from_bytes(b: &[u8]) -> Self {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut offset = [0u8; 8];
        offset.copy_from_slice(&b[0..8]);
        Record {
            line: LineRef { offset: u64::from_le_bytes(offset), file: u32_at(8), len: u32_at(12) },
            num_tokens: u32_at(16),
            label: u32_at(20) as i32,
        }
    }
}

pub struct RecordIndex {
    paths: Vec<PathBuf>,
    files: Vec<File>,
    pub records: Vec<Record>,
    pub meta: serde_json::Value,
    pub cache_path: PathBuf,
}

impl RecordIndex {
    /// Loads the index from the cache at `cache_path` when it is valid for `key`, else runs
    /// `build` (records + meta) and caches the result.
    pub fn open_or_build(
        files: &[PathBuf],
        cache_path: &Path,
        key: &str,
        kind: &str,
        build: impl FnOnce() -> Result<(Vec<Record>, serde_json::Value)>,
    ) -> Result<Self> {
        let cache = open_or_build(cache_path, key, kind, |writer: &mut CacheWriter| {
            let (records, meta) = build()?;
            let mut bytes = Vec::with_capacity(records.len() * RECORD_WIDTH as usize);
            for r in &records {
                bytes.extend_from_slice(&r.to_bytes());
            }
            writer.write(&bytes)?;
            Ok((RECORD_WIDTH, meta))
        })?;
        if cache.header.width != RECORD_WIDTH {
            return Err(PtError::data(format!("cache {}: unexpected record width", cache.path.display())));
        }
        let mut bytes = Vec::new();
        cache.read_items(0, cache.header.items, &mut bytes)?;
        let records = bytes.chunks_exact(RECORD_WIDTH as usize).map(Record::from_bytes).collect::<Vec<_>>();
        if let Some(r) = records.iter().find(|r| r.line.file as usize >= files.len()) {
            return Err(PtError::data(format!(
                "cache {}: record names file #{} of {}",
                cache.path.display(),
                r.line.file,
                files.len()
            )));
        }
        let handles = files.iter().map(|p| File::open(p).map_err(|e| PtError::io(p, e))).collect::<Result<Vec<_>>>()?;
        Ok(RecordIndex {
            paths: files.to_vec(),
            files: handles,
            records,
            meta: cache.header.meta.clone(),
            cache_path: cache.path.clone(),
        })
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The text of record `i`'s line (as it is in the file).
    pub fn line_text(&self, i: usize) -> Result<String> {
        let r = self
            .records
            .get(i)
            .ok_or_else(|| PtError::data(format!("sample {i} out of range (dataset has {})", self.records.len())))?;
        let path = &self.paths[r.line.file as usize];
        let mut buf = vec![0u8; r.line.len as usize];
        self.files[r.line.file as usize]
            .read_exact_at(&mut buf, r.line.offset)
            .map_err(|e| PtError::io(path, format!("{e} (has the file changed since it was indexed?)")))?;
        String::from_utf8(buf).map_err(|_| {
            PtError::data(format!(
                "{}: bytes at offset {} are no longer UTF-8: the file changed after it was indexed",
                path.display(),
                r.line.offset
            ))
        })
    }
}
