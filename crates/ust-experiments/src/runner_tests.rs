//! The runner with a fake executor: which commands run, in which order, grouped how, and
//! what each cell records — no process is started.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde_json::json;

use crate::cell::{CellStatus, FAILED_FILE, RESULT_FILE, is_done};
use crate::runner::{CommandOutcome, Executor, RunOptions, missing_teacher, run_selected};
use crate::tests::Fixture;

/// Plays the `ust` commands: writes the report each one would write, fails the commands whose
/// arguments hold `fail` (two consecutive arguments), and records every call in order.
struct Fake {
    fail: Option<[&'static str; 2]>,
    calls: Mutex<Vec<Vec<String>>>,
}

impl Fake {
    fn new(fail: Option<[&'static str; 2]>) -> Self {
        Self {
            fail,
            calls: Mutex::new(Vec::new()),
        }
    }

    fn calls(&self) -> Vec<Vec<String>> {
        self.calls.lock().unwrap().clone()
    }
}

/// The values after each `flag` in `args`.
fn values<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
    args.windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| w[1].as_str())
        .collect()
}

fn write_report(dir: &str, report: serde_json::Value) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(Path::new(dir).join("report.json"), report.to_string()).unwrap();
}

impl Executor for Fake {
    fn run(
        &self,
        args: &[String],
        _name: &str,
        _threads: Option<usize>,
        log: &mut dyn Write,
    ) -> Result<CommandOutcome, String> {
        self.calls.lock().unwrap().push(args.to_vec());
        writeln!(log, "fake: {}", args.join(" ")).unwrap();
        if let Some(f) = self.fail
            && args.windows(2).any(|w| w == f)
        {
            return Ok(CommandOutcome {
                code: Some(1),
                stderr_tail: vec!["working".into(), "error: boom".into()],
                ..CommandOutcome::default()
            });
        }
        let mut stdout = Vec::new();
        match (args[0].as_str(), args.get(1).map(String::as_str)) {
            ("evaluate", _) => write_report(
                values(args, "--out")[0],
                json!({"rows": [{"name": "p=65", "au_pro": 0.5, "pixel_auroc": 0.9,
                                 "image_auroc": 1.0}]}),
            ),
            ("baseline", _) => {
                for out in values(args, "--out") {
                    write_report(out, json!({"au_pro": 0.4, "pixel_auroc": 0.8}));
                }
            }
            ("oneclass", _) => write_report(values(args, "--out")[0], json!({"auroc": 0.7})),
            ("teacher", Some("info")) => {
                stdout = json!({"summary": {"iterations": 3, "duration_s": 1.5}})
                    .to_string()
                    .into_bytes();
            }
            _ => {}
        }
        Ok(CommandOutcome {
            code: Some(0),
            stdout,
            ..CommandOutcome::default()
        })
    }
}

fn options(parallel: usize) -> RunOptions {
    RunOptions {
        parallel,
        force: false,
        file: "exp.toml".into(),
        estimates: Vec::new(),
    }
}

