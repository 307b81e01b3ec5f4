//! Where clips come from: a folder scanned for `*.wav`, or a fairseq-style `.tsv` manifest
//! (first line: the root directory; then `path<TAB>num_samples[<TAB>label]` per clip).

use crate::{PtError, Result};
use std::path::{Component, Path, PathBuf};

/// One clip to read, before its header is checked.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipSource {
    pub path: PathBuf,
    /// The manifest line (1-based) that listed it; `None` for a scanned folder.
    pub line: Option<usize>,
    /// Frames per channel at the file's own rate, as the manifest states them.
    pub declared_frames: Option<u64>,
    /// The manifest's third column (or a shard sample's `.cls`).
    pub label: Option<String>,
    /// A member of the dataset's shards (index, member); `path` is then `shard.tar/member`,
    /// for messages.
    pub member: Option<(u32, crate::shards::TarMember)>,
}

/// A manifest line that could not be used.
#[derive(Clone, Debug, PartialEq)]
pub struct BadLine {
    pub line: usize,
    pub why: String,
}

/// A parsed manifest: the root its paths are relative to, and each non-blank line.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub file: PathBuf,
    pub root: PathBuf,
    pub lines: Vec<std::result::Result<ClipSource, BadLine>>,
}

pub fn is_manifest(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("tsv") || is_jsonl_ext(e))
}

fn is_jsonl_ext(ext: &str) -> bool {
    ext.eq_ignore_ascii_case("jsonl") || ext.eq_ignore_ascii_case("json")
}

/// Keys a JSON-lines manifest may name the clip's file by (NeMo's, then common others).
const PATH_KEYS: [&str; 4] = ["audio_filepath", "path", "audio", "file"];

/// Parses one JSON-lines manifest line: the file (`audio_filepath`, `path`, `audio` or `file`),
/// optionally `num_samples` (checked against the file) and `label` (string or whole number).
pub fn parse_json_line(text: &str) -> std::result::Result<(String, Option<u64>, Option<String>), String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not a JSON object ({e})"))?;
    let Some(object) = value.as_object() else { return Err("not a JSON object".into()) };
    let path = PATH_KEYS
        .iter()
        .find_map(|k| object.get(*k).and_then(|v| v.as_str()))
        .filter(|p| !p.trim().is_empty())
        .ok_or_else(|| format!("no file: give it as one of {} (a string)", PATH_KEYS.join(", ")))?;
    let frames = match object.get("num_samples") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| format!("num_samples {v} is not a whole number"))?),
    };
    let label = match object.get("label") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(l)) if !l.trim().is_empty() => Some(l.trim().to_string()),
        Some(v) if v.is_i64() || v.is_u64() => Some(v.to_string()),
        Some(v) => return Err(format!("label {v} is neither a string nor a whole number")),
    };
    Ok((path.to_string(), frames, label))
}

fn is_audio(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("wav"))
        || super::compressed::handles(path)
}

