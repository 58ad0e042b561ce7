//! Which image and which window of its dense output a student trains on at each step.
//!
//! Two settings decide it, both recorded in the run's training configuration:
//!
//! - [`CropCoverage`]: where the crop may lie. With [`CropCoverage::Inside`] (origins uniform
//!   over `0..=size − side`, what runs before the setting did) a pixel in the middle of a
//!   128-pixel image lies in a 32-pixel crop about 32 times as often as a corner pixel: over 580
//!   steps a central output pixel was trained about 63 times, a corner almost never, and the
//!   students' maps lit up along the border. [`CropCoverage::Uniform`] draws origins from
//!   `−(side − 1)..=size − 1` and clips the window to the image, so every output pixel lies in
//!   exactly `side` of the `size + side − 1` possible windows per axis: equally often.
//! - [`StudentSampling`]: whether all students see the same image and crop at a step (the
//!   order of runs before the setting) or each draws its own, seeded by its index, so the
//!   ensemble's members differ by more than their initial weights.
//!
//! Every draw derives from the seed, the receptive field, the step and (per student) the
//! student's index, so a resumed run draws what the uninterrupted run would have.

use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::DetectorError;
use crate::training::init::derive_seed;

const STREAM_ORDER: u64 = 12;
const STREAM_CROP: u64 = 13;
/// Added to a stream (times the student's index + 1) when each student draws its own; above
/// every `stream + 100·p` of the shared draws (p < 100).
const STUDENT_STREAM_STRIDE: u64 = 10_000;

/// Where the random crop of the dense output may lie (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CropCoverage {
    /// Whole crops inside the image: the border is under-trained (runs written before the
    /// setting).
    #[default]
    Inside,
    /// Origins from `−(side − 1)..=size − 1`, the window clipped to the image: every output
    /// pixel equally often. The loss of a clipped window is weighted by its share of a whole
    /// crop, so every pixel also weighs the same in expectation, as in whole-image training.
    Uniform,
}

/// Whether the students of a scale share their image order and crops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StudentSampling {
    /// Every student trains on the same image and crop at a step (runs written before the
    /// setting).
    #[default]
    Shared,
    /// Each student its own image order and crops, seeded by its index.
    PerStudent,
}

macro_rules! named_enum {
    ($ty:ident, $what:literal, $($variant:ident => $name:literal),+) => {
        impl $ty {
            /// Every value.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The name in configuration files and on the command line.
            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = DetectorError;

            fn from_str(s: &str) -> Result<Self, DetectorError> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.name() == s.trim())
                    .ok_or_else(|| {
                        let names: Vec<&str> = Self::ALL.iter().map(|v| v.name()).collect();
                        DetectorError::InvalidConfig(format!(
                            concat!("unknown ", $what, " {:?}: expected {}"),
                            s,
                            names.join(" or ")
                        ))
                    })
            }
        }
    };
}

named_enum!(CropCoverage, "crop coverage", Inside => "inside", Uniform => "uniform");
named_enum!(StudentSampling, "student sampling", Shared => "shared", PerStudent => "per-student");

/// A window of an image's dense output: rows `row..row + height`, columns `col..col + width`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub row: usize,
    pub col: usize,
    pub height: usize,
    pub width: usize,
}

impl Window {
    /// The window's pixels over those of a whole `side × side` crop: the weight of its loss
    /// under [`CropCoverage::Uniform`].
    pub fn share_of(&self, side: usize) -> f64 {
        (self.height * self.width) as f64 / (side * side) as f64
    }
}

/// The draws of one scale's training (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepSampler {
    pub seed: u64,
    pub patch_size: usize,
    pub images: usize,
    pub image_size: usize,
    /// Side of a whole crop (the image size when training on whole images, which every
    /// coverage leaves whole).
    pub side: usize,
    pub coverage: CropCoverage,
    pub sampling: StudentSampling,
}

impl StepSampler {
    fn stream(&self, base: u64, student: usize) -> u64 {
        let shared = base + 100 * self.patch_size as u64;
        match self.sampling {
            StudentSampling::Shared => shared,
            StudentSampling::PerStudent => shared + STUDENT_STREAM_STRIDE * (student as u64 + 1),
        }
    }

    /// The training image and window of step `t` for student `student`.
    pub fn draw(&self, t: usize, student: usize) -> (usize, Window) {
        let n = self.images;
        let (epoch, within) = (t / n, t % n);
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(derive_seed(
            self.seed,
            self.stream(STREAM_ORDER, student),
            epoch as u64,
        ));
        order.shuffle(&mut rng);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(derive_seed(
            self.seed,
            self.stream(STREAM_CROP, student),
            t as u64,
        ));
        let (row, height) = self.axis(&mut rng);
        let (col, width) = self.axis(&mut rng);
        let window = Window {
            row,
            col,
            height,
            width,
        };
        (order[within], window)
    }

