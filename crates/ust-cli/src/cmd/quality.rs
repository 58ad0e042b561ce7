//! `ust teacher quality`: how good a teacher's descriptors are, on the one-class protocol of
//! Table 2's 1-NN baseline (METHOD.md §7, `ust oneclass --method knn` at the same preset):
//! for each class of MNIST and CIFAR-10 the features of its training images (at the cpu
//! preset a seeded 1 000) are standardised and are the reference; every test image (at the cpu
//! preset a seeded 2 000, the same for every class) scores its distance to the nearest
//! reference after the same standardisation; AUROC with that class normal and the nine others
//! anomalous; the mean over the ten classes per dataset. With the teacher's descriptors the
//! figure is exactly Table 2's 1-NN cell.
//!
//! `--features` picks what the 1-NN sees, so a teacher can be set beside what bounds it:
//! - `teacher`: the teacher's descriptor of the image resized to p×p (one per image);
//! - `backbone`: the distillation backbone's pooled features of the image resized to the
//!   backbone's own input side (224 for EfficientNet-Lite0), the ceiling a distilled teacher
//!   approaches;
//! - `pixels`: the p×p RGB pixels themselves, the floor a teacher must clear.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use crate::device::DeviceArgs;
use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};
use clap::{Args, ValueEnum};
use serde::Serialize;
use ust_baselines::ndarray::Array2;
use ust_baselines::{DescriptorMethod, DescriptorModel, Standardizer};
use ust_data::{LabeledImages, Size};
use ust_detector::config::{BackboneConfig, BackboneInputSize, BackboneKind};
use ust_detector::student::MIN_TARGET_STD;
use ust_detector::teacher::load_backbone;
use ust_models::{Backbone, PatchNet};

use super::oneclass::{DatasetArg, baseline_train_indices, load_dataset, test_indices};
use ust_detector::Preset;

/// What the 1-NN runs on.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureSource {
    /// The teacher's descriptors of the images resized to p×p.
    Teacher,
    /// The backbone's pooled features of the images resized to its input side.
    Backbone,
    /// The p×p RGB pixels.
    Pixels,
}

