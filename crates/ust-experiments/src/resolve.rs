//! Resolution of a checked [`Experiment`] against the file system (data roots, categories,
//! teacher files) and its expansion into independent [`Job`]s, numbered in a stable order:
//! teachers first, then students, dense baselines and one-class jobs.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Value, json};

use ust_data::shared::expand_shared;

use crate::error::{ExperimentError, Result};
use crate::hash::{FileFingerprint, config_hash};
use crate::schema::{CheckedTeacher, Experiment, SCHEMA_VERSION, TableKind};

/// The kinds of job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Teacher,
    Students,
    DenseBaseline,
    OneClass,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Teacher => "teacher",
            JobKind::Students => "students",
            JobKind::DenseBaseline => "dense_baseline",
            JobKind::OneClass => "one_class",
        }
    }
}

/// Where a one-class job's teacher comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TeacherSource {
    /// An existing file.
    File(PathBuf),
    /// The exported teacher of a teacher job (by its name and cell).
    Job { name: String, cell: String },
}

/// What a job does, with every input resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Task {
    Teacher {
        variant: String,
        config: PathBuf,
        preset: String,
        data: Option<PathBuf>,
        backbone_weights: Option<PathBuf>,
        iterations: Option<usize>,
    },
    Students {
        data: PathBuf,
        category: String,
        scales: Vec<usize>,
        teachers: Vec<PathBuf>,
        preset: String,
        seed: u64,
        /// `--score` of the evaluation when not the paper's `e+v`.
        #[serde(skip_serializing_if = "Option::is_none")]
        score: Option<String>,
        /// Further score terms evaluated beside (`[students].also_score`).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        also_score: Vec<String>,
        /// The training settings (key, value), see [`crate::schema::STUDENT_SETTINGS`].
        settings: Vec<(String, String)>,
    },
    DenseBaseline {
        data: PathBuf,
        category: String,
        method: String,
        p: usize,
        teacher: PathBuf,
        preset: String,
        seed: u64,
        /// `--padding` of the teacher's descriptors.
        padding: String,
    },
    OneClass {
        dataset: String,
        root: PathBuf,
        class: u8,
        method: String,
        variant: String,
        teacher: TeacherSource,
        preset: String,
        seed: u64,
    },
}

/// One independent unit of work, with its cell (the folder its outputs and result go to).
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    /// Its position in the experiment's full job list.
    pub index: usize,
    /// e.g. `students/carpet/seed0`, `dense/knn/carpet/seed0`, `teacher/kc`,
    /// `oneclass/mnist/class3/students@kc/seed0`.
    pub name: String,
    pub kind: JobKind,
    /// The resolved configuration the hash is computed from.
    pub config: Value,
    /// 16 hex digits of FNV-1a over the canonical JSON of `config`.
    pub hash: String,
    /// The cell's folder name under the experiment's `cells/`.
    pub cell: String,
    pub task: Task,
    /// Inputs that must exist before the job can run (data roots).
    pub requires: Vec<PathBuf>,
}

/// One command of a job: the arguments after the program name, and optionally the file its
/// standard output is saved to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub args: Vec<String>,
    pub stdout_to: Option<PathBuf>,
}

