//! `type = "process"`: a process is running (monit's `check process ... with pidfile`).
//!
//! By pidfile: every PID in the file must be running (`kill(pid, 0)`, which also sees other
//! users' processes) and not a zombie; with `name`, it must also be that program. By name
//! alone: some process in `/proc` has that command name. A process's command name is its
//! `/proc/PID/comm` (the kernel keeps 15 bytes of it, proc(5)) or the file name of the first
//! argument in `/proc/PID/cmdline`.
//!
//! The shipped unit has `ProtectProc=invisible`, which hides other users' processes in `/proc`
//! (systemd.exec(5)). A PID that runs but cannot be seen there is reported as such, with the
//! drop-in that lifts it, rather than as "not running".

use super::Outcome;
use crate::config::ProcessCheckSpec;
use std::path::Path;

/// A pidfile larger than this is not a pidfile.
const PIDFILE_LIMIT: u64 = 4096;
/// Where the shipped drop-in that lets the daemon see other users' processes is installed.
const DROP_IN: &str = "/usr/share/doc/haproxy-watchdog/systemd/process-checks.conf";

pub async fn probe(spec: &ProcessCheckSpec) -> Outcome {
    let s = spec.clone();
    let key = spec.pidfile.as_deref().unwrap_or(Path::new("/proc"));
    super::look_at(key, move || judge(&s, Path::new("/proc"))).await
}

/// What `/proc/PID` says about a PID that `kill(pid, 0)` found.
enum Seen {
    Running {
        comm: String,
        argv0: String,
    },
    Zombie,
    /// kill says it exists, `/proc` does not show it (hidepid / ProtectProc).
    Hidden,
}

/// Decide, reading `proc` (`/proc`, or a test's copy).
fn judge(spec: &ProcessCheckSpec, proc: &Path) -> Outcome {
    match &spec.pidfile {
        Some(pidfile) => by_pidfile(pidfile, spec.name.as_deref(), proc),
        None => match spec.name.as_deref() {
            Some(name) => by_name(name, proc),
            None => Outcome::fail("neither a pidfile nor a name to look for"),
        },
    }
}

fn by_pidfile(pidfile: &Path, name: Option<&str>, proc: &Path) -> Outcome {
    let shown = pidfile.display();
    let text = match read_pidfile(pidfile) {
        Ok(t) => t,
        Err(why) => return Outcome::fail(why),
    };
    let mut pids = Vec::new();
    for word in text.split_whitespace() {
        match word.parse::<i32>() {
            Ok(p) if p > 0 => pids.push(p),
            _ => {
                return Outcome::fail(format!(
                    "pidfile {shown} holds {:?}, not a PID",
                    super::excerpt(word.as_bytes(), 40)
                ))
            }
        }
    }
    if pids.is_empty() {
        return Outcome::fail(format!("pidfile {shown} is empty"));
    }
    let mut any_hidden = false;
    for &pid in &pids {
        if !exists(pid) {
            return Outcome::fail(format!("stale pidfile {shown}: PID {pid} is not running"));
        }
        match (look(pid, proc), name) {
            (Seen::Zombie, _) => {
                return Outcome::fail(format!(
                    "PID {pid} from {shown} has exited (a zombie not yet reaped)"
                ))
            }
            (Seen::Hidden, Some(_)) => {
                return Outcome::fail(format!(
                    "PID {pid} from {shown} runs, but its name cannot be read: this daemon's /proc hides other users' processes (ProtectProc=invisible); install {DROP_IN} as a drop-in"
                ))
            }
            (Seen::Running { comm, argv0 }, Some(n)) if !is_named(n, &comm, &argv0) => {
                return Outcome::fail(format!(
                    "PID {pid} from {shown} is {comm:?}, not {n:?} (the pidfile is stale and its PID reused)"
                ))
            }
            (Seen::Hidden, None) => any_hidden = true,
            _ => {}
        }
    }
    let list: Vec<String> = pids.iter().map(i32::to_string).collect();
    let hidden = if any_hidden {
        format!(" (taken on kill(2)'s word: this daemon's /proc hides it, so a zombie would pass too; {DROP_IN} lifts that)")
    } else {
        String::new()
    };
    Outcome::ok(match name {
        Some(n) => format!("{n} running as PID {}", list.join(", ")),
        None => format!("PID {} from {shown} running{hidden}", list.join(", ")),
    })
}

