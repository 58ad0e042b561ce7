//! The run folder's `results.json` and `report.md`: the tables in the paper's layout with the
//! paper's numbers beside ours, then every cell with its status, figures, time and memory, the
//! failures, and the deviations in force.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
// A missing figure is spelt as in every other report (the engine's one definition).
use ust_engine::fmt_opt_digits as opt_text;

use crate::cell::{CellResult, CellStatus, Figures, term_row_key};
use crate::paper;
use crate::resolve::{JobKind, Plan, Task, TeacherSource};
use crate::schema::TableKind;

/// What the run folder says about the invocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunMeta {
    pub experiment: String,
    pub file: String,
    pub table: TableKind,
    pub preset: String,
    pub seeds: Vec<u64>,
    /// Data roots as given.
    pub data: Vec<String>,
    /// `run`, `merge`.
    pub mode: String,
    /// The command line.
    pub command: Vec<String>,
    pub started_at: String,
    pub finished_at: String,
    /// Seconds this invocation took.
    pub wall_s: f64,
}

/// One cell in `results.json`.
#[derive(Debug, Clone, Serialize)]
pub struct CellEntry {
    pub index: usize,
    pub name: String,
    pub kind: JobKind,
    pub hash: String,
    pub cell: String,
    pub task: Task,
    pub config: serde_json::Value,
    /// The cost model's expected seconds on one core ([`crate::cost`]), beside the measured
    /// time so that a stale model shows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate_s: Option<f64>,
    #[serde(flatten)]
    pub status: CellStatus,
}

/// `results.json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunResults {
    pub meta: RunMeta,
    pub cells: Vec<CellEntry>,
}

impl RunResults {
    /// The entries of `plan`'s jobs with `statuses` (one per job, in order).
    pub fn new(meta: RunMeta, plan: &Plan, statuses: Vec<CellStatus>) -> Self {
        let jobs: Vec<&crate::Job> = plan.jobs.iter().collect();
        let estimates = crate::cost::CostModel::shipped().estimate_all(&jobs);
        let cells = plan
            .jobs
            .iter()
            .zip(statuses)
            .zip(estimates)
            .map(|((j, status), estimate)| CellEntry {
                index: j.index,
                name: j.name.clone(),
                kind: j.kind,
                hash: j.hash.clone(),
                cell: j.cell.clone(),
                task: j.task.clone(),
                config: j.config.clone(),
                estimate_s: estimate.map(|e| e.seconds),
                status,
            })
            .collect();
        Self { meta, cells }
    }

    /// How many cells failed and how many were not run (the rest are done).
    pub fn failed_and_missing(&self) -> (usize, usize) {
        let count = |f: fn(&CellStatus) -> bool| self.cells.iter().filter(|c| f(&c.status)).count();
        (
            count(|s| matches!(s, CellStatus::Failed { .. })),
            count(|s| matches!(s, CellStatus::Missing)),
        )
    }
}

/// A table entry: the mean over seeds of the cells behind it.
#[derive(Debug, Clone, PartialEq)]
enum Slot {
    /// `partial`: some seeds failed or are missing.
    Value {
        v: f64,
        partial: bool,
    },
    Failed,
    Missing,
}

impl Slot {
    fn of(cells: &[&CellEntry], extract: &dyn Fn(&Figures) -> Option<f64>) -> Slot {
        let mut values = Vec::new();
        let mut failed = false;
        let mut incomplete = false;
        for c in cells {
            match &c.status {
                CellStatus::Done { result, .. } => match extract(&result.figures) {
                    Some(v) => values.push(v),
                    None => incomplete = true,
                },
                CellStatus::Failed { .. } => {
                    failed = true;
                    incomplete = true;
                }
                CellStatus::Missing => incomplete = true,
            }
        }
        if values.is_empty() {
            if failed { Slot::Failed } else { Slot::Missing }
        } else {
            Slot::Value {
                v: values.iter().sum::<f64>() / values.len() as f64,
                partial: incomplete,
            }
        }
    }

