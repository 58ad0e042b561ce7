//! `ust evaluate`: predict the test split of a category with a trained run directory and
//! evaluate it as `ust eval` does (AU-PRO up to an FPR limit, pixel and image AUROC), for every
//! scale alone and for their mean; writes `report.json`, `report.md`, `pro-curve.png` and,
//! on request, the maps (TIFF, MVTec layout) and heatmaps/overlays. Each image's scores are
//! kept until the report is written, so an interrupted evaluation resumes
//! ([`super::partial_maps`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use crate::device::DeviceArgs;
use crate::text::fmt_opt;
use anyhow::{Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use ust_data::MvtecCategory;
use ust_detector::pipeline::{TRAIN_SUMMARY_FILE, mean_over_scales};
use ust_detector::{Detector, ScoreTerms, TrainReport};
use ust_metrics::{ImageReducer, Plane, SegmentationEvaluator, SegmentationScores};

use super::bench::peak_rss_mib;
use super::evaluation_reuse::{ReusedEvaluation, reusable_evaluation};
use super::html_report::GalleryEntry;
use super::partial_maps::PartialMaps;
use super::predict::{MapWriter, OutputFormat, original_size_map, thresholds};
use super::train::category_dir;
use ust_experiments::presets::{evenly_spaced, max_test_images};

/// Test hook: `ust evaluate` stops with an error after scoring this many images, as if killed.
pub const STOP_AFTER_ENV: &str = "UST_EVALUATE_STOP_AFTER";

#[derive(Args, Debug, Clone)]
pub struct EvaluateArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// A run directory written by `ust train`.
    pub run_dir: PathBuf,
    /// An MVTec-layout root (with --category) or a category folder [default: the category the
    /// run was trained on].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The category under --data.
    #[arg(long)]
    pub category: Option<String>,
    /// The report folder [default: RUN_DIR/evaluation].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Use only these receptive fields (default: every trained scale).
    #[arg(long, value_delimiter = ',')]
    pub scales: Option<Vec<usize>>,
    /// AU-PRO integrates the PRO curve up to this false-positive rate.
    #[arg(long, default_value_t = 0.3)]
    pub fpr_limit: f64,
    /// Image score from a map: max, top1 or top:F (mean of the top fraction F). (`--reducer`
    /// is accepted as an older spelling.)
    #[arg(long, alias = "reducer", default_value = "max")]
    pub image_score: ImageReducer,
    /// Write the multi-scale maps as TIFF under OUT/maps/<category>/test/<defect>/ (the
    /// layout of the official evaluation script).
    #[arg(long)]
    pub save_maps: bool,
    /// Write heatmap and overlay PNGs of every test image under OUT/images/<defect>/ (with
    /// copies of the image and its mask) and OUT/report.html, a gallery of them worst first.
    #[arg(long)]
    pub images: bool,
    /// An earlier evaluation's folder (repeatable): its rows are taken instead of scoring the
    /// test images when its scale files are byte-identical to this run's and its category,
    /// scales, FPR limit, reducer and score terms are these (see `evaluation_reuse`);
    /// otherwise passed over.
    #[arg(long, value_name = "EVALUATION_DIR")]
    pub reuse: Vec<PathBuf>,
    /// The terms of the anomaly score: e+v (METHOD.md §6), or as an ablation e (regression
    /// error only) or v (predictive variance only), each normalised on the validation images.
    /// Several, comma-separated (`e+v,e,v`): the first gives the report's rows, the maps and
    /// the images, each other one its own rows (`term_rows`); the networks run once.
    #[arg(long, value_delimiter = ',', default_value = "e+v")]
    pub score: Vec<ScoreTerms>,
}

impl EvaluateArgs {
    /// The score terms of the main rows (the first of `--score`).
    pub fn main_terms(&self) -> ScoreTerms {
        self.score.first().copied().unwrap_or_default()
    }

    /// The other score terms of `--score`, each evaluated beside the main rows.
    pub fn other_terms(&self) -> &[ScoreTerms] {
        self.score.get(1..).unwrap_or_default()
    }
}

