//! One-class SVM (Schölkopf et al. 2001) with an RBF kernel; the anomaly score is the negative
//! decision function.
//!
//! The dual problem is solved by linfa-svm's SMO solver (a port of libsvm's, used without its
//! shrinking heuristic, which is broken in linfa-svm 0.8.1), on the training
//! vectors in double precision with a dense kernel matrix (n² doubles: 5 000 vectors take
//! 200 MB, hence the subsampling default of the runner configuration). As in libsvm, the dual
//! variables satisfy 0 ≤ αᵢ ≤ 1 and Σ αᵢ = ν·n, and the decision function is
//!
//! ```text
//! f(x) = Σᵢ αᵢ exp(−γ ‖x − xᵢ‖²) − ρ,     score(x) = −f(x)
//! ```
//!
//! (f ≥ 0 inside the learned support region). linfa evaluates f one vector at a time; here the
//! support vectors are taken out of the fitted model and f is evaluated by blocked
//! double-precision matrix products in parallel, which is what makes scoring a million vectors
//! practical. A unit test checks both evaluations agree.

use linfa::DatasetBase;
use linfa::traits::Fit;
use linfa_svm::Svm;
use ndarray::{Array1, Array2, ArrayView2, Axis, linalg::general_mat_mul, s};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::{check_query, check_training};
use crate::error::{BaselineError, Result, invalid};

/// Queries per parallel task of the decision function.
const QUERY_BLOCK: usize = 256;
/// Support vectors per matrix product.
const SUPPORT_BLOCK: usize = 1024;

/// The RBF kernel width γ of k(x, y) = exp(−γ ‖x − y‖²).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SvmGamma {
    /// scikit-learn's `gamma="scale"`: γ = 1 / (d · Var(X)), Var over all n·d entries of the
    /// training matrix (population variance); γ = 1 if that variance is 0.
    Scale,
    /// A fixed γ > 0.
    Value(f64),
}

/// Configuration of [`OneClassSvm`]; the defaults are libsvm's and scikit-learn's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OneClassSvmConfig {
    /// ν ∈ (0, 1]: an upper bound on the fraction of training vectors outside the support region
    /// and a lower bound on the fraction of support vectors. Default 0.5.
    pub nu: f64,
    /// RBF width. Default [`SvmGamma::Scale`].
    pub gamma: SvmGamma,
    /// Stopping tolerance of SMO: the largest KKT violation max{Gⱼ : αⱼ > 0} − min{Gᵢ : αᵢ < 1},
    /// G = Kα, allowed at the solution. Default 1e-3 (libsvm's).
    pub tolerance: f64,
}

impl Default for OneClassSvmConfig {
    fn default() -> Self {
        Self {
            nu: 0.5,
            gamma: SvmGamma::Scale,
            tolerance: 1e-3,
        }
    }
}

impl OneClassSvmConfig {
    /// Rejects ν ∉ (0, 1], γ ≤ 0 and a tolerance that is not positive.
    pub fn check(&self) -> Result<()> {
        if !(self.nu > 0.0 && self.nu <= 1.0) {
            return Err(invalid(
                "one-class SVM",
                "nu",
                format!("{} is not in (0, 1]", self.nu),
            ));
        }
        if let SvmGamma::Value(g) = self.gamma
            && !(g > 0.0 && g.is_finite())
        {
            return Err(invalid(
                "one-class SVM",
                "gamma",
                format!("{g} is not a positive number"),
            ));
        }
        if !(self.tolerance > 0.0 && self.tolerance.is_finite()) {
            return Err(invalid(
                "one-class SVM",
                "tolerance",
                format!("{} is not a positive number", self.tolerance),
            ));
        }
        Ok(())
    }
}

/// A fitted one-class SVM: its support vectors, their coefficients αᵢ > 0, ρ and γ.
#[derive(Debug, Clone)]
pub struct OneClassSvm {
    support_vectors: Array2<f64>,
    support_norms: Vec<f64>,
    alpha: Array1<f64>,
    rho: f64,
    gamma: f64,
    #[cfg(test)]
    linfa_model: Svm<f64, bool>,
}

