//! `report.html` beside `report.md` of `ust evaluate --images` (and `ust demo`): the figures,
//! the PRO curve and a gallery of the test images (image, ground truth, heatmap, overlay,
//! image score), worst first. Self-contained: every picture lies in the report folder and is
//! referenced by a relative path, so the folder can be moved or zipped as it is.

use std::fmt::Write as _;
use std::path::Path;

use crate::error::{EngineError, Result};
use crate::postprocess::with_suffix;
use crate::report::EvaluationReport;

/// One test image of the gallery: its pictures, relative to the report folder.
#[derive(Debug, Clone)]
pub struct GalleryEntry {
    /// `defect_type/name`.
    pub name: String,
    /// `good` or the defect type.
    pub defect_type: String,
    pub image_score: f64,
    pub image: String,
    pub ground_truth: Option<String>,
    pub heatmap: String,
    pub overlay: String,
}

impl GalleryEntry {
    /// The entry of a test image whose heatmap and overlay were written at `base` (a path
    /// under `out`, without suffix), copying the image and its mask beside them.
    pub fn write(
        out: &Path,
        base: &Path,
        sample: &ust_data::TestSample,
        image_score: f64,
    ) -> Result<Self> {
        let rel = |p: &Path| -> String {
            p.strip_prefix(out)
                .unwrap_or(p)
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/")
        };
        let with = |suffix: &str| with_suffix(base, suffix);
        let ext = sample
            .path
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_else(|| "png".into());
        let image = with(&format!("_image.{ext}"));
        std::fs::copy(&sample.path, &image).map_err(|source| EngineError::Copy {
            from: sample.path.clone(),
            to: image.clone(),
            source,
        })?;
        let ground_truth = match &sample.mask_path {
            Some(mask) => {
                let to = with("_ground_truth.png");
                std::fs::copy(mask, &to).map_err(|source| EngineError::Copy {
                    from: mask.clone(),
                    to: to.clone(),
                    source,
                })?;
                Some(rel(&to))
            }
            None => None,
        };
        Ok(Self {
            name: format!("{}/{}", sample.defect_type, sample.name()),
            defect_type: sample.defect_type.clone(),
            image_score,
            image: rel(&image),
            ground_truth,
            heatmap: rel(&with("_heatmap.png")),
            overlay: rel(&with("_overlay.png")),
        })
    }
}

