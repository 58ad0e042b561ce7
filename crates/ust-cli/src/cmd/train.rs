//! `ust train`: students for every scale of one category (METHOD.md §5), calibrated on a
//! validation split of `train/good` (§6), written to a self-contained run directory.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::device::DeviceArgs;
use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ust_detector::{
    CropCoverage, Device, Preset, RunSpec, ScaleSpec, StudentRunStart, StudentSampling,
    StudentStepReport, StudentTrainingConfig, TrainReport, TrainingObserver, train_detector,
};
use ust_models::BorderPadding;

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// An MVTec-layout root (with --category), one category folder (only train/good is read),
    /// or a plain folder of good images.
    #[arg(long)]
    pub data: PathBuf,
    /// The category under --data (omit when --data is the category folder itself).
    #[arg(long)]
    pub category: Option<String>,
    /// Receptive fields to train, comma-separated (their scores are averaged).
    #[arg(long, value_delimiter = ',', default_value = "17,33,65")]
    pub scales: Vec<usize>,
    /// Students per scale (M); default from the preset (3).
    #[arg(long)]
    pub students: Option<usize>,
    /// The schedule: paper (256 px, whole images, 100 epochs), cpu (this machine) or smoke.
    #[arg(long, value_enum, default_value = "cpu")]
    pub preset: Preset,
    /// The run directory [default: runs/<category>-<preset>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue an interrupted run in --out (trained scales are kept, a checkpoint resumes).
    #[arg(long)]
    pub resume: bool,
    /// A teacher file (repeat for several scales); a scale without one uses the shipped
    /// teacher models/teacher-p<P>.safetensors.
    #[arg(long)]
    pub teacher: Vec<PathBuf>,
    /// Override the preset's epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Override the preset's cap on steps (0 = none).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Override the preset's image side.
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Override the preset's crop side of the dense output (0 = whole image).
    #[arg(long)]
    pub crop: Option<usize>,
    /// Override the preset's learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Override the preset's cap on training images (0 = all).
    #[arg(long)]
    pub max_train_images: Option<usize>,
    /// Seed of the initial weights, the validation split, the order and the crops.
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub settings: StudentSettingArgs,
    /// Another run directory (repeatable) to copy a scale from instead of training it, when
    /// that run used the same data folder, an identical teacher file for the scale and the
    /// same resolved training configuration; others are passed over.
    #[arg(long, value_name = "RUN_DIR")]
    pub reuse: Vec<PathBuf>,
}

/// How the students train beyond the preset's schedule (the image border, their draws, their
/// inputs); each overrides the preset.
#[derive(Args, Debug, Clone, Default)]
pub struct StudentSettingArgs {
    /// Border extension for the teacher's targets, the students and scoring: zeros,
    /// replicate or reflect [preset: replicate].
    #[arg(long)]
    pub padding: Option<BorderPadding>,
    /// Where training crops may lie: uniform (every output pixel equally often) or inside
    /// (whole crops inside the image, the border under-trained) [preset: uniform].
    #[arg(long)]
    pub crop_coverage: Option<CropCoverage>,
    /// Whether the students draw their own image order and crops (per-student) or share them
    /// (shared) [preset: per-student].
    #[arg(long)]
    pub student_sampling: Option<StudentSampling>,
    /// Whether the students train on inputs standardised per channel by the training images'
    /// statistics (true), or on the raw pixels (false) [preset: true].
    #[arg(long, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub standardize_inputs: Option<bool>,
}

impl StudentSettingArgs {
    /// `training` with the given settings.
    pub fn apply(&self, training: &mut StudentTrainingConfig) {
        if let Some(v) = self.padding {
            training.padding = v;
        }
        if let Some(v) = self.crop_coverage {
            training.crop_coverage = v;
        }
        if let Some(v) = self.student_sampling {
            training.student_sampling = v;
        }
        if let Some(v) = self.standardize_inputs {
            training.standardize_inputs = v;
        }
    }
}

