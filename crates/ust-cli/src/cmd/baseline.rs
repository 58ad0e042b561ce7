//! `ust baseline dense`: one cell of Table 1 for a baseline (METHOD.md §8) — a shallow or
//! neural model fitted on the teacher's dense descriptors of a category's `train/good` images,
//! scoring every pixel of every test image, evaluated as `ust evaluate` does (AU-PRO up to FPR
//! 0.3, pixel AUROC, image AUROC with the max reducer, maps resized back to each image's size).
//!
//! Pipeline: images resized to the preset's side (the students' `image_size`: paper 256, cpu
//! 128, smoke 40) exactly as the student pipeline loads them; the teacher's dense descriptors of
//! every training image (at most `max_train_images`, a seeded subset) are each standardised
//! per dimension with μ, σ over all of those descriptors (the students' targets, METHOD.md §5;
//! chosen so that every method sees the space the students regress); a seeded subset of at
//! most `max_train_vectors` descriptor vectors (`ust_baselines::subsample_indices` over the
//! concatenation of all pixels of all images) is fitted; test descriptors are standardised
//! with the same μ, σ. The image border is extended as the students' (`--padding`, default
//! the preset's, `replicate`), so a baseline and the students are compared on the same
//! descriptors.
//!
//! Presets: the caps on training images and vectors per method are
//! `ust_experiments::presets::dense_preset`'s (the table there).
//!
//! The paper caps are `BaselineConfig::paper`'s; the AE and VAE see all descriptors there, as
//! METHOD.md §8 says (n × 128 × 4 bytes of memory). knn, kmeans and ocsvm run after PCA keeping
//! 95 % of the variance; `pca` scores PCA's own squared reconstruction error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use crate::device::DeviceArgs;
use crate::text::fmt_opt;
use anyhow::{Context, Result, bail};
use candle_core::Tensor;
use clap::{Args, Subcommand};
use serde::Serialize;
use ust_baselines::{
    DescriptorMethod, DescriptorModel, RowSubset, Standardization, Standardizer,
    dense_maps_to_rows, derive_seed,
};
use ust_data::image_io::load_rgb;
use ust_data::{LoadedImage, MvtecCategory, Size};
use ust_detector::student::MIN_TARGET_STD;
use ust_detector::{Device, Prediction, StudentTrainingConfig, find_default_teacher};
use ust_experiments::presets::{DensePreset, dense_preset, evenly_spaced, max_test_images};
use ust_metrics::{ImageReducer, SegmentationEvaluator};
use ust_models::{BorderPadding, DenseConfig, DenseExtractor};

use super::bench::peak_rss_mib;
use super::evaluate::push_map;
use super::predict::original_size_map;
use super::train::category_dir;
use ust_detector::Preset;

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

/// `report.json` of `ust baseline dense` (field names are a contract with the experiment
/// runner).
#[derive(Debug, Clone, Serialize)]
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

