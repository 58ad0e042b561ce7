//! The presets of a teacher configuration (`paper`, `cpu`, `smoke`) and its TOML files, which
//! start from a preset and override it: loading, writing, and the differences that keep a
//! checkpoint from being resumed under another configuration. What a file may say is
//! described in `config.rs`.

use std::path::Path;

use ust_data::shared::SHARED_PLACEHOLDER;
use ust_losses::{CompactnessKind, TeacherLossWeights};
use ust_models::PatchNetConfig;

use super::config::{
    BackboneConfig, BackboneInputSize, BackboneKind, DEFAULT_TRIPLET_MARGIN, DataConfig,
    DistillationCacheConfig, DistillationConfig, InputSizeKeyword, ScheduleConfig,
    TeacherTrainingConfig,
};
use crate::error::{DetectorError, Result};
use crate::preset::Preset;
use crate::training::adam::{AdamConfig, WeightDecayMode};
use crate::training::guard::GuardConfig;

impl TeacherTrainingConfig {
    /// The paper's run for receptive field `patch_size` (METHOD.md §4): λk = λc = 1, λm = 0,
    /// EfficientNet-Lite0 at the patch's own size, Adam lr 2e-4 with L2 weight decay 1e-5,
    /// batch 64, 50 000 iterations, targets computed for every batch.
    pub fn paper(patch_size: usize) -> Self {
        Self {
            preset: Preset::Paper,
            seed: 0,
            teacher: PatchNetConfig::new(patch_size),
            losses: TeacherLossWeights {
                lambda_k: 1.0,
                lambda_m: 0.0,
                lambda_c: 1.0,
                margin: DEFAULT_TRIPLET_MARGIN,
                compactness: CompactnessKind::Squared,
            },
            backbone: BackboneConfig {
                kind: BackboneKind::EfficientNetLite0,
                weights: None,
                input_size: BackboneInputSize::Keyword(InputSizeKeyword::Native),
            },
            data: DataConfig {
                folder: format!("{SHARED_PLACEHOLDER}/data/natural-images"),
                min_side_factor: 4,
                max_side_factor: 16,
                noise_std: 0.1,
                grayscale_prob: 0.1,
                pool_size: 64,
                refresh_per_batch: 2,
                decode_threads: 1,
                prefetch_batches: 4,
                skip_unreadable: false,
            },
            optimizer: AdamConfig {
                learning_rate: 2e-4,
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
                weight_decay: 1e-5,
                weight_decay_mode: WeightDecayMode::L2,
            },
            schedule: ScheduleConfig {
                iterations: 50_000,
                batch_size: 64,
                checkpoint_every: 1000,
                log_every: 100,
            },
            distillation_cache: DistillationCacheConfig {
                bank_size: 0,
                refresh_per_iteration: 64,
            },
            guard: GuardConfig {
                explode_factor: 100.0,
                warmup_iterations: 50,
            },
            distillation: DistillationConfig::default(),
        }
    }

    /// The CPU run: the paper's losses, optimiser and batch, with fewer iterations and a bank
    /// of distillation targets, sized so that one patch size trains in about 30–45 minutes on
    /// the project's 2-core machine (measurements in the crate's README).
    pub fn cpu(patch_size: usize) -> Self {
        let paper = Self::paper(patch_size);
        // Measured cost of a step (batch 64, λk = λc = 1, bank as below, release build) in
        // CPU seconds: about 0.9 (p = 17), 1.3 (p = 33), 5 (p = 65). At about one core's worth
        // of CPU (the shared machine's usual share) that is 35–40 minutes for these counts;
        // checkpoints come every 4–5 minutes of work.
        let (iterations, checkpoint_every) = match patch_size {
            17 => (2400, 250),
            33 => (1600, 200),
            _ => (400, 50),
        };
        Self {
            preset: Preset::Cpu,
            schedule: ScheduleConfig {
                iterations,
                checkpoint_every,
                log_every: checkpoint_every / 5,
                ..paper.schedule
            },
            distillation_cache: DistillationCacheConfig {
                bank_size: 1024,
                refresh_per_iteration: 16,
            },
            ..paper
        }
    }

    /// A run of a few iterations on tiny batches, for tests.
    pub fn smoke(patch_size: usize) -> Self {
        let paper = Self::paper(patch_size);
        Self {
            preset: Preset::Smoke,
            data: DataConfig {
                pool_size: 4,
                refresh_per_batch: 1,
                prefetch_batches: 2,
                ..paper.data
            },
            schedule: ScheduleConfig {
                iterations: 4,
                batch_size: 4,
                checkpoint_every: 2,
                log_every: 1,
            },
            distillation_cache: DistillationCacheConfig {
                bank_size: 8,
                refresh_per_iteration: 2,
            },
            guard: GuardConfig {
                warmup_iterations: 2,
                ..paper.guard
            },
            ..paper
        }
    }

