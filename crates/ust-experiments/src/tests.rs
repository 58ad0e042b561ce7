//! Unit tests across the modules: validation errors, job expansion, hashing of resolved jobs
//! and report rendering with hand-made results.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::cell::{CellFailure, CellResult, CellStatus, Figures, ScoreRow};
use crate::report::{RunMeta, RunResults, render_markdown};
use crate::resolve::{JobKind, Plan, Task, TeacherSource};
use crate::schema::{Experiment, Overrides};

pub(crate) struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    /// A data root with categories `cats` (each with train/good), a README.md and a folder that
    /// is not a category; three fake teacher files.
    pub(crate) fn new(cats: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        for c in cats {
            std::fs::create_dir_all(root.join(c).join("train/good")).unwrap();
        }
        std::fs::create_dir_all(root.join("notes")).unwrap();
        std::fs::write(root.join("README.md"), "readme").unwrap();
        for p in [17, 33, 65] {
            std::fs::write(
                dir.path().join(format!("t{p}.safetensors")),
                format!("teacher {p}"),
            )
            .unwrap();
        }
        Self { dir }
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub(crate) fn root(&self) -> String {
        self.path("root").display().to_string()
    }

    pub(crate) fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    pub(crate) fn load(&self, text: &str) -> crate::Result<Experiment> {
        let p = self.write("exp.toml", text);
        Experiment::load(&p, &Overrides::default())
    }

    pub(crate) fn plan(&self, text: &str) -> crate::Result<Plan> {
        let e = self.load(text)?;
        let dir = self.dir.path().to_path_buf();
        Plan::new(&e, &move |p| Ok(dir.join(format!("t{p}.safetensors"))))
    }
}

