//! Table 1's work caps per preset, and the named seed streams of its dense baselines.
//!
//! ## Dense baselines (Table 1)
//!
//! Images are resized to the students' `image_size` of the preset.
//!
//! | preset | image side | training images | knn | kmeans | ocsvm | pca | ae, vae |
//! |---|---|---|---|---|---|---|---|
//! | paper | 256 | all | 50 000 | 100 000 | 5 000 | 100 000 | all |
//! | cpu | 128 | ≤ 64 | 10 000 | 50 000 | 2 000 | 50 000 | 50 000 |
//! | smoke | 40 | ≤ 16 | 2 000 | 2 000 | 500 | 2 000 | 2 000 |
//!
//! The paper caps are `BaselineConfig::paper`'s. The smoke preset also caps the test images
//! of a category ([`max_test_images`]), for the students' evaluation and the baselines' alike.
//!
//! This is the one definition of these caps: `ust_experiments::presets` re-exports them for the
//! runner's cost model.

use ust_baselines::DescriptorMethod;
use ust_detector::student::SMOKE_MAX_TRAIN_IMAGES;
use ust_detector::{Preset, StudentTrainingConfig};

/// Caps of one preset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DensePreset {
    pub image_size: usize,
    /// 0: all.
    pub max_train_images: usize,
    pub max_train_vectors: Option<usize>,
}

/// The caps of `preset` for `method` (the table in the module documentation).
pub fn dense_preset(preset: Preset, method: DescriptorMethod) -> DensePreset {
    use DescriptorMethod as M;
    let image_size = StudentTrainingConfig::preset(preset).image_size;
    let (max_train_images, max_train_vectors) = match preset {
        Preset::Paper => (
            0,
            match method {
                M::Knn => Some(50_000),
                M::KMeans | M::Pca => Some(100_000),
                M::OcSvm => Some(5_000),
                M::Ae | M::Vae => None,
            },
        ),
        Preset::Cpu => (
            64,
            Some(match method {
                M::Knn => 10_000,
                M::OcSvm => 2_000,
                M::KMeans | M::Pca | M::Ae | M::Vae => 50_000,
            }),
        ),
        // Capped like the students' smoke preset, so that a cell takes seconds on any data.
        Preset::Smoke => (
            SMOKE_MAX_TRAIN_IMAGES,
            Some(match method {
                M::OcSvm => 500,
                _ => 2_000,
            }),
        ),
    };
    DensePreset {
        image_size,
        max_train_images,
        max_train_vectors,
    }
}

/// The smoke preset's cap on test images of a category (evaluation of the students and of the
/// dense baselines): the 583 shared magnetic tiles took 20 minutes to score at 40×40.
pub const SMOKE_MAX_TEST_IMAGES: usize = 16;

/// At most how many test images of a category `preset` evaluates (0: all).
pub fn max_test_images(preset: Preset) -> usize {
    match preset {
        Preset::Smoke => SMOKE_MAX_TEST_IMAGES,
        Preset::Cpu | Preset::Paper => 0,
    }
}

/// At most `cap` of `items` (0: all), evenly spaced through them: the test samples are
/// sorted by defect type, so every type keeps its share; no seed, the same subset every time.
pub fn evenly_spaced<T: Clone>(items: &[T], cap: usize) -> Vec<T> {
    let n = items.len();
    if cap == 0 || n <= cap {
        return items.to_vec();
    }
    (0..cap).map(|i| items[i * n / cap].clone()).collect()
}

/// The seed streams of the dense baselines, derived from the command's `--seed` with
/// [`ust_baselines::derive_seed`]. Their numbers are part of every cached Table 1 cell: a
/// change draws other subsets and so other figures.
pub mod seed_streams {
    /// The subset of the training images (presets that cap them).
    pub const TRAIN_IMAGES: u64 = 101;
    /// The subset of training descriptor vectors a method is fitted on.
    pub const TRAIN_VECTORS: u64 = 102;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evenly_spaced_keeps_every_group_its_share() {
        // 12 of group 0, 6 of group 1, 6 of group 2 → 4 picked: 2, 1, 1.
        let items: Vec<u8> = [vec![0u8; 12], vec![1; 6], vec![2; 6]].concat();
        let picked = evenly_spaced(&items, 4);
        assert_eq!(picked, [0, 0, 1, 2]);
        assert_eq!(evenly_spaced(&items, 0), items);
        assert_eq!(evenly_spaced(&items[..3], 5), [0, 0, 0]);
        let idx: Vec<usize> = (0..10).collect();
        assert_eq!(evenly_spaced(&idx, 3), [0, 3, 6]);
    }
}
