//! Shared pieces of the two neural baselines (autoencoder and VAE): seeded fully connected
//! layers, per-dimension standardisation, mini-batch gathering and the Adam training loop.
//!
//! candle's CPU device cannot be seeded, so every weight is drawn from a seeded generator here
//! (PyTorch's default `nn.Linear` initialisation: weights and biases uniform in ±1/√fan_in) and
//! every random number of training (shuffling, VAE noise) comes from seeded generators as well.
//! The draws happen on the host in a fixed order and only the finished values are copied to the
//! caller's device, so the initial weights and the noise do not depend on the device.

use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Linear, Module, Optimizer, ParamsAdamW};
use ndarray::ArrayView2;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use crate::error::{BaselineError, Result, invalid};

/// Training hyper-parameters shared by the autoencoder and the VAE.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    /// Passes over the training vectors. Default 30.
    pub epochs: usize,
    /// Vectors per Adam step (the last batch of an epoch may be smaller). Default 256.
    pub batch_size: usize,
    /// Adam step size (β = 0.9, 0.999, ε = 1e-8, no weight decay). Default 1e-3.
    pub learning_rate: f64,
    /// Standardise every input dimension with the training mean and standard deviation before
    /// the network sees it (scores are then computed in standardised units). Default true.
    pub standardize: bool,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        Self {
            epochs: 30,
            batch_size: 256,
            learning_rate: 1e-3,
            standardize: true,
        }
    }
}

impl TrainingConfig {
    /// Rejects zero epochs or batch size and a learning rate that is not positive.
    pub fn check(&self, method: &'static str) -> Result<()> {
        if self.epochs == 0 {
            return Err(invalid(method, "epochs", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(invalid(method, "batch_size", "must be at least 1"));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err(invalid(
                method,
                "learning_rate",
                format!("{} is not a positive number", self.learning_rate),
            ));
        }
        Ok(())
    }
}

/// Rejects empty or zero-width hidden layer lists and a leaky-ReLU slope outside [0, 1).
pub(crate) fn check_architecture(
    method: &'static str,
    hidden_widths: &[usize],
    leaky_slope: f64,
) -> Result<()> {
    if hidden_widths.is_empty() {
        return Err(invalid(method, "hidden_widths", "needs at least one layer"));
    }
    if hidden_widths.contains(&0) {
        return Err(invalid(
            method,
            "hidden_widths",
            format!("{hidden_widths:?} has a layer of width 0"),
        ));
    }
    if !(0.0..1.0).contains(&leaky_slope) {
        return Err(invalid(
            method,
            "leaky_slope",
            format!("{leaky_slope} is not in [0, 1)"),
        ));
    }
    Ok(())
}

/// Per-dimension affine standardisation x ↦ (x − mean) / std (or the identity), producing
/// batches on the device the network lives on.
#[derive(Debug, Clone)]
pub(crate) struct Standardizer {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    /// Where [`Standardizer::batch`] puts its tensors: every batch the network sees goes
    /// through here, so holding the device here keeps the training loop and the scoring paths
    /// free of a device argument.
    device: Device,
}

impl Standardizer {
    /// Training mean and standard deviation per dimension (f64 accumulation); a dimension with
    /// standard deviation below 1e-12 is only centred. `enabled = false` gives the identity.
    /// Batches are built on `device`.
    pub(crate) fn fit(x: ArrayView2<'_, f32>, enabled: bool, device: &Device) -> Self {
        let d = x.ncols();
        if !enabled {
            return Self {
                mean: vec![0.0; d],
                inv_std: vec![1.0; d],
                device: device.clone(),
            };
        }
        let n = x.nrows() as f64;
        let mut sum = vec![0.0f64; d];
        let mut sum_sq = vec![0.0f64; d];
        for row in x.rows() {
            for (j, &v) in row.iter().enumerate() {
                sum[j] += f64::from(v);
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        for row in x.rows() {
            for (j, &v) in row.iter().enumerate() {
                sum_sq[j] += (f64::from(v) - mean[j]).powi(2);
            }
        }
        let inv_std = sum_sq
            .iter()
            .map(|s| {
                let std = (s / n).sqrt();
                if std > 1e-12 { (1.0 / std) as f32 } else { 1.0 }
            })
            .collect();
        Self {
            mean: mean.iter().map(|&m| m as f32).collect(),
            inv_std,
            device: device.clone(),
        }
    }

    /// The device the batches are built on (the network's).
    pub(crate) fn device(&self) -> &Device {
        &self.device
    }

    /// Undoes the standardisation of row-major vectors of this dimension.
    pub(crate) fn unstandardize(&self, mut rows: Vec<f32>) -> Vec<f32> {
        let d = self.mean.len();
        for (k, v) in rows.iter_mut().enumerate() {
            let j = k % d;
            *v = *v / self.inv_std[j] + self.mean[j];
        }
        rows
    }

    /// The standardised rows `rows` of `x` as a (rows.len(), d) tensor on the standardiser's
    /// device (standardised on the host, then copied once).
    ///
    /// # Shapes
    /// `x`: (n, d) → (rows.len(), d).
    pub(crate) fn batch(
        &self,
        x: ArrayView2<'_, f32>,
        rows: impl ExactSizeIterator<Item = usize>,
    ) -> Result<Tensor> {
        let d = x.ncols();
        let b = rows.len();
        let mut buf = Vec::with_capacity(b * d);
        for r in rows {
            for (j, &v) in x.row(r).iter().enumerate() {
                buf.push((v - self.mean[j]) * self.inv_std[j]);
            }
        }
        Ok(Tensor::from_vec(buf, (b, d), &self.device)?)
    }
}

/// A fully connected layer with seeded initialisation on `device`; its weight and bias are
/// pushed to `vars` for the optimiser.
pub(crate) fn seeded_linear(
    fan_in: usize,
    fan_out: usize,
    rng: &mut StdRng,
    vars: &mut Vec<Var>,
    device: &Device,
) -> Result<Linear> {
    let bound = 1.0 / (fan_in as f32).sqrt();
    let mut draw =
        |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-bound..bound)).collect() };
    let weight = Var::from_tensor(&Tensor::from_vec(
        draw(fan_out * fan_in),
        (fan_out, fan_in),
        device,
    )?)?;
    let bias = Var::from_tensor(&Tensor::from_vec(draw(fan_out), fan_out, device)?)?;
    let layer = Linear::new(weight.as_tensor().clone(), Some(bias.as_tensor().clone()));
    vars.push(weight);
    vars.push(bias);
    Ok(layer)
}

/// A stack of linear layers with leaky ReLU between them (not after the last one).
#[derive(Debug, Clone)]
pub(crate) struct Mlp {
    layers: Vec<Linear>,
    leaky_slope: f64,
}

impl Mlp {
    /// Layers widths[0] → widths[1] → … → widths[last], on `device`.
    pub(crate) fn new(
        widths: &[usize],
        leaky_slope: f64,
        rng: &mut StdRng,
        vars: &mut Vec<Var>,
        device: &Device,
    ) -> Result<Self> {
        let layers = widths
            .windows(2)
            .map(|w| seeded_linear(w[0], w[1], rng, vars, device))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            leaky_slope,
        })
    }

    /// Applies the layers, leaky ReLU after all but the last; with `activate_last`, after the
    /// last too.
    ///
    /// # Shapes
    /// `x`: (b, widths[0]) → (b, widths[last]).
    pub(crate) fn forward(&self, x: &Tensor, activate_last: bool) -> Result<Tensor> {
        let mut h = x.clone();
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h)?;
            if i < last || activate_last {
                h = leaky_relu(&h, self.leaky_slope)?;
            }
        }
        Ok(h)
    }
}

