//! What the benchmarks measure with: the one percentile definition their tables (and the
//! README's figures) use, the one [`Summary`] of a set of samples every benchmark table
//! reports, and a process's CPU time and resident memory from /proc.

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

/// What every benchmark table reports about a set of samples: their number, the smallest,
/// the nearest-rank median, p95 and p99 ([`percentile`], the one definition) and the largest.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub median: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    /// The summary of `samples` (in any order, left as they are); panics when there are none.
    pub fn of(samples: &[f64]) -> Summary {
        assert!(!samples.is_empty(), "no samples");
        let mut s = samples.to_vec();
        Summary {
            n: s.len(),
            median: percentile(&mut s, 50.0),
            p95: percentile(&mut s, 95.0),
            p99: percentile(&mut s, 99.0),
            // `percentile` left them sorted.
            min: s[0],
            max: s[s.len() - 1],
        }
    }

    /// The header cells of the five figures of `what` ("claim min | claim median | ..."),
    /// to go with [`Summary::cells`]; `n` has a column of its own.
    pub fn header(what: &str) -> String {
        ["min", "median", "p95", "p99", "max"]
            .map(|c| format!("{what} {c}"))
            .join(" | ")
    }

    /// The five figures as markdown table cells ("a | b | c | d | e"), each written by `f`.
    pub fn cells(&self, f: impl Fn(f64) -> String) -> String {
        [self.min, self.median, self.p95, self.p99, self.max]
            .map(f)
            .join(" | ")
    }
}

/// A duration uniformly distributed over [0, `below`), from the kernel's random source
/// (/dev/urandom): where a benchmark injects a failure or a change within a check cycle, so
/// that every phase of the cycle is equally likely. Zero when `below` is zero.
pub fn uniform(below: Duration) -> Duration {
    use std::io::Read;
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("read /dev/urandom");
    Duration::from_nanos(scale(u64::from_le_bytes(b), below.as_nanos() as u64))
}

/// An integer uniformly distributed over [0, `n`), from the same source as [`uniform`]: which
/// service a benchmark changes next. Panics when `n` is zero.
pub fn below(n: usize) -> usize {
    assert!(n > 0, "below(0)");
    use std::io::Read;
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("read /dev/urandom");
    scale(u64::from_le_bytes(b), n as u64) as usize
}

/// `r`, uniform over the u64s, mapped onto [0, n) by multiplying and keeping the high word
/// (bias below n / 2^64).
fn scale(r: u64, n: u64) -> u64 {
    ((u128::from(r) * u128::from(n)) >> 64) as u64
}

/// The CPU time a process has used so far, all its threads (those that have exited too), in
/// nanoseconds: the kernel's own count through the process's CPU-time clock
/// (`clock_getcpuclockid`), which has no tick granularity. `None` when the kernel does not
/// let this process read it; [`cpu_ticks`] is the coarse fallback. (Not
/// /proc/PID/schedstat: that is the main thread's time alone, and a multi-threaded daemon
/// spends most of its time in others.)
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `clock` is a valid place for the id; the call reads nothing else.
    if unsafe { libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) } != 0 {
        return None;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
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
    fn summary_of_one_sample_is_that_sample() {
        let s = Summary::of(&[4.2]);
        assert_eq!(
            s,
            Summary {
                n: 1,
                min: 4.2,
                median: 4.2,
                p95: 4.2,
                p99: 4.2,
                max: 4.2
            }
        );
    }

    #[test]
    fn summary_of_twenty_takes_ranks_10_19_20() {
        // 1, 2, 4, ..., 2^19, shuffled: every rank has its own value, and an interpolation
        // between neighbours (median 768, p95 ~2.8e5) would be none of the samples.
        let mut v: Vec<f64> = (0..20).map(|i| f64::from(1u32 << i)).collect();
        v.reverse();
        v.swap(3, 17);
        let s = Summary::of(&v);
        assert_eq!(s.n, 20);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.median, f64::from(1u32 << 9)); // the 10th: ⌈0.5 × 20⌉
        assert_eq!(s.p95, f64::from(1u32 << 18)); // the 19th: ⌈0.95 × 20⌉
        assert_eq!(s.p99, f64::from(1u32 << 19)); // the 20th: ⌈0.99 × 20⌉ = ⌈19.8⌉
        assert_eq!(s.max, f64::from(1u32 << 19));
        // The samples are left as they were.
        assert_eq!(v[0], f64::from(1u32 << 19));
    }

    #[test]
    fn summary_of_a_hundred_takes_ranks_50_95_99() {
        // 100 down to 1: interpolated, the median would be 50.5, p95 95.05, p99 99.01.
        let v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let s = Summary::of(&v);
        assert_eq!((s.n, s.min, s.max), (100, 1.0, 100.0));
        assert_eq!((s.median, s.p95, s.p99), (50.0, 95.0, 99.0));
        // The same figures as `percentile` itself: one definition.
        let mut w = v.clone();
        assert_eq!(s.median, percentile(&mut w, 50.0));
        assert_eq!(s.p99, percentile(&mut w, 99.0));
    }

    #[test]
    fn summary_cells_and_header_line_up() {
        let s = Summary::of(&[3.0, 1.0, 2.0]);
        assert_eq!(
            s.cells(|x| format!("{x:.1} s")),
            "1.0 s | 2.0 s | 3.0 s | 3.0 s | 3.0 s"
        );
        assert_eq!(
            Summary::header("claim"),
            "claim min | claim median | claim p95 | claim p99 | claim max"
        );
    }

    #[test]
    #[should_panic(expected = "no samples")]
    fn summary_of_nothing_panics() {
        Summary::of(&[]);
    }

    #[test]
    fn uniform_covers_the_range_and_stays_below_it() {
        assert_eq!(scale(0, 1000), 0);
        assert_eq!(scale(u64::MAX, 1000), 999);
        assert_eq!(scale(1 << 63, 1000), 500);
        assert_eq!(uniform(Duration::ZERO), Duration::ZERO);
        let cycle = Duration::from_millis(250);
        let draws: Vec<Duration> = (0..200).map(|_| uniform(cycle)).collect();
        assert!(draws.iter().all(|d| *d < cycle));
        // 200 draws all in one half of the cycle: 2^-199 by chance.
        assert!(draws.iter().any(|d| *d < cycle / 2));
        assert!(draws.iter().any(|d| *d >= cycle / 2));
        let picks: Vec<usize> = (0..200).map(|_| below(3)).collect();
        assert!(picks.iter().all(|p| *p < 3));
        assert!((0..3).all(|k| picks.contains(&k)));
    }

    #[test]
    fn cpu_time_of_this_process_grows() {
        let me = std::process::id();
        let before = cpu_time(me).expect("this process's CPU clock");
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_time(me).unwrap() > before);
    }

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
