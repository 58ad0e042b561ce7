//! Training of the student–teacher anomaly detector ("Uninformed Students", Bergmann et al.,
//! CVPR 2020) and the detector it produces. This crate holds the training loops and everything
//! that makes long CPU runs safe: validated configurations with `paper`/`cpu`/`smoke` presets,
//! an Adam whose state is checkpointed, atomic checkpoints with exact resume, a divergence
//! guard, and progress reporting through one [`TrainingObserver`].
//!
//! One module per concern, each importing only from those listed after it:
//!
//! - [`pipeline`]: a category's run directory (`run.toml`, every scale, thresholds, summary):
//!   [`train_detector`] writes it, the [`Detector`] reads it back and turns images into
//!   per-scale and multi-scale anomaly maps; `quantiles.rs` holds the validation thresholds;
//! - [`one_class`]: students for one-class MNIST / CIFAR-10 (one descriptor per image), their
//!   checkpoint in `files.rs`;
//! - [`student`]: the students of one scale and the calibration of their scores: `trainer.rs`
//!   (building a run, the step, the loop), `sampling.rs` (which image and window each step
//!   draws), `inputs.rs` (input standardisation, the teacher's targets), `files.rs`
//!   (checkpoint and scale file), `model.rs` (a trained scale), `calibration.rs`, `config.rs`;
//! - [`teacher`]: teacher pretraining on natural-image patches (METHOD.md §4): the trainer,
//!   its [`config`] ([`TeacherTrainingConfig`]; presets and TOML files in `presets.rs`), the
//!   distillation [`DistillationBank`], its files (checkpoint, teacher file) and summary;
//! - [`training`]: what every trainer stands on, knowing nothing of teachers or students:
//!   [`Adam`], the divergence guard, seeded initialisation and seed streams, the parts of a
//!   checkpoint, and the [`TrainingObserver`] that teacher, student and one-class training
//!   all report to (`TrainingObserver<Start, Step>`, one start and one step report type per
//!   trainer);
//! - [`preset`], [`models_dir`] (where the shipped teachers are found), [`error`].
//!
//! The names a caller needs are re-exported here at the crate root.

pub mod error;
pub mod models_dir;
pub mod one_class;
pub mod pipeline;
pub mod preset;
pub mod student;
pub mod teacher;
pub mod training;

/// The teacher's configuration module, also under the crate root where other crates have
/// always imported it from (`ust_detector::config::BackboneConfig`).
pub use teacher::config;

/// The device type the trainers take (re-exported so that callers need not depend on candle).
pub use candle_core::Device;

pub use error::{DetectorError, Result};
pub use models_dir::{find_default_teacher, teacher_file_name};
pub use one_class::{
    OneClassCheckpointing, OneClassOutcome, OneClassRunStart, OneClassStep, OneClassStudentConfig,
    OneClassStudents, OneClassSummary,
};
pub use pipeline::{Detector, Prediction, RunSpec, ScaleSpec, TrainReport, train_detector};
pub use preset::Preset;
pub use student::sampling::{CropCoverage, StudentSampling};
pub use student::{
    Calibration, ScaleModel, ScoreTerms, StudentRunStart, StudentStepReport, StudentSummary,
    StudentTrainingConfig,
};
pub use teacher::bank::{BankSnapshot, DistillationBank};
pub use teacher::config::{BackboneKind, TeacherTrainingConfig};
pub use teacher::files::{RunPaths, TeacherFileInfo, export_teacher, load_teacher};
pub use teacher::summary::{LossTerms, TrainingSummary};
pub use teacher::{IterationReport, RunStart, TeacherTrainer, TrainingOutcome};
pub use training::adam::{Adam, AdamConfig, WeightDecayMode};
pub use training::observer::TrainingObserver;
