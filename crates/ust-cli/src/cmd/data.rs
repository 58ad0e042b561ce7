//! `ust data`: inspect datasets. `ust data info PATH [--json]` says what a dataset folder holds
//! and runs every check of `ust-data` on it (each file decoded, masks against their images,
//! idx and batch headers: [`ust_data::inspect`]); it exits with status 2 and the list of
//! problems when any is found.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use ust_data::inspect::{DatasetFormat, inspect_dataset};

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Describe and validate a dataset: MVTec AD layout (a folder of categories or one
    /// category), MNIST (idx files), CIFAR-10 (binary batches or class folders), or any folder
    /// of images.
    Info(InfoArgs),
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// The dataset folder.
    pub path: PathBuf,
    /// Write the report as JSON to FILE (`-`: on stdout, instead of the text).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Layout of the dataset; `auto` recognises it.
    #[arg(long, value_enum, default_value_t = DatasetFormat::Auto)]
    pub format: DatasetFormat,
    /// Fraction of train/good held out for validation (reported as the validation count).
    #[arg(long, default_value_t = 0.1)]
    pub validation_fraction: f64,
}

pub fn run(command: DataCommand) -> Result<ExitCode> {
    match command {
        DataCommand::Info(args) => info(args),
    }
}

fn info(args: InfoArgs) -> Result<ExitCode> {
    if !(0.0..1.0).contains(&args.validation_fraction) {
        bail!(
            "--validation-fraction {} is not in [0, 1)",
            args.validation_fraction
        );
    }
    let start = Instant::now();
    let report = inspect_dataset(&args.path, args.format, args.validation_fraction)?;
    tracing::info!(
        "inspected {} in {:.2} s",
        args.path.display(),
        start.elapsed().as_secs_f64()
    );
    let to_stdout = args.json.as_deref() == Some(Path::new("-"));
    if !to_stdout {
        print!("{}", report.text());
    }
    if let Some(path) = &args.json {
        crate::text::write_json(path, &report)?;
    }
    if report.problems.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        if to_stdout {
            eprintln!("{} problem(s) found", report.problems.len());
        }
        Ok(ExitCode::from(crate::EXIT_DATA_PROBLEMS))
    }
}
