//! What the students of one scale see and regress: the training images as tensors, the
//! per-channel standardisation of their inputs, and the teacher's normalised descriptors
//! (computed once, the teacher being frozen).

use candle_core::{Device, Tensor};
use ust_data::ChwImage;
use ust_models::DenseExtractor;

use super::MIN_TARGET_STD;
use crate::error::{DetectorError, Result};

/// The teacher's normalised dense descriptors of the training images and the statistics.
pub struct TeacherTargets {
    /// μ and σ per descriptor dimension, each (1, d, 1, 1).
    pub mean: Tensor,
    pub std: Tensor,
    /// ŷ of every training image, each (1, d, H, W).
    pub targets: Vec<Tensor>,
}

impl TeacherTargets {
    /// Runs the teacher over every image once (detached: no graph) and normalises.
    ///
    /// # Shapes
    /// every image (1, 3, H, W) → targets (1, d, H, W)
    pub fn compute(teacher: &DenseExtractor, images: &[Tensor]) -> Result<Self> {
        if images.is_empty() {
            return Err(DetectorError::InvalidConfig("no training images".into()));
        }
        let d = teacher.net().descriptor_dim();
        let mut raw = Vec::with_capacity(images.len());
        let mut sum = vec![0f64; d];
        let mut sum_sq = vec![0f64; d];
        let mut count = 0usize;
        for image in images {
            let y = teacher.extract(image)?;
            let (_, _, h, w) = y.dims4()?;
            let data = y.flatten_all()?.to_vec1::<f32>()?;
            for (k, plane) in data.chunks_exact(h * w).enumerate() {
                let (mut s, mut ss) = (0f64, 0f64);
                for &x in plane {
                    let x = x as f64;
                    s += x;
                    ss += x * x;
                }
                sum[k] += s;
                sum_sq[k] += ss;
            }
            count += h * w;
            raw.push(y);
        }
        let n = count as f64;
        let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
        let std: Vec<f32> = sum
            .iter()
            .zip(&sum_sq)
            .map(|(s, ss)| {
                let m = s / n;
                ((ss / n - m * m).max(0.0).sqrt() as f32).max(MIN_TARGET_STD)
            })
            .collect();
        let device = images[0].device();
        let mean = Tensor::from_vec(mean, (1, d, 1, 1), device)?;
        let std = Tensor::from_vec(std, (1, d, 1, 1), device)?;
        let targets = raw
            .iter()
            .map(|y| y.broadcast_sub(&mean)?.broadcast_div(&std))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self { mean, std, targets })
    }
}

/// One image as a (1, 3, size, size) tensor; any other shape is a configuration error.
pub(super) fn image_tensor(image: &ChwImage, size: usize, device: &Device) -> Result<Tensor> {
    if image.height() != size || image.width() != size || image.channels() != 3 {
        return Err(DetectorError::InvalidConfig(format!(
            "images must be 3×{size}×{size} here, got {}×{}×{}",
            image.channels(),
            image.height(),
            image.width()
        )));
    }
    Ok(image.to_tensor(device)?.unsqueeze(0)?)
}

/// x ↦ x·scale + shift per input channel.
#[derive(Debug, Clone)]
pub(super) struct InputAffine {
    pub(super) scale: Vec<f32>,
    pub(super) shift: Vec<f32>,
    /// The same as (1, C, 1, 1) tensors.
    scale_t: Tensor,
    shift_t: Tensor,
}

/// A standard deviation below this (a nearly constant channel) is replaced by it, so the
/// standardisation never amplifies noise more than 1 000-fold.
const MIN_INPUT_STD: f64 = 1e-3;

impl InputAffine {
    /// The per-channel standardisation over every pixel of `images` (each (1, C, H, W)).
    pub(super) fn standardisation(images: &[Tensor]) -> Result<Self> {
        let c = images[0].dim(1)?;
        let (mut sum, mut sum_sq, mut n) = (vec![0f64; c], vec![0f64; c], 0usize);
        for image in images {
            let data = image.flatten_all()?.to_vec1::<f32>()?;
            let plane = data.len() / c;
            for (k, values) in data.chunks_exact(plane).enumerate() {
                for &x in values {
                    sum[k] += x as f64;
                    sum_sq[k] += (x as f64) * (x as f64);
                }
            }
            n += plane;
        }
        let (mut scale, mut shift) = (Vec::with_capacity(c), Vec::with_capacity(c));
        for k in 0..c {
            let mean = sum[k] / n as f64;
            let std = (sum_sq[k] / n as f64 - mean * mean)
                .max(0.0)
                .sqrt()
                .max(MIN_INPUT_STD);
            scale.push((1.0 / std) as f32);
            shift.push((-mean / std) as f32);
        }
        let device = images[0].device();
        Ok(Self {
            scale_t: Tensor::from_slice(&scale, (1, c, 1, 1), device)?,
            shift_t: Tensor::from_slice(&shift, (1, c, 1, 1), device)?,
            scale,
            shift,
        })
    }

    pub(super) fn apply(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.broadcast_mul(&self.scale_t)?
            .broadcast_add(&self.shift_t)?)
    }
}

#[cfg(test)]
mod input_tests {
    use super::*;

    /// The standardisation maps the images' pixels of each channel to mean 0 and standard
    /// deviation 1 (closed form: the population statistics over every image).
    #[test]
    fn standardisation_gives_zero_mean_and_unit_std_per_channel() {
        let dev = Device::Cpu;
        let a = Tensor::from_vec(
            vec![0.2f32, 0.4, 0.6, 0.8, 0.5, 0.5, 0.5, 0.51],
            (1, 2, 2, 2),
            &dev,
        )
        .unwrap();
        let b = Tensor::from_vec(
            vec![0.1f32, 0.3, 0.5, 0.7, 0.52, 0.5, 0.49, 0.5],
            (1, 2, 2, 2),
            &dev,
        )
        .unwrap();
        let affine = InputAffine::standardisation(&[a.clone(), b.clone()]).unwrap();
        let all = Tensor::cat(&[affine.apply(&a).unwrap(), affine.apply(&b).unwrap()], 0)
            .unwrap()
            .transpose(0, 1)
            .unwrap()
            .flatten_from(1)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (c, values) in all.iter().enumerate() {
            let n = values.len() as f32;
            let mean = values.iter().sum::<f32>() / n;
            let var = values.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / n;
            assert!(mean.abs() < 1e-5, "channel {c}: mean {mean}");
            assert!((var - 1.0).abs() < 1e-4, "channel {c}: variance {var}");
        }
        // Channel 0 by hand: mean 0.45, population std sqrt(0.0525).
        assert!((affine.scale[0] - 1.0 / 0.0525f32.sqrt()).abs() < 1e-3);
        assert!((affine.shift[0] + 0.45 / 0.0525f32.sqrt()).abs() < 1e-3);
        // A constant channel is not blown up beyond 1/MIN_INPUT_STD.
        let flat = Tensor::full(0.5f32, (1, 1, 3, 3), &dev).unwrap();
        let affine = InputAffine::standardisation(&[flat]).unwrap();
        assert!((affine.scale[0] as f64 - 1.0 / MIN_INPUT_STD).abs() < 1e-2);
    }
}
