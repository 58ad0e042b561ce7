//! A trained scale read back from its file, and the raw scores e and v of an image.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use ust_losses::ensemble_scores;
use ust_models::{DenseExtractor, PatchNet, PatchNetConfig};

use super::*;
use crate::error::{DetectorError, Result};
use crate::training::checkpoint::read_safetensors;

/// The regression error e and predictive variance v of one image (METHOD.md §6).
///
/// # Shapes
/// `image` (1, 3, H, W) → two H·W maps, row-major
pub fn raw_scores(
    teacher: &DenseExtractor,
    students: &[DenseExtractor],
    mean: &Tensor,
    std: &Tensor,
    image: &Tensor,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let target = teacher
        .extract(image)?
        .broadcast_sub(mean)?
        .broadcast_div(std)?;
    let predictions = students
        .iter()
        .map(|s| s.extract(image))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let scores = ensemble_scores(&predictions, &target)?;
    Ok((
        scores.regression_error.flatten_all()?.to_vec1::<f32>()?,
        scores.predictive_variance.flatten_all()?.to_vec1::<f32>()?,
    ))
}

/// The tensor of a scale file holding its validation images' normalised scores.
pub const VALIDATION_SCORES_TENSOR: &str = "validation.scores";

/// A trained scale read back from its file: frozen teacher, students, target statistics and
/// calibration.
#[derive(Debug, Clone)]
pub struct ScaleModel {
    /// The normalised scores of the run's validation images, (images, S·S) row-major, as
    /// calibration computed them; `None` in files written before they were kept.
    pub validation_scores: Option<(usize, Vec<f32>)>,
    pub teacher: DenseExtractor,
    pub students: Vec<DenseExtractor>,
    /// μ and σ of the teacher's descriptors, (1, d, 1, 1).
    pub mean: Tensor,
    pub std: Tensor,
    pub calibration: Calibration,
    pub training: StudentTrainingConfig,
    pub summary: StudentSummary,
}

impl ScaleModel {
    /// Reads a file written by [`ScaleTrainer::run`].
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let (tensors, meta) = read_safetensors(path)?;
        if meta.get(KEY_MODEL).map(String::as_str) != Some(SCALE_MODEL_VALUE) {
            return Err(DetectorError::bad_file(
                path,
                "not a trained student-teacher scale (ust train writes these)",
            ));
        }
        let entry = |key: &str| {
            meta.get(key)
                .ok_or_else(|| DetectorError::bad_file(path, format!("metadata has no {key:?}")))
        };
        let architecture: PatchNetConfig = serde_json::from_str(entry(KEY_ARCHITECTURE)?)
            .map_err(|e| DetectorError::bad_file(path, format!("bad architecture: {e}")))?;
        let training: StudentTrainingConfig = toml::from_str(entry(KEY_TRAINING)?)
            .map_err(|e| DetectorError::bad_file(path, format!("bad configuration: {e}")))?;
        let calibration: Calibration = serde_json::from_str(entry(KEY_CALIBRATION)?)
            .map_err(|e| DetectorError::bad_file(path, format!("bad calibration: {e}")))?;
        let summary: StudentSummary = serde_json::from_str(entry(KEY_SUMMARY)?)
            .map_err(|e| DetectorError::bad_file(path, format!("bad summary: {e}")))?;
        let mut tensors: HashMap<String, Tensor> = tensors
            .into_iter()
            .map(|(k, t)| Ok((k, t.to_device(device)?.to_dtype(DType::F32)?)))
            .collect::<candle_core::Result<_>>()?;
        let validation_scores = match tensors.remove(VALIDATION_SCORES_TENSOR) {
            Some(t) => {
                let bad = |e: candle_core::Error| {
                    DetectorError::bad_file(path, format!("{VALIDATION_SCORES_TENSOR}: {e}"))
                };
                let (n, _) = t.dims2().map_err(bad)?;
                Some((n, t.flatten_all().and_then(|t| t.to_vec1()).map_err(bad)?))
            }
            None => None,
        };
        let d = architecture.descriptor_dim;
        let stat = |name: &str| -> Result<Tensor> {
            let t = tensors
                .get(name)
                .ok_or_else(|| DetectorError::bad_file(path, format!("missing tensor {name}")))?;
            t.reshape((1, d, 1, 1))
                .map_err(|e| DetectorError::bad_file(path, format!("{name}: {e}")))
        };
        let (mean, std) = (stat("target.mean")?, stat("target.std")?);
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let build = |prefix: &str| -> Result<DenseExtractor> {
            let net = PatchNet::new(architecture.clone(), vb.pp(prefix))
                .map_err(|e| DetectorError::bad_file(path, format!("{prefix}: {e}")))?;
            Ok(DenseExtractor::new(net, training.dense_config()))
        };
        let teacher = build("teacher")?;
        let students = (0..summary.students)
            .map(|m| build(&format!("student{m}")))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            validation_scores,
            teacher,
            students,
            mean,
            std,
            calibration,
            training,
            summary,
        })
    }

    /// The receptive field.
    pub fn patch_size(&self) -> usize {
        self.teacher.net().patch_size()
    }

    /// The normalised anomaly score of every pixel of `image` (at the model's image size).
    ///
    /// # Shapes
    /// `image` (1, 3, H, W) → H·W scores, row-major
    pub fn anomaly_scores(&self, image: &Tensor) -> Result<Vec<f32>> {
        self.anomaly_scores_with(image, ScoreTerms::Both)
    }

    /// [`Self::anomaly_scores`] with only the chosen terms of the score.
    ///
    /// # Shapes
    /// `image` (1, 3, H, W) → H·W scores, row-major
    pub fn anomaly_scores_with(&self, image: &Tensor, terms: ScoreTerms) -> Result<Vec<f32>> {
        let mut maps = self.anomaly_scores_for(image, &[terms])?;
        Ok(maps.remove(0))
    }

    /// The scores under each of `terms` (one map per entry), the networks run once: the
    /// ablation of the score's terms costs no more than the score itself.
    ///
    /// # Shapes
    /// `image` (1, 3, H, W) → per entry of `terms` H·W scores, row-major
    pub fn anomaly_scores_for(
        &self,
        image: &Tensor,
        terms: &[ScoreTerms],
    ) -> Result<Vec<Vec<f32>>> {
        let (e, v) = raw_scores(&self.teacher, &self.students, &self.mean, &self.std, image)?;
        Ok(terms
            .iter()
            .map(|&t| self.calibration.score_terms(t, &e, &v))
            .collect())
    }
}
