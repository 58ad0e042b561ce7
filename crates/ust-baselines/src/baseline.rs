//! One entry point for every baseline: a configuration (method + preprocessing + subsampling +
//! seed), fitting on training descriptors, scoring test descriptors, and a fit summary.
//!
//! Pipeline of [`FittedBaseline::fit`]: check the training vectors → seeded random subset of at
//! most `max_train_vectors` rows → PCA fitted on that subset (if configured) → the method fitted
//! on the (projected) subset. [`FittedBaseline::score`] applies the same PCA to the test vectors
//! and scores them in blocks of [`SCORE_CHUNK`] rows, so a million vectors need no
//! million-row intermediate.

use std::time::Instant;

use candle_core::Device;
use ndarray::{ArrayView2, Axis, s};
use serde::{Deserialize, Serialize};

use crate::autoencoder::{Autoencoder, AutoencoderConfig};
use crate::data::{check_query, check_training, derive_seed, stream, subsample_indices};
use crate::error::{Result, invalid};
use crate::kmeans::{KMeans, KMeansConfig};
use crate::knn::{NearestNeighbor, NearestNeighborConfig};
use crate::ocsvm::{OneClassSvm, OneClassSvmConfig};
use crate::pca::{Pca, PcaConfig};
use crate::vae::{Vae, VaeConfig};

/// Rows per scoring block of [`FittedBaseline::score`].
pub const SCORE_CHUNK: usize = 65_536;

/// The five baselines of METHOD.md §8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BaselineKind {
    /// Distance to the nearest training vector.
    NearestNeighbor,
    /// Distance to the nearest K-Means centre.
    KMeans,
    /// Negative decision function of a one-class SVM.
    OneClassSvm,
    /// Squared reconstruction error of a fully connected autoencoder.
    Autoencoder,
    /// Negative log reconstruction probability of a VAE.
    Vae,
}

impl BaselineKind {
    /// All five, in the order of the paper's Table 1.
    pub const ALL: [BaselineKind; 5] = [
        BaselineKind::NearestNeighbor,
        BaselineKind::OneClassSvm,
        BaselineKind::KMeans,
        BaselineKind::Autoencoder,
        BaselineKind::Vae,
    ];

    /// The name used in the paper's tables ("1-NN", "OC-SVM", "K-Means", "l2-AE", "VAE").
    pub fn paper_name(self) -> &'static str {
        match self {
            BaselineKind::NearestNeighbor => "1-NN",
            BaselineKind::KMeans => "K-Means",
            BaselineKind::OneClassSvm => "OC-SVM",
            BaselineKind::Autoencoder => "l2-AE",
            BaselineKind::Vae => "VAE",
        }
    }
}

impl std::fmt::Display for BaselineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.paper_name())
    }
}

/// The method and its own parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub enum MethodConfig {
    /// 1-NN.
    NearestNeighbor(NearestNeighborConfig),
    /// K-Means.
    KMeans(KMeansConfig),
    /// One-class SVM.
    OneClassSvm(OneClassSvmConfig),
    /// ℓ2 autoencoder.
    Autoencoder(AutoencoderConfig),
    /// VAE.
    Vae(VaeConfig),
}

impl MethodConfig {
    /// The method's default parameters.
    pub fn default_for(kind: BaselineKind) -> Self {
        match kind {
            BaselineKind::NearestNeighbor => Self::NearestNeighbor(Default::default()),
            BaselineKind::KMeans => Self::KMeans(Default::default()),
            BaselineKind::OneClassSvm => Self::OneClassSvm(Default::default()),
            BaselineKind::Autoencoder => Self::Autoencoder(Default::default()),
            BaselineKind::Vae => Self::Vae(Default::default()),
        }
    }

    /// Which baseline this configures.
    pub fn kind(&self) -> BaselineKind {
        match self {
            Self::NearestNeighbor(_) => BaselineKind::NearestNeighbor,
            Self::KMeans(_) => BaselineKind::KMeans,
            Self::OneClassSvm(_) => BaselineKind::OneClassSvm,
            Self::Autoencoder(_) => BaselineKind::Autoencoder,
            Self::Vae(_) => BaselineKind::Vae,
        }
    }

    /// The method's own `check()`.
    pub fn check(&self) -> Result<()> {
        match self {
            Self::NearestNeighbor(c) => c.check(),
            Self::KMeans(c) => c.check(),
            Self::OneClassSvm(c) => c.check(),
            Self::Autoencoder(c) => c.check(),
            Self::Vae(c) => c.check(),
        }
    }
}

/// A complete baseline configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineConfig {
    /// The method and its parameters.
    pub method: MethodConfig,
    /// PCA applied before the method (fitted on the training subset); `None` feeds the
    /// descriptors as they are.
    pub pca: Option<PcaConfig>,
    /// At most this many training vectors, a seeded random subset; `None` uses all.
    pub max_train_vectors: Option<usize>,
    /// Seed of the subset, of K-Means' initialisation and of the networks' weights, shuffling
    /// and noise.
    pub seed: u64,
}

