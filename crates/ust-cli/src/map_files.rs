//! Reading and writing anomaly maps as files: 32-bit float TIFF (the format of the official
//! MVTec AD evaluation) and NumPy `.npy` (float32 or float64, C order).

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// A row-major anomaly map.
#[derive(Debug, Clone, PartialEq)]
pub struct MapFile {
    pub width: usize,
    pub height: usize,
    pub scores: Vec<f32>,
}

/// Extensions tried, in order, when looking for the map of an image.
pub const MAP_EXTENSIONS: [&str; 3] = ["tiff", "tif", "npy"];

/// The map for `stem` in `dir` (`dir/stem.tiff`, `.tif` or `.npy`), if one exists.
pub fn find_map(dir: &Path, stem: &str) -> Option<PathBuf> {
    MAP_EXTENSIONS
        .iter()
        .map(|ext| dir.join(format!("{stem}.{ext}")))
        .find(|p| p.is_file())
}

/// Reads a map; the format follows the extension.
pub fn read_map(path: &Path) -> Result<MapFile> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("tif" | "tiff") => read_tiff(path),
        Some("npy") => read_npy(path),
        _ => bail!(
            "{}: unknown anomaly-map format (use .tiff, .tif or .npy)",
            path.display()
        ),
    }
}

fn read_tiff(path: &Path) -> Result<MapFile> {
    use tiff::decoder::{Decoder, DecodingResult};
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut dec = Decoder::new(BufReader::new(file))
        .with_context(|| format!("{}: not a readable TIFF file", path.display()))?;
    let (w, h) = dec
        .dimensions()
        .with_context(|| format!("{}: TIFF without dimensions", path.display()))?;
    let colortype = dec
        .colortype()
        .with_context(|| format!("{}: TIFF without colour type", path.display()))?;
    let (w, h) = (w as usize, h as usize);
    let data = dec
        .read_image()
        .with_context(|| format!("{}: corrupt or truncated TIFF data", path.display()))?;
    let scores: Vec<f32> = match data {
        DecodingResult::F32(v) => v,
        DecodingResult::F64(v) => v.into_iter().map(|x| x as f32).collect(),
        DecodingResult::F16(v) => v.into_iter().map(f32::from).collect(),
        DecodingResult::U8(v) => v.into_iter().map(f32::from).collect(),
        DecodingResult::U16(v) => v.into_iter().map(f32::from).collect(),
        DecodingResult::I16(v) => v.into_iter().map(f32::from).collect(),
        _ => bail!(
            "{}: unsupported TIFF sample type ({colortype:?}); write 32-bit float",
            path.display()
        ),
    };
    if scores.len() != w * h {
        bail!(
            "{}: a map must have one channel; the TIFF has {} samples for {w}x{h} pixels ({colortype:?})",
            path.display(),
            scores.len()
        );
    }
    Ok(MapFile {
        width: w,
        height: h,
        scores,
    })
}

fn read_npy(path: &Path) -> Result<MapFile> {
    use npyz::{DType, Order, TypeChar};
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let npy = npyz::NpyFile::new(BufReader::new(file))
        .with_context(|| format!("{}: not a readable .npy file", path.display()))?;
    if npy.order() != Order::C {
        bail!("{}: Fortran-order arrays are not supported", path.display());
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
        bail!(
            "{}: expected a 2-D array (H, W), got shape {shape:?}",
            path.display()
        );
    }
    let (h, w) = (dims[0], dims[1]);
    let is_float = |size| matches!(npy.dtype(), DType::Plain(ts) if ts.type_char() == TypeChar::Float && ts.size_field() == size);
    let scores: Vec<f32> = if is_float(4) {
        npy.into_vec::<f32>()
            .with_context(|| format!("{}: corrupt or truncated .npy data", path.display()))?
    } else if is_float(8) {
        npy.into_vec::<f64>()
            .with_context(|| format!("{}: corrupt or truncated .npy data", path.display()))?
            .into_iter()
            .map(|x| x as f32)
            .collect()
    } else {
        bail!(
            "{}: unsupported dtype {:?}; write float32 or float64",
            path.display(),
            npy.dtype()
        );
    };
    if scores.len() != w * h {
        bail!("{}: truncated .npy data", path.display());
    }
    Ok(MapFile {
        width: w,
        height: h,
        scores,
    })
}

/// Bilinear resampling of a map to `(width, height)` with pixel centres aligned (the
/// convention of OpenCV's and PIL's bilinear resize without antialiasing).
pub fn resize_bilinear(map: &MapFile, width: usize, height: usize) -> MapFile {
    if map.width == width && map.height == height {
        return map.clone();
    }
    let sx = map.width as f32 / width as f32;
    let sy = map.height as f32 / height as f32;
    let mut scores = Vec::with_capacity(width * height);
    let coord = |dst: usize, scale: f32, len: usize| {
        let src = ((dst as f32 + 0.5) * scale - 0.5).clamp(0.0, (len - 1) as f32);
        let i0 = src.floor() as usize;
        let i1 = (i0 + 1).min(len - 1);
        (i0, i1, src - i0 as f32)
    };
    for y in 0..height {
        let (y0, y1, fy) = coord(y, sy, map.height);
        for x in 0..width {
            let (x0, x1, fx) = coord(x, sx, map.width);
            let at = |yy: usize, xx: usize| map.scores[yy * map.width + xx];
            let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
            let bottom = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
            scores.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    MapFile {
        width,
        height,
        scores,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tiff_and_npy() {
        use npyz::WriterBuilder;
        let dir = tempfile::tempdir().unwrap();
        let map = MapFile {
            width: 3,
            height: 2,
            scores: vec![0.5, -1.25, 3.0e-7, 1e9, 0.0, 7.5],
        };
        let t = dir.path().join("a.tiff");
        let mut enc = tiff::encoder::TiffEncoder::new(File::create(&t).unwrap()).unwrap();
        enc.write_image::<tiff::encoder::colortype::Gray32Float>(3, 2, &map.scores)
            .unwrap();
        assert_eq!(read_map(&t).unwrap(), map);
        assert_eq!(find_map(dir.path(), "a"), Some(t));
        // float64 .npy of shape (1, 2, 3): squeezed to a 2x3 map.
        let n = dir.path().join("b.npy");
        let mut out = npyz::WriteOptions::<f64>::new()
            .default_dtype()
            .shape(&[1, 2, 3])
            .writer(File::create(&n).unwrap())
            .begin_nd()
            .unwrap();
        out.extend(map.scores.iter().map(|&v| v as f64)).unwrap();
        out.finish().unwrap();
        assert_eq!(read_map(&n).unwrap(), map);
    }

    #[test]
    fn bad_files_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("broken.tiff");
        std::fs::write(&p, b"II*\0garbage").unwrap();
        let err = format!("{:#}", read_map(&p).unwrap_err());
        assert!(err.contains("broken.tiff"), "{err}");
        let q = dir.path().join("map.png");
        std::fs::write(&q, b"x").unwrap();
        assert!(format!("{:#}", read_map(&q).unwrap_err()).contains("map.png"));
    }

    #[test]
    fn bilinear_resize_hand_checked() {
        // 2x1 -> 4x1: centres at source x = -0.25, 0.25, 0.75, 1.25 -> clamp/interp.
        let m = MapFile {
            width: 2,
            height: 1,
            scores: vec![0.0, 4.0],
        };
        let r = resize_bilinear(&m, 4, 1);
        assert_eq!(r.scores, vec![0.0, 1.0, 3.0, 4.0]);
    }
}