#[test]
fn pending_jobs_run_once_baselines_share_a_command_and_failures_are_recorded() {
    let f = Fixture::new(&["a", "b"]);
    let text = format!(
        "table = \"table1\"\npreset = \"smoke\"\n[mvtec]\ndata = \"{}\"\n[students]\n\
         scales = [65]\n[dense_baselines]\nmethods = [\"knn\", \"ae\"]\n",
        f.root()
    );
    let plan = f.plan(&text).unwrap();
    let cells = f.path("runs/t1/cells");
    let fake = Fake::new(Some(["--category", "b"]));
    // Fails every command about category b: its students and its baselines.
    let statuses = run_selected(&plan, &plan.jobs, &cells, &options(2), &fake).unwrap();
    let names: Vec<&str> = plan.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "students/a/seed0",
            "students/b/seed0",
            "dense/knn/a/seed0",
            "dense/knn/b/seed0",
            "dense/ae/a/seed0",
            "dense/ae/b/seed0"
        ]
    );
    let calls = fake.calls();
    // a: train + evaluate; b: train (fails); one `baseline dense` per category for both methods.
    assert_eq!(calls.len(), 5, "{calls:?}");
    let baselines: Vec<&Vec<String>> = calls.iter().filter(|c| c[0] == "baseline").collect();
    assert_eq!(baselines.len(), 2);
    for b in &baselines {
        assert_eq!(values(b, "--method"), ["knn", "ae"]);
    }
    for (k, status) in statuses.iter().enumerate() {
        let cell = cells.join(&plan.jobs[k].cell);
        let in_b = plan.jobs[k].name.contains("/b/");
        match status {
            CellStatus::Done { result, cached } => {
                assert!(!in_b && !cached, "{}", plan.jobs[k].name);
                assert!(cell.join(RESULT_FILE).is_file());
                assert!(
                    std::fs::read_to_string(cell.join("job.log"))
                        .unwrap()
                        .contains("fake: ")
                );
                if plan.jobs[k].name == "dense/knn/a/seed0" {
                    assert_eq!(result.ran_with, ["dense/ae/a/seed0"]);
                    assert_eq!(
                        result.figures.summary(),
                        "AU-PRO 0.4000, pixel AUROC 0.8000, image AUROC –"
                    );
                }
                if plan.jobs[k].name == "students/a/seed0" {
                    assert_eq!(result.figures.row("p=65").unwrap().au_pro, 0.5);
                    assert_eq!(result.steps.len(), 2);
                }
            }
            CellStatus::Failed { failure } => {
                assert!(in_b, "{}", plan.jobs[k].name);
                assert!(cell.join(FAILED_FILE).is_file());
                assert!(
                    failure
                        .reason
                        .ends_with("exited with status 1: error: boom"),
                    "{}",
                    failure.reason
                );
                assert_eq!(failure.stderr_tail, ["working", "error: boom"]);
            }
            CellStatus::Missing => panic!("{} not run", plan.jobs[k].name),
        }
    }
    // Run again without the failure: only b's cells run; a's are read back, not rerun.
    let fixed = Fake::new(None);
    let statuses = run_selected(&plan, &plan.jobs, &cells, &options(1), &fixed).unwrap();
    let again = fixed.calls();
    assert_eq!(again.len(), 3, "{again:?}");
    assert!(again.iter().all(|c| values(c, "--category") == ["b"]));
    assert!(
        statuses
            .iter()
            .all(|s| matches!(s, CellStatus::Done { .. }))
    );
    assert!(plan.jobs.iter().all(|j| is_done(&cells, j)));
    assert!(matches!(statuses[0], CellStatus::Done { cached: true, .. }));
}

fn table2(f: &Fixture) -> String {
    let cfg = f.write(
        "distill.toml",
        "[teacher]\npatch_size = 33\n[losses]\nlambda_k = 1.0\nlambda_m = 0.0\nlambda_c = 0.0\n",
    );
    format!(
        "table = \"table2\"\n\
         [[teachers]]\nname = \"distill\"\nconfig = \"{}\"\niterations = 3\n\
         [[datasets]]\nname = \"mnist\"\nroot = \"{}\"\nclasses = [0, 7]\n\
         [one_class]\nmethods = [\"students\"]\n",
        cfg.display(),
        f.path("mnist").display()
    )
}

#[test]
fn jobs_wait_for_their_teacher_and_fail_when_it_failed() {
    let f = Fixture::new(&[]);
    let plan = f.plan(&table2(&f)).unwrap();
    assert_eq!(plan.jobs[0].name, "teacher/distill");
    let cells = f.path("runs/t2/cells");
    let fake = Fake::new(None);
    let statuses = run_selected(&plan, &plan.jobs, &cells, &options(3), &fake).unwrap();
    assert!(
        statuses
            .iter()
            .all(|s| matches!(s, CellStatus::Done { .. }))
    );
    let calls = fake.calls();
    let kinds: Vec<String> = calls.iter().map(|c| c[..2].join(" ")).collect();
    // The teacher's three commands first, although three workers were free.
    assert_eq!(
        kinds[..3],
        ["teacher train", "teacher export", "teacher info"]
    );
    assert_eq!(
        kinds[3..]
            .iter()
            .filter(|k| k.starts_with("oneclass"))
            .count(),
        2
    );
    let CellStatus::Done { result, .. } = &statuses[0] else {
        unreachable!()
    };
    assert_eq!(result.figures.summary(), "3 iterations");

    // A failed teacher: its students fail too, naming it, and their commands never run.
    let f = Fixture::new(&[]);
    let plan = f.plan(&table2(&f)).unwrap();
    let cells = f.path("runs/t2/cells");
    let fake = Fake::new(Some(["teacher", "train"]));
    let statuses = run_selected(&plan, &plan.jobs, &cells, &options(2), &fake).unwrap();
    assert_eq!(fake.calls().len(), 1);
    for s in &statuses[1..] {
        let CellStatus::Failed { failure } = s else {
            panic!("{s:?}")
        };
        assert!(
            failure
                .reason
                .contains("needs the teacher of job 0 (teacher/distill)"),
            "{}",
            failure.reason
        );
    }
}

