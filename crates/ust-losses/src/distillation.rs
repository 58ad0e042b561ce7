//! Knowledge distillation (METHOD.md §4): a learned linear decoder D maps the teacher's
//! descriptor T̂(p) to the dimension of a frozen pretrained network's pooled feature P(p), and
//! Lk = ‖D(T̂(p)) − P(p)‖².

use candle_core::{Module, Tensor};
use candle_nn::{Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{LossError, Result, batch_dims2, ensure_same_shape};

/// Sizes of the [`DistillationDecoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistillationDecoderConfig {
    /// Dimension d of the teacher's descriptor (128 in the paper).
    pub descriptor_dim: usize,
    /// Dimension of the distillation target: 512 for ResNet-18, 1280 for EfficientNet-Lite0.
    pub target_dim: usize,
}

impl DistillationDecoderConfig {
    /// Fails unless both dimensions are positive.
    pub fn check(&self) -> Result<()> {
        if self.descriptor_dim == 0 || self.target_dim == 0 {
            return Err(LossError::InvalidConfig(format!(
                "distillation decoder dimensions must be positive, got {} → {}",
                self.descriptor_dim, self.target_dim
            )));
        }
        Ok(())
    }
}

/// The learned linear decoder D: descriptor_dim → target_dim, with bias.
///
/// Its parameters are `linear.weight` (target_dim × descriptor_dim) and `linear.bias`
/// (target_dim) under the `VarBuilder` it is built from; the teacher trainer builds it with
/// `vb.pp("decoder")`.
#[derive(Debug, Clone)]
pub struct DistillationDecoder {
    linear: Linear,
    cfg: DistillationDecoderConfig,
}

impl DistillationDecoder {
    /// Builds (or loads) the decoder; the config is checked first.
    pub fn new(cfg: DistillationDecoderConfig, vb: VarBuilder) -> Result<Self> {
        cfg.check()?;
        let linear = candle_nn::linear(cfg.descriptor_dim, cfg.target_dim, vb.pp("linear"))?;
        Ok(Self { linear, cfg })
    }

    /// The config the decoder was built with.
    pub fn config(&self) -> &DistillationDecoderConfig {
        &self.cfg
    }
}

impl Module for DistillationDecoder {
    /// Decodes a batch of descriptors.
    ///
    /// # Shapes
    /// - input: (N, descriptor_dim), or the patch network's raw output (N, descriptor_dim, 1, 1)
    /// - output: (N, target_dim)
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let xs = match xs.rank() {
            4 => {
                let (n, d, h, w) = xs.dims4()?;
                if h != 1 || w != 1 {
                    candle_core::bail!(
                        "distillation decoder: expected (N, {}, 1, 1), got {:?}",
                        self.cfg.descriptor_dim,
                        xs.shape()
                    );
                }
                xs.reshape((n, d))?
            }
            _ => xs.clone(),
        };
        let (_, d) = xs.dims2()?;
        if d != self.cfg.descriptor_dim {
            candle_core::bail!(
                "distillation decoder: expected (N, {}), got {:?}",
                self.cfg.descriptor_dim,
                xs.shape()
            );
        }
        self.linear.forward(&xs)
    }
}

