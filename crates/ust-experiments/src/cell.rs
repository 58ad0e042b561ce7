//! The cell cache: a job's folder `cells/<kind>-<name>-<hash>/` is done iff it holds
//! `result.json` (written atomically once the job succeeded); a failed attempt leaves
//! `failed.json`. Also: the figures each kind of job reports, parsed from its `report.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use ust_data::files::write_bytes_atomically;

use crate::error::{ExperimentError, Result};
use crate::oneclass::OneClassReport;
use crate::resolve::{Job, JobKind};

/// The runner's record of a finished cell.
pub const RESULT_FILE: &str = "result.json";
/// The runner's record of a failed attempt.
pub const FAILED_FILE: &str = "failed.json";

/// One command as it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub argv: Vec<String>,
    /// The exit status (None: killed by a signal, or it could not start).
    pub exit_code: Option<i32>,
    pub wall_s: f64,
    /// The command's peak resident memory (VmHWM, sampled while it ran; Linux only), MiB.
    #[serde(default)]
    pub peak_rss_mib: Option<f64>,
}

/// One row of a students evaluation: one scale (`p=17`), or `multi-scale`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreRow {
    pub name: String,
    pub au_pro: f64,
    pub pixel_auroc: f64,
    pub image_auroc: Option<f64>,
}

/// The numbers a job produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Figures {
    Teacher {
        iterations: Option<u64>,
        training_s: Option<f64>,
    },
    Students {
        rows: Vec<ScoreRow>,
        training_s: Option<f64>,
        predict_s: Option<f64>,
        peak_rss_mib: Option<f64>,
    },
    DenseBaseline {
        au_pro: f64,
        pixel_auroc: Option<f64>,
        image_auroc: Option<f64>,
        total_s: Option<f64>,
        peak_rss_mib: Option<f64>,
    },
    OneClass {
        auroc: f64,
        total_s: Option<f64>,
        peak_rss_mib: Option<f64>,
    },
}

impl Figures {
    /// Peak resident memory a job's own report gives, MiB.
    pub fn peak_rss_mib(&self) -> Option<f64> {
        match self {
            Figures::Teacher { .. } => None,
            Figures::Students { peak_rss_mib, .. }
            | Figures::DenseBaseline { peak_rss_mib, .. }
            | Figures::OneClass { peak_rss_mib, .. } => *peak_rss_mib,
        }
    }

    /// The students row named `name` ("p=65", "multi-scale").
    pub fn row(&self, name: &str) -> Option<&ScoreRow> {
        match self {
            Figures::Students { rows, .. } => rows.iter().find(|r| r.name == name),
            _ => None,
        }
    }