fn err_of<T: std::fmt::Debug>(r: crate::Result<T>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn validation_errors_name_the_file_and_the_problem() {
    let f = Fixture::new(&["a"]);
    let root = f.root();
    let table1 = |extra: &str| {
        format!(
            "table = \"table1\"\n[mvtec]\ndata = \"{root}\"\n[students]\nscales = [17]\n{extra}"
        )
    };
    let cases: Vec<(String, &str)> = vec![
        (table1("[dense_baselines]\nmethods = [\"knn\", \"svm\"]\n"), "unknown method \"svm\""),
        (table1("[dense_baselines]\nmethods = []\n"), "[dense_baselines].methods is empty"),
        (table1("seeds = []\n").replace("seeds = []\n", ""), ""),
        (format!("seeds = []\n{}", table1("")), "seeds is empty"),
        (format!("seeds = [1, 1]\n{}", table1("")), "repeat a seed"),
        (format!("preset = \"fast\"\n{}", table1("")), "unknown preset \"fast\""),
        (table1("").replace("[17]", "[20]"), "receptive field 20"),
        (table1("").replace("[17]", "[]"), "[students].scales is empty"),
        (table1("").replace("table1", "table9"), "table9"),
        (table1("bogus = 1\n"), "bogus"),
        (
            format!("table = \"table1\"\n[mvtec]\ndata = \"{root}\"\ncategories = []\n[students]\nscales = [17]\n"),
            "[mvtec].categories is empty",
        ),
        ("table = \"table1\"\n[students]\nscales = [17]\n".into(), "needs [mvtec]"),
        (
            "table = \"table2\"\n[[datasets]]\nname = \"mnist\"\nroot = \"x\"\n[one_class]\nmethods = [\"knn\"]\n".into(),
            "needs [[teachers]]",
        ),
        (
            "table = \"table2\"\n[[teachers]]\nname = \"a\"\nfile = \"f\"\nconfig = \"c\"\n[[datasets]]\nname = \"mnist\"\nroot = \"x\"\n[one_class]\nmethods = [\"knn\"]\n".into(),
            "either file or config",
        ),
        (
            "table = \"table2\"\n[[teachers]]\nname = \"a\"\nfile = \"f\"\n[[datasets]]\nname = \"mnist\"\nroot = \"x\"\n[one_class]\nmethods = [\"knn\"]\n".into(),
            "needs lambda_k",
        ),
        (
            "table = \"table2\"\n[[teachers]]\nname = \"a\"\nfile = \"f\"\nlambda_k = 1.0\nlambda_m = 0.0\nlambda_c = 1.0\n[[datasets]]\nname = \"svhn\"\nroot = \"x\"\n[one_class]\nmethods = [\"knn\"]\n".into(),
            "unknown dataset \"svhn\"",
        ),
        (
            "table = \"table2\"\n[[teachers]]\nname = \"a\"\nfile = \"f\"\nlambda_k = 1.0\nlambda_m = 0.0\nlambda_c = 1.0\n[[datasets]]\nname = \"mnist\"\nroot = \"x\"\nclasses = [10]\n[one_class]\nmethods = [\"knn\"]\n".into(),
            "class 10",
        ),
        (
            "table = \"table2\"\n[[teachers]]\nname = \"a\"\nfile = \"f\"\nlambda_k = 1.0\nlambda_m = 0.0\nlambda_c = 1.0\n[[datasets]]\nname = \"mnist\"\nroot = \"x\"\n[one_class]\nmethods = [\"knn\"]\nbaseline_teacher = \"b\"\n".into(),
            "baseline_teacher \"b\"",
        ),
    ];
    for (text, want) in cases {
        let r = f.load(&text);
        if want.is_empty() {
            assert!(r.is_ok(), "{text}: {r:?}");
            continue;
        }
        let msg = err_of(r);
        assert!(msg.contains(want), "{text}\nwanted {want:?} in: {msg}");
        assert!(msg.contains("exp.toml"), "no file name in: {msg}");
    }
    // A teacher config whose losses disagree with the declared ones.
    let cfg = f.write(
        "t.toml",
        "[losses]\nlambda_k = 1.0\nlambda_m = 0.0\nlambda_c = 0.0\n",
    );
    let text = format!(
        "table = \"table2\"\n[[teachers]]\nname = \"d\"\nconfig = \"{}\"\nlambda_c = 1.0\n\
         [[datasets]]\nname = \"mnist\"\nroot = \"x\"\n[one_class]\nmethods = [\"knn\"]\n",
        cfg.display()
    );
    assert!(err_of(f.load(&text)).contains("lambda_c = 1 but"));
    // --data on a table2 experiment.
    let text = text.replace("lambda_c = 1.0\n", "");
    let p = f.write("t2.toml", &text);
    let e = Experiment::load(&p, &Overrides::default()).unwrap();
    assert_eq!(
        (e.teachers[0].lambdas.k, e.teachers[0].lambdas.c),
        (1.0, 0.0)
    );
    let over = Overrides {
        data: Some("x".into()),
        preset: None,
    };
    assert!(err_of(Experiment::load(&p, &over)).contains("--data"));
}

#[test]
fn data_errors_missing_root_no_category_unknown_category() {
    let f = Fixture::new(&["a"]);
    let text = |data: &str, cats: &str| {
        format!(
            "table = \"table3\"\n[mvtec]\ndata = \"{data}\"\n{cats}[students]\nscales = [17, 33]\n"
        )
    };
    let missing = f.path("nowhere").display().to_string();
    let msg = err_of(f.plan(&text(&missing, "")));
    assert!(
        msg.contains("nowhere") && msg.contains("does not exist"),
        "{msg}"
    );
    std::fs::create_dir_all(f.path("empty/sub")).unwrap();
    std::fs::write(f.path("empty/README.md"), "x").unwrap();
    let empty = f.path("empty").display().to_string();
    let msg = err_of(f.plan(&text(&empty, "")));
    assert!(msg.contains("no MVTec-layout category"), "{msg}");
    let msg = err_of(f.plan(&text(&f.root(), "categories = [\"zz\"]\n")));
    assert!(
        msg.contains("no category \"zz\"") && msg.contains("found: a"),
        "{msg}"
    );
    // A category folder itself as the root: an error pointing at the folder above.
    let cat = f.path("root/a").display().to_string();
    let msg = err_of(f.plan(&text(&cat, "")));
    assert!(msg.contains("is itself a category"), "{msg}");
}

#[test]
fn table1_jobs_expand_in_a_stable_order_with_distinct_cells() {
    let f = Fixture::new(&["b", "a"]);
    let text = format!(
        "table = \"table1\"\nseeds = [0, 1]\npreset = \"smoke\"\n[mvtec]\ndata = \"{}\"\n\
         [students]\nscales = [65]\n[dense_baselines]\nmethods = [\"knn\", \"ae\"]\n",
        f.root()
    );
    // A folder whose train/ holds classes, not good/ (CIFAR-10 unpacked into data/), is no
    // category either.
    std::fs::create_dir_all(f.path("root/cifar-10/train/airplane")).unwrap();
    let plan = f.plan(&text).unwrap();
    // README.md, notes/ (no train/) and cifar-10/ (no train/good) are not categories; sorted.
    assert_eq!(plan.categories, ["a", "b"]);
    let names: Vec<&str> = plan.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "students/a/seed0",
            "students/a/seed1",
            "students/b/seed0",
            "students/b/seed1",
            "dense/knn/a/seed0",
            "dense/knn/a/seed1",
            "dense/knn/b/seed0",
            "dense/knn/b/seed1",
            "dense/ae/a/seed0",
            "dense/ae/a/seed1",
            "dense/ae/b/seed0",
            "dense/ae/b/seed1",
        ]
    );
    assert!(plan.jobs.iter().enumerate().all(|(i, j)| j.index == i));
    let mut cells: Vec<&str> = plan.jobs.iter().map(|j| j.cell.as_str()).collect();
    cells.sort();
    cells.dedup();
    assert_eq!(cells.len(), 12);
    let j = &plan.jobs[1];
    assert_eq!(j.kind, JobKind::Students);
    assert_eq!(j.cell, format!("students-a-seed1-{}", j.hash));
    // The commands a user would type.
    let cells_dir = Path::new("runs/x/cells");
    let steps = j.steps(cells_dir, false);
    let cell = cells_dir.join(&j.cell).display().to_string();
    let teacher = f.path("t65.safetensors").display().to_string();
    let model = format!("{cell}/model");
    let want_train: Vec<String> = [
        "train",
        "--data",
        &f.root(),
        "--category",
        "a",
        "--scales",
        "65",
        "--preset",
        "smoke",
        "--seed",
        "1",
        "--out",
        &model,
        "--teacher",
        &teacher,
        "--padding",
        "replicate",
        "--crop-coverage",
        "uniform",
        "--student-sampling",
        "per-student",
        "--standardize-inputs",
        "true",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(steps[0].args, want_train);
    let want_eval: Vec<String> = [
        "evaluate",
        &model,
        "--data",
        &f.root(),
        "--category",
        "a",
        "--out",
        &cell,
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(steps[1].args, want_eval);
    assert_eq!(j.steps(cells_dir, true)[0].args.last().unwrap(), "--resume");
    // Students cells of the same category in other experiments are offered to --reuse; other
    // categories, cells without a run, and the job's own cell are not.
    let runs = f.path("runs");
    let model_of = |exp: &str, cell: &str, with_run: bool| {
        let m = runs.join(exp).join("cells").join(cell).join("model");
        std::fs::create_dir_all(&m).unwrap();
        if with_run {
            std::fs::write(m.join("run.toml"), "").unwrap();
        }
        m
    };
    let ablation = model_of("ablation_p", "students-a-seed1-00ff", true);
    model_of("ablation_p", "students-b-seed1-00ff", true);
    model_of("ablation_p", "students-a-seed2-0aaa", false);
    model_of("x", &j.cell, true);
    let mine = runs.join("x/cells");
    let steps = j.steps(&mine, false);
    let offered = |args: &[String]| -> Vec<String> {
        args.windows(2)
            .filter(|w| w[0] == "--reuse")
            .map(|w| w[1].clone())
            .collect()
    };
    assert_eq!(offered(&steps[0].args), [ablation.display().to_string()]);
    // ... and their evaluations (the cell folders) to `ust evaluate --reuse`.
    assert_eq!(
        offered(&steps[1].args),
        [ablation.parent().unwrap().display().to_string()]
    );
    let d = &plan.jobs[8];
    let args = &d.steps(cells_dir, false)[0].args;
    assert_eq!(&args[..2], ["baseline", "dense"]);
    assert!(args.windows(2).any(|w| w == ["--method", "ae"]));
    assert!(args.windows(2).any(|w| w == ["--p", "65"]));
    // The baselines see the students' border: replicate unless the file says otherwise.
    assert!(args.windows(2).any(|w| w == ["--padding", "replicate"]));
    let zeros = f
        .plan(&text.replace("methods = [", "padding = \"zeros\"\nmethods = ["))
        .unwrap();
    let z = &zeros.jobs[8];
    assert_eq!(z.name, d.name);
    assert_ne!(z.hash, d.hash, "the padding is part of a baseline cell");
    assert_eq!(
        zeros.jobs[0].hash, plan.jobs[0].hash,
        "students cells unchanged"
    );
    assert_ne!(z.shared_descriptors_key(), d.shared_descriptors_key());
    let zargs = &z.steps(cells_dir, false)[0].args;
    assert!(zargs.windows(2).any(|w| w == ["--padding", "zeros"]));
    let msg = err_of(f.plan(&text.replace("methods = [", "padding = \"edge\"\nmethods = [")));
    assert!(
        msg.contains("[dense_baselines].padding") && msg.contains("zeros, replicate, reflect"),
        "{msg}"
    );
    // --only keeps the order.
    let only: Vec<&str> = plan
        .select(&["knn/b".into(), "students/a/seed0".into()])
        .iter()
        .map(|j| j.name.as_str())
        .collect();
    assert_eq!(
        only,
        ["students/a/seed0", "dense/knn/b/seed0", "dense/knn/b/seed1"]
    );
}

#[test]
fn table2_jobs_put_teachers_first_and_depend_on_them() {
    let f = Fixture::new(&[]);
    let cfg = f.write(
        "distill.toml",
        "[teacher]\npatch_size = 33\n[losses]\nlambda_k = 1.0\nlambda_m = 0.0\nlambda_c = 0.0\n",
    );
    let text = format!(
        "table = \"table2\"\n\
         [[teachers]]\nname = \"kc\"\nfile = \"{}\"\nlambda_k = 1.0\nlambda_m = 0.0\nlambda_c = 1.0\n\
         [[teachers]]\nname = \"distill\"\nconfig = \"{}\"\niterations = 3\n\
         [[datasets]]\nname = \"mnist\"\nroot = \"{}\"\nclasses = [0, 7]\n\
         [one_class]\nmethods = [\"students\", \"knn\"]\n",
        f.path("t33.safetensors").display(),
        cfg.display(),
        f.path("mnist").display()
    );
    let plan = f.plan(&text).unwrap();
    let names: Vec<&str> = plan.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "teacher/distill",
            "oneclass/mnist/class0/students@kc/seed0",
            "oneclass/mnist/class7/students@kc/seed0",
            "oneclass/mnist/class0/students@distill/seed0",
            "oneclass/mnist/class7/students@distill/seed0",
            "oneclass/mnist/class0/knn@kc/seed0",
            "oneclass/mnist/class7/knn@kc/seed0",
        ]
    );
    let teacher = &plan.jobs[0];
    let cells = Path::new("c");
    let steps = teacher.steps(cells, false);
    assert_eq!(
        &steps[0].args[..4],
        ["teacher", "train", "--config", &cfg.display().to_string()]
    );
    assert!(steps[0].args.windows(2).any(|w| w == ["--iterations", "3"]));
    assert_eq!(&steps[1].args[..2], ["teacher", "export"]);
    assert_eq!(steps[2].args[..2], ["teacher", "info"]);
    assert_eq!(
        steps[2].stdout_to.as_deref(),
        Some(cells.join(&teacher.cell).join("report.json").as_path())
    );
    let students_distill = &plan.jobs[3];
    assert_eq!(students_distill.depends_on(), Some("teacher/distill"));
    assert!(matches!(
        &students_distill.task,
        Task::OneClass { teacher: TeacherSource::Job { name, .. }, .. } if name == "teacher/distill"
    ));
    let args = &students_distill.steps(cells, false)[0].args;
    let exported = cells
        .join(&teacher.cell)
        .join("teacher.safetensors")
        .display()
        .to_string();
    assert!(
        args.windows(2)
            .any(|w| w == ["--teacher", exported.as_str()]),
        "{args:?}"
    );
    assert_ne!(args.last().unwrap(), "--resume");
    // An interrupted students cell continues from its checkpoint.
    let resumed = &students_distill.steps(cells, true)[0].args;
    assert_eq!(resumed[..resumed.len() - 1], args[..]);
    assert_eq!(resumed.last().unwrap(), "--resume");
    assert_eq!(plan.jobs[1].depends_on(), None);
    // The missing MNIST root is an error only for the jobs that need it.
    let selected = plan.select(&["oneclass/".into()]);
    let msg = crate::check_inputs(&selected).unwrap_err().to_string();
    assert!(
        msg.contains("mnist") && msg.contains("missing data root"),
        "{msg}"
    );
    assert!(crate::check_inputs(&plan.select(&["teacher/".into()])).is_ok());
}

