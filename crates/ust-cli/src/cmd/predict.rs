//! `ust predict`: anomaly maps for new images with a trained run directory, at each image's own
//! size: 32-bit float TIFF (what `ust eval` and the official MVTec evaluation script read) and
//! NPY for programs, heatmap and overlay PNGs for people, binary masks at a threshold (the
//! files and thresholds are [`ust_engine::postprocess`]'s, the loop [`ust_engine::predict`]'s).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use crate::device::DeviceArgs;
use anyhow::{Context, Result};
use clap::Args;
use ust_detector::Detector;
use ust_engine::postprocess::{MapWriter, OutputFormat, thresholds};
use ust_engine::predict::{PredictionSummary, collect_inputs, predict_images};

#[derive(Args, Debug)]
pub struct PredictArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// A run directory written by `ust train`.
    pub run_dir: PathBuf,
    /// Image files and folders (searched recursively); outputs keep their relative paths.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// The output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// What to write, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "png,tiff")]
    pub format: Vec<OutputFormat>,
    /// Use only these receptive fields (default: every trained scale).
    #[arg(long, value_delimiter = ',')]
    pub scales: Option<Vec<usize>>,
    /// Also write binary masks `NAME_mask.png`: pixels scoring above this value.
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Also write binary masks, thresholded at this false-positive rate on the run's
    /// anomaly-free validation pixels (e.g. 0.001).
    #[arg(long, conflicts_with = "threshold")]
    pub fpr: Option<f64>,
    /// The per-image verdict of `summary.csv` / `summary.json`: an image is anomalous when its
    /// image score (its map's maximum) exceeds the threshold at this image-level
    /// false-positive rate on the run's validation images (0: above all of them).
    #[arg(long, default_value_t = 0.0)]
    pub image_fpr: f64,
}

pub fn run(args: PredictArgs) -> Result<ExitCode> {
    let device = args.device.open()?;
    let detector = Detector::load(&args.run_dir, args.scales.as_deref(), &device)
        .with_context(|| format!("loading {}", args.run_dir.display()))?;
    let (quantiles, threshold) = thresholds(&detector, &args.run_dir, args.threshold, args.fpr)?;
    let writer = MapWriter::new(args.format.clone(), quantiles.as_ref(), threshold);
    let image_threshold = match &quantiles {
        Some(q) => q.image_threshold_at(args.image_fpr)?,
        None => None,
    };
    if image_threshold.is_none() {
        tracing::warn!(
            "{} keeps no validation image scores for these scales (a run trained before \
             they were kept, or a subset of its scales): summary.csv has no verdicts",
            args.run_dir.display()
        );
    }
    let inputs = collect_inputs(&args.inputs)?;
    let started = Instant::now();
    let bar = crate::text::progress_bar("predict", inputs.len(), "images");
    let rows = predict_images(
        &detector,
        &device,
        &inputs,
        &args.out,
        &writer,
        image_threshold,
        || bar.inc(1),
    )?;
    bar.finish_and_clear();
    let summary = PredictionSummary {
        run_dir: args.run_dir.display().to_string(),
        scales: detector.patch_sizes(),
        image_fpr: args.image_fpr,
        threshold: image_threshold,
        validation_images: quantiles.as_ref().map_or(0, |q| q.image_scores.len()),
        images: rows,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    crate::text::write_json(&args.out.join("summary.json"), &summary)?;
    let csv_path = args.out.join("summary.csv");
    std::fs::write(&csv_path, summary.csv())
        .with_context(|| format!("writing {}", csv_path.display()))?;
    let flagged = summary.flagged();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{} anomaly maps in {} ({:.2} s per image, scales {:?}, heatmap range {:.2}..{:.2}{})",
        inputs.len(),
        args.out.display(),
        seconds / inputs.len().max(1) as f64,
        detector.patch_sizes(),
        writer.lo,
        writer.hi,
        threshold
            .map(|t| format!(", masks above {t:.3}"))
            .unwrap_or_default()
    );
    match image_threshold {
        Some(t) => println!(
            "{flagged} of {} images anomalous (image score above {t:.3}, image FPR {} on {} \
             validation images); verdicts in {}",
            summary.images.len(),
            args.image_fpr,
            summary.validation_images,
            csv_path.display()
        ),
        None => println!("image scores in {}", csv_path.display()),
    }
    Ok(ExitCode::SUCCESS)
}
