//! `ust oneclass`: one cell of Table 2 — one-class MNIST or CIFAR-10 AUROC for one normal class
//! and one method. The protocol (subsets, seed streams, methods, the report) is
//! `ust_experiments::oneclass`'s; this command parses the options, resolves the teacher, shows
//! the students' progress and writes the report with the process's peak memory.
//!
//! `--train-images` and `--epochs` override the students' subset size and schedule of the
//! preset (recorded in the report).

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::device::DeviceArgs;
use anyhow::Result;
use clap::Args;
use ust_detector::{OneClassStep, Preset};
use ust_engine::memory::peak_rss_mib;
use ust_experiments::oneclass::{
    OneClassConfig, OneClassDataset, OneClassMethod, OneClassObserver, check_class, run_one_class,
};
use ust_experiments::resolve::REPORT_FILE;

use ust_engine::dense::resolve_teacher;

#[derive(Args, Debug, Clone)]
pub struct OneclassArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// The dataset.
    #[arg(long, value_enum)]
    pub dataset: OneClassDataset,
    /// Its folder [default: $UST_SHARED/data/mnist for MNIST; data/cifar-10 (`just
    /// unpack-cifar`) for CIFAR-10].
    /// (`--root` is accepted as an older spelling.)
    #[arg(long, alias = "root")]
    pub data: Option<PathBuf>,
    /// The normal class (0–9).
    #[arg(long)]
    pub class: u8,
    /// students, or a baseline: knn, kmeans, ocsvm, pca, ae, vae.
    #[arg(long)]
    pub method: OneClassMethod,
    /// A teacher file [default: the shipped models/teacher-p33.safetensors].
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    /// Sizes of the subsets and the students' schedule (see the command's documentation).
    #[arg(long, value_enum, default_value = "cpu")]
    pub preset: Preset,
    /// Seed of the subsets, the split and the methods.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The report folder (report.json, report.md; the students' checkpoint while they train).
    #[arg(long)]
    pub out: PathBuf,
    /// Students: use at most this many training images of the class (0: the whole training
    /// split) [default: the preset's; 300 at cpu].
    #[arg(long)]
    pub train_images: Option<usize>,
    /// Students: passes over the training images [default: the preset's; 6 at cpu].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Continue the students' training from the checkpoint in --out (written every
    /// `checkpoint_every` steps of the preset); without it a checkpoint there is overwritten.
    #[arg(long)]
    pub resume: bool,
}

/// The students' progress as a bar (none for the baselines, which do not train steps).
#[derive(Default)]
struct StudentsBar(Option<indicatif::ProgressBar>);

impl OneClassObserver for StudentsBar {
    fn students_started(&mut self) {
        self.0 = Some(crate::text::progress_bar("one-class students", 0, "steps"));
    }

    fn students_step(&mut self, step: &OneClassStep) -> ControlFlow<()> {
        if let Some(bar) = &self.0 {
            bar.set_length(step.total_steps as u64);
            bar.set_position(step.step as u64);
            bar.set_message(format!("loss {:.4}", step.loss));
        }
        ControlFlow::Continue(())
    }

    fn students_finished(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
        }
    }
}

pub fn run(args: OneclassArgs) -> Result<ExitCode> {
    let device = args.device.open()?;
    check_class(args.class, args.dataset)?;
    let (teacher, _) = resolve_teacher(args.teacher.as_deref(), None, 33)?;
    let config = OneClassConfig {
        dataset: args.dataset,
        data: args.data,
        class: args.class,
        method: args.method,
        teacher,
        preset: args.preset,
        seed: args.seed,
        out: args.out,
        train_images: args.train_images,
        epochs: args.epochs,
        resume: args.resume,
    };
    let mut report = run_one_class(&config, &device, &mut StudentsBar::default())?;
    report.peak_rss_mib = peak_rss_mib();
    report.write(&config.out)?;
    println!("{}", report.markdown());
    println!("report: {}", config.out.join(REPORT_FILE).display());
    Ok(ExitCode::SUCCESS)
}