#[test]
fn hashes_are_stable_and_follow_every_input() {
    let f = Fixture::new(&["a"]);
    let text = |seeds: &str, preset: &str, scales: &str| {
        format!(
            "table = \"table3\"\nseeds = {seeds}\npreset = \"{preset}\"\n[mvtec]\ndata = \"{}\"\n\
             [students]\nscales = {scales}\n",
            f.root()
        )
    };
    let base = f.plan(&text("[0]", "cpu", "[17, 33]")).unwrap();
    let again = f.plan(&text("[0]", "cpu", "[17, 33]")).unwrap();
    assert_eq!(base.jobs[0].hash, again.jobs[0].hash);
    assert_eq!(base.jobs[0].cell, again.jobs[0].cell);
    for changed in [
        text("[1]", "cpu", "[17, 33]"),
        text("[0]", "smoke", "[17, 33]"),
        text("[0]", "cpu", "[17, 65]"),
        text("[0]", "cpu", "[33, 17]"),
    ] {
        let p = f.plan(&changed).unwrap();
        assert_ne!(p.jobs[0].hash, base.jobs[0].hash, "{changed}");
    }
    // A seed added to the list leaves seed 0's cell where it was.
    let two = f.plan(&text("[0, 1]", "cpu", "[17, 33]")).unwrap();
    assert_eq!(two.jobs[0].hash, base.jobs[0].hash);
    // A different teacher file content: a different cell.
    std::fs::write(f.path("t17.safetensors"), "retrained").unwrap();
    let retrained = f.plan(&text("[0]", "cpu", "[17, 33]")).unwrap();
    assert_ne!(retrained.jobs[0].hash, base.jobs[0].hash);
    // The hash is over the canonical JSON of the config the job records.
    assert_eq!(base.jobs[0].hash, crate::config_hash(&base.jobs[0].config));
    assert_eq!(
        base.jobs[0].config["student_settings"],
        json!({"padding": "replicate", "crop_coverage": "uniform",
               "student_sampling": "per-student", "standardize_inputs": "true"})
    );
    assert_eq!(
        base.jobs[0].config["schema"],
        json!(crate::schema::SCHEMA_VERSION)
    );
}

