//! `ust experiment FILE`: runs the jobs of an experiment file (the paper's tables, see
//! `crates/ust-experiments`) as subprocesses of this binary — exactly the `ust train`,
//! `ust evaluate`, `ust baseline dense`, `ust oneclass` and `ust teacher` commands a user could
//! type — one after the other, caching every finished job in its cell, and writes
//! `runs/<experiment>/<timestamp>/` (config.toml, results.json, report.md).
//!
//! `--list-jobs` and `--job K` split the work over a cluster (a Slurm array); `--merge` writes
//! the report from the cells present.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result, bail};
use clap::Args;
use ust_experiments::cell::{
    RESULT_FILE, is_done, utc_compact, utc_timestamp, write_failure, write_result,
};
use ust_experiments::report::write_run_dir;
use ust_experiments::resolve::{
    MODEL_DIR, ONE_CLASS_CHECKPOINT_FILE, REPORT_FILE, TEACHER_CHECKPOINT_FILE,
};
use ust_experiments::{
    CellFailure, CellResult, CellStatus, Experiment, Job, JobKind, Overrides, Plan, RunMeta,
    RunResults, StepRecord, check_inputs, parse_figures, read_status,
};

use super::teacher::PresetArg;

/// Lines of a failed command's stderr kept in the report.
const STDERR_TAIL: usize = 40;

#[derive(Args, Debug, Clone)]
pub struct ExperimentArgs {
    /// The experiment file (experiments/table1.toml, table2.toml, ablation_p.toml).
    pub file: PathBuf,
    /// The schedule of every job (overrides the file's `preset`).
    #[arg(long, value_enum)]
    pub preset: Option<PresetArg>,
    /// The MVTec-layout root (overrides the file's [mvtec].data).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Keep only the jobs whose name contains this text (repeatable: any of them).
    #[arg(long)]
    pub only: Vec<String>,
    /// Print the jobs (index, name, kind, done/pending; tab-separated), one a line, and stop
    /// (nothing when no job matches --only).
    #[arg(long, conflicts_with_all = ["job", "merge"])]
    pub list_jobs: bool,
    /// Run only job K (0-based, as --list-jobs numbers them with the same options), writing
    /// its cell; no report (see --merge).
    #[arg(long, conflicts_with = "merge")]
    pub job: Option<usize>,
    /// Write the report from the cells present, running nothing.
    #[arg(long)]
    pub merge: bool,
    /// Rerun finished jobs (their cells are cleared first).
    #[arg(long)]
    pub force: bool,
    /// Run up to N jobs at once, each with cores/N threads (unless RAYON_NUM_THREADS is set);
    /// a job that needs a teacher job of this run waits for it.
    #[arg(long, default_value_t = 1)]
    pub parallel: usize,
    /// Where runs go: RUNS/<experiment>/cells/ and RUNS/<experiment>/<timestamp>/.
    #[arg(long, default_value = "runs")]
    pub runs: PathBuf,
}

fn preset_name(p: PresetArg) -> &'static str {
    match p {
        PresetArg::Paper => "paper",
        PresetArg::Cpu => "cpu",
        PresetArg::Smoke => "smoke",
    }
}

