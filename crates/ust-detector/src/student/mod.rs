//! Student training for one receptive field (METHOD.md §5) and the calibration of the scores
//! on anomaly-free validation images (§6).
//!
//! The teacher is frozen, so its dense descriptors are computed once per training image, before
//! the first step, and kept in memory already normalised (ŷ = (y − μ)/σ with μ, σ per
//! dimension over every descriptor of the training images). A step trains each of the M
//! students (each with its own Adam) on one training image (batch 1, as the paper), optionally
//! on a random window of its dense output; which image and window is [`sampling`]'s
//! choice (every output pixel equally often, each student its own draws, by default). The crop
//! is exact: a student's dense output on the padded input window of the crop equals the crop of
//! its output on the whole image, so cropping changes only how much of each image one step
//! sees. The image border is extended the same way ([`ust_models::BorderPadding`], replicate by
//! default) for the teacher's targets, the students' inputs, the calibration and every later
//! scoring.
//!
//! The students see their input standardised per channel by the training images' mean and
//! standard deviation (`standardize_inputs`, default on). The paper types vary by about 0.035
//! around a bright mean; on raw pixels a freshly initialised p = 65 student's output hardly
//! depends on its input and the students never left the constant prediction (loss ≈ d = 128
//! for 20 epochs). The map is folded into each student's first convolution when the scale file
//! is written, so a scale file holds ordinary networks that take raw images.
//!
//! Reproducibility: the initial weights, the image order of every epoch and every crop derive
//! from the seed and the step number, so a run resumed from a checkpoint is the run that was
//! not interrupted.

mod calibration;
mod config;
mod files;
mod inputs;
mod model;
pub mod sampling;
mod trainer;

pub use calibration::{Calibration, ScoreTerms};
pub use config::{SMOKE_MAX_TRAIN_IMAGES, StudentTrainingConfig};
pub use files::ScalePaths;
pub use inputs::TeacherTargets;
pub use model::{ScaleModel, VALIDATION_SCORES_TENSOR, raw_scores};
pub use trainer::{ScaleOutcome, ScaleTrainer, StudentRunStart, StudentStepReport, StudentSummary};

/// `ust.model` value of a trained scale's file.
pub const SCALE_MODEL_VALUE: &str = "StudentTeacherScale";
/// `ust.model` value of a student checkpoint.
pub const STUDENT_CHECKPOINT_VALUE: &str = "StudentCheckpoint";
pub(crate) const KEY_MODEL: &str = "ust.model";
pub(crate) const KEY_ARCHITECTURE: &str = "ust.config";
pub(crate) const KEY_TRAINING: &str = "ust.students.training_config";
pub(crate) const KEY_CALIBRATION: &str = "ust.students.calibration";
pub(crate) const KEY_SUMMARY: &str = "ust.students.summary";
pub(crate) const KEY_STATE: &str = "ust.checkpoint.state";

pub(crate) const STREAM_INIT: u64 = 11;

/// A σ below this is replaced by it when normalising the teacher's descriptors (a dimension the
/// teacher never varies on the training images would otherwise divide by zero).
pub const MIN_TARGET_STD: f32 = 1e-6;

#[cfg(test)]
mod tests;