fn done(name: &str, kind: JobKind, figures: Figures) -> CellStatus {
    CellStatus::Done {
        result: CellResult {
            name: name.into(),
            kind,
            hash: "0".into(),
            config: json!({}),
            figures,
            wall_s: 2.0,
            steps: Vec::new(),
            finished_at: "2026-01-01T00:00:00Z".into(),
            ran_with: Vec::new(),
        },
        cached: false,
    }
}

fn failed(name: &str, kind: JobKind, reason: &str) -> CellStatus {
    CellStatus::Failed {
        failure: CellFailure {
            name: name.into(),
            kind,
            hash: "0".into(),
            config: json!({}),
            reason: reason.into(),
            steps: Vec::new(),
            stderr_tail: vec!["error: boom".into()],
            wall_s: 1.0,
            failed_at: "2026-01-01T00:00:00Z".into(),
        },
    }
}

fn students(rows: &[(&str, f64)]) -> Figures {
    Figures::Students {
        rows: rows
            .iter()
            .map(|(n, v)| ScoreRow {
                name: n.to_string(),
                au_pro: *v,
                pixel_auroc: 0.9,
                image_auroc: Some(0.8),
            })
            .collect(),
        training_s: Some(1.0),
        predict_s: Some(1.0),
        peak_rss_mib: Some(300.0),
    }
}

