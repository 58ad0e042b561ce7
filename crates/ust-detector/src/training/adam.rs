//! Adam with inspectable state, so that a checkpoint can hold the moments and the step count
//! and a resumed run continues exactly (candle_nn's `AdamW` keeps its state private).
//!
//! Per parameter θ with gradient g, at step t = 1, 2, …:
//!
//! ```text
//! L2 mode:         g ← g + wd·θ                      (PyTorch `Adam(weight_decay=wd)`)
//! m ← β1·m + (1 − β1)·g
//! v ← β2·v + (1 − β2)·g²
//! θ ← θ − lr · (m / (1 − β1^t)) / (√(v / (1 − β2^t)) + ε)
//! decoupled mode:  θ ← θ − lr·wd·θ before the update   (PyTorch `AdamW`, candle's `AdamW`)
//! ```
//!
//! The paper trains with "Adam, weight decay 1e-5", which in the frameworks of its time means
//! the L2 form; that is the default. The decoupled form is selectable.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{DetectorError, Result};

/// How the weight decay enters the update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightDecayMode {
    /// Added to the gradient (wd·θ), so it is rescaled by Adam like the loss gradient.
    L2,
    /// Applied to the weights directly (θ ← θ·(1 − lr·wd)), independent of the gradient scale.
    Decoupled,
}

/// Adam's hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamConfig {
    pub learning_rate: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    pub weight_decay: f64,
    pub weight_decay_mode: WeightDecayMode,
}

impl AdamConfig {
    /// Validates the hyper-parameters.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(DetectorError::InvalidConfig(format!("optimizer.{m}")));
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad(format!(
                "learning_rate must be finite and positive, got {}",
                self.learning_rate
            ));
        }
        for (name, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return bad(format!("{name} must be in [0, 1), got {b}"));
            }
        }
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return bad(format!(
                "epsilon must be finite and positive, got {}",
                self.epsilon
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "weight_decay must be finite and non-negative, got {}",
                self.weight_decay
            ));
        }
        Ok(())
    }
}

/// One optimised parameter and its moments.
#[derive(Debug)]
struct Slot {
    name: String,
    var: Var,
    m: Vec<f32>,
    v: Vec<f32>,
}

/// The optimiser: parameters in a fixed (name) order, their first and second moments, and the
/// number of steps taken.
#[derive(Debug)]
pub struct Adam {
    config: AdamConfig,
    slots: Vec<Slot>,
    step: u64,
}

/// A parameter whose gradient had a NaN or infinity (nothing was updated).
#[derive(Debug, Clone, PartialEq)]
pub struct NonFiniteGradient {
    /// The parameter's name.
    pub parameter: String,
}

impl Adam {
    /// An optimiser over `params` (sorted by name here, so the order never depends on a hash
    /// map), moments at zero, step 0.
    pub fn new(mut params: Vec<(String, Var)>, config: AdamConfig) -> Result<Self> {
        config.check()?;
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = params
            .into_iter()
            .map(|(name, var)| {
                let n = var.elem_count();
                Slot {
                    name,
                    var,
                    m: vec![0.0; n],
                    v: vec![0.0; n],
                }
            })
            .collect();
        Ok(Self {
            config,
            slots,
            step: 0,
        })
    }

    /// Steps taken so far.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The parameter names, in update order.
    pub fn parameter_names(&self) -> impl Iterator<Item = &str> {
        self.slots.iter().map(|s| s.name.as_str())
    }

