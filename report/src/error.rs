//! The error type of this crate: every variant names the file it concerns.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file or directory could not be created, read or written.
    #[error("{}: cannot {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// A line of a metrics file is not what this crate writes.
    #[error("{}:{line}: {message}", path.display())]
    Malformed { path: PathBuf, line: usize, message: String },

    /// A TensorBoard event file failed a CRC check or holds an undecodable record.
    #[error("{}: corrupt record at byte {offset}: {message}", path.display())]
    CorruptRecord { path: PathBuf, offset: u64, message: String },

    /// The caller passed something this crate cannot record or draw.
    #[error("{0}")]
    InvalidInput(String),

    /// plotters failed to draw or encode a PNG.
    #[error("{}: cannot draw plot: {message}", path.display())]
    Plot { path: PathBuf, message: String },
}

pub type Result<T, E = ReportError> = std::result::Result<T, E>;

impl ReportError {
    pub(crate) fn io(path: &Path, action: &'static str, source: std::io::Error) -> Self {
        ReportError::Io { path: path.to_path_buf(), action, source }
    }

    pub(crate) fn plot(path: &Path, err: impl std::fmt::Display) -> Self {
        ReportError::Plot { path: path.to_path_buf(), message: err.to_string() }
    }
}

/// Attaches a path and an action to `std::io` results.
pub(crate) trait IoContext<T> {
    fn at(self, path: &Path, action: &'static str) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &Path, action: &'static str) -> Result<T> {
        self.map_err(|e| ReportError::io(path, action, e))
    }
}
