//! From a scorer's model-size scores to what people and programs read: the map at the image's
//! own size, the thresholds of a trained run, and the files of a map (32-bit float TIFF for
//! `ust eval` and the official MVTec script, NPY for programs, heatmap and overlay PNGs for
//! people, binary masks at a threshold).

use std::path::{Path, PathBuf};

use ust_data::maps::{
    resize_bilinear, write_heatmap_png, write_map_npy, write_map_tiff, write_mask_png,
    write_overlay_png,
};
use ust_data::{AnomalyMap, Size};
use ust_detector::Detector;
use ust_detector::pipeline::ScoreQuantiles;

use crate::error::{EngineError, Result};

/// A row-major `side`×`side` score map (a scorer's output at the model's size) resized
/// bilinearly to the image's own size.
pub fn resize_to_original(scores: &[f32], side: usize, original: Size) -> Result<AnomalyMap> {
    let map = AnomalyMap::new(side, side, scores.to_vec())?;
    Ok(resize_bilinear(
        &map,
        original.width as usize,
        original.height as usize,
    )?)
}

/// The image score of a map: its maximum (what `summary.csv` and the gallery show).
pub fn max_score(scores: &[f32]) -> f64 {
    scores.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64
}

/// The validation thresholds of `run_dir` for the detector's loaded scales, and the mask
/// threshold that `threshold` (a score) or `fpr` (a false-positive rate on the validation
/// pixels) asks for.
pub fn thresholds(
    detector: &Detector,
    run_dir: &Path,
    threshold: Option<f32>,
    fpr: Option<f64>,
) -> Result<(Option<ScoreQuantiles>, Option<f32>)> {
    // A run trained before the thresholds were kept has none: maps are still written.
    let quantiles = detector.quantiles(run_dir).ok().flatten();
    let threshold = match (threshold, fpr) {
        (Some(t), _) => Some(t),
        (None, Some(f)) => match &quantiles {
            Some(q) => Some(q.threshold_at(f)? as f32),
            None => {
                return Err(EngineError::Invalid(format!(
                    "{} has no validation thresholds for the scales {:?}; pass --threshold",
                    run_dir.display(),
                    detector.patch_sizes()
                )));
            }
        },
        (None, None) => None,
    };
    Ok((quantiles, threshold))
}

/// What is written per image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum OutputFormat {
    /// `NAME_heatmap.png` and `NAME_overlay.png` (the heatmap over the image).
    Png,
    /// `NAME.tiff`: the scores, 32-bit float.
    Tiff,
    /// `NAME.npy`: the scores, little-endian f32, shape (height, width).
    Npy,
}

/// How maps are written: formats, the heatmap's colour range and the mask threshold.
#[derive(Debug, Clone)]
pub struct MapWriter {
    pub formats: Vec<OutputFormat>,
    /// Scores at or below `lo` are dark, at or above `hi` bright.
    pub lo: f32,
    pub hi: f32,
    pub threshold: Option<f32>,
}

/// Heatmap opacity over the image at the top of the colour range (scaled down with the score:
/// `write_overlay_png`).
const OVERLAY_ALPHA: f32 = 0.8;

impl MapWriter {
    /// The colour range from the validation scores: the median normal pixel is dark, twice the
    /// highest normal score is bright (so what no normal pixel reaches stands out). Without
    /// validation scores, 0 to 8 (the scores are sums of two standardised terms).
    pub fn new(
        formats: Vec<OutputFormat>,
        quantiles: Option<&ScoreQuantiles>,
        threshold: Option<f32>,
    ) -> Self {
        let (lo, hi) = match quantiles {
            Some(q) => {
                let lo = q.median() as f32;
                let hi = (2.0 * q.max() as f32).max(lo + 1.0);
                (lo, hi)
            }
            None => (0.0, 8.0),
        };
        Self {
            formats,
            lo,
            hi,
            threshold,
        }
    }

    /// Writes the outputs of one image: `base` is the output path without extension, `source`
    /// the image (decoded for the overlay).
    pub fn write(&self, base: &Path, map: &AnomalyMap, source: &Path) -> Result<()> {
        if let Some(dir) = base.parent() {
            std::fs::create_dir_all(dir).map_err(EngineError::io("creating", dir))?;
        }
        let with = |suffix: &str| with_suffix(base, suffix);
        for f in &self.formats {
            match f {
                OutputFormat::Tiff => write_map_tiff(with(".tiff"), map)?,
                OutputFormat::Npy => write_map_npy(with(".npy"), map)?,
                OutputFormat::Png => {
                    write_heatmap_png(with("_heatmap.png"), map, self.lo, self.hi)?;
                    let image = ust_data::image_io::decode_image(source)?.to_rgb8();
                    write_overlay_png(
                        with("_overlay.png"),
                        &image,
                        map,
                        self.lo,
                        self.hi,
                        OVERLAY_ALPHA,
                    )?;
                }
            }
        }
        if let Some(t) = self.threshold {
            write_mask_png(with("_mask.png"), map, t)?;
        }
        Ok(())
    }
}

/// `base` with `suffix` appended to its last component (`a/b` + `.tiff` → `a/b.tiff`; unlike
/// `with_extension`, a dot in the image's name is kept).
pub(crate) fn with_suffix(base: &Path, suffix: &str) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_size_map_comes_back_at_the_images_size() {
        let map = resize_to_original(&[1.0, 2.0, 3.0, 4.0], 2, Size::new(4, 2)).unwrap();
        assert_eq!((map.width, map.height), (4, 2));
        // Same size: unchanged.
        let same = resize_to_original(&[1.0, 2.0, 3.0, 4.0], 2, Size::new(2, 2)).unwrap();
        assert_eq!(same.data, [1.0, 2.0, 3.0, 4.0]);
        assert!(resize_to_original(&[1.0; 3], 2, Size::new(2, 2)).is_err());
        assert_eq!(max_score(&[0.5, -1.0, 2.5]), 2.5);
    }

    #[test]
    fn suffixes_keep_dots_in_names() {
        assert_eq!(
            with_suffix(Path::new("a/b.c"), ".tiff"),
            PathBuf::from("a/b.c.tiff")
        );
    }
}
