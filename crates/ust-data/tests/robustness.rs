//! Inputs that cannot break it (issue 20): every file parser of this crate is fed its valid
//! input, every truncation of it, random single-byte mutations of it and seeded random bytes.
//! Each call must return `Ok` or `Err`: never panic, never hang, never try to allocate what a
//! header claims before checking it against the bytes that are there (an idx header announcing
//! 10^12 pixels, an `.npy` of shape (1000000, 1000000), a TIFF, PNG or BMP of a million by a
//! million pixels must be an error, quickly).
//!
//! Parsers: MNIST idx images and labels (plain and gzipped), CIFAR-10 binary batches, anomaly
//! maps (`read_map`: float TIFF and `.npy`), images (`decode_image_bytes`, `decode_image`,
//! `image_size`: PNG, JPEG, BMP, TIFF).

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image::{DynamicImage, ImageFormat, RgbImage};
use ust_data::cifar::{RECORD_BYTES, read_cifar_batch};
use ust_data::image_io::{decode_image, decode_image_bytes, image_size, to_chw};
use ust_data::maps::{read_map, write_map_npy, write_map_tiff};
use ust_data::mnist::{IMAGES_MAGIC, LABELS_MAGIC, read_idx_images, read_idx_labels};
use ust_data::{AnomalyMap, DataError};

#[path = "../../../tests/support/fuzz.rs"]
mod fuzz;
use fuzz::{Rng, mutate_one};

/// Seeded random cases per parser and mutation kind.
const CASES: usize = 1000;

/// A parser that the huge-header cases must leave within this time (no giant allocation, no
/// loop over announced elements).
const QUICK: Duration = Duration::from_secs(10);

/// `valid` with a few bytes overwritten, a random chunk cut out or random bytes appended.
fn mutate_more(rng: &mut Rng, valid: &[u8]) -> Vec<u8> {
    let mut bytes = valid.to_vec();
    match rng.below(3) {
        0 => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(bytes.len());
                bytes[i] = rng.next_u64() as u8;
            }
        }
        1 => {
            let start = rng.below(bytes.len());
            let end = (start + 1 + rng.below(16)).min(bytes.len());
            bytes.drain(start..end);
        }
        _ => {
            let extra = 1 + rng.below(64);
            bytes.extend(rng.bytes(extra));
        }
    }
    bytes
}

