//! `ust baseline dense` and `ust oneclass` on tiny generated data with a random p = 17 teacher
//! saved as a file: the reports carry exactly the contract's fields, a baseline that must work
//! does (bright squares on uniform noise for the dense 1-NN and PCA; separable classes for
//! one-class 1-NN and students), and missing inputs are clear errors.

use std::path::{Path, PathBuf};

#[path = "../../../tests/support/mod.rs"]
mod support;
use support::{json, run_ok, ust};

fn random_teacher(path: &Path) {
    support::random_teacher(path, 17);
}

/// A small deterministic generator (LCG), values in [0, 1).
struct Lcg(u32);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (self.0 >> 8) as f32 / (1u32 << 24) as f32
    }
}

fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut k: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    k.sort();
    k
}

/// Uniform grey noise in [100, 140), with a bright 8×8 square at `defect`.
fn noise(seed: u32, w: u32, h: u32, defect: Option<(u32, u32)>) -> image::RgbImage {
    let mut rng = Lcg(seed.wrapping_mul(2_654_435_761).wrapping_add(3));
    image::RgbImage::from_fn(w, h, |x, y| {
        let v = 100 + (rng.next() * 40.0) as u8;
        match defect {
            Some((dx, dy)) if (dx..dx + 8).contains(&x) && (dy..dy + 8).contains(&y) => {
                image::Rgb([250, 250, 250])
            }
            _ => image::Rgb([v, v, v]),
        }
    })
}

