//! Inputs that cannot break it (issue 20): experiment files ([`Experiment::load`], with the
//! teacher configuration files they name), the cost coefficients ([`CostModel::from_toml`]) and
//! job reports ([`parse_figures`]) are fed valid input, every truncation of it, random
//! mutations, values replaced by malformed, deeply nested or huge ones, and seeded random
//! bytes. Each call must return `Ok` or `Err`, never panic or hang; what parses must be a
//! checked experiment that writes itself out and reads back the same.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use ust_experiments::cost::{COSTS_TOML, CostModel};
use ust_experiments::{Experiment, JobKind, Overrides, Plan, parse_figures};

#[path = "../../../tests/support/fuzz.rs"]
mod fuzz;
use fuzz::{Rng, mutate_one};

/// Seeded random cases per input and mutation kind.
const CASES: usize = 1000;

/// `valid` with a few bytes overwritten, a chunk cut out, or random syntax inserted.
fn mutate_more(rng: &mut Rng, valid: &[u8]) -> Vec<u8> {
    let mut bytes = valid.to_vec();
    let at = rng.below(bytes.len());
    match rng.below(3) {
        0 => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(bytes.len());
                bytes[i] = rng.next_u64() as u8;
            }
        }
        1 => {
            let end = (at + 1 + rng.below(16)).min(bytes.len());
            bytes.drain(at..end);
        }
        _ => {
            let extra = 1 + rng.below(16);
            let inserted = rng.syntax(extra);
            bytes.splice(at..at, inserted);
        }
    }
    bytes
}

/// Numbers a value can be replaced by: zero, huge, past 64 bits, negative, not finite.
const NUMBERS: [&str; 7] = [
    "0",
    "1000000000000",
    "18446744073709551615",
    "340282366920938463463374607431768211456",
    "-1",
    "nan",
    "inf",
];

/// Variants of a text: with one number (chosen by `rng`) replaced by each of [`NUMBERS`], one
/// quoted string emptied or made long, and deep nesting appended.
fn text_variants(rng: &mut Rng, text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut digit_runs = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            digit_runs.push(start..i);
        } else {
            i += 1;
        }
    }
    let mut out = vec![
        format!("{text}\nx = {}", "[".repeat(10_000)),
        format!("{text}\nx = {}", "{a = ".repeat(10_000)),
        format!("{text}\n{}", "[a.".repeat(10_000)),
    ];
    if !digit_runs.is_empty() {
        let run = digit_runs[rng.below(digit_runs.len())].clone();
        for n in NUMBERS {
            out.push(format!("{}{n}{}", &text[..run.start], &text[run.end..]));
        }
    }
    let quotes: Vec<usize> = text.match_indices('"').map(|(i, _)| i).collect();
    if quotes.len() >= 2 {
        let k = rng.below(quotes.len() / 2) * 2;
        let (open, close) = (quotes[k], quotes[k + 1]);
        for inner in [String::new(), "x".repeat(100_000), "../".repeat(1_000)] {
            out.push(format!("{}\"{inner}{}", &text[..open], &text[close..]));
        }
    }
    out
}

