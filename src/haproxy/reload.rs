//! Hitless reloads of HAProxy, at most one per window for each HAProxy (rules that share a
//! reload method share its window), each confirmed by what HAProxy shows: the master CLI's
//! `Success=1` (2.7 and later), its `show proc` (2.6, which answers `reload` with nothing), or
//! a new process on the stats socket (a reload command).

use crate::config::{ReloadMethod, ReloadSpec};
use crate::telemetry::events;
use crate::telemetry::metrics::Metrics;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// Why a reload failed, or was not seen to succeed. HAProxy's master CLI is described in the
/// HAProxy management guide, "9.4. Master CLI" (`reload`, `show proc`).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The whole reload, waits included, ran past `reload.timeout`.
    #[error("HAProxy did not show a finished reload within {} (reload.timeout)", humantime::format_duration(*timeout))]
    Timeout { timeout: Duration },
    /// The master CLI answered `reload` with `Success=0` (2.7 and later); `alerts` is
    /// HAProxy's own text: its `[ALERT]` lines, else its startup log (see [`alerts`]).
    #[error("HAProxy's master refused the reload: {alerts}")]
    MasterRefused { alerts: String },
    /// HAProxy 2.6: `show proc` after the reload shows its failure counter up or no new
    /// worker.
    #[error(
        "HAProxy's master reports the reload failed (show proc: reloads {} -> {}, failed {} -> {}; worker {} still serves). \
         HAProxy 2.6's master CLI does not say why: the master's [ALERT] lines are in HAProxy's own log",
        before.reloads,
        after.reloads,
        before.failed.unwrap_or(0),
        after.failed.map_or("?".to_owned(), |f| f.to_string()),
        pids(&after.workers)
    )]
    MasterReportsFailure { before: ProcTable, after: ProcTable },
    /// The master's reload counter did not pass its count before the reload by
    /// `reload.timeout`. `last` is a composed explanation of the last poll: "no answer", "its
    /// reload counter is still N", or the error of that `show proc`.
    #[error("HAProxy's master did not show the reload finished in time (reload.timeout): {last}")]
    NotFinished { last: String },
    /// A master CLI connection failed.
    #[error("HAProxy master socket {}: {source}", path.display())]
    Master {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The master CLI did not answer `line` within [`MASTER_TIMEOUT`].
    #[error("HAProxy master socket {}: no answer to `{line}` within {}", path.display(), humantime::format_duration(MASTER_TIMEOUT))]
    MasterNoAnswer { path: PathBuf, line: String },
    /// `show proc` has a `master` line without its reload counter.
    #[error("`show proc`: no reload counter in {line:?}")]
    NoReloadCounter { line: String },
    /// `show proc` has no `master` line; `excerpt` is the reply's first 120 characters.
    #[error("unexpected answer to `show proc` on the master CLI: {excerpt}")]
    UnexpectedProc { excerpt: String },
    /// The reload command (`command`, its argv joined) ran past `reload.timeout`.
    #[error("`{command}` did not finish in time (reload.timeout)")]
    CommandTimeout { command: String },
    /// The reload command's program could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    /// The reload command exited with a failure; `stderr` is the start of what it printed.
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    /// The reload command succeeded, but the stats socket still answers from process `pid`.
    #[error("`{command}` succeeded, but stats socket {} still answers from process {pid}: the reload failed (HAProxy's log says why)", socket.display())]
    NotReloaded {
        command: String,
        socket: PathBuf,
        pid: u32,
    },
    /// The reload command succeeded, and then the stats socket could not tell which process
    /// answers on it.
    #[error("`{command}` succeeded, but after it: {source}")]
    AfterCommand {
        command: String,
        source: Box<ReloadError>,
    },
    /// The stats socket could not be used (see [`super::socket::SocketError`]).
    #[error(transparent)]
    Socket(#[from] super::socket::SocketError),
    /// The stats socket did not answer `show info` within [`MASTER_TIMEOUT`].
    #[error("stats socket {}: no answer", socket.display())]
    StatsNoAnswer { socket: PathBuf },
    /// `show info` on the stats socket has no `Pid:` line.
    #[error("stats socket {}: `show info` has no Pid", socket.display())]
    NoPid { socket: PathBuf },
}

pub struct Reloader {
    method: ReloadMethod,
    /// `haproxy_reloads_total`, `haproxy_reload_failures_total`.
    metrics: Arc<Metrics>,
    last: Mutex<Option<Instant>>,
    /// One reload at a time.
    running: tokio::sync::Mutex<()>,
}

/// The reloaders of each HAProxy, by reload method: every rule that reloads one HAProxy the
/// same way shares its window. Owned by the daemon (it outlives one configuration, so a SIGHUP
/// does not reopen a window a reload has just used).
pub struct Reloaders(Mutex<HashMap<ReloadMethod, Arc<Reloader>>>, Arc<Metrics>);

impl Reloaders {
    /// None yet; each counts its reloads in `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Reloaders(Mutex::default(), metrics)
    }

    /// The reloader of the HAProxy `method` reloads, made on first use.
    pub fn for_method(&self, method: &ReloadMethod) -> Arc<Reloader> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(method.clone())
            .or_insert_with(|| {
                Arc::new(Reloader {
                    metrics: self.1.clone(),
                    method: method.clone(),
                    last: Mutex::new(None),
                    running: tokio::sync::Mutex::new(()),
                })
            })
            .clone()
    }
}