/// `root/noise`: 6 training images 40×40; 2 good and 3 defective test images 44×36.
fn category(root: &Path) {
    let cat = root.join("noise");
    let save = |img: image::RgbImage, p: PathBuf| {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        img.save(p).unwrap();
    };
    for i in 0..6 {
        save(
            noise(i, 40, 40, None),
            cat.join(format!("train/good/{i:03}.png")),
        );
    }
    for i in 0..2 {
        save(
            noise(10 + i, 44, 36, None),
            cat.join(format!("test/good/{i:03}.png")),
        );
    }
    for i in 0..3u32 {
        let (dx, dy) = (6 + 12 * i, 8 + 6 * i);
        save(
            noise(20 + i, 44, 36, Some((dx, dy))),
            cat.join(format!("test/square/{i:03}.png")),
        );
        let mask = image::GrayImage::from_fn(44, 36, |x, y| {
            let inside = (dx..dx + 8).contains(&x) && (dy..dy + 8).contains(&y);
            image::Luma([if inside { 255 } else { 0 }])
        });
        let p = cat.join(format!("ground_truth/square/{i:03}_mask.png"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        mask.save(p).unwrap();
    }
}

#[test]
fn dense_baselines_find_bright_squares_and_report_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    category(dir.path());
    let teacher = dir.path().join("teacher-p17.safetensors");
    random_teacher(&teacher);
    for method in ["knn", "pca"] {
        let out = dir.path().join(format!("out-{method}"));
        run_ok(
            ust()
                .args(["baseline", "dense", "--data"])
                .arg(dir.path())
                .args([
                    "--category",
                    "noise",
                    "--method",
                    method,
                    "--preset",
                    "smoke",
                ])
                .arg("--teacher")
                .arg(&teacher)
                .arg("--out")
                .arg(&out),
        );
        let r = json(&out.join("report.json"));
        assert_eq!(
            keys(&r),
            sorted(&[
                "kind",
                "data",
                "category",
                "method",
                "p",
                "preset",
                "seed",
                "teacher",
                "padding",
                "image_size",
                "train_images",
                "train_vectors",
                "test_images",
                "au_pro",
                "pixel_auroc",
                "image_auroc",
                "fit_s",
                "extract_s",
                "score_s",
                "total_s",
                "methods_in_command",
                "peak_rss_mib",
            ])
        );
        assert_eq!(r["methods_in_command"], serde_json::json!([method]));
        assert_eq!(r["kind"], "dense_baseline");
        assert_eq!(r["category"], "noise");
        assert_eq!(r["method"], method);
        assert_eq!(r["p"], 17);
        assert_eq!(r["preset"], "smoke");
        // The students' border by default (the smoke preset's, as cpu's and paper's).
        assert_eq!(r["padding"], "replicate");
        assert_eq!(r["image_size"], 40);
        assert_eq!(r["train_images"], 6);
        // Smoke cap: 2 000 of the 6 · 40 · 40 = 9 600 training vectors.
        assert_eq!(r["train_vectors"], 2000);
        assert_eq!(r["test_images"], 5);
        // Chance level of AU-PRO up to FPR 0.3 is 0.15, of the AUROCs 0.5.
        let au_pro = r["au_pro"].as_f64().unwrap();
        let pixel = r["pixel_auroc"].as_f64().unwrap();
        assert!(au_pro > 0.5, "{method}: AU-PRO {au_pro}");
        assert!(pixel > 0.85, "{method}: pixel AUROC {pixel}");
        assert!(r["image_auroc"].as_f64().is_some());
        assert!(out.join("report.md").is_file());
        assert!(!out.join("report.json.tmp").exists());
    }

    // Both methods in one command (one pass of the teacher): the same figures as alone.
    let (a, b) = (dir.path().join("both-pca"), dir.path().join("both-knn"));
    run_ok(
        ust()
            .args(["baseline", "dense", "--data"])
            .arg(dir.path())
            .args(["--category", "noise", "--preset", "smoke"])
            .args(["--method", "pca", "--out"])
            .arg(&a)
            .args(["--method", "knn", "--out"])
            .arg(&b)
            .arg("--teacher")
            .arg(&teacher),
    );
    for (together, method) in [(&a, "pca"), (&b, "knn")] {
        let r = json(&together.join("report.json"));
        let alone = json(&dir.path().join(format!("out-{method}/report.json")));
        assert_eq!(r["method"], method);
        assert_eq!(r["methods_in_command"], serde_json::json!(["pca", "knn"]));
        for key in [
            "au_pro",
            "pixel_auroc",
            "image_auroc",
            "train_vectors",
            "train_images",
        ] {
            assert_eq!(r[key], alone[key], "{method}: {key}");
        }
    }
    // Another padding: recorded, and other descriptors at the border give other scores.
    let zeros = dir.path().join("zeros-knn");
    run_ok(
        ust()
            .args(["baseline", "dense", "--data"])
            .arg(dir.path())
            .args([
                "--category",
                "noise",
                "--preset",
                "smoke",
                "--padding",
                "zeros",
            ])
            .args(["--method", "knn", "--out"])
            .arg(&zeros)
            .arg("--teacher")
            .arg(&teacher),
    );
    let (z, r) = (
        json(&zeros.join("report.json")),
        json(&dir.path().join("out-knn/report.json")),
    );
    assert_eq!(z["padding"], "zeros");
    assert_ne!(z["pixel_auroc"], r["pixel_auroc"]);
    assert!(
        std::fs::read_to_string(zeros.join("report.md"))
            .unwrap()
            .contains("zeros padding")
    );
    // --method and --out pair up.
    let out = ust()
        .args(["baseline", "dense", "--data"])
        .arg(dir.path())
        .args(["--category", "noise", "--preset", "smoke"])
        .args(["--method", "pca", "--method", "knn", "--out"])
        .arg(&a)
        .arg("--teacher")
        .arg(&teacher)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pair up"));
}

#[test]
fn dense_baseline_on_a_missing_category_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = ust()
        .args(["baseline", "dense", "--data"])
        .arg(dir.path())
        .args(["--category", "absent", "--method", "knn", "--out"])
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("absent") && err.contains("not an MVTec-layout category"),
        "{err}"
    );
}

fn idx_images(path: &Path, images: &[Vec<u8>], side: u32) {
    let mut b = Vec::new();
    for v in [0x0000_0803u32, images.len() as u32, side, side] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    for im in images {
        b.extend_from_slice(im);
    }
    std::fs::write(path, b).unwrap();
}

fn idx_labels(path: &Path, labels: &[u8]) {
    let mut b = Vec::new();
    b.extend_from_slice(&0x0000_0801u32.to_be_bytes());
    b.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    b.extend_from_slice(labels);
    std::fs::write(path, b).unwrap();
}

/// The four idx files of an MNIST folder, 28×28 images.
fn write_mnist(dir: &Path, train: (&[Vec<u8>], &[u8]), test: (&[Vec<u8>], &[u8])) {
    idx_images(&dir.join("train-images-idx3-ubyte"), train.0, 28);
    idx_labels(&dir.join("train-labels-idx1-ubyte"), train.1);
    idx_images(&dir.join("t10k-images-idx3-ubyte"), test.0, 28);
    idx_labels(&dir.join("t10k-labels-idx1-ubyte"), test.1);
}

