//! The crate's error type. Every variant names the file or folder it is about, so that a user
//! can go and look at it; the message says what is wrong with it.

use std::path::{Path, PathBuf};

use crate::image_io::Size;

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, DataError>;

/// Everything that can go wrong while reading a dataset.
///
/// The messages carry their cause as text (no `source()` chain), so that printing a
/// `DataError` alone, as `ust data info` does for its list of problems, says everything.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file or folder could not be read (missing, permissions, I/O error).
    #[error("{}: cannot read: {cause}", .path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// The file is not a decodable image (unknown format, corrupt or truncated data).
    #[error("{}: cannot decode image: {cause}", .path.display())]
    Decode { path: PathBuf, cause: String },
    /// A file or folder that the layout requires is not there.
    #[error("{}: missing {what}", .path.display())]
    Missing { path: PathBuf, what: &'static str },
    /// A folder that must hold images holds none (png, jpg, jpeg, bmp).
    #[error("{}: folder holds no images (png, jpg, jpeg, bmp)", .path.display())]
    EmptyFolder { path: PathBuf },
    /// An MVTec-layout defect image without its ground-truth mask.
    #[error("{}: defect image has no mask (expected {})", .path.display(), .expected.display())]
    MissingMask { path: PathBuf, expected: PathBuf },
    /// A ground-truth mask whose test image does not exist.
    #[error("{}: mask has no test image (expected {}/{stem}.*)", .path.display(), .image_dir.display())]
    OrphanMask {
        path: PathBuf,
        image_dir: PathBuf,
        stem: String,
    },
    /// A ground-truth mask whose size differs from its image's.
    #[error(
        "{}: mask is {mask_size} but its image {} is {image_size}",
        .path.display(),
        .image.display()
    )]
    MaskSizeMismatch {
        path: PathBuf,
        image: PathBuf,
        mask_size: Size,
        image_size: Size,
    },
    /// A binary file (idx, CIFAR batch) starts with the wrong magic number.
    #[error("{}: bad magic number {found:#010x}, expected {expected:#010x}", .path.display())]
    BadMagic {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    /// A file ends before the data its header (or format) announces.
    #[error("{}: truncated: {detail}", .path.display())]
    Truncated { path: PathBuf, detail: String },
    /// The content is readable but inconsistent (wrong counts, labels out of range, sizes
    /// that differ within a dataset, trailing bytes, ...).
    #[error("{}: {reason}", .path.display())]
    InvalidFormat { path: PathBuf, reason: String },
    /// A configuration that cannot work with this dataset (checked before any work).
    #[error("{}: invalid configuration: {reason}", .path.display())]
    InvalidConfig { path: PathBuf, reason: String },
    /// Building a tensor from data read from this path failed.
    #[error("{}: cannot build tensor: {cause}", .path.display())]
    Tensor {
        path: PathBuf,
        cause: candle_core::Error,
    },
    /// The background sampler reading this folder stopped (a worker thread panicked).
    #[error("{}: background sampler stopped: {reason}", .path.display())]
    SamplerStopped { path: PathBuf, reason: String },
    /// The file (or its folder) could not be created or written, or the encoder failed.
    #[error("{}: cannot write: {cause}", .path.display())]
    Write { path: PathBuf, cause: String },
    /// An anomaly map that was to be written as an image holds NaN, which no colour or mask
    /// value can represent.
    #[error("{}: the anomaly map holds NaN at x={x}, y={y}; cannot write it as an image", .path.display())]
    NanInMap { path: PathBuf, x: usize, y: usize },
    /// An overlay whose image and anomaly map differ in size.
    #[error(
        "{}: the anomaly map is {map_size} but the image under it is {image_size}",
        .path.display()
    )]
    OverlaySizeMismatch {
        path: PathBuf,
        map_size: Size,
        image_size: Size,
    },
    /// Arguments that make writing this anomaly map impossible (a data length that does not
    /// match the size, an empty or inverted colour range, an opacity outside `[0, 1]`, ...).
    #[error("{}: cannot write anomaly map: {reason}", .path.display())]
    InvalidMapOutput { path: PathBuf, reason: String },
}

/// `err` with its `source()` chain, joined by ": " (what `anyhow`'s `{:#}` prints). The
/// project's errors keep their cause in the message, not in the chain, so that this says each
/// cause once; their tests check it with this function.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

impl DataError {
    /// The file or folder the error is about.
    pub fn path(&self) -> &Path {
        match self {
            DataError::Io { path, .. }
            | DataError::Decode { path, .. }
            | DataError::Missing { path, .. }
            | DataError::EmptyFolder { path }
            | DataError::MissingMask { path, .. }
            | DataError::OrphanMask { path, .. }
            | DataError::MaskSizeMismatch { path, .. }
            | DataError::BadMagic { path, .. }
            | DataError::Truncated { path, .. }
            | DataError::InvalidFormat { path, .. }
            | DataError::InvalidConfig { path, .. }
            | DataError::Tensor { path, .. }
            | DataError::SamplerStopped { path, .. }
            | DataError::Write { path, .. }
            | DataError::NanInMap { path, .. }
            | DataError::OverlaySizeMismatch { path, .. }
            | DataError::InvalidMapOutput { path, .. } => path,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            cause,
        }
    }

    pub(crate) fn invalid(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        DataError::InvalidFormat {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn config(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        DataError::InvalidConfig {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
