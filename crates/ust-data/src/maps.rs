//! Per-pixel anomaly maps as files, the output side of the detector.
//!
//! * Maps for programs: 32-bit float TIFF (the format of the official MVTec AD evaluation, read
//!   by `tifffile.imread` and by PIL as mode `F`) and NumPy `.npy` (little-endian `float32`,
//!   shape `(H, W)`, C order). [`read_map`] also reads `float64` and integer greyscale TIFFs and
//!   `float64` `.npy` files, so that anyone's maps can be evaluated.
//! * Pictures for people: a heatmap through a viridis-like colour map
//!   ([`write_heatmap_png`]), the heatmap blended over the inspected image
//!   ([`write_overlay_png`]), and a thresholded binary mask ([`write_mask_png`]).
//!
//! Every error is a [`DataError`] naming the file.

use std::fs::File;
use std::io::{BufReader, Cursor};
use std::path::{Path, PathBuf};

use image::{GrayImage, ImageFormat, RgbImage};

use crate::error::{DataError, Result};
use crate::image_io::Size;

/// A row-major anomaly map: `data[y * width + x]` is the score of pixel `(x, y)`; higher means
/// more anomalous.
///
/// The fields are public for convenience; [`AnomalyMap::new`] checks that `data` holds exactly
/// `width * height > 0` values, and every writer checks it again.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyMap {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

/// A width, height and number of values that do not make an anomaly map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapShapeError {
    /// A map needs at least one pixel.
    #[error("an anomaly map needs at least one pixel, got {width}x{height}")]
    Empty { width: usize, height: usize },
    /// `data` does not hold `width * height` values.
    #[error("an anomaly map of {width}x{height} pixels needs {width}*{height} values, got {len}")]
    Length {
        width: usize,
        height: usize,
        len: usize,
    },
}

impl AnomalyMap {
    /// A `width`×`height` map from row-major `data`.
    ///
    /// # Shapes
    /// `data.len() == width * height`, both sides ≥ 1.
    pub fn new(
        width: usize,
        height: usize,
        data: Vec<f32>,
    ) -> std::result::Result<Self, MapShapeError> {
        check_shape(width, height, data.len())?;
        Ok(AnomalyMap {
            width,
            height,
            data,
        })
    }

    /// The map's size as an image size (saturating at `u32::MAX`, far beyond any real map).
    pub fn size(&self) -> Size {
        let side = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Size::new(side(self.width), side(self.height))
    }
}

fn check_shape(width: usize, height: usize, len: usize) -> std::result::Result<(), MapShapeError> {
    if width == 0 || height == 0 {
        return Err(MapShapeError::Empty { width, height });
    }
    if width.checked_mul(height) != Some(len) {
        return Err(MapShapeError::Length { width, height, len });
    }
    Ok(())
}

/// Extensions tried, in order, when looking for the map of an image.
pub const MAP_EXTENSIONS: [&str; 3] = ["tiff", "tif", "npy"];

/// The map for `stem` in `dir` (`dir/stem.tiff`, `.tif` or `.npy`, in that order), if one
/// exists.
pub fn find_map(dir: impl AsRef<Path>, stem: &str) -> Option<PathBuf> {
    let dir = dir.as_ref();
    MAP_EXTENSIONS
        .iter()
        .map(|ext| dir.join(format!("{stem}.{ext}")))
        .find(|p| p.is_file())
}

/// Reads a map; the format follows the extension (`.tif`/`.tiff` or `.npy`, any case).
///
/// TIFF: one channel of 32- or 64-bit float, 16-bit float, or any integer type. NPY: `float32`
/// or `float64`, C order, shape `(H, W)` with any number of leading axes of length 1.
/// `float64` values are rounded to the nearest `f32`.
pub fn read_map(path: impl AsRef<Path>) -> Result<AnomalyMap> {
    let path = path.as_ref();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let map = match ext.as_deref() {
        Some("tif" | "tiff") => read_tiff(path)?,
        Some("npy") => read_npy(path)?,
        _ => {
            return Err(DataError::invalid(
                path,
                "unknown anomaly-map format (use .tiff, .tif or .npy)",
            ));
        }
    };
    check_shape(map.width, map.height, map.data.len())
        .map_err(|e| DataError::invalid(path, e.to_string()))?;
    Ok(map)
}

fn read_tiff(path: &Path) -> Result<AnomalyMap> {
    use tiff::decoder::{Decoder, DecodingResult};
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let decode_error = |what: &str, e: tiff::TiffError| DataError::Decode {
        path: path.to_path_buf(),
        cause: format!("{what}: {e}"),
    };
    let mut decoder = Decoder::new(BufReader::new(file))
        .map_err(|e| decode_error("not a readable TIFF file", e))?;
    let (w, h) = decoder
        .dimensions()
        .map_err(|e| decode_error("TIFF without dimensions", e))?;
    let colortype = decoder
        .colortype()
        .map_err(|e| decode_error("TIFF without colour type", e))?;
    let (w, h) = (w as usize, h as usize);
    let samples = decoder
        .read_image()
        .map_err(|e| decode_error("corrupt or truncated TIFF data", e))?;
    let data: Vec<f32> = match samples {
        DecodingResult::F32(v) => v,
        DecodingResult::F64(v) => v.into_iter().map(|x| x as f32).collect(),
        DecodingResult::F16(v) => v.into_iter().map(f32::from).collect(),
        DecodingResult::U8(v) => v.into_iter().map(f32::from).collect(),
        DecodingResult::U16(v) => v.into_iter().map(f32::from).collect(),
        DecodingResult::U32(v) => v.into_iter().map(|x| x as f32).collect(),
        DecodingResult::U64(v) => v.into_iter().map(|x| x as f32).collect(),
        DecodingResult::I8(v) => v.into_iter().map(f32::from).collect(),
        DecodingResult::I16(v) => v.into_iter().map(f32::from).collect(),
        DecodingResult::I32(v) => v.into_iter().map(|x| x as f32).collect(),
        DecodingResult::I64(v) => v.into_iter().map(|x| x as f32).collect(),
    };
    if data.len() != w * h {
        return Err(DataError::invalid(
            path,
            format!(
                "a map must have one channel; the TIFF has {} samples for {w}x{h} pixels ({colortype:?})",
                data.len()
            ),
        ));
    }
    Ok(AnomalyMap {
        width: w,
        height: h,
        data,
    })
}

