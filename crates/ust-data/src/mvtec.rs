//! Datasets in the MVTec AD layout (the real MVTec AD, or any dataset arranged like it):
//!
//! ```text
//! CATEGORY/train/good/*.png                    anomaly-free training images
//! CATEGORY/test/good/*.png                     anomaly-free test images
//! CATEGORY/test/DEFECT/NAME.png                defective test images, one folder per type
//! CATEGORY/ground_truth/DEFECT/NAME_mask.png   their masks (0 normal, 255 anomalous)
//! ```
//!
//! Images may be PNG, JPEG or BMP, grey or colour, of any size; a mask is matched to its image
//! by file stem (so `test/crack/x.jpg` goes with `ground_truth/crack/x_mask.png`).
//!
//! [`MvtecCategory::open`] finds the files and checks the layout (no decoding);
//! [`MvtecCategory::validate`] decodes every file and checks mask sizes; images are loaded
//! through an [`ImageCache`], in parallel, resized bilinearly to the students' input size
//! ([`DEFAULT_IMAGE_SIZE`], 256×256), with their original size kept so that anomaly maps can
//! be written back at full resolution.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use serde::Serialize;

use crate::cache::ImageCache;
use crate::error::{DataError, Result};
use crate::folder::{list_images, list_subdirs};
use crate::image_io::{
    BinaryMask, LoadedImage, Size, colour_channels, decode_image, image_size, load_mask,
};
use crate::split::{fraction_ok, seeded_split};

/// The students' input size of the paper (images zoomed to 256×256).
pub const DEFAULT_IMAGE_SIZE: Size = Size::square(256);

/// Name of the anomaly-free folders (`train/good`, `test/good`).
pub const GOOD: &str = "good";

/// One test image with its ground truth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestSample {
    /// The image file.
    pub path: PathBuf,
    /// The name of its `test/` subfolder: [`GOOD`] or a defect type.
    pub defect_type: String,
    /// Its mask in `ground_truth/DEFECT/`; `None` for good images.
    pub mask_path: Option<PathBuf>,
}

impl TestSample {
    /// Whether the image is anomaly-free (from `test/good`).
    pub fn is_good(&self) -> bool {
        self.defect_type == GOOD
    }

    /// The file stem (`000` for `test/crack/000.png`).
    pub fn name(&self) -> &str {
        self.path.file_stem().and_then(|s| s.to_str()).unwrap_or("")
    }

    /// The ground truth at the image's original size, binarised at 128. For a good image, an
    /// all-zero mask of the image's size (read from the file header). Errors: unreadable
    /// mask or image, a mask whose size differs from the image's, a defect sample without mask.
    pub fn load_mask(&self) -> Result<BinaryMask> {
        let image_size = image_size(&self.path)?;
        match &self.mask_path {
            None if self.is_good() => Ok(BinaryMask::zeros(image_size)),
            None => Err(DataError::MissingMask {
                path: self.path.clone(),
                expected: expected_mask_path(&self.path, &self.defect_type),
            }),
            Some(mask_path) => {
                let mask = load_mask(mask_path)?;
                if mask.size() != image_size {
                    return Err(DataError::MaskSizeMismatch {
                        path: mask_path.clone(),
                        image: self.path.clone(),
                        mask_size: mask.size(),
                        image_size,
                    });
                }
                Ok(mask)
            }
        }
    }

    /// The ground truth resampled to `size` (nearest neighbour), e.g. 256×256 for training-size
    /// evaluation.
    pub fn load_mask_resized(&self, size: Size) -> Result<BinaryMask> {
        Ok(self.load_mask()?.resize_nearest(size))
    }
}

/// Anomaly-free training images split into a part to train on and a validation part (used to
/// calibrate the anomaly scores, METHOD.md §6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrainValidationSplit {
    pub train: Vec<PathBuf>,
    pub validation: Vec<PathBuf>,
}

/// One category of an MVTec-layout dataset: its files, found and checked, plus an image cache.
#[derive(Clone, Debug)]
pub struct MvtecCategory {
    name: String,
    root: PathBuf,
    train: Vec<PathBuf>,
    test: Vec<TestSample>,
    cache: ImageCache,
}

/// What [`MvtecCategory::scan`] found: the usable part of a category and the problems found.
#[derive(Debug)]
pub struct CategoryScan {
    /// The category without the samples that have problems (defect images without masks).
    pub category: MvtecCategory,
    /// Layout problems: empty test folders, defect images without mask, masks without image.
    pub problems: Vec<DataError>,
}

