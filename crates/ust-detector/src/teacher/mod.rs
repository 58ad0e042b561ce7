//! Teacher pretraining (METHOD.md §4): the trainer, its configuration and presets, the bank
//! of cached backbone features that makes distillation affordable on a CPU, and the files a
//! run writes (checkpoints, the teacher file and its summary).
//!
//! - [`TeacherTrainer`] (`trainer.rs`): the training loop;
//! - [`config`]: [`TeacherTrainingConfig`]; its presets and TOML files in `presets.rs`;
//! - [`bank`]: the [`DistillationBank`];
//! - `dense.rs`: the targets of dense distillation (a window's feature-map cells);
//! - [`files`]: checkpoints, the teacher file, [`load_teacher`], [`export_teacher`];
//! - [`summary`]: what a teacher file records of its training.

pub mod bank;
pub mod config;
mod dense;
pub mod files;
mod presets;
pub mod summary;
mod trainer;

pub use bank::DistillationBank;
pub use config::TeacherTrainingConfig;
pub use files::{export_teacher, load_teacher};
pub use trainer::{IterationReport, RunStart, TeacherTrainer, TrainingOutcome, load_backbone};