impl OneClassSvm {
    /// Solves the one-class dual on the training vectors.
    ///
    /// # Shapes
    /// `train`: (n, d), n ≥ 1.
    pub fn fit(config: &OneClassSvmConfig, train: ArrayView2<'_, f32>) -> Result<Self> {
        config.check()?;
        check_training(train, "one-class SVM training vectors")?;
        let records = train.mapv(f64::from);
        let gamma = match config.gamma {
            SvmGamma::Value(g) => g,
            SvmGamma::Scale => {
                let var = records.var(0.0);
                if var > 0.0 {
                    1.0 / (records.ncols() as f64 * var)
                } else {
                    1.0
                }
            }
        };
        let n = records.nrows();
        let dataset = DatasetBase::new(records, Array1::from_elem(n, ()));
        // linfa's Gaussian kernel is exp(−‖x − y‖² / eps): eps = 1 / γ.
        let model: Svm<f64, bool> = Svm::<f64, linfa::dataset::Pr>::params()
            .nu_weight(config.nu)
            .gaussian_kernel(1.0 / gamma)
            .eps(config.tolerance)
            // linfa-svm 0.8.1's shrinking is broken: `do_shrinking` iterates over a range fixed
            // before it decrements the active-set size (an index underflow, a panic on a few
            // thousand vectors) and `reconstruct_gradient` tests the wrong variable. Without
            // shrinking neither runs; each SMO step then scans all n variables.
            .shrinking(false)
            .fit(&dataset)
            .map_err(|e| BaselineError::Svm(e.to_string()))?;
        let records = dataset.records;
        if model.alpha.len() != n || !model.rho.is_finite() {
            return Err(BaselineError::Svm(format!(
                "unexpected solution: {} coefficients for {n} vectors, rho = {}",
                model.alpha.len(),
                model.rho
            )));
        }
        // The same support criterion as linfa's own prediction.
        let support: Vec<usize> = (0..n)
            .filter(|&i| model.alpha[i].abs() > 100.0 * f64::EPSILON)
            .collect();
        let support_vectors = records.select(Axis(0), &support);
        let alpha = Array1::from_iter(support.iter().map(|&i| model.alpha[i]));
        let support_norms = support_vectors
            .rows()
            .into_iter()
            .map(|r| r.dot(&r))
            .collect();
        Ok(Self {
            support_vectors,
            support_norms,
            alpha,
            rho: model.rho,
            gamma,
            #[cfg(test)]
            linfa_model: model,
        })
    }

    /// Dimension of the vectors.
    pub fn dim(&self) -> usize {
        self.support_vectors.ncols()
    }

    /// Number of support vectors (αᵢ > 0).
    pub fn n_support_vectors(&self) -> usize {
        self.support_vectors.nrows()
    }

    /// The kernel width γ used (resolved from [`SvmGamma::Scale`] if so configured).
    pub fn gamma(&self) -> f64 {
        self.gamma
    }

    /// The offset ρ of the decision function.
    pub fn rho(&self) -> f64 {
        self.rho
    }

    /// The decision function f(x) = Σᵢ αᵢ exp(−γ ‖x − xᵢ‖²) − ρ per vector (≥ 0 inside).
    ///
    /// # Shapes
    /// `vectors`: (m, d) → m values.
    pub fn decision_function(&self, vectors: ArrayView2<'_, f32>) -> Result<Vec<f64>> {
        check_query(vectors, self.dim(), "one-class SVM query vectors")?;
        let n_sv = self.n_support_vectors();
        let mut out = vec![0.0f64; vectors.nrows()];
        out.par_chunks_mut(QUERY_BLOCK)
            .enumerate()
            .for_each(|(block, out_block)| {
                let start = block * QUERY_BLOCK;
                let q = vectors
                    .slice(s![start..start + out_block.len(), ..])
                    .mapv(f64::from);
                let q_norms: Vec<f64> = q.rows().into_iter().map(|r| r.dot(&r)).collect();
                let mut sums = vec![0.0f64; q.nrows()];
                let mut products = Array2::<f64>::zeros((q.nrows(), SUPPORT_BLOCK.min(n_sv)));
                for sv_start in (0..n_sv).step_by(SUPPORT_BLOCK) {
                    let sv_end = (sv_start + SUPPORT_BLOCK).min(n_sv);
                    let sv = self.support_vectors.slice(s![sv_start..sv_end, ..]);
                    let mut p = products.slice_mut(s![.., ..sv_end - sv_start]);
                    general_mat_mul(1.0, &q, &sv.t(), 0.0, &mut p);
                    let norms = &self.support_norms[sv_start..sv_end];
                    let alpha = self.alpha.slice(s![sv_start..sv_end]);
                    for (i, row) in p.axis_iter(Axis(0)).enumerate() {
                        let mut acc = 0.0;
                        for ((&dot, &norm), &a) in row.iter().zip(norms).zip(alpha.iter()) {
                            let d2 = (q_norms[i] + norm - 2.0 * dot).max(0.0);
                            acc += a * (-self.gamma * d2).exp();
                        }
                        sums[i] += acc;
                    }
                }
                for (slot, sum) in out_block.iter_mut().zip(sums) {
                    *slot = sum - self.rho;
                }
            });
        Ok(out)
    }

