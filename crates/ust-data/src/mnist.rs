//! MNIST from its four idx files (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
//! `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`), each gzipped (`.gz`) or not; the
//! compression is recognised from the content. Magic numbers, counts and lengths are checked.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::labeled::LabeledImages;

/// Magic number of an idx file of unsigned bytes with 3 dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an idx file of unsigned bytes with 1 dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// The ten digit classes.
pub const MNIST_CLASSES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// MNIST's two splits (one channel, 28×28).
#[derive(Clone, Debug)]
pub struct Mnist {
    pub train: LabeledImages,
    pub test: LabeledImages,
}

/// Images of an idx3 file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxImages {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    /// `count · rows · cols` bytes, row-major per image.
    pub pixels: Vec<u8>,
}

/// Reads MNIST from `dir` (the four files, each with or without `.gz`; the dotted names
/// `train-images.idx3-ubyte` of some mirrors are accepted too).
pub fn load_mnist(dir: &Path) -> Result<Mnist> {
    Ok(Mnist {
        train: load_split(dir, "train")?,
        test: load_split(dir, "t10k")?,
    })
}

/// MNIST from `dir` when it holds the files ([`is_mnist_dir`]), else downloaded from the
/// Hugging Face Hub through candle-datasets ([`crate::hub::mnist_from_hub`]; cached by the
/// Hub client, so only the first call needs the network).
#[cfg(feature = "hub")]
pub fn load_mnist_or_hub(dir: &Path) -> Result<Mnist> {
    if is_mnist_dir(dir) {
        load_mnist(dir)
    } else {
        tracing::info!("no MNIST files in {}", dir.display());
        crate::hub::mnist_from_hub()
    }
}

/// Whether `dir` holds MNIST's training images file.
pub fn is_mnist_dir(dir: &Path) -> bool {
    find_file(dir, "train", "images", 3).is_ok()
}

fn load_split(dir: &Path, prefix: &str) -> Result<LabeledImages> {
    let images_path = find_file(dir, prefix, "images", 3)?;
    let labels_path = find_file(dir, prefix, "labels", 1)?;
    let images = read_idx_images(&images_path)?;
    let labels = read_idx_labels(&labels_path)?;
    if labels.len() != images.count {
        return Err(DataError::invalid(
            &labels_path,
            format!(
                "{} labels for {} images in {}",
                labels.len(),
                images.count,
                images_path.display()
            ),
        ));
    }
    if let Some(i) = labels.iter().position(|&l| l > 9) {
        return Err(DataError::invalid(
            &labels_path,
            format!("label {} of item {i} is not a digit", labels[i]),
        ));
    }
    Ok(LabeledImages {
        source: images_path,
        channels: 1,
        height: images.rows,
        width: images.cols,
        pixels: images.pixels,
        labels,
        class_names: MNIST_CLASSES.iter().map(|s| s.to_string()).collect(),
    })
}

fn find_file(dir: &Path, prefix: &str, kind: &str, dims: u8) -> Result<PathBuf> {
    let names = [
        format!("{prefix}-{kind}-idx{dims}-ubyte"),
        format!("{prefix}-{kind}.idx{dims}-ubyte"),
    ];
    for name in &names {
        for suffix in ["", ".gz"] {
            let path = dir.join(format!("{name}{suffix}"));
            if path.is_file() {
                return Ok(path);
            }
        }
    }
    Err(DataError::Missing {
        path: dir.join(format!("{}[.gz]", names[0])),
        what: "MNIST idx file",
    })
}

/// Reads an idx3 file of images (magic 0x00000803): header, then `count · rows · cols` bytes.
pub fn read_idx_images(path: &Path) -> Result<IdxImages> {
    let bytes = read_maybe_gzip(path, IMAGES_MAGIC, 3)?;
    let header = idx_header(path, &bytes, IMAGES_MAGIC, 3)?;
    let (count, rows, cols) = (header[0], header[1], header[2]);
    // Three u32 dimensions can multiply past 64 bits (a corrupt header, not a large file).
    let expected = count
        .checked_mul(rows)
        .and_then(|n| n.checked_mul(cols))
        .ok_or_else(|| {
            DataError::invalid(
                path,
                format!("the header announces {count}x{rows}x{cols} pixels, an impossible count"),
            )
        })?;
    let pixels = idx_payload(path, &bytes, 16, expected, "pixel")?;
    Ok(IdxImages {
        count,
        rows,
        cols,
        pixels,
    })
}