pub fn run(args: ExperimentArgs) -> Result<ExitCode> {
    if args.parallel == 0 {
        bail!("--parallel must be at least 1 (jobs at once)");
    }
    let started = Instant::now();
    let started_at = SystemTime::now();
    let overrides = Overrides {
        preset: args.preset.map(|p| preset_name(p).to_string()),
        data: args.data.as_ref().map(|d| d.display().to_string()),
    };
    let experiment = Experiment::load(&args.file, &overrides)?;
    let plan = Plan::new(&experiment, &|p| {
        ust_detector::find_default_teacher(p).map_err(|e| e.to_string())
    })?;
    let selected: Vec<Job> = plan.select(&args.only).into_iter().cloned().collect();
    if selected.is_empty() && !args.list_jobs {
        bail!(
            "{}: no job name contains {} ({} jobs; see --list-jobs without --only)",
            args.file.display(),
            args.only
                .iter()
                .map(|o| format!("{o:?}"))
                .collect::<Vec<_>>()
                .join(" or "),
            plan.jobs.len()
        );
    }
    let exp_dir = args.runs.join(&experiment.name);
    let cells_dir = exp_dir.join("cells");

    if args.list_jobs {
        let mut out = std::io::stdout().lock();
        for (k, job) in selected.iter().enumerate() {
            let state = if is_done(&cells_dir, job) {
                "done"
            } else {
                "pending"
            };
            writeln!(out, "{k}\t{}\t{}\t{state}", job.name, job.kind.as_str())?;
        }
        return Ok(ExitCode::SUCCESS);
    }

    if let Some(k) = args.job {
        let Some(job) = selected.get(k) else {
            bail!(
                "--job {k}: there are {} jobs (0 to {}) with these options; see --list-jobs",
                selected.len(),
                selected.len().saturating_sub(1)
            );
        };
        check_inputs(&[job])?;
        if let Some(reason) = missing_teacher(&plan, job, &cells_dir, &args.file) {
            bail!("{reason}");
        }
        if !args.force && is_done(&cells_dir, job) {
            println!(
                "job {k} ({}) is done: {}",
                job.name,
                cells_dir.join(&job.cell).display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        let status = run_job(job, &cells_dir, args.force, (k, selected.len()))?;
        return Ok(match status {
            CellStatus::Done { result, .. } => {
                println!("job {k} ({}): {}", job.name, result.figures.summary());
                ExitCode::SUCCESS
            }
            _ => ExitCode::FAILURE,
        });
    }

    let mut statuses = Vec::with_capacity(selected.len());
    if args.merge {
        for job in &selected {
            statuses.push(read_status(&cells_dir, job)?);
        }
    } else {
        check_inputs(&selected.iter().collect::<Vec<_>>())?;
        statuses = run_selected(&plan, &selected, &cells_dir, &args)?;
    }

    let failed = statuses
        .iter()
        .filter(|s| matches!(s, CellStatus::Failed { .. }))
        .count();
    let missing = statuses
        .iter()
        .filter(|s| matches!(s, CellStatus::Missing))
        .count();
    let report_plan = Plan {
        jobs: selected,
        ..plan
    };
    let mut data: Vec<String> = Vec::new();
    if let Some(root) = &report_plan.mvtec_root {
        data.push(root.display().to_string());
    }
    for d in &report_plan.experiment.datasets {
        data.push(ust_experiments::expand_shared(&d.root));
    }
    let meta = RunMeta {
        experiment: experiment.name.clone(),
        file: args.file.display().to_string(),
        table: experiment.table,
        preset: experiment.preset.clone(),
        seeds: experiment.seeds.clone(),
        data,
        mode: if args.merge { "merge" } else { "run" }.into(),
        command: std::env::args().collect(),
        started_at: utc_timestamp(started_at),
        finished_at: utc_timestamp(SystemTime::now()),
        wall_s: started.elapsed().as_secs_f64(),
    };
    let results = RunResults::new(meta, &report_plan, statuses);
    let dir = write_run_dir(&exp_dir, &utc_compact(started_at), &report_plan, &results)?;
    println!(
        "{} jobs: {} done, {failed} failed, {missing} not run; report: {}",
        results.cells.len(),
        results.cells.len() - failed - missing,
        dir.join("report.md").display()
    );
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs the pending jobs of `selected` (done ones are read back), up to `args.parallel` at
/// once, and returns every job's status in the order of `selected`.
///
/// Work units: one job, or every pending dense baseline on the same descriptors (one
/// command). Units start in the order of `selected`; a unit whose job waits for a teacher job
/// of this invocation starts once that job has ended (then fails, naming it, if the teacher
/// failed). With several at once, each command gets `RAYON_NUM_THREADS` = cores / parallel
/// unless the variable is set.
fn run_selected(
    plan: &Plan,
    selected: &[Job],
    cells_dir: &Path,
    args: &ExperimentArgs,
) -> Result<Vec<CellStatus>> {
    use std::collections::HashSet;
    use std::sync::{Condvar, Mutex};

    let n = selected.len();
    let mut found: Vec<Option<CellStatus>> = (0..n).map(|_| None).collect();
    let pending = |job: &Job| args.force || !is_done(cells_dir, job);
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
    let threads = if args.parallel > 1 && std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        Some((cores / args.parallel).max(1))
    } else {
        None
    };

    struct Queue {
        units: VecDeque<Vec<usize>>,
        /// Names of the jobs not yet ended (queued or running).
        unfinished: HashSet<String>,
        found: Vec<Option<CellStatus>>,
        error: Option<anyhow::Error>,
    }
    let unfinished = units
        .iter()
        .flatten()
        .map(|&i| selected[i].name.clone())
        .collect();
    let queue = Mutex::new(Queue {
        units,
        unfinished,
        found,
        error: None,
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
            let outcome = match missing_teacher(plan, job, cells_dir, &args.file) {
                Some(reason) => {
                    let failure = failure_record(job, reason, Vec::new(), Vec::new(), 0.0);
                    tracing::warn!("{}: {}", job.name, failure.reason);
                    write_failure(&cells_dir.join(&job.cell), &failure)
                        .map(|()| vec![CellStatus::Failed { failure }])
                        .map_err(anyhow::Error::from)
                }
                None => {
                    let jobs: Vec<&Job> = unit.iter().map(|&i| &selected[i]).collect();
                    run_jobs(&jobs, cells_dir, args.force, (k, n), threads)
                }
            };
            let mut q = lock();
            match outcome {
                Ok(statuses) => {
                    for (&i, status) in unit.iter().zip(statuses) {
                        q.unfinished.remove(&selected[i].name);
                        q.found[i] = Some(status);
                    }
                }
                Err(e) => {
                    q.error.get_or_insert(e);
                }
            }
            wake.notify_all();
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..args.parallel.max(1) {
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

/// Why `job` cannot run yet: its teacher job has not finished.
fn missing_teacher(plan: &Plan, job: &Job, cells_dir: &Path, file: &Path) -> Option<String> {
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

/// Runs every command of `job` in its cell and records the outcome there.
fn run_job(
    job: &Job,
    cells_dir: &Path,
    force: bool,
    position: (usize, usize),
) -> Result<CellStatus> {
    let mut statuses = run_jobs(&[job], cells_dir, force, position, None)?;
    Ok(statuses.remove(0))
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
) -> Result<Vec<CellStatus>> {
    let cells: Vec<PathBuf> = jobs.iter().map(|j| cells_dir.join(&j.cell)).collect();
    for cell in &cells {
        if force && cell.exists() {
            std::fs::remove_dir_all(cell)
                .with_context(|| format!("clearing {} (--force)", cell.display()))?;
        }
        std::fs::create_dir_all(cell).with_context(|| format!("creating {}", cell.display()))?;
        for stale in [RESULT_FILE, REPORT_FILE] {
            let p = cell.join(stale);
            if p.exists() {
                std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
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
    let exe = ust_binary()?;
    let mut log = Tee(cells
        .iter()
        .map(|cell| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(cell.join("job.log"))
                .with_context(|| format!("opening {}", cell.join("job.log").display()))
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
        Ok::<_, anyhow::Error>(statuses)
    };
    for step in steps {
        writeln!(log, "$ ust {}", step.args.join(" "))?;
        let t0 = Instant::now();
        let outcome = run_command(&exe, &step.args, &name, threads, &mut log);
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
                    format!("could not run `ust {what}`: {e:#}"),
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
            std::fs::write(to, &stdout).with_context(|| format!("writing {}", to.display()))?;
        }
    }
    let wall_s = started.elapsed().as_secs_f64() / jobs.len() as f64;
    let mut statuses = Vec::with_capacity(jobs.len());
    for (job, cell) in jobs.iter().zip(&cells) {
        let report_path = cell.join(REPORT_FILE);
        let figures = std::fs::read_to_string(&report_path)
            .with_context(|| format!("reading {}", report_path.display()))
            .and_then(|t| {
                let v: serde_json::Value = serde_json::from_str(&t)
                    .with_context(|| format!("{} is not JSON", report_path.display()))?;
                Ok(parse_figures(job.kind, &v, &report_path)?)
            });
        let figures = match figures {
            Ok(f) => f,
            Err(e) => {
                let failure =
                    failure_record(job, format!("{e:#}"), records.clone(), Vec::new(), wall_s);
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

/// The program the jobs run: this binary. On Linux `/proc/self/exe`, which still names the
/// running binary's file after a rebuild replaced it on disk (`current_exe` would then name a
/// deleted path); elsewhere `current_exe`.
fn ust_binary() -> Result<PathBuf> {
    let proc_exe = Path::new("/proc/self/exe");
    if cfg!(target_os = "linux") && proc_exe.exists() {
        return Ok(proc_exe.to_path_buf());
    }
    std::env::current_exe().context("locating the ust binary")
}

/// Runs `exe args`, forwarding its stderr line by line (prefixed with `name`) and copying both
/// streams into `log`. Returns the exit code, the whole stdout, the last lines of stderr and
/// the peak resident memory sampled while it ran.
fn run_command(
    exe: &Path,
    args: &[String],
    name: &str,
    threads: Option<usize>,
    log: &mut dyn Write,
) -> Result<CommandOutcome> {
    let mut command = Command::new(exe);
    if let Some(t) = threads {
        command.env("RAYON_NUM_THREADS", t.to_string());
    }
    #[cfg(unix)]
    std::os::unix::process::CommandExt::arg0(&mut command, "ust");
    let mut child = command
        .args(args)
        // Plain log lines (no colour codes) in job.log and the report's stderr tail.
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let memory = PeakMemory::watch(child.id());
    let mut stdout = child.stdout.take().context("no stdout pipe")?;
    let stderr = child.stderr.take().context("no stderr pipe")?;
    let stdout_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stdout.read_to_end(&mut buf).map(|_| buf)
    });
    let mut tail: VecDeque<String> = VecDeque::with_capacity(STDERR_TAIL);
    let mut lines = Vec::new();
    for line in BufReader::new(stderr).split(b'\n') {
        let line = line.context("reading the job's stderr")?;
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        eprintln!("  {name} | {text}");
        lines.push(text.clone());
        if tail.len() == STDERR_TAIL {
            tail.pop_front();
        }
        tail.push_back(text);
    }
    let status = child.wait().context("waiting for the job")?;
    let peak = memory.finish();
    let out = stdout_reader
        .join()
        .map_err(|_| anyhow::anyhow!("the stdout reader panicked"))?
        .context("reading the job's stdout")?;
    log.write_all(&out)?;
    for l in &lines {
        writeln!(log, "{l}")?;
    }
    Ok(CommandOutcome {
        code: status.code(),
        stdout: out,
        stderr_tail: tail.into_iter().collect(),
        peak_rss_mib: peak,
    })
}

/// What a finished command left.
struct CommandOutcome {
    /// The exit status (None: killed by a signal).
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr_tail: Vec<String>,
    peak_rss_mib: Option<f64>,
}

/// Samples a process's peak resident memory (`VmHWM` in `/proc/<pid>/status`, which only
/// grows) every 200 ms while it runs; nothing on systems without `/proc`.
struct PeakMemory {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Option<f64>>>,
}

impl PeakMemory {
    fn watch(pid: u32) -> Self {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let status = PathBuf::from(format!("/proc/{pid}/status"));
        let thread = status.exists().then(|| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut peak: Option<f64> = None;
                loop {
                    if let Some(v) = std::fs::read_to_string(&status)
                        .ok()
                        .and_then(|t| vm_hwm_mib(&t))
                    {
                        peak = Some(peak.map_or(v, |p: f64| p.max(v)));
                    }
                    if stop.load(Ordering::Relaxed) {
                        return peak;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
            })
        });
        Self { stop, thread }
    }

    fn finish(self) -> Option<f64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.and_then(|t| t.join().ok().flatten())
    }
}

/// `VmHWM` of a `/proc/<pid>/status` text, in MiB.
fn vm_hwm_mib(status: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ust_experiments::Task;

    #[test]
    fn vm_hwm_is_read_in_mib() {
        let status = "Name:\tust\nVmPeak:\t  900000 kB\nVmHWM:\t  204800 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(vm_hwm_mib(status), Some(200.0));
        assert_eq!(vm_hwm_mib("Name:\tzombie\n"), None);
        // This process: a positive peak.
        if let Ok(text) = std::fs::read_to_string("/proc/self/status") {
            assert!(vm_hwm_mib(&text).unwrap() > 0.0);
        }
    }

    #[test]
    fn job_teacher_dependency_names_the_job_to_run_first() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("t.toml");
        std::fs::write(
            &cfg,
            "[teacher]\npatch_size = 17\n[losses]\nlambda_k = 0.0\nlambda_m = 1.0\nlambda_c = 0.0\n",
        )
        .unwrap();
        let file = dir.path().join("e.toml");
        std::fs::write(
            &file,
            format!(
                "table = \"table2\"\n[[teachers]]\nname = \"m\"\nconfig = \"{}\"\n\
                 [[datasets]]\nname = \"mnist\"\nroot = \"{}\"\nclasses = [1]\n\
                 [one_class]\nmethods = [\"students\"]\n",
                cfg.display(),
                dir.path().display()
            ),
        )
        .unwrap();
        let exp = Experiment::load(&file, &Overrides::default()).unwrap();
        let plan = Plan::new(&exp, &|p| Err(format!("no p{p}"))).unwrap();
        assert_eq!(plan.jobs.len(), 2);
        let cells = dir.path().join("cells");
        let reason = missing_teacher(&plan, &plan.jobs[1], &cells, &file).unwrap();
        assert!(reason.contains("teacher/m") && reason.contains("--only teacher/m --job 0"));
        assert!(missing_teacher(&plan, &plan.jobs[0], &cells, &file).is_none());
        assert!(matches!(plan.jobs[1].task, Task::OneClass { .. }));
    }
}
