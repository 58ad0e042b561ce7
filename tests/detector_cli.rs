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

/// `ust train` of `root/widget` at p = 17 with the smoke preset into `run`.
fn smoke_train(root: &Path, teacher: &Path, run: &Path) -> std::process::Command {
    let mut c = ust();
    c.args(["train", "--data"])
        .arg(root)
        .args([
            "--category",
            "widget",
            "--scales",
            "17",
            "--preset",
            "smoke",
        ])
        .arg("--teacher")
        .arg(teacher)
        .arg("--out")
        .arg(run);
    c
}

/// `root/run`: the generated category trained at p = 17 (smoke preset, a random teacher).
fn trained_smoke_run(root: &Path) -> PathBuf {
    dataset(root);
    let teacher = root.join("teacher-p17.safetensors");
    random_teacher(&teacher);
    let run = root.join("run");
    run_ok(&mut smoke_train(root, &teacher, &run));
    run
}

/// Gives `path` a modification time later than any file written before the call.
fn touch(path: &Path) {
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::File::options()
        .append(true)
        .open(path)
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();
}

#[test]
fn train_predict_evaluate_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let cat = dataset(dir.path());
    let teacher = dir.path().join("teacher-p17.safetensors");
    random_teacher(&teacher);
    let run = dir.path().join("run");
    let train = |extra: &[&str]| {
        let mut c = smoke_train(dir.path(), &teacher, &run);
        c.args(extra);
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
    // The thresholds come from the scores the calibration kept in the scale file; the trained
    // detector scoring the validation images again gives the same thresholds.
    {
        use ust_detector::pipeline::{ScoreQuantiles, load_training_images};
        let cpu = candle_core::Device::Cpu;
        let detector = ust_detector::Detector::load(&run, None, &cpu).unwrap();
        assert!(detector.scales[0].validation_scores.is_some());
        let category = ust_data::MvtecCategory::open(&cat).unwrap();
        let images = load_training_images(&category, &detector.spec.training).unwrap();
        let mut scores = Vec::new();
        for image in &images.validation {
            let x = image.to_tensor(&cpu).unwrap().unsqueeze(0).unwrap();
            scores.extend(detector.scores(&x).unwrap());
        }
        let again =
            ScoreQuantiles::from_scores(detector.patch_sizes(), images.validation.len(), scores)
                .unwrap();
        let kept = ScoreQuantiles::read(&run).unwrap();
        assert_eq!((kept.images, kept.pixels), (2, 2 * 40 * 40));
        assert_eq!(kept.threshold, again.threshold);
    }
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
    // A finished run is left as it is: neither the thresholds nor the summary are written again.
    let modified = |f: &str| std::fs::metadata(run.join(f)).unwrap().modified().unwrap();
    let before = (
        modified("validation-scores.json"),
        modified("train-summary.json"),
    );
    let thresholds = std::fs::read(run.join("validation-scores.json")).unwrap();
    run_ok(&mut train(&["--resume"]));
    assert_eq!(
        before,
        (
            modified("validation-scores.json"),
            modified("train-summary.json")
        )
    );
    // A scale file newer than the thresholds (a scale trained again after them) makes the
    // next call compute them again, to the same values.
    touch(&run.join("p17.safetensors"));
    run_ok(&mut train(&["--resume"]));
    assert!(modified("validation-scores.json") > before.0);
    assert_eq!(
        std::fs::read(run.join("validation-scores.json")).unwrap(),
        thresholds
    );

    // Predict: outputs at each image's own size, relative paths kept.
    let pred = dir.path().join("pred");
    let predicted = run_ok(
        ust()
            .arg("predict")
            .arg(&run)
            .arg(cat.join("test"))
            .arg("--out")
            .arg(&pred)
            .args(["--format", "png,tiff,npy", "--fpr", "0.01"]),
    );
    // A progress bar (hidden off a terminal), not a log line per image.
    let log = String::from_utf8_lossy(&predicted.stderr);
    assert!(!log.contains("predicted"), "{log}");
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
    // report.html: every picture it shows lies in the folder; one entry per test image, each
    // with the image score of its saved map, worst first (a good image by the share of
    // images scoring below it, a defective one by the share above it).
    let html = std::fs::read_to_string(eval_dir.join("report.html")).unwrap();
    for src in html
        .split("src=\"")
        .skip(1)
        .map(|s| &s[..s.find('"').unwrap()])
    {
        assert!(
            eval_dir.join(src).is_file(),
            "report.html shows a missing {src}"
        );
    }
    let entries: Vec<(String, f64)> = html
        .split("<div class=\"entry\"><div class=\"meta\"><b>")
        .skip(1)
        .map(|e| {
            let name = e[..e.find("</b>").unwrap()].to_string();
            let score = e.split("image score ").nth(1).unwrap();
            (name, score[..score.find('<').unwrap()].parse().unwrap())
        })
        .collect();
    assert_eq!(entries.len(), 4, "{html}");
    let mut errors = Vec::new();
    for (name, score) in &entries {
        let map = ust_data::maps::read_map(eval_dir.join(format!("maps/widget/test/{name}.tiff")))
            .unwrap();
        let max = map.data.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        assert!(
            (max - score).abs() < 5e-4,
            "{name}: {score} vs the map's {max}"
        );
        let good = name.starts_with("good/");
        let wrong = entries
            .iter()
            .filter(|(n, s)| n != name && if good { s < score } else { s > score })
            .count();
        errors.push(wrong);
    }
    assert!(
        errors.windows(2).all(|w| w[0] >= w[1]),
        "not worst first: {errors:?}"
    );
    check_in_a_browser(&eval_dir.join("report.html"));

    let check = dir.path().join("check.json");
    run_ok(
        ust()
            .arg("eval")
            // The older spelling of --data, still accepted.
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

/// A training that fails on its data leaves nothing in the run directory that would refuse
/// the next attempt with other options (it used to leave run.toml, and the retry was told
/// "the checkpoint was written with a different configuration").
#[test]
fn a_training_that_fails_on_its_data_leaves_no_run_file() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    std::fs::create_dir_all(dir.path().join("empty/train/good")).unwrap();
    let teacher = dir.path().join("teacher-p17.safetensors");
    random_teacher(&teacher);
    let run = dir.path().join("run");
    let out = ust()
        .args(["train", "--data"])
        .arg(dir.path())
        .args(["--category", "empty", "--scales", "17", "--preset", "smoke"])
        .arg("--teacher")
        .arg(&teacher)
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!run.join("run.toml").exists());
    let out = run_ok(
        smoke_train(dir.path(), &teacher, &run)
            .env_remove("NO_COLOR")
            .args(["--seed", "3"]),
    );
    assert!(run.join("run.toml").is_file());
    // Its log went to a pipe: plain text, no colour codes.
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("INFO"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a piped log: {log:?}"
    );
}

