//! Binary caches of tokenized text under `<data>/cache/`, keyed by everything their content
//! depends on, written atomically and checked (length + CRC32C) before use.
//!
//! Layout: `PTMLMC01` | header offset (u64 LE) | payload | header (JSON). The header records the
//! key, the payload's item width and count, its CRC32C and free-form facts (`meta`).

use pt_sdk::{PtError, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"PTMLMC01";
const PAYLOAD_START: u64 = 16;
/// Bump when what a cache holds changes meaning.
pub const FORMAT_VERSION: u32 = 1;

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `{path, len, mtime_ns}` of each file (absolute paths), for cache keys. A missing file is an
/// error that names it.
pub fn file_fingerprints(files: &[PathBuf]) -> Result<serde_json::Value> {
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        let meta = std::fs::metadata(f).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => PtError::io(f, "file not found"),
            _ => PtError::io(f, e),
        })?;
        if !meta.is_file() {
            return Err(PtError::io(f, "not a regular file"));
        }
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64);
        let abs = std::path::absolute(f).unwrap_or_else(|_| f.clone());
        out.push(serde_json::json!({"path": abs.display().to_string(), "len": meta.len(), "mtime_ns": mtime_ns}));
    }
    Ok(serde_json::Value::Array(out))
}

/// The key of a cache: a hash of a JSON description of its inputs.
pub fn cache_key(kind: &str, inputs: &serde_json::Value) -> String {
    sha256_hex(serde_json::json!({"format": FORMAT_VERSION, "kind": kind, "inputs": inputs}).to_string().as_bytes())
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct CacheHeader {
    pub version: u32,
    pub key: String,
    pub kind: String,
    /// Bytes per item.
    pub width: u32,
    pub items: u64,
    pub crc32c: u32,
    pub meta: serde_json::Value,
}

/// A verified cache file, read with `pread` (`&self`, so many threads may read at once).
pub struct CacheFile {
    pub path: PathBuf,
    pub header: CacheHeader,
    file: File,
}

impl CacheFile {
    /// Opens and verifies `path`. `Ok(None)`: there is no cache. `Err`: it exists but is stale or
    /// damaged (the message says how); callers rebuild it.
    pub fn open(path: &Path, key: &str, kind: &str) -> Result<Option<CacheFile>> {
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(PtError::io(path, e)),
        };
        let bad = |why: String| PtError::data(format!("cache {}: {why}", path.display()));
        let len = file.metadata().map_err(|e| PtError::io(path, e))?.len();
        let mut head = [0u8; PAYLOAD_START as usize];
        if len < PAYLOAD_START || file.read_exact(&mut head).is_err() || &head[..8] != MAGIC {
            return Err(bad("not a pt token cache (bad magic)".into()));
        }
        let header_at = u64::from_le_bytes(head[8..16].try_into().unwrap_or_default());
        if header_at < PAYLOAD_START || header_at > len {
            return Err(bad(format!("header offset {header_at} outside the file ({len} bytes)")));
        }
        let mut json = Vec::with_capacity((len - header_at) as usize);
        file.seek(SeekFrom::Start(header_at)).map_err(|e| PtError::io(path, e))?;
        file.read_to_end(&mut json).map_err(|e| PtError::io(path, e))?;
        let header: CacheHeader = serde_json::from_slice(&json).map_err(|e| bad(format!("unreadable header: {e}")))?;
        if header.version != FORMAT_VERSION || header.kind != kind || header.key != key {
            return Err(bad("made from other inputs (key mismatch)".into()));
        }
        let payload_len = header_at - PAYLOAD_START;
        if header.items.checked_mul(header.width as u64) != Some(payload_len) {
            return Err(bad(format!(
                "payload is {payload_len} bytes, the header says {} items of {} bytes",
                header.items, header.width
            )));
        }
        let crc = crc_of_range(&file, PAYLOAD_START, payload_len).map_err(|e| PtError::io(path, e))?;
        if crc != header.crc32c {
            return Err(bad("checksum mismatch (damaged)".into()));
        }
        Ok(Some(CacheFile { path: path.to_path_buf(), header, file }))
    }

    /// Reads items `[first, first + count)` into `buf` (cleared first).
    pub fn read_items(&self, first: u64, count: u64, buf: &mut Vec<u8>) -> Result<()> {
        let end = first.checked_add(count).filter(|&e| e <= self.header.items).ok_or_else(|| {
            PtError::data(format!(
                "cache {}: items {first}..{} beyond its {}",
                self.path.display(),
                first.saturating_add(count),
                self.header.items
            ))
        })?;
        let width = self.header.width as u64;
        buf.clear();
        buf.resize(((end - first) * width) as usize, 0);
        self.file.read_exact_at(buf, PAYLOAD_START + first * width).map_err(|e| PtError::io(&self.path, e))
    }
}