impl Reloader {
    /// How long until a reload is allowed again (zero: now).
    pub fn wait_needed(&self, window: Duration) -> Duration {
        let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
        match last {
            Some(t) => (t + window).saturating_duration_since(Instant::now()),
            None => Duration::ZERO,
        }
    }

    /// Reload now (the caller has waited out the window), and confirm HAProxy did: a reload
    /// counts as done only when HAProxy shows it. Master CLI: 3.0 answers `Success=1`; 2.6
    /// answers nothing, so its `show proc` must show the master's reload counter gone up with
    /// no failure and a new worker PID. A command: the stats socket `stats_socket` must then
    /// answer from a new process (`show info` Pid). A failed reload is an error with
    /// HAProxy's own `[ALERT]` lines when it gives them.
    pub async fn reload(&self, spec: &ReloadSpec, stats_socket: &Path) -> Result<(), ReloadError> {
        let _one = self.running.lock().await;
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.metrics.haproxy_reload();
        let deadline = Instant::now() + spec.timeout;
        // Every wait inside ends by the deadline with what it saw; this is the backstop.
        let r =
            match tokio::time::timeout(spec.timeout + POLL * 5, self.run(stats_socket, deadline))
                .await
            {
                Ok(r) => r,
                Err(_) => Err(ReloadError::Timeout {
                    timeout: spec.timeout,
                }),
            };
        match &r {
            Ok(worker) => {
                tracing::info!(event = events::HAPROXY_RELOADED, method = %self.describe(), worker = %worker)
            }
            Err(e) => {
                self.metrics.haproxy_reload_failed();
                tracing::error!(event = events::HAPROXY_RELOAD_FAILED, method = %self.describe(), error = %e)
            }
        }
        r.map(|_| ())
    }

    fn describe(&self) -> String {
        match &self.method {
            ReloadMethod::MasterSocket(p) => format!("master socket {}", p.display()),
            ReloadMethod::Command(c) => format!("command {}", c.join(" ")),
        }
    }