/// Every tensor of a safetensors file, flattened to f32, by name.
fn tensors(path: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    candle_core::safetensors::load(path, &candle_core::Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(k, t)| {
            let v = t
                .flatten_all()
                .and_then(|t| t.to_dtype(candle_core::DType::F32))
                .and_then(|t| t.to_vec1::<f32>())
                .unwrap();
            (k, v)
        })
        .collect()
}

/// The premise of `--reuse`: a scale trained alone is the same scale trained beside another
/// (seeds follow the seed and p only); so `--reuse` copies it from a run with the same data,
/// teacher and configuration, and passes over a run with another seed.
#[test]
fn a_scale_trained_alone_equals_it_in_a_multi_scale_run_and_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let t17 = dir.path().join("t17.safetensors");
    let t33 = dir.path().join("t33.safetensors");
    support::random_teacher(&t17, 17);
    support::random_teacher(&t33, 33);
    // A --teacher must be one of the listed scales.
    let train = |scales: &str, out: &str, extra: &[&str]| {
        let mut c = ust();
        c.env("RUST_LOG", "info")
            .args(["train", "--data"])
            .arg(dir.path())
            .args([
                "--category",
                "widget",
                "--preset",
                "smoke",
                "--scales",
                scales,
            ])
            .args(["--max-steps", "4"])
            .arg("--out")
            .arg(dir.path().join(out))
            .args(extra);
        for (p, t) in [("17", &t17), ("33", &t33)] {
            if scales.split(',').any(|s| s == p) {
                c.arg("--teacher").arg(t);
            }
        }
        let out = run_ok(&mut c);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let both = dir.path().join("both");
    let both_text = train("17,33", "both", &[]);
    assert!(!both_text.contains("taken from"), "{both_text}");
    train("33", "alone", &[]);
    let alone = tensors(&dir.path().join("alone/p33.safetensors"));
    let multi = tensors(&both.join("p33.safetensors"));
    assert_eq!(
        alone.keys().collect::<Vec<_>>(),
        multi.keys().collect::<Vec<_>>()
    );
    for (name, a) in &alone {
        assert_eq!(a, &multi[name], "{name} differs between the two trainings");
    }

    let reuse = both.display().to_string();
    let text = train("33", "reused", &["--reuse", &reuse]);
    assert!(text.contains("taken from"), "{text}");
    assert_eq!(
        std::fs::read(dir.path().join("reused/p33.safetensors")).unwrap(),
        std::fs::read(both.join("p33.safetensors")).unwrap()
    );
    assert!(dir.path().join("reused/validation-scores.json").is_file());
    let summary = json(&dir.path().join("reused/train-summary.json"));
    assert_eq!(summary["reused"][0]["patch_size"], 33);
    assert_eq!(
        summary["reused"][0]["from"],
        both.join("p33.safetensors").display().to_string()
    );
    assert!(
        json(&both.join("train-summary.json"))
            .get("reused")
            .is_none()
    );

    // Another seed is another training: passed over, trained, and different.
    let text = train("33", "seed1", &["--reuse", &reuse, "--seed", "1"]);
    assert!(!text.contains("taken from"), "{text}");
    let seed1 = tensors(&dir.path().join("seed1/p33.safetensors"));
    let student = alone.keys().find(|k| k.contains("student")).unwrap();
    assert_ne!(seed1[student], alone[student]);

    // `ust evaluate --reuse`: the copied scale takes the multi-scale run's p = 33 row, which
    // is what scoring it gives; the other seed's evaluation is passed over.
    let evaluate = |run: &str, out: &str, extra: &[&str]| {
        run_ok(
            ust()
                .arg("evaluate")
                .arg(dir.path().join(run))
                .arg("--out")
                .arg(dir.path().join(out))
                .args(extra),
        );
        json(&dir.path().join(out).join("report.json"))
    };
    let from_both = evaluate("both", "eval-both", &[]);
    evaluate("seed1", "eval-seed1", &[]);
    let scored = evaluate("reused", "eval-scored", &[]);
    let eval_both = dir.path().join("eval-both").display().to_string();
    let eval_seed1 = dir.path().join("eval-seed1").display().to_string();
    let candidates = ["--reuse", &eval_seed1, "--reuse", &eval_both];
    let taken = evaluate("reused", "eval-taken", &candidates);
    assert!(scored.get("rows_from").is_none());
    assert_eq!(taken["rows_from"], eval_both.as_str());
    assert_eq!(from_both["rows"][1]["name"], "p=33");
    assert_eq!(
        taken["rows"],
        serde_json::json!([from_both["rows"][1].clone()])
    );
    assert_eq!(taken["rows"], scored["rows"]);
    assert_eq!(taken["test_images"], scored["test_images"]);
    assert_eq!(taken["defect_regions"], scored["defect_regions"]);
    let md = std::fs::read_to_string(dir.path().join("eval-taken/report.md")).unwrap();
    assert!(md.contains("nothing was scored again"), "{md}");
    // A source whose scale file changed after its report is passed over.
    touch(&both.join("p33.safetensors"));
    let again = evaluate("reused", "eval-stale", &candidates);
    assert!(again.get("rows_from").is_none());
    assert_eq!(again["rows"], scored["rows"]);
}

