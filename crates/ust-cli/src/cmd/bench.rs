//! `ust bench dense`: seconds per image for dense extraction and for one student training step
//! (forward, loss, backward, Adam) at receptive field p on an S×S image, and the peak memory.
//! Weights and images are random (timing does not depend on them); the benchmark is
//! [`ust_engine::bench`]'s.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::device::DeviceArgs;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use ust_engine::bench::bench_dense;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Dense extraction (and with --train a student training step) on one image.
    Dense(DenseArgs),
}

#[derive(Args, Debug)]
pub struct DenseArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Receptive field: 17, 33 or 65.
    #[arg(long, default_value_t = 65)]
    pub p: usize,
    /// Image side S (an S×S RGB image).
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Also time a student training step.
    #[arg(long)]
    pub train: bool,
    /// Worker threads (default: rayon's choice, one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Timed repetitions (the minimum and the mean are reported; one untimed warm-up first).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Also write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn run(command: BenchCommand) -> Result<ExitCode> {
    match command {
        BenchCommand::Dense(args) => dense(args),
    }
}

fn dense(args: DenseArgs) -> Result<ExitCode> {
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("setting the thread count")?;
    }
    let device = args.device.open()?;
    let report = bench_dense(args.p, args.size, args.train, args.repeats, &device)?;
    let s = report.size;
    println!(
        "dense p={} {}x{} threads={}: inference {:.3} s/image (mean {:.3})",
        report.p, s, s, report.threads, report.inference.min_s, report.inference.mean_s
    );
    if let Some(t) = &report.train_step {
        println!(
            "  student training step {:.3} s/image (mean {:.3})",
            t.min_s, t.mean_s
        );
    }
    if let Some(m) = report.peak_rss_mib {
        println!("  peak resident memory {m:.0} MiB");
    }
    if let Some(path) = &args.json {
        crate::text::write_json(path, &report)?;
    }
    Ok(ExitCode::SUCCESS)
}
