//! Decoding images and masks from disk, resampling them, and turning them into tensors.
//!
//! Images are held as [`ChwImage`]: planar `f32` values in `[0, 1]`, layout C×H×W. Masks are
//! [`BinaryMask`]s: one byte per pixel, 0 (normal) or 1 (anomalous).
//!
//! Resampling:
//! - [`ChwImage::resize_bilinear`] uses a triangle (bilinear) filter with pixel centres at
//!   half-integers. When enlarging it is exactly bilinear interpolation (PyTorch's
//!   `interpolate(mode="bilinear", align_corners=False)`); when shrinking, the triangle is
//!   widened by the scale factor so every source pixel contributes (the anti-aliased bilinear of
//!   PIL and torchvision's `Resize`), which keeps 600 px tiles shrunk to 256 px free of aliasing.
//! - [`BinaryMask::resize_nearest`] takes, for each output pixel, the source pixel under its
//!   centre.

use std::fmt;
use std::io::Cursor;
use std::path::Path;

use candle_core::{Device, Tensor};
use image::{DynamicImage, ImageFormat, ImageReader};
use serde::Serialize;

use crate::error::{DataError, Result};

/// Width × height of an image, in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

impl Size {
    pub const fn new(width: u32, height: u32) -> Self {
        Size { width, height }
    }

    /// A `side`×`side` square.
    pub const fn square(side: u32) -> Self {
        Size {
            width: side,
            height: side,
        }
    }

