//! End-to-end runs of teacher pretraining on a generated image folder (no shared data
//! needed), and with the shared EfficientNet-Lite0 weights when they are present.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use ust_detector::teacher::files::{DECODER_PREFIX, load_checkpoint};
use ust_detector::{
    DetectorError, IterationReport, RunPaths, RunStart, TeacherFileInfo, TeacherTrainer,
    TeacherTrainingConfig, TrainingObserver, TrainingOutcome, load_teacher,
};
use ust_models::PatchNet;

/// `count` 96×96 RGB images of smooth random blobs plus noise, seeded by index.
fn image_folder(dir: &Path, count: usize) -> PathBuf {
    let root = dir.join("images");
    std::fs::create_dir_all(root.join("nested")).unwrap();
    for i in 0..count {
        let mut state = 0x2545_F491_4F6C_DD1Du64.wrapping_mul(i as u64 + 1);
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        let (cx, cy, r) = (next() * 96.0, next() * 96.0, 10.0 + next() * 30.0);
        let colour = [next(), next(), next()];
        let img = image::RgbImage::from_fn(96, 96, |x, y| {
            let d = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt();
            let inside = if d < r { 1.0 } else { 0.3 };
            let mut px = |c: f32| ((c * inside * 0.8 + next() * 0.2) * 255.0) as u8;
            image::Rgb([px(colour[0]), px(colour[1]), px(colour[2])])
        });
        // Half the images in a subfolder: the folder is searched recursively.
        let sub = if i % 2 == 0 { "" } else { "nested" };
        img.save(root.join(sub).join(format!("{i}.png"))).unwrap();
    }
    root
}

/// A metric-learning-only smoke configuration (no backbone, no shared data).
fn metric_config(folder: &Path) -> TeacherTrainingConfig {
    let mut c = TeacherTrainingConfig::smoke(17);
    c.losses.lambda_k = 0.0;
    c.losses.lambda_m = 1.0;
    c.losses.lambda_c = 0.0;
    c.data.folder = folder.display().to_string();
    c
}

/// Records what the trainer reports; stops after `stop_at` steps when set.
#[derive(Default)]
struct Recorder {
    start: Option<RunStart>,
    reports: Vec<IterationReport>,
    checkpoints: Vec<usize>,
    stop_at: Option<usize>,
}

