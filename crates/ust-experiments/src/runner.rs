//! The runner: runs the pending jobs of a plan in their cells, up to N at once, and records
//! each outcome there (`result.json` or `failed.json`). The commands themselves (arguments of
//! the `ust` binary, [`Job::steps`]) are run by an [`Executor`]: the CLI's starts subprocesses;
//! tests give a fake one, so the queue, its dependencies and the records are tested without
//! processes.

use std::collections::{HashSet, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use crate::cell::{
    CellFailure, CellResult, CellStatus, RESULT_FILE, StepRecord, is_done, parse_figures,
    read_status, utc_timestamp, write_failure, write_result,
};
use crate::error::{ExperimentError, Result};
use crate::resolve::{
    Job, JobKind, MODEL_DIR, ONE_CLASS_CHECKPOINT_FILE, Plan, REPORT_FILE, TEACHER_CHECKPOINT_FILE,
};

/// What a finished command left.
#[derive(Debug, Clone, Default)]
pub struct CommandOutcome {
    /// The exit status (None: killed by a signal).
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    /// The last lines of its stderr (the report quotes them on failure).
    pub stderr_tail: Vec<String>,
    pub peak_rss_mib: Option<f64>,
}

/// Runs one command of a job.
pub trait Executor: Sync {
    /// Runs `ust ARGS` (with `threads` threads for its pools when given), copying both of its
    /// streams into `log`; `name` labels its output. An `Err` says why it could not run at all.
    fn run(
        &self,
        args: &[String],
        name: &str,
        threads: Option<usize>,
        log: &mut dyn Write,
    ) -> std::result::Result<CommandOutcome, String>;
}

/// How the pending jobs run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Jobs at once (each command gets cores / parallel threads unless `RAYON_NUM_THREADS` is
    /// set).
    pub parallel: usize,
    /// Rerun finished jobs (their cells are cleared first).
    pub force: bool,
    /// The experiment file, named in messages.
    pub file: PathBuf,
    /// Each selected job's expected seconds ([`crate::cost::CostModel::estimate`]), for the
    /// progress line's remaining time; empty: no estimate.
    pub estimates: Vec<Option<f64>>,
}

/// Why `job` cannot run yet: its teacher job has not finished.
pub fn missing_teacher(plan: &Plan, job: &Job, cells_dir: &Path, file: &Path) -> Option<String> {
    let teacher_job = plan.job_named(job.depends_on()?)?;
    if is_done(cells_dir, teacher_job) {
        return None;
    }
    Some(format!(
        "job {} needs the teacher of job {} ({}), which has not finished: run it first, e.g. \
         `ust experiment {} --only {} --job 0` (with the same --preset), or the teacher stage \
         of the array",
        job.name,
        teacher_job.index,
        teacher_job.name,
        file.display(),
        teacher_job.name
    ))
}

