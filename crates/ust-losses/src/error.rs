//! The error type of every loss and score in this crate.

use candle_core::Shape;

/// What can go wrong when a loss or score is evaluated.
///
/// Shape problems name the offending shapes so that a failing training loop says exactly which
/// tensor was wired wrongly.
#[derive(Debug, thiserror::Error)]
pub enum LossError {
    /// Two tensors that must have the same shape do not.
    #[error("{what}: shape mismatch, {left:?} vs {right:?}")]
    ShapeMismatch {
        what: &'static str,
        left: Shape,
        right: Shape,
    },
    /// A tensor does not have the rank (or the size in one dimension) a loss needs.
    #[error("{what}: expected a tensor of shape {expected}, got {got:?}")]
    BadShape {
        what: &'static str,
        expected: &'static str,
        got: Shape,
    },
    /// A batch (or an ensemble) is empty, where a mean over it would be NaN.
    #[error("{what}: empty, a mean over it is undefined")]
    Empty { what: &'static str },
    /// A configuration value is out of range.
    #[error("invalid loss configuration: {0}")]
    InvalidConfig(String),
    /// The combination of teacher losses needs an input that was not given.
    #[error("missing input: {0}")]
    MissingInput(&'static str),
    /// An error from a candle tensor operation.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, LossError>;

/// Fails with [`LossError::ShapeMismatch`] unless `left` and `right` have the same shape.
pub(crate) fn ensure_same_shape(
    what: &'static str,
    left: &candle_core::Tensor,
    right: &candle_core::Tensor,
) -> Result<()> {
    if left.shape() != right.shape() {
        return Err(LossError::ShapeMismatch {
            what,
            left: left.shape().clone(),
            right: right.shape().clone(),
        });
    }
    Ok(())
}

/// Returns `(n, d)` of a rank-2 tensor with `n ≥ 1`, or a typed error naming `what`.
pub(crate) fn batch_dims2(what: &'static str, t: &candle_core::Tensor) -> Result<(usize, usize)> {
    let (n, d) = t.dims2().map_err(|_| LossError::BadShape {
        what,
        expected: "(N, d)",
        got: t.shape().clone(),
    })?;
    if n == 0 {
        return Err(LossError::Empty { what });
    }
    Ok((n, d))
}
