//! Tests of the one-class students: calibration, presets, learning a class, and a killed run
//! resumed to the same students.

use std::ops::ControlFlow;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use ust_models::PatchNet;

use super::*;
use crate::training::checkpoint::named_vars;

fn random_teacher(p: usize) -> PatchNet {
    let varmap = VarMap::new();
    let net = PatchNet::new(
        ust_models::PatchNetConfig::new(p),
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    crate::training::init::initialize_seeded(&named_vars(&varmap), 3).unwrap();
    net.detach()
}

/// Images of a "class": a bright square at one place (plus a little noise); the other
/// class has the square elsewhere.
fn images(n: usize, corner: usize, seed: u32, p: usize) -> Tensor {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(7);
    let mut data = Vec::with_capacity(n * 3 * p * p);
    for _ in 0..n {
        for _ in 0..3 {
            for y in 0..p {
                for x in 0..p {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    let noise = (state >> 8) as f32 / (1u32 << 24) as f32 * 0.1;
                    let inside =
                        (corner..corner + 6).contains(&y) && (corner..corner + 6).contains(&x);
                    data.push(if inside { 0.9 } else { 0.1 } + noise);
                }
            }
        }
    }
    Tensor::from_vec(data, (n, 3, p, p), &Device::Cpu).unwrap()
}

#[test]
fn calibration_is_the_population_statistics() {
    // e = 1, 3, 5, 7 → mean 4, std √5; v = 2, 2, 2, 6 → mean 3, std √3.
    let c = calibrate(&[1.0, 3.0, 5.0, 7.0], &[2.0, 2.0, 2.0, 6.0], 4);
    assert!((c.e_mean - 4.0).abs() < 1e-12 && (c.e_std - 5f64.sqrt()).abs() < 1e-12);
    assert!((c.v_mean - 3.0).abs() < 1e-12 && (c.v_std - 3f64.sqrt()).abs() < 1e-12);
    assert_eq!((c.images, c.pixels), (4, 4));
}

#[test]
fn presets_are_valid_and_bad_values_are_named() {
    for p in Preset::ALL {
        OneClassStudentConfig::preset(p).check().unwrap();
    }
    assert_eq!(OneClassStudentConfig::paper().students, 5);
    let bad = OneClassStudentConfig {
        batch_size: 0,
        ..OneClassStudentConfig::smoke()
    };
    assert!(bad.check().unwrap_err().to_string().contains("batch_size"));
}

#[test]
fn students_learn_the_class_and_score_other_images_higher() {
    let p = 17;
    let teacher = random_teacher(p);
    let train = images(12, 2, 1, p);
    let validation = images(4, 2, 2, p);
    let config = OneClassStudentConfig::smoke();
    let model =
        OneClassStudents::train(&config, &teacher, &train, &validation, &Device::Cpu).unwrap();
    assert_eq!(model.summary.steps, 10 * 3);
    assert!(
        model.summary.final_loss < model.summary.first_epoch_loss,
        "{:?}",
        model.summary
    );
    // Validation scores are centred by construction.
    let s = model.scores(&validation).unwrap();
    let mean = s.iter().map(|&x| f64::from(x)).sum::<f64>() / s.len() as f64;
    assert!(mean.abs() < 1e-4, "{mean}");
    // Normal test images score below images of the other class.
    let normal = model.scores(&images(8, 2, 3, p)).unwrap();
    let other = model.scores(&images(8, 9, 4, p)).unwrap();
    let max_normal = normal.iter().cloned().fold(f32::MIN, f32::max);
    let min_other = other.iter().cloned().fold(f32::MAX, f32::min);
    assert!(max_normal < min_other, "{normal:?} vs {other:?}");
    // Wrong image size is refused with the expected shape in the message.
    let err = model
        .scores(&Tensor::zeros((1, 3, 9, 9), DType::F32, &Device::Cpu).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("(N, 3, 17, 17)"), "{err}");
}

/// Stops a run after `stop_at` steps, as a kill would, and records what it heard.
#[derive(Default)]
struct Watch {
    stop_at: Option<usize>,
    start: Option<OneClassRunStart>,
    checkpoints: Vec<usize>,
}

impl TrainingObserver<OneClassRunStart, OneClassStep> for Watch {
    fn started(&mut self, start: &OneClassRunStart) {
        self.start = Some(start.clone());
    }
    fn step(&mut self, report: &OneClassStep) -> ControlFlow<()> {
        if Some(report.step) == self.stop_at {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
    fn checkpoint(&mut self, step: usize, _path: &Path) {
        self.checkpoints.push(step);
    }
}

#[test]
fn an_interrupted_run_resumes_to_the_same_students() {
    let p = 17;
    let teacher = random_teacher(p);
    let train = images(12, 2, 1, p);
    let validation = images(4, 2, 2, p);
    let test = images(6, 9, 4, p);
    let config = OneClassStudentConfig {
        epochs: 3,
        ..OneClassStudentConfig::smoke()
    };
    let straight =
        OneClassStudents::train(&config, &teacher, &train, &validation, &Device::Cpu).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let checkpointing = OneClassCheckpointing {
        path: dir.path().join("students.checkpoint.safetensors"),
        resume: true,
    };
    let run = |watch: &mut Watch, config: &OneClassStudentConfig, train: &Tensor| {
        OneClassStudents::train_resumable(
            config,
            &teacher,
            train,
            &validation,
            &Device::Cpu,
            Some(&checkpointing),
            watch,
        )
    };
    // 3 batches per epoch, 9 steps; checkpoints after steps 4 and 8. Killed after step 7:
    // the checkpoint of step 4 is on disk, steps 5–7 are lost.
    let mut killed = Watch {
        stop_at: Some(7),
        ..Watch::default()
    };
    match run(&mut killed, &config, &train).unwrap() {
        OneClassOutcome::Stopped { step } => assert_eq!(step, 7),
        other => panic!("{other:?}"),
    }
    assert!(checkpointing.path.is_file());
    assert_eq!(killed.checkpoints, [4]);
    let start = killed.start.expect("started");
    assert_eq!(
        (start.start_step, start.total_steps, start.resumed),
        (0, 9, false)
    );

    // Another configuration, or other training images, cannot continue it.
    let other = OneClassStudentConfig {
        batch_size: 3,
        ..config.clone()
    };
    let err = run(&mut Watch::default(), &other, &train).unwrap_err();
    assert!(matches!(err, DetectorError::ConfigMismatch { .. }), "{err}");
    let err = run(&mut Watch::default(), &config, &images(12, 3, 5, p)).unwrap_err();
    assert!(err.to_string().contains("training images"), "{err}");

    let mut rest = Watch::default();
    let OneClassOutcome::Finished(resumed) = run(&mut rest, &config, &train).unwrap() else {
        panic!("not finished");
    };
    let start = rest.start.expect("started");
    assert_eq!((start.start_step, start.resumed), (4, true));
    assert_eq!(rest.checkpoints, [8]);
    assert_eq!(resumed.summary.sessions, 2);
    assert_eq!(resumed.summary.steps, straight.summary.steps);
    assert_eq!(resumed.summary.final_loss, straight.summary.final_loss);
    assert_eq!(
        resumed.summary.first_epoch_loss,
        straight.summary.first_epoch_loss
    );
    assert_eq!(resumed.calibration, straight.calibration);
    assert_eq!(
        resumed.scores(&test).unwrap(),
        straight.scores(&test).unwrap()
    );
    // The checkpoint is gone once the students are trained.
    assert!(!checkpointing.path.exists());
}
