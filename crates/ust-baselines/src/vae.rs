//! Variational autoencoder (Kingma & Welling 2014) scored by the reconstruction probability of
//! An & Cho (2015).
//!
//! Model (candle-nn `Linear` layers, leaky ReLU after every hidden layer):
//! - encoder q(z | x) = N(μ_z(x), diag exp(ℓ_z(x))): body d → h₁ → … → h_k, then two linear heads
//!   h_k → latent for the mean μ_z and the log-variance ℓ_z;
//! - decoder p(x | z) = N(μ_x(z), diag exp(ℓ_x(z))): body latent → h_k → … → h₁, then a linear head
//!   h₁ → d for μ_x and, with [`DecoderVariance::Learned`], a second one for the log-variance ℓ_x
//!   (with [`DecoderVariance::Fixed`], ℓ_x = ln σ² for every dimension);
//! - prior p(z) = N(0, I). Log-variances are clamped to [−10, 10] for numerical safety.
//!
//! Training minimises the negative ELBO per vector, with one reparameterised sample
//! z = μ_z + exp(ℓ_z / 2) ⊙ ε, ε ~ N(0, I):
//!
//! ```text
//! −ELBO(x) = ½ Σⱼ [ln 2π + ℓ_x,j(z) + (xⱼ − μ_x,j(z))² e^(−ℓ_x,j(z))]
//!          − ½ Σₖ [1 + ℓ_z,k − μ_z,k² − e^(ℓ_z,k)]
//! ```
//!
//! Score (An & Cho, Algorithm 4, the mean of the decoder densities over L latent samples, taken
//! in the log domain with log-sum-exp):
//!
//! ```text
//! z_l = μ_z(x) + exp(ℓ_z(x) / 2) ⊙ ε_l,   l = 1 … L
//! score(x) = −ln( (1/L) Σ_l N(x; μ_x(z_l), diag exp(ℓ_x(z_l))) )
//! ```
//!
//! The L noise vectors ε_l are drawn once at fitting time from the seed and shared by every
//! scored vector (common random numbers), so a vector's score does not depend on what it is
//! scored with (up to the last-bit rounding of matrix products of another batch shape). With standardisation on, x is the standardised vector (the density differs
//! from the one in input units by a constant, the same for every vector).

use candle_core::{Device, Tensor, Var};
use candle_nn::{Linear, Module};
use ndarray::ArrayView2;
use rand::{SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::{check_query, check_training, derive_seed, stream};
use crate::error::{Result, invalid};
use crate::nn::{
    Mlp, SCORE_BATCH, Standardizer, TrainingConfig, check_architecture, seeded_linear, train_epochs,
};

const METHOD: &str = "VAE";
const LOG_VARIANCE_MIN: f64 = -10.0;
const LOG_VARIANCE_MAX: f64 = 10.0;
const LN_2PI: f64 = 1.837_877_066_409_345_3;

/// Variance of the Gaussian decoder.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DecoderVariance {
    /// A learned log-variance per output dimension and latent sample (a second decoder head).
    Learned,
    /// The same fixed variance σ² > 0 for every dimension.
    Fixed(f64),
}

/// Configuration of [`Vae`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VaeConfig {
    /// Hidden widths of the encoder body after the input; the decoder body mirrors them.
    /// Default [64].
    pub hidden_widths: Vec<usize>,
    /// Dimension of the latent code. Default 32.
    pub latent_dim: usize,
    /// Negative slope of the leaky ReLU (0 gives a plain ReLU). Default 0.01.
    pub leaky_slope: f64,
    /// Decoder variance. Default [`DecoderVariance::Learned`].
    pub decoder_variance: DecoderVariance,
    /// Number L of latent samples of the reconstruction probability. Default 10.
    pub score_samples: usize,
    /// Epochs, batch size, learning rate, standardisation.
    pub training: TrainingConfig,
}

impl Default for VaeConfig {
    fn default() -> Self {
        Self {
            hidden_widths: vec![64],
            latent_dim: 32,
            leaky_slope: 0.01,
            decoder_variance: DecoderVariance::Learned,
            score_samples: 10,
            training: TrainingConfig::default(),
        }
    }
}

