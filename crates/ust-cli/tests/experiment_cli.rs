//! End-to-end tests of `ust experiment` on tiny generated data with the smoke preset: a
//! Table-1-like and a Table-3-like experiment on a generated MVTec-layout root (random
//! teachers saved as files), a failing job, and a Table-2-like experiment on generated MNIST
//! idx files with a teacher trained by the experiment. They check the report and results
//! against the jobs' own report.json files, that a second invocation skips finished cells, and
//! the `--list-jobs` / `--job K` / `--merge` round trip.

use std::path::{Path, PathBuf};
use std::process::Output;

#[path = "../../../tests/support/mod.rs"]
mod support;
use support::{json, random_teacher, run_ok, texture, ust_in as ust};

/// `root/<name>`: the shared generated category (40×40 test images).
fn category(root: &Path, name: &str) {
    support::textured_category(root, name, 40, 40);
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The run folders of `runs/<experiment>/`, oldest first (cells/ excluded).
fn run_dirs(exp_dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(exp_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && p.file_name().unwrap() != "cells")
        .collect();
    dirs.sort_by_key(|p| {
        (
            std::fs::metadata(p.join("results.json"))
                .and_then(|m| m.modified())
                .ok(),
            p.clone(),
        )
    });
    dirs
}

fn last_run(exp_dir: &Path) -> PathBuf {
    run_dirs(exp_dir).pop().expect("a run folder")
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

/// `(index, name, kind, state)` of each `--list-jobs` line.
fn list_jobs(cwd: &Path, args: &[&str]) -> Vec<(usize, String, String, String)> {
    let out = run_ok(ust(cwd).arg("experiment").args(args).arg("--list-jobs"));
    stdout(&out)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 4, "{l}");
            (
                f[0].parse().unwrap(),
                f[1].to_string(),
                f[2].to_string(),
                f[3].to_string(),
            )
        })
        .collect()
}