    /// Number of pixels.
    pub fn area(&self) -> usize {
        self.width as usize * self.height as usize
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// An image as planar `f32` values in `[0, 1]`, layout C×H×W (channel-major, then rows).
#[derive(Clone, Debug, PartialEq)]
pub struct ChwImage {
    channels: usize,
    height: usize,
    width: usize,
    data: Vec<f32>,
}

impl ChwImage {
    /// Wraps planar data.
    ///
    /// # Panics
    /// When `data.len() != channels * height * width` (a programming error, not bad input).
    pub fn new(channels: usize, height: usize, width: usize, data: Vec<f32>) -> Self {
        assert_eq!(
            data.len(),
            channels * height * width,
            "ChwImage::new: {} values for {channels}x{height}x{width}",
            data.len()
        );
        ChwImage {
            channels,
            height,
            width,
            data,
        }
    }

    /// Planar `u8` data scaled to `[0, 1]` (value / 255).
    ///
    /// # Panics
    /// When `data.len() != channels * height * width`.
    pub fn from_u8(channels: usize, height: usize, width: usize, data: &[u8]) -> Self {
        let data = data.iter().map(|&v| f32::from(v) / 255.0).collect();
        ChwImage::new(channels, height, width, data)
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    pub fn height(&self) -> usize {
        self.height
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn size(&self) -> Size {
        Size::new(self.width as u32, self.height as u32)
    }

    /// All values, C×H×W.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// One channel's H×W values.
    pub fn plane(&self, channel: usize) -> &[f32] {
        let n = self.height * self.width;
        &self.data[channel * n..(channel + 1) * n]
    }

    /// The value at channel `c`, row `y`, column `x`.
    pub fn get(&self, c: usize, y: usize, x: usize) -> f32 {
        self.data[(c * self.height + y) * self.width + x]
    }

    /// Three channels: a one-channel image is replicated, others are returned unchanged.
    pub fn to_rgb(&self) -> ChwImage {
        if self.channels != 1 {
            return self.clone();
        }
        let mut data = Vec::with_capacity(3 * self.data.len());
        for _ in 0..3 {
            data.extend_from_slice(&self.data);
        }
        ChwImage::new(3, self.height, self.width, data)
    }

    /// [`ChwImage::to_rgb`] without copying images that already have three channels.
    pub fn into_rgb(self) -> ChwImage {
        if self.channels != 1 {
            return self;
        }
        self.to_rgb()
    }

    /// Resamples every channel to `size` with the (anti-aliased when shrinking) bilinear filter
    /// described in the module documentation. Returns a copy when the size is unchanged.
    pub fn resize_bilinear(&self, size: Size) -> ChwImage {
        let (out_w, out_h) = (size.width as usize, size.height as usize);
        if out_w == self.width && out_h == self.height {
            return self.clone();
        }
        let taps_x = triangle_taps(self.width, out_w);
        let taps_y = triangle_taps(self.height, out_h);
        let mut out = Vec::with_capacity(self.channels * out_w * out_h);
        let mut rows = vec![0f32; self.height * out_w];
        for c in 0..self.channels {
            let plane = self.plane(c);
            // Horizontal pass: every source row to `out_w` columns.
            for y in 0..self.height {
                let src = &plane[y * self.width..(y + 1) * self.width];
                let dst = &mut rows[y * out_w..(y + 1) * out_w];
                for (d, tap) in dst.iter_mut().zip(&taps_x) {
                    let s = &src[tap.start..tap.start + tap.weights.len()];
                    *d = s.iter().zip(&tap.weights).map(|(a, w)| a * w).sum();
                }
            }
            // Vertical pass: weighted sums of whole rows, which vectorises well.
            for tap in &taps_y {
                let base = out.len();
                out.resize(base + out_w, 0.0);
                let dst = &mut out[base..];
                for (k, &w) in tap.weights.iter().enumerate() {
                    let src = &rows[(tap.start + k) * out_w..(tap.start + k + 1) * out_w];
                    for (d, s) in dst.iter_mut().zip(src) {
                        *d += w * s;
                    }
                }
            }
        }
        ChwImage::new(self.channels, out_h, out_w, out)
    }

    /// A C×H×W `f32` tensor on `device`.
    pub fn to_tensor(&self, device: &Device) -> candle_core::Result<Tensor> {
        Tensor::from_slice(&self.data, (self.channels, self.height, self.width), device)
    }
}

/// Stacks images of one shape into an N×C×H×W `f32` tensor.
///
/// Errors (candle's error type) when the batch is empty or the shapes differ.
pub fn batch_to_tensor<I: AsRef<ChwImage>>(
    images: &[I],
    device: &Device,
) -> candle_core::Result<Tensor> {
    let Some(first) = images.first() else {
        candle_core::bail!("batch_to_tensor: empty batch")
    };
    let first = first.as_ref();
    let (c, h, w) = (first.channels, first.height, first.width);
    let mut data = Vec::with_capacity(images.len() * first.data.len());
    for (i, image) in images.iter().enumerate() {
        let image = image.as_ref();
        if (image.channels, image.height, image.width) != (c, h, w) {
            candle_core::bail!(
                "batch_to_tensor: image {i} is {}x{}x{}, image 0 is {c}x{h}x{w}",
                image.channels,
                image.height,
                image.width
            );
        }
        data.extend_from_slice(&image.data);
    }
    Tensor::from_vec(data, (images.len(), c, h, w), device)
}

impl AsRef<ChwImage> for ChwImage {
    fn as_ref(&self) -> &ChwImage {
        self
    }
}

/// One output sample of a separable resampling: `weights.len()` source samples from `start`.
#[derive(Clone, Debug)]
struct Taps {
    start: usize,
    weights: Vec<f32>,
}

/// Triangle-filter weights mapping `in_len` samples to `out_len`, pixel centres at
/// half-integers, the filter widened by the scale factor when shrinking, weights normalised to
/// sum 1 (which also clamps at the borders).
fn triangle_taps(in_len: usize, out_len: usize) -> Vec<Taps> {
    let scale = in_len as f64 / out_len as f64;
    let stretch = scale.max(1.0);
    let support = stretch; // the triangle has radius 1 in output units
    (0..out_len)
        .map(|i| {
            let centre = (i as f64 + 0.5) * scale;
            let lo = ((centre - support).floor().max(0.0)) as usize;
            let hi = ((centre + support).ceil() as usize).min(in_len);
            let mut weights: Vec<f64> = (lo..hi)
                .map(|j| (1.0 - ((j as f64 + 0.5 - centre) / stretch).abs()).max(0.0))
                .collect();
            // Trim zero weights at both ends so the inner loops stay short.
            let first = weights.iter().position(|&w| w > 0.0).unwrap_or(0);
            let last = weights.iter().rposition(|&w| w > 0.0).unwrap_or(0);
            weights = weights[first..=last].to_vec();
            let sum: f64 = weights.iter().sum();
            Taps {
                start: lo + first,
                weights: weights.iter().map(|w| (w / sum) as f32).collect(),
            }
        })
        .collect()
}

/// A binary mask: `data[y * width + x]` is 1 where the pixel is anomalous, else 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinaryMask {
    size: Size,
    data: Vec<u8>,
}

impl BinaryMask {
    /// # Panics
    /// When `data.len() != size.area()` or a value is not 0 or 1.
    pub fn new(size: Size, data: Vec<u8>) -> Self {
        assert_eq!(data.len(), size.area(), "BinaryMask::new: wrong length");
        assert!(data.iter().all(|&v| v <= 1), "BinaryMask::new: values 0/1");
        BinaryMask { size, data }
    }

    /// An all-normal mask (the ground truth of a good image).
    pub fn zeros(size: Size) -> Self {
        BinaryMask {
            size,
            data: vec![0; size.area()],
        }
    }

    /// Grey levels binarised at 128: values ≥ 128 become 1.
    pub fn from_gray(size: Size, gray: &[u8]) -> Self {
        assert_eq!(
            gray.len(),
            size.area(),
            "BinaryMask::from_gray: wrong length"
        );
        BinaryMask {
            size,
            data: gray.iter().map(|&v| u8::from(v >= 128)).collect(),
        }
    }

    pub fn size(&self) -> Size {
        self.size
    }

    pub fn width(&self) -> usize {
        self.size.width as usize
    }

    pub fn height(&self) -> usize {
        self.size.height as usize
    }

    /// Row-major 0/1 values.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    pub fn into_data(self) -> Vec<u8> {
        self.data
    }

    pub fn is_anomalous(&self, x: usize, y: usize) -> bool {
        self.data[y * self.width() + x] != 0
    }

    /// Number of anomalous pixels.
    pub fn count_anomalous(&self) -> usize {
        self.data.iter().map(|&v| v as usize).sum()
    }

    /// Nearest-neighbour resampling (the source pixel under each output pixel's centre).
    pub fn resize_nearest(&self, size: Size) -> BinaryMask {
        if size == self.size {
            return self.clone();
        }
        let xs = nearest_indices(self.width(), size.width as usize);
        let ys = nearest_indices(self.height(), size.height as usize);
        let mut data = Vec::with_capacity(size.area());
        for &sy in &ys {
            let row = &self.data[sy * self.width()..(sy + 1) * self.width()];
            data.extend(xs.iter().map(|&sx| row[sx]));
        }
        BinaryMask { size, data }
    }

    /// A 1×H×W `f32` tensor of 0.0/1.0.
    pub fn to_tensor(&self, device: &Device) -> candle_core::Result<Tensor> {
        let values: Vec<f32> = self.data.iter().map(|&v| f32::from(v)).collect();
        Tensor::from_vec(values, (1, self.height(), self.width()), device)
    }
}

/// For each of `out_len` outputs, the source index under its centre.
fn nearest_indices(in_len: usize, out_len: usize) -> Vec<usize> {
    let scale = in_len as f64 / out_len as f64;
    (0..out_len)
        .map(|i| (((i as f64 + 0.5) * scale) as usize).min(in_len - 1))
        .collect()
}

/// Reads and decodes an image file, the format taken from its content (the extension only as a
/// fallback). Errors name the path: unreadable file, undecodable or truncated data.
///
/// JPEG decoding is lenient about truncated data (missing scan data comes out grey), which
/// would be a silent wrong result; a JPEG whose last scan is not followed by its end-of-image
/// marker is therefore reported as truncated.
pub fn decode_image(path: &Path) -> Result<DynamicImage> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_image_bytes(path, &bytes)
}

/// [`decode_image`] on bytes already read from `path` (the path is used for the format
/// fallback and for errors).
pub fn decode_image_bytes(path: &Path, bytes: &[u8]) -> Result<DynamicImage> {
    let mut reader = ImageReader::new(Cursor::new(bytes));
    if let Ok(format) = ImageFormat::from_path(path) {
        reader.set_format(format);
    }
    let reader = reader
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?;
    let format = reader.format();
    let image = reader.decode().map_err(|e| DataError::Decode {
        path: path.to_path_buf(),
        cause: e.to_string(),
    })?;
    if format == Some(ImageFormat::Jpeg) && !jpeg_has_end_marker(bytes) {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            detail: "JPEG data ends before its end-of-image marker".into(),
        });
    }
    Ok(image)
}

