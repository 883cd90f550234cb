//! What the benchmarks measure with: the one percentile definition their tables (and the
//! README's figures) use, and a process's CPU time and resident memory from /proc.

use std::time::Duration;

/// The `p`th percentile (`p` in percent, 0 < p <= 100) of `samples`, by the **nearest-rank**
/// method: the smallest sample that at least `p` % of the samples are less than or equal to,
/// that is the ⌈p/100 × n⌉-th smallest (the median of 5 samples is the 3rd, their p95 the
/// 5th). It is always one of the samples, never an interpolation. Sorts `samples`; panics
/// when there are none.
pub fn percentile(samples: &mut [f64], p: f64) -> f64 {
    assert!(!samples.is_empty(), "no samples");
    assert!(p > 0.0 && p <= 100.0, "percentile {p} outside (0, 100]");
    samples.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * samples.len() as f64).ceil().max(1.0) as usize;
    samples[rank.min(samples.len()) - 1]
}

/// CPU time of a process in clock ticks (USER_HZ), from /proc/PID/stat.
#[derive(Clone, Copy, Debug)]
pub struct CpuTicks {
    /// Its own user and system time.
    pub own: u64,
    /// The user and system time of its children it has waited for (e.g. `haproxy -c`).
    pub children: u64,
}

pub fn cpu_ticks(pid: u32) -> CpuTicks {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // After "pid (comm) ": utime, stime, cutime and cstime are fields 14 to 17 of the line,
    // 12 to 15 here (the name may hold spaces, hence the last ')').
    let rest = &stat[stat.rfind(')').expect("(comm)") + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    CpuTicks {
        own: f[11] + f[12],
        children: f[13] + f[14],
    }
}

/// `ticks` of CPU time spent over `over`, in percent of one core.
pub fn cpu_percent(ticks: u64, over: Duration) -> f64 {
    const USER_HZ: f64 = 100.0; // on Linux
    ticks as f64 / USER_HZ / over.as_secs_f64() * 100.0
}

/// Resident memory of a process in MB (VmRSS of /proc/PID/status).
pub fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in kB");
    kb / 1024.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let mut five = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(percentile(&mut five, 50.0), 3.0);
        assert_eq!(percentile(&mut five, 95.0), 5.0);
        assert_eq!(percentile(&mut five, 20.0), 1.0);
        assert_eq!(percentile(&mut five, 21.0), 2.0);
        let mut one = [7.0];
        assert_eq!(percentile(&mut one, 50.0), 7.0);
        let mut fifty: Vec<f64> = (1..=50).map(f64::from).collect();
        assert_eq!(percentile(&mut fifty, 50.0), 25.0);
        assert_eq!(percentile(&mut fifty, 95.0), 48.0);
        let mut sixteen: Vec<f64> = (1..=16).map(f64::from).collect();
        assert_eq!(percentile(&mut sixteen, 50.0), 8.0);
        assert_eq!(percentile(&mut sixteen, 95.0), 16.0);
    }
}
