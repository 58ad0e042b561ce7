//! Table 1's dense baselines (METHOD.md §8, `ust baseline dense`): a shallow or neural model
//! fitted on the teacher's dense descriptors of a category's `train/good` images, scoring
//! every pixel of every test image, evaluated as the students are (AU-PRO up to FPR 0.3, pixel
//! AUROC, image AUROC with the max reducer, maps resized back to each image's size).
//!
//! Protocol: images resized to the preset's side (the students' `image_size`: paper 256, cpu
//! 128, smoke 40) exactly as the student pipeline loads them; the teacher's dense descriptors
//! of every training image (at most the preset's `max_train_images`, a seeded subset) are each
//! standardised per dimension with μ, σ over all of those descriptors (the students' targets,
//! METHOD.md §5; chosen so that every method sees the space the students regress); a seeded
//! subset of at most `max_train_vectors` descriptor vectors
//! ([`ust_baselines::subsample_indices`] over the concatenation of all pixels of all images)
//! is fitted; test descriptors are standardised with the same μ, σ. The image border is
//! extended as the students' (the preset's padding unless given), so a baseline and the
//! students are compared on the same descriptors. The caps are [`crate::presets`]'s, the seeds
//! its [`seed_streams`](crate::presets::seed_streams).
//!
//! Several methods share one pass of the teacher over the images; each draws its own seeded
//! subset and is fitted and scored exactly as it would be alone. The AE and VAE see all
//! descriptors under the paper preset, as METHOD.md §8 says (n × 128 × 4 bytes of memory). knn,
//! kmeans and ocsvm run after PCA keeping 95 % of the variance; `pca` scores PCA's own squared
//! reconstruction error.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use ust_baselines::ndarray::Array2;
use ust_baselines::{
    DescriptorMethod, DescriptorModel, RowSubset, Standardization, Standardizer,
    dense_maps_to_rows, derive_seed,
};
use ust_data::image_io::load_rgb;
use ust_data::{MvtecCategory, Size};
use ust_detector::student::MIN_TARGET_STD;
use ust_detector::{Device, Preset, StudentTrainingConfig, find_default_teacher};
use ust_metrics::ImageReducer;
use ust_models::{BorderPadding, DenseConfig, DenseExtractor};

use crate::error::{Context, EngineError, Result};
use crate::observer::EvaluationObserver;
use crate::presets::{DensePreset, dense_preset, evenly_spaced, max_test_images, seed_streams};
use crate::report::fmt_opt;
use crate::scorer::{MapLayout, RowSpec, ScoredImage, TestScorer};
use crate::split::{SplitSettings, evaluate_split};

/// The receptive field of the teacher when neither a file nor a size is given.
pub const DEFAULT_P: usize = 65;

/// One command of dense baselines on one category.
#[derive(Debug, Clone)]
pub struct DenseBaselineConfig {
    /// The dataset as given (a root or the category folder itself): the reports name it.
    pub data: PathBuf,
    /// The category folder (`data` itself, or a category under it).
    pub category_dir: PathBuf,
    /// The methods, each with its report folder (report.json, report.md).
    pub methods: Vec<(DescriptorMethod, PathBuf)>,
    /// Receptive field of the shipped teacher [default: [`DEFAULT_P`], or the teacher file's].
    pub p: Option<usize>,
    /// A teacher file instead of the shipped `models/teacher-p<P>.safetensors`.
    pub teacher: Option<PathBuf>,
    /// Image side and caps.
    pub preset: Preset,
    /// Seed of the image and vector subsets and of the methods.
    pub seed: u64,
    /// Border extension of the teacher's descriptors [default: the preset's, as the students'].
    pub padding: Option<BorderPadding>,
}

/// `report.json` of a dense baseline (field names are a contract with the experiment runner).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DenseBaselineReport {
    pub kind: String,
    pub data: String,
    pub category: String,
    pub method: String,
    pub p: usize,
    pub preset: String,
    pub seed: u64,
    pub teacher: String,
    /// Border extension of the teacher's descriptors.
    pub padding: String,
    pub image_size: usize,
    pub train_images: usize,
    pub train_vectors: usize,
    pub test_images: usize,
    pub au_pro: f64,
    pub pixel_auroc: f64,
    pub image_auroc: Option<f64>,
    /// Seconds fitting the method (PCA included) on the training vectors.
    pub fit_s: f64,
    /// Seconds of the teacher's dense descriptors of the training and test images (with
    /// loading and standardising), shared by every method of the command.
    pub extract_s: f64,
    /// Seconds scoring and evaluating the test images with this method.
    pub score_s: f64,
    /// Seconds of the whole command (all its methods).
    pub total_s: f64,
    /// The methods fitted in the same command (sharing `extract_s` and `total_s`).
    pub methods_in_command: Vec<String>,
    pub peak_rss_mib: Option<f64>,
}

