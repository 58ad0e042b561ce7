//! The experiment file (TOML) and its validation into an [`Experiment`]. Nothing here touches
//! the file system except reading the file; data roots are checked when the experiment is
//! resolved ([`crate::resolve`]).
//!
//! ```toml
//! table = "table1"            # table1 | table2 | table3 (the report's layout)
//! name = "table1"             # default: the file's stem; runs go to runs/<name>/
//! preset = "cpu"              # paper | cpu | smoke (--preset overrides)
//! seeds = [0]
//!
//! [mvtec]                     # table1, table3
//! data = "data"               # an MVTec-layout root (--data overrides)
//! categories = []             # default: every category under data (smoke preset: the first two)
//!
//! [students]                  # table1, table3: one training of all scales per category
//! scales = [17, 33, 65]
//! teachers = []               # one file per scale; default: the shipped teachers
//! score = "e+v"               # e+v (METHOD.md §6) | e | v: the anomaly score's terms
//! also_score = ["e", "v"]      # further score terms, evaluated on the same outputs
//! padding = "replicate"         # zeros | replicate | reflect: the image border's extension
//! crop_coverage = "uniform"     # uniform | inside: where training crops may lie
//! student_sampling = "per-student"  # per-student | shared: the students' draws
//! standardize_inputs = true     # students see each channel standardised (folded at the end)
//!
//! [dense_baselines]           # table1
//! methods = ["knn", "kmeans", "ocsvm", "pca", "ae", "vae"]
//! p = 65
//! teacher = "..."             # default: the shipped teacher for p
//! padding = "replicate"       # zeros | replicate | reflect (default: the students')
//!
//! [[teachers]]                # table2: teacher variants (a file, or a config to train)
//! name = "kc"
//! file = "models/teacher-p33-patch.safetensors"
//! lambda_k = 1.0
//! lambda_m = 0.0
//! lambda_c = 1.0
//!
//! [[datasets]]                # table2
//! name = "mnist"              # mnist | cifar10
//! root = "$UST_SHARED/data/mnist"
//! classes = [0, 1, 2]         # default: all ten (smoke preset: 0 and 1)
//!
//! [one_class]                 # table2
//! methods = ["students", "knn", "ae"]
//! baseline_teacher = "kc"     # the variant the baselines use (default: the first)
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{ExperimentError, Result};

/// Version of the job configurations: part of every cell's hash.
pub const SCHEMA_VERSION: u32 = 1;

/// The receptive fields with a patch network.
pub const PATCH_SIZES: [usize; 3] = [17, 33, 65];

/// The names of the shallow baselines (METHOD.md §8), as `ust_baselines` defines them.
pub fn baseline_methods() -> Vec<&'static str> {
    ust_baselines::DescriptorMethod::ALL
        .iter()
        .map(|m| m.name())
        .collect()
}

/// The names of the presets, as `ust_detector` defines them.
pub fn presets() -> Vec<&'static str> {
    ust_detector::Preset::ALL.iter().map(|p| p.name()).collect()
}

/// The names of the anomaly score's terms, as `ust_detector` defines them (`e+v` first).
pub fn score_terms() -> Vec<&'static str> {
    ust_detector::ScoreTerms::ALL
        .iter()
        .map(|t| t.name())
        .collect()
}

/// The one-class datasets.
pub const ONE_CLASS_DATASETS: [&str; 2] = ["mnist", "cifar10"];

/// The report layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableKind {
    /// MVTec AD AU-PRO per category: students and the dense baselines.
    Table1,
    /// One-class MNIST / CIFAR-10 AUROC per class: teacher variants and baselines.
    Table2,
    /// The receptive-field ablation: p = 17, 33, 65 and multi-scale per category.
    Table3,
}

impl TableKind {
    pub fn title(self) -> &'static str {
        match self {
            TableKind::Table1 => "Table 1: MVTec AD, AU-PRO (FPR ≤ 0.3)",
            TableKind::Table2 => "Table 2: one-class MNIST and CIFAR-10, AUROC",
            TableKind::Table3 => "Table 3: receptive field ablation, AU-PRO (FPR ≤ 0.3)",
        }
    }
}

