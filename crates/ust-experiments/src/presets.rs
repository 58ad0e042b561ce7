//! The work caps of the two baseline protocols of the paper's tables, per preset: Table 1's
//! dense baselines (`ust baseline dense`) and Table 2's one-class cells (`ust oneclass`). The
//! commands run them; the runner's cost model reads them (one definition each).
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
//! The paper caps are `BaselineConfig::paper`'s. This table is [`ust_engine::presets`]'s,
//! re-exported here: the engine runs the protocol, the runner's cost model reads the same caps.
//!
//! ## One-class cells (Table 2)
//!
//! | preset | test images | students: training / validation images | students: schedule | baselines: training images |
//! |---|---|---|---|---|
//! | paper | all 10 000 | 90 % / 10 % of class K (seeded) | M = 5, batch 1, 100 epochs, lr 1e-4 | all of class K (OC-SVM: ≤ 5 000) |
//! | cpu | 2 000, a seeded random subset (not stratified) | ≤ 300 / ≤ 200 of the 90 % / 10 % split | M = 5, batch 16, 6 epochs, lr 5e-4 | ≤ 1 000 (seeded) |
//! | smoke | 200 (seeded) | ≤ 24 / ≤ 8 of a 75 % / 25 % split | M = 2, batch 4, 10 epochs, lr 1e-3 | ≤ 200 |
//!

use ust_detector::Preset;

// Table 1's caps are defined once, in the engine that runs the protocol; the cost model reads
// them from there (this crate may depend on the engine, never the reverse).
pub use ust_engine::presets::{
    DensePreset, SMOKE_MAX_TEST_IMAGES, dense_preset, evenly_spaced, max_test_images,
};

/// Subset sizes of one preset (0: all).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OneClassPreset {
    pub test_images: usize,
    pub validation_fraction: f64,
    pub student_train_images: usize,
    pub student_validation_images: usize,
    pub baseline_train_images: usize,
}

/// The subset sizes of `preset` (the table in the module documentation).
pub fn oneclass_preset(preset: Preset) -> OneClassPreset {
    match preset {
        Preset::Paper => OneClassPreset {
            test_images: 0,
            validation_fraction: 0.1,
            student_train_images: 0,
            student_validation_images: 0,
            baseline_train_images: 0,
        },
        Preset::Cpu => OneClassPreset {
            test_images: 2000,
            validation_fraction: 0.1,
            student_train_images: 300,
            student_validation_images: 200,
            baseline_train_images: 1000,
        },
        // Bounded, so that a smoke cell takes seconds on the real MNIST and CIFAR-10 too (it
        // took every image: a students cell ran for more than 13 minutes on MNIST); on the
        // tests' small generated sets the caps do not bind.
        Preset::Smoke => OneClassPreset {
            test_images: 200,
            validation_fraction: 0.25,
            student_train_images: 24,
            student_validation_images: 8,
            baseline_train_images: 200,
        },
    }
}
