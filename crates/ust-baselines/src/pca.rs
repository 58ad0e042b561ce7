//! Principal component analysis keeping a fraction of the variance (METHOD.md §8: "PCA keeping
//! 95 % of the variance").
//!
//! Exact, not iterative: the d × d sample covariance of the training vectors is accumulated in
//! double precision (blocked, in parallel) and decomposed with the symmetric eigensolver of
//! `linfa-linalg` (pure Rust, no LAPACK). d is 128 for the teacher's descriptors, so the
//! eigendecomposition costs nothing next to the covariance pass. With fewer vectors than
//! dimensions (raw pixels: d = 3 267 at 33×33 RGB against 1 000 images) the n × n Gram matrix
//! is decomposed instead, which gives the same axes and variances.
//!
//! linfa-reduction's `Pca` was not used: it takes a fixed number of components instead of a
//! variance fraction, computes a truncated SVD iteratively (LOBPCG), and its
//! `explained_variance_ratio` is normalised by the kept components only.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis, s};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::{check_query, check_training};
use crate::error::{BaselineError, Result, invalid};

/// Rows per block of the covariance and transform passes.
const ROW_BLOCK: usize = 4096;

/// Configuration of [`Pca`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PcaConfig {
    /// Keep the smallest number k of leading components whose variances sum to at least this
    /// fraction of the total variance; in (0, 1]. 1 keeps all d components. Default 0.95.
    pub variance_fraction: f64,
}

impl Default for PcaConfig {
    fn default() -> Self {
        Self {
            variance_fraction: 0.95,
        }
    }
}

impl PcaConfig {
    /// Rejects a fraction outside (0, 1].
    pub fn check(&self) -> Result<()> {
        let f = self.variance_fraction;
        if !(f > 0.0 && f <= 1.0) {
            return Err(invalid(
                "PCA",
                "variance_fraction",
                format!("{f} is not in (0, 1]"),
            ));
        }
        Ok(())
    }
}

/// A fitted PCA: the training mean and the k leading principal axes.
#[derive(Debug, Clone)]
pub struct Pca {
    mean: Array1<f64>,
    /// (k, d), orthonormal rows, by decreasing variance.
    components: Array2<f64>,
    components_f32: Array2<f32>,
    /// All d eigenvalues of the sample covariance (divisor n − 1), decreasing, clamped at 0.
    eigenvalues: Array1<f64>,
    n_train: usize,
}

impl Pca {
    /// Fits on training vectors (n ≥ 2 rows, not all equal).
    ///
    /// # Shapes
    /// `train`: (n, d).
    pub fn fit(config: &PcaConfig, train: ArrayView2<'_, f32>) -> Result<Self> {
        config.check()?;
        check_training(train, "PCA training vectors")?;
        let (n, d) = train.dim();
        if n < 2 {
            return Err(BaselineError::TooFewTrainingVectors {
                method: "PCA",
                needed: 2,
                got: n,
            });
        }

        let sum = train
            .axis_chunks_iter(Axis(0), ROW_BLOCK)
            .into_par_iter()
            .map(|block| {
                let mut acc = Array1::<f64>::zeros(d);
                for row in block.rows() {
                    acc.zip_mut_with(&row, |a, &v| *a += f64::from(v));
                }
                acc
            })
            .reduce(|| Array1::zeros(d), |a, b| a + b);
        let mean = sum / n as f64;

        if n < d && config.variance_fraction < 1.0 {
            return Self::fit_gram(config, train, mean);
        }
        let scatter = train
            .axis_chunks_iter(Axis(0), ROW_BLOCK)
            .into_par_iter()
            .map(|block| {
                let centred =
                    Array2::from_shape_fn(block.dim(), |(i, j)| f64::from(block[(i, j)]) - mean[j]);
                centred.t().dot(&centred)
            })
            .reduce(|| Array2::zeros((d, d)), |a, b| a + b);
        let covariance = scatter / (n - 1) as f64;

        Self::from_covariance(config, mean, covariance, n)
    }

