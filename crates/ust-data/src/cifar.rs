//! CIFAR-10, from the official binary batches (`data_batch_1.bin` … `data_batch_5.bin`,
//! `test_batch.bin`, records of 1 label byte + 3072 pixel bytes, planes R, G, B of 32×32) or
//! from an image-folder layout `train/<class>/*.jpg`, `test/<class>/*.jpg` (such as the JPEG
//! re-encoding in `shared/data/cifar-10-jpg.tar.gz`, unpacked to `data/cifar-10`).

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::{DataError, Result};
use crate::folder::{list_images, list_subdirs};
use crate::image_io::decode_image;
use crate::labeled::LabeledImages;

/// The classes in label order (which is also alphabetical order, so class folders sorted by
/// name get the official labels).
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Bytes of one record of a binary batch: the label, then 3 × 32 × 32 pixels.
pub const RECORD_BYTES: usize = 1 + 3 * 32 * 32;

/// CIFAR-10's two splits (three channels, 32×32).
#[derive(Clone, Debug)]
pub struct Cifar10 {
    pub train: LabeledImages,
    pub test: LabeledImages,
}

/// Where and in which form a CIFAR-10 copy is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CifarLayout {
    /// The folder holding `data_batch_1.bin` … and `test_batch.bin`.
    BinaryBatches(PathBuf),
    /// The folder holding `train/<class>/` and `test/<class>/`.
    ImageFolder(PathBuf),
}

/// Recognises a CIFAR-10 copy in `dir`: the binary batches in `dir` or in
/// `dir/cifar-10-batches-bin`, or class folders in `dir/train` and `dir/test` (an MVTec-layout
/// category, with `train/good`, is not taken for one).
pub fn detect_cifar10(dir: &Path) -> Option<CifarLayout> {
    for candidate in [dir.to_path_buf(), dir.join("cifar-10-batches-bin")] {
        if candidate.join("data_batch_1.bin").is_file()
            || candidate.join("test_batch.bin").is_file()
        {
            return Some(CifarLayout::BinaryBatches(candidate));
        }
    }
    let (train, test) = (dir.join("train"), dir.join("test"));
    if train.is_dir() && test.is_dir() && !train.join("good").is_dir() {
        let classes = list_subdirs(&train).ok()?;
        if classes.len() >= 2 {
            return Some(CifarLayout::ImageFolder(dir.to_path_buf()));
        }
    }
    None
}

/// Loads CIFAR-10 from `dir` in either layout (see [`detect_cifar10`]).
pub fn load_cifar10(dir: &Path) -> Result<Cifar10> {
    match detect_cifar10(dir) {
        Some(CifarLayout::BinaryBatches(d)) => load_binary_batches(&d),
        Some(CifarLayout::ImageFolder(d)) => {
            let train = load_class_folders(&d.join("train"))?;
            let test = load_class_folders(&d.join("test"))?;
            if test.class_names != train.class_names {
                return Err(DataError::invalid(
                    d.join("test"),
                    format!(
                        "class folders {:?} differ from train/'s {:?}",
                        test.class_names, train.class_names
                    ),
                ));
            }
            Ok(Cifar10 { train, test })
        }
        None => Err(DataError::Missing {
            path: dir.to_path_buf(),
            what: "CIFAR-10 (data_batch_1.bin … test_batch.bin, or train/<class>/ and test/<class>/)",
        }),
    }
}

/// CIFAR-10 from `dir` when it holds a copy in either layout ([`detect_cifar10`]), else
/// downloaded from the Hugging Face Hub through candle-datasets
/// ([`crate::hub::cifar10_from_hub`]; cached by the Hub client, so only the first call needs
/// the network).
#[cfg(feature = "hub")]
pub fn load_cifar10_or_hub(dir: &Path) -> Result<Cifar10> {
    if detect_cifar10(dir).is_some() {
        load_cifar10(dir)
    } else {
        tracing::info!("no CIFAR-10 in {}", dir.display());
        crate::hub::cifar10_from_hub()
    }
}

/// CIFAR-10 images as candle-datasets 0.11.1's Hub loader (`candle_datasets::vision::cifar::load`)
/// returns them, back to N×C×H×W. That loader decodes each image row-major (N×H×W×C) and
/// permutes with `(0, 3, 2, 1)`, which gives N×C×W×H: each image transposed (its directory
/// loader, `load_dir`, returns N×C×H×W). Swapping the last two axes puts the rows back
/// (checked on the real loader by `tests/hub_cache.rs`).
pub fn hub_tensor_to_chw(images: &candle_core::Tensor) -> candle_core::Result<candle_core::Tensor> {
    images.transpose(2, 3)?.contiguous()
}

