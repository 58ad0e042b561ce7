//! The error type of this crate.

use std::path::{Path, PathBuf};

/// Everything that can go wrong while configuring, running, checkpointing or resuming a
/// training run. File problems name the file.
#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    /// A configuration failed validation (`check()`), before any work was done.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// A configuration file could not be parsed.
    #[error("{}: {reason}", .path.display())]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A file could not be read or written. The cause is in the message, not in a `source()`
    /// chain, so that a chain printer (`anyhow`'s `{:#}`) says it once.
    #[error("{}: {cause}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        cause: std::io::Error,
    },

    /// A checkpoint or teacher file exists but is not what it should be.
    #[error("{}: {reason}", .path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// `--resume` with a configuration that differs from the checkpoint's.
    #[error(
        "{}: the checkpoint was written with a different configuration ({differences}); \
         resume with the same configuration (only schedule.iterations may change) or start afresh",
        .path.display()
    )]
    ConfigMismatch {
        /// The checkpoint.
        path: PathBuf,
        /// The differing keys, `key: checkpoint value -> new value`.
        differences: String,
    },

    /// The loss became NaN/infinite or exploded; training stopped. The last checkpoint on disk
    /// (if any) is from before the problem and is kept.
    #[error(
        "training diverged at iteration {iteration}: {reason}; {}",
        match .last_checkpoint {
            Some(p) => format!("the last good checkpoint {} is kept (iteration {})", p.display(),
                .last_checkpoint_iteration.unwrap_or(0)),
            None => "no checkpoint had been written yet".to_string(),
        }
    )]
    Diverged {
        /// The iteration (1-based) whose loss or gradient was bad.
        iteration: usize,
        /// What was wrong (the loss terms, or the parameter whose gradient was not finite).
        reason: String,
        /// The last checkpoint written, if any.
        last_checkpoint: Option<PathBuf>,
        /// The iteration that checkpoint holds.
        last_checkpoint_iteration: Option<usize>,
    },

    /// Reading the training images failed.
    #[error(transparent)]
    Data(#[from] ust_data::DataError),

    /// Building, loading or running a network failed.
    #[error(transparent)]
    Model(#[from] ust_models::ModelError),

    /// Evaluating a loss failed.
    #[error(transparent)]
    Loss(#[from] ust_losses::LossError),

    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, DetectorError>;

impl DetectorError {
    pub(crate) fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        DetectorError::Io {
            path: path.as_ref().to_path_buf(),
            cause: source,
        }
    }

    pub(crate) fn bad_file(path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        DetectorError::BadFile {
            path: path.as_ref().to_path_buf(),
            reason: reason.into(),
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
        let chain = ust_data::error_chain(&DetectorError::io(Path::new("run.toml"), missing()));
        assert!(chain.starts_with("run.toml: "), "{chain}");
        assert_eq!(chain.matches(&missing().to_string()).count(), 1, "{chain}");
    }
}
