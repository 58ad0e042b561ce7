//! End-to-end tests of `ust eval`: a tiny MVTec-layout dataset generated here, maps written as
//! TIFF and NPY, the binary run as a user runs it, its JSON checked against hand-derived values
//! and against an independent computation on the shared paper data.

use std::path::{Path, PathBuf};
use std::process::Command;

fn ust() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ust"))
}

fn shared_dir() -> Option<PathBuf> {
    ust_data::shared::shared_dir_for_tests(env!("CARGO_MANIFEST_DIR"))
}

fn save_gray(path: &Path, w: u32, h: u32, data: Vec<u8>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_raw(w, h, data)
        .unwrap()
        .save(path)
        .unwrap();
}

fn save_tiff(path: &Path, w: u32, h: u32, data: &[f32]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut enc = tiff::encoder::TiffEncoder::new(file).unwrap();
    enc.write_image::<tiff::encoder::colortype::Gray32Float>(w, h, data)
        .unwrap();
}

fn save_npy(path: &Path, w: usize, h: usize, data: &[f32]) {
    use npyz::WriterBuilder;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut out = npyz::WriteOptions::<f32>::new()
        .default_dtype()
        .shape(&[h as u64, w as u64])
        .writer(file)
        .begin_nd()
        .unwrap();
    out.extend(data.iter().copied()).unwrap();
    out.finish().unwrap();
}

/// Category `widget`: 8x8 images; test/good/{g0,g1}, test/scratch/{s0,s1} with masks.
/// s0 has one 2x2 defect, s1 two separate defects.
fn tiny_dataset(root: &Path) -> Vec<(String, String, Vec<u8>)> {
    let cat = root.join("widget");
    save_gray(&cat.join("train/good/t0.png"), 8, 8, vec![100; 64]);
    let mut samples = Vec::new();
    for g in ["g0", "g1"] {
        save_gray(&cat.join(format!("test/good/{g}.png")), 8, 8, vec![90; 64]);
        samples.push(("good".to_string(), g.to_string(), vec![0u8; 64]));
    }
    let mut m0 = vec![0u8; 64];
    for (y, x) in [(2, 2), (2, 3), (3, 2), (3, 3)] {
        m0[y * 8 + x] = 255;
    }
    let mut m1 = vec![0u8; 64];
    for (y, x) in [(0, 0), (0, 1), (6, 6), (7, 7)] {
        m1[y * 8 + x] = 255;
    }
    for (name, mask) in [("s0", m0), ("s1", m1)] {
        save_gray(
            &cat.join(format!("test/scratch/{name}.png")),
            8,
            8,
            vec![80; 64],
        );
        save_gray(
            &cat.join(format!("ground_truth/scratch/{name}_mask.png")),
            8,
            8,
            mask.clone(),
        );
        samples.push(("scratch".to_string(), name.to_string(), mask));
    }
    samples
}

fn run_eval(dataset: &Path, maps: &Path, extra: &[&str]) -> (bool, String, serde_json::Value) {
    let json = maps.join("report.json");
    let out = ust()
        .args(["eval", "--data"])
        .arg(dataset)
        .arg("--maps")
        .arg(maps)
        .arg("--json")
        .arg(&json)
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let value = std::fs::read_to_string(&json)
        .ok()
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or(serde_json::Value::Null);
    (out.status.success(), stderr, value)
}

#[test]
fn perfect_and_constant_maps() {
    let dir = tempfile::tempdir().unwrap();
    let (data, perfect, constant) = (
        dir.path().join("data"),
        dir.path().join("perfect"),
        dir.path().join("constant"),
    );
    let samples = tiny_dataset(&data);
    for (k, (defect, name, mask)) in samples.iter().enumerate() {
        let p: Vec<f32> = mask
            .iter()
            .map(|&m| f32::from(m) / 255.0 + 0.01 * k as f32)
            .collect();
        let rel = format!("widget/test/{defect}/{name}");
        // Mix the two formats: the evaluator picks whichever exists.
        if k % 2 == 0 {
            save_tiff(&perfect.join(format!("{rel}.tiff")), 8, 8, &p);
        } else {
            save_npy(&perfect.join(format!("{rel}.npy")), 8, 8, &p);
        }
        save_tiff(&constant.join(format!("{rel}.tiff")), 8, 8, &[0.5; 64]);
    }
    let (ok, err, v) = run_eval(&data, &perfect, &[]);
    assert!(ok, "{err}");
    let c = &v["categories"][0];
    assert_eq!(c["category"], "widget");
    assert!((c["au_pro"].as_f64().unwrap() - 1.0).abs() < 1e-12);
    assert_eq!(c["pixel_auroc"].as_f64().unwrap(), 1.0);
    assert_eq!(c["image_auroc"].as_f64().unwrap(), 1.0);
    assert_eq!(c["n_images"], 4);
    assert_eq!(c["n_regions"], 3);
    assert!((v["mean"]["au_pro"].as_f64().unwrap() - 1.0).abs() < 1e-12);

    // A constant map: every pixel ties; AU-PRO = limit / 2, AUROCs 0.5.
    let (ok, err, v) = run_eval(&data, &constant, &["--fpr-limit", "0.2"]);
    assert!(ok, "{err}");
    let c = &v["categories"][0];
    assert!((c["au_pro"].as_f64().unwrap() - 0.1).abs() < 1e-12);
    assert_eq!(c["pixel_auroc"].as_f64().unwrap(), 0.5);
    assert_eq!(c["image_auroc"].as_f64().unwrap(), 0.5);
}

