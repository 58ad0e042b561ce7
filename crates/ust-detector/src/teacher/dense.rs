//! Dense distillation ([`DistillationMode::Dense`], a deviation from the paper): the targets of
//! a window's `grid`² teacher outputs, read from one backbone pass over the window enlarged so
//! that the backbone's feature grid and the strided teacher's outputs coincide.
//!
//! [`DistillationMode::Dense`]: super::config::DistillationMode::Dense

use candle_core::Tensor;
use ust_models::Backbone;

use super::config::TeacherTrainingConfig;
use crate::error::{DetectorError, Result};

/// Dense windows per backbone pass: an enlarged p = 33 window is 744² pixels, whose stem
/// activations alone take 70 MB per window.
const DENSE_BACKBONE_CHUNK: usize = 2;

/// Dense distillation targets of windows (N, 3, W, W): the backbone's last feature map of
/// the windows enlarged by backbone stride / teacher stride, sampled (bilinearly) at the
/// centres of the teacher's `grid`² outputs, as rows in the teacher's output order.
///
/// # Shapes
/// (N, 3, W, W) -> (N·grid², feature_dim)
pub(crate) fn dense_targets(
    backbone: &dyn Backbone,
    config: &TeacherTrainingConfig,
    windows: &Tensor,
) -> Result<Tensor> {
    let (n, _, w, _) = windows.dims4()?;
    let (p, s) = (config.teacher.patch_size, config.teacher_stride());
    let bs = backbone.feature_stride();
    let factor = bs / s;
    let enlarged = ust_models::resize_bilinear(windows, w * factor, w * factor)?;
    let mut cells = Vec::with_capacity(n);
    for start in (0..n).step_by(DENSE_BACKBONE_CHUNK) {
        let m = DENSE_BACKBONE_CHUNK.min(n - start);
        cells.push(backbone.feature_map_native(&enlarged.narrow(0, start, m)?)?);
    }
    let map = Tensor::cat(&cells, 0)?.detach();
    // Teacher output i is centred at s·i + p/2 in the window; cell j at
    // (origin + bs·j) / factor = (origin / factor) + s·j. Equal centres: j = i + offset.
    let origin = backbone.feature_cell_origin(w * factor) / factor as f64;
    let offset = (p as f64 / 2.0 - origin) / s as f64;
    let grid = config.distillation.dense_grid;
    sample_cells(&map, offset, grid).map_err(|e| match e {
        DetectorError::InvalidConfig(m) => DetectorError::InvalidConfig(format!(
            "dense distillation (window {w}, p = {p}, teacher stride {s}): {m}"
        )),
        other => other,
    })
}

/// The cells of `map` at `grid`×`grid` positions `j = i + offset` (i = 0…grid − 1 in each
/// axis; fractional offsets interpolate bilinearly between neighbours), as rows in row-major
/// position order per image.
///
/// # Shapes
/// (N, K, H, W) -> (N·grid², K)
pub(crate) fn sample_cells(map: &Tensor, offset: f64, grid: usize) -> Result<Tensor> {
    let (n, k, h, w) = map.dims4()?;
    let j0 = offset.floor();
    let frac = offset - j0;
    let needed = j0 + grid as f64 + if frac > 0.0 { 1.0 } else { 0.0 };
    if j0 < 0.0 || needed > h.min(w) as f64 {
        return Err(DetectorError::InvalidConfig(format!(
            "a {h}x{w} feature map cannot serve a {grid}x{grid} grid at offset {offset:.3}"
        )));
    }
    let j0 = j0 as usize;
    let shifted = |dy: usize, dx: usize| map.narrow(2, j0 + dy, grid)?.narrow(3, j0 + dx, grid);
    let sampled = if frac > 0.0 {
        let (a, b) = (1.0 - frac, frac);
        let rows = (shifted(0, 0)?.affine(a * a, 0.0)? + shifted(0, 1)?.affine(a * b, 0.0)?)?;
        let rows = (rows + shifted(1, 0)?.affine(b * a, 0.0)?)?;
        (rows + shifted(1, 1)?.affine(b * b, 0.0)?)?
    } else {
        shifted(0, 0)?
    };
    Ok(sampled
        .permute((0, 2, 3, 1))?
        .contiguous()?
        .reshape((n * grid * grid, k))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// A map whose cell (y, x) of channel c holds 100·y + x + 1000·c: bilinear sampling of a
    /// linear function is exact, so every sampled row is known in closed form.
    fn ramp_map(n: usize, k: usize, side: usize) -> Tensor {
        let mut v = Vec::new();
        for _ in 0..n {
            for c in 0..k {
                for y in 0..side {
                    for x in 0..side {
                        v.push((100 * y + x + 1000 * c) as f32);
                    }
                }
            }
        }
        Tensor::from_vec(v, (n, k, side, side), &Device::Cpu).unwrap()
    }

    #[test]
    fn sample_cells_reads_the_grid_at_the_offset() {
        let (n, k, side, grid) = (2, 3, 9, 4);
        let map = ramp_map(n, k, side);
        for offset in [0.0, 2.0, 3.890625, 4.5] {
            let rows = sample_cells(&map, offset, grid).unwrap();
            assert_eq!(rows.dims(), &[n * grid * grid, k]);
            let got: Vec<Vec<f32>> = rows.to_vec2().unwrap();
            for b in 0..n {
                for i in 0..grid {
                    for j in 0..grid {
                        let row = &got[(b * grid + i) * grid + j];
                        for (c, &value) in row.iter().enumerate() {
                            let want = 100.0 * (i as f64 + offset)
                                + (j as f64 + offset)
                                + 1000.0 * c as f64;
                            assert!(
                                (f64::from(value) - want).abs() < 1e-3,
                                "offset {offset} ({b},{i},{j},{c}): {value} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn sample_cells_refuses_grids_outside_the_map() {
        let map = ramp_map(1, 1, 9);
        // Cells 4…8 (four plus one to interpolate) and 5…8 fit a 9-cell map; one more does not.
        assert!(sample_cells(&map, 4.5, 4).is_ok() && sample_cells(&map, 5.0, 4).is_ok());
        for offset in [-0.5, 5.5, 6.0] {
            let err = sample_cells(&map, offset, 4).unwrap_err().to_string();
            assert!(err.contains("cannot serve a 4x4 grid"), "{err}");
        }
    }
}
