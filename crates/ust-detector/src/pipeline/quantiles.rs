//! Thresholds of the anomaly score on a run's anomaly-free validation images
//! (`validation-scores.json`): binary masks at a false-positive rate, heatmap scaling, and the
//! image-level verdicts of `ust predict`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{DetectorError, Result};

/// Thresholds of the (multi-scale) score on the validation images.
pub const VALIDATION_SCORES_FILE: &str = "validation-scores.json";

/// The false-positive rates at which [`ScoreQuantiles`] records thresholds.
pub const QUANTILE_FPRS: [f64; 13] = [
    0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 5e-4, 2e-4, 1e-4, 0.0,
];

/// Thresholds of the anomaly score on anomaly-free validation pixels: `threshold[i]` is the
/// smallest score that at most a fraction `fpr[i]` of those pixels exceed (`fpr = 0`: their
/// maximum). Used to binarise maps at a false-positive rate and to scale heatmaps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreQuantiles {
    /// The receptive fields whose mean score this describes.
    pub scales: Vec<usize>,
    pub images: usize,
    pub pixels: usize,
    pub fpr: Vec<f64>,
    pub threshold: Vec<f64>,
    /// Each validation image's image score (the maximum of its map at the model's size),
    /// ascending: the reference of the per-image verdicts of `ust predict` (runs written
    /// before it: empty).
    #[serde(default)]
    pub image_scores: Vec<f64>,
}

impl ScoreQuantiles {
    /// The table of `scores`: all validation pixels, image after image (`images` equal
    /// parts, whose maxima are the image scores).
    pub fn from_scores(scales: Vec<usize>, images: usize, mut scores: Vec<f32>) -> Result<Self> {
        let mut image_scores: Vec<f64> = if images > 0 && scores.len().is_multiple_of(images) {
            scores
                .chunks(scores.len() / images)
                .map(|c| c.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64)
                .collect()
        } else {
            Vec::new()
        };
        image_scores.sort_by(f64::total_cmp);
        if scores.is_empty() {
            return Err(DetectorError::InvalidConfig("no validation scores".into()));
        }
        if let Some(i) = scores.iter().position(|v| !v.is_finite()) {
            return Err(DetectorError::InvalidConfig(format!(
                "validation score {i} is {}",
                scores[i]
            )));
        }
        scores.sort_by(f32::total_cmp);
        let n = scores.len();
        let threshold = QUANTILE_FPRS
            .iter()
            .map(|&f| {
                // At most floor(f·n) pixels may lie above the threshold.
                let above = (f * n as f64).floor() as usize;
                scores[n - 1 - above.min(n - 1)] as f64
            })
            .collect();
        Ok(Self {
            scales,
            images,
            pixels: n,
            fpr: QUANTILE_FPRS.to_vec(),
            threshold,
            image_scores,
        })
    }

    /// The image-score threshold at image-level false-positive rate `fpr` on the validation
    /// images: the smallest of their scores that at most ⌊fpr · n⌋ of them exceed (below
    /// 1 / n that is their maximum: with few validation images the rate is coarse). `None`
    /// for a run written before the image scores were kept.
    pub fn image_threshold_at(&self, fpr: f64) -> Result<Option<f64>> {
        if !(0.0..1.0).contains(&fpr) {
            return Err(DetectorError::InvalidConfig(format!(
                "image false-positive rate {fpr} is not in [0, 1)"
            )));
        }
        let n = self.image_scores.len();
        if n == 0 {
            return Ok(None);
        }
        let above = ((fpr * n as f64).floor() as usize).min(n - 1);
        Ok(Some(self.image_scores[n - 1 - above]))
    }

    /// The threshold at `fpr`, interpolated linearly between the recorded rates.
    pub fn threshold_at(&self, fpr: f64) -> Result<f64> {
        if !(0.0..=0.5).contains(&fpr) {
            return Err(DetectorError::InvalidConfig(format!(
                "false-positive rate {fpr} is not in [0, 0.5]"
            )));
        }
        for i in 0..self.fpr.len() - 1 {
            let (hi_f, lo_f) = (self.fpr[i], self.fpr[i + 1]);
            if fpr <= hi_f && fpr >= lo_f {
                let t = if hi_f > lo_f {
                    (fpr - lo_f) / (hi_f - lo_f)
                } else {
                    0.0
                };
                return Ok(self.threshold[i + 1] + t * (self.threshold[i] - self.threshold[i + 1]));
            }
        }
        Ok(self.threshold[self.threshold.len() - 1])
    }

    /// The median validation score (fpr 0.5).
    pub fn median(&self) -> f64 {
        self.threshold[0]
    }

    /// The highest validation score.
    pub fn max(&self) -> f64 {
        self.threshold[self.threshold.len() - 1]
    }

    /// Reads `RUN_DIR/validation-scores.json`.
    pub fn read(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(VALIDATION_SCORES_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| DetectorError::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| DetectorError::bad_file(&path, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_quantiles_follow_the_false_positive_rate() {
        // Scores 1..=1000 (shuffled): at most floor(f·1000) of them may lie above the threshold.
        let mut scores: Vec<f32> = (1..=1000).map(|v| v as f32).collect();
        scores.reverse();
        let q = ScoreQuantiles::from_scores(vec![33], 2, scores).unwrap();
        assert_eq!(q.pixels, 1000);
        assert_eq!(q.median(), 500.0); // 500 scores above 500
        assert_eq!(q.max(), 1000.0);
        let at = |f: f64| q.threshold[q.fpr.iter().position(|&x| x == f).unwrap()];
        assert_eq!(at(0.001), 999.0);
        assert_eq!(at(0.002), 998.0);
        assert_eq!(at(0.1), 900.0);
        // Between recorded rates: linear.
        assert!((q.threshold_at(0.0015).unwrap() - 998.5).abs() < 1e-9);
        assert_eq!(q.threshold_at(0.1).unwrap(), 900.0);
        assert!(q.threshold_at(0.7).is_err());
        // Two images of 500 pixels: image scores 1000 (the first) and 500, ascending.
        assert_eq!(q.image_scores, [500.0, 1000.0]);
        assert_eq!(q.image_threshold_at(0.0).unwrap(), Some(1000.0));
        assert_eq!(q.image_threshold_at(0.49).unwrap(), Some(1000.0));
        assert_eq!(q.image_threshold_at(0.5).unwrap(), Some(500.0));
        assert!(q.image_threshold_at(1.0).is_err());
        assert!(ScoreQuantiles::from_scores(vec![33], 1, vec![1.0, f32::NAN]).is_err());
        assert!(ScoreQuantiles::from_scores(vec![33], 0, vec![]).is_err());
    }
}
