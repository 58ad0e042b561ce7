//! 1-NN: the anomaly score of a vector is its distance to the nearest training vector.

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::data::{check_query, check_training};
use crate::distance::nearest_neighbours;
use crate::error::Result;

/// Configuration of [`NearestNeighbor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NearestNeighborConfig {
    /// Score with the squared Euclidean distance instead of the Euclidean distance (the same
    /// ranking, so the same AUROC and AU-PRO). Default false: Euclidean distance.
    pub squared_distance: bool,
}

impl NearestNeighborConfig {
    /// No parameter can be invalid; kept for the uniform `check()` of every configuration.
    pub fn check(&self) -> Result<()> {
        Ok(())
    }
}

/// Exact 1-NN scorer: keeps every training vector and searches them all (brute force by blocked
/// single-precision matrix products, then a double-precision distance to the chosen
/// neighbour; see the `distance` module).
#[derive(Debug, Clone)]
pub struct NearestNeighbor {
    config: NearestNeighborConfig,
    train: Array2<f32>,
}

impl NearestNeighbor {
    /// Stores a copy of the training vectors.
    ///
    /// # Shapes
    /// `train`: (n, d), n ≥ 1.
    pub fn fit(config: &NearestNeighborConfig, train: ArrayView2<'_, f32>) -> Result<Self> {
        config.check()?;
        check_training(train, "1-NN training vectors")?;
        Ok(Self {
            config: *config,
            train: train.as_standard_layout().into_owned(),
        })
    }

    /// Dimension of the vectors.
    pub fn dim(&self) -> usize {
        self.train.ncols()
    }

    /// Number of stored training vectors.
    pub fn n_train(&self) -> usize {
        self.train.nrows()
    }

    /// Index of and Euclidean distance to the nearest training vector, per query.
    ///
    /// # Shapes
    /// `vectors`: (m, d) → m pairs.
    pub fn nearest(&self, vectors: ArrayView2<'_, f32>) -> Result<Vec<(usize, f64)>> {
        check_query(vectors, self.dim(), "1-NN query vectors")?;
        Ok(nearest_neighbours(vectors, self.train.view())
            .into_iter()
            .map(|(i, d2)| (i, d2.sqrt()))
            .collect())
    }

    /// Anomaly scores: distance to the nearest training vector (Euclidean, or squared if
    /// configured).
    ///
    /// # Shapes
    /// `vectors`: (m, d) → m scores.
    pub fn score(&self, vectors: ArrayView2<'_, f32>) -> Result<Vec<f32>> {
        check_query(vectors, self.dim(), "1-NN query vectors")?;
        let squared = self.config.squared_distance;
        Ok(nearest_neighbours(vectors, self.train.view())
            .into_iter()
            .map(|(_, d2)| if squared { d2 as f32 } else { d2.sqrt() as f32 })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::BaselineError;
    use rand::{SeedableRng, rngs::StdRng};
    use rand_distr::{Distribution, StandardNormal};

    fn gaussian(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        Array2::from_shape_fn((rows, cols), |_| StandardNormal.sample(&mut rng))
    }

    #[test]
    fn scores_equal_a_naive_double_loop() {
        let train = gaussian(3000, 20, 1);
        let test = gaussian(500, 20, 2);
        let model = NearestNeighbor::fit(&NearestNeighborConfig::default(), train.view()).unwrap();
        let scores = model.score(test.view()).unwrap();
        for (i, q) in test.rows().into_iter().enumerate() {
            let mut best = f64::INFINITY;
            for r in train.rows() {
                let mut s = 0.0f64;
                for (a, b) in q.iter().zip(r.iter()) {
                    s += (f64::from(*a) - f64::from(*b)).powi(2);
                }
                best = best.min(s);
            }
            let naive = best.sqrt();
            let rel = (f64::from(scores[i]) - naive).abs() / naive;
            assert!(rel < 1e-4, "row {i}: {} vs {naive}", scores[i]);
        }
        let squared = NearestNeighbor::fit(
            &NearestNeighborConfig {
                squared_distance: true,
            },
            train.view(),
        )
        .unwrap()
        .score(test.view())
        .unwrap();
        for (s, q) in scores.iter().zip(&squared) {
            assert!((s * s - q).abs() <= 1e-5 * q);
        }
    }

    #[test]
    fn rejects_empty_training_set_and_wrong_dimension() {
        let empty = Array2::<f32>::zeros((0, 4));
        assert!(matches!(
            NearestNeighbor::fit(&NearestNeighborConfig::default(), empty.view()),
            Err(BaselineError::EmptyTrainingSet { .. })
        ));
        let model =
            NearestNeighbor::fit(&NearestNeighborConfig::default(), gaussian(10, 4, 0).view())
                .unwrap();
        assert!(matches!(
            model.score(gaussian(3, 5, 0).view()),
            Err(BaselineError::DimensionMismatch { .. })
        ));
        assert!(
            model
                .score(Array2::zeros((0, 4)).view())
                .unwrap()
                .is_empty()
        );
    }
}
