//! Descriptor matrices: the input type of every baseline, its checks, and conversions from flat
//! buffers and candle tensors.
//!
//! A descriptor matrix is an [`ndarray::ArrayView2<f32>`] of shape (n, d): one row per descriptor
//! vector (a pixel's or an image's teacher descriptor), d components per row (d = 128 for the
//! paper's teacher). Rows may come from any layout; the helpers here build such views from a
//! row-major `&[f32]` or copy them out of a candle tensor.

use candle_core::{DType, Tensor};
use ndarray::{Array2, ArrayView2, Axis};
use rand::{SeedableRng, rngs::StdRng};
use rayon::prelude::*;

use crate::error::{BaselineError, Result};

/// A view of `n` row-major vectors of dimension `d` stored in `data`.
///
/// # Shapes
/// `data`: n·d values, row-major → view (n, d).
pub fn descriptors_view(data: &[f32], n: usize, d: usize) -> Result<ArrayView2<'_, f32>> {
    if n.checked_mul(d) != Some(data.len()) {
        return Err(BaselineError::BufferLength {
            what: "descriptor buffer",
            len: data.len(),
            rows: n,
            dim: d,
        });
    }
    Ok(ArrayView2::from_shape((n, d), data).expect("length checked above"))
}

/// Copies a rank-2 candle tensor (n, d) of any float dtype into an f32 descriptor matrix.
///
/// # Shapes
/// `tensor`: (n, d) → (n, d).
pub fn descriptors_from_tensor(tensor: &Tensor) -> Result<Array2<f32>> {
    let dims = tensor.dims().to_vec();
    if dims.len() != 2 {
        return Err(BaselineError::TensorShape {
            what: "descriptor tensor",
            expected: "(n, d)",
            got: dims,
        });
    }
    let flat = tensor
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    Ok(Array2::from_shape_vec((dims[0], dims[1]), flat).expect("tensor length is n·d"))
}

/// Turns dense descriptor maps (B, C, H, W) into one row per pixel, the rows ordered by image,
/// then row, then column (row index = b·H·W + y·W + x), so that scores can be reshaped back into
/// (B, H, W) maps.
///
/// # Shapes
/// `maps`: (B, C, H, W) → (B·H·W, C).
pub fn dense_maps_to_rows(maps: &Tensor) -> Result<Array2<f32>> {
    let dims = maps.dims().to_vec();
    if dims.len() != 4 {
        return Err(BaselineError::TensorShape {
            what: "dense descriptor maps",
            expected: "(B, C, H, W)",
            got: dims,
        });
    }
    let (b, c, h, w) = (dims[0], dims[1], dims[2], dims[3]);
    let rows = maps
        .to_dtype(DType::F32)?
        .permute((0, 2, 3, 1))?
        .contiguous()?
        .flatten_all()?
        .to_vec1::<f32>()?;
    Ok(Array2::from_shape_vec((b * h * w, c), rows).expect("tensor length is B·H·W·C"))
}

/// Checks that a matrix has at least one column and holds only finite values; the error names
/// the first offending row and column.
pub fn check_finite(vectors: ArrayView2<'_, f32>, what: &'static str) -> Result<()> {
    if vectors.ncols() == 0 {
        return Err(BaselineError::ZeroDimension { what });
    }
    let first_bad_row = vectors
        .axis_iter(Axis(0))
        .into_par_iter()
        .position_first(|row| row.iter().any(|v| !v.is_finite()));
    match first_bad_row {
        None => Ok(()),
        Some(row) => {
            let (column, value) = vectors
                .row(row)
                .iter()
                .copied()
                .enumerate()
                .find(|(_, v)| !v.is_finite())
                .expect("the row holds a non-finite value");
            Err(BaselineError::NonFinite {
                what,
                row,
                column,
                value,
            })
        }
    }
}

/// Checks a matrix of vectors to be scored by a model fitted on dimension `expected_dim`.
pub(crate) fn check_query(
    vectors: ArrayView2<'_, f32>,
    expected_dim: usize,
    what: &'static str,
) -> Result<()> {
    if vectors.ncols() != expected_dim {
        return Err(BaselineError::DimensionMismatch {
            what,
            expected: expected_dim,
            got: vectors.ncols(),
        });
    }
    if vectors.nrows() == 0 {
        return Ok(());
    }
    check_finite(vectors, what)
}

