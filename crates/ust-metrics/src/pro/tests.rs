use super::*;
use proptest::prelude::*;

fn planes<'a, T>(data: &'a [Vec<T>], w: usize, h: usize) -> Vec<Plane<'a, T>> {
    data.iter()
        .map(|d| Plane::new(&d[..], w, h).unwrap())
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

/// An independent, quadratic implementation of the protocol straight from its definition:
/// for every distinct score t (descending), FPR = #normal pixels ≥ t / #normal and PRO = mean
/// over regions of the fraction of the region ≥ t; then the official limited trapezoid.
fn brute_force_au_pro(maps: &[Vec<f32>], masks: &[Vec<u8>], w: usize, h: usize, limit: f64) -> f64 {
    let mut regions: Vec<Vec<f32>> = Vec::new();
    let mut normal: Vec<f32> = Vec::new();
    for (m, k) in maps.iter().zip(masks) {
        let (labels, n) = label_regions_8(k, w, h);
        let mut per = vec![Vec::new(); n as usize];
        for (i, &l) in labels.iter().enumerate() {
            if l == 0 {
                normal.push(m[i]);
            } else {
                per[l as usize - 1].push(m[i]);
            }
        }
        regions.extend(per);
    }
    let mut thresholds: Vec<f32> = maps.iter().flatten().copied().collect();
    thresholds.sort_by(|a, b| b.total_cmp(a));
    thresholds.dedup();
    let mut xs = vec![0.0];
    let mut ys = vec![0.0];
    for t in thresholds {
        let fp = normal.iter().filter(|&&s| s >= t).count() as f64 / normal.len() as f64;
        let pro = regions
            .iter()
            .map(|r| r.iter().filter(|&&s| s >= t).count() as f64 / r.len() as f64)
            .sum::<f64>()
            / regions.len() as f64;
        xs.push(fp.min(1.0));
        ys.push(pro.min(1.0));
    }
    xs.push(1.0);
    ys.push(1.0);
    // The official trapezoid: bisect_right for the insertion point, correction when x_max is
    // not a curve point, then the plain trapezoid over x ≤ x_max.
    let mut correction = 0.0;
    if !xs.contains(&limit) {
        let ins = xs.partition_point(|&x| x <= limit);
        let y_interp =
            ys[ins - 1] + (ys[ins] - ys[ins - 1]) * (limit - xs[ins - 1]) / (xs[ins] - xs[ins - 1]);
        correction = 0.5 * (y_interp + ys[ins - 1]) * (limit - xs[ins - 1]);
    }
    let kept: Vec<(f64, f64)> = xs
        .iter()
        .zip(&ys)
        .filter(|(x, _)| **x <= limit)
        .map(|(x, y)| (*x, *y))
        .collect();
    let area: f64 = kept
        .windows(2)
        .map(|p| 0.5 * (p[1].1 + p[0].1) * (p[1].0 - p[0].0))
        .sum();
    (area + correction) / limit
}

#[test]
fn perfect_maps_give_one() {
    // Two 4x4 images: region pixels score above every normal pixel.
    let masks = vec![
        vec![0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1],
        vec![0; 16],
    ];
    let maps: Vec<Vec<f32>> = masks
        .iter()
        .enumerate()
        .map(|(k, m)| {
            m.iter()
                .enumerate()
                .map(|(i, &v)| {
                    if v != 0 {
                        10.0 + i as f32
                    } else {
                        (i + k) as f32 * 0.1
                    }
                })
                .collect()
        })
        .collect();
    let (mp, kp) = (planes(&maps, 4, 4), planes(&masks, 4, 4));
    assert!(close(au_pro(&mp, &kp, 0.3).unwrap(), 1.0));
    assert!(close(au_pro(&mp, &kp, 1.0).unwrap(), 1.0));
    assert_eq!(crate::pixel_auroc(&mp, &kp).unwrap(), 1.0);
}

#[test]
fn constant_map_is_chance_level() {
    // All pixels tie: one threshold, the curve is (0,0) (1,1) (1,1). Interpolated at the
    // limit L the PRO is L, so the area is L²/2 and AU-PRO = L/2 (0.15 at L = 0.3).
    let masks = vec![vec![0, 1, 1, 0, 0, 0, 0, 0, 1]];
    let maps = vec![vec![0.7f32; 9]];
    let (mp, kp) = (planes(&maps, 3, 3), planes(&masks, 3, 3));
    assert!(close(au_pro(&mp, &kp, 0.3).unwrap(), 0.15));
    assert!(close(au_pro(&mp, &kp, 1.0).unwrap(), 0.5));
    let curve = pro_curve(&mp, &kp).unwrap();
    assert_eq!(curve.fpr, vec![0.0, 1.0, 1.0]);
    assert_eq!(curve.pro, vec![0.0, 1.0, 1.0]);
    assert_eq!(crate::pixel_auroc(&mp, &kp).unwrap(), 0.5);
}