/// Every truncation of `text`, `mutations` pairs of one-byte and larger mutations, and 20
/// rounds of its numbers and values replaced ([`text_variants`]).
fn text_inputs(rng: &mut Rng, text: &str, mutations: usize) -> Vec<Vec<u8>> {
    let valid = text.as_bytes();
    let mut inputs: Vec<Vec<u8>> = (0..valid.len()).map(|n| valid[..n].to_vec()).collect();
    for _ in 0..mutations {
        inputs.push(mutate_one(rng, valid));
        inputs.push(mutate_more(rng, valid));
    }
    for _ in 0..20 {
        inputs.extend(text_variants(rng, text).into_iter().map(String::into_bytes));
    }
    inputs
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A shipped experiment file, its teacher configuration paths made absolute (they are relative
/// to the repository root, the tests run in the crate's folder).
fn shipped_experiment(name: &str) -> String {
    let text = std::fs::read_to_string(repo_root().join("experiments").join(name)).unwrap();
    let experiments = repo_root().join("experiments");
    text.replace(
        "config = \"experiments/",
        &format!("config = \"{}/", experiments.display()),
    )
}

/// Writes `bytes` to a fresh `path` (replacing a file by truncating it in place is very slow
/// on ext4, which flushes such files).
fn put(path: &Path, bytes: &[u8]) {
    let _ = std::fs::remove_file(path);
    std::fs::write(path, bytes).unwrap();
}

/// Loads `path`; what loads is checked, and its TOML reads back as the same experiment.
fn load_and_round_trip(path: &Path, again: &Path) -> bool {
    let Ok(experiment) = Experiment::load(path, &Overrides::default()) else {
        return false;
    };
    assert!(!experiment.name.is_empty() && !experiment.seeds.is_empty());
    let text = experiment.to_toml().unwrap();
    put(again, text.as_bytes());
    let back = Experiment::load(again, &Overrides::default())
        .unwrap_or_else(|e| panic!("{e}\nwritten as:\n{text}"));
    assert_eq!(back.to_toml().unwrap(), text);
    true
}

#[test]
fn experiment_files_valid_truncated_mutated_and_random() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exp.toml");
    let again = dir.path().join("again.toml");
    let mut rng = Rng::new(21);
    for name in [
        "table1.toml",
        "table2.toml",
        "ablation_p.toml",
        "ablation_score.toml",
    ] {
        let text = shipped_experiment(name);
        let valid = text.as_bytes();
        put(&path, valid);
        assert!(load_and_round_trip(&path, &again), "{name} does not load");

        let inputs = text_inputs(&mut rng, &text, CASES / 4);
        let mut loaded = 0;
        for input in &inputs {
            put(&path, input);
            loaded += usize::from(load_and_round_trip(&path, &again));
            // The overrides go through the same checks.
            let overrides = Overrides {
                preset: Some("smoke".into()),
                data: Some(String::new()),
            };
            let _ = Experiment::load(&path, &overrides);
        }
        // Truncations that end on a line break often still load: some must.
        assert!(loaded > 0, "{name}: nothing loaded");
    }
    for _ in 0..CASES {
        let len = rng.below(256);
        for input in [rng.bytes(len), rng.syntax(len)] {
            put(&path, &input);
            load_and_round_trip(&path, &again);
        }
    }
}

#[test]
fn teacher_configurations_named_by_an_experiment_valid_mutated_and_random() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("teacher.toml");
    let path = dir.path().join("exp.toml");
    let again = dir.path().join("again.toml");
    let experiment = format!(
        "table = \"table2\"\n\
         [[teachers]]\nname = \"t\"\nconfig = \"{}\"\n\
         [[datasets]]\nname = \"mnist\"\nroot = \"mnist\"\n\
         [one_class]\nmethods = [\"students\"]\n",
        config.display()
    );
    put(&path, experiment.as_bytes());
    let text =
        std::fs::read_to_string(repo_root().join("experiments/teacher/p33_distill.toml")).unwrap();
    let valid = text.as_bytes();
    put(&config, valid);
    let loaded = Experiment::load(&path, &Overrides::default()).unwrap();
    assert_eq!(
        (
            loaded.teachers[0].lambdas.k,
            loaded.teachers[0].lambdas.m,
            loaded.teachers[0].lambdas.c
        ),
        (1.0, 0.0, 0.0)
    );

    // Loss weights that are not finite non-negative numbers are refused, in the experiment
    // file and in the configuration file.
    for bad in ["nan", "inf", "-inf", "-1.0"] {
        put(
            &config,
            text.replace("lambda_k = 1.0", &format!("lambda_k = {bad}"))
                .as_bytes(),
        );
        assert!(
            Experiment::load(&path, &Overrides::default()).is_err(),
            "{bad}"
        );
        let declared = experiment.replace("config = ", &format!("lambda_k = {bad}\nconfig = "));
        put(&config, valid);
        put(&path, declared.as_bytes());
        assert!(
            Experiment::load(&path, &Overrides::default()).is_err(),
            "{bad}"
        );
        put(&path, experiment.as_bytes());
    }

    let mut rng = Rng::new(22);
    let mut inputs: Vec<Vec<u8>> = (0..valid.len()).map(|n| valid[..n].to_vec()).collect();
    for _ in 0..CASES / 2 {
        inputs.push(mutate_one(&mut rng, valid));
        inputs.push(mutate_more(&mut rng, valid));
        let len = rng.below(128);
        inputs.push(rng.syntax(len));
        inputs.push(rng.bytes(len));
    }
    for _ in 0..20 {
        inputs.extend(
            text_variants(&mut rng, &text)
                .into_iter()
                .map(String::into_bytes),
        );
    }
    for input in &inputs {
        put(&config, input);
        if load_and_round_trip(&path, &again) {
            let e = Experiment::load(&path, &Overrides::default()).unwrap();
            let l = e.teachers[0].lambdas;
            assert!(
                [l.k, l.m, l.c].iter().all(|v| v.is_finite() && *v >= 0.0),
                "{l:?} from\n{}",
                String::from_utf8_lossy(input)
            );
        }
    }
}

