//! The official MVTec AD evaluation of anyone's anomaly maps read from disk (`ust eval`):
//! AU-PRO up to an FPR limit, pixel AUROC and image AUROC per category, and their mean.
//!
//! Maps lie under `MAPS/CATEGORY/test/DEFECT/NAME.tiff` (32-bit float; `.npy` and the other
//! extensions of [`MAP_EXTENSIONS`] too), one per test image at the image's size (or resampled
//! with `resize`). Ground-truth masks must be binary.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use ust_data::image_io::{decode_image, image_size};
use ust_data::maps::{AnomalyMap, MAP_EXTENSIONS, find_map, read_map, resize_bilinear};
use ust_data::{MvtecCategory, TestSample, discover_categories};
use ust_metrics::{ImageReducer, MetricsError, Plane, SegmentationEvaluator, SegmentationScores};

use crate::error::{Context, EngineError, Result};

/// What `ust eval` evaluates and how.
#[derive(Debug, Clone)]
pub struct MapsEvalConfig {
    /// Dataset root in the MVTec AD layout (a folder of categories, or one category).
    pub data: PathBuf,
    /// Root of the anomaly maps.
    pub maps: PathBuf,
    /// Only these categories; empty: every category found.
    pub categories: Vec<String>,
    /// Upper limit of the false-positive rate for AU-PRO.
    pub fpr_limit: f64,
    /// Image score from a map.
    pub image_score: ImageReducer,
    /// Resample maps of another size than their image (bilinear) instead of failing.
    pub resize: bool,
}

impl MapsEvalConfig {
    /// Every category of `data` against the maps under `maps`, with the protocol's defaults
    /// (FPR limit 0.3, image score the map's maximum, no resampling).
    pub fn new(data: impl Into<PathBuf>, maps: impl Into<PathBuf>) -> Self {
        Self {
            data: data.into(),
            maps: maps.into(),
            categories: Vec::new(),
            fpr_limit: 0.3,
            image_score: ImageReducer::Max,
            resize: false,
        }
    }
}

/// The numbers of one category, as printed and written to JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CategoryResult {
    pub category: String,
    pub au_pro: f64,
    pub pixel_auroc: f64,
    pub image_auroc: Option<f64>,
    pub n_images: usize,
    pub n_regions: usize,
    pub seconds: f64,
}

/// The mean over the categories (the image AUROC only when every category has one).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mean {
    pub au_pro: f64,
    pub pixel_auroc: f64,
    pub image_auroc: Option<f64>,
}

/// What `ust eval` reports (and writes with `--json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    pub fpr_limit: f64,
    pub image_score: String,
    pub categories: Vec<CategoryResult>,
    pub mean: Mean,
}

impl EvalReport {
    /// The report as `ust eval` prints it: a Markdown table, one row per category and the
    /// mean.
    pub fn markdown(&self) -> String {
        use crate::report::fmt_opt;
        let mut s = format!(
            "| category | AU-PRO (FPR ≤ {}) | pixel AUROC | image AUROC ({}) | images | regions | seconds |\n|---|---|---|---|---|---|---|\n",
            self.fpr_limit, self.image_score
        );
        for c in &self.categories {
            s += &format!(
                "| {} | {:.4} | {:.4} | {} | {} | {} | {:.2} |\n",
                c.category,
                c.au_pro,
                c.pixel_auroc,
                fmt_opt(c.image_auroc),
                c.n_images,
                c.n_regions,
                c.seconds
            );
        }
        s += &format!(
            "| **mean** | **{:.4}** | **{:.4}** | **{}** | | | |\n",
            self.mean.au_pro,
            self.mean.pixel_auroc,
            fmt_opt(self.mean.image_auroc)
        );
        s
    }
}

/// Evaluates every selected category of `config.data`.
pub fn evaluate_maps(config: &MapsEvalConfig) -> Result<EvalReport> {
    let mut dirs = discover_categories(&config.data).map_err(|source| EngineError::NoDataset {
        root: config.data.clone(),
        source: Box::new(source),
    })?;
    if !config.categories.is_empty() {
        for wanted in &config.categories {
            if !dirs.iter().any(|d| dir_name(d) == *wanted) {
                return Err(EngineError::CategoryNotFound {
                    wanted: wanted.clone(),
                    root: config.data.clone(),
                    found: dirs.iter().map(|d| dir_name(d)).collect(),
                });
            }
        }
        dirs.retain(|d| config.categories.contains(&dir_name(d)));
    }
    let mut categories = Vec::new();
    for dir in &dirs {
        let category = MvtecCategory::open(dir)?;
        let start = Instant::now();
        let scores = evaluate_category(&category, &config.maps, config)?;
        let seconds = start.elapsed().as_secs_f64();
        tracing::info!(
            "{}: AU-PRO {:.4} in {seconds:.2} s",
            category.name(),
            scores.au_pro
        );
        categories.push(CategoryResult {
            category: category.name().to_string(),
            au_pro: scores.au_pro,
            pixel_auroc: scores.pixel_auroc,
            image_auroc: scores.image_auroc,
            n_images: scores.n_images,
            n_regions: scores.n_regions,
            seconds,
        });
    }
    let n = categories.len() as f64;
    let mean = Mean {
        au_pro: categories.iter().map(|c| c.au_pro).sum::<f64>() / n,
        pixel_auroc: categories.iter().map(|c| c.pixel_auroc).sum::<f64>() / n,
        image_auroc: categories
            .iter()
            .map(|c| c.image_auroc)
            .sum::<Option<f64>>()
            .map(|s| s / n),
    };
    Ok(EvalReport {
        fpr_limit: config.fpr_limit,
        image_score: config.image_score.to_string(),
        categories,
        mean,
    })
}