    /// The fit through the n × n Gram matrix of the centred rows, for n < d: its nonzero
    /// eigenvalues are the covariance's and Xᶜᵀu / √((n − 1)λ) are the covariance's
    /// eigenvectors, so the eigensolver works on n × n instead of d × d. Measured on pixel
    /// features (d = 3 267 at 33×33 RGB, n = 1 000 images per class) the d × d route took
    /// 13 minutes per class on one thread. The d − n + 1 remaining eigenvalues are 0; with
    /// `variance_fraction < 1` no kept axis lies among them.
    fn fit_gram(config: &PcaConfig, train: ArrayView2<'_, f32>, mean: Array1<f64>) -> Result<Self> {
        let (n, d) = train.dim();
        let centred = Array2::from_shape_fn((n, d), |(i, j)| f64::from(train[(i, j)]) - mean[j]);
        let gram = centred.dot(&centred.t()) / (n - 1) as f64;
        let (values, u) = eigh_descending(gram)?;
        let largest = values.first().copied().unwrap_or(0.0);
        let positive = values.iter().take_while(|&&v| v > largest * 1e-12).count();
        let mut axes = Array2::<f64>::zeros((d, positive));
        for i in 0..positive {
            let axis = centred.t().dot(&u.column(i)) / ((n - 1) as f64 * values[i]).sqrt();
            axes.column_mut(i).assign(&axis);
        }
        let mut eigenvalues = Array1::<f64>::zeros(d);
        eigenvalues
            .slice_mut(s![..positive])
            .assign(&values.slice(s![..positive]));
        Self::from_eigen(config, mean, eigenvalues, axes, n)
    }

    /// The eigendecomposition step, shared by [`Pca::fit`] and the tests.
    fn from_covariance(
        config: &PcaConfig,
        mean: Array1<f64>,
        covariance: Array2<f64>,
        n_train: usize,
    ) -> Result<Self> {
        let (eigenvalues, vectors) = eigh_descending(covariance)?;
        Self::from_eigen(config, mean, eigenvalues, vectors, n_train)
    }

    /// Keeps the leading axes: `eigenvalues` all d of them, decreasing and at least 0;
    /// `vectors` the matching axes as columns (at least as many as are kept).
    fn from_eigen(
        config: &PcaConfig,
        mean: Array1<f64>,
        eigenvalues: Array1<f64>,
        vectors: Array2<f64>,
        n_train: usize,
    ) -> Result<Self> {
        let d = eigenvalues.len();
        let total: f64 = eigenvalues.sum();
        if total <= 0.0 {
            return Err(BaselineError::ZeroVariance { what: "PCA" });
        }
        let k = if config.variance_fraction >= 1.0 {
            d
        } else {
            let target = config.variance_fraction * total;
            let mut cumulative = 0.0;
            let mut k = d;
            for (i, &v) in eigenvalues.iter().enumerate() {
                cumulative += v;
                // Relative slack for the rounding of the running sum.
                if cumulative >= target * (1.0 - 1e-12) {
                    k = i + 1;
                    break;
                }
            }
            k
        };
        let k = k.min(vectors.ncols());
        let components = vectors.slice(s![.., ..k]).t().to_owned();
        Ok(Self {
            components_f32: components.mapv(|v| v as f32),
            mean,
            components,
            eigenvalues,
            n_train,
        })
    }

    /// Number of kept components k.
    pub fn n_components(&self) -> usize {
        self.components.nrows()
    }

    /// Dimension d of the input vectors.
    pub fn input_dim(&self) -> usize {
        self.components.ncols()
    }

    /// Number of training vectors the PCA was fitted on.
    pub fn n_train(&self) -> usize {
        self.n_train
    }

