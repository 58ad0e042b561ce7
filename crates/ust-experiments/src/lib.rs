//! Experiments of the paper's tables (Bergmann et al., CVPR 2020, Tables 1–3) declared as TOML
//! files: the schema and its validation ([`schema`]), resolution against the data and
//! expansion into independent jobs ([`resolve`]), stable configuration hashes ([`hash`]), the
//! cell cache and the figures each job reports ([`cell`]), the paper's numbers ([`paper`]) and
//! the run report ([`report`]), and the runner that works through the jobs ([`runner`]) with
//! an executor of their commands ([`subprocess`]: each a subprocess of the `ust` binary, which
//! `ust experiment` hands the runner). Table 2's one-class protocol runs here too ([`oneclass`], and the
//! descriptor-quality check on its 1-NN column, [`quality`]), so that a cell's report is one
//! typed struct for the command that writes it and the runner that reads it. See this crate's
//! README for the file format.

pub mod cell;
pub mod cost;
pub mod error;
pub mod hash;
pub mod oneclass;
pub mod paper;
pub mod presets;
pub mod quality;
pub mod report;
pub mod resolve;
pub mod runner;
pub mod schema;
pub mod subprocess;

pub use cell::{
    CellFailure, CellResult, CellStatus, Figures, ScoreRow, StepRecord, parse_figures, read_status,
};
pub use error::{ExperimentError, Result};
pub use hash::{FileFingerprint, canonical_json, config_hash, fnv1a64};
pub use report::{RunMeta, RunResults, render_markdown};
pub use resolve::{Job, JobKind, Plan, Step, Task, TeacherSource, check_inputs};
pub use schema::{Experiment, ExperimentFile, Overrides, TableKind};

#[cfg(test)]
mod runner_tests;
#[cfg(test)]
mod tests;