impl VaeConfig {
    /// Validates the architecture, the latent size, L, the fixed variance and training.
    pub fn check(&self) -> Result<()> {
        check_architecture(METHOD, &self.hidden_widths, self.leaky_slope)?;
        if self.latent_dim == 0 {
            return Err(invalid(METHOD, "latent_dim", "must be at least 1"));
        }
        if self.score_samples == 0 {
            return Err(invalid(METHOD, "score_samples", "must be at least 1"));
        }
        if let DecoderVariance::Fixed(v) = self.decoder_variance
            && !(v > 0.0 && v.is_finite())
        {
            return Err(invalid(
                METHOD,
                "decoder_variance",
                format!("fixed variance {v} is not a positive number"),
            ));
        }
        self.training.check(METHOD)
    }
}

/// A trained VAE.
#[derive(Debug, Clone)]
pub struct Vae {
    encoder_body: Mlp,
    encoder_mean: Linear,
    encoder_log_variance: Linear,
    decoder_body: Mlp,
    decoder_mean: Linear,
    decoder_log_variance: Option<Linear>,
    fixed_log_variance: f64,
    standardizer: Standardizer,
    dim: usize,
    latent_dim: usize,
    /// (L, latent): the shared noise of the reconstruction probability.
    score_noise: Tensor,
    loss_history: Vec<f64>,
}

/// Per-vector Gaussian log-density ln N(x; μ, diag e^ℓ), summed over dimensions.
///
/// # Shapes
/// `x`, `mean`: (b, d); `log_variance`: (b, d) or None with the scalar `fixed` → (b).
fn gaussian_log_density(
    x: &Tensor,
    mean: &Tensor,
    log_variance: Option<&Tensor>,
    fixed: f64,
) -> Result<Tensor> {
    let d = x.dim(1)? as f64;
    let sq = (x - mean)?.sqr()?;
    let per_vector = match log_variance {
        Some(lv) => ((sq * lv.neg()?.exp()?)? + lv)?.sum(1)?,
        None => ((sq.sum(1)? * (-fixed).exp())? + d * fixed)?,
    };
    Ok(((per_vector + d * LN_2PI)? * -0.5)?)
}

impl Vae {
    /// Trains on the training vectors on `device`, where the model then stays (scoring runs
    /// there too); deterministic given `seed` (the initial weights, the shuffling and the noise
    /// are drawn on the host, so they do not depend on the device).
    ///
    /// # Shapes
    /// `train`: (n, d), n ≥ 1.
    pub fn fit(
        config: &VaeConfig,
        train: ArrayView2<'_, f32>,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        config.check()?;
        check_training(train, "VAE training vectors")?;
        let dim = train.ncols();
        let latent = config.latent_dim;
        let mut rng = StdRng::seed_from_u64(derive_seed(seed, stream::INIT));
        let mut vars: Vec<Var> = Vec::new();
        let mut widths = vec![dim];
        widths.extend(&config.hidden_widths);
        let last_hidden = *widths.last().expect("at least one hidden layer");
        let encoder_body = Mlp::new(&widths, config.leaky_slope, &mut rng, &mut vars, device)?;
        let encoder_mean = seeded_linear(last_hidden, latent, &mut rng, &mut vars, device)?;
        let encoder_log_variance = seeded_linear(last_hidden, latent, &mut rng, &mut vars, device)?;
        let mut decoder_widths = vec![latent];
        decoder_widths.extend(config.hidden_widths.iter().rev());
        let first_hidden = config.hidden_widths[0];
        let decoder_body = Mlp::new(
            &decoder_widths,
            config.leaky_slope,
            &mut rng,
            &mut vars,
            device,
        )?;
        let decoder_mean = seeded_linear(first_hidden, dim, &mut rng, &mut vars, device)?;
        let (decoder_log_variance, fixed_log_variance) = match config.decoder_variance {
            DecoderVariance::Learned => (
                Some(seeded_linear(
                    first_hidden,
                    dim,
                    &mut rng,
                    &mut vars,
                    device,
                )?),
                0.0,
            ),
            DecoderVariance::Fixed(v) => (None, v.ln()),
        };
        let mut noise_rng = StdRng::seed_from_u64(derive_seed(seed, stream::SCORE_NOISE));
        let score_noise = normal_tensor(config.score_samples, latent, &mut noise_rng, device)?;
        let standardizer = Standardizer::fit(train, config.training.standardize, device);

        let mut vae = Self {
            encoder_body,
            encoder_mean,
            encoder_log_variance,
            decoder_body,
            decoder_mean,
            decoder_log_variance,
            fixed_log_variance,
            standardizer,
            dim,
            latent_dim: latent,
            score_noise,
            loss_history: Vec::new(),
        };
        let loss_history = train_epochs(
            METHOD,
            &config.training,
            train,
            &vae.standardizer,
            vars,
            derive_seed(seed, stream::SHUFFLE),
            derive_seed(seed, stream::NOISE),
            |batch, noise_rng| vae.negative_elbo(batch, noise_rng),
        )?;
        vae.loss_history = loss_history;
        Ok(vae)
    }

