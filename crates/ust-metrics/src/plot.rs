//! PRO curves as a picture: the part of the curve that AU-PRO integrates, PRO against FPR over
//! `[0, fpr_limit]`, with axes, ticks, axis titles, a title and a legend.
//!
//! Text is drawn with DejaVu Sans, embedded from the `dejavu` crate and handed to plotters'
//! `ab_glyph` renderer, so plotting works on machines without any installed font (CI).

use std::io::Cursor;
use std::path::Path;
use std::sync::OnceLock;

use plotters::backend::RGBPixel;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::Result;
use crate::error::MetricsError;
use crate::pro::ProCurve;

/// Width and height of the plot, in pixels.
pub const PLOT_SIZE: (u32, u32) = (800, 600);

/// Curve colours, in the order of the caller's list (matplotlib's "tab10" cycle); a list longer
/// than this starts over.
pub const CURVE_COLOURS: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

/// The font family every text of the plot uses, registered once with the embedded font.
const FONT_FAMILY: &str = "sans-serif";

/// Registers DejaVu Sans as plotters' "sans-serif" family (once per process); false when the
/// embedded font could not be parsed.
fn font_registered() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        register_font(FONT_FAMILY, FontStyle::Normal, dejavu::sans::regular()).is_ok()
            && register_font(FONT_FAMILY, FontStyle::Bold, dejavu::sans::bold()).is_ok()
    })
}

/// The points of `curve` with `fpr ≤ fpr_limit`, closed by the point at exactly `fpr_limit`
/// (PRO interpolated linearly between its neighbours) when the curve goes beyond the limit:
/// the polyline whose area AU-PRO is. The curve's points are taken in order (FPR
/// non-decreasing, as [`ProCurve`] holds them).
pub fn points_up_to_limit(curve: &ProCurve, fpr_limit: f64) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = Vec::new();
    for (&fpr, &pro) in curve.fpr.iter().zip(&curve.pro) {
        if fpr <= fpr_limit {
            points.push((fpr, pro));
            continue;
        }
        if let Some(&(prev_fpr, prev_pro)) = points.last() {
            // prev_fpr ≤ limit < fpr, so the segment has positive width.
            let t = (fpr_limit - prev_fpr) / (fpr - prev_fpr);
            if prev_fpr < fpr_limit {
                points.push((fpr_limit, prev_pro + t * (pro - prev_pro)));
            }
        }
        break;
    }
    points
}

/// Checks a curve's lengths and values, naming its label.
fn check_curve(label: &str, curve: &ProCurve) -> std::result::Result<(), String> {
    if curve.fpr.len() != curve.pro.len() {
        return Err(format!(
            "curve '{label}' has {} FPR but {} PRO values",
            curve.fpr.len(),
            curve.pro.len()
        ));
    }
    if let Some(i) =
        (0..curve.fpr.len()).find(|&i| !(curve.fpr[i].is_finite() && curve.pro[i].is_finite()))
    {
        return Err(format!(
            "curve '{label}' has a non-finite point (FPR {}, PRO {}) at index {i}",
            curve.fpr[i], curve.pro[i]
        ));
    }
    if curve.fpr.windows(2).any(|w| w[1] < w[0]) {
        return Err(format!("curve '{label}': FPR values are not sorted"));
    }
    Ok(())
}

/// Draws `curves` (each with its legend label; put the AU-PRO in the label, e.g.
/// `"bottle (AU-PRO 0.912)"`) as PRO against FPR over `[0, fpr_limit]` and writes an 800×600
/// RGB PNG to `path`, creating its parent folders. The x axis spans exactly the range AU-PRO
/// integrates; the y axis spans `[0, 1]` (with a little headroom so a PRO of 1 stays visible).
///
/// Errors: [`MetricsError::NoCurves`] for an empty list, [`MetricsError::BadFprLimit`] unless
/// `0 < fpr_limit ≤ 1`, [`MetricsError::Plot`] (naming the file) for a malformed curve
/// (lengths differ, non-finite or unsorted values) or a failure to draw or write.
pub fn write_pro_curve_png(
    path: impl AsRef<Path>,
    curves: &[(&str, &ProCurve)],
    fpr_limit: f64,
    title: &str,
) -> Result<()> {
    let path = path.as_ref();
    if curves.is_empty() {
        return Err(MetricsError::NoCurves);
    }
    if !(fpr_limit.is_finite() && fpr_limit > 0.0 && fpr_limit <= 1.0) {
        return Err(MetricsError::BadFprLimit(fpr_limit));
    }
    let plot_error = |reason: String| MetricsError::Plot {
        path: path.to_path_buf(),
        reason,
    };
    for (label, curve) in curves {
        check_curve(label, curve).map_err(plot_error)?;
    }
    if !font_registered() {
        return Err(plot_error(
            "the embedded DejaVu Sans font could not be loaded".to_string(),
        ));
    }
    let (width, height) = PLOT_SIZE;
    let mut pixels = vec![255u8; width as usize * height as usize * 3];
    draw(&mut pixels, curves, fpr_limit, title).map_err(plot_error)?;
    let image = image::RgbImage::from_raw(width, height, pixels)
        .ok_or_else(|| plot_error("pixel buffer of the wrong size".to_string()))?;
    let mut bytes = Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, image::ImageFormat::Png)
        .map_err(|e| plot_error(format!("PNG encoder: {e}")))?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| plot_error(e.to_string()))?;
    }
    std::fs::write(path, bytes.get_ref()).map_err(|e| plot_error(e.to_string()))
}

