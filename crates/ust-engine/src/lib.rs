//! The evaluation engine: everything between a scorer and a report, as a library. It evaluates
//! anomaly maps from disk by the official MVTec AD protocol ([`maps`]: `ust eval`), evaluates
//! any [`TestScorer`] — the students' [`ust_detector::Detector`] or Table 1's descriptor
//! baselines — on a category's test split with resumption, reuse of identical evaluations,
//! map saving and progress reported to an [`EvaluationObserver`] ([`split`], [`evaluation`]:
//! `ust evaluate`), and runs Table 1's dense-baseline protocol with its presets and seed
//! streams ([`dense`]: `ust baseline dense`). What it returns are report structs that
//! serialise and deserialise, so a runner reads typed results.
//!
//! - [`scorer`]: the [`TestScorer`] trait and the layout of its maps into evaluated rows;
//! - [`students`]: the trait for the detector (per scale, multi-scale mean, score terms);
//! - [`split`]: the loop over a test split; [`resume`]: the kept scores of interrupted runs;
//!   [`reuse`]: the rows of an identical earlier evaluation;
//! - [`postprocess`]: maps back at the image's size, thresholds, map and picture files;
//! - [`report`], [`html`]: the students' report (JSON, Markdown, HTML gallery);
//! - [`predict`]: maps and verdicts of new images (`ust predict`);
//! - [`presets`]: Table 1's caps and seed streams (the one definition; the runner's cost model
//!   reads them); [`memory`]: peak memory for the reports, this process's and a child's;
//! - [`bench`]: the timing of dense extraction and a student step (`ust bench dense`).

pub mod bench;
pub mod dense;
pub mod error;
pub mod evaluation;
pub mod html;
pub mod maps;
pub mod memory;
pub mod observer;
pub mod postprocess;
pub mod predict;
pub mod presets;
pub mod report;
pub mod resume;
pub mod reuse;
pub mod scorer;
pub mod split;
pub mod students;

pub use dense::{DenseBaselineConfig, DenseBaselineReport, DescriptorScorer, dense_baselines};
pub use error::{EngineError, Result};
pub use evaluation::{EvaluateConfig, evaluate_detector, evaluate_run};
pub use maps::{EvalReport, MapsEvalConfig, evaluate_maps};
pub use observer::{EvaluationObserver, NoProgress};
pub use postprocess::{MapWriter, OutputFormat, resize_to_original, thresholds};
pub use report::{EvaluationReport, ScoreRow, TermRows, fmt_opt, fmt_opt_digits};
pub use scorer::{MapLayout, RowSpec, ScoredImage, TestScorer};
pub use split::{SplitOutcome, SplitSettings, evaluate_split};
pub use students::StudentOptions;
