//! ROC areas with exact tie handling, and the reduction of an anomaly map to an image score.

use std::str::FromStr;

use crate::pro::SortedPixels;
use crate::{MetricsError, Plane, Result};

/// Area under the ROC curve of `scores` for binary `labels` (`true` = anomalous, expected to
/// score higher). Equal scores count one half (Mann–Whitney U with mid-ranks, equal to the
/// trapezoid rule on the ROC curve whose points are the distinct thresholds).
pub fn auroc(scores: &[f32], labels: &[bool]) -> Result<f64> {
    if scores.len() != labels.len() {
        return Err(MetricsError::LabelCountMismatch {
            scores: scores.len(),
            labels: labels.len(),
        });
    }
    if let Some(index) = scores.iter().position(|s| !s.is_finite()) {
        return Err(MetricsError::NonFiniteScore {
            index,
            value: scores[index],
        });
    }
    let positives = labels.iter().filter(|&&l| l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return Err(MetricsError::OneClass {
            positives,
            negatives,
        });
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_unstable_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut above = 0u64;
    let mut sum = 0.0f64;
    let mut i = 0;
    while i < order.len() {
        let s = scores[order[i]];
        let (mut pos, mut neg) = (0u64, 0u64);
        // `==` (not bit equality) so that -0.0 and 0.0 tie.
        while i < order.len() && scores[order[i]] == s {
            if labels[order[i]] {
                pos += 1;
            } else {
                neg += 1;
            }
            i += 1;
        }
        sum += neg as f64 * (above as f64 + 0.5 * pos as f64);
        above += pos;
    }
    Ok(sum / (positives as f64 * negatives as f64))
}

/// How an anomaly map becomes one image-level score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ImageReducer {
    /// The maximum of the map (the paper's choice).
    Max,
    /// The mean of the highest `fraction` of the map's values (at least one value).
    TopMean { fraction: f64 },
}

impl ImageReducer {
    /// Mean of the top 1 % of the pixels.
    pub const TOP_1_PERCENT: Self = Self::TopMean { fraction: 0.01 };

    pub fn check(&self) -> Result<()> {
        match *self {
            Self::Max => Ok(()),
            Self::TopMean { fraction } if fraction > 0.0 && fraction <= 1.0 => Ok(()),
            Self::TopMean { fraction } => Err(MetricsError::BadTopFraction(fraction)),
        }
    }

    /// The image score of `map` (finite values expected; an empty map gives NaN).
    pub fn reduce(&self, map: &[f32]) -> f32 {
        match *self {
            Self::Max => map.iter().copied().fold(f32::NAN, f32::max),
            Self::TopMean { fraction } => {
                if map.is_empty() {
                    return f32::NAN;
                }
                let k = ((fraction * map.len() as f64).ceil() as usize).clamp(1, map.len());
                let mut values = map.to_vec();
                values.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
                let sum: f64 = values[..k].iter().map(|&v| v as f64).sum();
                (sum / k as f64) as f32
            }
        }
    }
}

impl FromStr for ImageReducer {
    type Err = String;

    /// `max`, `top1` (mean of the top 1 %), or `top:F` with `F` a fraction in (0, 1].
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let r = match s {
            "max" => Self::Max,
            "top1" => Self::TOP_1_PERCENT,
            _ => match s.strip_prefix("top:").map(str::parse::<f64>) {
                Some(Ok(fraction)) => Self::TopMean { fraction },
                _ => {
                    return Err(format!(
                        "unknown image reducer '{s}': use max, top1 or top:FRACTION"
                    ));
                }
            },
        };
        r.check().map_err(|e| e.to_string())?;
        Ok(r)
    }
}

impl std::fmt::Display for ImageReducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Max => write!(f, "max"),
            Self::TopMean { fraction } => write!(f, "top:{fraction}"),
        }
    }
}

/// Pixel AUROC over a category: pixels inside a mask are positives.
pub fn pixel_auroc(maps: &[Plane<'_, f32>], masks: &[Plane<'_, u8>]) -> Result<f64> {
    Ok(SortedPixels::from_planes(maps, masks)?.pixel_auroc())
}

/// Image AUROC: each map reduced to a score by `reducer`; `labels[i]` says whether image `i`
/// is anomalous.
pub fn image_auroc(maps: &[Plane<'_, f32>], labels: &[bool], reducer: ImageReducer) -> Result<f64> {
    reducer.check()?;
    if maps.is_empty() {
        return Err(MetricsError::Empty);
    }
    let scores: Vec<f32> = maps.iter().map(|m| reducer.reduce(m.data())).collect();
    auroc(&scores, labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_hand_checked_with_ties() {
        // pos: 0.9, 0.5 ; neg: 0.5, 0.1, 0.1
        // pairs (pos > neg = 1, tie = 1/2): 0.9 beats all 3 -> 3; 0.5 ties 0.5 (0.5), beats
        // 0.1 twice (2) -> 2.5. AUC = 5.5 / 6.
        let s = [0.9, 0.5, 0.5, 0.1, 0.1];
        let l = [true, true, false, false, false];
        assert!((auroc(&s, &l).unwrap() - 5.5 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn auroc_extremes_and_constant() {
        let l = [true, false, true, false];
        assert_eq!(auroc(&[2.0, 1.0, 3.0, 0.0], &l).unwrap(), 1.0);
        assert_eq!(auroc(&[0.0, 1.0, -3.0, 0.5], &l).unwrap(), 0.0);
        assert_eq!(auroc(&[7.0; 4], &l).unwrap(), 0.5);
        // -0.0 and 0.0 are the same score.
        assert_eq!(auroc(&[0.0, -0.0, 0.0, -0.0], &l).unwrap(), 0.5);
    }

    #[test]
    fn auroc_errors() {
        assert!(matches!(
            auroc(&[1.0], &[true, false]),
            Err(MetricsError::LabelCountMismatch { .. })
        ));
        assert!(matches!(
            auroc(&[1.0, 2.0], &[true, true]),
            Err(MetricsError::OneClass { .. })
        ));
        assert!(matches!(
            auroc(&[f32::NAN, 2.0], &[true, false]),
            Err(MetricsError::NonFiniteScore { index: 0, .. })
        ));
    }

    #[test]
    fn reducers() {
        let m: Vec<f32> = (0..200).map(|i| i as f32).collect();
        assert_eq!(ImageReducer::Max.reduce(&m), 199.0);
        // top 1 % of 200 values = the 2 largest: (199 + 198) / 2.
        assert_eq!(ImageReducer::TOP_1_PERCENT.reduce(&m), 198.5);
        // Fewer than 100 values: still at least one.
        assert_eq!(ImageReducer::TOP_1_PERCENT.reduce(&m[..10]), 9.0);
        assert_eq!(
            "top:0.5"
                .parse::<ImageReducer>()
                .unwrap()
                .reduce(&[1.0, 2.0, 3.0, 4.0]),
            3.5
        );
        assert!("top:0".parse::<ImageReducer>().is_err());
        assert!("median".parse::<ImageReducer>().is_err());
        assert_eq!("max".parse::<ImageReducer>().unwrap(), ImageReducer::Max);
    }

    #[test]
    fn image_auroc_from_maps() {
        let good = [0.1f32, 0.2, 0.3, 0.4];
        let bad = [0.1f32, 0.2, 0.3, 0.9];
        let maps = [
            Plane::new(&good[..], 2, 2).unwrap(),
            Plane::new(&bad[..], 2, 2).unwrap(),
        ];
        let auc = image_auroc(&maps, &[false, true], ImageReducer::Max).unwrap();
        assert_eq!(auc, 1.0);
    }
}