/// Draws the chart into an RGB buffer of [`PLOT_SIZE`].
fn draw(
    pixels: &mut [u8],
    curves: &[(&str, &ProCurve)],
    fpr_limit: f64,
    title: &str,
) -> std::result::Result<(), String> {
    let text = |e: &dyn std::fmt::Display| e.to_string();
    let backend: BitMapBackend<'_, RGBPixel> =
        BitMapBackend::with_buffer_and_format(pixels, PLOT_SIZE).map_err(|e| text(&e))?;
    let root = backend.into_drawing_area();
    root.fill(&WHITE).map_err(|e| text(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT_FAMILY, 26).into_font().style(FontStyle::Bold))
        .margin(20)
        .x_label_area_size(55)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..fpr_limit, 0.0..1.02)
        .map_err(|e| text(&e))?;
    chart
        .configure_mesh()
        .x_desc("false-positive rate")
        .y_desc("per-region overlap (PRO)")
        .axis_desc_style((FONT_FAMILY, 20))
        .label_style((FONT_FAMILY, 16))
        .x_labels(7)
        .y_labels(6)
        .x_label_formatter(&|x| format!("{x:.2}"))
        .y_label_formatter(&|y| format!("{y:.1}"))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(210, 210, 210))
        .draw()
        .map_err(|e| text(&e))?;
    for (i, (label, curve)) in curves.iter().enumerate() {
        let (r, g, b) = CURVE_COLOURS[i % CURVE_COLOURS.len()];
        let colour = RGBColor(r, g, b);
        chart
            .draw_series(LineSeries::new(
                points_up_to_limit(curve, fpr_limit),
                colour.stroke_width(2),
            ))
            .map_err(|e| text(&e))?
            .label(*label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT_FAMILY, 16))
        .background_style(WHITE)
        .border_style(BLACK)
        .margin(12)
        .draw()
        .map_err(|e| text(&e))?;
    root.present().map_err(|e| text(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(points: &[(f64, f64)]) -> ProCurve {
        ProCurve {
            fpr: points.iter().map(|p| p.0).collect(),
            pro: points.iter().map(|p| p.1).collect(),
        }
    }

    /// Pixels of exactly `colour`, as (x, y).
    fn pixels_of(img: &image::RgbImage, colour: (u8, u8, u8)) -> Vec<(u32, u32)> {
        img.enumerate_pixels()
            .filter(|(_, _, p)| p.0 == [colour.0, colour.1, colour.2])
            .map(|(x, y, _)| (x, y))
            .collect()
    }

    #[test]
    fn points_are_cut_at_the_limit_by_interpolation() {
        let c = curve(&[(0.0, 0.0), (0.1, 0.5), (0.5, 0.9), (1.0, 1.0)]);
        // Between (0.1, 0.5) and (0.5, 0.9): at 0.3, PRO 0.5 + 0.5 * 0.4 = 0.7.
        let p = points_up_to_limit(&c, 0.3);
        assert_eq!(p.len(), 3);
        assert_eq!(&p[..2], &[(0.0, 0.0), (0.1, 0.5)]);
        assert!(
            (p[2].0 - 0.3).abs() < 1e-15 && (p[2].1 - 0.7).abs() < 1e-12,
            "{p:?}"
        );
        // A limit on a point: no extra point. The full range: every point.
        assert_eq!(points_up_to_limit(&c, 0.1), vec![(0.0, 0.0), (0.1, 0.5)]);
        assert_eq!(points_up_to_limit(&c, 1.0).len(), 4);
        // Vertical steps at FPR 0 are kept (a perfect detector).
        let perfect = curve(&[(0.0, 0.0), (0.0, 1.0), (1.0, 1.0)]);
        assert_eq!(
            points_up_to_limit(&perfect, 0.3),
            vec![(0.0, 0.0), (0.0, 1.0), (0.3, 1.0)]
        );
    }

    #[test]
    fn perfect_curve_draws_a_line_at_the_top() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plots/pro.png");
        let perfect = curve(&[(0.0, 0.0), (0.0, 1.0), (1.0, 1.0)]);
        write_pro_curve_png(
            &path,
            &[("perfect (AU-PRO 1.000)", &perfect)],
            0.3,
            "PRO curve",
        )
        .unwrap();
        let img = image::open(&path).unwrap();
        assert_eq!(img.color(), image::ColorType::Rgb8);
        let img = img.to_rgb8();
        assert_eq!(img.dimensions(), PLOT_SIZE);

        let blue = pixels_of(&img, CURVE_COLOURS[0]);
        // The row with the most curve pixels is the PRO = 1 line: long, and near the top.
        let mut per_row = vec![0usize; PLOT_SIZE.1 as usize];
        for &(_, y) in &blue {
            per_row[y as usize] += 1;
        }
        let (top_row, &count) = per_row.iter().enumerate().max_by_key(|&(_, c)| *c).unwrap();
        assert!(
            count > 500,
            "the PRO = 1 line has {count} pixels in its row"
        );
        assert!(top_row < 120, "the PRO = 1 line is at row {top_row}");
        // Its length spans the plotting area: from the y axis to the right margin.
        let xs: Vec<u32> = blue
            .iter()
            .filter(|p| p.1 as usize == top_row)
            .map(|p| p.0)
            .collect();
        let (min_x, max_x) = (*xs.iter().min().unwrap(), *xs.iter().max().unwrap());
        assert!(
            min_x < 120 && max_x > 740,
            "line from x={min_x} to x={max_x}"
        );
        // Text was rendered: the title band above the plot holds dark pixels, and so does the
        // band under the x axis (tick labels, axis title).
        let dark_in = |rows: std::ops::Range<u32>| {
            rows.flat_map(|y| (0..PLOT_SIZE.0).map(move |x| (x, y)))
                .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&c| c < 100))
                .count()
        };
        assert!(dark_in(0..top_row as u32 - 5) > 100, "no title text");
        assert!(
            dark_in(PLOT_SIZE.1 - 50..PLOT_SIZE.1) > 100,
            "no x-axis text"
        );
    }

    #[test]
    fn diagonal_curve_rises_left_to_right_and_curves_get_their_colours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("two.png");
        // PRO = FPR / 0.3 up to the limit: a diagonal across the plot.
        let diagonal = curve(&[(0.0, 0.0), (0.3, 1.0), (1.0, 1.0)]);
        let flat = curve(&[(0.0, 0.0), (0.0, 0.5), (1.0, 0.5)]);
        write_pro_curve_png(&path, &[("diag", &diagonal), ("flat", &flat)], 0.3, "two").unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        let blue = pixels_of(&img, CURVE_COLOURS[0]);
        let orange = pixels_of(&img, CURVE_COLOURS[1]);
        assert!(blue.len() > 500 && orange.len() > 500);
        // Diagonal (ignoring the legend's short sample line at the lower right): mean row of
        // its left part lies well below (larger y) that of its right part.
        let mean_y = |lo: u32, hi: u32| {
            let ys: Vec<f64> = blue
                .iter()
                .filter(|p| p.0 >= lo && p.0 < hi)
                .map(|p| f64::from(p.1))
                .collect();
            ys.iter().sum::<f64>() / ys.len() as f64
        };
        assert!(mean_y(100, 250) > mean_y(500, 650) + 150.0);
        // The flat curve at PRO 0.5: its longest row lies in the middle band.
        let mut per_row = vec![0usize; PLOT_SIZE.1 as usize];
        for &(_, y) in &orange {
            per_row[y as usize] += 1;
        }
        let row = per_row
            .iter()
            .enumerate()
            .max_by_key(|&(_, c)| *c)
            .unwrap()
            .0;
        assert!((200..400).contains(&row), "PRO 0.5 line at row {row}");
    }

    #[test]
    fn bad_arguments_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.png");
        let c = curve(&[(0.0, 0.0), (1.0, 1.0)]);
        assert_eq!(
            write_pro_curve_png(&path, &[], 0.3, "t"),
            Err(MetricsError::NoCurves)
        );
        for limit in [0.0, -0.1, 1.5, f64::NAN] {
            let err = write_pro_curve_png(&path, &[("c", &c)], limit, "t").unwrap_err();
            assert!(matches!(err, MetricsError::BadFprLimit(_)), "{err:?}");
        }
        let ragged = ProCurve {
            fpr: vec![0.0, 1.0],
            pro: vec![0.0],
        };
        let err = write_pro_curve_png(&path, &[("ragged", &ragged)], 0.3, "t").unwrap_err();
        assert!(matches!(err, MetricsError::Plot { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("x.png") && msg.contains("ragged"), "{msg}");
        let nan = curve(&[(0.0, 0.0), (0.5, f64::NAN)]);
        assert!(write_pro_curve_png(&path, &[("nan", &nan)], 0.3, "t").is_err());
        assert!(!path.exists(), "nothing is written on error");
        // An unwritable destination: a file where the folder should be.
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, b"").unwrap();
        let err = write_pro_curve_png(blocker.join("p.png"), &[("c", &c)], 0.3, "t").unwrap_err();
        assert!(err.to_string().contains("p.png"), "{err}");
    }
}