/// A category's name: its folder's name (the whole path when it has none, e.g. `/`).
fn folder_name(root: &Path) -> String {
    root.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| root.display().to_string())
}

impl MvtecCategory {
    /// Finds the files of the category at `root` and checks the layout; the first problem
    /// found is an error: `train/good` or `test` missing ([`DataError::Missing`]), an empty
    /// image folder ([`DataError::EmptyFolder`]), a defect image without mask
    /// ([`DataError::MissingMask`]), a mask without image ([`DataError::OrphanMask`]).
    /// Files are not decoded: see [`MvtecCategory::validate`].
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let scan = Self::scan(root)?;
        match scan.problems.into_iter().next() {
            Some(problem) => Err(problem),
            None => Ok(scan.category),
        }
    }

    /// Like [`MvtecCategory::open`] but collects the problems that do not prevent using the
    /// rest of the category. Errors only when `root`, `train/good` or `test` cannot be read,
    /// are missing, or `train/good` holds no image.
    pub fn scan(root: impl AsRef<Path>) -> Result<CategoryScan> {
        let root = root.as_ref().to_path_buf();
        let name = folder_name(&root);
        if !root.is_dir() {
            return Err(DataError::Missing {
                path: root,
                what: "category folder",
            });
        }
        let train_dir = root.join("train").join(GOOD);
        if !train_dir.is_dir() {
            return Err(DataError::Missing {
                path: train_dir,
                what: "train/good folder (anomaly-free training images)",
            });
        }
        let train = list_images(&train_dir)?;
        if train.is_empty() {
            return Err(DataError::EmptyFolder { path: train_dir });
        }
        let test_dir = root.join("test");
        if !test_dir.is_dir() {
            return Err(DataError::Missing {
                path: test_dir,
                what: "test folder",
            });
        }

        let mut problems = Vec::new();
        let mut test = Vec::new();
        let type_dirs = list_subdirs(&test_dir)?;
        if type_dirs.is_empty() {
            problems.push(DataError::EmptyFolder {
                path: test_dir.clone(),
            });
        }
        let gt_root = root.join("ground_truth");
        let mut test_types = BTreeSet::new();
        for dir in &type_dirs {
            let defect_type = dir_name(dir);
            test_types.insert(defect_type.clone());
            let images = list_images(dir)?;
            if images.is_empty() {
                problems.push(DataError::EmptyFolder { path: dir.clone() });
                continue;
            }
            if defect_type == GOOD {
                test.extend(images.into_iter().map(|path| TestSample {
                    path,
                    defect_type: defect_type.clone(),
                    mask_path: None,
                }));
                continue;
            }
            let gt_dir = gt_root.join(&defect_type);
            let mut masks = if gt_dir.is_dir() {
                masks_by_stem(&gt_dir)?
            } else {
                HashMap::new()
            };
            for path in images {
                let stem = file_stem(&path);
                match masks.remove(&stem) {
                    Some(mask_path) => test.push(TestSample {
                        path,
                        defect_type: defect_type.clone(),
                        mask_path: Some(mask_path),
                    }),
                    None => problems.push(DataError::MissingMask {
                        expected: gt_dir.join(format!("{stem}_mask.png")),
                        path,
                    }),
                }
            }
            let mut orphans: Vec<(String, PathBuf)> = masks.into_iter().collect();
            orphans.sort();
            problems.extend(
                orphans
                    .into_iter()
                    .map(|(stem, path)| DataError::OrphanMask {
                        path,
                        image_dir: dir.clone(),
                        stem,
                    }),
            );
        }
        // Mask folders of defect types that have no test folder.
        if gt_root.is_dir() {
            for gt_dir in list_subdirs(&gt_root)? {
                let defect_type = dir_name(&gt_dir);
                if !test_types.contains(&defect_type) && defect_type != GOOD {
                    problems.push(DataError::Missing {
                        path: test_dir.join(&defect_type),
                        what: "test folder for the masks in ground_truth/ of this defect type",
                    });
                }
            }
        }
        Ok(CategoryScan {
            category: MvtecCategory {
                name,
                root,
                train,
                test,
                cache: ImageCache::new(),
            },
            problems,
        })
    }

    /// The training images of `root` for training alone, which needs nothing else: an
    /// MVTec-layout category's `train/good` (its `test/` and `ground_truth/` may be missing,
    /// empty or incomplete: they are not read), or, without a `train/` folder, the image files
    /// of `root` itself (a plain folder of good images). The result has no test samples.
    pub fn open_for_training(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let name = folder_name(&root);
        if !root.is_dir() {
            return Err(DataError::Missing {
                path: root,
                what: "folder of training images",
            });
        }
        let train_dir = if root.join("train").is_dir() {
            let dir = root.join("train").join(GOOD);
            if !dir.is_dir() {
                return Err(DataError::Missing {
                    path: dir,
                    what: "train/good folder (anomaly-free training images)",
                });
            }
            dir
        } else {
            root.clone()
        };
        let train = list_images(&train_dir)?;
        if train.is_empty() {
            return Err(DataError::EmptyFolder { path: train_dir });
        }
        Ok(MvtecCategory {
            name,
            root,
            train,
            test: Vec::new(),
            cache: ImageCache::new(),
        })
    }

    /// Replaces the image cache (share one between categories, or pass
    /// [`ImageCache::disabled`]).
    pub fn with_cache(mut self, cache: ImageCache) -> Self {
        self.cache = cache;
        self
    }

    /// The category's folder name (`bottle`, `magnetic_tile`).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The anomaly-free training images (`train/good`), sorted.
    pub fn train_images(&self) -> &[PathBuf] {
        &self.train
    }

    /// All test images, sorted by defect type folder and then file name.
    pub fn test_samples(&self) -> &[TestSample] {
        &self.test
    }

    /// The defect types (test folders other than `good`), sorted.
    pub fn defect_types(&self) -> Vec<&str> {
        let set: BTreeSet<&str> = self
            .test
            .iter()
            .filter(|s| !s.is_good())
            .map(|s| s.defect_type.as_str())
            .collect();
        set.into_iter().collect()
    }

    /// Number of good test images.
    pub fn test_good_count(&self) -> usize {
        self.test.iter().filter(|s| s.is_good()).count()
    }

    /// Number of defective test images.
    pub fn test_defect_count(&self) -> usize {
        self.test.len() - self.test_good_count()
    }

    pub fn cache(&self) -> &ImageCache {
        &self.cache
    }

    /// Carves a validation part out of `train/good`: `round(fraction · n)` images (at least one
    /// when `fraction > 0`, never all) chosen by a shuffle seeded with `seed`; both parts sorted.
    /// Errors when `fraction` is not in `[0, 1)`.
    pub fn split_validation(&self, fraction: f64, seed: u64) -> Result<TrainValidationSplit> {
        if !fraction_ok(fraction) {
            return Err(DataError::config(
                &self.root,
                format!("validation fraction {fraction} is not in [0, 1)"),
            ));
        }
        let split = seeded_split(self.train.len(), fraction, seed);
        Ok(TrainValidationSplit {
            train: split.train.iter().map(|&i| self.train[i].clone()).collect(),
            validation: split
                .validation
                .iter()
                .map(|&i| self.train[i].clone())
                .collect(),
        })
    }

    /// Loads images (any paths, typically from [`MvtecCategory::train_images`], a split or
    /// the test samples) to three channels in `[0, 1]`, resized bilinearly to `size` when
    /// given; decoded in parallel and kept in the category's cache.
    pub fn load(&self, paths: &[PathBuf], size: Option<Size>) -> Result<Vec<Arc<LoadedImage>>> {
        self.cache.load_many(paths, size)
    }

    /// Decodes every image and mask (in parallel, without caching) and checks that each mask
    /// has its image's size. Returns the statistics and every problem found.
    pub fn validate(&self) -> CategoryCheck {
        enum Item<'a> {
            Image(&'a Path),
            Sample(&'a TestSample),
        }
        let items: Vec<Item> = self
            .train
            .iter()
            .map(|p| Item::Image(p))
            .chain(self.test.iter().map(Item::Sample))
            .collect();
        let results: Vec<std::result::Result<(Size, u8), DataError>> = items
            .par_iter()
            .map(|item| {
                let path = match item {
                    Item::Image(p) => *p,
                    Item::Sample(s) => s.path.as_path(),
                };
                let image = decode_image(path)?;
                let size = Size::new(image.width(), image.height());
                let channels = colour_channels(&image);
                drop(image);
                if let Item::Sample(TestSample {
                    mask_path: Some(mask_path),
                    ..
                }) = item
                {
                    let mask = load_mask(mask_path)?;
                    if mask.size() != size {
                        return Err(DataError::MaskSizeMismatch {
                            path: mask_path.clone(),
                            image: path.to_path_buf(),
                            mask_size: mask.size(),
                            image_size: size,
                        });
                    }
                }
                Ok((size, channels))
            })
            .collect();
        let mut check = CategoryCheck::default();
        for result in results {
            match result {
                Ok((size, channels)) => check.record(size, channels),
                Err(e) => check.problems.push(e),
            }
        }
        check
    }
}