/// The file as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentFile {
    pub table: TableKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seeds: Option<Vec<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mvtec: Option<MvtecSection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub students: Option<StudentsSection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dense_baselines: Option<DenseBaselinesSection>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teachers: Vec<TeacherVariant>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datasets: Vec<OneClassDataset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_class: Option<OneClassSection>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MvtecSection {
    pub data: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudentsSection {
    pub scales: Vec<usize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teachers: Vec<String>,
    /// The anomaly score's terms (`ust evaluate --score`): `e+v` (the paper's, the default),
    /// or as an ablation `e` or `v` alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<String>,
    /// Further score terms evaluated beside `score` on the same networks' outputs (`ust
    /// evaluate --score e+v,e,v`), each with its own tables in the report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_score: Vec<String>,
    /// Border extension (`ust train --padding`): zeros, replicate or reflect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub padding: Option<String>,
    /// Where training crops may lie (`ust train --crop-coverage`): uniform or inside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop_coverage: Option<String>,
    /// Whether the students share their draws (`ust train --student-sampling`): per-student
    /// or shared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub student_sampling: Option<String>,
    /// Whether the students train on inputs standardised per channel (`ust train
    /// --standardize-inputs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standardize_inputs: Option<bool>,
}

/// The training settings of `[students]` beyond the preset: key (also `ust train --KEY` with
/// `-` for `_`), the values it takes, and the default, which is the student presets' own (a
/// test in ust-cli checks that they agree). Every students cell records all of them, so the
/// cells trained before a setting existed (zeros, inside, shared, raw inputs) are not taken
/// for the new ones.
pub const STUDENT_SETTINGS: [(&str, &[&str], &str); 4] = [
    ("padding", &["zeros", "replicate", "reflect"], "replicate"),
    ("crop_coverage", &["uniform", "inside"], "uniform"),
    (
        "student_sampling",
        &["per-student", "shared"],
        "per-student",
    ),
    ("standardize_inputs", &["true", "false"], "true"),
];

impl StudentsSection {
    /// The score terms when they are not the paper's `e+v` (which leaves cell hashes as they
    /// were before the choice existed).
    pub fn ablated_score(&self) -> Option<&str> {
        self.score.as_deref().filter(|t| *t != "e+v")
    }

    /// Every score term evaluated: `score` (or `e+v`), then `also_score`.
    pub fn all_scores(&self) -> Vec<String> {
        let mut all = vec![
            self.score
                .clone()
                .unwrap_or_else(|| score_terms()[0].into()),
        ];
        all.extend(self.also_score.iter().cloned());
        all
    }

    /// The settings as written in the file, in [`STUDENT_SETTINGS`]' order.
    fn settings_given(&self) -> [Option<String>; 4] {
        [
            self.padding.clone(),
            self.crop_coverage.clone(),
            self.student_sampling.clone(),
            self.standardize_inputs.map(|b| b.to_string()),
        ]
    }

    /// The settings, given or default, in [`STUDENT_SETTINGS`]' order.
    pub fn settings(&self) -> Vec<(String, String)> {
        STUDENT_SETTINGS
            .iter()
            .zip(self.settings_given())
            .map(|(&(key, _, default), v)| (key.to_string(), v.unwrap_or_else(|| default.into())))
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenseBaselinesSection {
    pub methods: Vec<String>,
    #[serde(default = "default_p")]
    pub p: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher: Option<String>,
    /// Border extension of the teacher's descriptors (`ust baseline dense --padding`): the
    /// students' values and default, so a baseline and the students it is compared with see
    /// the same descriptors at the border.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub padding: Option<String>,
}

impl DenseBaselinesSection {
    /// The padding, given or the students' default.
    pub fn padding(&self) -> String {
        let (_, _, default) = STUDENT_SETTINGS[0];
        self.padding.clone().unwrap_or_else(|| default.into())
    }
}

fn default_p() -> usize {
    65
}

/// A teacher of Table 2: a file, or a configuration `ust teacher train` trains (then exports).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TeacherVariant {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// The loss weights (read from `config` when it is given and these are left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_k: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_m: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_c: Option<f64>,
    /// `ust teacher train` overrides: the image folder, the backbone weights, the iterations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backbone_weights: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterations: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneClassDataset {
    pub name: String,
    pub root: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneClassSection {
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_teacher: Option<String>,
}

/// Command-line changes to the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub preset: Option<String>,
    pub data: Option<String>,
}

/// A checked experiment: every list non-empty, every name known.
#[derive(Debug, Clone, Serialize)]
pub struct Experiment {
    /// The file it came from.
    pub file: PathBuf,
    pub name: String,
    pub table: TableKind,
    pub description: Option<String>,
    pub preset: String,
    pub seeds: Vec<u64>,
    pub mvtec: Option<MvtecSection>,
    pub students: Option<StudentsSection>,
    pub dense_baselines: Option<DenseBaselinesSection>,
    pub teachers: Vec<CheckedTeacher>,
    pub datasets: Vec<OneClassDataset>,
    pub one_class: Option<OneClassSection>,
}

/// A teacher variant with its loss weights known.
#[derive(Debug, Clone, Serialize)]
pub struct CheckedTeacher {
    pub variant: TeacherVariant,
    pub lambdas: Lambdas,
}

/// λk, λm, λc.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Lambdas {
    pub k: f64,
    pub m: f64,
    pub c: f64,
}

impl Lambdas {
    /// "λk=1 λm=0 λc=1".
    pub fn label(&self) -> String {
        format!("λk={} λm={} λc={}", self.k, self.m, self.c)
    }
}

impl Experiment {
    /// Reads and checks `path` with `overrides` applied.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ExperimentError::io(path, e))?;
        let file: ExperimentFile = toml::from_str(&text).map_err(|e| ExperimentError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::check(path, file, overrides)
    }

    /// Checks `file` (read from `path`, named in errors).
    pub fn check(path: &Path, file: ExperimentFile, overrides: &Overrides) -> Result<Self> {
        let bad = |reason: String| ExperimentError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let name = match &file.name {
            Some(n) => n.clone(),
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "experiment".into()),
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        {
            return Err(bad(format!(
                "name {name:?} must be non-empty ASCII letters, digits, '_', '-' or '.'"
            )));
        }
        let preset = overrides
            .preset
            .clone()
            .or_else(|| file.preset.clone())
            .unwrap_or_else(|| "cpu".into());
        if !presets().contains(&preset.as_str()) {
            return Err(bad(format!(
                "unknown preset {preset:?}; expected one of {}",
                presets().join(", ")
            )));
        }
        let seeds = file.seeds.clone().unwrap_or_else(|| vec![0]);
        if seeds.is_empty() {
            return Err(bad("seeds is empty".into()));
        }
        if seeds.iter().collect::<BTreeSet<_>>().len() != seeds.len() {
            return Err(bad(format!("seeds {seeds:?} repeat a seed")));
        }
        let mut mvtec = file.mvtec.clone();
        if let (Some(m), Some(d)) = (&mut mvtec, &overrides.data) {
            m.data = d.clone();
        }
        let section = |present: bool, what: &str| -> Result<()> {
            if present {
                Ok(())
            } else {
                Err(bad(format!("a {:?} experiment needs [{what}]", file.table)))
            }
        };
        let forbid = |present: bool, what: &str| -> Result<()> {
            if present {
                Err(bad(format!(
                    "[{what}] does not belong in a {:?} experiment",
                    file.table
                )))
            } else {
                Ok(())
            }
        };
        match file.table {
            TableKind::Table1 | TableKind::Table3 => {
                section(mvtec.is_some(), "mvtec")?;
                section(file.students.is_some(), "students")?;
                if file.table == TableKind::Table3 {
                    forbid(file.dense_baselines.is_some(), "dense_baselines")?;
                }
                forbid(!file.teachers.is_empty(), "[teachers]")?;
                forbid(!file.datasets.is_empty(), "[datasets]")?;
                forbid(file.one_class.is_some(), "one_class")?;
            }
            TableKind::Table2 => {
                section(!file.teachers.is_empty(), "[teachers]")?;
                section(!file.datasets.is_empty(), "[datasets]")?;
                section(file.one_class.is_some(), "one_class")?;
                forbid(mvtec.is_some(), "mvtec")?;
                forbid(file.students.is_some(), "students")?;
                forbid(file.dense_baselines.is_some(), "dense_baselines")?;
            }
        }
        if file.table == TableKind::Table2 && overrides.data.is_some() {
            return Err(bad(
                "--data replaces [mvtec].data; a table2 experiment names its dataset roots in \
                 [[datasets]]"
                    .into(),
            ));
        }
        if let Some(m) = &mvtec {
            if m.data.is_empty() {
                return Err(bad("[mvtec].data is empty".into()));
            }
            if let Some(c) = &m.categories {
                if c.is_empty() {
                    return Err(bad(
                        "[mvtec].categories is empty (leave it out for every category)".into(),
                    ));
                }
                unique(c.iter(), "[mvtec].categories").map_err(bad)?;
            }
        }
        if let Some(s) = &file.students {
            check_scales(&s.scales, "[students].scales").map_err(bad)?;
            if let Some(t) = &s.score
                && !score_terms().contains(&t.as_str())
            {
                return Err(bad(format!(
                    "[students].score is {t:?}; expected one of {}",
                    score_terms().join(", ")
                )));
            }
            let all = s.all_scores();
            for (i, t) in all.iter().enumerate() {
                if !score_terms().contains(&t.as_str()) {
                    return Err(bad(format!(
                        "[students].also_score names {t:?}; expected one of {}",
                        score_terms().join(", ")
                    )));
                }
                if all[..i].contains(t) {
                    return Err(bad(format!(
                        "[students].also_score repeats {t:?} (score and also_score name each \
                         choice once)"
                    )));
                }
            }
            for ((key, values, _), v) in STUDENT_SETTINGS.iter().zip(s.settings_given()) {
                if let Some(v) = v
                    && !values.contains(&v.as_str())
                {
                    return Err(bad(format!(
                        "[students].{key} is {v:?}; expected one of {}",
                        values.join(", ")
                    )));
                }
            }
            if !s.teachers.is_empty() && s.teachers.len() != s.scales.len() {
                return Err(bad(format!(
                    "[students].teachers names {} files for {} scales (one per scale, or none \
                     for the shipped teachers)",
                    s.teachers.len(),
                    s.scales.len()
                )));
            }
        }
        if let Some(d) = &file.dense_baselines {
            check_methods(&d.methods, &baseline_methods(), "[dense_baselines].methods")
                .map_err(bad)?;
            check_scales(&[d.p], "[dense_baselines].p").map_err(bad)?;
            let (_, paddings, _) = STUDENT_SETTINGS[0];
            if let Some(v) = &d.padding
                && !paddings.contains(&v.as_str())
            {
                return Err(bad(format!(
                    "[dense_baselines].padding = {v:?}: expected one of {}",
                    paddings.join(", ")
                )));
            }
        }
        let mut teachers = Vec::new();
        for t in &file.teachers {
            teachers.push(check_teacher(t).map_err(&bad)?);
        }
        unique(
            teachers.iter().map(|t| &t.variant.name),
            "[[teachers]] names",
        )
        .map_err(bad)?;
        for d in &file.datasets {
            if !ONE_CLASS_DATASETS.contains(&d.name.as_str()) {
                return Err(bad(format!(
                    "unknown dataset {:?}; expected one of {}",
                    d.name,
                    ONE_CLASS_DATASETS.join(", ")
                )));
            }
            if d.root.is_empty() {
                return Err(bad(format!("dataset {}: root is empty", d.name)));
            }
            if let Some(c) = &d.classes {
                if c.is_empty() {
                    return Err(bad(format!(
                        "dataset {}: classes is empty (leave it out for all ten)",
                        d.name
                    )));
                }
                if let Some(k) = c.iter().find(|&&k| k > 9) {
                    return Err(bad(format!(
                        "dataset {}: class {k} is not one of 0..9",
                        d.name
                    )));
                }
                unique(c.iter(), &format!("dataset {} classes", d.name)).map_err(bad)?;
            }
        }
        unique(file.datasets.iter().map(|d| &d.name), "[[datasets]] names").map_err(bad)?;
        if let Some(o) = &file.one_class {
            let known = crate::oneclass::OneClassMethod::names();
            check_methods(&o.methods, &known, "[one_class].methods").map_err(bad)?;
            if let Some(b) = &o.baseline_teacher
                && !teachers.iter().any(|t| &t.variant.name == b)
            {
                return Err(bad(format!(
                    "[one_class].baseline_teacher {b:?} is not a [[teachers]] name"
                )));
            }
        }
        Ok(Self {
            file: path.to_path_buf(),
            name,
            table: file.table,
            description: file.description,
            preset,
            seeds,
            mvtec,
            students: file.students,
            dense_baselines: file.dense_baselines,
            teachers,
            datasets: file.datasets,
            one_class: file.one_class,
        })
    }

    /// The experiment as a file again, with the overrides applied (the run's `config.toml`).
    pub fn to_file(&self) -> ExperimentFile {
        ExperimentFile {
            table: self.table,
            name: Some(self.name.clone()),
            description: self.description.clone(),
            preset: Some(self.preset.clone()),
            seeds: Some(self.seeds.clone()),
            mvtec: self.mvtec.clone(),
            students: self.students.clone(),
            dense_baselines: self.dense_baselines.clone(),
            teachers: self.teachers.iter().map(|t| t.variant.clone()).collect(),
            datasets: self.datasets.clone(),
            one_class: self.one_class.clone(),
        }
    }

    /// [`Experiment::to_file`] as TOML.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(&self.to_file()).map_err(|e| ExperimentError::Invalid {
            path: self.file.clone(),
            reason: format!("cannot write the resolved experiment as TOML: {e}"),
        })
    }

    /// The variant the one-class baselines use.
    pub fn baseline_teacher(&self) -> Option<&CheckedTeacher> {
        let name = self.one_class.as_ref()?.baseline_teacher.as_ref();
        match name {
            Some(n) => self.teachers.iter().find(|t| &t.variant.name == n),
            None => self.teachers.first(),
        }
    }
}