/// `ust evaluate` keeps every image's scores until its report is written: stopped after two
/// images and run again, it scores only the rest and reports exactly what an uninterrupted
/// evaluation reports; a damaged kept file is an error naming it.
#[test]
fn an_interrupted_evaluation_resumes_with_the_same_report() {
    let dir = tempfile::tempdir().unwrap();
    let run = trained_smoke_run(dir.path());
    let evaluate = |out: &Path, stop_after: Option<usize>| {
        let mut c = ust();
        c.arg("evaluate").arg(&run).arg("--out").arg(out);
        if let Some(n) = stop_after {
            c.env("UST_EVALUATE_STOP_AFTER", n.to_string());
        }
        c.output().unwrap()
    };
    let full = dir.path().join("full");
    assert!(evaluate(&full, None).status.success());
    assert!(!full.join("evaluate-partial").exists());
    let full = json(&full.join("report.json"));
    assert_eq!(full["resumed_images"], 0);

    let part = dir.path().join("part");
    let stopped = evaluate(&part, Some(2));
    assert!(!stopped.status.success());
    let kept = part.join("evaluate-partial");
    for f in ["key.json", "00000.f32", "00001.f32"] {
        assert!(kept.join(f).is_file(), "{f} not kept");
    }
    assert!(!kept.join("00002.f32").exists());
    assert!(!part.join("report.json").exists());
    assert!(evaluate(&part, None).status.success());
    assert!(
        !kept.exists(),
        "the kept scores are removed with the report written"
    );
    let resumed = json(&part.join("report.json"));
    assert_eq!(resumed["resumed_images"], 2);
    assert_eq!(resumed["test_images"], full["test_images"]);
    assert_eq!(resumed["rows"], full["rows"]);

    // A damaged kept file: an error naming it, not a silent wrong score.
    let damaged = dir.path().join("damaged");
    assert!(!evaluate(&damaged, Some(1)).status.success());
    let file = damaged.join("evaluate-partial/00000.f32");
    std::fs::write(&file, [0u8; 10]).unwrap();
    let out = evaluate(&damaged, None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("00000.f32") && err.contains("10 bytes"),
        "{err}"
    );
    // Kept scores of another evaluation (another key) are cleared, not mixed in.
    std::fs::write(damaged.join("evaluate-partial/key.json"), "{}").unwrap();
    assert!(evaluate(&damaged, None).status.success());
    let fresh = json(&damaged.join("report.json"));
    assert_eq!(fresh["resumed_images"], 0);
    assert_eq!(fresh["rows"], full["rows"]);
}

