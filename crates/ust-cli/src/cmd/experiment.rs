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

use crate::device::DeviceArgs;
use anyhow::{Context, Result, bail};
use clap::Args;
use ust_experiments::cell::{is_done, utc_compact, utc_timestamp};
use ust_experiments::cost::CostModel;
use ust_experiments::report::{fmt_s, write_run_dir};
use ust_experiments::runner::{CommandOutcome, Executor, RunOptions, run_selected, run_single};
use ust_experiments::{
    CellStatus, Experiment, Job, Overrides, Plan, RunMeta, RunResults, check_inputs, read_status,
};

use ust_detector::Preset;
use ust_engine::memory::vm_hwm_mib;

/// Lines of a failed command's stderr kept in the report.
const STDERR_TAIL: usize = 40;

#[derive(Args, Debug, Clone)]
pub struct ExperimentArgs {
    /// Where the jobs' networks run (passed to every job that runs networks; results and cell
    /// hashes do not depend on it).
    #[command(flatten)]
    pub device: DeviceArgs,
    /// The experiment file (experiments/table1.toml, table2.toml, ablation_p.toml).
    pub file: PathBuf,
    /// The schedule of every job (overrides the file's `preset`).
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
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
    /// Print what the selected jobs will cost on this machine (the cost model of
    /// `crates/ust-experiments/src/costs.toml`: time on one core and peak memory per job, the
    /// total at --parallel), and stop.
    #[arg(long, conflicts_with_all = ["job", "merge", "list_jobs"])]
    pub plan: bool,
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

pub fn run(args: ExperimentArgs) -> Result<ExitCode> {
    if args.parallel == 0 {
        bail!("--parallel must be at least 1 (jobs at once)");
    }
    // A device that cannot be opened fails here, not in every job.
    args.device.open()?;
    let started = Instant::now();
    let started_at = SystemTime::now();
    let overrides = Overrides {
        preset: args.preset.map(|p| p.name().to_string()),
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

    if args.plan {
        print_plan(&experiment, &selected, &cells_dir, args.parallel)?;
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
        let executor = Subprocess {
            exe: ust_binary()?,
            device: args.device.device.clone(),
        };
        let position = (k, selected.len());
        return Ok(
            match run_single(
                &plan, job, &cells_dir, args.force, position, &args.file, &executor,
            )? {
                None => {
                    println!(
                        "job {k} ({}) is done: {}",
                        job.name,
                        cells_dir.join(&job.cell).display()
                    );
                    ExitCode::SUCCESS
                }
                Some(CellStatus::Done { result, .. }) => {
                    println!("job {k} ({}): {}", job.name, result.figures.summary());
                    ExitCode::SUCCESS
                }
                Some(_) => ExitCode::FAILURE,
            },
        );
    }

    let mut statuses = Vec::with_capacity(selected.len());
    if args.merge {
        for job in &selected {
            statuses.push(read_status(&cells_dir, job)?);
        }
    } else {
        check_inputs(&selected.iter().collect::<Vec<_>>())?;
        let options = RunOptions {
            parallel: args.parallel,
            force: args.force,
            file: args.file.clone(),
            estimates: CostModel::shipped()
                .pending_estimates(&selected, &cells_dir, args.force)
                .into_iter()
                .map(|e| e.map(|e| e.seconds))
                .collect(),
        };
        let executor = Subprocess {
            exe: ust_binary()?,
            device: args.device.device.clone(),
        };
        statuses = run_selected(&plan, &selected, &cells_dir, &options, &executor)?;
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
        data.push(ust_data::shared::expand_shared(&d.root));
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

/// `--plan`: per job its state and expected cost, then the total of the pending jobs.
fn print_plan(
    experiment: &Experiment,
    selected: &[Job],
    cells_dir: &Path,
    parallel: usize,
) -> Result<()> {
    let costs = CostModel::shipped().plan_costs(selected, cells_dir);
    let mut out = std::io::stdout().lock();
    writeln!(out, "#\tjob\tstate\testimate (1 core)\tpeak MiB")?;
    for (k, (job, cost)) in selected.iter().zip(&costs.jobs).enumerate() {
        writeln!(
            out,
            "{k}\t{}\t{}\t{}\t{}",
            job.name,
            if cost.done { "done" } else { "pending" },
            cost.estimate.map_or("–".into(), |e| fmt_s(e.seconds)),
            cost.estimate
                .and_then(|e| e.peak_mib)
                .map_or("–".into(), |m| format!("{m:.0}"))
        )?;
    }
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    // The coefficients are one core's; how much a second thread per job gains is not
    // modelled, so the figure for several runners assumes one thread each.
    let runners = if parallel > 1 {
        parallel.min(cores)
    } else {
        cores
    };
    let spread = format!(
        "about {} with --parallel {runners} (one thread per job)",
        fmt_s(costs.total_s / runners as f64)
    );
    writeln!(
        out,
        "{} ({}), {} preset, {} jobs ({} pending, {} cached): about {} of one \
         core's work, {spread}; peak memory per job up to {}{}",
        experiment.name,
        experiment
            .table
            .title()
            .split(':')
            .next()
            .unwrap_or_default(),
        experiment.preset,
        selected.len(),
        costs.pending,
        costs.cached,
        fmt_s(costs.total_s),
        costs.peak_mib.map_or("–".into(), |m| format!("{m:.0} MiB")),
        if costs.unknown > 0 {
            format!(
                " ({} pending jobs without an estimate: their data could not be read)",
                costs.unknown
            )
        } else {
            String::new()
        }
    )?;
    Ok(())
}

/// The runner's executor: every command a subprocess of this binary.
struct Subprocess {
    exe: PathBuf,
    /// `--device` of the jobs that run networks.
    device: String,
}

/// The job commands that take `--device` (the others only read and write files).
const DEVICE_COMMANDS: [&[&str]; 5] = [
    &["train"],
    &["evaluate"],
    &["oneclass"],
    &["teacher", "train"],
    &["baseline", "dense"],
];

/// `args` with `--device DEVICE` appended when the command runs networks on another device
/// than the CPU (so the CPU runs' command lines stay as they were).
fn with_device(args: &[String], device: &str) -> Vec<String> {
    let mut out = args.to_vec();
    let runs_networks = DEVICE_COMMANDS
        .iter()
        .any(|c| c.len() <= args.len() && c.iter().zip(args).all(|(a, b)| a == b));
    if device != "cpu" && runs_networks {
        out.extend(["--device".to_string(), device.to_string()]);
    }
    out
}

impl Executor for Subprocess {
    fn run(
        &self,
        args: &[String],
        name: &str,
        threads: Option<usize>,
        log: &mut dyn Write,
    ) -> std::result::Result<CommandOutcome, String> {
        let args = with_device(args, &self.device);
        run_command(&self.exe, &args, name, threads, log).map_err(|e| format!("{e:#}"))
    }
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

#[cfg(test)]
mod tests {

    /// Only the commands that run networks get `--device`, and only off the CPU.
    #[test]
    fn the_device_reaches_the_jobs_that_run_networks() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let train = args(&["train", "--data", "d"]);
        assert_eq!(with_device(&train, "cpu"), train);
        assert_eq!(
            with_device(&train, "cuda:1"),
            args(&["train", "--data", "d", "--device", "cuda:1"])
        );
        let dense = args(&["baseline", "dense", "--p", "65"]);
        assert_eq!(with_device(&dense, "cuda").len(), dense.len() + 2);
        for files_only in [
            args(&["teacher", "export", "a", "b"]),
            args(&["teacher", "info", "a"]),
        ] {
            assert_eq!(with_device(&files_only, "cuda"), files_only);
        }
    }

    use super::*;

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
}
