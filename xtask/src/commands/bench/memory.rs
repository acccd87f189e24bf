//! Peak memory per phase: the process's resident-set high-water mark (`VmHWM` in
//! `/proc/self/status`), reset before each phase by writing `5` to
//! `/proc/self/clear_refs` (Linux ≥ 4.0). Elsewhere both return nothing.

/// Resets the high-water mark to the current RSS; `false` where that is not possible.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The RSS high-water mark since the last reset (or process start), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