/// What [`MvtecCategory::validate`] found by decoding every file.
#[derive(Debug, Default)]
pub struct CategoryCheck {
    /// Smallest and largest width over the decodable images, `None` if none decoded.
    pub width: Option<MinMax>,
    pub height: Option<MinMax>,
    /// The colour channel counts seen (1 grey, 3 colour).
    pub channels: BTreeSet<u8>,
    pub problems: Vec<DataError>,
}

impl CategoryCheck {
    fn record(&mut self, size: Size, channels: u8) {
        self.width = Some(MinMax::extend(self.width, size.width));
        self.height = Some(MinMax::extend(self.height, size.height));
        self.channels.insert(channels);
    }
}

/// A range of observed values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MinMax {
    pub min: u32,
    pub max: u32,
}

impl MinMax {
    fn extend(range: Option<MinMax>, v: u32) -> MinMax {
        match range {
            None => MinMax { min: v, max: v },
            Some(r) => MinMax {
                min: r.min.min(v),
                max: r.max.max(v),
            },
        }
    }
}

/// Counts of one defect type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DefectTypeCounts {
    pub images: usize,
    pub masks: usize,
}

/// Everything `ust data info` reports about one category.
#[derive(Clone, Debug, Serialize)]
pub struct CategoryReport {
    pub name: String,
    pub path: PathBuf,
    /// Images in `train/good`.
    pub train: usize,
    /// How many of them the validation split (the given fraction) takes.
    pub validation: usize,
    pub test_good: usize,
    pub test_defect: usize,
    pub masks: usize,
    pub defect_types: BTreeMap<String, DefectTypeCounts>,
    pub width: Option<MinMax>,
    pub height: Option<MinMax>,
    pub channels: Vec<u8>,
    /// One message per problem, each naming its file.
    pub problems: Vec<String>,
}