    /// A one-line summary for the cells table.
    pub fn summary(&self) -> String {
        let opt = ust_engine::fmt_opt;
        match self {
            Figures::Teacher { iterations, .. } => format!(
                "{} iterations",
                iterations
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "?".into())
            ),
            Figures::Students { rows, .. } => rows
                .iter()
                .map(|r| {
                    format!(
                        "{}: AU-PRO {:.4}, pixel AUROC {:.4}, image AUROC {}",
                        r.name,
                        r.au_pro,
                        r.pixel_auroc,
                        opt(r.image_auroc)
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
            Figures::DenseBaseline {
                au_pro,
                pixel_auroc,
                image_auroc,
                ..
            } => format!(
                "AU-PRO {au_pro:.4}, pixel AUROC {}, image AUROC {}",
                opt(*pixel_auroc),
                opt(*image_auroc)
            ),
            Figures::OneClass { auroc, .. } => format!("AUROC {auroc:.4}"),
        }
    }
}

/// A students row name as the report uses it: `multi-scale (17+33+65)` becomes `multi-scale`.
pub fn row_key(name: &str) -> String {
    if name.starts_with("multi-scale") {
        "multi-scale".into()
    } else {
        name.to_string()
    }
}

/// The key of a row under further score terms: `e: p=33`, `v: multi-scale`.
pub fn term_row_key(terms: &str, name: &str) -> String {
    format!("{terms}: {}", row_key(name))
}

fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

/// The figures of a `kind` job from its `report.json` (`path` names it in errors).
pub fn parse_figures(kind: JobKind, report: &Value, path: &Path) -> Result<Figures> {
    let bad = |reason: String| ExperimentError::Cell {
        path: path.to_path_buf(),
        reason,
    };
    let need = |key: &str| num(report, key).ok_or_else(|| bad(format!("no number {key:?}")));
    Ok(match kind {
        JobKind::Teacher => {
            let summary = report.get("summary");
            Figures::Teacher {
                iterations: summary
                    .and_then(|s| s.get("iterations"))
                    .and_then(Value::as_u64),
                training_s: summary.and_then(|s| num(s, "duration_s")),
            }
        }
        JobKind::Students => {
            // One row, keyed "p=33" (or "e: p=33" under further score terms).
            let parse_row = |r: &Value, terms: Option<&str>| -> Result<ScoreRow> {
                let name = r
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("a row without a name".into()))?;
                let label = terms.map_or(name.to_string(), |t| format!("{t} {name}"));
                Ok(ScoreRow {
                    name: terms.map_or_else(|| row_key(name), |t| term_row_key(t, name)),
                    au_pro: num(r, "au_pro")
                        .ok_or_else(|| bad(format!("row {label}: no au_pro")))?,
                    pixel_auroc: num(r, "pixel_auroc")
                        .ok_or_else(|| bad(format!("row {label}: no pixel_auroc")))?,
                    image_auroc: num(r, "image_auroc"),
                })
            };
            let rows = report
                .get("rows")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("no \"rows\" list".into()))?;
            let mut out = rows
                .iter()
                .map(|r| parse_row(r, None))
                .collect::<Result<Vec<_>>>()?;
            if out.is_empty() {
                return Err(bad("\"rows\" is empty".into()));
            }
            // Rows of further score terms (`ust evaluate --score e+v,e,v`) as "e: p=33".
            let blocks = report.get("term_rows").and_then(Value::as_array);
            for block in blocks.into_iter().flatten() {
                let terms = block
                    .get("score_terms")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("term rows without score_terms".into()))?;
                let rows = block.get("rows").and_then(Value::as_array);
                for r in rows.into_iter().flatten() {
                    out.push(parse_row(r, Some(terms))?);
                }
            }
            let training_s = report
                .get("training")
                .and_then(|t| t.get("scales"))
                .and_then(Value::as_array)
                .map(|scales| scales.iter().filter_map(|s| num(s, "training_s")).sum());
            Figures::Students {
                rows: out,
                training_s,
                predict_s: num(report, "predict_s"),
                peak_rss_mib: num(report, "peak_rss_mib"),
            }
        }
        JobKind::DenseBaseline => Figures::DenseBaseline {
            au_pro: need("au_pro")?,
            pixel_auroc: num(report, "pixel_auroc"),
            image_auroc: num(report, "image_auroc"),
            total_s: num(report, "total_s"),
            peak_rss_mib: num(report, "peak_rss_mib"),
        },
        JobKind::OneClass => {
            // The report type `ust oneclass` writes ([`crate::oneclass`]), read back typed.
            let r = OneClassReport::from_json(report).map_err(|e| bad(e.to_string()))?;
            Figures::OneClass {
                auroc: r.auroc,
                total_s: r.total_s,
                peak_rss_mib: r.peak_rss_mib,
            }
        }
    })
}

/// `result.json`: a finished cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellResult {
    pub name: String,
    pub kind: JobKind,
    pub hash: String,
    pub config: Value,
    pub figures: Figures,
    /// Seconds all its commands took (the last, successful attempt); for a job that ran in
    /// one command with others (`ran_with`), its equal share of that command's time.
    pub wall_s: f64,
    pub steps: Vec<StepRecord>,
    /// UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub finished_at: String,
    /// The other jobs done by the same command (dense baselines on the same descriptors).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ran_with: Vec<String>,
}

impl CellResult {
    /// The largest peak resident memory of the job's commands: sampled by the runner, or as
    /// the job's report gives it.
    pub fn peak_rss_mib(&self) -> Option<f64> {
        self.steps
            .iter()
            .filter_map(|s| s.peak_rss_mib)
            .chain(self.figures.peak_rss_mib())
            .fold(None, |acc: Option<f64>, v| {
                Some(acc.map_or(v, |a| a.max(v)))
            })
    }
}

/// `failed.json`: the last failed attempt of a cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellFailure {
    pub name: String,
    pub kind: JobKind,
    pub hash: String,
    pub config: Value,
    pub reason: String,
    pub steps: Vec<StepRecord>,
    /// The last lines the failing command wrote to stderr.
    pub stderr_tail: Vec<String>,
    pub wall_s: f64,
    pub failed_at: String,
}

/// What is known about a cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CellStatus {
    /// Finished; `cached` when this invocation found it done and skipped it.
    Done {
        result: CellResult,
        cached: bool,
    },
    Failed {
        failure: CellFailure,
    },
    /// Not run (yet).
    Missing,
}

impl CellStatus {
    pub fn label(&self) -> &'static str {
        match self {
            CellStatus::Done { cached: true, .. } => "done (cached)",
            CellStatus::Done { cached: false, .. } => "done",
            CellStatus::Failed { .. } => "failed",
            CellStatus::Missing => "missing",
        }
    }

    pub fn result(&self) -> Option<&CellResult> {
        match self {
            CellStatus::Done { result, .. } => Some(result),
            _ => None,
        }
    }
}