impl FeatureSource {
    fn name(self) -> &'static str {
        match self {
            Self::Teacher => "teacher",
            Self::Backbone => "backbone",
            Self::Pixels => "pixels",
        }
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
    pub dataset: Vec<DatasetArg>,
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

/// The result on one dataset.
#[derive(Debug, Serialize)]
pub struct DatasetQuality {
    pub dataset: String,
    /// Reference images per class (the first class's; a class with fewer uses all of its).
    pub train_per_class: usize,
    pub test_images: usize,
    /// AUROC per normal class 0–9.
    pub auroc: Vec<f64>,
    pub mean_auroc: f64,
    pub seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct QualityReport {
    pub features: String,
    /// The teacher file, the backbone, or the pixels, in words.
    pub source: String,
    /// The side images are resized to before the features.
    pub image_side: usize,
    pub dim: usize,
    pub protocol: String,
    pub preset: String,
    pub seed: u64,
    pub datasets: Vec<DatasetQuality>,
    pub seconds: f64,
}

/// Turns images into one feature row each.
enum Extractor {
    Teacher(PatchNet),
    Backbone(Box<dyn Backbone>),
    Pixels,
}

impl Extractor {
    /// Features of `set`'s images `idx`, resized to `side`, as an (N, dim) matrix.
    fn rows(
        &self,
        set: &LabeledImages,
        idx: &[usize],
        side: usize,
        device: &Device,
    ) -> Result<Array2<f32>> {
        let size = Some(Size::new(side as u32, side as u32));
        // Backbone inputs are 224² (~0.6 MB per image): small chunks keep memory flat.
        let chunk = if matches!(self, Self::Backbone(_)) {
            32
        } else {
            256
        };
        let mut out = Vec::new();
        let mut dim = 0;
        for part in idx.chunks(chunk) {
            let images: Vec<_> = part.iter().map(|&i| set.image_rgb(i, size)).collect();
            let batch = ust_data::batch_to_tensor(&images, device)?;
            let y: Tensor = match self {
                Self::Teacher(t) => t.descriptors(&batch)?,
                Self::Backbone(b) => b.pooled_features(&batch)?,
                Self::Pixels => batch.flatten_from(1)?,
            };
            dim = y.dim(1)?;
            out.extend(y.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(Array2::from_shape_vec((idx.len(), dim), out)?)
    }
}

pub fn run(args: QualityArgs) -> Result<ExitCode> {
    let report = quality(&args)?;
    println!("{}", markdown(&report));
    if let Some(path) = &args.json {
        crate::text::write_json(path, &report)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the check on every dataset asked for.
pub fn quality(args: &QualityArgs) -> Result<QualityReport> {
    let started = Instant::now();
    let device = args.device.open()?;
    let teacher = match &args.teacher {
        Some(path) => Some(
            ust_detector::load_teacher(path, &device)
                .with_context(|| format!("loading {}", path.display()))?,
        ),
        None => None,
    };
    let p = match (args.p, &teacher) {
        (Some(p), _) => p,
        (None, Some(t)) => t.patch_size(),
        (None, None) => 33,
    };
    if args.backbone_size == 0 || p == 0 {
        bail!("--p and --backbone-size must be positive");
    }
    let (extractor, source, side) = match args.features {
        FeatureSource::Teacher => {
            let Some(t) = teacher else {
                bail!("--features teacher needs the teacher file");
            };
            let path = args.teacher.as_deref().unwrap_or(Path::new("?"));
            let side = t.patch_size();
            (Extractor::Teacher(t), path.display().to_string(), side)
        }
        FeatureSource::Backbone => {
            let config = BackboneConfig {
                kind: BackboneKind::EfficientNetLite0,
                weights: args
                    .backbone_weights
                    .as_ref()
                    .map(|w| w.display().to_string()),
                input_size: BackboneInputSize::Side(args.backbone_size),
            }
            .resolve();
            let (net, description) =
                load_backbone(&config, &device).context("loading the backbone")?;
            (Extractor::Backbone(net), description, args.backbone_size)
        }
        FeatureSource::Pixels => (Extractor::Pixels, format!("RGB pixels at {p}×{p}"), p),
    };
    let datasets = if args.dataset.is_empty() {
        vec![DatasetArg::Mnist, DatasetArg::Cifar10]
    } else {
        args.dataset.clone()
    };
    let mut results = Vec::new();
    let mut dim = 0;
    for dataset in datasets {
        let t0 = Instant::now();
        let root = match dataset {
            DatasetArg::Mnist => args.mnist.as_deref(),
            DatasetArg::Cifar10 => args.cifar.as_deref(),
        };
        let (train_set, test_set) = load_dataset(dataset, root)?;
        let test_idx = test_indices(test_set.len(), args.preset, args.seed);
        tracing::info!(
            dataset = dataset.name(),
            images = test_idx.len(),
            "test features"
        );
        let test = extractor.rows(&test_set, &test_idx, side, &device)?;
        dim = test.ncols();
        let mut auroc = Vec::with_capacity(10);
        let mut train_per_class = 0;
        for class in 0..10u8 {
            let idx = baseline_train_indices(
                &train_set,
                class,
                DescriptorMethod::Knn,
                args.preset,
                args.seed,
            );
            if class == 0 {
                train_per_class = idx.len();
            }
            let mut train = extractor.rows(&train_set, &idx, side, &device)?;
            let mut stats = Standardizer::new(train.ncols());
            stats.add_rows(train.view())?;
            let stats = stats.finish(MIN_TARGET_STD)?;
            stats.apply(train.view_mut())?;
            let model = DescriptorModel::fit(DescriptorMethod::Knn, train.view(), args.seed)
                .with_context(|| format!("fitting 1-NN on {} rows", train.nrows()))?;
            let mut rows = test.clone();
            stats.apply(rows.view_mut())?;
            let scores = model.score(rows.view())?;
            let anomalous: Vec<bool> = test_idx
                .iter()
                .map(|&i| test_set.labels[i] != class)
                .collect();
            let a = ust_metrics::auroc(&scores, &anomalous)?;
            tracing::info!(dataset = dataset.name(), class, auroc = a, "class done");
            auroc.push(a);
        }
        results.push(DatasetQuality {
            dataset: dataset.name().into(),
            train_per_class,
            test_images: test_idx.len(),
            mean_auroc: auroc.iter().sum::<f64>() / auroc.len() as f64,
            auroc,
            seconds: t0.elapsed().as_secs_f64(),
        });
    }
    Ok(QualityReport {
        features: args.features.name().into(),
        source,
        image_side: side,
        dim,
        protocol: "one-class 1-NN (Table 2's baseline, `ust oneclass --method knn`): features \
                   standardised on the class's reference images, PCA to 95 % of the variance, \
                   Euclidean distance to the nearest reference"
            .into(),
        preset: args.preset.to_string(),
        seed: args.seed,
        datasets: results,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The report as Markdown.
pub fn markdown(r: &QualityReport) -> String {
    let mut s = format!(
        "# Descriptor quality: {} ({})\n\n- {} features of the images at {}×{}, {} preset, \
         seed {}; {}\n\n| dataset | reference images per class | test images | mean AUROC | \
         per class 0–9 | seconds |\n|---|---|---|---|---|---|\n",
        r.features, r.source, r.dim, r.image_side, r.image_side, r.preset, r.seed, r.protocol
    );
    for d in &r.datasets {
        s.push_str(&format!(
            "| {} | {} | {} | {:.4} | {} | {:.0} |\n",
            d.dataset,
            d.train_per_class,
            d.test_images,
            d.mean_auroc,
            d.auroc
                .iter()
                .map(|a| format!("{a:.3}"))
                .collect::<Vec<_>>()
                .join(" "),
            d.seconds
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use ust_models::{EfficientNetLite0, EfficientNetLite0Config};

    /// Three 8×8 grey images (channel 1), pixel values from a formula.
    fn images() -> LabeledImages {
        let pixels = (0..3 * 64).map(|i| ((i * 37) % 256) as u8).collect();
        LabeledImages {
            source: PathBuf::from("test"),
            channels: 1,
            height: 8,
            width: 8,
            pixels,
            labels: vec![0, 1, 0],
            class_names: vec!["a".into(), "b".into()],
        }
    }

    #[test]
    fn pixel_rows_are_the_resized_rgb_values() {
        let set = images();
        let rows = Extractor::Pixels
            .rows(&set, &[2, 0], 8, &Device::Cpu)
            .unwrap();
        assert_eq!(rows.dim(), (2, 3 * 64));
        // Grey replicated to RGB, scaled to [0, 1], image 2 first.
        for (k, &v) in set.image_bytes(2).iter().enumerate() {
            for c in 0..3 {
                assert!((rows[[0, c * 64 + k]] - v as f32 / 255.0).abs() < 1e-6);
            }
        }
        assert!((rows[[1, 5]] - set.image_bytes(0)[5] as f32 / 255.0).abs() < 1e-6);
    }

    #[test]
    fn backbone_rows_are_the_networks_pooled_features_at_its_side() {
        let Some(shared) = ust_data::shared::shared_dir_for_tests(env!("CARGO_MANIFEST_DIR"))
        else {
            return;
        };
        let weights = shared.join("weights/efficientnet_lite0.safetensors");
        if !weights.is_file() {
            eprintln!("skipping: {} not found", weights.display());
            return;
        }
        let device = Device::Cpu;
        let config = BackboneConfig {
            kind: BackboneKind::EfficientNetLite0,
            weights: Some(weights.display().to_string()),
            input_size: BackboneInputSize::Side(32),
        };
        let (net, _) = load_backbone(&config, &device).unwrap();
        let set = images();
        let rows = Extractor::Backbone(net)
            .rows(&set, &[1, 2], 32, &device)
            .unwrap();
        // Independently: the network itself on the images resized to 32×32.
        let direct =
            EfficientNetLite0::load(&weights, EfficientNetLite0Config::default(), &device).unwrap();
        let size = Some(Size::new(32, 32));
        for (r, i) in [1usize, 2].iter().enumerate() {
            let x = ust_data::batch_to_tensor(&[set.image_rgb(*i, size)], &device).unwrap();
            let scaled = EfficientNetLite0::scale_unit_input(&x).unwrap();
            let want = direct
                .pooled_scaled(&scaled)
                .unwrap()
                .flatten_all()
                .unwrap();
            let want = want.to_vec1::<f32>().unwrap();
            assert_eq!(want.len(), 1280);
            let diff = want
                .iter()
                .enumerate()
                .map(|(k, w)| (w - rows[[r, k]]).abs())
                .fold(0f32, f32::max);
            assert!(diff < 1e-4, "image {i}: max difference {diff}");
        }
    }
}