/// The file a teacher job's exported teacher is written to, inside its cell.
pub const TEACHER_FILE: &str = "teacher.safetensors";
/// The trained (unexported) teacher inside a teacher cell; its checkpoint is beside it.
pub const TRAINED_TEACHER_FILE: &str = "trained.safetensors";
/// The checkpoint `ust teacher train` writes beside [`TRAINED_TEACHER_FILE`].
pub const TEACHER_CHECKPOINT_FILE: &str = "trained.checkpoint.safetensors";
/// The students' run directory inside a students cell.
pub const MODEL_DIR: &str = "model";
/// The checkpoint `ust oneclass` keeps in its report folder while the students train.
pub const ONE_CLASS_CHECKPOINT_FILE: &str = "students.checkpoint.safetensors";
/// The categories of an MVTec-layout root (the first ones, by name) an experiment without
/// `[mvtec].categories` takes at the smoke preset: a smoke table checks the whole pipeline in
/// minutes (one p = 65 students cell took 64–77 s at the smoke preset on the shared
/// categories; Table 1 has seven such cells and 42 baselines there).
pub const SMOKE_CATEGORIES: usize = 2;
/// The classes of a one-class dataset without `classes` at the smoke preset: a smoke table
/// checks the whole pipeline in minutes (with all ten classes Table 2 has 60 students cells,
/// and one took 24.5 s on the real MNIST).
pub const SMOKE_CLASSES: [u8; 2] = [0, 1];
/// The report every job leaves in its cell.
pub const REPORT_FILE: &str = "report.json";

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// The students' run directories of `category` in every experiment's cells beside
/// `cells_dir` (`RUNS/*/cells/students-<category>-*/model`, sorted), the cell `own` excepted:
/// `ust train --reuse` copies from them any scale trained on the same data with the same
/// teacher and configuration (e.g. Table 1's p = 65 students from Table 3's cell), and passes
/// the others over.
pub fn students_models_beside(cells_dir: &Path, category: &str, own: &str) -> Vec<PathBuf> {
    let Some(runs) = cells_dir.parent().and_then(Path::parent) else {
        return Vec::new();
    };
    let prefix = format!("students-{category}-");
    let mut found = Vec::new();
    for experiment in std::fs::read_dir(runs).into_iter().flatten().flatten() {
        let cells = experiment.path().join("cells");
        for cell in std::fs::read_dir(&cells).into_iter().flatten().flatten() {
            let name = cell.file_name().to_string_lossy().into_owned();
            let model = cell.path().join(MODEL_DIR);
            if name.starts_with(&prefix) && name != own && model.join("run.toml").is_file() {
                found.push(model);
            }
        }
    }
    found.sort();
    found
}

impl Job {
    /// The commands (arguments of the `ust` binary) that do the job in `cell_dir`; `resume`
    /// continues an interrupted training found there.
    pub fn steps(&self, cells_dir: &Path, resume: bool) -> Vec<Step> {
        let cell = cells_dir.join(&self.cell);
        let step = |args: Vec<String>| Step {
            args,
            stdout_to: None,
        };
        match &self.task {
            Task::Teacher {
                config,
                preset,
                data,
                backbone_weights,
                iterations,
                ..
            } => {
                let trained = cell.join(TRAINED_TEACHER_FILE);
                let mut train = vec![
                    "teacher".into(),
                    "train".into(),
                    "--config".into(),
                    s(config),
                    "--preset".into(),
                    preset.clone(),
                    "--out".into(),
                    s(&trained),
                ];
                if let Some(d) = data {
                    train.extend(["--data".into(), s(d)]);
                }
                if let Some(w) = backbone_weights {
                    train.extend(["--backbone-weights".into(), s(w)]);
                }
                if let Some(n) = iterations {
                    train.extend(["--iterations".into(), n.to_string()]);
                }
                if resume {
                    train.push("--resume".into());
                }
                let exported = cell.join(TEACHER_FILE);
                vec![
                    step(train),
                    step(vec![
                        "teacher".into(),
                        "export".into(),
                        s(&trained),
                        s(&exported),
                    ]),
                    Step {
                        args: vec!["teacher".into(), "info".into(), s(&exported)],
                        stdout_to: Some(cell.join(REPORT_FILE)),
                    },
                ]
            }
            Task::Students {
                data,
                category,
                scales,
                teachers,
                preset,
                seed,
                score,
                also_score,
                settings,
            } => {
                let model = cell.join(MODEL_DIR);
                let scales_arg = scales
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(",");
                let mut train = vec![
                    "train".into(),
                    "--data".into(),
                    s(data),
                    "--category".into(),
                    category.clone(),
                    "--scales".into(),
                    scales_arg,
                    "--preset".into(),
                    preset.clone(),
                    "--seed".into(),
                    seed.to_string(),
                    "--out".into(),
                    s(&model),
                ];
                for t in teachers {
                    train.extend(["--teacher".into(), s(t)]);
                }
                for (key, value) in settings {
                    train.extend([format!("--{}", key.replace('_', "-")), value.clone()]);
                }
                let others = students_models_beside(cells_dir, category, &self.cell);
                for other in &others {
                    train.extend(["--reuse".into(), s(other)]);
                }
                if resume {
                    train.push("--resume".into());
                }
                let mut evaluate = vec![
                    "evaluate".into(),
                    s(&model),
                    "--data".into(),
                    s(data),
                    "--category".into(),
                    category.clone(),
                    "--out".into(),
                    s(&cell),
                ];
                if score.is_some() || !also_score.is_empty() {
                    let mut terms = vec![score.clone().unwrap_or_else(|| "e+v".into())];
                    terms.extend(also_score.iter().cloned());
                    evaluate.extend(["--score".into(), terms.join(",")]);
                }
                // The other cells' evaluations: one of identical scale files gives the rows.
                for other in others.iter().filter_map(|m| m.parent()) {
                    evaluate.extend(["--reuse".into(), s(other)]);
                }
                vec![step(train), step(evaluate)]
            }
            Task::DenseBaseline { .. } => Job::dense_steps_together(&[self], cells_dir),
            Task::OneClass {
                dataset,
                root,
                class,
                method,
                preset,
                seed,
                ..
            } => {
                let mut one_class = vec![
                    "oneclass".into(),
                    "--dataset".into(),
                    dataset.clone(),
                    "--data".into(),
                    s(root),
                    "--class".into(),
                    class.to_string(),
                    "--method".into(),
                    method.clone(),
                    "--teacher".into(),
                    s(&self.teacher_file(cells_dir).unwrap_or_default()),
                    "--preset".into(),
                    preset.clone(),
                    "--seed".into(),
                    seed.to_string(),
                    "--out".into(),
                    s(&cell),
                ];
                if resume {
                    one_class.push("--resume".into());
                }
                vec![step(one_class)]
            }
        }
    }

