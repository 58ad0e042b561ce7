//! `ust teacher quality`: a quick, rerunnable check of a teacher's descriptors — one-class
//! MNIST with a 1-NN on them (METHOD.md §7, the Table 2 protocol at reduced size): for each
//! digit, the descriptors of (a seeded subset of) its training images are the reference; every
//! test image scores its distance to the nearest reference descriptor; AUROC with the digit
//! normal and the nine others anomalous. Images are resized from 28×28 to the teacher's p×p,
//! one descriptor per image.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};
use clap::Args;
use serde::Serialize;
use ust_baselines::{NearestNeighbor, NearestNeighborConfig, descriptors_view};
use ust_data::Size;
use ust_data::mnist::load_mnist;

#[derive(Args, Debug)]
pub struct QualityArgs {
    /// The teacher file.
    pub teacher: PathBuf,
    /// The MNIST folder (the four idx files, gzipped or not) [default: $UST_SHARED/data/mnist].
    #[arg(long)]
    pub mnist: Option<PathBuf>,
    /// Training images per digit used as the reference (a seeded subset).
    #[arg(long, default_value_t = 1000)]
    pub train_per_class: usize,
    /// Test images scored (a seeded subset of the 10 000).
    #[arg(long, default_value_t = 2000)]
    pub test_images: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also write the result as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct QualityReport {
    teacher: String,
    patch_size: usize,
    protocol: String,
    train_per_class: usize,
    test_images: usize,
    seed: u64,
    auroc: Vec<f64>,
    mean_auroc: f64,
    seconds: f64,
}

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

pub fn run(args: QualityArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let device = Device::Cpu;
    let teacher = ust_detector::load_teacher(&args.teacher, &device)
        .with_context(|| format!("loading {}", args.teacher.display()))?;
    let p = teacher.patch_size();
    let dir = args
        .mnist
        .clone()
        .unwrap_or_else(|| ust_detector::config::shared_dir().join("data/mnist"));
    let mnist =
        load_mnist(&dir).with_context(|| format!("reading MNIST from {}", dir.display()))?;
    if args.train_per_class == 0 || args.test_images == 0 {
        bail!("--train-per-class and --test-images must be positive");
    }
    let size = Some(Size::new(p as u32, p as u32));
    let describe = |set: &ust_data::LabeledImages, idx: &[usize]| -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(idx.len() * teacher.descriptor_dim());
        for chunk in idx.chunks(256) {
            let images: Vec<_> = chunk.iter().map(|&i| set.image_rgb(i, size)).collect();
            let batch = ust_data::batch_to_tensor(&images, &device)?;
            let d: Tensor = teacher.descriptors(&batch)?;
            out.extend(d.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    };
    let test_idx = seeded_subset(mnist.test.len(), args.test_images, args.seed);
    let test = describe(&mnist.test, &test_idx)?;
    let d = teacher.descriptor_dim();
    let test_view = descriptors_view(&test, test_idx.len(), d)?;
    let mut auroc = Vec::with_capacity(10);
    for class in 0..10u8 {
        let of_class = mnist.train.indices_of_class(class);
        let pick = seeded_subset(
            of_class.len(),
            args.train_per_class,
            args.seed + 1 + class as u64,
        );
        let idx: Vec<usize> = pick.iter().map(|&i| of_class[i]).collect();
        let train = describe(&mnist.train, &idx)?;
        let nn = NearestNeighbor::fit(
            &NearestNeighborConfig::default(),
            descriptors_view(&train, idx.len(), d)?,
        )?;
        let scores = nn.score(test_view)?;
        let anomalous: Vec<bool> = test_idx
            .iter()
            .map(|&i| mnist.test.labels[i] != class)
            .collect();
        let a = ust_metrics::auroc(&scores, &anomalous)?;
        println!("digit {class}: AUROC {a:.4}");
        auroc.push(a);
    }
    let mean_auroc = auroc.iter().sum::<f64>() / auroc.len() as f64;
    let report = QualityReport {
        teacher: args.teacher.display().to_string(),
        patch_size: p,
        protocol: "one-class MNIST, 1-NN on teacher descriptors (Euclidean), images resized to p×p"
            .into(),
        train_per_class: args.train_per_class,
        test_images: test_idx.len(),
        seed: args.seed,
        auroc,
        mean_auroc,
        seconds: started.elapsed().as_secs_f64(),
    };
    println!(
        "mean AUROC {:.4} over 10 digits ({} reference images per digit, {} test images, {:.0} s)",
        report.mean_auroc, report.train_per_class, report.test_images, report.seconds
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
