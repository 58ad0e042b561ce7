//! The per-region-overlap (PRO) curve of the official MVTec AD evaluation.
//!
//! Protocol (Bergmann et al., and the official `pro_curve_util.py`): ground-truth regions are
//! the 8-connected components of each mask. Every pixel outside a region — all pixels of good
//! images included — is a false-positive candidate. Every distinct score is a threshold; at a
//! threshold `t` the false-positive rate is the fraction of candidate pixels with score ≥ `t`
//! over the whole category, and PRO is the mean over all regions of the fraction of the region
//! with score ≥ `t`. Pixels with equal scores enter together (only the last point of a tie run
//! is kept), `(0,0)` and `(1,1)` are added, and both coordinates are clipped to 1. AU-PRO is the
//! trapezoid area over FPR ∈ [0, limit], the curve interpolated linearly at the limit when the
//! limit is not itself a curve point, divided by the limit.

use crate::radix::{f32_order_key, sort_by_high_u32};
use crate::regions::label_regions_8;
use crate::{MetricsError, Plane, Result};

/// Points of a PRO curve in order of decreasing threshold: `fpr` and `pro` start at 0 and end at
/// 1 and are non-decreasing.
#[derive(Debug, Clone, PartialEq)]
pub struct ProCurve {
    pub fpr: Vec<f64>,
    pub pro: Vec<f64>,
}

impl ProCurve {
    /// Normalised area under the curve up to `fpr_limit` (see [`trapezoid_to_limit`]).
    pub fn au_pro(&self, fpr_limit: f64) -> Result<f64> {
        check_limit(fpr_limit)?;
        Ok(trapezoid_to_limit(&self.fpr, &self.pro, fpr_limit) / fpr_limit)
    }
}

fn check_limit(fpr_limit: f64) -> Result<()> {
    if fpr_limit.is_finite() && fpr_limit > 0.0 && fpr_limit <= 1.0 {
        Ok(())
    } else {
        Err(MetricsError::BadFprLimit(fpr_limit))
    }
}

/// Trapezoid area under `(x, y)` for `x ≤ x_max`, `x` sorted non-decreasing. When `x_max` is not
/// one of the `x`, the last segment is cut at `x_max` with `y` interpolated linearly (the rule of
/// the official evaluation's `trapezoid`). Not divided by `x_max`.
pub fn trapezoid_to_limit(x: &[f64], y: &[f64], x_max: f64) -> f64 {
    let mut integrator = LimitedTrapezoid::new(x_max);
    for (&xi, &yi) in x.iter().zip(y) {
        if integrator.add(xi, yi) {
            break;
        }
    }
    integrator.area
}

/// Streaming version of [`trapezoid_to_limit`]: feed points in order; `add` returns `true` once
/// the limit has been passed and later points no longer matter.
#[derive(Debug, Clone)]
struct LimitedTrapezoid {
    x_max: f64,
    prev: Option<(f64, f64)>,
    area: f64,
    done: bool,
}

impl LimitedTrapezoid {
    fn new(x_max: f64) -> Self {
        Self {
            x_max,
            prev: None,
            area: 0.0,
            done: false,
        }
    }

    fn add(&mut self, x: f64, y: f64) -> bool {
        if self.done {
            return true;
        }
        let Some((px, py)) = self.prev else {
            if x <= self.x_max {
                self.prev = Some((x, y));
            } else {
                self.done = true;
            }
            return self.done;
        };
        if x <= self.x_max {
            self.area += 0.5 * (y + py) * (x - px);
            self.prev = Some((x, y));
        } else {
            if px < self.x_max {
                let y_at_limit = py + (y - py) * (self.x_max - px) / (x - px);
                self.area += 0.5 * (y_at_limit + py) * (self.x_max - px);
            }
            self.done = true;
        }
        self.done
    }
}

/// Every pixel of a category, sorted once by score, with what each pixel contributes: a
/// false-positive candidate (region id 0) or a share of one ground-truth region.
///
/// Memory: 8 bytes per pixel (plus 8 more during the sort) and 8 bytes per region.
#[derive(Debug, Clone)]
pub struct SortedPixels {
    /// `(order key of the score) << 32 | region id`, ascending by score.
    entries: Vec<u64>,
    /// `1 / size` of each region, indexed by region id (index 0 unused).
    inv_region_size: Vec<f64>,
    n_normal: u64,
}