fn read_npy(path: &Path) -> Result<AnomalyMap> {
    use npyz::{DType, Order, TypeChar};
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    check_npy_header(path, &bytes)?;
    let decode_error = |what: &str, e: std::io::Error| DataError::Decode {
        path: path.to_path_buf(),
        cause: format!("{what}: {e}"),
    };
    let npy = npyz::NpyFile::new(bytes.as_slice())
        .map_err(|e| decode_error("not a readable .npy file", e))?;
    if npy.order() != Order::C {
        return Err(DataError::invalid(
            path,
            "Fortran-order arrays are not supported; write C order",
        ));
    }
    // Squeeze leading axes of length 1: (H, W), (1, H, W) and (1, 1, H, W) are all maps.
    let shape: Vec<u64> = npy.shape().to_vec();
    let dims: Vec<usize> = {
        let mut s: &[u64] = &shape;
        while s.len() > 2 && s[0] == 1 {
            s = &s[1..];
        }
        s.iter().map(|&d| d as usize).collect()
    };
    if dims.len() != 2 {
        return Err(DataError::invalid(
            path,
            format!("expected a 2-D array (H, W), got shape {shape:?}"),
        ));
    }
    let (h, w) = (dims[0], dims[1]);
    let is_float = |size| matches!(npy.dtype(), DType::Plain(ts) if ts.type_char() == TypeChar::Float && ts.size_field() == size);
    let data: Vec<f32> = if is_float(4) {
        npy.into_vec::<f32>()
            .map_err(|e| decode_error("corrupt or truncated .npy data", e))?
    } else if is_float(8) {
        npy.into_vec::<f64>()
            .map_err(|e| decode_error("corrupt or truncated .npy data", e))?
            .into_iter()
            .map(|x| x as f32)
            .collect()
    } else {
        return Err(DataError::invalid(
            path,
            format!(
                "unsupported dtype {:?}; write float32 or float64",
                npy.dtype()
            ),
        ));
    };
    if data.len() != w * h {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            detail: format!(
                "{} values for shape {shape:?} ({} expected)",
                data.len(),
                w * h
            ),
        });
    }
    Ok(AnomalyMap {
        width: w,
        height: h,
        data,
    })
}

/// Checks what npyz takes on trust in a `.npy` header, before it parses it: the header length
/// against the file's, and the element count of the shape, which npyz multiplies unchecked (a
/// panic in debug builds, a wrapped count in release ones). Anything else is left to npyz.
fn check_npy_header(path: &Path, bytes: &[u8]) -> Result<()> {
    let (start, len): (usize, usize) = match bytes {
        [0x93, b'N', b'U', b'M', b'P', b'Y', 1, _, a, b, ..] => {
            (10, u16::from_le_bytes([*a, *b]) as usize)
        }
        [0x93, b'N', b'U', b'M', b'P', b'Y', _, _, a, b, c, d, ..] => {
            (12, u32::from_le_bytes([*a, *b, *c, *d]) as usize)
        }
        _ => return Ok(()),
    };
    let Some(header) = bytes.get(start..start.saturating_add(len)) else {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            detail: format!(
                "the .npy header announces {len} bytes, the file holds {}",
                bytes.len().saturating_sub(start)
            ),
        });
    };
    let header = String::from_utf8_lossy(header);
    let Some(key) = header.find("'shape'").or_else(|| header.find("\"shape\"")) else {
        return Ok(());
    };
    let rest = &header[key + "'shape'".len()..];
    let (Some(open), Some(close)) = (rest.find(['(', '[']), rest.find([')', ']'])) else {
        return Ok(());
    };
    let dims = &rest[open + 1..close.max(open + 1)];
    let mut count = 1u64;
    for dim in dims.split(',').map(str::trim) {
        if dim.is_empty() {
            continue;
        }
        // NumPy writes decimal integers; a dimension npyz would read otherwise is refused
        // rather than left to its unchecked product.
        let d: u64 = dim.trim_end_matches('L').parse().map_err(|_| {
            DataError::invalid(
                path,
                format!(".npy shape dimension {dim:?} is not a decimal integer"),
            )
        })?;
        if d != 0 {
            count = count.checked_mul(d).ok_or_else(|| {
                DataError::invalid(
                    path,
                    format!(".npy shape ({dims}) has more elements than 64 bits count"),
                )
            })?;
        }
    }
    Ok(())
}