fn unique<'a, T: Ord + std::fmt::Debug + 'a>(
    items: impl Iterator<Item = &'a T>,
    what: &str,
) -> std::result::Result<(), String> {
    let mut seen = BTreeSet::new();
    for i in items {
        if !seen.insert(i) {
            return Err(format!("{what}: {i:?} appears twice"));
        }
    }
    Ok(())
}

fn check_scales(scales: &[usize], what: &str) -> std::result::Result<(), String> {
    if scales.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if let Some(p) = scales.iter().find(|p| !PATCH_SIZES.contains(p)) {
        return Err(format!(
            "{what}: receptive field {p} is not one of 17, 33, 65"
        ));
    }
    unique(scales.iter(), what)
}

fn check_methods(
    methods: &[String],
    known: &[&str],
    what: &str,
) -> std::result::Result<(), String> {
    if methods.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if let Some(m) = methods.iter().find(|m| !known.contains(&m.as_str())) {
        return Err(format!(
            "{what}: unknown method {m:?}; expected one of {}",
            known.join(", ")
        ));
    }
    unique(methods.iter(), what)
}

/// The loss weights of a teacher configuration file's `[losses]` table (missing keys: None).
fn config_lambdas(path: &str) -> std::result::Result<[Option<f64>; 3], String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("teacher config {path}: {e}"))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| format!("teacher config {path}: not valid TOML: {e}"))?;
    let losses = table.get("losses").and_then(|l| l.as_table());
    let get = |k: &str| {
        losses
            .and_then(|l| l.get(k))
            .and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))
    };
    Ok([get("lambda_k"), get("lambda_m"), get("lambda_c")])
}

