//! `ust evaluate`: predict the test split of a category with a trained run directory and
//! evaluate it as `ust eval` does, for every scale alone and for their mean
//! ([`ust_engine::evaluation`]: reports, maps, pictures, resumption and reuse).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::device::DeviceArgs;
use anyhow::Result;
use clap::Args;
use ust_detector::ScoreTerms;
use ust_engine::EvaluationReport;
use ust_engine::evaluation::{EvaluateConfig, evaluate_run};
use ust_metrics::ImageReducer;

use crate::text::EvaluationBar;
use ust_data::mvtec::category_dir;

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
    /// scales, FPR limit, reducer and score terms are these (see `ust_engine::reuse`);
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

pub fn run(args: EvaluateArgs) -> Result<ExitCode> {
    let (report, out) = evaluate(&args)?;
    println!("{}", report.markdown());
    println!("report: {}", out.join("report.md").display());
    Ok(ExitCode::SUCCESS)
}

/// Predicts, evaluates and writes the report; returns it with the report folder.
pub fn evaluate(args: &EvaluateArgs) -> Result<(EvaluationReport, PathBuf)> {
    let device = args.device.open()?;
    let data = match &args.data {
        Some(d) => Some(category_dir(d, args.category.as_deref())?),
        None => None,
    };
    let config = EvaluateConfig {
        run_dir: args.run_dir.clone(),
        data,
        out: args.out.clone(),
        scales: args.scales.clone(),
        fpr_limit: args.fpr_limit,
        image_score: args.image_score,
        save_maps: args.save_maps,
        images: args.images,
        reuse: args.reuse.clone(),
        score: args.score.clone(),
        stop_after: std::env::var(STOP_AFTER_ENV)
            .ok()
            .and_then(|v| v.parse::<usize>().ok()),
    };
    let mut bar = EvaluationBar::new("evaluate");
    Ok(evaluate_run(&config, &device, &mut bar)?)
}
