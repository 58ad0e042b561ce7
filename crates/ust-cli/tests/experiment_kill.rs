//! `ust experiment` killed with SIGKILL in the middle of a job, then run again: the second run
//! keeps the jobs that had finished, resumes the interrupted one from its checkpoint, runs the
//! rest, and ends with the figures of an uninterrupted run (issue 20).
//!
//! Only processes this test started are signalled, each by its own pid: the runner is stopped
//! (SIGSTOP, so that it starts no new command), its descendants are read from /proc, then the
//! runner and each of those `ust` commands get SIGKILL, as when the machine kills the whole job.
//! No process group is ever signalled.

#![cfg(target_os = "linux")]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[path = "../../../tests/support/mod.rs"]
mod support;
use support::{json, random_teacher, run_ok, ust_in as ust};

/// `(ppid, start time in clock ticks)` of process `pid` from /proc/<pid>/stat; `None` once it
/// is gone.
fn stat_of(pid: u32) -> Option<(u32, u64, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`: comm may hold spaces and parentheses, so split after the last
    // ')'. Fields after it: state (3), ppid (4), …, starttime (22).
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((ppid, start, state))
}

/// Every descendant of `root` (children, their children, …) as `(pid, start time)`.
fn descendants(root: u32) -> Vec<(u32, u64)> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some((ppid, start, _)) = stat_of(pid) {
            all.push((pid, ppid, start));
        }
    }
    let mut found: Vec<(u32, u64)> = Vec::new();
    let mut parents = vec![root];
    while let Some(parent) = parents.pop() {
        for &(pid, ppid, start) in &all {
            if ppid == parent && !found.iter().any(|&(p, _)| p == pid) {
                found.push((pid, start));
                parents.push(pid);
            }
        }
    }
    found
}

/// Sends `signal` to the single process `pid`.
fn signal(pid: u32, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).unwrap();
    assert!(pid > 1, "refusing to signal pid {pid}");
    // SAFETY: kill(2) with a positive pid signals that one process; no memory is involved.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// The cell folders of `runs/<name>/cells` holding a `result.json`, and the first cell
/// without one whose training has written a checkpoint.
fn progress(cells: &Path) -> (BTreeSet<String>, Option<PathBuf>) {
    let mut done = BTreeSet::new();
    let mut training = None;
    let Ok(entries) = std::fs::read_dir(cells) else {
        return (done, training);
    };
    for cell in entries.flatten().map(|e| e.path()) {
        let name = cell.file_name().unwrap().to_string_lossy().into_owned();
        if cell.join("result.json").is_file() {
            done.insert(name);
        } else if cell.join("model/p17.checkpoint.safetensors").is_file() {
            training = Some(cell);
        }
    }
    (done, training)
}

#[test]
fn an_experiment_killed_mid_job_resumes_with_the_figures_of_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    support::textured_category(&cwd.join("mvtec"), "widget", 40, 40);
    random_teacher(&cwd.join("t17.safetensors"), 17);
    // Two students jobs (one per seed), one after the other.
    std::fs::write(
        cwd.join("exp.toml"),
        "table = \"table3\"\nname = \"k\"\npreset = \"smoke\"\nseeds = [0, 1]\n\
         [mvtec]\ndata = \"mvtec\"\n[students]\nscales = [17]\n\
         teachers = [\"t17.safetensors\"]\n",
    )
    .unwrap();
    // One thread per command in both runs (figures depend on how float sums are split).
    let experiment = |runs: &str| {
        let mut c = ust(cwd);
        c.env("RAYON_NUM_THREADS", "1")
            .args(["experiment", "exp.toml", "--runs", runs]);
        c
    };
    let summary = "2 jobs: 2 done, 0 failed, 0 not run";

    let t0 = Instant::now();
    let out = run_ok(&mut experiment("full"));
    assert!(String::from_utf8_lossy(&out.stdout).contains(summary));
    eprintln!("uninterrupted run: {:.1} s", t0.elapsed().as_secs_f64());
    let full = json(&only_run(&cwd.join("full/k")).join("results.json"));

    // The same experiment in another runs folder, killed while its second job trains.
    let cells = cwd.join("part/k/cells");
    let mut runner = experiment("part")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let (done, interrupted) = loop {
        assert!(
            runner.try_wait().unwrap().is_none(),
            "the experiment finished before it could be killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no second job training after 300 s"
        );
        if let (done, Some(training)) = progress(&cells)
            && !done.is_empty()
        {
            break (done, training);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // Freeze the runner so that it starts nothing new, note its commands, kill them all.
    signal(runner.id(), libc::SIGSTOP);
    let commands = descendants(runner.id());
    assert!(
        !commands.is_empty(),
        "the runner has no command running while its job trains"
    );
    runner.kill().unwrap(); // SIGKILL, to the runner's pid only
    runner.wait().unwrap();
    for &(pid, start) in &commands {
        // Still the same process (same start time), not a recycled pid.
        if stat_of(pid).is_some_and(|(_, s, _)| s == start) {
            signal(pid, libc::SIGKILL);
        }
    }
    // Orphans are reaped by init; wait until none is alive (gone or a zombie).
    let waited = Instant::now();
    while commands
        .iter()
        .any(|&(pid, start)| stat_of(pid).is_some_and(|(_, s, st)| s == start && st != 'Z'))
    {
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "commands still alive"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let interrupted_cell = interrupted
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(!interrupted.join("result.json").exists());
    assert!(
        !cwd.join("part/k")
            .read_dir()
            .unwrap()
            .any(|e| { e.unwrap().path().join("results.json").is_file() })
    );

    // Run again: the finished cell is kept, the interrupted one resumes.
    let out = run_ok(&mut experiment("part"));
    assert!(String::from_utf8_lossy(&out.stdout).contains(summary));
    let resumed = json(&only_run(&cwd.join("part/k")).join("results.json"));
    let (a, b) = (
        full["cells"].as_array().unwrap(),
        resumed["cells"].as_array().unwrap(),
    );
    assert_eq!(a.len(), 2);
    assert_eq!(b.len(), 2);
    for (f, r) in a.iter().zip(b) {
        let cell = r["cell"].as_str().unwrap();
        assert_eq!(f["name"], r["name"]);
        assert_eq!(f["cell"], r["cell"], "same configuration, same cell");
        assert_eq!(r["status"], "done");
        // Only the cells not finished at the kill ran again.
        assert_eq!(r["cached"], done.contains(cell), "{} cached", r["name"]);
        // The interrupted training went on from its checkpoint.
        let train_argv = r["result"]["steps"][0]["argv"].as_array().unwrap();
        assert_eq!(
            train_argv.iter().any(|a| a == "--resume"),
            cell == interrupted_cell,
            "{}: {train_argv:?}",
            r["name"]
        );
        // The numbers (AU-PRO, pixel and image AUROC per row); the timings and memory beside
        // them are measurements of the run.
        let rows = &r["result"]["figures"]["rows"];
        assert!(rows.as_array().is_some_and(|a| !a.is_empty()), "{r}");
        assert_eq!(
            &f["result"]["figures"]["rows"], rows,
            "{}: figures differ from the uninterrupted run",
            r["name"]
        );
    }
    // … and really continued from it (the training logs where it resumed).
    let log = std::fs::read_to_string(interrupted.join("job.log")).unwrap();
    assert!(log.contains("resumed student training"), "{log}");
    eprintln!("whole test: {:.1} s", t0.elapsed().as_secs_f64());
}

/// The one run folder of `runs/<experiment>/` that holds a `results.json`.
fn only_run(exp_dir: &Path) -> PathBuf {
    let runs: Vec<PathBuf> = std::fs::read_dir(exp_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("results.json").is_file())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs.into_iter().next().unwrap()
}