/// The pidfile's text. Opened without blocking (a FIFO put in its place would wait for a
/// writer forever) and read only when it is a regular file of at most [`PIDFILE_LIMIT`]
/// bytes (`/dev/zero` never ends).
fn read_pidfile(pidfile: &Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let shown = pidfile.display();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(pidfile)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("pidfile {shown} does not exist"),
            _ => format!("cannot read pidfile {shown}: {e}"),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read pidfile {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("pidfile {shown} is not a regular file"));
    }
    if meta.len() > PIDFILE_LIMIT {
        return Err(format!(
            "pidfile {shown} is {} bytes, not a pidfile",
            meta.len()
        ));
    }
    let mut bytes = Vec::new();
    file.take(PIDFILE_LIMIT)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read pidfile {shown}: {e}"))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn by_name(name: &str, proc: &Path) -> Outcome {
    let entries = match std::fs::read_dir(proc) {
        Ok(e) => e,
        Err(e) => return Outcome::fail(format!("cannot list {}: {e}", proc.display())),
    };
    let mut found: Vec<i32> = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if let Seen::Running { comm, argv0 } = look(pid, proc) {
            if is_named(name, &comm, &argv0) {
                found.push(pid);
            }
        }
    }
    found.sort_unstable();
    match found.as_slice() {
        [] if hides_others(proc) => Outcome::fail(format!(
            "no process named {name:?} is visible: this daemon's /proc hides other users' processes (ProtectProc=invisible); install {DROP_IN} as a drop-in"
        )),
        [] => Outcome::fail(format!("no process named {name:?} is running")),
        [one] => Outcome::ok(format!("{name} running as PID {one}")),
        [first, rest @ ..] => Outcome::ok(format!(
            "{name} running as PID {first} and {} more",
            rest.len()
        )),
    }
}

/// Does a process with this PID exist? `kill(pid, 0)`: EPERM means it does, but is another
/// user's (kill(2)).
fn exists(pid: i32) -> bool {
    // SAFETY: signal 0 sends nothing; it only checks that the PID exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn look(pid: i32, proc: &Path) -> Seen {
    let dir = proc.join(pid.to_string());
    let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
        return Seen::Hidden;
    };
    // `pid (comm) S ...`: the state follows the last `)`, as comm may hold one (proc(5)).
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, Some("Z") | Some("X")) {
        return Seen::Zombie;
    }
    let comm = std::fs::read_to_string(dir.join("comm"))
        .map(|c| c.trim_end_matches('\n').to_owned())
        .unwrap_or_default();
    let argv0 = std::fs::read(dir.join("cmdline"))
        .ok()
        .and_then(|c| {
            let first = c.split(|&b| b == 0).next()?.to_vec();
            let first = String::from_utf8_lossy(&first).into_owned();
            Some(first.rsplit('/').next().unwrap_or("").to_owned())
        })
        .unwrap_or_default();
    Seen::Running { comm, argv0 }
}

/// `name` is the process's: its comm or its first argument's file name. The kernel keeps
/// only 15 bytes of comm, so a longer name is matched by its first argument; by comm's 15
/// bytes only when the process has no first argument to read (a kernel thread), since
/// `php-fpm-pool-a` and `php-fpm-pool-b` share theirs.
fn is_named(name: &str, comm: &str, argv0: &str) -> bool {
    if comm == name || argv0 == name {
        return true;
    }
    let short = name
        .char_indices()
        .take_while(|(i, c)| i + c.len_utf8() <= 15)
        .last()
        .map_or("", |(i, c)| &name[..i + c.len_utf8()]);
    name.len() > 15 && argv0.is_empty() && comm == short
}