    /// The training mean (d).
    pub fn mean(&self) -> ArrayView1<'_, f64> {
        self.mean.view()
    }

    /// The kept principal axes as orthonormal rows (k, d), by decreasing variance.
    pub fn components(&self) -> ArrayView2<'_, f64> {
        self.components.view()
    }

    /// All d eigenvalues of the sample covariance (divisor n − 1), decreasing.
    pub fn eigenvalues(&self) -> ArrayView1<'_, f64> {
        self.eigenvalues.view()
    }

    /// Variance along each kept component (k values; divisor n − 1).
    pub fn explained_variance(&self) -> ArrayView1<'_, f64> {
        self.eigenvalues.slice(s![..self.n_components()])
    }

    /// Each kept component's share of the total variance (k values, relative to all d).
    pub fn explained_variance_ratio(&self) -> Array1<f64> {
        let total = self.eigenvalues.sum();
        self.explained_variance().mapv(|v| v / total)
    }

    /// Fraction of the total variance kept by the k components (≥ the configured fraction).
    pub fn kept_variance_fraction(&self) -> f64 {
        self.explained_variance_ratio().sum()
    }

    /// Projects vectors onto the kept components: (x − mean) · componentsᵀ, in parallel blocks.
    ///
    /// # Shapes
    /// `vectors`: (m, d) → (m, k).
    pub fn transform(&self, vectors: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        check_query(vectors, self.input_dim(), "PCA input vectors")?;
        let (m, d) = vectors.dim();
        let k = self.n_components();
        let mut out = Array2::<f32>::zeros((m, k));
        out.axis_chunks_iter_mut(Axis(0), ROW_BLOCK)
            .into_par_iter()
            .zip(vectors.axis_chunks_iter(Axis(0), ROW_BLOCK))
            .for_each(|(mut out_block, block)| {
                let centred = Array2::from_shape_fn((block.nrows(), d), |(i, j)| {
                    (f64::from(block[(i, j)]) - self.mean[j]) as f32
                });
                ndarray::linalg::general_mat_mul(
                    1.0,
                    &centred,
                    &self.components_f32.t(),
                    0.0,
                    &mut out_block,
                );
            });
        Ok(out)
    }

    /// Maps projections back to the input space: z · components + mean.
    ///
    /// # Shapes
    /// `projections`: (m, k) → (m, d).
    pub fn inverse_transform(&self, projections: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        check_query(projections, self.n_components(), "PCA projections")?;
        let z = projections.mapv(f64::from);
        let x = z.dot(&self.components) + &self.mean;
        Ok(x.mapv(|v| v as f32))
    }
}

