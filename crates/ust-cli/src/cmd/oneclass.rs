//! `ust oneclass`: one cell of Table 2 — one-class MNIST or CIFAR-10 AUROC for one normal class
//! and one method (METHOD.md §7): train on the training images of class K only, test on the test
//! set with K normal and the nine other classes anomalous, AUROC of the image score. Images
//! are resized (bilinear, grey replicated to RGB) to the teacher's p×p, so each image has one
//! teacher descriptor.
//!
//! Methods: `students` (M students regressing the teacher's standardised descriptor, score =
//! normalised regression error + normalised predictive variance with the four statistics from
//! held-out validation images of class K; `ust_detector::one_class`), and the baselines `knn`,
//! `kmeans`, `ocsvm` (after PCA keeping 95 % of the variance), `pca` (PCA reconstruction error),
//! `ae`, `vae` (all dimensions), fitted on the standardised teacher descriptors of class K's
//! training images (μ, σ per dimension over those descriptors, as the students' targets).
//!
//! Presets: the subset sizes are `ust_experiments::presets::oneclass_preset`'s (the table
//! there); the students' schedules are `ust_detector::one_class::OneClassStudentConfig`'s.
//!
//! Weight decay 1e-5 and Adam β = (0.9, 0.999) everywhere. `--train-images` and `--epochs`
//! override the students' subset size and schedule of the preset (recorded in the report).

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use crate::device::DeviceArgs;
use anyhow::{Context, Result, bail};
use candle_core::Tensor;
use clap::{Args, ValueEnum};
use serde::Serialize;
use ust_baselines::{DescriptorMethod, DescriptorModel, Standardizer, derive_seed};
use ust_data::{LabeledImages, OneClassSplit, Size};
use ust_detector::student::MIN_TARGET_STD;
use ust_detector::{
    Device, OneClassCheckpointing, OneClassOutcome, OneClassStudentConfig, OneClassStudents, Preset,
};
use ust_experiments::presets::oneclass_preset;
use ust_models::PatchNet;

use super::baseline::resolve_teacher;
use super::bench::peak_rss_mib;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatasetArg {
    Mnist,
    Cifar10,
}

impl DatasetArg {
    pub fn name(self) -> &'static str {
        match self {
            DatasetArg::Mnist => "mnist",
            DatasetArg::Cifar10 => "cifar10",
        }
    }
}

/// `students`, or one of the baselines by its name (`ust_baselines::DescriptorMethod`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OneClassMethod {
    Students,
    Baseline(DescriptorMethod),
}

impl std::str::FromStr for OneClassMethod {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s == "students" {
            return Ok(Self::Students);
        }
        s.parse::<DescriptorMethod>()
            .map(Self::Baseline)
            .map_err(|e| format!("{e} (or students)"))
    }
}

impl OneClassMethod {
    fn descriptor_method(self) -> Option<DescriptorMethod> {
        match self {
            Self::Students => None,
            Self::Baseline(m) => Some(m),
        }
    }

    fn name(self) -> &'static str {
        self.descriptor_method()
            .map_or("students", DescriptorMethod::name)
    }
}

#[derive(Args, Debug, Clone)]
pub struct OneclassArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// The dataset.
    #[arg(long, value_enum)]
    pub dataset: DatasetArg,
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

/// The students' checkpoint in a report folder (the runner looks for it under this name).
pub use ust_experiments::resolve::ONE_CLASS_CHECKPOINT_FILE as CHECKPOINT_FILE;

/// `report.json` of `ust oneclass` (field names are a contract with the experiment runner).
#[derive(Debug, Clone, Serialize)]
pub struct OneClassReport {
    pub kind: String,
    pub dataset: String,
    pub class: u8,
    pub method: String,
    pub teacher: String,
    pub p: usize,
    pub preset: String,
    pub seed: u64,
    pub train_images: usize,
    pub test_images: usize,
    pub auroc: f64,
    /// How the students were trained (absent for the baselines).
    pub students: Option<StudentsRecord>,
    pub total_s: f64,
    pub peak_rss_mib: Option<f64>,
}