/// The `kind` of a dense baseline's report.
pub const DENSE_BASELINE_KIND: &str = "dense_baseline";

/// The teacher file and its receptive field: `teacher` (checked against `p` when both are
/// given) or the shipped one for `p` (default `default_p`).
pub fn resolve_teacher(
    teacher: Option<&Path>,
    p: Option<usize>,
    default_p: usize,
) -> Result<(PathBuf, usize)> {
    match teacher {
        Some(t) => {
            let arch = ust_models::PatchNet::read_config(t)
                .context_with(|| format!("reading the teacher {}", t.display()))?;
            if let Some(p) = p
                && p != arch.patch_size
            {
                return Err(EngineError::Invalid(format!(
                    "{} is a p={} teacher but --p is {p}",
                    t.display(),
                    arch.patch_size
                )));
            }
            Ok((t.to_path_buf(), arch.patch_size))
        }
        None => {
            let p = p.unwrap_or(default_p);
            Ok((find_default_teacher(p)?, p))
        }
    }
}

/// Fitted descriptor models scoring test images: the teacher's standardised dense descriptors
/// of the image, one map per method. Keeps the seconds spent describing and per method scoring.
pub struct DescriptorScorer {
    teacher: DenseExtractor,
    stats: Standardization,
    models: Vec<(String, DescriptorModel)>,
    side: usize,
    /// Seconds loading and describing the images scored.
    pub describe_s: f64,
    /// Seconds per method scoring the descriptors.
    pub score_s: Vec<f64>,
}

/// What a descriptor scorer's scores depend on.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct DescriptorKey {
    pub methods: Vec<String>,
    pub side: usize,
}

impl DescriptorScorer {
    /// Scores with `models` (named) on the descriptors of `teacher` standardised with `stats`,
    /// images resized to `side`×`side`.
    pub fn new(
        teacher: DenseExtractor,
        stats: Standardization,
        models: Vec<(String, DescriptorModel)>,
        side: usize,
    ) -> Self {
        let n = models.len();
        Self {
            teacher,
            stats,
            models,
            side,
            describe_s: 0.0,
            score_s: vec![0.0; n],
        }
    }
}

impl TestScorer for DescriptorScorer {
    /// The device the teacher runs on.
    type Options = Device;
    /// Fitted in this process and kept nowhere else, so kept scores are only as good as the
    /// seeds that fitted them: the baselines' commands do not resume.
    type Key = DescriptorKey;

    fn layout(&self, _: &Device) -> MapLayout {
        MapLayout {
            side: self.side,
            maps: self.models.len(),
            rows: self
                .models
                .iter()
                .enumerate()
                .map(|(i, (name, _))| RowSpec {
                    name: name.clone(),
                    group: i,
                    maps: vec![i],
                })
                .collect(),
            shown: 0,
        }
    }

    fn resume_key(&self, _: &Device) -> Result<DescriptorKey> {
        Ok(DescriptorKey {
            methods: self.models.iter().map(|(n, _)| n.clone()).collect(),
            side: self.side,
        })
    }

    fn score(&mut self, image: &Path, device: &Device) -> Result<ScoredImage> {
        let t0 = Instant::now();
        let size = Size::new(self.side as u32, self.side as u32);
        let loaded =
            load_rgb(image, Some(size)).context_with(|| format!("loading {}", image.display()))?;
        let rows = standardised_rows(&self.teacher, &loaded.image, &self.stats, device)
            .context_with(|| format!("describing {}", image.display()))?;
        self.describe_s += t0.elapsed().as_secs_f64();
        let mut maps = Vec::with_capacity(self.models.len());
        for ((_, model), seconds) in self.models.iter().zip(&mut self.score_s) {
            let t = Instant::now();
            maps.push(
                model
                    .score(rows.view())
                    .context_with(|| format!("scoring {}", image.display()))?,
            );
            *seconds += t.elapsed().as_secs_f64();
        }
        Ok(ScoredImage {
            maps,
            original_size: loaded.original_size,
        })
    }
}

