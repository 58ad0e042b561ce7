//! A trained run directory on a category's test split (`ust evaluate`): AU-PRO up to an FPR
//! limit, pixel and image AUROC for every scale alone and for their mean; writes `report.json`,
//! `report.md`, `pro-curve.png` and, on request, the maps (TIFF, MVTec layout), heatmaps and
//! overlays and `report.html`. Each image's scores are kept until the report is written, so an
//! interrupted evaluation resumes ([`crate::resume`]); an identical earlier evaluation's rows
//! are taken instead of scoring ([`crate::reuse`]).

use std::path::{Path, PathBuf};

use ust_data::MvtecCategory;
use ust_detector::pipeline::TRAIN_SUMMARY_FILE;
use ust_detector::{Detector, Device, ScoreTerms};
use ust_metrics::ImageReducer;

use crate::error::{Context, EngineError, Result};
use crate::observer::EvaluationObserver;
use crate::postprocess::{MapWriter, OutputFormat, thresholds};
use crate::presets::{evenly_spaced, max_test_images};
use crate::report::{EvaluationReport, ScoreRow, TermRows};
use crate::resume::{PARTIAL_DIR, PartialScores};
use crate::reuse::{ReuseQuery, reusable_evaluation};
use crate::split::{ImageOutputs, SplitSettings, evaluate_split};
use crate::students::StudentOptions;

/// What `ust evaluate` does.
#[derive(Debug, Clone)]
pub struct EvaluateConfig {
    /// A run directory written by `ust train`.
    pub run_dir: PathBuf,
    /// The category folder [default: the category the run was trained on].
    pub data: Option<PathBuf>,
    /// The report folder [default: RUN_DIR/evaluation].
    pub out: Option<PathBuf>,
    /// Only these receptive fields (default: every trained scale).
    pub scales: Option<Vec<usize>>,
    /// AU-PRO integrates the PRO curve up to this false-positive rate.
    pub fpr_limit: f64,
    /// Image score from a map.
    pub image_score: ImageReducer,
    /// Write the multi-scale maps as TIFF under OUT/maps/<category>/test/<defect>/.
    pub save_maps: bool,
    /// Write heatmap and overlay PNGs under OUT/images/ and OUT/report.html.
    pub images: bool,
    /// Earlier evaluations' folders whose rows may be taken (see [`crate::reuse`]).
    pub reuse: Vec<PathBuf>,
    /// The score terms: the first gives the report's rows, the maps and the images, each
    /// other one its own rows (`term_rows`); the networks run once.
    pub score: Vec<ScoreTerms>,
    /// Stop with an error after scoring this many images (a test hook for resumption).
    pub stop_after: Option<usize>,
}

impl EvaluateConfig {
    /// Every trained scale of `run_dir` on the category it was trained on, with the protocol's
    /// defaults (FPR limit 0.3, max image score, e+v), nothing but the reports written.
    pub fn new(run_dir: impl Into<PathBuf>) -> Self {
        Self {
            run_dir: run_dir.into(),
            data: None,
            out: None,
            scales: None,
            fpr_limit: 0.3,
            image_score: ImageReducer::Max,
            save_maps: false,
            images: false,
            reuse: Vec::new(),
            score: vec![ScoreTerms::Both],
            stop_after: None,
        }
    }

    /// The score terms of the main rows (the first of `score`).
    pub fn main_terms(&self) -> ScoreTerms {
        self.score.first().copied().unwrap_or_default()
    }

    /// The other score terms, each evaluated beside the main rows.
    pub fn other_terms(&self) -> &[ScoreTerms] {
        self.score.get(1..).unwrap_or_default()
    }

    /// Refuses score terms named twice (their rows would be indistinguishable).
    pub fn check(&self) -> Result<()> {
        for (i, t) in self.score.iter().enumerate() {
            if self.score[..i].contains(t) {
                return Err(EngineError::Invalid(format!("--score names {t} twice")));
            }
        }
        Ok(())
    }

    /// The report folder.
    pub fn out_dir(&self) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| self.run_dir.join("evaluation"))
    }
}

/// Predicts, evaluates and writes the report; returns it with the report folder.
pub fn evaluate_run(
    config: &EvaluateConfig,
    device: &Device,
    observer: &mut dyn EvaluationObserver,
) -> Result<(EvaluationReport, PathBuf)> {
    config.check()?;
    let detector = Detector::load(&config.run_dir, config.scales.as_deref(), device)
        .context_with(|| format!("loading {}", config.run_dir.display()))?;
    evaluate_detector(detector, config, device, observer)
}

