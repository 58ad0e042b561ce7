//! Per-pixel scores of a student ensemble (METHOD.md §6). Not losses, but the same kind of
//! tensor math: computed here so that training and scoring agree on every definition.

use candle_core::Tensor;

use crate::error::{LossError, Result, ensure_same_shape};

/// The two per-pixel uncertainty scores of a student ensemble.
#[derive(Debug, Clone)]
pub struct EnsembleScores {
    /// e = ‖μ̄ − ŷ‖² per pixel, shape (B, H, W).
    pub regression_error: Tensor,
    /// v = (1/M) Σ_i ‖S_i‖² − ‖μ̄‖² per pixel, shape (B, H, W).
    pub predictive_variance: Tensor,
}

fn check_ensemble(predictions: &[Tensor]) -> Result<&Tensor> {
    let first = predictions.first().ok_or(LossError::Empty {
        what: "student ensemble",
    })?;
    first.dims4().map_err(|_| LossError::BadShape {
        what: "student prediction",
        expected: "(B, d, H, W)",
        got: first.shape().clone(),
    })?;
    for p in &predictions[1..] {
        ensure_same_shape("student ensemble (first vs another student)", first, p)?;
    }
    Ok(first)
}

/// The mean prediction μ̄ = (1/M) Σ_i S_i of M ≥ 1 students.
///
/// # Shapes
/// - `predictions`: M tensors, each (B, d, H, W)
/// - output: (B, d, H, W)
pub fn ensemble_mean(predictions: &[Tensor]) -> Result<Tensor> {
    let first = check_ensemble(predictions)?;
    let mut sum = first.clone();
    for p in &predictions[1..] {
        sum = (sum + p)?;
    }
    Ok((sum / predictions.len() as f64)?)
}

/// Regression error e = ‖μ̄ − ŷ‖² (summed over d) at every pixel.
///
/// # Shapes
/// - `mean_prediction` = μ̄: (B, d, H, W); `target` = ŷ: (B, d, H, W)
/// - output: (B, H, W)
pub fn regression_error(mean_prediction: &Tensor, target: &Tensor) -> Result<Tensor> {
    check_ensemble(std::slice::from_ref(mean_prediction))?;
    ensure_same_shape(
        "regression error (mean prediction vs target)",
        mean_prediction,
        target,
    )?;
    Ok((mean_prediction - target)?.sqr()?.sum(1)?)
}

/// Predictive variance v = (1/M) Σ_i ‖S_i‖² − ‖μ̄‖² at every pixel.
///
/// Evaluated as the algebraically identical (1/M) Σ_i ‖S_i − μ̄‖², which cannot come out
/// negative through cancellation when the students nearly agree.
///
/// # Shapes
/// - `predictions`: M ≥ 1 tensors, each (B, d, H, W); `mean_prediction` = μ̄ of them
/// - output: (B, H, W)
pub fn predictive_variance(predictions: &[Tensor], mean_prediction: &Tensor) -> Result<Tensor> {
    let first = check_ensemble(predictions)?;
    ensure_same_shape(
        "predictive variance (student vs mean)",
        first,
        mean_prediction,
    )?;
    let mut sum = (first - mean_prediction)?.sqr()?.sum(1)?;
    for p in &predictions[1..] {
        sum = (sum + (p - mean_prediction)?.sqr()?.sum(1)?)?;
    }
    Ok((sum / predictions.len() as f64)?)
}

/// Both scores of an ensemble against the normalized teacher target.
///
/// # Shapes
/// - `predictions`: M ≥ 1 tensors, each (B, d, H, W); `target` = ŷ: (B, d, H, W)
/// - output: two (B, H, W) maps
pub fn ensemble_scores(predictions: &[Tensor], target: &Tensor) -> Result<EnsembleScores> {
    let mean = ensemble_mean(predictions)?;
    Ok(EnsembleScores {
        regression_error: regression_error(&mean, target)?,
        predictive_variance: predictive_variance(predictions, &mean)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn scores_match_hand_computation() {
        // M = 2 students, B = 1, d = 2, H = 1, W = 2; vectors listed per pixel.
        //   S1: pixel 0 = (1,0), pixel 1 = (2,2);  S2: pixel 0 = (3,0), pixel 1 = (0,4)
        //   μ̄:  pixel 0 = (2,0), pixel 1 = (1,3);  ŷ:  pixel 0 = (2,1), pixel 1 = (0,0)
        // e: pixel 0 = 0 + 1 = 1;  pixel 1 = 1 + 9 = 10
        // v (paper's formula): pixel 0 = (1 + 9)/2 − 4 = 1;  pixel 1 = (8 + 16)/2 − 10 = 2
        let dev = Device::Cpu;
        let s1 = Tensor::new(&[[[[1f32, 2.]], [[0., 2.]]]], &dev).unwrap();
        let s2 = Tensor::new(&[[[[3f32, 0.]], [[0., 4.]]]], &dev).unwrap();
        let target = Tensor::new(&[[[[2f32, 0.]], [[1., 0.]]]], &dev).unwrap();
        let scores = ensemble_scores(&[s1.clone(), s2.clone()], &target).unwrap();
        assert_eq!(scores.regression_error.dims(), [1, 1, 2]);
        assert_eq!(
            scores.regression_error.to_vec3::<f32>().unwrap(),
            [[[1.0, 10.0]]]
        );
        assert_eq!(
            scores.predictive_variance.to_vec3::<f32>().unwrap(),
            [[[1.0, 2.0]]]
        );
        let mean = ensemble_mean(&[s1, s2]).unwrap();
        assert_eq!(mean.dims(), [1, 2, 1, 2]);
        assert_eq!(
            mean.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [2.0, 1.0, 0.0, 3.0]
        );
    }

    #[test]
    fn single_student_has_zero_variance() {
        let dev = Device::Cpu;
        let s = Tensor::new(&[[[[1f32, -2.]], [[0.5, 3.]]]], &dev).unwrap();
        let zero = s.zeros_like().unwrap();
        let scores = ensemble_scores(std::slice::from_ref(&s), &zero).unwrap();
        // e = ‖S‖²: pixel 0 = 1 + 0.25, pixel 1 = 4 + 9.
        assert_eq!(
            scores.regression_error.to_vec3::<f32>().unwrap(),
            [[[1.25, 13.0]]]
        );
        assert_eq!(
            scores.predictive_variance.to_vec3::<f32>().unwrap(),
            [[[0.0, 0.0]]]
        );
    }

    #[test]
    fn scores_reject_bad_ensembles() {
        let dev = Device::Cpu;
        let a = Tensor::zeros((1, 3, 4, 4), DType::F32, &dev).unwrap();
        let b = Tensor::zeros((1, 3, 4, 5), DType::F32, &dev).unwrap();
        assert!(matches!(
            ensemble_scores(&[], &a),
            Err(LossError::Empty { .. })
        ));
        let err = ensemble_scores(&[a.clone(), b.clone()], &a).unwrap_err();
        assert!(err.to_string().contains("[1, 3, 4, 5]"), "{err}");
        let err = ensemble_scores(std::slice::from_ref(&a), &b).unwrap_err();
        assert!(err.to_string().contains("target"), "{err}");
        let flat = Tensor::zeros((3, 4), DType::F32, &dev).unwrap();
        assert!(matches!(
            ensemble_mean(&[flat]),
            Err(LossError::BadShape { .. })
        ));
    }
}
