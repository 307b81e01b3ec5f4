//! A dataset's `files`: each entry a file, a directory (every file under it with one of the
//! dataset's extensions, at any depth) or a glob pattern (`*` and `?` within a name, `**` for
//! any number of directories). Expanded once, sorted, so a run sees the same list in the same
//! order on every rank and every resume.

use crate::{PtError, Result};
use std::path::{Path, PathBuf};

/// The files `entries` name, in order (each entry's matches sorted by path), each listed once.
/// `extensions` (lower case, without the dot) filters directories' contents; empty takes every
/// file. Hidden files and directories (`.name`) are skipped inside directories. `key` names the
/// config key in errors.
pub fn expand_sources(entries: &[PathBuf], extensions: &[&str], key: &str) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let text = entry.to_string_lossy();
        let found = if text.contains(['*', '?']) {
            let found = glob(entry);
            if found.is_empty() {
                return Err(PtError::config(format!("{key}: the pattern '{text}' matches no file")));
            }
            found
        } else if entry.is_dir() {
            let mut found = Vec::new();
            walk(entry, &mut |p| {
                if has_extension(p, extensions) {
                    found.push(p.to_path_buf());
                }
            })?;
            found.sort();
            if found.is_empty() {
                let which = if extensions.is_empty() {
                    "no files".to_string()
                } else {
                    format!("no .{} files", extensions.join("/."))
                };
                return Err(PtError::config(format!("{key}: the directory {text} holds {which}")));
            }
            found
        } else if entry.is_file() {
            vec![entry.clone()]
        } else {
            return Err(PtError::io(entry, format!("{key}: file or directory not found")));
        };
        for f in found {
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    Ok(out)
}

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    extensions.is_empty()
        || path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| extensions.contains(&e.to_ascii_lowercase().as_str()))
}

fn hidden(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

/// Calls `f` on every regular file under `dir` (not hidden, links followed as the OS does).
fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) -> Result<()> {
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(dir).map_err(|e| PtError::io(dir, e))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries.into_iter().filter(|p| !hidden(p)) {
        if p.is_dir() {
            walk(&p, f)?;
        } else if p.is_file() {
            f(&p);
        }
    }
    Ok(())
}

/// The files matching `pattern`, sorted.
fn glob(pattern: &Path) -> Vec<PathBuf> {
    // The leading components without wildcards are where the walk starts.
    let parts: Vec<String> = pattern.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    let fixed = parts.iter().take_while(|p| !p.contains(['*', '?'])).count();
    let root: PathBuf = if fixed == 0 { PathBuf::from(".") } else { parts[..fixed].iter().collect() };
    let rest: Vec<&str> = parts[fixed..].iter().map(String::as_str).collect();
    let mut found = Vec::new();
    if root.is_dir() {
        let _ = walk(&root, &mut |p| {
            let rel: Vec<String> = p
                .strip_prefix(&root)
                .unwrap_or(p)
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let rel: Vec<&str> = rel.iter().map(String::as_str).collect();
            if matches_path(&rest, &rel) {
                found.push(if fixed == 0 { p.strip_prefix(".").unwrap_or(p).to_path_buf() } else { p.to_path_buf() });
            }
        });
    }
    found.sort();
    found
}

/// Whether path components `path` match pattern components `pattern` (`**`: zero or more).
fn matches_path(pattern: &[&str], path: &[&str]) -> bool {
    match (pattern.first(), path.first()) {
        (None, None) => true,
        (Some(&"**"), _) => {
            matches_path(&pattern[1..], path) || (!path.is_empty() && matches_path(pattern, &path[1..]))
        }
        (Some(p), Some(name)) => matches_name(p.as_bytes(), name.as_bytes()) && matches_path(&pattern[1..], &path[1..]),
        _ => false,
    }
}

/// `*` (any run of characters) and `?` (one) within one name.
fn matches_name(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => matches_name(&pattern[1..], name) || (!name.is_empty() && matches_name(pattern, &name[1..])),
        (Some(b'?'), Some(_)) => matches_name(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => matches_name(&pattern[1..], &name[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_directories_and_patterns_expand_sorted_and_once() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in ["b.txt", "a.txt", "notes.md", "sub/c.txt", "sub/deep/d.TXT", ".hidden/e.txt", "sub/.f.txt"] {
            let p = d.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x").unwrap();
        }
        let rel = |v: Vec<PathBuf>| -> Vec<String> {
            v.iter().map(|p| p.strip_prefix(d).unwrap().display().to_string()).collect()
        };
        assert_eq!(
            rel(expand_sources(&[d.to_path_buf()], &["txt"], "files").unwrap()),
            ["a.txt", "b.txt", "sub/c.txt", "sub/deep/d.TXT"]
        );
        assert_eq!(rel(expand_sources(&[d.join("*.txt")], &[], "files").unwrap()), ["a.txt", "b.txt"]);
        assert_eq!(
            rel(expand_sources(&[d.join("**/*.txt"), d.join("a.txt")], &[], "files").unwrap()),
            ["a.txt", "b.txt", "sub/c.txt"],
            "** spans zero or more directories; a file named twice is listed once"
        );
        assert_eq!(rel(expand_sources(&[d.join("sub/?.txt")], &[], "files").unwrap()), ["sub/c.txt"]);
        let e = expand_sources(&[d.join("*.json")], &[], "files").unwrap_err().to_string();
        assert!(e.contains("matches no file"), "{e}");
        let e = expand_sources(&[d.join("sub")], &["jsonl"], "files").unwrap_err().to_string();
        assert!(e.contains("holds no .jsonl files"), "{e}");
        let e = expand_sources(&[d.join("missing.txt")], &[], "files").unwrap_err().to_string();
        assert!(e.contains("missing.txt") && e.contains("not found"), "{e}");
    }
}
