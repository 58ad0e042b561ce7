//! Building blocks for running the baselines on teacher descriptors of whole datasets (the
//! Table 1 and Table 2 cells of `ust baseline dense` and `ust oneclass`): the six descriptor
//! methods by their command-line names (the five of [`BaselineKind`] plus PCA's own
//! reconstruction error), per-dimension standardisation with statistics accumulated over
//! every descriptor of the training set, and the selection of a seeded subset of rows from
//! descriptors that arrive image by image (so that only the chosen rows are ever stored).

use std::fmt;
use std::str::FromStr;

use candle_core::Device;
use ndarray::{Array2, ArrayView2, ArrayViewMut2};

use crate::baseline::{BaselineConfig, BaselineKind, FittedBaseline};
use crate::error::{BaselineError, Result, invalid};
use crate::pca::{Pca, PcaConfig};

/// A descriptor method by the name the command line uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum DescriptorMethod {
    /// `knn`: PCA 95 %, then the distance to the nearest training vector.
    Knn,
    /// `kmeans`: PCA 95 %, then the distance to the nearest K-Means centre.
    #[cfg_attr(feature = "clap", value(name = "kmeans"))]
    KMeans,
    /// `ocsvm`: PCA 95 %, then the negative one-class SVM decision function.
    #[cfg_attr(feature = "clap", value(name = "ocsvm"))]
    OcSvm,
    /// `pca`: squared reconstruction error ‖x − x̂‖² of the PCA keeping 95 % of the variance.
    Pca,
    /// `ae`: squared reconstruction error of the ℓ2 autoencoder (all descriptor dimensions).
    Ae,
    /// `vae`: negative log reconstruction probability of the VAE (all descriptor dimensions).
    Vae,
}

impl DescriptorMethod {
    /// Every method, in the order of the names.
    pub const ALL: [DescriptorMethod; 6] = [
        DescriptorMethod::Knn,
        DescriptorMethod::KMeans,
        DescriptorMethod::OcSvm,
        DescriptorMethod::Pca,
        DescriptorMethod::Ae,
        DescriptorMethod::Vae,
    ];

    /// The command-line name (`knn`, `kmeans`, `ocsvm`, `pca`, `ae`, `vae`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Knn => "knn",
            Self::KMeans => "kmeans",
            Self::OcSvm => "ocsvm",
            Self::Pca => "pca",
            Self::Ae => "ae",
            Self::Vae => "vae",
        }
    }

    /// The baseline of [`BaselineKind`] behind it (`None` for `pca`, which is its own scorer).
    pub fn kind(self) -> Option<BaselineKind> {
        match self {
            Self::Knn => Some(BaselineKind::NearestNeighbor),
            Self::KMeans => Some(BaselineKind::KMeans),
            Self::OcSvm => Some(BaselineKind::OneClassSvm),
            Self::Ae => Some(BaselineKind::Autoencoder),
            Self::Vae => Some(BaselineKind::Vae),
            Self::Pca => None,
        }
    }
}

impl fmt::Display for DescriptorMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DescriptorMethod {
    type Err = BaselineError;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                invalid(
                    "descriptor method",
                    "name",
                    format!("{s:?} is not one of knn, kmeans, ocsvm, pca, ae, vae"),
                )
            })
    }
}

/// A fitted descriptor method: one of the five baselines, or PCA reconstruction error.
#[derive(Debug, Clone)]
pub enum DescriptorModel {
    /// A baseline of [`FittedBaseline`].
    Baseline(Box<FittedBaseline>),
    /// PCA keeping 95 % of the variance; the score is the squared reconstruction error.
    PcaReconstruction(Box<Pca>),
}