/// Records a finished cell (and removes an earlier failure record).
pub fn write_result(cell_dir: &Path, result: &CellResult) -> Result<()> {
    write_bytes_atomically(
        &cell_dir.join(RESULT_FILE),
        serde_json::to_string_pretty(result)?.as_bytes(),
    )?;
    let failed = cell_dir.join(FAILED_FILE);
    if failed.exists() {
        std::fs::remove_file(&failed).map_err(|e| ExperimentError::io(&failed, e))?;
    }
    Ok(())
}

/// Records a failed attempt.
pub fn write_failure(cell_dir: &Path, failure: &CellFailure) -> Result<()> {
    Ok(write_bytes_atomically(
        &cell_dir.join(FAILED_FILE),
        serde_json::to_string_pretty(failure)?.as_bytes(),
    )?)
}

/// The state of `job`'s cell under `cells_dir`. A `result.json` whose hash is not the job's is
/// an error (the folder name carries the hash, so this means a hand-edited cell).
pub fn read_status(cells_dir: &Path, job: &Job) -> Result<CellStatus> {
    let dir = cells_dir.join(&job.cell);
    let read = |name: &str| -> Result<Option<String>> {
        let p = dir.join(name);
        match std::fs::read_to_string(&p) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ExperimentError::io(p, e)),
        }
    };
    if let Some(text) = read(RESULT_FILE)? {
        let p = dir.join(RESULT_FILE);
        let result: CellResult =
            serde_json::from_str(&text).map_err(|e| ExperimentError::Cell {
                path: p.clone(),
                reason: format!("unreadable: {e}"),
            })?;
        if result.hash != job.hash {
            return Err(ExperimentError::Cell {
                path: p,
                reason: format!("hash {} is not the job's {}", result.hash, job.hash),
            });
        }
        return Ok(CellStatus::Done {
            result,
            cached: true,
        });
    }
    if let Some(text) = read(FAILED_FILE)? {
        let p = dir.join(FAILED_FILE);
        let failure: CellFailure =
            serde_json::from_str(&text).map_err(|e| ExperimentError::Cell {
                path: p,
                reason: format!("unreadable: {e}"),
            })?;
        return Ok(CellStatus::Failed { failure });
    }
    Ok(CellStatus::Missing)
}

/// Whether `job`'s cell is done.
pub fn is_done(cells_dir: &Path, job: &Job) -> bool {
    cells_dir.join(&job.cell).join(RESULT_FILE).is_file()
}

/// UTC time of `t` as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days, no time-zone database).
pub fn utc_timestamp(t: std::time::SystemTime) -> String {
    let (y, mo, d, h, mi, s) = utc_parts(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// UTC time of `t` as `YYYYMMDD-HHMMSS` (the run folder's name).
pub fn utc_compact(t: std::time::SystemTime) -> String {
    let (y, mo, d, h, mi, s) = utc_parts(t);
    format!("{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}")
}

fn utc_parts(t: std::time::SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps_match_known_dates() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        // 2000-02-29 12:34:56 UTC = 951 827 696 s.
        let t = UNIX_EPOCH + Duration::from_secs(951_827_696);
        assert_eq!(utc_timestamp(t), "2000-02-29T12:34:56Z");
        assert_eq!(utc_compact(t), "20000229-123456");
        // 2026-11-28 00:00:00 UTC = 1 795 824 000 s.
        let t = UNIX_EPOCH + Duration::from_secs(1_795_824_000);
        assert_eq!(utc_timestamp(t), "2026-11-28T00:00:00Z");
    }

    #[test]
    fn students_figures_from_an_evaluate_report() {
        let report = json!({
            "rows": [
                {"name": "p=17", "au_pro": 0.5, "pixel_auroc": 0.8, "image_auroc": 0.7},
                {"name": "multi-scale (17+33)", "au_pro": 0.6, "pixel_auroc": 0.9, "image_auroc": null}
            ],
            "predict_s": 2.0, "peak_rss_mib": 100.0,
            "training": {"scales": [{"training_s": 3.0}, {"training_s": 4.5}]}
        });
        let f = parse_figures(JobKind::Students, &report, Path::new("r.json")).unwrap();
        assert_eq!(f.row("multi-scale").unwrap().au_pro, 0.6);
        assert_eq!(f.row("multi-scale").unwrap().image_auroc, None);
        assert_eq!(f.peak_rss_mib(), Some(100.0));
        match &f {
            Figures::Students { training_s, .. } => assert_eq!(*training_s, Some(7.5)),
            other => panic!("{other:?}"),
        }
        let err = parse_figures(JobKind::OneClass, &json!({"x": 1}), Path::new("c/r.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("c/r.json") && err.contains("auroc"), "{err}");
    }
}
