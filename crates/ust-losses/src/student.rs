//! The student regression loss (METHOD.md §5): each student regresses the teacher's normalized
//! dense descriptors.

use candle_core::Tensor;

use crate::error::{LossError, Result, ensure_same_shape};

/// Student regression loss: the squared ℓ2 distance between the student's and the normalized
/// teacher's descriptor at each pixel, **summed over the d descriptor dimensions and averaged
/// over all B·H·W pixels**: L = (1/(B·H·W)) Σ_{b,r,c} ‖S(I)(b,:,r,c) − ŷ(b,:,r,c)‖².
///
/// # Shapes
/// - `prediction` = S(I): (B, d, H, W); `target` = ŷ: (B, d, H, W); B·H·W ≥ 1
/// - output: scalar
pub fn student_regression_loss(prediction: &Tensor, target: &Tensor) -> Result<Tensor> {
    let (b, _, h, w) = prediction.dims4().map_err(|_| LossError::BadShape {
        what: "student prediction",
        expected: "(B, d, H, W)",
        got: prediction.shape().clone(),
    })?;
    if b * h * w == 0 {
        return Err(LossError::Empty {
            what: "student prediction pixels",
        });
    }
    ensure_same_shape("student loss (prediction vs target)", prediction, target)?;
    Ok((prediction - target)?.sqr()?.sum(1)?.mean_all()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    #[test]
    fn student_loss_matches_hand_computation() {
        // B = 2, d = 2, H = 1, W = 2. Image 0: pixel 0 predicts (1,0), pixel 1 predicts (2,2);
        // the target is (0,1) at both. Squared distances: 1 + 1 = 2 and 4 + 1 = 5. Image 1
        // predicts its target exactly (0 and 0). Mean over the 4 pixels: (2 + 5) / 4 = 1.75.
        let dev = Device::Cpu;
        let prediction = Tensor::new(
            &[[[[1f32, 2.]], [[0., 2.]]], [[[4., 5.]], [[6., 7.]]]],
            &dev,
        )
        .unwrap();
        let target = Tensor::new(
            &[[[[0f32, 0.]], [[1., 1.]]], [[[4., 5.]], [[6., 7.]]]],
            &dev,
        )
        .unwrap();
        let loss = student_regression_loss(&prediction, &target).unwrap();
        assert_eq!(loss.to_scalar::<f32>().unwrap(), 1.75);

        // Its gradient is 2 (S − ŷ) / (B·H·W) = (S − ŷ) / 2.
        let var = Var::from_tensor(&prediction).unwrap();
        let loss = student_regression_loss(var.as_tensor(), &target).unwrap();
        let grads = loss.backward().unwrap();
        let grad = grads.get(var.as_tensor()).unwrap();
        let expected = ((&prediction - &target).unwrap() / 2.0).unwrap();
        let diff = (grad - expected).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }

    #[test]
    fn student_loss_rejects_bad_shapes() {
        let dev = Device::Cpu;
        let a = Tensor::zeros((1, 4, 8, 8), DType::F32, &dev).unwrap();
        let b = Tensor::zeros((1, 4, 8, 7), DType::F32, &dev).unwrap();
        let err = student_regression_loss(&a, &b).unwrap_err();
        assert!(err.to_string().contains("[1, 4, 8, 7]"), "{err}");
        let flat = Tensor::zeros((4, 8), DType::F32, &dev).unwrap();
        assert!(matches!(
            student_regression_loss(&flat, &flat),
            Err(LossError::BadShape { .. })
        ));
        let empty = Tensor::zeros((1, 4, 0, 8), DType::F32, &dev).unwrap();
        assert!(matches!(
            student_regression_loss(&empty, &empty),
            Err(LossError::Empty { .. })
        ));
    }
}