/// [`evaluate_run`] with the detector already loaded from `config.run_dir` (its scales are
/// those evaluated; `config.scales` is not looked at again, its score terms are set from
/// `config.score`).
pub fn evaluate_detector(
    mut detector: Detector,
    config: &EvaluateConfig,
    device: &Device,
    observer: &mut dyn EvaluationObserver,
) -> Result<(EvaluationReport, PathBuf)> {
    config.check()?;
    detector.score_terms = config.main_terms();
    let data = match &config.data {
        Some(d) => d.clone(),
        None => detector.spec.data.clone(),
    };
    let category = MvtecCategory::open(&data)?;
    let out = config.out_dir();
    std::fs::create_dir_all(&out).map_err(EngineError::io("creating", &out))?;
    let scales = detector.patch_sizes();
    let query = ReuseQuery {
        run_dir: &config.run_dir,
        data: &data,
        scales: &scales,
        fpr_limit: config.fpr_limit,
        image_score: config.image_score,
        score_terms: detector.score_terms,
        other_terms: config.other_terms(),
    };
    // Maps and images need the scores themselves.
    let reused = if config.save_maps || config.images {
        None
    } else {
        reusable_evaluation(&query, &config.reuse)?
    };
    if let Some(reused) = reused {
        tracing::info!(from = %reused.from.display(), "rows taken from an identical evaluation");
        let from = reused.from.display().to_string();
        let (test_images, defect_regions) =
            (reused.report.test_images, reused.report.defect_regions);
        let name = reused.report.category.clone();
        let (rows, term_rows) = reused.rows_for(&query);
        let report = EvaluationReport {
            rows_from: Some(from),
            term_rows,
            ..new_report(
                config,
                &detector,
                &data,
                name,
                (test_images, defect_regions),
                rows,
            )
        };
        // Nothing of an earlier evaluation in this folder may pass for this one's.
        for stale in [out.join("pro-curve.png"), out.join(PARTIAL_DIR)] {
            if stale.is_dir() {
                std::fs::remove_dir_all(&stale)
            } else if stale.is_file() {
                std::fs::remove_file(&stale)
            } else {
                Ok(())
            }
            .map_err(EngineError::io("removing", &stale))?;
        }
        write_reports(&out, &report)?;
        return Ok((report, out));
    }
    let (quantiles, _) = thresholds(&detector, &config.run_dir, None, None)?;
    let samples = evenly_spaced(
        category.test_samples(),
        max_test_images(detector.spec.training.preset),
    );
    let options = StudentOptions {
        device: device.clone(),
        run_dir: config.run_dir.clone(),
        other_terms: config.other_terms().to_vec(),
    };
    let mut store = PartialScores::open(&out, &detector, &options, &samples)?;
    let settings = SplitSettings {
        save_maps: config
            .save_maps
            .then(|| out.join("maps").join(category.name()).join("test")),
        images: config.images.then(|| ImageOutputs {
            out: out.clone(),
            writer: MapWriter::new(vec![OutputFormat::Png], quantiles.as_ref(), None),
        }),
        stop_after: config.stop_after,
        ..SplitSettings::new(config.fpr_limit, config.image_score)
    };
    let outcome = evaluate_split(
        &mut detector,
        &options,
        &samples,
        &settings,
        Some(&mut store),
        observer,
    )?;
    let resumed_images = store.resumed;
    if resumed_images > 0 {
        tracing::info!(resumed_images, "scores of an interrupted evaluation reused");
    }
    let mut rows = Vec::new();
    let mut curves = Vec::new();
    let mut term_rows: Vec<TermRows> = Vec::new();
    let mut regions = 0;
    for (k, result) in outcome.rows.into_iter().enumerate() {
        let (group, name) = (result.spec.group, result.spec.name);
        if group > 0 {
            if term_rows.len() < group {
                term_rows.push(TermRows {
                    score_terms: config.score[group],
                    rows: Vec::new(),
                });
            }
            term_rows[group - 1]
                .rows
                .push(ScoreRow::new(name, &result.scores));
            continue;
        }
        if k == 0 {
            regions = result.scores.n_regions;
        }
        rows.push(ScoreRow::new(name.clone(), &result.scores));
        curves.push((
            format!("{name}: AU-PRO {:.3}", result.scores.au_pro),
            result.scores.curve,
        ));
    }
    let report = EvaluationReport {
        predict_s: outcome.seconds,
        seconds_per_image: outcome.seconds / (samples.len() - resumed_images).max(1) as f64,
        resumed_images,
        term_rows,
        ..new_report(
            config,
            &detector,
            &data,
            category.name().to_string(),
            (samples.len(), regions),
            rows,
        )
    };
    let plot_curves: Vec<(&str, &ust_metrics::ProCurve)> =
        curves.iter().map(|(n, c)| (n.as_str(), c)).collect();
    ust_metrics::plot::write_pro_curve_png(
        out.join("pro-curve.png"),
        &plot_curves,
        config.fpr_limit,
        &format!("PRO curve: {}", report.category),
    )?;
    write_reports(&out, &report)?;
    if config.images {
        crate::html::write(&out, &report, &outcome.gallery)?;
    }
    store.finish()?;
    Ok((report, out))
}

/// Writes `report.json` and `report.md` into `out`.
pub fn write_reports(out: &Path, report: &EvaluationReport) -> Result<()> {
    let json = out.join("report.json");
    std::fs::write(&json, serde_json::to_string_pretty(report)?)
        .map_err(EngineError::io("writing", &json))?;
    let md = out.join("report.md");
    std::fs::write(&md, report.markdown()).map_err(EngineError::io("writing", &md))?;
    Ok(())
}

/// The report of `rows` on `(test images, defect regions)` of `category`, with the run's
/// training summary; nothing predicted, resumed or reused (the caller sets those).
fn new_report(
    config: &EvaluateConfig,
    detector: &Detector,
    data: &Path,
    category: String,
    (test_images, defect_regions): (usize, usize),
    rows: Vec<ScoreRow>,
) -> EvaluationReport {
    EvaluationReport {
        category,
        data: data.display().to_string(),
        run_dir: config.run_dir.display().to_string(),
        preset: detector.spec.training.preset.to_string(),
        image_size: detector.image_size(),
        fpr_limit: config.fpr_limit,
        reducer: config.image_score.to_string(),
        score_terms: detector.score_terms,
        test_images,
        defect_regions,
        rows,
        term_rows: Vec::new(),
        predict_s: 0.0,
        seconds_per_image: 0.0,
        resumed_images: 0,
        rows_from: None,
        peak_rss_mib: crate::memory::peak_rss_mib(),
        training: std::fs::read_to_string(config.run_dir.join(TRAIN_SUMMARY_FILE))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok()),
    }
}
