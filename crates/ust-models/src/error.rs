//! The error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong when building, loading, saving or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A configuration failed validation (`check()`), before any work was done.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// An input tensor does not have the shape the model needs.
    #[error("bad input shape: {0}")]
    BadInput(String),

    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// A file could not be read or written. The cause is in the message, not in a `source()`
    /// chain, so that a chain printer (`anyhow`'s `{:#}`) says it once.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        cause: std::io::Error,
    },

    /// A weight file exists but is not what it should be (not safetensors, missing or
    /// misshapen tensors, missing or unreadable metadata).
    #[error("{}: {reason}", path.display())]
    BadWeights {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A weight file holds a different architecture than the one asked for.
    #[error("{}: holds architecture {found}, but {expected} was asked for", path.display())]
    ArchitectureMismatch {
        /// The file.
        path: PathBuf,
        /// The configuration that was asked for (JSON).
        expected: String,
        /// The configuration stored in the file (JSON).
        found: String,
    },

    /// Pretrained weights could not be found locally and could not be downloaded.
    #[error("weights not found: {0}")]
    WeightsNotFound(String),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, ModelError>;

impl ModelError {
    pub(crate) fn bad_weights(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        ModelError::BadWeights {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            cause: source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An I/O error names the file and its cause once, whether printed alone or with its
    /// `source()` chain (as `anyhow`'s `{:#}` does).
    #[test]
    fn an_io_error_states_its_cause_once() {
        let missing = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let chain = ust_data::error_chain(&ModelError::io("run.toml", missing()));
        assert!(chain.starts_with("run.toml: "), "{chain}");
        assert_eq!(chain.matches(&missing().to_string()).count(), 1, "{chain}");
    }
}