/// The students' schedule and outcome in a report.
#[derive(Debug, Clone, Serialize)]
pub struct StudentsRecord {
    pub students: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub steps: usize,
    pub first_epoch_loss: f64,
    pub final_loss: f64,
    pub training_s: f64,
}

pub fn run(args: OneclassArgs) -> Result<ExitCode> {
    let report = oneclass(&args)?;
    println!("{}", markdown(&report));
    println!("report: {}", args.out.join("report.json").display());
    Ok(ExitCode::SUCCESS)
}

/// A seeded subset of `k` of `0..n` (all when k ≥ n), sorted.
pub(crate) fn seeded_subset(n: usize, k: usize, seed: u64) -> Vec<usize> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let mut idx: Vec<usize> = (0..n).collect();
    let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(seed);
    idx.shuffle(&mut rng);
    idx.truncate(k.min(n));
    idx.sort_unstable();
    idx
}

/// `items` itself, or a seeded subset of at most `max` of them (0: all), in order.
fn capped(items: &[usize], max: usize, seed: u64) -> Vec<usize> {
    if max == 0 || items.len() <= max {
        return items.to_vec();
    }
    seeded_subset(items.len(), max, seed)
        .into_iter()
        .map(|i| items[i])
        .collect()
}

/// The test images a cell scores: all, or a seeded subset at the cpu preset (the same for
/// every normal class).
pub(crate) fn test_indices(test_len: usize, preset: Preset, seed: u64) -> Vec<usize> {
    let all: Vec<usize> = (0..test_len).collect();
    capped(
        &all,
        oneclass_preset(preset).test_images,
        derive_seed(seed, 202),
    )
}

/// The training images of `class` a baseline is fitted on: every one, capped by the preset
/// (and at the paper preset by the method's cap on training vectors).
pub(crate) fn baseline_train_indices(
    train_set: &LabeledImages,
    class: u8,
    method: DescriptorMethod,
    preset: Preset,
    seed: u64,
) -> Vec<usize> {
    let all: Vec<usize> = train_set.indices_of_class(class);
    let mut cap = oneclass_preset(preset).baseline_train_images;
    if preset == Preset::Paper
        && let Some(kind) = method.kind()
        && let Some(m) = ust_baselines::BaselineConfig::paper(kind).max_train_vectors
    {
        cap = if cap == 0 { m } else { cap.min(m) };
    }
    capped(&all, cap, derive_seed(seed, 205))
}

/// The train and test sets of `dataset`, from `root` or its default folder.
pub(crate) fn load_dataset(
    dataset: DatasetArg,
    root: Option<&std::path::Path>,
) -> Result<(LabeledImages, LabeledImages)> {
    match dataset {
        DatasetArg::Mnist => {
            let dir = root
                .map(std::path::Path::to_path_buf)
                .unwrap_or_else(|| ust_data::shared::shared_dir().join("data/mnist"));
            if !dir.is_dir() {
                bail!(
                    "MNIST folder {} does not exist (pass --root DIR holding the four idx files, \
                     or set UST_SHARED)",
                    dir.display()
                );
            }
            let m = ust_data::mnist::load_mnist(&dir)
                .with_context(|| format!("reading MNIST from {}", dir.display()))?;
            Ok((m.train, m.test))
        }
        DatasetArg::Cifar10 => {
            let dir = match root {
                Some(d) => d.to_path_buf(),
                None => {
                    let rel = std::path::Path::new("data/cifar-10");
                    ust_detector::models_dir::find_in_project(rel)
                        .unwrap_or_else(|| rel.to_path_buf())
                }
            };
            if !dir.is_dir() {
                bail!(
                    "CIFAR-10 folder {} does not exist (run `just unpack-cifar`, or pass --root \
                     DIR with the binary batches or train/<class>/ and test/<class>/)",
                    dir.display()
                );
            }
            let c = ust_data::cifar::load_cifar10(&dir)
                .with_context(|| format!("reading CIFAR-10 from {}", dir.display()))?;
            Ok((c.train, c.test))
        }
    }
}

