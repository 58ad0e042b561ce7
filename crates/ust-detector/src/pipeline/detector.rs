//! A trained run directory read back as a [`Detector`]: every scale's normalised anomaly
//! scores and their pixel-wise mean over the scales (METHOD.md §6).

use std::path::Path;

use candle_core::{Device, Tensor};
use ust_data::image_io::load_rgb;
use ust_data::{LoadedImage, Size};

use super::{RunSpec, ScoreQuantiles};
use crate::error::{DetectorError, Result};
use crate::student::{ScaleModel, ScalePaths, ScoreTerms};

/// The pixel-wise mean of equally long score maps (METHOD.md §6: multi-scale).
pub fn mean_over_scales(maps: &[Vec<f32>]) -> Vec<f32> {
    let Some(first) = maps.first() else {
        return Vec::new();
    };
    let k = maps.len() as f32;
    (0..first.len())
        .map(|i| maps.iter().map(|m| m[i]).sum::<f32>() / k)
        .collect()
}

/// A trained detector: the scales of a run directory.
#[derive(Debug, Clone)]
pub struct Detector {
    pub spec: RunSpec,
    pub scales: Vec<ScaleModel>,
    /// The terms each scale's score sums ([`ScoreTerms::Both`] unless set for an ablation).
    pub score_terms: ScoreTerms,
}

/// An anomaly map at an image's own size and at the model's size.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// Row-major scores at the model's `image_size × image_size`.
    pub model_scores: Vec<f32>,
    /// Every scale's scores at the model's size (order of [`Detector::patch_sizes`]).
    pub per_scale: Vec<Vec<f32>>,
    pub model_size: usize,
    /// The image as loaded (pixels at the model's size, and its original size).
    pub image: LoadedImage,
}

impl Detector {
    /// Loads every trained scale of `run_dir`, or only those in `only` (receptive fields).
    pub fn load(run_dir: &Path, only: Option<&[usize]>, device: &Device) -> Result<Self> {
        let spec = RunSpec::read(run_dir)?;
        let mut scales = Vec::new();
        for s in &spec.scales {
            if only.is_some_and(|o| !o.contains(&s.patch_size)) {
                continue;
            }
            let path = ScalePaths::in_run_dir(run_dir, s.patch_size).model;
            if !path.is_file() {
                return Err(DetectorError::bad_file(
                    &path,
                    format!(
                        "scale p={} is not trained yet (run ust train --resume)",
                        s.patch_size
                    ),
                ));
            }
            scales.push(ScaleModel::load(&path, device)?);
        }
        if let Some(o) = only {
            for p in o {
                if !scales.iter().any(|s| s.patch_size() == *p) {
                    return Err(DetectorError::InvalidConfig(format!(
                        "{} has no scale p={p} (it has {:?})",
                        run_dir.display(),
                        spec.scales.iter().map(|s| s.patch_size).collect::<Vec<_>>()
                    )));
                }
            }
        }
        if scales.is_empty() {
            return Err(DetectorError::InvalidConfig(format!(
                "{} has no trained scale",
                run_dir.display()
            )));
        }
        Ok(Self {
            spec,
            scales,
            score_terms: ScoreTerms::Both,
        })
    }

    /// The receptive fields of the loaded scales.
    pub fn patch_sizes(&self) -> Vec<usize> {
        self.scales.iter().map(ScaleModel::patch_size).collect()
    }

    /// The validation thresholds of the run directory when they describe exactly the loaded
    /// scales (`None` for another subset).
    pub fn quantiles(&self, run_dir: &Path) -> Result<Option<ScoreQuantiles>> {
        // The kept thresholds are of the full score; they say nothing about one term alone.
        if self.score_terms != ScoreTerms::Both {
            return Ok(None);
        }
        let q = ScoreQuantiles::read(run_dir)?;
        Ok((q.scales == self.patch_sizes()).then_some(q))
    }

