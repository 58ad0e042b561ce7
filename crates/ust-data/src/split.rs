//! Seeded random splits of a list of items into a training and a validation part, and seeded
//! subsets: one shuffle ([`seeded_order`]) behind both, so that a subset of `k` items is the
//! validation part a split holding out `k` would choose. The generator and its use are part
//! of every cached result (the students' validation images, Table 2's subsets).

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;

/// Indices `0..n` split into training and validation parts, each in increasing order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexSplit {
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
}

/// Number of validation items for `n` items and `fraction` in `[0, 1)`: `round(fraction · n)`,
/// at least 1 when `fraction > 0` and `n ≥ 2`, and always leaving at least one training item.
pub fn validation_count(n: usize, fraction: f64) -> usize {
    if n < 2 || fraction <= 0.0 {
        return 0;
    }
    ((fraction * n as f64).round() as usize).clamp(1, n - 1)
}

/// Splits `0..n`: a seeded shuffle, the first [`validation_count`] indices go to validation.
/// The same `(n, fraction, seed)` always gives the same split. `fraction` must be in `[0, 1)`;
/// callers check it (see the `split_validation` methods).
pub fn seeded_split(n: usize, fraction: f64, seed: u64) -> IndexSplit {
    let order = seeded_order(n, seed);
    let k = validation_count(n, fraction);
    let mut validation = order[..k].to_vec();
    let mut train = order[k..].to_vec();
    validation.sort_unstable();
    train.sort_unstable();
    IndexSplit { train, validation }
}

/// `0..n` in the order of a shuffle seeded with `seed` (Xoshiro256++).
fn seeded_order(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    order.shuffle(&mut rng);
    order
}

/// A seeded subset of `k` of `0..n` (all when `k ≥ n`), in increasing order: the first `k` of
/// [`seeded_order`].
pub fn seeded_subset(n: usize, k: usize, seed: u64) -> Vec<usize> {
    let mut picked = seeded_order(n, seed);
    picked.truncate(k.min(n));
    picked.sort_unstable();
    picked
}

/// Whether `fraction` is a usable validation fraction.
pub(crate) fn fraction_ok(fraction: f64) -> bool {
    (0.0..1.0).contains(&fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_a_seeded_partition() {
        let s = seeded_split(761, 0.1, 7);
        assert_eq!(s.validation.len(), 76);
        assert_eq!(s.train.len(), 685);
        let mut all: Vec<usize> = s.train.iter().chain(&s.validation).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..761).collect::<Vec<_>>());
        assert_eq!(seeded_split(761, 0.1, 7), s);
        assert_ne!(seeded_split(761, 0.1, 8).validation, s.validation);
        // A subset of k is the validation part of a split holding out k.
        assert_eq!(seeded_subset(761, s.validation.len(), 7), s.validation);
    }

    #[test]
    fn validation_count_edge_cases() {
        assert_eq!(validation_count(0, 0.5), 0);
        assert_eq!(validation_count(1, 0.5), 0);
        assert_eq!(validation_count(10, 0.0), 0);
        assert_eq!(validation_count(10, 0.01), 1);
        assert_eq!(validation_count(10, 0.99), 9);
        assert_eq!(validation_count(32, 0.1), 3);
    }
}