/// Images `idx` of `set` resized to p×p, as one (N, 3, p, p) tensor.
fn images_tensor(set: &LabeledImages, idx: &[usize], p: usize, device: &Device) -> Result<Tensor> {
    let size = Some(Size::new(p as u32, p as u32));
    let images: Vec<_> = idx.iter().map(|&i| set.image_rgb(i, size)).collect();
    Ok(ust_data::batch_to_tensor(&images, device)?)
}

/// Teacher descriptors of `images` (N, 3, p, p) as an (N, d) ndarray matrix.
fn descriptors(teacher: &PatchNet, images: &Tensor) -> Result<ust_baselines::ndarray::Array2<f32>> {
    let n = images.dim(0)?;
    let d = teacher.descriptor_dim();
    let mut out = Vec::with_capacity(n * d);
    for start in (0..n).step_by(256) {
        let len = 256.min(n - start);
        let y = teacher.descriptors(&images.narrow(0, start, len)?)?;
        out.extend(y.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(ust_baselines::ndarray::Array2::from_shape_vec((n, d), out)?)
}

/// Runs the cell and writes the report; returns it.
pub fn oneclass(args: &OneclassArgs) -> Result<OneClassReport> {
    let started = Instant::now();
    let device = args.device.open()?;
    if args.class > 9 {
        bail!(
            "--class {} is not a class of {} (0–9)",
            args.class,
            args.dataset.name()
        );
    }
    let (teacher_path, p) = resolve_teacher(args.teacher.as_deref(), None, 33)?;
    let teacher = ust_detector::load_teacher(&teacher_path, &device)
        .with_context(|| format!("loading the teacher {}", teacher_path.display()))?
        .detach();
    let (train_set, test_set) = load_dataset(args.dataset, args.data.as_deref())?;
    let preset = oneclass_preset(args.preset);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let split = OneClassSplit::new(
        &train_set,
        &test_set,
        args.class,
        preset.validation_fraction,
        derive_seed(args.seed, 201),
    )
    .with_context(|| format!("class {} of {}", args.class, args.dataset.name()))?;
    let test_idx = test_indices(split.test.len(), args.preset, args.seed);
    let anomalous: Vec<bool> = test_idx
        .iter()
        .map(|&i| test_set.labels[i] != args.class)
        .collect();
    if anomalous.iter().all(|&a| a) || anomalous.iter().all(|&a| !a) {
        bail!(
            "the {} test images hold {} of class {}: AUROC needs both normal and anomalous images",
            test_idx.len(),
            anomalous.iter().filter(|&&a| !a).count(),
            args.class
        );
    }
    let test = images_tensor(&test_set, &test_idx, p, &device)?;

    let (train_images, scores, students) = match args.method.descriptor_method() {
        None => {
            let train_idx = capped(
                &split.train,
                args.train_images.unwrap_or(preset.student_train_images),
                derive_seed(args.seed, 203),
            );
            let val_idx = capped(
                &split.validation,
                preset.student_validation_images,
                derive_seed(args.seed, 204),
            );
            if val_idx.is_empty() {
                bail!(
                    "class {} has too few training images to hold out validation images",
                    args.class
                );
            }
            let defaults = OneClassStudentConfig::preset(args.preset);
            let config = OneClassStudentConfig {
                seed: args.seed,
                epochs: args.epochs.unwrap_or(defaults.epochs),
                ..defaults
            };
            tracing::info!(
                train = train_idx.len(),
                validation = val_idx.len(),
                students = config.students,
                epochs = config.epochs,
                "training one-class students"
            );
            let checkpointing = OneClassCheckpointing {
                path: args.out.join(CHECKPOINT_FILE),
                resume: args.resume,
            };
            let bar = crate::text::progress_bar("one-class students", 0, "steps");
            let outcome = OneClassStudents::train_resumable(
                &config,
                &teacher,
                &images_tensor(&train_set, &train_idx, p, &device)?,
                &images_tensor(&train_set, &val_idx, p, &device)?,
                &device,
                Some(&checkpointing),
                &mut |step| {
                    bar.set_length(step.total_steps as u64);
                    bar.set_position(step.step as u64);
                    bar.set_message(format!("loss {:.4}", step.loss));
                    ControlFlow::Continue(())
                },
            )
            .context("training the students")?;
            bar.finish_and_clear();
            let OneClassOutcome::Finished(students) = outcome else {
                bail!("the students' training stopped before its end");
            };
            let summary = &students.summary;
            let record = StudentsRecord {
                students: config.students,
                epochs: config.epochs,
                batch_size: config.batch_size,
                learning_rate: config.optimizer.learning_rate,
                steps: summary.steps,
                first_epoch_loss: summary.first_epoch_loss,
                final_loss: summary.final_loss,
                training_s: summary.training_s,
            };
            (train_idx.len(), students.scores(&test)?, Some(record))
        }
        Some(method) => {
            // The baselines use every training image of the class (the validation split is
            // the students' concern).
            let train_idx =
                baseline_train_indices(&train_set, args.class, method, args.preset, args.seed);
            let mut train = descriptors(
                &teacher,
                &images_tensor(&train_set, &train_idx, p, &device)?,
            )?;
            let mut stats = Standardizer::new(train.ncols());
            stats.add_rows(train.view())?;
            let stats = stats.finish(MIN_TARGET_STD)?;
            stats.apply(train.view_mut())?;
            let model = DescriptorModel::fit(method, train.view(), args.seed)
                .with_context(|| format!("fitting {method} on {} descriptors", train.nrows()))?;
            let mut test_rows = descriptors(&teacher, &test)?;
            stats.apply(test_rows.view_mut())?;
            (train_idx.len(), model.score(test_rows.view())?, None)
        }
    };
    let auroc = ust_metrics::auroc(&scores, &anomalous)?;
    let report = OneClassReport {
        kind: "one_class".into(),
        dataset: args.dataset.name().into(),
        class: args.class,
        method: args.method.name().into(),
        teacher: teacher_path.display().to_string(),
        p,
        preset: args.preset.to_string(),
        seed: args.seed,
        train_images,
        test_images: test_idx.len(),
        auroc,
        students,
        total_s: started.elapsed().as_secs_f64(),
        peak_rss_mib: peak_rss_mib(),
    };
    std::fs::write(args.out.join("report.md"), markdown(&report))
        .with_context(|| format!("writing {}", args.out.join("report.md").display()))?;
    ust_data::files::write_bytes_atomically(
        &args.out.join("report.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    Ok(report)
}

/// The report as Markdown.
pub fn markdown(r: &OneClassReport) -> String {
    format!(
        "# One-class {dataset}: class {class}, {method}\n\n\
         - teacher `{teacher}` (p = {p}); preset {preset}, seed {seed}\n\
         - {train} training images of class {class}; {test} test images (class {class} normal, \
         the others anomalous)\n\
         {students}\
         - total {total:.1} s{rss}\n\n\
         | dataset | class | method | AUROC |\n|---|---|---|---|\n\
         | {dataset} | {class} | {method} | {auroc:.4} |\n",
        dataset = r.dataset,
        class = r.class,
        method = r.method,
        teacher = r.teacher,
        p = r.p,
        preset = r.preset,
        seed = r.seed,
        train = r.train_images,
        test = r.test_images,
        total = r.total_s,
        students = r
            .students
            .as_ref()
            .map(|s| format!(
                "- students: M = {}, {} epochs of batches of {} ({} steps), lr {:e}; mean loss \
                 {:.2} in the first epoch, {:.2} in the last; training {:.1} s\n",
                s.students,
                s.epochs,
                s.batch_size,
                s.steps,
                s.learning_rate,
                s.first_epoch_loss,
                s.final_loss,
                s.training_s
            ))
            .unwrap_or_default(),
        rss = r
            .peak_rss_mib
            .map(|m| format!("; peak memory {m:.0} MiB"))
            .unwrap_or_default(),
        auroc = r.auroc,
    )
}
