//! Resumable `ust evaluate`: every test image's per-scale scores (at the model's size) are
//! kept in `OUT/evaluate-partial/` until the report is written, so an evaluation interrupted
//! on a large test split (the magnetic tiles' 583 images take hours here) continues with the
//! first image it had not scored, losing at most the image in progress.
//!
//! The folder holds `key.json` (what the scores depend on: the loaded scales, the score terms
//! (those of further rows included), the image size, each scale file's path, length and
//! modification time, and the test images in order) and one `NNNNN.f32` per scored image (the
//! scales' maps one after the other, for each choice of score terms in turn, little-endian
//! f32), each written atomically. A folder whose key differs (another run, a retrained scale, other
//! test images) is cleared, never mixed in.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use ust_data::TestSample;
use ust_detector::student::ScalePaths;
use ust_detector::{Detector, ScoreTerms};

/// The folder of an evaluation's kept scores, under its report folder.
pub const PARTIAL_DIR: &str = "evaluate-partial";
const KEY_FILE: &str = "key.json";

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct ScaleStamp {
    path: String,
    bytes: u64,
    modified_ns: u128,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct PartialKey {
    scales: Vec<usize>,
    /// `#[serde(default)]`: a folder kept before the choice existed holds `e+v` scores.
    #[serde(default)]
    score_terms: ScoreTerms,
    /// The further score terms evaluated beside (`ust evaluate --score e+v,e,v`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    other_terms: Vec<ScoreTerms>,
    image_size: usize,
    models: Vec<ScaleStamp>,
    samples: Vec<String>,
}

impl PartialKey {
    fn new(
        detector: &Detector,
        other_terms: &[ScoreTerms],
        run_dir: &Path,
        samples: &[TestSample],
    ) -> Result<Self> {
        let mut models = Vec::new();
        for p in detector.patch_sizes() {
            let path = ScalePaths::in_run_dir(run_dir, p).model;
            let meta =
                std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
            let modified_ns = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            models.push(ScaleStamp {
                path: path
                    .canonicalize()
                    .unwrap_or(path.clone())
                    .display()
                    .to_string(),
                bytes: meta.len(),
                modified_ns,
            });
        }
        Ok(Self {
            scales: detector.patch_sizes(),
            score_terms: detector.score_terms,
            other_terms: other_terms.to_vec(),
            image_size: detector.image_size(),
            models,
            samples: samples
                .iter()
                .map(|s| s.path.display().to_string())
                .collect(),
        })
    }
}

/// The kept scores of one evaluation.
pub struct PartialMaps {
    dir: PathBuf,
    /// Maps per image: scales × choices of score terms.
    maps: usize,
    pixels: usize,
    /// Images whose scores came from the folder rather than the networks.
    pub resumed: usize,
}

impl PartialMaps {
    /// Opens `out/evaluate-partial/` for this detector and test split: kept as it is when its
    /// key matches, otherwise cleared and started afresh.
    pub fn open(
        out: &Path,
        detector: &Detector,
        other_terms: &[ScoreTerms],
        run_dir: &Path,
        samples: &[TestSample],
    ) -> Result<Self> {
        let dir = out.join(PARTIAL_DIR);
        let key = PartialKey::new(detector, other_terms, run_dir, samples)?;
        let key_path = dir.join(KEY_FILE);
        let matches = std::fs::read_to_string(&key_path)
            .ok()
            .and_then(|t| serde_json::from_str::<PartialKey>(&t).ok())
            .is_some_and(|k| k == key);
        if !matches {
            if dir.exists() {
                tracing::info!(dir = %dir.display(), "scores of another evaluation cleared");
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("clearing {}", dir.display()))?;
            }
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            ust_data::files::write_bytes_atomically(
                &key_path,
                serde_json::to_string(&key)?.as_bytes(),
            )
            .with_context(|| format!("writing {}", key_path.display()))?;
        }
        let size = detector.image_size();
        Ok(Self {
            dir,
            maps: key.scales.len() * (1 + other_terms.len()),
            pixels: size * size,
            resumed: 0,
        })
    }

    fn file(&self, index: usize) -> PathBuf {
        self.dir.join(format!("{index:05}.f32"))
    }

    /// The kept scores of test image `index`, if it was scored before.
    pub fn get(&mut self, index: usize) -> Result<Option<Vec<Vec<f32>>>> {
        let path = self.file(index);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        if bytes.len() != self.maps * self.pixels * 4 {
            bail!(
                "{}: {} bytes, expected {} ({} map(s) of {} scores); delete the folder {} to \
                 score every image again",
                path.display(),
                bytes.len(),
                self.maps * self.pixels * 4,
                self.maps,
                self.pixels,
                self.dir.display()
            );
        }
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        self.resumed += 1;
        Ok(Some(
            values.chunks(self.pixels).map(<[f32]>::to_vec).collect(),
        ))
    }

    /// Keeps the scores of test image `index` (atomically).
    pub fn put(&self, index: usize, per_scale: &[Vec<f32>]) -> Result<()> {
        let mut bytes = Vec::with_capacity(self.maps * self.pixels * 4);
        for v in per_scale.iter().flatten() {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let path = self.file(index);
        ust_data::files::write_bytes_atomically(&path, &bytes)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Removes the folder once the report is written.
    pub fn finish(self) -> Result<()> {
        std::fs::remove_dir_all(&self.dir)
            .with_context(|| format!("removing {}", self.dir.display()))
    }
}