    fn value(&self) -> Option<f64> {
        match self {
            Slot::Value { v, .. } => Some(*v),
            _ => None,
        }
    }

    fn text(&self, digits: usize) -> String {
        match self {
            Slot::Value { v, partial } => {
                format!("{v:.digits$}{}", if *partial { "*" } else { "" })
            }
            Slot::Failed => "failed".into(),
            Slot::Missing => "–".into(),
        }
    }
}

/// The mean of a column over its rows: (mean, rows with a value, rows).
fn column_mean(slots: &[Slot]) -> Option<(f64, usize, usize)> {
    let values: Vec<f64> = slots.iter().filter_map(Slot::value).collect();
    if values.is_empty() {
        return None;
    }
    Some((
        values.iter().sum::<f64>() / values.len() as f64,
        values.len(),
        slots.len(),
    ))
}

fn mean_text(m: Option<(f64, usize, usize)>, digits: usize) -> String {
    match m {
        None => "–".into(),
        Some((v, n, total)) if n == total => format!("{v:.digits$}"),
        Some((v, n, total)) => format!("{v:.digits$} ({n}/{total})"),
    }
}

/// A Markdown table.
fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut s = format!(
        "| {} |\n|{}\n",
        header.join(" | "),
        "---|".repeat(header.len())
    );
    for r in rows {
        let _ = writeln!(s, "| {} |", r.join(" | "));
    }
    s
}

/// The students' row keys of an MVTec experiment, in order: one per scale, then multi-scale.
fn student_keys(plan: &Plan) -> Vec<String> {
    let Some(st) = &plan.experiment.students else {
        return Vec::new();
    };
    let mut keys: Vec<String> = st.scales.iter().map(|p| format!("p={p}")).collect();
    if st.scales.len() > 1 {
        keys.push("multi-scale".into());
    }
    keys
}

fn cells_where<'a>(
    results: &'a RunResults,
    pred: &dyn Fn(&CellEntry) -> bool,
) -> Vec<&'a CellEntry> {
    results.cells.iter().filter(|c| pred(c)).collect()
}

fn students_of<'a>(results: &'a RunResults, category: &str) -> Vec<&'a CellEntry> {
    cells_where(
        results,
        &|c| matches!(&c.task, Task::Students { category: k, .. } if k == category),
    )
}

fn dense_of<'a>(results: &'a RunResults, category: &str, method: &str) -> Vec<&'a CellEntry> {
    cells_where(results, &|c| {
        matches!(&c.task, Task::DenseBaseline { category: k, method: m, .. }
            if k == category && m == method)
    })
}

/// Which figure a Table 1/3 grid shows.
#[derive(Clone, Copy)]
enum Metric {
    AuPro,
    PixelAuroc,
    ImageAuroc,
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Metric::AuPro => "AU-PRO (FPR ≤ 0.3)",
            Metric::PixelAuroc => "pixel AUROC",
            Metric::ImageAuroc => "image AUROC",
        }
    }

    fn of_row(self, f: &Figures, key: &str) -> Option<f64> {
        let r = f.row(key)?;
        match self {
            Metric::AuPro => Some(r.au_pro),
            Metric::PixelAuroc => Some(r.pixel_auroc),
            Metric::ImageAuroc => r.image_auroc,
        }
    }

    fn of_dense(self, f: &Figures) -> Option<f64> {
        match (self, f) {
            (Metric::AuPro, Figures::DenseBaseline { au_pro, .. }) => Some(*au_pro),
            (Metric::PixelAuroc, Figures::DenseBaseline { pixel_auroc, .. }) => *pixel_auroc,
            (Metric::ImageAuroc, Figures::DenseBaseline { image_auroc, .. }) => *image_auroc,
            _ => None,
        }
    }
}

