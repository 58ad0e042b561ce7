//! Divergence detection: a NaN or infinite loss, or one that explodes relative to its recent
//! values, stops a run before a bad step can reach a checkpoint.

use serde::{Deserialize, Serialize};

/// When a run counts as diverged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardConfig {
    /// A loss whose magnitude exceeds this factor times the magnitude of the running mean
    /// (exponential, about the last 20 steps; at least 1) stops the run. A non-finite loss or
    /// gradient always does.
    pub explode_factor: f64,
    /// Steps before the explosion test applies (the first losses move fast).
    pub warmup_iterations: usize,
}

/// Weight of the newest loss in the running mean (about the last 20 steps).
const EMA_WEIGHT: f64 = 0.05;

/// Running state of the divergence test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossGuard {
    explode_factor: f64,
    warmup: usize,
    /// Exponential running mean of the accepted losses.
    mean: Option<f64>,
    /// Losses accepted so far.
    seen: usize,
}

impl LossGuard {
    /// A guard with no history.
    pub fn new(config: &GuardConfig) -> Self {
        Self {
            explode_factor: config.explode_factor,
            warmup: config.warmup_iterations,
            mean: None,
            seen: 0,
        }
    }

    /// The running mean of the accepted losses.
    pub fn running_mean(&self) -> Option<f64> {
        self.mean
    }

    /// Accepts `loss` (and folds it into the running mean), or says why it is bad: not
    /// finite, or, after the warm-up, |loss| > explode_factor · max(|running mean|, 1).
    pub fn check(&mut self, loss: f64) -> Result<(), String> {
        if !loss.is_finite() {
            return Err(format!("the loss is {loss}"));
        }
        if let Some(mean) = self.mean
            && self.seen >= self.warmup
        {
            let limit = self.explode_factor * mean.abs().max(1.0);
            if loss.abs() > limit {
                return Err(format!(
                    "the loss {loss:.6e} exploded (more than {} times the running mean \
                     {mean:.6e})",
                    self.explode_factor
                ));
            }
        }
        self.mean = Some(match self.mean {
            Some(m) => m + EMA_WEIGHT * (loss - m),
            None => loss,
        });
        self.seen += 1;
        Ok(())
    }

    /// Restores the history (from a checkpoint) under the current configuration.
    pub fn restore(&mut self, mean: Option<f64>, seen: usize) {
        self.mean = mean;
        self.seen = seen;
    }

    /// Losses accepted so far.
    pub fn seen(&self) -> usize {
        self.seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(factor: f64, warmup: usize) -> LossGuard {
        LossGuard::new(&GuardConfig {
            explode_factor: factor,
            warmup_iterations: warmup,
        })
    }

    #[test]
    fn non_finite_losses_always_fail() {
        let mut g = guard(10.0, 100);
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(g.check(bad).is_err());
        }
        assert_eq!(g.seen(), 0);
        assert_eq!(g.running_mean(), None);
    }

    #[test]
    fn explosion_is_relative_to_the_running_mean_after_warmup() {
        let mut g = guard(10.0, 2);
        // Warm-up: anything finite passes. Mean: 100, then 100 + 0.05·(50 − 100) = 97.5.
        g.check(100.0).unwrap();
        g.check(50.0).unwrap();
        assert_eq!(g.running_mean(), Some(97.5));
        // Limit 10 · 97.5 = 975.
        g.check(970.0).unwrap();
        let mean = 97.5 + 0.05 * (970.0 - 97.5);
        assert!((g.running_mean().unwrap() - mean).abs() < 1e-9);
        let err = g.check(10.0 * mean + 1.0).unwrap_err();
        assert!(err.contains("exploded"), "{err}");
        // A rejected loss does not enter the mean.
        assert!((g.running_mean().unwrap() - mean).abs() < 1e-9);
        // Small (or negative) means: the limit is at least the factor itself.
        let mut g = guard(10.0, 0);
        g.check(-0.01).unwrap();
        g.check(-9.9).unwrap();
        assert!(g.check(-10.5).is_err());
    }
}
