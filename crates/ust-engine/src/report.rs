//! The report of a students' evaluation (`report.json` and `report.md` of `ust evaluate`):
//! one row per scale and the multi-scale mean, under each choice of score terms.

use serde::{Deserialize, Serialize};
use ust_detector::{ScoreTerms, TrainReport};
use ust_metrics::SegmentationScores;

/// A figure with four decimals, or `–` when there is none (an image AUROC without defect-free
/// or without defective test images).
pub fn fmt_opt(v: Option<f64>) -> String {
    fmt_opt_digits(v, 4)
}

/// [`fmt_opt`] with `digits` decimals (the runner's tables print AU-PRO with three): one
/// spelling of a missing figure in every report.
pub fn fmt_opt_digits(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "–".into())
}

/// The rows of one more choice of score terms (`--score e+v,e,v`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TermRows {
    pub score_terms: ScoreTerms,
    pub rows: Vec<ScoreRow>,
}

/// One row of the report: one scale, or the mean of several.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScoreRow {
    pub name: String,
    pub au_pro: f64,
    pub pixel_auroc: f64,
    pub image_auroc: Option<f64>,
}

impl ScoreRow {
    /// The row `name` of these scores.
    pub fn new(name: String, s: &SegmentationScores) -> Self {
        Self {
            name,
            au_pro: s.au_pro,
            pixel_auroc: s.pixel_auroc,
            image_auroc: s.image_auroc,
        }
    }
}

/// `report.json` of a students' evaluation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvaluationReport {
    pub category: String,
    pub data: String,
    pub run_dir: String,
    pub preset: String,
    pub image_size: usize,
    pub fpr_limit: f64,
    pub reducer: String,
    /// The terms of the anomaly score (`e+v` in reports written before the choice existed).
    #[serde(default)]
    pub score_terms: ScoreTerms,
    pub test_images: usize,
    pub defect_regions: usize,
    /// Per scale, then "multi-scale" when there are several.
    pub rows: Vec<ScoreRow>,
    /// The same rows under each further choice of score terms, in the order of `--score`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub term_rows: Vec<TermRows>,
    /// Wall-clock seconds predicting the test images (all scales), and per image scored by
    /// this invocation.
    pub predict_s: f64,
    pub seconds_per_image: f64,
    /// Test images whose scores an interrupted evaluation had kept (not scored again).
    pub resumed_images: usize,
    /// The evaluation folder whose rows this report took (`--reuse`); nothing was scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_from: Option<String>,
    pub peak_rss_mib: Option<f64>,
    /// The run's training summary, when present.
    pub training: Option<TrainReport>,
}

fn score_terms_text(t: ScoreTerms) -> &'static str {
    match t {
        ScoreTerms::Both => "e+v (regression error and predictive variance)",
        ScoreTerms::Error => "e only (ablation: regression error)",
        ScoreTerms::Variance => "v only (ablation: predictive variance)",
    }
}