/// Table 1 (or 3) as categories × methods, with mean rows and the paper's numbers; with
/// `terms` (one of `[students].also_score`) the students' rows under those score terms alone.
fn mvtec_table(
    plan: &Plan,
    results: &RunResults,
    metric: Metric,
    with_paper: bool,
    terms: Option<&str>,
) -> String {
    let keys: Vec<String> = student_keys(plan)
        .into_iter()
        .map(|k| terms.map_or(k.clone(), |t| term_row_key(t, &k)))
        .collect();
    let methods: Vec<String> = match terms {
        Some(_) => Vec::new(),
        None => plan
            .experiment
            .dense_baselines
            .as_ref()
            .map(|d| d.methods.clone())
            .unwrap_or_default(),
    };
    let table3 = plan.table() == TableKind::Table3;
    let real: Vec<&String> = plan
        .categories
        .iter()
        .filter(|c| paper::is_mvtec_category(c))
        .collect();
    let paper_column =
        with_paper && !table3 && keys.iter().any(|k| k == "p=65") && !real.is_empty();

    let mut header = vec!["category".to_string()];
    for k in &keys {
        header.push(if table3 {
            k.clone()
        } else {
            format!("students {k}")
        });
    }
    for m in &methods {
        header.push(paper::method_label(m).to_string());
    }
    if paper_column {
        header.push("paper: students p=65".into());
    }
    let mut columns: Vec<Vec<Slot>> = vec![Vec::new(); keys.len() + methods.len()];
    let mut rows = Vec::new();
    let mut paper_values = Vec::new();
    for c in &plan.categories {
        let mut row = vec![format!("`{c}`")];
        let students = students_of(results, c);
        for (i, k) in keys.iter().enumerate() {
            let slot = Slot::of(&students, &|f| metric.of_row(f, k));
            row.push(slot.text(3));
            columns[i].push(slot);
        }
        for (j, m) in methods.iter().enumerate() {
            let slot = Slot::of(&dense_of(results, c, m), &|f| metric.of_dense(f));
            row.push(slot.text(3));
            columns[keys.len() + j].push(slot);
        }
        if paper_column {
            let p = paper::table1_students(c);
            if let Some(v) = p {
                paper_values.push(v);
            }
            row.push(opt_text(p, 3));
        }
        rows.push(row);
    }
    let mut mean_row = vec!["**mean**".to_string()];
    for col in &columns {
        mean_row.push(mean_text(column_mean(col), 3));
    }
    if paper_column {
        let n = paper_values.len();
        mean_row.push(if n == plan.categories.len() {
            format!("{:.3}", paper_values.iter().sum::<f64>() / n as f64)
        } else {
            format!(
                "{:.3} ({n}/{})",
                paper_values.iter().sum::<f64>() / n as f64,
                plan.categories.len()
            )
        });
    }
    rows.push(mean_row);
    if with_paper {
        let mut paper_row = vec!["paper mean (MVTec AD)".to_string()];
        for k in &keys {
            let v = if table3 {
                paper::table3_mean(k)
            } else if k == "p=65" {
                Some(paper::TABLE1_STUDENTS_MEAN)
            } else {
                None
            };
            paper_row.push(opt_text(v, 3));
        }
        for m in &methods {
            paper_row.push(opt_text(paper::table1_baseline_mean(m), 3));
        }
        if paper_column {
            paper_row.push(format!("{:.3}", paper::TABLE1_STUDENTS_MEAN));
        }
        rows.push(paper_row);
    }
    table(&header, &rows)
}