/// max(x, slope·x) for slope in [0, 1).
fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    if slope == 0.0 {
        Ok(x.relu()?)
    } else {
        Ok(x.maximum(&(x * slope)?)?)
    }
}

/// Trains by Adam on shuffled mini-batches; `batch_loss` maps a standardised batch (b, d) and
/// the epoch's random generator to the mean loss of the batch. Returns the mean loss of each
/// epoch (weighted by batch size).
pub(crate) fn train_epochs(
    method: &'static str,
    config: &TrainingConfig,
    x: ArrayView2<'_, f32>,
    standardizer: &Standardizer,
    vars: Vec<Var>,
    shuffle_seed: u64,
    noise_seed: u64,
    mut batch_loss: impl FnMut(&Tensor, &mut StdRng) -> Result<Tensor>,
) -> Result<Vec<f64>> {
    let mut optimizer = AdamW::new(
        vars,
        ParamsAdamW {
            lr: config.learning_rate,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        },
    )?;
    let n = x.nrows();
    let mut order: Vec<usize> = (0..n).collect();
    let mut shuffle_rng = StdRng::seed_from_u64(shuffle_seed);
    let mut noise_rng = StdRng::seed_from_u64(noise_seed);
    let mut history = Vec::with_capacity(config.epochs);
    for epoch in 0..config.epochs {
        order.shuffle(&mut shuffle_rng);
        let mut total = 0.0f64;
        for chunk in order.chunks(config.batch_size) {
            let batch = standardizer.batch(x, chunk.iter().copied())?;
            let loss = batch_loss(&batch, &mut noise_rng)?;
            let value = f64::from(loss.to_scalar::<f32>()?);
            if !value.is_finite() {
                return Err(BaselineError::Diverged {
                    method,
                    epoch,
                    loss: value,
                });
            }
            optimizer.backward_step(&loss)?;
            total += value * chunk.len() as f64;
        }
        history.push(total / n as f64);
    }
    Ok(history)
}

/// Rows per forward pass when scoring.
pub(crate) const SCORE_BATCH: usize = 4096;