/// Dense descriptors of one image (3, S, S) as standardised rows (S·S, d).
fn standardised_rows(
    teacher: &DenseExtractor,
    image: &ust_data::ChwImage,
    stats: &Standardization,
    device: &Device,
) -> Result<Array2<f32>> {
    let x = image.to_tensor(device)?.unsqueeze(0)?;
    let y = teacher.extract(&x)?;
    let mut rows = dense_maps_to_rows(&y)?;
    stats.apply(rows.view_mut())?;
    Ok(rows)
}

/// Runs the baselines of `config` and writes their reports into their folders; returns them
/// in the order of `config.methods`.
pub fn dense_baselines(
    config: &DenseBaselineConfig,
    device: &Device,
    observer: &mut dyn EvaluationObserver,
) -> Result<Vec<DenseBaselineReport>> {
    let started = Instant::now();
    if config.methods.is_empty() {
        return Err(EngineError::Invalid(
            "no method to run: name at least one".into(),
        ));
    }
    let methods: Vec<DescriptorMethod> = config.methods.iter().map(|(m, _)| *m).collect();
    for (i, m) in methods.iter().enumerate() {
        if methods[..i].contains(m) {
            return Err(EngineError::Invalid(format!("--method {m} is given twice")));
        }
    }
    let names: Vec<String> = methods.iter().map(|m| m.name().to_string()).collect();
    let data = &config.category_dir;
    let category =
        MvtecCategory::open(data).context_with(|| format!("opening {}", data.display()))?;
    if category.train_images().is_empty() {
        return Err(EngineError::Invalid(format!(
            "{}: train/good holds no images",
            data.display()
        )));
    }
    if category.test_samples().is_empty() {
        return Err(EngineError::Invalid(format!(
            "{}: test/ holds no images",
            data.display()
        )));
    }
    let (teacher_path, p) = resolve_teacher(config.teacher.as_deref(), config.p, DEFAULT_P)?;
    let teacher_net = ust_detector::load_teacher(&teacher_path, device)
        .context_with(|| format!("loading the teacher {}", teacher_path.display()))?;
    let padding = config
        .padding
        .unwrap_or(StudentTrainingConfig::preset(config.preset).padding);
    let teacher = DenseExtractor::new(
        teacher_net.detach(),
        DenseConfig {
            padding,
            ..DenseConfig::default()
        },
    );
    let d = teacher.net().descriptor_dim();
    // The image side and the training images depend on the preset alone; the vector caps
    // on the method.
    let presets: Vec<DensePreset> = methods
        .iter()
        .map(|&m| dense_preset(config.preset, m))
        .collect();
    let shared = presets[0];
    let s = shared.image_size;
    let size = Some(Size::new(s as u32, s as u32));
    for (_, out) in &config.methods {
        std::fs::create_dir_all(out).map_err(EngineError::io("creating", out))?;
    }

    // Training images: all of train/good, or a seeded subset.
    let mut train_paths = category.train_images().to_vec();
    if let Some(idx) = ust_baselines::subsample_indices(
        train_paths.len(),
        (shared.max_train_images > 0).then_some(shared.max_train_images),
        derive_seed(config.seed, seed_streams::TRAIN_IMAGES),
    ) {
        train_paths = idx.into_iter().map(|i| train_paths[i].clone()).collect();
    }
    tracing::info!(
        images = train_paths.len(),
        p,
        size = s,
        methods = names.join(","),
        "teacher descriptors of the training images"
    );
    let extract_start = Instant::now();
    let pixels = s * s;
    let mut stats = Standardizer::new(d);
    let mut subsets: Vec<RowSubset> = presets
        .iter()
        .map(|preset| {
            RowSubset::new(
                train_paths.len() * pixels,
                preset.max_train_vectors,
                derive_seed(config.seed, seed_streams::TRAIN_VECTORS),
                d,
            )
        })
        .collect();
    for path in &train_paths {
        let image = load_rgb(path, size).context_with(|| format!("loading {}", path.display()))?;
        let x = image.image.to_tensor(device)?.unsqueeze(0)?;
        let y: Tensor = teacher.extract(&x)?;
        stats.add_planes(&y.flatten_all()?.to_vec1::<f32>()?, pixels)?;
        let rows = dense_maps_to_rows(&y)?;
        for subset in &mut subsets {
            subset.push(rows.view())?;
        }
    }
    let stats = stats.finish(MIN_TARGET_STD)?;
    let train_extract_s = extract_start.elapsed().as_secs_f64();

    let mut models = Vec::with_capacity(methods.len());
    let mut fit_s = Vec::with_capacity(methods.len());
    let mut train_vectors = Vec::with_capacity(methods.len());
    for (&method, subset) in methods.iter().zip(subsets) {
        let mut train = subset.finish()?;
        stats.apply(train.view_mut())?;
        train_vectors.push(train.nrows());
        tracing::info!(method = %method, vectors = train.nrows(), "fitting");
        let fit_start = Instant::now();
        // ae and vae train where the teacher runs (the command's --device).
        let model =
            DescriptorModel::fit(method, train.view(), config.seed, device).map_err(|source| {
                EngineError::Fit {
                    method: method.to_string(),
                    vectors: train.nrows(),
                    source,
                }
            })?;
        models.push((method.name().to_string(), model));
        fit_s.push(fit_start.elapsed().as_secs_f64());
    }

    let samples = evenly_spaced(category.test_samples(), max_test_images(config.preset));
    let mut scorer = DescriptorScorer::new(teacher, stats, models, s);
    let settings = SplitSettings::new(0.3, ImageReducer::Max);
    let outcome = evaluate_split(&mut scorer, device, &samples, &settings, None, observer)?;
    let extract_s = train_extract_s + scorer.describe_s;
    let total_s = started.elapsed().as_secs_f64();
    let peak = crate::memory::peak_rss_mib();
    let mut reports = Vec::with_capacity(methods.len());
    for (i, row) in outcome.rows.into_iter().enumerate() {
        let scores = row.scores;
        let report = DenseBaselineReport {
            kind: DENSE_BASELINE_KIND.into(),
            data: config.data.display().to_string(),
            category: category.name().to_string(),
            method: names[i].clone(),
            p,
            preset: config.preset.to_string(),
            seed: config.seed,
            teacher: teacher_path.display().to_string(),
            padding: padding.name().to_string(),
            image_size: s,
            train_images: train_paths.len(),
            train_vectors: train_vectors[i],
            test_images: samples.len(),
            au_pro: scores.au_pro,
            pixel_auroc: scores.pixel_auroc,
            image_auroc: scores.image_auroc,
            fit_s: fit_s[i],
            extract_s,
            score_s: scorer.score_s[i] + row.seconds,
            total_s,
            methods_in_command: names.clone(),
            peak_rss_mib: peak,
        };
        let out = &config.methods[i].1;
        let md = out.join("report.md");
        std::fs::write(&md, report.markdown()).map_err(EngineError::io("writing", &md))?;
        ust_data::files::write_bytes_atomically(
            &out.join("report.json"),
            serde_json::to_string_pretty(&report)?.as_bytes(),
        )?;
        reports.push(report);
    }
    Ok(reports)
}

