//! The pages of the daemon's own binary that only starting ran, given back once it runs.
//!
//! Reading the configuration, validating it and building the clients touch code all over the
//! binary (argument parsing, TOML, serde, rustls, the metrics registry), and the kernel maps
//! a whole 64 KiB window around every page a fault touches (its `fault_around_bytes`). Those
//! pages would stay mapped, and counted in the daemon's RSS, for as long as it runs: about
//! 5 MB of a 2-core VM's 10.6 MB of file pages at 10 rules (docs/benchmarks.md, "Memory").
//!
//! Once the daemon runs, [`release`] tells the kernel it no longer needs the pages of its
//! binary's read-only mappings (`madvise(2)` `MADV_DONTNEED`). The pages stay in the page cache
//! (no I/O, nothing is lost: they are the file's own, unmodified contents) and the code the
//! daemon runs again comes back on first use, as a minor fault. Unmapped, they are also what
//! the kernel reclaims first under memory pressure. A mapping with any page of its own (a
//! relocation written at load time, a debugger's breakpoint: `Anonymous` in
//! `/proc/self/smaps`) or one that can be written is never touched: dropping such a page
//! would lose what was written.
//!
//! The heap is the other half: a burst of checks in flight at once (a HAProxy that stalls
//! for a few seconds holds every rule's connection and hyper's buffers open together) leaves
//! glibc's allocator holding megabytes it has freed. [`housekeeping`] asks it to give them
//! back (`malloc_trim(3)`) every [`TRIM_EVERY`].

use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long after start-up or a reload [`release`] runs: every rule has run its first check
/// by then at the usual intervals, so the code checking needs is mapped again at once.
pub const AFTER: Duration = Duration::from_secs(10);

/// How often the allocator is asked to return the memory it holds free.
pub const TRIM_EVERY: Duration = Duration::from_secs(60);

/// The latest [`release_soon`]: a release scheduled before it does not run (reloads in a
/// row release once, after the last).
static SCHEDULED: AtomicU64 = AtomicU64::new(0);

/// One mapping of `/proc/self/smaps`, as far as [`release`] needs it.
#[derive(Debug, Default)]
struct Mapping {
    start: usize,
    end: usize,
    /// `r-xp`, `r--p`, `rw-p`...
    perms: String,
    /// The mapped file's device (`fe:00`) and inode.
    dev: String,
    inode: u64,
    /// kB resident.
    rss_kb: u64,
    /// kB of pages of its own (copied on write): never dropped.
    anonymous_kb: u64,
}

impl Mapping {
    /// Read-only, private, none of its own pages: dropping it loses nothing.
    fn droppable(&self) -> bool {
        self.perms.starts_with('r')
            && self.perms.as_bytes().get(1) == Some(&b'-')
            && self.perms.ends_with('p')
            && self.anonymous_kb == 0
    }
}

/// The mappings of `/proc/self/smaps` (its text given as `smaps`).
fn mappings(smaps: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or_default();
        if let Some((lo, hi)) = first.split_once('-') {
            // A mapping's header line: "start-end perms offset dev inode [path]".
            let (Ok(start), Ok(end)) =
                (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            else {
                continue;
            };
            let perms = f.next().unwrap_or_default().to_owned();
            let _offset = f.next();
            let dev = f.next().unwrap_or_default().to_owned();
            let inode = f.next().and_then(|i| i.parse().ok()).unwrap_or(0);
            out.push(Mapping {
                start,
                end,
                perms,
                dev,
                inode,
                ..Mapping::default()
            });
            continue;
        }
        let mut kb = || f.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        match (first, out.last_mut()) {
            ("Rss:", Some(m)) => m.rss_kb = kb(),
            ("Anonymous:", Some(m)) => m.anonymous_kb = kb(),
            _ => {}
        }
    }
    out
}

