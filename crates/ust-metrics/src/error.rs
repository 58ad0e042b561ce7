use thiserror::Error;

/// Everything that can make an evaluation impossible. Indices refer to the position of the map
/// in the caller's list, so a front end can name the file.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum MetricsError {
    #[error("nothing to evaluate: the list of maps is empty")]
    Empty,
    #[error("{maps} maps but {masks} masks were given")]
    CountMismatch { maps: usize, masks: usize },
    #[error("map {index} is {map_w}x{map_h} but its mask is {mask_w}x{mask_h} (width x height)")]
    SizeMismatch {
        index: usize,
        map_w: usize,
        map_h: usize,
        mask_w: usize,
        mask_h: usize,
    },
    #[error("plane of {width}x{height} needs {expected} values, got {got}")]
    BadPlaneLength {
        width: usize,
        height: usize,
        expected: usize,
        got: usize,
    },
    #[error("map {index} has a non-finite score ({value}) at x={x}, y={y}")]
    NonFinite {
        index: usize,
        x: usize,
        y: usize,
        value: f32,
    },
    #[error("no anomalous pixel in any mask: PRO and pixel AUROC need at least one defect region")]
    NoDefectRegion,
    #[error("no anomaly-free pixel: the false-positive rate is undefined")]
    NoNormalPixel,
    #[error("AUROC needs both classes: {positives} positive and {negatives} negative samples")]
    OneClass { positives: usize, negatives: usize },
    #[error("{scores} scores but {labels} labels")]
    LabelCountMismatch { scores: usize, labels: usize },
    #[error("non-finite score {value} at position {index}")]
    NonFiniteScore { index: usize, value: f32 },
    #[error("the false-positive-rate limit must lie in (0, 1], got {0}")]
    BadFprLimit(f64),
    #[error("the top fraction for the image score must lie in (0, 1], got {0}")]
    BadTopFraction(f64),
    #[error("more than 2^32 - 1 defect regions in one evaluation")]
    TooManyRegions,
    #[error("nothing to plot: the list of curves is empty")]
    NoCurves,
    /// A plot could not be drawn or written; names the file and says why.
    #[error("{}: cannot write the plot: {reason}", .path.display())]
    Plot {
        path: std::path::PathBuf,
        reason: String,
    },
}
