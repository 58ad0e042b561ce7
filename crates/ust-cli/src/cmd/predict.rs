//! `ust predict`: anomaly maps for new images with a trained run directory, at each image's own
//! size: 32-bit float TIFF (what `ust eval` and the official MVTec evaluation script read) and
//! NPY for programs, heatmap and overlay PNGs for people, binary masks at a threshold.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use crate::device::DeviceArgs;
use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use ust_data::AnomalyMap;
use ust_data::maps::{
    resize_bilinear, write_heatmap_png, write_map_npy, write_map_tiff, write_mask_png,
    write_overlay_png,
};
use ust_detector::pipeline::ScoreQuantiles;
use ust_detector::{Detector, Prediction};

/// What `ust predict` writes per image.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// `NAME_heatmap.png` and `NAME_overlay.png` (the heatmap over the image).
    Png,
    /// `NAME.tiff`: the scores, 32-bit float.
    Tiff,
    /// `NAME.npy`: the scores, little-endian f32, shape (height, width).
    Npy,
}

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

    /// Writes the outputs of one image: `base` is the output path without extension.
    pub fn write(&self, base: &Path, map: &AnomalyMap, source: &Path) -> Result<()> {
        if let Some(dir) = base.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let with = |suffix: &str| {
            let mut s = base.as_os_str().to_owned();
            s.push(suffix);
            PathBuf::from(s)
        };
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

/// A model-size score map resized (bilinear) to the image's own size.
pub fn original_size_map(prediction: &Prediction, scores: &[f32]) -> Result<AnomalyMap> {
    let s = prediction.model_size;
    let map = AnomalyMap::new(s, s, scores.to_vec())?;
    let size = prediction.image.original_size;
    Ok(resize_bilinear(
        &map,
        size.width as usize,
        size.height as usize,
    )?)
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

/// The validation thresholds of `run_dir` for the loaded scales, and the mask threshold
/// `threshold`/`fpr` ask for.
pub fn thresholds(
    detector: &Detector,
    run_dir: &Path,
    threshold: Option<f32>,
    fpr: Option<f64>,
) -> Result<(Option<ScoreQuantiles>, Option<f32>)> {
    let quantiles = detector.quantiles(run_dir).ok().flatten();
    let threshold = match (threshold, fpr) {
        (Some(t), _) => Some(t),
        (None, Some(f)) => match &quantiles {
            Some(q) => Some(q.threshold_at(f)? as f32),
            None => bail!(
                "{} has no validation thresholds for the scales {:?}; pass --threshold",
                run_dir.display(),
                detector.patch_sizes()
            ),
        },
        (None, None) => None,
    };
    Ok((quantiles, threshold))
}

pub fn run(args: PredictArgs) -> Result<ExitCode> {
    let device = args.device.open()?;
    let detector = Detector::load(&args.run_dir, args.scales.as_deref(), &device)
        .with_context(|| format!("loading {}", args.run_dir.display()))?;
    let (quantiles, threshold) = thresholds(&detector, &args.run_dir, args.threshold, args.fpr)?;
    let writer = MapWriter::new(args.format.clone(), quantiles.as_ref(), threshold);
    let inputs = collect_inputs(&args.inputs)?;
    let started = Instant::now();
    let bar = crate::text::progress_bar("predict", inputs.len(), "images");
    for (path, rel) in &inputs {
        let prediction = detector
            .predict_file(path, &device)
            .with_context(|| format!("scoring {}", path.display()))?;
        let map = original_size_map(&prediction, &prediction.model_scores)?;
        writer.write(&args.out.join(rel), &map, path)?;
        tracing::debug!(image = %path.display(), "predicted");
        bar.inc(1);
    }
    bar.finish_and_clear();
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
    Ok(ExitCode::SUCCESS)
}
