//! `ust predict`'s work: anomaly maps of new images with a trained detector, written at each
//! image's own size ([`MapWriter`]), and the per-image verdicts of `summary.csv` /
//! `summary.json` ([`PredictionSummary`]).

use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::Serialize;
use ust_detector::Detector;

use crate::error::{Context, EngineError, Result};
use crate::postprocess::{MapWriter, max_score, resize_to_original};

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

    /// How many images the verdicts call anomalous.
    pub fn flagged(&self) -> usize {
        self.images
            .iter()
            .filter(|r| r.anomalous == Some(true))
            .count()
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
                return Err(EngineError::Invalid(format!(
                    "{} holds no images",
                    input.display()
                )));
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
            return Err(EngineError::Invalid(format!(
                "{} does not exist",
                input.display()
            )));
        }
    }
    Ok(out)
}

/// Scores each of `inputs` (image, relative output path) with `detector`, writes its maps
/// under `out` with `writer`, and returns its verdict against `image_threshold` (an image is
/// anomalous when its image score exceeds it). `done` is called after each image.
pub fn predict_images(
    detector: &Detector,
    device: &Device,
    inputs: &[(PathBuf, PathBuf)],
    out: &Path,
    writer: &MapWriter,
    image_threshold: Option<f64>,
    mut done: impl FnMut(),
) -> Result<Vec<ImageVerdict>> {
    let mut rows = Vec::with_capacity(inputs.len());
    for (path, rel) in inputs {
        let prediction = detector
            .predict_file(path, device)
            .context_with(|| format!("scoring {}", path.display()))?;
        let map = resize_to_original(
            &prediction.model_scores,
            prediction.model_size,
            prediction.image.original_size,
        )?;
        writer.write(&out.join(rel), &map, path)?;
        let image_score = max_score(&prediction.model_scores);
        rows.push(ImageVerdict {
            image: path.display().to_string(),
            output: rel.display().to_string(),
            image_score,
            anomalous: image_threshold.map(|t| image_score > t),
        });
        tracing::debug!(image = %path.display(), "predicted");
        done();
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_keep_their_relative_paths_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("in");
        std::fs::create_dir_all(folder.join("a")).unwrap();
        let png = |p: &Path| {
            image::GrayImage::from_pixel(4, 4, image::Luma([9]))
                .save(p)
                .unwrap()
        };
        png(&folder.join("a/x.png"));
        png(&dir.path().join("single.png"));
        let got = collect_inputs(&[folder.clone(), dir.path().join("single.png")]).unwrap();
        let rel: Vec<_> = got.iter().map(|(_, r)| r.clone()).collect();
        assert_eq!(rel, [PathBuf::from("a/x"), PathBuf::from("single")]);
        let absent = dir.path().join("absent");
        let err = collect_inputs(&[absent]).unwrap_err().to_string();
        assert!(err.ends_with("absent does not exist"), "{err}");
        std::fs::create_dir_all(dir.path().join("empty")).unwrap();
        let err = collect_inputs(&[dir.path().join("empty")]).unwrap_err();
        assert!(err.to_string().contains("no images"), "{err}");
    }

    #[test]
    fn the_csv_quotes_paths_and_leaves_missing_verdicts_empty() {
        let row = |image: &str, anomalous| ImageVerdict {
            image: image.into(),
            output: "o".into(),
            image_score: 1.5,
            anomalous,
        };
        let summary = PredictionSummary {
            run_dir: "r".into(),
            scales: vec![33],
            image_fpr: 0.0,
            threshold: Some(1.0),
            validation_images: 2,
            images: vec![row("a\"b.png", Some(true)), row("c.png", None)],
        };
        assert_eq!(
            summary.csv(),
            "image,output,image_score,anomalous\n\"a\"\"b.png\",\"o\",1.5,true\n\"c.png\",\"o\",1.5,\n"
        );
        assert_eq!(summary.flagged(), 1);
    }
}