/// A 28×28 "digit": class 0 a bright block top-left, class 1 bottom-right, class 2 a bar across
/// the middle; dark noise elsewhere.
fn digit(class: u8, rng: &mut Lcg) -> Vec<u8> {
    let mut im = Vec::with_capacity(28 * 28);
    for y in 0..28 {
        for x in 0..28 {
            let on = match class {
                0 => (3..13).contains(&x) && (3..13).contains(&y),
                1 => (15..25).contains(&x) && (15..25).contains(&y),
                _ => (12..16).contains(&y),
            };
            im.push(if on { 230 } else { 0 } + (rng.next() * 20.0) as u8);
        }
    }
    im
}

/// Train: 16 images each of classes 0 and 1; test: 8 each of 0, 1, 2.
fn mnist(dir: &Path) {
    let mut rng = Lcg(11);
    let (mut train, mut train_labels) = (Vec::new(), Vec::new());
    for i in 0..32u8 {
        train.push(digit(i % 2, &mut rng));
        train_labels.push(i % 2);
    }
    let (mut test, mut test_labels) = (Vec::new(), Vec::new());
    for i in 0..24u8 {
        test.push(digit(i % 3, &mut rng));
        test_labels.push(i % 3);
    }
    write_mnist(dir, (&train, &train_labels), (&test, &test_labels));
}

#[test]
fn oneclass_knn_and_students_separate_the_classes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mnist");
    std::fs::create_dir_all(&root).unwrap();
    mnist(&root);
    let teacher = dir.path().join("teacher-p17.safetensors");
    random_teacher(&teacher);
    for (method, train_images) in [("knn", 16), ("students", 12)] {
        let out = dir.path().join(format!("out-{method}"));
        run_ok(
            ust()
                .args(["oneclass", "--dataset", "mnist", "--data"])
                .arg(&root)
                .args(["--class", "0", "--method", method, "--preset", "smoke"])
                .arg("--teacher")
                .arg(&teacher)
                .arg("--out")
                .arg(&out),
        );
        let r = json(&out.join("report.json"));
        assert_eq!(
            keys(&r),
            sorted(&[
                "kind",
                "dataset",
                "class",
                "method",
                "teacher",
                "p",
                "preset",
                "seed",
                "train_images",
                "test_images",
                "auroc",
                "students",
                "total_s",
                "peak_rss_mib",
            ])
        );
        assert_eq!(r["kind"], "one_class");
        assert_eq!(r["dataset"], "mnist");
        assert_eq!(r["class"], 0);
        assert_eq!(r["method"], method);
        assert_eq!(r["p"], 17);
        assert_eq!(r["preset"], "smoke");
        // knn: all 16 images of class 0; students: 75 % of them (4 held out to calibrate).
        assert_eq!(r["train_images"], train_images);
        assert_eq!(r["test_images"], 24);
        let auroc = r["auroc"].as_f64().unwrap();
        assert!(auroc > 0.9, "{method}: AUROC {auroc}");
        assert!(out.join("report.md").is_file());
        if method == "students" {
            // Smoke schedule: M = 2, 10 epochs of 3 batches of 4.
            let s = &r["students"];
            assert_eq!(
                (s["students"].as_u64(), s["epochs"].as_u64()),
                (Some(2), Some(10))
            );
            assert_eq!(s["steps"], 30);
            assert!(s["final_loss"].as_f64().unwrap() < s["first_epoch_loss"].as_f64().unwrap());
        } else {
            assert!(r["students"].is_null());
        }
        // The students' checkpoint (every 4 steps of 30) is gone once they are trained.
        assert!(!out.join("students.checkpoint.safetensors").exists());
    }
    // --resume with a damaged checkpoint names the file and does not start over silently.
    let out = dir.path().join("out-students");
    let checkpoint = out.join("students.checkpoint.safetensors");
    std::fs::write(&checkpoint, b"not a checkpoint").unwrap();
    let run = ust()
        .args(["oneclass", "--dataset", "mnist", "--data"])
        .arg(&root)
        .args(["--class", "0", "--method", "students", "--preset", "smoke"])
        .arg("--teacher")
        .arg(&teacher)
        .arg("--out")
        .arg(&out)
        .arg("--resume")
        .output()
        .unwrap();
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains(&checkpoint.display().to_string()) && err.contains("safetensors"),
        "{err}"
    );
}

#[test]
fn oneclass_without_the_dataset_names_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = dir.path().join("teacher-p17.safetensors");
    random_teacher(&teacher);
    let missing = dir.path().join("no-mnist-here");
    let out = ust()
        .args(["oneclass", "--dataset", "mnist", "--data"])
        .arg(&missing)
        .args(["--class", "3", "--method", "knn", "--teacher"])
        .arg(&teacher)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-mnist-here") && err.contains("does not exist"),
        "{err}"
    );
}

