//! MNIST and CIFAR-10 from the Hugging Face Hub through candle-datasets (cargo feature `hub`,
//! off by default): the fallback of [`crate::mnist::load_mnist_or_hub`] and
//! [`crate::cifar::load_cifar10_or_hub`] when the folder given holds no copy.
//!
//! candle-datasets downloads the Hub's parquet conversions (`ylecun/mnist`, `cifar10`, revision
//! `refs/convert/parquet`) into the Hugging Face cache (`$HF_HOME`, by default
//! `~/.cache/huggingface`), where a second call finds them without the network, and decodes
//! their PNG images. The tensors it returns become [`LabeledImages`] through
//! [`LabeledImages::from_unit_tensors`], so the rest of the project sees the same bytes, labels
//! and class names as from the files on disk. `tests/hub_cache.rs` runs candle-datasets' Hub
//! loaders on parquet files it lays out in a Hub cache of its own, without the network.

use std::path::PathBuf;

use candle_core::Tensor;

use crate::cifar::{CIFAR10_CLASSES, Cifar10, hub_tensor_to_chw};
use crate::error::{DataError, Result};
use crate::labeled::LabeledImages;
use crate::mnist::{MNIST_CLASSES, Mnist};

/// The Hub dataset MNIST is downloaded from.
pub const MNIST_DATASET: &str = "hf://datasets/ylecun/mnist";
/// The Hub dataset CIFAR-10 is downloaded from.
pub const CIFAR10_DATASET: &str = "hf://datasets/cifar10";

fn hub_error(dataset: &str, cause: candle_core::Error) -> DataError {
    DataError::Io {
        path: PathBuf::from(dataset),
        cause: std::io::Error::other(format!("download through candle-datasets: {cause}")),
    }
}

/// MNIST's two splits from the Hub (60 000 and 10 000 28×28 digits).
pub fn mnist_from_hub() -> Result<Mnist> {
    tracing::info!("downloading MNIST from {MNIST_DATASET} (candle-datasets)");
    let d = candle_datasets::vision::mnist::load().map_err(|e| hub_error(MNIST_DATASET, e))?;
    let split = |images: &Tensor, labels: &Tensor, name: &str| {
        LabeledImages::from_unit_tensors(
            format!("{MNIST_DATASET}/{name}"),
            images,
            labels,
            (1, 28, 28),
            &MNIST_CLASSES,
        )
    };
    Ok(Mnist {
        train: split(&d.train_images, &d.train_labels, "train")?,
        test: split(&d.test_images, &d.test_labels, "test")?,
    })
}

/// CIFAR-10's two splits from the Hub (50 000 and 10 000 32×32 RGB images).
pub fn cifar10_from_hub() -> Result<Cifar10> {
    tracing::info!("downloading CIFAR-10 from {CIFAR10_DATASET} (candle-datasets)");
    let d = candle_datasets::vision::cifar::load().map_err(|e| hub_error(CIFAR10_DATASET, e))?;
    let split = |images: &Tensor, labels: &Tensor, name: &str| {
        let source = format!("{CIFAR10_DATASET}/{name}");
        let images = hub_tensor_to_chw(images).map_err(|cause| DataError::Tensor {
            path: PathBuf::from(&source),
            cause,
        })?;
        LabeledImages::from_unit_tensors(source, &images, labels, (3, 32, 32), &CIFAR10_CLASSES)
    };
    Ok(Cifar10 {
        train: split(&d.train_images, &d.train_labels, "train")?,
        test: split(&d.test_images, &d.test_labels, "test")?,
    })
}
