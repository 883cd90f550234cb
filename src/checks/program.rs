//! `type = "program"`: run a program, pass on an expected exit status (keepalived's
//! `vrrp_script`, monit's `check program`). Also the runner the `exec` action uses.
//!
//! No shell and no PATH search. The program runs as the daemon's user, in a process group of
//! its own, so that a timeout kills whatever it started too; the group is also killed when the
//! run is abandoned (the engine's own deadline, a shutdown), and a check's group when the
//! program exits (a check has no side effects: nothing it started outlives it). The kernel
//! kills the program itself if the daemon dies (`PR_SET_PDEATHSIG`, prctl(2)). Its output is
//! kept up to [`CAPTURE_LIMIT`] bytes per stream (the last ones) while the rest is read and
//! dropped, so a chatty program never blocks on a full pipe; control characters in it are
//! escaped before it is shown anywhere. The daemon's own systemd variables (`NOTIFY_SOCKET`,
//! `WATCHDOG_USEC`, ...) are not passed on: a program must not ping the unit's watchdog for it.

use super::{own_deadline, Outcome};
use crate::config::ProgramCheckSpec;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Bytes of each of stdout and stderr kept (the last ones).
pub const CAPTURE_LIMIT: usize = 4096;
/// Characters of output a check's failure detail shows (the last ones).
const DETAIL_LIMIT: usize = 1024;
/// After the program exits, how long a grandchild that still holds its pipes open may keep
/// its output coming before it is read no further.
const DRAIN: Duration = Duration::from_millis(100);
/// How long reaping a killed program may take.
const REAP: Duration = Duration::from_secs(2);

/// How a run ended.
#[derive(Debug)]
pub enum Ended {
    /// It exited with this status.
    Exited(i32),
    /// A signal ended it.
    Signal(i32),
    /// It was still running at the time limit; its process group was killed.
    TimedOut,
    /// It could not be started (missing, not executable, ...).
    Spawn(std::io::Error),
    /// Waiting for it failed.
    Wait(std::io::Error),
}

/// What becomes of the program's process group once the program has exited on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftovers {
    /// Killed: a check starts nothing that outlives it.
    Kill,
    /// Left alone: an `exec` action may start a daemon on purpose.
    Keep,
}

/// Variables of the daemon's environment that belong to its systemd unit (sd_notify(3),
/// sd_listen_fds(3)): never passed on.
const UNIT_VARIABLES: [&str; 6] = [
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
];

/// A finished run: how it ended and the last [`CAPTURE_LIMIT`] bytes of each stream.
#[derive(Debug)]
pub struct Ran {
    pub ended: Ended,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Ran {
    /// `: <last lines of output>` (stderr, or stdout when stderr is empty; lines joined by
    /// ` | `, at most `limit` characters), or nothing when it printed nothing.
    pub fn tail(&self, limit: usize) -> String {
        let text = String::from_utf8_lossy(if self.stderr.iter().all(u8::is_ascii_whitespace) {
            &self.stdout
        } else {
            &self.stderr
        });
        let text = text.trim();
        if text.is_empty() {
            return String::new();
        }
        let skip = text.chars().count().saturating_sub(limit);
        let start = text.char_indices().nth(skip).map_or(0, |(i, _)| i);
        let cut = if start > 0 { "…" } else { "" };
        format!(": {cut}{}", printable(&text[start..]))
    }
}

/// `text` on one line that is safe in a log, a terminal, an alert and an environment
/// variable: lines joined by ` | `, other control characters (NUL, ESC, CR, ...) escaped as
/// Rust writes them (`\0`, `\u{1b}`, `\r`).
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push_str(" | ");
        }
        for c in line.chars() {
            if c.is_control() {
                out.extend(c.escape_debug());
            } else {
                out.push(c);
            }
        }
    }
    out
}

