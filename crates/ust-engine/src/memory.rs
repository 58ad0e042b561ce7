//! The process's peak resident memory, as the reports record it: this process's
//! ([`peak_rss_mib`]) and a child's, sampled while it runs ([`PeakMemory`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// `VmHWM` (the peak resident memory) of this process from `/proc/self/status`, in MiB; `None`
/// where there is no such file (not Linux).
pub fn peak_rss_mib() -> Option<f64> {
    vm_hwm_mib(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// `VmHWM` of a `/proc/<pid>/status` text, in MiB.
pub fn vm_hwm_mib(status: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Samples a process's peak resident memory (`VmHWM` in `/proc/<pid>/status`, which only
/// grows) every 200 ms while it runs; nothing on systems without `/proc`. The runner watches
/// each job's subprocess with it: a child's `VmHWM` is gone once it has been waited for.
pub struct PeakMemory {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Option<f64>>>,
}

impl PeakMemory {
    /// Starts sampling process `pid`.
    pub fn watch(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let status = PathBuf::from(format!("/proc/{pid}/status"));
        let thread = status.exists().then(|| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut peak: Option<f64> = None;
                loop {
                    if let Some(v) = std::fs::read_to_string(&status)
                        .ok()
                        .and_then(|t| vm_hwm_mib(&t))
                    {
                        peak = Some(peak.map_or(v, |p: f64| p.max(v)));
                    }
                    // One last sample after the stop request, so a short process still counts.
                    if stop.load(Ordering::Relaxed) {
                        return peak;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        });
        Self { stop, thread }
    }

    /// Stops sampling; the largest `VmHWM` seen, in MiB.
    pub fn finish(self) -> Option<f64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.and_then(|t| t.join().ok().flatten())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn vm_hwm_is_read_in_mib() {
        assert_eq!(
            super::vm_hwm_mib("Name:\tust\nVmHWM:\t  2048 kB\nVmRSS:\t 1 kB\n"),
            Some(2.0)
        );
        assert_eq!(super::vm_hwm_mib("Name:\tust\n"), None);
        let status = "Name:\tust\nVmPeak:\t  900000 kB\nVmHWM:\t  204800 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(super::vm_hwm_mib(status), Some(200.0));
        // This process: a positive peak.
        if let Ok(text) = std::fs::read_to_string("/proc/self/status") {
            assert!(super::vm_hwm_mib(&text).unwrap() > 0.0);
        }
    }

    /// A watched process's peak is read while it lives (this process, which outlives the
    /// watch), and nothing where there is no `/proc` entry.
    #[test]
    fn a_watched_process_has_a_peak() {
        let watch = super::PeakMemory::watch(std::process::id());
        let peak = watch.finish();
        if std::path::Path::new("/proc/self/status").exists() {
            assert!(peak.unwrap() > 0.0);
        }
        assert_eq!(super::PeakMemory::watch(u32::MAX).finish(), None);
    }
}