    /// The teacher file a one-class job reads (a teacher job's export, or a file).
    pub fn teacher_file(&self, cells_dir: &Path) -> Option<PathBuf> {
        match &self.task {
            Task::OneClass { teacher, .. } => Some(match teacher {
                TeacherSource::File(f) => f.clone(),
                TeacherSource::Job { cell, .. } => cells_dir.join(cell).join(TEACHER_FILE),
            }),
            Task::Teacher { .. } => Some(cells_dir.join(&self.cell).join(TEACHER_FILE)),
            _ => None,
        }
    }

    /// For a dense baseline, what it shares with the other methods on the same descriptors
    /// (data, category, p, teacher, preset, seed): jobs with the same key can run as one
    /// `ust baseline dense` command ([`Job::dense_steps_together`]). `None` for other kinds.
    pub fn shared_descriptors_key(&self) -> Option<String> {
        match &self.task {
            Task::DenseBaseline {
                data,
                category,
                p,
                teacher,
                preset,
                seed,
                padding,
                ..
            } => Some(format!(
                "{}|{category}|{p}|{}|{preset}|{seed}|{padding}",
                data.display(),
                teacher.display()
            )),
            _ => None,
        }
    }

    /// The one `ust baseline dense` command of dense-baseline jobs with the same
    /// [`Job::shared_descriptors_key`]: `--method M --out CELL` per job, in order, so the
    /// teacher describes each image once for all of them (each method's figures are those it
    /// gets alone).
    ///
    /// # Panics
    /// If `jobs` is empty or holds another kind of job (a programming error).
    pub fn dense_steps_together(jobs: &[&Job], cells_dir: &Path) -> Vec<Step> {
        let Task::DenseBaseline {
            data,
            category,
            p,
            teacher,
            preset,
            seed,
            padding,
            ..
        } = &jobs[0].task
        else {
            panic!(
                "dense_steps_together: {} is not a dense baseline",
                jobs[0].name
            );
        };
        let mut args: Vec<String> = vec![
            "baseline".into(),
            "dense".into(),
            "--data".into(),
            s(data),
            "--category".into(),
            category.clone(),
        ];
        for job in jobs {
            let Task::DenseBaseline { method, .. } = &job.task else {
                panic!("dense_steps_together: {} is not a dense baseline", job.name);
            };
            args.extend([
                "--method".into(),
                method.clone(),
                "--out".into(),
                s(&cells_dir.join(&job.cell)),
            ]);
        }
        args.extend([
            "--p".into(),
            p.to_string(),
            "--teacher".into(),
            s(teacher),
            "--preset".into(),
            preset.clone(),
            "--seed".into(),
            seed.to_string(),
            "--padding".into(),
            padding.clone(),
        ]);
        vec![Step {
            args,
            stdout_to: None,
        }]
    }

