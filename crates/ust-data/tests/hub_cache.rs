//! candle-datasets' Hub loaders (`candle_datasets::vision::{mnist, cifar}::load`), which the
//! `hub` feature calls, run without the network: this test lays out a Hugging Face cache of its
//! own (`$HF_HUB_CACHE`) holding small parquet files in the layout of the Hub's parquet
//! conversions (an `image` group with the PNG `bytes`, an int64 `label`), where the Hub client
//! finds them before asking the network. It checks what comes back, after our conversion
//! (`LabeledImages::from_unit_tensors`, `cifar::hub_tensor_to_chw`), against the images
//! written; with the feature, `load_mnist_or_hub` / `load_cifar10_or_hub` on a folder with no
//! copy as well.
//!
//! One test in its own file: it sets environment variables, which no other thread reads then.

use std::path::Path;
use std::sync::Arc;

use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use ust_data::LabeledImages;
use ust_data::cifar::{CIFAR10_CLASSES, hub_tensor_to_chw};
use ust_data::mnist::MNIST_CLASSES;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// `n` images of `channels`×`side`×`side` bytes (planar), every pixel of an image different
/// from its mirror image, and labels.
fn images(n: usize, channels: usize, side: usize, seed: usize) -> LabeledImages {
    let mut pixels = Vec::new();
    for i in 0..n {
        for c in 0..channels {
            for y in 0..side {
                for x in 0..side {
                    pixels.push(((seed + i * 31 + c * 67 + y * 7 + x * 3 + y * x) % 256) as u8);
                }
            }
        }
    }
    let classes: &[&str] = if channels == 1 {
        &MNIST_CLASSES
    } else {
        &CIFAR10_CLASSES
    };
    LabeledImages {
        source: "written".into(),
        channels,
        height: side,
        width: side,
        pixels,
        labels: (0..n).map(|i| ((seed + 3 * i) % 10) as u8).collect(),
        class_names: classes.iter().map(|s| s.to_string()).collect(),
    }
}

/// Image `i` as PNG bytes (grey for one channel, RGB for three).
fn png(set: &LabeledImages, i: usize) -> Vec<u8> {
    let (w, h) = (set.width as u32, set.height as u32);
    let planar = set.image_bytes(i);
    let n = set.width * set.height;
    let mut out = std::io::Cursor::new(Vec::new());
    if set.channels == 1 {
        image::GrayImage::from_raw(w, h, planar.to_vec())
            .unwrap()
            .write_to(&mut out, image::ImageFormat::Png)
            .unwrap();
    } else {
        let interleaved: Vec<u8> = (0..n)
            .flat_map(|p| [planar[p], planar[n + p], planar[2 * n + p]])
            .collect();
        image::RgbImage::from_raw(w, h, interleaved)
            .unwrap()
            .write_to(&mut out, image::ImageFormat::Png)
            .unwrap();
    }
    out.into_inner()
}

/// A parquet file like the Hub's conversion of an image dataset: per row, a group `image`
/// (`bytes`: the PNG, `path`: null) and an int64 `label`.
fn write_parquet(path: &Path, set: &LabeledImages) {
    let schema = parse_message_type(
        "message schema {
            required group image {
                optional binary bytes;
                optional binary path (UTF8);
            }
            required int64 label;
        }",
    )
    .unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let props = Arc::new(WriterProperties::builder().build());
    let mut writer = SerializedFileWriter::new(file, Arc::new(schema), props).unwrap();
    let mut group = writer.next_row_group().unwrap();
    let n = set.len();
    let bytes: Vec<ByteArray> = (0..n).map(|i| ByteArray::from(png(set, i))).collect();
    let mut column = group.next_column().unwrap().unwrap();
    column
        .typed::<ByteArrayType>()
        .write_batch(&bytes, Some(&vec![1; n]), None)
        .unwrap();
    column.close().unwrap();
    let mut column = group.next_column().unwrap().unwrap();
    column
        .typed::<ByteArrayType>()
        .write_batch(&[], Some(&vec![0; n]), None)
        .unwrap();
    column.close().unwrap();
    let labels: Vec<i64> = set.labels.iter().map(|&l| i64::from(l)).collect();
    let mut column = group.next_column().unwrap().unwrap();
    column
        .typed::<Int64Type>()
        .write_batch(&labels, None, None)
        .unwrap();
    column.close().unwrap();
    assert!(group.next_column().unwrap().is_none());
    group.close().unwrap();
    writer.close().unwrap();
}

