//! The weighted teacher pretraining objective λk·Lk + λm·Lm + λc·Lc (METHOD.md §4).

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::compactness::{CompactnessKind, compactness_loss};
use crate::distillation::distillation_loss;
use crate::error::{LossError, Result};
use crate::triplet::triplet_loss;

/// Weights of the teacher's three losses, as read from a config file. Validate with
/// [`TeacherLossWeights::check`] before training.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherLossWeights {
    /// λk, weight of the distillation loss (1 in the paper's best setting).
    pub lambda_k: f64,
    /// λm, weight of the triplet loss (0 in the paper's best setting).
    pub lambda_m: f64,
    /// λc, weight of the compactness loss (1 in the paper's best setting).
    pub lambda_c: f64,
    /// The triplet margin δ (not given in the paper).
    pub margin: f64,
    /// Which off-diagonal sum the compactness loss uses.
    pub compactness: CompactnessKind,
}

impl TeacherLossWeights {
    /// Checks that every λ and the margin are finite and non-negative and that at least one λ
    /// is positive.
    pub fn check(&self) -> Result<CheckedTeacherLossWeights> {
        let fields = [
            ("lambda_k", self.lambda_k),
            ("lambda_m", self.lambda_m),
            ("lambda_c", self.lambda_c),
            ("margin", self.margin),
        ];
        for (name, value) in fields {
            if !(value.is_finite() && value >= 0.0) {
                return Err(LossError::InvalidConfig(format!(
                    "{name} must be finite and non-negative, got {value}"
                )));
            }
        }
        if self.lambda_k == 0.0 && self.lambda_m == 0.0 && self.lambda_c == 0.0 {
            return Err(LossError::InvalidConfig(
                "lambda_k, lambda_m and lambda_c are all 0: nothing to train".into(),
            ));
        }
        Ok(CheckedTeacherLossWeights(*self))
    }
}

/// [`TeacherLossWeights`] that passed [`TeacherLossWeights::check`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckedTeacherLossWeights(TeacherLossWeights);

impl CheckedTeacherLossWeights {
    /// The validated weights.
    pub fn weights(&self) -> &TeacherLossWeights {
        &self.0
    }

    /// λk > 0: the batch needs `decoded` and `distillation_target` (and a backbone).
    pub fn uses_distillation(&self) -> bool {
        self.0.lambda_k > 0.0
    }

    /// λm > 0: the batch needs `positive` and `negative` descriptors.
    pub fn uses_triplet(&self) -> bool {
        self.0.lambda_m > 0.0
    }

    /// λc > 0: the compactness loss is computed on the anchors.
    pub fn uses_compactness(&self) -> bool {
        self.0.lambda_c > 0.0
    }
}

/// The tensors of one teacher training step. Inputs of a term whose λ is 0 may be `None` (and
/// are ignored if given), so a run without a pretrained backbone never computes P(p).
#[derive(Debug, Clone, Copy)]
pub struct TeacherBatch<'a> {
    /// T̂(p), the anchors' descriptors, (N, d). The compactness loss is computed on these.
    pub anchor: &'a Tensor,
    /// T̂(p⁺), (N, d); needed when λm > 0.
    pub positive: Option<&'a Tensor>,
    /// T̂(p⁻), (N, d); needed when λm > 0.
    pub negative: Option<&'a Tensor>,
    /// D(T̂(p)), the decoded anchors, (N, K); needed when λk > 0.
    pub decoded: Option<&'a Tensor>,
    /// P(p), the backbone's pooled features of the anchors, (N, K); needed when λk > 0.
    pub distillation_target: Option<&'a Tensor>,
}

/// Values of the loss terms for logging. The terms are unweighted; `None` for a term whose λ
/// is 0 (it was not computed). `total` is the weighted sum.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TeacherLossTerms {
    pub total: f32,
    pub distillation: Option<f32>,
    pub triplet: Option<f32>,
    pub compactness: Option<f32>,
}