/// Scans and validates the category at `root` (see [`MvtecCategory::scan`] and
/// [`MvtecCategory::validate`]) and summarises it; errors that stop the scan become the
/// report's only problem. The validation count uses `validation_fraction`.
pub fn inspect_category(root: &Path, validation_fraction: f64) -> CategoryReport {
    let mut report = CategoryReport {
        name: dir_name(root),
        path: root.to_path_buf(),
        train: 0,
        validation: 0,
        test_good: 0,
        test_defect: 0,
        masks: 0,
        defect_types: BTreeMap::new(),
        width: None,
        height: None,
        channels: Vec::new(),
        problems: Vec::new(),
    };
    let scan = match MvtecCategory::scan(root) {
        Ok(scan) => scan,
        Err(e) => {
            report.problems.push(e.to_string());
            return report;
        }
    };
    let category = scan.category;
    report.train = category.train.len();
    report.validation = crate::split::validation_count(category.train.len(), validation_fraction);
    report.test_good = category.test_good_count();
    report.test_defect = category.test_defect_count();
    for sample in category.test.iter().filter(|s| !s.is_good()) {
        let counts = report
            .defect_types
            .entry(sample.defect_type.clone())
            .or_insert(DefectTypeCounts {
                images: 0,
                masks: 0,
            });
        counts.images += 1;
        counts.masks += usize::from(sample.mask_path.is_some());
    }
    // Defect images without mask were left out of the category: count them as images.
    for problem in &scan.problems {
        if let DataError::MissingMask { path, .. } = problem {
            let defect_type = path.parent().map(dir_name).unwrap_or_default();
            report
                .defect_types
                .entry(defect_type)
                .or_insert(DefectTypeCounts {
                    images: 0,
                    masks: 0,
                })
                .images += 1;
            report.test_defect += 1;
        }
    }
    report.masks = report.defect_types.values().map(|c| c.masks).sum();
    let check = category.validate();
    report.width = check.width;
    report.height = check.height;
    report.channels = check.channels.into_iter().collect();
    report.problems = scan
        .problems
        .iter()
        .chain(&check.problems)
        .map(|e| e.to_string())
        .collect();
    report
}

