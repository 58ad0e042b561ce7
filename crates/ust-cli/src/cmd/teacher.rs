//! `ust teacher`: teacher pretraining. `ust teacher train --config FILE` trains a patch network
//! on natural-image patches (METHOD.md §4) with the configuration's losses, writes the teacher,
//! its checkpoint and its resolved configuration side by side, and shows a progress bar with
//! the loss terms and patches per second (on a terminal; logs go to stderr either way).
//! `ust teacher quality` measures a teacher's descriptors on Table 2's one-class 1-NN.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::device::DeviceArgs;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use ust_detector::{
    IterationReport, Preset, RunPaths, RunStart, TeacherTrainer, TeacherTrainingConfig,
    TrainingObserver, TrainingOutcome,
};
use ust_experiments::oneclass::OneClassDataset;
use ust_experiments::quality::{FeatureSource, QualityConfig, descriptor_quality};

#[derive(Subcommand, Debug)]
pub enum TeacherCommand {
    /// Pretrain a teacher (and its distillation decoder) on natural-image patches.
    Train(TrainArgs),
    /// Write a teacher for shipping: network only (no decoder), f16 by default.
    Export(ExportArgs),
    /// Descriptor quality: Table 2's one-class 1-NN on MNIST and CIFAR-10 (the teacher, the
    /// backbone's features or the pixels).
    Quality(QualityArgs),
    /// Print what a teacher file says about its training (JSON).
    Info {
        /// The teacher file.
        file: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The trained teacher file.
    pub input: PathBuf,
    /// The file to write.
    pub output: PathBuf,
    /// Keep f32 instead of converting to f16.
    #[arg(long)]
    pub f32: bool,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// The run's configuration (e.g. experiments/teacher/p33.toml): patch size, losses,
    /// backbone, data; keys it leaves out come from the preset.
    #[arg(long)]
    pub config: PathBuf,
    /// The schedule to start from (overrides the file's `preset`; default cpu).
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    /// Continue from the checkpoint beside the output (same configuration; a larger
    /// --iterations extends the run).
    #[arg(long)]
    pub resume: bool,
    /// The teacher file to write [default: runs/teacher/<config name>-<preset>.safetensors];
    /// the checkpoint and the resolved configuration go beside it.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The image folder to sample patches from (overrides data.folder).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The backbone's weights file (overrides backbone.weights).
    #[arg(long)]
    pub backbone_weights: Option<PathBuf>,
    /// Total optimiser steps (overrides schedule.iterations).
    #[arg(long)]
    pub iterations: Option<usize>,
}

pub fn run(command: TeacherCommand) -> Result<ExitCode> {
    match command {
        TeacherCommand::Train(args) => train(args),
        TeacherCommand::Quality(args) => quality(args),
        TeacherCommand::Export(args) => {
            let dtype = if args.f32 {
                candle_core::DType::F32
            } else {
                candle_core::DType::F16
            };
            ust_detector::export_teacher(&args.input, &args.output, dtype)?;
            println!("{} -> {}", args.input.display(), args.output.display());
            Ok(ExitCode::SUCCESS)
        }
        TeacherCommand::Info { file } => {
            let info = ust_detector::TeacherFileInfo::read(&file)?;
            let json = serde_json::json!({
                "architecture": serde_json::to_value(&info.architecture)?,
                "training_config": serde_json::to_value(&info.training_config)?,
                "summary": serde_json::to_value(&info.summary)?,
                "decoder_tensors": info.decoder_tensors,
            });
            println!("{}", serde_json::to_string_pretty(&json)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The configuration of `args`: the file over the preset, then the command-line overrides.
fn configuration(args: &TrainArgs) -> Result<TeacherTrainingConfig> {
    let mut config = TeacherTrainingConfig::from_toml_file(&args.config, args.preset)?;
    if let Some(d) = &args.data {
        config.data.folder = d.display().to_string();
    }
    if let Some(w) = &args.backbone_weights {
        config.backbone.weights = Some(w.display().to_string());
    }
    if let Some(n) = args.iterations {
        config.schedule.iterations = n;
    }
    config
        .check()
        .with_context(|| format!("{}", args.config.display()))?;
    Ok(config)
}

fn default_output(config_file: &Path, preset: Preset) -> PathBuf {
    let stem = config_file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "teacher".into());
    PathBuf::from("runs/teacher").join(format!("{stem}-{preset}.safetensors"))
}

fn train(args: TrainArgs) -> Result<ExitCode> {
    let config = configuration(&args)?;
    let output = args
        .out
        .clone()
        .unwrap_or_else(|| default_output(&args.config, config.preset));
    let paths = RunPaths::beside(&output);
    let device = args.device.open()?;
    let mut trainer = if args.resume {
        TeacherTrainer::resume(config, paths.clone(), &device)?
    } else {
        if paths.checkpoint.exists() {
            tracing::warn!(
                checkpoint = %paths.checkpoint.display(),
                "a checkpoint of an earlier run exists and will be overwritten (use --resume to continue it)"
            );
        }
        TeacherTrainer::new(config, paths.clone(), &device)?
    };
    let mut progress = Progress::default();
    let outcome = trainer.run(&mut progress);
    progress.finish();
    match outcome? {
        TrainingOutcome::Finished(summary) => {
            println!(
                "teacher written to {} ({} iterations in {:.1} s, {:.1} patches/s; mean loss of \
                 the last {} steps: {}); configuration in {}, checkpoint in {}",
                paths.output.display(),
                summary.iterations,
                summary.duration_s,
                summary.patches_per_s,
                summary.recent_window,
                summary.recent_mean_terms.compact(),
                paths.config.display(),
                paths.checkpoint.display(),
            );
            Ok(ExitCode::SUCCESS)
        }
        TrainingOutcome::Stopped { iteration } => {
            println!("stopped after {iteration} iterations");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The progress bar (drawn only when stderr is a terminal).
#[derive(Default)]
struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl TrainingObserver<RunStart, IterationReport> for Progress {
    fn started(&mut self, start: &RunStart) {
        let bar = ProgressBar::new(start.total_iterations as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} it (eta {eta}) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_position(start.start_iteration as u64);
        bar.reset_eta();
        self.bar = Some(bar);
    }

    fn phase(&mut self, message: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(message.to_string());
        }
    }

    fn step(&mut self, report: &IterationReport) -> ControlFlow<()> {
        if let Some(bar) = &self.bar {
            bar.set_position(report.iteration as u64);
            bar.set_message(format!(
                "{} | {:.1} patches/s",
                report.terms.compact(),
                report.patches_per_s
            ));
        }
        ControlFlow::Continue(())
    }
}

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

/// `ust teacher quality`: Table 2's 1-NN on a teacher's descriptors (the check, its feature
/// sources and its report are `ust_experiments::quality`'s).
fn quality(args: QualityArgs) -> Result<ExitCode> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use ust_detector::TeacherFileInfo;

    /// A folder of `count` small noise images (a deterministic generator).
    fn noise_images(dir: &Path, count: u32) -> PathBuf {
        let root = dir.join("images");
        std::fs::create_dir_all(&root).unwrap();
        let mut state = 0x9E37_79B9u32;
        for i in 0..count {
            let img = image::RgbImage::from_fn(48, 48, |_, _| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let v = (state >> 24) as u8;
                image::Rgb([v, v.wrapping_mul(3), 255 - v])
            });
            img.save(root.join(format!("{i}.png"))).unwrap();
        }
        root
    }

    fn args(config: PathBuf, out: PathBuf, data: PathBuf) -> TrainArgs {
        TrainArgs {
            device: DeviceArgs::default(),
            config,
            preset: Some(Preset::Smoke),
            resume: false,
            out: Some(out),
            data: Some(data),
            backbone_weights: None,
            iterations: None,
        }
    }

    /// `ust teacher train` end to end with the smoke preset and metric learning only (no
    /// backbone, no shared data): train, then resume with more iterations.
    #[test]
    fn smoke_train_then_extend_with_resume() {
        let dir = tempfile::tempdir().unwrap();
        let data = noise_images(dir.path(), 4);
        let config = dir.path().join("metric.toml");
        std::fs::write(
            &config,
            "[teacher]\npatch_size = 17\n[losses]\nlambda_k = 0.0\nlambda_m = 1.0\n\
             lambda_c = 0.0\nmargin = 1.0\ncompactness = \"squared\"\n",
        )
        .unwrap();
        let out = dir.path().join("run/t.safetensors");
        let a = args(config.clone(), out.clone(), data.clone());
        let resolved = configuration(&a).unwrap();
        assert_eq!(resolved.preset, Preset::Smoke);
        assert_eq!(resolved.data.folder, data.display().to_string());
        assert_eq!(train(a).unwrap(), ExitCode::SUCCESS);
        let info = TeacherFileInfo::read(&out).unwrap();
        assert_eq!(info.summary.iterations, 4);
        assert!(info.summary.final_terms.total.is_finite());
        assert!(dir.path().join("run/t.config.toml").is_file());
        assert!(dir.path().join("run/t.checkpoint.safetensors").is_file());

        let more = TrainArgs {
            resume: true,
            iterations: Some(5),
            ..args(config.clone(), out.clone(), data.clone())
        };
        assert_eq!(train(more).unwrap(), ExitCode::SUCCESS);
        let info = TeacherFileInfo::read(&out).unwrap();
        assert_eq!((info.summary.iterations, info.summary.sessions), (5, 2));

        // A bad value in the file is an error naming the file.
        std::fs::write(&config, "[teacher]\npatch_size = 18\n").unwrap();
        let err = train(args(config, out, data)).unwrap_err();
        assert!(format!("{err:#}").contains("metric.toml"), "{err:#}");
    }

    #[test]
    fn default_output_names_config_and_preset() {
        assert_eq!(
            default_output(Path::new("experiments/teacher/p33.toml"), Preset::Cpu),
            PathBuf::from("runs/teacher/p33-cpu.safetensors")
        );
    }
}
