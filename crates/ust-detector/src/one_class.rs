//! Students for the one-class image protocol of MNIST and CIFAR-10 (METHOD.md §5–§7, Table 2):
//! every image is resized to the teacher's p×p, so the teacher gives one descriptor per image
//! (dense output 1×1). M students with the teacher's architecture (randomly initialised)
//! regress the teacher's descriptor normalised per dimension over the training images
//! (ŷ = (y − μ)/σ); the image score is (e − e_mean)/e_std + (v − v_mean)/v_std with e the
//! regression error of the students' mean, v their predictive variance, and the four statistics
//! over held-out validation images of the normal class (§6).
//!
//! One image is one descriptor here, so the trainer takes mini-batches of images (the dense
//! trainer of [`crate::student`] takes one whole image per step, which holds thousands of
//! descriptors); batch 1 is the paper's literal setting. Every student sees the batches in the
//! same seeded order and has its own Adam; weights, order and subsets derive from the seed.

use std::time::Instant;

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use ust_losses::{ensemble_scores, student_regression_loss};
use ust_models::PatchNet;

use crate::adam::{Adam, AdamConfig};
use crate::config::Preset;
use crate::error::{DetectorError, Result};
use crate::student::{Calibration, MIN_TARGET_STD, StudentTrainingConfig};
use crate::teacher::derive_seed;

const STREAM_INIT: u64 = 31;
const STREAM_ORDER: u64 = 32;
/// Images per forward pass when only scoring (no graph is recorded).
const SCORE_BATCH: usize = 256;

/// How the one-class students are trained. Start from [`OneClassStudentConfig::preset`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneClassStudentConfig {
    /// The preset the values started from (a record).
    pub preset: Preset,
    /// Seeds the initial weights and the batch order.
    pub seed: u64,
    /// Students (M; METHOD.md §5: 5 for MNIST and CIFAR-10).
    pub students: usize,
    /// Passes over the training images.
    pub epochs: usize,
    /// Images per optimiser step.
    pub batch_size: usize,
    pub optimizer: AdamConfig,
}

impl OneClassStudentConfig {
    /// METHOD.md §5 read literally for one descriptor per image: M = 5, batch 1 image,
    /// 100 epochs, Adam lr 1e-4, weight decay 1e-5.
    pub fn paper() -> Self {
        Self {
            preset: Preset::Paper,
            seed: 0,
            students: 5,
            epochs: 100,
            batch_size: 1,
            optimizer: StudentTrainingConfig::paper().optimizer,
        }
    }

    /// Sized for a 2-core CPU (with at most 300 training images, chosen by the caller): M = 5,
    /// batches of 16 images, 6 epochs, lr 5e-4 (the dense `cpu` preset's rate for a short
    /// schedule).
    pub fn cpu() -> Self {
        Self {
            preset: Preset::Cpu,
            epochs: 6,
            batch_size: 16,
            optimizer: AdamConfig {
                learning_rate: 5e-4,
                ..StudentTrainingConfig::paper().optimizer
            },
            ..Self::paper()
        }
    }

    /// Seconds on tiny data, for tests: M = 2, batches of 4, 10 epochs, lr 1e-3.
    pub fn smoke() -> Self {
        Self {
            preset: Preset::Smoke,
            students: 2,
            epochs: 10,
            batch_size: 4,
            optimizer: AdamConfig {
                learning_rate: 1e-3,
                ..StudentTrainingConfig::paper().optimizer
            },
            ..Self::paper()
        }
    }

    /// The preset's configuration.
    pub fn preset(preset: Preset) -> Self {
        match preset {
            Preset::Paper => Self::paper(),
            Preset::Cpu => Self::cpu(),
            Preset::Smoke => Self::smoke(),
        }
    }

    /// Validates every field before any work.
    pub fn check(&self) -> Result<()> {
        let bad = |m: &str| Err(DetectorError::InvalidConfig(m.to_string()));
        if self.students < 2 {
            return bad(
                "one-class students: at least 2 students are needed (the predictive variance of one is 0)",
            );
        }
        if self.epochs == 0 {
            return bad("one-class students: epochs must be at least 1");
        }
        if self.batch_size == 0 {
            return bad("one-class students: batch_size must be at least 1");
        }
        self.optimizer.check()
    }
}

/// What a training run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OneClassSummary {
    pub students: usize,
    pub train_images: usize,
    pub validation_images: usize,
    pub steps: usize,
    /// Mean over the students of the loss averaged over the first and the last epoch.
    pub first_epoch_loss: f64,
    pub final_loss: f64,
    pub training_s: f64,
}