/// The five training batches and the test batch of `dir`.
pub fn load_binary_batches(dir: &Path) -> Result<Cifar10> {
    let mut train: Option<LabeledImages> = None;
    for k in 1..=5 {
        let batch = read_cifar_batch(&dir.join(format!("data_batch_{k}.bin")))?;
        match &mut train {
            None => train = Some(batch),
            Some(t) => {
                t.pixels.extend_from_slice(&batch.pixels);
                t.labels.extend_from_slice(&batch.labels);
            }
        }
    }
    let mut train = train.expect("five batches read");
    train.source = dir.to_path_buf();
    let test = read_cifar_batch(&dir.join("test_batch.bin"))?;
    Ok(Cifar10 { train, test })
}

/// One binary batch. Errors: unreadable file, a length that is not a whole number of
/// [`RECORD_BYTES`]-byte records (truncation), no record, a label above 9.
pub fn read_cifar_batch(path: &Path) -> Result<LabeledImages> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if bytes.is_empty() {
        return Err(DataError::invalid(path, "empty batch file"));
    }
    if bytes.len() % RECORD_BYTES != 0 {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            detail: format!(
                "{} bytes are {} whole {RECORD_BYTES}-byte records and {} bytes of a cut one",
                bytes.len(),
                bytes.len() / RECORD_BYTES,
                bytes.len() % RECORD_BYTES
            ),
        });
    }
    let n = bytes.len() / RECORD_BYTES;
    let mut labels = Vec::with_capacity(n);
    let mut pixels = Vec::with_capacity(n * (RECORD_BYTES - 1));
    for (i, record) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        if record[0] > 9 {
            return Err(DataError::invalid(
                path,
                format!("label {} of record {i} is not in 0..=9", record[0]),
            ));
        }
        labels.push(record[0]);
        pixels.extend_from_slice(&record[1..]);
    }
    Ok(LabeledImages {
        source: path.to_path_buf(),
        channels: 3,
        height: 32,
        width: 32,
        pixels,
        labels,
        class_names: CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect(),
    })
}

