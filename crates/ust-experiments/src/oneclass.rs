//! Table 2's one-class protocol (METHOD.md §7): one cell is one-class MNIST or CIFAR-10 AUROC
//! for one normal class and one method — train on the training images of class K only, test on
//! the test set with K normal and the nine other classes anomalous, AUROC of the image score.
//! Images are resized (bilinear, grey replicated to RGB) to the teacher's p×p, so each image
//! has one teacher descriptor.
//!
//! Methods: `students` (M students regressing the teacher's standardised descriptor, score =
//! normalised regression error + normalised predictive variance with the four statistics from
//! held-out validation images of class K; `ust_detector::one_class`), and the baselines `knn`,
//! `kmeans`, `ocsvm` (after PCA keeping 95 % of the variance), `pca` (PCA reconstruction error),
//! `ae`, `vae` (all dimensions), fitted on the standardised teacher descriptors of class K's
//! training images (μ, σ per dimension over those descriptors, as the students' targets).
//!
//! Presets: the subset sizes are [`crate::presets::oneclass_preset`]'s (the table there); the
//! students' schedules are `ust_detector::one_class::OneClassStudentConfig`'s. Weight decay
//! 1e-5 and Adam β = (0.9, 0.999) everywhere. [`OneClassConfig::train_images`] and
//! [`OneClassConfig::epochs`] override the students' subset size and schedule of the preset
//! (recorded in the report).
//!
//! `ust oneclass` runs one cell ([`run_one_class`]) and writes its [`OneClassReport`]; the
//! runner reads the report back typed ([`OneClassReport::read`]); `ust teacher quality` runs
//! the 1-NN column of the same protocol over every class ([`crate::quality`]).

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use ust_baselines::ndarray::{Array2, ArrayView2};
use ust_baselines::{BaselineError, DescriptorMethod, DescriptorModel, Standardizer, derive_seed};
use ust_data::{DataError, LabeledImages, OneClassSplit, Size};
use ust_detector::student::MIN_TARGET_STD;
use ust_detector::{
    DetectorError, OneClassCheckpointing, OneClassOutcome, OneClassStep, OneClassStudentConfig,
    OneClassStudents, Preset,
};
use ust_models::PatchNet;

use crate::presets::oneclass_preset;
use crate::resolve::{ONE_CLASS_CHECKPOINT_FILE, REPORT_FILE};

/// The report's Markdown twin, next to [`REPORT_FILE`].
pub const REPORT_MARKDOWN_FILE: &str = "report.md";

/// The two datasets of Table 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum OneClassDataset {
    Mnist,
    Cifar10,
}

impl OneClassDataset {
    /// The name in reports, experiment files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mnist => "mnist",
            Self::Cifar10 => "cifar10",
        }
    }
}

impl std::fmt::Display for OneClassDataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for OneClassDataset {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "mnist" => Ok(Self::Mnist),
            "cifar10" => Ok(Self::Cifar10),
            other => Err(format!("unknown dataset {other:?} (mnist or cifar10)")),
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
        if s == Self::STUDENTS {
            return Ok(Self::Students);
        }
        s.parse::<DescriptorMethod>()
            .map(Self::Baseline)
            .map_err(|e| format!("{e} (or students)"))
    }
}

impl OneClassMethod {
    /// The students' name; the baselines' are `DescriptorMethod`'s.
    pub const STUDENTS: &'static str = "students";

    /// Every method's name, the students first (the experiment files' `[one_class].methods`).
    pub fn names() -> Vec<&'static str> {
        std::iter::once(Self::STUDENTS)
            .chain(DescriptorMethod::ALL.iter().map(|m| m.name()))
            .collect()
    }

    /// The baseline, or `None` for the students.
    pub fn descriptor_method(self) -> Option<DescriptorMethod> {
        match self {
            Self::Students => None,
            Self::Baseline(m) => Some(m),
        }
    }

    pub fn name(self) -> &'static str {
        self.descriptor_method()
            .map_or(Self::STUDENTS, DescriptorMethod::name)
    }
}

/// The protocol's random streams, each derived from the cell's seed ([`derive_seed`]) so that
/// changing one subset's size leaves every other choice as it was. The numbers are part of the
/// cached cells' results: changing one changes every table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedStream {
    /// The class's training images split into the students' training and validation parts.
    Split = 201,
    /// The subset of test images a cell scores (the same for every normal class).
    TestImages = 202,
    /// The students' subset of their training part.
    StudentTrainImages = 203,
    /// The students' subset of their validation part.
    StudentValidationImages = 204,
    /// The baselines' subset of the class's training images.
    BaselineTrainImages = 205,
}