    /// Mean over the batch of −ELBO with one reparameterised sample per vector.
    fn negative_elbo(&self, x: &Tensor, rng: &mut StdRng) -> Result<Tensor> {
        let (mean_z, log_var_z) = self.encode(x)?;
        // The noise goes where the batch is (the model's device).
        let eps = normal_tensor(x.dim(0)?, self.latent_dim, rng, x.device())?;
        let z = (&mean_z + (log_var_z.affine(0.5, 0.0)?.exp()? * eps)?)?;
        let log_p = self.decoder_log_density(x, &z)?;
        let kl = ((log_var_z.affine(1.0, 1.0)? - mean_z.sqr()?)? - log_var_z.exp()?)?
            .sum(1)?
            .affine(-0.5, 0.0)?;
        Ok((kl - log_p)?.mean_all()?)
    }

    /// (μ_z, ℓ_z), each (b, latent).
    fn encode(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let h = self.encoder_body.forward(x, true)?;
        let mean = self.encoder_mean.forward(&h)?;
        let log_var = self
            .encoder_log_variance
            .forward(&h)?
            .clamp(LOG_VARIANCE_MIN, LOG_VARIANCE_MAX)?;
        Ok((mean, log_var))
    }

    /// ln p(x | z) per vector (b).
    fn decoder_log_density(&self, x: &Tensor, z: &Tensor) -> Result<Tensor> {
        let h = self.decoder_body.forward(z, true)?;
        let mean = self.decoder_mean.forward(&h)?;
        match &self.decoder_log_variance {
            Some(head) => {
                let lv = head
                    .forward(&h)?
                    .clamp(LOG_VARIANCE_MIN, LOG_VARIANCE_MAX)?;
                gaussian_log_density(x, &mean, Some(&lv), 0.0)
            }
            None => gaussian_log_density(x, &mean, None, self.fixed_log_variance),
        }
    }

    /// Dimension of the vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The device the model lives on (the one given to [`Vae::fit`]).
    pub fn device(&self) -> &Device {
        self.standardizer.device()
    }

    /// Mean training loss (−ELBO per vector, one latent sample) of every epoch.
    pub fn loss_history(&self) -> &[f64] {
        &self.loss_history
    }

    /// ln of the reconstruction probability (1/L) Σ_l p(x | z_l) per vector (see the module
    /// documentation).
    ///
    /// # Shapes
    /// `vectors`: (m, d) → m values.
    pub fn reconstruction_log_probability(&self, vectors: ArrayView2<'_, f32>) -> Result<Vec<f64>> {
        check_query(vectors, self.dim, "VAE query vectors")?;
        let n_samples = self.score_noise.dim(0)?;
        let ln_l = (n_samples as f64).ln();
        let mut out = Vec::with_capacity(vectors.nrows());
        for start in (0..vectors.nrows()).step_by(SCORE_BATCH) {
            let end = (start + SCORE_BATCH).min(vectors.nrows());
            let x = self.standardizer.batch(vectors, start..end)?;
            let b = end - start;
            let (mean_z, log_var_z) = self.encode(&x)?;
            let std_z = log_var_z.affine(0.5, 0.0)?.exp()?;
            // All L latent samples in one decoder pass: z[l, i] = μ_z[i] + σ_z[i] ⊙ ε_l.
            let eps = self.score_noise.unsqueeze(1)?; // (L, 1, latent)
            let z = mean_z
                .unsqueeze(0)?
                .broadcast_add(&std_z.unsqueeze(0)?.broadcast_mul(&eps)?)?
                .reshape((n_samples * b, self.latent_dim))?;
            let h = self.decoder_body.forward(&z, true)?;
            let mean_x = self
                .decoder_mean
                .forward(&h)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let log_var_x = match &self.decoder_log_variance {
                Some(head) => Some(head.forward(&h)?.flatten_all()?.to_vec1::<f32>()?),
                None => None,
            };
            let x_flat = x.flatten_all()?.to_vec1::<f32>()?;
            let d = self.dim;
            let scores: Vec<f64> = (0..b)
                .into_par_iter()
                .map(|i| {
                    let xi = &x_flat[i * d..(i + 1) * d];
                    let log_p: Vec<f64> = (0..n_samples)
                        .map(|l| {
                            let row = (l * b + i) * d..(l * b + i + 1) * d;
                            let mean = &mean_x[row.clone()];
                            match &log_var_x {
                                Some(lv) => log_density_row(xi, mean, &lv[row]),
                                None => log_density_row_fixed(xi, mean, self.fixed_log_variance),
                            }
                        })
                        .collect();
                    let max = log_p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let sum: f64 = log_p.iter().map(|v| (v - max).exp()).sum();
                    max + sum.ln() - ln_l
                })
                .collect();
            out.extend(scores);
        }
        Ok(out)
    }

