//! Training of the student–teacher anomaly detector ("Uninformed Students", Bergmann et al.,
//! CVPR 2020). This crate holds the training loops and everything that makes long CPU runs
//! safe: validated configurations with `paper`/`cpu`/`smoke` presets, an Adam whose state is
//! checkpointed, atomic checkpoints with exact resume, a divergence guard, and progress
//! reporting through [`TrainingObserver`].
//!
//! - [`teacher`]: teacher pretraining on natural-image patches (METHOD.md §4) with knowledge
//!   distillation from a frozen backbone, triplet and compactness losses;
//! - [`config`]: [`TeacherTrainingConfig`], its presets and TOML files;
//! - [`bank`]: the cache of backbone features that makes distillation affordable on a CPU;
//! - [`adam`], [`guard`], [`init`]: optimiser, divergence test, seeded initial weights;
//! - [`checkpoint`], [`summary`]: the files a run writes and what they record;
//! - [`student`]: student training for one scale, score calibration, a trained scale;
//! - [`pipeline`]: a category's run directory (all scales) and the [`Detector`] reading it;
//! - [`one_class`]: students for one-class MNIST / CIFAR-10 (one descriptor per image);
//! - [`models_dir`]: where the shipped teachers are found.

pub mod adam;
pub mod bank;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod guard;
pub mod init;
pub mod models_dir;
pub mod observer;
pub mod one_class;
pub mod pipeline;
pub mod sampling;
pub mod student;
pub mod summary;
pub mod teacher;

/// The device type the trainers take (re-exported so that callers need not depend on candle).
pub use candle_core::Device;

pub use adam::{Adam, AdamConfig, WeightDecayMode};
pub use bank::{BankSnapshot, DistillationBank};
pub use checkpoint::{RunPaths, TeacherFileInfo, export_teacher, load_teacher};
pub use config::{BackboneKind, Preset, TeacherTrainingConfig};
pub use error::{DetectorError, Result};
pub use models_dir::{find_default_teacher, teacher_file_name};
pub use observer::TrainingObserver;
pub use one_class::{
    OneClassCheckpointing, OneClassOutcome, OneClassStep, OneClassStudentConfig, OneClassStudents,
    OneClassSummary,
};
pub use pipeline::{Detector, Prediction, RunSpec, ScaleSpec, TrainReport, train_detector};
pub use sampling::{CropCoverage, StudentSampling};
pub use student::{
    Calibration, ScaleModel, ScoreTerms, StudentRunStart, StudentStepReport, StudentSummary,
    StudentTrainingConfig,
};
pub use summary::{LossTerms, TrainingSummary};
pub use teacher::{IterationReport, RunStart, TeacherTrainer, TrainingOutcome};