/// The rows of one more choice of score terms (`--score e+v,e,v`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TermRows {
    pub score_terms: ScoreTerms,
    pub rows: Vec<ScoreRow>,
}

/// One row of the report: one scale, or the mean of several.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoreRow {
    pub name: String,
    pub au_pro: f64,
    pub pixel_auroc: f64,
    pub image_auroc: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvaluationReport {
    pub category: String,
    pub data: String,
    pub run_dir: String,
    pub preset: String,
    pub image_size: usize,
    pub fpr_limit: f64,
    pub reducer: String,
    /// The terms of the anomaly score (`e+v` in reports written before the choice existed).
    #[serde(default)]
    pub score_terms: ScoreTerms,
    pub test_images: usize,
    pub defect_regions: usize,
    /// Per scale, then "multi-scale" when there are several.
    pub rows: Vec<ScoreRow>,
    /// The same rows under each further choice of score terms, in the order of `--score`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub term_rows: Vec<TermRows>,
    /// Wall-clock seconds predicting the test images (all scales), and per image scored by
    /// this invocation.
    pub predict_s: f64,
    pub seconds_per_image: f64,
    /// Test images whose scores an interrupted evaluation had kept (not scored again).
    pub resumed_images: usize,
    /// The evaluation folder whose rows this report took (`--reuse`); nothing was scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_from: Option<String>,
    pub peak_rss_mib: Option<f64>,
    /// The run's training summary, when present.
    pub training: Option<TrainReport>,
}

fn row(name: String, s: &SegmentationScores) -> ScoreRow {
    ScoreRow {
        name,
        au_pro: s.au_pro,
        pixel_auroc: s.pixel_auroc,
        image_auroc: s.image_auroc,
    }
}

pub fn run(args: EvaluateArgs) -> Result<ExitCode> {
    let (report, out) = evaluate(&args)?;
    println!("{}", markdown(&report));
    println!("report: {}", out.join("report.md").display());
    Ok(ExitCode::SUCCESS)
}

