//! Training a run directory: the seeded split of `train/good` into training and validation
//! images, every scale's students (or a scale taken from a matching run), and the thresholds
//! and summary written once every scale is done.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use ust_data::files::{write_atomically, write_bytes_atomically};
use ust_data::{ChwImage, MvtecCategory, Size};

use super::{
    Detector, RUN_FILE, ReusedScale, RunSpec, ScaleSpec, ScoreQuantiles, TRAIN_SUMMARY_FILE,
    TrainReport, VALIDATION_SCORES_FILE, mean_over_scales,
};
use crate::error::{DetectorError, Result};
use crate::student::{
    ScaleModel, ScaleOutcome, ScalePaths, ScaleTrainer, StudentRunStart, StudentStepReport,
    StudentTrainingConfig,
};
use crate::teacher::load_teacher;
use crate::training::init::derive_seed;
use crate::training::observer::TrainingObserver;

const STREAM_SUBSET: u64 = 21;

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
    // A seeded subset of at most `cap` paths (0: all), drawn from its own stream: a shuffle of
    // the same length with the same generator and seed as the path shuffle of earlier
    // versions, so the same images (cached runs stay valid).
    let subset = |paths: Vec<PathBuf>, cap: usize, stream: u64| {
        if cap == 0 || paths.len() <= cap {
            return paths;
        }
        let seed = derive_seed(config.seed, STREAM_SUBSET, stream);
        let mut picked: Vec<PathBuf> = ust_data::split::seeded_subset(paths.len(), cap, seed)
            .into_iter()
            .map(|i| paths[i].clone())
            .collect();
        picked.sort();
        picked
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
