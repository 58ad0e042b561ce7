//! What a job will cost before it runs: seconds and peak memory on the project's 2-core
//! machine, from a small linear model whose coefficients (`costs.toml`, beside this file) were
//! fitted to measured step and image times. `ust experiment --plan` prints it per job and in
//! total; the run's report shows it beside the measured time, so a stale model is visible.
//!
//! The unit costs are per *pixel* of what a network computes (a crop of the dense output in
//! a training step, the whole image in a prediction), so one coefficient pair per patch size
//! covers every preset: the presets differ in image side, crop, students and schedule, which
//! the model reads from the presets themselves ([`StudentTrainingConfig`], the teacher
//! configuration file, [`crate::presets`]).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use ust_baselines::DescriptorMethod;
use ust_detector::one_class::OneClassStudentConfig;
use ust_detector::{Preset, StudentTrainingConfig, TeacherTrainingConfig};

use crate::cell::is_done;
use crate::presets::{dense_preset, max_test_images, oneclass_preset};
use crate::resolve::{Job, Task};

/// The coefficients shipped with this build.
pub const COSTS_TOML: &str = include_str!("costs.toml");

/// `seconds = fixed + per_px × pixels`, written `[fixed, per_px]`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(from = "[f64; 2]")]
pub struct Linear {
    pub fixed: f64,
    pub per_px: f64,
}

impl From<[f64; 2]> for Linear {
    fn from([fixed, per_px]: [f64; 2]) -> Self {
        Self { fixed, per_px }
    }
}

impl Linear {
    fn at(self, px: f64) -> f64 {
        self.fixed + self.per_px * px
    }
}

/// Costs of one patch size `p`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleCosts {
    /// One network's dense pass over an image (pixels: the image's).
    pub dense_image: Linear,
    /// One student's training step (pixels: the trained output, the crop or the image).
    pub student_step: Linear,
    /// One teacher training iteration, per patch of the batch (pixels: p²).
    pub teacher_patch: Linear,
}

/// Peak resident memory per job kind and preset, MiB.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeakMemory {
    pub students: BTreeMap<String, f64>,
    pub teacher: BTreeMap<String, f64>,
    pub dense_baseline: BTreeMap<String, f64>,
    pub one_class: BTreeMap<String, f64>,
}

/// The cost model: `costs.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostModel {
    /// Where and how the coefficients were measured, in words.
    pub measured: String,
    /// Seconds every command spends outside its steps (start, loading, reports).
    pub command_s: f64,
    /// Per patch size ("17", "33", "65"); others are interpolated by p².
    pub scales: BTreeMap<String, ScaleCosts>,
    /// One-class cells (one descriptor per image): a network's pass over one p×p image, and a
    /// student's training step per image of the batch.
    pub one_class_image_s: f64,
    pub one_class_student_image_s: f64,
    /// Fitting one dense baseline, per training vector (after the preset's caps).
    pub dense_fit_vector_s: f64,
    pub peak_mib: PeakMemory,
}

/// A job's expected cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub seconds: f64,
    pub peak_mib: Option<f64>,
}

/// One job of [`CostModel::plan_costs`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JobCost {
    /// Its cell holds a result (it will not run).
    pub done: bool,
    pub estimate: Option<Estimate>,
}

/// [`CostModel::plan_costs`]: the selected jobs in order, and the sums of the pending ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlanCosts {
    pub jobs: Vec<JobCost>,
    pub pending: usize,
    pub cached: usize,
    /// Seconds of one core's work of the pending jobs with an estimate.
    pub total_s: f64,
    /// Pending jobs without an estimate (their data could not be read).
    pub unknown: usize,
    /// The largest peak memory of a pending job.
    pub peak_mib: Option<f64>,
}

impl CostModel {
    /// The coefficients shipped with this build.
    pub fn shipped() -> Self {
        Self::from_toml(COSTS_TOML).expect("the shipped costs.toml parses (a unit test checks it)")
    }

    pub fn from_toml(text: &str) -> Result<Self, String> {
        let model: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        if model.scales.is_empty() {
            return Err("costs.toml: [scales] is empty".into());
        }
        if let Some(k) = model.scales.keys().find(|k| k.parse::<usize>().is_err()) {
            return Err(format!(
                "costs.toml: [scales.{k}] does not name a patch size"
            ));
        }
        Ok(model)
    }