/// How wrong the detector is about each image at image level, from 0 to 1: a defect-free
/// image's share of the images scoring below it, a defective image's share scoring above it
/// (ties count half). The gallery shows the largest first: false alarms and missed defects.
pub fn image_errors(entries: &[GalleryEntry]) -> Vec<f64> {
    let n = entries.len();
    if n < 2 {
        return vec![0.0; n];
    }
    entries
        .iter()
        .map(|e| {
            let (mut below, mut above, mut ties) = (0.0, 0.0, 0.0);
            for o in entries {
                if std::ptr::eq(o, e) {
                    continue;
                }
                match o.image_score.total_cmp(&e.image_score) {
                    std::cmp::Ordering::Less => below += 1.0,
                    std::cmp::Ordering::Greater => above += 1.0,
                    std::cmp::Ordering::Equal => ties += 1.0,
                }
            }
            let wrong = if e.defect_type == "good" {
                below
            } else {
                above
            };
            (wrong + ties / 2.0) / (n - 1) as f64
        })
        .collect()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page (see the module documentation).
pub fn render(report: &EvaluationReport, entries: &[GalleryEntry]) -> String {
    let mut order: Vec<usize> = (0..entries.len()).collect();
    let errors = image_errors(entries);
    order.sort_by(|&a, &b| errors[b].total_cmp(&errors[a]).then(a.cmp(&b)));
    let mut h = String::new();
    let title = format!("Evaluation: {}", escape(&report.category));
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title}</title>\n<style>\n\
         body {{ font-family: sans-serif; margin: 2em; color: #222; }}\n\
         table.figures {{ border-collapse: collapse; }}\n\
         table.figures td, table.figures th {{ border: 1px solid #bbb; padding: 4px 10px; text-align: right; }}\n\
         .gallery {{ display: flex; flex-direction: column; gap: 14px; }}\n\
         .entry {{ display: flex; gap: 8px; align-items: flex-start; }}\n\
         .entry figure {{ margin: 0; text-align: center; font-size: 12px; }}\n\
         .entry img {{ width: 160px; height: 160px; object-fit: contain; background: #eee; }}\n\
         .meta {{ width: 210px; font-size: 13px; }}\n\
         .defect {{ color: #b00; }} .good {{ color: #070; }}\n\
         </style>\n</head>\n<body>\n<h1>{title}</h1>\n"
    );
    let _ = writeln!(
        h,
        "<p>Data <code>{}</code>; run <code>{}</code> ({} preset, images at {}×{}); {} test \
         images, {} defect regions; AU-PRO up to FPR {}; image score: {}; score terms: {}.</p>",
        escape(&report.data),
        escape(&report.run_dir),
        escape(&report.preset),
        report.image_size,
        report.image_size,
        report.test_images,
        report.defect_regions,
        report.fpr_limit,
        escape(&report.reducer),
        report.score_terms
    );
    h.push_str(
        "<table class=\"figures\">\n<tr><th>scores</th><th>AU-PRO</th><th>pixel AUROC</th>\
         <th>image AUROC</th></tr>\n",
    );
    for r in &report.rows {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{}</td></tr>",
            escape(&r.name),
            r.au_pro,
            r.pixel_auroc,
            crate::report::fmt_opt(r.image_auroc)
        );
    }
    h.push_str("</table>\n<h2>PRO curve</h2>\n<img src=\"pro-curve.png\" alt=\"PRO curve\">\n");
    let _ = writeln!(
        h,
        "<h2>Test images, worst first</h2>\n<p>Ordered by how wrong the image score is: a \
         defect-free image by the share of images scoring below it, a defective one by the \
         share scoring above it.</p>\n<div class=\"gallery\">"
    );
    for &i in &order {
        let e = &entries[i];
        let class = if e.defect_type == "good" {
            "good"
        } else {
            "defect"
        };
        let _ = writeln!(
            h,
            "<div class=\"entry\"><div class=\"meta\"><b>{}</b><br><span class=\"{class}\">{}\
             </span><br>image score {:.3}<br>error {:.2}</div>",
            escape(&e.name),
            escape(&e.defect_type),
            e.image_score,
            errors[i]
        );
        let figure = |src: &str, caption: &str| {
            format!(
                "<figure><img src=\"{}\" alt=\"{caption}\"><figcaption>{caption}\
                 </figcaption></figure>\n",
                escape(src)
            )
        };
        h.push_str(&figure(&e.image, "image"));
        match &e.ground_truth {
            Some(gt) => h.push_str(&figure(gt, "ground truth")),
            None => h.push_str(
                "<figure><div style=\"width:160px;height:160px;background:#000\"></div>\
                 <figcaption>ground truth (none)</figcaption></figure>\n",
            ),
        }
        h.push_str(&figure(&e.heatmap, "heatmap"));
        h.push_str(&figure(&e.overlay, "overlay"));
        h.push_str("</div>\n");
    }
    h.push_str("</div>\n</body>\n</html>\n");
    h
}

/// Writes `out/report.html`.
pub fn write(out: &Path, report: &EvaluationReport, entries: &[GalleryEntry]) -> Result<()> {
    let path = out.join("report.html");
    std::fs::write(&path, render(report, entries)).map_err(EngineError::io("writing", &path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(defect_type: &str, image_score: f64) -> GalleryEntry {
        GalleryEntry {
            name: format!("{defect_type}/{image_score}"),
            defect_type: defect_type.into(),
            image_score,
            image: String::new(),
            ground_truth: None,
            heatmap: String::new(),
            overlay: String::new(),
        }
    }

    #[test]
    fn errors_rank_false_alarms_and_missed_defects_first() {
        // Scores: good 1, good 5 (a false alarm), defect 4, defect 9.
        let e = [
            entry("good", 1.0),
            entry("good", 5.0),
            entry("blob", 4.0),
            entry("blob", 9.0),
        ];
        let err = image_errors(&e);
        // good 1: nothing below → 0; good 5: two of three below → 2/3;
        // defect 4: two above → 2/3; defect 9: none above → 0.
        assert_eq!(err, [0.0, 2.0 / 3.0, 2.0 / 3.0, 0.0]);
        // Ties count half.
        assert_eq!(
            image_errors(&[entry("good", 2.0), entry("x", 2.0)]),
            [0.5, 0.5]
        );
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a<b>&\"c\""), "a&lt;b&gt;&amp;&quot;c&quot;");
    }
}