/// The eigenvalues (decreasing, clamped at 0) and eigenvectors (columns) of a symmetric
/// matrix, by `linfa-linalg`'s pure-Rust solver.
fn eigh_descending(matrix: Array2<f64>) -> Result<(Array1<f64>, Array2<f64>)> {
    use linfa_linalg::eigh::{EigSort, EighInto};
    let dim = matrix.nrows();
    let (values, vectors) = matrix
        .eigh_into()
        .map_err(|e| BaselineError::Eigendecomposition {
            dim,
            message: e.to_string(),
        })?;
    let (values, vectors) = (values, vectors).sort_eig_desc();
    Ok((values.mapv(|v| v.max(0.0)), vectors))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::StdRng};
    use rand_distr::{Distribution, StandardNormal};

    /// A random orthogonal d × d matrix (Gram–Schmidt of a Gaussian matrix).
    pub(crate) fn random_rotation(d: usize, seed: u64) -> Array2<f64> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut q = Array2::<f64>::from_shape_fn((d, d), |_| StandardNormal.sample(&mut rng));
        for i in 0..d {
            for j in 0..i {
                let proj = q.row(i).dot(&q.row(j));
                let rj = q.row(j).to_owned();
                q.row_mut(i).scaled_add(-proj, &rj);
            }
            let norm = q.row(i).dot(&q.row(i)).sqrt();
            q.row_mut(i).mapv_inplace(|v| v / norm);
        }
        q
    }

    #[test]
    fn kept_components_follow_the_closed_form_of_a_known_covariance() {
        // Covariance R diag(9, 4, 1, 0.01) Rᵀ: total 14.01, cumulative shares
        // 9/14.01 = .642, 13/14.01 = .928, 14/14.01 = .99929, 1.
        let variances = [9.0, 4.0, 1.0, 0.01];
        let r = random_rotation(4, 3);
        let cov = r
            .t()
            .dot(&Array2::from_diag(&Array1::from(variances.to_vec())))
            .dot(&r);
        let fit = |f: f64| {
            Pca::from_covariance(
                &PcaConfig {
                    variance_fraction: f,
                },
                Array1::zeros(4),
                cov.clone(),
                100,
            )
            .unwrap()
        };
        let total: f64 = variances.iter().sum();
        assert_eq!(fit(0.95).n_components(), 3);
        assert_eq!(fit(0.90).n_components(), 2);
        assert_eq!(fit(0.60).n_components(), 1);
        assert_eq!(fit(0.9993).n_components(), 4);
        assert_eq!(fit(1.0).n_components(), 4);
        let pca = fit(0.95);
        let ratio = pca.explained_variance_ratio();
        for i in 0..3 {
            assert!((ratio[i] - variances[i] / total).abs() < 1e-12);
            // Each axis is ± the corresponding rotated basis vector.
            let c = pca.components().row(i).dot(&r.row(i));
            assert!(
                (c.abs() - 1.0).abs() < 1e-10,
                "axis {i}: |cos| = {}",
                c.abs()
            );
        }
        assert!((pca.kept_variance_fraction() - 14.0 / total).abs() < 1e-12);
    }

    #[test]
    fn sample_pca_recovers_rotated_variances() {
        // 20 000 samples of N(0, R diag(9,4,1,0.01) Rᵀ) + offset.
        let variances = [9.0f64, 4.0, 1.0, 0.01];
        let r = random_rotation(4, 11);
        let mut rng = StdRng::seed_from_u64(12);
        let n = 20_000;
        let x = Array2::from_shape_fn((n, 4), |(_, j)| {
            let g: f64 = StandardNormal.sample(&mut rng);
            g * variances[j].sqrt()
        })
        .dot(&r)
            + &Array1::from(vec![5.0, -3.0, 0.5, 100.0]);
        let x32 = x.mapv(|v| v as f32);
        let pca = Pca::fit(&PcaConfig::default(), x32.view()).unwrap();
        assert_eq!(pca.n_components(), 3);
        let total: f64 = variances.iter().sum();
        for (i, &ratio) in pca.explained_variance_ratio().iter().enumerate() {
            // Sampling error of a variance estimate: about sqrt(2 / n) ≈ 1 % relative.
            assert!(
                (ratio - variances[i] / total).abs() < 0.01,
                "component {i}: {ratio}"
            );
            assert!((pca.explained_variance()[i] / variances[i] - 1.0).abs() < 0.05);
        }
        // Projections are uncorrelated with the fitted variances.
        let z = pca.transform(x32.view()).unwrap().mapv(f64::from);
        let cov = z.t().dot(&z) / (n - 1) as f64;
        for i in 0..3 {
            for j in 0..3 {
                let expected = if i == j {
                    pca.explained_variance()[i]
                } else {
                    0.0
                };
                assert!(
                    (cov[(i, j)] - expected).abs() < 2e-3 * (1.0 + expected),
                    "{i},{j}"
                );
            }
        }
    }

    #[test]
    fn transform_then_inverse_reproduces_data_with_all_components() {
        let mut rng = StdRng::seed_from_u64(5);
        let x = Array2::from_shape_fn((300, 6), |(_, j)| {
            let g: f32 = StandardNormal.sample(&mut rng);
            g * (j + 1) as f32 + j as f32
        });
        let pca = Pca::fit(
            &PcaConfig {
                variance_fraction: 1.0,
            },
            x.view(),
        )
        .unwrap();
        assert_eq!(pca.n_components(), 6);
        let back = pca
            .inverse_transform(pca.transform(x.view()).unwrap().view())
            .unwrap();
        let max_err = (&back - &x).iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(max_err < 1e-4, "max reconstruction error {max_err}");
    }

    /// With fewer vectors than dimensions the Gram route keeps the same variances and axes
    /// (up to sign) as the covariance route, and projects every vector the same way.
    #[test]
    fn the_gram_route_equals_the_covariance_route() {
        let (n, d) = (40, 90);
        let mut rng = StdRng::seed_from_u64(5);
        // Decaying variances along a random basis, so that 95 % needs several axes.
        let basis = random_rotation(d, 6);
        let x = Array2::from_shape_fn((n, d), |(_, j)| {
            let g: f64 = StandardNormal.sample(&mut rng);
            g * 0.9f64.powi(j as i32)
        })
        .dot(&basis)
            + 2.0;
        let x32 = x.mapv(|v| v as f32);
        let config = PcaConfig::default();
        let gram = Pca::fit(&config, x32.view()).unwrap();
        // The covariance route on exactly the f32 vectors the fit sees.
        let x = x32.mapv(f64::from);
        let mean = x.mean_axis(Axis(0)).unwrap();
        let centred = &x - &mean;
        let covariance = centred.t().dot(&centred) / (n - 1) as f64;
        let direct = Pca::from_covariance(&config, mean, covariance, n).unwrap();
        assert!(gram.n_components() > 3);
        assert_eq!(gram.n_components(), direct.n_components());
        for (a, b) in gram.eigenvalues().iter().zip(direct.eigenvalues()) {
            assert!((a - b).abs() < 1e-9 * direct.eigenvalues()[0], "{a} vs {b}");
        }
        for i in 0..gram.n_components() {
            let cos = gram.components().row(i).dot(&direct.components().row(i));
            assert!((cos.abs() - 1.0).abs() < 1e-8, "axis {i}: cos {cos}");
        }
        let (pg, pd) = (
            gram.transform(x32.view()).unwrap(),
            direct.transform(x32.view()).unwrap(),
        );
        for i in 0..gram.n_components() {
            let sign = if gram.components().row(i).dot(&direct.components().row(i)) > 0.0 {
                1.0
            } else {
                -1.0
            };
            for r in 0..n {
                assert!(
                    (pg[(r, i)] - sign * pd[(r, i)]).abs() < 1e-3,
                    "row {r} axis {i}"
                );
            }
        }
    }

    #[test]
    fn rejects_bad_inputs() {
        let ok = Array2::<f32>::from_shape_fn((5, 3), |(i, j)| (i * j) as f32);
        assert!(matches!(
            Pca::fit(
                &PcaConfig {
                    variance_fraction: 0.0
                },
                ok.view()
            ),
            Err(BaselineError::InvalidParameter { .. })
        ));
        assert!(matches!(
            Pca::fit(
                &PcaConfig {
                    variance_fraction: 1.5
                },
                ok.view()
            ),
            Err(BaselineError::InvalidParameter { .. })
        ));
        let constant = Array2::<f32>::ones((5, 3));
        assert!(matches!(
            Pca::fit(&PcaConfig::default(), constant.view()),
            Err(BaselineError::ZeroVariance { .. })
        ));
        let empty = Array2::<f32>::zeros((0, 3));
        assert!(matches!(
            Pca::fit(&PcaConfig::default(), empty.view()),
            Err(BaselineError::EmptyTrainingSet { .. })
        ));
        let pca = Pca::fit(&PcaConfig::default(), ok.view()).unwrap();
        let wrong = Array2::<f32>::zeros((2, 4));
        assert!(matches!(
            pca.transform(wrong.view()),
            Err(BaselineError::DimensionMismatch {
                expected: 3,
                got: 4,
                ..
            })
        ));
    }
}