/// Runs the pending jobs of `selected` (done ones are read back), up to `options.parallel` at
/// once, and returns every job's status in the order of `selected`.
///
/// Work units: one job, or every pending dense baseline on the same descriptors (one
/// command). Units start in the order of `selected`; a unit whose job waits for a teacher job
/// of this invocation starts once that job has ended (then fails, naming it, if the teacher
/// failed). With several at once, each command gets `RAYON_NUM_THREADS` = cores / parallel
/// unless the variable is set.
pub fn run_selected(
    plan: &Plan,
    selected: &[Job],
    cells_dir: &Path,
    options: &RunOptions,
    executor: &dyn Executor,
) -> Result<Vec<CellStatus>> {
    use std::sync::{Condvar, Mutex};

    let n = selected.len();
    let mut found: Vec<Option<CellStatus>> = (0..n).map(|_| None).collect();
    let pending = |job: &Job| options.force || !is_done(cells_dir, job);
    let mut units: VecDeque<Vec<usize>> = VecDeque::new();
    for (k, job) in selected.iter().enumerate() {
        if units.iter().flatten().any(|&i| i == k) {
            continue; // in an earlier job's command
        }
        if !pending(job) {
            tracing::info!("[{}/{n}] {}: done, skipped", k + 1, job.name);
            found[k] = Some(read_status(cells_dir, job)?);
        } else if let Some(key) = job.shared_descriptors_key() {
            // Every pending dense baseline on the same descriptors runs in one command.
            units.push_back(
                (k..n)
                    .filter(|&i| {
                        selected[i].shared_descriptors_key().as_ref() == Some(&key)
                            && pending(&selected[i])
                    })
                    .collect(),
            );
        } else {
            units.push_back(vec![k]);
        }
    }
    let threads = if options.parallel > 1 && std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        Some((cores / options.parallel).max(1))
    } else {
        None
    };

    struct Queue {
        units: VecDeque<Vec<usize>>,
        /// Names of the jobs not yet ended (queued or running).
        unfinished: HashSet<String>,
        found: Vec<Option<CellStatus>>,
        error: Option<ExperimentError>,
        progress: Progress,
    }
    let unfinished = units
        .iter()
        .flatten()
        .map(|&i| selected[i].name.clone())
        .collect();
    let to_run: Vec<usize> = units.iter().flatten().copied().collect();
    let progress = Progress::new(&to_run, &options.estimates, options.parallel);
    let queue = Mutex::new(Queue {
        units,
        unfinished,
        found,
        error: None,
        progress,
    });
    let wake = Condvar::new();
    let lock = || queue.lock().unwrap_or_else(|e| e.into_inner());
    let worker = || {
        loop {
            let unit = {
                let mut q = lock();
                loop {
                    if q.error.is_some() || q.units.is_empty() {
                        return;
                    }
                    let ready = q.units.iter().position(|unit| {
                        unit.iter().all(|&i| {
                            selected[i]
                                .depends_on()
                                .is_none_or(|t| !q.unfinished.contains(t))
                        })
                    });
                    match ready {
                        Some(u) => break q.units.remove(u).expect("a queued unit"),
                        None => q = wake.wait(q).unwrap_or_else(|e| e.into_inner()),
                    }
                }
            };
            let k = unit[0];
            let job = &selected[k];
            let outcome = match missing_teacher(plan, job, cells_dir, &options.file) {
                Some(reason) => {
                    let failure = failure_record(job, reason, Vec::new(), Vec::new(), 0.0);
                    tracing::warn!("{}: {}", job.name, failure.reason);
                    write_failure(&cells_dir.join(&job.cell), &failure)
                        .map(|()| vec![CellStatus::Failed { failure }])
                }
                None => {
                    let jobs: Vec<&Job> = unit.iter().map(|&i| &selected[i]).collect();
                    run_jobs(&jobs, cells_dir, options.force, (k, n), threads, executor)
                }
            };
            let mut q = lock();
            match outcome {
                Ok(statuses) => {
                    let measured: f64 = statuses
                        .iter()
                        .map(|s| match s {
                            CellStatus::Done { result, .. } => result.wall_s,
                            CellStatus::Failed { failure } => failure.wall_s,
                            CellStatus::Missing => 0.0,
                        })
                        .sum();
                    for (&i, status) in unit.iter().zip(statuses) {
                        q.unfinished.remove(&selected[i].name);
                        q.found[i] = Some(status);
                    }
                    let line = q.progress.finished(&unit, measured);
                    tracing::info!("{line}");
                }
                Err(e) => {
                    q.error.get_or_insert(e);
                }
            }
            wake.notify_all();
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..options.parallel.max(1) {
            scope.spawn(worker);
        }
    });
    let q = queue.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = q.error {
        return Err(e);
    }
    Ok(q.found
        .into_iter()
        .map(|s| s.expect("every selected job has a status"))
        .collect())
}

/// The table's progress: after every finished unit, the jobs finished, the time since the
/// start and the time the unfinished jobs should still take (their estimates, corrected by
/// how the finished ones compared with theirs, shared over the parallel runners).
struct Progress {
    started: Instant,
    estimates: Vec<Option<f64>>,
    /// Selected indices not yet finished in this invocation.
    open: HashSet<usize>,
    total: usize,
    parallel: usize,
    /// Estimated and measured seconds of the finished units that had an estimate.
    finished_estimate_s: f64,
    finished_measured_s: f64,
}