/// The resolved run of `args`.
pub fn run_spec(args: &TrainArgs) -> Result<(RunSpec, PathBuf)> {
    // Without --category a folder with no train/ is a plain folder of good images.
    let data = match &args.category {
        Some(c) => ust_data::mvtec::category_dir(&args.data, Some(c))?,
        None => args.data.clone(),
    };
    let preset = args.preset;
    let mut training = StudentTrainingConfig::preset(preset);
    if let Some(v) = args.students {
        training.students = v;
    }
    if let Some(v) = args.epochs {
        training.epochs = v;
    }
    if let Some(v) = args.max_steps {
        training.max_steps = v;
    }
    if let Some(v) = args.image_size {
        training.image_size = v;
    }
    if let Some(v) = args.crop {
        training.crop = v;
    }
    if let Some(v) = args.lr {
        training.optimizer.learning_rate = v;
    }
    if let Some(v) = args.max_train_images {
        training.max_train_images = v;
    }
    if let Some(v) = args.seed {
        training.seed = v;
    }
    args.settings.apply(&mut training);
    let spec = RunSpec {
        data: data.clone(),
        scales: ScaleSpec::resolve(&args.scales, &args.teacher)?,
        training,
    };
    spec.check()?;
    let name = data
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "category".into());
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(format!("{name}-{preset}")));
    Ok((spec, out))
}

pub fn run(args: TrainArgs) -> Result<ExitCode> {
    let (spec, out) = run_spec(&args)?;
    match train(&spec, &out, args.resume, &args.reuse, &args.device.open()?)? {
        Some(report) => {
            for s in &report.scales {
                println!(
                    "p={}: {} students, {} steps, final loss {:.4}, {:.0} s training",
                    s.patch_size, s.students, s.steps, s.final_loss, s.training_s
                );
            }
            println!("trained detector: {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        None => Ok(ExitCode::FAILURE),
    }
}

/// Trains with a progress bar; `None` when stopped.
pub fn train(
    spec: &RunSpec,
    out: &Path,
    resume: bool,
    reuse: &[PathBuf],
    device: &Device,
) -> Result<Option<TrainReport>> {
    let mut progress = StudentProgress::default();
    let result = train_detector(spec, out, resume, reuse, device, &mut progress);
    progress.finish();
    result.with_context(|| format!("training into {}", out.display()))
}

#[derive(Default)]
pub struct StudentProgress {
    bar: Option<ProgressBar>,
}

impl StudentProgress {
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl TrainingObserver<StudentRunStart, StudentStepReport> for StudentProgress {
    fn started(&mut self, start: &StudentRunStart) {
        self.finish();
        let bar = ProgressBar::new(start.total_steps as u64);
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "p={} {{elapsed_precise}} [{{bar:30}}] {{pos}}/{{len}} steps (eta {{eta}}) {{msg}}",
                start.patch_size
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_position(start.start_step as u64);
        bar.reset_eta();
        self.bar = Some(bar);
    }

    fn phase(&mut self, message: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(message.to_string()),
            None => tracing::info!("{message}"),
        }
    }

    fn step(&mut self, report: &StudentStepReport) -> ControlFlow<()> {
        if let Some(bar) = &self.bar {
            bar.set_position(report.step as u64);
            let losses: Vec<String> = report.losses.iter().map(|l| format!("{l:.3}")).collect();
            bar.set_message(format!(
                "loss {} | {:.2} steps/s",
                losses.join(" "),
                report.steps_per_s
            ));
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ust_experiments::schema::STUDENT_SETTINGS;

    /// The experiment files' student settings take exactly the values `ust train` parses, and
    /// their defaults are every preset's own, so a cell that names none trains as `ust train`.
    #[test]
    fn experiment_student_settings_match_the_training_presets() {
        for preset in Preset::ALL {
            let config = StudentTrainingConfig::preset(preset);
            let defaults = [
                config.padding.name().to_string(),
                config.crop_coverage.name().to_string(),
                config.student_sampling.name().to_string(),
                config.standardize_inputs.to_string(),
            ];
            for ((key, _, default), preset_value) in STUDENT_SETTINGS.iter().zip(defaults) {
                assert_eq!(*default, preset_value, "{key} in the {preset} preset");
            }
        }
        let sorted = |mut v: Vec<&'static str>| {
            v.sort();
            v
        };
        let [
            (_, paddings, _),
            (_, coverages, _),
            (_, samplings, _),
            (_, standardize, _),
        ] = STUDENT_SETTINGS;
        let parsed = [
            BorderPadding::ALL.iter().map(|m| m.name()).collect(),
            CropCoverage::ALL.iter().map(|m| m.name()).collect(),
            StudentSampling::ALL.iter().map(|m| m.name()).collect(),
            vec!["true", "false"],
        ];
        for (listed, parsed) in [paddings, coverages, samplings, standardize]
            .into_iter()
            .zip(parsed)
        {
            assert_eq!(sorted(listed.to_vec()), sorted(parsed));
        }
    }
}
