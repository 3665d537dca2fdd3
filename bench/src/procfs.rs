//! A process's CPU time and memory, read from Linux's /proc (proc(5)).

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

/// CPU time (user + system, in clock ticks) and memory (in KiB) of a process at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcSnapshot {
    pub cpu_ticks: u64,
    pub vm_hwm_kb: Option<u64>,
    pub vm_rss_kb: Option<u64>,
}

/// `pid` is a number, or `self`.
pub fn snapshot(pid: &str) -> Result<ProcSnapshot> {
    let dir = PathBuf::from("/proc").join(pid);
    let stat = std::fs::read_to_string(dir.join("stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(dir.join("status")).with_context(|| format!("reading /proc/{pid}/status"))?;
    let (utime, stime) = parse_stat_cpu_ticks(&stat).ok_or_else(|| anyhow!("cannot parse /proc/{pid}/stat"))?;
    Ok(ProcSnapshot {
        cpu_ticks: utime + stime,
        vm_hwm_kb: parse_status_kb(&status, "VmHWM"),
        vm_rss_kb: parse_status_kb(&status, "VmRSS"),
    })
}

/// `utime` and `stime` (fields 14 and 15) of a /proc/PID/stat line. The second field, the
/// command name in parentheses, may itself hold spaces and parentheses, so the fields are
/// counted from the last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<(u64, u64)> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // after_comm starts with field 3 (state), so field n is at index n - 3.
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let utime = fields.get(14 - 3)?.parse().ok()?;
    let stime = fields.get(15 - 3)?.parse().ok()?;
    Some((utime, stime))
}

/// A `Name:   1234 kB` line of /proc/PID/status, in KiB.
pub fn parse_status_kb(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(':')?;
        let mut parts = value.split_whitespace();
        let number = parts.next()?.parse().ok()?;
        matches!(parts.next(), Some("kB") | None).then_some(number)
    })
}

/// Clock ticks per second for /proc/PID/stat (sysconf(_SC_CLK_TCK)), asked of getconf(1)
/// since the workspace forbids the `unsafe` a direct sysconf call needs. Linux has used 100
/// on every common architecture for a long time, which is the fallback.
pub fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .filter(|&ticks: &u64| ticks > 0)
        .unwrap_or(100)
}

/// CPU and memory of a process over a run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProcessUsage {
    pub pid: String,
    pub cpu_s: f64,
    pub cpu_ms_per_issuance: Option<f64>,
    /// Peak resident set size since the process started (VmHWM), at the end of the run.
    pub vm_hwm_kb: Option<u64>,
    /// Resident set size at the end of the run (VmRSS).
    pub vm_rss_kb: Option<u64>,
}

pub fn usage(
    pid: &str,
    before: &ProcSnapshot,
    after: &ProcSnapshot,
    ticks_per_second: u64,
    successes: u64,
) -> ProcessUsage {
    let cpu_s = after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 / ticks_per_second as f64;
    ProcessUsage {
        pid: pid.to_string(),
        cpu_s,
        cpu_ms_per_issuance: crate::stats::per_issuance(cpu_s * 1000.0, successes),
        vm_hwm_kb: after.vm_hwm_kb,
        vm_rss_kb: after.vm_rss_kb,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real line's shape, with a command name that has a space and a parenthesis in it.
    const STAT: &str = "4242 (dualca (x) y) S 1 4242 4242 0 -1 4194560 9637 0 3 0 1234 567 0 0 20 0 \
                        21 0 12345 1234567890 12000 18446744073709551615 1 1 0 0 0 0 0 4096 17664 0 0 0 \
                        17 1 0 0 0 0 0\n";

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        assert_eq!(parse_stat_cpu_ticks(STAT), Some((1234, 567)));
        assert_eq!(parse_stat_cpu_ticks("12 (short) S 1 2"), None);
        assert_eq!(parse_stat_cpu_ticks("no parenthesis"), None);
    }

    #[test]
    fn status_lines_in_kib() {
        let status = "Name:\tdualca\nVmPeak:\t  900000 kB\nVmHWM:\t   45678 kB\nVmRSS:\t   40000 kB\n";
        assert_eq!(parse_status_kb(status, "VmHWM"), Some(45678));
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(40000));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
        // `VmRSS` must not match a longer name that starts with it.
        assert_eq!(parse_status_kb("VmRSSx:\t1 kB\n", "VmRSS"), None);
    }

    #[test]
    fn usage_is_the_delta_per_issuance() {
        let before = ProcSnapshot { cpu_ticks: 1000, vm_hwm_kb: Some(10), vm_rss_kb: Some(10) };
        let after = ProcSnapshot { cpu_ticks: 1250, vm_hwm_kb: Some(50_000), vm_rss_kb: Some(40_000) };
        let u = usage("7", &before, &after, 100, 500);
        assert_eq!(u.cpu_s, 2.5);
        assert_eq!(u.cpu_ms_per_issuance, Some(5.0));
        assert_eq!(u.vm_hwm_kb, Some(50_000));
        assert_eq!(usage("7", &before, &after, 100, 0).cpu_ms_per_issuance, None);
    }

    #[test]
    fn this_process_can_be_read() {
        let me = snapshot("self").unwrap();
        assert!(me.vm_rss_kb.unwrap() > 0);
    }
}