/// Every `.tiff` under `dir`, by path relative to it.
fn tiff_maps(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<f32>> {
    let mut maps = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "tiff") {
                let map = ust_data::maps::read_map(&path).unwrap();
                maps.insert(path.strip_prefix(dir).unwrap().to_path_buf(), map.data);
            }
        }
    }
    maps
}

#[test]
fn score_terms_ablation_maps_add_up_to_the_full_score() {
    let dir = tempfile::tempdir().unwrap();
    let run = trained_smoke_run(dir.path());
    let evaluate = |out: &str, extra: &[&str]| {
        let mut c = ust();
        c.arg("evaluate")
            .arg(&run)
            .arg("--out")
            .arg(dir.path().join(out))
            .args(extra);
        c
    };
    for (out, terms) in [("both", "e+v"), ("error", "e"), ("variance", "v")] {
        run_ok(&mut evaluate(out, &["--score", terms, "--save-maps"]));
        let report = json(&dir.path().join(out).join("report.json"));
        assert_eq!(report["score_terms"], terms);
        let md = std::fs::read_to_string(dir.path().join(out).join("report.md")).unwrap();
        assert!(md.contains("anomaly score terms"), "{md}");
    }
    // The full score is the sum of its normalised terms, pixel by pixel (the resize to the
    // images' own size is bilinear, so linear in the scores).
    let (both, error, variance) = (
        tiff_maps(&dir.path().join("both/maps")),
        tiff_maps(&dir.path().join("error/maps")),
        tiff_maps(&dir.path().join("variance/maps")),
    );
    assert!(!both.is_empty());
    assert_eq!(
        both.keys().collect::<Vec<_>>(),
        error.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        both.keys().collect::<Vec<_>>(),
        variance.keys().collect::<Vec<_>>()
    );
    let mut largest_term = 0f32;
    for (name, b) in &both {
        for ((b, e), v) in b.iter().zip(&error[name]).zip(&variance[name]) {
            assert!(
                (b - (e + v)).abs() <= 1e-4 * (1.0 + b.abs()),
                "{}: {b} != {e} + {v}",
                name.display()
            );
            largest_term = largest_term.max(e.abs()).max(v.abs());
        }
    }
    assert!(largest_term > 0.1, "the terms are not all zero");
    assert_ne!(error, variance);

    // Rows of an evaluation with other terms are never taken; with the same terms they are.
    run_ok(evaluate("error-again", &["--score", "e", "--reuse"]).arg(dir.path().join("both")));
    let again = json(&dir.path().join("error-again/report.json"));
    assert!(again.get("rows_from").is_none(), "{again}");
    let error_rows = json(&dir.path().join("error/report.json"))["rows"].clone();
    assert_eq!(again["rows"], error_rows);
    run_ok(evaluate("error-reused", &["--score", "e", "--reuse"]).arg(dir.path().join("error")));
    let reused = json(&dir.path().join("error-reused/report.json"));
    assert!(reused["rows_from"].is_string(), "{reused}");
    assert_eq!(reused["rows"], error_rows);

    // Scores an interrupted `--score e` evaluation kept are not mixed into an e+v one.
    let part = dir.path().join("part");
    let stopped = evaluate("part", &["--score", "e"])
        .env("UST_EVALUATE_STOP_AFTER", "2")
        .output()
        .unwrap();
    assert!(!stopped.status.success());
    assert!(part.join("evaluate-partial/00001.f32").is_file());
    run_ok(&mut evaluate("part", &[]));
    let full = json(&part.join("report.json"));
    assert_eq!(full["resumed_images"], 0);
    assert_eq!(
        full["rows"],
        json(&dir.path().join("both/report.json"))["rows"]
    );

    // All three in one evaluation (the networks run once): the main rows and maps are e+v's,
    // the further rows exactly those of the separate evaluations.
    run_ok(&mut evaluate("all", &["--score", "e+v,e,v", "--save-maps"]));
    let all = json(&dir.path().join("all/report.json"));
    assert_eq!(all["score_terms"], "e+v");
    assert_eq!(
        all["rows"],
        json(&dir.path().join("both/report.json"))["rows"]
    );
    assert_eq!(tiff_maps(&dir.path().join("all/maps")), both);
    let blocks = all["term_rows"].as_array().unwrap();
    assert_eq!(blocks.len(), 2);
    for (block, (terms, out)) in blocks.iter().zip([("e", "error"), ("v", "variance")]) {
        assert_eq!(block["score_terms"], terms);
        assert_eq!(
            block["rows"],
            json(&dir.path().join(out).join("report.json"))["rows"]
        );
    }
    let md = std::fs::read_to_string(dir.path().join("all/report.md")).unwrap();
    assert!(md.contains("e only (ablation: regression error)"), "{md}");
    // Interrupted and resumed, the kept scores of all three give the same rows.
    let stopped = evaluate("all-part", &["--score", "e+v,e,v"])
        .env("UST_EVALUATE_STOP_AFTER", "2")
        .output()
        .unwrap();
    assert!(!stopped.status.success());
    run_ok(&mut evaluate("all-part", &["--score", "e+v,e,v"]));
    let resumed = json(&dir.path().join("all-part/report.json"));
    assert_eq!(resumed["resumed_images"], 2);
    assert_eq!(resumed["rows"], all["rows"]);
    assert_eq!(resumed["term_rows"], all["term_rows"]);
    // An evaluation without the further terms asked for is not reused; one with them is (only
    // the rows asked for are taken, in the order asked).
    let both_dir = dir.path().join("both");
    run_ok(evaluate("not-taken", &["--score", "e+v,v", "--reuse"]).arg(&both_dir));
    let not_taken = json(&dir.path().join("not-taken/report.json"));
    assert!(not_taken.get("rows_from").is_none(), "{not_taken}");
    assert_eq!(not_taken["term_rows"][0], blocks[1]);
    let all_dir = dir.path().join("all");
    run_ok(evaluate("v-taken", &["--score", "e+v,v", "--reuse"]).arg(&all_dir));
    let taken = json(&dir.path().join("v-taken/report.json"));
    assert!(taken["rows_from"].is_string(), "{taken}");
    assert_eq!(taken["rows"], all["rows"]);
    assert_eq!(taken["term_rows"], serde_json::json!([blocks[1]]));
    run_ok(evaluate("main-taken", &["--reuse"]).arg(&all_dir));
    let main_taken = json(&dir.path().join("main-taken/report.json"));
    assert!(main_taken["rows_from"].is_string(), "{main_taken}");
    assert!(main_taken.get("term_rows").is_none(), "{main_taken}");
    // A term named twice is refused.
    let twice = evaluate("twice", &["--score", "e,e"]).output().unwrap();
    assert!(!twice.status.success());
    assert!(String::from_utf8_lossy(&twice.stderr).contains("names e twice"));
}