/// One run of equal scores in decreasing-score order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TieGroup {
    /// False-positive candidates with this score.
    pub normal: u64,
    /// Region pixels with this score.
    pub anomalous: u64,
    /// Sum of `1 / region size` over the region pixels with this score.
    pub overlap: f64,
}

impl SortedPixels {
    /// Builds the table from lists of maps and masks of equal sizes.
    pub fn from_planes(maps: &[Plane<'_, f32>], masks: &[Plane<'_, u8>]) -> Result<Self> {
        if maps.len() != masks.len() {
            return Err(MetricsError::CountMismatch {
                maps: maps.len(),
                masks: masks.len(),
            });
        }
        let mut builder = SortedPixelsBuilder::default();
        for (map, mask) in maps.iter().zip(masks) {
            builder.push(*map, Some(*mask))?;
        }
        builder.finish()
    }

    /// Number of ground-truth regions over all images.
    pub fn n_regions(&self) -> usize {
        self.inv_region_size.len() - 1
    }

    /// Number of false-positive candidate pixels.
    pub fn n_normal_pixels(&self) -> u64 {
        self.n_normal
    }

    /// Number of pixels.
    pub fn n_pixels(&self) -> usize {
        self.entries.len()
    }

    /// Walks the runs of equal scores from the highest score down.
    pub(crate) fn for_each_group(&self, mut visit: impl FnMut(&TieGroup) -> bool) {
        let e = &self.entries;
        let mut i = e.len();
        while i > 0 {
            let key = e[i - 1] >> 32;
            let mut g = TieGroup {
                normal: 0,
                anomalous: 0,
                overlap: 0.0,
            };
            while i > 0 && e[i - 1] >> 32 == key {
                let id = (e[i - 1] & 0xffff_ffff) as usize;
                if id == 0 {
                    g.normal += 1;
                } else {
                    g.anomalous += 1;
                    g.overlap += self.inv_region_size[id];
                }
                i -= 1;
            }
            if visit(&g) {
                return;
            }
        }
    }

    /// Walks the PRO curve point by point, `(0,0)` first and `(1,1)` last; stops when `visit`
    /// returns `true`.
    pub fn for_each_curve_point(&self, mut visit: impl FnMut(f64, f64) -> bool) {
        if visit(0.0, 0.0) {
            return;
        }
        let n_regions = self.n_regions() as f64;
        let n_normal = self.n_normal as f64;
        let mut fp = 0u64;
        let mut overlap = 0.0f64;
        let mut stopped = false;
        self.for_each_group(|g| {
            fp += g.normal;
            overlap += g.overlap;
            let fpr = (fp as f64 / n_normal).min(1.0);
            let pro = (overlap / n_regions).min(1.0);
            stopped = visit(fpr, pro);
            stopped
        });
        if !stopped {
            visit(1.0, 1.0);
        }
    }

    /// The whole curve.
    pub fn pro_curve(&self) -> ProCurve {
        let mut curve = ProCurve {
            fpr: Vec::new(),
            pro: Vec::new(),
        };
        self.for_each_curve_point(|x, y| {
            curve.fpr.push(x);
            curve.pro.push(y);
            false
        });
        curve
    }

    /// AU-PRO up to `fpr_limit`, normalised by the limit, without materialising the curve.
    pub fn au_pro(&self, fpr_limit: f64) -> Result<f64> {
        check_limit(fpr_limit)?;
        let mut integrator = LimitedTrapezoid::new(fpr_limit);
        self.for_each_curve_point(|x, y| integrator.add(x, y));
        Ok(integrator.area / fpr_limit)
    }