fn dense(au_pro: f64) -> Figures {
    Figures::DenseBaseline {
        au_pro,
        pixel_auroc: Some(0.7),
        image_auroc: None,
        total_s: Some(1.0),
        peak_rss_mib: Some(500.0),
    }
}

fn meta(plan: &Plan) -> RunMeta {
    RunMeta {
        experiment: plan.experiment.name.clone(),
        file: "exp.toml".into(),
        table: plan.experiment.table,
        preset: plan.experiment.preset.clone(),
        seeds: plan.experiment.seeds.clone(),
        data: vec!["root".into()],
        mode: "run".into(),
        command: vec!["ust".into(), "experiment".into()],
        started_at: "s".into(),
        finished_at: "f".into(),
        wall_s: 3.0,
    }
}

/// The cells of the Markdown table row starting with `label`.
fn row_of(md: &str, label: &str) -> Vec<String> {
    let line = md
        .lines()
        .find(|l| l.starts_with(&format!("| {label} |")))
        .unwrap_or_else(|| panic!("no row {label} in\n{md}"));
    line.trim_matches('|')
        .split(" | ")
        .map(|c| c.trim().to_string())
        .collect()
}

#[test]
fn table1_report_has_paper_numbers_means_and_failures() {
    let f = Fixture::new(&["carpet", "widget"]);
    let text = format!(
        "table = \"table1\"\nseeds = [0, 1]\n[mvtec]\ndata = \"{}\"\n[students]\nscales = [65]\n\
         [dense_baselines]\nmethods = [\"knn\", \"pca\"]\n",
        f.root()
    );
    let plan = f.plan(&text).unwrap();
    // Jobs: students carpet s0 s1, widget s0 s1; knn ×4; pca ×4.
    let statuses = vec![
        done("s", JobKind::Students, students(&[("p=65", 0.8)])),
        done("s", JobKind::Students, students(&[("p=65", 0.7)])),
        done("s", JobKind::Students, students(&[("p=65", 0.5)])),
        failed("s", JobKind::Students, "`ust train` exited with status 1"),
        done("d", JobKind::DenseBaseline, dense(0.4)),
        done("d", JobKind::DenseBaseline, dense(0.6)),
        failed("d", JobKind::DenseBaseline, "boom"),
        failed("d", JobKind::DenseBaseline, "boom"),
        CellStatus::Missing,
        CellStatus::Missing,
        CellStatus::Missing,
        CellStatus::Missing,
    ];
    let results = RunResults::new(meta(&plan), &plan, statuses);
    let md = render_markdown(&plan, &results);
    // carpet: students mean of seeds (0.8 + 0.7) / 2; knn (0.4 + 0.6) / 2; the paper's .695.
    assert_eq!(
        row_of(&md, "`carpet`"),
        ["`carpet`", "0.750", "0.500", "–", "0.695"]
    );
    // widget: one seed failed (*), knn failed on every seed; not an MVTec AD category.
    assert_eq!(
        row_of(&md, "`widget`"),
        ["`widget`", "0.500*", "failed", "–", "–"]
    );
    // Means over categories: (0.75 + 0.5) / 2; knn over 1 of 2; the paper's over 1 of 2.
    assert_eq!(
        row_of(&md, "**mean**"),
        ["**mean**", "0.625", "0.500 (1/2)", "–", "0.695 (1/2)"]
    );
    assert_eq!(
        row_of(&md, "paper mean (MVTec AD)"),
        ["paper mean (MVTec AD)", "0.857", "0.640", "–", "0.857"]
    );
    assert!(md.contains("| # | job | status |"));
    assert!(md.contains("## Failures") && md.contains("exited with status 1"));
    assert!(md.contains("error: boom"));
    assert!(md.contains("preset `cpu`") && md.contains("`widget` is not MVTec AD"));
    assert!(md.contains("peak memory: 500 MiB"));
    assert!(md.contains("12 (5 done, 3 failed, 4 not run)"), "{md}");
    // Pixel AUROC table: students 0.9 everywhere a seed finished.
    assert!(md.contains("### Also measured: pixel AUROC"));
    let json = serde_json::to_value(&results).unwrap();
    assert_eq!(json["cells"][3]["status"], "failed");
    assert_eq!(
        json["cells"][0]["result"]["figures"]["rows"][0]["au_pro"],
        0.8
    );
}

