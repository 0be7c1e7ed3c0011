//! The one error type of the advox library.

use std::path::PathBuf;

/// Every failure the core library can report. Each variant names what went wrong and,
/// where a file is involved, which file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An audio file is malformed, truncated, empty or otherwise unusable.
    #[error("{path}: {reason}")]
    BadAudio { path: PathBuf, reason: String },
    /// Writing an output would overwrite one of the inputs.
    #[error("refusing to overwrite the input file {0}")]
    WouldOverwriteInput(PathBuf),
    /// A model directory or model file is malformed or incomplete.
    #[error("{path}: {reason}")]
    BadModel { path: PathBuf, reason: String },
    /// The model could not be provisioned (downloaded / extracted).
    #[error("model provisioning failed: {0}")]
    Provision(String),
    /// A tokenizer problem (loading, encoding, decoding).
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Something the user supplied (an option, a goal, a setting) is out of its valid range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The input gives an attack nothing to work on (an untargeted goal on an input that
    /// transcribes as nothing); callers that attack many windows skip such a window.
    #[error("invalid argument: {0}")]
    NothingToAttack(String),
    /// A file advox reads (a manifest, a report, a calibration, detector weights) is not what
    /// it should be.
    #[error("{path}: {reason}")]
    BadFile { path: PathBuf, reason: String },
    /// An error with what was being done when it happened.
    #[error("{context}: {source}")]
    Context {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: Box<Error>,
    },
    /// Buffers or tensors of mismatched shapes or lengths passed between library routines.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// An invariant of the library does not hold: a bug in advox, not in the input.
    #[error("internal error (a bug in advox, please report it): {0}")]
    Internal(String),
    /// An error inside candle (tensor shapes, devices...).
    #[error("tensor: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Result alias for the advox library.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Shorthand for [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    /// Shorthand for [`Error::BadAudio`].
    pub fn bad_audio(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::BadAudio {
            path: path.into(),
            reason: reason.into(),
        }
    }
    /// Shorthand for [`Error::BadFile`].
    pub fn bad_file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::BadFile {
            path: path.into(),
            reason: reason.into(),
        }
    }
    /// Shorthand for [`Error::BadModel`].
    pub fn bad_model(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::BadModel {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// The error for a name that is none of `known`: `unknown WHAT "NAME" (one of a, b, c)`.
pub fn unknown_name(what: &str, name: &str, known: &[&str]) -> Error {
    Error::InvalidArgument(format!(
        "unknown {what} {name:?} (one of {})",
        known.join(", ")
    ))
}