    /// The teacher job this job waits for.
    pub fn depends_on(&self) -> Option<&str> {
        match &self.task {
            Task::OneClass {
                teacher: TeacherSource::Job { name, .. },
                ..
            } => Some(name),
            _ => None,
        }
    }
}

/// Turns a job's name into the middle part of its cell folder's name.
fn short_name(name: &str) -> String {
    let rest = name.split_once('/').map(|(_, r)| r).unwrap_or(name);
    let mut out: String = rest
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if out.len() > 80 {
        out.truncate(80);
    }
    out
}

fn canonical(p: &Path) -> Value {
    match std::fs::canonicalize(p) {
        Ok(c) => json!(c.display().to_string()),
        Err(_) => Value::Null,
    }
}

/// The categories under an MVTec-layout root: its subfolders with a `train/good/` folder,
/// sorted (files such as README.md and other folders are skipped, among them an unpacked
/// CIFAR-10, whose `train/` holds class folders, beside the bundled category in `data/`).
pub fn discover_categories(root: &Path) -> Result<Vec<String>> {
    let data_err = |reason: String| ExperimentError::Data {
        path: root.to_path_buf(),
        reason,
    };
    if !root.is_dir() {
        return Err(data_err(
            "the data root does not exist or is not a folder".into(),
        ));
    }
    if root.join("train/good").is_dir() {
        return Err(data_err(
            "is itself a category (it has train/good): give the folder above it as the data root"
                .into(),
        ));
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root).map_err(|e| ExperimentError::io(root, e))? {
        let entry = entry.map_err(|e| ExperimentError::io(root, e))?;
        let path = entry.path();
        if path.is_dir() && path.join("train/good").is_dir() {
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(data_err(
            "no MVTec-layout category found (a folder with train/good and test/)".into(),
        ));
    }
    Ok(out)
}

/// An experiment with its data resolved and its jobs expanded.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub experiment: Experiment,
    /// The MVTec-layout root (as given, `$UST_SHARED` expanded) and its categories.
    pub mvtec_root: Option<PathBuf>,
    pub categories: Vec<String>,
    pub jobs: Vec<Job>,
}

/// How shipped teachers are found (the `ust` binary passes its own lookup).
pub type DefaultTeacher<'a> = &'a dyn Fn(usize) -> std::result::Result<PathBuf, String>;