#[test]
fn an_ablated_score_is_its_own_cell_and_evaluates_with_its_terms() {
    let f = Fixture::new(&["a"]);
    let text = |score: &str| {
        format!(
            "table = \"table3\"\n[mvtec]\ndata = \"{}\"\n[students]\nscales = [17, 33]\n{score}",
            f.root()
        )
    };
    let paper = f.plan(&text("")).unwrap();
    // Naming the paper's terms changes nothing: the cells cached before the choice stay valid.
    let explicit = f.plan(&text("score = \"e+v\"\n")).unwrap();
    assert_eq!(explicit.jobs[0].hash, paper.jobs[0].hash);
    assert_eq!(explicit.jobs[0].config, paper.jobs[0].config);
    let cells_dir = Path::new("runs/x/cells");
    let args = |plan: &Plan| plan.jobs[0].steps(cells_dir, false)[1].args.clone();
    assert!(!args(&paper).contains(&"--score".to_string()));
    for terms in ["e", "v"] {
        let ablated = f.plan(&text(&format!("score = \"{terms}\"\n"))).unwrap();
        assert_ne!(ablated.jobs[0].hash, paper.jobs[0].hash, "{terms}");
        assert_eq!(ablated.jobs[0].config["score"], terms);
        let eval = args(&ablated);
        assert_eq!(eval[0], "evaluate");
        assert!(eval.windows(2).any(|w| w == ["--score", terms]), "{eval:?}");
        // Training is the paper's: the same arguments as the e+v cell's but the folder.
        let train = |plan: &Plan| {
            let mut a = plan.jobs[0].steps(cells_dir, false)[0].args.clone();
            a.retain(|x| !x.starts_with("runs/"));
            a
        };
        assert_eq!(train(&ablated), train(&paper));
        let results = RunResults::new(
            meta(&ablated),
            &ablated,
            vec![done("a", JobKind::Students, students(&[("p=17", 0.5)]))],
        );
        let md = render_markdown(&ablated, &results);
        assert!(
            md.contains(&format!("`[students].score = \"{terms}\"`, an ablation")),
            "{md}"
        );
    }
    let msg = err_of(f.plan(&text("score = \"ev\"\n")));
    assert!(
        msg.contains("[students].score") && msg.contains("e+v, e, v"),
        "{msg}"
    );
    // Further terms on the same outputs: one evaluation `--score e+v,e,v`, its own cell (the
    // report has more rows), the same training, and a table per further term in the report.
    let also = f.plan(&text("also_score = [\"e\", \"v\"]\n")).unwrap();
    assert_ne!(also.jobs[0].hash, paper.jobs[0].hash);
    assert_eq!(
        also.jobs[0].config["also_score"],
        serde_json::json!(["e", "v"])
    );
    let eval = args(&also);
    assert!(
        eval.windows(2).any(|w| w == ["--score", "e+v,e,v"]),
        "{eval:?}"
    );
    let v_first = f
        .plan(&text("score = \"v\"\nalso_score = [\"e+v\"]\n"))
        .unwrap();
    assert!(args(&v_first).windows(2).any(|w| w == ["--score", "v,e+v"]));
    let report = serde_json::json!({
        "rows": [{"name": "p=17", "au_pro": 0.9, "pixel_auroc": 0.95, "image_auroc": 1.0},
                 {"name": "multi-scale (17+33)", "au_pro": 0.91, "pixel_auroc": 0.96}],
        "term_rows": [
            {"score_terms": "e", "rows": [
                {"name": "p=17", "au_pro": 0.7, "pixel_auroc": 0.85},
                {"name": "multi-scale (17+33)", "au_pro": 0.75, "pixel_auroc": 0.86}]},
            {"score_terms": "v", "rows": [
                {"name": "p=17", "au_pro": 0.6, "pixel_auroc": 0.55}]}]
    });
    let figures =
        crate::cell::parse_figures(JobKind::Students, &report, Path::new("r.json")).unwrap();
    assert_eq!(figures.row("multi-scale").unwrap().au_pro, 0.91);
    assert_eq!(figures.row("e: p=17").unwrap().au_pro, 0.7);
    assert_eq!(figures.row("e: multi-scale").unwrap().pixel_auroc, 0.86);
    assert_eq!(figures.row("v: p=17").unwrap().au_pro, 0.6);
    let results = RunResults::new(
        meta(&also),
        &also,
        vec![done("a", JobKind::Students, figures)],
    );
    let md = render_markdown(&also, &results);
    for want in [
        "score terms e alone (the same networks' outputs): AU-PRO",
        "| e: p=17 | e: p=33 | e: multi-scale |",
        "| `a` | 0.700 | – | 0.750 |",
        "| `a` | 0.600 | – | – |",
    ] {
        assert!(md.contains(want), "{want}\n{md}");
    }
    for (bad, want) in [
        ("also_score = [\"x\"]\n", "also_score names \"x\""),
        ("also_score = [\"e+v\"]\n", "also_score repeats \"e+v\""),
    ] {
        let msg = err_of(f.plan(&text(bad)));
        assert!(msg.contains(want), "{msg}");
    }
    // The border settings: each its own cell and `ust train` flag; the defaults named
    // explicitly are the same cell; an unknown value is refused with the choices.
    let defaults = f
        .plan(&text(
            "padding = \"replicate\"\ncrop_coverage = \"uniform\"\n\
             student_sampling = \"per-student\"\nstandardize_inputs = true\n",
        ))
        .unwrap();
    assert_eq!(defaults.jobs[0].hash, paper.jobs[0].hash);
    let md = render_markdown(
        &defaults,
        &RunResults::new(meta(&defaults), &defaults, vec![]),
    );
    assert!(
        md.contains(
            "with `replicate` padding of the image (teacher targets included), `uniform` crop \
             coverage and `per-student` image order and crops"
        ),
        "{md}"
    );
    for (setting, flag, value) in [
        ("padding", "--padding", "zeros"),
        ("padding", "--padding", "reflect"),
        ("crop_coverage", "--crop-coverage", "inside"),
        ("student_sampling", "--student-sampling", "shared"),
    ] {
        let other = f
            .plan(&text(&format!("{setting} = \"{value}\"\n")))
            .unwrap();
        assert_ne!(other.jobs[0].hash, paper.jobs[0].hash, "{setting}");
        let train = other.jobs[0].steps(cells_dir, false)[0].args.clone();
        assert!(train.windows(2).any(|w| w == [flag, value]), "{train:?}");
        let md = render_markdown(&other, &RunResults::new(meta(&other), &other, vec![]));
        assert!(md.contains(&format!("`{value}`")), "{md}");
    }
    // Raw student inputs: their own cell, `--standardize-inputs false`, and no line in the
    // deviations (which names the standardisation only when it is in force).
    let raw = f.plan(&text("standardize_inputs = false\n")).unwrap();
    assert_ne!(raw.jobs[0].hash, paper.jobs[0].hash);
    let train = raw.jobs[0].steps(cells_dir, false)[0].args.clone();
    assert!(
        train
            .windows(2)
            .any(|w| w == ["--standardize-inputs", "false"]),
        "{train:?}"
    );
    let standardised = "each channel standardised by the training images' mean";
    assert!(md.contains(standardised), "{md}");
    let md_raw = render_markdown(&raw, &RunResults::new(meta(&raw), &raw, vec![]));
    assert!(!md_raw.contains(standardised), "{md_raw}");
    let msg = err_of(f.plan(&text("standardize_inputs = \"yes\"\n")));
    assert!(msg.contains("standardize_inputs"), "{msg}");
    let msg = err_of(f.plan(&text("padding = \"mirror\"\n")));
    assert!(
        msg.contains("[students].padding") && msg.contains("zeros, replicate, reflect"),
        "{msg}"
    );
}