/// A scratch file that each case overwrites, with the extension the parser dispatches on.
struct Scratch {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        Self { _dir: dir, path }
    }

    fn with(&self, bytes: &[u8]) -> &Path {
        // A fresh file each time: truncating one in place made every case ~50 times slower on
        // ext4 (it flushes a file replaced by truncation).
        let _ = std::fs::remove_file(&self.path);
        std::fs::write(&self.path, bytes).unwrap();
        &self.path
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn idx_file(magic: u32, dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut b = magic.to_be_bytes().to_vec();
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(payload);
    b
}

/// Three 2×3 images.
fn valid_idx_images() -> Vec<u8> {
    let pixels: Vec<u8> = (0..18).map(|v| v * 13).collect();
    idx_file(IMAGES_MAGIC, &[3, 2, 3], &pixels)
}

fn valid_idx_labels() -> Vec<u8> {
    idx_file(LABELS_MAGIC, &[5], &[7, 0, 9, 3, 3])
}

#[test]
fn idx_images_valid_truncated_mutated_and_random() {
    let scratch = Scratch::new("images-idx3-ubyte");
    let valid = valid_idx_images();
    let images = read_idx_images(scratch.with(&valid)).unwrap();
    assert_eq!((images.count, images.rows, images.cols), (3, 2, 3));
    assert_eq!(images.pixels, (0..18).map(|v| v * 13).collect::<Vec<u8>>());
    let packed = gzip(&valid);
    assert_eq!(read_idx_images(scratch.with(&packed)).unwrap(), images);

    // Every strict prefix of the plain and the gzipped file is an error.
    for source in [&valid, &packed] {
        for n in 0..source.len() {
            assert!(
                read_idx_images(scratch.with(&source[..n])).is_err(),
                "a {n}-byte prefix of a {}-byte file parsed",
                source.len()
            );
        }
    }
    let mut rng = Rng::new(1);
    for _ in 0..CASES {
        for source in [&valid, &packed] {
            for bytes in [mutate_one(&mut rng, source), mutate_more(&mut rng, source)] {
                if let Ok(v) = read_idx_images(scratch.with(&bytes)) {
                    assert_eq!(v.pixels.len(), v.count * v.rows * v.cols);
                }
            }
        }
        // Random bytes, alone and behind a valid magic number (random dimensions).
        let len = rng.below(64);
        let noise = rng.bytes(len);
        let behind_magic = [IMAGES_MAGIC.to_be_bytes().as_slice(), &noise].concat();
        for bytes in [noise, behind_magic] {
            if let Ok(v) = read_idx_images(scratch.with(&bytes)) {
                assert_eq!(v.pixels.len(), v.count * v.rows * v.cols);
            }
        }
    }
}

#[test]
fn idx_labels_valid_truncated_mutated_and_random() {
    let scratch = Scratch::new("labels-idx1-ubyte");
    let valid = valid_idx_labels();
    assert_eq!(
        read_idx_labels(scratch.with(&valid)).unwrap(),
        vec![7, 0, 9, 3, 3]
    );
    let packed = gzip(&valid);
    assert_eq!(
        read_idx_labels(scratch.with(&packed)).unwrap(),
        vec![7, 0, 9, 3, 3]
    );
    for source in [&valid, &packed] {
        for n in 0..source.len() {
            assert!(read_idx_labels(scratch.with(&source[..n])).is_err());
        }
    }
    let mut rng = Rng::new(2);
    for _ in 0..CASES {
        for source in [&valid, &packed] {
            let _ = read_idx_labels(scratch.with(&mutate_one(&mut rng, source)));
            let _ = read_idx_labels(scratch.with(&mutate_more(&mut rng, source)));
        }
        let len = rng.below(32);
        let noise = rng.bytes(len);
        let behind_magic = [LABELS_MAGIC.to_be_bytes().as_slice(), &noise].concat();
        for bytes in [noise, behind_magic] {
            if let Ok(labels) = read_idx_labels(scratch.with(&bytes)) {
                let announced = u32::from_be_bytes(bytes[4..8].try_into().unwrap());
                assert_eq!(labels.len(), announced as usize);
            }
        }
    }
}

#[test]
fn idx_headers_announcing_huge_counts_are_errors_without_allocating() {
    let scratch = Scratch::new("huge-idx3-ubyte");
    for dims in [
        [1, 1_000_000, 1_000_000],
        [1_000_000, 1_000_000, 1_000_000],
        // 2^96 pixels: the product overflows 64 bits.
        [u32::MAX, u32::MAX, u32::MAX],
        [u32::MAX, u32::MAX, 0],
        [0, u32::MAX, u32::MAX],
    ] {
        for bytes in [
            idx_file(IMAGES_MAGIC, &dims, &[1, 2, 3, 4]),
            gzip(&idx_file(IMAGES_MAGIC, &dims, &[1, 2, 3, 4])),
        ] {
            let start = Instant::now();
            let err = read_idx_images(scratch.with(&bytes)).unwrap_err();
            assert!(
                start.elapsed() < QUICK,
                "{dims:?} took {:?}",
                start.elapsed()
            );
            assert!(
                matches!(
                    err,
                    DataError::Truncated { .. } | DataError::InvalidFormat { .. }
                ),
                "{dims:?}: {err}"
            );
        }
    }
    // Zero images of a huge size hold zero pixels: a valid, empty file.
    let empty = read_idx_images(scratch.with(&idx_file(IMAGES_MAGIC, &[0, 1 << 20, 1 << 20], &[])))
        .unwrap();
    assert_eq!((empty.count, empty.pixels.len()), (0, 0));

    let err =
        read_idx_labels(scratch.with(&idx_file(LABELS_MAGIC, &[u32::MAX], &[1, 2]))).unwrap_err();
    assert!(matches!(err, DataError::Truncated { .. }), "{err}");
}

#[test]
fn gzipped_idx_files_inflating_to_gigabytes_are_errors_without_inflating_them() {
    let scratch = Scratch::new("bomb-idx3-ubyte.gz");
    // One 2×2 image, then 1 GiB of zeros: 64 gzip members of 16 MiB each (a 1 MB file).
    let zeros = gzip(&vec![0u8; 16 << 20]);
    let mut bomb = gzip(&idx_file(IMAGES_MAGIC, &[1, 2, 2], &[1, 2, 3, 4]));
    for _ in 0..64 {
        bomb.extend_from_slice(&zeros);
    }
    let start = Instant::now();
    let err = read_idx_images(scratch.with(&bomb)).unwrap_err();
    assert!(start.elapsed() < QUICK, "took {:?}", start.elapsed());
    // Decompression stopped one byte past the pixels the header announces.
    assert!(matches!(err, DataError::InvalidFormat { .. }), "{err}");
    assert!(
        err.to_string().contains("1 bytes after the 4 pixel"),
        "{err}"
    );
    // Labels the same way, and a header claiming the whole stream still gets no more.
    let mut labels = gzip(&idx_file(LABELS_MAGIC, &[2], &[1, 2]));
    labels.extend_from_slice(&zeros);
    let err = read_idx_labels(scratch.with(&labels)).unwrap_err();
    assert!(
        err.to_string().contains("1 bytes after the 2 label"),
        "{err}"
    );
    let mut claimed = gzip(&idx_file(IMAGES_MAGIC, &[1, 4096, 1024], &[]));
    claimed.extend_from_slice(&zeros);
    let images = read_idx_images(scratch.with(&claimed[..])).unwrap_err();
    assert!(
        images.to_string().contains("after the 4194304 pixel"),
        "{images}"
    );
}

/// Two records: labels 3 and 9, pixels counting up.
fn valid_cifar_batch() -> Vec<u8> {
    let mut bytes = Vec::with_capacity(2 * RECORD_BYTES);
    for (r, label) in [3u8, 9].into_iter().enumerate() {
        bytes.push(label);
        bytes.extend((0..RECORD_BYTES - 1).map(|i| (i + r) as u8));
    }
    bytes
}

#[test]
fn cifar_batches_valid_truncated_mutated_and_random() {
    let scratch = Scratch::new("data_batch_1.bin");
    let valid = valid_cifar_batch();
    let batch = read_cifar_batch(scratch.with(&valid)).unwrap();
    assert_eq!(batch.labels, vec![3, 9]);
    assert_eq!((batch.channels, batch.height, batch.width), (3, 32, 32));
    assert_eq!(batch.pixels.len(), 2 * 3 * 32 * 32);
    assert_eq!(batch.image_bytes(1)[..3], [1, 2, 3]);

    // Every strict prefix but the one-record one is an error; that one is the first record.
    for n in 0..valid.len() {
        match read_cifar_batch(scratch.with(&valid[..n])) {
            Ok(b) => {
                assert_eq!(n, RECORD_BYTES);
                assert_eq!(b.labels, vec![3]);
            }
            Err(e) => assert_ne!(n, RECORD_BYTES, "{e}"),
        }
    }
    let mut rng = Rng::new(3);
    for _ in 0..CASES {
        let mutated = mutate_one(&mut rng, &valid);
        match read_cifar_batch(scratch.with(&mutated)) {
            Ok(b) => assert_eq!(b.labels.len(), 2),
            Err(e) => assert!(mutated[0] > 9 || mutated[RECORD_BYTES] > 9, "{e}"),
        }
        let more = mutate_more(&mut rng, &valid);
        if let Ok(b) = read_cifar_batch(scratch.with(&more)) {
            assert_eq!(b.pixels.len(), b.labels.len() * (RECORD_BYTES - 1));
        }
        // Random bytes: whole records only when the length happens to be one.
        let len = if rng.below(4) == 0 {
            RECORD_BYTES
        } else {
            rng.below(2 * RECORD_BYTES)
        };
        let noise = rng.bytes(len);
        match read_cifar_batch(scratch.with(&noise)) {
            Ok(b) => assert_eq!((len, b.labels.len()), (RECORD_BYTES, 1)),
            Err(_) => assert!(len != RECORD_BYTES || noise[0] > 9),
        }
    }
}

/// A 3×2 map (width 3, height 2) with distinct values.
fn small_map() -> AnomalyMap {
    AnomalyMap::new(3, 2, vec![0.0, 0.5, 1.0, -2.0, 3.25, 1e-3]).unwrap()
}

fn map_bytes(ext: &str) -> Vec<u8> {
    let scratch = Scratch::new(&format!("map.{ext}"));
    match ext {
        "tiff" => write_map_tiff(&scratch.path, &small_map()).unwrap(),
        _ => write_map_npy(&scratch.path, &small_map()).unwrap(),
    }
    std::fs::read(&scratch.path).unwrap()
}

/// A map read back: its data holds exactly width × height values.
fn check_map(map: &AnomalyMap) {
    assert!(map.width >= 1 && map.height >= 1);
    assert_eq!(map.data.len(), map.width * map.height);
}

#[test]
fn anomaly_maps_valid_truncated_mutated_and_random() {
    for ext in ["tiff", "npy"] {
        let scratch = Scratch::new(&format!("m.{ext}"));
        let valid = map_bytes(ext);
        assert_eq!(
            read_map(scratch.with(&valid)).unwrap(),
            small_map(),
            "{ext}"
        );
        for n in 0..valid.len() {
            assert!(
                read_map(scratch.with(&valid[..n])).is_err(),
                "{ext}: a {n}-byte prefix of {} bytes parsed",
                valid.len()
            );
        }
        let mut rng = Rng::new(4);
        for _ in 0..CASES {
            for bytes in [mutate_one(&mut rng, &valid), mutate_more(&mut rng, &valid)] {
                if let Ok(map) = read_map(scratch.with(&bytes)) {
                    check_map(&map);
                }
            }
            let len = rng.below(256);
            let noise = rng.bytes(len);
            // Behind the format's own magic the noise gets past the first check.
            let magic: &[u8] = match ext {
                "tiff" => b"II*\0",
                _ => b"\x93NUMPY\x01\x00",
            };
            let behind_magic = [magic, &noise].concat();
            for bytes in [noise, behind_magic] {
                if let Ok(map) = read_map(scratch.with(&bytes)) {
                    check_map(&map);
                }
            }
        }
    }
}

/// A version-1.0 `.npy` file: the header dict padded to a multiple of 64 bytes, then `data`.
fn npy_file(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    npy_with_header(
        &format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"),
        data,
    )
}

fn npy_with_header(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut dict = dict.to_string();
    while !(10 + dict.len() + 1).is_multiple_of(64) {
        dict.push(' ');
    }
    dict.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    bytes.extend_from_slice(dict.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

#[test]
fn npy_maps_with_huge_shapes_are_errors_without_allocating() {
    let scratch = Scratch::new("huge.npy");
    // The hand-written header is right: a 2×2 map parses.
    let four: Vec<u8> = [1f32, 2.0, 3.0, 4.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let ok = read_map(scratch.with(&npy_file("<f4", "(2, 2)", &four))).unwrap();
    assert_eq!(
        (ok.width, ok.height, ok.data),
        (2, 2, vec![1.0, 2.0, 3.0, 4.0])
    );

    for (descr, shape) in [
        ("<f4", "(1000000, 1000000)"),
        ("<f8", "(1000000, 1000000)"),
        ("<f4", "(1, 1, 1000000, 1000000)"),
        ("<f4", "(1000000000000,)"),
        // Products past 2^64: the element count overflows.
        ("<f4", "(4294967296, 4294967296)"),
        ("<f4", "(18446744073709551615, 18446744073709551615)"),
        ("<f4", "(4294967296, 4294967296, 4294967296)"),
        ("<f4", "(0, 18446744073709551615, 18446744073709551615)"),
        ("<f4", "(2, 9223372036854775808)"),
        // Other spellings of a huge dimension, and nesting deep enough to exhaust a
        // recursive parser's stack.
        ("<f4", "(0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF)"),
        ("<f4", "(99999999999999999999999999, 2)"),
        (
            "<f4",
            format!("{}2, 2{}", "(".repeat(20_000), ")".repeat(20_000)).as_str(),
        ),
        (
            "<f4",
            format!("(2, 2, {}1{})", "[".repeat(20_000), "]".repeat(20_000)).as_str(),
        ),
    ] {
        let start = Instant::now();
        let result = read_map(scratch.with(&npy_file(descr, shape, &four)));
        assert!(
            start.elapsed() < QUICK,
            "{shape} took {:?}",
            start.elapsed()
        );
        assert!(result.is_err(), "{descr} {shape}: {result:?}");
    }
    // Deep nesting elsewhere in the header (a recursive-descent parser's stack).
    for dict in [
        format!(
            "{{'descr': {}'<f4'{}, 'fortran_order': False, 'shape': (2, 2), }}",
            "[".repeat(20_000),
            "]".repeat(20_000)
        ),
        format!(
            "{{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), 'x': {}0{} }}",
            "(".repeat(20_000),
            ")".repeat(20_000)
        ),
    ] {
        assert!(read_map(scratch.with(&npy_with_header(&dict, &four))).is_err());
    }
    // A header length past the end of the file (version 1: u16, version 2: u32).
    let mut v1 = npy_file("<f4", "(2, 2)", &four);
    v1[8..10].copy_from_slice(&u16::MAX.to_le_bytes());
    let err = read_map(scratch.with(&v1)).unwrap_err();
    assert!(matches!(err, DataError::Truncated { .. }), "{err}");
    let mut v2 = b"\x93NUMPY\x02\x00".to_vec();
    v2.extend_from_slice(&u32::MAX.to_le_bytes());
    v2.extend_from_slice(b"{'descr': '<f4'");
    let start = Instant::now();
    assert!(read_map(scratch.with(&v2)).is_err());
    assert!(start.elapsed() < QUICK);
}

/// Offset of the value of `tag` in the first IFD of a little-endian TIFF, and its type.
fn tiff_entry(bytes: &[u8], tag: u16) -> (usize, u16) {
    assert_eq!(&bytes[..4], b"II*\0");
    let ifd = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    let count = u16::from_le_bytes([bytes[ifd], bytes[ifd + 1]]) as usize;
    for k in 0..count {
        let e = ifd + 2 + 12 * k;
        if u16::from_le_bytes([bytes[e], bytes[e + 1]]) == tag {
            return (e + 8, u16::from_le_bytes([bytes[e + 2], bytes[e + 3]]));
        }
    }
    panic!("no tag {tag} in the TIFF written by write_map_tiff");
}

/// `bytes` (a TIFF) with the value of `tag` set to `value` as a LONG.
fn set_tiff_long(bytes: &mut [u8], tag: u16, value: u32) {
    let (at, _) = tiff_entry(bytes, tag);
    bytes[at - 6..at - 4].copy_from_slice(&4u16.to_le_bytes());
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

#[test]
fn tiff_maps_with_huge_dimensions_are_errors_without_allocating() {
    const IMAGE_WIDTH: u16 = 256;
    const IMAGE_LENGTH: u16 = 257;
    const ROWS_PER_STRIP: u16 = 278;
    let scratch = Scratch::new("huge.tiff");
    let valid = map_bytes("tiff");
    // The patching itself is right: rewriting the true size as a LONG keeps a valid file.
    let mut same = valid.clone();
    set_tiff_long(&mut same, IMAGE_WIDTH, 3);
    assert_eq!(read_map(scratch.with(&same)).unwrap(), small_map());

    for (w, h) in [
        (1_000_000, 1_000_000),
        (u32::MAX, u32::MAX),
        (u32::MAX, 2),
        (3, u32::MAX),
        (0, 2),
        (3, 0),
    ] {
        for rows_per_strip in [None, Some(u32::MAX), Some(1)] {
            let mut bytes = valid.clone();
            set_tiff_long(&mut bytes, IMAGE_WIDTH, w);
            set_tiff_long(&mut bytes, IMAGE_LENGTH, h);
            if let Some(r) = rows_per_strip {
                set_tiff_long(&mut bytes, ROWS_PER_STRIP, r);
            }
            let start = Instant::now();
            let result = read_map(scratch.with(&bytes));
            assert!(
                start.elapsed() < QUICK,
                "{w}x{h} took {:?}",
                start.elapsed()
            );
            assert!(result.is_err(), "{w}x{h}: {result:?}");
        }
    }
}

/// A small colour picture encoded as `format`.
fn encoded(format: ImageFormat) -> Vec<u8> {
    let rgb = RgbImage::from_fn(7, 5, |x, y| {
        image::Rgb([(x * 36) as u8, (y * 60) as u8, ((x + y) * 20) as u8])
    });
    let mut bytes = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(rgb)
        .write_to(&mut bytes, format)
        .unwrap();
    bytes.into_inner()
}

const IMAGE_FORMATS: [(ImageFormat, &str); 4] = [
    (ImageFormat::Png, "png"),
    (ImageFormat::Jpeg, "jpg"),
    (ImageFormat::Bmp, "bmp"),
    (ImageFormat::Tiff, "tiff"),
];

/// Decodes `bytes` as if read from `path`; a decoded image converts to C×H×W.
fn decode_and_convert(path: &Path, bytes: &[u8]) -> Option<(u32, u32)> {
    let image = decode_image_bytes(path, bytes).ok()?;
    let chw = to_chw(&image);
    assert_eq!(
        (chw.width(), chw.height()),
        (image.width() as usize, image.height() as usize)
    );
    Some((image.width(), image.height()))
}

#[test]
fn images_valid_truncated_mutated_and_random() {
    for (format, ext) in IMAGE_FORMATS {
        let scratch = Scratch::new(&format!("picture.{ext}"));
        let valid = encoded(format);
        assert_eq!(
            decode_and_convert(&scratch.path, &valid),
            Some((7, 5)),
            "{ext}"
        );
        assert_eq!(
            (
                decode_image(scratch.with(&valid)).unwrap().width(),
                image_size(&scratch.path).unwrap()
            ),
            (7, ust_data::Size::new(7, 5)),
            "{ext}"
        );
        // Truncations: no panic; what decodes keeps the header's size.
        let mut decoded_prefixes = Vec::new();
        for n in 0..valid.len() {
            if let Some(size) = decode_and_convert(&scratch.path, &valid[..n]) {
                assert_eq!(size, (7, 5), "{ext}: prefix {n}");
                decoded_prefixes.push(n);
            }
            let _ = image_size(scratch.with(&valid[..n]));
        }
        // A JPEG without its end-of-image marker is reported truncated, never decoded grey.
        if format == ImageFormat::Jpeg {
            assert!(decoded_prefixes.is_empty(), "{decoded_prefixes:?}");
        }
        let mut rng = Rng::new(5);
        for _ in 0..CASES {
            for bytes in [mutate_one(&mut rng, &valid), mutate_more(&mut rng, &valid)] {
                decode_and_convert(&scratch.path, &bytes);
                let _ = image_size(scratch.with(&bytes));
            }
            let len = rng.below(128);
            let noise = rng.bytes(len);
            // Behind the format's own header start the noise gets past format detection.
            let header = &valid[..8.min(valid.len())];
            let behind_header = [header, &noise].concat();
            for bytes in [noise, behind_header] {
                decode_and_convert(&scratch.path, &bytes);
                let _ = image_size(scratch.with(&bytes));
            }
        }
    }
}

#[test]
fn image_headers_announcing_huge_sizes_are_errors_without_allocating() {
    let scratch = Scratch::new("huge.png");
    // PNG: IHDR's width and height (big-endian, offsets 16 and 20), its CRC recomputed.
    let png = encoded(ImageFormat::Png);
    for (w, h) in [
        (1_000_000u32, 1_000_000u32),
        (0x7FFF_FFFF, 0x7FFF_FFFF),
        (1 << 20, 1 << 14),
    ] {
        let mut bytes = png.clone();
        bytes[16..20].copy_from_slice(&w.to_be_bytes());
        bytes[20..24].copy_from_slice(&h.to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.sum().to_be_bytes());
        let start = Instant::now();
        assert!(
            decode_and_convert(Path::new("huge.png"), &bytes).is_none(),
            "{w}x{h}"
        );
        assert!(
            start.elapsed() < QUICK,
            "PNG {w}x{h} took {:?}",
            start.elapsed()
        );
        // Reading the header alone gives its size or refuses it (the decoder's memory limit).
        if let Ok(size) = image_size(scratch.with(&bytes)) {
            assert_eq!(size, ust_data::Size::new(w, h));
        }
    }
    // BMP: width and height (little-endian i32 at 18 and 22).
    let bmp = encoded(ImageFormat::Bmp);
    for (w, h) in [
        (1_000_000i32, 1_000_000i32),
        (i32::MAX, i32::MAX),
        (1_000_000, -1_000_000),
    ] {
        let mut bytes = bmp.clone();
        bytes[18..22].copy_from_slice(&w.to_le_bytes());
        bytes[22..26].copy_from_slice(&h.to_le_bytes());
        let start = Instant::now();
        assert!(
            decode_and_convert(Path::new("huge.bmp"), &bytes).is_none(),
            "{w}x{h}"
        );
        assert!(
            start.elapsed() < QUICK,
            "BMP {w}x{h} took {:?}",
            start.elapsed()
        );
    }
    // JPEG: the SOF0 frame's height and width (big-endian u16 after the precision byte).
    let jpeg = encoded(ImageFormat::Jpeg);
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("a baseline JPEG");
    let mut bytes = jpeg.clone();
    bytes[sof + 5..sof + 7].copy_from_slice(&0xFFFFu16.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&0xFFFFu16.to_be_bytes());
    let start = Instant::now();
    assert!(decode_and_convert(Path::new("huge.jpg"), &bytes).is_none());
    assert!(start.elapsed() < QUICK, "JPEG took {:?}", start.elapsed());
}
