//! Tests of the student modules.

use std::ops::ControlFlow;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use ust_data::ChwImage;
use ust_models::{BorderPadding, DenseConfig, DenseExtractor, PatchNet, PatchNetConfig};

use crate::error::DetectorError;
use crate::preset::Preset;
use crate::student::sampling::{CropCoverage, StudentSampling};
use crate::training::checkpoint::named_vars;
use crate::training::init::initialize_seeded;
use crate::training::observer::TrainingObserver;

use super::trainer::*;
use super::*;
use candle_core::D;

fn noise_image(seed: u32, size: usize) -> ChwImage {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let data = (0..3 * size * size)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 24) as f32
        })
        .collect();
    ChwImage::new(3, size, size, data)
}

fn random_teacher(p: usize) -> PatchNet {
    let varmap = VarMap::new();
    let net = PatchNet::new(
        PatchNetConfig::new(p),
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    initialize_seeded(&named_vars(&varmap), 7).unwrap();
    net.detach()
}

fn tiny_config() -> StudentTrainingConfig {
    StudentTrainingConfig {
        image_size: 24,
        crop: 8,
        epochs: 2,
        checkpoint_every: 2,
        ..StudentTrainingConfig::smoke()
    }
}

#[test]
fn presets_are_valid_and_bad_values_are_named() {
    for p in Preset::ALL {
        StudentTrainingConfig::preset(p).check().unwrap();
    }
    let paper = StudentTrainingConfig::paper();
    assert_eq!(
        (paper.students, paper.image_size, paper.epochs),
        (3, 256, 100)
    );
    assert_eq!(paper.optimizer.learning_rate, 1e-4);
    let bad = StudentTrainingConfig {
        crop: 300,
        ..StudentTrainingConfig::cpu()
    };
    assert!(bad.check().unwrap_err().to_string().contains("crop 300"));
    let bad = StudentTrainingConfig {
        students: 0,
        ..StudentTrainingConfig::cpu()
    };
    assert!(bad.check().unwrap_err().to_string().contains("students"));
    let text = StudentTrainingConfig::cpu().to_toml().unwrap();
    let back: StudentTrainingConfig = toml::from_str(&text).unwrap();
    assert_eq!(back, StudentTrainingConfig::cpu());
}

#[test]
fn calibration_matches_hand_computed_statistics() {
    // e = [1, 3], [5, 7] -> mean 4, population std sqrt(5); v = [2, 2], [2, 6] -> mean 3,
    // std sqrt(3).
    let e = [vec![1.0f32, 3.0], vec![5.0, 7.0]];
    let v = [vec![2.0f32, 2.0], vec![2.0, 6.0]];
    let c = Calibration::from_maps(e.iter().zip(&v).map(|(a, b)| (a.as_slice(), b.as_slice())))
        .unwrap();
    assert!((c.e_mean - 4.0).abs() < 1e-12 && (c.e_std - 5f64.sqrt()).abs() < 1e-12);
    assert!((c.v_mean - 3.0).abs() < 1e-12 && (c.v_std - 3f64.sqrt()).abs() < 1e-12);
    assert_eq!((c.images, c.pixels), (2, 4));
    let s = c.score(&[4.0 + 5f32.sqrt()], &[3.0 - 2.0 * 3f32.sqrt()]);
    assert!((s[0] - (1.0 - 2.0)).abs() < 1e-5, "{s:?}");
    // One term alone: e one std above its mean, v two below.
    let (e1, v1) = ([4.0 + 5f32.sqrt()], [3.0 - 2.0 * 3f32.sqrt()]);
    let only_e = c.score_terms(ScoreTerms::Error, &e1, &v1);
    let only_v = c.score_terms(ScoreTerms::Variance, &e1, &v1);
    assert!((only_e[0] - 1.0).abs() < 1e-5 && (only_v[0] + 2.0).abs() < 1e-5);
    assert_eq!(c.score_terms(ScoreTerms::Both, &e1, &v1), s);
}

#[test]
fn score_terms_parse_and_print_their_names() {
    for (text, terms) in [
        ("e+v", ScoreTerms::Both),
        ("both", ScoreTerms::Both),
        ("e", ScoreTerms::Error),
        ("error", ScoreTerms::Error),
        ("v", ScoreTerms::Variance),
        ("variance", ScoreTerms::Variance),
    ] {
        assert_eq!(text.parse::<ScoreTerms>().unwrap(), terms);
    }
    assert!("ev".parse::<ScoreTerms>().is_err());
    assert_eq!(ScoreTerms::Both.to_string(), "e+v");
    assert_eq!(
        serde_json::to_string(&ScoreTerms::Variance).unwrap(),
        "\"v\""
    );
    assert_eq!(ScoreTerms::default(), ScoreTerms::Both);
}

#[test]
fn targets_are_standardised_per_dimension() {
    let teacher = DenseExtractor::new(random_teacher(17), DenseConfig::default());
    let images: Vec<Tensor> = (0..3)
        .map(|i| {
            noise_image(i, 12)
                .to_tensor(&Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap()
        })
        .collect();
    let t = TeacherTargets::compute(&teacher, &images).unwrap();
    let all = Tensor::cat(&t.targets, 0).unwrap(); // (3, d, 12, 12)
    let mean = all.mean_keepdim(0).unwrap().mean_keepdim(2).unwrap();
    let mean = mean.mean_keepdim(3).unwrap().flatten_all().unwrap();
    let sq = all
        .sqr()
        .unwrap()
        .mean_keepdim(0)
        .unwrap()
        .mean_keepdim(2)
        .unwrap();
    let sq = sq.mean_keepdim(3).unwrap().flatten_all().unwrap();
    for (m, s) in mean
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .zip(sq.to_vec1::<f32>().unwrap())
    {
        assert!(m.abs() < 1e-4, "mean {m}");
        assert!((s - 1.0).abs() < 1e-3, "variance {s}");
    }
    // The statistics are the raw descriptors' own: ŷ·σ + μ gives the teacher back.
    let raw = teacher.extract(&images[1]).unwrap();
    let back = t.targets[1]
        .broadcast_mul(&t.std)
        .unwrap()
        .broadcast_add(&t.mean)
        .unwrap();
    let diff = (raw - back).unwrap().abs().unwrap().max_all().unwrap();
    assert!(diff.to_scalar::<f32>().unwrap() < 1e-3);
}

#[test]
fn a_crop_of_the_padded_image_gives_the_crop_of_the_dense_output() {
    let p = 17;
    let dense = DenseExtractor::new(random_teacher(p), DenseConfig::default());
    let image = noise_image(5, 20)
        .to_tensor(&Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let full = dense.extract(&image).unwrap();
    let h = (p - 1) / 2;
    let padded = image
        .pad_with_zeros(D::Minus2, h, h)
        .unwrap()
        .pad_with_zeros(D::Minus1, h, h)
        .unwrap();
    let (r0, c0, side) = (3, 9, 7);
    let window = padded
        .narrow(2, r0, side + p - 1)
        .unwrap()
        .narrow(3, c0, side + p - 1)
        .unwrap();
    let crop = dense.extract_padded(&window).unwrap();
    let expected = full
        .narrow(2, r0, side)
        .unwrap()
        .narrow(3, c0, side)
        .unwrap();
    let diff = (crop - expected).unwrap().abs().unwrap().max_all().unwrap();
    assert!(diff.to_scalar::<f32>().unwrap() < 1e-4);
}

struct StopAt(usize);
impl TrainingObserver<StudentRunStart, StudentStepReport> for StopAt {
    fn step(&mut self, r: &StudentStepReport) -> ControlFlow<()> {
        if r.step == self.0 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

fn trainer(dir: &Path, resume: bool) -> ScaleTrainer {
    let train: Vec<ChwImage> = (0..3).map(|i| noise_image(i, 24)).collect();
    let validation = vec![noise_image(9, 24)];
    ScaleTrainer::new(
        tiny_config(),
        random_teacher(17),
        Path::new("teacher.safetensors"),
        &train,
        &validation,
        ScalePaths::in_run_dir(dir, 17),
        resume,
        &Device::Cpu,
    )
    .unwrap()
}

/// A run killed after a checkpoint and resumed ends with exactly the weights, losses and
/// calibration of a run that was never interrupted.
#[test]
fn resumed_training_equals_uninterrupted_training() {
    let straight = tempfile::tempdir().unwrap();
    let mut a = trainer(straight.path(), false);
    assert_eq!(a.total_steps(), 6);
    let ScaleOutcome::Finished(sa) = a.run(&mut ()).unwrap() else {
        panic!("not finished")
    };
    assert!(sa.final_loss.is_finite() && sa.final_loss > 0.0);
    assert!(
        !ScalePaths::in_run_dir(straight.path(), 17)
            .checkpoint
            .exists()
    );

    let broken = tempfile::tempdir().unwrap();
    let mut b = trainer(broken.path(), false);
    // Killed at step 5: the checkpoint holds step 4, step 5 is lost.
    assert_eq!(
        b.run(&mut StopAt(5)).unwrap(),
        ScaleOutcome::Stopped { step: 5 }
    );
    let paths = ScalePaths::in_run_dir(broken.path(), 17);
    assert!(paths.checkpoint.is_file() && !paths.model.exists());
    let mut c = trainer(broken.path(), true);
    assert_eq!(c.step_count(), 4);
    let ScaleOutcome::Finished(sc) = c.run(&mut ()).unwrap() else {
        panic!("not finished")
    };
    assert_eq!(sc.sessions, 2);
    assert_eq!(sa.final_loss, sc.final_loss);

    let ma = ScaleModel::load(
        &ScalePaths::in_run_dir(straight.path(), 17).model,
        &Device::Cpu,
    )
    .unwrap();
    let mc = ScaleModel::load(&paths.model, &Device::Cpu).unwrap();
    assert_eq!(ma.calibration, mc.calibration);
    for (x, y) in ma.students.iter().zip(&mc.students) {
        for ((n, t), (_, u)) in x.net().parameters().iter().zip(y.net().parameters()) {
            let d = (t - &u).unwrap().abs().unwrap().max_all().unwrap();
            assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0, "{n}");
        }
    }
    // The scale file scores images: the validation image scores near its calibration.
    let v = noise_image(9, 24)
        .to_tensor(&Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let s = ma.anomaly_scores(&v).unwrap();
    let mean = s.iter().map(|&x| x as f64).sum::<f64>() / s.len() as f64;
    assert_eq!(s.len(), 24 * 24);
    assert!(
        mean.abs() < 1e-3,
        "validation scores are centred by construction: {mean}"
    );
}

/// Spread of a (1, d, H, W) or H·W output: the largest distance from its first pixel.
fn spread(values: &[f32], per_pixel: usize) -> f32 {
    let pixels = values.len() / per_pixel;
    let mut worst = 0f32;
    for k in 0..per_pixel {
        let plane = &values[k * pixels..(k + 1) * pixels];
        for &x in plane {
            worst = worst.max((x - plane[0]).abs());
        }
    }
    worst
}

/// With replicate or reflect padding, the teacher, every student and the anomaly score are
/// spatially constant on a constant image: the frame is gone by construction. With zeros it
/// is there. The padding travels through the scale file.
#[test]
fn a_constant_image_scores_the_same_everywhere_without_zero_padding() {
    let train: Vec<ChwImage> = (0..3).map(|i| noise_image(i, 24)).collect();
    let constant = (Tensor::ones((1, 3, 24, 24), DType::F32, &Device::Cpu).unwrap() * 0.7).unwrap();
    for padding in BorderPadding::ALL {
        let dir = tempfile::tempdir().unwrap();
        let config = StudentTrainingConfig {
            padding,
            ..tiny_config()
        };
        ScaleTrainer::new(
            config,
            random_teacher(17),
            Path::new("teacher.safetensors"),
            &train,
            &[noise_image(9, 24)],
            ScalePaths::in_run_dir(dir.path(), 17),
            false,
            &Device::Cpu,
        )
        .unwrap()
        .run(&mut ())
        .unwrap();
        let model =
            ScaleModel::load(&ScalePaths::in_run_dir(dir.path(), 17).model, &Device::Cpu).unwrap();
        assert_eq!(model.training.padding, padding);
        assert_eq!(model.teacher.config().padding, padding);
        let flat = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let teacher = spread(&flat(model.teacher.extract(&constant).unwrap()), 128);
        let student = spread(&flat(model.students[1].extract(&constant).unwrap()), 128);
        let score = spread(&model.anomaly_scores(&constant).unwrap(), 1);
        if padding == BorderPadding::Zeros {
            assert!(
                teacher > 1e-2 && student > 1e-2 && score > 1e-2,
                "{padding}"
            );
        } else {
            assert!(teacher < 1e-4, "{padding}: teacher spread {teacher}");
            assert!(student < 1e-4, "{padding}: student spread {student}");
            assert!(score < 1e-3, "{padding}: score spread {score}");
        }
    }
}

/// A configuration written before the border settings and the input standardisation existed
/// reads as what those runs did.
#[test]
fn configurations_without_the_later_settings_read_as_the_old_behaviour() {
    let text = StudentTrainingConfig::cpu().to_toml().unwrap();
    let old: String = text
        .lines()
        .filter(|l| {
            ![
                "crop_coverage",
                "student_sampling",
                "padding",
                "standardize_inputs",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(old, text);
    let read: StudentTrainingConfig = toml::from_str(&old).unwrap();
    assert_eq!(read.padding, BorderPadding::Zeros);
    assert_eq!(read.crop_coverage, CropCoverage::Inside);
    assert_eq!(read.student_sampling, StudentSampling::Shared);
    assert!(!read.standardize_inputs);
    let cpu = StudentTrainingConfig::cpu();
    assert!(cpu.standardize_inputs);
    assert_eq!(
        (cpu.padding, cpu.crop_coverage, cpu.student_sampling),
        (
            BorderPadding::Replicate,
            CropCoverage::Uniform,
            StudentSampling::PerStudent
        )
    );
}

#[test]
fn resuming_with_another_configuration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = trainer(dir.path(), false);
    b.run(&mut StopAt(3)).unwrap();
    let train = vec![noise_image(0, 24), noise_image(1, 24), noise_image(2, 24)];
    let err = ScaleTrainer::new(
        StudentTrainingConfig {
            epochs: 3,
            ..tiny_config()
        },
        random_teacher(17),
        Path::new("t"),
        &train,
        &[noise_image(9, 24)],
        ScalePaths::in_run_dir(dir.path(), 17),
        true,
        &Device::Cpu,
    )
    .unwrap_err();
    assert!(matches!(err, DetectorError::ConfigMismatch { .. }), "{err}");
}