impl Plan {
    /// Resolves `experiment`: discovers the categories, finds and fingerprints the teachers,
    /// expands the jobs.
    pub fn new(experiment: &Experiment, default_teacher: DefaultTeacher<'_>) -> Result<Self> {
        let mut jobs = Vec::new();
        let preset = experiment.preset.clone();
        let file_err = |reason: String| ExperimentError::Invalid {
            path: experiment.file.clone(),
            reason,
        };
        let fingerprint = |path: &Path| -> Result<Value> {
            let f = FileFingerprint::of(path).map_err(|e| file_err(format!("teacher: {e}")))?;
            Ok(serde_json::to_value(f)?)
        };
        let teacher_for = |p: usize, given: Option<&String>| -> Result<PathBuf> {
            match given {
                Some(f) => Ok(PathBuf::from(expand_shared(f))),
                None => default_teacher(p).map_err(file_err),
            }
        };
        let push = |jobs: &mut Vec<Job>,
                    name: String,
                    kind: JobKind,
                    mut config: Value,
                    task: Task,
                    requires: Vec<PathBuf>| {
            config["kind"] = json!(kind.as_str());
            config["schema"] = json!(SCHEMA_VERSION);
            let hash = config_hash(&config);
            let cell = format!("{}-{}-{hash}", kind.as_str(), short_name(&name));
            jobs.push(Job {
                index: jobs.len(),
                name,
                kind,
                config,
                hash,
                cell,
                task,
                requires,
            });
        };

        // Teacher variants to train.
        let mut teacher_sources: Vec<(String, TeacherSource, Value)> = Vec::new();
        for t in &experiment.teachers {
            let v = &t.variant;
            if let Some(config) = &v.config {
                let config_path = PathBuf::from(expand_shared(config));
                let opt_path =
                    |o: &Option<String>| o.as_ref().map(|x| PathBuf::from(expand_shared(x)));
                let cfg = json!({
                    "config": s(&config_path),
                    "config_file": fingerprint(&config_path)?,
                    "preset": preset,
                    "lambdas": t.lambdas,
                    "data": v.data.as_ref().map(|d| expand_shared(d)),
                    "data_canonical": v.data.as_ref().map(|d| canonical(Path::new(&expand_shared(d)))),
                    "backbone_weights": v.backbone_weights.as_ref().map(|d| expand_shared(d)),
                    "iterations": v.iterations,
                });
                let name = format!("teacher/{}", v.name);
                push(
                    &mut jobs,
                    name.clone(),
                    JobKind::Teacher,
                    cfg,
                    Task::Teacher {
                        variant: v.name.clone(),
                        config: config_path,
                        preset: preset.clone(),
                        data: opt_path(&v.data),
                        backbone_weights: opt_path(&v.backbone_weights),
                        iterations: v.iterations,
                    },
                    Vec::new(),
                );
                let job = jobs.last().expect("just pushed");
                let identity = json!({"job": job.hash});
                teacher_sources.push((
                    v.name.clone(),
                    TeacherSource::Job {
                        name,
                        cell: job.cell.clone(),
                    },
                    identity,
                ));
            } else if let Some(file) = &v.file {
                let path = PathBuf::from(expand_shared(file));
                let identity = fingerprint(&path)?;
                teacher_sources.push((v.name.clone(), TeacherSource::File(path), identity));
            }
        }

        // MVTec-layout jobs.
        let mut mvtec_root = None;
        let mut categories = Vec::new();
        if let Some(m) = &experiment.mvtec {
            let root = PathBuf::from(expand_shared(&m.data));
            let found = discover_categories(&root)?;
            categories = match &m.categories {
                Some(wanted) => {
                    for c in wanted {
                        if !found.contains(c) {
                            return Err(ExperimentError::Data {
                                path: root.clone(),
                                reason: format!("no category {c:?} (found: {})", found.join(", ")),
                            });
                        }
                    }
                    wanted.clone()
                }
                None if preset == "smoke" => found.into_iter().take(SMOKE_CATEGORIES).collect(),
                None => found,
            };
            let root_value = json!({"given": s(&root), "canonical": canonical(&root)});
            if let Some(st) = &experiment.students {
                let teachers = st
                    .scales
                    .iter()
                    .enumerate()
                    .map(|(i, &p)| teacher_for(p, st.teachers.get(i)))
                    .collect::<Result<Vec<_>>>()?;
                let prints = teachers
                    .iter()
                    .map(|t| fingerprint(t))
                    .collect::<Result<Vec<_>>>()?;
                let score = st.ablated_score();
                let settings = st.settings();
                let settings_value: serde_json::Map<String, Value> = settings
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect();
                for c in &categories {
                    for &seed in &experiment.seeds {
                        let mut config = json!({"data": root_value, "category": c,
                                   "scales": st.scales, "teachers": prints, "preset": preset,
                                   "seed": seed});
                        // Only an ablated score enters the hash: e+v cells keep their hashes.
                        if let Some(t) = score {
                            config["score"] = json!(t);
                        }
                        if !st.also_score.is_empty() {
                            config["also_score"] = json!(st.also_score);
                        }
                        config["student_settings"] = Value::Object(settings_value.clone());
                        push(
                            &mut jobs,
                            format!("students/{c}/seed{seed}"),
                            JobKind::Students,
                            config,
                            Task::Students {
                                data: root.clone(),
                                category: c.clone(),
                                scales: st.scales.clone(),
                                teachers: teachers.clone(),
                                preset: preset.clone(),
                                seed,
                                score: score.map(str::to_string),
                                also_score: st.also_score.clone(),
                                settings: settings.clone(),
                            },
                            vec![root.clone()],
                        );
                    }
                }
            }
            if let Some(d) = &experiment.dense_baselines {
                let teacher = teacher_for(d.p, d.teacher.as_ref())?;
                let print = fingerprint(&teacher)?;
                let padding = d.padding();
                for method in &d.methods {
                    for c in &categories {
                        for &seed in &experiment.seeds {
                            push(
                                &mut jobs,
                                format!("dense/{method}/{c}/seed{seed}"),
                                JobKind::DenseBaseline,
                                json!({"data": root_value, "category": c, "method": method,
                                       "p": d.p, "teacher": print, "preset": preset,
                                       "seed": seed, "padding": padding}),
                                Task::DenseBaseline {
                                    data: root.clone(),
                                    category: c.clone(),
                                    method: method.clone(),
                                    p: d.p,
                                    teacher: teacher.clone(),
                                    preset: preset.clone(),
                                    seed,
                                    padding: padding.clone(),
                                },
                                vec![root.clone()],
                            );
                        }
                    }
                }
            }
            mvtec_root = Some(root);
        }

        // One-class jobs: students per teacher variant, baselines with the baseline teacher.
        if let Some(o) = &experiment.one_class {
            let baseline = experiment
                .baseline_teacher()
                .map(|t| t.variant.name.clone());
            for d in &experiment.datasets {
                let root = PathBuf::from(expand_shared(&d.root));
                let classes: Vec<u8> = d.classes.clone().unwrap_or_else(|| {
                    if preset == "smoke" {
                        SMOKE_CLASSES.to_vec()
                    } else {
                        (0..10).collect()
                    }
                });
                let root_value = json!({"given": s(&root), "canonical": canonical(&root)});
                for method in &o.methods {
                    let variants: Vec<&(String, TeacherSource, Value)> =
                        if method == crate::oneclass::OneClassMethod::STUDENTS {
                            teacher_sources.iter().collect()
                        } else {
                            teacher_sources
                                .iter()
                                .filter(|(n, _, _)| Some(n) == baseline.as_ref())
                                .collect()
                        };
                    for (variant, source, identity) in variants {
                        for &class in &classes {
                            for &seed in &experiment.seeds {
                                push(
                                    &mut jobs,
                                    format!(
                                        "oneclass/{}/class{class}/{method}@{variant}/seed{seed}",
                                        d.name
                                    ),
                                    JobKind::OneClass,
                                    json!({"dataset": d.name, "root": root_value,
                                           "class": class, "method": method,
                                           "teacher": identity, "preset": preset,
                                           "seed": seed}),
                                    Task::OneClass {
                                        dataset: d.name.clone(),
                                        root: root.clone(),
                                        class,
                                        method: method.clone(),
                                        variant: variant.clone(),
                                        teacher: source.clone(),
                                        preset: preset.clone(),
                                        seed,
                                    },
                                    vec![root.clone()],
                                );
                            }
                        }
                    }
                }
            }
        }
        Ok(Self {
            experiment: experiment.clone(),
            mvtec_root,
            categories,
            jobs,
        })
    }

