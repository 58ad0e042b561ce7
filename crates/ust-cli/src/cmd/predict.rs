//! `ust predict`: anomaly maps for new images with a trained run directory, at each image's own
//! size: 32-bit float TIFF (what `ust eval` and the official MVTec evaluation script read) and
//! NPY for programs, heatmap and overlay PNGs for people, binary masks at a threshold (the
//! files and thresholds are [`ust_engine::postprocess`]'s).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use crate::device::DeviceArgs;
use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use ust_detector::Detector;
use ust_engine::postprocess::{MapWriter, OutputFormat, max_score, resize_to_original, thresholds};

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

/// One row of `summary.csv` / `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ImageVerdict {
    /// The input file.
    pub image: String,
    /// Its maps' base name under --out (relative path without extension).
    pub output: String,
    /// The maximum of its anomaly map (at the model's resolution).
    pub image_score: f64,
    /// Whether the image score exceeds `threshold` (absent for runs without validation image
    /// scores).
    pub anomalous: Option<bool>,
}

/// `summary.json`: the verdict rule and every image's row.
#[derive(Debug, Clone, Serialize)]
pub struct PredictionSummary {
    pub run_dir: String,
    pub scales: Vec<usize>,
    pub image_fpr: f64,
    /// The image-score threshold at `image_fpr` on the validation images.
    pub threshold: Option<f64>,
    pub validation_images: usize,
    pub images: Vec<ImageVerdict>,
}

impl PredictionSummary {
    /// The rows as CSV (`image,output,image_score,anomalous`; paths quoted).
    pub fn csv(&self) -> String {
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let mut out = String::from("image,output,image_score,anomalous\n");
        for r in &self.images {
            out.push_str(&format!(
                "{},{},{},{}\n",
                quote(&r.image),
                quote(&r.output),
                r.image_score,
                r.anomalous.map_or(String::new(), |a| a.to_string())
            ));
        }
        out
    }
}

/// Every image of `inputs` with the path its outputs get under the output folder (relative:
/// a folder's images keep their path inside it, a file its name; extension removed).
pub fn collect_inputs(inputs: &[PathBuf]) -> Result<Vec<(PathBuf, PathBuf)>> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let images = ust_data::find_images_recursive(input)?;
            if images.is_empty() {
                bail!("{} holds no images", input.display());
            }
            for image in images {
                let rel = image
                    .strip_prefix(input)
                    .unwrap_or(&image)
                    .with_extension("");
                out.push((image, rel));
            }
        } else if input.is_file() {
            let name = input
                .file_stem()
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("image"));
            out.push((input.clone(), name));
        } else {
            bail!("{} does not exist", input.display());
        }
    }
    Ok(out)
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
    let mut rows = Vec::with_capacity(inputs.len());
    for (path, rel) in &inputs {
        let prediction = detector
            .predict_file(path, &device)
            .with_context(|| format!("scoring {}", path.display()))?;
        let map = resize_to_original(
            &prediction.model_scores,
            prediction.model_size,
            prediction.image.original_size,
        )?;
        writer.write(&args.out.join(rel), &map, path)?;
        let image_score = max_score(&prediction.model_scores);
        rows.push(ImageVerdict {
            image: path.display().to_string(),
            output: rel.display().to_string(),
            image_score,
            anomalous: image_threshold.map(|t| image_score > t),
        });
        tracing::debug!(image = %path.display(), "predicted");
        bar.inc(1);
    }
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
    let flagged = summary
        .images
        .iter()
        .filter(|r| r.anomalous == Some(true))
        .count();
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
