//! What a dataset folder holds, with every check of this crate run on it (`ust data info`):
//! the layout recognised ([`DatasetFormat`]), per MVTec-layout category its counts and image
//! sizes, per MNIST / CIFAR-10 split its classes, for a plain folder its image sizes, and every
//! problem found, each naming its file. [`InfoReport::text`] is the command's table.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use crate::cifar::{detect_cifar10, load_cifar10};
use crate::error::{DataError, Result};
use crate::folder::find_images_recursive;
use crate::image_io::{colour_channels, decode_image};
use crate::labeled::LabeledImages;
use crate::mnist::{is_mnist_dir, load_mnist};
use crate::mvtec::{CategoryReport, MinMax, discover_categories, inspect_category};

/// The layout of a dataset folder; `Auto` recognises it ([`detect_format`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum DatasetFormat {
    Auto,
    Mvtec,
    Mnist,
    Cifar10,
    ImageFolder,
}

impl DatasetFormat {
    /// The name the command line and the JSON report use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Mvtec => "mvtec",
            Self::Mnist => "mnist",
            Self::Cifar10 => "cifar10",
            Self::ImageFolder => "image-folder",
        }
    }
}

/// The whole report (`ust data info --json`).
#[derive(Debug, Serialize)]
pub struct InfoReport {
    pub path: PathBuf,
    pub format: DatasetFormat,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<CategoryReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub splits: Vec<SplitReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images: Option<FolderReport>,
    /// Every problem found, each naming its file.
    pub problems: Vec<String>,
}

/// One split of a labelled dataset (MNIST, CIFAR-10).
#[derive(Debug, Serialize)]
pub struct SplitReport {
    pub split: &'static str,
    pub count: usize,
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    /// (class name, count) in label order.
    pub per_class: Vec<(String, usize)>,
}

/// A plain folder of images.
#[derive(Debug, Serialize)]
pub struct FolderReport {
    pub count: usize,
    pub width: Option<MinMax>,
    pub height: Option<MinMax>,
    pub channels: Vec<u8>,
}

/// Describes and checks the dataset at `path` read as `format` (`Auto`: recognised).
/// `validation_fraction` (in `[0, 1)`, checked by the caller) sets the validation counts of
/// MVTec-layout categories. Problems in the data go into the report; errors are a folder that
/// is not one, or that is no dataset at all.
pub fn inspect_dataset(
    path: &Path,
    format: DatasetFormat,
    validation_fraction: f64,
) -> Result<InfoReport> {
    if !path.is_dir() {
        return Err(DataError::InvalidFormat {
            path: path.to_path_buf(),
            reason: "not a folder".into(),
        });
    }
    let format = match format {
        DatasetFormat::Auto => detect_format(path)?,
        f => f,
    };
    let mut report = InfoReport {
        path: path.to_path_buf(),
        format,
        categories: Vec::new(),
        splits: Vec::new(),
        images: None,
        problems: Vec::new(),
    };
    let splits = |train: &LabeledImages, test: &LabeledImages| {
        vec![split_report("train", train), split_report("test", test)]
    };
    match format {
        DatasetFormat::Mvtec => {
            for dir in &discover_categories(path)? {
                let category = inspect_category(dir, validation_fraction);
                report.problems.extend(category.problems.iter().cloned());
                report.categories.push(category);
            }
        }
        DatasetFormat::Mnist => match load_mnist(path) {
            Ok(m) => report.splits = splits(&m.train, &m.test),
            Err(e) => report.problems.push(e.to_string()),
        },
        DatasetFormat::Cifar10 => match load_cifar10(path) {
            Ok(c) => report.splits = splits(&c.train, &c.test),
            Err(e) => report.problems.push(e.to_string()),
        },
        DatasetFormat::ImageFolder => {
            let (folder, problems) = inspect_folder(path)?;
            report.images = Some(folder);
            report.problems = problems;
        }
        DatasetFormat::Auto => unreachable!("resolved above"),
    }
    Ok(report)
}