    /// Anomaly scores: −f(x).
    ///
    /// # Shapes
    /// `vectors`: (m, d) → m scores.
    pub fn score(&self, vectors: ArrayView2<'_, f32>) -> Result<Vec<f32>> {
        Ok(self
            .decision_function(vectors)?
            .into_iter()
            .map(|f| -f as f32)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::StdRng};
    use rand_distr::{Distribution, StandardNormal};

    fn gaussian(rows: usize, cols: usize, scale: f32, seed: u64) -> Array2<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        Array2::from_shape_fn((rows, cols), |_| {
            let g: f32 = StandardNormal.sample(&mut rng);
            scale * g
        })
    }

    #[test]
    fn blocked_decision_function_equals_linfa_prediction() {
        let train = gaussian(400, 3, 1.0, 1);
        let model = OneClassSvm::fit(&OneClassSvmConfig::default(), train.view()).unwrap();
        // Sum of the dual variables is ν·n.
        assert!((model.alpha.sum() - 0.5 * 400.0).abs() < 1e-6 * 400.0);
        assert!(model.n_support_vectors() >= 200);
        let test = gaussian(1500, 3, 2.0, 2);
        let fast = model.decision_function(test.view()).unwrap();
        for (row, f) in test.rows().into_iter().zip(&fast) {
            let row64 = row.mapv(f64::from);
            let linfa = model.linfa_model.weighted_sum(&row64) - model.linfa_model.rho;
            assert!(
                (f - linfa).abs() < 1e-9 * (1.0 + linfa.abs()),
                "{f} vs {linfa}"
            );
        }
    }

    #[test]
    fn solution_satisfies_the_dual_constraints_and_kkt_conditions() {
        // One-class dual: min ½ αᵀKα s.t. 0 ≤ αᵢ ≤ 1, Σ αᵢ = ν n. At an ε-optimal point,
        // with G = Kα: max{Gⱼ : αⱼ > 0} − min{Gᵢ : αᵢ < 1} < ε, and ρ lies between the two.
        // 3 000 vectors: large enough that linfa's shrinking would have run (and panicked).
        let train = gaussian(3000, 4, 1.0, 3);
        let config = OneClassSvmConfig {
            nu: 0.2,
            ..Default::default()
        };
        let model = OneClassSvm::fit(&config, train.view()).unwrap();
        let alpha = &model.linfa_model.alpha;
        assert!(alpha.iter().all(|&a| (-1e-12..=1.0 + 1e-12).contains(&a)));
        let sum: f64 = alpha.iter().sum();
        assert!((sum - 0.2 * 3000.0).abs() < 1e-6, "Σα = {sum}");
        let g: Vec<f64> = model
            .decision_function(train.view())
            .unwrap()
            .iter()
            .map(|f| f + model.rho())
            .collect();
        let max_low = (0..3000)
            .filter(|&i| alpha[i] > 1e-12)
            .map(|i| g[i])
            .fold(f64::NEG_INFINITY, f64::max);
        let min_up = (0..3000)
            .filter(|&i| alpha[i] < 1.0 - 1e-12)
            .map(|i| g[i])
            .fold(f64::INFINITY, f64::min);
        assert!(
            max_low - min_up < 2e-3,
            "KKT violation {}",
            max_low - min_up
        );
        assert!(model.rho() >= min_up - 2e-3 && model.rho() <= max_low + 2e-3);
        // ν bounds: at most ν n vectors strictly outside, at least ν n support vectors.
        let outside = g.iter().filter(|&&gi| gi - model.rho() < -2e-3).count();
        assert!(outside <= 600, "{outside} outside");
        assert!(model.n_support_vectors() >= 600);
    }

    #[test]
    fn gamma_scale_follows_the_scikit_learn_convention() {
        let train = gaussian(300, 4, 3.0, 5);
        let model = OneClassSvm::fit(&OneClassSvmConfig::default(), train.view()).unwrap();
        let values: Vec<f64> = train.iter().map(|&v| f64::from(v)).collect();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
        assert!((model.gamma() - 1.0 / (4.0 * var)).abs() < 1e-12);
    }

    #[test]
    fn checks_parameters() {
        for bad in [
            OneClassSvmConfig {
                nu: 0.0,
                ..Default::default()
            },
            OneClassSvmConfig {
                nu: 1.1,
                ..Default::default()
            },
            OneClassSvmConfig {
                gamma: SvmGamma::Value(0.0),
                ..Default::default()
            },
            OneClassSvmConfig {
                tolerance: 0.0,
                ..Default::default()
            },
        ] {
            assert!(matches!(
                bad.check(),
                Err(BaselineError::InvalidParameter { .. })
            ));
        }
    }
}
