//! The process's peak resident memory, as the reports record it.

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

#[cfg(test)]
mod tests {
    #[test]
    fn vm_hwm_is_read_in_mib() {
        assert_eq!(
            super::vm_hwm_mib("Name:\tust\nVmHWM:\t  2048 kB\nVmRSS:\t 1 kB\n"),
            Some(2.0)
        );
        assert_eq!(super::vm_hwm_mib("Name:\tust\n"), None);
    }
}