/// The layout of the dataset at `path`: MNIST idx files, CIFAR-10, an MVTec layout (a folder
/// of categories or one category), or any folder of images, tried in that order.
pub fn detect_format(path: &Path) -> Result<DatasetFormat> {
    if is_mnist_dir(path) {
        return Ok(DatasetFormat::Mnist);
    }
    if detect_cifar10(path).is_some() {
        return Ok(DatasetFormat::Cifar10);
    }
    if discover_categories(path).is_ok() {
        return Ok(DatasetFormat::Mvtec);
    }
    if find_images_recursive(path).is_ok() {
        return Ok(DatasetFormat::ImageFolder);
    }
    Err(DataError::InvalidFormat {
        path: path.to_path_buf(),
        reason: "not a recognised dataset (MVTec layout, MNIST idx files, CIFAR-10, or a \
                 folder of png/jpg/jpeg/bmp images); use --format to force one"
            .into(),
    })
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

/// `min` or `min-max`, `-` when there is no image.
fn range(r: Option<MinMax>) -> String {
    match r {
        Some(MinMax { min, max }) if min == max => format!("{min}"),
        Some(MinMax { min, max }) => format!("{min}-{max}"),
        None => "-".into(),
    }
}

fn joined<T: ToString>(values: &[T]) -> String {
    values
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

impl InfoReport {
    /// The report as `ust data info` prints it (one line per category, split or folder, then
    /// the problems), each line ending in a newline.
    pub fn text(&self) -> String {
        let mut t = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_text(&mut t);
        t
    }

    fn write_text(&self, t: &mut String) -> std::fmt::Result {
        writeln!(t, "{} ({})", self.path.display(), self.format.name())?;
        if !self.categories.is_empty() {
            writeln!(
                t,
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
            )?;
            for c in &self.categories {
                writeln!(
                    t,
                    "{:<24} {:>6} {:>5} {:>9} {:>11} {:>6} {:>9} {:>9} {:>4}",
                    c.name,
                    c.train,
                    c.validation,
                    c.test_good,
                    c.test_defect,
                    c.masks,
                    range(c.width),
                    range(c.height),
                    joined(&c.channels)
                )?;
                for (defect, counts) in &c.defect_types {
                    writeln!(
                        t,
                        "    {defect:<20} {:>4} images {:>4} masks",
                        counts.images, counts.masks
                    )?;
                }
            }
        }
        for s in &self.splits {
            writeln!(
                t,
                "{}: {} images, {}x{}, {} channel(s)",
                s.split, s.count, s.width, s.height, s.channels
            )?;
            let classes: Vec<String> = s
                .per_class
                .iter()
                .map(|(n, c)| format!("{n} {c}"))
                .collect();
            writeln!(t, "    {}", classes.join(", "))?;
        }
        if let Some(f) = &self.images {
            writeln!(
                t,
                "{} images, width {}, height {}, channels {}",
                f.count,
                range(f.width),
                range(f.height),
                joined(&f.channels)
            )?;
        }
        if self.problems.is_empty() {
            writeln!(t, "no problem found")?;
        } else {
            writeln!(t, "{} problem(s):", self.problems.len())?;
            for p in &self.problems {
                writeln!(t, "  {p}")?;
            }
        }
        Ok(())
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

    #[test]
    fn formats_are_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        category(&root.join("mvtec/widget"));
        assert_eq!(
            detect_format(&root.join("mvtec")).unwrap(),
            DatasetFormat::Mvtec
        );
        assert_eq!(
            detect_format(&root.join("mvtec/widget")).unwrap(),
            DatasetFormat::Mvtec
        );
        png(&root.join("cifar/train/cat/0.png"), 4, 4);
        png(&root.join("cifar/train/dog/0.png"), 4, 4);
        png(&root.join("cifar/test/cat/0.png"), 4, 4);
        png(&root.join("cifar/test/dog/0.png"), 4, 4);
        assert_eq!(
            detect_format(&root.join("cifar")).unwrap(),
            DatasetFormat::Cifar10
        );
        std::fs::create_dir_all(root.join("mnist")).unwrap();
        std::fs::write(root.join("mnist/train-images-idx3-ubyte.gz"), b"").unwrap();
        assert_eq!(
            detect_format(&root.join("mnist")).unwrap(),
            DatasetFormat::Mnist
        );
        png(&root.join("photos/a/b.png"), 4, 4);
        assert_eq!(
            detect_format(&root.join("photos")).unwrap(),
            DatasetFormat::ImageFolder
        );
        std::fs::create_dir_all(root.join("empty")).unwrap();
        assert!(detect_format(&root.join("empty")).is_err());
        // The names of the JSON report and of the command line are one.
        for f in [
            DatasetFormat::Auto,
            DatasetFormat::Mvtec,
            DatasetFormat::Mnist,
            DatasetFormat::Cifar10,
            DatasetFormat::ImageFolder,
        ] {
            assert_eq!(serde_json::to_value(f).unwrap(), f.name());
        }
    }

    #[test]
    fn problems_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("widget");
        category(&root);
        let auto = DatasetFormat::Auto;
        let report = inspect_dataset(&root, auto, 0.1).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert!(report.text().ends_with("no problem found\n"));
        // A mask of another size than its image is a problem.
        png(&root.join("ground_truth/dent/0_mask.png"), 8, 7);
        let report = inspect_dataset(&root, auto, 0.1).unwrap();
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert!(report.text().contains("1 problem(s):\n"));
        // So is a truncated MNIST file.
        let mnist = dir.path().join("mnist");
        std::fs::create_dir_all(&mnist).unwrap();
        for name in ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"] {
            std::fs::write(mnist.join(name), [0, 0, 8, 3, 0]).unwrap();
        }
        assert!(
            !inspect_dataset(&mnist, auto, 0.1)
                .unwrap()
                .problems
                .is_empty()
        );
        let err = inspect_dataset(&mnist.join("absent"), auto, 0.1).unwrap_err();
        assert!(err.to_string().ends_with(": not a folder"), "{err}");
    }
}