    /// One update from `grads`. A parameter without a gradient is left alone (as PyTorch does).
    /// If any gradient has a NaN or infinity, nothing is updated and the parameter is named.
    pub fn step(
        &mut self,
        grads: &GradStore,
    ) -> Result<std::result::Result<(), NonFiniteGradient>> {
        let mut gradients = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            let g = match grads.get(slot.var.as_tensor()) {
                Some(g) => g.flatten_all()?.to_vec1::<f32>()?,
                None => {
                    gradients.push(None);
                    continue;
                }
            };
            if g.iter().any(|x| !x.is_finite()) {
                return Ok(Err(NonFiniteGradient {
                    parameter: slot.name.clone(),
                }));
            }
            gradients.push(Some(g));
        }
        self.step += 1;
        let c = &self.config;
        let t = self.step as i32;
        let (b1, b2) = (c.beta1 as f32, c.beta2 as f32);
        let correction1 = 1.0 - c.beta1.powi(t);
        let correction2 = 1.0 - c.beta2.powi(t);
        // θ ← θ − step_size · m / (√v / √correction2 + ε), PyTorch's arrangement.
        let step_size = (c.learning_rate / correction1) as f32;
        let inv_sqrt_c2 = (1.0 / correction2.sqrt()) as f32;
        let eps = c.epsilon as f32;
        let wd = c.weight_decay as f32;
        let decay_factor = (1.0 - c.learning_rate * c.weight_decay) as f32;
        for (slot, g) in self.slots.iter_mut().zip(gradients) {
            let Some(mut g) = g else { continue };
            let tensor = slot.var.as_tensor();
            let mut theta = tensor.flatten_all()?.to_vec1::<f32>()?;
            match c.weight_decay_mode {
                WeightDecayMode::L2 if wd != 0.0 => {
                    for (gi, &ti) in g.iter_mut().zip(&theta) {
                        *gi += wd * ti;
                    }
                }
                WeightDecayMode::Decoupled if wd != 0.0 => {
                    for ti in theta.iter_mut() {
                        *ti *= decay_factor;
                    }
                }
                _ => {}
            }
            for i in 0..theta.len() {
                let gi = g[i];
                slot.m[i] = b1 * slot.m[i] + (1.0 - b1) * gi;
                slot.v[i] = b2 * slot.v[i] + (1.0 - b2) * gi * gi;
                theta[i] -= step_size * slot.m[i] / (slot.v[i].sqrt() * inv_sqrt_c2 + eps);
            }
            let updated = Tensor::from_vec(theta, tensor.shape(), tensor.device())?;
            slot.var.set(&updated)?;
        }
        Ok(Ok(()))
    }

    /// The moments as tensors named `adam.m.<parameter>` and `adam.v.<parameter>`.
    pub fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::with_capacity(2 * self.slots.len());
        for s in &self.slots {
            let shape = s.var.shape();
            let dev = s.var.device();
            out.push((
                format!("adam.m.{}", s.name),
                Tensor::from_slice(&s.m, shape, dev)?,
            ));
            out.push((
                format!("adam.v.{}", s.name),
                Tensor::from_slice(&s.v, shape, dev)?,
            ));
        }
        Ok(out)
    }

    /// Restores the moments (from tensors named as [`Adam::state_tensors`] writes them, looked
    /// up with `get`) and the step count. Every parameter's moments must be there with its
    /// shape; `what` names the source in errors.
    pub fn restore(
        &mut self,
        step: u64,
        get: impl Fn(&str) -> Option<Tensor>,
        what: &std::path::Path,
    ) -> Result<()> {
        for s in &mut self.slots {
            for (kind, dst) in [("m", &mut s.m), ("v", &mut s.v)] {
                let name = format!("adam.{kind}.{}", s.name);
                let t = get(&name).ok_or_else(|| {
                    DetectorError::bad_file(what, format!("missing tensor {name}"))
                })?;
                if t.dims() != s.var.dims() {
                    return Err(DetectorError::bad_file(
                        what,
                        format!(
                            "tensor {name} has shape {:?}, the parameter {:?}",
                            t.dims(),
                            s.var.dims()
                        ),
                    ));
                }
                *dst = t.flatten_all()?.to_vec1::<f32>()?;
            }
        }
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use std::path::Path;

    fn config(mode: WeightDecayMode, wd: f64) -> AdamConfig {
        AdamConfig {
            learning_rate: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            weight_decay: wd,
            weight_decay_mode: mode,
        }
    }

    /// Minimises f(θ) = Σ θ²/2 (gradient θ) for two steps and compares with the update
    /// written out by hand.
    #[test]
    fn two_steps_match_the_closed_form() {
        for (mode, wd) in [
            (WeightDecayMode::L2, 0.0),
            (WeightDecayMode::L2, 0.5),
            (WeightDecayMode::Decoupled, 0.5),
        ] {
            let var = Var::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
            let cfg = config(mode, wd);
            let mut adam = Adam::new(vec![("w".into(), var.clone())], cfg.clone()).unwrap();
            // Reference in f64.
            let mut theta = [1.0f64, -2.0];
            let (mut m, mut v) = ([0.0f64; 2], [0.0f64; 2]);
            for t in 1..=2 {
                let loss = (var.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
                let grads = loss.backward().unwrap();
                adam.step(&grads).unwrap().unwrap();
                for i in 0..2 {
                    let mut g = theta[i];
                    if mode == WeightDecayMode::L2 {
                        g += wd * theta[i];
                    } else {
                        theta[i] *= 1.0 - cfg.learning_rate * wd;
                    }
                    m[i] = 0.9 * m[i] + 0.1 * g;
                    v[i] = 0.999 * v[i] + 0.001 * g * g;
                    let mh = m[i] / (1.0 - 0.9f64.powi(t));
                    let vh = v[i] / (1.0 - 0.999f64.powi(t));
                    theta[i] -= cfg.learning_rate * mh / (vh.sqrt() + 1e-8);
                }
            }
            let got = var.as_tensor().to_vec1::<f32>().unwrap();
            for i in 0..2 {
                assert!(
                    (got[i] as f64 - theta[i]).abs() < 1e-5,
                    "{mode:?} {wd}: {got:?} vs {theta:?}"
                );
            }
            assert_eq!(adam.step_count(), 2);
        }
        // The first Adam step moves every coordinate by lr (bias-corrected m/√v = sign(g)),
        // a hand check independent of the loop above: θ = (1, −2) → (0.9, −1.9).
        let var = Var::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
        let mut adam = Adam::new(
            vec![("w".into(), var.clone())],
            config(WeightDecayMode::L2, 0.0),
        )
        .unwrap();
        let loss = (var.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
        adam.step(&loss.backward().unwrap()).unwrap().unwrap();
        let got = var.as_tensor().to_vec1::<f32>().unwrap();
        assert!(
            (got[0] - 0.9).abs() < 1e-6 && (got[1] + 1.9).abs() < 1e-6,
            "{got:?}"
        );
    }

    #[test]
    fn state_round_trip_continues_identically() {
        let cfg = config(WeightDecayMode::L2, 0.01);
        let steps = |adam: &mut Adam, var: &Var, n: usize| {
            for _ in 0..n {
                let loss = var.as_tensor().powf(4.0).unwrap().sum_all().unwrap();
                adam.step(&loss.backward().unwrap()).unwrap().unwrap();
            }
        };
        let new_var = |values: &[f32]| Var::new(values, &Device::Cpu).unwrap();
        let start = [0.5f32, 3.0, -1.0];

        let var = new_var(&start);
        let mut adam = Adam::new(vec![("w".into(), var.clone())], cfg.clone()).unwrap();
        steps(&mut adam, &var, 6);
        let straight = var.as_tensor().to_vec1::<f32>().unwrap();

        let var = new_var(&start);
        let mut adam = Adam::new(vec![("w".into(), var.clone())], cfg.clone()).unwrap();
        steps(&mut adam, &var, 3);
        let (state, step) = (adam.state_tensors().unwrap(), adam.step_count());
        let values = var.as_tensor().to_vec1::<f32>().unwrap();
        drop(adam);
        let var = new_var(&values);
        let mut adam = Adam::new(vec![("w".into(), var.clone())], cfg.clone()).unwrap();
        let get = |n: &str| state.iter().find(|(k, _)| k == n).map(|(_, t)| t.clone());
        adam.restore(step, get, Path::new("mem")).unwrap();
        steps(&mut adam, &var, 3);
        assert_eq!(var.as_tensor().to_vec1::<f32>().unwrap(), straight);

        // Restoring with a missing moment is an error naming it.
        let err = adam.restore(1, |_| None, Path::new("ckpt")).unwrap_err();
        assert!(err.to_string().contains("adam.m.w"), "{err}");
    }

    #[test]
    fn non_finite_gradient_updates_nothing() {
        let a = Var::new(&[1f32, 2.0], &Device::Cpu).unwrap();
        let b = Var::new(&[-1f32], &Device::Cpu).unwrap();
        let mut adam = Adam::new(
            vec![("b".into(), b.clone()), ("a".into(), a.clone())],
            config(WeightDecayMode::L2, 0.0),
        )
        .unwrap();
        assert_eq!(adam.parameter_names().collect::<Vec<_>>(), ["a", "b"]);
        // d/db sqrt(b) at b = -1 is NaN.
        let loss = (a.as_tensor().sum_all().unwrap()
            + b.as_tensor().sqrt().unwrap().sum_all().unwrap())
        .unwrap();
        let bad = adam.step(&loss.backward().unwrap()).unwrap().unwrap_err();
        assert_eq!(bad.parameter, "b");
        assert_eq!(a.as_tensor().to_vec1::<f32>().unwrap(), [1.0, 2.0]);
        assert_eq!(adam.step_count(), 0);
    }
}