impl DescriptorModel {
    /// Fits `method` on `train` (rows already subsampled: no further subsampling happens
    /// here). knn, kmeans and ocsvm run after PCA keeping 95 % of the variance, ae and vae on
    /// all dimensions (`BaselineConfig::paper`), each seeded with `seed`; ae and vae train on
    /// `device` (the rest is host code).
    ///
    /// # Shapes
    /// `train`: (n, d).
    pub fn fit(
        method: DescriptorMethod,
        train: ArrayView2<'_, f32>,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        match method.kind() {
            Some(kind) => {
                let config = BaselineConfig {
                    max_train_vectors: None,
                    seed,
                    ..BaselineConfig::paper(kind)
                };
                Ok(Self::Baseline(Box::new(FittedBaseline::fit(
                    &config, train, device,
                )?)))
            }
            None => Ok(Self::PcaReconstruction(Box::new(Pca::fit(
                &PcaConfig::default(),
                train,
            )?))),
        }
    }

    /// Anomaly scores, one per row, higher = more anomalous.
    ///
    /// # Shapes
    /// `vectors`: (m, d) → m scores.
    pub fn score(&self, vectors: ArrayView2<'_, f32>) -> Result<Vec<f32>> {
        match self {
            Self::Baseline(b) => b.score(vectors),
            Self::PcaReconstruction(pca) => {
                let back = pca.inverse_transform(pca.transform(vectors)?.view())?;
                Ok(vectors
                    .rows()
                    .into_iter()
                    .zip(back.rows())
                    .map(|(x, y)| {
                        x.iter()
                            .zip(y)
                            .map(|(&a, &b)| {
                                let d = f64::from(a) - f64::from(b);
                                d * d
                            })
                            .sum::<f64>() as f32
                    })
                    .collect())
            }
        }
    }

    /// Kept PCA components, when PCA is part of the method.
    pub fn pca_components(&self) -> Option<usize> {
        match self {
            Self::Baseline(b) => b.pca().map(Pca::n_components),
            Self::PcaReconstruction(p) => Some(p.n_components()),
        }
    }
}

/// Per-dimension mean and standard deviation accumulated (in f64) over descriptor rows that
/// arrive in batches, as the students' targets are normalised (METHOD.md §5: ŷ = (y − μ)/σ
/// over every descriptor of the training set; population σ, floored at `min_std`).
#[derive(Debug, Clone, PartialEq)]
pub struct Standardizer {
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
    count: usize,
}

/// The finished statistics of a [`Standardizer`].
#[derive(Debug, Clone, PartialEq)]
pub struct Standardization {
    /// μ per dimension.
    pub mean: Vec<f32>,
    /// σ per dimension (at least the floor given to [`Standardizer::finish`]).
    pub std: Vec<f32>,
    /// Rows the statistics come from.
    pub count: usize,
}

impl Standardizer {
    /// An empty accumulator for vectors of dimension `dim`.
    pub fn new(dim: usize) -> Self {
        Self {
            sum: vec![0.0; dim],
            sum_sq: vec![0.0; dim],
            count: 0,
        }
    }

    /// Adds rows (n, dim).
    pub fn add_rows(&mut self, rows: ArrayView2<'_, f32>) -> Result<()> {
        self.check_dim(rows.ncols())?;
        for row in rows.rows() {
            for (k, &x) in row.iter().enumerate() {
                let x = f64::from(x);
                self.sum[k] += x;
                self.sum_sq[k] += x * x;
            }
        }
        self.count += rows.nrows();
        Ok(())
    }

    /// Adds planar maps: `planes` holds `dim` planes of `pixels` values each (the layout of
    /// one image's (1, dim, H, W) descriptor tensor).
    pub fn add_planes(&mut self, planes: &[f32], pixels: usize) -> Result<()> {
        let dim = self.sum.len();
        if planes.len() != dim * pixels {
            return Err(BaselineError::BufferLength {
                what: "descriptor planes",
                len: planes.len(),
                rows: pixels,
                dim,
            });
        }
        for (k, plane) in planes.chunks_exact(pixels.max(1)).enumerate() {
            let (mut s, mut ss) = (0f64, 0f64);
            for &x in plane {
                let x = f64::from(x);
                s += x;
                ss += x * x;
            }
            self.sum[k] += s;
            self.sum_sq[k] += ss;
        }
        self.count += pixels;
        Ok(())
    }

    fn check_dim(&self, got: usize) -> Result<()> {
        if got != self.sum.len() {
            return Err(BaselineError::DimensionMismatch {
                what: "standardisation rows",
                expected: self.sum.len(),
                got,
            });
        }
        Ok(())
    }

