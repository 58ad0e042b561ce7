//! Compactness loss (METHOD.md §4): decorrelates the descriptor dimensions over a batch so that
//! the teacher's 128 dimensions carry as little redundant information as possible.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{Result, batch_dims2};

/// Added to every per-dimension variance before its square root is taken, in the units of the
/// descriptors squared.
///
/// It keeps the correlation of a constant (zero-variance) dimension at exactly 0 instead of 0/0,
/// and keeps its gradient finite (the derivative of 1/√(var + ε) is bounded by ε^(−3/2)/2). For
/// dimensions whose variance is far above ε it changes c_ij by a relative ~ε/var, negligible.
pub const CORRELATION_EPS: f64 = 1e-6;

/// Which off-diagonal sum of the correlation matrix is minimised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompactnessKind {
    /// Σ_{i≠j} c_ij, as printed in the paper. Bounded below by −d; minimising it pushes
    /// correlations negative rather than to zero.
    Plain,
    /// Σ_{i≠j} |c_ij|, as some reimplementations do. At c_ij = 0 candle's gradient of |x| is +1
    /// (a subgradient), finite.
    Abs,
    /// Σ_{i≠j} c_ij², smooth everywhere, zero gradient at zero correlation.
    Squared,
}

/// The d×d correlation matrix of the descriptor dimensions across the batch:
/// c_ij = cov_ij / (√(var_i + ε) · √(var_j + ε)), with population (1/N) moments and
/// ε = [`CORRELATION_EPS`]. A constant dimension has zero correlation with every dimension
/// (its diagonal entry is 0, not 1).
///
/// # Shapes
/// - `descriptors`: (N, d), N ≥ 1
/// - output: (d, d)
pub fn correlation_matrix(descriptors: &Tensor) -> Result<Tensor> {
    let (n, _) = batch_dims2("correlation descriptors", descriptors)?;
    let centered = descriptors.broadcast_sub(&descriptors.mean_keepdim(0)?)?;
    let std = (centered.sqr()?.mean_keepdim(0)? + CORRELATION_EPS)?.sqrt()?;
    let standardized = centered.broadcast_div(&std)?;
    let gram = standardized.t()?.matmul(&standardized)?;
    Ok((gram / n as f64)?)
}