/// Distillation loss Lk: the squared ℓ2 distance between decoded descriptors and targets,
/// **summed over the target dimensions and averaged over the batch**:
/// Lk = (1/N) Σ_n Σ_k (decoded[n,k] − target[n,k])².
///
/// # Shapes
/// - `decoded` = D(T̂(p)): (N, K); `target` = P(p): (N, K), N ≥ 1
/// - output: scalar
pub fn distillation_loss(decoded: &Tensor, target: &Tensor) -> Result<Tensor> {
    batch_dims2("distillation decoded descriptors", decoded)?;
    ensure_same_shape("distillation loss (decoded vs target)", decoded, target)?;
    let per_sample = (decoded - target)?.sqr()?.sum(1)?;
    Ok(per_sample.mean_all()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    #[test]
    fn distillation_loss_matches_hand_computation() {
        // decoded = [[1, 2, 3], [0, 0, 0]], target = [[1, 0, 0], [1, 1, 1]]
        // sample 0: 0² + 2² + 3² = 13; sample 1: 1 + 1 + 1 = 3; mean over the batch = 8.
        let dev = Device::Cpu;
        let decoded = Tensor::new(&[[1f32, 2., 3.], [0., 0., 0.]], &dev).unwrap();
        let target = Tensor::new(&[[1f32, 0., 0.], [1., 1., 1.]], &dev).unwrap();
        let loss = distillation_loss(&decoded, &target).unwrap();
        assert_eq!(loss.to_scalar::<f32>().unwrap(), 8.0);
    }

    #[test]
    fn distillation_loss_rejects_mismatched_shapes() {
        let dev = Device::Cpu;
        let decoded = Tensor::zeros((2, 3), DType::F32, &dev).unwrap();
        let target = Tensor::zeros((2, 4), DType::F32, &dev).unwrap();
        let err = distillation_loss(&decoded, &target).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, LossError::ShapeMismatch { .. }), "{msg}");
        assert!(msg.contains("[2, 3]") && msg.contains("[2, 4]"), "{msg}");
        let empty = Tensor::zeros((0, 3), DType::F32, &dev).unwrap();
        assert!(matches!(
            distillation_loss(&empty, &empty),
            Err(LossError::Empty { .. })
        ));
    }

    #[test]
    fn decoder_is_affine_with_named_parameters() {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F64, &dev);
        let cfg = DistillationDecoderConfig {
            descriptor_dim: 2,
            target_dim: 3,
        };
        let decoder = DistillationDecoder::new(cfg, vb.pp("decoder")).unwrap();
        // Set known weights: W = [[1, 2], [3, 4], [5, 6]], b = [0.5, -1, 0].
        let data = varmap.data().lock().unwrap();
        let mut names: Vec<_> = data.keys().cloned().collect();
        names.sort();
        assert_eq!(names, ["decoder.linear.bias", "decoder.linear.weight"]);
        data["decoder.linear.weight"]
            .set(&Tensor::new(&[[1f64, 2.], [3., 4.], [5., 6.]], &dev).unwrap())
            .unwrap();
        data["decoder.linear.bias"]
            .set(&Tensor::new(&[0.5f64, -1., 0.], &dev).unwrap())
            .unwrap();
        drop(data);
        // x = [1, -1]: W x + b = [1 − 2 + 0.5, 3 − 4 − 1, 5 − 6] = [−0.5, −2, −1].
        let x = Tensor::new(&[[1f64, -1.]], &dev).unwrap();
        let y = decoder.forward(&x).unwrap();
        assert_eq!(y.to_vec2::<f64>().unwrap(), [[-0.5, -2., -1.]]);
        // The patch network's (N, d, 1, 1) output decodes the same way.
        let y4 = decoder.forward(&x.reshape((1, 2, 1, 1)).unwrap()).unwrap();
        assert_eq!(y4.to_vec2::<f64>().unwrap(), [[-0.5, -2., -1.]]);
        // A wrong descriptor dimension is an error, not a broadcast.
        let bad = Tensor::zeros((1, 3), DType::F64, &dev).unwrap();
        assert!(decoder.forward(&bad).is_err());
        let bad4 = Tensor::zeros((1, 2, 2, 2), DType::F64, &dev).unwrap();
        assert!(decoder.forward(&bad4).is_err());
    }

    #[test]
    fn decoder_config_rejects_zero_dims() {
        let cfg = DistillationDecoderConfig {
            descriptor_dim: 128,
            target_dim: 0,
        };
        assert!(matches!(cfg.check(), Err(LossError::InvalidConfig(_))));
    }
}