/// Table 2 for one dataset: methods × classes, mean, the paper's mean.
fn one_class_table(plan: &Plan, results: &RunResults, dataset: &str) -> String {
    let Some(d) = plan.experiment.datasets.iter().find(|d| d.name == dataset) else {
        return String::new();
    };
    let classes: Vec<u8> = d.classes.clone().unwrap_or_else(|| (0..10).collect());
    let mut header = vec!["method".to_string()];
    header.extend(classes.iter().map(|c| c.to_string()));
    header.push("mean".into());
    header.push("paper mean (10 classes)".into());
    // Rows in the order the jobs appear: (method, variant).
    let mut row_ids: Vec<(String, String)> = Vec::new();
    for j in &plan.jobs {
        if let Task::OneClass {
            dataset: ds,
            method,
            variant,
            ..
        } = &j.task
            && ds == dataset
        {
            let id = (method.clone(), variant.clone());
            if !row_ids.contains(&id) {
                row_ids.push(id);
            }
        }
    }
    let mut rows = Vec::new();
    for (method, variant) in &row_ids {
        let lambdas = plan.teacher_variant(variant).map(|t| t.lambdas);
        let label = if method == crate::oneclass::OneClassMethod::STUDENTS {
            format!(
                "students, teacher `{variant}` ({})",
                lambdas.map(|l| l.label()).unwrap_or_default()
            )
        } else {
            format!("{} (teacher `{variant}`)", paper::method_label(method))
        };
        let mut row = vec![label];
        let mut slots = Vec::new();
        for &class in &classes {
            let cells = cells_where(results, &|c| {
                matches!(&c.task, Task::OneClass { dataset: ds, class: k, method: m, variant: v, .. }
                    if ds == dataset && *k == class && m == method && v == variant)
            });
            let slot = Slot::of(&cells, &|f| match f {
                Figures::OneClass { auroc, .. } => Some(*auroc),
                _ => None,
            });
            row.push(slot.text(4));
            slots.push(slot);
        }
        row.push(mean_text(column_mean(&slots), 4));
        row.push(opt_text(paper::table2_mean(dataset, method, lambdas), 4));
        rows.push(row);
    }
    table(&header, &rows)
}

impl RunMeta {
    /// The record of this invocation for `plan` (its jobs those selected): the data roots as
    /// given, `merge` or `run`, from `started_at` until now.
    pub fn new(
        plan: &Plan,
        file: &std::path::Path,
        merge: bool,
        command: Vec<String>,
        started_at: std::time::SystemTime,
        wall_s: f64,
    ) -> Self {
        let experiment = &plan.experiment;
        let mut data: Vec<String> = Vec::new();
        if let Some(root) = &plan.mvtec_root {
            data.push(root.display().to_string());
        }
        for d in &experiment.datasets {
            data.push(ust_data::shared::expand_shared(&d.root));
        }
        Self {
            experiment: experiment.name.clone(),
            file: file.display().to_string(),
            table: experiment.table,
            preset: experiment.preset.clone(),
            seeds: experiment.seeds.clone(),
            data,
            mode: if merge { "merge" } else { "run" }.into(),
            command,
            started_at: crate::cell::utc_timestamp(started_at),
            finished_at: crate::cell::utc_timestamp(std::time::SystemTime::now()),
            wall_s,
        }
    }
}

/// `ust experiment --plan`: per selected job its state and expected cost, then the total of
/// the pending jobs spread over `parallel` runners (at most `cores`; all of them when
/// `parallel` is 1).
pub fn render_plan(
    experiment: &crate::Experiment,
    selected: &[crate::Job],
    costs: &crate::cost::PlanCosts,
    parallel: usize,
    cores: usize,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "#\tjob\tstate\testimate (1 core)\tpeak MiB");
    for (k, (job, cost)) in selected.iter().zip(&costs.jobs).enumerate() {
        let _ = writeln!(
            s,
            "{k}\t{}\t{}\t{}\t{}",
            job.name,
            if cost.done { "done" } else { "pending" },
            cost.estimate.map_or("–".into(), |e| fmt_s(e.seconds)),
            cost.estimate
                .and_then(|e| e.peak_mib)
                .map_or("–".into(), |m| format!("{m:.0}"))
        );
    }
    // The coefficients are one core's; how much a second thread per job gains is not
    // modelled, so the figure for several runners assumes one thread each.
    let runners = if parallel > 1 {
        parallel.min(cores)
    } else {
        cores
    };
    let spread = format!(
        "about {} with --parallel {runners} (one thread per job)",
        fmt_s(costs.total_s / runners as f64)
    );
    let _ = writeln!(
        s,
        "{} ({}), {} preset, {} jobs ({} pending, {} cached): about {} of one \
         core's work, {spread}; peak memory per job up to {}{}",
        experiment.name,
        experiment
            .table
            .title()
            .split(':')
            .next()
            .unwrap_or_default(),
        experiment.preset,
        selected.len(),
        costs.pending,
        costs.cached,
        fmt_s(costs.total_s),
        costs.peak_mib.map_or("–".into(), |m| format!("{m:.0} MiB")),
        if costs.unknown > 0 {
            format!(
                " ({} pending jobs without an estimate: their data could not be read)",
                costs.unknown
            )
        } else {
            String::new()
        }
    );
    s
}

