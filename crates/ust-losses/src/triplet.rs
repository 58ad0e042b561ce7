//! Metric learning (METHOD.md §4): a triplet margin loss with the anchor swap of Balntas et al.
//! (2016), as used for the teacher.

use candle_core::Tensor;

use crate::error::{LossError, Result, batch_dims2, ensure_same_shape};

/// Triplet loss with anchor swap:
/// Lm = (1/N) Σ_n max(0, δ + δ⁺_n − δ⁻_n), with δ⁺ = ‖a − p‖² and
/// δ⁻ = min(‖a − n‖², ‖p − n‖²) (squared ℓ2 norms, summed over the descriptor dimensions).
///
/// `margin` is δ; it must be finite and non-negative. At the kinks (hinge exactly at 0, or the
/// two negative distances equal) candle picks a one-sided or averaged gradient, always finite.
///
/// # Shapes
/// - `anchor` = T̂(p), `positive` = T̂(p⁺), `negative` = T̂(p⁻): each (N, d), N ≥ 1
/// - output: scalar
pub fn triplet_loss(
    anchor: &Tensor,
    positive: &Tensor,
    negative: &Tensor,
    margin: f64,
) -> Result<Tensor> {
    if !(margin.is_finite() && margin >= 0.0) {
        return Err(LossError::InvalidConfig(format!(
            "triplet margin must be finite and non-negative, got {margin}"
        )));
    }
    batch_dims2("triplet anchor", anchor)?;
    ensure_same_shape("triplet loss (anchor vs positive)", anchor, positive)?;
    ensure_same_shape("triplet loss (anchor vs negative)", anchor, negative)?;
    let sq_dist = |x: &Tensor, y: &Tensor| (x - y)?.sqr()?.sum(1);
    let d_pos = sq_dist(anchor, positive)?;
    let d_neg = sq_dist(anchor, negative)?.minimum(&sq_dist(positive, negative)?)?;
    let hinge = ((d_pos - d_neg)? + margin)?.relu()?;
    Ok(hinge.mean_all()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_close, numeric_gradient};
    use candle_core::{DType, Device, Var};

    #[test]
    fn triplet_loss_matches_hand_computation() {
        // Triplet 0 (d = 2): a = (0,0), p = (1,0), n = (3,0).
        //   δ⁺ = 1; ‖a−n‖² = 9, ‖p−n‖² = 4 → δ⁻ = 4 (the swap picks p as anchor);
        //   max(0, 1 + 1 − 4) = 0.
        // Triplet 1: a = (0,0), p = (0,2), n = (1,0).
        //   δ⁺ = 4; ‖a−n‖² = 1, ‖p−n‖² = 1 + 4 = 5 → δ⁻ = 1; max(0, 1 + 4 − 1) = 4.
        // Triplet 2: a = (1,1), p = (1,1), n = (1,3).
        //   δ⁺ = 0; both negative distances are 4 → δ⁻ = 4; max(0, 1 + 0 − 4) = 0.
        // Triplet 3: a = (0,0), p = (2,0), n = (2,1).
        //   δ⁺ = 4; ‖a−n‖² = 5, ‖p−n‖² = 1 → δ⁻ = 1 (without the swap it would be 5);
        //   max(0, 1 + 4 − 1) = 4.
        // With δ = 1: Lm = (0 + 4 + 0 + 4) / 4 = 2.
        let dev = Device::Cpu;
        let a = Tensor::new(&[[0f32, 0.], [0., 0.], [1., 1.], [0., 0.]], &dev).unwrap();
        let p = Tensor::new(&[[1f32, 0.], [0., 2.], [1., 1.], [2., 0.]], &dev).unwrap();
        let n = Tensor::new(&[[3f32, 0.], [1., 0.], [1., 3.], [2., 1.]], &dev).unwrap();
        let loss = triplet_loss(&a, &p, &n, 1.0).unwrap();
        assert_eq!(loss.to_scalar::<f32>().unwrap(), 2.0);
        // δ = 3.5: triplet 0 → 0.5, 1 → 6.5, 2 → 0 (3.5 − 4 < 0), 3 → 6.5; mean = 13.5/4.
        let loss = triplet_loss(&a, &p, &n, 3.5).unwrap();
        assert_eq!(loss.to_scalar::<f32>().unwrap(), 13.5 / 4.0);
    }

    #[test]
    fn triplet_gradient_matches_finite_differences() {
        // Random-looking but fixed descriptors, N = 3, d = 4, chosen so that no hinge sits at 0
        // and the two negative distances differ (the loss is smooth around this point).
        let dev = Device::Cpu;
        let a: Vec<f64> = (0..12).map(|i| ((i * 7 % 11) as f64 - 5.0) * 0.3).collect();
        let p: Vec<f64> = (0..12).map(|i| ((i * 5 % 13) as f64 - 6.0) * 0.2).collect();
        let n: Vec<f64> = (0..12).map(|i| ((i * 3 % 7) as f64 - 3.0) * 0.25).collect();
        let margin = 2.0;
        let t = |v: &[f64]| Tensor::from_slice(v, (3, 4), &dev).unwrap();
        let loss_of = |a: &[f64], p: &[f64], n: &[f64]| {
            triplet_loss(&t(a), &t(p), &t(n), margin)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        // At least one triplet must be active, or the test would compare zeros.
        assert!(loss_of(&a, &p, &n) > 0.0);

        let (va, vp, vn) = (
            Var::from_tensor(&t(&a)).unwrap(),
            Var::from_tensor(&t(&p)).unwrap(),
            Var::from_tensor(&t(&n)).unwrap(),
        );
        let loss = triplet_loss(va.as_tensor(), vp.as_tensor(), vn.as_tensor(), margin).unwrap();
        let grads = loss.backward().unwrap();
        let grad = |v: &Var| {
            grads
                .get(v.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap()
        };
        assert_close(
            &grad(&va),
            &numeric_gradient(&a, |x| loss_of(x, &p, &n)),
            1e-6,
        );
        assert_close(
            &grad(&vp),
            &numeric_gradient(&p, |x| loss_of(&a, x, &n)),
            1e-6,
        );
        assert_close(
            &grad(&vn),
            &numeric_gradient(&n, |x| loss_of(&a, &p, x)),
            1e-6,
        );
    }

    #[test]
    fn triplet_loss_rejects_bad_input() {
        let dev = Device::Cpu;
        let a = Tensor::zeros((2, 3), DType::F32, &dev).unwrap();
        let b = Tensor::zeros((2, 4), DType::F32, &dev).unwrap();
        let err = triplet_loss(&a, &a, &b, 1.0).unwrap_err();
        assert!(err.to_string().contains("anchor vs negative"), "{err}");
        assert!(err.to_string().contains("[2, 4]"), "{err}");
        assert!(matches!(
            triplet_loss(&a, &a, &a, -1.0),
            Err(LossError::InvalidConfig(_))
        ));
        assert!(matches!(
            triplet_loss(&a, &a, &a, f64::NAN),
            Err(LossError::InvalidConfig(_))
        ));
        let v = Tensor::zeros(3, DType::F32, &dev).unwrap();
        assert!(matches!(
            triplet_loss(&v, &v, &v, 1.0),
            Err(LossError::BadShape { .. })
        ));
    }
}