/// `files` (name in the repository, images) as the cached snapshot of the dataset repository
/// `repo_folder` at revision `refs/convert/parquet`.
fn cache_dataset(cache: &Path, repo_folder: &str, files: &[(&str, &LabeledImages)]) {
    let repo = cache.join(repo_folder);
    let refs = repo.join("refs/refs/convert");
    std::fs::create_dir_all(&refs).unwrap();
    std::fs::write(refs.join("parquet"), COMMIT).unwrap();
    for (name, set) in files {
        write_parquet(&repo.join("snapshots").join(COMMIT).join(name), set);
    }
}

fn assert_same_set(what: &str, got: &LabeledImages, expected: &LabeledImages) {
    assert_eq!(got.labels, expected.labels, "{what}: labels");
    assert_eq!(
        (got.channels, got.height, got.width),
        (expected.channels, expected.height, expected.width),
        "{what}: shape"
    );
    assert!(got.pixels == expected.pixels, "{what}: pixels differ");
}

#[test]
fn candle_datasets_hub_loaders_read_a_local_hub_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let (mnist_train, mnist_test) = (images(5, 1, 28, 1), images(3, 1, 28, 2));
    let (cifar_train, cifar_test) = (images(4, 3, 32, 3), images(2, 3, 32, 4));
    cache_dataset(
        &cache,
        "datasets--ylecun--mnist",
        &[
            ("mnist/train/0000.parquet", &mnist_train),
            ("mnist/test/0000.parquet", &mnist_test),
        ],
    );
    cache_dataset(
        &cache,
        "datasets--cifar10",
        &[
            ("plain_text/train/0000.parquet", &cifar_train),
            ("plain_text/test/0000.parquet", &cifar_test),
        ],
    );
    // SAFETY: the only test of this binary; nothing else reads the environment meanwhile.
    unsafe {
        std::env::set_var("HF_HUB_CACHE", &cache);
        std::env::set_var("HF_HOME", tmp.path().join("home"));
        std::env::remove_var("HF_TOKEN");
    }

    let mnist = candle_datasets::vision::mnist::load().unwrap();
    assert_eq!(mnist.train_images.dims(), [5, 784]);
    let convert = |images: &candle_core::Tensor, labels, like: &LabeledImages| {
        let names: Vec<&str> = like.class_names.iter().map(String::as_str).collect();
        LabeledImages::from_unit_tensors(
            "hub",
            images,
            labels,
            (like.channels, like.height, like.width),
            &names,
        )
        .unwrap()
    };
    assert_same_set(
        "MNIST train",
        &convert(&mnist.train_images, &mnist.train_labels, &mnist_train),
        &mnist_train,
    );
    assert_same_set(
        "MNIST test",
        &convert(&mnist.test_images, &mnist.test_labels, &mnist_test),
        &mnist_test,
    );

    let cifar = candle_datasets::vision::cifar::load().unwrap();
    assert_eq!(cifar.test_images.dims(), [2, 3, 32, 32]);
    // As returned, each image is transposed (candle-datasets 0.11.1); turned back, it is ours.
    let as_returned = convert(&cifar.test_images, &cifar.test_labels, &cifar_test);
    assert!(as_returned.pixels != cifar_test.pixels);
    for (images, labels, expected, what) in [
        (
            &cifar.train_images,
            &cifar.train_labels,
            &cifar_train,
            "CIFAR-10 train",
        ),
        (
            &cifar.test_images,
            &cifar.test_labels,
            &cifar_test,
            "CIFAR-10 test",
        ),
    ] {
        let chw = hub_tensor_to_chw(images).unwrap();
        assert_same_set(what, &convert(&chw, labels, expected), expected);
    }

    // The feature's entry points on a folder that holds no copy: the same images.
    #[cfg(feature = "hub")]
    {
        let empty = tmp.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let m = ust_data::mnist::load_mnist_or_hub(&empty).unwrap();
        assert_same_set("load_mnist_or_hub train", &m.train, &mnist_train);
        assert_same_set("load_mnist_or_hub test", &m.test, &mnist_test);
        let c = ust_data::cifar::load_cifar10_or_hub(&empty).unwrap();
        assert_same_set("load_cifar10_or_hub train", &c.train, &cifar_train);
        assert_same_set("load_cifar10_or_hub test", &c.test, &cifar_test);
        assert_eq!(c.test.class_names, CIFAR10_CLASSES);
    }
}