/// Seconds in words: `45.0 s`, `12.0 min`, `3.40 h`.
pub fn fmt_s(s: f64) -> String {
    if s >= 3600.0 {
        format!("{:.2} h", s / 3600.0)
    } else if s >= 60.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{s:.1} s")
    }
}

/// `report.md`.
pub fn render_markdown(plan: &Plan, results: &RunResults) -> String {
    let e = &plan.experiment;
    let m = &results.meta;
    let mut s = String::new();
    let _ = writeln!(s, "# {}: {}\n", e.name, e.table.title());
    if let Some(d) = &e.description {
        let _ = writeln!(s, "{d}\n");
    }
    let done = results
        .cells
        .iter()
        .filter(|c| matches!(c.status, CellStatus::Done { .. }))
        .count();
    let failed = results
        .cells
        .iter()
        .filter(|c| matches!(c.status, CellStatus::Failed { .. }))
        .count();
    let missing = results.cells.len() - done - failed;
    let cell_time: f64 = results
        .cells
        .iter()
        .filter_map(|c| c.status.result().map(|r| r.wall_s))
        .sum();
    let peak = results
        .cells
        .iter()
        .filter_map(|c| c.status.result().and_then(CellResult::peak_rss_mib))
        .fold(None, |acc: Option<f64>, v| {
            Some(acc.map_or(v, |a| a.max(v)))
        });
    let _ = writeln!(
        s,
        "- experiment file: `{}` (resolved copy: `config.toml`)",
        m.file
    );
    let _ = writeln!(s, "- preset: **{}**", m.preset);
    let _ = writeln!(
        s,
        "- data: {}",
        m.data
            .iter()
            .map(|d| format!("`{d}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !plan.categories.is_empty() {
        let _ = writeln!(s, "- categories: {}", plan.categories.join(", "));
    }
    let _ = writeln!(
        s,
        "- seeds: {}",
        m.seeds
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        s,
        "- cells: {} ({done} done, {failed} failed, {missing} not run)",
        results.cells.len()
    );
    let _ = writeln!(
        s,
        "- time: {} in the finished cells' jobs; this invocation ({}) took {} ({} to {})",
        fmt_s(cell_time),
        m.mode,
        fmt_s(m.wall_s),
        m.started_at,
        m.finished_at
    );
    if let Some(p) = peak {
        let _ = writeln!(
            s,
            "- peak memory: {p:.0} MiB (the largest peak resident memory of a job's commands)"
        );
    }
    let _ = writeln!(s, "- command: `{}`\n", m.command.join(" "));

    let notes = "Entries are means over the seeds; `*`: some seeds failed or did not run; \
                 `failed`: every seed failed (see Failures); `–`: not run or not reported; \
                 a mean `(n/N)` is over the n rows that have a value.";
    match e.table {
        TableKind::Table1 | TableKind::Table3 => {
            let _ = writeln!(s, "## {}\n", e.table.title());
            s.push_str(&mvtec_table(plan, results, Metric::AuPro, true, None));
            let _ = writeln!(s, "\n{notes}\n");
            for metric in [Metric::PixelAuroc, Metric::ImageAuroc] {
                let _ = writeln!(s, "### Also measured: {}\n", metric.name());
                s.push_str(&mvtec_table(plan, results, metric, false, None));
                s.push('\n');
            }
            let also = e.students.as_ref().map(|st| st.also_score.clone());
            for terms in also.unwrap_or_default() {
                for metric in [Metric::AuPro, Metric::PixelAuroc] {
                    let _ = writeln!(
                        s,
                        "### The students' score terms {terms} alone (the same networks' \
                         outputs): {}\n",
                        metric.name()
                    );
                    s.push_str(&mvtec_table(plan, results, metric, false, Some(&terms)));
                    s.push('\n');
                }
            }
        }
        TableKind::Table2 => {
            let _ = writeln!(s, "## {}\n", e.table.title());
            for d in &e.datasets {
                let title = match d.name.as_str() {
                    "mnist" => "MNIST",
                    "cifar10" => "CIFAR-10",
                    other => other,
                };
                let _ = writeln!(s, "### {title} (`{}`)\n", d.root);
                s.push_str(&one_class_table(plan, results, &d.name));
                s.push('\n');
            }
            let _ = writeln!(s, "{notes}\n");
            let teachers: Vec<String> = e
                .teachers
                .iter()
                .map(|t| {
                    let source = match (&t.variant.file, &t.variant.config) {
                        (Some(f), _) => format!("file `{f}`"),
                        (_, Some(c)) => format!("trained here from `{c}`"),
                        _ => String::new(),
                    };
                    format!("- `{}`: {}, {}", t.variant.name, t.lambdas.label(), source)
                })
                .collect();
            let _ = writeln!(s, "Teacher variants:\n\n{}\n", teachers.join("\n"));
        }
    }

    let _ = writeln!(s, "## Cells\n");
    let mut rows = Vec::new();
    for c in &results.cells {
        let (figures, time, mem) = match &c.status {
            CellStatus::Done { result, .. } => (
                result.figures.summary(),
                fmt_s(result.wall_s),
                opt_text(result.peak_rss_mib(), 0),
            ),
            CellStatus::Failed { failure } => {
                (failure.reason.clone(), fmt_s(failure.wall_s), "–".into())
            }
            CellStatus::Missing => ("".into(), "–".into(), "–".into()),
        };
        rows.push(vec![
            c.index.to_string(),
            format!("`{}`", c.name),
            c.status.label().into(),
            figures.replace('|', "\\|"),
            time,
            c.estimate_s.map_or("–".into(), fmt_s),
            mem,
            format!("`cells/{}`", c.cell),
        ]);
    }
    s.push_str(&table(
        &[
            "#",
            "job",
            "status",
            "figures",
            "time",
            "estimate (1 core)",
            "peak MiB",
            "cell",
        ]
        .map(String::from),
        &rows,
    ));

    let failures: Vec<&CellEntry> = results
        .cells
        .iter()
        .filter(|c| matches!(c.status, CellStatus::Failed { .. }))
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(s, "\n## Failures\n");
        for c in failures {
            if let CellStatus::Failed { failure } = &c.status {
                let _ = writeln!(s, "### `{}` (job {})\n", c.name, c.index);
                let _ = writeln!(s, "{}\n", failure.reason);
                if let Some(step) = failure.steps.last() {
                    let _ = writeln!(s, "command: `ust {}`\n", step.argv.join(" "));
                }
                if !failure.stderr_tail.is_empty() {
                    let _ = writeln!(s, "```\n{}\n```\n", failure.stderr_tail.join("\n"));
                }
            }
        }
    }

    let mut categories = plan.categories.clone();
    categories.dedup();
    let distilled = match e.table {
        TableKind::Table2 => e.teachers.iter().any(|t| t.lambdas.k > 0.0),
        _ => true,
    };
    let student_settings = e
        .students
        .as_ref()
        .map(|st| st.settings())
        .unwrap_or_default();
    let dense_teachers = dense_teachers(plan);
    let dev = paper::deviations(&paper::DeviationInputs {
        preset: &e.preset,
        categories: &categories,
        uses_cifar: e.datasets.iter().any(|d| d.name == "cifar10"),
        distilled_teacher: distilled,
        trains_teachers: e.teachers.iter().any(|t| t.variant.config.is_some()),
        ablated_score: e.students.as_ref().and_then(|st| st.ablated_score()),
        student_settings: &student_settings,
        dense_teachers: &dense_teachers,
    });
    let _ = writeln!(
        s,
        "\n## Deviations from the paper in force (METHOD.md §10)\n"
    );
    for d in dev {
        let _ = writeln!(s, "- {d}");
    }
    let _ = writeln!(
        s,
        "\nThe paper's numbers: METHOD.md §9 (Bergmann et al., CVPR 2020, Tables 1–3)."
    );
    s
}

/// The teacher files `plan`'s jobs read that say they were distilled densely (a file that
/// cannot be read counts as not dense: the report is written whatever became of it).
fn dense_teachers(plan: &Plan) -> Vec<String> {
    let mut files: Vec<&std::path::Path> = Vec::new();
    for job in &plan.jobs {
        match &job.task {
            Task::Students { teachers, .. } => files.extend(teachers.iter().map(|t| t.as_path())),
            Task::DenseBaseline { teacher, .. } => files.push(teacher),
            Task::OneClass {
                teacher: TeacherSource::File(f),
                ..
            } => files.push(f),
            _ => {}
        }
    }
    files.sort();
    files.dedup();
    files
        .into_iter()
        .filter(|f| {
            ust_detector::TeacherFileInfo::read(f)
                .is_ok_and(|info| info.training_config.uses_dense_distillation())
        })
        .map(|f| f.display().to_string())
        .collect()
}

/// Which teacher jobs the one-class jobs of `plan` wait for, by job name.
pub fn teacher_dependencies(plan: &Plan) -> BTreeMap<String, Vec<usize>> {
    let mut out: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for j in &plan.jobs {
        if let Task::OneClass {
            teacher: TeacherSource::Job { name, .. },
            ..
        } = &j.task
        {
            out.entry(name.clone()).or_default().push(j.index);
        }
    }
    out
}

/// Writes `exp_dir/<timestamp>/` (a `-2`, `-3`… suffix when taken): `config.toml` (the
/// resolved experiment), `results.json` and `report.md`. Returns the folder.
pub fn write_run_dir(
    exp_dir: &std::path::Path,
    timestamp: &str,
    plan: &Plan,
    results: &RunResults,
) -> crate::Result<std::path::PathBuf> {
    use crate::error::ExperimentError;
    std::fs::create_dir_all(exp_dir).map_err(|e| ExperimentError::io(exp_dir, e))?;
    let mut dir = exp_dir.join(timestamp);
    let mut n = 1;
    loop {
        match std::fs::create_dir(&dir) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                n += 1;
                dir = exp_dir.join(format!("{timestamp}-{n}"));
            }
            Err(e) => return Err(ExperimentError::io(&dir, e)),
        }
    }
    let e = &plan.experiment;
    let mut config = format!(
        "# The resolved experiment of this run: {} with the command line's overrides.\n\
         # Command: {}\n",
        e.file.display(),
        results.meta.command.join(" ")
    );
    if !plan.categories.is_empty() {
        let _ = writeln!(config, "# Categories found: {}", plan.categories.join(", "));
    }
    config.push('\n');
    config.push_str(&e.to_toml()?);
    let write = |name: &str, text: &str| {
        ust_data::files::write_bytes_atomically(&dir.join(name), text.as_bytes())
    };
    write("config.toml", &config)?;
    write("results.json", &serde_json::to_string_pretty(results)?)?;
    write("report.md", &render_markdown(plan, results))?;
    Ok(dir)
}