impl BaselineConfig {
    /// METHOD.md §8 set-up for `kind`: 1-NN, K-Means and OC-SVM after PCA keeping 95 % of the
    /// variance, on at most 50 000 / 100 000 / 5 000 training vectors; the autoencoder and the
    /// VAE on all descriptors without PCA. Seed 0.
    pub fn paper(kind: BaselineKind) -> Self {
        let (pca, max_train_vectors) = match kind {
            BaselineKind::NearestNeighbor => (Some(PcaConfig::default()), Some(50_000)),
            BaselineKind::KMeans => (Some(PcaConfig::default()), Some(100_000)),
            BaselineKind::OneClassSvm => (Some(PcaConfig::default()), Some(5_000)),
            BaselineKind::Autoencoder | BaselineKind::Vae => (None, None),
        };
        Self {
            method: MethodConfig::default_for(kind),
            pca,
            max_train_vectors,
            seed: 0,
        }
    }

    /// Which baseline this configures.
    pub fn kind(&self) -> BaselineKind {
        self.method.kind()
    }

    /// Validates everything before any work: method parameters, PCA fraction, subset size.
    pub fn check(&self) -> Result<()> {
        self.method.check()?;
        if let Some(p) = &self.pca {
            p.check()?;
        }
        if self.max_train_vectors == Some(0) {
            return Err(invalid(
                "baseline",
                "max_train_vectors",
                "must be at least 1 (or absent for all)",
            ));
        }
        Ok(())
    }
}

/// Method-specific facts of a fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub enum FitDetails {
    /// 1-NN keeps every training vector.
    NearestNeighbor {
        /// Stored training vectors.
        n_reference_vectors: usize,
    },
    /// K-Means.
    KMeans {
        /// Mean squared distance of a training vector to its centre.
        inertia: f64,
    },
    /// One-class SVM.
    OneClassSvm {
        /// Support vectors.
        n_support_vectors: usize,
        /// Kernel width used.
        gamma: f64,
        /// Offset of the decision function.
        rho: f64,
    },
    /// Autoencoder.
    Autoencoder {
        /// Mean squared reconstruction error per epoch.
        loss_history: Vec<f64>,
    },
    /// VAE.
    Vae {
        /// Mean −ELBO per epoch.
        loss_history: Vec<f64>,
    },
}

/// What a fit did and how long it took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitSummary {
    /// The baseline.
    pub kind: BaselineKind,
    /// Training vectors given.
    pub n_train_given: usize,
    /// Training vectors used (after subsampling).
    pub n_train_used: usize,
    /// Dimension of the given descriptors.
    pub input_dim: usize,
    /// Dimension the method saw (PCA components, or the input dimension).
    pub feature_dim: usize,
    /// Kept PCA components, if PCA ran.
    pub pca_components: Option<usize>,
    /// Fraction of the training variance the kept components explain, if PCA ran.
    pub pca_explained_variance: Option<f64>,
    /// Seconds spent on PCA fitting and projection of the training subset.
    pub pca_seconds: f64,
    /// Seconds of the whole fit (subset, PCA, method).
    pub fit_seconds: f64,
    /// Method-specific facts.
    pub details: FitDetails,
}

/// A fitted method.
#[derive(Debug, Clone)]
pub enum FittedModel {
    /// 1-NN.
    NearestNeighbor(NearestNeighbor),
    /// K-Means.
    KMeans(KMeans),
    /// One-class SVM.
    OneClassSvm(OneClassSvm),
    /// ℓ2 autoencoder.
    Autoencoder(Autoencoder),
    /// VAE.
    Vae(Vae),
}

impl FittedModel {
    /// Anomaly scores of vectors already in the method's feature space.
    ///
    /// # Shapes
    /// `features`: (m, feature_dim) → m scores.
    pub fn score(&self, features: ArrayView2<'_, f32>) -> Result<Vec<f32>> {
        match self {
            Self::NearestNeighbor(m) => m.score(features),
            Self::KMeans(m) => m.score(features),
            Self::OneClassSvm(m) => m.score(features),
            Self::Autoencoder(m) => m.score(features),
            Self::Vae(m) => m.score(features),
        }
    }

    fn details(&self) -> FitDetails {
        match self {
            Self::NearestNeighbor(m) => FitDetails::NearestNeighbor {
                n_reference_vectors: m.n_train(),
            },
            Self::KMeans(m) => FitDetails::KMeans {
                inertia: m.inertia(),
            },
            Self::OneClassSvm(m) => FitDetails::OneClassSvm {
                n_support_vectors: m.n_support_vectors(),
                gamma: m.gamma(),
                rho: m.rho(),
            },
            Self::Autoencoder(m) => FitDetails::Autoencoder {
                loss_history: m.loss_history().to_vec(),
            },
            Self::Vae(m) => FitDetails::Vae {
                loss_history: m.loss_history().to_vec(),
            },
        }
    }
}