/// Whether the end-of-image marker (FF D9) follows the last start-of-scan marker (FF DA).
/// Inside entropy-coded data a 0xFF byte is always followed by 0x00 or a restart marker, so
/// these two byte pairs can only be markers there; an embedded EXIF thumbnail sits before the
/// main image's scans and does not matter.
fn jpeg_has_end_marker(bytes: &[u8]) -> bool {
    let Some(last_sos) = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]) else {
        return false;
    };
    bytes[last_sos..].windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Width and height from the file's header, without decoding the pixels.
pub fn image_size(path: &Path) -> Result<Size> {
    let reader = ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?;
    let (w, h) = reader.into_dimensions().map_err(|e| DataError::Decode {
        path: path.to_path_buf(),
        cause: e.to_string(),
    })?;
    Ok(Size::new(w, h))
}

/// Number of colour channels of a decoded image, alpha excluded (1 for grey, 3 for colour).
pub fn colour_channels(image: &DynamicImage) -> u8 {
    let color = image.color();
    color.channel_count() - u8::from(color.has_alpha())
}

/// Converts a decoded image to three channels in `[0, 1]`: grey is replicated, alpha dropped,
/// 16-bit and float images scaled to `[0, 1]`.
pub fn to_chw_rgb(image: &DynamicImage) -> ChwImage {
    to_chw(image).into_rgb()
}