/// Checks a training matrix: at least one row, at least one column, finite values.
pub(crate) fn check_training(vectors: ArrayView2<'_, f32>, what: &'static str) -> Result<()> {
    if vectors.nrows() == 0 {
        return Err(BaselineError::EmptyTrainingSet { what });
    }
    check_finite(vectors, what)
}

/// A seeded random subset of `max` row indices out of `0..n`, sorted ascending; `None` when all
/// `n` rows are to be used (`max` absent or not smaller than `n`).
///
/// Not `ust_data::split::seeded_subset` (a Xoshiro shuffle): this draws with `StdRng` and
/// `rand::seq::index::sample`, which picks other rows for the same seed. Every fitted baseline
/// and every cached Table 1 cell (its subsets of training images and of descriptor vectors)
/// depends on these rows, so the two stay apart rather than change the published figures.
pub fn subsample_indices(n: usize, max: Option<usize>, seed: u64) -> Option<Vec<usize>> {
    let max = max?;
    if max >= n {
        return None;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut picked = rand::seq::index::sample(&mut rng, n, max).into_vec();
    picked.sort_unstable();
    Some(picked)
}

/// An independent seed for a named random stream (`stream`) of a run seeded with `seed`
/// (SplitMix64 finaliser of the combination), so that e.g. subsampling and weight initialisation
/// do not share random numbers.
///
/// The baselines' and the protocols' formula (Table 1's and Table 2's seed streams use it too).
/// `ust-detector`'s training seeds come from another one, `(seed, stream, index)` mixed by XOR
/// (`training::init`): both are SplitMix64 finalisers, but over different mixes, so they give
/// different seeds. Merging them would change every trained student and teacher, or every
/// fitted baseline, and with them the figures of every cached cell; each formula stays with
/// the results that were computed with it.
pub fn derive_seed(seed: u64, stream: u64) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(stream.wrapping_mul(0xD1B5_4A32_D192_ED03))
        .wrapping_add(0x2545_F491_4F6C_DD1D);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Random-stream identifiers for [`derive_seed`].
pub(crate) mod stream {
    pub const SUBSAMPLE: u64 = 1;
    pub const KMEANS: u64 = 2;
    pub const INIT: u64 = 3;
    pub const SHUFFLE: u64 = 4;
    pub const NOISE: u64 = 5;
    pub const SCORE_NOISE: u64 = 6;
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn view_rejects_wrong_length() {
        let data = vec![0.0f32; 10];
        assert!(descriptors_view(&data, 5, 2).is_ok());
        assert!(matches!(
            descriptors_view(&data, 3, 3),
            Err(BaselineError::BufferLength { len: 10, .. })
        ));
    }

    #[test]
    fn non_finite_error_names_first_row_and_column() {
        let mut data = vec![1.0f32; 40];
        data[4 * 7 + 2] = f32::NAN;
        data[4 * 9 + 1] = f32::INFINITY;
        let view = descriptors_view(&data, 10, 4).unwrap();
        match check_finite(view, "test vectors") {
            Err(BaselineError::NonFinite {
                row, column, what, ..
            }) => {
                assert_eq!((row, column, what), (7, 2, "test vectors"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn dense_maps_rows_are_pixels_in_image_row_column_order() {
        // value = 1000 b + 100 c + 10 y + x
        let (b, c, h, w) = (2, 3, 2, 4);
        let mut v = Vec::new();
        for bi in 0..b {
            for ci in 0..c {
                for y in 0..h {
                    for x in 0..w {
                        v.push((1000 * bi + 100 * ci + 10 * y + x) as f32);
                    }
                }
            }
        }
        let t = Tensor::from_vec(v, (b, c, h, w), &Device::Cpu).unwrap();
        let rows = dense_maps_to_rows(&t).unwrap();
        assert_eq!(rows.dim(), (b * h * w, c));
        let (bi, yi, xi) = (1, 1, 3);
        let r = bi * h * w + yi * w + xi;
        assert_eq!(rows.row(r).to_vec(), vec![1013.0, 1113.0, 1213.0]);
        assert!(descriptors_from_tensor(&t).is_err());
    }

    #[test]
    fn subsample_is_seeded_sorted_and_distinct() {
        let a = subsample_indices(1000, Some(100), 7).unwrap();
        let b = subsample_indices(1000, Some(100), 7).unwrap();
        let c = subsample_indices(1000, Some(100), 8).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 100);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert!(subsample_indices(50, Some(100), 7).is_none());
        assert!(subsample_indices(50, None, 7).is_none());
    }
}