    /// Pixel AUROC: region pixels are positives, all others negatives; ties count one half.
    pub fn pixel_auroc(&self) -> f64 {
        let positives = (self.entries.len() as u64 - self.n_normal) as f64;
        let negatives = self.n_normal as f64;
        let mut above = 0u64;
        let mut sum = 0.0f64;
        self.for_each_group(|g| {
            sum += g.normal as f64 * (above as f64 + 0.5 * g.anomalous as f64);
            above += g.anomalous;
            false
        });
        sum / (positives * negatives)
    }
}

/// The numbers of one category from a single walk over the sorted pixels.
#[derive(Debug, Clone)]
pub(crate) struct CategorySummary {
    pub au_pro: f64,
    pub pixel_auroc: f64,
    /// The curve up to just past the limit, thinned for plotting.
    pub curve: ProCurve,
}

impl SortedPixels {
    /// AU-PRO, pixel AUROC and a thinned curve in one pass (the table is ~10^8 entries for a
    /// full-resolution category: one walk instead of three).
    pub(crate) fn summarize(&self, fpr_limit: f64) -> Result<CategorySummary> {
        check_limit(fpr_limit)?;
        let n_regions = self.n_regions() as f64;
        let n_normal = self.n_normal as f64;
        let positives = (self.entries.len() as u64 - self.n_normal) as f64;
        let mut integrator = LimitedTrapezoid::new(fpr_limit);
        integrator.add(0.0, 0.0);
        let mut thinner = CurveThinner::new(fpr_limit);
        thinner.add(0.0, 0.0);
        let (mut fp, mut overlap, mut above, mut auc) = (0u64, 0.0f64, 0u64, 0.0f64);
        self.for_each_group(|g| {
            fp += g.normal;
            overlap += g.overlap;
            let fpr = (fp as f64 / n_normal).min(1.0);
            let pro = (overlap / n_regions).min(1.0);
            integrator.add(fpr, pro);
            thinner.add(fpr, pro);
            auc += g.normal as f64 * (above as f64 + 0.5 * g.anomalous as f64);
            above += g.anomalous;
            false
        });
        integrator.add(1.0, 1.0);
        thinner.add(1.0, 1.0);
        Ok(CategorySummary {
            au_pro: integrator.area / fpr_limit,
            pixel_auroc: auc / (positives * n_normal),
            curve: thinner.curve,
        })
    }
}

/// Keeps curve points up to just past `fpr_limit`, at most ~1 000 steps in FPR or PRO apart.
struct CurveThinner {
    limit: f64,
    last: (f64, f64),
    done: bool,
    curve: ProCurve,
}

impl CurveThinner {
    fn new(limit: f64) -> Self {
        Self {
            limit,
            last: (f64::NEG_INFINITY, f64::NEG_INFINITY),
            done: false,
            curve: ProCurve {
                fpr: Vec::new(),
                pro: Vec::new(),
            },
        }
    }

    fn add(&mut self, x: f64, y: f64) {
        if self.done {
            return;
        }
        let beyond = x > self.limit;
        if beyond || x - self.last.0 >= self.limit / 1000.0 || y - self.last.1 >= 1e-3 {
            self.curve.fpr.push(x);
            self.curve.pro.push(y);
            self.last = (x, y);
        }
        self.done = beyond;
    }
}

/// Collects pixels image by image; [`finish`](Self::finish) sorts them once.
#[derive(Debug, Clone)]
pub(crate) struct SortedPixelsBuilder {
    entries: Vec<u64>,
    inv_region_size: Vec<f64>,
    n_normal: u64,
    n_images: usize,
}

impl Default for SortedPixelsBuilder {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            inv_region_size: vec![0.0],
            n_normal: 0,
            n_images: 0,
        }
    }
}

/// One image's pixels, checked and labelled, with region ids local to the image. Images are
/// independent, so many can be prepared in parallel and appended in order.
#[derive(Debug, Clone)]
pub(crate) struct PreparedImage {
    entries: Vec<u64>,
    inv_region_size: Vec<f64>,
    n_normal: u64,
}

