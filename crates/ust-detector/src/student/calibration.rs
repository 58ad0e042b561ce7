//! The anomaly score's terms and their normalisation on the validation images (METHOD.md §6).

use serde::{Deserialize, Serialize};

use crate::error::{DetectorError, Result};

/// Which terms the anomaly score sums. METHOD.md §6 sums both normalised terms (`e+v`, the
/// default); `e` (regression error only) and `v` (predictive variance only) are ablations that
/// show which term carries the detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ScoreTerms {
    #[default]
    #[serde(rename = "e+v")]
    Both,
    #[serde(rename = "e")]
    Error,
    #[serde(rename = "v")]
    Variance,
}

impl ScoreTerms {
    /// Every choice, the paper's first.
    pub const ALL: [ScoreTerms; 3] = [ScoreTerms::Both, ScoreTerms::Error, ScoreTerms::Variance];

    /// The name written in reports and accepted on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Both => "e+v",
            Self::Error => "e",
            Self::Variance => "v",
        }
    }
}

impl std::fmt::Display for ScoreTerms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ScoreTerms {
    type Err = DetectorError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "e+v" | "both" => Ok(Self::Both),
            "e" | "error" => Ok(Self::Error),
            "v" | "variance" => Ok(Self::Variance),
            other => Err(DetectorError::InvalidConfig(format!(
                "unknown score terms {other:?}: expected e+v, e or v"
            ))),
        }
    }
}

/// Mean and standard deviation of the regression error e and the predictive variance v over
/// every pixel of the validation images (METHOD.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub e_mean: f64,
    pub e_std: f64,
    pub v_mean: f64,
    pub v_std: f64,
    /// Validation images and pixels the statistics come from.
    pub images: usize,
    pub pixels: usize,
}

impl Calibration {
    /// Accumulates the statistics of e and v maps (f64 sums).
    pub(crate) fn from_maps<'a>(
        maps: impl IntoIterator<Item = (&'a [f32], &'a [f32])>,
    ) -> Result<Self> {
        let (mut n, mut images) = (0usize, 0usize);
        let (mut se, mut see, mut sv, mut svv) = (0f64, 0f64, 0f64, 0f64);
        for (e, v) in maps {
            images += 1;
            for (&a, &b) in e.iter().zip(v) {
                let (a, b) = (a as f64, b as f64);
                se += a;
                see += a * a;
                sv += b;
                svv += b * b;
            }
            n += e.len();
        }
        if n == 0 {
            return Err(DetectorError::InvalidConfig(
                "no validation pixels to calibrate the scores on".into(),
            ));
        }
        let nf = n as f64;
        let (e_mean, v_mean) = (se / nf, sv / nf);
        // Guard tiny negative variances from cancellation, and a zero spread (one student).
        let e_std = (see / nf - e_mean * e_mean).max(0.0).sqrt().max(1e-12);
        let v_std = (svv / nf - v_mean * v_mean).max(0.0).sqrt().max(1e-12);
        Ok(Self {
            e_mean,
            e_std,
            v_mean,
            v_std,
            images,
            pixels: n,
        })
    }

    /// The anomaly score (e − e_mean)/e_std + (v − v_mean)/v_std, pixel by pixel.
    pub fn score(&self, e: &[f32], v: &[f32]) -> Vec<f32> {
        self.score_terms(ScoreTerms::Both, e, v)
    }

    /// The anomaly score with only the chosen terms: (e − e_mean)/e_std, (v − v_mean)/v_std or
    /// their sum, pixel by pixel.
    pub fn score_terms(&self, terms: ScoreTerms, e: &[f32], v: &[f32]) -> Vec<f32> {
        let ze = |a: f32| (a as f64 - self.e_mean) / self.e_std;
        let zv = |b: f32| (b as f64 - self.v_mean) / self.v_std;
        e.iter()
            .zip(v)
            .map(|(&a, &b)| {
                (match terms {
                    ScoreTerms::Both => ze(a) + zv(b),
                    ScoreTerms::Error => ze(a),
                    ScoreTerms::Variance => zv(b),
                }) as f32
            })
            .collect()
    }
}