/// Trained one-class students with the frozen teacher, the target statistics and the
/// calibration.
#[derive(Debug, Clone)]
pub struct OneClassStudents {
    teacher: PatchNet,
    students: Vec<PatchNet>,
    /// μ and σ of the teacher's training descriptors, each (1, d).
    mean: Tensor,
    std: Tensor,
    pub calibration: Calibration,
    pub summary: OneClassSummary,
}

fn named_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
    let mut vars: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// Descriptors of `images` (N, 3, p, p) → (N, d), in detached batches.
fn descriptors(net: &PatchNet, images: &Tensor) -> Result<Tensor> {
    let n = images.dim(0)?;
    let mut parts = Vec::new();
    for start in (0..n).step_by(SCORE_BATCH) {
        let len = SCORE_BATCH.min(n - start);
        parts.push(net.descriptors(&images.narrow(0, start, len)?)?);
    }
    Ok(Tensor::cat(&parts, 0)?)
}

fn check_images(images: &Tensor, p: usize, what: &str) -> Result<usize> {
    let dims = images.dims();
    if dims.len() != 4 || dims[1] != 3 || dims[2] != p || dims[3] != p {
        return Err(DetectorError::InvalidConfig(format!(
            "{what}: images must be (N, 3, {p}, {p}) for a p={p} teacher, got {dims:?}"
        )));
    }
    if dims[0] == 0 {
        return Err(DetectorError::InvalidConfig(format!("{what}: no images")));
    }
    Ok(dims[0])
}

/// Mean and population standard deviation of e and v (the statistics of METHOD.md §6).
fn calibrate(e: &[f32], v: &[f32], images: usize) -> Calibration {
    let stats = |x: &[f32]| {
        let n = x.len() as f64;
        let m = x.iter().map(|&a| f64::from(a)).sum::<f64>() / n;
        let var = x.iter().map(|&a| (f64::from(a) - m).powi(2)).sum::<f64>() / n;
        (m, var.sqrt().max(1e-12))
    };
    let (e_mean, e_std) = stats(e);
    let (v_mean, v_std) = stats(v);
    Calibration {
        e_mean,
        e_std,
        v_mean,
        v_std,
        images,
        pixels: e.len(),
    }
}

