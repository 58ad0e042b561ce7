//! End-to-end test of the main job on a tiny generated MVTec-layout category: `ust train`
//! (smoke preset, a random teacher saved as a file), `ust predict` (TIFF/NPY/PNG/masks at the
//! images' own size) and `ust evaluate`, whose AU-PRO must equal what `ust eval` computes
//! independently from the TIFF maps `evaluate --save-maps` wrote.

use std::path::{Path, PathBuf};

#[path = "support/mod.rs"]
mod support;
use support::{json, run_ok, ust};

/// `root/widget`: the shared generated category with 44×36 test images, so maps must come
/// back at a size other than the model's.
fn dataset(root: &Path) -> PathBuf {
    support::textured_category(root, "widget", 44, 36)
}

fn random_teacher(path: &Path) {
    support::random_teacher(path, 17);
}

#[test]
fn train_predict_evaluate_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let cat = dataset(dir.path());
    let teacher = dir.path().join("teacher-p17.safetensors");
    random_teacher(&teacher);
    let run = dir.path().join("run");
    let train = |extra: &[&str]| {
        let mut c = ust();
        c.args(["train", "--data"])
            .arg(dir.path())
            .args([
                "--category",
                "widget",
                "--scales",
                "17",
                "--preset",
                "smoke",
            ])
            .arg("--teacher")
            .arg(&teacher)
            .arg("--out")
            .arg(&run)
            .args(extra);
        c
    };
    run_ok(&mut train(&[]));
    for f in [
        "run.toml",
        "p17.safetensors",
        "train-summary.json",
        "validation-scores.json",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    assert!(!run.join("p17.checkpoint.safetensors").exists());
    let summary = json(&run.join("train-summary.json"));
    // Smoke preset: validation fraction 0.25 of 6 -> 2 held out (rounded), 4 train, 2 epochs.
    assert_eq!(summary["validation_images"], 2);
    assert_eq!(summary["train_images"], 4);
    assert_eq!(summary["scales"][0]["steps"], 8);
    assert!(
        summary["scales"][0]["final_loss"]
            .as_f64()
            .unwrap()
            .is_finite()
    );

    // Training into a used run directory needs --resume; with it, the trained scale is kept.
    let again = train(&[]).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
    run_ok(&mut train(&["--resume"]));

    // Predict: outputs at each image's own size, relative paths kept.
    let pred = dir.path().join("pred");
    run_ok(
        ust()
            .arg("predict")
            .arg(&run)
            .arg(cat.join("test"))
            .arg("--out")
            .arg(&pred)
            .args(["--format", "png,tiff,npy", "--fpr", "0.01"]),
    );
    for stem in ["good/000", "good/001", "blob/000", "blob/001"] {
        let tiff = ust_data::maps::read_map(pred.join(format!("{stem}.tiff"))).unwrap();
        assert_eq!((tiff.width, tiff.height), (44, 36), "{stem}");
        assert!(tiff.data.iter().all(|v| v.is_finite()));
        let npy = ust_data::maps::read_map(pred.join(format!("{stem}.npy"))).unwrap();
        assert_eq!(npy, tiff);
        for suffix in ["_heatmap.png", "_overlay.png", "_mask.png"] {
            let img = image::open(pred.join(format!("{stem}{suffix}"))).unwrap();
            assert_eq!((img.width(), img.height()), (44, 36), "{stem}{suffix}");
        }
    }

    // Evaluate, and check its numbers against `ust eval` on the maps it saved.
    let eval_dir = dir.path().join("evaluation");
    run_ok(
        ust()
            .arg("evaluate")
            .arg(&run)
            .arg("--out")
            .arg(&eval_dir)
            .args(["--save-maps", "--images"]),
    );
    let report = json(&eval_dir.join("report.json"));
    assert_eq!(report["test_images"], 4);
    assert_eq!(report["defect_regions"], 2);
    let row = &report["rows"][0];
    assert_eq!(row["name"], "p=17");
    let au_pro = row["au_pro"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&au_pro));
    assert!(eval_dir.join("report.md").is_file() && eval_dir.join("pro-curve.png").is_file());
    assert!(eval_dir.join("images/blob/000_overlay.png").is_file());

    let check = dir.path().join("check.json");
    run_ok(
        ust()
            .arg("eval")
            .arg("--dataset")
            .arg(dir.path())
            .arg("--maps")
            .arg(eval_dir.join("maps"))
            .arg("--json")
            .arg(&check),
    );
    let independent = json(&check);
    let category = &independent["categories"][0];
    for (key, ours) in [
        ("au_pro", au_pro),
        ("pixel_auroc", row["pixel_auroc"].as_f64().unwrap()),
        ("image_auroc", row["image_auroc"].as_f64().unwrap()),
    ] {
        let theirs = category[key].as_f64().unwrap();
        assert!((ours - theirs).abs() < 1e-9, "{key}: {ours} vs {theirs}");
    }
}

#[test]
fn missing_teacher_and_bad_data_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let out = ust()
        .args(["train", "--data"])
        .arg(dir.path())
        .args(["--category", "nope", "--scales", "17"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope") && err.contains("train/"), "{err}");

    let out = ust()
        .env("UST_MODELS", dir.path())
        .current_dir(dir.path())
        .args(["train", "--data"])
        .arg(dir.path())
        .args(["--category", "widget", "--scales", "65"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("teacher-p65.safetensors") && err.contains("--teacher"),
        "{err}"
    );
}
