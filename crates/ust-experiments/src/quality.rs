//! How good a teacher's descriptors are, on the one-class protocol of Table 2's 1-NN baseline
//! ([`crate::oneclass`] with the `knn` method at the same preset): for each class of MNIST and
//! CIFAR-10 the features of its training images (at the cpu preset a seeded 1 000) are
//! standardised and are the reference; every test image (at the cpu preset a seeded 2 000, the
//! same for every class) scores its distance to the nearest reference after the same
//! standardisation; AUROC with that class normal and the nine others anomalous; the mean over
//! the ten classes per dataset. With the teacher's descriptors the figure is exactly Table 2's
//! 1-NN cell.
//!
//! [`FeatureSource`] picks what the 1-NN sees, so a teacher can be set beside what bounds it:
//! - `teacher`: the teacher's descriptor of the image resized to p×p (one per image);
//! - `backbone`: the distillation backbone's pooled features of the image resized to the
//!   backbone's own input side (224 for EfficientNet-Lite0), the ceiling a distilled teacher
//!   approaches;
//! - `pixels`: the p×p RGB pixels themselves, the floor a teacher must clear.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use ust_baselines::DescriptorMethod;
use ust_baselines::ndarray::Array2;
use ust_data::{LabeledImages, Size};
use ust_detector::Preset;
use ust_detector::config::{BackboneConfig, BackboneInputSize, BackboneKind};
use ust_detector::teacher::load_backbone;
use ust_models::{Backbone, PatchNet};

use crate::oneclass::{
    OneClassDataset, OneClassError, Result, baseline_train_indices, load_dataset,
    standardised_scores, test_indices,
};

/// What the 1-NN runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum FeatureSource {
    /// The teacher's descriptors of the images resized to p×p.
    Teacher,
    /// The backbone's pooled features of the images resized to its input side.
    Backbone,
    /// The p×p RGB pixels.
    Pixels,
}

impl FeatureSource {
    pub fn name(self) -> &'static str {
        match self {
            Self::Teacher => "teacher",
            Self::Backbone => "backbone",
            Self::Pixels => "pixels",
        }
    }
}

/// One check (the fields are `ust teacher quality`'s options, which the errors name).
#[derive(Debug, Clone)]
pub struct QualityConfig {
    /// The teacher file (needed for [`FeatureSource::Teacher`]; gives p for `Pixels`).
    pub teacher: Option<PathBuf>,
    pub features: FeatureSource,
    /// The datasets; empty: both.
    pub datasets: Vec<OneClassDataset>,
    /// The MNIST folder; `None`: [`crate::oneclass::default_dataset_dir`].
    pub mnist: Option<PathBuf>,
    /// The CIFAR-10 folder; `None`: [`crate::oneclass::default_dataset_dir`].
    pub cifar: Option<PathBuf>,
    /// The side images are resized to for `Pixels`; `None`: the teacher's p, else 33.
    pub p: Option<usize>,
    /// `Backbone`: the EfficientNet-Lite0 weights; `None`: the shared data's.
    pub backbone_weights: Option<PathBuf>,
    /// `Backbone`: the side images are resized to (the network was trained at 224).
    pub backbone_size: usize,
    /// Subset sizes, as the one-class baselines'.
    pub preset: Preset,
    pub seed: u64,
}

/// The result on one dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
pub enum FeatureExtractor {
    Teacher(PatchNet),
    Backbone(Box<dyn Backbone>),
    Pixels,
}

impl std::fmt::Debug for FeatureExtractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Teacher(_) => "FeatureExtractor::Teacher",
            Self::Backbone(_) => "FeatureExtractor::Backbone",
            Self::Pixels => "FeatureExtractor::Pixels",
        })
    }
}

