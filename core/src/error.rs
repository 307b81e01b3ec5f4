use std::path::PathBuf;

/// Errors of the host library. Each says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // Transparent: the PtError is the whole message (as a `source` it would print twice).
    #[error(transparent)]
    Plugin(#[from] pt_sdk::PtError),
    #[error("{path}: {message}")]
    PluginLoad { path: PathBuf, message: String, detail: String },
    #[error("{0}")]
    Registry(String),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Composition(String),
    // `cause`, not `source`: the message already includes it, so the error chain must not
    // print it a second time.
    #[error("{context}: {cause}")]
    Io { context: String, cause: std::io::Error },
    #[error("{0}")]
    Checkpoint(String),
    #[error("{0}")]
    Training(String),
    #[error("libtorch: {0}")]
    Torch(String),
    /// A multi-process run's rendezvous, agreement check or collective failed.
    #[error("{0}")]
    Distributed(String),
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), cause: source }
    }
    /// Extra detail worth showing with `-v` (e.g. abi_stable's full layout report).
    pub fn detail(&self) -> Option<&str> {
        match self {
            Error::PluginLoad { detail, .. } if !detail.is_empty() => Some(detail),
            _ => None,
        }
    }
}

impl From<tch::TchError> for Error {
    fn from(e: tch::TchError) -> Self {
        Error::Plugin(pt_sdk::PtError::from(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