impl SeedStream {
    /// This stream's seed in a cell seeded with `seed`.
    pub fn seed(self, seed: u64) -> u64 {
        derive_seed(seed, self as u64)
    }
}

/// What can go wrong in a one-class cell or a descriptor-quality check. The variants with a
/// `source` keep the library's error in the chain, so that a caller can still tell a diverged
/// training from other failures.
#[derive(Debug, thiserror::Error)]
pub enum OneClassError {
    #[error("--class {class} is not a class of {dataset} (0–9)")]
    Class { class: u8, dataset: OneClassDataset },
    #[error("{what} folder {} does not exist ({hint})", .dir.display())]
    MissingDataset {
        what: &'static str,
        dir: PathBuf,
        hint: &'static str,
    },
    // The sources beside a path are boxed: they are large, and every result of this module
    // carries the largest variant. (`Students` and `Fit` keep theirs unboxed, so that a
    // caller's walk down the chain finds a diverged training's own error type.)
    #[error("reading {what} from {}", .dir.display())]
    ReadDataset {
        what: &'static str,
        dir: PathBuf,
        #[source]
        source: Box<DataError>,
    },
    #[error("loading the teacher {}", .path.display())]
    Teacher {
        path: PathBuf,
        #[source]
        source: Box<DetectorError>,
    },
    #[error("loading {}", .path.display())]
    TeacherFile {
        path: PathBuf,
        #[source]
        source: Box<DetectorError>,
    },
    #[error("loading the backbone")]
    Backbone(#[source] DetectorError),
    #[error("creating {}", .path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("class {class} of {dataset}")]
    Split {
        class: u8,
        dataset: OneClassDataset,
        #[source]
        source: Box<DataError>,
    },
    #[error(
        "the {images} test images hold {normal} of class {class}: AUROC needs both normal and \
         anomalous images"
    )]
    OneSidedTest {
        images: usize,
        normal: usize,
        class: u8,
    },
    #[error("class {class} has too few training images to hold out validation images")]
    NoValidation { class: u8 },
    #[error("training the students")]
    Students(#[source] DetectorError),
    #[error("the students' training stopped before its end")]
    Stopped,
    #[error("fitting {what}")]
    Fit {
        what: String,
        #[source]
        source: BaselineError,
    },
    /// A setting the check cannot work with (named as its command-line option).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Detector(#[from] DetectorError),
    #[error(transparent)]
    Baseline(#[from] BaselineError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Model(#[from] ust_models::ModelError),
    #[error(transparent)]
    Metrics(#[from] ust_metrics::MetricsError),
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    #[error(transparent)]
    Shape(#[from] ust_baselines::ndarray::ShapeError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = OneClassError> = std::result::Result<T, E>;

/// One cell of Table 2.
#[derive(Debug, Clone)]
pub struct OneClassConfig {
    pub dataset: OneClassDataset,
    /// The dataset's folder; `None`: [`default_dataset_dir`].
    pub data: Option<PathBuf>,
    /// The normal class (0–9).
    pub class: u8,
    pub method: OneClassMethod,
    /// The teacher file (its p is read from it).
    pub teacher: PathBuf,
    /// Subset sizes and the students' schedule.
    pub preset: Preset,
    /// Seed of the subsets, the split and the methods ([`SeedStream`]).
    pub seed: u64,
    /// The report folder; the students keep their checkpoint there while they train.
    pub out: PathBuf,
    /// Students: at most this many training images of the class (0: the whole training split);
    /// `None`: the preset's.
    pub train_images: Option<usize>,
    /// Students: passes over the training images; `None`: the preset's.
    pub epochs: Option<usize>,
    /// Continue the students' training from the checkpoint in `out` (otherwise a checkpoint
    /// there is overwritten).
    pub resume: bool,
}

/// Hears how the students' training goes (the baselines have nothing to say).
pub trait OneClassObserver {
    /// The students start training (after their images are chosen).
    fn students_started(&mut self) {}
    /// One optimiser step is done; `Break` stops the training (no checkpoint is written).
    fn students_step(&mut self, _step: &OneClassStep) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
    /// The students' training has ended.
    fn students_finished(&mut self) {}
}

/// An observer that hears nothing.
impl OneClassObserver for () {}

/// `report.json` of a one-class cell. Field names are a contract with the experiment runner
/// and with the cells of earlier runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OneClassReport {
    // Every field but the AUROC defaults when absent: the runner needs only the figures, and
    // reports written by test fakes (and older versions) hold fewer fields.
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub dataset: String,
    #[serde(default)]
    pub class: u8,
    #[serde(default)]
    pub method: String,
    #[serde(default)]
    pub teacher: String,
    #[serde(default)]
    pub p: usize,
    #[serde(default)]
    pub preset: String,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub train_images: usize,
    #[serde(default)]
    pub test_images: usize,
    pub auroc: f64,
    /// How the students were trained (absent for the baselines).
    #[serde(default)]
    pub students: Option<StudentsRecord>,
    #[serde(default)]
    pub total_s: Option<f64>,
    /// The process's peak resident memory, filled in by the caller (the library cannot
    /// measure its host process portably).
    #[serde(default)]
    pub peak_rss_mib: Option<f64>,
}

/// The students' schedule and outcome in a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// The value the report's `kind` holds.
pub const REPORT_KIND: &str = "one_class";

impl OneClassReport {
    /// A report from its JSON (`report.json` of a cell).
    pub fn from_json(value: &serde_json::Value) -> serde_json::Result<Self> {
        Self::deserialize(value)
    }

    /// Writes `report.md` and `report.json` into `dir` (the JSON atomically: the runner takes
    /// a cell with a report for finished).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let md = dir.join(REPORT_MARKDOWN_FILE);
        std::fs::write(&md, self.markdown()).map_err(|source| OneClassError::Write {
            path: md.clone(),
            source,
        })?;
        ust_data::files::write_bytes_atomically(
            &dir.join(REPORT_FILE),
            serde_json::to_string_pretty(self)?.as_bytes(),
        )?;
        Ok(())
    }

    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let r = self;
        format!(
            "# One-class {dataset}: class {class}, {method}\n\n\
             - teacher `{teacher}` (p = {p}); preset {preset}, seed {seed}\n\
             - {train} training images of class {class}; {test} test images (class {class} \
             normal, the others anomalous)\n\
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
            total = r.total_s.unwrap_or_default(),
            students = r
                .students
                .as_ref()
                .map(|s| format!(
                    "- students: M = {}, {} epochs of batches of {} ({} steps), lr {:e}; mean \
                     loss {:.2} in the first epoch, {:.2} in the last; training {:.1} s\n",
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
}

/// `items` itself, or a seeded subset of at most `max` of them (0: all), in order.
fn capped(items: &[usize], max: usize, seed: u64) -> Vec<usize> {
    if max == 0 || items.len() <= max {
        return items.to_vec();
    }
    // The workspace's one seeded subset (its generator is part of every cached Table 2 cell).
    ust_data::split::seeded_subset(items.len(), max, seed)
        .into_iter()
        .map(|i| items[i])
        .collect()
}

/// The test images a cell scores: all, or a seeded subset under the preset's cap (the same
/// for every normal class).
pub fn test_indices(test_len: usize, preset: Preset, seed: u64) -> Vec<usize> {
    let all: Vec<usize> = (0..test_len).collect();
    capped(
        &all,
        oneclass_preset(preset).test_images,
        SeedStream::TestImages.seed(seed),
    )
}

/// The training images of `class` a baseline is fitted on: every one, capped by the preset
/// (and at the paper preset by the method's cap on training vectors).
pub fn baseline_train_indices(
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
    capped(&all, cap, SeedStream::BaselineTrainImages.seed(seed))
}

/// The folder a dataset is read from when none is given: MNIST from the shared data
/// (`$UST_SHARED/data/mnist`), CIFAR-10 unpacked into the project (`data/cifar-10`, `just
/// unpack-cifar`).
pub fn default_dataset_dir(dataset: OneClassDataset) -> PathBuf {
    match dataset {
        OneClassDataset::Mnist => ust_data::shared::shared_dir().join("data/mnist"),
        OneClassDataset::Cifar10 => {
            let rel = Path::new("data/cifar-10");
            ust_detector::models_dir::find_in_project(rel).unwrap_or_else(|| rel.to_path_buf())
        }
    }
}

/// The train and test sets of `dataset`, from `root` or [`default_dataset_dir`].
pub fn load_dataset(
    dataset: OneClassDataset,
    root: Option<&Path>,
) -> Result<(LabeledImages, LabeledImages)> {
    let dir = root.map_or_else(|| default_dataset_dir(dataset), Path::to_path_buf);
    let (what, hint) = match dataset {
        OneClassDataset::Mnist => (
            "MNIST",
            "pass --root DIR holding the four idx files, or set UST_SHARED",
        ),
        OneClassDataset::Cifar10 => (
            "CIFAR-10",
            "run `just unpack-cifar`, or pass --root DIR with the binary batches or \
             train/<class>/ and test/<class>/",
        ),
    };
    // With the `hub` feature a folder without the files is no error: the dataset comes from
    // the Hugging Face Hub through candle-datasets (cached after the first download).
    #[cfg(feature = "hub")]
    let read = {
        let _ = hint;
        match dataset {
            OneClassDataset::Mnist => {
                ust_data::mnist::load_mnist_or_hub(&dir).map(|m| (m.train, m.test))
            }
            OneClassDataset::Cifar10 => {
                ust_data::cifar::load_cifar10_or_hub(&dir).map(|c| (c.train, c.test))
            }
        }
    };
    #[cfg(not(feature = "hub"))]
    let read = {
        if !dir.is_dir() {
            return Err(OneClassError::MissingDataset { what, dir, hint });
        }
        match dataset {
            OneClassDataset::Mnist => ust_data::mnist::load_mnist(&dir).map(|m| (m.train, m.test)),
            OneClassDataset::Cifar10 => {
                ust_data::cifar::load_cifar10(&dir).map(|c| (c.train, c.test))
            }
        }
    };
    read.map_err(|source| OneClassError::ReadDataset {
        what,
        dir,
        source: Box::new(source),
    })
}

/// Images `idx` of `set` resized to side×side, as one (N, 3, side, side) tensor.
pub fn images_tensor(
    set: &LabeledImages,
    idx: &[usize],
    side: usize,
    device: &Device,
) -> Result<Tensor> {
    let size = Some(Size::new(side as u32, side as u32));
    let images: Vec<_> = idx.iter().map(|&i| set.image_rgb(i, size)).collect();
    Ok(ust_data::batch_to_tensor(&images, device)?)
}

/// Teacher descriptors of `images` (N, 3, p, p) as an (N, d) matrix.
fn descriptors(teacher: &PatchNet, images: &Tensor) -> Result<Array2<f32>> {
    let n = images.dim(0)?;
    let d = teacher.descriptor_dim();
    let mut out = Vec::with_capacity(n * d);
    for start in (0..n).step_by(256) {
        let len = 256.min(n - start);
        let y = teacher.descriptors(&images.narrow(0, start, len)?)?;
        out.extend(y.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(Array2::from_shape_vec((n, d), out)?)
}

/// The baselines' half of the protocol: standardises `train` per dimension on itself (as the
/// students' targets), fits `method` on it, and scores `test` after the same standardisation.
/// `what` names the fit in its error ("knn on 300 descriptors"). ae and vae train and score on
/// `device`.
pub fn standardised_scores(
    method: DescriptorMethod,
    mut train: Array2<f32>,
    test: ArrayView2<'_, f32>,
    seed: u64,
    device: &Device,
    what: impl FnOnce(usize) -> String,
) -> Result<Vec<f32>> {
    let mut stats = Standardizer::new(train.ncols());
    stats.add_rows(train.view())?;
    let stats = stats.finish(MIN_TARGET_STD)?;
    stats.apply(train.view_mut())?;
    let model = DescriptorModel::fit(method, train.view(), seed, device).map_err(|source| {
        OneClassError::Fit {
            what: what(train.nrows()),
            source,
        }
    })?;
    let mut rows = test.to_owned();
    stats.apply(rows.view_mut())?;
    Ok(model.score(rows.view())?)
}

/// Whether `class` is one of the dataset's ten (a caller can check before it resolves the
/// teacher, so that a wrong class is the error it hears first).
pub fn check_class(class: u8, dataset: OneClassDataset) -> Result<()> {
    if class > 9 {
        return Err(OneClassError::Class { class, dataset });
    }
    Ok(())
}

/// Runs one cell: picks the subsets, trains the students or fits the baseline, scores the test
/// images and returns the report (without the peak memory, see
/// [`OneClassReport::peak_rss_mib`]); [`OneClassReport::write`] writes it.
pub fn run_one_class(
    config: &OneClassConfig,
    device: &Device,
    observer: &mut dyn OneClassObserver,
) -> Result<OneClassReport> {
    let started = Instant::now();
    check_class(config.class, config.dataset)?;
    let teacher = ust_detector::load_teacher(&config.teacher, device)
        .map_err(|source| OneClassError::Teacher {
            path: config.teacher.clone(),
            source: Box::new(source),
        })?
        .detach();
    let p = teacher.patch_size();
    let (train_set, test_set) = load_dataset(config.dataset, config.data.as_deref())?;
    let preset = oneclass_preset(config.preset);
    std::fs::create_dir_all(&config.out).map_err(|source| OneClassError::CreateDir {
        path: config.out.clone(),
        source,
    })?;
    let split = OneClassSplit::new(
        &train_set,
        &test_set,
        config.class,
        preset.validation_fraction,
        SeedStream::Split.seed(config.seed),
    )
    .map_err(|source| OneClassError::Split {
        class: config.class,
        dataset: config.dataset,
        source: Box::new(source),
    })?;
    let test_idx = test_indices(split.test.len(), config.preset, config.seed);
    let anomalous: Vec<bool> = test_idx
        .iter()
        .map(|&i| test_set.labels[i] != config.class)
        .collect();
    if anomalous.iter().all(|&a| a) || anomalous.iter().all(|&a| !a) {
        return Err(OneClassError::OneSidedTest {
            images: test_idx.len(),
            normal: anomalous.iter().filter(|&&a| !a).count(),
            class: config.class,
        });
    }
    let test = images_tensor(&test_set, &test_idx, p, device)?;

    let (train_images, scores, students) = match config.method.descriptor_method() {
        None => {
            let train_idx = capped(
                &split.train,
                config.train_images.unwrap_or(preset.student_train_images),
                SeedStream::StudentTrainImages.seed(config.seed),
            );
            let val_idx = capped(
                &split.validation,
                preset.student_validation_images,
                SeedStream::StudentValidationImages.seed(config.seed),
            );
            if val_idx.is_empty() {
                return Err(OneClassError::NoValidation {
                    class: config.class,
                });
            }
            let defaults = OneClassStudentConfig::preset(config.preset);
            let students_config = OneClassStudentConfig {
                seed: config.seed,
                epochs: config.epochs.unwrap_or(defaults.epochs),
                ..defaults
            };
            tracing::info!(
                train = train_idx.len(),
                validation = val_idx.len(),
                students = students_config.students,
                epochs = students_config.epochs,
                "training one-class students"
            );
            let checkpointing = OneClassCheckpointing {
                path: config.out.join(ONE_CLASS_CHECKPOINT_FILE),
                resume: config.resume,
            };
            observer.students_started();
            let outcome = OneClassStudents::train_resumable(
                &students_config,
                &teacher,
                &images_tensor(&train_set, &train_idx, p, device)?,
                &images_tensor(&train_set, &val_idx, p, device)?,
                device,
                Some(&checkpointing),
                &mut |step: &OneClassStep| observer.students_step(step),
            )
            .map_err(OneClassError::Students)?;
            observer.students_finished();
            let OneClassOutcome::Finished(students) = outcome else {
                return Err(OneClassError::Stopped);
            };
            let summary = &students.summary;
            let record = StudentsRecord {
                students: students_config.students,
                epochs: students_config.epochs,
                batch_size: students_config.batch_size,
                learning_rate: students_config.optimizer.learning_rate,
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
            let train_idx = baseline_train_indices(
                &train_set,
                config.class,
                method,
                config.preset,
                config.seed,
            );
            let train = descriptors(&teacher, &images_tensor(&train_set, &train_idx, p, device)?)?;
            let test_rows = descriptors(&teacher, &test)?;
            // The baseline fits where the teacher ran: the command's --device.
            let scores =
                standardised_scores(method, train, test_rows.view(), config.seed, device, |n| {
                    format!("{method} on {n} descriptors")
                })?;
            (train_idx.len(), scores, None)
        }
    };
    let auroc = ust_metrics::auroc(&scores, &anomalous)?;
    Ok(OneClassReport {
        kind: REPORT_KIND.into(),
        dataset: config.dataset.name().into(),
        class: config.class,
        method: config.method.name().into(),
        teacher: config.teacher.display().to_string(),
        p,
        preset: config.preset.to_string(),
        seed: config.seed,
        train_images,
        test_images: test_idx.len(),
        auroc,
        students,
        total_s: Some(started.elapsed().as_secs_f64()),
        peak_rss_mib: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The streams' numbers are part of every cached cell: they must not move.
    #[test]
    fn the_seed_streams_keep_their_numbers() {
        assert_eq!(SeedStream::Split.seed(3), derive_seed(3, 201));
        assert_eq!(SeedStream::TestImages.seed(3), derive_seed(3, 202));
        assert_eq!(SeedStream::StudentTrainImages.seed(3), derive_seed(3, 203));
        assert_eq!(
            SeedStream::StudentValidationImages.seed(3),
            derive_seed(3, 204)
        );
        assert_eq!(SeedStream::BaselineTrainImages.seed(3), derive_seed(3, 205));
    }

    #[test]
    fn subsets_are_seeded_sorted_and_capped() {
        use ust_data::split::seeded_subset;
        let a = seeded_subset(100, 10, 7);
        assert_eq!(a, seeded_subset(100, 10, 7));
        assert_ne!(a, seeded_subset(100, 10, 8));
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(seeded_subset(5, 10, 7), [0, 1, 2, 3, 4]);
        let items = [10, 20, 30, 40];
        assert_eq!(capped(&items, 0, 1), items);
        assert_eq!(capped(&items, 9, 1), items);
        let two = capped(&items, 2, 1);
        assert_eq!(two.len(), 2);
        assert!(two.iter().all(|i| items.contains(i)));
        // The smoke preset scores 200 test images, the paper preset all.
        assert_eq!(test_indices(1000, Preset::Smoke, 0).len(), 200);
        assert_eq!(test_indices(1000, Preset::Paper, 0).len(), 1000);
    }

    #[test]
    fn methods_and_datasets_parse_from_their_names() {
        assert_eq!("students".parse(), Ok(OneClassMethod::Students));
        // Every name the experiment files accept parses, the students first.
        let names = OneClassMethod::names();
        assert_eq!(names.len(), 1 + DescriptorMethod::ALL.len());
        for name in names {
            assert_eq!(name.parse::<OneClassMethod>().unwrap().name(), name);
        }
        let knn: OneClassMethod = "knn".parse().unwrap();
        assert_eq!(knn.name(), "knn");
        let err = "svm".parse::<OneClassMethod>().unwrap_err();
        assert!(err.ends_with("(or students)"), "{err}");
        for d in [OneClassDataset::Mnist, OneClassDataset::Cifar10] {
            assert_eq!(d.name().parse(), Ok(d));
        }
    }

    /// A full report survives the round trip; a partial one (what the runner's test fakes
    /// write) reads with defaults, and one without its AUROC says so.
    #[test]
    fn reports_round_trip_and_read_partially() {
        let report = OneClassReport {
            kind: REPORT_KIND.into(),
            dataset: "mnist".into(),
            class: 3,
            method: "students".into(),
            teacher: "t.safetensors".into(),
            p: 33,
            preset: "smoke".into(),
            seed: 1,
            train_images: 24,
            test_images: 200,
            auroc: 0.75,
            students: Some(StudentsRecord {
                students: 2,
                epochs: 10,
                batch_size: 4,
                learning_rate: 1e-3,
                steps: 60,
                first_epoch_loss: 2.0,
                final_loss: 1.0,
                training_s: 3.5,
            }),
            total_s: Some(4.0),
            peak_rss_mib: Some(100.0),
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(OneClassReport::from_json(&json).unwrap(), report);
        let partial = OneClassReport::from_json(&serde_json::json!({"auroc": 0.7})).unwrap();
        assert_eq!((partial.auroc, partial.total_s), (0.7, None));
        let err = OneClassReport::from_json(&serde_json::json!({"x": 1})).unwrap_err();
        assert!(err.to_string().contains("auroc"), "{err}");
        let md = report.markdown();
        assert!(md.contains("| mnist | 3 | students | 0.7500 |"), "{md}");
        assert!(md.contains("peak memory 100 MiB"), "{md}");
    }

    /// A missing dataset folder says which and how to get it.
    #[test]
    fn a_missing_dataset_folder_says_how_to_get_one() {
        let err = load_dataset(OneClassDataset::Cifar10, Some(Path::new("/no/such/dir")))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("CIFAR-10 folder /no/such/dir does not exist (run `just unpack-cifar`"),
            "{err}"
        );
    }
}
