//! What a finished (or checkpointed) run reports: loss terms and the training summary stored
//! in the teacher file's metadata.

use serde::{Deserialize, Serialize};
use ust_losses::TeacherLossTerms;

use crate::preset::Preset;

/// The loss terms of one step: the weighted total and each unweighted term (`None` when its λ
/// is 0 and it was not computed).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossTerms {
    pub total: f64,
    pub distillation: Option<f64>,
    pub triplet: Option<f64>,
    pub compactness: Option<f64>,
}

impl From<TeacherLossTerms> for LossTerms {
    fn from(t: TeacherLossTerms) -> Self {
        Self {
            total: t.total.into(),
            distillation: t.distillation.map(f64::from),
            triplet: t.triplet.map(f64::from),
            compactness: t.compactness.map(f64::from),
        }
    }
}

impl LossTerms {
    /// The element-wise mean of `terms` (`None` for an empty slice).
    pub fn mean(terms: &[LossTerms]) -> Option<LossTerms> {
        let n = terms.len();
        if n == 0 {
            return None;
        }
        let avg = |f: fn(&LossTerms) -> Option<f64>| -> Option<f64> {
            let vals: Vec<f64> = terms.iter().filter_map(f).collect();
            (vals.len() == n).then(|| vals.iter().sum::<f64>() / n as f64)
        };
        Some(LossTerms {
            total: terms.iter().map(|t| t.total).sum::<f64>() / n as f64,
            distillation: avg(|t| t.distillation),
            triplet: avg(|t| t.triplet),
            compactness: avg(|t| t.compactness),
        })
    }

    /// `total 1.23 | k 0.45 | c 0.78` (only the computed terms).
    pub fn compact(&self) -> String {
        let mut s = format!("total {:.4}", self.total);
        for (name, v) in [
            ("k", self.distillation),
            ("m", self.triplet),
            ("c", self.compactness),
        ] {
            if let Some(v) = v {
                s.push_str(&format!(" | {name} {v:.4}"));
            }
        }
        s
    }
}

/// The training summary written into the teacher file (JSON under
/// [`super::files::METADATA_SUMMARY_KEY`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    /// Optimiser steps done.
    pub iterations: usize,
    /// Patches (triplets when λm > 0) per step.
    pub batch_size: usize,
    /// The last step's loss terms.
    pub final_terms: LossTerms,
    /// Their mean over the last `recent_window` steps (less noisy than one batch).
    pub recent_mean_terms: LossTerms,
    pub recent_window: usize,
    /// The image folder and how many images it held.
    pub data_folder: String,
    pub data_images: usize,
    /// The distillation backbone (`None` when λk = 0), its weights file and input size.
    pub backbone: Option<String>,
    /// Wall-clock seconds of training over all sessions (resumes included).
    pub duration_s: f64,
    /// Training patches per second over the run (batch_size · iterations / duration_s).
    pub patches_per_s: f64,
    /// Sessions the run took (1 + resumes).
    pub sessions: usize,
    /// The preset the configuration started from.
    pub preset: Preset,
    /// The version of this crate that trained it.
    pub trainer_version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_display_of_terms() {
        let a = LossTerms {
            total: 3.0,
            distillation: Some(1.0),
            triplet: None,
            compactness: Some(2.0),
        };
        let b = LossTerms {
            total: 5.0,
            distillation: Some(2.0),
            triplet: None,
            compactness: Some(3.0),
        };
        let m = LossTerms::mean(&[a, b]).unwrap();
        assert_eq!(
            m,
            LossTerms {
                total: 4.0,
                distillation: Some(1.5),
                triplet: None,
                compactness: Some(2.5)
            }
        );
        assert_eq!(m.compact(), "total 4.0000 | k 1.5000 | c 2.5000");
        assert_eq!(LossTerms::mean(&[]), None);
    }
}