/// Reads an idx1 file of labels (magic 0x00000801): header, then one byte per item.
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>> {
    let bytes = read_maybe_gzip(path, LABELS_MAGIC, 1)?;
    let header = idx_header(path, &bytes, LABELS_MAGIC, 1)?;
    idx_payload(path, &bytes, 8, header[0], "label")
}

/// The dimension sizes after the magic number.
fn idx_header(path: &Path, bytes: &[u8], magic: u32, dims: usize) -> Result<Vec<usize>> {
    let header_len = 4 + 4 * dims;
    if bytes.len() < 4 {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            detail: format!("{} bytes, shorter than the magic number", bytes.len()),
        });
    }
    let found = be_u32(&bytes[0..4]);
    if found != magic {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            found,
            expected: magic,
        });
    }
    if bytes.len() < header_len {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            detail: format!(
                "{} bytes, shorter than the {header_len}-byte header",
                bytes.len()
            ),
        });
    }
    Ok((0..dims)
        .map(|d| be_u32(&bytes[4 + 4 * d..8 + 4 * d]) as usize)
        .collect())
}

fn idx_payload(
    path: &Path,
    bytes: &[u8],
    header_len: usize,
    expected: usize,
    what: &str,
) -> Result<Vec<u8>> {
    let found = bytes.len() - header_len;
    if found < expected {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            detail: format!("the header announces {expected} {what} bytes, the file holds {found}"),
        });
    }
    if found > expected {
        return Err(DataError::invalid(
            path,
            format!(
                "{} bytes after the {expected} {what} bytes the header announces",
                found - expected
            ),
        ));
    }
    Ok(bytes[header_len..].to_vec())
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The bytes of an idx file with `magic` and `dims` dimensions, gunzipped when they start with
/// the gzip magic (1f 8b). An idx file is its header and the product of its dimensions, nothing
/// more: the header is decompressed first, then at most the bytes it announces and one (which
/// the length check reports), so that a small file inflating to gigabytes is never held in
/// memory.
pub(crate) fn read_maybe_gzip(path: &Path, magic: u32, dims: usize) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let gzip_error = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => DataError::Truncated {
            path: path.to_path_buf(),
            detail: "the gzip stream ends early".into(),
        },
        _ => DataError::invalid(path, format!("corrupt gzip stream: {e}")),
    };
    let mut decoder = flate2::read::MultiGzDecoder::new(raw.as_slice());
    let mut out = Vec::new();
    (&mut decoder)
        .take(4 + 4 * dims as u64)
        .read_to_end(&mut out)
        .map_err(gzip_error)?;
    // A wrong magic number or an impossible count is reported from the header alone.
    let payload = match out.get(..4) {
        Some(m) if be_u32(m) == magic => out[4..]
            .chunks_exact(4)
            .try_fold(1u64, |n, d| n.checked_mul(u64::from(be_u32(d))))
            .unwrap_or(0),
        _ => 0,
    };
    decoder
        .take(payload.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(gzip_error)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn idx_images(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [IMAGES_MAGIC, count, rows, cols] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(pixels);
        b
    }

    fn idx_labels(labels: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
        b.extend_from_slice(&(labels.len() as u32).to_be_bytes());
        b.extend_from_slice(labels);
        b
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    /// A 3-image 2×2 training set (gzipped) and a 1-image test set (plain).
    fn write_fixture(dir: &Path) {
        let pixels: Vec<u8> = (0..12).map(|v| v * 20).collect();
        std::fs::write(
            dir.join("train-images-idx3-ubyte.gz"),
            gzip(&idx_images(3, 2, 2, &pixels)),
        )
        .unwrap();
        std::fs::write(
            dir.join("train-labels-idx1-ubyte.gz"),
            gzip(&idx_labels(&[7, 0, 7])),
        )
        .unwrap();
        std::fs::write(
            dir.join("t10k-images-idx3-ubyte"),
            idx_images(1, 2, 2, &[255, 0, 0, 51]),
        )
        .unwrap();
        std::fs::write(dir.join("t10k-labels-idx1-ubyte"), idx_labels(&[3])).unwrap();
    }

    #[test]
    fn reads_gzipped_and_plain_idx_files() {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(dir.path());
        assert!(is_mnist_dir(dir.path()));
        let mnist = load_mnist(dir.path()).unwrap();
        assert_eq!(mnist.train.len(), 3);
        assert_eq!(mnist.train.labels, vec![7, 0, 7]);
        assert_eq!(mnist.train.image_bytes(1), &[80, 100, 120, 140]);
        assert_eq!(mnist.train.class_counts()[7], 2);
        assert_eq!(mnist.train.indices_of_class(7), vec![0, 2]);
        assert_eq!(mnist.test.image(0).data(), &[1.0, 0.0, 0.0, 0.2]);
        let rgb = mnist.test.image_rgb(0, None);
        assert_eq!(rgb.channels(), 3);
        assert_eq!(rgb.plane(2), &[1.0, 0.0, 0.0, 0.2]);
    }

    #[test]
    fn bad_magic_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(dir.path());
        // Swap: a labels file where the images should be.
        let path = dir.path().join("t10k-images-idx3-ubyte");
        std::fs::write(&path, idx_labels(&[1, 2, 3])).unwrap();
        let err = load_mnist(dir.path()).unwrap_err();
        match &err {
            DataError::BadMagic {
                path: p,
                found,
                expected,
            } => {
                assert_eq!(p, &path);
                assert_eq!((*found, *expected), (LABELS_MAGIC, IMAGES_MAGIC));
            }
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains("0x00000801"), "{err}");
    }

    #[test]
    fn truncation_is_detected_plain_gzipped_and_in_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("a");
        let full = idx_images(3, 2, 2, &[0; 12]);
        std::fs::write(&plain, &full[..full.len() - 1]).unwrap();
        let err = read_idx_images(&plain).unwrap_err();
        assert!(matches!(err, DataError::Truncated { .. }), "{err}");
        assert!(err.to_string().contains("12 pixel bytes"), "{err}");

        std::fs::write(&plain, &full[..10]).unwrap();
        assert!(matches!(
            read_idx_images(&plain).unwrap_err(),
            DataError::Truncated { .. }
        ));

        let gz = dir.path().join("b.gz");
        let packed = gzip(&full);
        std::fs::write(&gz, &packed[..packed.len() / 2]).unwrap();
        let err = read_idx_images(&gz).unwrap_err();
        assert!(matches!(err, DataError::Truncated { .. }), "{err}");
        assert_eq!(err.path(), gz.as_path());

        // Too long is an error as well (a header that under-counts).
        let mut long = full.clone();
        long.push(0);
        std::fs::write(&plain, &long).unwrap();
        assert!(matches!(
            read_idx_images(&plain).unwrap_err(),
            DataError::InvalidFormat { .. }
        ));
    }

    #[test]
    fn count_mismatch_bad_label_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(dir.path());
        let labels = dir.path().join("t10k-labels-idx1-ubyte");
        std::fs::write(&labels, idx_labels(&[3, 4])).unwrap();
        let err = load_mnist(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::InvalidFormat { .. }), "{err}");
        assert_eq!(err.path(), labels.as_path());
        std::fs::write(&labels, idx_labels(&[10])).unwrap();
        assert!(
            load_mnist(dir.path())
                .unwrap_err()
                .to_string()
                .contains("not a digit")
        );
        std::fs::remove_file(&labels).unwrap();
        assert!(matches!(
            load_mnist(dir.path()).unwrap_err(),
            DataError::Missing { .. }
        ));
    }

    #[test]
    fn shared_mnist_counts_and_labels() {
        let Some(dir) = crate::test_support::shared_path("data/mnist") else {
            return;
        };
        let mnist = load_mnist(&dir).unwrap();
        assert_eq!((mnist.train.len(), mnist.test.len()), (60_000, 10_000));
        assert_eq!((mnist.train.height, mnist.train.width), (28, 28));
        // The well-known first labels: the training set starts with a 5, the test set with a 7.
        assert_eq!(&mnist.train.labels[..4], &[5, 0, 4, 1]);
        assert_eq!(mnist.test.labels[0], 7);
        // Published class frequencies.
        assert_eq!(
            mnist.train.class_counts(),
            vec![5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
        );
        assert_eq!(
            mnist.test.class_counts(),
            vec![980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
        );
    }
}
