//! Fully connected ℓ2 autoencoder: the anomaly score of a vector is its squared reconstruction
//! error ‖x − D(E(x))‖² (in standardised units when the input is standardised).
//!
//! Architecture (candle-nn `Linear` layers): encoder d → h₁ → … → h_k, decoder
//! h_k → … → h₁ → d, leaky ReLU after every layer except the bottleneck (h_k, linear code) and
//! the output. Default widths [64, 32]: d → 64 → 32 → 64 → d. Trained with Adam on the mean over
//! the batch of the squared error summed over dimensions.

use candle_core::{Device, Tensor, Var};
use ndarray::ArrayView2;
use rand::{SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use crate::data::{check_query, check_training, derive_seed, stream};
use crate::error::Result;
use crate::nn::{Mlp, SCORE_BATCH, Standardizer, TrainingConfig, check_architecture, train_epochs};

const METHOD: &str = "l2 autoencoder";

/// Configuration of [`Autoencoder`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoencoderConfig {
    /// Encoder widths after the input, the last one being the code size; the decoder mirrors
    /// them. Default [64, 32].
    pub hidden_widths: Vec<usize>,
    /// Negative slope of the leaky ReLU (0 gives a plain ReLU). Default 0.01.
    pub leaky_slope: f64,
    /// Epochs, batch size, learning rate, standardisation.
    pub training: TrainingConfig,
}

impl Default for AutoencoderConfig {
    fn default() -> Self {
        Self {
            hidden_widths: vec![64, 32],
            leaky_slope: 0.01,
            training: TrainingConfig::default(),
        }
    }
}

impl AutoencoderConfig {
    /// Validates the architecture and the training parameters.
    pub fn check(&self) -> Result<()> {
        check_architecture(METHOD, &self.hidden_widths, self.leaky_slope)?;
        self.training.check(METHOD)
    }
}

/// A trained autoencoder.
#[derive(Debug, Clone)]
pub struct Autoencoder {
    encoder: Mlp,
    decoder: Mlp,
    standardizer: Standardizer,
    dim: usize,
    loss_history: Vec<f64>,
}

impl Autoencoder {
    /// Trains on the training vectors on `device`, where the model then stays (scoring runs
    /// there too); deterministic given `seed` (the initial weights and the shuffling do not
    /// depend on the device).
    ///
    /// # Shapes
    /// `train`: (n, d), n ≥ 1.
    pub fn fit(
        config: &AutoencoderConfig,
        train: ArrayView2<'_, f32>,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        config.check()?;
        check_training(train, "l2 autoencoder training vectors")?;
        let dim = train.ncols();
        let mut widths = vec![dim];
        widths.extend(&config.hidden_widths);
        let mut rng = StdRng::seed_from_u64(derive_seed(seed, stream::INIT));
        let mut vars: Vec<Var> = Vec::new();
        let encoder = Mlp::new(&widths, config.leaky_slope, &mut rng, &mut vars, device)?;
        let reversed: Vec<usize> = widths.iter().rev().copied().collect();
        let decoder = Mlp::new(&reversed, config.leaky_slope, &mut rng, &mut vars, device)?;
        let standardizer = Standardizer::fit(train, config.training.standardize, device);
        let loss_history = train_epochs(
            METHOD,
            &config.training,
            train,
            &standardizer,
            vars,
            derive_seed(seed, stream::SHUFFLE),
            derive_seed(seed, stream::NOISE),
            |batch, _| {
                let reconstruction = decoder.forward(&encoder.forward(batch, false)?, false)?;
                Ok((reconstruction - batch)?.sqr()?.sum(1)?.mean_all()?)
            },
        )?;
        Ok(Self {
            encoder,
            decoder,
            standardizer,
            dim,
            loss_history,
        })
    }

    /// Dimension of the vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The device the model lives on (the one given to [`Autoencoder::fit`]).
    pub fn device(&self) -> &Device {
        self.standardizer.device()
    }

    /// Mean training loss (squared reconstruction error per vector) of every epoch.
    pub fn loss_history(&self) -> &[f64] {
        &self.loss_history
    }

    /// Reconstructions in the input units (standardisation undone).
    ///
    /// # Shapes
    /// `vectors`: (m, d) → (m, d), row-major.
    pub fn reconstruct(&self, vectors: ArrayView2<'_, f32>) -> Result<Vec<f32>> {
        check_query(vectors, self.dim, "l2 autoencoder query vectors")?;
        let mut out = Vec::with_capacity(vectors.len());
        for start in (0..vectors.nrows()).step_by(SCORE_BATCH) {
            let end = (start + SCORE_BATCH).min(vectors.nrows());
            let x = self.standardizer.batch(vectors, start..end)?;
            let r = self.forward(&x)?.flatten_all()?.to_vec1::<f32>()?;
            out.extend(self.standardizer.unstandardize(r));
        }
        Ok(out)
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.decoder
            .forward(&self.encoder.forward(x, false)?, false)
    }

    /// Anomaly scores: squared reconstruction error Σⱼ (xⱼ − x̂ⱼ)², in standardised units when
    /// the input is standardised.
    ///
    /// # Shapes
    /// `vectors`: (m, d) → m scores.
    pub fn score(&self, vectors: ArrayView2<'_, f32>) -> Result<Vec<f32>> {
        check_query(vectors, self.dim, "l2 autoencoder query vectors")?;
        let mut out = Vec::with_capacity(vectors.nrows());
        for start in (0..vectors.nrows()).step_by(SCORE_BATCH) {
            let end = (start + SCORE_BATCH).min(vectors.nrows());
            let x = self.standardizer.batch(vectors, start..end)?;
            let err = (self.forward(&x)? - &x)?.sqr()?.sum(1)?;
            out.extend(err.to_vec1::<f32>()?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_lives_on_the_device_it_was_fitted_on() {
        // The CPU is the only device of this build; what matters is that the weights and the
        // batches follow the argument rather than a constant.
        let device = Device::Cpu;
        let train = ndarray::Array2::from_shape_fn((30, 3), |(i, j)| (i * 3 + j) as f32 / 90.0);
        let config = AutoencoderConfig {
            hidden_widths: vec![4, 2],
            training: TrainingConfig {
                epochs: 1,
                batch_size: 8,
                ..Default::default()
            },
            ..Default::default()
        };
        let ae = Autoencoder::fit(&config, train.view(), 0, &device).unwrap();
        assert!(ae.device().same_device(&device));
        let batch = ae.standardizer.batch(train.view(), 0..4).unwrap();
        assert!(batch.device().same_device(&device));
        assert!(ae.forward(&batch).unwrap().device().same_device(&device));
    }
}
