//! A streaming evaluator for one category: push (map, mask) pairs one at a time, then
//! [`finish`](SegmentationEvaluator::finish) sorts all pixels once and returns every number.

use rayon::prelude::*;

use crate::pro::{PreparedImage, ProCurve, SortedPixelsBuilder};
use crate::roc::{ImageReducer, auroc};
use crate::{MetricsError, Plane, Result};

/// Accumulates the maps of one category.
#[derive(Debug, Clone)]
pub struct SegmentationEvaluator {
    pixels: SortedPixelsBuilder,
    image_scores: Vec<f32>,
    image_labels: Vec<bool>,
    reducer: ImageReducer,
    fpr_limit: f64,
}

/// The numbers of one category.
#[derive(Debug, Clone)]
pub struct SegmentationScores {
    /// Normalised area under the PRO curve up to `fpr_limit`.
    pub au_pro: f64,
    pub fpr_limit: f64,
    pub pixel_auroc: f64,
    /// `None` when the images are all good or all defective.
    pub image_auroc: Option<f64>,
    pub n_images: usize,
    pub n_regions: usize,
    pub n_pixels: usize,
    /// The PRO curve up to just past `fpr_limit`, thinned to at most ~2 000 points (for plots;
    /// the numbers above come from the full curve).
    pub curve: ProCurve,
}

impl SegmentationEvaluator {
    /// `fpr_limit` in (0, 1] (the paper uses 0.3); `reducer` turns a map into an image score.
    pub fn new(fpr_limit: f64, reducer: ImageReducer) -> Result<Self> {
        if !(fpr_limit.is_finite() && fpr_limit > 0.0 && fpr_limit <= 1.0) {
            return Err(MetricsError::BadFprLimit(fpr_limit));
        }
        reducer.check()?;
        Ok(Self {
            pixels: SortedPixelsBuilder::default(),
            image_scores: Vec::new(),
            image_labels: Vec::new(),
            reducer,
            fpr_limit,
        })
    }

    /// Adds one image; `mask == None` for an image without defects. The image counts as
    /// anomalous for the image AUROC when its mask has an anomalous pixel. Returns the number
    /// of defect regions in the mask. Errors name the image by its push index.
    pub fn push(&mut self, map: Plane<'_, f32>, mask: Option<Plane<'_, u8>>) -> Result<u32> {
        let regions = self.pixels.push(map, mask)?;
        self.image_scores.push(self.reducer.reduce(map.data()));
        self.image_labels.push(regions > 0);
        Ok(regions)
    }

    /// Adds several images at once, preparing them (checks, region labelling, keys) in
    /// parallel; the same as pushing them one by one in order.
    #[allow(clippy::type_complexity)]
    pub fn push_batch(
        &mut self,
        images: &[(Plane<'_, f32>, Option<Plane<'_, u8>>)],
    ) -> Result<Vec<u32>> {
        let first = self.len();
        let reducer = self.reducer;
        let prepared: Vec<(PreparedImage, f32)> = images
            .par_iter()
            .enumerate()
            .map(|(k, (map, mask))| {
                let p = PreparedImage::new(first + k, *map, *mask)?;
                Ok((p, reducer.reduce(map.data())))
            })
            .collect::<Result<_>>()?;
        let mut regions = Vec::with_capacity(prepared.len());
        for (p, score) in prepared {
            let n = self.pixels.append(p)?;
            self.image_scores.push(score);
            self.image_labels.push(n > 0);
            regions.push(n);
        }
        Ok(regions)
    }

    /// Number of images pushed so far.
    pub fn len(&self) -> usize {
        self.pixels.n_images()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn finish(self) -> Result<SegmentationScores> {
        let n_images = self.pixels.n_images();
        let pixels = self.pixels.finish()?;
        let summary = pixels.summarize(self.fpr_limit)?;
        let image_auroc = match auroc(&self.image_scores, &self.image_labels) {
            Ok(v) => Some(v),
            Err(MetricsError::OneClass { .. }) => None,
            Err(e) => return Err(e),
        };
        Ok(SegmentationScores {
            au_pro: summary.au_pro,
            fpr_limit: self.fpr_limit,
            pixel_auroc: summary.pixel_auroc,
            image_auroc,
            n_images,
            n_regions: pixels.n_regions(),
            n_pixels: pixels.n_pixels(),
            curve: summary.curve,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluator_matches_the_functions() {
        let maps_data: Vec<Vec<f32>> = vec![
            vec![0.1, 0.8, 0.3, 0.9, 0.2, 0.4],
            vec![0.5, 0.1, 0.2, 0.3, 0.6, 0.05],
            vec![0.7, 0.7, 0.1, 0.2, 0.3, 0.35],
        ];
        let masks_data: Vec<Vec<u8>> =
            vec![vec![0, 1, 0, 1, 0, 0], vec![0; 6], vec![1, 0, 0, 0, 0, 1]];
        let maps: Vec<_> = maps_data
            .iter()
            .map(|m| Plane::new(&m[..], 3, 2).unwrap())
            .collect();
        let masks: Vec<_> = masks_data
            .iter()
            .map(|m| Plane::new(&m[..], 3, 2).unwrap())
            .collect();
        let mut ev = SegmentationEvaluator::new(0.3, ImageReducer::Max).unwrap();
        ev.push(maps[0], Some(masks[0])).unwrap();
        ev.push(maps[1], None).unwrap();
        ev.push(maps[2], Some(masks[2])).unwrap();
        let mut batched = SegmentationEvaluator::new(0.3, ImageReducer::Max).unwrap();
        batched
            .push_batch(&[(maps[0], Some(masks[0])), (maps[1], None)])
            .unwrap();
        batched.push_batch(&[(maps[2], Some(masks[2]))]).unwrap();
        let s = ev.finish().unwrap();
        let b = batched.finish().unwrap();
        assert_eq!((s.au_pro, s.pixel_auroc), (b.au_pro, b.pixel_auroc));
        assert_eq!((s.image_auroc, s.n_regions), (b.image_auroc, b.n_regions));
        assert_eq!(s.au_pro, crate::au_pro(&maps, &masks, 0.3).unwrap());
        assert_eq!(s.pixel_auroc, crate::pixel_auroc(&maps, &masks).unwrap());
        // Image scores 0.9 (bad), 0.6 (good), 0.7 (bad): both bad above the good one.
        assert_eq!(s.image_auroc, Some(1.0));
        assert_eq!(s.n_images, 3);
        // Image 0: (1,0) and (0,1) are diagonal neighbours -> 1 region; image 2: (0,0) and
        // (2,1) are not neighbours -> 2 regions.
        assert_eq!(s.n_regions, 3);
        assert_eq!(s.n_pixels, 18);
    }

    #[test]
    fn bad_settings_are_errors() {
        assert!(SegmentationEvaluator::new(0.0, ImageReducer::Max).is_err());
        assert!(SegmentationEvaluator::new(1.5, ImageReducer::Max).is_err());
        assert!(SegmentationEvaluator::new(0.3, ImageReducer::TopMean { fraction: 2.0 }).is_err());
        let ev = SegmentationEvaluator::new(0.3, ImageReducer::Max).unwrap();
        assert!(matches!(ev.finish(), Err(MetricsError::Empty)));
    }
}