#[test]
fn table3_and_table2_reports() {
    let f = Fixture::new(&["a", "b"]);
    let text = format!(
        "table = \"table3\"\n[mvtec]\ndata = \"{}\"\n[students]\nscales = [17, 33, 65]\n",
        f.root()
    );
    let plan = f.plan(&text).unwrap();
    let row = |x: f64| {
        students(&[
            ("p=17", x),
            ("p=33", x + 0.1),
            ("p=65", x + 0.2),
            ("multi-scale", x + 0.3),
        ])
    };
    let results = RunResults::new(
        meta(&plan),
        &plan,
        vec![
            done("a", JobKind::Students, row(0.5)),
            done("b", JobKind::Students, row(0.6)),
        ],
    );
    let md = render_markdown(&plan, &results);
    assert_eq!(
        row_of(&md, "`a`"),
        ["`a`", "0.500", "0.600", "0.700", "0.800"]
    );
    assert_eq!(
        row_of(&md, "**mean**"),
        ["**mean**", "0.550", "0.650", "0.750", "0.850"]
    );
    assert_eq!(
        row_of(&md, "paper mean (MVTec AD)"),
        ["paper mean (MVTec AD)", "0.866", "0.900", "0.857", "0.914"]
    );

    let text = format!(
        "table = \"table2\"\npreset = \"smoke\"\n\
         [[teachers]]\nname = \"kc\"\nfile = \"{}\"\nlambda_k = 1.0\nlambda_m = 0.0\nlambda_c = 1.0\n\
         [[teachers]]\nname = \"m\"\nfile = \"{}\"\nlambda_k = 0.0\nlambda_m = 1.0\nlambda_c = 0.0\n\
         [[datasets]]\nname = \"mnist\"\nroot = \"x\"\nclasses = [3, 4]\n\
         [one_class]\nmethods = [\"students\", \"knn\"]\n",
        f.path("t33.safetensors").display(),
        f.path("t17.safetensors").display(),
    );
    let plan = f.plan(&text).unwrap();
    let oc = |v: f64| {
        done(
            "o",
            JobKind::OneClass,
            Figures::OneClass {
                auroc: v,
                total_s: None,
                peak_rss_mib: None,
            },
        )
    };
    // students@kc 3, 4; students@m 3, 4; knn@kc 3, 4.
    let results = RunResults::new(
        meta(&plan),
        &plan,
        vec![
            oc(0.9),
            oc(0.8),
            oc(0.6),
            failed("o", JobKind::OneClass, "x"),
            oc(0.99),
            CellStatus::Missing,
        ],
    );
    let md = render_markdown(&plan, &results);
    assert_eq!(
        row_of(&md, "students, teacher `kc` (λk=1 λm=0 λc=1)"),
        [
            "students, teacher `kc` (λk=1 λm=0 λc=1)",
            "0.9000",
            "0.8000",
            "0.8500",
            "0.9935"
        ]
    );
    assert_eq!(
        row_of(&md, "students, teacher `m` (λk=0 λm=1 λc=0)"),
        [
            "students, teacher `m` (λk=0 λm=1 λc=0)",
            "0.6000",
            "failed",
            "0.6000 (1/2)",
            "–"
        ]
    );
    assert_eq!(
        row_of(&md, "1-NN (teacher `kc`)"),
        [
            "1-NN (teacher `kc`)",
            "0.9900",
            "–",
            "0.9900 (1/2)",
            "0.9753"
        ]
    );
    assert!(md.contains("### MNIST"));
    assert!(md.contains("preset `smoke`"));
    assert!(!md.contains("CIFAR-10 is read from JPEG"));
}