/// Training needs nothing but good images: a category with only `train/good` (and an empty
/// `test/good`, which used to fail with "folder holds no images"), and a plain folder of
/// images, each train; the second run's model predicts maps of new images.
#[test]
fn training_needs_only_good_images_in_train_good_or_a_plain_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let teacher = root.join("teacher-p17.safetensors");
    random_teacher(&teacher);
    let only_train = root.join("only-train");
    let plain = root.join("plain");
    for i in 0..6 {
        let img = support::texture(i, 40, 40, None);
        support::save(&img, &only_train.join(format!("train/good/{i:03}.png")));
        support::save(&img, &plain.join(format!("{i:03}.png")));
    }
    std::fs::create_dir_all(only_train.join("test/good")).unwrap();
    let train = |data: &Path, run: &Path| {
        let mut c = ust();
        c.args(["train", "--data"])
            .arg(data)
            .args(["--scales", "17", "--preset", "smoke", "--teacher"])
            .arg(&teacher)
            .arg("--out")
            .arg(run);
        c
    };
    for (data, run) in [
        (&only_train, root.join("run-a")),
        (&plain, root.join("run-b")),
    ] {
        run_ok(&mut train(data, &run));
        let spec = std::fs::read_to_string(run.join("run.toml")).unwrap();
        assert!(spec.contains(&data.display().to_string()), "{spec}");
        assert!(run.join("p17.safetensors").is_file());
    }
    let maps = root.join("maps");
    run_ok(
        ust()
            .arg("predict")
            .arg(root.join("run-b"))
            .arg(plain.join("000.png"))
            .arg("--out")
            .arg(&maps)
            .args(["--format", "tiff"]),
    );
    assert!(std::fs::read_dir(&maps).unwrap().next().is_some());
    // A folder with neither train/ nor images says so, naming it.
    let empty = root.join("nothing");
    std::fs::create_dir_all(&empty).unwrap();
    let out = train(&empty, &root.join("run-c")).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nothing") && err.contains("no images"),
        "{err}"
    );
}

