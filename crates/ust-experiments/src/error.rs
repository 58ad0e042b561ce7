//! The crate's error type.

use std::path::PathBuf;

/// What can go wrong reading, checking and resolving an experiment or its cells.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The cause is in the message, not in a `source()` chain, so that a chain printer
    /// (`anyhow`'s `{:#}`) says it once.
    #[error("{}: {cause}", .path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: not a valid experiment file: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Data { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Cell { path: PathBuf, reason: String },
    /// A job cannot run yet: what must run first, and how.
    #[error("{0}")]
    NotReady(String),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    File(#[from] ust_data::DataError),
}

impl ExperimentError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            cause: source,
        }
    }
}

pub type Result<T, E = ExperimentError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// An I/O error names the file and its cause once, whether printed alone or with its
    /// `source()` chain (as `anyhow`'s `{:#}` does).
    #[test]
    fn an_io_error_states_its_cause_once() {
        let missing = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let chain = ust_data::error_chain(&ExperimentError::io("run.toml", missing()));
        assert!(chain.starts_with("run.toml: "), "{chain}");
        assert_eq!(chain.matches(&missing().to_string()).count(), 1, "{chain}");
    }
}