    /// Start and length of the window along one axis.
    fn axis(&self, rng: &mut Xoshiro256PlusPlus) -> (usize, usize) {
        let (size, side) = (self.image_size, self.side);
        if side >= size {
            // Whole images (the paper): every pixel in every step, nothing to even out.
            return (0, size);
        }
        match self.coverage {
            CropCoverage::Inside => (rng.random_range(0..=size - side), side),
            CropCoverage::Uniform => {
                let origin = rng.random_range(-(side as i64 - 1)..=size as i64 - 1);
                let start = origin.max(0);
                let end = (origin + side as i64).min(size as i64);
                (start as usize, (end - start) as usize)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(coverage: CropCoverage, sampling: StudentSampling) -> StepSampler {
        StepSampler {
            seed: 5,
            patch_size: 33,
            images: 7,
            image_size: 40,
            side: 12,
            coverage,
            sampling,
        }
    }

    /// Visits per output pixel over many draws: uniform coverage gives every pixel the same
    /// expected count (side² / (size + side − 1)² of the draws), within 4 standard deviations
    /// of a binomial count; the old crops leave the corner pixel at a small fraction of the
    /// centre's.
    #[test]
    fn uniform_crops_visit_every_pixel_equally_often() {
        let draws = 40_000;
        let visits = |s: &StepSampler| {
            let size = s.image_size;
            let mut count = vec![0u32; size * size];
            for t in 0..draws {
                let (_, w) = s.draw(t, 0);
                assert!(w.height >= 1 && w.width >= 1);
                assert!(w.row + w.height <= size && w.col + w.width <= size);
                for r in w.row..w.row + w.height {
                    for c in w.col..w.col + w.width {
                        count[r * size + c] += 1;
                    }
                }
            }
            count
        };
        let s = sampler(CropCoverage::Uniform, StudentSampling::Shared);
        let count = visits(&s);
        let q = (s.side as f64 / (s.image_size + s.side - 1) as f64).powi(2);
        let expected = draws as f64 * q;
        let tolerance = 4.0 * (draws as f64 * q * (1.0 - q)).sqrt();
        for (i, &c) in count.iter().enumerate() {
            assert!(
                (c as f64 - expected).abs() < tolerance,
                "pixel {i}: {c} visits, expected {expected:.0} ± {tolerance:.0}"
            );
        }
        let old = visits(&sampler(CropCoverage::Inside, StudentSampling::Shared));
        let centre = old[20 * 40 + 20] as f64;
        assert!((old[0] as f64) < 0.1 * centre, "{} vs {centre}", old[0]);
    }

    #[test]
    fn whole_crops_keep_their_side_and_every_epoch_is_a_permutation() {
        let s = sampler(CropCoverage::Inside, StudentSampling::Shared);
        for t in 0..50 {
            let (_, w) = s.draw(t, 0);
            assert_eq!((w.height, w.width), (12, 12));
            assert!(w.row <= 28 && w.col <= 28);
        }
        for epoch in 0..3 {
            let mut seen: Vec<usize> = (0..7).map(|i| s.draw(epoch * 7 + i, 0).0).collect();
            seen.sort();
            assert_eq!(seen, (0..7).collect::<Vec<_>>());
        }
        // Whole-image training: one window, the image, whatever the coverage.
        let whole = StepSampler {
            side: 40,
            coverage: CropCoverage::Uniform,
            ..s
        };
        for t in 0..20 {
            let (_, w) = whole.draw(t, 0);
            assert_eq!((w.row, w.col, w.height, w.width), (0, 0, 40, 40));
        }
        assert_eq!(
            Window {
                row: 0,
                col: 0,
                height: 6,
                width: 12
            }
            .share_of(12),
            0.5
        );
    }

    #[test]
    fn students_share_draws_or_have_their_own() {
        let shared = sampler(CropCoverage::Uniform, StudentSampling::Shared);
        let own = sampler(CropCoverage::Uniform, StudentSampling::PerStudent);
        let mut differ = 0;
        for t in 0..100 {
            assert_eq!(shared.draw(t, 0), shared.draw(t, 2));
            differ += usize::from(own.draw(t, 0) != own.draw(t, 1));
            // Draws depend only on (seed, p, step, student): a resumed run repeats them.
            assert_eq!(own.draw(t, 1), own.draw(t, 1));
        }
        assert!(differ > 90, "{differ}");
    }

    #[test]
    fn names_parse_back() {
        for &c in CropCoverage::ALL {
            assert_eq!(c.name().parse::<CropCoverage>().unwrap(), c);
            assert_eq!(toml::Value::try_from(c).unwrap().as_str(), Some(c.name()));
        }
        for &s in StudentSampling::ALL {
            assert_eq!(s.name().parse::<StudentSampling>().unwrap(), s);
            assert_eq!(toml::Value::try_from(s).unwrap().as_str(), Some(s.name()));
        }
        let err = "everywhere"
            .parse::<CropCoverage>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("inside or uniform"), "{err}");
    }
}