/// A baseline fitted on training descriptors: optional PCA plus the method.
#[derive(Debug, Clone)]
pub struct FittedBaseline {
    config: BaselineConfig,
    input_dim: usize,
    pca: Option<Pca>,
    model: FittedModel,
    summary: FitSummary,
}

impl FittedBaseline {
    /// Checks the configuration and the training vectors, then subsamples, fits PCA and fits
    /// the method (see the module documentation). The autoencoder and the VAE train on, and
    /// later score on, `device`; the other methods are host code and ignore it.
    ///
    /// # Shapes
    /// `train`: (n, d), n ≥ 1 (K-Means needs n ≥ k, PCA n ≥ 2).
    pub fn fit(
        config: &BaselineConfig,
        train: ArrayView2<'_, f32>,
        device: &Device,
    ) -> Result<Self> {
        config.check()?;
        check_training(train, "baseline training vectors")?;
        let start = Instant::now();
        let (n_given, input_dim) = train.dim();
        let subset = subsample_indices(
            n_given,
            config.max_train_vectors,
            derive_seed(config.seed, stream::SUBSAMPLE),
        );
        let subset_rows = subset.map(|rows| train.select(Axis(0), &rows));
        let train_used = match &subset_rows {
            Some(rows) => rows.view(),
            None => train.view(),
        };

        let pca_start = Instant::now();
        let (pca, projected) = match &config.pca {
            Some(pc) => {
                let pca = Pca::fit(pc, train_used)?;
                let projected = pca.transform(train_used)?;
                (Some(pca), Some(projected))
            }
            None => (None, None),
        };
        let pca_seconds = pca_start.elapsed().as_secs_f64();
        let features = match &projected {
            Some(p) => p.view(),
            None => train_used.view(),
        };

        let seed = derive_seed(config.seed, stream::KMEANS);
        let model = match &config.method {
            MethodConfig::NearestNeighbor(c) => {
                FittedModel::NearestNeighbor(NearestNeighbor::fit(c, features)?)
            }
            MethodConfig::KMeans(c) => FittedModel::KMeans(KMeans::fit(c, features, seed)?),
            MethodConfig::OneClassSvm(c) => {
                FittedModel::OneClassSvm(OneClassSvm::fit(c, features)?)
            }
            MethodConfig::Autoencoder(c) => {
                FittedModel::Autoencoder(Autoencoder::fit(c, features, config.seed, device)?)
            }
            MethodConfig::Vae(c) => FittedModel::Vae(Vae::fit(c, features, config.seed, device)?),
        };
        let summary = FitSummary {
            kind: config.kind(),
            n_train_given: n_given,
            n_train_used: train_used.nrows(),
            input_dim,
            feature_dim: features.ncols(),
            pca_components: pca.as_ref().map(Pca::n_components),
            pca_explained_variance: pca.as_ref().map(Pca::kept_variance_fraction),
            pca_seconds,
            fit_seconds: start.elapsed().as_secs_f64(),
            details: model.details(),
        };
        Ok(Self {
            config: config.clone(),
            input_dim,
            pca,
            model,
            summary,
        })
    }

    /// Anomaly scores (higher = more anomalous), one per row, in row order.
    ///
    /// # Shapes
    /// `vectors`: (m, d) with d the training dimension → m scores.
    pub fn score(&self, vectors: ArrayView2<'_, f32>) -> Result<Vec<f32>> {
        check_query(vectors, self.input_dim, "baseline test vectors")?;
        let mut out = Vec::with_capacity(vectors.nrows());
        for start in (0..vectors.nrows()).step_by(SCORE_CHUNK) {
            let end = (start + SCORE_CHUNK).min(vectors.nrows());
            let chunk = vectors.slice(s![start..end, ..]);
            let scores = match &self.pca {
                Some(pca) => self.model.score(pca.transform(chunk)?.view())?,
                None => self.model.score(chunk)?,
            };
            out.extend(scores);
        }
        Ok(out)
    }

    /// Which baseline this is.
    pub fn kind(&self) -> BaselineKind {
        self.config.kind()
    }

    /// The configuration it was fitted with.
    pub fn config(&self) -> &BaselineConfig {
        &self.config
    }

    /// Dimension of the descriptors it takes.
    pub fn input_dim(&self) -> usize {
        self.input_dim
    }

    /// The fitted PCA, if configured.
    pub fn pca(&self) -> Option<&Pca> {
        self.pca.as_ref()
    }

    /// The fitted method.
    pub fn model(&self) -> &FittedModel {
        &self.model
    }

    /// What the fit did.
    pub fn summary(&self) -> &FitSummary {
        &self.summary
    }
}
