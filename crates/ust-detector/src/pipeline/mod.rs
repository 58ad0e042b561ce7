//! The detector's main job (METHOD.md §5–§6): train students for every scale of one category
//! of an MVTec-layout folder into a run directory, and read a run directory back as a
//! [`Detector`] that turns images into anomaly maps.
//!
//! A run directory holds `run.toml` (the data, the scales with their teacher files, and the
//! resolved training configuration), one `p<P>.safetensors` per trained scale (teacher,
//! students, target statistics, calibration and summary, so the directory is self-contained),
//! a `p<P>.checkpoint.safetensors` while a scale trains, and `train-summary.json`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use ust_models::PatchNet;

use crate::error::{DetectorError, Result};
use crate::preset::Preset;
use crate::student::{StudentSummary, StudentTrainingConfig};

mod detector;
mod quantiles;
mod train;

pub use detector::{Detector, Prediction, mean_over_scales};
pub use quantiles::{QUANTILE_FPRS, ScoreQuantiles, VALIDATION_SCORES_FILE};
pub use train::{TrainingImages, load_training_images, reusable_scale, train_detector};

/// The run directory's description.
pub const RUN_FILE: &str = "run.toml";
/// The training summary of a run directory.
pub const TRAIN_SUMMARY_FILE: &str = "train-summary.json";

/// One scale of a run: its receptive field and teacher file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleSpec {
    pub patch_size: usize,
    pub teacher: PathBuf,
}

impl ScaleSpec {
    /// The scales `patch_sizes` with their teachers: each file of `teachers` under the
    /// receptive field its metadata names, the shipped teacher ([`find_default_teacher`]) for
    /// the others. A file whose p is not among the scales is an error naming it.
    ///
    /// [`find_default_teacher`]: crate::models_dir::find_default_teacher
    pub fn resolve(patch_sizes: &[usize], teachers: &[PathBuf]) -> Result<Vec<Self>> {
        let mut given = Vec::new();
        for t in teachers {
            let p = PatchNet::read_config(t)?.patch_size;
            if !patch_sizes.contains(&p) {
                return Err(DetectorError::bad_file(
                    t,
                    format!("a p={p} teacher, but the scales are {patch_sizes:?}"),
                ));
            }
            given.push((p, t.clone()));
        }
        patch_sizes
            .iter()
            .map(|&p| {
                let teacher = match given.iter().find(|(q, _)| *q == p) {
                    Some((_, t)) => t.clone(),
                    None => crate::models_dir::find_default_teacher(p)?,
                };
                Ok(ScaleSpec {
                    patch_size: p,
                    teacher,
                })
            })
            .collect()
    }
}

/// What `run.toml` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// The category folder (MVTec AD layout: `train/good`, `test/*`, `ground_truth/*`).
    pub data: PathBuf,
    pub scales: Vec<ScaleSpec>,
    pub training: StudentTrainingConfig,
}

impl RunSpec {
    /// Validates before any work: the configuration, at least one scale, distinct receptive
    /// fields, every teacher file readable with the receptive field it is listed under.
    pub fn check(&self) -> Result<()> {
        self.training.check()?;
        if self.scales.is_empty() {
            return Err(DetectorError::InvalidConfig("no scales to train".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for s in &self.scales {
            if !seen.insert(s.patch_size) {
                return Err(DetectorError::InvalidConfig(format!(
                    "scale p={} is listed twice",
                    s.patch_size
                )));
            }
            let architecture = PatchNet::read_config(&s.teacher)?;
            if architecture.patch_size != s.patch_size {
                return Err(DetectorError::bad_file(
                    &s.teacher,
                    format!(
                        "this teacher has receptive field {}, not {}",
                        architecture.patch_size, s.patch_size
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Reads `RUN_DIR/run.toml`.
    pub fn read(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(RUN_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| DetectorError::io(&path, e))?;
        toml::from_str(&text).map_err(|e| DetectorError::ConfigFile {
            path,
            reason: e.to_string(),
        })
    }

    pub(super) fn to_toml(&self) -> Result<String> {
        toml::to_string(self)
            .map_err(|e| DetectorError::InvalidConfig(format!("cannot write run.toml: {e}")))
    }
}

/// What `train-summary.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    pub category: String,
    pub preset: Preset,
    pub train_images: usize,
    pub validation_images: usize,
    /// Every scale's summary (scales trained in an earlier session included).
    pub scales: Vec<StudentSummary>,
    /// Scales copied from another run directory (`reuse`) instead of trained here, with the
    /// file they came from; their summaries (training time included) are that run's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reused: Vec<ReusedScale>,
}

/// A scale [`train_detector`] took from another run directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReusedScale {
    pub patch_size: usize,
    pub from: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use ust_models::PatchNetConfig;

    fn teacher(dir: &Path, p: usize) -> PathBuf {
        let vb = candle_nn::VarBuilder::zeros(DType::F32, &Device::Cpu);
        let path = dir.join(format!("mine-p{p}.safetensors"));
        PatchNet::new(PatchNetConfig::new(p), vb)
            .unwrap()
            .save(&path)
            .unwrap();
        path
    }

    #[test]
    fn given_teachers_go_to_their_scale_and_a_foreign_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let t17 = teacher(dir.path(), 17);
        let got = ScaleSpec::resolve(&[17], std::slice::from_ref(&t17)).unwrap();
        assert_eq!(
            got,
            [ScaleSpec {
                patch_size: 17,
                teacher: t17.clone()
            }]
        );
        let err = ScaleSpec::resolve(&[33, 65], std::slice::from_ref(&t17)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&t17.display().to_string()) && text.contains("a p=17 teacher"),
            "{text}"
        );
    }
}
