//! Typed errors of the baselines.

/// Everything that can go wrong while fitting or applying a baseline.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// A training set without vectors.
    #[error("{what}: the training set has no vectors")]
    EmptyTrainingSet {
        /// Which fit was attempted (e.g. "1-NN", "PCA").
        what: &'static str,
    },

    /// Vectors of dimension 0.
    #[error("{what}: the vectors have dimension 0")]
    ZeroDimension {
        /// Which input.
        what: &'static str,
    },

    /// Vectors whose dimension differs from the one the model was fitted on.
    #[error("{what}: expected vectors of dimension {expected}, got {got}")]
    DimensionMismatch {
        /// Which input.
        what: &'static str,
        /// Dimension the model was fitted on.
        expected: usize,
        /// Dimension given.
        got: usize,
    },

    /// A flat buffer whose length is not rows × dimension.
    #[error("{what}: a buffer of {len} values cannot hold {rows} rows of dimension {dim}")]
    BufferLength {
        /// Which input.
        what: &'static str,
        /// Length of the buffer.
        len: usize,
        /// Requested rows.
        rows: usize,
        /// Requested dimension.
        dim: usize,
    },

    /// A NaN or infinite value in an input matrix.
    #[error("{what}: row {row}, column {column} holds the non-finite value {value}")]
    NonFinite {
        /// Which input ("training vectors", "test vectors").
        what: &'static str,
        /// Row (vector index) of the first offending value.
        row: usize,
        /// Column (component) of the first offending value.
        column: usize,
        /// The value itself (NaN or ±inf).
        value: f32,
    },

    /// A hyper-parameter outside its valid range, found by a `check()`.
    #[error("{method}: invalid parameter {name}: {message}")]
    InvalidParameter {
        /// The method whose configuration is wrong.
        method: &'static str,
        /// The parameter.
        name: &'static str,
        /// What is wrong with it.
        message: String,
    },

    /// Fewer training vectors than the method needs (e.g. fewer than k for K-Means).
    #[error("{method}: needs at least {needed} training vectors, got {got}")]
    TooFewTrainingVectors {
        /// The method.
        method: &'static str,
        /// Minimum number of vectors.
        needed: usize,
        /// Number given (after subsampling).
        got: usize,
    },

    /// Training vectors that are all equal: no direction carries variance.
    #[error("{what}: the training vectors have zero variance (all rows equal)")]
    ZeroVariance {
        /// Which fit.
        what: &'static str,
    },

    /// A tensor of the wrong rank or dtype at the candle boundary.
    #[error("{what}: expected a tensor of shape {expected}, got {got:?}")]
    TensorShape {
        /// Which input.
        what: &'static str,
        /// Expected shape, in words.
        expected: &'static str,
        /// Shape given.
        got: Vec<usize>,
    },

    /// The symmetric eigendecomposition of the covariance failed.
    #[error("PCA: eigendecomposition of the {dim}×{dim} covariance failed: {message}")]
    Eigendecomposition {
        /// Dimension of the covariance.
        dim: usize,
        /// The linear-algebra crate's message.
        message: String,
    },

    /// linfa-clustering's K-Means failed.
    #[error("K-Means: linfa-clustering failed: {0}")]
    KMeans(String),

    /// linfa-svm's one-class SVM failed.
    #[error("one-class SVM: linfa-svm failed: {0}")]
    Svm(String),

    /// A neural baseline's loss became NaN or infinite.
    #[error("{method}: the training loss became non-finite ({loss}) in epoch {epoch}")]
    Diverged {
        /// The method.
        method: &'static str,
        /// Epoch (0-based) in which it happened.
        epoch: usize,
        /// The loss value.
        loss: f64,
    },

    /// An error from candle (tensor operations of the autoencoder and VAE); transparent, so
    /// that a chain printer says its message once.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result with [`BaselineError`].
pub type Result<T> = std::result::Result<T, BaselineError>;

/// Shorthand for an [`BaselineError::InvalidParameter`].
pub(crate) fn invalid(
    method: &'static str,
    name: &'static str,
    message: impl Into<String>,
) -> BaselineError {
    BaselineError::InvalidParameter {
        method,
        name,
        message: message.into(),
    }
}