    /// The jobs whose name contains one of `only` (all when `only` is empty), in order.
    pub fn select(&self, only: &[String]) -> Vec<&Job> {
        self.jobs
            .iter()
            .filter(|j| only.is_empty() || only.iter().any(|o| j.name.contains(o.as_str())))
            .collect()
    }

    /// The teacher job called `name`.
    pub fn job_named(&self, name: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.name == name)
    }

    /// The table this plan reports.
    pub fn table(&self) -> TableKind {
        self.experiment.table
    }

    /// The teacher variant called `name`.
    pub fn teacher_variant(&self, name: &str) -> Option<&CheckedTeacher> {
        self.experiment
            .teachers
            .iter()
            .find(|t| t.variant.name == name)
    }
}

/// An error naming every required input of `jobs` that is missing.
pub fn check_inputs(jobs: &[&Job]) -> Result<()> {
    let mut missing: Vec<&PathBuf> = Vec::new();
    for j in jobs {
        for r in &j.requires {
            if !r.exists() && !missing.contains(&r) {
                missing.push(r);
            }
        }
    }
    match missing.first() {
        None => Ok(()),
        Some(first) => Err(ExperimentError::Data {
            path: (*first).clone(),
            reason: format!(
                "missing data root{} (needed by the selected jobs{})",
                if missing.len() > 1 {
                    format!(
                        "; also missing: {}",
                        missing[1..]
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                } else {
                    String::new()
                },
                if first.to_string_lossy().contains("cifar") {
                    "; `just unpack-cifar` unpacks CIFAR-10 into data/cifar-10"
                } else {
                    ""
                }
            ),
        }),
    }
}
