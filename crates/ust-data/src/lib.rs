//! Datasets for student–teacher anomaly detection: every experiment of the project reads its
//! data through this crate. It reads MVTec AD-layout inspection datasets (with their
//! ground-truth masks, a seeded validation split and a decoded-image cache), MNIST and
//! CIFAR-10 (with the one-class protocol), and samples the natural-image patch triplets that
//! pretrain the teacher. Images are `f32` in `[0, 1]`, layout C×H×W ([`ChwImage`]); batches
//! become candle tensors with [`batch_to_tensor`]. The detector's output, per-pixel anomaly
//! maps, is written and read by [`maps`] (float TIFF, `.npy`, heatmap, overlay and mask PNGs).
//! Bad input is a [`DataError`] naming the file.
//!
//! # Cargo features
//!
//! * `hub` (off by default): MNIST and CIFAR-10 from the Hugging Face Hub through
//!   candle-datasets when the folder given holds no copy —
//!   [`mnist::load_mnist_or_hub`], [`cifar::load_cifar10_or_hub`] and the `hub` module.
//!   candle-datasets always brings parquet (with arrow) and a blocking HTTP/TLS client, which
//!   the default, offline build does without. candle-datasets is also a dev-dependency (test
//!   builds only, with or without the feature): `tests/candle_datasets.rs` checks our MNIST
//!   and CIFAR-10 readers against its directory loaders on the shared files, and
//!   `tests/hub_cache.rs` runs its Hub loaders on a local Hub cache of parquet files (no
//!   network).

pub mod cache;
pub mod cifar;
pub mod error;
pub mod files;
pub mod folder;
#[cfg(feature = "hub")]
pub mod hub;
pub mod image_io;
pub mod inspect;
pub mod labeled;
pub mod maps;
pub mod mnist;
pub mod mvtec;
pub mod one_class;
pub mod shared;
pub mod split;
pub mod triplets;

#[cfg(test)]
mod test_support;

pub use cache::ImageCache;
pub use error::{DataError, Result, error_chain};
pub use folder::{find_images_recursive, list_images};
pub use image_io::{BinaryMask, ChwImage, LoadedImage, Size, batch_to_tensor};
pub use labeled::LabeledImages;
pub use maps::{AnomalyMap, MapShapeError};
pub use mvtec::{MvtecCategory, TestSample, discover_categories, open_categories};
pub use one_class::OneClassSplit;
pub use triplets::{TripletBatch, TripletConfig, TripletSampler, TripletStream};
