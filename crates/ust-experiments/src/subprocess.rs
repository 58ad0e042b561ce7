//! The runner's executor of real jobs: every command a subprocess of the `ust` binary, exactly
//! the `ust train`, `ust evaluate`, `ust baseline dense`, `ust oneclass` and `ust teacher`
//! commands a user could type. Its stderr is forwarded line by line (prefixed with the job's
//! name), both streams are copied into the job's log, and its peak memory is sampled while it
//! runs. The tests drive the queue with a fake [`Executor`] instead.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ust_engine::memory::PeakMemory;

use crate::runner::{CommandOutcome, Executor};

/// Lines of a failed command's stderr kept in the report.
const STDERR_TAIL: usize = 40;

/// The job commands that take `--device` (the others only read and write files).
const DEVICE_COMMANDS: [&[&str]; 5] = [
    &["train"],
    &["evaluate"],
    &["oneclass"],
    &["teacher", "train"],
    &["baseline", "dense"],
];

/// Runs each command as `exe ARGS` (`exe`: the `ust` binary).
#[derive(Debug, Clone)]
pub struct Subprocess {
    pub exe: PathBuf,
    /// `--device` of the jobs that run networks.
    pub device: String,
}

impl Subprocess {
    /// The executor of the running `ust` binary ([`current_binary`]).
    pub fn of_this_binary(device: &str) -> std::io::Result<Self> {
        Ok(Self {
            exe: current_binary()?,
            device: device.to_string(),
        })
    }
}

/// The program the jobs run: the running binary. On Linux `/proc/self/exe`, which still names
/// the running binary's file after a rebuild replaced it on disk (`current_exe` would then
/// name a deleted path); elsewhere `current_exe`.
pub fn current_binary() -> std::io::Result<PathBuf> {
    let proc_exe = Path::new("/proc/self/exe");
    if cfg!(target_os = "linux") && proc_exe.exists() {
        return Ok(proc_exe.to_path_buf());
    }
    std::env::current_exe()
}

/// `args` with `--device DEVICE` appended when the command runs networks on another device
/// than the CPU (so the CPU runs' command lines stay as they were).
pub fn with_device(args: &[String], device: &str) -> Vec<String> {
    let mut out = args.to_vec();
    let runs_networks = DEVICE_COMMANDS
        .iter()
        .any(|c| c.len() <= args.len() && c.iter().zip(args).all(|(a, b)| a == b));
    if device != "cpu" && runs_networks {
        out.extend(["--device".to_string(), device.to_string()]);
    }
    out
}

impl Executor for Subprocess {
    fn run(
        &self,
        args: &[String],
        name: &str,
        threads: Option<usize>,
        log: &mut dyn Write,
    ) -> std::result::Result<CommandOutcome, String> {
        let args = with_device(args, &self.device);
        run_command(&self.exe, &args, name, threads, log)
    }
}

/// Runs `exe args`, forwarding its stderr line by line (prefixed with `name`) and copying both
/// streams into `log`. Returns the exit code, the whole stdout, the last lines of stderr and
/// the peak resident memory sampled while it ran; an `Err` says why it could not run.
fn run_command(
    exe: &Path,
    args: &[String],
    name: &str,
    threads: Option<usize>,
    log: &mut dyn Write,
) -> std::result::Result<CommandOutcome, String> {
    let mut command = Command::new(exe);
    if let Some(t) = threads {
        command.env("RAYON_NUM_THREADS", t.to_string());
    }
    #[cfg(unix)]
    std::os::unix::process::CommandExt::arg0(&mut command, "ust");
    let mut child = command
        .args(args)
        // Plain log lines (no colour codes) in job.log and the report's stderr tail.
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", exe.display()))?;
    let memory = PeakMemory::watch(child.id());
    let mut stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let stdout_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stdout.read_to_end(&mut buf).map(|_| buf)
    });
    let mut tail: VecDeque<String> = VecDeque::with_capacity(STDERR_TAIL);
    let mut lines = Vec::new();
    for line in BufReader::new(stderr).split(b'\n') {
        let line = line.map_err(|e| format!("reading the job's stderr: {e}"))?;
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        eprintln!("  {name} | {text}");
        lines.push(text.clone());
        if tail.len() == STDERR_TAIL {
            tail.pop_front();
        }
        tail.push_back(text);
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for the job: {e}"))?;
    let peak = memory.finish();
    let out = stdout_reader
        .join()
        .map_err(|_| "the stdout reader panicked".to_string())?
        .map_err(|e| format!("reading the job's stdout: {e}"))?;
    let write_error = |e: std::io::Error| e.to_string();
    log.write_all(&out).map_err(write_error)?;
    for l in &lines {
        writeln!(log, "{l}").map_err(write_error)?;
    }
    Ok(CommandOutcome {
        code: status.code(),
        stdout: out,
        stderr_tail: tail.into_iter().collect(),
        peak_rss_mib: peak,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the commands that run networks get `--device`, and only off the CPU.
    #[test]
    fn the_device_reaches_the_jobs_that_run_networks() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let train = args(&["train", "--data", "d"]);
        assert_eq!(with_device(&train, "cpu"), train);
        assert_eq!(
            with_device(&train, "cuda:1"),
            args(&["train", "--data", "d", "--device", "cuda:1"])
        );
        let dense = args(&["baseline", "dense", "--p", "65"]);
        assert_eq!(with_device(&dense, "cuda").len(), dense.len() + 2);
        for files_only in [
            args(&["teacher", "export", "a", "b"]),
            args(&["teacher", "info", "a"]),
        ] {
            assert_eq!(with_device(&files_only, "cuda"), files_only);
        }
    }

    /// A real subprocess: its stdout comes back whole, its stderr as the tail, both in the
    /// log, and its exit status.
    #[cfg(unix)]
    #[test]
    fn a_subprocess_reports_its_streams_and_status() {
        let sh = Subprocess {
            exe: "/bin/sh".into(),
            device: "cpu".into(),
        };
        let args: Vec<String> = ["-c", "echo out; echo err >&2; exit 3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut log = Vec::new();
        let outcome = sh.run(&args, "job", Some(1), &mut log).unwrap();
        assert_eq!(outcome.code, Some(3));
        assert_eq!(outcome.stdout, b"out\n");
        assert_eq!(outcome.stderr_tail, ["err"]);
        assert_eq!(String::from_utf8(log).unwrap(), "out\nerr\n");
        let missing = Subprocess {
            exe: "/nonexistent/ust".into(),
            device: "cpu".into(),
        };
        let err = missing
            .run(&args, "job", None, &mut Vec::new())
            .unwrap_err();
        assert!(err.starts_with("starting /nonexistent/ust"), "{err}");
    }
}
