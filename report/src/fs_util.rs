//! File helpers shared by the metric writers.

use crate::error::{IoContext, Result};
use std::path::{Path, PathBuf};

/// Replaces `path`'s contents atomically: write a sibling temporary file, then rename over it,
/// so a crash mid-rewrite leaves either the old or the new file, never half of one.
pub(crate) fn replace_file(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = temp_sibling(path);
    std::fs::write(&tmp, contents).at(&tmp, "write temporary file")?;
    std::fs::rename(&tmp, path).at(path, "replace file")
}

/// A hidden name that neither TensorBoard (`*tfevents*`) nor this crate would pick up if a crash
/// left it behind.
fn temp_sibling(path: &Path) -> PathBuf {
    path.with_file_name(format!(".pt-rewrite-{}.tmp", std::process::id()))
}
