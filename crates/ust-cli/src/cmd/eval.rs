//! `ust eval`: the official MVTec AD evaluation of anyone's anomaly maps.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use crate::text::fmt_opt;
use anyhow::{Context, Result, bail};
use clap::Args;
use rayon::prelude::*;
use serde::Serialize;
use ust_data::image_io::{decode_image, image_size};
use ust_data::{MvtecCategory, TestSample, discover_categories};
use ust_metrics::{ImageReducer, Plane, SegmentationEvaluator, SegmentationScores};

use ust_data::maps::{AnomalyMap, MAP_EXTENSIONS, find_map, read_map, resize_bilinear};

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Dataset root in the MVTec AD layout (a folder of categories, or one category).
    /// (`--dataset` is accepted as an older spelling.)
    #[arg(long, alias = "dataset")]
    pub data: PathBuf,
    /// Root of the anomaly maps: MAPS/CATEGORY/test/DEFECT/NAME.tiff (32-bit float) or .npy.
    #[arg(long)]
    pub maps: PathBuf,
    /// Evaluate only these categories (repeatable); default: every category found.
    #[arg(long = "category")]
    pub categories: Vec<String>,
    /// Upper limit of the false-positive rate for AU-PRO.
    #[arg(long, default_value_t = 0.3)]
    pub fpr_limit: f64,
    /// Image score from the map: max, top1 (mean of the top 1 %), or top:FRACTION.
    #[arg(long, default_value = "max")]
    pub image_score: ImageReducer,
    /// Resample maps of another size than their image (bilinear) instead of failing.
    #[arg(long)]
    pub resize: bool,
    /// Also write the numbers as JSON to FILE (`-`: stdout).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// The numbers of one category, as printed and written to JSON.
#[derive(Debug, Clone, Serialize)]
pub struct CategoryResult {
    pub category: String,
    pub au_pro: f64,
    pub pixel_auroc: f64,
    pub image_auroc: Option<f64>,
    pub n_images: usize,
    pub n_regions: usize,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Mean {
    pub au_pro: f64,
    pub pixel_auroc: f64,
    pub image_auroc: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub fpr_limit: f64,
    pub image_score: String,
    pub categories: Vec<CategoryResult>,
    pub mean: Mean,
}

pub fn run(args: EvalArgs) -> Result<ExitCode> {
    let report = evaluate(&args)?;
    print!("{}", markdown_table(&report));
    if let Some(path) = &args.json {
        crate::text::write_json(path, &report)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Evaluates every selected category of `args.data`.
pub fn evaluate(args: &EvalArgs) -> Result<EvalReport> {
    let mut dirs = discover_categories(&args.data)
        .with_context(|| format!("{}: no MVTec-layout dataset", args.data.display()))?;
    if !args.categories.is_empty() {
        for wanted in &args.categories {
            if !dirs.iter().any(|d| dir_name(d) == *wanted) {
                bail!(
                    "category '{wanted}' not found in {} (found: {})",
                    args.data.display(),
                    dirs.iter()
                        .map(|d| dir_name(d))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        dirs.retain(|d| args.categories.contains(&dir_name(d)));
    }
    let mut categories = Vec::new();
    for dir in &dirs {
        let category = MvtecCategory::open(dir)?;
        let start = Instant::now();
        let scores = evaluate_category(&category, &args.maps, args)?;
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
        fpr_limit: args.fpr_limit,
        image_score: args.image_score.to_string(),
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
    args: &EvalArgs,
) -> Result<SegmentationScores> {
    let mut evaluator = SegmentationEvaluator::new(args.fpr_limit, args.image_score)?;
    let samples = category.test_samples();
    let chunk = 4 * rayon::current_num_threads().max(1);
    let start = Instant::now();
    for block in samples.chunks(chunk) {
        let loaded: Vec<(AnomalyMap, Option<MaskPixels>)> = block
            .par_iter()
            .map(|s| load_pair(category, s, maps_root, args.resize))
            .collect::<Result<_>>()?;
        let planes = loaded
            .iter()
            .map(|(map, mask)| {
                let mask = match mask {
                    Some((w, h, m)) => Some(Plane::new(m, *w, *h)?),
                    None => None,
                };
                Ok((Plane::new(&map.data, map.width, map.height)?, mask))
            })
            .collect::<std::result::Result<Vec<_>, ust_metrics::MetricsError>>()?;
        if let Err(e) = evaluator.push_batch(&planes) {
            // The error's image index counts from the first image of the category.
            let name = match &e {
                ust_metrics::MetricsError::NonFinite { index, .. }
                | ust_metrics::MetricsError::SizeMismatch { index, .. } => samples
                    .get(*index)
                    .map(|s| format!("anomaly map of {}", s.path.display()))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            return Err(anyhow::Error::new(e).context(name));
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
        .with_context(|| format!("category {}", category.name()))?;
    tracing::debug!(
        "{}: sorted and integrated {} pixels in {:.2} s",
        category.name(),
        scores.n_pixels,
        start.elapsed().as_secs_f64()
    );
    Ok(scores)
}

type MaskPixels = (usize, usize, Vec<u8>);

fn load_pair(
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
        bail!(
            "missing anomaly map for {}: expected {} (or .{})",
            sample.path.display(),
            map_dir.join(format!("{}.tiff", sample.name())).display(),
            MAP_EXTENSIONS[1..].join(" or .")
        );
    };
    let mut map = read_map(&map_path)?;
    if (map.width, map.height) != (w, h) {
        if !resize {
            bail!(
                "{}: map is {}x{} but its image {} is {w}x{h} (pass --resize to resample)",
                map_path.display(),
                map.width,
                map.height,
                sample.path.display()
            );
        }
        map = resize_bilinear(&map, w, h)
            .with_context(|| format!("{}: cannot resample the map", map_path.display()))?;
    }
    let mask = match &sample.mask_path {
        None if sample.is_good() => None,
        None => bail!("{}: defect image without a mask", sample.path.display()),
        Some(p) => {
            let m = read_binary_mask(p)?;
            if (m.0, m.1) != (w, h) {
                bail!(
                    "{}: mask is {}x{} but its image {} is {w}x{h}",
                    p.display(),
                    m.0,
                    m.1,
                    sample.path.display()
                );
            }
            Some(m)
        }
    };
    Ok((map, mask))
}

/// A ground-truth mask must be binary: only 0 and one other grey level (255 in MVTec AD).
fn read_binary_mask(path: &Path) -> Result<MaskPixels> {
    let gray = decode_image(path)?.to_luma8();
    let (w, h) = (gray.width() as usize, gray.height() as usize);
    let mut on = None;
    for &v in gray.as_raw() {
        if v != 0 {
            match on {
                None => on = Some(v),
                Some(o) if o != v => bail!(
                    "{}: mask is not binary (grey levels 0, {o} and {v}); masks must hold 0 and one other value",
                    path.display()
                ),
                _ => {}
            }
        }
    }
    let data = gray
        .into_raw()
        .into_iter()
        .map(|v| u8::from(v != 0))
        .collect();
    Ok((w, h, data))
}

/// The report as a Markdown table.
pub fn markdown_table(r: &EvalReport) -> String {
    let mut s = format!(
        "| category | AU-PRO (FPR ≤ {}) | pixel AUROC | image AUROC ({}) | images | regions | seconds |\n|---|---|---|---|---|---|---|\n",
        r.fpr_limit, r.image_score
    );
    for c in &r.categories {
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
        r.mean.au_pro,
        r.mean.pixel_auroc,
        fmt_opt(r.mean.image_auroc)
    );
    s
}
