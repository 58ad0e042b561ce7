//! The detector's main job (METHOD.md §5–§6): train students for every scale of one category
//! of an MVTec-layout folder into a run directory, and read a run directory back as a
//! [`Detector`] that turns images into anomaly maps.
//!
//! A run directory holds `run.toml` (the data, the scales with their teacher files, and the
//! resolved training configuration), one `p<P>.safetensors` per trained scale (teacher,
//! students, target statistics, calibration and summary, so the directory is self-contained),
//! a `p<P>.checkpoint.safetensors` while a scale trains, and `train-summary.json`.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use ust_data::image_io::load_rgb;
use ust_data::{ChwImage, LoadedImage, MvtecCategory, Size};
use ust_models::PatchNet;

use ust_data::files::{write_atomically, write_bytes_atomically};

use crate::checkpoint::load_teacher;
use crate::config::Preset;
use crate::error::{DetectorError, Result};
use crate::observer::TrainingObserver;
use crate::student::{
    ScaleModel, ScaleOutcome, ScalePaths, ScaleTrainer, ScoreTerms, StudentSummary,
    StudentTrainingConfig,
};
use crate::student::{StudentRunStart, StudentStepReport};
use crate::teacher::derive_seed;

const STREAM_SUBSET: u64 = 21;
/// The run directory's description.
pub const RUN_FILE: &str = "run.toml";
/// The training summary of a run directory.
pub const TRAIN_SUMMARY_FILE: &str = "train-summary.json";
/// Thresholds of the (multi-scale) score on the validation images.
pub const VALIDATION_SCORES_FILE: &str = "validation-scores.json";

/// The false-positive rates at which [`ScoreQuantiles`] records thresholds.
pub const QUANTILE_FPRS: [f64; 13] = [
    0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 5e-4, 2e-4, 1e-4, 0.0,
];

/// Thresholds of the anomaly score on anomaly-free validation pixels: `threshold[i]` is the
/// smallest score that at most a fraction `fpr[i]` of those pixels exceed (`fpr = 0`: their
/// maximum). Used to binarise maps at a false-positive rate and to scale heatmaps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreQuantiles {
    /// The receptive fields whose mean score this describes.
    pub scales: Vec<usize>,
    pub images: usize,
    pub pixels: usize,
    pub fpr: Vec<f64>,
    pub threshold: Vec<f64>,
    /// Each validation image's image score (the maximum of its map at the model's size),
    /// ascending: the reference of the per-image verdicts of `ust predict` (runs written
    /// before it: empty).
    #[serde(default)]
    pub image_scores: Vec<f64>,
}

impl ScoreQuantiles {
    /// The table of `scores`: all validation pixels, image after image (`images` equal
    /// parts, whose maxima are the image scores).
    pub fn from_scores(scales: Vec<usize>, images: usize, mut scores: Vec<f32>) -> Result<Self> {
        let mut image_scores: Vec<f64> = if images > 0 && scores.len().is_multiple_of(images) {
            scores
                .chunks(scores.len() / images)
                .map(|c| c.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64)
                .collect()
        } else {
            Vec::new()
        };
        image_scores.sort_by(f64::total_cmp);
        if scores.is_empty() {
            return Err(DetectorError::InvalidConfig("no validation scores".into()));
        }
        if let Some(i) = scores.iter().position(|v| !v.is_finite()) {
            return Err(DetectorError::InvalidConfig(format!(
                "validation score {i} is {}",
                scores[i]
            )));
        }
        scores.sort_by(f32::total_cmp);
        let n = scores.len();
        let threshold = QUANTILE_FPRS
            .iter()
            .map(|&f| {
                // At most floor(f·n) pixels may lie above the threshold.
                let above = (f * n as f64).floor() as usize;
                scores[n - 1 - above.min(n - 1)] as f64
            })
            .collect();
        Ok(Self {
            scales,
            images,
            pixels: n,
            fpr: QUANTILE_FPRS.to_vec(),
            threshold,
            image_scores,
        })
    }