pub fn run(command: BaselineCommand) -> Result<ExitCode> {
    match command {
        BaselineCommand::Dense(args) => {
            for (report, out) in dense(&args)?.iter().zip(&args.out) {
                println!("{}", dense_markdown(report));
                println!("report: {}", out.join("report.json").display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The teacher file and its receptive field: `--teacher` (checked against `--p` when both are
/// given) or the shipped one for `--p` (default `default_p`).
pub(crate) fn resolve_teacher(
    teacher: Option<&Path>,
    p: Option<usize>,
    default_p: usize,
) -> Result<(PathBuf, usize)> {
    match teacher {
        Some(t) => {
            let arch = ust_models::PatchNet::read_config(t)
                .with_context(|| format!("reading the teacher {}", t.display()))?;
            if let Some(p) = p
                && p != arch.patch_size
            {
                bail!(
                    "{} is a p={} teacher but --p is {p}",
                    t.display(),
                    arch.patch_size
                );
            }
            Ok((t.to_path_buf(), arch.patch_size))
        }
        None => {
            let p = p.unwrap_or(default_p);
            Ok((find_default_teacher(p)?, p))
        }
    }
}

/// Dense descriptors of one image (1, 3, S, S) as standardised rows (S·S, d).
fn standardised_rows(
    teacher: &DenseExtractor,
    image: &LoadedImage,
    stats: &Standardization,
    device: &Device,
) -> Result<ust_baselines::ndarray::Array2<f32>> {
    let x = image.image.to_tensor(device)?.unsqueeze(0)?;
    let y = teacher.extract(&x)?;
    let mut rows = dense_maps_to_rows(&y)?;
    stats.apply(rows.view_mut())?;
    Ok(rows)
}

/// Runs the baselines (one or several, each with its report folder) and writes their reports;
/// returns them in the order of `--method`. The teacher's descriptors of every image are
/// computed once and given to every method; each method draws its own seeded subset and is
/// fitted and scored exactly as it would be alone.
pub fn dense(args: &DenseArgs) -> Result<Vec<DenseBaselineReport>> {
    let started = Instant::now();
    let device = args.device.open()?;
    if args.method.len() != args.out.len() {
        bail!(
            "--method and --out pair up: {} methods but {} report folders",
            args.method.len(),
            args.out.len()
        );
    }
    let methods: Vec<DescriptorMethod> = args.method.clone();
    for (i, m) in methods.iter().enumerate() {
        if methods[..i].contains(m) {
            bail!("--method {m} is given twice");
        }
    }
    let names: Vec<String> = methods.iter().map(|m| m.name().to_string()).collect();
    let data = category_dir(&args.data, args.category.as_deref())?;
    let category =
        MvtecCategory::open(&data).with_context(|| format!("opening {}", data.display()))?;
    if category.train_images().is_empty() {
        bail!("{}: train/good holds no images", data.display());
    }
    if category.test_samples().is_empty() {
        bail!("{}: test/ holds no images", data.display());
    }
    let (teacher_path, p) = resolve_teacher(args.teacher.as_deref(), args.p, 65)?;
    let teacher_net = ust_detector::load_teacher(&teacher_path, &device)
        .with_context(|| format!("loading the teacher {}", teacher_path.display()))?;
    let padding = args
        .padding
        .unwrap_or(StudentTrainingConfig::preset(args.preset).padding);
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
        .map(|&m| dense_preset(args.preset, m))
        .collect();
    let shared = presets[0];
    let s = shared.image_size;
    let size = Some(Size::new(s as u32, s as u32));
    for out in &args.out {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    }

    // Training images: all of train/good, or a seeded subset.
    let mut train_paths = category.train_images().to_vec();
    if let Some(idx) = ust_baselines::subsample_indices(
        train_paths.len(),
        (shared.max_train_images > 0).then_some(shared.max_train_images),
        derive_seed(args.seed, 101),
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
                derive_seed(args.seed, 102),
                d,
            )
        })
        .collect();
    for path in &train_paths {
        let image = load_rgb(path, size).with_context(|| format!("loading {}", path.display()))?;
        let x = image.image.to_tensor(&device)?.unsqueeze(0)?;
        let y: Tensor = teacher.extract(&x)?;
        stats.add_planes(&y.flatten_all()?.to_vec1::<f32>()?, pixels)?;
        let rows = dense_maps_to_rows(&y)?;
        for subset in &mut subsets {
            subset.push(rows.view())?;
        }
    }
    let stats = stats.finish(MIN_TARGET_STD)?;
    let mut extract_s = extract_start.elapsed().as_secs_f64();

    let mut models = Vec::with_capacity(methods.len());
    let mut fit_s = Vec::with_capacity(methods.len());
    let mut train_vectors = Vec::with_capacity(methods.len());
    for (&method, subset) in methods.iter().zip(subsets) {
        let mut train = subset.finish()?;
        stats.apply(train.view_mut())?;
        train_vectors.push(train.nrows());
        tracing::info!(method = %method, vectors = train.nrows(), "fitting");
        let fit_start = Instant::now();
        models.push(
            DescriptorModel::fit(method, train.view(), args.seed)
                .with_context(|| format!("fitting {method} on {} descriptors", train.nrows()))?,
        );
        fit_s.push(fit_start.elapsed().as_secs_f64());
    }

    let mut evaluators = methods
        .iter()
        .map(|_| SegmentationEvaluator::new(0.3, ImageReducer::Max))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut score_s = vec![0.0; methods.len()];
    let samples = &evenly_spaced(category.test_samples(), max_test_images(args.preset));
    let bar = crate::text::progress_bar("baseline", samples.len(), "images");
    for sample in samples {
        let t0 = Instant::now();
        let image = load_rgb(&sample.path, size)
            .with_context(|| format!("loading {}", sample.path.display()))?;
        let rows = standardised_rows(&teacher, &image, &stats, &device)
            .with_context(|| format!("describing {}", sample.path.display()))?;
        let mask = match &sample.mask_path {
            Some(_) => Some(sample.load_mask()?),
            None => None,
        };
        extract_s += t0.elapsed().as_secs_f64();
        let prediction = Prediction {
            model_scores: Vec::new(),
            per_scale: Vec::new(),
            model_size: s,
            image,
        };
        for ((model, evaluator), seconds) in models.iter().zip(&mut evaluators).zip(&mut score_s) {
            let t = Instant::now();
            let scores = model
                .score(rows.view())
                .with_context(|| format!("scoring {}", sample.path.display()))?;
            let map = original_size_map(&prediction, &scores)?;
            push_map(evaluator, &map, mask.as_ref(), sample)?;
            *seconds += t.elapsed().as_secs_f64();
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let total_s = started.elapsed().as_secs_f64();
    let peak = peak_rss_mib();
    let mut reports = Vec::with_capacity(methods.len());
    for (i, evaluator) in evaluators.into_iter().enumerate() {
        let scores = evaluator.finish()?;
        let report = DenseBaselineReport {
            kind: "dense_baseline".into(),
            data: args.data.display().to_string(),
            category: category.name().to_string(),
            method: names[i].clone(),
            p,
            preset: args.preset.to_string(),
            seed: args.seed,
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
            score_s: score_s[i],
            total_s,
            methods_in_command: names.clone(),
            peak_rss_mib: peak,
        };
        let out = &args.out[i];
        std::fs::write(out.join("report.md"), dense_markdown(&report))
            .with_context(|| format!("writing {}", out.join("report.md").display()))?;
        ust_data::files::write_bytes_atomically(
            &out.join("report.json"),
            serde_json::to_string_pretty(&report)?.as_bytes(),
        )?;
        reports.push(report);
    }
    Ok(reports)
}

/// The report as Markdown.
pub fn dense_markdown(r: &DenseBaselineReport) -> String {
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
