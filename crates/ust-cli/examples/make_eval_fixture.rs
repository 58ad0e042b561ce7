//! Writes a synthetic MVTec-layout category and anomaly maps for benchmarking `ust eval`:
//! `make_eval_fixture OUT IMAGES SIZE` creates `OUT/dataset/bench/...` (half good, half
//! defective images with random elliptic defects) and `OUT/maps/bench/...` (32-bit float TIFF
//! maps: noise plus a bump over each defect), deterministic for given arguments.

use std::fs;
use std::io::BufWriter;
use std::path::Path;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() == 4, "usage: make_eval_fixture OUT IMAGES SIZE");
    let out = Path::new(&args[1]);
    let n: usize = args[2].parse()?;
    let size: usize = args[3].parse()?;
    let ds = out.join("dataset/bench");
    let maps = out.join("maps/bench");
    for d in [
        ds.join("train/good"),
        ds.join("test/good"),
        ds.join("test/defect"),
        ds.join("ground_truth/defect"),
        maps.join("test/good"),
        maps.join("test/defect"),
    ] {
        fs::create_dir_all(d)?;
    }
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    // A small image file is all the evaluator reads of an image (its header gives the size).
    let image = image::GrayImage::from_pixel(size as u32, size as u32, image::Luma([128]));
    image.save(ds.join("train/good/000.png"))?;
    for i in 0..n {
        let defective = i % 2 == 1;
        let (folder, name) = (if defective { "defect" } else { "good" }, format!("{i:04}"));
        image.save(ds.join(format!("test/{folder}/{name}.png")))?;
        let mut mask = vec![0u8; size * size];
        let mut map: Vec<f32> = (0..size * size).map(|_| rnd() as f32).collect();
        if defective {
            for _ in 0..3 {
                let (cx, cy) = (rnd() * size as f64, rnd() * size as f64);
                let (rx, ry) = (
                    5.0 + rnd() * size as f64 / 10.0,
                    5.0 + rnd() * size as f64 / 10.0,
                );
                for y in 0..size {
                    for x in 0..size {
                        let d = ((x as f64 - cx) / rx).powi(2) + ((y as f64 - cy) / ry).powi(2);
                        if d <= 1.0 {
                            mask[y * size + x] = 255;
                            map[y * size + x] += 0.5 * (1.0 - d) as f32;
                        }
                    }
                }
            }
            image::GrayImage::from_raw(size as u32, size as u32, mask)
                .expect("mask size")
                .save(ds.join(format!("ground_truth/defect/{name}_mask.png")))?;
        }
        let file = fs::File::create(maps.join(format!("test/{folder}/{name}.tiff")))?;
        let mut enc = tiff::encoder::TiffEncoder::new(BufWriter::new(file))?;
        enc.write_image::<tiff::encoder::colortype::Gray32Float>(size as u32, size as u32, &map)?;
    }
    println!("wrote {} and {}", ds.display(), maps.display());
    Ok(())
}