#[test]
fn single_region_half_covered() {
    // 4x4, region = the two left columns (8 px). Its top half scores 2, its bottom half 0;
    // the 8 normal pixels score 1. Curve: (0,0) (0,.5) (1,.5) (1,1) (1,1): PRO is 0.5 on the
    // whole FPR range, so AU-PRO = 0.5 for any limit < 1. Pixel AUROC: each negative beats 4
    // of 8 positives -> 0.5.
    #[rustfmt::skip]
    let mask = vec![1, 1, 0, 0,
                    1, 1, 0, 0,
                    1, 1, 0, 0,
                    1, 1, 0, 0];
    #[rustfmt::skip]
    let map = vec![2.0f32, 2.0, 1.0, 1.0,
                   2.0,    2.0, 1.0, 1.0,
                   0.0,    0.0, 1.0, 1.0,
                   0.0,    0.0, 1.0, 1.0];
    let (maps, masks) = (vec![map], vec![mask]);
    let (mp, kp) = (planes(&maps, 4, 4), planes(&masks, 4, 4));
    let curve = pro_curve(&mp, &kp).unwrap();
    assert_eq!(curve.fpr, vec![0.0, 0.0, 1.0, 1.0, 1.0]);
    assert_eq!(curve.pro, vec![0.0, 0.5, 0.5, 1.0, 1.0]);
    assert!(close(au_pro(&mp, &kp, 0.3).unwrap(), 0.5));
    assert!(close(crate::pixel_auroc(&mp, &kp).unwrap(), 0.5));
}

#[test]
fn ties_between_region_and_normal_pixels_enter_together() {
    // 6x1: region = pixels 0,1 (one region of 2); normal pixels 2..6.
    // Scores: region [3, 2], normal [2, 1, 1, 0].
    // Thresholds 3: (0, .5); 2: one region and one normal pixel together -> (.25, 1);
    // 1: (.75, 1); 0: (1, 1); then (1, 1).
    // Area to 0.3: (0,.5)->(.25,1) = .1875, then (.25,1)->(.3,1) = .05; / .3 = 0.791666...
    // Breaking the tie normal-first would add a point (.25,.5) and give 0.58333.
    let maps = vec![vec![3.0f32, 2.0, 2.0, 1.0, 1.0, 0.0]];
    let masks = vec![vec![1u8, 1, 0, 0, 0, 0]];
    let (mp, kp) = (planes(&maps, 6, 1), planes(&masks, 6, 1));
    let curve = pro_curve(&mp, &kp).unwrap();
    assert_eq!(curve.fpr, vec![0.0, 0.0, 0.25, 0.75, 1.0, 1.0]);
    assert_eq!(curve.pro, vec![0.0, 0.5, 1.0, 1.0, 1.0, 1.0]);
    assert!(close(au_pro(&mp, &kp, 0.3).unwrap(), 0.2375 / 0.3));
    // Pixel AUROC: 3 beats 4 negatives, 2 ties one (1/2) and beats 3 -> 7.5 / 8.
    assert!(close(crate::pixel_auroc(&mp, &kp).unwrap(), 7.5 / 8.0));
}

#[test]
fn good_images_count_as_false_positive_candidates() {
    // The half-covered image (8 normal px at 1) plus a good 4x4 image with 4 pixels at 3 and
    // 12 at -1: 24 normal pixels. Curve: 3 -> (1/6, 0); 2 -> (1/6, .5); 1 -> (1/2, .5);
    // 0 -> (1/2, 1); -1 -> (1, 1). Area to .3 = .5 * (.3 - 1/6); AU-PRO = 2/9.
    let half_mask = vec![1u8, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0];
    let half_map = vec![
        2.0f32, 2.0, 1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0,
    ];
    let mut good_map = vec![-1.0f32; 16];
    good_map[..4].fill(3.0);
    let maps = vec![half_map, good_map];
    let masks = vec![half_mask, vec![0; 16]];
    let (mp, kp) = (planes(&maps, 4, 4), planes(&masks, 4, 4));
    assert!(close(au_pro(&mp, &kp, 0.3).unwrap(), 2.0 / 9.0));
}

