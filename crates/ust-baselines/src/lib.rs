//! The shallow and neural baselines of Uninformed Students (Bergmann et al., CVPR 2020, Tables 1
//! and 2; METHOD.md §8), fitted on teacher descriptors: PCA keeping 95 % of the variance, then
//! 1-NN (distance to the nearest training vector), K-Means (distance to the nearest centre) and a
//! one-class SVM (negative decision function); and a fully connected ℓ2 autoencoder (squared
//! reconstruction error) and a VAE (negative reconstruction probability).
//!
//! Input: descriptor matrices as [`ndarray::ArrayView2<f32>`] (n vectors × d components, any
//! memory layout); build them with [`descriptors_view`] from a row-major `&[f32]`, or copy them
//! out of candle tensors with [`descriptors_from_tensor`] (n, d) or [`dense_maps_to_rows`]
//! (B, C, H, W). Output: one `f32` anomaly score per vector, higher = more anomalous.
//!
//! Entry point: [`BaselineConfig::paper`] → [`FittedBaseline::fit`] → [`FittedBaseline::score`];
//! each method can also be used on its own ([`NearestNeighbor`], [`KMeans`], [`OneClassSvm`],
//! [`Autoencoder`], [`Vae`], [`Pca`]). Everything is pure Rust (linfa without BLAS, ndarray's
//! `matrixmultiply`, candle on the CPU) and deterministic given the seed.

pub mod autoencoder;
pub mod baseline;
pub mod data;
pub mod dense;
mod distance;
pub mod error;
pub mod kmeans;
pub mod knn;
mod nn;
pub mod ocsvm;
pub mod pca;
pub mod vae;

/// The ndarray version of the input type, for callers without their own ndarray dependency.
pub use ndarray;

pub use autoencoder::{Autoencoder, AutoencoderConfig};
pub use baseline::{
    BaselineConfig, BaselineKind, FitDetails, FitSummary, FittedBaseline, FittedModel,
    MethodConfig, SCORE_CHUNK,
};
pub use data::{
    check_finite, dense_maps_to_rows, derive_seed, descriptors_from_tensor, descriptors_view,
    subsample_indices,
};
pub use dense::{DescriptorMethod, DescriptorModel, RowSubset, Standardization, Standardizer};
pub use error::{BaselineError, Result};
pub use kmeans::{KMeans, KMeansConfig};
pub use knn::{NearestNeighbor, NearestNeighborConfig};
pub use nn::TrainingConfig;
pub use ocsvm::{OneClassSvm, OneClassSvmConfig, SvmGamma};
pub use pca::{Pca, PcaConfig};
pub use vae::{DecoderVariance, Vae, VaeConfig};
