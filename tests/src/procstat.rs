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

/// utime + stime, fields 14 and 15 of `/proc/PID/stat`, counted after the parenthesised
/// command name (which may itself hold spaces and parentheses).
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = stat.rsplit_once(") ")?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
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