/// Images in class subfolders of `dir` (`dir/<class>/*.jpg|png|bmp`), decoded in parallel to
/// three channels. Labels follow the sorted class-folder names. Errors: no class folder, an
/// empty class folder, an undecodable image, an image whose size differs from the first one.
pub fn load_class_folders(dir: &Path) -> Result<LabeledImages> {
    let class_dirs = list_subdirs(dir)?;
    if class_dirs.is_empty() {
        return Err(DataError::Missing {
            path: dir.to_path_buf(),
            what: "class folders",
        });
    }
    let mut files: Vec<(PathBuf, u8)> = Vec::new();
    let mut class_names = Vec::new();
    for (label, class_dir) in class_dirs.iter().enumerate() {
        let label = u8::try_from(label)
            .map_err(|_| DataError::invalid(dir, "more than 256 class folders"))?;
        let images = list_images(class_dir)?;
        if images.is_empty() {
            return Err(DataError::EmptyFolder {
                path: class_dir.clone(),
            });
        }
        class_names.push(
            class_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        files.extend(images.into_iter().map(|p| (p, label)));
    }
    let decoded: Vec<Result<(u32, u32, Vec<u8>)>> = files
        .par_iter()
        .map(|(path, _)| {
            let image = decode_image(path)?.into_rgb8();
            let (w, h) = image.dimensions();
            let n = (w * h) as usize;
            let mut planar = vec![0u8; 3 * n];
            for (i, px) in image.as_raw().chunks_exact(3).enumerate() {
                planar[i] = px[0];
                planar[n + i] = px[1];
                planar[2 * n + i] = px[2];
            }
            Ok((w, h, planar))
        })
        .collect();
    let mut pixels = Vec::new();
    let mut size = None;
    for ((path, _), result) in files.iter().zip(decoded) {
        let (w, h, planar) = result?;
        let first = *size.get_or_insert((w, h));
        if (w, h) != first {
            return Err(DataError::invalid(
                path,
                format!("image is {w}x{h}, the first one is {}x{}", first.0, first.1),
            ));
        }
        pixels.extend_from_slice(&planar);
    }
    let (w, h) = size.expect("at least one image");
    Ok(LabeledImages {
        source: dir.to_path_buf(),
        channels: 3,
        height: h as usize,
        width: w as usize,
        pixels,
        labels: files.iter().map(|(_, l)| *l).collect(),
        class_names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(label: u8, fill: u8) -> Vec<u8> {
        let mut r = vec![label];
        r.extend((0..3072).map(|i| fill.wrapping_add((i / 1024) as u8)));
        r
    }

    fn write_batches(dir: &Path) {
        for k in 1..=5 {
            let mut b = record(k as u8, 10 * k as u8);
            b.extend(record(9, 0));
            std::fs::write(dir.join(format!("data_batch_{k}.bin")), b).unwrap();
        }
        std::fs::write(dir.join("test_batch.bin"), record(4, 200)).unwrap();
    }

    #[test]
    fn binary_batches_load_in_order() {
        let dir = tempfile::tempdir().unwrap();
        write_batches(dir.path());
        assert_eq!(
            detect_cifar10(dir.path()),
            Some(CifarLayout::BinaryBatches(dir.path().to_path_buf()))
        );
        let c = load_cifar10(dir.path()).unwrap();
        assert_eq!(c.train.len(), 10);
        assert_eq!(c.train.labels, vec![1, 9, 2, 9, 3, 9, 4, 9, 5, 9]);
        // Record 2 (batch 2, first record): R plane 20, G plane 21, B plane 22.
        let img = c.train.image_bytes(2);
        assert_eq!((img[0], img[1024], img[2048], img[3071]), (20, 21, 22, 22));
        assert_eq!(c.test.len(), 1);
        assert_eq!(c.test.class_names[c.test.labels[0] as usize], "deer");
        assert_eq!(c.test.image(0).get(1, 31, 31), 201.0 / 255.0);
    }

    #[test]
    fn truncated_batch_and_bad_label_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        write_batches(dir.path());
        let path = dir.path().join("data_batch_3.bin");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(RECORD_BYTES + 100);
        std::fs::write(&path, &bytes).unwrap();
        let err = load_cifar10(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::Truncated { .. }), "{err}");
        assert_eq!(err.path(), path.as_path());
        assert!(err.to_string().contains("1 whole"), "{err}");

        std::fs::write(&path, record(10, 0)).unwrap();
        let err = load_cifar10(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::InvalidFormat { .. }), "{err}");
        std::fs::remove_file(dir.path().join("test_batch.bin")).unwrap();
        std::fs::write(&path, record(1, 0)).unwrap();
        assert!(matches!(
            load_cifar10(dir.path()).unwrap_err(),
            DataError::Io { .. }
        ));
    }

    fn write_png(path: &Path, w: u32, h: u32, value: u8) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(w, h, image::Rgb([value, value / 2, 255 - value]))
            .save(path)
            .unwrap();
    }

    #[test]
    fn image_folder_layout_loads_with_sorted_class_labels() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write_png(&root.join("train/cat/1.png"), 4, 4, 10);
        write_png(&root.join("train/cat/0.png"), 4, 4, 20);
        write_png(&root.join("train/airplane/5.png"), 4, 4, 30);
        write_png(&root.join("test/cat/0.png"), 4, 4, 40);
        write_png(&root.join("test/airplane/0.png"), 4, 4, 50);
        assert_eq!(
            detect_cifar10(root),
            Some(CifarLayout::ImageFolder(root.to_path_buf()))
        );
        let c = load_cifar10(root).unwrap();
        assert_eq!(c.train.class_names, vec!["airplane", "cat"]);
        assert_eq!(c.train.labels, vec![0, 1, 1]);
        // train/cat/0.png (value 20) sorts before 1.png.
        let img = c.train.image_bytes(1);
        assert_eq!((img[0], img[16], img[32]), (20, 10, 235));
        assert_eq!(c.test.len(), 2);

        write_png(&root.join("train/cat/2.png"), 5, 4, 0);
        let err = load_cifar10(root).unwrap_err();
        assert!(err.to_string().contains("5x4"), "{err}");
        assert!(err.path().ends_with("train/cat/2.png"));
        std::fs::remove_file(root.join("train/cat/2.png")).unwrap();
        write_png(&root.join("test/dog/0.png"), 4, 4, 0);
        let err = load_cifar10(root).unwrap_err();
        assert!(err.path().ends_with("test"), "{err}");
    }

    #[test]
    fn shared_cifar_jpg_subset() {
        let Some(archive) = crate::test_support::shared_path("data/cifar-10-jpg.tar.gz") else {
            return;
        };
        // Unpack ten images per class and split (0000.jpg … 0009.jpg) into a tempdir.
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("tar")
            .arg("-xzf")
            .arg(&archive)
            .arg("-C")
            .arg(dir.path())
            .args(["--wildcards", "train/*/000?.jpg", "test/*/000?.jpg"])
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("skipping: cannot run tar on {}", archive.display());
            return;
        }
        let c = load_cifar10(dir.path()).unwrap();
        assert_eq!(c.train.class_names, CIFAR10_CLASSES.to_vec());
        assert_eq!(c.train.class_counts(), vec![10; 10]);
        assert_eq!(c.test.class_counts(), vec![10; 10]);
        assert_eq!(
            (c.train.channels, c.train.height, c.train.width),
            (3, 32, 32)
        );
    }
}