/// `ust predict` writes a summary of every image with its image score and verdict; the
/// threshold is recomputed here from the run's validation image scores.
#[test]
fn predict_writes_per_image_verdicts_at_an_image_false_positive_rate() {
    let dir = tempfile::tempdir().unwrap();
    let run = trained_smoke_run(dir.path());
    let validation = json(&run.join("validation-scores.json"));
    let mut image_scores: Vec<f64> = validation["image_scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    image_scores.sort_by(f64::total_cmp);
    let n = image_scores.len();
    assert!(n >= 1, "{validation}");
    let test = dir.path().join("widget/test");
    for (fpr, expected) in [
        ("0", image_scores[n - 1]),
        (
            "0.6",
            image_scores[n - 1 - ((0.6 * n as f64).floor() as usize).min(n - 1)],
        ),
    ] {
        let out = dir.path().join(format!("pred-{fpr}"));
        let output = run_ok(
            ust()
                .arg("--quiet")
                .env_remove("RUST_LOG")
                .arg("predict")
                .arg(&run)
                .arg(&test)
                .arg("--out")
                .arg(&out)
                .args(["--format", "npy", "--image-fpr", fpr]),
        );
        // --quiet: the results on stdout, no log lines on stderr.
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("INFO"), "{stderr}");
        assert!(String::from_utf8_lossy(&output.stdout).contains("anomaly maps"));
        let summary = json(&out.join("summary.json"));
        assert_eq!(summary["threshold"].as_f64().unwrap(), expected);
        let rows = summary["images"].as_array().unwrap();
        assert_eq!(rows.len(), 4); // 2 good + 2 blob test images
        let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "image,output,image_score,anomalous");
        assert_eq!(lines.len(), rows.len() + 1);
        for (row, line) in rows.iter().zip(&lines[1..]) {
            let score = row["image_score"].as_f64().unwrap();
            // Its map is written beside the summary under the same name.
            let npy = out.join(format!("{}.npy", row["output"].as_str().unwrap()));
            assert!(npy.is_file(), "{}", npy.display());
            assert_eq!(row["anomalous"].as_bool().unwrap(), score > expected);
            assert!(
                line.ends_with(&format!(",{score},{}", score > expected)),
                "{line}"
            );
        }
    }
}

