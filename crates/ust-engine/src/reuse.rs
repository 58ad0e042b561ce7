//! `ust evaluate --reuse DIR`: take the report rows of an earlier evaluation instead of
//! scoring the test images again, when they are certain to be the same numbers.
//!
//! A scale's scores depend only on its scale file (students, teacher, normalization and
//! calibration), the score terms and the test image, so a row of another evaluation is this
//! evaluation's row when, for every scale evaluated here, the other run's scale file is
//! byte-identical to ours and older than the other report (it has not been replaced since),
//! the other report evaluated the same scales (the multi-scale row needs all of them), the
//! same category folder and number of test images, the same FPR limit, image-score reducer
//! and main score terms, and it has rows for every further score term asked for (`--score
//! e+v,e,v`; rows it has beyond those are left out). Table 1's p = 65
//! students cell, whose scale file `ust train --reuse` copied from Table 3's cell, takes Table
//! 3's p = 65 row this way: on the magnetic tiles that is ~50 minutes of one core here.

use std::path::{Path, PathBuf};

use ust_detector::ScoreTerms;
use ust_detector::student::ScalePaths;
use ust_metrics::ImageReducer;

use crate::error::{Context, EngineError, Result};
use crate::report::{EvaluationReport, ScoreRow, TermRows};

/// The evaluation that looks for an earlier one with its rows.
#[derive(Debug, Clone)]
pub struct ReuseQuery<'a> {
    pub run_dir: &'a Path,
    /// The category folder.
    pub data: &'a Path,
    /// The scales evaluated.
    pub scales: &'a [usize],
    pub fpr_limit: f64,
    pub image_score: ImageReducer,
    pub score_terms: ScoreTerms,
    pub other_terms: &'a [ScoreTerms],
}

/// What the report takes from an earlier evaluation.
#[derive(Debug, Clone)]
pub struct ReusedEvaluation {
    /// The folder of the report the rows came from.
    pub from: PathBuf,
    pub report: EvaluationReport,
}

/// The first of `candidates` (evaluation folders) whose report gives this evaluation's rows,
/// if any. A candidate that cannot be read is passed over, not an error: it is an offer.
pub fn reusable_evaluation(
    query: &ReuseQuery<'_>,
    candidates: &[PathBuf],
) -> Result<Option<ReusedEvaluation>> {
    for dir in candidates {
        match matching_report(query, dir) {
            Ok(Some(report)) => {
                return Ok(Some(ReusedEvaluation {
                    from: dir.clone(),
                    report,
                }));
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(candidate = %dir.display(), "not reusable: {e}"),
        }
    }
    Ok(None)
}

impl ReusedEvaluation {
    /// The earlier report's rows of the query's scales (and their mean when there are
    /// several), and its further term rows in the order asked.
    pub fn rows_for(self, query: &ReuseQuery<'_>) -> (Vec<ScoreRow>, Vec<TermRows>) {
        let scales = query.scales;
        let ours = |rows: Vec<ScoreRow>| -> Vec<ScoreRow> {
            rows.into_iter()
                .filter(|r| {
                    if r.name.starts_with("multi-scale") {
                        scales.len() > 1
                    } else {
                        scales.iter().any(|p| r.name == format!("p={p}"))
                    }
                })
                .collect()
        };
        let other = self.report;
        let rows = ours(other.rows);
        // The further terms asked for, in the order asked (the match made sure each is there).
        let mut theirs = other.term_rows;
        let term_rows = query
            .other_terms
            .iter()
            .filter_map(|&want| {
                let i = theirs.iter().position(|t| t.score_terms == want)?;
                let t = theirs.swap_remove(i);
                Some(TermRows {
                    score_terms: t.score_terms,
                    rows: ours(t.rows),
                })
            })
            .collect();
        (rows, term_rows)
    }
}

fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn modified(path: &Path) -> Result<std::time::SystemTime> {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(EngineError::io("reading", path))
}

fn matching_report(query: &ReuseQuery<'_>, dir: &Path) -> Result<Option<EvaluationReport>> {
    let report_path = dir.join("report.json");
    if !report_path.is_file() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&report_path).map_err(EngineError::io("reading", &report_path))?;
    let other: EvaluationReport = serde_json::from_str(&text)
        .context_with(|| format!("parsing {}", report_path.display()))?;
    let scales = query.scales;
    let Some(first) = scales.first() else {
        return Ok(None);
    };
    let names: Vec<String> = scales.iter().map(|p| format!("p={p}")).collect();
    let other_scales: Vec<&str> = other
        .rows
        .iter()
        .map(|r| r.name.as_str())
        .filter(|n| n.starts_with("p="))
        .collect();
    let settings_match = same_path(Path::new(&other.data), query.data)
        && other.fpr_limit == query.fpr_limit
        && other.reducer == query.image_score.to_string()
        && other.score_terms == query.score_terms
        && query
            .other_terms
            .iter()
            .all(|&want| other.term_rows.iter().any(|t| t.score_terms == want))
        && other.test_images > 0;
    // With several scales the multi-scale row needs exactly the same scales there.
    let scales_match = if scales.len() > 1 {
        other_scales == names.iter().map(String::as_str).collect::<Vec<_>>()
    } else {
        other_scales.contains(&format!("p={first}").as_str())
    };
    if !settings_match || !scales_match {
        return Ok(None);
    }
    let category = ust_data::MvtecCategory::open(query.data)?;
    if category.test_samples().len() != other.test_images {
        return Ok(None);
    }
    let report_time = modified(&report_path)?;
    let other_run = PathBuf::from(&other.run_dir);
    for &p in scales {
        let ours = ScalePaths::in_run_dir(query.run_dir, p).model;
        let theirs = ScalePaths::in_run_dir(&other_run, p).model;
        if modified(&theirs)? > report_time {
            return Ok(None);
        }
        let a = std::fs::read(&ours).map_err(EngineError::io("reading", &ours))?;
        let b = std::fs::read(&theirs).map_err(EngineError::io("reading", &theirs))?;
        if a != b {
            return Ok(None);
        }
    }
    Ok(Some(other))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_path_needs_existing_equal_paths() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::create_dir(&a).unwrap();
        assert!(same_path(&a, &dir.path().join("a/../a")));
        assert!(!same_path(&a, dir.path()));
        assert!(!same_path(
            &dir.path().join("missing"),
            &dir.path().join("missing")
        ));
    }
}