#[test]
fn clear_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (data, maps) = (dir.path().join("data"), dir.path().join("maps"));
    let samples = tiny_dataset(&data);
    for (defect, name, _) in &samples {
        save_tiff(
            &maps.join(format!("widget/test/{defect}/{name}.tiff")),
            8,
            8,
            &[0.1; 64],
        );
    }
    // A missing map.
    std::fs::remove_file(maps.join("widget/test/scratch/s1.tiff")).unwrap();
    let (ok, err, _) = run_eval(&data, &maps, &[]);
    assert!(!ok);
    assert!(
        err.contains("missing anomaly map") && err.contains("s1.tiff"),
        "{err}"
    );

    // A map of the wrong size: an error, unless --resize.
    save_tiff(&maps.join("widget/test/scratch/s1.tiff"), 4, 4, &[0.3; 16]);
    let (ok, err, _) = run_eval(&data, &maps, &[]);
    assert!(!ok);
    assert!(err.contains("s1.tiff") && err.contains("--resize"), "{err}");
    let (ok, err, _) = run_eval(&data, &maps, &["--resize"]);
    assert!(ok, "{err}");

    // NaN in a map.
    let mut nan = vec![0.2f32; 64];
    nan[9] = f32::NAN;
    save_tiff(&maps.join("widget/test/good/g1.tiff"), 8, 8, &nan);
    let (ok, err, _) = run_eval(&data, &maps, &["--resize"]);
    assert!(!ok);
    assert!(
        err.contains("g1.png") && err.contains("non-finite"),
        "{err}"
    );
    save_tiff(&maps.join("widget/test/good/g1.tiff"), 8, 8, &[0.2; 64]);

    // A corrupt map file.
    std::fs::write(maps.join("widget/test/good/g0.tiff"), b"II*\0not a tiff").unwrap();
    let (ok, err, _) = run_eval(&data, &maps, &["--resize"]);
    assert!(!ok);
    assert!(err.contains("g0.tiff"), "{err}");
    save_tiff(&maps.join("widget/test/good/g0.tiff"), 8, 8, &[0.2; 64]);

    // A mask that is not binary.
    let mut grey = vec![0u8; 64];
    grey[0] = 255;
    grey[1] = 128;
    save_gray(
        &data.join("widget/ground_truth/scratch/s0_mask.png"),
        8,
        8,
        grey,
    );
    let (ok, err, _) = run_eval(&data, &maps, &["--resize"]);
    assert!(!ok);
    assert!(
        err.contains("s0_mask.png") && err.contains("not binary"),
        "{err}"
    );

    // An unknown category.
    let (ok, err, _) = run_eval(&data, &maps, &["--category", "nope"]);
    assert!(!ok);
    assert!(err.contains("nope"), "{err}");
}