/// Bilinear resampling of a map to `width`×`height` with pixel centres aligned (the convention
/// of OpenCV's and PIL's bilinear resize without antialiasing): target pixel `x` samples the
/// source at `(x + 0.5) * src_w / width - 0.5`, clamped to the border. A map of the target size
/// is returned unchanged.
///
/// # Shapes
/// `map`: `map.height`×`map.width` → `height`×`width`; every side ≥ 1.
pub fn resize_bilinear(
    map: &AnomalyMap,
    width: usize,
    height: usize,
) -> std::result::Result<AnomalyMap, MapShapeError> {
    check_shape(map.width, map.height, map.data.len())?;
    if width == 0 || height == 0 {
        return Err(MapShapeError::Empty { width, height });
    }
    if map.width == width && map.height == height {
        return Ok(map.clone());
    }
    let sx = map.width as f32 / width as f32;
    let sy = map.height as f32 / height as f32;
    let mut data = Vec::with_capacity(width * height);
    let coord = |dst: usize, scale: f32, len: usize| {
        let src = ((dst as f32 + 0.5) * scale - 0.5).clamp(0.0, (len - 1) as f32);
        let i0 = src.floor() as usize;
        let i1 = (i0 + 1).min(len - 1);
        (i0, i1, src - i0 as f32)
    };
    let at = |yy: usize, xx: usize| map.data[yy * map.width + xx];
    for y in 0..height {
        let (y0, y1, fy) = coord(y, sy, map.height);
        for x in 0..width {
            let (x0, x1, fx) = coord(x, sx, map.width);
            let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
            let bottom = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
            data.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    Ok(AnomalyMap {
        width,
        height,
        data,
    })
}

/// Checks a map before writing it to `path`.
fn check_for_write(path: &Path, map: &AnomalyMap) -> Result<()> {
    check_shape(map.width, map.height, map.data.len()).map_err(|e| DataError::InvalidMapOutput {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Writes `bytes` to `path`, creating its parent folders.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let write_error = |e: std::io::Error| DataError::Write {
        path: path.to_path_buf(),
        cause: e.to_string(),
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(write_error)?;
    }
    std::fs::write(path, bytes).map_err(write_error)
}

/// Writes `map` as a single-channel 32-bit float TIFF (uncompressed, BlackIsZero, SampleFormat
/// IEEE float), the layout `tifffile.imread` and PIL (mode `F`) read back bit for bit. Parent
/// folders are created.
pub fn write_map_tiff(path: impl AsRef<Path>, map: &AnomalyMap) -> Result<()> {
    use tiff::encoder::{TiffEncoder, colortype::Gray32Float};
    let path = path.as_ref();
    check_for_write(path, map)?;
    let too_large = || DataError::InvalidMapOutput {
        path: path.to_path_buf(),
        reason: format!("{}x{} is too large for a TIFF", map.width, map.height),
    };
    let w = u32::try_from(map.width).map_err(|_| too_large())?;
    let h = u32::try_from(map.height).map_err(|_| too_large())?;
    let encode_error = |e: tiff::TiffError| DataError::Write {
        path: path.to_path_buf(),
        cause: format!("TIFF encoder: {e}"),
    };
    let mut bytes = Cursor::new(Vec::new());
    let mut encoder = TiffEncoder::new(&mut bytes).map_err(encode_error)?;
    encoder
        .write_image::<Gray32Float>(w, h, &map.data)
        .map_err(encode_error)?;
    write_file(path, bytes.get_ref())
}

/// Writes `map` as a NumPy `.npy` file: little-endian `float32` (`<f4`), shape
/// `(height, width)`, C order. Parent folders are created.
pub fn write_map_npy(path: impl AsRef<Path>, map: &AnomalyMap) -> Result<()> {
    use npyz::WriterBuilder;
    let path = path.as_ref();
    check_for_write(path, map)?;
    let encode_error = |e: std::io::Error| DataError::Write {
        path: path.to_path_buf(),
        cause: format!(".npy encoder: {e}"),
    };
    let mut bytes = Cursor::new(Vec::new());
    let mut writer = npyz::WriteOptions::<f32>::new()
        .dtype(npyz::DType::Plain("<f4".parse::<npyz::TypeStr>().map_err(
            |e| DataError::Write {
                path: path.to_path_buf(),
                cause: format!(".npy dtype: {e}"),
            },
        )?))
        .shape(&[map.height as u64, map.width as u64])
        .writer(&mut bytes)
        .begin_nd()
        .map_err(encode_error)?;
    writer
        .extend(map.data.iter().copied())
        .map_err(encode_error)?;
    writer.finish().map_err(encode_error)?;
    write_file(path, bytes.get_ref())
}

/// Nine evenly spaced colours of matplotlib's viridis colour map (dark purple → blue → green →
/// yellow), the control points of [`viridis`]. Viridis is perceptually uniform and readable
/// in greyscale and by colour-blind people.
pub const VIRIDIS_CONTROL_POINTS: [[u8; 3]; 9] = [
    [0x44, 0x01, 0x54],
    [0x47, 0x2d, 0x7b],
    [0x3b, 0x52, 0x8b],
    [0x2c, 0x72, 0x8e],
    [0x21, 0x91, 0x8c],
    [0x28, 0xae, 0x80],
    [0x5e, 0xc9, 0x62],
    [0xad, 0xdc, 0x30],
    [0xfd, 0xe7, 0x25],
];

/// The colour of `t ∈ [0, 1]` (clamped; NaN counts as 0): linear interpolation in sRGB
/// between the [`VIRIDIS_CONTROL_POINTS`], which lie at `t = i / 8`.
pub fn viridis(t: f32) -> [u8; 3] {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let last = VIRIDIS_CONTROL_POINTS.len() - 1;
    let position = t * last as f32;
    let i = (position.floor() as usize).min(last - 1);
    let frac = position - i as f32;
    let (a, b) = (VIRIDIS_CONTROL_POINTS[i], VIRIDIS_CONTROL_POINTS[i + 1]);
    std::array::from_fn(|c| {
        let (a, b) = (f32::from(a[c]), f32::from(b[c]));
        (a + (b - a) * frac).round() as u8
    })
}

/// Checks that `map` holds no NaN, naming the first one's pixel.
fn check_no_nan(path: &Path, map: &AnomalyMap) -> Result<()> {
    match map.data.iter().position(|v| v.is_nan()) {
        Some(i) => Err(DataError::NanInMap {
            path: path.to_path_buf(),
            x: i % map.width,
            y: i / map.width,
        }),
        None => Ok(()),
    }
}

/// The heatmap's pixels, after every check (map shape, colour range, no NaN).
fn heatmap_pixels(path: &Path, map: &AnomalyMap, lo: f32, hi: f32) -> Result<RgbImage> {
    check_for_write(path, map)?;
    if !(lo.is_finite() && hi.is_finite() && lo < hi) {
        return Err(DataError::InvalidMapOutput {
            path: path.to_path_buf(),
            reason: format!("the colour range needs finite lo < hi, got lo={lo}, hi={hi}"),
        });
    }
    check_no_nan(path, map)?;
    let size = map.size();
    // f64, so that hi - lo cannot overflow for ranges near ±f32::MAX.
    let (lo64, span) = (f64::from(lo), f64::from(hi) - f64::from(lo));
    let mut pixels = Vec::with_capacity(map.data.len() * 3);
    for &v in &map.data {
        let t = (f64::from(v.clamp(lo, hi)) - lo64) / span;
        pixels.extend_from_slice(&viridis(t as f32));
    }
    RgbImage::from_raw(size.width, size.height, pixels).ok_or_else(|| DataError::InvalidMapOutput {
        path: path.to_path_buf(),
        reason: format!("{}x{} is too large for a PNG", map.width, map.height),
    })
}

/// Encodes an image as PNG at `path`, creating its parent folders.
fn save_png<P>(path: &Path, image: &image::ImageBuffer<P, Vec<u8>>) -> Result<()>
where
    P: image::PixelWithColorType<Subpixel = u8>,
{
    let mut bytes = Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, ImageFormat::Png)
        .map_err(|e| DataError::Write {
            path: path.to_path_buf(),
            cause: format!("PNG encoder: {e}"),
        })?;
    write_file(path, bytes.get_ref())
}

/// Writes `map` as an RGB PNG heatmap: each value is clamped to `[lo, hi]`, scaled to
/// `[0, 1]` and coloured by [`viridis`] (`lo` → dark purple, `hi` → yellow). Fixed `lo`/`hi`
/// (rather than each map's own range) keep colours comparable across images.
///
/// Errors: NaN in the map ([`DataError::NanInMap`]); `lo`, `hi` not finite or `lo ≥ hi`, or
/// a map whose data does not match its size ([`DataError::InvalidMapOutput`]); I/O.
pub fn write_heatmap_png(path: impl AsRef<Path>, map: &AnomalyMap, lo: f32, hi: f32) -> Result<()> {
    let path = path.as_ref();
    let heat = heatmap_pixels(path, map, lo, hi)?;
    save_png(path, &heat)
}

/// Writes the heatmap of [`write_heatmap_png`] blended over `image` (RGB, same size as the
/// map) as an RGB PNG, each pixel with its own opacity `w = alpha * t`, `t` its score's place in
/// `[lo, hi]` (0 at or below `lo`, 1 at or above `hi`): `round((1 - w) * image + w * heatmap)`
/// per channel. Pixels scoring at most `lo` show the image untouched and the heat shows where
/// the scores are high. (A uniform opacity tinted the whole image with the colour of the low
/// scores and left the heat hard to see.) `alpha = 0` gives the image.
///
/// Errors: as [`write_heatmap_png`], plus [`DataError::OverlaySizeMismatch`] when the image
/// and map sizes differ and [`DataError::InvalidMapOutput`] for `alpha` outside `[0, 1]`.
pub fn write_overlay_png(
    path: impl AsRef<Path>,
    image: &RgbImage,
    map: &AnomalyMap,
    lo: f32,
    hi: f32,
    alpha: f32,
) -> Result<()> {
    let path = path.as_ref();
    check_for_write(path, map)?;
    let image_size = Size::new(image.width(), image.height());
    if (map.width, map.height) != (image.width() as usize, image.height() as usize) {
        return Err(DataError::OverlaySizeMismatch {
            path: path.to_path_buf(),
            map_size: map.size(),
            image_size,
        });
    }
    if !(0.0..=1.0).contains(&alpha) {
        return Err(DataError::InvalidMapOutput {
            path: path.to_path_buf(),
            reason: format!("the heatmap opacity alpha must lie in [0, 1], got {alpha}"),
        });
    }
    let mut blend = heatmap_pixels(path, map, lo, hi)?;
    let span = f64::from(hi) - f64::from(lo);
    for ((out, under), &v) in blend
        .chunks_exact_mut(3)
        .zip(image.as_raw().chunks_exact(3))
        .zip(&map.data)
    {
        let t = ((f64::from(v) - f64::from(lo)) / span).clamp(0.0, 1.0) as f32;
        let w = alpha * t;
        for (o, &u) in out.iter_mut().zip(under) {
            *o = ((1.0 - w) * f32::from(u) + w * f32::from(*o)).round() as u8;
        }
    }
    save_png(path, &blend)
}

/// Writes the binary segmentation `map > threshold` as an 8-bit greyscale PNG: 255 where the
/// value is strictly greater than `threshold`, 0 elsewhere (the MVTec AD mask convention).
///
/// Errors: NaN in the map ([`DataError::NanInMap`]) or a NaN threshold or a map whose data
/// does not match its size ([`DataError::InvalidMapOutput`]); I/O.
pub fn write_mask_png(path: impl AsRef<Path>, map: &AnomalyMap, threshold: f32) -> Result<()> {
    let path = path.as_ref();
    check_for_write(path, map)?;
    if threshold.is_nan() {
        return Err(DataError::InvalidMapOutput {
            path: path.to_path_buf(),
            reason: "the mask threshold is NaN".to_string(),
        });
    }
    check_no_nan(path, map)?;
    let size = map.size();
    let pixels = map
        .data
        .iter()
        .map(|&v| if v > threshold { 255 } else { 0 })
        .collect();
    let mask = GrayImage::from_raw(size.width, size.height, pixels).ok_or_else(|| {
        DataError::InvalidMapOutput {
            path: path.to_path_buf(),
            reason: format!("{}x{} is too large for a PNG", map.width, map.height),
        }
    })?;
    save_png(path, &mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values whose bits must survive a round trip: signs, zero signs, subnormals, extremes,
    /// infinities and NaN.
    fn awkward_values() -> Vec<f32> {
        vec![
            0.5,
            -1.25,
            -0.0,
            0.0,
            1.0e-45, // smallest subnormal
            f32::MIN_POSITIVE,
            -3.0e-7,
            f32::MAX,
            f32::MIN,
            1.0e9,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            std::f32::consts::PI,
            -123_456.79,
        ]
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    fn decode_rgb(path: &Path) -> RgbImage {
        let img = image::open(path).unwrap();
        assert_eq!(img.color(), image::ColorType::Rgb8, "{}", path.display());
        img.to_rgb8()
    }

    #[test]
    fn new_checks_length_and_emptiness() {
        assert!(AnomalyMap::new(3, 2, vec![0.0; 6]).is_ok());
        assert_eq!(
            AnomalyMap::new(3, 2, vec![0.0; 5]),
            Err(MapShapeError::Length {
                width: 3,
                height: 2,
                len: 5
            })
        );
        assert_eq!(
            AnomalyMap::new(0, 2, vec![]),
            Err(MapShapeError::Empty {
                width: 0,
                height: 2
            })
        );
        assert!(AnomalyMap::new(usize::MAX, 2, vec![0.0]).is_err());
    }

    #[test]
    fn tiff_round_trip_is_bit_exact() {
        let dir = tempfile::tempdir().unwrap();
        let map = AnomalyMap::new(5, 3, awkward_values()).unwrap();
        let path = dir.path().join("nested/deeper/map.tiff");
        write_map_tiff(&path, &map).unwrap();
        let back = read_map(&path).unwrap();
        assert_eq!((back.width, back.height), (5, 3));
        assert_eq!(bits(&back.data), bits(&map.data));
    }

    #[test]
    fn written_tiff_is_single_channel_ieee_float() {
        use tiff::decoder::{Decoder, DecodingResult};
        use tiff::tags::Tag;
        let dir = tempfile::tempdir().unwrap();
        let map = AnomalyMap::new(2, 3, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let path = dir.path().join("m.tif");
        write_map_tiff(&path, &map).unwrap();
        let mut dec = Decoder::new(BufReader::new(File::open(&path).unwrap())).unwrap();
        // SampleFormat 3 = IEEE floating point; one 32-bit sample per pixel; BlackIsZero.
        assert_eq!(dec.get_tag_u32(Tag::SampleFormat).unwrap(), 3);
        assert_eq!(dec.get_tag_u32(Tag::BitsPerSample).unwrap(), 32);
        assert_eq!(dec.get_tag_u32(Tag::SamplesPerPixel).unwrap(), 1);
        assert_eq!(dec.get_tag_u32(Tag::PhotometricInterpretation).unwrap(), 1);
        assert_eq!(dec.dimensions().unwrap(), (2, 3));
        match dec.read_image().unwrap() {
            DecodingResult::F32(v) => assert_eq!(v, map.data),
            other => panic!("expected f32 samples, got {other:?}"),
        }
        // Little-endian byte order mark, as every other writer of the project uses.
        assert_eq!(&std::fs::read(&path).unwrap()[..4], b"II*\0");
    }

    #[test]
    fn npy_round_trip_is_bit_exact_with_numpy_header() {
        let dir = tempfile::tempdir().unwrap();
        let map = AnomalyMap::new(3, 5, awkward_values()).unwrap();
        let path = dir.path().join("sub/map.npy");
        write_map_npy(&path, &map).unwrap();
        let back = read_map(&path).unwrap();
        assert_eq!((back.width, back.height), (3, 5));
        assert_eq!(bits(&back.data), bits(&map.data));
        // The header, as NumPy writes it: magic, little-endian float32, C order, (H, W).
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..6], b"\x93NUMPY");
        let header_len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(header.contains("'descr': '<f4'"), "{header}");
        assert!(header.contains("'fortran_order': False"), "{header}");
        // (npyz writes the tuple with a trailing comma, "(5, 3, )", which Python also parses.)
        let compact: String = header.chars().filter(|c| !c.is_whitespace()).collect();
        assert!(
            compact.contains("'shape':(5,3)") || compact.contains("'shape':(5,3,)"),
            "{header}"
        );
        // The payload: the values' little-endian bytes in row-major order.
        let payload = &bytes[10 + header_len..];
        let expected: Vec<u8> = map.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(payload, &expected[..]);
    }

    #[test]
    fn reads_maps_written_independently() {
        use npyz::WriterBuilder;
        use tiff::encoder::{TiffEncoder, colortype};
        let dir = tempfile::tempdir().unwrap();
        let map = AnomalyMap::new(3, 2, vec![0.5, -1.25, 3.0e-7, 1e9, 0.0, 7.5]).unwrap();
        // 32-bit float TIFF from the tiff crate directly.
        let t = dir.path().join("a.tiff");
        let mut enc = TiffEncoder::new(File::create(&t).unwrap()).unwrap();
        enc.write_image::<colortype::Gray32Float>(3, 2, &map.data)
            .unwrap();
        assert_eq!(read_map(&t).unwrap(), map);
        assert_eq!(find_map(dir.path(), "a"), Some(t));
        // 64-bit float TIFF: rounded to f32 (exact for these values' f64 images).
        let t64 = dir.path().join("b.TIF");
        let mut enc = TiffEncoder::new(File::create(&t64).unwrap()).unwrap();
        let wide: Vec<f64> = map.data.iter().map(|&v| f64::from(v)).collect();
        enc.write_image::<colortype::Gray64Float>(3, 2, &wide)
            .unwrap();
        assert_eq!(read_map(&t64).unwrap(), map);
        // 16-bit integer greyscale TIFF: the integers as floats.
        let t16 = dir.path().join("c.tif");
        let mut enc = TiffEncoder::new(File::create(&t16).unwrap()).unwrap();
        enc.write_image::<colortype::Gray16>(2, 2, &[0, 1, 65535, 300])
            .unwrap();
        let m16 = read_map(&t16).unwrap();
        assert_eq!(m16.data, vec![0.0, 1.0, 65535.0, 300.0]);
        // float64 .npy of shape (1, 2, 3): squeezed to a 2x3 map.
        let n = dir.path().join("d.npy");
        let mut out = npyz::WriteOptions::<f64>::new()
            .default_dtype()
            .shape(&[1, 2, 3])
            .writer(File::create(&n).unwrap())
            .begin_nd()
            .unwrap();
        out.extend(wide.iter().copied()).unwrap();
        out.finish().unwrap();
        assert_eq!(read_map(&n).unwrap(), map);
    }

    #[test]
    fn find_map_prefers_tiff_then_tif_then_npy() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(find_map(dir.path(), "x"), None);
        let map = AnomalyMap::new(1, 1, vec![1.0]).unwrap();
        write_map_npy(dir.path().join("x.npy"), &map).unwrap();
        assert_eq!(find_map(dir.path(), "x"), Some(dir.path().join("x.npy")));
        write_map_tiff(dir.path().join("x.tif"), &map).unwrap();
        assert_eq!(find_map(dir.path(), "x"), Some(dir.path().join("x.tif")));
        write_map_tiff(dir.path().join("x.tiff"), &map).unwrap();
        assert_eq!(find_map(dir.path(), "x"), Some(dir.path().join("x.tiff")));
    }

    #[test]
    fn bad_files_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("broken.tiff");
        std::fs::write(&p, b"II*\0garbage").unwrap();
        let err = read_map(&p).unwrap_err();
        assert!(matches!(err, DataError::Decode { .. }), "{err:?}");
        assert_eq!(err.path(), p);
        assert!(err.to_string().contains("broken.tiff"), "{err}");

        let q = dir.path().join("map.png");
        std::fs::write(&q, b"x").unwrap();
        let err = read_map(&q).unwrap_err();
        assert!(err.to_string().contains("map.png"), "{err}");

        let missing = dir.path().join("absent.npy");
        assert!(matches!(read_map(&missing), Err(DataError::Io { .. })));

        // A 3-D .npy is not a map.
        let cube = dir.path().join("cube.npy");
        {
            use npyz::WriterBuilder;
            let mut out = npyz::WriteOptions::<f32>::new()
                .default_dtype()
                .shape(&[2, 2, 2])
                .writer(File::create(&cube).unwrap())
                .begin_nd()
                .unwrap();
            out.extend([0.0f32; 8]).unwrap();
            out.finish().unwrap();
        }
        let err = read_map(&cube).unwrap_err();
        assert!(err.to_string().contains("cube.npy"), "{err}");
        assert!(err.to_string().contains("2-D"), "{err}");
    }

    #[test]
    fn bilinear_resize_hand_checked() {
        // 2x1 -> 4x1: centres at source x = -0.25, 0.25, 0.75, 1.25 -> clamp/interp.
        let m = AnomalyMap::new(2, 1, vec![0.0, 4.0]).unwrap();
        let r = resize_bilinear(&m, 4, 1).unwrap();
        assert_eq!(r.data, vec![0.0, 1.0, 3.0, 4.0]);
        // 2x2 -> 4x4, corners 0, 4 (top) and 8, 12 (bottom): f(x, y) = 4 x' + 8 y' with
        // x', y' ∈ {0, 0.25, 0.75, 1} the clamped source coordinates.
        let m = AnomalyMap::new(2, 2, vec![0.0, 4.0, 8.0, 12.0]).unwrap();
        let r = resize_bilinear(&m, 4, 4).unwrap();
        let c = [0.0f32, 0.25, 0.75, 1.0];
        let expected: Vec<f32> = (0..16).map(|i| 4.0 * c[i % 4] + 8.0 * c[i / 4]).collect();
        assert_eq!(r.data, expected);
        // 4x1 -> 2x1: centres at source x = 0.5, 2.5.
        let m = AnomalyMap::new(4, 1, vec![0.0, 2.0, 4.0, 6.0]).unwrap();
        assert_eq!(resize_bilinear(&m, 2, 1).unwrap().data, vec![1.0, 5.0]);
        // Same size: unchanged. Empty target or inconsistent source: an error.
        assert_eq!(resize_bilinear(&m, 4, 1).unwrap(), m);
        assert!(resize_bilinear(&m, 0, 3).is_err());
        let broken = AnomalyMap {
            width: 3,
            height: 3,
            data: vec![0.0; 4],
        };
        assert!(resize_bilinear(&broken, 2, 2).is_err());
    }

    #[test]
    fn viridis_interpolates_between_control_points() {
        assert_eq!(viridis(0.0), VIRIDIS_CONTROL_POINTS[0]);
        assert_eq!(viridis(0.5), VIRIDIS_CONTROL_POINTS[4]);
        assert_eq!(viridis(1.0), VIRIDIS_CONTROL_POINTS[8]);
        assert_eq!(viridis(-3.0), VIRIDIS_CONTROL_POINTS[0]);
        assert_eq!(viridis(7.0), VIRIDIS_CONTROL_POINTS[8]);
        // Half-way between the first two: (0x44 + 0x47) / 2 = 69.5 -> 70, (1 + 45) / 2 = 23,
        // (0x54 + 0x7b) / 2 = 103.5 -> 104.
        assert_eq!(viridis(1.0 / 16.0), [70, 23, 104]);
        // Luminance grows monotonically along the map (perceptual ordering).
        let luma = |c: [u8; 3]| {
            0.299 * f32::from(c[0]) + 0.587 * f32::from(c[1]) + 0.114 * f32::from(c[2])
        };
        let ramp: Vec<f32> = (0..=64).map(|i| luma(viridis(i as f32 / 64.0))).collect();
        assert!(ramp.windows(2).all(|w| w[1] >= w[0]), "{ramp:?}");
    }

    #[test]
    fn heatmap_colours_lo_mid_hi_and_clamps() {
        let dir = tempfile::tempdir().unwrap();
        let (lo, hi) = (-2.0, 6.0);
        let map = AnomalyMap::new(3, 2, vec![lo, 2.0, hi, -100.0, f32::INFINITY, 0.0]).unwrap();
        let path = dir.path().join("out/heat.png");
        write_heatmap_png(&path, &map, lo, hi).unwrap();
        let img = decode_rgb(&path);
        assert_eq!(img.dimensions(), (3, 2));
        let px = |x, y| img.get_pixel(x, y).0;
        assert_eq!(px(0, 0), VIRIDIS_CONTROL_POINTS[0]);
        assert_eq!(px(1, 0), VIRIDIS_CONTROL_POINTS[4]);
        assert_eq!(px(2, 0), VIRIDIS_CONTROL_POINTS[8]);
        assert_eq!(px(0, 1), VIRIDIS_CONTROL_POINTS[0], "below lo clamps to lo");
        assert_eq!(px(1, 1), VIRIDIS_CONTROL_POINTS[8], "+inf clamps to hi");
        // 0.0 is at t = 0.25: the third control point.
        assert_eq!(px(2, 1), VIRIDIS_CONTROL_POINTS[2]);
        // A range spanning nearly all of f32 does not overflow.
        let wide = AnomalyMap::new(2, 1, vec![f32::MIN, f32::MAX]).unwrap();
        write_heatmap_png(&path, &wide, f32::MIN, f32::MAX).unwrap();
        let img = decode_rgb(&path);
        assert_eq!(img.get_pixel(0, 0).0, VIRIDIS_CONTROL_POINTS[0]);
        assert_eq!(img.get_pixel(1, 0).0, VIRIDIS_CONTROL_POINTS[8]);
    }

    #[test]
    fn overlay_blends_image_and_heatmap() {
        let dir = tempfile::tempdir().unwrap();
        let map = AnomalyMap::new(4, 3, (0..12).map(|i| i as f32).collect()).unwrap();
        let image = RgbImage::from_fn(4, 3, |x, y| {
            image::Rgb([(x * 60) as u8, (y * 100) as u8, 200 - (x * 10) as u8])
        });
        let heat_path = dir.path().join("heat.png");
        write_heatmap_png(&heat_path, &map, 0.0, 11.0).unwrap();
        let heat = decode_rgb(&heat_path);

        let p0 = dir.path().join("a0.png");
        write_overlay_png(&p0, &image, &map, 0.0, 11.0, 0.0).unwrap();
        assert_eq!(decode_rgb(&p0), image);

        // alpha 1: the lowest score (pixel (0, 0), at lo) shows the image untouched, the
        // highest (pixel (3, 2), at hi) the heatmap's colour.
        let p1 = dir.path().join("a1.png");
        write_overlay_png(&p1, &image, &map, 0.0, 11.0, 1.0).unwrap();
        let full = decode_rgb(&p1);
        assert_eq!(full.get_pixel(0, 0), image.get_pixel(0, 0));
        assert_eq!(full.get_pixel(3, 2), heat.get_pixel(3, 2));

        // alpha 0.5 at pixel (1, 2): image (60, 200, 190), score 9 of [0, 11], so the
        // heatmap's colour weighs 0.5 · 9/11.
        let p = dir.path().join("a50.png");
        write_overlay_png(&p, &image, &map, 0.0, 11.0, 0.5).unwrap();
        let h = heat.get_pixel(1, 2).0;
        let under = [60.0f32, 200.0, 190.0];
        let w = 0.5 * 9.0 / 11.0;
        let expected: [u8; 3] =
            std::array::from_fn(|c| ((1.0 - w) * under[c] + w * f32::from(h[c])).round() as u8);
        assert_eq!(decode_rgb(&p).get_pixel(1, 2).0, expected);
    }

    #[test]
    fn overlay_rejects_other_sizes_and_bad_alpha() {
        let dir = tempfile::tempdir().unwrap();
        let map = AnomalyMap::new(4, 3, vec![0.0; 12]).unwrap();
        let path = dir.path().join("o.png");
        let err = write_overlay_png(&path, &RgbImage::new(3, 4), &map, 0.0, 1.0, 0.5).unwrap_err();
        match &err {
            DataError::OverlaySizeMismatch {
                map_size,
                image_size,
                ..
            } => {
                assert_eq!(*map_size, Size::new(4, 3));
                assert_eq!(*image_size, Size::new(3, 4));
            }
            other => panic!("expected OverlaySizeMismatch, got {other:?}"),
        }
        assert!(err.to_string().contains("o.png"), "{err}");
        for alpha in [-0.1, 1.5, f32::NAN] {
            let err =
                write_overlay_png(&path, &RgbImage::new(4, 3), &map, 0.0, 1.0, alpha).unwrap_err();
            assert!(matches!(err, DataError::InvalidMapOutput { .. }), "{err:?}");
        }
        assert!(!path.exists(), "nothing is written on error");
    }

    #[test]
    fn mask_is_strictly_above_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let map = AnomalyMap::new(
            3,
            2,
            vec![
                0.5,
                0.49999997,
                0.50000006,
                -1.0,
                f32::INFINITY,
                f32::NEG_INFINITY,
            ],
        )
        .unwrap();
        let path = dir.path().join("m/mask.png");
        write_mask_png(&path, &map, 0.5).unwrap();
        let img = image::open(&path).unwrap();
        assert_eq!(img.color(), image::ColorType::L8);
        assert_eq!(img.to_luma8().into_raw(), vec![0, 0, 255, 0, 255, 0]);
        // An infinite threshold: nothing (or everything finite) is above it.
        write_mask_png(&path, &map, f32::INFINITY).unwrap();
        assert_eq!(
            image::open(&path).unwrap().to_luma8().into_raw(),
            vec![0; 6]
        );
        write_mask_png(&path, &map, f32::NEG_INFINITY).unwrap();
        assert_eq!(
            image::open(&path).unwrap().to_luma8().into_raw(),
            vec![255, 255, 255, 255, 255, 0]
        );
        let err = write_mask_png(&path, &map, f32::NAN).unwrap_err();
        assert!(matches!(err, DataError::InvalidMapOutput { .. }), "{err:?}");
    }

    #[test]
    fn nan_in_a_picture_is_an_error_naming_file_and_pixel() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = vec![0.0; 6];
        data[5] = f32::NAN; // x = 2, y = 1
        let map = AnomalyMap::new(3, 2, data).unwrap();
        let image = RgbImage::new(3, 2);
        let results = [
            (
                "heat.png",
                write_heatmap_png(dir.path().join("heat.png"), &map, 0.0, 1.0),
            ),
            (
                "over.png",
                write_overlay_png(dir.path().join("over.png"), &image, &map, 0.0, 1.0, 0.5),
            ),
            (
                "mask.png",
                write_mask_png(dir.path().join("mask.png"), &map, 0.5),
            ),
        ];
        for (name, result) in results {
            let err = result.unwrap_err();
            assert!(
                matches!(err, DataError::NanInMap { x: 2, y: 1, .. }),
                "{name}: {err:?}"
            );
            assert!(err.to_string().contains(name), "{err}");
            assert!(!dir.path().join(name).exists());
        }
        // The float formats store NaN as it is.
        write_map_tiff(dir.path().join("ok.tiff"), &map).unwrap();
        assert!(read_map(dir.path().join("ok.tiff")).unwrap().data[5].is_nan());
    }

    #[test]
    fn bad_colour_range_and_inconsistent_maps_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let map = AnomalyMap::new(2, 1, vec![0.0, 1.0]).unwrap();
        let path = dir.path().join("h.png");
        for (lo, hi) in [
            (1.0, 1.0),
            (2.0, 1.0),
            (f32::NEG_INFINITY, 1.0),
            (0.0, f32::NAN),
        ] {
            let err = write_heatmap_png(&path, &map, lo, hi).unwrap_err();
            assert!(matches!(err, DataError::InvalidMapOutput { .. }), "{err:?}");
            assert!(err.to_string().contains("h.png"), "{err}");
        }
        let broken = AnomalyMap {
            width: 2,
            height: 2,
            data: vec![0.0; 3],
        };
        let tiff_path = dir.path().join("b.tiff");
        let err = write_map_tiff(&tiff_path, &broken).unwrap_err();
        assert!(matches!(err, DataError::InvalidMapOutput { .. }), "{err:?}");
        assert!(err.to_string().contains("b.tiff"), "{err}");
        assert!(write_map_npy(dir.path().join("b.npy"), &broken).is_err());
        assert!(write_mask_png(dir.path().join("b.png"), &broken, 0.0).is_err());
        assert!(write_heatmap_png(dir.path().join("b.png"), &broken, 0.0, 1.0).is_err());
    }

    #[test]
    fn unwritable_destination_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        // A file where a folder should be.
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, b"").unwrap();
        let path = blocker.join("map.tiff");
        let map = AnomalyMap::new(1, 1, vec![1.0]).unwrap();
        let err = write_map_tiff(&path, &map).unwrap_err();
        assert!(matches!(err, DataError::Write { .. }), "{err:?}");
        assert_eq!(err.path(), path);
    }
}