/// Tells the kernel the daemon no longer needs the resident pages of its own binary's
/// read-only mappings (see the module documentation). Returns the kB that were resident in
/// the mappings given back.
///
/// Errors: `/proc/self/exe` or `/proc/self/smaps` cannot be read (no `/proc`), or the kernel
/// refused `madvise` (then nothing was dropped from that mapping; the others are still given
/// back). Either way the daemon runs as before, only with a larger RSS.
pub fn release() -> io::Result<u64> {
    let exe = std::fs::metadata("/proc/self/exe")?;
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    // smaps prints the device as major:minor in hex.
    let dev = format!(
        "{:02x}:{:02x}",
        libc::major(exe.dev() as libc::dev_t),
        libc::minor(exe.dev() as libc::dev_t)
    );
    let mut released = 0;
    let mut refused = None;
    for m in mappings(&smaps) {
        if m.inode != exe.ino() || m.dev != dev || !m.droppable() || m.rss_kb == 0 {
            continue;
        }
        // SAFETY: the range is a whole mapping of this process, read-only and without a page
        // of its own, so MADV_DONTNEED only unmaps file pages the next access maps again
        // from the page cache, unchanged (madvise(2)). No Rust object lives in it.
        let r = unsafe {
            libc::madvise(
                m.start as *mut libc::c_void,
                m.end - m.start,
                libc::MADV_DONTNEED,
            )
        };
        if r == 0 {
            released += m.rss_kb;
        } else {
            refused = Some(io::Error::last_os_error());
        }
    }
    match refused {
        Some(e) if released == 0 => Err(e),
        _ => Ok(released),
    }
}

/// Runs [`release`] and a heap trim [`AFTER`] from now, on a task of its own, unless another
/// call comes meanwhile (then only the last one runs). Logs the kB that were resident in the
/// mappings given back (DEBUG; some come back at once, as the code running uses them), or
/// why nothing could be (DEBUG too, with `error`: the daemon runs on, with a larger RSS).
pub fn release_soon() {
    let mine = SCHEDULED.fetch_add(1, Ordering::SeqCst) + 1;
    tokio::spawn(async move {
        tokio::time::sleep(AFTER).await;
        if SCHEDULED.load(Ordering::SeqCst) != mine {
            return;
        }
        match tokio::task::spawn_blocking(|| {
            trim_heap();
            release()
        })
        .await
        {
            Ok(Ok(kb)) => tracing::debug!(
                event = crate::telemetry::events::STARTUP_PAGES_RELEASED,
                released_kb = kb,
                "pages of the binary only starting used were given back"
            ),
            Ok(Err(e)) => tracing::debug!(event = crate::telemetry::events::STARTUP_PAGES_RELEASED,
                error = %e, "the pages of the binary only starting used stay mapped"),
            Err(_) => {}
        }
    });
}

/// Asks the allocator to return to the kernel the memory it holds free (glibc's
/// `malloc_trim(0)`: the top of each arena, and every whole free page inside them). True when
/// some was. Elsewhere than glibc, nothing.
pub fn trim_heap() -> bool {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: malloc_trim takes no pointer and is thread-safe (it locks each arena).
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        false
    }
}

/// Trims the heap every [`TRIM_EVERY`] for as long as the runtime runs (see the module
/// documentation). The trim runs on the blocking pool: it holds each arena's lock while it
/// walks it, for well under a millisecond at the daemon's sizes.
pub fn housekeeping() -> tokio::task::JoinHandle<()> {
    tokio::spawn(async {
        let mut every = tokio::time::interval(TRIM_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            every.tick().await;
            if let Ok(released) = tokio::task::spawn_blocking(trim_heap).await {
                tracing::debug!(
                    event = crate::telemetry::events::HEAP_TRIMMED,
                    released,
                    rss_kb = resident_kb(),
                );
            }
        }
    })
}