    /// The preset `preset` for receptive field `patch_size`.
    pub fn preset(preset: Preset, patch_size: usize) -> Self {
        match preset {
            Preset::Paper => Self::paper(patch_size),
            Preset::Cpu => Self::cpu(patch_size),
            Preset::Smoke => Self::smoke(patch_size),
        }
    }

    /// Reads a config file: the preset (`preset_override`, else the file's `preset` key, else
    /// `cpu`) for the file's `teacher.patch_size`, overridden by every key the file sets.
    pub fn from_toml_file(path: &Path, preset_override: Option<Preset>) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DetectorError::io(path, e))?;
        Self::from_toml_str(&text, preset_override).map_err(|e| match e {
            DetectorError::InvalidConfig(reason) => DetectorError::ConfigFile {
                path: path.to_path_buf(),
                reason,
            },
            other => other,
        })
    }

    /// [`TeacherTrainingConfig::from_toml_file`] on a string.
    pub fn from_toml_str(text: &str, preset_override: Option<Preset>) -> Result<Self> {
        let file: toml::Table = toml::from_str(text)
            .map_err(|e| DetectorError::InvalidConfig(format!("not valid TOML: {e}")))?;
        let preset = match (preset_override, file.get("preset")) {
            (Some(p), _) => p,
            (None, Some(toml::Value::String(s))) => s.parse()?,
            (None, Some(other)) => {
                return Err(DetectorError::InvalidConfig(format!(
                    "preset must be a string, got {other}"
                )));
            }
            (None, None) => Preset::Cpu,
        };
        let patch_size = file
            .get("teacher")
            .and_then(|t| t.get("patch_size"))
            .and_then(toml::Value::as_integer)
            .ok_or_else(|| {
                DetectorError::InvalidConfig("teacher.patch_size (an integer) is required".into())
            })?;
        let patch_size = usize::try_from(patch_size).map_err(|_| {
            DetectorError::InvalidConfig(format!("teacher.patch_size {patch_size} is negative"))
        })?;
        let base = Self::preset(preset, patch_size);
        let mut merged = toml::Table::try_from(&base).map_err(|e| {
            DetectorError::InvalidConfig(format!("cannot represent the preset as TOML: {e}"))
        })?;
        let mut file = file;
        file.remove("preset");
        // Tables named after a preset apply only under that preset, after the general keys.
        let mut specific = None;
        for p in Preset::ALL {
            match file.remove(p.name()) {
                Some(toml::Value::Table(t)) if p == preset => specific = Some(t),
                Some(toml::Value::Table(_)) | None => {}
                Some(other) => {
                    return Err(DetectorError::InvalidConfig(format!(
                        "[{}] must be a table of overrides for that preset, got {other}",
                        p.name()
                    )));
                }
            }
        }
        merge_tables(&mut merged, file);
        if let Some(t) = specific {
            merge_tables(&mut merged, t);
        }
        merged.insert("preset".into(), toml::Value::String(preset.name().into()));
        toml::Value::Table(merged)
            .try_into()
            .map_err(|e| DetectorError::InvalidConfig(format!("{e}")))
    }

    /// The configuration as TOML (what is written beside the output).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self)
            .map_err(|e| DetectorError::InvalidConfig(format!("cannot write as TOML: {e}")))
    }

    /// The keys whose values differ between `self` (a checkpoint's) and `other`, ignoring
    /// `schedule.iterations` (a run may be extended) and `preset` (a record). Empty when a
    /// checkpoint of `self` may be resumed under `other`.
    pub fn resume_differences(&self, other: &Self) -> Result<Vec<String>> {
        let flat = |c: &Self| -> Result<Vec<(String, String)>> {
            let table = toml::Table::try_from(c).map_err(|e| {
                DetectorError::InvalidConfig(format!("cannot represent as TOML: {e}"))
            })?;
            let mut out = Vec::new();
            flatten("", &toml::Value::Table(table), &mut out);
            Ok(out)
        };
        let (a, b) = (flat(self)?, flat(other)?);
        let ignored = ["schedule.iterations", "preset"];
        let mut keys: Vec<&String> = a.iter().chain(&b).map(|(k, _)| k).collect();
        keys.sort();
        keys.dedup();
        let find = |v: &[(String, String)], k: &str| {
            v.iter()
                .find(|(key, _)| key == k)
                .map(|(_, val)| val.clone())
                .unwrap_or_else(|| "(unset)".into())
        };
        Ok(keys
            .into_iter()
            .filter(|k| !ignored.contains(&k.as_str()))
            .filter_map(|k| {
                let (x, y) = (find(&a, k), find(&b, k));
                (x != y).then(|| format!("{k}: {x} -> {y}"))
            })
            .collect())
    }
}