    /// Anomaly scores: the negative log reconstruction probability.
    ///
    /// # Shapes
    /// `vectors`: (m, d) → m scores.
    pub fn score(&self, vectors: ArrayView2<'_, f32>) -> Result<Vec<f32>> {
        Ok(self
            .reconstruction_log_probability(vectors)?
            .into_iter()
            .map(|v| -v as f32)
            .collect())
    }
}

/// ln N(x; μ, diag e^ℓ) of one vector, ℓ clamped to the model's range as in training (the
/// scoring counterpart of [`gaussian_log_density`], in f64, without tensor dispatch).
fn log_density_row(x: &[f32], mean: &[f32], log_variance: &[f32]) -> f64 {
    let mut acc = 0.0f64;
    for ((&x, &m), &lv) in x.iter().zip(mean).zip(log_variance) {
        let lv = f64::from(lv).clamp(LOG_VARIANCE_MIN, LOG_VARIANCE_MAX);
        let r = f64::from(x) - f64::from(m);
        acc += lv + r * r * (-lv).exp();
    }
    -0.5 * (acc + x.len() as f64 * LN_2PI)
}

/// ln N(x; μ, e^ℓ I) of one vector with a fixed log-variance ℓ.
fn log_density_row_fixed(x: &[f32], mean: &[f32], log_variance: f64) -> f64 {
    let sq: f64 = x
        .iter()
        .zip(mean)
        .map(|(&x, &m)| (f64::from(x) - f64::from(m)).powi(2))
        .sum();
    let d = x.len() as f64;
    -0.5 * (sq * (-log_variance).exp() + d * log_variance + d * LN_2PI)
}