    /// The side images are resized to.
    pub fn image_size(&self) -> usize {
        self.spec.training.image_size
    }

    /// The anomaly scores of an image already at the model's size: per scale the normalised
    /// score of METHOD.md §6, then their mean over the scales.
    ///
    /// # Shapes
    /// `image` (1, 3, S, S) → S·S scores, row-major
    pub fn scores(&self, image: &Tensor) -> Result<Vec<f32>> {
        Ok(mean_over_scales(&self.scores_per_scale(image)?))
    }

    /// Every scale's normalised scores (in the order of [`Detector::patch_sizes`]).
    ///
    /// # Shapes
    /// `image` (1, 3, S, S) → per scale S·S scores, row-major
    pub fn scores_per_scale(&self, image: &Tensor) -> Result<Vec<Vec<f32>>> {
        Ok(self.scores_per_term(image, &[self.score_terms])?.remove(0))
    }

    /// Every scale's normalised scores under each of `terms` (`[term][scale]`), each scale's
    /// networks run once for all of them.
    ///
    /// # Shapes
    /// `image` (1, 3, S, S) → per term, per scale S·S scores, row-major
    pub fn scores_per_term(
        &self,
        image: &Tensor,
        terms: &[ScoreTerms],
    ) -> Result<Vec<Vec<Vec<f32>>>> {
        let mut out = vec![Vec::with_capacity(self.scales.len()); terms.len()];
        for scale in &self.scales {
            for (t, map) in scale
                .anomaly_scores_for(image, terms)?
                .into_iter()
                .enumerate()
            {
                out[t].push(map);
            }
        }
        Ok(out)
    }

    /// Loads an image file, resizes it to the model's size and scores it.
    pub fn predict_file(&self, path: &Path, device: &Device) -> Result<Prediction> {
        Ok(self
            .predict_file_terms(path, device, &[self.score_terms])?
            .remove(0))
    }

    /// [`Detector::predict_file`] under each of `terms` (one prediction per entry; the
    /// networks run once).
    pub fn predict_file_terms(
        &self,
        path: &Path,
        device: &Device,
        terms: &[ScoreTerms],
    ) -> Result<Vec<Prediction>> {
        let size = self.image_size();
        let image = load_rgb(path, Some(Size::new(size as u32, size as u32)))?;
        let tensor = image.image.to_tensor(device)?.unsqueeze(0)?;
        Ok(self
            .scores_per_term(&tensor, terms)?
            .into_iter()
            .map(|per_scale| Prediction {
                model_scores: mean_over_scales(&per_scale),
                per_scale,
                model_size: size,
                image: image.clone(),
            })
            .collect())
    }

    /// The prediction of an image file from per-scale scores computed earlier by
    /// [`Detector::predict_file`] (an interrupted evaluation's): the image is loaded for its
    /// size and pixels, the networks are not run. Scores of another shape are an error.
    pub fn prediction_from_scores(
        &self,
        path: &Path,
        per_scale: Vec<Vec<f32>>,
    ) -> Result<Prediction> {
        let size = self.image_size();
        if per_scale.len() != self.scales.len() || per_scale.iter().any(|m| m.len() != size * size)
        {
            return Err(DetectorError::InvalidConfig(format!(
                "{}: stored scores do not match {} scale(s) at {size}×{size}",
                path.display(),
                self.scales.len()
            )));
        }
        let image = load_rgb(path, Some(Size::new(size as u32, size as u32)))?;
        Ok(Prediction {
            model_scores: mean_over_scales(&per_scale),
            per_scale,
            model_size: size,
            image,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_scale_is_the_pixelwise_mean() {
        let m = mean_over_scales(&[vec![1.0, 2.0], vec![3.0, 6.0], vec![2.0, 1.0]]);
        assert_eq!(m, vec![2.0, 3.0]);
        assert!(mean_over_scales(&[]).is_empty());
    }
}