#[test]
fn several_regions_are_averaged_not_pooled() {
    // 5x1: region A = {0} (1 px), region B = {2,3,4} (3 px), pixel 1 normal.
    // Scores A: 5; B: 4, 0, 0; normal: 1.
    // 5 -> (0, 1/2); 4 -> (0, (1 + 1/3)/2 = 2/3); 1 -> (1, 2/3); 0 -> (1, 1).
    // AU-PRO to .3 = 2/3 (pooling the pixels would give 1/2).
    let maps = vec![vec![5.0f32, 1.0, 4.0, 0.0, 0.0]];
    let masks = vec![vec![1u8, 0, 1, 1, 1]];
    let (mp, kp) = (planes(&maps, 5, 1), planes(&masks, 5, 1));
    let sorted = SortedPixels::from_planes(&mp, &kp).unwrap();
    assert_eq!(sorted.n_regions(), 2);
    assert!(close(sorted.au_pro(0.3).unwrap(), 2.0 / 3.0));
}

#[test]
fn fpr_limit_on_a_curve_point() {
    // 12x1: region {0,1} scores 10 and 8; 10 normal pixels: three at 9, seven at 0.
    // 10 -> (0, .5); 9 -> (.3, .5); 8 -> (.3, 1); 0 -> (1, 1). The limit 0.3 is a curve point:
    // no interpolation, both points at x = .3 kept: area .15, AU-PRO .5.
    let mut map = vec![10.0f32, 8.0, 9.0, 9.0, 9.0];
    map.extend([0.0; 7]);
    let mut mask = vec![1u8, 1];
    mask.extend([0; 10]);
    let (maps, masks) = (vec![map], vec![mask]);
    let (mp, kp) = (planes(&maps, 12, 1), planes(&masks, 12, 1));
    let curve = pro_curve(&mp, &kp).unwrap();
    assert!(curve.fpr.contains(&0.3));
    assert!(close(au_pro(&mp, &kp, 0.3).unwrap(), 0.5));
    assert!(close(curve.au_pro(0.3).unwrap(), 0.5));
    // Just below and above the point the value moves continuously.
    let below = au_pro(&mp, &kp, 0.3 - 1e-9).unwrap();
    assert!((below - 0.5).abs() < 1e-6);
    let above = au_pro(&mp, &kp, 0.3 + 1e-9).unwrap();
    assert!((above - 0.5).abs() < 1e-6);
}

#[test]
fn trapezoid_matches_official_rule() {
    let x = [0.0, 0.1, 0.2, 0.5, 1.0];
    let y = [0.0, 0.4, 0.4, 1.0, 1.0];
    // To 0.3: .5*.4*.1 + .4*.1 + interpolation at .3 between (.2,.4) and (.5,1): y=.6,
    // .5*(.6+.4)*.1 = .05 -> total .02 + .04 + .05 = .11.
    assert!(close(trapezoid_to_limit(&x, &y, 0.3), 0.11));
    assert!(close(
        trapezoid_to_limit(&x, &y, 1.0),
        0.02 + 0.04 + 0.5 * 1.4 * 0.3 + 0.5
    ));
}

#[test]
fn errors_not_panics() {
    let a = vec![vec![0.5f32; 4]];
    let k = vec![vec![1u8, 0, 0, 0]];
    // Size mismatch.
    let m = [Plane::new(&a[0][..], 2, 2).unwrap()];
    let k4 = [Plane::new(&k[0][..], 4, 1).unwrap()];
    assert!(matches!(
        au_pro(&m, &k4, 0.3),
        Err(MetricsError::SizeMismatch { index: 0, .. })
    ));
    // Bad plane length.
    assert!(matches!(
        Plane::new(&a[0][..], 3, 2),
        Err(MetricsError::BadPlaneLength { .. })
    ));
    // NaN and infinity, with position.
    let nan = vec![vec![0.5f32, 0.1, f32::NAN, 0.3]];
    let inf = vec![vec![f32::INFINITY, 0.1, 0.2, 0.3]];
    let kp = planes(&k, 2, 2);
    assert!(matches!(
        au_pro(&planes(&nan, 2, 2), &kp, 0.3),
        Err(MetricsError::NonFinite {
            index: 0,
            x: 0,
            y: 1,
            ..
        })
    ));
    assert!(matches!(
        au_pro(&planes(&inf, 2, 2), &kp, 0.3),
        Err(MetricsError::NonFinite { .. })
    ));
    // No defect region anywhere.
    let zero = vec![vec![0u8; 4]];
    assert!(matches!(
        au_pro(&planes(&a, 2, 2), &planes(&zero, 2, 2), 0.3),
        Err(MetricsError::NoDefectRegion)
    ));
    // All pixels anomalous: no false-positive candidate.
    let full = vec![vec![1u8; 4]];
    assert!(matches!(
        au_pro(&planes(&a, 2, 2), &planes(&full, 2, 2), 0.3),
        Err(MetricsError::NoNormalPixel)
    ));
    // Empty list, count mismatch, bad limit.
    assert!(matches!(au_pro(&[], &[], 0.3), Err(MetricsError::Empty)));
    assert!(matches!(
        au_pro(&planes(&a, 2, 2), &[], 0.3),
        Err(MetricsError::CountMismatch { .. })
    ));
    assert!(matches!(
        au_pro(&planes(&a, 2, 2), &kp, 0.0),
        Err(MetricsError::BadFprLimit(_))
    ));
    assert!(matches!(
        au_pro(&planes(&a, 2, 2), &kp, f64::NAN),
        Err(MetricsError::BadFprLimit(_))
    ));
}

