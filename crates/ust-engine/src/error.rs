//! What can stop an evaluation, each error saying what happened and, where there is one, what
//! to do about it.

use std::path::PathBuf;

use thiserror::Error;

/// Errors of the evaluation engine.
///
/// Errors of the crates below pass through unchanged (`Data`, `Metrics`, …); where the engine
/// knows what it was doing, [`EngineError::Context`] names it (the image scored, the file
/// written) with the cause as its source, so a front end printing the chain (`anyhow`'s
/// `{:#}`) shows `what: cause`.
#[derive(Debug, Error)]
pub enum EngineError {
    /// The engine's step that failed, with its cause.
    #[error("{what}")]
    Context {
        what: String,
        #[source]
        source: Box<EngineError>,
    },

    /// A file or folder could not be read, written or removed.
    #[error("{action} {}", path.display())]
    Io {
        /// `reading`, `writing`, `creating`, `removing`, …
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file could not be copied.
    #[error("copying {} to {}", from.display(), to.display())]
    Copy {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The dataset root holds no MVTec-layout category.
    #[error("{}: no MVTec-layout dataset", root.display())]
    NoDataset {
        root: PathBuf,
        #[source]
        source: Box<ust_data::DataError>,
    },

    /// A category asked for is not in the dataset.
    #[error("category '{wanted}' not found in {} (found: {})", root.display(), found.join(", "))]
    CategoryNotFound {
        wanted: String,
        root: PathBuf,
        found: Vec<String>,
    },

    /// A test image has no anomaly map under the maps root.
    #[error(
        "missing anomaly map for {}: expected {} (or .{})",
        image.display(),
        expected.display(),
        other_extensions.join(" or .")
    )]
    MissingMap {
        image: PathBuf,
        expected: PathBuf,
        other_extensions: Vec<String>,
    },

    /// A map has another size than its image and resampling was not asked for.
    #[error(
        "{}: map is {map_w}x{map_h} but its image {} is {image_w}x{image_h} (pass --resize to resample)",
        map.display(),
        image.display()
    )]
    MapSize {
        map: PathBuf,
        map_w: usize,
        map_h: usize,
        image: PathBuf,
        image_w: usize,
        image_h: usize,
    },

    /// A ground-truth mask has another size than its image.
    #[error("{}: mask is {mask_w}x{mask_h} but its image {} is {image_w}x{image_h}", mask.display(), image.display())]
    MaskSize {
        mask: PathBuf,
        mask_w: usize,
        mask_h: usize,
        image: PathBuf,
        image_w: usize,
        image_h: usize,
    },

    /// A ground-truth mask has another size than the anomaly map it is compared with.
    #[error("{}: mask is {mask_w}x{mask_h}, the image {map_w}x{map_h}", mask.display())]
    MaskMapSize {
        mask: PathBuf,
        mask_w: usize,
        mask_h: usize,
        map_w: usize,
        map_h: usize,
    },

    /// A ground-truth mask holds more than two grey levels.
    #[error(
        "{}: mask is not binary (grey levels 0, {first} and {second}); masks must hold 0 and one other value",
        path.display()
    )]
    MaskNotBinary {
        path: PathBuf,
        first: u8,
        second: u8,
    },

    /// A test image of a defect type has no ground-truth mask.
    #[error("{}: defect image without a mask", image.display())]
    DefectWithoutMask { image: PathBuf },

    /// A kept score file of an interrupted evaluation has the wrong length.
    #[error(
        "{}: {got} bytes, expected {expected} ({maps} map(s) of {pixels} scores); delete the folder {} to score every image again",
        path.display(),
        folder.display()
    )]
    StoredScores {
        path: PathBuf,
        got: usize,
        expected: usize,
        maps: usize,
        pixels: usize,
        folder: PathBuf,
    },

    /// A scorer returned maps that do not fit its own layout.
    #[error("{}: the scorer returned {got} map(s) of {got_len} values, its layout says {maps} of {side}×{side}", image.display())]
    ScorerShape {
        image: PathBuf,
        got: usize,
        got_len: usize,
        maps: usize,
        side: usize,
    },

    /// The evaluation stopped after the number of scored images it was told to (a test hook
    /// for resumption).
    #[error("stopped after scoring {scored} images, as asked (stop_after)")]
    Stopped { scored: usize },

    /// The settings of a run contradict each other or the data.
    #[error("{0}")]
    Invalid(String),

    /// A baseline could not be fitted (the source says why; a diverged neural baseline is
    /// [`ust_baselines::BaselineError::Diverged`]).
    #[error("fitting {method} on {vectors} descriptors")]
    Fit {
        method: String,
        vectors: usize,
        #[source]
        source: ust_baselines::BaselineError,
    },

    #[error(transparent)]
    Data(#[from] ust_data::DataError),

    #[error(transparent)]
    MapShape(#[from] ust_data::MapShapeError),

    #[error(transparent)]
    Metrics(#[from] ust_metrics::MetricsError),

    #[error(transparent)]
    Detector(#[from] ust_detector::DetectorError),

    #[error(transparent)]
    Baseline(#[from] ust_baselines::BaselineError),

    #[error(transparent)]
    Model(#[from] ust_models::ModelError),

    #[error(transparent)]
    Loss(#[from] ust_losses::LossError),

    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, EngineError>;

impl EngineError {
    /// `map_err` of a failed file operation: `action` (`reading`, …) on `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| EngineError::Io {
            action,
            path,
            source,
        }
    }
}

/// Names the step an error happened in (what `anyhow`'s `with_context` does, kept typed).
pub(crate) trait Context<T> {
    fn context_with(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Into<EngineError>> Context<T> for std::result::Result<T, E> {
    fn context_with(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| EngineError::Context {
            what: what(),
            source: Box::new(e.into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A diverged baseline stays findable in the error chain: the `ust` binary exits with its
    /// own status for it.
    #[test]
    fn a_diverged_fit_keeps_the_baseline_error_as_its_source() {
        let err = EngineError::Fit {
            method: "ae".into(),
            vectors: 10,
            source: ust_baselines::BaselineError::Diverged {
                method: "ae",
                epoch: 2,
                loss: f64::NAN,
            },
        };
        let source = std::error::Error::source(&err).unwrap();
        assert!(matches!(
            source.downcast_ref::<ust_baselines::BaselineError>(),
            Some(ust_baselines::BaselineError::Diverged { .. })
        ));
        assert_eq!(err.to_string(), "fitting ae on 10 descriptors");
    }

    #[test]
    fn context_names_the_step_and_keeps_the_cause() {
        let err: Result<()> =
            Err(EngineError::Invalid("bad".into())).context_with(|| "scoring x.png".to_string());
        let err = err.unwrap_err();
        assert_eq!(err.to_string(), "scoring x.png");
        assert_eq!(std::error::Error::source(&err).unwrap().to_string(), "bad");
    }
}