impl OneClassStudents {
    /// Trains `config.students` students on `train` and calibrates on `validation`, both
    /// (N, 3, p, p) with p the teacher's receptive field.
    pub fn train(
        config: &OneClassStudentConfig,
        teacher: &PatchNet,
        train: &Tensor,
        validation: &Tensor,
        device: &Device,
    ) -> Result<Self> {
        config.check()?;
        let p = teacher.patch_size();
        let n = check_images(train, p, "one-class training images")?;
        let n_val = check_images(validation, p, "one-class validation images")?;
        let teacher = teacher.detach();
        let started = Instant::now();

        // Targets: the teacher's descriptors, standardised per dimension.
        let raw = descriptors(&teacher, train)?; // (n, d)
        let d = raw.dim(1)?;
        let mean = raw.mean_keepdim(0)?;
        let centred = raw.broadcast_sub(&mean)?;
        let std = centred
            .sqr()?
            .mean_keepdim(0)?
            .sqrt()?
            .clamp(MIN_TARGET_STD, f32::MAX)?;
        let targets = centred.broadcast_div(&std)?;

        let mut nets = Vec::with_capacity(config.students);
        for m in 0..config.students {
            let varmap = VarMap::new();
            let net = PatchNet::new(
                teacher.config().clone(),
                VarBuilder::from_varmap(&varmap, DType::F32, device),
            )?;
            let vars = named_vars(&varmap);
            crate::init::initialize_seeded(
                &vars,
                derive_seed(config.seed, STREAM_INIT, (p * 1000 + m) as u64),
            )?;
            let optimizer = Adam::new(vars, config.optimizer.clone())?;
            nets.push((varmap, net, optimizer));
        }

        let batches_per_epoch = n.div_ceil(config.batch_size);
        let mut steps = 0usize;
        let (mut first_epoch_loss, mut final_loss) = (f64::NAN, f64::NAN);
        for epoch in 0..config.epochs {
            let mut order: Vec<u32> = (0..n as u32).collect();
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(derive_seed(
                config.seed,
                STREAM_ORDER,
                epoch as u64,
            ));
            order.shuffle(&mut rng);
            let mut epoch_sum = 0f64;
            for chunk in order.chunks(config.batch_size) {
                let idx = Tensor::from_slice(chunk, chunk.len(), device)?;
                let x = train.index_select(&idx, 0)?;
                let y = targets
                    .index_select(&idx, 0)?
                    .reshape((chunk.len(), d, 1, 1))?;
                let mut step_sum = 0f64;
                for (m, (_, net, optimizer)) in nets.iter_mut().enumerate() {
                    let prediction = net.forward(&x)?;
                    let loss = student_regression_loss(&prediction, &y)?;
                    let value = f64::from(loss.to_scalar::<f32>()?);
                    if !value.is_finite() {
                        return Err(DetectorError::Diverged {
                            iteration: steps + 1,
                            reason: format!("student {m}: the loss is {value}"),
                            last_checkpoint: None,
                            last_checkpoint_iteration: None,
                        });
                    }
                    let grads = loss.backward()?;
                    if let Err(bad) = optimizer.step(&grads)? {
                        return Err(DetectorError::Diverged {
                            iteration: steps + 1,
                            reason: format!(
                                "student {m}: the gradient of {} is not finite",
                                bad.parameter
                            ),
                            last_checkpoint: None,
                            last_checkpoint_iteration: None,
                        });
                    }
                    step_sum += value;
                }
                steps += 1;
                epoch_sum += step_sum / nets.len() as f64;
            }
            let epoch_loss = epoch_sum / batches_per_epoch as f64;
            if epoch == 0 {
                first_epoch_loss = epoch_loss;
            }
            final_loss = epoch_loss;
            tracing::info!(
                epoch = epoch + 1,
                epochs = config.epochs,
                mean_loss = format!("{epoch_loss:.4}"),
                "one-class students"
            );
        }
        let training_s = started.elapsed().as_secs_f64();
        let students: Vec<PatchNet> = nets.iter().map(|(_, net, _)| net.detach()).collect();
        let mut model = Self {
            teacher,
            students,
            mean,
            std,
            calibration: Calibration {
                e_mean: 0.0,
                e_std: 1.0,
                v_mean: 0.0,
                v_std: 1.0,
                images: 0,
                pixels: 0,
            },
            summary: OneClassSummary {
                students: config.students,
                train_images: n,
                validation_images: n_val,
                steps,
                first_epoch_loss,
                final_loss,
                training_s,
            },
        };
        let (e, v) = model.raw_scores(validation)?;
        model.calibration = calibrate(&e, &v, n_val);
        tracing::info!(calibration = ?model.calibration, "one-class students calibrated");
        Ok(model)
    }

    /// Regression error e and predictive variance v of every image (METHOD.md §6).
    ///
    /// # Shapes
    /// `images` (N, 3, p, p) → two vectors of N values
    pub fn raw_scores(&self, images: &Tensor) -> Result<(Vec<f32>, Vec<f32>)> {
        let n = check_images(images, self.teacher.patch_size(), "one-class images")?;
        let d = self.teacher.descriptor_dim();
        let (mut e, mut v) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for start in (0..n).step_by(SCORE_BATCH) {
            let len = SCORE_BATCH.min(n - start);
            let x = images.narrow(0, start, len)?;
            let target = self
                .teacher
                .descriptors(&x)?
                .broadcast_sub(&self.mean)?
                .broadcast_div(&self.std)?
                .reshape((len, d, 1, 1))?;
            let predictions = self
                .students
                .iter()
                .map(|s| Ok(s.descriptors(&x)?.reshape((len, d, 1, 1))?))
                .collect::<Result<Vec<_>>>()?;
            let scores = ensemble_scores(&predictions, &target)?;
            e.extend(scores.regression_error.flatten_all()?.to_vec1::<f32>()?);
            v.extend(scores.predictive_variance.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok((e, v))
    }

    /// The calibrated anomaly score of every image, higher = more anomalous.
    ///
    /// # Shapes
    /// `images` (N, 3, p, p) → N scores
    pub fn scores(&self, images: &Tensor) -> Result<Vec<f32>> {
        let (e, v) = self.raw_scores(images)?;
        Ok(self.calibration.score(&e, &v))
    }

    /// The receptive field.
    pub fn patch_size(&self) -> usize {
        self.teacher.patch_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_teacher(p: usize) -> PatchNet {
        let varmap = VarMap::new();
        let net = PatchNet::new(
            ust_models::PatchNetConfig::new(p),
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        )
        .unwrap();
        crate::init::initialize_seeded(&named_vars(&varmap), 3).unwrap();
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
}
