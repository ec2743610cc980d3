//! Typed errors. Every error that reaches the user names the file (when there is one) and the
//! reason; the CLI prints `error: <Display>` on one line and exits non-zero.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operating system refused a read or write.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file was read but its content is malformed or unsupported (image, MRC, XML, JSON, ...).
    #[error("{}: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
    /// A weight file is malformed or does not fit the network (missing, extra, mis-shaped tensor).
    #[error("{}: {reason}", path.display())]
    Weights { path: PathBuf, reason: String },
    /// A bad argument or an inconsistent shape passed by the caller.
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
    pub fn format(path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        Error::Format {
            path: path.as_ref().to_path_buf(),
            reason: reason.into(),
        }
    }
    pub fn weights(path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        Error::Weights {
            path: path.as_ref().to_path_buf(),
            reason: reason.into(),
        }
    }
    pub fn invalid(reason: impl Into<String>) -> Self {
        Error::Invalid(reason.into())
    }
}