    /// Reload and wait until HAProxy shows the outcome; Ok: what now serves (for the log).
    async fn run(&self, stats_socket: &Path, deadline: Instant) -> Result<String, ReloadError> {
        match &self.method {
            ReloadMethod::MasterSocket(path) => {
                let before = parse_show_proc(&master_command(path, "show proc").await?)?;
                let reply = master_command(path, "reload").await?;
                match reload_status(&reply) {
                    Some(true) => {
                        let after = wait_for_reload(path, &before, deadline).await?;
                        Ok(format!("worker {}", after.new_worker(&before).unwrap_or(0)))
                    }
                    Some(false) => Err(ReloadError::MasterRefused {
                        alerts: alerts(&reply),
                    }),
                    // HAProxy 2.6 closes without a word: ask the master what became of it.
                    None => {
                        let after = wait_for_reload(path, &before, deadline).await?;
                        match after.new_worker(&before) {
                            Some(pid) if after.failed.unwrap_or(0) == 0 => {
                                Ok(format!("worker {pid}"))
                            }
                            _ => Err(ReloadError::MasterReportsFailure { before, after }),
                        }
                    }
                }
            }
            ReloadMethod::Command(argv) => {
                let before = worker_pid(stats_socket).await.ok();
                let out = tokio::time::timeout_at(
                    deadline,
                    tokio::process::Command::new(&argv[0])
                        .args(&argv[1..])
                        .stdin(std::process::Stdio::null())
                        .kill_on_drop(true)
                        .output(),
                )
                .await
                .map_err(|_| ReloadError::CommandTimeout {
                    command: argv.join(" "),
                })?
                .map_err(|source| ReloadError::Spawn {
                    program: argv[0].clone(),
                    source,
                })?;
                if !out.status.success() {
                    return Err(ReloadError::CommandFailed {
                        command: argv.join(" "),
                        status: out.status,
                        stderr: String::from_utf8_lossy(&out.stderr)
                            .trim()
                            .chars()
                            .take(300)
                            .collect::<String>(),
                    });
                }
                // `systemctl reload` returns as soon as the master has its signal, whatever
                // becomes of the reload: only a new process on the stats socket shows it.
                loop {
                    let last = match worker_pid(stats_socket).await {
                        Ok(pid) if Some(pid) != before => return Ok(format!("process {pid}")),
                        Ok(pid) => ReloadError::NotReloaded {
                            command: argv.join(" "),
                            socket: stats_socket.to_owned(),
                            pid,
                        },
                        Err(e) => ReloadError::AfterCommand {
                            command: argv.join(" "),
                            source: Box::new(e),
                        },
                    };
                    if Instant::now() + POLL >= deadline {
                        return Err(last);
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    }
}

/// Reloads HAProxy took without bringing the wanted servers, before the same configuration
/// is held back.
pub const MAX_ATTEMPTS: u32 = 3;
/// The first hold after [`MAX_ATTEMPTS`]; it doubles with each further attempt up to
/// [`MAX_HOLD`].
pub const FIRST_HOLD: Duration = Duration::from_secs(60);
/// The longest a held-back configuration waits for its next attempt.
pub const MAX_HOLD: Duration = Duration::from_secs(3600);

/// Reloads of one rendered configuration that HAProxy performed but after which it did not
/// serve the wanted servers (a reload cannot fix what it brings back, e.g. a template that
/// leaves servers out). After [`MAX_ATTEMPTS`] the same configuration is reloaded again only
/// after a hold, so a rule never reloads HAProxy over and over. Any other configuration
/// (`key`) starts afresh.
#[derive(Debug, Default)]
pub struct Attempts {
    key: Option<u64>,
    failed: u32,
    hold_until: Option<Instant>,
    last: String,
}

impl Attempts {
    /// While `key` is held back: how long still, after how many attempts, and the last error.
    pub fn held(&self, key: u64, now: Instant) -> Option<(Duration, u32, &str)> {
        match self.hold_until {
            Some(t) if self.key == Some(key) && t > now => {
                Some((t - now, self.failed, self.last.as_str()))
            }
            _ => None,
        }
    }

    /// One more attempt for `key` did not take; Some(hold) when that starts a hold.
    pub fn failed(&mut self, key: u64, now: Instant, error: &str) -> Option<Duration> {
        if self.key != Some(key) {
            *self = Attempts {
                key: Some(key),
                ..Attempts::default()
            };
        }
        self.failed += 1;
        self.last = error.to_owned();
        if self.failed < MAX_ATTEMPTS {
            return None;
        }
        let doublings = (self.failed - MAX_ATTEMPTS).min(16);
        let hold = (FIRST_HOLD * 2u32.pow(doublings)).min(MAX_HOLD);
        self.hold_until = Some(now + hold);
        Some(hold)
    }

    /// HAProxy runs what was wanted: start afresh.
    pub fn succeeded(&mut self) {
        *self = Attempts::default();
    }
}

const POLL: Duration = Duration::from_millis(100);
/// One master CLI command may take this long (a failing 3.0 reload answers after ~2 s).
const MASTER_TIMEOUT: Duration = Duration::from_secs(10);

/// One command on the master CLI: the connection is half-closed after it, so the master
/// answers and closes (left open, it waits for more).
async fn master_command(path: &Path, line: &str) -> Result<String, ReloadError> {
    let io = async {
        let mut s = super::socket::connect(path).await?;
        s.write_all(format!("{line}\n").as_bytes()).await?;
        s.shutdown().await?;
        let mut reply = String::new();
        s.take(256 * 1024).read_to_string(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    };
    match tokio::time::timeout(MASTER_TIMEOUT, io).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(source)) => Err(ReloadError::Master {
            path: path.to_owned(),
            source,
        }),
        Err(_) => Err(ReloadError::MasterNoAnswer {
            path: path.to_owned(),
            line: line.to_owned(),
        }),
    }
}

/// Poll `show proc` until the master's reload counter passes `before`'s (the master CLI is
/// away while the master re-executes).
async fn wait_for_reload(
    path: &Path,
    before: &ProcTable,
    deadline: Instant,
) -> Result<ProcTable, ReloadError> {
    loop {
        let last = match tokio::time::timeout_at(deadline, master_command(path, "show proc")).await
        {
            Err(_) => "no answer".to_owned(),
            Ok(r) => match r.and_then(|r| parse_show_proc(&r)) {
                Ok(t) if t.reloads > before.reloads => return Ok(t),
                Ok(t) => format!("its reload counter is still {}", t.reloads),
                Err(e) => e.to_string(),
            },
        };
        if Instant::now() + POLL >= deadline {
            return Err(ReloadError::NotFinished { last });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The PID of the process answering on the stats socket.
async fn worker_pid(socket: &Path) -> Result<u32, ReloadError> {
    let info = tokio::time::timeout(MASTER_TIMEOUT, super::socket::command(socket, "show info"))
        .await
        .map_err(|_| ReloadError::StatsNoAnswer {
            socket: socket.to_owned(),
        })??;
    info.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| ReloadError::NoPid {
            socket: socket.to_owned(),
        })
}

/// The master CLI's `show proc`: the master's reload counters and its current workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcTable {
    /// Reloads since the master started, failed ones included.
    pub reloads: u64,
    /// Failed reloads since the last good one (`[failed: N]`, HAProxy 2.6 and later).
    pub failed: Option<u64>,
    /// Current workers (not the old ones still finishing their sessions).
    pub workers: Vec<u32>,
}

impl ProcTable {
    /// A worker that `before` did not have.
    pub fn new_worker(&self, before: &ProcTable) -> Option<u32> {
        self.workers
            .iter()
            .copied()
            .find(|w| !before.workers.contains(w))
    }
}

/// Read the master CLI's `show proc` (the same table in 2.6 and 3.0): the `master` line's
/// `<reloads> [failed: N]` and the PIDs under `# workers` (not `# old workers`).
pub fn parse_show_proc(reply: &str) -> Result<ProcTable, ReloadError> {
    let mut master = None;
    let mut workers = Vec::new();
    let mut section = "";
    for line in reply.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(h) = line.strip_prefix('#') {
            section = if h.trim() == "workers" { "workers" } else { "" };
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.get(1) {
            Some(&"master") => {
                let reloads = f.get(2).and_then(|r| r.parse().ok()).ok_or_else(|| {
                    ReloadError::NoReloadCounter {
                        line: line.to_owned(),
                    }
                })?;
                let failed = line
                    .split("[failed:")
                    .nth(1)
                    .and_then(|r| r.split(']').next())
                    .and_then(|n| n.trim().parse().ok());
                master = Some((reloads, failed));
            }
            Some(_) if section == "workers" => {
                if let Some(pid) = f.first().and_then(|p| p.parse().ok()) {
                    workers.push(pid);
                }
            }
            _ => {}
        }
    }
    let (reloads, failed) = master.ok_or_else(|| ReloadError::UnexpectedProc {
        excerpt: reply.trim().chars().take(120).collect::<String>(),
    })?;
    Ok(ProcTable {
        reloads,
        failed,
        workers,
    })
}

/// HAProxy 2.7+ answers `reload` with `Success=1` or `Success=0`; 2.6 with nothing (None).
pub fn reload_status(reply: &str) -> Option<bool> {
    let first = reply.lines().map(str::trim).find(|l| !l.is_empty())?;
    match first {
        "Success=1" => Some(true),
        "Success=0" => Some(false),
        _ => None,
    }
}

/// HAProxy's `[ALERT]` lines from a reload's startup log, else the log itself.
pub fn alerts(reply: &str) -> String {
    let squeeze = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
    let a: Vec<String> = reply
        .lines()
        .filter(|l| l.contains("[ALERT]"))
        .map(squeeze)
        .collect();
    let text = if a.is_empty() {
        squeeze(reply)
    } else {
        a.join(" | ")
    };
    text.chars().take(600).collect()
}

fn pids(p: &[u32]) -> String {
    if p.is_empty() {
        return "none".into();
    }
    p.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_26_reload_reads_as_before() {
        let before = parse_show_proc(V26_GOOD).unwrap();
        let after = parse_show_proc(V26_FAILED).unwrap();
        let old = format!(
            "HAProxy's master reports the reload failed (show proc: reloads {} -> {}, failed {} -> {}; worker {} still serves). \
             HAProxy 2.6's master CLI does not say why: the master's [ALERT] lines are in HAProxy's own log",
            before.reloads,
            after.reloads,
            before.failed.unwrap_or(0),
            after.failed.map_or("?".to_owned(), |f| f.to_string()),
            pids(&after.workers)
        );
        assert_eq!(
            ReloadError::MasterReportsFailure { before, after }.to_string(),
            old
        );
    }

    // Captured from HAProxy 2.6.12 (Debian 12) and 3.0.11 (Debian 13): before, after a good
    // reload, after a failed one (a bind on a port another process holds), and after a
    // good one again (the failed counter is back to 0).
    const V26_BEFORE: &str = "#<PID>          <type>          <reloads>       <uptime>        <version>      \n25101           master          0 [failed: 0]   0d00h00m07s     2.6.12-1+deb12u4\n# workers\n25127           worker          0               0d00h00m07s     2.6.12-1+deb12u4\n# programs\n\n";
    const V26_GOOD: &str = "#<PID>          <type>          <reloads>       <uptime>        <version>      \n25101           master          1 [failed: 0]   0d00h00m08s     2.6.12-1+deb12u4\n# workers\n28545           worker          0               0d00h00m01s     2.6.12-1+deb12u4\n# programs\n\n";
    const V26_FAILED: &str = "#<PID>          <type>          <reloads>       <uptime>        <version>      \n25101           master          2 [failed: 1]   0d00h00m10s     2.6.12-1+deb12u4\n# workers\n28545           worker          1               0d00h00m03s     2.6.12-1+deb12u4\n# programs\n\n";
    const V30_FAILED_RELOAD: &str = "Success=0\n--\n[NOTICE]   (31667) : haproxy version is 3.0.11-1+deb13u4\n[NOTICE]   (31667) : path to executable is /usr/sbin/haproxy\n[ALERT]    (31667) : Binding [/tmp/h/haproxy.cfg:20] for frontend held: protocol tcpv4: cannot bind socket (Address already in use) for [127.0.0.1:48781].\n[ALERT]    (31667) : [/usr/sbin/haproxy.main()] Some protocols failed to start their listeners! Exiting.\n[WARNING]  (31667) : Loading failure!\n";
    const V30_GOOD_RELOAD: &str = "Success=1\n--\n[NOTICE]   (31667) : New worker (1630) forked\n[NOTICE]   (31667) : Loading success.\n";

    #[test]
    fn show_proc_gives_the_reload_counters_and_the_workers() {
        let b = parse_show_proc(V26_BEFORE).unwrap();
        assert_eq!(
            b,
            ProcTable {
                reloads: 0,
                failed: Some(0),
                workers: vec![25127]
            }
        );
        let good = parse_show_proc(V26_GOOD).unwrap();
        assert_eq!(good.new_worker(&b), Some(28545));
        assert_eq!(good.failed, Some(0));
        let failed = parse_show_proc(V26_FAILED).unwrap();
        assert_eq!((failed.reloads, failed.failed), (2, Some(1)));
        assert_eq!(failed.new_worker(&good), None, "the same worker serves");
        assert!(parse_show_proc("Unknown command.\n").is_err());
        assert!(parse_show_proc("").is_err());
    }

    #[test]
    fn reloads_that_do_not_converge_are_held_back_after_a_bounded_number() {
        let t0 = Instant::now();
        let mut a = Attempts::default();
        assert_eq!(a.failed(7, t0, "e1"), None);
        assert_eq!(a.failed(7, t0, "e2"), None);
        assert_eq!(a.held(7, t0), None);
        assert_eq!(a.failed(7, t0, "e3"), Some(FIRST_HOLD));
        assert_eq!(a.held(7, t0), Some((FIRST_HOLD, 3, "e3")));
        // Another configuration is not held; the hold ends; the next failure doubles it.
        assert_eq!(a.held(8, t0), None);
        let later = t0 + FIRST_HOLD;
        assert_eq!(a.held(7, later), None);
        assert_eq!(a.failed(7, later, "e4"), Some(FIRST_HOLD * 2));
        for _ in 0..20 {
            a.failed(7, later, "e");
        }
        assert_eq!(a.held(7, later).map(|h| h.0), Some(MAX_HOLD));
        // A new configuration, or success, starts afresh.
        assert_eq!(a.failed(9, later, "x"), None);
        a.succeeded();
        assert_eq!(a.failed(9, later, "x"), None);
    }

    #[test]
    fn a_failed_reload_is_never_read_as_a_success() {
        // 2.6: the master CLI closes without a word; only `show proc` tells.
        assert_eq!(reload_status(""), None);
        assert_eq!(reload_status(V30_GOOD_RELOAD), Some(true));
        assert_eq!(reload_status(V30_FAILED_RELOAD), Some(false));
        let a = alerts(V30_FAILED_RELOAD);
        assert!(
            a.contains("cannot bind socket (Address already in use)"),
            "{a}"
        );
        assert!(!a.contains("NOTICE"), "{a}");
    }
}