/// The official protocol, written plainly in the test: a comparison sort of all pixels, the
/// cumulative FPR and PRO, ties collapsed, and the limited trapezoid.
fn reference_au_pro(maps: &[Vec<f32>], masks: &[Vec<u8>], w: usize, h: usize, limit: f64) -> f64 {
    let mut pixels: Vec<(f32, Option<usize>)> = Vec::new();
    let mut sizes: Vec<usize> = Vec::new();
    for (m, k) in maps.iter().zip(masks) {
        let (labels, n) = ust_metrics::label_regions_8(k, w, h);
        let base = sizes.len();
        sizes.extend(std::iter::repeat_n(0, n as usize));
        for (i, &l) in labels.iter().enumerate() {
            let region = (l > 0).then(|| base + l as usize - 1);
            if let Some(r) = region {
                sizes[r] += 1;
            }
            pixels.push((m[i], region));
        }
    }
    pixels.sort_by(|a, b| b.0.total_cmp(&a.0));
    let n_normal = pixels.iter().filter(|p| p.1.is_none()).count() as f64;
    let (mut xs, mut ys) = (vec![0.0], vec![0.0]);
    let (mut fp, mut overlap) = (0.0, 0.0);
    for (i, &(s, r)) in pixels.iter().enumerate() {
        match r {
            None => fp += 1.0,
            Some(r) => overlap += 1.0 / sizes[r] as f64,
        }
        if i + 1 == pixels.len() || pixels[i + 1].0 != s {
            xs.push((fp / n_normal).min(1.0));
            ys.push((overlap / sizes.len() as f64).min(1.0));
        }
    }
    xs.push(1.0);
    ys.push(1.0);
    let mut area = 0.0;
    for i in 1..xs.len() {
        if xs[i] <= limit {
            area += 0.5 * (ys[i] + ys[i - 1]) * (xs[i] - xs[i - 1]);
        } else {
            if xs[i - 1] < limit {
                let y = ys[i - 1] + (ys[i] - ys[i - 1]) * (limit - xs[i - 1]) / (xs[i] - xs[i - 1]);
                area += 0.5 * (y + ys[i - 1]) * (limit - xs[i - 1]);
            }
            break;
        }
    }
    area / limit
}

#[test]
fn shared_paper_category_matches_independent_computation() {
    let Some(shared) = shared_dir() else {
        return;
    };
    let category = shared.join("data/mvtec-layout/paper_pa_bdp01_tl");
    if !category.is_dir() {
        eprintln!("skipping: {} not found", category.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let maps_root = dir.path().join("maps");
    // Noisy maps quantised to 1/16 (many ties) from a fixed xorshift sequence.
    let mut s = 0x1234_5678_9abc_def0u64;
    let mut noise = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    let (mut maps, mut masks) = (Vec::new(), Vec::new());
    let (mut w, mut h) = (0, 0);
    let test = category.join("test");
    let mut defects: Vec<_> = std::fs::read_dir(&test)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    defects.sort();
    for d in defects {
        let defect = d.file_name().unwrap().to_str().unwrap().to_string();
        let mut files: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files {
            let stem = f.file_stem().unwrap().to_str().unwrap().to_string();
            let (iw, ih) = image::image_dimensions(&f).unwrap();
            (w, h) = (iw as usize, ih as usize);
            let mask: Vec<u8> = if defect == "good" {
                vec![0; w * h]
            } else {
                let p = category.join(format!("ground_truth/{defect}/{stem}_mask.png"));
                image::open(p)
                    .unwrap()
                    .to_luma8()
                    .into_raw()
                    .iter()
                    .map(|&v| u8::from(v > 0))
                    .collect()
            };
            let map: Vec<f32> = mask
                .iter()
                .map(|&m| ((f32::from(m) * 0.6 + noise()) * 16.0).round() / 16.0)
                .collect();
            save_tiff(
                &maps_root.join(format!("paper_pa_bdp01_tl/test/{defect}/{stem}.tiff")),
                w as u32,
                h as u32,
                &map,
            );
            maps.push(map);
            masks.push(mask);
        }
    }
    let (ok, err, v) = run_eval(&category, &maps_root, &[]);
    assert!(ok, "{err}");
    let got = v["categories"][0]["au_pro"].as_f64().unwrap();
    let want = reference_au_pro(&maps, &masks, w, h, 0.3);
    assert!(
        (got - want).abs() < 1e-9,
        "ust eval {got} vs reference {want}"
    );
    assert_eq!(v["categories"][0]["n_images"], 64);
}

/// `ust data info` exits with 2 (not 1, an error of the program) when it finds problems in
/// the data, and writes its report as JSON with `--json FILE` like the other commands.
#[test]
fn data_problems_have_their_own_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("images");
    save_gray(&folder.join("good.png"), 4, 4, vec![128; 16]);
    std::fs::write(folder.join("broken.png"), b"not a png").unwrap();
    let json = dir.path().join("info.json");
    let out = ust()
        .args(["data", "info"])
        .arg(&folder)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let problems = report["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.as_str().unwrap().contains("broken.png")),
        "{problems:?}"
    );
    std::fs::remove_file(folder.join("broken.png")).unwrap();
    let out = ust().args(["data", "info"]).arg(&folder).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}