/// Predicts, evaluates and writes the report; returns it with the report folder.
pub fn evaluate(args: &EvaluateArgs) -> Result<(EvaluationReport, PathBuf)> {
    let device = args.device.open()?;
    for (i, t) in args.score.iter().enumerate() {
        if args.score[..i].contains(t) {
            anyhow::bail!("--score names {t} twice");
        }
    }
    let mut detector = Detector::load(&args.run_dir, args.scales.as_deref(), &device)
        .with_context(|| format!("loading {}", args.run_dir.display()))?;
    detector.score_terms = args.main_terms();
    let terms = &args.score;
    let data = match &args.data {
        Some(d) => category_dir(d, args.category.as_deref())?,
        None => detector.spec.data.clone(),
    };
    let category = MvtecCategory::open(&data)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.run_dir.join("evaluation"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    if let Some(reused) = reusable_evaluation(args, &detector, &data)? {
        tracing::info!(from = %reused.from.display(), "rows taken from an identical evaluation");
        let report = report_from(args, &detector, &data, reused);
        // Nothing of an earlier evaluation in this folder may pass for this one's.
        for stale in [
            out.join("pro-curve.png"),
            out.join(super::partial_maps::PARTIAL_DIR),
        ] {
            if stale.is_dir() {
                std::fs::remove_dir_all(&stale)
            } else if stale.is_file() {
                std::fs::remove_file(&stale)
            } else {
                Ok(())
            }
            .with_context(|| format!("removing {}", stale.display()))?;
        }
        write_reports(&out, &report)?;
        return Ok((report, out));
    }
    let scales = detector.patch_sizes();
    let multi = scales.len() > 1;
    let n_eval = scales.len() + usize::from(multi);
    // n_eval evaluators per choice of score terms, the main one first.
    let mut evaluators = (0..n_eval * terms.len())
        .map(|_| SegmentationEvaluator::new(args.fpr_limit, args.image_score))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let (quantiles, _) = thresholds(&detector, &args.run_dir, None, None)?;
    let images_writer = MapWriter::new(vec![OutputFormat::Png], quantiles.as_ref(), None);
    let maps_writer = MapWriter::new(vec![OutputFormat::Tiff], None, None);
    let samples = &evenly_spaced(
        category.test_samples(),
        max_test_images(detector.spec.training.preset),
    );
    let bar = crate::text::progress_bar("evaluate", samples.len(), "images");
    let mut partial =
        PartialMaps::open(&out, &detector, args.other_terms(), &args.run_dir, samples)?;
    // For the tests of resumption: stop (with an error) after scoring this many images.
    let stop_after = std::env::var(STOP_AFTER_ENV)
        .ok()
        .and_then(|v| v.parse::<usize>().ok());
    let mut scored = 0usize;
    let started = Instant::now();
    let mut regions = 0usize;
    let mut gallery = Vec::new();
    for (index, sample) in samples.iter().enumerate() {
        // One prediction per choice of score terms; kept as their maps one after another.
        let predictions = match partial.get(index)? {
            Some(stored) => {
                let mut stored = stored.into_iter();
                let mut predictions = Vec::with_capacity(terms.len());
                for _ in terms {
                    let per_scale: Vec<Vec<f32>> = stored.by_ref().take(scales.len()).collect();
                    predictions.push(
                        detector
                            .prediction_from_scores(&sample.path, per_scale)
                            .with_context(|| {
                                format!("reloading the scores of {}", sample.path.display())
                            })?,
                    );
                }
                predictions
            }
            None => {
                let predictions = detector
                    .predict_file_terms(&sample.path, &device, terms)
                    .with_context(|| format!("scoring {}", sample.path.display()))?;
                let kept: Vec<Vec<f32>> = predictions
                    .iter()
                    .flat_map(|p| p.per_scale.iter().cloned())
                    .collect();
                partial.put(index, &kept)?;
                scored += 1;
                if stop_after.is_some_and(|n| scored >= n) {
                    anyhow::bail!("stopped after scoring {scored} images ({STOP_AFTER_ENV})");
                }
                predictions
            }
        };
        let mask = match &sample.mask_path {
            Some(_) => Some(sample.load_mask()?),
            None => None,
        };
        let mut combined = None;
        for (prediction, block) in predictions.iter().zip(evaluators.chunks_mut(n_eval)) {
            let mut maps = Vec::with_capacity(n_eval);
            for s in &prediction.per_scale {
                maps.push(original_size_map(prediction, s)?);
            }
            if multi {
                maps.push(original_size_map(
                    prediction,
                    &mean_over_scales(&prediction.per_scale),
                )?);
            }
            for (evaluator, map) in block.iter_mut().zip(&maps) {
                push_map(evaluator, map, mask.as_ref(), sample)?;
            }
            // The maps and images show the main score terms'.
            if combined.is_none() {
                combined = maps.pop();
            }
        }
        let combined = combined.as_ref().expect("at least one scale");
        let rel = PathBuf::from(&sample.defect_type).join(sample.name());
        if args.save_maps {
            let base = out
                .join("maps")
                .join(category.name())
                .join("test")
                .join(&rel);
            maps_writer.write(&base, combined, &sample.path)?;
        }
        if args.images {
            let base = out.join("images").join(&rel);
            images_writer.write(&base, combined, &sample.path)?;
            let image_score = combined
                .data
                .iter()
                .copied()
                .fold(f32::NEG_INFINITY, f32::max) as f64;
            gallery.push(GalleryEntry::write(&out, &base, sample, image_score)?);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let predict_s = started.elapsed().as_secs_f64();
    let resumed_images = partial.resumed;
    if resumed_images > 0 {
        tracing::info!(resumed_images, "scores of an interrupted evaluation reused");
    }
    let mut rows = Vec::new();
    let mut curves = Vec::new();
    let mut term_rows: Vec<TermRows> = Vec::new();
    for (k, evaluator) in evaluators.into_iter().enumerate() {
        let (block, i) = (k / n_eval, k % n_eval);
        let name = if i < scales.len() {
            format!("p={}", scales[i])
        } else {
            format!(
                "multi-scale ({})",
                scales
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("+")
            )
        };
        let scores = evaluator.finish()?;
        if block > 0 {
            if i == 0 {
                term_rows.push(TermRows {
                    score_terms: terms[block],
                    rows: Vec::new(),
                });
            }
            term_rows[block - 1].rows.push(row(name, &scores));
            continue;
        }
        if i == 0 {
            regions = scores.n_regions;
        }
        rows.push(row(name.clone(), &scores));
        curves.push((format!("{name}: AU-PRO {:.3}", scores.au_pro), scores.curve));
    }
    let report = EvaluationReport {
        predict_s,
        seconds_per_image: predict_s / (samples.len() - resumed_images).max(1) as f64,
        resumed_images,
        term_rows,
        ..EvaluationReport::new(
            args,
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
        args.fpr_limit,
        &format!("PRO curve: {}", report.category),
    )?;
    write_reports(&out, &report)?;
    if args.images {
        super::html_report::write(&out, &report, &gallery)?;
    }
    partial.finish()?;
    Ok((report, out))
}

fn write_reports(out: &Path, report: &EvaluationReport) -> Result<()> {
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(report)?,
    )
    .with_context(|| format!("writing {}", out.join("report.json").display()))?;
    std::fs::write(out.join("report.md"), markdown(report))
        .with_context(|| format!("writing {}", out.join("report.md").display()))?;
    Ok(())
}

/// This evaluation's report from the rows of an identical one: the rows of this run's scales
/// (and their mean when there are several), no time spent predicting.
fn report_from(
    args: &EvaluateArgs,
    detector: &Detector,
    data: &Path,
    reused: ReusedEvaluation,
) -> EvaluationReport {
    let scales = detector.patch_sizes();
    let other = reused.report;
    let ours = |rows: Vec<ScoreRow>| -> Vec<ScoreRow> {
        rows.into_iter()
            .filter(|r| {
                if r.name.starts_with("multi-scale") {
                    scales.len() > 1
                } else {
                    scales.iter().any(|p| r.name == format!("p={p}"))
                }
            })
            .collect()
    };
    let rows = ours(other.rows);
    // The further terms asked for, in the order asked (the match made sure each is there).
    let mut theirs = other.term_rows;
    let term_rows = args
        .other_terms()
        .iter()
        .filter_map(|&want| {
            let i = theirs.iter().position(|t| t.score_terms == want)?;
            let t = theirs.swap_remove(i);
            Some(TermRows {
                score_terms: t.score_terms,
                rows: ours(t.rows),
            })
        })
        .collect();
    EvaluationReport {
        rows_from: Some(reused.from.display().to_string()),
        term_rows,
        ..EvaluationReport::new(
            args,
            detector,
            data,
            other.category,
            (other.test_images, other.defect_regions),
            rows,
        )
    }
}

impl EvaluationReport {
    /// The report of `rows` on `(test images, defect regions)` of `category`, with the run's
    /// training summary; nothing predicted, resumed or reused (the caller sets those).
    fn new(
        args: &EvaluateArgs,
        detector: &Detector,
        data: &Path,
        category: String,
        (test_images, defect_regions): (usize, usize),
        rows: Vec<ScoreRow>,
    ) -> Self {
        Self {
            category,
            data: data.display().to_string(),
            run_dir: args.run_dir.display().to_string(),
            preset: detector.spec.training.preset.to_string(),
            image_size: detector.image_size(),
            fpr_limit: args.fpr_limit,
            reducer: args.image_score.to_string(),
            score_terms: detector.score_terms,
            test_images,
            defect_regions,
            rows,
            term_rows: Vec::new(),
            predict_s: 0.0,
            seconds_per_image: 0.0,
            resumed_images: 0,
            rows_from: None,
            peak_rss_mib: peak_rss_mib(),
            training: std::fs::read_to_string(args.run_dir.join(TRAIN_SUMMARY_FILE))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok()),
        }
    }
}

fn score_terms_text(t: ScoreTerms) -> &'static str {
    match t {
        ScoreTerms::Both => "e+v (regression error and predictive variance)",
        ScoreTerms::Error => "e only (ablation: regression error)",
        ScoreTerms::Variance => "v only (ablation: predictive variance)",
    }
}

/// The report as Markdown.
pub fn markdown(r: &EvaluationReport) -> String {
    let resumed = if r.resumed_images > 0 {
        format!(
            "; the scores of {} images kept by an interrupted evaluation",
            r.resumed_images
        )
    } else {
        String::new()
    };
    let rss = r
        .peak_rss_mib
        .map(|m| format!("; peak memory {m:.0} MiB"))
        .unwrap_or_default();
    let prediction = if r.rows_from.is_some() {
        "none (rows of an identical evaluation, below)".to_string()
    } else {
        format!(
            "{:.1} s ({:.3} s per image, all scales)",
            r.predict_s, r.seconds_per_image
        )
    };
    let mut s = format!(
        "# Evaluation: {}\n\n- data: `{}`\n- run: `{}` (preset {}, images at {}×{})\n- {} test \
         images, {} defect regions; AU-PRO up to FPR {}; image score: {}; anomaly score terms: \
         {}\n- prediction: {}{}\n\n",
        r.category,
        r.data,
        r.run_dir,
        r.preset,
        r.image_size,
        r.image_size,
        r.test_images,
        r.defect_regions,
        r.fpr_limit,
        r.reducer,
        score_terms_text(r.score_terms),
        prediction,
        resumed + &rss
    );
    let rows_table = |rows: &[ScoreRow]| {
        let mut s =
            String::from("| scores | AU-PRO | pixel AUROC | image AUROC |\n|---|---|---|---|\n");
        for row in rows {
            s.push_str(&format!(
                "| {} | {:.4} | {:.4} | {} |\n",
                row.name,
                row.au_pro,
                row.pixel_auroc,
                fmt_opt(row.image_auroc)
            ));
        }
        s
    };
    s.push_str(&rows_table(&r.rows));
    for t in &r.term_rows {
        s.push_str(&format!(
            "\nAnomaly score terms {} (the same networks' outputs):\n\n{}",
            score_terms_text(t.score_terms),
            rows_table(&t.rows)
        ));
    }
    if let Some(t) = &r.training {
        s.push_str(&format!(
            "\nTraining ({} preset): {} training and {} validation images.\n\n\
             | scale | students | steps | final loss | training s |\n|---|---|---|---|---|\n",
            t.preset, t.train_images, t.validation_images
        ));
        for sc in &t.scales {
            s.push_str(&format!(
                "| p={} | {} | {} | {:.4} | {:.0} |\n",
                sc.patch_size, sc.students, sc.steps, sc.final_loss, sc.training_s
            ));
        }
        for r in &t.reused {
            s.push_str(&format!(
                "\np={}: students taken from `{}` (same data, teacher and training; trained \
                 there in the time above).\n",
                r.patch_size,
                r.from.display()
            ));
        }
    }
    match &r.rows_from {
        Some(from) => s.push_str(&format!(
            "\nThe rows are those of the evaluation in `{from}` (byte-identical scale files, the \
             same test images and settings); nothing was scored again. Its PRO curves: \
             `{from}/pro-curve.png`.\n"
        )),
        None => s.push_str("\n![PRO curve](pro-curve.png)\n"),
    }
    s
}

/// Adds one test image's anomaly map (at the image's size) and its ground-truth mask (none for
/// a good image) to an evaluator; a mask of another size than the map is an error naming the
/// mask file.
pub(crate) fn push_map(
    evaluator: &mut SegmentationEvaluator,
    map: &ust_data::AnomalyMap,
    mask: Option<&ust_data::BinaryMask>,
    sample: &ust_data::TestSample,
) -> Result<()> {
    let plane = Plane::new(&map.data, map.width, map.height)?;
    let mask_plane = match mask {
        Some(m) => {
            if (m.width(), m.height()) != (map.width, map.height) {
                anyhow::bail!(
                    "{}: mask is {}x{}, the image {}x{}",
                    sample
                        .mask_path
                        .as_deref()
                        .unwrap_or(Path::new("?"))
                        .display(),
                    m.width(),
                    m.height(),
                    map.width,
                    map.height
                );
            }
            Some(Plane::new(m.data(), m.width(), m.height())?)
        }
        None => None,
    };
    evaluator
        .push(plane, mask_plane)
        .with_context(|| format!("evaluating {}", sample.path.display()))?;
    Ok(())
}
