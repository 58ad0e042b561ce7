//! The crate's error type.

use std::path::PathBuf;

/// What can go wrong reading, checking and resolving an experiment or its cells.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid experiment file: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Data { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Cell { path: PathBuf, reason: String },
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    File(#[from] ust_data::DataError),
}

impl ExperimentError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = ExperimentError> = std::result::Result<T, E>;
