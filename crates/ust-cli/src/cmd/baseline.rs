//! `ust baseline dense`: one cell of Table 1 for a baseline (METHOD.md §8) — a shallow or
//! neural model fitted on the teacher's dense descriptors of a category's `train/good` images,
//! scoring every pixel of every test image, evaluated as `ust evaluate` does. The protocol, its
//! preset caps and seed streams are [`ust_engine::dense`]'s.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::device::DeviceArgs;
use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use ust_baselines::DescriptorMethod;
use ust_detector::Preset;
use ust_engine::dense::{DenseBaselineConfig, DenseBaselineReport, dense_baselines};
use ust_models::BorderPadding;

use crate::text::EvaluationBar;
use ust_data::mvtec::category_dir;

#[derive(Subcommand, Debug)]
pub enum BaselineCommand {
    /// Table 1 baseline on one MVTec-layout category: fit on the teacher's dense descriptors
    /// of train/good, score every test pixel, report AU-PRO, pixel and image AUROC.
    Dense(DenseArgs),
}

#[derive(Args, Debug, Clone)]
pub struct DenseArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// An MVTec-layout root (with --category) or one category folder.
    #[arg(long)]
    pub data: PathBuf,
    /// The category under --data.
    #[arg(long)]
    pub category: Option<String>,
    /// The baseline; repeat it (each with its own --out, in the same order) to fit several on
    /// one pass of the teacher over the images, with the results each would get alone.
    #[arg(long, value_enum, required = true)]
    pub method: Vec<DescriptorMethod>,
    /// Receptive field of the shipped teacher [default: 65, or the --teacher file's].
    #[arg(long)]
    pub p: Option<usize>,
    /// A teacher file instead of the shipped models/teacher-p<P>.safetensors.
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    /// Image side and caps (see the command's documentation).
    #[arg(long, value_enum, default_value = "cpu")]
    pub preset: Preset,
    /// Seed of the image and vector subsets and of the methods.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The report folder (report.json, report.md) of each --method, in the same order.
    #[arg(long, required = true)]
    pub out: Vec<PathBuf>,
    /// Border extension of the teacher's descriptors: zeros, replicate or reflect [default:
    /// the preset's, as the students'].
    #[arg(long)]
    pub padding: Option<BorderPadding>,
}

pub fn run(command: BaselineCommand) -> Result<ExitCode> {
    match command {
        BaselineCommand::Dense(args) => {
            for (report, out) in dense(&args)?.iter().zip(&args.out) {
                println!("{}", report.markdown());
                println!("report: {}", out.join("report.json").display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs the baselines (one or several, each with its report folder) and writes their reports;
/// returns them in the order of `--method`.
pub fn dense(args: &DenseArgs) -> Result<Vec<DenseBaselineReport>> {
    let device = args.device.open()?;
    if args.method.len() != args.out.len() {
        bail!(
            "--method and --out pair up: {} methods but {} report folders",
            args.method.len(),
            args.out.len()
        );
    }
    let config = DenseBaselineConfig {
        data: args.data.clone(),
        category_dir: category_dir(&args.data, args.category.as_deref())?,
        methods: args.method.iter().copied().zip(args.out.clone()).collect(),
        p: args.p,
        teacher: args.teacher.clone(),
        preset: args.preset,
        seed: args.seed,
        padding: args.padding,
    };
    Ok(dense_baselines(
        &config,
        &device,
        &mut EvaluationBar::new("baseline"),
    )?)
}