/// The category folder a user named: `data/category`, or `data` itself without a category.
/// Errors, saying what to pass, when that folder has no `train/`.
pub fn category_dir(data: &Path, category: Option<&str>) -> Result<PathBuf> {
    let dir = match category {
        Some(c) => data.join(c),
        None => data.to_path_buf(),
    };
    if dir.join("train").is_dir() {
        return Ok(dir);
    }
    let reason = match category {
        Some(_) => "not an MVTec-layout category (no train/ folder)",
        None => {
            "no train/ folder: pass --category NAME for a dataset root, or the category folder \
             itself"
        }
    };
    Err(DataError::invalid(dir, reason))
}

/// Whether `dir` looks like a category (it has a `train` or a `test` folder).
pub fn is_category_dir(dir: &Path) -> bool {
    dir.join("train").is_dir() || dir.join("test").is_dir()
}

/// The categories under `root`: `root` itself when it is a category, otherwise its subfolders
/// that are ([`is_category_dir`]), sorted. Errors when there is none.
pub fn discover_categories(root: &Path) -> Result<Vec<PathBuf>> {
    if !root.is_dir() {
        return Err(DataError::Missing {
            path: root.to_path_buf(),
            what: "dataset folder",
        });
    }
    if is_category_dir(root) {
        return Ok(vec![root.to_path_buf()]);
    }
    let categories: Vec<PathBuf> = list_subdirs(root)?
        .into_iter()
        .filter(|d| is_category_dir(d))
        .collect();
    if categories.is_empty() {
        return Err(DataError::invalid(
            root,
            "no MVTec-layout category found (a folder with train/good and test/)",
        ));
    }
    Ok(categories)
}

/// Opens every category under `root` (see [`discover_categories`], [`MvtecCategory::open`]).
pub fn open_categories(root: &Path) -> Result<Vec<MvtecCategory>> {
    discover_categories(root)?
        .iter()
        .map(MvtecCategory::open)
        .collect()
}

/// Masks in `dir`, keyed by the stem of their image (`x_mask.png` → `x`).
fn masks_by_stem(dir: &Path) -> Result<HashMap<String, PathBuf>> {
    let mut masks = HashMap::new();
    for path in list_images(dir)? {
        let stem = file_stem(&path);
        if let Some(image_stem) = stem.strip_suffix("_mask") {
            // Prefer PNG (lossless) when a mask exists in several formats.
            let is_png = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("png"));
            if is_png || !masks.contains_key(image_stem) {
                masks.insert(image_stem.to_string(), path);
            }
        }
    }
    Ok(masks)
}