impl DenseBaselineReport {
    /// The report as Markdown (`report.md`).
    pub fn markdown(&self) -> String {
        let r = self;
        format!(
            "# Dense baseline: {method} on {category}\n\n\
             - data: `{data}`; teacher `{teacher}` (p = {p}, {padding} padding); preset {preset}, \
             images at {s}×{s}, seed {seed}\n\
             - fitted on {tv} descriptor vectors of {ti} training images; {te} test images\n\
             - fit {fit:.1} s, scoring + evaluation of the test images {score:.1} s; teacher \
             descriptors {extract:.1} s and total {total:.1} s{shared}{rss}\n\n\
             | method | AU-PRO (FPR ≤ 0.3) | pixel AUROC | image AUROC (max) |\n|---|---|---|---|\n\
             | {method} | {aupro:.4} | {pix:.4} | {img} |\n",
            method = r.method,
            category = r.category,
            data = r.data,
            teacher = r.teacher,
            p = r.p,
            padding = r.padding,
            preset = r.preset,
            s = r.image_size,
            seed = r.seed,
            tv = r.train_vectors,
            ti = r.train_images,
            te = r.test_images,
            fit = r.fit_s,
            score = r.score_s,
            extract = r.extract_s,
            total = r.total_s,
            shared = if r.methods_in_command.len() > 1 {
                format!(" (one command for {})", r.methods_in_command.join(", "))
            } else {
                String::new()
            },
            rss = r
                .peak_rss_mib
                .map(|m| format!("; peak memory {m:.0} MiB"))
                .unwrap_or_default(),
            aupro = r.au_pro,
            pix = r.pixel_auroc,
            img = fmt_opt(r.image_auroc),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A random p = 17 teacher saved as a file.
    fn random_teacher(path: &Path) {
        use candle_nn::{VarBuilder, VarMap};
        let varmap = VarMap::new();
        ust_models::PatchNet::new(
            ust_models::PatchNetConfig::new(17),
            VarBuilder::from_varmap(&varmap, candle_core::DType::F32, &Device::Cpu),
        )
        .unwrap()
        .save(path)
        .unwrap();
    }

    /// A category of 40×40 noise images; the defective ones carry a bright 8×8 square.
    fn category(root: &Path) -> PathBuf {
        let dir = root.join("widget");
        let mut state = 7u32;
        let mut noise = move || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8 / 4
        };
        let mut save = |rel: &str, square: Option<(u32, u32)>| {
            let image = image::RgbImage::from_fn(40, 40, |x, y| {
                let inside = square
                    .is_some_and(|(sx, sy)| (sx..sx + 8).contains(&x) && (sy..sy + 8).contains(&y));
                let v = if inside { 250 } else { noise() };
                image::Rgb([v, v, v])
            });
            let path = dir.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            image.save(path).unwrap();
        };
        for i in 0..4 {
            save(&format!("train/good/t{i}.png"), None);
            save(&format!("test/good/g{i}.png"), None);
        }
        for (i, at) in [(4, 6), (20, 24)].into_iter().enumerate() {
            save(&format!("test/square/s{i}.png"), Some(at));
            let mask = image::GrayImage::from_fn(40, 40, |x, y| {
                let inside = (at.0..at.0 + 8).contains(&x) && (at.1..at.1 + 8).contains(&y);
                image::Luma([if inside { 255 } else { 0 }])
            });
            let path = dir.join(format!("ground_truth/square/s{i}_mask.png"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            mask.save(path).unwrap();
        }
        dir
    }

    #[derive(Default)]
    struct Count(usize);
    impl EvaluationObserver for Count {
        fn image_done(&mut self, _: usize, _: &ust_data::TestSample, _: bool) {
            self.0 += 1;
        }
    }

    #[test]
    fn the_protocol_reports_every_method_in_order_and_refuses_contradictions() {
        let dir = tempfile::tempdir().unwrap();
        let data = category(dir.path());
        let teacher = dir.path().join("teacher.safetensors");
        random_teacher(&teacher);
        let config = DenseBaselineConfig {
            data: dir.path().to_path_buf(),
            category_dir: data,
            methods: vec![
                (DescriptorMethod::Pca, dir.path().join("pca")),
                (DescriptorMethod::Knn, dir.path().join("knn")),
            ],
            p: None,
            teacher: Some(teacher.clone()),
            preset: Preset::Smoke,
            seed: 3,
            padding: None,
        };
        let mut count = Count::default();
        let reports = dense_baselines(&config, &Device::Cpu, &mut count).unwrap();
        assert_eq!(count.0, 6);
        let methods: Vec<&str> = reports.iter().map(|r| r.method.as_str()).collect();
        assert_eq!(methods, ["pca", "knn"]);
        for r in &reports {
            assert_eq!(
                (r.p, r.image_size, r.train_images, r.test_images),
                (17, 40, 4, 6)
            );
            assert_eq!(r.kind, DENSE_BASELINE_KIND);
            assert_eq!(r.methods_in_command, ["pca", "knn"]);
            // A bright square in noise is what any of them finds.
            assert!(r.pixel_auroc > 0.9, "{r:?}");
            let text =
                std::fs::read_to_string(dir.path().join(&r.method).join("report.json")).unwrap();
            let back: DenseBaselineReport = serde_json::from_str(&text).unwrap();
            assert_eq!(back.au_pro, r.au_pro);
        }

        let twice = DenseBaselineConfig {
            methods: vec![
                (DescriptorMethod::Knn, dir.path().join("a")),
                (DescriptorMethod::Knn, dir.path().join("b")),
            ],
            ..config.clone()
        };
        let err = dense_baselines(&twice, &Device::Cpu, &mut Count::default()).unwrap_err();
        assert!(err.to_string().contains("given twice"), "{err}");
        let err = resolve_teacher(Some(&teacher), Some(33), DEFAULT_P).unwrap_err();
        assert!(err.to_string().contains("p=17 teacher"), "{err}");
    }
}