#[test]
fn large_input_takes_the_radix_path_and_agrees() {
    // > 2^16 pixels so the radix sort runs; compare with the brute force on a coarse-valued map
    // (few distinct values keep the quadratic reference quick).
    let (w, h) = (300, 250);
    let mut s = 12345u64;
    let mut rnd = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mask: Vec<u8> = (0..w * h)
        .map(|i| {
            let (x, y) = (i % w, i / w);
            u8::from((x / 20 + y / 25) % 7 == 0 && x % 20 < 12)
        })
        .collect();
    let map: Vec<f32> = mask
        .iter()
        .map(|&m| (rnd() % 40) as f32 + if m != 0 { 15.0 } else { 0.0 })
        .collect();
    let (maps, masks) = (vec![map], vec![mask]);
    let fast = au_pro(&planes(&maps, w, h), &planes(&masks, w, h), 0.3).unwrap();
    let slow = brute_force_au_pro(&maps, &masks, w, h, 0.3);
    assert!((fast - slow).abs() < 1e-9, "{fast} vs {slow}");
}

fn small_category() -> impl Strategy<Value = (usize, usize, Vec<Vec<i16>>, Vec<Vec<u8>>)> {
    (1usize..6, 1usize..6, 1usize..4).prop_flat_map(|(w, h, n)| {
        (
            Just(w),
            Just(h),
            proptest::collection::vec(proptest::collection::vec(-20i16..20, w * h), n),
            proptest::collection::vec(proptest::collection::vec(0u8..2, w * h), n),
        )
    })
}

fn has_both(masks: &[Vec<u8>]) -> bool {
    let any = masks.iter().flatten().any(|&m| m != 0);
    let all = masks.iter().flatten().all(|&m| m != 0);
    any && !all
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn matches_the_definition((w, h, ints, masks) in small_category(), limit in 0.05f64..1.0) {
        prop_assume!(has_both(&masks));
        let maps: Vec<Vec<f32>> = ints.iter().map(|m| m.iter().map(|&v| v as f32 * 0.25).collect()).collect();
        let fast = au_pro(&planes(&maps, w, h), &planes(&masks, w, h), limit).unwrap();
        let slow = brute_force_au_pro(&maps, &masks, w, h, limit);
        prop_assert!((fast - slow).abs() < 1e-9, "{} vs {}", fast, slow);
    }

    #[test]
    fn invariant_under_increasing_transforms((w, h, ints, masks) in small_category()) {
        prop_assume!(has_both(&masks));
        let maps: Vec<Vec<f32>> = ints.iter().map(|m| m.iter().map(|&v| v as f32).collect()).collect();
        // x³ + 5x is exact in f32 for |x| < 20 and strictly increasing; exp(x/7) is strictly
        // increasing and keeps distinct integers distinct.
        let cubic: Vec<Vec<f32>> = maps.iter().map(|m| m.iter().map(|&x| x * x * x + 5.0 * x).collect()).collect();
        let exp: Vec<Vec<f32>> = maps.iter().map(|m| m.iter().map(|&x| (x / 7.0).exp()).collect()).collect();
        let kp = planes(&masks, w, h);
        let base = au_pro(&planes(&maps, w, h), &kp, 0.3).unwrap();
        prop_assert_eq!(base, au_pro(&planes(&cubic, w, h), &kp, 0.3).unwrap());
        prop_assert_eq!(base, au_pro(&planes(&exp, w, h), &kp, 0.3).unwrap());
        let pa = crate::pixel_auroc(&planes(&maps, w, h), &kp).unwrap();
        prop_assert_eq!(pa, crate::pixel_auroc(&planes(&exp, w, h), &kp).unwrap());
    }
}
