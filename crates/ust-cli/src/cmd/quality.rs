//! `ust teacher quality`: how good a teacher's descriptors are, on the one-class protocol of
//! Table 2's 1-NN baseline (METHOD.md §7, `ust oneclass --method knn` at the same preset); the
//! check itself, its feature sources and its report are `ust_experiments::quality`'s.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::device::DeviceArgs;
use anyhow::Result;
use clap::Args;
use ust_detector::Preset;
use ust_experiments::oneclass::OneClassDataset;
use ust_experiments::quality::{FeatureSource, QualityConfig, descriptor_quality};

#[derive(Args, Debug)]
pub struct QualityArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// The teacher file (needed for `--features teacher`; gives p for `pixels`).
    pub teacher: Option<PathBuf>,
    /// What the 1-NN runs on.
    #[arg(long, value_enum, default_value = "teacher")]
    pub features: FeatureSource,
    /// The datasets (repeatable) [default: both].
    #[arg(long, value_enum)]
    pub dataset: Vec<OneClassDataset>,
    /// The MNIST folder [default: $UST_SHARED/data/mnist].
    #[arg(long)]
    pub mnist: Option<PathBuf>,
    /// The CIFAR-10 folder [default: data/cifar-10, `just unpack-cifar`].
    #[arg(long)]
    pub cifar: Option<PathBuf>,
    /// The side images are resized to for `pixels` [default: the teacher's p, else 33].
    #[arg(long)]
    pub p: Option<usize>,
    /// `backbone`: the EfficientNet-Lite0 weights [default:
    /// $UST_SHARED/weights/efficientnet_lite0.safetensors].
    #[arg(long)]
    pub backbone_weights: Option<PathBuf>,
    /// `backbone`: the side images are resized to (the network was trained at 224).
    #[arg(long, default_value_t = 224)]
    pub backbone_size: usize,
    /// Subset sizes, as `ust oneclass`'s baselines (cpu: 1 000 reference images per class,
    /// 2 000 test images).
    #[arg(long, value_enum, default_value = "cpu")]
    pub preset: Preset,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also write the result as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn run(args: QualityArgs) -> Result<ExitCode> {
    let device = args.device.open()?;
    let config = QualityConfig {
        teacher: args.teacher,
        features: args.features,
        datasets: args.dataset,
        mnist: args.mnist,
        cifar: args.cifar,
        p: args.p,
        backbone_weights: args.backbone_weights,
        backbone_size: args.backbone_size,
        preset: args.preset,
        seed: args.seed,
    };
    let report = descriptor_quality(&config, &device)?;
    println!("{}", report.markdown());
    if let Some(path) = &args.json {
        crate::text::write_json(path, &report)?;
    }
    Ok(ExitCode::SUCCESS)
}
