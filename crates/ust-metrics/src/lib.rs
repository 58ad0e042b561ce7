//! Exact evaluation metrics for anomaly segmentation, following the official MVTec AD protocol.
//!
//! * [`pro_curve`] / [`au_pro`]: the per-region-overlap curve and its normalised area up to a
//!   false-positive-rate limit (0.3 in the paper), computed exactly as the official evaluation
//!   script does (8-connected regions, every distinct score a threshold, ties collapsed to their
//!   last point, `(0,0)` and `(1,1)` added, values clipped to 1, linear interpolation at the limit).
//! * [`auroc`], [`pixel_auroc`], [`image_auroc`]: ROC areas with exact tie handling (mid-ranks).
//! * [`SegmentationEvaluator`]: a streaming accumulator that takes one (map, mask) pair at a
//!   time, so a caller never needs to hold every map of a category in memory; one global sort
//!   over all pixels gives every pixel-level number.
//!
//! * [`plot::write_pro_curve_png`]: PRO curves drawn over `[0, fpr_limit]` as a PNG for people.
//!
//! Everything works on plain `&[f32]` maps and `&[u8]` masks (nonzero = anomalous); no tensor
//! library is needed.

mod error;
mod evaluator;
mod plane;
pub mod plot;
mod pro;
mod radix;
mod regions;
mod roc;

pub use error::MetricsError;
pub use evaluator::{SegmentationEvaluator, SegmentationScores};
pub use plane::Plane;
pub use pro::{ProCurve, SortedPixels, au_pro, pro_curve, trapezoid_to_limit};
pub use regions::label_regions_8;
pub use roc::{ImageReducer, auroc, image_auroc, pixel_auroc};

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, MetricsError>;
