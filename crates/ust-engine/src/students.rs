//! The students' [`Detector`] as a [`TestScorer`]: per image one map per loaded scale for the
//! detector's own score terms, then again for each further choice of terms (the networks run
//! once for all); evaluated per scale and, with several scales, as their pixel-wise mean (the
//! multi-scale map, METHOD.md §6), which is the map saved and shown.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use ust_detector::student::ScalePaths;
use ust_detector::{Detector, Device, ScoreTerms};

use crate::error::{Context, EngineError, Result};
use crate::scorer::{MapLayout, RowSpec, ScoredImage, TestScorer};

/// What the detector's scores depend on besides the detector: where it runs, the run directory
/// its scale files lie in (they key the kept scores of an interrupted evaluation), and the
/// score terms evaluated beside its own (`ust evaluate --score e+v,e,v`).
#[derive(Debug, Clone)]
pub struct StudentOptions {
    pub device: Device,
    pub run_dir: PathBuf,
    pub other_terms: Vec<ScoreTerms>,
}

/// A scale file as the key of kept scores sees it: a retrained scale has another length or
/// modification time.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct ScaleStamp {
    pub path: String,
    pub bytes: u64,
    pub modified_ns: u128,
}

/// What the students' scores depend on (the fields of `key.json` before the test images).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct StudentKey {
    pub scales: Vec<usize>,
    /// `#[serde(default)]`: a folder kept before the choice existed holds `e+v` scores.
    #[serde(default)]
    pub score_terms: ScoreTerms,
    /// The further score terms evaluated beside.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_terms: Vec<ScoreTerms>,
    pub image_size: usize,
    pub models: Vec<ScaleStamp>,
}

/// The name of the multi-scale row of these scales: `multi-scale (17+33+65)`.
pub fn multi_scale_name(scales: &[usize]) -> String {
    format!(
        "multi-scale ({})",
        scales
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("+")
    )
}

/// The rows of a detector with these scales under `terms` choices of score terms: per choice,
/// each scale, then their mean when there are several. The maps are term-major.
pub fn student_layout(scales: &[usize], image_size: usize, terms: usize) -> MapLayout {
    let k = scales.len();
    let multi = k > 1;
    let mut rows = Vec::new();
    for group in 0..terms {
        for (i, p) in scales.iter().enumerate() {
            rows.push(RowSpec {
                name: format!("p={p}"),
                group,
                maps: vec![group * k + i],
            });
        }
        if multi {
            rows.push(RowSpec {
                name: multi_scale_name(scales),
                group,
                maps: (group * k..(group + 1) * k).collect(),
            });
        }
    }
    MapLayout {
        side: image_size,
        maps: k * terms,
        rows,
        shown: if multi { k } else { 0 },
    }
}

impl TestScorer for Detector {
    type Options = StudentOptions;
    type Key = StudentKey;

    fn layout(&self, options: &StudentOptions) -> MapLayout {
        student_layout(
            &self.patch_sizes(),
            self.image_size(),
            1 + options.other_terms.len(),
        )
    }

    fn resume_key(&self, options: &StudentOptions) -> Result<StudentKey> {
        let mut models = Vec::new();
        for p in self.patch_sizes() {
            models.push(stamp(&ScalePaths::in_run_dir(&options.run_dir, p).model)?);
        }
        Ok(StudentKey {
            scales: self.patch_sizes(),
            score_terms: self.score_terms,
            other_terms: options.other_terms.clone(),
            image_size: self.image_size(),
            models,
        })
    }

    fn score(&mut self, image: &Path, options: &StudentOptions) -> Result<ScoredImage> {
        let terms: Vec<ScoreTerms> = std::iter::once(self.score_terms)
            .chain(options.other_terms.iter().copied())
            .collect();
        let predictions = self
            .predict_file_terms(image, &options.device, &terms)
            .context_with(|| format!("scoring {}", image.display()))?;
        let original_size = predictions
            .first()
            .map(|p| p.image.original_size)
            .ok_or_else(|| EngineError::Invalid("no score terms to evaluate".into()))?;
        Ok(ScoredImage {
            maps: predictions.into_iter().flat_map(|p| p.per_scale).collect(),
            original_size,
        })
    }
}

fn stamp(path: &Path) -> Result<ScaleStamp> {
    let meta = std::fs::metadata(path).map_err(EngineError::io("reading", path))?;
    let modified_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok(ScaleStamp {
        path: path
            .canonicalize()
            .unwrap_or(path.to_path_buf())
            .display()
            .to_string(),
        bytes: meta.len(),
        modified_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_scales_then_their_mean_per_choice_of_terms() {
        let layout = student_layout(&[17, 33], 8, 2);
        let names: Vec<(&str, usize, &[usize])> = layout
            .rows
            .iter()
            .map(|r| (r.name.as_str(), r.group, r.maps.as_slice()))
            .collect();
        assert_eq!(
            names,
            [
                ("p=17", 0, &[0][..]),
                ("p=33", 0, &[1][..]),
                ("multi-scale (17+33)", 0, &[0, 1][..]),
                ("p=17", 1, &[2][..]),
                ("p=33", 1, &[3][..]),
                ("multi-scale (17+33)", 1, &[2, 3][..]),
            ]
        );
        assert_eq!((layout.maps, layout.shown), (4, 2));
        layout.check().unwrap();
        // One scale: no mean, the scale's map is shown.
        let one = student_layout(&[65], 8, 1);
        assert_eq!((one.rows.len(), one.shown, one.maps), (1, 0, 1));
    }
}
