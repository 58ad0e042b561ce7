//! Our MNIST and CIFAR-10 readers against candle-datasets' directory loaders
//! (`candle_datasets::vision::{mnist, cifar}::load_dir`), an independent implementation, on
//! the same real files: every label and every pixel value of both splits must agree. No
//! network: candle-datasets is a dev-dependency here (and a normal one only with the `hub`
//! feature). The data comes from `$UST_SHARED/data` (skipped with a note when absent).
//!
//! candle-datasets expects the files unpacked under their original names: MNIST's four idx
//! files without `.gz`, CIFAR-10's binary batches `data_batch_1.bin` … `data_batch_5.bin` and
//! `test_batch.bin` of exactly 10 000 records each. The shared MNIST is gzipped, so it is
//! gunzipped into a temporary folder; the shared CIFAR-10 is a JPEG re-encoding in class
//! folders, so its decoded images (the checkout's `data/cifar-10` when unpacked, else the
//! shared archive unpacked into a temporary folder) are written as binary batches first.

use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use ust_data::LabeledImages;
use ust_data::cifar::{CIFAR10_CLASSES, RECORD_BYTES};
use ust_data::mnist::MNIST_CLASSES;

fn shared_data(rel: &str) -> Option<PathBuf> {
    let path = ust_data::shared::shared_dir_for_tests(env!("CARGO_MANIFEST_DIR"))?
        .join("data")
        .join(rel);
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipping: {} not found (set UST_SHARED)", path.display());
        None
    }
}

/// Asserts that candle-datasets' `images` (values `byte / 255` as f32) and `labels` are
/// `ours`, value by value, and that they convert back to exactly our bytes.
fn assert_same(what: &str, ours: &LabeledImages, images: &Tensor, labels: &Tensor) {
    let labels_theirs = labels.to_dtype(DType::U8).unwrap().to_vec1::<u8>().unwrap();
    assert_eq!(labels_theirs.len(), ours.len(), "{what}: image count");
    assert_eq!(labels_theirs, ours.labels, "{what}: labels");
    let per_image = ours.channels * ours.height * ours.width;
    assert_eq!(
        images.dims()[1..].iter().product::<usize>(),
        per_image,
        "{what}: image shape {:?}",
        images.dims()
    );
    // In chunks of 1000 images, so that no second copy of a whole split is held as f32.
    let chunk = 1000;
    for start in (0..ours.len()).step_by(chunk) {
        let n = chunk.min(ours.len() - start);
        let part = images.narrow(0, start, n).unwrap();
        let values = part.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let bytes = &ours.pixels[start * per_image..(start + n) * per_image];
        for (k, (&theirs, &byte)) in values.iter().zip(bytes).enumerate() {
            let expected = f32::from(byte) / 255.0;
            assert!(
                (theirs - expected).abs() <= f32::EPSILON,
                "{what}: image {}, value {}: candle-datasets {theirs}, ours {expected}",
                start + k / per_image,
                k % per_image
            );
        }
        let labels_part = labels.narrow(0, start, n).unwrap();
        let back = LabeledImages::from_unit_tensors(
            "candle-datasets",
            &part,
            &labels_part,
            (ours.channels, ours.height, ours.width),
            &ours
                .class_names
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
        .unwrap();
        assert!(back.pixels == bytes, "{what}: bytes of images {start}..");
    }
}

#[test]
fn mnist_matches_candle_datasets_load_dir() {
    let Some(shared) = shared_data("mnist") else {
        return;
    };
    let ours = ust_data::mnist::load_mnist(&shared).unwrap();
    // candle-datasets reads the four files under their plain names.
    let tmp = tempfile::tempdir().unwrap();
    for name in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        let gz = std::fs::read(shared.join(format!("{name}.gz"))).unwrap();
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut raw)
            .unwrap();
        std::fs::write(tmp.path().join(name), raw).unwrap();
    }
    let theirs = candle_datasets::vision::mnist::load_dir(tmp.path()).unwrap();
    assert_eq!(theirs.labels, MNIST_CLASSES.len());
    assert_eq!((ours.train.len(), ours.test.len()), (60_000, 10_000));
    assert_eq!(theirs.test_images.dims(), [10_000, 784]);
    assert_same(
        "MNIST test",
        &ours.test,
        &theirs.test_images,
        &theirs.test_labels,
    );
    assert_same(
        "MNIST train",
        &ours.train,
        &theirs.train_images,
        &theirs.train_labels,
    );
}

/// The shared CIFAR-10 as class folders: the checkout's `data/cifar-10` when unpacked there,
/// else the shared archive unpacked into `tmp`.
fn cifar_folders(tmp: &Path) -> Option<PathBuf> {
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/cifar-10");
    if checkout.join("test").is_dir() && checkout.join("train").is_dir() {
        return Some(checkout);
    }
    let archive = shared_data("cifar-10-jpg.tar.gz")?;
    let out = tmp.join("jpg");
    std::fs::create_dir_all(&out).unwrap();
    let status = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(&out)
        .status()
        .expect("running tar");
    assert!(status.success(), "tar -xzf {} failed", archive.display());
    Some(out)
}

/// `images` as CIFAR-10 binary batches of `per_batch` records, `name(k)` for batch k.
fn write_batches(
    dir: &Path,
    images: &LabeledImages,
    per_batch: usize,
    name: impl Fn(usize) -> String,
) {
    for (k, start) in (0..images.len()).step_by(per_batch).enumerate() {
        let mut bytes = Vec::with_capacity(per_batch * RECORD_BYTES);
        for i in start..(start + per_batch).min(images.len()) {
            bytes.push(images.labels[i]);
            bytes.extend_from_slice(images.image_bytes(i));
        }
        std::fs::write(dir.join(name(k)), bytes).unwrap();
    }
}

#[test]
fn cifar10_matches_candle_datasets_load_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(folders) = cifar_folders(tmp.path()) else {
        return;
    };
    let decoded = ust_data::cifar::load_cifar10(&folders).unwrap();
    assert_eq!((decoded.train.len(), decoded.test.len()), (50_000, 10_000));
    assert_eq!(decoded.test.class_names, CIFAR10_CLASSES);
    // The five training batches and the test batch of the official binary version.
    let bin = tmp.path().join("cifar-10-batches-bin");
    std::fs::create_dir_all(&bin).unwrap();
    write_batches(&bin, &decoded.train, 10_000, |k| {
        format!("data_batch_{}.bin", k + 1)
    });
    write_batches(&bin, &decoded.test, 10_000, |_| "test_batch.bin".into());

    // Our binary reader, found from the parent folder as a user would point at it.
    let ours = ust_data::cifar::load_cifar10(tmp.path()).unwrap();
    assert_eq!(ours.test.pixels, decoded.test.pixels);
    let theirs = candle_datasets::vision::cifar::load_dir(&bin).unwrap();
    assert_eq!(theirs.test_images.dims(), [10_000, 3, 32, 32]);
    assert_eq!(theirs.train_images.dims(), [50_000, 3, 32, 32]);
    assert_same(
        "CIFAR-10 test_batch.bin",
        &ours.test,
        &theirs.test_images,
        &theirs.test_labels,
    );
    assert_same(
        "CIFAR-10 data_batch_1..5.bin",
        &ours.train,
        &theirs.train_images,
        &theirs.train_labels,
    );
}