#[test]
fn run_dir_holds_config_results_and_report() {
    let f = Fixture::new(&["a"]);
    let text = format!(
        "table = \"table3\"\n[mvtec]\ndata = \"{}\"\n[students]\nscales = [17]\n",
        f.root()
    );
    let plan = f.plan(&text).unwrap();
    let results = RunResults::new(meta(&plan), &plan, vec![CellStatus::Missing]);
    let exp_dir = f.path("runs/x");
    let d1 = crate::report::write_run_dir(&exp_dir, "20260101-000000", &plan, &results).unwrap();
    let d2 = crate::report::write_run_dir(&exp_dir, "20260101-000000", &plan, &results).unwrap();
    assert_eq!(d1, exp_dir.join("20260101-000000"));
    assert_eq!(d2, exp_dir.join("20260101-000000-2"));
    let config = std::fs::read_to_string(d1.join("config.toml")).unwrap();
    // The resolved copy reads back as the same experiment.
    let p = f.write("again.toml", &config);
    let again = Experiment::load(&p, &Overrides::default()).unwrap();
    assert_eq!(again.preset, "cpu");
    assert_eq!(again.seeds, [0]);
    assert_eq!(again.mvtec.unwrap().data, f.root());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d1.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["cells"][0]["status"], "missing");
    assert!(
        std::fs::read_to_string(d1.join("report.md"))
            .unwrap()
            .contains("| `a` | – |")
    );
}