fn crc_of_range(file: &File, start: u64, len: u64) -> std::io::Result<u32> {
    let mut crc = 0u32;
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], start + done)?;
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        done += n as u64;
    }
    Ok(crc)
}

/// Streams a payload into a temp file next to the cache; [`CacheWriter::finish`] writes the
/// header and renames it into place. Dropped unfinished, it removes the temp file.
pub struct CacheWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
    crc: u32,
    bytes: u64,
    /// Bytes written, as `progress` lines while a large cache builds.
    progress: Option<pt_sdk::log::Progress>,
}

impl CacheWriter {
    pub fn create(path: &Path) -> Result<Self> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| PtError::io(dir, e))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let nonce = pt_sdk::rng::derive_seed(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
            &[std::process::id() as u64],
        );
        let tmp = dir.join(format!(".{name}.tmp.{}.{nonce:x}", std::process::id()));
        let file = File::create(&tmp).map_err(|e| PtError::io(&tmp, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(MAGIC).and_then(|_| out.write_all(&0u64.to_le_bytes())).map_err(|e| PtError::io(&tmp, e))?;
        Ok(CacheWriter { path: path.to_path_buf(), tmp, out: Some(out), crc: 0, bytes: 0, progress: None })
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let out = self.out.as_mut().ok_or_else(|| PtError::io(&self.tmp, "cache writer already finished"))?;
        out.write_all(bytes).map_err(|e| PtError::io(&self.tmp, e))?;
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.bytes += bytes.len() as u64;
        if let Some(p) = &self.progress {
            p.add(bytes.len() as u64);
        }
        Ok(())
    }

    pub fn finish(mut self, key: &str, kind: &str, width: u32, meta: serde_json::Value) -> Result<PathBuf> {
        let header = CacheHeader {
            version: FORMAT_VERSION,
            key: key.to_string(),
            kind: kind.to_string(),
            width,
            items: if width == 0 { 0 } else { self.bytes / width as u64 },
            crc32c: self.crc,
            meta,
        };
        let json = serde_json::to_vec(&header).map_err(|e| PtError::data(e.to_string()))?;
        let tmp = self.tmp.clone();
        let out = self.out.take().ok_or_else(|| PtError::io(&tmp, "cache writer already finished"))?;
        let done = (|| -> std::io::Result<()> {
            let mut file = out.into_inner().map_err(|e| e.into_error())?;
            file.write_all(&json)?;
            file.seek(SeekFrom::Start(8))?;
            file.write_all(&(PAYLOAD_START + self.bytes).to_le_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        done.map_err(|e| PtError::io(&self.path, e))?;
        Ok(self.path.clone())
    }
}

impl Drop for CacheWriter {
    fn drop(&mut self) {
        // After a successful finish the temp file has been renamed and this finds nothing.
        self.out = None;
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Opens the cache at `path` if it is valid for `key`, else builds it with `build` (which streams
/// into the writer and returns the header's `width` and `meta`) and opens the result.
pub fn open_or_build(
    path: &Path,
    key: &str,
    kind: &str,
    build: impl FnOnce(&mut CacheWriter) -> Result<(u32, serde_json::Value)>,
) -> Result<CacheFile> {
    match CacheFile::open(path, key, kind) {
        Ok(Some(cache)) => {
            tracing::debug!(cache = %path.display(), "reusing token cache");
            return Ok(cache);
        }
        Ok(None) => {}
        Err(e) => tracing::warn!("{}; rebuilding it", e.message),
    }
    let started = std::time::Instant::now();
    let mut writer = CacheWriter::create(path)?;
    writer.progress = Some(pt_sdk::log::Progress::new(format!("building {kind} cache (bytes)"), None));
    let (width, meta) = build(&mut writer)?;
    if let Some(p) = &writer.progress {
        p.finish();
    }
    writer.finish(key, kind, width, meta)?;
    tracing::info!(cache = %path.display(), seconds = started.elapsed().as_secs_f64(), "built token cache");
    CacheFile::open(path, key, kind)?.ok_or_else(|| PtError::io(path, "the cache just written has disappeared"))
}