/// Converts a decoded image to `[0, 1]` keeping grey images (with or without alpha) at one
/// channel and turning the others into three; alpha is dropped. Resizing before
/// [`ChwImage::to_rgb`] costs a third of resizing three identical planes.
pub fn to_chw(image: &DynamicImage) -> ChwImage {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let n = w * h;
    match image {
        DynamicImage::ImageLuma8(gray) => ChwImage::from_u8(1, h, w, gray.as_raw()),
        DynamicImage::ImageLuma16(_)
        | DynamicImage::ImageLumaA8(_)
        | DynamicImage::ImageLumaA16(_) => {
            let gray = image.to_luma32f();
            let data = gray.as_raw().iter().map(|v| v.clamp(0.0, 1.0)).collect();
            ChwImage::new(1, h, w, data)
        }
        DynamicImage::ImageRgb8(rgb) => {
            let mut data = vec![0f32; 3 * n];
            for (i, px) in rgb.as_raw().chunks_exact(3).enumerate() {
                data[i] = f32::from(px[0]) / 255.0;
                data[n + i] = f32::from(px[1]) / 255.0;
                data[2 * n + i] = f32::from(px[2]) / 255.0;
            }
            ChwImage::new(3, h, w, data)
        }
        other => {
            let rgb = other.to_rgb32f();
            let mut data = vec![0f32; 3 * n];
            for (i, px) in rgb.as_raw().chunks_exact(3).enumerate() {
                for c in 0..3 {
                    data[c * n + i] = px[c].clamp(0.0, 1.0);
                }
            }
            ChwImage::new(3, h, w, data)
        }
    }
}