/// Is `proc` mounted so that other users' processes are hidden (`hidepid=`, which
/// `ProtectProc=invisible` sets)?
fn hides_others(proc: &Path) -> bool {
    if proc != Path::new("/proc") {
        return false;
    }
    std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| {
        m.lines().any(|l| {
            let mut f = l.split_whitespace();
            f.nth(4) == Some("/proc")
                && l.split(" - ").nth(1).is_some_and(|s| {
                    s.contains("hidepid=") && !s.contains("hidepid=0") && !s.contains("hidepid=off")
                })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(pidfile: Option<&Path>, name: Option<&str>) -> ProcessCheckSpec {
        ProcessCheckSpec {
            pidfile: pidfile.map(Path::to_path_buf),
            name: name.map(str::to_owned),
        }
    }

    fn proc() -> &'static Path {
        Path::new("/proc")
    }

    #[test]
    fn a_running_pid_passes_and_its_name_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pidfile = dir.path().join("sleep.pid");
        std::fs::write(&pidfile, format!("{}\n", child.id())).unwrap();
        let ok = judge(&spec(Some(&pidfile), Some("sleep")), proc());
        assert!(ok.ok, "{ok:?}");
        let other = judge(&spec(Some(&pidfile), Some("haproxy")), proc());
        assert!(
            !other.ok && other.detail.contains("is \"sleep\", not \"haproxy\""),
            "{other:?}"
        );
        let by_name = judge(&spec(None, Some("sleep")), proc());
        assert!(by_name.ok, "{by_name:?}");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn a_pidfile_of_a_dead_process_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let pidfile = dir.path().join("dead.pid");
        std::fs::write(&pidfile, format!("{pid}\n")).unwrap();
        let out = judge(&spec(Some(&pidfile), None), proc());
        assert_eq!(
            out,
            Outcome::fail(format!(
                "stale pidfile {}: PID {pid} is not running",
                pidfile.display()
            ))
        );
    }

    #[test]
    fn a_zombie_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("/bin/true").spawn().unwrap();
        let pid = child.id();
        // Not waited for yet: once it exits it stays a zombie.
        for _ in 0..100 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.contains(") Z") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let pidfile = dir.path().join("z.pid");
        std::fs::write(&pidfile, pid.to_string()).unwrap();
        let out = judge(&spec(Some(&pidfile), None), proc());
        assert!(!out.ok && out.detail.contains("zombie"), "{out:?}");
        let mut child = child;
        child.wait().unwrap();
    }

    #[test]
    fn a_pid_that_proc_hides_is_running_on_kills_word_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("me.pid");
        std::fs::write(&pidfile, std::process::id().to_string()).unwrap();
        // An empty /proc: what ProtectProc=invisible shows of another user's process.
        let empty = tempfile::tempdir().unwrap();
        let out = judge(&spec(Some(&pidfile), None), empty.path());
        assert!(
            out.ok && out.detail.contains("hides it, so a zombie would pass too"),
            "{out:?}"
        );
        let named = judge(&spec(Some(&pidfile), Some("x")), empty.path());
        assert!(
            !named.ok && named.detail.contains("ProtectProc=invisible"),
            "{named:?}"
        );
    }

    #[test]
    fn missing_empty_and_garbage_pidfiles_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.pid");
        let out = judge(&spec(Some(&p), None), proc());
        assert!(out.detail.ends_with("does not exist"), "{out:?}");
        std::fs::write(&p, "\n").unwrap();
        assert!(judge(&spec(Some(&p), None), proc())
            .detail
            .ends_with("is empty"));
        std::fs::write(&p, "12ab\n").unwrap();
        assert!(judge(&spec(Some(&p), None), proc())
            .detail
            .ends_with("holds \"12ab\", not a PID"));
        std::fs::write(&p, "0").unwrap();
        assert!(!judge(&spec(Some(&p), None), proc()).ok);
        std::fs::write(&p, vec![b'1'; 5000]).unwrap();
        assert!(judge(&spec(Some(&p), None), proc())
            .detail
            .contains("not a pidfile"));
    }

    #[test]
    fn a_pidfile_that_is_not_a_regular_file_is_never_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.pid");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // A FIFO with no writer would block a plain open forever.
        let out = judge(&spec(Some(&fifo), None), proc());
        assert!(out.detail.ends_with("is not a regular file"), "{out:?}");
        let out = judge(&spec(Some(Path::new("/dev/zero")), None), proc());
        assert_eq!(
            out,
            Outcome::fail("pidfile /dev/zero is not a regular file")
        );
    }

    #[test]
    fn no_process_of_that_name() {
        let out = judge(&spec(None, Some("no-such-daemon-xyz")), proc());
        assert!(
            !out.ok && out.detail.contains("no-such-daemon-xyz"),
            "{out:?}"
        );
    }

    #[test]
    fn long_names_match_the_kernels_fifteen_bytes() {
        assert!(is_named("haproxy-watchdog", "haproxy-watchdo", ""));
        assert!(is_named(
            "haproxy-watchdog",
            "haproxy-watchdo",
            "haproxy-watchdog"
        ));
        assert!(is_named("haproxy", "haproxy", "haproxy"));
        assert!(is_named("python-app", "python3", "python-app"));
        assert!(!is_named("haproxy", "haproxy-wrapper", "x"));
    }

    #[test]
    fn a_long_name_is_not_matched_by_its_first_fifteen_bytes_alone() {
        // comm "a-very-long-pro" is shared by every name that starts that way.
        assert!(!is_named(
            "a-very-long-proZZZZZZ",
            "a-very-long-pro",
            "a-very-long-process-name-x"
        ));
        assert!(!is_named(
            "php-fpm-pool-b",
            "php-fpm-pool-a",
            "php-fpm-pool-a"
        ));
    }
}