fn check_teacher(t: &TeacherVariant) -> std::result::Result<CheckedTeacher, String> {
    let name = &t.name;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "teacher name {name:?} must be non-empty ASCII letters, digits, '_' or '-'"
        ));
    }
    let declared = [t.lambda_k, t.lambda_m, t.lambda_c];
    let lambdas = match (&t.file, &t.config) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "teacher {name}: give either file or config, not both"
            ));
        }
        (None, None) => return Err(format!("teacher {name}: give a file or a config")),
        (Some(_), None) => {
            if t.data.is_some() || t.backbone_weights.is_some() || t.iterations.is_some() {
                return Err(format!(
                    "teacher {name}: data, backbone_weights and iterations apply to a config \
                     to train, not to a file"
                ));
            }
            match declared {
                [Some(k), Some(m), Some(c)] => [k, m, c],
                _ => {
                    return Err(format!(
                        "teacher {name}: a file needs lambda_k, lambda_m and lambda_c (its losses, \
                         for the report)"
                    ));
                }
            }
        }
        (None, Some(config)) => {
            let from_file = config_lambdas(&ust_data::shared::expand_shared(config))?;
            let mut out = [0.0; 3];
            for (i, key) in ["lambda_k", "lambda_m", "lambda_c"].iter().enumerate() {
                out[i] = match (declared[i], from_file[i]) {
                    (Some(d), Some(f)) if d != f => {
                        return Err(format!("teacher {name}: {key} = {d} but {config} says {f}"));
                    }
                    (Some(d), _) => d,
                    (None, Some(f)) => f,
                    (None, None) => {
                        return Err(format!(
                            "teacher {name}: {config} does not set [losses].{key}; give {key}"
                        ));
                    }
                };
            }
            out
        }
    };
    for (v, key) in lambdas.iter().zip(["lambda_k", "lambda_m", "lambda_c"]) {
        if !v.is_finite() || *v < 0.0 {
            return Err(format!(
                "teacher {name}: {key} = {v} must be finite and >= 0"
            ));
        }
    }
    Ok(CheckedTeacher {
        variant: t.clone(),
        lambdas: Lambdas {
            k: lambdas[0],
            m: lambdas[1],
            c: lambdas[2],
        },
    })
}
