//! K-Means: the anomaly score of a vector is its Euclidean distance to the nearest of k centres.
//!
//! The centres come from linfa-clustering's `KMeans` (Lloyd iterations, k-means++
//! initialisation, best of `n_runs` by inertia) on the training vectors in double precision,
//! seeded through a Xoshiro256+ generator. Scoring uses the crate's blocked nearest-neighbour
//! search against the centres.

use linfa::DatasetBase;
use linfa::traits::Fit;
use linfa_clustering::KMeans as LinfaKMeans;
use ndarray::{Array2, ArrayView2};
use rand_xoshiro::Xoshiro256Plus;
use rand_xoshiro::rand_core::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::data::{check_query, check_training};
use crate::distance::nearest_neighbours;
use crate::error::{BaselineError, Result, invalid};

/// Configuration of [`KMeans`]; the defaults are scikit-learn's (≥ 1.4: one k-means++ run).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KMeansConfig {
    /// Number of centres k. Default 10.
    pub n_clusters: usize,
    /// Independent k-means++ restarts; the run with the lowest inertia is kept. Default 1
    /// (scikit-learn's `n_init="auto"` with k-means++; linfa's own default is 10, which costs
    /// ten times the fit time: about a minute on 20 000 × 60 vectors here).
    pub n_runs: usize,
    /// Maximum Lloyd iterations per run. Default 300.
    pub max_iterations: u64,
    /// A run stops when the centres move less than this in one iteration (linfa's criterion:
    /// the Frobenius norm of the change of the k × d centre matrix). Default 1e-4.
    pub tolerance: f64,
}

impl Default for KMeansConfig {
    fn default() -> Self {
        Self {
            n_clusters: 10,
            n_runs: 1,
            max_iterations: 300,
            tolerance: 1e-4,
        }
    }
}

impl KMeansConfig {
    /// Rejects k = 0, no runs, no iterations and a tolerance that is not positive.
    pub fn check(&self) -> Result<()> {
        if self.n_clusters == 0 {
            return Err(invalid("K-Means", "n_clusters", "must be at least 1"));
        }
        if self.n_runs == 0 {
            return Err(invalid("K-Means", "n_runs", "must be at least 1"));
        }
        if self.max_iterations == 0 {
            return Err(invalid("K-Means", "max_iterations", "must be at least 1"));
        }
        if !(self.tolerance > 0.0 && self.tolerance.is_finite()) {
            return Err(invalid(
                "K-Means",
                "tolerance",
                format!("{} is not a positive number", self.tolerance),
            ));
        }
        Ok(())
    }
}

/// Fitted K-Means centres.
#[derive(Debug, Clone)]
pub struct KMeans {
    centres: Array2<f32>,
    inertia: f64,
}

impl KMeans {
    /// Clusters the training vectors (at least k of them).
    ///
    /// # Shapes
    /// `train`: (n, d), n ≥ k.
    pub fn fit(config: &KMeansConfig, train: ArrayView2<'_, f32>, seed: u64) -> Result<Self> {
        config.check()?;
        check_training(train, "K-Means training vectors")?;
        if train.nrows() < config.n_clusters {
            return Err(BaselineError::TooFewTrainingVectors {
                method: "K-Means",
                needed: config.n_clusters,
                got: train.nrows(),
            });
        }
        let records = train.mapv(f64::from);
        let dataset = DatasetBase::from(records);
        let model =
            LinfaKMeans::params_with_rng(config.n_clusters, Xoshiro256Plus::seed_from_u64(seed))
                .n_runs(config.n_runs)
                .max_n_iterations(config.max_iterations)
                .tolerance(config.tolerance)
                .fit(&dataset)
                .map_err(|e| BaselineError::KMeans(e.to_string()))?;
        Ok(Self {
            centres: model.centroids().mapv(|v| v as f32),
            inertia: model.inertia(),
        })
    }