/// Overrides `base` with `over`, recursing into tables present in both.
fn merge_tables(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge_tables(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// `a.b.c = value` pairs of a TOML tree.
fn flatten(prefix: &str, value: &toml::Value, out: &mut Vec<(String, String)>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_the_documented_values_and_pass_check() {
        for p in [17, 33, 65] {
            let paper = TeacherTrainingConfig::paper(p);
            assert_eq!(paper.schedule.iterations, 50_000);
            assert_eq!(paper.schedule.batch_size, 64);
            assert_eq!(paper.optimizer.learning_rate, 2e-4);
            assert_eq!(paper.optimizer.weight_decay, 1e-5);
            assert_eq!(paper.optimizer.weight_decay_mode, WeightDecayMode::L2);
            assert_eq!(paper.teacher.descriptor_dim, 128);
            assert_eq!(paper.teacher.patch_size, p);
            assert!(!paper.uses_bank());
            assert_eq!((paper.losses.lambda_k, paper.losses.lambda_m), (1.0, 0.0));
            for preset in Preset::ALL {
                let c = TeacherTrainingConfig::preset(preset, p);
                assert_eq!(c.preset, preset);
                c.check().unwrap();
            }
            let cpu = TeacherTrainingConfig::cpu(p);
            assert!(cpu.uses_bank());
            assert_eq!(cpu.optimizer, paper.optimizer);
            assert_eq!(cpu.schedule.batch_size, 64);
            assert!(cpu.schedule.iterations < paper.schedule.iterations);
        }
    }

    #[test]
    fn file_values_override_the_preset() {
        let text = r#"
            preset = "paper"
            [teacher]
            patch_size = 33
            [losses]
            lambda_k = 0.0
            lambda_m = 1.0
            lambda_c = 0.0
            compactness = "abs"
            [schedule]
            iterations = 7
        "#;
        let c = TeacherTrainingConfig::from_toml_str(text, None).unwrap();
        assert_eq!(c.preset, Preset::Paper);
        assert_eq!(c.teacher, PatchNetConfig::new(33));
        assert_eq!(c.losses.lambda_m, 1.0);
        assert_eq!(c.losses.lambda_k, 0.0);
        assert_eq!(c.losses.compactness, CompactnessKind::Abs);
        // Unset keys keep the preset's values, in the same table as set ones.
        assert_eq!(c.losses.margin, DEFAULT_TRIPLET_MARGIN);
        assert_eq!(c.schedule.iterations, 7);
        assert_eq!(c.schedule.batch_size, 64);
        // The command line's preset wins over the file's.
        let c = TeacherTrainingConfig::from_toml_str(text, Some(Preset::Smoke)).unwrap();
        assert_eq!(c.preset, Preset::Smoke);
        assert_eq!(c.schedule.batch_size, 4);
        assert_eq!(c.schedule.iterations, 7);
        // Preset-specific tables apply only under their preset.
        let text =
            format!("{text}\n[cpu.schedule]\nbatch_size = 32\n[smoke.schedule]\nbatch_size = 6\n");
        let smoke = TeacherTrainingConfig::from_toml_str(&text, Some(Preset::Smoke)).unwrap();
        assert_eq!(smoke.schedule.batch_size, 6);
        let cpu = TeacherTrainingConfig::from_toml_str(&text, Some(Preset::Cpu)).unwrap();
        assert_eq!(cpu.schedule.batch_size, 32);
        let paper = TeacherTrainingConfig::from_toml_str(&text, None).unwrap();
        assert_eq!(paper.schedule.batch_size, 64);
        assert_eq!(paper.schedule.iterations, 7);
        // Round trip through the written form.
        let again = TeacherTrainingConfig::from_toml_str(&c.to_toml().unwrap(), None).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn the_experiment_files_say_what_their_names_say() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/teacher");
        for p in [17, 33, 65] {
            let path = dir.join(format!("p{p}.toml"));
            let c = TeacherTrainingConfig::from_toml_file(&path, None).unwrap();
            c.check().unwrap();
            assert_eq!(c.preset, Preset::Cpu);
            // The file spells out the default weights; resolved, it is the preset itself.
            let resolved = c.resolve();
            assert_eq!(
                resolved,
                TeacherTrainingConfig::cpu(p).resolve(),
                "{}",
                path.display()
            );
            let paper = TeacherTrainingConfig::from_toml_file(&path, Some(Preset::Paper)).unwrap();
            assert_eq!(paper.resolve(), TeacherTrainingConfig::paper(p).resolve());
        }
        let path = dir.join("p33_metric.toml");
        let c = TeacherTrainingConfig::from_toml_file(&path, None).unwrap();
        c.check().unwrap();
        let l = c.losses;
        assert_eq!((l.lambda_k, l.lambda_m, l.lambda_c), (0.0, 1.0, 0.0));
        assert!(!c.uses_distillation() && !c.uses_bank());
        assert_eq!(c.schedule.iterations, 640);
        let paper = TeacherTrainingConfig::from_toml_file(&path, Some(Preset::Paper)).unwrap();
        assert_eq!(paper.schedule.iterations, 50_000);

        // The dense lever: 4 windows of 16² outputs under every preset, 600 steps on the cpu.
        let path = dir.join("p33_dense.toml");
        let c = TeacherTrainingConfig::from_toml_file(&path, None).unwrap();
        c.check().unwrap();
        assert!(c.uses_dense_distillation() && !c.uses_bank());
        assert_eq!((c.schedule.iterations, c.schedule.batch_size), (600, 4));
        assert_eq!((c.dense_window(), c.patches_per_step()), (93, 1024));
        let paper = TeacherTrainingConfig::from_toml_file(&path, Some(Preset::Paper)).unwrap();
        assert_eq!(
            (paper.schedule.iterations, paper.schedule.batch_size),
            (50_000, 4)
        );
        // At p = 65 the teacher's stride is 8: 16 outputs per side span 65 + 8 × 15 pixels.
        let c = TeacherTrainingConfig::from_toml_file(&dir.join("p65_dense.toml"), None).unwrap();
        c.check().unwrap();
        assert!(c.uses_dense_distillation());
        assert_eq!(
            (c.schedule.iterations, c.schedule.checkpoint_every),
            (600, 50)
        );
        assert_eq!((c.dense_window(), c.patches_per_step()), (185, 1024));
    }

    #[test]
    fn bad_files_are_errors_naming_the_problem() {
        let cases = [
            (
                "[teacher]\npatch_size = 33\n[losses]\nlamda_k = 1.0\n",
                "lamda_k",
            ),
            ("[losses]\nlambda_k = 1.0\n", "teacher.patch_size"),
            ("preset = \"fast\"\n[teacher]\npatch_size = 33\n", "fast"),
            (
                "[teacher]\npatch_size = 33\n[schedule]\niterations = \"many\"\n",
                "iterations",
            ),
            ("[teacher\npatch_size = 33\n", "TOML"),
            (
                "cpu = 3\n[teacher]\npatch_size = 33\n",
                "[cpu] must be a table",
            ),
        ];
        for (text, needle) in cases {
            let err = TeacherTrainingConfig::from_toml_str(text, None).unwrap_err();
            assert!(err.to_string().contains(needle), "{text:?}: {err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, cases[0].0).unwrap();
        let err = TeacherTrainingConfig::from_toml_file(&path, None).unwrap_err();
        assert!(matches!(err, DetectorError::ConfigFile { .. }));
        assert!(err.to_string().contains("bad.toml"), "{err}");
    }

    #[test]
    fn shared_paths_expand_and_resume_differences_are_listed() {
        let a = TeacherTrainingConfig::cpu(33);
        let resolved = a.clone().resolve();
        assert!(!resolved.data.folder.contains(SHARED_PLACEHOLDER));
        assert!(
            resolved
                .backbone
                .weights
                .as_deref()
                .unwrap()
                .ends_with("efficientnet_lite0.safetensors")
        );
        let mut b = a.clone();
        b.schedule.iterations += 100;
        b.preset = Preset::Paper;
        assert!(a.resume_differences(&b).unwrap().is_empty());
        b.optimizer.learning_rate = 1e-3;
        b.seed = 5;
        let diffs = a.resume_differences(&b).unwrap();
        assert_eq!(diffs.len(), 2, "{diffs:?}");
        assert!(
            diffs
                .iter()
                .any(|d| d.starts_with("optimizer.learning_rate"))
        );
        assert!(diffs.iter().any(|d| d == "seed: 0 -> 5"), "{diffs:?}");
    }
}
