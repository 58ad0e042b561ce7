//! What the engine evaluates: anything that turns a test image into score maps at a fixed
//! square size — the students' [`ust_detector::Detector`] (one map per scale, for each choice
//! of score terms) and the descriptor baselines of Table 1 (one map per method).

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;
use ust_data::Size;

use crate::error::Result;

/// A scorer of a category's test images.
///
/// Per image it returns [`MapLayout::maps`] maps of `side`×`side` scores (row-major, at the
/// model's size); the engine resizes them to the image's own size, evaluates each row of the
/// layout (one map, or the pixel-wise mean of several), keeps the maps of an interrupted
/// evaluation (keyed by [`TestScorer::resume_key`]) and writes the maps of the layout's shown
/// row.
pub trait TestScorer {
    /// What a caller chooses besides the scorer itself (the detector: the device, its run
    /// directory and further score terms; a baseline: the device).
    type Options;

    /// What the scores depend on besides the test images: kept beside the scores of an
    /// interrupted evaluation, whose scores are used again only under an equal key.
    type Key: Serialize + DeserializeOwned + PartialEq;

    /// The maps per image and the rows they are evaluated as.
    fn layout(&self, options: &Self::Options) -> MapLayout;

    /// The key of the scores this scorer computes with `options`.
    fn resume_key(&self, options: &Self::Options) -> Result<Self::Key>;

    /// Scores one image file.
    fn score(&mut self, image: &Path, options: &Self::Options) -> Result<ScoredImage>;
}

/// A scored image: its maps at the model's size, in the order of the layout, and the image's
/// own size (the maps are resized to it).
#[derive(Debug, Clone)]
pub struct ScoredImage {
    pub maps: Vec<Vec<f32>>,
    pub original_size: Size,
}

/// The maps a scorer returns per image and what is evaluated of them.
#[derive(Debug, Clone, PartialEq)]
pub struct MapLayout {
    /// The maps are `side`×`side`.
    pub side: usize,
    /// Maps per image.
    pub maps: usize,
    /// The evaluated rows, in report order.
    pub rows: Vec<RowSpec>,
    /// The row whose maps are saved and shown (`ust evaluate --save-maps --images`).
    pub shown: usize,
}

/// One evaluated row: a map of the layout, or the pixel-wise mean of several (the
/// multi-scale map), taken at the model's size and then resized to the image's.
#[derive(Debug, Clone, PartialEq)]
pub struct RowSpec {
    /// The row's name in reports (`p=33`, `multi-scale (17+33)`, `knn`).
    pub name: String,
    /// Rows of one group are reported together (the detector: one group per choice of score
    /// terms; a baseline: one per method).
    pub group: usize,
    /// Indices into the image's maps.
    pub maps: Vec<usize>,
}

impl MapLayout {
    /// Checks that the rows name existing maps and that the shown row exists.
    pub fn check(&self) -> Result<()> {
        let bad = self.rows.is_empty()
            || self.shown >= self.rows.len()
            || self
                .rows
                .iter()
                .any(|r| r.maps.is_empty() || r.maps.iter().any(|&m| m >= self.maps));
        if bad || self.side == 0 {
            return Err(crate::EngineError::Invalid(format!(
                "a map layout of {} map(s) at {}×{} with rows {:?} (shown: {}) is inconsistent",
                self.maps,
                self.side,
                self.side,
                self.rows.iter().map(|r| &r.maps).collect::<Vec<_>>(),
                self.shown
            )));
        }
        Ok(())
    }
}