impl EvaluationReport {
    /// The report as Markdown (`report.md`).
    pub fn markdown(&self) -> String {
        let r = self;
        let resumed = if r.resumed_images > 0 {
            format!(
                "; the scores of {} images kept by an interrupted evaluation",
                r.resumed_images
            )
        } else {
            String::new()
        };
        let rss = r
            .peak_rss_mib
            .map(|m| format!("; peak memory {m:.0} MiB"))
            .unwrap_or_default();
        let prediction = if r.rows_from.is_some() {
            "none (rows of an identical evaluation, below)".to_string()
        } else {
            format!(
                "{:.1} s ({:.3} s per image, all scales)",
                r.predict_s, r.seconds_per_image
            )
        };
        let mut s = format!(
            "# Evaluation: {}\n\n- data: `{}`\n- run: `{}` (preset {}, images at {}×{})\n- {} test \
             images, {} defect regions; AU-PRO up to FPR {}; image score: {}; anomaly score terms: \
             {}\n- prediction: {}{}\n\n",
            r.category,
            r.data,
            r.run_dir,
            r.preset,
            r.image_size,
            r.image_size,
            r.test_images,
            r.defect_regions,
            r.fpr_limit,
            r.reducer,
            score_terms_text(r.score_terms),
            prediction,
            resumed + &rss
        );
        let rows_table = |rows: &[ScoreRow]| {
            let mut s = String::from(
                "| scores | AU-PRO | pixel AUROC | image AUROC |\n|---|---|---|---|\n",
            );
            for row in rows {
                s.push_str(&format!(
                    "| {} | {:.4} | {:.4} | {} |\n",
                    row.name,
                    row.au_pro,
                    row.pixel_auroc,
                    fmt_opt(row.image_auroc)
                ));
            }
            s
        };
        s.push_str(&rows_table(&r.rows));
        for t in &r.term_rows {
            s.push_str(&format!(
                "\nAnomaly score terms {} (the same networks' outputs):\n\n{}",
                score_terms_text(t.score_terms),
                rows_table(&t.rows)
            ));
        }
        if let Some(t) = &r.training {
            s.push_str(&format!(
                "\nTraining ({} preset): {} training and {} validation images.\n\n\
                 | scale | students | steps | final loss | training s |\n|---|---|---|---|---|\n",
                t.preset, t.train_images, t.validation_images
            ));
            for sc in &t.scales {
                s.push_str(&format!(
                    "| p={} | {} | {} | {:.4} | {:.0} |\n",
                    sc.patch_size, sc.students, sc.steps, sc.final_loss, sc.training_s
                ));
            }
            for sc in t.scales.iter().filter(|sc| sc.dense_teacher) {
                s.push_str(&format!(
                    "\np={}: the teacher `{}` was distilled densely (windows of natural images \
                     regressing the backbone's feature map; a deviation from the paper's \
                     patch-wise distillation, models/README.md).\n",
                    sc.patch_size, sc.teacher
                ));
            }
            for r in &t.reused {
                s.push_str(&format!(
                    "\np={}: students taken from `{}` (same data, teacher and training; trained \
                     there in the time above).\n",
                    r.patch_size,
                    r.from.display()
                ));
            }
        }
        match &r.rows_from {
            Some(from) => s.push_str(&format!(
                "\nThe rows are those of the evaluation in `{from}` (byte-identical scale files, the \
                 same test images and settings); nothing was scored again. Its PRO curves: \
                 `{from}/pro-curve.png`.\n"
            )),
            None => s.push_str("\n![PRO curve](pro-curve.png)\n"),
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn report() -> EvaluationReport {
        EvaluationReport {
            category: "widget".into(),
            data: "data/widget".into(),
            run_dir: "runs/w".into(),
            preset: "smoke".into(),
            image_size: 40,
            fpr_limit: 0.3,
            reducer: "max".into(),
            score_terms: ScoreTerms::Both,
            test_images: 4,
            defect_regions: 2,
            rows: vec![ScoreRow {
                name: "p=17".into(),
                au_pro: 0.5,
                pixel_auroc: 0.75,
                image_auroc: None,
            }],
            term_rows: Vec::new(),
            predict_s: 1.0,
            seconds_per_image: 0.25,
            resumed_images: 2,
            rows_from: None,
            peak_rss_mib: None,
            training: None,
        }
    }

    #[test]
    fn the_report_round_trips_and_reads_as_markdown() {
        let r = report();
        let text = serde_json::to_string(&r).unwrap();
        // Optional parts absent from the file stay absent.
        assert!(
            !text.contains("term_rows") && !text.contains("rows_from"),
            "{text}"
        );
        let back: EvaluationReport = serde_json::from_str(&text).unwrap();
        assert_eq!(back.rows, r.rows);
        let md = r.markdown();
        assert!(md.contains("| p=17 | 0.5000 | 0.7500 | – |"), "{md}");
        assert!(md.contains("the scores of 2 images kept"), "{md}");
        assert!(md.contains("![PRO curve](pro-curve.png)"), "{md}");
        assert!(!md.contains("distilled densely"), "{md}");
    }

    #[test]
    fn a_densely_distilled_teacher_is_stated_under_the_training_table() {
        let scale = |p: usize, dense: bool| {
            serde_json::json!({
                "patch_size": p, "students": 3, "steps": 10, "train_images": 4,
                "validation_images": 1, "final_loss": 2.5, "targets_s": 0.1, "training_s": 9.0,
                "calibration_s": 0.2, "sessions": 1, "teacher": format!("t{p}.safetensors"),
                "dense_teacher": dense, "trainer_version": "0"
            })
        };
        let training = serde_json::json!({
            "category": "widget", "preset": "smoke", "train_images": 4, "validation_images": 1,
            "scales": [scale(17, false), scale(33, true)]
        });
        let mut r = report();
        r.training = Some(serde_json::from_value(training).unwrap());
        let md = r.markdown();
        assert!(
            md.contains("p=33: the teacher `t33.safetensors` was distilled densely"),
            "{md}"
        );
        assert!(!md.contains("p=17: the teacher"), "{md}");
        // Summaries written before the field existed read as patch-wise.
        let old = r#"{"patch_size": 17, "students": 3, "steps": 10, "train_images": 4,
            "validation_images": 1, "final_loss": 2.5, "targets_s": 0.1, "training_s": 9.0,
            "calibration_s": 0.2, "sessions": 1, "teacher": "t", "trainer_version": "0"}"#;
        let old: ust_detector::StudentSummary = serde_json::from_str(old).unwrap();
        assert!(!old.dense_teacher);
    }
}
