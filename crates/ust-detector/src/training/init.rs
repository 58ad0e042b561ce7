//! Seeded initial weights. candle's CPU random generator cannot be seeded, so the trainer
//! overwrites the freshly built parameters with values drawn from its own seeded generator,
//! with the same distributions the layers use: weights N(0, 2/fan_in) (Kaiming normal, ReLU
//! gain), biases U(−1/√fan_in, 1/√fan_in), fan_in = the weight's elements per output.

use candle_core::{Tensor, Var};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal, Uniform};

use crate::error::{DetectorError, Result};

/// A generator seed for `(seed, stream, index)` (SplitMix64 finalizer over the mix).
pub(crate) fn derive_seed(seed: u64, stream: u64, index: u64) -> u64 {
    let mut z = seed
        ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Re-draws every `*.weight` (rank ≥ 2, dim 0 = outputs) and `*.bias` in `vars` from a
/// generator seeded with `seed`, visiting them in name order. A bias takes its fan-in from the
/// weight of the same layer.
pub fn initialize_seeded(vars: &[(String, Var)], seed: u64) -> Result<()> {
    let mut sorted: Vec<&(String, Var)> = vars.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let fan_in_of = |layer: &str| -> Option<usize> {
        vars.iter()
            .find(|(n, _)| n.strip_suffix(".weight") == Some(layer))
            .map(|(_, w)| w.elem_count() / w.dims()[0].max(1))
    };
    let mut rng = StdRng::seed_from_u64(seed);
    for (name, var) in sorted {
        let n = var.elem_count();
        let values: Vec<f32> = if let Some(layer) = name.strip_suffix(".weight") {
            let fan_in = fan_in_of(layer).unwrap_or(1).max(1);
            let std = (2.0 / fan_in as f64).sqrt() as f32;
            let normal = Normal::new(0.0f32, std)
                .map_err(|e| DetectorError::InvalidConfig(format!("initialising {name}: {e}")))?;
            (0..n).map(|_| normal.sample(&mut rng)).collect()
        } else if let Some(layer) = name.strip_suffix(".bias") {
            let fan_in = fan_in_of(layer).ok_or_else(|| {
                DetectorError::InvalidConfig(format!("bias {name} has no weight {layer}.weight"))
            })?;
            let bound = (1.0 / (fan_in.max(1) as f64).sqrt()) as f32;
            let uniform = Uniform::new_inclusive(-bound, bound)
                .map_err(|e| DetectorError::InvalidConfig(format!("initialising {name}: {e}")))?;
            (0..n).map(|_| uniform.sample(&mut rng)).collect()
        } else {
            return Err(DetectorError::InvalidConfig(format!(
                "cannot initialise {name}: neither a weight nor a bias"
            )));
        };
        var.set(&Tensor::from_vec(values, var.shape(), var.device())?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn vars() -> Vec<(String, Var)> {
        let dev = Device::Cpu;
        vec![
            (
                "conv1.weight".into(),
                Var::zeros((64, 8, 5, 5), DType::F32, &dev).unwrap(),
            ),
            (
                "conv1.bias".into(),
                Var::zeros(64, DType::F32, &dev).unwrap(),
            ),
            (
                "decoder.linear.weight".into(),
                Var::zeros((300, 50), DType::F32, &dev).unwrap(),
            ),
            (
                "decoder.linear.bias".into(),
                Var::zeros(300, DType::F32, &dev).unwrap(),
            ),
        ]
    }

    fn values(v: &Var) -> Vec<f32> {
        v.as_tensor().flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn same_seed_same_values_and_the_right_spread() {
        let (a, b, c) = (vars(), vars(), vars());
        initialize_seeded(&a, 7).unwrap();
        initialize_seeded(&b, 7).unwrap();
        initialize_seeded(&c, 8).unwrap();
        for i in 0..4 {
            assert_eq!(values(&a[i].1), values(&b[i].1));
            assert_ne!(values(&a[i].1), values(&c[i].1));
        }
        // conv1: fan_in 8·25 = 200 → std √(2/200) = 0.1; bias bound 1/√200 ≈ 0.0707.
        // decoder: fan_in 50 → std 0.2; bias bound 1/√50 ≈ 0.1414.
        for (w, b, std, bound) in [(0, 1, 0.1f64, 0.0707f64), (2, 3, 0.2, 0.1414)] {
            let w = values(&a[w].1);
            let n = w.len() as f64;
            let mean = w.iter().map(|&x| x as f64).sum::<f64>() / n;
            let sd = (w.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
            assert!(
                mean.abs() < 0.01 && (sd / std - 1.0).abs() < 0.05,
                "{mean} {sd}"
            );
            let b = values(&a[b].1);
            let max = b.iter().fold(0f64, |m, &x| m.max((x as f64).abs()));
            assert!(max <= bound + 1e-4 && max > 0.8 * bound, "{max} vs {bound}");
        }
    }
}
