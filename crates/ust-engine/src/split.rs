//! Any [`TestScorer`] on a category's test images: score each image (or take its kept maps
//! when resuming), resize every row's map to the image's size, feed one streaming evaluator
//! per row, and write the shown row's maps and pictures when asked.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ust_data::{AnomalyMap, BinaryMask, Size, TestSample};
use ust_detector::pipeline::mean_over_scales;
use ust_metrics::{ImageReducer, Plane, SegmentationEvaluator, SegmentationScores};

use crate::error::{Context, EngineError, Result};
use crate::html::GalleryEntry;
use crate::observer::EvaluationObserver;
use crate::postprocess::{MapWriter, OutputFormat, max_score, resize_to_original};
use crate::resume::PartialScores;
use crate::scorer::{RowSpec, TestScorer};

/// How a test split is evaluated and what is written on the way.
#[derive(Debug, Clone)]
pub struct SplitSettings {
    /// AU-PRO integrates the PRO curve up to this false-positive rate.
    pub fpr_limit: f64,
    /// Image score from a map.
    pub image_score: ImageReducer,
    /// Write the shown row's maps as 32-bit float TIFF under this folder, as
    /// `<defect>/<name>.tiff` (give it `OUT/maps/<category>/test` for the layout of the
    /// official evaluation script).
    pub save_maps: Option<PathBuf>,
    /// Write heatmap and overlay PNGs of the shown row under `OUT/images/<defect>/` (with
    /// copies of the image and its mask) and return the gallery entries.
    pub images: Option<ImageOutputs>,
    /// Stop with [`EngineError::Stopped`] after scoring this many images (a test hook for
    /// resumption: as if the process had been killed).
    pub stop_after: Option<usize>,
}

impl SplitSettings {
    /// The protocol's metrics (FPR limit, image score), nothing written.
    pub fn new(fpr_limit: f64, image_score: ImageReducer) -> Self {
        Self {
            fpr_limit,
            image_score,
            save_maps: None,
            images: None,
            stop_after: None,
        }
    }
}

/// The pictures of `ust evaluate --images`.
#[derive(Debug, Clone)]
pub struct ImageOutputs {
    /// The report folder: pictures go under `out/images/`, gallery paths are relative to it.
    pub out: PathBuf,
    /// The heatmaps' colour range.
    pub writer: MapWriter,
}

/// One evaluated row.
#[derive(Debug, Clone)]
pub struct RowResult {
    pub spec: RowSpec,
    pub scores: SegmentationScores,
    /// Seconds resizing and evaluating this row's maps.
    pub seconds: f64,
}

/// What [`evaluate_split`] found.
#[derive(Debug, Clone)]
pub struct SplitOutcome {
    /// In the order of the layout's rows.
    pub rows: Vec<RowResult>,
    /// Test images evaluated.
    pub images: usize,
    /// Of those, scored now (the rest had kept maps).
    pub scored: usize,
    /// Wall-clock seconds of the loop over the images.
    pub seconds: f64,
    /// The gallery of `--images`, in test order.
    pub gallery: Vec<GalleryEntry>,
}

