//! `ust experiment FILE`: runs the jobs of an experiment file (the paper's tables, see
//! `crates/ust-experiments`) as subprocesses of this binary — exactly the `ust train`,
//! `ust evaluate`, `ust baseline dense`, `ust oneclass` and `ust teacher` commands a user could
//! type — one after the other, caching every finished job in its cell, and writes
//! `runs/<experiment>/<timestamp>/` (config.toml, results.json, report.md).
//!
//! `--list-jobs` and `--job K` split the work over a cluster (a Slurm array); `--merge` writes
//! the report from the cells present.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Instant, SystemTime};

use crate::device::DeviceArgs;
use anyhow::{Context, Result, bail};
use clap::Args;
use ust_experiments::cell::{is_done, utc_compact};
use ust_experiments::cost::CostModel;
use ust_experiments::report::{render_plan, write_run_dir};
use ust_experiments::runner::{RunOptions, run_selected, run_single};
use ust_experiments::subprocess::Subprocess;
use ust_experiments::{
    CellStatus, Experiment, Job, Overrides, Plan, RunMeta, RunResults, check_inputs, read_status,
};

use ust_detector::Preset;

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
        let costs = CostModel::shipped().plan_costs(&selected, &cells_dir);
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let text = render_plan(&experiment, &selected, &costs, args.parallel, cores);
        // Not print!: `--plan | head` must end quietly (a broken pipe is no error, see main).
        std::io::stdout().lock().write_all(text.as_bytes())?;
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
        let executor = executor(&args)?;
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

    let statuses = if args.merge {
        let read = |job| read_status(&cells_dir, job);
        selected.iter().map(read).collect::<Result<Vec<_>, _>>()?
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
        let executor = executor(&args)?;
        run_selected(&plan, &selected, &cells_dir, &options, &executor)?
    };

    let report_plan = Plan {
        jobs: selected,
        ..plan
    };
    let meta = RunMeta::new(
        &report_plan,
        &args.file,
        args.merge,
        std::env::args().collect(),
        started_at,
        started.elapsed().as_secs_f64(),
    );
    let results = RunResults::new(meta, &report_plan, statuses);
    let (failed, missing) = results.failed_and_missing();
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

/// The runner's executor: every command a subprocess of this binary, on `--device`.
fn executor(args: &ExperimentArgs) -> Result<Subprocess> {
    Subprocess::of_this_binary(&args.device.device).context("locating the ust binary")
}