/// Every audio file (`.wav`, `.flac`, `.ogg`, `.mp3`) under `root` (recursively), sorted by path.
pub fn scan_wavs(root: &Path) -> Result<Vec<PathBuf>> {
    if !root.exists() {
        return Err(PtError::io(root, "does not exist (path must be a folder of audio files or a .tsv manifest)"));
    }
    if !root.is_dir() {
        return Err(PtError::io(root, "not a directory (path must be a folder of audio files or a .tsv manifest)"));
    }
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| PtError::io(&dir, e))? {
            let path = entry.map_err(|e| PtError::io(&dir, e))?.path();
            if path.is_dir() {
                pending.push(path);
            } else if is_audio(&path) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Parses one clip line: `path<TAB>num_samples[<TAB>label]`.
pub fn parse_line(text: &str) -> std::result::Result<(String, u64, Option<String>), String> {
    let columns: Vec<&str> = text.split('\t').collect();
    if columns.len() < 2 {
        return Err(format!(
            "expected path<TAB>num_samples[<TAB>label] but found {} column (are the columns separated by tabs?)",
            columns.len()
        ));
    }
    if columns.len() > 3 {
        return Err(format!("expected path<TAB>num_samples[<TAB>label] but found {} columns", columns.len()));
    }
    let path = columns[0].trim();
    if path.is_empty() {
        return Err("the path column is empty".into());
    }
    let count = columns[1].trim();
    let frames = count.parse::<u64>().map_err(|_| format!("num_samples '{count}' is not a whole number"))?;
    let label = match columns.get(2).map(|l| l.trim()) {
        None => None,
        Some("") => return Err("the label column is empty".into()),
        Some(l) => Some(l.to_string()),
    };
    Ok((path.to_string(), frames, label))
}

/// Reads `file`. The root line is required (an error otherwise, whatever `skip_bad` says);
/// clip lines that do not parse come back as [`BadLine`]s for the caller to report or skip.
pub fn read_manifest(file: &Path) -> Result<Manifest> {
    let text = std::fs::read_to_string(file).map_err(|e| PtError::io(file, e))?;
    if file.extension().and_then(|e| e.to_str()).is_some_and(is_jsonl_ext) {
        return Ok(read_json_lines(file, &text));
    }
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim_end_matches('\r')));
    let Some((_, root_line)) = lines.by_ref().find(|(_, l)| !l.trim().is_empty()) else {
        return Err(PtError::data(format!(
            "{}: empty manifest (expected a root directory line, then path<TAB>num_samples lines)",
            file.display()
        )));
    };
    let root_text = root_line.trim();
    if root_text.contains('\t') {
        return Err(PtError::data(format!(
            "{}: the first line must be the root directory the paths are relative to (fairseq manifest format), \
             but it has tab-separated columns: '{root_text}'",
            file.display()
        )));
    }
    let manifest_dir = file.parent().unwrap_or(Path::new("."));
    // An absolute root replaces manifest_dir; `.` components are dropped so messages show
    // clean paths.
    let root: PathBuf = manifest_dir.join(root_text).components().filter(|c| !matches!(c, Component::CurDir)).collect();
    let root = if root.as_os_str().is_empty() { PathBuf::from(".") } else { root };
    if !root.is_dir() {
        return Err(PtError::data(format!(
            "{}: line 1: root directory {} does not exist (a relative root is relative to the manifest's folder)",
            file.display(),
            root.display()
        )));
    }
    let lines = lines
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(line, text)| {
            parse_line(text)
                .map(|(path, frames, label)| ClipSource {
                    member: None,
                    path: root.join(path),
                    line: Some(line),
                    declared_frames: Some(frames),
                    label,
                })
                .map_err(|why| BadLine { line, why })
        })
        .collect();
    Ok(Manifest { file: file.to_path_buf(), root, lines })
}

/// A JSON-lines manifest: one object per line, relative files relative to its folder.
fn read_json_lines(file: &Path, text: &str) -> Manifest {
    let root = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
        .map(|(line, text)| {
            parse_json_line(text)
                .map(|(path, frames, label)| ClipSource {
                    member: None,
                    path: root.join(path),
                    line: Some(line),
                    declared_frames: frames,
                    label,
                })
                .map_err(|why| BadLine { line, why })
        })
        .collect();
    Manifest { file: file.to_path_buf(), root, lines }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_name_the_file_by_common_keys() {
        let line = r#"{"audio_filepath": "a/b.flac", "duration": 1.5, "label": 3}"#;
        assert_eq!(parse_json_line(line), Ok(("a/b.flac".into(), None, Some("3".into()))));
        let line = r#"{"path": "x.wav", "num_samples": 16000, "label": "yes"}"#;
        assert_eq!(parse_json_line(line), Ok(("x.wav".into(), Some(16000), Some("yes".into()))));
        assert!(parse_json_line(r#"{"text": "hi"}"#).unwrap_err().contains("audio_filepath, path, audio, file"));
        assert!(parse_json_line(r#"{"path": "x.wav", "label": 1.5}"#).unwrap_err().contains("label 1.5"));
        assert!(parse_json_line("x.wav\t3").unwrap_err().contains("not a JSON object"));
        assert!(is_manifest(Path::new("train.jsonl")));
    }

    #[test]
    fn parses_two_and_three_columns() {
        assert_eq!(parse_line("a/b.wav\t16000"), Ok(("a/b.wav".into(), 16000, None)));
        assert_eq!(parse_line("a.wav\t5\tyes"), Ok(("a.wav".into(), 5, Some("yes".into()))));
    }

    #[test]
    fn rejects_malformed_lines_with_reasons() {
        assert!(parse_line("a.wav").unwrap_err().contains("1 column"));
        assert!(parse_line("a.wav 16000").unwrap_err().contains("tabs"));
        assert!(parse_line("a.wav\tabc").unwrap_err().contains("'abc' is not a whole number"));
        assert!(parse_line("a.wav\t-3").unwrap_err().contains("not a whole number"));
        assert!(parse_line("\t10").unwrap_err().contains("path column is empty"));
        assert!(parse_line("a.wav\t10\t").unwrap_err().contains("label column is empty"));
        assert!(parse_line("a.wav\t10\tx\ty").unwrap_err().contains("4 columns"));
    }

    #[test]
    fn manifest_and_wav_extensions() {
        assert!(is_manifest(Path::new("train.TSV")));
        assert!(!is_manifest(Path::new("train.csv")));
        assert!(is_audio(Path::new("x/a.Wav")));
        assert!(is_audio(Path::new("x/a.flac")) && is_audio(Path::new("x/b.OGG")));
        assert!(!is_audio(Path::new("x/a.txt")));
    }
}
