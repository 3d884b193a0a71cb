//! CPU time and resident memory of a lab process, from `/proc`, for benchmarks that compare
//! our daemon with charon.

use std::time::Duration;

use crate::error::{LabError, Result};

/// /proc counts CPU time in USER_HZ ticks, 100 a second on every Linux ABI we run on.
const USER_HZ: u64 = 100;

/// User + system CPU time `pid` has used so far (all its threads).
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| LabError::io(&path, e))?;
    parse_cpu_ticks(&stat)
        .map(|ticks| Duration::from_millis(ticks * 1000 / USER_HZ))
        .ok_or_else(|| LabError::Usage(format!("unexpected {path}: {stat}")))
}

/// User + system CPU time of `pid` and of the child processes it has waited for (`nft`,
/// `ip`, … that a daemon runs to configure the host), so daemons that shell out are not
/// flattered.
pub fn cpu_time_with_children(pid: u32) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| LabError::io(&path, e))?;
    parse_cpu_ticks_with_children(&stat)
        .map(|ticks| Duration::from_millis(ticks * 1000 / USER_HZ))
        .ok_or_else(|| LabError::Usage(format!("unexpected {path}: {stat}")))
}

/// Fields 14 on of `/proc/PID/stat` (utime, stime, cutime, cstime), counted after the
/// parenthesised command name (which may itself hold spaces and parentheses).
fn stat_times(stat: &str) -> Option<[u64; 4]> {
    let rest = stat.rsplit_once(") ")?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let mut times = [0u64; 4];
    for t in &mut times {
        *t = fields.next()?.parse().ok()?;
    }
    Some(times)
}

/// utime + stime.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    stat_times(stat).map(|[u, s, _, _]| u + s)
}

/// utime + stime + cutime + cstime.
fn parse_cpu_ticks_with_children(stat: &str) -> Option<u64> {
    stat_times(stat).map(|t| t.iter().sum())
}

/// Resident set size of `pid` in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| LabError::io(&path, e))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| LabError::Usage(format!("no VmRSS in {path}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_an_odd_command_name() {
        let stat = "1234 (we (ird) name) S 1 1234 1234 0 -1 4194560 500 0 0 0 37 5 0 0 20 0 1 0";
        assert_eq!(parse_cpu_ticks(stat), Some(42));
        assert_eq!(parse_cpu_ticks_with_children(stat), Some(42));
        let with_children = "9 (sh) S 1 9 9 0 -1 0 0 0 0 0 37 5 100 8 20 0 1 0";
        assert_eq!(parse_cpu_ticks_with_children(with_children), Some(150));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn own_process_has_memory_and_cpu() {
        let me = std::process::id();
        assert!(rss_kib(me).unwrap() > 100);
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {
            std::hint::black_box(spin.elapsed());
        }
        assert!(cpu_time(me).unwrap() > Duration::ZERO);
    }
}