/// Ten "digits": class K a bright 6×6 block at its own place, dark noise elsewhere; `per_class`
/// training and `test_per_class` test images each.
fn mnist10(dir: &Path, per_class: usize, test_per_class: usize) {
    let mut rng = Lcg(5);
    let mut digit = |class: u8| {
        let (bx, by) = ((class as usize % 5) * 5 + 1, (class as usize / 5) * 12 + 5);
        let mut im = Vec::with_capacity(28 * 28);
        for y in 0..28 {
            for x in 0..28 {
                let on = (bx..bx + 6).contains(&x) && (by..by + 6).contains(&y);
                im.push(if on { 230 } else { 0 } + (rng.next() * 20.0) as u8);
            }
        }
        im
    };
    let mut make = |n: usize| {
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        for i in 0..n * 10 {
            images.push(digit((i % 10) as u8));
            labels.push((i % 10) as u8);
        }
        (images, labels)
    };
    let (train, train_labels) = make(per_class);
    let (test, test_labels) = make(test_per_class);
    write_mnist(dir, (&train, &train_labels), (&test, &test_labels));
}

/// `ust teacher quality` is Table 2's 1-NN over the ten classes: with the teacher's
/// descriptors its per-class AUROC is exactly `ust oneclass --method knn`'s; the pixels run the
/// same protocol. (The backbone's features are checked in `quality`'s unit tests: a 1 280-d
/// PCA per class takes minutes in a test build.)
#[test]
fn teacher_quality_is_the_one_class_knn_of_every_class() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mnist");
    std::fs::create_dir_all(&root).unwrap();
    mnist10(&root, 6, 3);
    let teacher = dir.path().join("teacher-p17.safetensors");
    random_teacher(&teacher);
    let quality = |features: &str, extra: &[&str]| {
        let out = dir.path().join(format!("quality-{features}.json"));
        run_ok(
            ust()
                .args(["teacher", "quality"])
                .arg(&teacher)
                .args(["--features", features, "--dataset", "mnist", "--mnist"])
                .arg(&root)
                .args(["--preset", "smoke", "--json"])
                .arg(&out)
                .args(extra),
        );
        json(&out)
    };
    let q = quality("teacher", &[]);
    assert_eq!(q["features"], "teacher");
    assert_eq!(
        (q["image_side"].as_u64(), q["dim"].as_u64()),
        (Some(17), Some(128))
    );
    let d = &q["datasets"][0];
    assert_eq!(d["dataset"], "mnist");
    assert_eq!(
        (d["train_per_class"].as_u64(), d["test_images"].as_u64()),
        (Some(6), Some(30))
    );
    let auroc: Vec<f64> = serde_json::from_value(d["auroc"].clone()).unwrap();
    assert_eq!(auroc.len(), 10);
    let mean = auroc.iter().sum::<f64>() / 10.0;
    assert!((d["mean_auroc"].as_f64().unwrap() - mean).abs() < 1e-12);
    for class in [0u8, 7] {
        let out = dir.path().join(format!("oneclass-{class}"));
        run_ok(
            ust()
                .args(["oneclass", "--dataset", "mnist", "--data"])
                .arg(&root)
                .args([
                    "--class",
                    &class.to_string(),
                    "--method",
                    "knn",
                    "--preset",
                    "smoke",
                ])
                .arg("--teacher")
                .arg(&teacher)
                .arg("--out")
                .arg(&out),
        );
        let one = json(&out.join("report.json"))["auroc"].as_f64().unwrap();
        assert_eq!(auroc[class as usize], one, "class {class}");
    }
    // The blocks sit at ten places: the pixels separate every class. (At 8×8: the PCA of
    // 3·17² pixel dimensions takes minutes in a test build.)
    let px = quality("pixels", &["--p", "8"]);
    assert_eq!(
        (px["image_side"].as_u64(), px["dim"].as_u64()),
        (Some(8), Some(3 * 8 * 8))
    );
    let px_mean = px["datasets"][0]["mean_auroc"].as_f64().unwrap();
    assert!(px_mean > 0.95, "pixels: {px_mean}");
    // The teacher file is needed for its own descriptors.
    let out = ust()
        .args(["teacher", "quality", "--dataset", "mnist", "--mnist"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs the teacher file"));
}