/// The daemon's resident set in kB (`/proc/self/statm`'s second field, in pages); None
/// where it cannot be read.
fn resident_kb() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(page).ok().map(|p| pages * p / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of_exe() -> Vec<Mapping> {
        let exe = std::fs::metadata("/proc/self/exe").unwrap();
        mappings(&std::fs::read_to_string("/proc/self/smaps").unwrap())
            .into_iter()
            .filter(|m| m.inode == exe.ino())
            .collect()
    }

    #[test]
    fn the_pages_only_starting_used_are_given_back_and_come_back_when_run_again() {
        let before = of_exe();
        let (dropped, kept): (Vec<_>, Vec<_>) = before.iter().partition(|m| m.droppable());
        assert!(!dropped.is_empty() && !kept.is_empty(), "{before:?}");
        assert!(
            dropped.iter().any(|m| m.perms == "r-xp" && m.rss_kb > 0),
            "{before:?}"
        );
        let released = release().unwrap();
        assert!(released > 0);
        let after = of_exe();
        let rss = |ms: &[Mapping], droppable: bool| -> u64 {
            ms.iter()
                .filter(|m| m.droppable() == droppable)
                .map(|m| m.rss_kb)
                .sum()
        };
        // What runs now (this test, the harness) comes back at once; the rest stays out.
        assert!(
            rss(&after, true) < rss(&before, true),
            "{before:?}\n{after:?}"
        );
        // Pages written at load time (relocations) or since are never dropped.
        for m in before.iter().filter(|m| !m.droppable()) {
            let now = after.iter().find(|a| a.start == m.start).unwrap();
            assert!(now.rss_kb >= m.anonymous_kb, "{m:?} became {now:?}");
        }
        // And the code runs again as it was: parsing text exercises code not run above.
        let parsed: toml::Table = toml::from_str("a = 1\n[b]\nc = \"d\"").unwrap();
        assert_eq!(parsed["b"]["c"].as_str(), Some("d"));
    }

    /// A burst of buffers freed together is given back by the trim: the kind breaker 7 found
    /// (RSS 19 -> 27 MB after checks timed out together, and staying there).
    #[test]
    fn a_burst_of_freed_buffers_is_given_back_by_the_trim() {
        let anon = || -> u64 {
            std::fs::read_to_string("/proc/self/smaps_rollup")
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix("Anonymous:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap()
        };
        // 4,000 buffers of 16 kB (as a thousand checks' hyper buffers), every hundredth kept
        // a moment longer so that the freed ones cannot all merge into the arena's top.
        let mut bufs: Vec<Vec<u8>> = (0..4000).map(|i| vec![i as u8; 16 * 1024]).collect();
        let keep: Vec<Vec<u8>> = bufs.iter().step_by(100).cloned().collect();
        let held = anon();
        bufs.clear();
        bufs.shrink_to_fit();
        trim_heap();
        let after = anon();
        assert!(
            after + 30 * 1024 < held,
            "{held} kB before, {after} kB after the trim"
        );
        drop(keep);
    }

    #[test]
    fn the_resident_set_the_trim_logs_is_this_processes() {
        let rss = resident_kb().expect("statm reads");
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let vm_rss: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap();
        // Read a moment apart, by two routes: within a few MB of each other.
        assert!(
            rss.abs_diff(vm_rss) < 4096,
            "{rss} kB against VmRSS {vm_rss} kB"
        );
        assert!(rss > 1024, "{rss} kB");
    }

    #[test]
    fn only_unwritten_read_only_private_mappings_are_droppable() {
        let smaps = "\
55d0-55e0 r--p 00000000 fe:00 42 /usr/bin/haproxy-watchdog
Rss:                 100 kB
Anonymous:             0 kB
55e0-55f0 r-xp 00010000 fe:00 42 /usr/bin/haproxy-watchdog
Rss:                 200 kB
Anonymous:             0 kB
55f0-5600 r--p 00020000 fe:00 42 /usr/bin/haproxy-watchdog
Rss:                  40 kB
Anonymous:            40 kB
5600-5610 rw-p 00030000 fe:00 42 /usr/bin/haproxy-watchdog
Rss:                   8 kB
Anonymous:             0 kB
5610-5620 r--s 00000000 fe:00 43 /dev/shm/x
Rss:                   4 kB
Anonymous:             0 kB
";
        let ms = mappings(smaps);
        assert_eq!(ms.len(), 5);
        assert_eq!(
            ms.iter().map(|m| m.droppable()).collect::<Vec<_>>(),
            [true, true, false, false, false]
        );
        assert_eq!(
            (ms[1].start, ms[1].end, ms[1].rss_kb),
            (0x55e0, 0x55f0, 200)
        );
        assert_eq!((ms[0].dev.as_str(), ms[0].inode), ("fe:00", 42));
    }
}