/// An image file decoded to three channels, optionally resized, with what it was on disk.
#[derive(Clone, Debug)]
pub struct LoadedImage {
    /// The pixels, 3×H×W in `[0, 1]` (at the requested size, or the original one).
    pub image: ChwImage,
    /// The size of the file's image, before any resizing.
    pub original_size: Size,
    /// Colour channels of the file (1 grey, 3 colour), alpha excluded.
    pub original_channels: u8,
}

impl AsRef<ChwImage> for LoadedImage {
    fn as_ref(&self) -> &ChwImage {
        &self.image
    }
}

/// Decodes `path` to three channels and, when `size` is given, resizes it bilinearly.
pub fn load_rgb(path: &Path, size: Option<Size>) -> Result<LoadedImage> {
    let decoded = decode_image(path)?;
    let original_size = Size::new(decoded.width(), decoded.height());
    let original_channels = colour_channels(&decoded);
    let mut image = to_chw(&decoded);
    drop(decoded);
    if let Some(size) = size {
        image = image.resize_bilinear(size);
    }
    Ok(LoadedImage {
        image: image.into_rgb(),
        original_size,
        original_channels,
    })
}

/// Decodes a mask file at its own size, binarised at 128 (colour masks via their luma).
pub fn load_mask(path: &Path) -> Result<BinaryMask> {
    let decoded = decode_image(path)?;
    let size = Size::new(decoded.width(), decoded.height());
    let gray = decoded.into_luma8();
    Ok(BinaryMask::from_gray(size, gray.as_raw()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(h: usize, w: usize) -> ChwImage {
        // value = x / (w - 1), identical rows
        let data = (0..h * w).map(|i| (i % w) as f32).collect();
        ChwImage::new(1, h, w, data)
    }

    #[test]
    fn bilinear_upsampling_matches_closed_form() {
        // 4 columns -> 8 columns: output centre (i + 0.5) / 2 - 0.5 in source coordinates,
        // clamped at the borders.
        let img = ramp(1, 4);
        let out = img.resize_bilinear(Size::new(8, 1));
        let expected = [0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0];
        for (o, e) in out.data().iter().zip(expected) {
            assert!((o - e).abs() < 1e-6, "{:?}", out.data());
        }
    }

    #[test]
    fn bilinear_downsampling_by_two_uses_widened_triangle() {
        // Shrinking by 2: each output is (1, 3, 3, 1)/8 over the 4 nearest source samples,
        // renormalised where the window leaves the image.
        let src: Vec<f32> = vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0];
        let img = ChwImage::new(1, 1, 6, src.clone());
        let out = img.resize_bilinear(Size::new(3, 1));
        let e0 = (3.0 * src[0] + 3.0 * src[1] + src[2]) / 7.0;
        let e1 = (src[1] + 3.0 * src[2] + 3.0 * src[3] + src[4]) / 8.0;
        let e2 = (src[3] + 3.0 * src[4] + 3.0 * src[5]) / 7.0;
        let got = out.data();
        assert!((got[0] - e0).abs() < 1e-5, "{got:?}");
        assert!((got[1] - e1).abs() < 1e-5, "{got:?}");
        assert!((got[2] - e2).abs() < 1e-5, "{got:?}");
    }

    #[test]
    fn bilinear_keeps_constants_and_is_identity_at_same_size() {
        let img = ChwImage::new(3, 7, 5, vec![0.25; 105]);
        let out = img.resize_bilinear(Size::new(13, 3));
        assert!(out.data().iter().all(|v| (v - 0.25).abs() < 1e-6));
        assert_eq!((out.channels(), out.height(), out.width()), (3, 3, 13));
        let same = img.resize_bilinear(Size::new(5, 7));
        assert_eq!(same, img);
    }

    #[test]
    fn nearest_mask_resize_picks_centre_pixel() {
        // 4x1 mask [0,1,1,0] -> 2x1: centres at 1.0 and 3.0 -> source 1 and 3.
        let m = BinaryMask::new(Size::new(4, 1), vec![0, 1, 1, 0]);
        assert_eq!(m.resize_nearest(Size::new(2, 1)).data(), &[1, 0]);
        // 2x2 -> 4x4: each source pixel becomes a 2x2 block.
        let m = BinaryMask::new(Size::new(2, 2), vec![1, 0, 0, 1]);
        let r = m.resize_nearest(Size::square(4));
        assert_eq!(r.data(), &[1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1]);
    }

    #[test]
    fn mask_binarised_at_128() {
        let m = BinaryMask::from_gray(Size::new(4, 1), &[0, 127, 128, 255]);
        assert_eq!(m.data(), &[0, 0, 1, 1]);
        assert_eq!(m.count_anomalous(), 2);
    }

    #[test]
    fn batch_to_tensor_stacks_and_rejects_mixed_shapes() {
        let a = ChwImage::new(1, 2, 2, vec![0.0, 0.1, 0.2, 0.3]);
        let b = ChwImage::new(1, 2, 2, vec![1.0, 0.9, 0.8, 0.7]);
        let t = batch_to_tensor(&[a.clone(), b], &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[2, 1, 2, 2]);
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(v, vec![0.0, 0.1, 0.2, 0.3, 1.0, 0.9, 0.8, 0.7]);
        let c = ChwImage::new(1, 1, 4, vec![0.0; 4]);
        assert!(batch_to_tensor(&[a, c], &Device::Cpu).is_err());
        assert!(batch_to_tensor::<ChwImage>(&[], &Device::Cpu).is_err());
    }

    #[test]
    fn gray_and_rgb_files_decode_to_three_channels() {
        let dir = tempfile::tempdir().unwrap();
        let gray_path = dir.path().join("g.png");
        image::GrayImage::from_raw(2, 1, vec![0, 255])
            .unwrap()
            .save(&gray_path)
            .unwrap();
        let loaded = load_rgb(&gray_path, None).unwrap();
        assert_eq!(loaded.original_channels, 1);
        assert_eq!(loaded.image.data(), &[0.0, 1.0, 0.0, 1.0, 0.0, 1.0]);

        let rgb_path = dir.path().join("c.bmp");
        image::RgbImage::from_raw(2, 1, vec![255, 0, 51, 0, 102, 255])
            .unwrap()
            .save(&rgb_path)
            .unwrap();
        let loaded = load_rgb(&rgb_path, None).unwrap();
        assert_eq!(loaded.original_channels, 3);
        assert_eq!(loaded.original_size, Size::new(2, 1));
        assert_eq!(loaded.image.data(), &[1.0, 0.0, 0.0, 0.4, 0.2, 1.0]);
    }

    #[test]
    fn truncated_and_garbage_files_are_errors_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let mut pixels = vec![0u8; 64 * 64 * 3];
        for (i, v) in pixels.iter_mut().enumerate() {
            *v = (i * 37 % 251) as u8;
        }
        let img = image::RgbImage::from_raw(64, 64, pixels).unwrap();
        for ext in ["png", "jpg", "bmp"] {
            let path = dir.path().join(format!("full.{ext}"));
            img.save(&path).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            assert!(decode_image(&path).is_ok(), "{ext}");
            let cut = dir.path().join(format!("cut.{ext}"));
            std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
            let err = decode_image(&cut).unwrap_err();
            assert_eq!(err.path(), cut.as_path(), "{ext}: {err}");
            // The JPEG decoder fills missing scan data with grey without an error: only the
            // end-of-image check catches a cut JPEG.
            if ext == "jpg" {
                assert!(matches!(err, DataError::Truncated { .. }), "{err}");
            } else {
                assert!(matches!(err, DataError::Decode { .. }), "{ext}: {err}");
            }
        }
        let garbage = dir.path().join("garbage.png");
        std::fs::write(&garbage, b"this is not an image").unwrap();
        let err = decode_image(&garbage).unwrap_err();
        assert!(matches!(err, DataError::Decode { .. }), "{err}");
        assert!(err.to_string().contains("garbage.png"));
        let missing = dir.path().join("missing.png");
        assert!(matches!(
            decode_image(&missing).unwrap_err(),
            DataError::Io { .. }
        ));
    }
}
