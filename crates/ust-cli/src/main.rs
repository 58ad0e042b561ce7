//! `ust`: the command-line front end of the project. It holds no algorithm: every subcommand
//! parses its arguments, calls the library crates, and reports (progress bars, tables, JSON).

mod cmd;
mod device;
mod text;

use clap::{Parser, Subcommand};

/// Student–teacher anomaly detection ("Uninformed Students", Bergmann et al., CVPR 2020).
#[derive(Parser, Debug)]
#[command(name = "ust", version, about, long_about = None)]
struct Cli {
    /// Only warnings and errors on stderr, and no progress bars (results still go to stdout;
    /// RUST_LOG, when set, decides the log level).
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

// One variant per subcommand; each lives in `cmd/<name>.rs` with its `Args` and `run`.
#[derive(Subcommand, Debug)]
enum Command {
    /// Evaluate anomaly maps against an MVTec-layout dataset (AU-PRO, pixel and image AUROC).
    Eval(cmd::eval::EvalArgs),
    /// Inspect and validate datasets.
    #[command(subcommand)]
    Data(cmd::data::DataCommand),
    /// Pretrain teachers on natural-image patches.
    #[command(subcommand)]
    Teacher(cmd::teacher::TeacherCommand),
    /// Train the students of one category (every scale) into a run directory.
    Train(cmd::train::TrainArgs),
    /// Anomaly maps for new images with a trained run directory.
    Predict(cmd::predict::PredictArgs),
    /// Predict a category's test split and report AU-PRO, pixel and image AUROC.
    Evaluate(cmd::evaluate::EvaluateArgs),
    /// Train, evaluate and visualise on the bundled category (the quick start).
    Demo(cmd::demo::DemoArgs),
    /// Time dense extraction and student training steps.
    #[command(subcommand)]
    Bench(cmd::bench::BenchCommand),
    /// Table 1 baselines on teacher descriptors (one category, one method).
    #[command(subcommand)]
    Baseline(cmd::baseline::BaselineCommand),
    /// Table 2 cell: one-class MNIST / CIFAR-10 AUROC for one class and one method.
    Oneclass(cmd::oneclass::OneclassArgs),
    /// Run an experiment file (the paper's tables): jobs, cached cells, report.
    Experiment(cmd::experiment::ExperimentArgs),
}

fn main() -> std::process::ExitCode {
    exit_quietly_on_closed_pipe();
    let cli = Cli::parse();
    text::set_quiet(cli.quiet);
    init_tracing(cli.quiet);
    keep_freed_memory();
    let result = match cli.command {
        Command::Eval(args) => cmd::eval::run(args),
        Command::Data(args) => cmd::data::run(args),
        Command::Teacher(args) => cmd::teacher::run(args),
        Command::Train(args) => cmd::train::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Predict(args) => cmd::predict::run(args),
        Command::Evaluate(args) => cmd::evaluate::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Baseline(args) => cmd::baseline::run(args),
        Command::Oneclass(args) => cmd::oneclass::run(args),
        Command::Experiment(args) => cmd::experiment::run(args),
    };
    match result {
        Ok(code) => code,
        // `ust experiment --list-jobs | head`: the reader left, nothing went wrong here.
        Err(err) if is_broken_pipe(&err) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(exit_code_of(&err))
        }
    }
}

/// Exit status when the data has problems (`ust data info` found some). The README lists the
/// codes: 0 success, 1 error, 2 problems in the data, 3 training diverged.
pub const EXIT_DATA_PROBLEMS: u8 = 2;
/// Exit status when a training stopped because its loss or gradients diverged.
pub const EXIT_DIVERGED: u8 = 3;

