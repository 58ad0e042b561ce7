//! End-to-end test of the main job on a tiny generated MVTec-layout category: `ust train`
//! (smoke preset, a random teacher saved as a file), `ust predict` (TIFF/NPY/PNG/masks at the
//! images' own size) and `ust evaluate`, whose AU-PRO must equal what `ust eval` computes
//! independently from the TIFF maps `evaluate --save-maps` wrote.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ust() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ust"))
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A smooth texture with a per-image phase, plus a bright square defect when `defect`.
fn texture(seed: u32, w: u32, h: u32, defect: Option<(u32, u32, u32)>) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        if let Some((dx, dy, s)) = defect
            && (dx..dx + s).contains(&x)
            && (dy..dy + s).contains(&y)
        {
            return image::Rgb([250, 250, 250]);
        }
        let v = ((x as f32 * 0.7 + seed as f32).sin() * 40.0
            + (y as f32 * 0.5).cos() * 40.0
            + 110.0) as u8;
        image::Rgb([v, v / 2 + 40, 255 - v])
    })
}

fn save(img: &image::RgbImage, path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
}

/// `root/widget`: 6 training images (40×40), 2 good and 2 defective test images (44×36, so
/// maps must come back at a size other than the model's), masks for the defects.
fn dataset(root: &Path) -> PathBuf {
    let cat = root.join("widget");
    for i in 0..6 {
        save(
            &texture(i, 40, 40, None),
            &cat.join(format!("train/good/{i:03}.png")),
        );
    }
    for i in 0..2 {
        save(
            &texture(10 + i, 44, 36, None),
            &cat.join(format!("test/good/{i:03}.png")),
        );
        let (dx, dy, s) = (8 + 10 * i, 10, 8);
        save(
            &texture(20 + i, 44, 36, Some((dx, dy, s))),
            &cat.join(format!("test/blob/{i:03}.png")),
        );
        let mask = image::GrayImage::from_fn(44, 36, |x, y| {
            let inside = (dx..dx + s).contains(&x) && (dy..dy + s).contains(&y);
            image::Luma([if inside { 255 } else { 0 }])
        });
        let p = cat.join(format!("ground_truth/blob/{i:03}_mask.png"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        mask.save(p).unwrap();
    }
    cat
}

fn random_teacher(path: &Path) {
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};
    let varmap = VarMap::new();
    let net = ust_models::PatchNet::new(
        ust_models::PatchNetConfig::new(17),
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    net.save(path).unwrap();
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
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