/// `ust evaluate` killed with SIGKILL mid-way (not a clean stop) and run again resumes from
/// the scores it kept and reports exactly what an uninterrupted run reports.
#[test]
fn an_evaluation_killed_mid_way_resumes_with_the_same_report() {
    let dir = tempfile::tempdir().unwrap();
    let run = trained_smoke_run(dir.path());
    // Thirty more defect-free test images, so that the evaluation lasts long enough to be
    // killed between two images.
    for i in 0..30 {
        support::save(
            &support::texture(100 + i, 44, 36, None),
            &dir.path().join(format!("widget/test/good/extra{i:03}.png")),
        );
    }
    let evaluate = |out: &Path| {
        let mut c = ust();
        c.arg("evaluate").arg(&run).arg("--out").arg(out);
        c
    };
    let full = dir.path().join("full");
    run_ok(&mut evaluate(&full));
    let full = json(&full.join("report.json"));

    let part = dir.path().join("part");
    let mut child = evaluate(&part)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let kept = part.join("evaluate-partial");
    let started = std::time::Instant::now();
    while !kept.join("00002.f32").is_file() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it could be killed"
        );
        assert!(
            started.elapsed().as_secs() < 120,
            "no score kept after 120 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!part.join("report.json").exists());
    run_ok(&mut evaluate(&part));
    let resumed = json(&part.join("report.json"));
    let n = resumed["resumed_images"].as_u64().unwrap();
    // The smoke preset evaluates 16 of the 34 test images.
    assert!((3..16).contains(&n), "resumed {n} images");
    assert_eq!(resumed["test_images"], 16);
    assert_eq!(resumed["rows"], full["rows"]);
}

/// `ust teacher info FILE | head -c 1`: a reader that closes the pipe before the output is
/// written ends the program as it ends other Unix tools (SIGPIPE), not with a panic message.
#[cfg(unix)]
#[test]
fn a_closed_stdout_pipe_is_not_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let teacher =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/teacher-p33.safetensors");
    let mut child = ust()
        .args(["teacher", "info"])
        .arg(&teacher)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end at once: the JSON (a few kB) is written into a closed pipe.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        out.status.success() || out.status.signal() == Some(libc_sigpipe()),
        "{:?}: {stderr}",
        out.status
    );
}

/// SIGPIPE's number on Linux and the BSDs.
#[cfg(unix)]
fn libc_sigpipe() -> i32 {
    13
}

/// Opens `report` in headless Chromium through `scripts/check_html_report.py` (every picture
/// loads and shows, no console error, a non-empty gallery). Skips with a message where the
/// machine has no Chromium, ChromeDriver or Selenium (the script's exit status 2).
fn check_in_a_browser(report: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/check_html_report.py");
    let out = match std::process::Command::new("python3")
        .arg(&script)
        .arg(report)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipping the browser check: python3 not runnable ({e})");
            return;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(2) {
        eprintln!("skipping the browser check: {stderr}");
        return;
    }
    assert!(
        out.status.success(),
        "report.html in a headless browser:\n{}{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
}