impl TrainingObserver<RunStart, IterationReport> for Recorder {
    fn started(&mut self, start: &RunStart) {
        self.start = Some(start.clone());
    }
    fn step(&mut self, report: &IterationReport) -> ControlFlow<()> {
        self.reports.push(report.clone());
        if Some(report.iteration) == self.stop_at {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
    fn checkpoint(&mut self, iteration: usize, _path: &Path) {
        self.checkpoints.push(iteration);
    }
}

fn values(params: &[(String, Tensor)]) -> Vec<(String, Vec<f32>)> {
    params
        .iter()
        .map(|(n, t)| (n.clone(), t.flatten_all().unwrap().to_vec1().unwrap()))
        .collect()
}

fn shared_weights() -> Option<PathBuf> {
    let shared = ust_data::shared::shared_dir_for_tests(env!("CARGO_MANIFEST_DIR"))?;
    let w = shared.join("weights/efficientnet_lite0.safetensors");
    if w.is_file() {
        Some(w)
    } else {
        eprintln!("skipping: {} not found (set UST_SHARED)", w.display());
        None
    }
}

#[test]
fn smoke_run_writes_a_loadable_teacher_with_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let folder = image_folder(dir.path(), 6);
    let out = dir.path().join("out/teacher.safetensors");
    let paths = RunPaths::beside(&out);
    let mut trainer =
        TeacherTrainer::new(metric_config(&folder), paths.clone(), &Device::Cpu).unwrap();
    let mut rec = Recorder::default();
    let outcome = trainer.run(&mut rec).unwrap();
    let TrainingOutcome::Finished(summary) = outcome else {
        panic!("the run did not finish: {outcome:?}")
    };
    // Smoke preset: 4 steps at batch 4, checkpoints at 2 and 4.
    assert_eq!(summary.iterations, 4);
    assert_eq!(
        rec.reports.iter().map(|r| r.iteration).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(rec.checkpoints, [2, 4]);
    for r in &rec.reports {
        assert!(r.terms.total.is_finite() && r.terms.total >= 0.0, "{r:?}");
        assert_eq!(Some(r.terms.total), r.terms.triplet);
        assert_eq!((r.terms.distillation, r.terms.compactness), (None, None));
        assert!(r.patches_per_s > 0.0);
    }
    assert_eq!(summary.final_terms, rec.reports[3].terms);
    assert_eq!(summary.data_images, 6);
    assert_eq!(summary.backbone, None);
    assert_eq!(summary.sessions, 1);

    // The file is a patch network for ust-models …
    let net = PatchNet::load(&out, &Device::Cpu).unwrap();
    assert_eq!(net.patch_size(), 17);
    let x = Tensor::rand(0f32, 1f32, (4, 3, 17, 17), &Device::Cpu).unwrap();
    let d: Vec<Vec<f32>> = net.descriptors(&x).unwrap().to_vec2().unwrap();
    assert!(d.iter().flatten().all(|v| v.is_finite()));
    assert_ne!(d[0], d[1]);
    // … holding exactly the trained parameters, and the record of its training. (Detached,
    // the trained network takes the loaded one's inference path: frozen convolutions run
    // through Winograd, trainable ones through the direct kernels, which differ in the last
    // bits.)
    let trained = trainer.teacher().detach().descriptors(&x).unwrap();
    for loaded in [&net, &load_teacher(&out, &Device::Cpu).unwrap()] {
        let diff = (loaded.descriptors(&x).unwrap() - &trained)
            .unwrap()
            .abs()
            .unwrap();
        assert_eq!(diff.max_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
    }
    let info = TeacherFileInfo::read(&out).unwrap();
    assert_eq!(info.summary, *summary);
    assert_eq!(info.training_config, *trainer.config());
    assert!(info.decoder_tensors.is_empty());
    // The resolved configuration beside it reproduces the run's configuration.
    let written = std::fs::read_to_string(&paths.config).unwrap();
    let again = TeacherTrainingConfig::from_toml_str(&written, None).unwrap();
    assert_eq!(again, *trainer.config());
    assert_eq!(
        load_checkpoint(&paths.checkpoint).unwrap().state.iteration,
        4
    );
    // No temporary files are left behind.
    let names: Vec<String> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
}

/// Run, kill (stop without a checkpoint), resume: the count continues from the last
/// checkpoint and the final parameters equal those of an uninterrupted run.
#[test]
fn resume_after_a_kill_continues_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let folder = image_folder(dir.path(), 5);
    let mut config = metric_config(&folder);
    config.schedule.iterations = 5;
    config.schedule.checkpoint_every = 2;
    config.losses.lambda_c = 0.5;

    let straight_paths = RunPaths::beside(&dir.path().join("a/teacher.safetensors"));
    let mut straight =
        TeacherTrainer::new(config.clone(), straight_paths.clone(), &Device::Cpu).unwrap();
    let mut rec_a = Recorder::default();
    straight.run(&mut rec_a).unwrap();

    let paths = RunPaths::beside(&dir.path().join("b/teacher.safetensors"));
    let mut first = TeacherTrainer::new(config.clone(), paths.clone(), &Device::Cpu).unwrap();
    let mut rec = Recorder {
        stop_at: Some(3),
        ..Default::default()
    };
    assert_eq!(
        first.run(&mut rec).unwrap(),
        TrainingOutcome::Stopped { iteration: 3 }
    );
    assert_eq!(rec.checkpoints, [2]);
    assert!(!paths.output.exists());
    drop(first);

    let mut resumed = TeacherTrainer::resume(config.clone(), paths.clone(), &Device::Cpu).unwrap();
    assert_eq!(resumed.iteration(), 2);
    let mut rec_b = Recorder::default();
    let TrainingOutcome::Finished(summary) = resumed.run(&mut rec_b).unwrap() else {
        panic!("the resumed run did not finish")
    };
    let start = rec_b.start.unwrap();
    assert!(start.resumed);
    assert_eq!((start.start_iteration, start.total_iterations), (2, 5));
    assert_eq!(
        rec_b
            .reports
            .iter()
            .map(|r| r.iteration)
            .collect::<Vec<_>>(),
        [3, 4, 5]
    );
    assert!(rec_b.reports.iter().all(|r| r.terms.total.is_finite()));
    assert_eq!((summary.iterations, summary.sessions), (5, 2));
    // Same losses step by step, same final parameters, bit for bit.
    for (a, b) in rec_a.reports[2..].iter().zip(&rec_b.reports) {
        assert_eq!(a.terms, b.terms, "iteration {}", a.iteration);
    }
    assert_eq!(
        values(&resumed.parameters()),
        values(&straight.parameters())
    );

    // Resuming under another configuration is refused, naming the difference.
    let mut other = config.clone();
    other.optimizer.learning_rate *= 2.0;
    let err = TeacherTrainer::resume(other, paths.clone(), &Device::Cpu).unwrap_err();
    assert!(matches!(err, DetectorError::ConfigMismatch { .. }), "{err}");
    assert!(err.to_string().contains("optimizer.learning_rate"), "{err}");
    // … but a longer schedule is an extension of the same run.
    let mut longer = config.clone();
    longer.schedule.iterations = 6;
    let mut extended = TeacherTrainer::resume(longer, paths.clone(), &Device::Cpu).unwrap();
    assert_eq!(extended.iteration(), 5);
    let TrainingOutcome::Finished(s) = extended.run(&mut ()).unwrap() else {
        panic!("the extension did not finish")
    };
    assert_eq!((s.iterations, s.sessions), (6, 3));
    // Without a checkpoint there is nothing to resume.
    let none = RunPaths::beside(&dir.path().join("c/teacher.safetensors"));
    let err = TeacherTrainer::resume(config, none, &Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("no checkpoint"), "{err}");
}

/// A learning rate of 1e8 blows the weights up within a couple of steps: the run stops with
/// `Diverged`, naming the last good checkpoint, which stays loadable.
#[test]
fn divergence_stops_the_run_and_keeps_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let folder = image_folder(dir.path(), 4);
    let mut config = metric_config(&folder);
    config.losses.lambda_c = 1.0;
    config.schedule.iterations = 20;
    config.schedule.checkpoint_every = 1;
    config.optimizer.learning_rate = 1e8;
    let paths = RunPaths::beside(&dir.path().join("teacher.safetensors"));
    let mut trainer = TeacherTrainer::new(config, paths.clone(), &Device::Cpu).unwrap();
    let mut rec = Recorder::default();
    let err = trainer.run(&mut rec).unwrap_err();
    let DetectorError::Diverged {
        iteration,
        last_checkpoint,
        last_checkpoint_iteration,
        ..
    } = &err
    else {
        panic!("expected Diverged, got {err}")
    };
    assert!(*iteration >= 2, "{err}");
    assert_eq!(last_checkpoint.as_deref(), Some(paths.checkpoint.as_path()));
    assert_eq!(*last_checkpoint_iteration, Some(iteration - 1));
    assert_eq!(rec.checkpoints.last().copied(), Some(iteration - 1));
    let message = err.to_string();
    assert!(
        message.contains("diverged") && message.contains("kept"),
        "{message}"
    );
    let ckpt = load_checkpoint(&paths.checkpoint).unwrap();
    assert_eq!(ckpt.state.iteration, iteration - 1);
    assert!(ckpt.state.last_terms.unwrap().total.is_finite());
    assert!(!paths.output.exists());
}

/// Distillation from EfficientNet-Lite0 through the bank (p = 17, tiny batches), with a
/// kill and resume: the bank is checkpointed with the rest, so the resumed run matches.
#[test]
fn distillation_with_bank_resumes_exactly() {
    let Some(weights) = shared_weights() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let folder = image_folder(dir.path(), 5);
    let mut config = TeacherTrainingConfig::smoke(17);
    config.data.folder = folder.display().to_string();
    config.backbone.weights = Some(weights.display().to_string());
    config.schedule.iterations = 4;

    let a = RunPaths::beside(&dir.path().join("a/t.safetensors"));
    let mut straight = TeacherTrainer::new(config.clone(), a.clone(), &Device::Cpu).unwrap();
    let mut rec_a = Recorder::default();
    let TrainingOutcome::Finished(summary) = straight.run(&mut rec_a).unwrap() else {
        panic!("did not finish")
    };
    for r in &rec_a.reports {
        let t = r.terms;
        assert!(t.distillation.unwrap().is_finite() && t.compactness.unwrap().is_finite());
        let total = t.distillation.unwrap() + t.compactness.unwrap();
        assert!(
            (t.total - total).abs() < 1e-3 * total.abs().max(1.0),
            "{t:?}"
        );
    }
    assert!(
        summary
            .backbone
            .as_deref()
            .unwrap()
            .starts_with("efficientnet-lite0")
    );
    let info = TeacherFileInfo::read(&a.output).unwrap();
    assert_eq!(
        info.decoder_tensors,
        [
            format!("{DECODER_PREFIX}linear.bias"),
            format!("{DECODER_PREFIX}linear.weight")
        ]
    );
    // The teacher loads without the decoder (through the detector and through ust-models
    // alone) and computes what the trainer computed.
    let x = Tensor::rand(0f32, 1f32, (3, 3, 17, 17), &Device::Cpu).unwrap();
    for teacher in [
        load_teacher(&a.output, &Device::Cpu).unwrap(),
        PatchNet::load(&a.output, &Device::Cpu).unwrap(),
    ] {
        let straight = straight.teacher().detach().descriptors(&x).unwrap();
        let diff = (teacher.descriptors(&x).unwrap() - straight)
            .unwrap()
            .abs()
            .unwrap();
        assert_eq!(diff.max_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
    }
    let ckpt = load_checkpoint(&a.checkpoint).unwrap();
    assert_eq!(ckpt.tensors["bank.features"].dims(), &[8, 1280]);
    assert_eq!(ckpt.tensors["decoder.linear.weight"].dims(), &[1280, 128]);

    stopped_and_resumed_run_matches(
        config,
        &dir.path().join("b/t.safetensors"),
        &rec_a,
        &straight,
    );
}

#[test]
fn dense_distillation_trains_resumes_exactly_and_is_recorded() {
    let Some(weights) = shared_weights() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let folder = image_folder(dir.path(), 5);
    let mut config = TeacherTrainingConfig::smoke(33);
    config.data.folder = folder.display().to_string();
    config.backbone.weights = Some(weights.display().to_string());
    config.schedule.iterations = 4;
    config.schedule.batch_size = 2;
    config.distillation.mode = ust_detector::teacher::config::DistillationMode::Dense;
    config.distillation.dense_grid = 4;

    let a = RunPaths::beside(&dir.path().join("a/t.safetensors"));
    let mut straight = TeacherTrainer::new(config.clone(), a.clone(), &Device::Cpu).unwrap();
    let mut rec_a = Recorder::default();
    let TrainingOutcome::Finished(summary) = straight.run(&mut rec_a).unwrap() else {
        panic!("did not finish")
    };
    assert_eq!(rec_a.reports.len(), 4);
    for r in &rec_a.reports {
        let t = r.terms;
        assert!(t.distillation.unwrap().is_finite() && t.compactness.unwrap().is_finite());
    }
    // 2 windows of 4×4 teacher outputs (45×45 pixels, 360×360 for the backbone) per step.
    let expected_rate = (4 * 32) as f64 / summary.duration_s;
    assert!((summary.patches_per_s - expected_rate).abs() < 1e-6 * expected_rate);
    let info = TeacherFileInfo::read(&a.output).unwrap();
    assert_eq!(info.training_config.distillation, config.distillation);

    stopped_and_resumed_run_matches(
        config,
        &dir.path().join("b/t.safetensors"),
        &rec_a,
        &straight,
    );
}

/// Runs `config` in `output`'s folder, stops it after step 3 (its last checkpoint is step 2),
/// resumes it, and checks that every later step and the final parameters equal those of the
/// uninterrupted run `straight` (whose steps `straight_steps` recorded).
fn stopped_and_resumed_run_matches(
    config: TeacherTrainingConfig,
    output: &Path,
    straight_steps: &Recorder,
    straight: &TeacherTrainer,
) {
    let paths = RunPaths::beside(output);
    let mut first = TeacherTrainer::new(config.clone(), paths.clone(), &Device::Cpu).unwrap();
    let mut rec = Recorder {
        stop_at: Some(3),
        ..Default::default()
    };
    first.run(&mut rec).unwrap();
    drop(first);
    let mut resumed = TeacherTrainer::resume(config, paths, &Device::Cpu).unwrap();
    assert_eq!(resumed.iteration(), 2);
    let mut rec_b = Recorder::default();
    resumed.run(&mut rec_b).unwrap();
    for (x, y) in straight_steps.reports[2..].iter().zip(&rec_b.reports) {
        assert_eq!(x.terms, y.terms, "iteration {}", x.iteration);
    }
    assert_eq!(
        values(&resumed.parameters()),
        values(&straight.parameters())
    );
}