impl Progress {
    fn new(to_run: &[usize], estimates: &[Option<f64>], parallel: usize) -> Self {
        Self {
            started: Instant::now(),
            estimates: estimates.to_vec(),
            open: to_run.iter().copied().collect(),
            total: to_run.len(),
            parallel: parallel.max(1),
            finished_estimate_s: 0.0,
            finished_measured_s: 0.0,
        }
    }

    fn estimate(&self, i: usize) -> Option<f64> {
        self.estimates.get(i).copied().flatten()
    }

    /// Records `unit` as finished after `measured` seconds of its jobs and returns the
    /// progress line.
    fn finished(&mut self, unit: &[usize], measured: f64) -> String {
        for i in unit {
            self.open.remove(i);
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        let done = self.total - self.open.len();
        let mut line = format!(
            "progress: {done}/{} jobs run, {} elapsed",
            self.total,
            crate::report::fmt_s(elapsed)
        );
        let unit_estimate: Option<f64> = unit.iter().map(|&i| self.estimate(i)).sum();
        if let Some(e) = unit_estimate {
            self.finished_estimate_s += e;
            self.finished_measured_s += measured;
        }
        let left: Option<f64> = self.open.iter().map(|&i| self.estimate(i)).sum();
        if let Some(left) = left
            && !self.open.is_empty()
        {
            let ratio = if self.finished_estimate_s > 0.0 {
                self.finished_measured_s / self.finished_estimate_s
            } else {
                1.0
            };
            line.push_str(&format!(
                ", about {} left (the cost model's estimate × {ratio:.2}, the ratio measured \
                 so far)",
                crate::report::fmt_s(left * ratio / self.parallel as f64)
            ));
        }
        line
    }
}

/// Runs every command of `job` (the `position`-th of `of`) in its cell and records the
/// outcome there.
pub fn run_job(
    job: &Job,
    cells_dir: &Path,
    force: bool,
    (position, of): (usize, usize),
    executor: &dyn Executor,
) -> Result<CellStatus> {
    let mut statuses = run_jobs(&[job], cells_dir, force, (position, of), None, executor)?;
    Ok(statuses.remove(0))
}

/// Runs `job`, the `position`-th of `of`, alone (one task of an array, `--job K`): an error
/// while its teacher job has not finished ([`missing_teacher`]); `None` when its cell already
/// holds a result and `force` is not given (nothing ran); otherwise its status as recorded in
/// its cell.
pub fn run_single(
    plan: &Plan,
    job: &Job,
    cells_dir: &Path,
    force: bool,
    (position, of): (usize, usize),
    file: &Path,
    executor: &dyn Executor,
) -> Result<Option<CellStatus>> {
    if let Some(reason) = missing_teacher(plan, job, cells_dir, file) {
        return Err(ExperimentError::NotReady(reason));
    }
    if !force && is_done(cells_dir, job) {
        return Ok(None);
    }
    run_job(job, cells_dir, force, (position, of), executor).map(Some)
}

fn failure_record(
    job: &Job,
    reason: String,
    steps: Vec<StepRecord>,
    stderr_tail: Vec<String>,
    wall_s: f64,
) -> CellFailure {
    CellFailure {
        name: job.name.clone(),
        kind: job.kind,
        hash: job.hash.clone(),
        config: job.config.clone(),
        reason,
        steps,
        stderr_tail,
        wall_s,
        failed_at: utc_timestamp(SystemTime::now()),
    }
}

/// Whether the cell holds an interrupted training to continue.
fn resumable(job: &Job, cell: &Path) -> bool {
    match job.kind {
        JobKind::Students => cell.join(MODEL_DIR).is_dir(),
        JobKind::Teacher => cell.join(TEACHER_CHECKPOINT_FILE).is_file(),
        JobKind::OneClass => cell.join(ONE_CLASS_CHECKPOINT_FILE).is_file(),
        _ => false,
    }
}

/// Copies what is written to every file (a command run for several cells logs into each).
struct Tee(Vec<std::fs::File>);

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for f in &mut self.0 {
            f.write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.iter_mut().try_for_each(Write::flush)
    }
}