#[test]
fn a_job_waiting_for_a_teacher_names_the_job_to_run_first() {
    let f = Fixture::new(&[]);
    let plan = f.plan(&table2(&f)).unwrap();
    let cells = f.path("cells");
    let file = Path::new("e.toml");
    let reason = missing_teacher(&plan, &plan.jobs[1], &cells, file).unwrap();
    assert!(
        reason.contains("teacher/distill") && reason.contains("--only teacher/distill --job 0"),
        "{reason}"
    );
    assert!(missing_teacher(&plan, &plan.jobs[0], &cells, file).is_none());
}

/// Table 2 with two teachers, `a` and `b`, each with one-class students on classes 0 and 7.
fn table2_two_teachers(f: &Fixture) -> String {
    let cfg = f.write(
        "distill.toml",
        "[teacher]\npatch_size = 33\n[losses]\nlambda_k = 1.0\nlambda_m = 0.0\nlambda_c = 0.0\n",
    );
    let teacher = |name: &str| {
        format!(
            "[[teachers]]\nname = \"{name}\"\nconfig = \"{}\"\niterations = 3\n",
            cfg.display()
        )
    };
    format!(
        "table = \"table2\"\n{}{}\
         [[datasets]]\nname = \"mnist\"\nroot = \"{}\"\nclasses = [0, 7]\n\
         [one_class]\nmethods = [\"students\"]\n",
        teacher("a"),
        teacher("b"),
        f.path("mnist").display()
    )
}

/// The fake's commands with the moments they started and ended (one clock for all), so that
/// a test can tell what ran before what although several workers run at once.
struct Timed {
    inner: Fake,
    clock: std::sync::atomic::AtomicUsize,
    /// (arguments, start tick, end tick) of every command.
    spans: Mutex<Vec<(Vec<String>, usize, usize)>>,
}