    /// The image-score threshold at image-level false-positive rate `fpr` on the validation
    /// images: the smallest of their scores that at most ⌊fpr · n⌋ of them exceed (below
    /// 1 / n that is their maximum: with few validation images the rate is coarse). `None`
    /// for a run written before the image scores were kept.
    pub fn image_threshold_at(&self, fpr: f64) -> Result<Option<f64>> {
        if !(0.0..1.0).contains(&fpr) {
            return Err(DetectorError::InvalidConfig(format!(
                "image false-positive rate {fpr} is not in [0, 1)"
            )));
        }
        let n = self.image_scores.len();
        if n == 0 {
            return Ok(None);
        }
        let above = ((fpr * n as f64).floor() as usize).min(n - 1);
        Ok(Some(self.image_scores[n - 1 - above]))
    }

    /// The threshold at `fpr`, interpolated linearly between the recorded rates.
    pub fn threshold_at(&self, fpr: f64) -> Result<f64> {
        if !(0.0..=0.5).contains(&fpr) {
            return Err(DetectorError::InvalidConfig(format!(
                "false-positive rate {fpr} is not in [0, 0.5]"
            )));
        }
        for i in 0..self.fpr.len() - 1 {
            let (hi_f, lo_f) = (self.fpr[i], self.fpr[i + 1]);
            if fpr <= hi_f && fpr >= lo_f {
                let t = if hi_f > lo_f {
                    (fpr - lo_f) / (hi_f - lo_f)
                } else {
                    0.0
                };
                return Ok(self.threshold[i + 1] + t * (self.threshold[i] - self.threshold[i + 1]));
            }
        }
        Ok(self.threshold[self.threshold.len() - 1])
    }

    /// The median validation score (fpr 0.5).
    pub fn median(&self) -> f64 {
        self.threshold[0]
    }

    /// The highest validation score.
    pub fn max(&self) -> f64 {
        self.threshold[self.threshold.len() - 1]
    }

    /// Reads `RUN_DIR/validation-scores.json`.
    pub fn read(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(VALIDATION_SCORES_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| DetectorError::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| DetectorError::bad_file(&path, e.to_string()))
    }
}

/// One scale of a run: its receptive field and teacher file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleSpec {
    pub patch_size: usize,
    pub teacher: PathBuf,
}

/// What `run.toml` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// The category folder (MVTec AD layout: `train/good`, `test/*`, `ground_truth/*`).
    pub data: PathBuf,
    pub scales: Vec<ScaleSpec>,
    pub training: StudentTrainingConfig,
}