/// The figures of a finished job from its cell's report (the reason when there are none).
fn read_figures(job: &Job, cell: &Path) -> std::result::Result<crate::Figures, String> {
    let report_path = cell.join(REPORT_FILE);
    let text = std::fs::read_to_string(&report_path)
        .map_err(|e| format!("reading {}: {e}", report_path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not JSON: {e}", report_path.display()))?;
    parse_figures(job.kind, &v, &report_path).map_err(|e| e.to_string())
}

/// Runs `jobs` — one job, or dense baselines sharing their descriptors
/// ([`Job::shared_descriptors_key`]), done by one command — in their cells and records each
/// outcome in its cell. A job that ran with others gets an equal share of the command's time.
fn run_jobs(
    jobs: &[&Job],
    cells_dir: &Path,
    force: bool,
    (k, n): (usize, usize),
    threads: Option<usize>,
    executor: &dyn Executor,
) -> Result<Vec<CellStatus>> {
    let cells: Vec<PathBuf> = jobs.iter().map(|j| cells_dir.join(&j.cell)).collect();
    for cell in &cells {
        if force && cell.exists() {
            std::fs::remove_dir_all(cell).map_err(|e| ExperimentError::io(cell, e))?;
        }
        std::fs::create_dir_all(cell).map_err(|e| ExperimentError::io(cell, e))?;
        for stale in [RESULT_FILE, REPORT_FILE] {
            let p = cell.join(stale);
            if p.exists() {
                std::fs::remove_file(&p).map_err(|e| ExperimentError::io(&p, e))?;
            }
        }
    }
    let together = jobs.len() > 1;
    let resume = !together && resumable(jobs[0], &cells[0]);
    // A group's log prefix: `dense/knn,kmeans,…/<category>/seed<S>`.
    let name = if together {
        let mut parts: Vec<String> = jobs[0].name.split('/').map(String::from).collect();
        if parts.len() > 1 {
            parts[1] = jobs
                .iter()
                .filter_map(|j| j.name.split('/').nth(1))
                .collect::<Vec<_>>()
                .join(",");
        }
        parts.join("/")
    } else {
        jobs[0].name.clone()
    };
    tracing::info!(
        "[{}/{n}] {name}: {}running in {}{}",
        k + 1,
        if resume { "resuming, " } else { "" },
        cells[0].display(),
        if together {
            format!(
                " and {} more cells (one pass of the teacher)",
                cells.len() - 1
            )
        } else {
            String::new()
        }
    );
    let log_path = cells[0].join("job.log");
    let mut log = Tee(cells
        .iter()
        .map(|cell| {
            let path = cell.join("job.log");
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| ExperimentError::io(path, e))
        })
        .collect::<Result<_>>()?);
    let steps = if together {
        Job::dense_steps_together(jobs, cells_dir)
    } else {
        jobs[0].steps(cells_dir, resume)
    };
    let started = Instant::now();
    let mut records = Vec::new();
    let fail_all = |reason: String, records: Vec<StepRecord>, tail: Vec<String>, wall_s: f64| {
        let mut statuses = Vec::new();
        for (job, cell) in jobs.iter().zip(&cells) {
            tracing::warn!("{}: {reason}", job.name);
            let failure =
                failure_record(job, reason.clone(), records.clone(), tail.clone(), wall_s);
            write_failure(cell, &failure)?;
            statuses.push(CellStatus::Failed { failure });
        }
        Ok::<_, ExperimentError>(statuses)
    };
    for step in steps {
        writeln!(log, "$ ust {}", step.args.join(" "))
            .map_err(|e| ExperimentError::io(&log_path, e))?;
        let t0 = Instant::now();
        let outcome = executor.run(&step.args, &name, threads, &mut log);
        let wall_s = t0.elapsed().as_secs_f64();
        let what = match step.args.first().map(String::as_str) {
            Some("teacher" | "baseline") => step.args[..2.min(step.args.len())].join(" "),
            _ => step.args.first().cloned().unwrap_or_default(),
        };
        let CommandOutcome {
            code,
            stdout,
            stderr_tail: tail,
            peak_rss_mib,
        } = match outcome {
            Ok(o) => o,
            Err(e) => {
                records.push(StepRecord {
                    argv: step.args.clone(),
                    exit_code: None,
                    wall_s,
                    peak_rss_mib: None,
                });
                return fail_all(
                    format!("could not run `ust {what}`: {e}"),
                    records,
                    Vec::new(),
                    started.elapsed().as_secs_f64(),
                );
            }
        };
        records.push(StepRecord {
            argv: step.args.clone(),
            exit_code: code,
            wall_s,
            peak_rss_mib,
        });
        if code != Some(0) {
            let last = tail.iter().rev().find(|l| l.starts_with("error")).cloned();
            let reason = format!(
                "`ust {what}` {}{}",
                match code {
                    Some(c) => format!("exited with status {c}"),
                    None => "was killed by a signal".into(),
                },
                last.map(|l| format!(": {l}")).unwrap_or_default()
            );
            return fail_all(reason, records, tail, started.elapsed().as_secs_f64());
        }
        if let Some(to) = &step.stdout_to {
            std::fs::write(to, &stdout).map_err(|e| ExperimentError::io(to, e))?;
        }
    }
    let wall_s = started.elapsed().as_secs_f64() / jobs.len() as f64;
    let mut statuses = Vec::with_capacity(jobs.len());
    for (job, cell) in jobs.iter().zip(&cells) {
        let figures = match read_figures(job, cell) {
            Ok(f) => f,
            Err(reason) => {
                let failure = failure_record(job, reason, records.clone(), Vec::new(), wall_s);
                write_failure(cell, &failure)?;
                statuses.push(CellStatus::Failed { failure });
                continue;
            }
        };
        let result = CellResult {
            name: job.name.clone(),
            kind: job.kind,
            hash: job.hash.clone(),
            config: job.config.clone(),
            figures,
            wall_s,
            steps: records.clone(),
            finished_at: utc_timestamp(SystemTime::now()),
            ran_with: jobs
                .iter()
                .filter(|j| j.name != job.name)
                .map(|j| j.name.clone())
                .collect(),
        };
        write_result(cell, &result)?;
        tracing::info!(
            "[{}/{n}] {}: done in {wall_s:.1} s{}: {}",
            k + 1,
            job.name,
            if together { " (its share)" } else { "" },
            result.figures.summary()
        );
        statuses.push(CellStatus::Done {
            result,
            cached: false,
        });
    }
    Ok(statuses)
}

#[cfg(test)]
mod progress_tests {
    use super::Progress;

    #[test]
    fn the_remaining_time_is_the_open_estimates_corrected_by_the_measured_ratio() {
        // Jobs 0..4 estimated 100, 200, 300 s and (job 3) without an estimate: nothing left
        // can then be summed, so no remaining time is claimed until job 3 has finished.
        let estimates = [Some(100.0), Some(200.0), Some(300.0), None];
        let mut p = Progress::new(&[0, 1, 2, 3], &estimates, 1);
        let line = p.finished(&[3], 5.0);
        assert!(line.starts_with("progress: 1/4 jobs run"), "{line}");
        assert!(line.contains("about 10.0 min left"), "{line}"); // 600 s × 1.0
        // Job 0 took twice its estimate: the rest (500 s) is expected to take 1 000 s.
        let line = p.finished(&[0], 200.0);
        assert!(line.contains("about 16.7 min left"), "{line}");
        assert!(line.contains("× 2.00"), "{line}");
        // Two runners share what is left.
        let mut p = Progress::new(&[0, 1, 2], &estimates, 2);
        let line = p.finished(&[0], 100.0);
        assert!(line.contains("about 4.2 min left"), "{line}"); // 500 s / 2
        let line = p.finished(&[1, 2], 500.0);
        assert_eq!(line.matches("left").count(), 0, "{line}");
    }

    #[test]
    fn an_unestimated_open_job_leaves_the_remaining_time_out() {
        let mut p = Progress::new(&[0, 1, 2], &[Some(10.0), None, Some(10.0)], 1);
        let line = p.finished(&[0], 10.0);
        assert!(!line.contains("left"), "{line}");
    }
}
