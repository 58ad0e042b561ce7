//! Helpers shared by the end-to-end CLI tests (`tests/detector_cli.rs`,
//! `crates/ust-cli/tests/*.rs`, each including this file with `#[path]`): the `ust` binary,
//! generated MVTec-layout categories and random teachers saved as files.

#![allow(dead_code)] // every test file uses a different part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `ust` binary of this build.
pub fn ust() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ust"))
}

/// The `ust` binary, run in `cwd`.
pub fn ust_in(cwd: &Path) -> Command {
    let mut c = ust();
    c.current_dir(cwd);
    c
}

/// Runs the command and asserts success, printing its output otherwise.
pub fn run_ok(cmd: &mut Command) -> Output {
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
pub fn texture(seed: u32, w: u32, h: u32, defect: Option<(u32, u32, u32)>) -> image::RgbImage {
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

/// Saves an image, creating its folder.
pub fn save(img: &image::RgbImage, path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
}

/// `root/<name>`: 6 training images (40×40) and 2 good and 2 defective test images of
/// `test_w`×`test_h` (another size than the training images makes maps come back at a size
/// other than the model's), with masks for the defects.
pub fn textured_category(root: &Path, name: &str, test_w: u32, test_h: u32) -> PathBuf {
    let cat = root.join(name);
    for i in 0..6 {
        save(
            &texture(i, 40, 40, None),
            &cat.join(format!("train/good/{i:03}.png")),
        );
    }
    for i in 0..2 {
        save(
            &texture(10 + i, test_w, test_h, None),
            &cat.join(format!("test/good/{i:03}.png")),
        );
        let (dx, dy, s) = (8 + 10 * i, 10, 8);
        save(
            &texture(20 + i, test_w, test_h, Some((dx, dy, s))),
            &cat.join(format!("test/blob/{i:03}.png")),
        );
        let mask = image::GrayImage::from_fn(test_w, test_h, |x, y| {
            let inside = (dx..dx + s).contains(&x) && (dy..dy + s).contains(&y);
            image::Luma([if inside { 255 } else { 0 }])
        });
        let p = cat.join(format!("ground_truth/blob/{i:03}_mask.png"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        mask.save(p).unwrap();
    }
    cat
}

/// A randomly initialised patch network of receptive field `p`, saved as a teacher file.
pub fn random_teacher(path: &Path, p: usize) {
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};
    let varmap = VarMap::new();
    let net = ust_models::PatchNet::new(
        ust_models::PatchNetConfig::new(p),
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    net.save(path).unwrap();
}

/// A JSON file, parsed (the path in the panic message when it cannot be read).
pub fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}