/// Evaluates `scorer` on `samples` (a category's test images, in order). With `store`, images
/// whose maps it keeps are not scored again, and every image scored now is kept there.
pub fn evaluate_split<S: TestScorer>(
    scorer: &mut S,
    options: &S::Options,
    samples: &[TestSample],
    settings: &SplitSettings,
    mut store: Option<&mut PartialScores>,
    observer: &mut dyn EvaluationObserver,
) -> Result<SplitOutcome> {
    let layout = scorer.layout(options);
    layout.check()?;
    let side = layout.side;
    let mut evaluators = layout
        .rows
        .iter()
        .map(|_| SegmentationEvaluator::new(settings.fpr_limit, settings.image_score))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut row_seconds = vec![0.0; layout.rows.len()];
    let maps_writer = MapWriter::new(vec![OutputFormat::Tiff], None, None);
    let mut gallery = Vec::new();
    let mut scored = 0usize;
    let started = Instant::now();
    observer.started(samples.len());
    for (index, sample) in samples.iter().enumerate() {
        let kept = match store.as_deref_mut() {
            Some(store) => store.get(index)?,
            None => None,
        };
        let resumed = kept.is_some();
        let (maps, original_size) = match kept {
            Some(maps) => (maps, kept_image_size(&sample.path)?),
            None => {
                let image = scorer.score(&sample.path, options)?;
                let bad = image.maps.iter().find(|m| m.len() != side * side);
                if image.maps.len() != layout.maps || bad.is_some() {
                    return Err(EngineError::ScorerShape {
                        image: sample.path.clone(),
                        got: image.maps.len(),
                        got_len: bad.or(image.maps.first()).map_or(0, Vec::len),
                        maps: layout.maps,
                        side,
                    });
                }
                if let Some(store) = store.as_deref_mut() {
                    store.put(index, &image.maps)?;
                }
                scored += 1;
                if settings.stop_after.is_some_and(|n| scored >= n) {
                    return Err(EngineError::Stopped { scored });
                }
                (image.maps, image.original_size)
            }
        };
        let mask = match &sample.mask_path {
            Some(_) => Some(sample.load_mask()?),
            None => None,
        };
        let mut shown = None;
        for (r, (row, evaluator)) in layout.rows.iter().zip(&mut evaluators).enumerate() {
            let t = Instant::now();
            let scores: Cow<'_, [f32]> = match row.maps.as_slice() {
                [one] => Cow::Borrowed(&maps[*one]),
                several => Cow::Owned(mean_over_scales(
                    &several.iter().map(|&m| maps[m].clone()).collect::<Vec<_>>(),
                )),
            };
            let map = resize_to_original(&scores, side, original_size)?;
            push_map(evaluator, &map, mask.as_ref(), sample)?;
            row_seconds[r] += t.elapsed().as_secs_f64();
            if r == layout.shown {
                shown = Some(map);
            }
        }
        let shown = shown.expect("the layout's shown row exists (checked)");
        let rel = PathBuf::from(&sample.defect_type).join(sample.name());
        if let Some(dir) = &settings.save_maps {
            maps_writer.write(&dir.join(&rel), &shown, &sample.path)?;
        }
        if let Some(images) = &settings.images {
            let base = images.out.join("images").join(&rel);
            images.writer.write(&base, &shown, &sample.path)?;
            gallery.push(GalleryEntry::write(
                &images.out,
                &base,
                sample,
                max_score(&shown.data),
            )?);
        }
        observer.image_done(index, sample, resumed);
    }
    observer.finished();
    let seconds = started.elapsed().as_secs_f64();
    let rows = layout
        .rows
        .into_iter()
        .zip(evaluators)
        .zip(row_seconds)
        .map(|((spec, evaluator), seconds)| {
            Ok(RowResult {
                spec,
                scores: evaluator.finish()?,
                seconds,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(SplitOutcome {
        rows,
        images: samples.len(),
        scored,
        seconds,
        gallery,
    })
}

/// The size of an image whose maps were kept: decoded as the scorers load it, so the maps are
/// resized exactly as when they were scored.
fn kept_image_size(path: &Path) -> Result<Size> {
    let image = ust_data::image_io::decode_image(path)
        .context_with(|| format!("reloading the scores of {}", path.display()))?;
    Ok(Size::new(image.width(), image.height()))
}

/// Adds one test image's anomaly map (at the image's size) and its ground-truth mask (none for
/// a good image) to an evaluator; a mask of another size than the map is an error naming the
/// mask file.
pub fn push_map(
    evaluator: &mut SegmentationEvaluator,
    map: &AnomalyMap,
    mask: Option<&BinaryMask>,
    sample: &TestSample,
) -> Result<()> {
    let plane = Plane::new(&map.data, map.width, map.height)?;
    let mask_plane = match mask {
        Some(m) => {
            if (m.width(), m.height()) != (map.width, map.height) {
                return Err(EngineError::MaskMapSize {
                    mask: sample
                        .mask_path
                        .clone()
                        .unwrap_or_else(|| PathBuf::from("?")),
                    mask_w: m.width(),
                    mask_h: m.height(),
                    map_w: map.width,
                    map_h: map.height,
                });
            }
            Some(Plane::new(m.data(), m.width(), m.height())?)
        }
        None => None,
    };
    evaluator
        .push(plane, mask_plane)
        .context_with(|| format!("evaluating {}", sample.path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observer::NoProgress;
    use crate::scorer::{MapLayout, ScoredImage};
    use serde::{Deserialize, Serialize};

    /// A category `widget` of 8×8 grey images: three good, three with a bright 4×4 square (its
    /// mask the square).
    fn category(root: &Path) -> ust_data::MvtecCategory {
        let dir = root.join("widget");
        let save = |rel: &str, data: Vec<u8>| {
            let path = dir.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            image::GrayImage::from_raw(8, 8, data)
                .unwrap()
                .save(path)
                .unwrap();
        };
        let square = |v: u8| -> Vec<u8> {
            (0..64)
                .map(|i| {
                    if (2..6).contains(&(i % 8)) && (2..6).contains(&(i / 8)) {
                        v
                    } else {
                        0
                    }
                })
                .collect()
        };
        save("train/good/t0.png", vec![10; 64]);
        for i in 0..3 {
            save(&format!("test/good/g{i}.png"), vec![10 * i as u8; 64]);
            save(&format!("test/blob/b{i}.png"), square(200));
            save(&format!("ground_truth/blob/b{i}_mask.png"), square(255));
        }
        ust_data::MvtecCategory::open(&dir).unwrap()
    }

    /// Scores the image's own brightness (resized to 4×4) and its negation, counting calls.
    struct Brightness {
        calls: usize,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Key {
        name: String,
    }

    impl TestScorer for Brightness {
        type Options = ();
        type Key = Key;

        fn layout(&self, _: &()) -> MapLayout {
            let row = |name: &str, maps: Vec<usize>| crate::scorer::RowSpec {
                name: name.into(),
                group: 0,
                maps,
            };
            MapLayout {
                side: 4,
                maps: 2,
                rows: vec![
                    row("bright", vec![0]),
                    row("dark", vec![1]),
                    row("mean", vec![0, 1]),
                ],
                shown: 0,
            }
        }

        fn resume_key(&self, _: &()) -> crate::Result<Key> {
            Ok(Key {
                name: "brightness".into(),
            })
        }

        fn score(&mut self, image: &Path, _: &()) -> crate::Result<ScoredImage> {
            self.calls += 1;
            let loaded = ust_data::image_io::load_rgb(image, Some(Size::new(4, 4)))?;
            let bright: Vec<f32> = loaded.image.data()[..16].to_vec();
            let dark = bright.iter().map(|v| -v).collect();
            Ok(ScoredImage {
                maps: vec![bright, dark],
                original_size: loaded.original_size,
            })
        }
    }

    fn open(out: &Path, samples: &[TestSample]) -> PartialScores {
        PartialScores::open(out, &Brightness { calls: 0 }, &(), samples).unwrap()
    }

    fn figures(outcome: &SplitOutcome) -> Vec<(String, f64, f64, Option<f64>)> {
        outcome
            .rows
            .iter()
            .map(|r| {
                (
                    r.spec.name.clone(),
                    r.scores.au_pro,
                    r.scores.pixel_auroc,
                    r.scores.image_auroc,
                )
            })
            .collect()
    }

    #[test]
    fn rows_are_evaluated_and_the_shown_map_saved() {
        let dir = tempfile::tempdir().unwrap();
        let category = category(dir.path());
        let samples = category.test_samples().to_vec();
        let settings = SplitSettings {
            save_maps: Some(dir.path().join("maps")),
            ..SplitSettings::new(0.3, ImageReducer::Max)
        };
        let mut scorer = Brightness { calls: 0 };
        let outcome =
            evaluate_split(&mut scorer, &(), &samples, &settings, None, &mut NoProgress).unwrap();
        assert_eq!((outcome.images, outcome.scored, scorer.calls), (6, 6, 6));
        let rows = figures(&outcome);
        // Brightness finds the squares; its negation ranks them last; the mean is flat.
        assert_eq!(rows[0].0, "bright");
        assert!(rows[0].2 > 0.99 && rows[0].3 == Some(1.0), "{rows:?}");
        assert!(rows[1].2 < 0.01, "{rows:?}");
        assert_eq!(rows[2].2, 0.5, "{rows:?}");
        // The shown row's maps, at the image's size.
        let map = ust_data::maps::read_map(dir.path().join("maps/blob/b1.tiff")).unwrap();
        assert_eq!((map.width, map.height), (8, 8));
    }

    /// A resumed evaluation scores only the images missing from the kept scores and reports
    /// what an uninterrupted one does.
    #[test]
    fn a_resumed_evaluation_scores_only_the_missing_images() {
        let dir = tempfile::tempdir().unwrap();
        let category = category(dir.path());
        let samples = category.test_samples().to_vec();
        let settings = SplitSettings::new(0.3, ImageReducer::Max);
        let full_out = dir.path().join("full");
        let mut store = open(&full_out, &samples);
        let mut scorer = Brightness { calls: 0 };
        let full = evaluate_split(
            &mut scorer,
            &(),
            &samples,
            &settings,
            Some(&mut store),
            &mut NoProgress,
        )
        .unwrap();
        assert_eq!((store.resumed, scorer.calls), (0, 6));

        let out = dir.path().join("part");
        let stopping = SplitSettings {
            stop_after: Some(2),
            ..settings.clone()
        };
        let mut store = open(&out, &samples);
        let err = evaluate_split(
            &mut Brightness { calls: 0 },
            &(),
            &samples,
            &stopping,
            Some(&mut store),
            &mut NoProgress,
        )
        .unwrap_err();
        assert!(matches!(err, EngineError::Stopped { scored: 2 }), "{err}");

        let mut store = open(&out, &samples);
        let mut scorer = Brightness { calls: 0 };
        let resumed = evaluate_split(
            &mut scorer,
            &(),
            &samples,
            &settings,
            Some(&mut store),
            &mut NoProgress,
        )
        .unwrap();
        assert_eq!((store.resumed, scorer.calls, resumed.scored), (2, 4, 4));
        assert_eq!(figures(&resumed), figures(&full));
        store.finish().unwrap();
        assert!(!out.join(crate::resume::PARTIAL_DIR).exists());

        // Other test images: another key, nothing resumed.
        let mut store = open(&full_out, &samples[1..]);
        let mut scorer = Brightness { calls: 0 };
        evaluate_split(
            &mut scorer,
            &(),
            &samples[1..],
            &settings,
            Some(&mut store),
            &mut NoProgress,
        )
        .unwrap();
        assert_eq!((store.resumed, scorer.calls), (0, 5));
    }
}