/// A (rows, cols) tensor on `device` of standard normal values from `rng` (drawn on the host
/// in row-major order, so the values do not depend on the device).
fn normal_tensor(rows: usize, cols: usize, rng: &mut StdRng, device: &Device) -> Result<Tensor> {
    let v: Vec<f32> = (0..rows * cols)
        .map(|_| StandardNormal.sample(&mut *rng))
        .collect();
    Ok(Tensor::from_vec(v, (rows, cols), device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_log_density_matches_the_closed_form() {
        let x = Tensor::new(&[[1.0f32, -2.0], [0.5, 0.0]], &Device::Cpu).unwrap();
        let m = Tensor::new(&[[0.0f32, -1.0], [0.5, 2.0]], &Device::Cpu).unwrap();
        let lv = Tensor::new(&[[0.0f32, 2.0_f32.ln()], [-1.0, 1.0]], &Device::Cpu).unwrap();
        let got = gaussian_log_density(&x, &m, Some(&lv), 0.0)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let density = |x: f64, m: f64, v: f64| -0.5 * (LN_2PI + v.ln() + (x - m).powi(2) / v);
        let e0 = density(1.0, 0.0, 1.0) + density(-2.0, -1.0, 2.0);
        let e1 = density(0.5, 0.5, (-1.0f64).exp()) + density(0.0, 2.0, 1.0f64.exp());
        assert!((f64::from(got[0]) - e0).abs() < 1e-5);
        assert!((f64::from(got[1]) - e1).abs() < 1e-5);
        let fixed = gaussian_log_density(&x, &m, None, 0.3f64.ln())
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let f0 = density(1.0, 0.0, 0.3) + density(-2.0, -1.0, 0.3);
        assert!((f64::from(fixed[0]) - f0).abs() < 1e-5);
        // The scoring path's row functions agree with the training path's tensor function.
        assert!(
            (log_density_row(&[1.0, -2.0], &[0.0, -1.0], &[0.0, 2.0_f32.ln()]) - e0).abs() < 1e-6
        );
        assert!((log_density_row(&[0.5, 0.0], &[0.5, 2.0], &[-1.0, 1.0]) - e1).abs() < 1e-6);
        assert!((log_density_row_fixed(&[1.0, -2.0], &[0.0, -1.0], 0.3f64.ln()) - f0).abs() < 1e-9);
        // Clamping: a log-variance of −30 is evaluated as −10.
        let clamped = log_density_row(&[0.0], &[0.5], &[-30.0]);
        assert!((clamped - density(0.0, 0.5, (-10.0f64).exp())).abs() < 1e-9);
    }

    #[test]
    fn reconstruction_probability_is_the_mean_of_the_sample_densities() {
        use rand_distr::{Distribution, StandardNormal};
        let mut rng = StdRng::seed_from_u64(1);
        let train = ndarray::Array2::from_shape_fn((300, 5), |_| StandardNormal.sample(&mut rng));
        let config = VaeConfig {
            hidden_widths: vec![8],
            latent_dim: 2,
            score_samples: 3,
            training: TrainingConfig {
                epochs: 3,
                batch_size: 32,
                ..Default::default()
            },
            ..Default::default()
        };
        let vae = Vae::fit(&config, train.view(), 4, &Device::Cpu).unwrap();
        let test = train.slice(ndarray::s![..6, ..]).mapv(|v: f32| 2.0 * v);
        let got = vae.reconstruction_log_probability(test.view()).unwrap();
        // Independent assembly: densities p_l(x) of the three shared latent samples, then
        // ln((p_1 + p_2 + p_3) / 3) directly (the values are moderate, no overflow).
        let x = vae.standardizer.batch(test.view(), 0..6).unwrap();
        let (mean_z, log_var_z) = vae.encode(&x).unwrap();
        let std_z = (log_var_z * 0.5)
            .unwrap()
            .exp()
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let mean_z = mean_z.to_vec2::<f32>().unwrap();
        let noise = vae.score_noise.to_vec2::<f32>().unwrap();
        for i in 0..6 {
            let mut mean_density = 0.0f64;
            for eps in &noise {
                let z: Vec<f32> = (0..2)
                    .map(|k| mean_z[i][k] + std_z[i][k] * eps[k])
                    .collect();
                let z = Tensor::from_vec(z, (1, 2), &Device::Cpu).unwrap();
                let xi = x.narrow(0, i, 1).unwrap();
                let lp = vae
                    .decoder_log_density(&xi, &z)
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()[0];
                mean_density += f64::from(lp).exp() / 3.0;
            }
            let expected = mean_density.ln();
            assert!(
                (got[i] - expected).abs() < 1e-4 * (1.0 + expected.abs()),
                "row {i}: {} vs {expected}",
                got[i]
            );
            assert_eq!(vae.score(test.view()).unwrap()[i], -got[i] as f32);
        }
    }

    #[test]
    fn the_model_lives_on_the_device_it_was_fitted_on() {
        // On this CPU-only build the only device at hand is the CPU; the check is that every
        // tensor the model holds or builds follows the argument rather than a constant.
        let device = Device::Cpu;
        let mut rng = StdRng::seed_from_u64(2);
        let train = ndarray::Array2::from_shape_fn((40, 3), |_| StandardNormal.sample(&mut rng));
        let config = VaeConfig {
            hidden_widths: vec![4],
            latent_dim: 2,
            score_samples: 2,
            training: TrainingConfig {
                epochs: 1,
                batch_size: 16,
                ..Default::default()
            },
            ..Default::default()
        };
        let vae = Vae::fit(&config, train.view(), 0, &device).unwrap();
        assert!(vae.device().same_device(&device));
        assert!(vae.score_noise.device().same_device(&device));
        assert!(vae.encoder_mean.weight().device().same_device(&device));
        let batch = vae.standardizer.batch(train.view(), 0..4).unwrap();
        assert!(batch.device().same_device(&device));
    }

    #[test]
    fn checks_parameters() {
        for bad in [
            VaeConfig {
                latent_dim: 0,
                ..Default::default()
            },
            VaeConfig {
                score_samples: 0,
                ..Default::default()
            },
            VaeConfig {
                hidden_widths: vec![],
                ..Default::default()
            },
            VaeConfig {
                hidden_widths: vec![8, 0],
                ..Default::default()
            },
            VaeConfig {
                leaky_slope: 1.0,
                ..Default::default()
            },
            VaeConfig {
                decoder_variance: DecoderVariance::Fixed(0.0),
                ..Default::default()
            },
            VaeConfig {
                training: TrainingConfig {
                    epochs: 0,
                    ..Default::default()
                },
                ..Default::default()
            },
            VaeConfig {
                training: TrainingConfig {
                    learning_rate: -1.0,
                    ..Default::default()
                },
                ..Default::default()
            },
        ] {
            assert!(
                matches!(
                    bad.check(),
                    Err(crate::BaselineError::InvalidParameter { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