    /// The centres (k, d).
    pub fn centres(&self) -> ArrayView2<'_, f32> {
        self.centres.view()
    }

    /// linfa's inertia of the kept run (the mean over training vectors of the squared distance
    /// to their centre).
    pub fn inertia(&self) -> f64 {
        self.inertia
    }

    /// Dimension of the vectors.
    pub fn dim(&self) -> usize {
        self.centres.ncols()
    }

    /// Anomaly scores: Euclidean distance to the nearest centre.
    ///
    /// # Shapes
    /// `vectors`: (m, d) → m scores.
    pub fn score(&self, vectors: ArrayView2<'_, f32>) -> Result<Vec<f32>> {
        check_query(vectors, self.dim(), "K-Means query vectors")?;
        Ok(nearest_neighbours(vectors, self.centres.view())
            .into_iter()
            .map(|(_, d2)| d2.sqrt() as f32)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::StdRng};
    use rand_distr::{Distribution, StandardNormal};

    const TRUE_CENTRES: [[f32; 3]; 3] = [[0.0, 0.0, 0.0], [10.0, 0.0, 5.0], [-5.0, 12.0, -3.0]];

    fn blobs(per_blob: usize, sigma: f32, seed: u64) -> Array2<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        Array2::from_shape_fn((3 * per_blob, 3), |(i, j)| {
            let g: f32 = StandardNormal.sample(&mut rng);
            TRUE_CENTRES[i % 3][j] + sigma * g
        })
    }

    fn distance_to_nearest_true_centre(x: &[f32]) -> f32 {
        TRUE_CENTRES
            .iter()
            .map(|c| {
                c.iter()
                    .zip(x)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f32>()
                    .sqrt()
            })
            .fold(f32::INFINITY, f32::min)
    }

    #[test]
    fn recovers_three_separated_blobs() {
        let train = blobs(1000, 0.5, 1);
        let model = KMeans::fit(
            &KMeansConfig {
                n_clusters: 3,
                n_runs: 5,
                ..Default::default()
            },
            train.view(),
            42,
        )
        .unwrap();
        for c in model.centres().rows() {
            let d = distance_to_nearest_true_centre(c.as_slice().unwrap());
            // Standard error of a blob mean: 0.5 / sqrt(1000) ≈ 0.016 per axis.
            assert!(d < 0.1, "centre {c} is {d} from the nearest true centre");
        }
        // Each true centre has its own fitted centre.
        for t in TRUE_CENTRES {
            let nearest = model
                .centres()
                .rows()
                .into_iter()
                .map(|c| c.iter().zip(&t).map(|(a, b)| (a - b).powi(2)).sum::<f32>())
                .fold(f32::INFINITY, f32::min);
            assert!(nearest.sqrt() < 0.1);
        }
        let test = blobs(100, 2.0, 2);
        let scores = model.score(test.view()).unwrap();
        for (row, s) in test.rows().into_iter().zip(&scores) {
            let expected = distance_to_nearest_true_centre(row.as_slice().unwrap());
            assert!((s - expected).abs() < 0.1, "{s} vs {expected}");
        }
        // Inertia ≈ 3 σ² (three dimensions of variance 0.25).
        assert!((model.inertia() - 0.75).abs() < 0.1, "{}", model.inertia());
    }

    #[test]
    fn seeded_fits_are_identical() {
        let train = blobs(200, 1.5, 3);
        let cfg = KMeansConfig {
            n_clusters: 5,
            ..Default::default()
        };
        let a = KMeans::fit(&cfg, train.view(), 9).unwrap();
        let b = KMeans::fit(&cfg, train.view(), 9).unwrap();
        assert_eq!(a.centres(), b.centres());
    }

    #[test]
    fn checks_parameters_and_training_size() {
        let train = blobs(2, 1.0, 4);
        let cfg = KMeansConfig {
            n_clusters: 7,
            ..Default::default()
        };
        assert!(matches!(
            KMeans::fit(&cfg, train.view(), 0),
            Err(BaselineError::TooFewTrainingVectors {
                needed: 7,
                got: 6,
                ..
            })
        ));
        for bad in [
            KMeansConfig {
                n_clusters: 0,
                ..Default::default()
            },
            KMeansConfig {
                n_runs: 0,
                ..Default::default()
            },
            KMeansConfig {
                max_iterations: 0,
                ..Default::default()
            },
            KMeansConfig {
                tolerance: -1.0,
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