/// Compactness loss Lc: the sum over the off-diagonal entries (i ≠ j, both orders) of the
/// correlation matrix of [`correlation_matrix`], taken plain, in absolute value, or squared
/// according to `kind`. A plain sum, not a mean, as in the paper: it grows with d(d − 1).
///
/// # Shapes
/// - `descriptors`: (N, d), N ≥ 1
/// - output: scalar
pub fn compactness_loss(descriptors: &Tensor, kind: CompactnessKind) -> Result<Tensor> {
    let corr = correlation_matrix(descriptors)?;
    let d = corr.dim(0)?;
    let off_diagonal = Tensor::eye(d, corr.dtype(), corr.device())?.affine(-1.0, 1.0)?;
    let terms = match kind {
        CompactnessKind::Plain => corr,
        CompactnessKind::Abs => corr.abs()?,
        CompactnessKind::Squared => corr.sqr()?,
    };
    Ok((terms * off_diagonal)?.sum_all()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::LossError;
    use crate::test_util::{assert_close, numeric_gradient};
    use candle_core::{DType, Device, Var};

    const KINDS: [CompactnessKind; 3] = [
        CompactnessKind::Plain,
        CompactnessKind::Abs,
        CompactnessKind::Squared,
    ];

    fn loss_value(x: &Tensor, kind: CompactnessKind) -> f64 {
        compactness_loss(x, kind)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    }

    #[test]
    fn compactness_matches_hand_computation() {
        // Columns over N = 3: x0 = (1,2,3), x1 = (3,2,1), x2 = (0,0,3).
        // Centered: x0 → (−1,0,1), x1 → (1,0,−1), x2 → (−1,−1,2).
        // Variances (1/N): 2/3, 2/3, 2.  Covariances: cov01 = −2/3, cov02 = (1+0+2)/3 = 1,
        // cov12 = −1.  Correlations: c01 = −1, c02 = 1/√(2/3·2) = √3/2, c12 = −√3/2.
        // Plain:   2·(−1 + √3/2 − √3/2) = −2
        // Abs:     2·(1 + √3/2 + √3/2) = 2 + 2√3
        // Squared: 2·(1 + 3/4 + 3/4)   = 5
        // ε = 1e-6 perturbs these by a relative ~1e-6.
        let dev = Device::Cpu;
        let x = Tensor::new(&[[1f32, 3., 0.], [2., 2., 0.], [3., 1., 3.]], &dev).unwrap();
        let s3 = 3f64.sqrt();
        let expected = [-2.0, 2.0 + 2.0 * s3, 5.0];
        for (kind, want) in KINDS.into_iter().zip(expected) {
            let got = loss_value(&x, kind);
            assert!((got - want).abs() < 1e-4, "{kind:?}: {got} vs {want}");
        }
        let corr = correlation_matrix(&x).unwrap().to_vec2::<f32>().unwrap();
        assert!((corr[0][1] + 1.0).abs() < 1e-4 && (corr[0][2] - s3 as f32 / 2.0).abs() < 1e-4);
        assert!(
            (corr[2][2] - 1.0).abs() < 1e-4,
            "diagonal of a varying dim is 1"
        );
    }

    #[test]
    fn constant_descriptors_give_finite_values_and_gradients() {
        let dev = Device::Cpu;
        // One constant column next to two varying ones; an all-constant batch; a batch of one.
        let cases = [
            Tensor::new(&[[1f32, 5., 0.], [2., 5., 1.], [3., 5., 0.]], &dev).unwrap(),
            Tensor::full(0.7f32, (4, 3), &dev).unwrap(),
            Tensor::new(&[[1f32, 2., 3.]], &dev).unwrap(),
        ];
        for x in &cases {
            let corr = correlation_matrix(x).unwrap().to_vec2::<f32>().unwrap();
            for (i, row) in corr.iter().enumerate() {
                for (j, &c) in row.iter().enumerate() {
                    assert!(c.is_finite(), "c[{i}][{j}] = {c}");
                }
            }
            for kind in KINDS {
                let var = Var::from_tensor(x).unwrap();
                let loss = compactness_loss(var.as_tensor(), kind).unwrap();
                let value = loss.to_scalar::<f32>().unwrap();
                assert!(value.is_finite(), "{kind:?}: loss {value}");
                let grad = loss.backward().unwrap();
                let grad = grad.get(var.as_tensor()).unwrap();
                for g in grad.flatten_all().unwrap().to_vec1::<f32>().unwrap() {
                    assert!(g.is_finite(), "{kind:?}: gradient {g} on {x}");
                }
            }
        }
        // The constant column (index 1) is uncorrelated with everything: only the pair (0, 2)
        // remains. x0 → (−1,0,1), x2 → (−1/3, 2/3, −1/3): cov = (1/3 − 1/3)/3 = 0 as well,
        // so every kind gives 0.
        for kind in KINDS {
            assert!(loss_value(&cases[0], kind).abs() < 1e-6, "{kind:?}");
        }
    }

    #[test]
    fn compactness_gradient_matches_finite_differences() {
        // N = 5, d = 3, fixed values with all off-diagonal correlations away from 0.
        let dev = Device::Cpu;
        let x: Vec<f64> = vec![
            0.3, 1.2, -0.5, //
            1.1, 0.4, 0.9, //
            -0.7, 2.0, 0.1, //
            0.5, -0.3, 1.7, //
            2.2, 0.8, -1.1,
        ];
        let t = |v: &[f64]| Tensor::from_slice(v, (5, 3), &dev).unwrap();
        let corr = correlation_matrix(&t(&x))
            .unwrap()
            .to_vec2::<f64>()
            .unwrap();
        for (i, j) in [(0, 1), (0, 2), (1, 2)] {
            assert!(
                corr[i][j].abs() > 0.05,
                "c[{i}][{j}] = {} too close to 0",
                corr[i][j]
            );
        }
        for kind in KINDS {
            let var = Var::from_tensor(&t(&x)).unwrap();
            let loss = compactness_loss(var.as_tensor(), kind).unwrap();
            let grads = loss.backward().unwrap();
            let analytic = grads
                .get(var.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            let numeric = numeric_gradient(&x, |v| loss_value(&t(v), kind));
            assert_close(&analytic, &numeric, 1e-6);
        }
    }

    #[test]
    fn compactness_rejects_bad_shapes() {
        let dev = Device::Cpu;
        let v = Tensor::zeros(4, DType::F32, &dev).unwrap();
        let err = compactness_loss(&v, CompactnessKind::Plain).unwrap_err();
        assert!(matches!(err, LossError::BadShape { .. }), "{err}");
        assert!(err.to_string().contains("[4]"), "{err}");
        let empty = Tensor::zeros((0, 4), DType::F32, &dev).unwrap();
        assert!(matches!(
            compactness_loss(&empty, CompactnessKind::Abs),
            Err(LossError::Empty { .. })
        ));
    }

    #[test]
    fn kind_serializes_lowercase() {
        for (name, kind) in ["plain", "abs", "squared"].into_iter().zip(KINDS) {
            let json = format!("\"{name}\"");
            assert_eq!(serde_json::to_string(&kind).unwrap(), json);
            assert_eq!(
                serde_json::from_str::<CompactnessKind>(&json).unwrap(),
                kind
            );
        }
        assert!(serde_json::from_str::<CompactnessKind>("\"Plain\"").is_err());
    }
}
