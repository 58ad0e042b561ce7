//! `ust data`: inspect datasets. `ust data info PATH [--json]` says what a dataset folder holds
//! and runs every check of `ust-data` on it (each file decoded, masks against their images,
//! idx and batch headers); it exits with status 1 and the list of problems when any is found.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use rayon::prelude::*;
use serde::Serialize;
use ust_data::cifar::{detect_cifar10, load_cifar10};
use ust_data::image_io::{colour_channels, decode_image};
use ust_data::mnist::{is_mnist_dir, load_mnist};
use ust_data::mvtec::{CategoryReport, MinMax, discover_categories, inspect_category};
use ust_data::{LabeledImages, find_images_recursive};

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Describe and validate a dataset: MVTec AD layout (a folder of categories or one
    /// category), MNIST (idx files), CIFAR-10 (binary batches or class folders), or any folder
    /// of images.
    Info(InfoArgs),
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// The dataset folder.
    pub path: PathBuf,
    /// Write the report as JSON to FILE (`-`: on stdout, instead of the text).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Layout of the dataset; `auto` recognises it.
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,
    /// Fraction of train/good held out for validation (reported as the validation count).
    #[arg(long, default_value_t = 0.1)]
    pub validation_fraction: f64,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Auto,
    Mvtec,
    Mnist,
    Cifar10,
    ImageFolder,
}

pub fn run(command: DataCommand) -> Result<ExitCode> {
    match command {
        DataCommand::Info(args) => info(args),
    }
}

/// The whole report, as printed with `--json`.
#[derive(Debug, Serialize)]
struct InfoReport {
    path: PathBuf,
    format: Format,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    categories: Vec<CategoryReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    splits: Vec<SplitReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    images: Option<FolderReport>,
    /// Every problem found, each naming its file.
    problems: Vec<String>,
}

/// One split of a labelled dataset (MNIST, CIFAR-10).
#[derive(Debug, Serialize)]
struct SplitReport {
    split: &'static str,
    count: usize,
    width: usize,
    height: usize,
    channels: usize,
    /// (class name, count) in label order.
    per_class: Vec<(String, usize)>,
}

/// A plain folder of images.
#[derive(Debug, Serialize)]
struct FolderReport {
    count: usize,
    width: Option<MinMax>,
    height: Option<MinMax>,
    channels: Vec<u8>,
}

fn info(args: InfoArgs) -> Result<ExitCode> {
    if !(0.0..1.0).contains(&args.validation_fraction) {
        bail!(
            "--validation-fraction {} is not in [0, 1)",
            args.validation_fraction
        );
    }
    if !args.path.is_dir() {
        bail!("{}: not a folder", args.path.display());
    }
    let start = Instant::now();
    let format = match args.format {
        Format::Auto => detect_format(&args.path)?,
        f => f,
    };
    let mut report = InfoReport {
        path: args.path.clone(),
        format,
        categories: Vec::new(),
        splits: Vec::new(),
        images: None,
        problems: Vec::new(),
    };
    match format {
        Format::Mvtec => {
            let dirs = discover_categories(&args.path)?;
            for dir in &dirs {
                let category = inspect_category(dir, args.validation_fraction);
                report.problems.extend(category.problems.iter().cloned());
                report.categories.push(category);
            }
        }
        Format::Mnist => match load_mnist(&args.path) {
            Ok(m) => {
                report.splits = vec![
                    split_report("train", &m.train),
                    split_report("test", &m.test),
                ]
            }
            Err(e) => report.problems.push(e.to_string()),
        },
        Format::Cifar10 => match load_cifar10(&args.path) {
            Ok(c) => {
                report.splits = vec![
                    split_report("train", &c.train),
                    split_report("test", &c.test),
                ]
            }
            Err(e) => report.problems.push(e.to_string()),
        },
        Format::ImageFolder => {
            let (folder, problems) = inspect_folder(&args.path)?;
            report.images = Some(folder);
            report.problems = problems;
        }
        Format::Auto => unreachable!("resolved above"),
    }
    tracing::info!(
        "inspected {} in {:.2} s",
        args.path.display(),
        start.elapsed().as_secs_f64()
    );
    let to_stdout = args.json.as_deref() == Some(Path::new("-"));
    if !to_stdout {
        print_text(&report);
    }
    if let Some(path) = &args.json {
        crate::text::write_json(path, &report)?;
    }
    if report.problems.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        if to_stdout {
            eprintln!("{} problem(s) found", report.problems.len());
        }
        Ok(ExitCode::from(crate::EXIT_DATA_PROBLEMS))
    }
}