impl RunSpec {
    /// Validates before any work: the configuration, at least one scale, distinct receptive
    /// fields, every teacher file readable with the receptive field it is listed under.
    pub fn check(&self) -> Result<()> {
        self.training.check()?;
        if self.scales.is_empty() {
            return Err(DetectorError::InvalidConfig("no scales to train".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for s in &self.scales {
            if !seen.insert(s.patch_size) {
                return Err(DetectorError::InvalidConfig(format!(
                    "scale p={} is listed twice",
                    s.patch_size
                )));
            }
            let architecture = PatchNet::read_config(&s.teacher)?;
            if architecture.patch_size != s.patch_size {
                return Err(DetectorError::bad_file(
                    &s.teacher,
                    format!(
                        "this teacher has receptive field {}, not {}",
                        architecture.patch_size, s.patch_size
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Reads `RUN_DIR/run.toml`.
    pub fn read(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(RUN_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| DetectorError::io(&path, e))?;
        toml::from_str(&text).map_err(|e| DetectorError::ConfigFile {
            path,
            reason: e.to_string(),
        })
    }

    fn to_toml(&self) -> Result<String> {
        toml::to_string(self)
            .map_err(|e| DetectorError::InvalidConfig(format!("cannot write run.toml: {e}")))
    }
}

/// What `train-summary.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    pub category: String,
    pub preset: Preset,
    pub train_images: usize,
    pub validation_images: usize,
    /// Every scale's summary (scales trained in an earlier session included).
    pub scales: Vec<StudentSummary>,
    /// Scales copied from another run directory (`reuse`) instead of trained here, with the
    /// file they came from; their summaries (training time included) are that run's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reused: Vec<ReusedScale>,
}

/// A scale [`train_detector`] took from another run directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReusedScale {
    pub patch_size: usize,
    pub from: PathBuf,
}

/// The training and validation images of a run, at the configured size.
pub struct TrainingImages {
    pub train: Vec<ChwImage>,
    pub validation: Vec<ChwImage>,
    pub train_paths: Vec<PathBuf>,
    pub validation_paths: Vec<PathBuf>,
}

/// Splits `train/good` into training and validation images (seeded), keeps at most
/// `max_train_images` training images and `max_validation_images` validation images (seeded
/// subsets), and loads them resized.
pub fn load_training_images(
    category: &MvtecCategory,
    config: &StudentTrainingConfig,
) -> Result<TrainingImages> {
    if category.train_images().len() < 2 {
        return Err(DetectorError::InvalidConfig(format!(
            "{}: train/good needs at least 2 images (training and validation), found {}",
            category.root().display(),
            category.train_images().len()
        )));
    }
    let split = category.split_validation(config.validation_fraction, config.seed)?;
    // A seeded subset of at most `cap` paths (0: all), drawn from its own stream.
    let subset = |mut paths: Vec<PathBuf>, cap: usize, stream: u64| {
        if cap > 0 && paths.len() > cap {
            use rand::SeedableRng;
            use rand::seq::SliceRandom;
            let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(derive_seed(
                config.seed,
                STREAM_SUBSET,
                stream,
            ));
            paths.shuffle(&mut rng);
            paths.truncate(cap);
            paths.sort();
        }
        paths
    };
    let train_paths = subset(split.train, config.max_train_images, 0);
    let validation_paths = subset(split.validation, config.max_validation_images, 1);
    let size = Some(Size::new(
        config.image_size as u32,
        config.image_size as u32,
    ));
    let load = |paths: &[PathBuf]| -> Result<Vec<ChwImage>> {
        Ok(category
            .load(paths, size)?
            .iter()
            .map(|l| l.image.clone())
            .collect())
    };
    Ok(TrainingImages {
        train: load(&train_paths)?,
        validation: load(&validation_paths)?,
        train_paths,
        validation_paths,
    })
}

/// Where [`train_detector`] may take an already trained scale from instead of training it:
/// the `p<P>.safetensors` of another run directory in `reuse` whose `run.toml` names the same
/// data folder (after resolving links), the same resolved training configuration and, for
/// that scale, a teacher file with the same bytes. A scale's training depends on nothing
/// else (its initial weights, order and crops are seeded by the seed and `p`, the split by
/// the seed alone), so such a file is the one this run would train (bit for bit at the same
/// thread count; the weight gradient's per-thread partial sums differ in the last bits
/// otherwise); the first match wins and run directories that do not match are passed over.
pub fn reusable_scale(spec: &RunSpec, scale: &ScaleSpec, reuse: &[PathBuf]) -> Option<PathBuf> {
    let same_path = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if reuse.is_empty() {
        return None;
    }
    // Read only when a candidate names another teacher path (a p = 65 file is ~7 MB).
    let mut ours: Option<Vec<u8>> = None;
    reuse.iter().find_map(|dir| {
        let other = RunSpec::read(dir).ok()?;
        if other.training != spec.training || !same_path(&other.data, &spec.data) {
            return None;
        }
        let theirs = other
            .scales
            .iter()
            .find(|s| s.patch_size == scale.patch_size)?;
        let model = ScalePaths::in_run_dir(dir, scale.patch_size).model;
        let same_teacher = same_path(&theirs.teacher, &scale.teacher) || {
            if ours.is_none() {
                ours = Some(std::fs::read(&scale.teacher).ok()?);
            }
            std::fs::read(&theirs.teacher).ok()? == *ours.as_ref()?
        };
        (same_teacher && model.is_file()).then_some(model)
    })
}

/// Trains every scale of `spec` into `run_dir`. With `resume`, scales whose file exists are
/// kept and a scale with a checkpoint continues from it; without, an existing `run.toml` with
/// a different spec is an error (so a run directory is never silently mixed). A scale that
/// [`reusable_scale`] finds in one of the `reuse` run directories is copied from there
/// instead of trained. Returns `None` when the observer stopped the run.
pub fn train_detector(
    spec: &RunSpec,
    run_dir: &Path,
    resume: bool,
    reuse: &[PathBuf],
    device: &Device,
    observer: &mut dyn TrainingObserver<StudentRunStart, StudentStepReport>,
) -> Result<Option<TrainReport>> {
    spec.check()?;
    let run_file = run_dir.join(RUN_FILE);
    if run_file.is_file() {
        let existing = RunSpec::read(run_dir)?;
        if existing != *spec {
            return Err(DetectorError::ConfigMismatch {
                path: run_file,
                differences: "the run directory was trained with another data folder, scales, \
                              teachers or configuration"
                    .into(),
            });
        }
        if !resume {
            return Err(DetectorError::InvalidConfig(format!(
                "{} already holds a run; pass --resume to continue it or choose another --out",
                run_dir.display()
            )));
        }
    }
    if let Some(report) = finished_run(spec, run_dir)? {
        // Nothing left to do: every scale file predates the thresholds and the summary, so a
        // rerun (a resumed table, say) does not score the validation images again.
        tracing::info!(run_dir = %run_dir.display(), "run already complete, kept");
        return Ok(Some(report));
    }
    // Training reads train/good alone (or a plain folder of good images): no test split needed.
    let category = MvtecCategory::open_for_training(&spec.data)?;
    observer.phase(&format!("loading the images of {}", category.name()));
    let images = load_training_images(&category, &spec.training)?;
    // Written only once the data has loaded: a run that fails on its data (an empty folder,
    // say) leaves no run.toml behind to refuse the next attempt with other options.
    std::fs::create_dir_all(run_dir).map_err(|e| DetectorError::io(run_dir, e))?;
    write_bytes_atomically(&run_file, spec.to_toml()?.as_bytes())?;
    tracing::info!(
        category = category.name(),
        train = images.train.len(),
        validation = images.validation.len(),
        size = spec.training.image_size,
        "training images loaded"
    );
    let mut summaries = Vec::new();
    let mut reused = Vec::new();
    for scale in &spec.scales {
        let paths = ScalePaths::in_run_dir(run_dir, scale.patch_size);
        if paths.model.is_file() {
            let model = ScaleModel::load(&paths.model, device)?;
            tracing::info!(patch_size = scale.patch_size, "scale already trained, kept");
            summaries.push(model.summary);
            continue;
        }
        if let Some(source) = reusable_scale(spec, scale, reuse) {
            write_atomically(
                &paths.model,
                |tmp| {
                    std::fs::copy(&source, tmp)
                        .map(|_| ())
                        .map_err(|e| DetectorError::io(&source, e))
                },
                |p, e| DetectorError::io(p, e),
            )?;
            // Read back: a damaged source is an error naming it, not a broken run.
            let model = ScaleModel::load(&paths.model, device)?;
            tracing::info!(
                patch_size = scale.patch_size,
                from = %source.display(),
                "scale taken from a run with the same data, teacher and training"
            );
            summaries.push(model.summary);
            reused.push(ReusedScale {
                patch_size: scale.patch_size,
                from: source,
            });
            continue;
        }
        let teacher = load_teacher(&scale.teacher, device)?;
        let mut trainer = ScaleTrainer::new(
            spec.training.clone(),
            teacher,
            &scale.teacher,
            &images.train,
            &images.validation,
            paths,
            resume,
            device,
        )?;
        match trainer.run(observer)? {
            ScaleOutcome::Finished(summary) => summaries.push(*summary),
            ScaleOutcome::Stopped { .. } => return Ok(None),
        }
    }
    let detector = Detector::load(run_dir, None, device)?;
    // Each scale's validation scores as its calibration kept them (the same numbers the
    // networks give again); a scale file without them is scored here.
    let n = images.validation.len();
    let pixels = spec.training.image_size * spec.training.image_size;
    let kept: Vec<Option<&[f32]>> = detector
        .scales
        .iter()
        .map(|s| match &s.validation_scores {
            Some((rows, v)) if *rows == n && v.len() == n * pixels => Some(v.as_slice()),
            _ => None,
        })
        .collect();
    let missing: Vec<usize> = detector
        .patch_sizes()
        .into_iter()
        .zip(&kept)
        .filter_map(|(p, k)| k.is_none().then_some(p))
        .collect();
    if !missing.is_empty() {
        observer.phase(&format!(
            "scoring the validation images at p={missing:?} (not kept by their calibration)"
        ));
    }
    let mut scores = Vec::new();
    for (i, image) in images.validation.iter().enumerate() {
        let mut tensor: Option<Tensor> = None;
        let mut per_scale = Vec::with_capacity(kept.len());
        for (scale, kept) in detector.scales.iter().zip(&kept) {
            per_scale.push(match kept {
                Some(v) => v[i * pixels..(i + 1) * pixels].to_vec(),
                None => {
                    let t = match &tensor {
                        Some(t) => t.clone(),
                        None => image.to_tensor(device)?.unsqueeze(0)?,
                    };
                    tensor = Some(t.clone());
                    scale.anomaly_scores(&t)?
                }
            });
        }
        scores.extend(mean_over_scales(&per_scale));
    }
    let quantiles =
        ScoreQuantiles::from_scores(detector.patch_sizes(), images.validation.len(), scores)?;
    write_bytes_atomically(
        &run_dir.join(VALIDATION_SCORES_FILE),
        serde_json::to_string_pretty(&quantiles)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    let report = TrainReport {
        category: category.name().to_string(),
        preset: spec.training.preset,
        train_images: images.train.len(),
        validation_images: images.validation.len(),
        scales: summaries,
        reused,
    };
    write_bytes_atomically(
        &run_dir.join(TRAIN_SUMMARY_FILE),
        serde_json::to_string_pretty(&report)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    Ok(Some(report))
}

/// The stored report of a run whose every scale file exists and whose thresholds and summary
/// were written after all of them; otherwise `None`, after removing a stale threshold and
/// summary file so that a later call cannot mistake them for current ones.
fn finished_run(spec: &RunSpec, run_dir: &Path) -> Result<Option<TrainReport>> {
    let summary_path = run_dir.join(TRAIN_SUMMARY_FILE);
    let thresholds_path = run_dir.join(VALIDATION_SCORES_FILE);
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let scale_times: Option<Vec<_>> = spec
        .scales
        .iter()
        .map(|s| modified(&ScalePaths::in_run_dir(run_dir, s.patch_size).model))
        .collect();
    let stored = match (
        scale_times,
        modified(&summary_path),
        modified(&thresholds_path),
    ) {
        (Some(scales), Some(summary), Some(thresholds)) => {
            let newest_scale = scales.into_iter().max();
            if newest_scale.is_none_or(|t| t <= summary.min(thresholds)) {
                std::fs::read_to_string(&summary_path)
                    .ok()
                    .and_then(|text| serde_json::from_str::<TrainReport>(&text).ok())
                    .filter(|r| r.scales.len() == spec.scales.len())
            } else {
                None
            }
        }
        _ => None,
    };
    if stored.is_none() {
        for path in [&summary_path, &thresholds_path] {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(DetectorError::io(path, e)),
            }
        }
    }
    Ok(stored)
}

/// The pixel-wise mean of equally long score maps (METHOD.md §6: multi-scale).
pub fn mean_over_scales(maps: &[Vec<f32>]) -> Vec<f32> {
    let Some(first) = maps.first() else {
        return Vec::new();
    };
    let k = maps.len() as f32;
    (0..first.len())
        .map(|i| maps.iter().map(|m| m[i]).sum::<f32>() / k)
        .collect()
}

/// A trained detector: the scales of a run directory.
#[derive(Debug, Clone)]
pub struct Detector {
    pub spec: RunSpec,
    pub scales: Vec<ScaleModel>,
    /// The terms each scale's score sums ([`ScoreTerms::Both`] unless set for an ablation).
    pub score_terms: ScoreTerms,
}

/// An anomaly map at an image's own size and at the model's size.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// Row-major scores at the model's `image_size × image_size`.
    pub model_scores: Vec<f32>,
    /// Every scale's scores at the model's size (order of [`Detector::patch_sizes`]).
    pub per_scale: Vec<Vec<f32>>,
    pub model_size: usize,
    /// The image as loaded (pixels at the model's size, and its original size).
    pub image: LoadedImage,
}

impl Detector {
    /// Loads every trained scale of `run_dir`, or only those in `only` (receptive fields).
    pub fn load(run_dir: &Path, only: Option<&[usize]>, device: &Device) -> Result<Self> {
        let spec = RunSpec::read(run_dir)?;
        let mut scales = Vec::new();
        for s in &spec.scales {
            if only.is_some_and(|o| !o.contains(&s.patch_size)) {
                continue;
            }
            let path = ScalePaths::in_run_dir(run_dir, s.patch_size).model;
            if !path.is_file() {
                return Err(DetectorError::bad_file(
                    &path,
                    format!(
                        "scale p={} is not trained yet (run ust train --resume)",
                        s.patch_size
                    ),
                ));
            }
            scales.push(ScaleModel::load(&path, device)?);
        }
        if let Some(o) = only {
            for p in o {
                if !scales.iter().any(|s| s.patch_size() == *p) {
                    return Err(DetectorError::InvalidConfig(format!(
                        "{} has no scale p={p} (it has {:?})",
                        run_dir.display(),
                        spec.scales.iter().map(|s| s.patch_size).collect::<Vec<_>>()
                    )));
                }
            }
        }
        if scales.is_empty() {
            return Err(DetectorError::InvalidConfig(format!(
                "{} has no trained scale",
                run_dir.display()
            )));
        }
        Ok(Self {
            spec,
            scales,
            score_terms: ScoreTerms::Both,
        })
    }

    /// The receptive fields of the loaded scales.
    pub fn patch_sizes(&self) -> Vec<usize> {
        self.scales.iter().map(ScaleModel::patch_size).collect()
    }

    /// The validation thresholds of the run directory when they describe exactly the loaded
    /// scales (`None` for another subset).
    pub fn quantiles(&self, run_dir: &Path) -> Result<Option<ScoreQuantiles>> {
        // The kept thresholds are of the full score; they say nothing about one term alone.
        if self.score_terms != ScoreTerms::Both {
            return Ok(None);
        }
        let q = ScoreQuantiles::read(run_dir)?;
        Ok((q.scales == self.patch_sizes()).then_some(q))
    }

    /// The side images are resized to.
    pub fn image_size(&self) -> usize {
        self.spec.training.image_size
    }

    /// The anomaly scores of an image already at the model's size: per scale the normalised
    /// score of METHOD.md §6, then their mean over the scales.
    ///
    /// # Shapes
    /// `image` (1, 3, S, S) → S·S scores, row-major
    pub fn scores(&self, image: &Tensor) -> Result<Vec<f32>> {
        Ok(mean_over_scales(&self.scores_per_scale(image)?))
    }

    /// Every scale's normalised scores (in the order of [`Detector::patch_sizes`]).
    ///
    /// # Shapes
    /// `image` (1, 3, S, S) → per scale S·S scores, row-major
    pub fn scores_per_scale(&self, image: &Tensor) -> Result<Vec<Vec<f32>>> {
        Ok(self.scores_per_term(image, &[self.score_terms])?.remove(0))
    }

    /// Every scale's normalised scores under each of `terms` (`[term][scale]`), each scale's
    /// networks run once for all of them.
    ///
    /// # Shapes
    /// `image` (1, 3, S, S) → per term, per scale S·S scores, row-major
    pub fn scores_per_term(
        &self,
        image: &Tensor,
        terms: &[ScoreTerms],
    ) -> Result<Vec<Vec<Vec<f32>>>> {
        let mut out = vec![Vec::with_capacity(self.scales.len()); terms.len()];
        for scale in &self.scales {
            for (t, map) in scale
                .anomaly_scores_for(image, terms)?
                .into_iter()
                .enumerate()
            {
                out[t].push(map);
            }
        }
        Ok(out)
    }

    /// Loads an image file, resizes it to the model's size and scores it.
    pub fn predict_file(&self, path: &Path, device: &Device) -> Result<Prediction> {
        Ok(self
            .predict_file_terms(path, device, &[self.score_terms])?
            .remove(0))
    }

    /// [`Detector::predict_file`] under each of `terms` (one prediction per entry; the
    /// networks run once).
    pub fn predict_file_terms(
        &self,
        path: &Path,
        device: &Device,
        terms: &[ScoreTerms],
    ) -> Result<Vec<Prediction>> {
        let size = self.image_size();
        let image = load_rgb(path, Some(Size::new(size as u32, size as u32)))?;
        let tensor = image.image.to_tensor(device)?.unsqueeze(0)?;
        Ok(self
            .scores_per_term(&tensor, terms)?
            .into_iter()
            .map(|per_scale| Prediction {
                model_scores: mean_over_scales(&per_scale),
                per_scale,
                model_size: size,
                image: image.clone(),
            })
            .collect())
    }

    /// The prediction of an image file from per-scale scores computed earlier by
    /// [`Detector::predict_file`] (an interrupted evaluation's): the image is loaded for its
    /// size and pixels, the networks are not run. Scores of another shape are an error.
    pub fn prediction_from_scores(
        &self,
        path: &Path,
        per_scale: Vec<Vec<f32>>,
    ) -> Result<Prediction> {
        let size = self.image_size();
        if per_scale.len() != self.scales.len() || per_scale.iter().any(|m| m.len() != size * size)
        {
            return Err(DetectorError::InvalidConfig(format!(
                "{}: stored scores do not match {} scale(s) at {size}×{size}",
                path.display(),
                self.scales.len()
            )));
        }
        let image = load_rgb(path, Some(Size::new(size as u32, size as u32)))?;
        Ok(Prediction {
            model_scores: mean_over_scales(&per_scale),
            per_scale,
            model_size: size,
            image,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_quantiles_follow_the_false_positive_rate() {
        // Scores 1..=1000 (shuffled): at most floor(f·1000) of them may lie above the threshold.
        let mut scores: Vec<f32> = (1..=1000).map(|v| v as f32).collect();
        scores.reverse();
        let q = ScoreQuantiles::from_scores(vec![33], 2, scores).unwrap();
        assert_eq!(q.pixels, 1000);
        assert_eq!(q.median(), 500.0); // 500 scores above 500
        assert_eq!(q.max(), 1000.0);
        let at = |f: f64| q.threshold[q.fpr.iter().position(|&x| x == f).unwrap()];
        assert_eq!(at(0.001), 999.0);
        assert_eq!(at(0.002), 998.0);
        assert_eq!(at(0.1), 900.0);
        // Between recorded rates: linear.
        assert!((q.threshold_at(0.0015).unwrap() - 998.5).abs() < 1e-9);
        assert_eq!(q.threshold_at(0.1).unwrap(), 900.0);
        assert!(q.threshold_at(0.7).is_err());
        // Two images of 500 pixels: image scores 1000 (the first) and 500, ascending.
        assert_eq!(q.image_scores, [500.0, 1000.0]);
        assert_eq!(q.image_threshold_at(0.0).unwrap(), Some(1000.0));
        assert_eq!(q.image_threshold_at(0.49).unwrap(), Some(1000.0));
        assert_eq!(q.image_threshold_at(0.5).unwrap(), Some(500.0));
        assert!(q.image_threshold_at(1.0).is_err());
        assert!(ScoreQuantiles::from_scores(vec![33], 1, vec![1.0, f32::NAN]).is_err());
        assert!(ScoreQuantiles::from_scores(vec![33], 0, vec![]).is_err());
    }

    #[test]
    fn multi_scale_is_the_pixelwise_mean() {
        let m = mean_over_scales(&[vec![1.0, 2.0], vec![3.0, 6.0], vec![2.0, 1.0]]);
        assert_eq!(m, vec![2.0, 3.0]);
        assert!(mean_over_scales(&[]).is_empty());
    }
}