/// `CATEGORY/ground_truth/DEFECT/NAME_mask.png` for `CATEGORY/test/DEFECT/NAME.ext`.
fn expected_mask_path(image: &Path, defect_type: &str) -> PathBuf {
    let category = image
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .unwrap_or(Path::new(""));
    category
        .join("ground_truth")
        .join(defect_type)
        .join(format!("{}_mask.png", file_stem(image)))
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn dir_name(path: &Path) -> String {
    path.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_category_folder_needs_train_and_the_error_says_what_to_pass() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("bottle/train/good")).unwrap();
        let bottle = root.path().join("bottle");
        assert_eq!(category_dir(root.path(), Some("bottle")).unwrap(), bottle);
        assert_eq!(category_dir(&bottle, None).unwrap(), bottle);
        let err = category_dir(root.path(), Some("cable"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cable") && err.contains("no train/ folder"),
            "{err}"
        );
        let err = category_dir(root.path(), None).unwrap_err().to_string();
        assert!(err.contains("--category NAME"), "{err}");
    }

    fn gray_png(path: &Path, w: u32, h: u32, value: u8) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::GrayImage::from_pixel(w, h, image::Luma([value]))
            .save(path)
            .unwrap();
    }

    fn rgb_image(path: &Path, w: u32, h: u32) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8 * 5, y as u8 * 7, 9]))
            .save(path)
            .unwrap();
    }

    /// A mask with 255 in columns x0..x1 of rows y0..y1, 0 elsewhere.
    fn mask_png(path: &Path, w: u32, h: u32, (x0, y0, x1, y1): (u32, u32, u32, u32)) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::GrayImage::from_fn(w, h, |x, y| {
            image::Luma([if (x0..x1).contains(&x) && (y0..y1).contains(&y) {
                255
            } else {
                0
            }])
        })
        .save(path)
        .unwrap();
    }

    /// `root`: 5 train images, 2 good test images, crack (2, png) and hole (1, bmp) defects,
    /// all 40×30.
    fn make_category(root: &Path) {
        for i in 0..5 {
            gray_png(
                &root.join(format!("train/good/{i:03}.png")),
                40,
                30,
                100 + i as u8,
            );
        }
        gray_png(&root.join("test/good/000.png"), 40, 30, 10);
        gray_png(&root.join("test/good/001.png"), 40, 30, 20);
        rgb_image(&root.join("test/crack/000.png"), 40, 30);
        rgb_image(&root.join("test/crack/001.png"), 40, 30);
        rgb_image(&root.join("test/hole/000.bmp"), 40, 30);
        mask_png(
            &root.join("ground_truth/crack/000_mask.png"),
            40,
            30,
            (4, 2, 10, 6),
        );
        mask_png(
            &root.join("ground_truth/crack/001_mask.png"),
            40,
            30,
            (0, 0, 40, 1),
        );
        mask_png(
            &root.join("ground_truth/hole/000_mask.png"),
            40,
            30,
            (20, 10, 21, 11),
        );
    }

    #[test]
    fn open_finds_every_file_with_its_mask() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("widget");
        make_category(&root);
        let cat = MvtecCategory::open(&root).unwrap();
        assert_eq!(cat.name(), "widget");
        assert_eq!(cat.train_images().len(), 5);
        assert_eq!(cat.test_good_count(), 2);
        assert_eq!(cat.test_defect_count(), 3);
        assert_eq!(cat.defect_types(), vec!["crack", "hole"]);
        let summary: Vec<(String, &str, bool)> = cat
            .test_samples()
            .iter()
            .map(|s| (s.defect_type.clone(), s.name(), s.mask_path.is_some()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("crack".into(), "000", true),
                ("crack".into(), "001", true),
                ("good".into(), "000", false),
                ("good".into(), "001", false),
                ("hole".into(), "000", true),
            ]
        );
        assert_eq!(
            cat.test_samples()[4].mask_path.as_deref(),
            Some(root.join("ground_truth/hole/000_mask.png").as_path())
        );
        assert!(cat.validate().problems.is_empty());
    }

    #[test]
    fn masks_load_at_original_size_and_resize_nearest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("widget");
        make_category(&root);
        let cat = MvtecCategory::open(&root).unwrap();
        let crack = &cat.test_samples()[0];
        let mask = crack.load_mask().unwrap();
        assert_eq!(mask.size(), Size::new(40, 30));
        assert_eq!(mask.count_anomalous(), 6 * 4);
        assert!(mask.is_anomalous(4, 2) && mask.is_anomalous(9, 5));
        assert!(!mask.is_anomalous(10, 5) && !mask.is_anomalous(4, 6));
        // Halving: output (x, y) takes source (2x + 1, 2y + 1); the rectangle 4..10 x 2..6
        // keeps output columns 2..5 and rows 1..3.
        let half = crack.load_mask_resized(Size::new(20, 15)).unwrap();
        assert_eq!(half.count_anomalous(), 3 * 2);
        assert!(half.is_anomalous(2, 1) && half.is_anomalous(4, 2) && !half.is_anomalous(5, 2));
        let good = &cat.test_samples()[2];
        let zeros = good.load_mask().unwrap();
        assert_eq!(zeros.size(), Size::new(40, 30));
        assert_eq!(zeros.count_anomalous(), 0);
    }

    #[test]
    fn loading_resizes_replicates_grey_and_caches() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("widget");
        make_category(&root);
        let cat = MvtecCategory::open(&root).unwrap();
        let imgs = cat
            .load(cat.train_images(), Some(DEFAULT_IMAGE_SIZE))
            .unwrap();
        assert_eq!(imgs.len(), 5);
        for (i, img) in imgs.iter().enumerate() {
            assert_eq!(img.original_size, Size::new(40, 30));
            assert_eq!(img.original_channels, 1);
            assert_eq!(img.image.size(), DEFAULT_IMAGE_SIZE);
            assert_eq!(img.image.channels(), 3);
            let expected = (100 + i) as f32 / 255.0;
            assert!(img.image.data().iter().all(|v| (v - expected).abs() < 1e-6));
        }
        assert_eq!(cat.cache().len(), 5);
        let again = cat
            .load(&cat.train_images()[..1], Some(DEFAULT_IMAGE_SIZE))
            .unwrap();
        assert!(Arc::ptr_eq(&again[0], &imgs[0]));
        // The colour test image at its own size keeps its pixels: x * 5 / 255 in red.
        let test_paths: Vec<PathBuf> = cat.test_samples().iter().map(|s| s.path.clone()).collect();
        let crack = &cat.load(&test_paths[..1], None).unwrap()[0];
        assert_eq!(crack.original_channels, 3);
        assert_eq!(crack.image.get(0, 3, 7), 35.0 / 255.0);
        assert_eq!(crack.image.get(1, 3, 7), 21.0 / 255.0);
    }

    #[test]
    fn validation_split_is_seeded_and_partitions_train() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("widget");
        make_category(&root);
        let cat = MvtecCategory::open(&root).unwrap();
        let s = cat.split_validation(0.4, 11).unwrap();
        assert_eq!((s.train.len(), s.validation.len()), (3, 2));
        let mut all: Vec<PathBuf> = s.train.iter().chain(&s.validation).cloned().collect();
        all.sort();
        assert_eq!(all, cat.train_images());
        assert_eq!(cat.split_validation(0.4, 11).unwrap(), s);
        assert!(cat.split_validation(1.0, 11).is_err());
        assert!(cat.split_validation(-0.1, 11).is_err());
        assert!(cat.split_validation(0.0, 11).unwrap().validation.is_empty());
    }

    #[test]
    fn discovery_of_root_and_single_category() {
        let dir = tempfile::tempdir().unwrap();
        make_category(&dir.path().join("b_cat"));
        make_category(&dir.path().join("a_cat"));
        std::fs::create_dir(dir.path().join("not_a_category")).unwrap();
        std::fs::write(dir.path().join("README.md"), "x").unwrap();
        let found = discover_categories(dir.path()).unwrap();
        assert_eq!(
            found,
            vec![dir.path().join("a_cat"), dir.path().join("b_cat")]
        );
        assert_eq!(open_categories(dir.path()).unwrap().len(), 2);
        let single = discover_categories(&dir.path().join("a_cat")).unwrap();
        assert_eq!(single, vec![dir.path().join("a_cat")]);
        let err = discover_categories(&dir.path().join("not_a_category")).unwrap_err();
        assert!(matches!(err, DataError::InvalidFormat { .. }), "{err}");
    }

    #[test]
    fn missing_or_empty_train_good_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("widget");
        make_category(&root);
        std::fs::remove_dir_all(root.join("train/good")).unwrap();
        let err = MvtecCategory::open(&root).unwrap_err();
        assert!(matches!(err, DataError::Missing { .. }), "{err}");
        assert_eq!(err.path(), root.join("train/good"));
        std::fs::create_dir_all(root.join("train/good")).unwrap();
        std::fs::write(root.join("train/good/readme.txt"), "not an image").unwrap();
        let err = MvtecCategory::open(&root).unwrap_err();
        assert!(matches!(err, DataError::EmptyFolder { .. }), "{err}");
        assert_eq!(err.path(), root.join("train/good"));
        let report = inspect_category(&root, 0.1);
        assert_eq!(report.problems.len(), 1);
        assert!(
            report.problems[0].contains("train/good"),
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn empty_defect_folder_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("widget");
        make_category(&root);
        std::fs::create_dir_all(root.join("test/scratch")).unwrap();
        let err = MvtecCategory::open(&root).unwrap_err();
        assert!(matches!(err, DataError::EmptyFolder { .. }), "{err}");
        assert_eq!(err.path(), root.join("test/scratch"));
    }

    #[test]
    fn defect_image_without_mask_and_mask_without_image() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("widget");
        make_category(&root);
        std::fs::rename(
            root.join("ground_truth/crack/001_mask.png"),
            root.join("ground_truth/crack/007_mask.png"),
        )
        .unwrap();
        let scan = MvtecCategory::scan(&root).unwrap();
        assert_eq!(scan.problems.len(), 2, "{:?}", scan.problems);
        match &scan.problems[0] {
            DataError::MissingMask { path, expected } => {
                assert_eq!(path, &root.join("test/crack/001.png"));
                assert_eq!(expected, &root.join("ground_truth/crack/001_mask.png"));
            }
            other => panic!("{other}"),
        }
        assert!(
            matches!(&scan.problems[1], DataError::OrphanMask { path, .. }
            if path == &root.join("ground_truth/crack/007_mask.png"))
        );
        // The sample without mask is left out of the usable category.
        assert_eq!(scan.category.test_defect_count(), 2);
        assert!(matches!(
            MvtecCategory::open(&root).unwrap_err(),
            DataError::MissingMask { .. }
        ));
        let report = inspect_category(&root, 0.0);
        assert_eq!(
            report.defect_types["crack"],
            DefectTypeCounts {
                images: 2,
                masks: 1
            }
        );
        assert_eq!((report.test_defect, report.masks), (3, 2));
        assert_eq!(report.problems.len(), 2);
    }

    #[test]
    fn mask_of_another_size_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("widget");
        make_category(&root);
        let mask = root.join("ground_truth/hole/000_mask.png");
        mask_png(&mask, 41, 30, (0, 0, 1, 1));
        let cat = MvtecCategory::open(&root).unwrap();
        let problems = cat.validate().problems;
        assert_eq!(problems.len(), 1);
        match &problems[0] {
            DataError::MaskSizeMismatch {
                path,
                image,
                mask_size,
                image_size,
            } => {
                assert_eq!(path, &mask);
                assert_eq!(image, &root.join("test/hole/000.bmp"));
                assert_eq!(
                    (*mask_size, *image_size),
                    (Size::new(41, 30), Size::new(40, 30))
                );
            }
            other => panic!("{other}"),
        }
        let err = cat.test_samples()[4].load_mask().unwrap_err();
        assert!(err.to_string().contains("41x30"), "{err}");
    }

    #[test]
    fn truncated_image_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("widget");
        make_category(&root);
        let bad = root.join("train/good/002.png");
        let bytes = std::fs::read(&bad).unwrap();
        std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
        let cat = MvtecCategory::open(&root).unwrap();
        let problems = cat.validate().problems;
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path(), bad.as_path());
        let err = cat.load(cat.train_images(), None).unwrap_err();
        assert_eq!(err.path(), bad.as_path());
        let report = inspect_category(&root, 0.2);
        assert_eq!((report.train, report.validation), (5, 1));
        assert_eq!(report.width, Some(MinMax { min: 40, max: 40 }));
        assert_eq!(report.channels, vec![1, 3]);
        assert_eq!(report.problems.len(), 1);
    }

    #[test]
    fn shared_mvtec_layout_counts() {
        let Some(root) = crate::test_support::shared_path("data/mvtec-layout") else {
            return;
        };
        let cats = open_categories(&root).unwrap();
        assert_eq!(cats.len(), 7);
        for cat in &cats {
            let masks = cat
                .test_samples()
                .iter()
                .filter(|s| s.mask_path.is_some())
                .count();
            let counts = (
                cat.train_images().len(),
                cat.test_good_count(),
                cat.test_defect_count(),
            );
            if cat.name() == "magnetic_tile" {
                assert_eq!(counts, (761, 191, 392));
                assert_eq!(masks, 392);
                assert_eq!(
                    cat.defect_types(),
                    vec!["blowhole", "break", "crack", "fray", "uneven"]
                );
            } else {
                assert!(cat.name().starts_with("paper_"), "{}", cat.name());
                assert_eq!(counts, (32, 16, 48));
                assert_eq!(masks, 48);
                assert_eq!(cat.defect_types(), vec!["impurity"]);
            }
        }
        // A magnetic-tile mask matches its image's size and marks some pixels.
        let tile = cats.iter().find(|c| c.name() == "magnetic_tile").unwrap();
        let sample = tile.test_samples().iter().find(|s| !s.is_good()).unwrap();
        let mask = sample.load_mask().unwrap();
        assert_eq!(mask.size(), image_size(&sample.path).unwrap());
        assert!(mask.count_anomalous() > 0);
        // One paper category decodes cleanly, 128x128 colour.
        let v = cats[1].validate();
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.width, Some(MinMax { min: 128, max: 128 }));
        assert_eq!(v.channels.into_iter().collect::<Vec<_>>(), vec![3]);
    }
}