fn detect_format(path: &Path) -> Result<Format> {
    if is_mnist_dir(path) {
        return Ok(Format::Mnist);
    }
    if detect_cifar10(path).is_some() {
        return Ok(Format::Cifar10);
    }
    if discover_categories(path).is_ok() {
        return Ok(Format::Mvtec);
    }
    if find_images_recursive(path).is_ok() {
        return Ok(Format::ImageFolder);
    }
    bail!(
        "{}: not a recognised dataset (MVTec layout, MNIST idx files, CIFAR-10, or a folder of \
         png/jpg/jpeg/bmp images); use --format to force one",
        path.display()
    )
}

fn split_report(split: &'static str, data: &LabeledImages) -> SplitReport {
    SplitReport {
        split,
        count: data.len(),
        width: data.width,
        height: data.height,
        channels: data.channels,
        per_class: data
            .class_names
            .iter()
            .cloned()
            .zip(data.class_counts())
            .collect(),
    }
}

/// Decodes every image under `root` (in parallel) for sizes, channels and problems.
fn inspect_folder(root: &Path) -> Result<(FolderReport, Vec<String>)> {
    let paths = find_images_recursive(root)?;
    let results: Vec<_> = paths
        .par_iter()
        .map(|p| decode_image(p).map(|im| (im.width(), im.height(), colour_channels(&im))))
        .collect();
    let mut report = FolderReport {
        count: paths.len(),
        width: None,
        height: None,
        channels: Vec::new(),
    };
    let mut channels = BTreeSet::new();
    let mut problems = Vec::new();
    let extend = |r: Option<MinMax>, v: u32| match r {
        None => Some(MinMax { min: v, max: v }),
        Some(r) => Some(MinMax {
            min: r.min.min(v),
            max: r.max.max(v),
        }),
    };
    for result in results {
        match result {
            Ok((w, h, c)) => {
                report.width = extend(report.width, w);
                report.height = extend(report.height, h);
                channels.insert(c);
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    report.channels = channels.into_iter().collect();
    Ok((report, problems))
}

fn range(r: Option<MinMax>) -> String {
    match r {
        Some(MinMax { min, max }) if min == max => format!("{min}"),
        Some(MinMax { min, max }) => format!("{min}-{max}"),
        None => "-".into(),
    }
}

fn print_text(report: &InfoReport) {
    let fmt = serde_json::to_value(report.format)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    println!("{} ({fmt})", report.path.display());
    if !report.categories.is_empty() {
        println!(
            "{:<24} {:>6} {:>5} {:>9} {:>11} {:>6} {:>9} {:>9} {:>4}",
            "category",
            "train",
            "val",
            "test-good",
            "test-defect",
            "masks",
            "width",
            "height",
            "ch"
        );
        for c in &report.categories {
            let ch: Vec<String> = c.channels.iter().map(|v| v.to_string()).collect();
            println!(
                "{:<24} {:>6} {:>5} {:>9} {:>11} {:>6} {:>9} {:>9} {:>4}",
                c.name,
                c.train,
                c.validation,
                c.test_good,
                c.test_defect,
                c.masks,
                range(c.width),
                range(c.height),
                ch.join(",")
            );
            for (defect, counts) in &c.defect_types {
                println!(
                    "    {defect:<20} {:>4} images {:>4} masks",
                    counts.images, counts.masks
                );
            }
        }
    }
    for s in &report.splits {
        println!(
            "{}: {} images, {}x{}, {} channel(s)",
            s.split, s.count, s.width, s.height, s.channels
        );
        let classes: Vec<String> = s
            .per_class
            .iter()
            .map(|(n, c)| format!("{n} {c}"))
            .collect();
        println!("    {}", classes.join(", "));
    }
    if let Some(f) = &report.images {
        let ch: Vec<String> = f.channels.iter().map(|v| v.to_string()).collect();
        println!(
            "{} images, width {}, height {}, channels {}",
            f.count,
            range(f.width),
            range(f.height),
            ch.join(",")
        );
    }
    if report.problems.is_empty() {
        println!("no problem found");
    } else {
        println!("{} problem(s):", report.problems.len());
        for p in &report.problems {
            println!("  {p}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(path: &Path, w: u32, h: u32) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::GrayImage::from_pixel(w, h, image::Luma([100]))
            .save(path)
            .unwrap();
    }

    /// One MVTec-layout category: 3 train, 1 good test, 1 defect with its mask.
    fn category(root: &Path) {
        for i in 0..3 {
            png(&root.join(format!("train/good/{i}.png")), 8, 6);
        }
        png(&root.join("test/good/0.png"), 8, 6);
        png(&root.join("test/dent/0.png"), 8, 6);
        png(&root.join("ground_truth/dent/0_mask.png"), 8, 6);
    }

    fn args(path: &Path) -> InfoArgs {
        InfoArgs {
            path: path.to_path_buf(),
            json: Some("-".into()),
            format: Format::Auto,
            validation_fraction: 0.1,
        }
    }

    #[test]
    fn formats_are_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        category(&root.join("mvtec/widget"));
        assert_eq!(detect_format(&root.join("mvtec")).unwrap(), Format::Mvtec);
        assert_eq!(
            detect_format(&root.join("mvtec/widget")).unwrap(),
            Format::Mvtec
        );
        png(&root.join("cifar/train/cat/0.png"), 4, 4);
        png(&root.join("cifar/train/dog/0.png"), 4, 4);
        png(&root.join("cifar/test/cat/0.png"), 4, 4);
        png(&root.join("cifar/test/dog/0.png"), 4, 4);
        assert_eq!(detect_format(&root.join("cifar")).unwrap(), Format::Cifar10);
        std::fs::create_dir_all(root.join("mnist")).unwrap();
        std::fs::write(root.join("mnist/train-images-idx3-ubyte.gz"), b"").unwrap();
        assert_eq!(detect_format(&root.join("mnist")).unwrap(), Format::Mnist);
        png(&root.join("photos/a/b.png"), 4, 4);
        assert_eq!(
            detect_format(&root.join("photos")).unwrap(),
            Format::ImageFolder
        );
        std::fs::create_dir_all(root.join("empty")).unwrap();
        assert!(detect_format(&root.join("empty")).is_err());
    }

    #[test]
    fn exit_status_says_whether_problems_were_found() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("widget");
        category(&root);
        assert_eq!(info(args(&root)).unwrap(), ExitCode::SUCCESS);
        // A mask of another size than its image is a problem.
        png(&root.join("ground_truth/dent/0_mask.png"), 8, 7);
        assert_eq!(
            info(args(&root)).unwrap(),
            ExitCode::from(crate::EXIT_DATA_PROBLEMS)
        );
        // So is a truncated MNIST file.
        let mnist = dir.path().join("mnist");
        std::fs::create_dir_all(&mnist).unwrap();
        for name in ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"] {
            std::fs::write(mnist.join(name), [0, 0, 8, 3, 0]).unwrap();
        }
        assert_eq!(
            info(args(&mnist)).unwrap(),
            ExitCode::from(crate::EXIT_DATA_PROBLEMS)
        );
    }
}