/// Table 1 then Table 3 shape on one generated category, sharing cells (same experiment name,
/// same configurations): students trained once at p = 17 and 33 and a dense baseline.
/// `--list-jobs`, `--job K`, a full run that runs only the rest, a rerun that skips all,
/// `--merge`; the report's numbers are the jobs' own. Then the ablation layout from the same
/// cells (nothing runs), and a job that fails (an unreadable teacher) without stopping the
/// others.
#[test]
fn mvtec_tables_list_job_run_rerun_merge_and_failure() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    category(&cwd.join("mvtec"), "widget");
    std::fs::write(cwd.join("mvtec/README.md"), "not a category").unwrap();
    random_teacher(&cwd.join("t17.safetensors"), 17);
    random_teacher(&cwd.join("t33.safetensors"), 33);
    let students =
        "[students]\nscales = [17, 33]\nteachers = [\"t17.safetensors\", \"t33.safetensors\"]\n";
    std::fs::write(
        cwd.join("t1.toml"),
        format!(
            "table = \"table1\"\nname = \"mv\"\npreset = \"cpu\"\n[mvtec]\ndata = \"elsewhere\"\n\
             {students}[dense_baselines]\nmethods = [\"knn\"]\np = 17\nteacher = \"t17.safetensors\"\n"
        ),
    )
    .unwrap();
    let args = ["t1.toml", "--data", "mvtec", "--preset", "smoke"];
    let exp_dir = cwd.join("runs/mv");

    let jobs = list_jobs(cwd, &args);
    let names: Vec<&str> = jobs.iter().map(|j| j.1.as_str()).collect();
    assert_eq!(names, ["students/widget/seed0", "dense/knn/widget/seed0"]);
    assert!(jobs.iter().all(|j| j.3 == "pending"));
    assert_eq!((jobs[0].0, jobs[1].0), (0, 1));
    assert_eq!(jobs[1].2, "dense_baseline");

    // The cluster way: one job alone; it writes its cell and no report.
    run_ok(ust(cwd).arg("experiment").args(args).args(["--job", "1"]));
    let jobs = list_jobs(cwd, &args);
    assert_eq!(
        (jobs[0].3.as_str(), jobs[1].3.as_str()),
        ("pending", "done")
    );
    assert!(run_dirs(&exp_dir).is_empty());
    let bad = ust(cwd)
        .arg("experiment")
        .args(args)
        .args(["--job", "2"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("there are 2 jobs"));

    // The full run runs the students and skips the finished baseline.
    let out = run_ok(ust(cwd).arg("experiment").args(args));
    assert!(stdout(&out).contains("2 jobs: 2 done, 0 failed, 0 not run"));
    let run1 = last_run(&exp_dir);
    let results = json(&run1.join("results.json"));
    let cells = results["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2);
    assert_eq!(cells[0]["status"], "done");
    assert_eq!(cells[0]["cached"], false);
    assert_eq!(cells[1]["cached"], true);
    assert_eq!(results["meta"]["preset"], "smoke");
    let cells_dir = exp_dir.join("cells");
    let students_cell = cells_dir.join(cells[0]["cell"].as_str().unwrap());
    let dense_cell = cells_dir.join(cells[1]["cell"].as_str().unwrap());
    assert!(students_cell.join("model/p33.safetensors").is_file());
    assert!(students_cell.join("job.log").is_file());
    // The figures are the jobs' own reports.
    let evaluation = json(&students_cell.join("report.json"));
    let rows = evaluation["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["name"], "p=17");
    assert_eq!(rows[2]["name"], "multi-scale (17+33)");
    let au_pro: Vec<f64> = rows.iter().map(|r| r["au_pro"].as_f64().unwrap()).collect();
    assert_eq!(
        cells[0]["result"]["figures"]["rows"][1]["au_pro"].as_f64(),
        Some(au_pro[1])
    );
    let knn = json(&dense_cell.join("report.json"))["au_pro"]
        .as_f64()
        .unwrap();
    assert_eq!(cells[1]["result"]["figures"]["au_pro"].as_f64(), Some(knn));
    // Steps recorded: exactly the commands a user types.
    let steps = cells[0]["result"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0]["argv"][0], "train");
    assert_eq!(steps[1]["argv"][0], "evaluate");
    assert_eq!(steps[0]["exit_code"], 0);
    if cfg!(target_os = "linux") {
        // Sampled from /proc while the command ran.
        assert!(
            steps[0]["peak_rss_mib"].as_f64().unwrap() > 0.0,
            "{steps:?}"
        );
    }

    let md = std::fs::read_to_string(run1.join("report.md")).unwrap();
    let fmt = |v: f64| format!("{v:.3}");
    let widget: Vec<String> = ["`widget`".to_string()]
        .into_iter()
        .chain(au_pro.iter().map(|&v| fmt(v)))
        .chain([fmt(knn)])
        .collect();
    assert_eq!(row_of(&md, "`widget`"), widget);
    assert_eq!(row_of(&md, "**mean**")[1..], widget[1..]);
    // The paper's 1-NN mean (.640); no p=65 column here, so no students number.
    assert_eq!(
        row_of(&md, "paper mean (MVTec AD)"),
        ["paper mean (MVTec AD)", "–", "–", "–", "0.640"]
    );
    assert!(
        md.contains("| category | students p=17 | students p=33 | students multi-scale | 1-NN |")
    );
    assert!(md.contains("preset: **smoke**") && md.contains("`widget` is not MVTec AD"));
    assert!(md.contains("done (cached)"));
    let config = std::fs::read_to_string(run1.join("config.toml")).unwrap();
    assert!(config.contains("preset = \"smoke\"") && config.contains("data = \"mvtec\""));

    // A second invocation runs nothing: every cell is cached, the results are unchanged.
    let result_before = std::fs::read_to_string(students_cell.join("result.json")).unwrap();
    let out = run_ok(ust(cwd).arg("experiment").args(args));
    assert!(stdout(&out).contains("2 done"));
    let run2 = last_run(&exp_dir);
    assert_ne!(run1, run2);
    let results2 = json(&run2.join("results.json"));
    assert!(
        results2["cells"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["cached"] == true)
    );
    assert_eq!(
        std::fs::read_to_string(students_cell.join("result.json")).unwrap(),
        result_before
    );

    // --merge writes the same table from the cells, running nothing.
    run_ok(ust(cwd).arg("experiment").args(args).arg("--merge"));
    let run3 = last_run(&exp_dir);
    assert_eq!(json(&run3.join("results.json"))["meta"]["mode"], "merge");
    let md3 = std::fs::read_to_string(run3.join("report.md")).unwrap();
    assert_eq!(row_of(&md3, "`widget`"), widget);

    // Another preset is another configuration: new cells, pending.
    let other = list_jobs(cwd, &["t1.toml", "--data", "mvtec", "--preset", "cpu"]);
    assert!(other.iter().all(|j| j.3 == "pending"));

    // The ablation layout over the same students cell: nothing to train.
    std::fs::write(
        cwd.join("abl.toml"),
        format!("table = \"table3\"\nname = \"mv\"\npreset = \"smoke\"\n[mvtec]\ndata = \"mvtec\"\n{students}"),
    )
    .unwrap();
    run_ok(ust(cwd).args(["experiment", "abl.toml"]));
    let run4 = last_run(&exp_dir);
    assert_eq!(json(&run4.join("results.json"))["cells"][0]["cached"], true);
    let md4 = std::fs::read_to_string(run4.join("report.md")).unwrap();
    assert!(
        md4.contains("| category | p=17 | p=33 | multi-scale |"),
        "{md4}"
    );
    assert_eq!(row_of(&md4, "`widget`"), widget[..4]);
    assert_eq!(
        row_of(&md4, "paper mean (MVTec AD)"),
        ["paper mean (MVTec AD)", "0.866", "0.900", "0.914"]
    );

    // A second category whose p = 33 teacher file is unreadable: its job fails, the report
    // says why, the exit status is non-zero; the widget cell is untouched.
    category(&cwd.join("mvtec"), "gadget");
    std::fs::write(cwd.join("broken.safetensors"), "not a tensor file").unwrap();
    std::fs::write(
        cwd.join("abl3.toml"),
        "table = \"table3\"\nname = \"mv\"\npreset = \"smoke\"\n[mvtec]\ndata = \"mvtec\"\n\
         [students]\nscales = [17, 33]\nteachers = [\"t17.safetensors\", \"broken.safetensors\"]\n",
    )
    .unwrap();
    let out = ust(cwd)
        .args(["experiment", "abl3.toml", "--only", "gadget"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("1 jobs: 0 done, 1 failed"),
        "{}",
        stdout(&out)
    );
    let run5 = last_run(&exp_dir);
    let results = json(&run5.join("results.json"));
    let failed = &results["cells"][0];
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["failure"]["reason"]
            .as_str()
            .unwrap()
            .contains("`ust train` exited with status 1"),
        "{failed}"
    );
    assert!(
        failed["failure"]["stderr_tail"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("broken.safetensors"))
    );
    let md5 = std::fs::read_to_string(run5.join("report.md")).unwrap();
    assert_eq!(row_of(&md5, "`gadget`")[1], "failed");
    assert!(md5.contains("## Failures"));
    let cell = cells_dir.join(failed["cell"].as_str().unwrap());
    assert!(cell.join("failed.json").is_file() && !cell.join("result.json").exists());
    // --merge over both categories of abl.toml: widget done, gadget never ran with it.
    run_ok(ust(cwd).args(["experiment", "abl.toml", "--merge"]));
    let md6 = std::fs::read_to_string(last_run(&exp_dir).join("report.md")).unwrap();
    assert_eq!(row_of(&md6, "`gadget`")[1], "–");
    assert_eq!(row_of(&md6, "`widget`"), widget[..4]);
    assert_eq!(
        row_of(&md6, "**mean**")[1],
        format!("{} (1/2)", fmt(au_pro[0]))
    );

    // Dense baselines on the same descriptors run as one command (one pass of the teacher);
    // each cell gets its method's own figures (the knn cell above ran alone) and an equal
    // share of the time.
    std::fs::write(
        cwd.join("t1b.toml"),
        format!(
            "table = \"table1\"\nname = \"mv2\"\npreset = \"smoke\"\n[mvtec]\ndata = \"mvtec\"\n\
             {students}[dense_baselines]\nmethods = [\"knn\", \"pca\"]\np = 17\n\
             teacher = \"t17.safetensors\"\n"
        ),
    )
    .unwrap();
    run_ok(ust(cwd).args(["experiment", "t1b.toml"]).args([
        "--only",
        "dense/knn/widget",
        "--only",
        "dense/pca/widget",
    ]));
    let results = json(&last_run(&cwd.join("runs/mv2")).join("results.json"));
    let cells = results["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2);
    let (knn_cell, pca_cell) = (&cells[0]["result"], &cells[1]["result"]);
    assert_eq!(knn_cell["name"], "dense/knn/widget/seed0");
    assert_eq!(
        knn_cell["ran_with"],
        serde_json::json!(["dense/pca/widget/seed0"])
    );
    assert_eq!(
        pca_cell["ran_with"],
        serde_json::json!(["dense/knn/widget/seed0"])
    );
    assert_eq!(knn_cell["figures"]["au_pro"].as_f64(), Some(knn));
    assert_eq!(knn_cell["wall_s"], pca_cell["wall_s"]);
    let argv: Vec<&str> = knn_cell["steps"][0]["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(&argv[..2], ["baseline", "dense"]);
    assert_eq!(argv.iter().filter(|a| **a == "--method").count(), 2);
}

/// MNIST in idx format: `per_class` images of each digit per split, 28×28, a digit-specific
/// pattern plus noise.
fn write_mnist(dir: &Path, per_class: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut state = 12345u32;
    for (prefix, n) in [("train", per_class), ("t10k", per_class)] {
        let count = 10 * n;
        let mut images = Vec::new();
        images.extend(0x0000_0803u32.to_be_bytes());
        images.extend((count as u32).to_be_bytes());
        images.extend(28u32.to_be_bytes());
        images.extend(28u32.to_be_bytes());
        let mut labels = Vec::new();
        labels.extend(0x0000_0801u32.to_be_bytes());
        labels.extend((count as u32).to_be_bytes());
        for i in 0..count {
            let digit = (i % 10) as u8;
            labels.push(digit);
            for y in 0..28u32 {
                for x in 0..28u32 {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    let noise = (state >> 27) as u8;
                    let on = (x + y * u32::from(digit + 1)) % 7 < 3;
                    images.push(if on { 200 + noise } else { noise });
                }
            }
        }
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
    }
}

/// Table 2 shape on generated MNIST: a shipped-like teacher file and a teacher trained by the
/// experiment (metric learning, no backbone); the two-stage cluster order (teacher jobs, then
/// one-class jobs) and the error when a one-class job runs before its teacher.
#[test]
fn table2_like_teacher_stage_then_one_class() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    write_mnist(&cwd.join("mnist"), 6);
    random_teacher(&cwd.join("t33.safetensors"), 33);
    let images = cwd.join("natural");
    std::fs::create_dir_all(&images).unwrap();
    for i in 0..4 {
        texture(i, 48, 48, None)
            .save(images.join(format!("{i}.png")))
            .unwrap();
    }
    std::fs::write(
        cwd.join("metric.toml"),
        "[teacher]\npatch_size = 33\n[losses]\nlambda_k = 0.0\nlambda_m = 1.0\nlambda_c = 0.0\n\
         margin = 1.0\ncompactness = \"squared\"\n",
    )
    .unwrap();
    std::fs::write(
        cwd.join("t2.toml"),
        "table = \"table2\"\nname = \"t2\"\npreset = \"smoke\"\n\
         [[teachers]]\nname = \"kc\"\nfile = \"t33.safetensors\"\n\
         lambda_k = 1.0\nlambda_m = 0.0\nlambda_c = 1.0\n\
         [[teachers]]\nname = \"m\"\nconfig = \"metric.toml\"\ndata = \"natural\"\n\
         [[datasets]]\nname = \"mnist\"\nroot = \"mnist\"\nclasses = [1, 4]\n\
         [one_class]\nmethods = [\"students\", \"knn\"]\n",
    )
    .unwrap();
    let jobs = list_jobs(cwd, &["t2.toml"]);
    let names: Vec<&str> = jobs.iter().map(|j| j.1.as_str()).collect();
    assert_eq!(
        names,
        [
            "teacher/m",
            "oneclass/mnist/class1/students@kc/seed0",
            "oneclass/mnist/class4/students@kc/seed0",
            "oneclass/mnist/class1/students@m/seed0",
            "oneclass/mnist/class4/students@m/seed0",
            "oneclass/mnist/class1/knn@kc/seed0",
            "oneclass/mnist/class4/knn@kc/seed0",
        ]
    );
    // A one-class job before its teacher: a clear error naming the job to run first.
    let early = ust(cwd)
        .args([
            "experiment",
            "t2.toml",
            "--only",
            "students@m",
            "--job",
            "0",
        ])
        .output()
        .unwrap();
    assert!(!early.status.success());
    let err = String::from_utf8_lossy(&early.stderr);
    assert!(
        err.contains("teacher/m") && err.contains("--only teacher/m --job 0"),
        "{err}"
    );
    // Stage 1: the teacher jobs.
    let teachers = list_jobs(cwd, &["t2.toml", "--only", "teacher/"]);
    assert_eq!(teachers.len(), 1);
    run_ok(ust(cwd).args(["experiment", "t2.toml", "--only", "teacher/", "--job", "0"]));
    // Stage 2: every one-class job, one at a time.
    let stage2 = list_jobs(cwd, &["t2.toml", "--only", "oneclass/"]);
    assert_eq!(stage2.len(), 6);
    for (k, ..) in &stage2 {
        run_ok(ust(cwd).args([
            "experiment",
            "t2.toml",
            "--only",
            "oneclass/",
            "--job",
            &k.to_string(),
        ]));
    }
    assert!(list_jobs(cwd, &["t2.toml"]).iter().all(|j| j.3 == "done"));
    run_ok(ust(cwd).args(["experiment", "t2.toml", "--merge"]));
    let run = last_run(&cwd.join("runs/t2"));
    let results = json(&run.join("results.json"));
    let cells = results["cells"].as_array().unwrap();
    assert!(cells.iter().all(|c| c["status"] == "done"));
    // The trained teacher was exported and read by its one-class jobs.
    let teacher_cell = cwd
        .join("runs/t2/cells")
        .join(cells[0]["cell"].as_str().unwrap());
    assert!(teacher_cell.join("teacher.safetensors").is_file());
    assert_eq!(cells[0]["result"]["figures"]["iterations"], 4);
    let oc_cell = cwd
        .join("runs/t2/cells")
        .join(cells[3]["cell"].as_str().unwrap());
    let oc = json(&oc_cell.join("report.json"));
    assert!(
        oc["teacher"]
            .as_str()
            .unwrap()
            .ends_with("teacher.safetensors")
    );
    // Per class AUROC and the mean over the classes, the paper's mean beside it.
    let auroc = |i: usize| cells[i]["result"]["figures"]["auroc"].as_f64().unwrap();
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    let label = "students, teacher `kc` (λk=1 λm=0 λc=1)";
    assert_eq!(
        row_of(&md, label),
        [
            label.to_string(),
            format!("{:.4}", auroc(1)),
            format!("{:.4}", auroc(2)),
            format!("{:.4}", (auroc(1) + auroc(2)) / 2.0),
            "0.9935".into()
        ]
    );
    assert_eq!(row_of(&md, "1-NN (teacher `kc`)")[4], "0.9753");
    assert_eq!(
        row_of(&md, "students, teacher `m` (λk=0 λm=1 λc=0)")[4],
        "–"
    );

    // The whole table three jobs at a time, elsewhere: the jobs of teacher `m` wait for its
    // job (started before it ends, they would fail naming it), and every figure is the one
    // the jobs gave one at a time. Each job keeps the default thread count (float sums are
    // split by thread count, so another count would differ in the last bits).
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let out = run_ok(ust(cwd).env("RAYON_NUM_THREADS", cores.to_string()).args([
        "experiment",
        "t2.toml",
        "--parallel",
        "3",
        "--runs",
        "par",
    ]));
    assert!(
        stdout(&out).contains("7 jobs: 7 done, 0 failed"),
        "{}",
        stdout(&out)
    );
    let par = json(&last_run(&cwd.join("par/t2")).join("results.json"));
    let par_cells = par["cells"].as_array().unwrap();
    assert_eq!(par_cells.len(), cells.len());
    for (a, b) in cells.iter().zip(par_cells) {
        assert_eq!(a["name"], b["name"]);
        for key in ["auroc", "iterations"] {
            assert_eq!(
                a["result"]["figures"][key], b["result"]["figures"][key],
                "{} {key}",
                a["name"]
            );
        }
    }
    assert!(par_cells[1]["result"]["figures"]["auroc"].is_number());
}

/// The MVTec experiment files shipped in `experiments/` are valid and expand on the bundled
/// category (Table 2's needs the shared MNIST, and its smoke version runs above).
#[test]
fn the_shipped_mvtec_experiments_expand_on_the_bundled_category() {
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let runs = tempfile::tempdir().unwrap();
    let runs_arg = runs.path().display().to_string();
    let category = std::fs::read_dir(checkout.join("data"))
        .unwrap()
        .flatten()
        .find(|e| e.path().join("train/good").is_dir())
        .expect("a bundled category under data/")
        .file_name()
        .to_string_lossy()
        .into_owned();
    for (file, jobs) in [
        ("experiments/table1.toml", 7),
        ("experiments/ablation_p.toml", 1),
        ("experiments/ablation_score.toml", 1),
    ] {
        let listed = list_jobs(&checkout, &[file, "--runs", &runs_arg]);
        assert_eq!(listed.len(), jobs, "{file}: {listed:?}");
        assert!(
            listed
                .iter()
                .all(|(_, name, _, state)| name.contains(&category) && state == "pending"),
            "{file}: {listed:?}"
        );
    }
    assert!(
        std::fs::read_dir(runs.path()).unwrap().next().is_none(),
        "--list-jobs wrote under --runs"
    );
}

/// CIFAR-10 as image folders (`train/<class>/N.png`, `test/<class>/N.png`), `per_class` 32×32
/// images of each class per split, a class-specific stripe pattern plus noise.
fn write_cifar_folders(dir: &Path, per_class: usize) {
    let mut state = 777u32;
    for split in ["train", "test"] {
        for (label, class) in ust_data::cifar::CIFAR10_CLASSES.iter().enumerate() {
            let folder = dir.join(split).join(class);
            std::fs::create_dir_all(&folder).unwrap();
            for i in 0..per_class {
                let img = image::RgbImage::from_fn(32, 32, |x, y| {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    let noise = (state >> 27) as u8;
                    let on = (x + y * (label as u32 + 1)) % 5 < 2;
                    let v = if on { 180 + noise } else { 20 + noise };
                    image::Rgb([v, v / 2, 255 - v])
                });
                img.save(folder.join(format!("{i}.png"))).unwrap();
            }
        }
    }
}

/// Every table a researcher runs first (`just table1|table2|ablation-p|ablation-score
/// preset=smoke`), from the shipped experiment files, on small generated data: each finishes
/// with every job done. Table 2's `distill` teacher distils the real EfficientNet-Lite0, so its
/// part needs the shared weights and is skipped (with a note) without them.
#[test]
fn every_shipped_table_runs_its_smoke_preset_on_generated_data() {
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path();
    category(&tmp.join("mvtec"), "widget");
    // Table 1: students and six baselines; Tables 3 and its e-only ablation: one students job.
    for (file, jobs) in [
        ("experiments/table1.toml", 7),
        ("experiments/ablation_p.toml", 1),
        ("experiments/ablation_score.toml", 1),
    ] {
        let out = run_ok(
            ust(&checkout)
                .args(["experiment", file, "--preset", "smoke", "--data"])
                .arg(tmp.join("mvtec"))
                .arg("--runs")
                .arg(tmp.join("runs")),
        );
        let summary = format!("{jobs} jobs: {jobs} done, 0 failed, 0 not run");
        assert!(stdout(&out).contains(&summary), "{file}: {}", stdout(&out));
    }

    let Some(shared) = ust_data::shared::shared_dir_for_tests(env!("CARGO_MANIFEST_DIR")) else {
        return;
    };
    let weights = shared.join("weights/efficientnet_lite0.safetensors");
    if !weights.is_file() {
        eprintln!(
            "skipping Table 2's smoke run: {} is missing",
            weights.display()
        );
        return;
    }
    // Table 2 reads its files relative to the working folder and its data from $UST_SHARED:
    // a working folder with the shipped files, generated data, the real backbone.
    let cwd = tmp.join("t2");
    let fake_shared = tmp.join("shared");
    for rel in [
        "experiments/table2.toml",
        "experiments/teacher/p33_distill.toml",
        "models/teacher-p33.safetensors",
        "models/teacher-p33-patch.safetensors",
        "models/teacher-p33-metric.safetensors",
    ] {
        std::fs::create_dir_all(cwd.join(rel).parent().unwrap()).unwrap();
        std::fs::copy(checkout.join(rel), cwd.join(rel)).unwrap();
    }
    // 12 a class: K-Means needs at least 10 training vectors.
    write_cifar_folders(&cwd.join("data/cifar-10"), 12);
    write_mnist(&fake_shared.join("data/mnist"), 12);
    let natural = fake_shared.join("data/natural-images");
    std::fs::create_dir_all(&natural).unwrap();
    for i in 0..6 {
        texture(i, 64, 64, None)
            .save(natural.join(format!("{i}.png")))
            .unwrap();
    }
    std::fs::create_dir_all(fake_shared.join("weights")).unwrap();
    std::fs::copy(
        &weights,
        fake_shared.join("weights/efficientnet_lite0.safetensors"),
    )
    .unwrap();
    let out = run_ok(ust(&cwd).env("UST_SHARED", &fake_shared).args([
        "experiment",
        "experiments/table2.toml",
        "--preset",
        "smoke",
    ]));
    // 1 teacher job + 2 datasets × the smoke preset's 2 classes × (4 students + 6 baselines).
    assert!(
        stdout(&out).contains("41 jobs: 41 done, 0 failed, 0 not run"),
        "{}",
        stdout(&out)
    );
}