/// A data root with one MVTec-layout category (no images) and three fake teacher files: enough
/// for [`Plan::new`] to expand a table1 experiment's jobs.
fn plan_fixture(dir: &Path) -> Plan {
    std::fs::create_dir_all(dir.join("root/cat/train/good")).unwrap();
    for p in [17, 33, 65] {
        std::fs::write(
            dir.join(format!("t{p}.safetensors")),
            format!("teacher {p}"),
        )
        .unwrap();
    }
    let path = dir.join("plan.toml");
    std::fs::write(
        &path,
        format!(
            "table = \"table1\"\n[mvtec]\ndata = \"{}\"\n[students]\nscales = [17, 33, 65]\n\
             [dense_baselines]\nmethods = [\"knn\", \"pca\"]\np = 33\n",
            dir.join("root").display()
        ),
    )
    .unwrap();
    let experiment = Experiment::load(&path, &Overrides::default()).unwrap();
    let dir = dir.to_path_buf();
    Plan::new(&experiment, &move |p| {
        Ok(dir.join(format!("t{p}.safetensors")))
    })
    .unwrap()
}

/// A table2 experiment whose teacher is trained from a configuration of receptive field
/// `patch_size` (estimating its cost squares it).
fn teacher_plan(dir: &Path, patch_size: u64) -> Plan {
    let text =
        std::fs::read_to_string(repo_root().join("experiments/teacher/p33_distill.toml")).unwrap();
    let config = dir.join(format!("teacher-{patch_size}.toml"));
    std::fs::write(
        &config,
        text.replace("patch_size = 33", &format!("patch_size = {patch_size}")),
    )
    .unwrap();
    let path = dir.join(format!("teacher-plan-{patch_size}.toml"));
    std::fs::write(
        &path,
        format!(
            "table = \"table2\"\n[[teachers]]\nname = \"t\"\nconfig = \"{}\"\n\
             [[datasets]]\nname = \"mnist\"\nroot = \"mnist\"\n\
             [one_class]\nmethods = [\"students\"]\n",
            config.display()
        ),
    )
    .unwrap();
    let experiment = Experiment::load(&path, &Overrides::default()).unwrap();
    Plan::new(&experiment, &|p| {
        Err(format!("no shipped teacher for p={p}"))
    })
    .unwrap()
}