    /// μ and σ (population, floored at `min_std`). Errors when no row was added.
    pub fn finish(&self, min_std: f32) -> Result<Standardization> {
        if self.count == 0 {
            return Err(BaselineError::EmptyTrainingSet {
                what: "standardisation",
            });
        }
        let n = self.count as f64;
        let mean: Vec<f32> = self.sum.iter().map(|s| (s / n) as f32).collect();
        let std = self
            .sum
            .iter()
            .zip(&self.sum_sq)
            .map(|(s, ss)| {
                let m = s / n;
                ((ss / n - m * m).max(0.0).sqrt() as f32).max(min_std)
            })
            .collect();
        Ok(Standardization {
            mean,
            std,
            count: self.count,
        })
    }
}

impl Standardization {
    /// Replaces every row x by (x − μ)/σ.
    pub fn apply(&self, mut rows: ArrayViewMut2<'_, f32>) -> Result<()> {
        if rows.ncols() != self.mean.len() {
            return Err(BaselineError::DimensionMismatch {
                what: "standardised rows",
                expected: self.mean.len(),
                got: rows.ncols(),
            });
        }
        for mut row in rows.rows_mut() {
            for ((x, &m), &s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *x = (*x - m) / s;
            }
        }
        Ok(())
    }
}

/// Collects a seeded subset of rows out of `total` rows that arrive in order, batch by batch
/// (the rows of image 0, then image 1, …): the subset is
/// [`subsample_indices`](crate::subsample_indices)`(total, max, seed)`, so it is the same as
/// subsampling the concatenation of every batch, without ever holding the whole.
#[derive(Debug, Clone)]
pub struct RowSubset {
    /// Sorted global indices to keep (`None`: all).
    picked: Option<Vec<usize>>,
    /// Next position in `picked`.
    cursor: usize,
    /// Global index of the next row to arrive.
    offset: usize,
    total: usize,
    dim: usize,
    data: Vec<f32>,
}

impl RowSubset {
    /// A collector of at most `max` of `total` rows of dimension `dim` (`None`: all).
    pub fn new(total: usize, max: Option<usize>, seed: u64, dim: usize) -> Self {
        let picked = crate::data::subsample_indices(total, max, seed);
        let keep = picked.as_ref().map_or(total, Vec::len);
        Self {
            picked,
            cursor: 0,
            offset: 0,
            total,
            dim,
            data: Vec::with_capacity(keep.saturating_mul(dim)),
        }
    }

    /// Rows that will be kept in all.
    pub fn kept(&self) -> usize {
        self.picked.as_ref().map_or(self.total, Vec::len)
    }

    /// Offers the next rows (n, dim); keeps those of the subset.
    pub fn push(&mut self, rows: ArrayView2<'_, f32>) -> Result<()> {
        if rows.ncols() != self.dim {
            return Err(BaselineError::DimensionMismatch {
                what: "subset rows",
                expected: self.dim,
                got: rows.ncols(),
            });
        }
        let end = self.offset + rows.nrows();
        if end > self.total {
            return Err(invalid(
                "row subset",
                "rows",
                format!("{end} rows offered, {} announced", self.total),
            ));
        }
        match &self.picked {
            None => {
                for row in rows.rows() {
                    self.data.extend(row.iter());
                }
            }
            Some(picked) => {
                while self.cursor < picked.len() && picked[self.cursor] < end {
                    let row = rows.row(picked[self.cursor] - self.offset);
                    self.data.extend(row.iter());
                    self.cursor += 1;
                }
            }
        }
        self.offset = end;
        Ok(())
    }