impl FeatureExtractor {
    /// Features of `set`'s images `idx`, resized to `side`, as an (N, dim) matrix.
    pub fn rows(
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

/// The protocol's description in the report.
const PROTOCOL: &str = "one-class 1-NN (Table 2's baseline, `ust oneclass --method knn`): \
                        features standardised on the class's reference images, PCA to 95 % of \
                        the variance, Euclidean distance to the nearest reference";

/// Runs the check on every dataset asked for.
pub fn descriptor_quality(config: &QualityConfig, device: &Device) -> Result<QualityReport> {
    let started = Instant::now();
    let teacher = match &config.teacher {
        Some(path) => Some(ust_detector::load_teacher(path, device).map_err(|source| {
            OneClassError::TeacherFile {
                path: path.clone(),
                source: Box::new(source),
            }
        })?),
        None => None,
    };
    let p = match (config.p, &teacher) {
        (Some(p), _) => p,
        (None, Some(t)) => t.patch_size(),
        (None, None) => 33,
    };
    if config.backbone_size == 0 || p == 0 {
        return Err(OneClassError::Invalid(
            "--p and --backbone-size must be positive".into(),
        ));
    }
    let (extractor, source, side) = match config.features {
        FeatureSource::Teacher => {
            let Some(t) = teacher else {
                return Err(OneClassError::Invalid(
                    "--features teacher needs the teacher file".into(),
                ));
            };
            let path = config.teacher.as_deref().unwrap_or(Path::new("?"));
            let side = t.patch_size();
            (
                FeatureExtractor::Teacher(t),
                path.display().to_string(),
                side,
            )
        }
        FeatureSource::Backbone => {
            let backbone = BackboneConfig {
                kind: BackboneKind::EfficientNetLite0,
                weights: config
                    .backbone_weights
                    .as_ref()
                    .map(|w| w.display().to_string()),
                input_size: BackboneInputSize::Side(config.backbone_size),
            }
            .resolve();
            let (net, description) =
                load_backbone(&backbone, device).map_err(OneClassError::Backbone)?;
            (
                FeatureExtractor::Backbone(net),
                description,
                config.backbone_size,
            )
        }
        FeatureSource::Pixels => (
            FeatureExtractor::Pixels,
            format!("RGB pixels at {p}×{p}"),
            p,
        ),
    };
    let datasets = if config.datasets.is_empty() {
        vec![OneClassDataset::Mnist, OneClassDataset::Cifar10]
    } else {
        config.datasets.clone()
    };
    let mut results = Vec::new();
    let mut dim = 0;
    for dataset in datasets {
        let root = match dataset {
            OneClassDataset::Mnist => config.mnist.as_deref(),
            OneClassDataset::Cifar10 => config.cifar.as_deref(),
        };
        let result = dataset_quality(&extractor, dataset, root, side, config, device)?;
        dim = result.1;
        results.push(result.0);
    }
    Ok(QualityReport {
        features: config.features.name().into(),
        source,
        image_side: side,
        dim,
        protocol: PROTOCOL.into(),
        preset: config.preset.to_string(),
        seed: config.seed,
        datasets: results,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The ten classes of one dataset, and the features' dimension.
fn dataset_quality(
    extractor: &FeatureExtractor,
    dataset: OneClassDataset,
    root: Option<&Path>,
    side: usize,
    config: &QualityConfig,
    device: &Device,
) -> Result<(DatasetQuality, usize)> {
    let t0 = Instant::now();
    let (train_set, test_set) = load_dataset(dataset, root)?;
    let test_idx = test_indices(test_set.len(), config.preset, config.seed);
    tracing::info!(
        dataset = dataset.name(),
        images = test_idx.len(),
        "test features"
    );
    let test = extractor.rows(&test_set, &test_idx, side, device)?;
    let mut auroc = Vec::with_capacity(10);
    let mut train_per_class = 0;
    for class in 0..10u8 {
        let idx = baseline_train_indices(
            &train_set,
            class,
            DescriptorMethod::Knn,
            config.preset,
            config.seed,
        );
        if class == 0 {
            train_per_class = idx.len();
        }
        let train = extractor.rows(&train_set, &idx, side, device)?;
        let scores = standardised_scores(
            DescriptorMethod::Knn,
            train,
            test.view(),
            config.seed,
            device,
            |n| format!("1-NN on {n} rows"),
        )?;
        let anomalous: Vec<bool> = test_idx
            .iter()
            .map(|&i| test_set.labels[i] != class)
            .collect();
        let a = ust_metrics::auroc(&scores, &anomalous)?;
        tracing::info!(dataset = dataset.name(), class, auroc = a, "class done");
        auroc.push(a);
    }
    let quality = DatasetQuality {
        dataset: dataset.name().into(),
        train_per_class,
        test_images: test_idx.len(),
        mean_auroc: auroc.iter().sum::<f64>() / auroc.len() as f64,
        auroc,
        seconds: t0.elapsed().as_secs_f64(),
    };
    Ok((quality, test.ncols()))
}

impl QualityReport {
    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let r = self;
        let mut s = format!(
            "# Descriptor quality: {} ({})\n\n- {} features of the images at {}×{}, {} preset, \
             seed {}; {}\n\n| dataset | reference images per class | test images | mean \
             AUROC | per class 0–9 | seconds |\n|---|---|---|---|---|---|\n",
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
        let rows = FeatureExtractor::Pixels
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
        let rows = FeatureExtractor::Backbone(net)
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

    /// A teacher check without a teacher says which option is missing.
    #[test]
    fn teacher_features_need_a_teacher() {
        let config = QualityConfig {
            teacher: None,
            features: FeatureSource::Teacher,
            datasets: Vec::new(),
            mnist: None,
            cifar: None,
            p: None,
            backbone_weights: None,
            backbone_size: 224,
            preset: Preset::Smoke,
            seed: 0,
        };
        let err = descriptor_quality(&config, &Device::Cpu).unwrap_err();
        assert_eq!(err.to_string(), "--features teacher needs the teacher file");
    }
}