#[test]
fn cost_coefficients_valid_truncated_mutated_and_random() {
    let dir = tempfile::tempdir().unwrap();
    let plans = [
        plan_fixture(dir.path()),
        teacher_plan(dir.path(), 33),
        // A receptive field whose square overflows 64 bits.
        teacher_plan(dir.path(), 5_000_000_000),
    ];
    let jobs: Vec<_> = plans.iter().flat_map(|p| &p.jobs).collect();
    let shipped = CostModel::from_toml(COSTS_TOML).unwrap();
    let estimates = shipped.estimate_all(&jobs);
    assert_eq!(estimates.len(), jobs.len());
    // The p = 33 teacher's estimate is a positive number of seconds.
    let teacher = plans[1]
        .jobs
        .iter()
        .position(|j| j.kind == JobKind::Teacher)
        .unwrap();
    let seconds = shipped.estimate(&plans[1].jobs[teacher]).unwrap().seconds;
    assert!(seconds.is_finite() && seconds > 0.0, "{seconds}");

    let valid = COSTS_TOML.as_bytes();
    let mut rng = Rng::new(23);
    let mut inputs: Vec<Vec<u8>> = (0..valid.len()).map(|n| valid[..n].to_vec()).collect();
    for _ in 0..CASES {
        inputs.push(mutate_one(&mut rng, valid));
        inputs.push(mutate_more(&mut rng, valid));
        let len = rng.below(128);
        inputs.push(rng.syntax(len));
    }
    for _ in 0..20 {
        inputs.extend(
            text_variants(&mut rng, COSTS_TOML)
                .into_iter()
                .map(String::into_bytes),
        );
    }
    // Patch sizes that are not numbers, or whose square overflows.
    let with_scale = |key: &str| COSTS_TOML.replace("[scales.33]", &format!("[scales.{key}]"));
    assert!(CostModel::from_toml(&with_scale("x33")).is_err());
    inputs.push(with_scale("18446744073709551615").into_bytes());
    inputs.push(with_scale("4294967296").into_bytes());
    for input in &inputs {
        let Ok(text) = std::str::from_utf8(input) else {
            continue;
        };
        if let Ok(model) = CostModel::from_toml(text) {
            // Whatever coefficients parsed, estimating with them does not panic.
            let _ = model.estimate_all(&jobs);
        }
    }
}

/// A random JSON value of at most `depth` levels, with the keys job reports use.
fn random_json(rng: &mut Rng, depth: usize) -> Value {
    const KEYS: [&str; 14] = [
        "rows",
        "term_rows",
        "score_terms",
        "name",
        "au_pro",
        "pixel_auroc",
        "image_auroc",
        "auroc",
        "summary",
        "iterations",
        "duration_s",
        "training",
        "scales",
        "training_s",
    ];
    match rng.below(if depth == 0 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => json!(rng.next_u64()),
        3 => json!([f64::MAX, -1.0, 0.5, 1e-300, -0.0][rng.below(5)]),
        4 => Value::String(["p=17", "", "multi-scale (17+33)", "e+v", "x"][rng.below(5)].into()),
        5 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_json(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.below(5))
                .map(|_| {
                    (
                        KEYS[rng.below(KEYS.len())].to_string(),
                        random_json(rng, depth - 1),
                    )
                })
                .collect(),
        ),
    }
}

#[test]
fn job_reports_valid_mutated_and_random() {
    let students = json!({
        "rows": [
            {"name": "p=17", "au_pro": 0.5, "pixel_auroc": 0.8, "image_auroc": 0.7},
            {"name": "multi-scale (17+33)", "au_pro": 0.6, "pixel_auroc": 0.9}
        ],
        "term_rows": [{"score_terms": "e", "rows": [{"name": "p=17", "au_pro": 0.4, "pixel_auroc": 0.7}]}],
        "predict_s": 2.0,
        "training": {"scales": [{"training_s": 3.0}, {"training_s": 4.5}]}
    });
    let reports = [
        (JobKind::Students, students),
        (
            JobKind::DenseBaseline,
            json!({"au_pro": 0.4, "pixel_auroc": 0.8}),
        ),
        (JobKind::OneClass, json!({"auroc": 0.7, "total_s": 1.0})),
        (
            JobKind::Teacher,
            json!({"summary": {"iterations": 3, "duration_s": 1.5}}),
        ),
    ];
    let path = Path::new("report.json");
    let kinds = reports.each_ref().map(|(k, _)| *k);
    for (kind, report) in &reports {
        parse_figures(*kind, report, path).unwrap();
    }
    let mut rng = Rng::new(24);
    for (_, report) in &reports {
        let text = serde_json::to_string(report).unwrap();
        let mut inputs = text_inputs(&mut rng, &text, CASES);
        inputs.push(format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes());
        for input in &inputs {
            // Report files are read as JSON first (serde_json stops deep nesting itself).
            if let Ok(value) = serde_json::from_slice::<Value>(input) {
                for k in kinds {
                    let _ = parse_figures(k, &value, path);
                }
            }
        }
    }
    for _ in 0..CASES {
        let value = random_json(&mut rng, 4);
        for k in kinds {
            if let Ok(figures) = parse_figures(k, &value, path) {
                let _ = figures.summary();
                let _ = figures.peak_rss_mib();
            }
        }
    }
}