    /// The kept rows (n_kept, dim), in global order. Errors when fewer rows than announced
    /// arrived.
    pub fn finish(self) -> Result<Array2<f32>> {
        if self.offset != self.total {
            return Err(invalid(
                "row subset",
                "rows",
                format!("{} rows offered, {} announced", self.offset, self.total),
            ));
        }
        let n = self.data.len() / self.dim.max(1);
        Ok(Array2::from_shape_vec((n, self.dim), self.data).expect("n·dim values collected"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, Axis, array, s};

    #[test]
    fn names_round_trip() {
        for m in DescriptorMethod::ALL {
            assert_eq!(m.name().parse::<DescriptorMethod>().unwrap(), m);
        }
        let err = "svm".parse::<DescriptorMethod>().unwrap_err().to_string();
        assert!(err.contains("\"svm\""), "{err}");
    }

    #[test]
    fn row_subset_equals_subsampling_the_concatenation() {
        let all = Array2::from_shape_fn((103, 3), |(i, j)| (i * 10 + j) as f32);
        let mut sub = RowSubset::new(103, Some(17), 5, 3);
        assert_eq!(sub.kept(), 17);
        for chunk in all.axis_chunks_iter(Axis(0), 10) {
            sub.push(chunk).unwrap();
        }
        let got = sub.finish().unwrap();
        let idx = crate::data::subsample_indices(103, Some(17), 5).unwrap();
        assert_eq!(got, all.select(Axis(0), &idx));
        // All rows when the cap is not below the count.
        let mut sub = RowSubset::new(4, Some(9), 5, 3);
        sub.push(all.slice(s![0..4, ..])).unwrap();
        assert_eq!(sub.finish().unwrap(), all.slice(s![0..4, ..]));
        // Too few rows is an error.
        let mut sub = RowSubset::new(5, None, 0, 3);
        sub.push(all.slice(s![0..4, ..])).unwrap();
        assert!(sub.finish().is_err());
    }

    #[test]
    fn standardisation_matches_hand_computed_statistics() {
        // Column 0: 1, 3, 5 -> mean 3, population std sqrt(8/3); column 1 constant 2 -> floor.
        let rows = array![[1.0f32, 2.0], [3.0, 2.0], [5.0, 2.0]];
        let mut acc = Standardizer::new(2);
        acc.add_rows(rows.slice(s![0..1, ..])).unwrap();
        acc.add_rows(rows.slice(s![1..3, ..])).unwrap();
        let st = acc.finish(1e-6).unwrap();
        assert!((st.mean[0] - 3.0).abs() < 1e-6 && (st.mean[1] - 2.0).abs() < 1e-6);
        assert!((st.std[0] - (8.0f32 / 3.0).sqrt()).abs() < 1e-6);
        assert_eq!(st.std[1], 1e-6);
        // The same from planes (dim planes of 3 pixels).
        let mut planar = Standardizer::new(2);
        planar
            .add_planes(&[1.0, 3.0, 5.0, 2.0, 2.0, 2.0], 3)
            .unwrap();
        assert_eq!(planar.finish(1e-6).unwrap(), st);
        let mut x = rows.clone();
        st.apply(x.view_mut()).unwrap();
        assert!((x[(2, 0)] - 2.0 / (8.0f32 / 3.0).sqrt()).abs() < 1e-5);
        assert_eq!(x[(0, 1)], 0.0);
        assert!(Standardizer::new(2).finish(1e-6).is_err());
    }

    #[test]
    fn pca_reconstruction_error_is_the_distance_to_the_kept_subspace() {
        // Training vectors on the x axis of R^3 with tiny noise on y: PCA 95 % keeps one axis,
        // so the score of (a, b, c) is ≈ b² + c² (mean ≈ 0).
        let train = Array2::from_shape_fn((200, 3), |(i, j)| match j {
            0 => i as f32 - 99.5,
            1 => {
                if i % 2 == 0 {
                    0.01
                } else {
                    -0.01
                }
            }
            _ => 0.0,
        });
        let model =
            DescriptorModel::fit(DescriptorMethod::Pca, train.view(), 0, &Device::Cpu).unwrap();
        assert_eq!(model.pca_components(), Some(1));
        let s = model
            .score(array![[3.0f32, 0.0, 0.0], [0.0, 2.0, 1.0]].view())
            .unwrap();
        assert!(s[0].abs() < 1e-3, "{s:?}");
        assert!((s[1] - 5.0).abs() < 1e-2, "{s:?}");
    }
}
