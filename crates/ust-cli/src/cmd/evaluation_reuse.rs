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

use anyhow::{Context, Result};
use ust_detector::Detector;
use ust_detector::student::ScalePaths;

use super::evaluate::{EvaluateArgs, EvaluationReport};

/// What the report takes from an earlier evaluation.
pub struct ReusedEvaluation {
    /// The folder of the report the rows came from.
    pub from: PathBuf,
    pub report: EvaluationReport,
}

/// The first of `args.reuse` whose report gives this evaluation's rows, if any (none when maps
/// or images are to be written: they need the scores themselves).
pub fn reusable_evaluation(
    args: &EvaluateArgs,
    detector: &Detector,
    data: &Path,
) -> Result<Option<ReusedEvaluation>> {
    if args.save_maps || args.images {
        return Ok(None);
    }
    for dir in &args.reuse {
        match matching_report(args, detector, data, dir) {
            Ok(Some(report)) => {
                return Ok(Some(ReusedEvaluation {
                    from: dir.clone(),
                    report,
                }));
            }
            Ok(None) => {}
            // A candidate that cannot be read is passed over, not an error: it is an offer.
            Err(e) => tracing::debug!(candidate = %dir.display(), "not reusable: {e:#}"),
        }
    }
    Ok(None)
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
        .with_context(|| format!("reading {}", path.display()))
}

fn matching_report(
    args: &EvaluateArgs,
    detector: &Detector,
    data: &Path,
    dir: &Path,
) -> Result<Option<EvaluationReport>> {
    let report_path = dir.join("report.json");
    if !report_path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&report_path)
        .with_context(|| format!("reading {}", report_path.display()))?;
    let other: EvaluationReport = serde_json::from_str(&text)
        .with_context(|| format!("parsing {}", report_path.display()))?;
    let scales = detector.patch_sizes();
    let names: Vec<String> = scales.iter().map(|p| format!("p={p}")).collect();
    let other_scales: Vec<&str> = other
        .rows
        .iter()
        .map(|r| r.name.as_str())
        .filter(|n| n.starts_with("p="))
        .collect();
    let settings_match = same_path(Path::new(&other.data), data)
        && other.fpr_limit == args.fpr_limit
        && other.reducer == args.image_score.to_string()
        && other.score_terms == detector.score_terms
        && args
            .other_terms()
            .iter()
            .all(|&want| other.term_rows.iter().any(|t| t.score_terms == want))
        && other.test_images > 0;
    // With several scales the multi-scale row needs exactly the same scales there.
    let scales_match = if scales.len() > 1 {
        other_scales == names.iter().map(String::as_str).collect::<Vec<_>>()
    } else {
        other_scales.contains(&names[0].as_str())
    };
    if !settings_match || !scales_match {
        return Ok(None);
    }
    let category = ust_data::MvtecCategory::open(data)?;
    if category.test_samples().len() != other.test_images {
        return Ok(None);
    }
    let report_time = modified(&report_path)?;
    let other_run = PathBuf::from(&other.run_dir);
    for &p in &scales {
        let ours = ScalePaths::in_run_dir(&args.run_dir, p).model;
        let theirs = ScalePaths::in_run_dir(&other_run, p).model;
        if modified(&theirs)? > report_time {
            return Ok(None);
        }
        let (a, b) = (std::fs::read(&ours)?, std::fs::read(&theirs)?);
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