    /// The coefficients of patch size `p`: the measured one, or the nearest measured one
    /// scaled by the ratio of p² (a network's work grows about with its receptive field).
    fn scale(&self, p: usize) -> ScaleCosts {
        if let Some(c) = self.scales.get(&p.to_string()) {
            return c.clone();
        }
        let (q, c) = self
            .scales
            .iter()
            .filter_map(|(k, c)| k.parse::<usize>().ok().map(|q| (q, c)))
            .min_by_key(|(q, _)| q.abs_diff(p))
            .expect("scales is not empty");
        // In floating point: a configuration file can name any patch size.
        let r = (p as f64 * p as f64) / (q as f64 * q as f64);
        let s = |l: Linear| Linear {
            fixed: l.fixed,
            per_px: l.per_px * r,
        };
        ScaleCosts {
            dense_image: s(c.dense_image),
            student_step: s(c.student_step),
            teacher_patch: s(c.teacher_patch),
        }
    }

    fn peak(table: &BTreeMap<String, f64>, preset: &str) -> Option<f64> {
        table.get(preset).copied()
    }

    /// The expected cost of `job` on one core (the coefficients' condition). `None` when its
    /// data cannot be read (the run reports that itself).
    pub fn estimate(&self, job: &Job) -> Option<Estimate> {
        self.estimate_shared(job, 1)
    }

    /// The estimate of each of `selected` that will run (`None` for the finished ones; with
    /// `force` every one runs): the pending dense baselines on the same descriptors share one
    /// command ([`Self::estimate_all`]), the finished ones no longer count in that share.
    pub fn pending_estimates(
        &self,
        selected: &[Job],
        cells_dir: &Path,
        force: bool,
    ) -> Vec<Option<Estimate>> {
        let pending: Vec<usize> = (0..selected.len())
            .filter(|&i| force || !is_done(cells_dir, &selected[i]))
            .collect();
        let jobs: Vec<&Job> = pending.iter().map(|&i| &selected[i]).collect();
        let mut estimates = vec![None; selected.len()];
        for (&i, e) in pending.iter().zip(self.estimate_all(&jobs)) {
            estimates[i] = e;
        }
        estimates
    }

    /// What `selected` will cost (`--plan`): per job its state and estimate, and the sums of
    /// the pending ones.
    pub fn plan_costs(&self, selected: &[Job], cells_dir: &Path) -> PlanCosts {
        let pending_estimates = self.pending_estimates(selected, cells_dir, false);
        let mut costs = PlanCosts::default();
        for (k, job) in selected.iter().enumerate() {
            let done = is_done(cells_dir, job);
            // A finished job is shown with what it would cost alone.
            let estimate = if done {
                self.estimate(job)
            } else {
                pending_estimates[k]
            };
            costs.jobs.push(JobCost { done, estimate });
            if done {
                costs.cached += 1;
                continue;
            }
            costs.pending += 1;
            match estimate {
                Some(e) => {
                    costs.total_s += e.seconds;
                    if let Some(m) = e.peak_mib {
                        costs.peak_mib = Some(costs.peak_mib.map_or(m, |p: f64| p.max(m)));
                    }
                }
                None => costs.unknown += 1,
            }
        }
        costs
    }

    /// The estimates of `jobs` run in one invocation: dense baselines on the same descriptors
    /// ([`Job::shared_descriptors_key`]) run as one command, so each gets an equal share of
    /// the teacher's pass (as the runner records their time).
    pub fn estimate_all(&self, jobs: &[&Job]) -> Vec<Option<Estimate>> {
        let mut groups: BTreeMap<String, usize> = BTreeMap::new();
        for key in jobs.iter().filter_map(|j| j.shared_descriptors_key()) {
            *groups.entry(key).or_default() += 1;
        }
        jobs.iter()
            .map(|j| {
                let group = j.shared_descriptors_key().map_or(1, |k| groups[&k]);
                self.estimate_shared(j, group)
            })
            .collect()
    }