/// Kills the process group when dropped while armed: a run abandoned half-way leaves nothing.
/// The group must be the child's own (`process_group(0)`); disarm it once the child has been
/// reaped normally.
pub(crate) struct GroupGuard(pub(crate) Option<i32>);

impl GroupGuard {
    /// Armed for the group of the child with this pid (None: nothing to kill).
    pub(crate) fn of(pid: Option<u32>) -> Self {
        GroupGuard(pid.and_then(|p| i32::try_from(p).ok()))
    }

    pub(crate) fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // SAFETY: kill(2) with a negative pid signals that process group; the group is
            // the child's own (process_group(0)), so nothing else is in it.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `CAPTURE_LIMIT` bytes of a stream.
fn keep(buf: &mut Vec<u8>, chunk: &[u8]) {
    buf.extend_from_slice(chunk);
    if buf.len() > CAPTURE_LIMIT {
        let extra = buf.len() - CAPTURE_LIMIT;
        buf.drain(..extra);
    }
}

/// Read from `pipe` when there is one; never ready when there is none.
async fn read_some<R: tokio::io::AsyncRead + Unpin>(
    pipe: &mut Option<R>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    match pipe {
        Some(p) => p.read(buf).await,
        None => std::future::pending().await,
    }
}

/// Run `argv` (an absolute program and its arguments) with `env` added to the daemon's
/// environment (a NUL in a value is written `\0`: the kernel cannot pass one), stdin from
/// /dev/null, for at most `limit`.
pub async fn run(
    argv: &[String],
    env: &[(&str, String)],
    limit: Duration,
    leftovers: Leftovers,
) -> Ran {
    let ran = |ended| Ran {
        ended,
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    let Some(program) = argv.first() else {
        return ran(Ended::Spawn(std::io::Error::other("no program given")));
    };
    let mut cmd = std::process::Command::new(program);
    for var in UNIT_VARIABLES {
        cmd.env_remove(var);
    }
    cmd.args(&argv[1..])
        .envs(env.iter().map(|(k, v)| (k, v.replace('\0', "\\0"))))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: prctl(2) is async-signal-safe and touches only the child's own settings. The
    // "parent" whose death sends the signal is the thread that forks: a runtime worker or the
    // main thread, which live as long as the daemon.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return ran(Ended::Spawn(e)),
    };
    let mut guard = GroupGuard(child.id().and_then(|p| i32::try_from(p).ok()));
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let (mut ob, mut eb) = ([0u8; 4096], [0u8; 4096]);
    let deadline = tokio::time::Instant::now() + limit;
    let waited = tokio::time::timeout_at(deadline, async {
        loop {
            tokio::select! {
                r = read_some(&mut out, &mut ob) => match r {
                    Ok(n) if n > 0 => keep(&mut stdout, &ob[..n]),
                    _ => out = None,
                },
                r = read_some(&mut err, &mut eb) => match r {
                    Ok(n) if n > 0 => keep(&mut stderr, &eb[..n]),
                    _ => err = None,
                },
                status = child.wait() => break status,
            }
        }
    })
    .await;
    let ended = match waited {
        Ok(Ok(status)) => {
            // What it wrote just before exiting is still in the pipes.
            let _ = tokio::time::timeout(DRAIN, async {
                while out.is_some() || err.is_some() {
                    tokio::select! {
                        r = read_some(&mut out, &mut ob) => match r {
                            Ok(n) if n > 0 => keep(&mut stdout, &ob[..n]),
                            _ => out = None,
                        },
                        r = read_some(&mut err, &mut eb) => match r {
                            Ok(n) if n > 0 => keep(&mut stderr, &eb[..n]),
                            _ => err = None,
                        },
                    }
                }
            })
            .await;
            match leftovers {
                Leftovers::Kill => guard.kill(),
                Leftovers::Keep => guard.0 = None,
            }
            match (status.code(), status.signal()) {
                (Some(code), _) => Ended::Exited(code),
                (None, Some(sig)) => Ended::Signal(sig),
                (None, None) => Ended::Signal(0),
            }
        }
        Ok(Err(e)) => Ended::Wait(e),
        Err(_) => {
            guard.kill();
            // Reap it, so that no zombie is left; SIGKILL cannot be caught, so this is quick.
            let _ = tokio::time::timeout(REAP, child.wait()).await;
            Ended::TimedOut
        }
    };
    Ran {
        ended,
        stdout,
        stderr,
    }
}

/// One run of the check.
pub async fn probe(spec: &ProgramCheckSpec) -> Outcome {
    let env = [("WATCHDOG_RULE", spec.rule.clone())];
    let limit = own_deadline(spec.timeout);
    let ran = run(&spec.command, &env, limit, Leftovers::Kill).await;
    let program = &spec.command[0];
    let output = ran.tail(DETAIL_LIMIT);
    match ran.ended {
        Ended::Exited(code) if spec.expect_exit.contains(&code) => {
            Outcome::ok(format!("{program} exited {code}"))
        }
        Ended::Exited(code) => Outcome::fail(format!(
            "{program} exited {code}, expected {}{output}",
            list(&spec.expect_exit)
        )),
        Ended::Signal(sig) => {
            Outcome::fail(format!("{program} was killed by signal {sig}{output}"))
        }
        Ended::TimedOut => Outcome::fail(format!(
            "{program} did not finish within {}; killed it and its process group{output}",
            humantime::format_duration(limit)
        )),
        Ended::Spawn(e) => Outcome::fail(format!("cannot run {program}: {e}")),
        Ended::Wait(e) => Outcome::fail(format!("waiting for {program}: {e}")),
    }
}

fn list(codes: &[i32]) -> String {
    let v: Vec<String> = codes.iter().map(i32::to_string).collect();
    v.join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(command: &[&str], timeout: Duration) -> ProgramCheckSpec {
        ProgramCheckSpec {
            rule: "chk".into(),
            command: command.iter().map(|s| s.to_string()).collect(),
            expect_exit: vec![0],
            timeout,
        }
    }

    #[tokio::test]
    async fn the_exit_status_decides_and_the_output_is_the_detail() {
        let ok = probe(&spec(
            &["/bin/sh", "-c", "test \"$WATCHDOG_RULE\" = chk"],
            Duration::from_secs(5),
        ))
        .await;
        assert!(ok.ok, "{ok:?}");
        let bad = probe(&spec(
            &[
                "/bin/sh",
                "-c",
                "echo out; echo 'backend app down' >&2; exit 2",
            ],
            Duration::from_secs(5),
        ))
        .await;
        assert_eq!(
            bad,
            Outcome::fail("/bin/sh exited 2, expected 0: backend app down")
        );
        let mut two = spec(&["/bin/sh", "-c", "exit 2"], Duration::from_secs(5));
        two.expect_exit = vec![0, 2];
        assert!(probe(&two).await.ok);
    }

    #[tokio::test]
    async fn a_missing_program_or_a_signal_fails_with_its_reason() {
        let missing = probe(&spec(&["/nonexistent/check"], Duration::from_secs(5))).await;
        assert!(
            !missing.ok
                && missing
                    .detail
                    .starts_with("cannot run /nonexistent/check: "),
            "{missing:?}"
        );
        let killed = probe(&spec(
            &["/bin/sh", "-c", "kill -TERM $$"],
            Duration::from_secs(5),
        ))
        .await;
        assert_eq!(killed, Outcome::fail("/bin/sh was killed by signal 15"));
    }

    #[tokio::test]
    async fn only_the_last_output_is_kept_and_a_flood_does_not_block_the_program() {
        // 1 MiB on stdout: more than a pipe holds, so the program would hang if it were not read.
        let r = run(
            &[
                "/bin/sh".into(),
                "-c".into(),
                "head -c 1048576 /dev/zero | tr '\\0' x; echo END".into(),
            ],
            &[],
            Duration::from_secs(10),
            Leftovers::Kill,
        )
        .await;
        assert!(matches!(r.ended, Ended::Exited(0)), "{:?}", r.ended);
        assert_eq!(r.stdout.len(), CAPTURE_LIMIT);
        assert!(r.stdout.ends_with(b"xEND\n"));
        assert!(r.tail(20).starts_with(": …"));
    }

    #[tokio::test]
    async fn a_hung_program_is_killed_with_its_group_and_reaped() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("grandchild-ran");
        let pidfile = dir.path().join("pid");
        // The grandchild would write the marker after 2 s unless the group is killed first.
        let script = format!(
            "echo $$ > {}; echo waiting; (sleep 2; touch {}) & sleep 30",
            pidfile.display(),
            marker.display()
        );
        let started = std::time::Instant::now();
        let out = probe(&spec(
            &["/bin/sh", "-c", &script],
            Duration::from_millis(500),
        ))
        .await;
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(
            !out.ok
                && out.detail.contains("did not finish within")
                && out.detail.ends_with(": waiting"),
            "{out:?}"
        );
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        // Reaped: not even a zombie is left under its PID.
        assert!(
            !std::path::Path::new(&format!("/proc/{}", pid.trim())).exists(),
            "pid {pid} is still in /proc"
        );
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "the script's own child was killed too");
    }

    #[tokio::test]
    async fn control_bytes_in_program_output_are_escaped_and_never_reach_an_environment_raw() {
        let out = probe(&spec(
            &[
                "/bin/sh",
                "-c",
                "printf 'bad \\377 \\033[31mred\\nline2\\r\\n\\000nul' >&2; exit 4",
            ],
            Duration::from_secs(5),
        ))
        .await;
        assert_eq!(
            out.detail,
            "/bin/sh exited 4, expected 0: bad \u{fffd} \\u{1b}[31mred | line2\\r | \\0nul"
        );
        // A value with a NUL (from anywhere) still reaches the program, escaped.
        let r = run(
            &["/bin/sh".into(), "-c".into(), "printf %s \"$V\"".into()],
            &[("V", "a\0b".into())],
            Duration::from_secs(5),
            Leftovers::Kill,
        )
        .await;
        assert!(matches!(r.ended, Ended::Exited(0)), "{:?}", r.ended);
        assert_eq!(r.stdout, b"a\\0b");
    }

    #[tokio::test]
    async fn a_check_programs_background_children_do_not_outlive_it() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("left-behind");
        let script = format!("(sleep 1; touch {}) & exit 1", marker.display());
        let out = probe(&spec(&["/bin/sh", "-c", &script], Duration::from_secs(5))).await;
        assert!(!out.ok);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            !marker.exists(),
            "the background child was killed with the group"
        );
    }

    #[tokio::test]
    async fn the_units_notify_socket_is_not_passed_to_programs() {
        std::env::set_var("NOTIFY_SOCKET", "/run/systemd/notify");
        let r = run(
            &[
                "/bin/sh".into(),
                "-c".into(),
                "test -z \"$NOTIFY_SOCKET$WATCHDOG_USEC\"".into(),
            ],
            &[],
            Duration::from_secs(5),
            Leftovers::Kill,
        )
        .await;
        std::env::remove_var("NOTIFY_SOCKET");
        assert!(matches!(r.ended, Ended::Exited(0)), "{:?}", r.ended);
    }

    #[tokio::test]
    async fn an_abandoned_run_kills_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let script = format!("sleep 1; touch {}", marker.display());
        let s = spec(&["/bin/sh", "-c", &script], Duration::from_secs(30));
        // The engine's own deadline drops the probe half-way.
        let dropped = tokio::time::timeout(Duration::from_millis(200), probe(&s)).await;
        assert!(dropped.is_err());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!marker.exists(), "the dropped run's program was killed");
    }
}