/// The exit status of a failed command: [`EXIT_DIVERGED`] when a training diverged, 1
/// otherwise.
fn exit_code_of(err: &anyhow::Error) -> u8 {
    let diverged = err.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<ust_detector::DetectorError>(),
            Some(ust_detector::DetectorError::Diverged { .. })
        ) || matches!(
            cause.downcast_ref::<ust_baselines::BaselineError>(),
            Some(ust_baselines::BaselineError::Diverged { .. })
        )
    });
    if diverged { EXIT_DIVERGED } else { 1 }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Logs go to stderr; `RUST_LOG` overrides the default level (`info`, `warn` with
/// `--quiet`). Colours only on a terminal (and not with `NO_COLOR`): a log written to a file
/// or a pipe stays plain text.
fn init_tracing(quiet: bool) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let level = if quiet { "warn" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// glibc hands every freed block above 128 KiB straight back to the kernel, so each tensor a
/// training step allocates comes back as fresh pages the kernel must zero: on a one-class MNIST
/// cell that was 78 s of kernel time in 152 s of wall time. Serving large blocks from the heap
/// and not trimming it cut the cell to 110 s (10 s kernel; peak memory 428 → 484 MiB): the heap
/// stays at the step's high-water mark, which the job needs anyway. Other platforms' allocators are left alone.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // The largest threshold glibc accepts is 32 MiB on 64-bit targets; blocks above it
    // (a few im2col buffers of large images) keep their own mappings.
    const MMAP_THRESHOLD: libc::c_int = 32 << 20;
    const TRIM_THRESHOLD: libc::c_int = 1 << 30;
    // SAFETY: mallopt only changes allocator parameters; it is called before any thread starts.
    let ok = unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    };
    tracing::debug!(ok, "glibc malloc: large blocks from the heap, no trimming");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

/// A reader that closes the pipe early (`ust teacher info FILE | head`) ends the program
/// quietly, as it does other Unix tools: Rust ignores SIGPIPE, which turned the closed pipe
/// into a panic inside `println!`.
#[cfg(unix)]
fn exit_quietly_on_closed_pipe() {
    // SAFETY: restores the default disposition of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn exit_quietly_on_closed_pipe() {}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parses(args: &[&str]) -> bool {
        Cli::try_parse_from(std::iter::once("ust").chain(args.iter().copied())).is_ok()
    }

    /// A diverged training exits with 3 however deep the error is wrapped; other errors with 1.
    #[test]
    fn a_diverged_training_has_its_own_exit_status() {
        let diverged = anyhow::Error::from(ust_detector::DetectorError::Diverged {
            iteration: 7,
            reason: "loss NaN".into(),
            last_checkpoint: None,
            last_checkpoint_iteration: None,
        })
        .context("training into run/");
        assert_eq!(exit_code_of(&diverged), EXIT_DIVERGED);
        let other = anyhow::anyhow!("no such file").context("reading");
        assert_eq!(exit_code_of(&other), 1);
    }

    /// One spelling per concept: the dataset folder is `--data`, the image-score reducer
    /// `--image-score`, a JSON report `--json FILE` in every command; the older spellings still
    /// parse so that scripts keep working.
    #[test]
    fn one_spelling_per_concept_and_the_old_ones_still_parse() {
        Cli::command().debug_assert();
        assert!(parses(&[
            "eval", "--data", "d", "--maps", "m", "--json", "-"
        ]));
        assert!(parses(&["eval", "--dataset", "d", "--maps", "m"]));
        assert!(parses(&["evaluate", "run", "--image-score", "top1"]));
        assert!(parses(&["evaluate", "run", "--reducer", "top1"]));
        assert!(parses(&["data", "info", "d", "--json", "report.json"]));
        assert!(!parses(&["data", "info", "d", "--json"]));
        let oneclass = [
            "oneclass",
            "--dataset",
            "mnist",
            "--class",
            "1",
            "--method",
            "knn",
        ];
        for folder in ["--data", "--root"] {
            let mut args = oneclass.to_vec();
            args.extend([folder, "dir", "--out", "o"]);
            assert!(parses(&args), "{args:?}");
        }
    }
}