/// The total loss to back-propagate and its terms for logging.
#[derive(Debug, Clone)]
pub struct TeacherLoss {
    /// λk·Lk + λm·Lm + λc·Lc, a scalar tensor in the graph.
    pub total: Tensor,
    pub terms: TeacherLossTerms,
}

fn scalar_f32(t: &Tensor) -> Result<f32> {
    Ok(t.to_dtype(DType::F32)?.to_scalar::<f32>()?)
}

/// Evaluates λk·Lk + λm·Lm + λc·Lc on one batch, skipping every term whose λ is 0.
///
/// Lk is [`distillation_loss`], Lm is [`triplet_loss`] with the configured margin, Lc is
/// [`compactness_loss`] of the anchors with the configured kind. Fails with
/// [`LossError::MissingInput`] if a term with λ > 0 lacks its inputs.
pub fn teacher_loss(
    weights: &CheckedTeacherLossWeights,
    batch: &TeacherBatch,
) -> Result<TeacherLoss> {
    let w = weights.weights();
    let mut total: Option<Tensor> = None;
    let mut add = |term: &Tensor, lambda: f64| -> Result<()> {
        let weighted = (term * lambda)?;
        total = Some(match total.take() {
            Some(t) => (t + weighted)?,
            None => weighted,
        });
        Ok(())
    };

    let mut distillation = None;
    if weights.uses_distillation() {
        let decoded = batch
            .decoded
            .ok_or(LossError::MissingInput("decoded anchors (lambda_k > 0)"))?;
        let target = batch.distillation_target.ok_or(LossError::MissingInput(
            "distillation targets (lambda_k > 0)",
        ))?;
        let lk = distillation_loss(decoded, target)?;
        add(&lk, w.lambda_k)?;
        distillation = Some(scalar_f32(&lk)?);
    }
    let mut triplet = None;
    if weights.uses_triplet() {
        let positive = batch.positive.ok_or(LossError::MissingInput(
            "positive descriptors (lambda_m > 0)",
        ))?;
        let negative = batch.negative.ok_or(LossError::MissingInput(
            "negative descriptors (lambda_m > 0)",
        ))?;
        let lm = triplet_loss(batch.anchor, positive, negative, w.margin)?;
        add(&lm, w.lambda_m)?;
        triplet = Some(scalar_f32(&lm)?);
    }
    let mut compactness = None;
    if weights.uses_compactness() {
        let lc = compactness_loss(batch.anchor, w.compactness)?;
        add(&lc, w.lambda_c)?;
        compactness = Some(scalar_f32(&lc)?);
    }

    // `check` guarantees at least one positive λ, so at least one term was added.
    let total = total.ok_or(LossError::InvalidConfig(
        "no loss term has a positive weight".into(),
    ))?;
    Ok(TeacherLoss {
        terms: TeacherLossTerms {
            total: scalar_f32(&total)?,
            distillation,
            triplet,
            compactness,
        },
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn weights(lambda_k: f64, lambda_m: f64, lambda_c: f64) -> TeacherLossWeights {
        TeacherLossWeights {
            lambda_k,
            lambda_m,
            lambda_c,
            margin: 1.0,
            compactness: CompactnessKind::Squared,
        }
    }

    #[test]
    fn combination_weights_and_skips_terms() {
        let dev = Device::Cpu;
        // Anchors: the compactness example of compactness.rs (squared kind → Lc = 5).
        let anchor = Tensor::new(&[[1f32, 3., 0.], [2., 2., 0.], [3., 1., 3.]], &dev).unwrap();
        // positive = anchor → δ⁺ = 0; negative = anchor + (0.5, 0, 0) → ‖a − n‖² = ‖p − n‖²
        // = 0.25 = δ⁻ for every triplet; hinge = max(0, 1 + 0 − 0.25) = 0.75 → Lm = 0.75.
        let negative = anchor
            .broadcast_add(&Tensor::new(&[0.5f32, 0., 0.], &dev).unwrap())
            .unwrap();
        // decoded vs target differ by 1 in one of two dims for each row → Lk = 1.
        let decoded = Tensor::new(&[[1f32, 0.], [0., 0.], [2., 2.]], &dev).unwrap();
        let target = Tensor::new(&[[0f32, 0.], [0., 1.], [2., 3.]], &dev).unwrap();
        let batch = TeacherBatch {
            anchor: &anchor,
            positive: Some(&anchor),
            negative: Some(&negative),
            decoded: Some(&decoded),
            distillation_target: Some(&target),
        };

        // λk = 2, λm = 4, λc = 0.5: total = 2·1 + 4·0.75 + 0.5·5 = 7.5.
        let w = weights(2.0, 4.0, 0.5).check().unwrap();
        let loss = teacher_loss(&w, &batch).unwrap();
        let t = loss.terms;
        assert_eq!(t.distillation, Some(1.0));
        assert_eq!(t.triplet, Some(0.75));
        assert!((t.compactness.unwrap() - 5.0).abs() < 1e-4, "{t:?}");
        assert!((t.total - 7.5).abs() < 1e-4, "{t:?}");
        assert_eq!(loss.total.to_scalar::<f32>().unwrap(), t.total);

        // The paper's best setting: no triplet inputs are needed and the term is skipped.
        let w = weights(1.0, 0.0, 1.0).check().unwrap();
        let no_triplet = TeacherBatch {
            positive: None,
            negative: None,
            ..batch
        };
        let t = teacher_loss(&w, &no_triplet).unwrap().terms;
        assert_eq!(t.triplet, None);
        assert!((t.total - 6.0).abs() < 1e-4, "{t:?}");

        // Metric learning alone: no backbone needed.
        let w = weights(0.0, 1.0, 0.0).check().unwrap();
        let no_backbone = TeacherBatch {
            decoded: None,
            distillation_target: None,
            ..batch
        };
        let t = teacher_loss(&w, &no_backbone).unwrap().terms;
        assert_eq!((t.distillation, t.compactness), (None, None));
        assert_eq!(t.total, 0.75);

        // A term with λ > 0 and no inputs is a typed error.
        let w = weights(1.0, 0.0, 0.0).check().unwrap();
        let err = teacher_loss(&w, &no_backbone).unwrap_err();
        assert!(matches!(err, LossError::MissingInput(_)), "{err}");
    }

    #[test]
    fn check_rejects_bad_weights() {
        for bad in [
            weights(0.0, 0.0, 0.0),
            weights(-1.0, 0.0, 1.0),
            weights(f64::NAN, 0.0, 1.0),
            weights(1.0, f64::INFINITY, 1.0),
            TeacherLossWeights {
                margin: -0.1,
                ..weights(1.0, 1.0, 1.0)
            },
        ] {
            assert!(
                matches!(bad.check(), Err(LossError::InvalidConfig(_))),
                "{bad:?}"
            );
        }
        let ok = weights(1.0, 0.0, 1.0).check().unwrap();
        assert!(ok.uses_distillation() && !ok.uses_triplet() && ok.uses_compactness());
    }

    #[test]
    fn weights_deserialize_from_config() {
        let json = r#"{"lambda_k": 1, "lambda_m": 0, "lambda_c": 1, "margin": 0.5,
                       "compactness": "abs"}"#;
        let w: TeacherLossWeights = serde_json::from_str(json).unwrap();
        assert_eq!(w.compactness, CompactnessKind::Abs);
        assert_eq!(w.margin, 0.5);
        let typo = r#"{"lambda_k": 1, "lambda_m": 0, "lambda_c": 1, "margin": 0.5,
                       "compactness": "abs", "lambda_x": 2}"#;
        assert!(serde_json::from_str::<TeacherLossWeights>(typo).is_err());
    }
}
