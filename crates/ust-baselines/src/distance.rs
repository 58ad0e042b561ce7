//! Exact nearest-neighbour search by blocked matrix products.
//!
//! For query q and reference r, ‖q − r‖² = ‖q‖² − 2 q·r + ‖r‖². Per block of queries the dot
//! products with a block of references come from one single-precision matrix product (ndarray's
//! `general_mat_mul`, the pure-Rust `matrixmultiply` kernels); query blocks run in parallel on
//! rayon. The arg-min of ‖r‖² − 2 q·r picks the neighbour, and its squared distance is then
//! recomputed directly in double precision, so the returned distance has no cancellation error:
//! it is exact for the chosen neighbour, and the chosen neighbour can differ from the true one
//! only by a near-tie within single-precision rounding of the norms.

use ndarray::{Array2, ArrayView2, Axis, linalg::general_mat_mul, s};
use rayon::prelude::*;

/// Queries per parallel task.
const QUERY_BLOCK: usize = 128;
/// References per matrix product (a 128 × 1024 f32 block of dot products is 512 KiB).
const REFERENCE_BLOCK: usize = 1024;

/// Squared Euclidean norm of every row, accumulated in f64.
pub(crate) fn squared_norms(rows: ArrayView2<'_, f32>) -> Vec<f64> {
    rows.axis_iter(Axis(0))
        .into_par_iter()
        .map(|r| r.iter().map(|&v| f64::from(v) * f64::from(v)).sum())
        .collect()
}

/// Squared Euclidean distance of two equally long vectors, accumulated in f64.
pub(crate) fn squared_distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = f64::from(x) - f64::from(y);
            d * d
        })
        .sum()
}

/// For every query row, the index of its nearest reference row and the squared Euclidean
/// distance to it.
///
/// # Shapes
/// `queries`: (m, d), `references`: (n, d) with n ≥ 1 → m pairs (index in 0..n, distance²).
pub(crate) fn nearest_neighbours(
    queries: ArrayView2<'_, f32>,
    references: ArrayView2<'_, f32>,
) -> Vec<(usize, f64)> {
    assert_eq!(queries.ncols(), references.ncols(), "dimensions differ");
    assert!(references.nrows() > 0, "no reference vectors");
    let queries = queries.as_standard_layout();
    let references = references.as_standard_layout();
    let reference_norms: Vec<f32> = squared_norms(references.view())
        .into_iter()
        .map(|v| v as f32)
        .collect();
    let n_ref = references.nrows();

    let mut out = vec![(0usize, 0.0f64); queries.nrows()];
    out.par_chunks_mut(QUERY_BLOCK)
        .enumerate()
        .for_each(|(block, out_block)| {
            let start = block * QUERY_BLOCK;
            let q = queries.slice(s![start..start + out_block.len(), ..]);
            let mut best_value = vec![f32::INFINITY; q.nrows()];
            let mut best_index = vec![0usize; q.nrows()];
            let mut products = Array2::<f32>::zeros((q.nrows(), REFERENCE_BLOCK.min(n_ref)));
            for r_start in (0..n_ref).step_by(REFERENCE_BLOCK) {
                let r_end = (r_start + REFERENCE_BLOCK).min(n_ref);
                let r = references.slice(s![r_start..r_end, ..]);
                let mut p = products.slice_mut(s![.., ..r_end - r_start]);
                general_mat_mul(1.0, &q, &r.t(), 0.0, &mut p);
                let norms = &reference_norms[r_start..r_end];
                for (i, row) in p.axis_iter(Axis(0)).enumerate() {
                    let row = row.as_slice().expect("rows of a standard-layout block");
                    let mut value = best_value[i];
                    let mut index = best_index[i];
                    for (j, (&dot, &norm)) in row.iter().zip(norms).enumerate() {
                        let v = norm - 2.0 * dot;
                        if v < value {
                            value = v;
                            index = r_start + j;
                        }
                    }
                    best_value[i] = value;
                    best_index[i] = index;
                }
            }
            for (i, slot) in out_block.iter_mut().enumerate() {
                let qi = q.row(i);
                let ri = references.row(best_index[i]);
                let d2 = squared_distance(
                    qi.as_slice().expect("standard layout"),
                    ri.as_slice().expect("standard layout"),
                );
                *slot = (best_index[i], d2);
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng, rngs::StdRng};

    fn random_matrix(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0f32..1.0))
    }

    #[test]
    fn matches_naive_search_across_block_boundaries() {
        // 300 queries (3 query blocks, the last partial), 2500 references (3 reference blocks).
        let q = random_matrix(300, 7, 1);
        let r = random_matrix(2500, 7, 2);
        let fast = nearest_neighbours(q.view(), r.view());
        for (i, &(idx, d2)) in fast.iter().enumerate() {
            let naive = r
                .axis_iter(Axis(0))
                .map(|row| squared_distance(q.row(i).as_slice().unwrap(), row.as_slice().unwrap()))
                .fold(f64::INFINITY, f64::min);
            assert!(
                (d2 - naive).abs() <= 1e-9 * naive.max(1e-12),
                "row {i}: {d2} vs {naive}"
            );
            let chosen =
                squared_distance(q.row(i).as_slice().unwrap(), r.row(idx).as_slice().unwrap());
            assert_eq!(chosen, d2);
        }
    }

    #[test]
    fn query_equal_to_a_reference_has_distance_zero() {
        let r = random_matrix(50, 5, 3).mapv(|v| v * 100.0 + 1000.0);
        let fast = nearest_neighbours(r.view(), r.view());
        for (i, &(idx, d2)) in fast.iter().enumerate() {
            assert_eq!((idx, d2), (i, 0.0));
        }
    }
}
