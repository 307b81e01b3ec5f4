//! The one error type that crosses the plugin boundary.

use abi_stable::{std_types::RString, StableAbi};
use std::fmt;

/// What went wrong, coarsely; the message says the rest.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A config key or value was rejected.
    Config = 0,
    /// A dataset could not be read or a sample is malformed.
    Data = 1,
    /// A tensor had the wrong shape, dtype or device, or was not finite.
    Shape = 2,
    /// libtorch raised an error.
    Torch = 3,
    /// The plugin panicked; the panic was caught at the boundary.
    Panic = 4,
    /// A file or directory could not be read or written.
    Io = 5,
    /// Something the component does not support was asked of it.
    Unsupported = 6,
    Other = 7,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Data => "data",
            ErrorKind::Shape => "shape",
            ErrorKind::Torch => "torch",
            ErrorKind::Panic => "panic",
            ErrorKind::Io => "io",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Other => "error",
        }
    }
}

/// An error returned across the plugin boundary. `origin` names the plugin and component
/// (`mlm:bert`) once the SDK's export layer has attached it.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct PtError {
    pub kind: ErrorKind,
    pub message: RString,
    pub origin: RString,
}

impl PtError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        PtError { kind, message: message.into().into(), origin: RString::new() }
    }
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
    pub fn data(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Data, message)
    }
    pub fn shape(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Shape, message)
    }
    pub fn io(path: impl AsRef<std::path::Path>, err: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Io, format!("{}: {err}", path.as_ref().display()))
    }
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }
    /// Attaches `plugin:component` unless an inner layer already did.
    pub fn with_origin(mut self, origin: &str) -> Self {
        if self.origin.is_empty() {
            self.origin = origin.into();
        }
        self
    }
    /// Prefixes the message with what was being done.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message).into();
        self
    }
}

impl fmt::Display for PtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.origin.is_empty() {
            write!(f, "{} error: {}", self.kind.as_str(), self.message)
        } else {
            write!(f, "{} error in {}: {}", self.kind.as_str(), self.origin, self.message)
        }
    }
}

impl std::error::Error for PtError {}

impl From<tch::TchError> for PtError {
    fn from(e: tch::TchError) -> Self {
        // libtorch messages carry a C++ backtrace after the first lines; keep the useful head.
        let text = e.to_string();
        let head: Vec<&str> =
            text.lines().take_while(|l| !l.contains("Exception raised from") && !l.starts_with("frame #")).collect();
        PtError::new(ErrorKind::Torch, head.join(" ").trim().to_string())
    }
}

impl From<serde_json::Error> for PtError {
    fn from(e: serde_json::Error) -> Self {
        PtError::config(e.to_string())
    }
}

pub type Result<T, E = PtError> = std::result::Result<T, E>;

/// `bail!(kind, "fmt", args)`: return early with a [`PtError`].
#[macro_export]
macro_rules! bail {
    ($kind:ident, $($arg:tt)*) => {
        return Err($crate::PtError::new($crate::ErrorKind::$kind, format!($($arg)*)))
    };
}
