//! MNIST and CIFAR-10 from the Hugging Face Hub through candle-datasets (cargo feature `hub`,
//! off by default): the fallback of [`crate::mnist::load_mnist_or_hub`] and
//! [`crate::cifar::load_cifar10_or_hub`] when the folder given holds no copy.
//!
//! candle-datasets downloads the Hub's parquet conversions (`ylecun/mnist`, `cifar10`, revision
//! `refs/convert/parquet`) into the Hugging Face cache (`$HF_HOME`, by default
//! `~/.cache/huggingface`), where a second call finds them without the network, and decodes
//! their PNG images. The tensors it returns become [`LabeledImages`] through
//! [`LabeledImages::from_unit_tensors`], so the rest of the project sees the same bytes, labels
//! and class names as from the files on disk.

use std::path::PathBuf;

use candle_core::Tensor;

use crate::cifar::{CIFAR10_CLASSES, Cifar10};
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
        let images = hub_cifar_to_chw(images).map_err(|cause| DataError::Tensor {
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

/// candle-datasets 0.11.1 builds its Hub CIFAR-10 tensor from the decoded images, row-major
/// N×H×W×C, and permutes it with `(0, 3, 2, 1)`: N×C×W×H, each image transposed (its
/// directory loader, [`candle_datasets::vision::cifar::load_dir`], returns N×C×H×W). Swapping
/// the last two axes gives the planes row by row again.
pub(crate) fn hub_cifar_to_chw(images: &Tensor) -> candle_core::Result<Tensor> {
    images.transpose(2, 3)?.contiguous()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// The layout fix, on a tensor built the way candle-datasets' Hub loader builds it: two
    /// 32×32 RGB images whose pixels all differ, decoded row-major as image-rs gives them.
    #[test]
    fn the_hub_cifar_tensor_is_turned_back_to_rows() {
        let (n, h, w, c) = (2usize, 32usize, 32usize, 3usize);
        let value = |i: usize, y: usize, x: usize, ch: usize| {
            ((i * 7 + y * 3 + x * 5 + ch * 11) % 256) as u8
        };
        let mut hwc = Vec::new();
        for i in 0..n {
            for y in 0..h {
                for x in 0..w {
                    for ch in 0..c {
                        hwc.push(value(i, y, x, ch));
                    }
                }
            }
        }
        let as_candle_datasets = (Tensor::from_vec(hwc, (n, h, w, c), &Device::Cpu)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .permute((0, 3, 2, 1))
            .unwrap()
            / 255.0)
            .unwrap();
        let chw = hub_cifar_to_chw(&as_candle_datasets).unwrap();
        let labels = Tensor::new(&[1u8, 9], &Device::Cpu).unwrap();
        let set =
            LabeledImages::from_unit_tensors("t", &chw, &labels, (3, 32, 32), &CIFAR10_CLASSES)
                .unwrap();
        for i in 0..n {
            let img = set.image_bytes(i);
            for ch in 0..c {
                for y in 0..h {
                    for x in 0..w {
                        assert_eq!(img[(ch * h + y) * w + x], value(i, y, x, ch));
                    }
                }
            }
        }
    }
}