impl PreparedImage {
    /// `index` names the image in errors.
    pub fn new(index: usize, map: Plane<'_, f32>, mask: Option<Plane<'_, u8>>) -> Result<Self> {
        let (w, h) = (map.width(), map.height());
        if let Some(m) = mask
            && (m.width() != w || m.height() != h)
        {
            return Err(MetricsError::SizeMismatch {
                index,
                map_w: w,
                map_h: h,
                mask_w: m.width(),
                mask_h: m.height(),
            });
        }
        if let Some(pos) = map.data().iter().position(|v| !v.is_finite()) {
            return Err(MetricsError::NonFinite {
                index,
                x: pos % w.max(1),
                y: pos / w.max(1),
                value: map.data()[pos],
            });
        }
        let key = |s: f32| (f32_order_key(s) as u64) << 32;
        match mask {
            Some(m) if m.data().iter().any(|&v| v != 0) => {
                let (labels, n) = label_regions_8(m.data(), w, h);
                let mut sizes = vec![0u64; n as usize + 1];
                for &l in &labels {
                    sizes[l as usize] += 1;
                }
                Ok(Self {
                    entries: map
                        .data()
                        .iter()
                        .zip(&labels)
                        .map(|(&s, &l)| key(s) | l as u64)
                        .collect(),
                    inv_region_size: sizes[1..].iter().map(|&s| 1.0 / s as f64).collect(),
                    n_normal: sizes[0],
                })
            }
            _ => Ok(Self {
                entries: map.data().iter().map(|&s| key(s)).collect(),
                inv_region_size: Vec::new(),
                n_normal: map.data().len() as u64,
            }),
        }
    }

    pub fn n_regions(&self) -> u32 {
        self.inv_region_size.len() as u32
    }
}

impl SortedPixelsBuilder {
    /// Adds one image. `mask == None` means the image has no defect (a good image).
    /// Returns the number of regions the mask holds.
    pub fn push(&mut self, map: Plane<'_, f32>, mask: Option<Plane<'_, u8>>) -> Result<u32> {
        let prepared = PreparedImage::new(self.n_images, map, mask)?;
        self.append(prepared)
    }

    /// Adds an image prepared with the index [`n_images`](Self::n_images) would give it.
    pub fn append(&mut self, image: PreparedImage) -> Result<u32> {
        let base = (self.inv_region_size.len() - 1) as u64;
        let n = image.n_regions();
        if base + n as u64 > u32::MAX as u64 {
            return Err(MetricsError::TooManyRegions);
        }
        if base == 0 || n == 0 {
            self.entries.extend_from_slice(&image.entries);
        } else {
            // Shift local region ids (low 32 bits, 0 = normal) to global ones.
            self.entries.extend(
                image
                    .entries
                    .iter()
                    .map(|&e| if e & 0xffff_ffff != 0 { e + base } else { e }),
            );
        }
        self.inv_region_size
            .extend_from_slice(&image.inv_region_size);
        self.n_normal += image.n_normal;
        self.n_images += 1;
        Ok(n)
    }

    pub fn n_images(&self) -> usize {
        self.n_images
    }

    pub fn finish(self) -> Result<SortedPixels> {
        if self.n_images == 0 {
            return Err(MetricsError::Empty);
        }
        if self.inv_region_size.len() == 1 {
            return Err(MetricsError::NoDefectRegion);
        }
        if self.n_normal == 0 {
            return Err(MetricsError::NoNormalPixel);
        }
        let mut entries = self.entries;
        sort_by_high_u32(&mut entries);
        Ok(SortedPixels {
            entries,
            inv_region_size: self.inv_region_size,
            n_normal: self.n_normal,
        })
    }
}

/// The PRO curve of a category (see the module docs for the protocol).
pub fn pro_curve(maps: &[Plane<'_, f32>], masks: &[Plane<'_, u8>]) -> Result<ProCurve> {
    Ok(SortedPixels::from_planes(maps, masks)?.pro_curve())
}

/// AU-PRO of a category up to `fpr_limit` (0.3 in the paper), normalised to [0, 1].
pub fn au_pro(maps: &[Plane<'_, f32>], masks: &[Plane<'_, u8>], fpr_limit: f64) -> Result<f64> {
    check_limit(fpr_limit)?;
    SortedPixels::from_planes(maps, masks)?.au_pro(fpr_limit)
}

#[cfg(test)]
mod tests;
