//! The teachers shipped in `models/` load (f16 → f32), have the receptive field their name
//! says, and give finite, non-constant descriptors that differ between different patches
//! (a collapsed teacher would map every patch to one point). The model card's summary fields
//! are read from the same files.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use ust_detector::{TeacherFileInfo, load_teacher, teacher_file_name};

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

/// Deterministic patches: smooth gradients with different phases, plus one constant patch.
fn patches(p: usize, n: usize) -> Tensor {
    let mut data = Vec::with_capacity(n * 3 * p * p);
    for i in 0..n {
        for c in 0..3 {
            for y in 0..p {
                for x in 0..p {
                    let v = if i == 0 {
                        0.5
                    } else {
                        0.5 + 0.4
                            * ((x as f32 * 0.3 + i as f32).sin()
                                * (y as f32 * 0.2 + c as f32).cos())
                    };
                    data.push(v);
                }
            }
        }
    }
    Tensor::from_vec(data, (n, 3, p, p), &Device::Cpu).unwrap()
}

#[test]
fn shipped_teachers_load_and_describe_patches() {
    for (file, p) in [
        (teacher_file_name(17), 17),
        (teacher_file_name(33), 33),
        (teacher_file_name(65), 65),
        ("teacher-p33-metric.safetensors".to_string(), 33),
        ("teacher-p33-patch.safetensors".to_string(), 33),
    ] {
        let path = models_dir().join(&file);
        assert!(path.is_file(), "{} is missing", path.display());
        let teacher = load_teacher(&path, &Device::Cpu).unwrap();
        assert_eq!(teacher.patch_size(), p, "{file}");
        assert_eq!(teacher.descriptor_dim(), 128, "{file}");
        let d = teacher.descriptors(&patches(p, 6)).unwrap();
        let v = d.to_vec2::<f32>().unwrap();
        assert!(
            v.iter().flatten().all(|x| x.is_finite()),
            "{file}: non-finite descriptor"
        );
        // Within a descriptor the values vary, and different patches get different descriptors.
        for row in &v {
            let (lo, hi) = row
                .iter()
                .fold((f32::MAX, f32::MIN), |(a, b), &x| (a.min(x), b.max(x)));
            assert!(hi - lo > 1e-3, "{file}: constant descriptor");
        }
        for i in 1..v.len() {
            let dist: f32 = v[0].iter().zip(&v[i]).map(|(a, b)| (a - b).powi(2)).sum();
            assert!(dist > 1e-6, "{file}: patches 0 and {i} share a descriptor");
        }
        let info = TeacherFileInfo::read(&path).unwrap();
        assert_eq!(info.architecture.patch_size, p);
        assert!(info.summary.iterations > 0 && info.summary.final_terms.total.is_finite());
        assert!(
            info.decoder_tensors.is_empty(),
            "{file}: shipped with its decoder"
        );
        // The file records how it was distilled: the default p = 33 teacher is the dense one.
        assert_eq!(
            info.training_config.uses_dense_distillation(),
            file == teacher_file_name(33),
            "{file}"
        );
    }
}