impl Timed {
    fn new(fail: Option<[&'static str; 2]>) -> Self {
        Self {
            inner: Fake::new(fail),
            clock: std::sync::atomic::AtomicUsize::new(0),
            spans: Mutex::new(Vec::new()),
        }
    }

    fn tick(&self) -> usize {
        self.clock.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    }
}

impl Executor for Timed {
    fn run(
        &self,
        args: &[String],
        name: &str,
        threads: Option<usize>,
        log: &mut dyn Write,
    ) -> Result<CommandOutcome, String> {
        let start = self.tick();
        // A teacher's training takes a while: a worker that did not wait for it would start
        // its students meanwhile.
        if args[..2] == ["teacher", "train"] {
            std::thread::sleep(std::time::Duration::from_millis(40));
        }
        let outcome = self.inner.run(args, name, threads, log);
        let end = self.tick();
        self.spans.lock().unwrap().push((args.to_vec(), start, end));
        outcome
    }
}

/// With four workers and two teachers, no student command starts before the last command of
/// its own teacher's job has ended.
#[test]
fn parallel_jobs_never_start_before_their_teacher_has_finished() {
    let f = Fixture::new(&[]);
    let plan = f.plan(&table2_two_teachers(&f)).unwrap();
    let cells = f.path("runs/t2/cells");
    let timed = Timed::new(None);
    let statuses = run_selected(&plan, &plan.jobs, &cells, &options(4), &timed).unwrap();
    assert!(
        statuses
            .iter()
            .all(|s| matches!(s, CellStatus::Done { .. }))
    );
    let spans = timed.spans.lock().unwrap().clone();
    let teachers: Vec<&crate::Job> = plan
        .jobs
        .iter()
        .filter(|j| j.kind == crate::JobKind::Teacher)
        .collect();
    assert_eq!(teachers.len(), 2);
    let mut students = 0;
    for teacher in teachers {
        let cell = cells.join(&teacher.cell).display().to_string();
        let in_cell = |args: &[String]| args.iter().any(|a| a.starts_with(&cell));
        let teacher_end = spans
            .iter()
            .filter(|(args, ..)| args[0] == "teacher" && in_cell(args))
            .map(|&(_, _, end)| end)
            .max()
            .expect("the teacher's commands ran");
        for (args, start, _) in spans.iter().filter(|(args, ..)| args[0] == "oneclass") {
            if values(args, "--teacher")[0].starts_with(&cell) {
                students += 1;
                assert!(
                    *start > teacher_end,
                    "{args:?} started at {start}, its teacher ended at {teacher_end}"
                );
            }
        }
    }
    assert_eq!(students, 4);
}

/// A failed teacher fails the jobs that need it, saying which job failed and how to rerun it,
/// without running their commands; the other teacher's jobs run as usual.
#[test]
fn a_failed_teacher_skips_only_its_dependants_with_the_reason() {
    let f = Fixture::new(&[]);
    let plan = f.plan(&table2_two_teachers(&f)).unwrap();
    let cells = f.path("runs/t2/cells");
    let a_trained = cells
        .join(&plan.job_named("teacher/a").unwrap().cell)
        .join(crate::resolve::TRAINED_TEACHER_FILE)
        .display()
        .to_string();
    // Only teacher a's training names this output file (leaked: the fake matches static
    // strings).
    let fake = Fake::new(Some(["--out", Box::leak(a_trained.into_boxed_str())]));
    let statuses = run_selected(&plan, &plan.jobs, &cells, &options(2), &fake).unwrap();
    let a_index = plan.job_named("teacher/a").unwrap().index;
    for (job, status) in plan.jobs.iter().zip(&statuses) {
        match (job.depends_on(), status) {
            (Some("teacher/a"), CellStatus::Failed { failure }) => {
                assert!(
                    failure.reason.contains(&format!(
                        "needs the teacher of job {a_index} (teacher/a), which has not finished"
                    )) && failure.reason.contains("--only teacher/a --job 0"),
                    "{}",
                    failure.reason
                );
                assert!(failure.steps.is_empty(), "{:?}", failure.steps);
            }
            (None, CellStatus::Failed { .. }) => assert_eq!(job.name, "teacher/a"),
            (Some("teacher/b") | None, CellStatus::Done { .. }) => {}
            other => panic!("{}: {other:?}", job.name),
        }
    }
    // No student of teacher a ran a command; both of b's did.
    let calls = fake.calls();
    let oneclass: Vec<_> = calls.iter().filter(|c| c[0] == "oneclass").collect();
    assert_eq!(oneclass.len(), 2, "{calls:?}");
    let b_cell = cells
        .join(&plan.job_named("teacher/b").unwrap().cell)
        .display()
        .to_string();
    assert!(
        oneclass
            .iter()
            .all(|c| values(c, "--teacher")[0].starts_with(&b_cell))
    );
}

/// A run interrupted (killed) part-way leaves finished cells, a cell with a training
/// checkpoint and no result, and cells never started: the next run reads the finished ones
/// back, resumes the checkpointed one and runs the missing one, nothing else.
#[test]
fn a_resumed_run_runs_only_what_the_interruption_left_missing() {
    let f = Fixture::new(&[]);
    let plan = f.plan(&table2(&f)).unwrap();
    let cells = f.path("runs/t2/cells");
    run_selected(&plan, &plan.jobs, &cells, &options(1), &Fake::new(None)).unwrap();
    let students: Vec<&crate::Job> = plan
        .jobs
        .iter()
        .filter(|j| j.kind == crate::JobKind::OneClass)
        .collect();
    assert_eq!(students.len(), 2);
    // As a kill leaves them: the first students' training checkpointed, no report yet; the
    // second never started.
    let interrupted = cells.join(&students[0].cell);
    std::fs::remove_file(interrupted.join(RESULT_FILE)).unwrap();
    std::fs::remove_file(interrupted.join("report.json")).unwrap();
    std::fs::write(
        interrupted.join(crate::resolve::ONE_CLASS_CHECKPOINT_FILE),
        "checkpoint",
    )
    .unwrap();
    std::fs::remove_dir_all(cells.join(&students[1].cell)).unwrap();

    let again = Fake::new(None);
    let statuses = run_selected(&plan, &plan.jobs, &cells, &options(2), &again).unwrap();
    let calls = again.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    for (job, call) in students.iter().zip([true, false]) {
        let ran: Vec<_> = calls
            .iter()
            .filter(|c| values(c, "--out")[0] == cells.join(&job.cell).display().to_string())
            .collect();
        assert_eq!(ran.len(), 1, "{}: {calls:?}", job.name);
        assert_eq!(
            ran[0].contains(&"--resume".to_string()),
            call,
            "{:?}",
            ran[0]
        );
    }
    for (job, status) in plan.jobs.iter().zip(&statuses) {
        let CellStatus::Done { cached, .. } = status else {
            panic!("{}: {status:?}", job.name)
        };
        assert_eq!(*cached, job.kind == crate::JobKind::Teacher, "{}", job.name);
    }
}