    /// `job`'s estimate when its descriptors are shared by `group` jobs.
    fn estimate_shared(&self, job: &Job, group: usize) -> Option<Estimate> {
        let preset: Preset = match &job.task {
            Task::Teacher { preset, .. }
            | Task::Students { preset, .. }
            | Task::DenseBaseline { preset, .. }
            | Task::OneClass { preset, .. } => preset.parse().ok()?,
        };
        let name = preset.name();
        let m = &self.peak_mib;
        Some(match &job.task {
            Task::Students {
                data,
                category,
                scales,
                ..
            } => {
                let sizes = CategorySizes::read(&data.join(category))?;
                Estimate {
                    seconds: self.students_s(preset, scales, sizes),
                    peak_mib: Self::peak(&m.students, name),
                }
            }
            Task::DenseBaseline {
                data,
                category,
                method,
                p,
                ..
            } => {
                let sizes = CategorySizes::read(&data.join(category))?;
                let method: DescriptorMethod = method.parse().ok()?;
                Estimate {
                    seconds: self.dense_s(preset, method, *p, sizes, group),
                    peak_mib: Self::peak(&m.dense_baseline, name),
                }
            }
            Task::Teacher { config, .. } => {
                let config = TeacherTrainingConfig::from_toml_file(config, Some(preset)).ok()?;
                let c = self.scale(config.teacher.patch_size);
                let patch_px = (config.teacher.patch_size as f64).powi(2);
                let per_iteration =
                    config.schedule.batch_size as f64 * c.teacher_patch.at(patch_px);
                Estimate {
                    seconds: self.command_s * 2.0
                        + config.schedule.iterations as f64 * per_iteration,
                    peak_mib: Self::peak(&m.teacher, name),
                }
            }
            // Every teacher of Table 2 is a p = 33 network on 33×33 images: one cost.
            Task::OneClass { method, .. } => Estimate {
                seconds: self.one_class_s(preset, method),
                peak_mib: Self::peak(&m.one_class, name),
            },
        })
    }

    /// Training every scale, then predicting the test split at every scale.
    fn students_s(&self, preset: Preset, scales: &[usize], sizes: CategorySizes) -> f64 {
        let sizes = sizes.capped(preset);
        let config = StudentTrainingConfig::preset(preset);
        let train = config.planned_training_images(sizes.train);
        let steps = config.planned_steps(sizes.train) as f64;
        let side = config.image_size;
        let crop = if config.crop > 0 { config.crop } else { side };
        let validation = config.planned_validation_images(sizes.train) as f64;
        let students = config.students as f64;
        let mut seconds = 2.0 * self.command_s;
        for &p in scales {
            let c = self.scale(p);
            let image_px = padded_px(side, p);
            let step_px = padded_px(crop, p);
            // The teacher's targets of the training images, the steps of the M students,
            // then the validation images through teacher and students (calibration).
            seconds += train as f64 * c.dense_image.at(image_px)
                + steps * students * c.student_step.at(step_px)
                + validation * (1.0 + students) * c.dense_image.at(image_px);
            // Prediction: teacher and M students over each test image.
            seconds += sizes.test as f64 * (1.0 + students) * c.dense_image.at(image_px);
        }
        seconds
    }

    /// The teacher over the (capped) training images and every test image (shared by the
    /// `group` methods of one command), then the fit.
    fn dense_s(
        &self,
        preset: Preset,
        method: DescriptorMethod,
        p: usize,
        s: CategorySizes,
        group: usize,
    ) -> f64 {
        let s = s.capped(preset);
        let caps = dense_preset(preset, method);
        let train = match caps.max_train_images {
            0 => s.train,
            cap => s.train.min(cap),
        };
        let side = caps.image_size;
        let c = self.scale(p);
        let vectors = ((train * side * side) as f64)
            .min(caps.max_train_vectors.map_or(f64::INFINITY, |v| v as f64));
        let descriptors = (train + s.test) as f64 * c.dense_image.at(padded_px(side, p));
        (self.command_s + descriptors) / group.max(1) as f64 + vectors * self.dense_fit_vector_s
    }