fn dir_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Loads the maps of a category in parallel (a bounded number of images at a time, so memory
/// stays at one sort table plus a few maps) and feeds the streaming evaluator.
pub fn evaluate_category(
    category: &MvtecCategory,
    maps_root: &Path,
    config: &MapsEvalConfig,
) -> Result<SegmentationScores> {
    let mut evaluator = SegmentationEvaluator::new(config.fpr_limit, config.image_score)?;
    let samples = category.test_samples();
    let chunk = 4 * rayon::current_num_threads().max(1);
    let start = Instant::now();
    for block in samples.chunks(chunk) {
        let loaded: Vec<(AnomalyMap, Option<MaskPixels>)> = block
            .par_iter()
            .map(|s| load_pair(category, s, maps_root, config.resize))
            .collect::<Result<_>>()?;
        let planes = loaded
            .iter()
            .map(|(map, mask)| {
                let mask = match mask {
                    Some(m) => Some(Plane::new(&m.data, m.width, m.height)?),
                    None => None,
                };
                Ok((Plane::new(&map.data, map.width, map.height)?, mask))
            })
            .collect::<std::result::Result<Vec<_>, MetricsError>>()?;
        if let Err(e) = evaluator.push_batch(&planes) {
            // The error's image index counts from the first image of the category.
            let name = match &e {
                MetricsError::NonFinite { index, .. }
                | MetricsError::SizeMismatch { index, .. } => samples
                    .get(*index)
                    .map(|s| format!("anomaly map of {}", s.path.display()))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            return Err(e).context_with(|| name);
        }
    }
    tracing::debug!(
        "{}: {} maps read in {:.2} s",
        category.name(),
        samples.len(),
        start.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    let scores = evaluator
        .finish()
        .context_with(|| format!("category {}", category.name()))?;
    tracing::debug!(
        "{}: sorted and integrated {} pixels in {:.2} s",
        category.name(),
        scores.n_pixels,
        start.elapsed().as_secs_f64()
    );
    Ok(scores)
}

/// A binary ground-truth mask: 1 where the defect is, 0 elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskPixels {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

/// A test image's anomaly map from under `maps_root` (resampled to the image's size when
/// `resize`; otherwise another size is an error) and its ground-truth mask (none for a good
/// image).
pub fn load_pair(
    category: &MvtecCategory,
    sample: &TestSample,
    maps_root: &Path,
    resize: bool,
) -> Result<(AnomalyMap, Option<MaskPixels>)> {
    let size = image_size(&sample.path)?;
    let (w, h) = (size.width as usize, size.height as usize);
    let map_dir = maps_root
        .join(category.name())
        .join("test")
        .join(&sample.defect_type);
    let Some(map_path) = find_map(&map_dir, sample.name()) else {
        return Err(EngineError::MissingMap {
            image: sample.path.clone(),
            expected: map_dir.join(format!("{}.tiff", sample.name())),
            other_extensions: MAP_EXTENSIONS[1..].iter().map(|e| e.to_string()).collect(),
        });
    };
    let mut map = read_map(&map_path)?;
    if (map.width, map.height) != (w, h) {
        if !resize {
            return Err(EngineError::MapSize {
                map: map_path,
                map_w: map.width,
                map_h: map.height,
                image: sample.path.clone(),
                image_w: w,
                image_h: h,
            });
        }
        map = resize_bilinear(&map, w, h)
            .context_with(|| format!("{}: cannot resample the map", map_path.display()))?;
    }
    let mask = match &sample.mask_path {
        None if sample.is_good() => None,
        None => {
            return Err(EngineError::DefectWithoutMask {
                image: sample.path.clone(),
            });
        }
        Some(p) => {
            let m = read_binary_mask(p)?;
            if (m.width, m.height) != (w, h) {
                return Err(EngineError::MaskSize {
                    mask: p.clone(),
                    mask_w: m.width,
                    mask_h: m.height,
                    image: sample.path.clone(),
                    image_w: w,
                    image_h: h,
                });
            }
            Some(m)
        }
    };
    Ok((map, mask))
}

/// Reads a ground-truth mask, which must be binary: only 0 and one other grey level (255 in
/// MVTec AD). Unlike the students' training data, a mask of three levels is an error here: the
/// protocol's regions would depend on a threshold nobody chose.
pub fn read_binary_mask(path: &Path) -> Result<MaskPixels> {
    let gray = decode_image(path)?.to_luma8();
    let (width, height) = (gray.width() as usize, gray.height() as usize);
    let mut on = None;
    for &v in gray.as_raw() {
        if v != 0 {
            match on {
                None => on = Some(v),
                Some(o) if o != v => {
                    return Err(EngineError::MaskNotBinary {
                        path: path.to_path_buf(),
                        first: o,
                        second: v,
                    });
                }
                _ => {}
            }
        }
    }
    let data = gray
        .into_raw()
        .into_iter()
        .map(|v| u8::from(v != 0))
        .collect();
    Ok(MaskPixels {
        width,
        height,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn save_gray(path: &Path, w: u32, h: u32, data: Vec<u8>) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::GrayImage::from_raw(w, h, data)
            .unwrap()
            .save(path)
            .unwrap();
    }

    /// A category `widget` of 4×4 images: two good, one defect with the left half masked.
    fn category(root: &Path) -> PathBuf {
        let dir = root.join("widget");
        save_gray(&dir.join("train/good/t0.png"), 4, 4, vec![0; 16]);
        save_gray(&dir.join("test/good/g0.png"), 4, 4, vec![0; 16]);
        save_gray(&dir.join("test/good/g1.png"), 4, 4, vec![0; 16]);
        save_gray(&dir.join("test/cut/c0.png"), 4, 4, vec![0; 16]);
        let mask: Vec<u8> = (0..16).map(|i| if i % 4 < 2 { 255 } else { 0 }).collect();
        save_gray(&dir.join("ground_truth/cut/c0_mask.png"), 4, 4, mask);
        dir
    }

    fn write_map(maps: &Path, rel: &str, w: usize, h: usize, data: Vec<f32>) {
        let path = maps.join(format!("widget/test/{rel}.tiff"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        ust_data::maps::write_map_tiff(&path, &AnomalyMap::new(w, h, data).unwrap()).unwrap();
    }

    #[test]
    fn perfect_maps_score_one_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        category(dir.path());
        let maps = dir.path().join("maps");
        write_map(&maps, "good/g0", 4, 4, vec![0.0; 16]);
        write_map(&maps, "good/g1", 4, 4, vec![0.1; 16]);
        let defect: Vec<f32> = (0..16).map(|i| if i % 4 < 2 { 1.0 } else { 0.0 }).collect();
        write_map(&maps, "cut/c0", 4, 4, defect);
        let report = evaluate_maps(&MapsEvalConfig::new(dir.path(), &maps)).unwrap();
        assert_eq!(report.categories.len(), 1);
        let c = &report.categories[0];
        assert_eq!((c.n_images, c.n_regions), (3, 1));
        assert!((c.au_pro - 1.0).abs() < 1e-9, "{c:?}");
        assert_eq!(c.pixel_auroc, 1.0);
        assert_eq!(c.image_auroc, Some(1.0));
        // The report reads back as it was written.
        let back: EvalReport =
            serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
        assert_eq!(back.mean.au_pro, report.mean.au_pro);

        // A map of another size: an error naming it, unless resampled.
        write_map(&maps, "good/g1", 2, 2, vec![0.1; 4]);
        let err = evaluate_maps(&MapsEvalConfig::new(dir.path(), &maps)).unwrap_err();
        assert!(matches!(err, EngineError::MapSize { .. }), "{err}");
        let resized = MapsEvalConfig {
            resize: true,
            ..MapsEvalConfig::new(dir.path(), &maps)
        };
        assert!(evaluate_maps(&resized).is_ok());

        // A missing map and an unknown category.
        std::fs::remove_file(maps.join("widget/test/cut/c0.tiff")).unwrap();
        let err = evaluate_maps(&resized).unwrap_err().to_string();
        assert!(
            err.contains("missing anomaly map") && err.contains("c0.tiff"),
            "{err}"
        );
        let unknown = MapsEvalConfig {
            categories: vec!["nope".into()],
            ..resized
        };
        let err = evaluate_maps(&unknown).unwrap_err().to_string();
        assert!(err.contains("'nope'") && err.contains("widget"), "{err}");
    }

    #[test]
    fn masks_must_be_binary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.png");
        save_gray(&path, 2, 2, vec![0, 255, 255, 0]);
        let m = read_binary_mask(&path).unwrap();
        assert_eq!(m.data, [0, 1, 1, 0]);
        save_gray(&path, 2, 2, vec![0, 255, 128, 0]);
        let err = read_binary_mask(&path).unwrap_err().to_string();
        assert!(err.contains("not binary") && err.contains("m.png"), "{err}");
    }
}