    /// A one-class cell: the teacher's descriptors of its images, then (students) the
    /// students' steps and their pass over validation and test images.
    fn one_class_s(&self, preset: Preset, method: &str) -> f64 {
        let caps = oneclass_preset(preset);
        // The paper preset takes every image: about 6 000 training images of a class and the
        // 10 000 test images of MNIST and CIFAR-10.
        let or = |cap: usize, all: usize| if cap == 0 { all } else { cap };
        let test = or(caps.test_images, 10_000) as f64;
        if method == crate::oneclass::OneClassMethod::STUDENTS {
            let config = OneClassStudentConfig::preset(preset);
            let train = or(caps.student_train_images, 5_400) as f64;
            let validation = or(caps.student_validation_images, 600) as f64;
            let students = config.students as f64;
            self.command_s
                + (train + validation + test) * self.one_class_image_s
                + config.epochs as f64 * train * students * self.one_class_student_image_s
                + (validation + test) * students * self.one_class_image_s
        } else {
            let train = or(caps.baseline_train_images, 6_000) as f64;
            self.command_s
                + (train + test) * self.one_class_image_s
                + train * self.dense_fit_vector_s
        }
    }
}

/// Pixels a network of receptive field `p` computes on for an output of `side`² pixels: the
/// input padded by p − 1 (the padded border dominates small images: at 40×40 and p = 65 the
/// padded input is 104×104).
fn padded_px(side: usize, p: usize) -> f64 {
    let s = (side + p - 1) as f64;
    s * s
}

/// Image counts of a category folder, read from its listing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CategorySizes {
    pub train: usize,
    pub test: usize,
}

impl CategorySizes {
    /// The test images `preset` evaluates.
    fn capped(self, preset: Preset) -> Self {
        let test = match max_test_images(preset) {
            0 => self.test,
            cap => self.test.min(cap),
        };
        Self { test, ..self }
    }

    pub fn read(dir: &Path) -> Option<Self> {
        let category = ust_data::MvtecCategory::open(dir).ok()?;
        Some(Self {
            train: category.train_images().len(),
            test: category.test_samples().len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_coefficients_parse_and_cover_the_paper_scales() {
        let m = CostModel::shipped();
        for p in ["17", "33", "65"] {
            assert!(m.scales.contains_key(p), "{p}");
        }
        for table in [
            &m.peak_mib.students,
            &m.peak_mib.dense_baseline,
            &m.peak_mib.one_class,
        ] {
            assert!(table.contains_key("cpu"));
        }
    }

    #[test]
    fn unmeasured_scales_scale_with_p_squared() {
        let m = CostModel::shipped();
        let c33 = m.scale(33);
        let c = m.scale(31); // nearest measured: 33
        let r = (31.0 * 31.0) / (33.0 * 33.0);
        assert!((c.dense_image.per_px - c33.dense_image.per_px * r).abs() < 1e-15);
        assert_eq!(c.dense_image.fixed, c33.dense_image.fixed);
    }

    #[test]
    fn students_cost_adds_up_by_hand() {
        // A hand-built model: only the students' steps cost (1 s each), every other term 0.
        let zero = Linear::from([0.0, 0.0]);
        let mut m = CostModel::shipped();
        m.command_s = 0.0;
        for c in m.scales.values_mut() {
            c.dense_image = zero;
            c.student_step = Linear::from([1.0, 0.0]);
        }
        let sizes = CategorySizes {
            train: 29,
            test: 64,
        };
        let cpu = StudentTrainingConfig::cpu();
        // cpu: 29 images → 26 training images after the 10 % validation split, 20 epochs of
        // 26 steps = 520 (under the 600-step cap), 3 students, two scales.
        assert_eq!(cpu.planned_steps(29), 520);
        let s = m.students_s(Preset::Cpu, &[17, 33], sizes);
        assert_eq!(s, 2.0 * 520.0 * 3.0);
        // Test images cost teacher + M students each.
        for c in m.scales.values_mut() {
            c.student_step = zero;
            c.dense_image = Linear::from([1.0, 0.0]);
        }
        let s = m.students_s(Preset::Cpu, &[65], sizes);
        assert_eq!(s, 26.0 + 3.0 * 4.0 + 64.0 * 4.0);
    }
}
