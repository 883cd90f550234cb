//! HAProxy's runtime API for one backend: read its server slots (`show servers state`) and
//! send the commands a plan decided on.

use super::server::{Command, Slot, Target};
use super::socket::{command as socket_command, SocketError};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a runtime command on the stats socket, or the reading of its reply, failed. The
/// replies read are HAProxy's `show info`, `show servers state` and `show stat` (HAProxy
/// management guide, "9.3. Unix Socket commands").
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The stats socket could not be used (see [`SocketError`]).
    #[error(transparent)]
    Socket(#[from] SocketError),
    /// HAProxy accepted the connection and did not answer in time (a frozen HAProxy).
    #[error("stats socket {}: no answer within {}", path.display(), humantime::format_duration(*timeout))]
    NoAnswer { path: PathBuf, timeout: Duration },
    /// `show info` lacks its `Uptime_sec:` line.
    #[error("`show info` has no Uptime_sec")]
    NoUptime,
    /// `show servers state <backend>` answered `Can't find backend.`
    #[error("HAProxy has no backend {backend:?}")]
    NoBackend { backend: String },
    /// The reply to `command` is not the table it answers with; `excerpt` is its first 120
    /// characters.
    #[error("unexpected answer to `{command}`: {excerpt}")]
    Unexpected {
        command: &'static str,
        excerpt: String,
    },
    /// The header line of `command`'s table lacks a column we read (`columns` names them).
    #[error("`{command}` lacks the {columns} column")]
    MissingColumns {
        command: &'static str,
        columns: &'static str,
    },
    /// A `show servers state` line with fewer fields than its header.
    #[error("short `show servers state` line: {line}")]
    ShortLine { line: String },
    /// A `show servers state` line whose `srv_admin_state` is not a number.
    #[error("bad srv_admin_state in: {line}")]
    BadAdminState { line: String },
    /// `show servers state` came without its `# be_id be_name ...` header.
    #[error("HAProxy did not answer `show servers state` (no header line)")]
    NoHeader,
    /// A `show stat` line whose `scur` or `qcur` is not a number.
    #[error("bad session count {value:?} in: {line}")]
    BadSessionCount { value: String, line: String },
}

/// Admin-state bits of `show servers state` (HAProxy's `SRV_ADMF_*`): forced, inherited and
/// resolution maintenance. `0x04` (disabled in the configuration) stays set on a slot that was
/// `disabled` in the file and later set ready; that slot serves, so it does not count.
const ADMIN_MAINT: u32 = 0x01 | 0x02 | 0x20;
const ADMIN_DRAIN: u32 = 0x08 | 0x10;

/// One command line to the stats socket, answered within `timeout` (a frozen HAProxy
/// accepts connections and never answers).
async fn command(socket: &Path, line: &str, timeout: Duration) -> Result<String, RuntimeError> {
    match tokio::time::timeout(timeout, socket_command(socket, line)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(RuntimeError::NoAnswer {
            path: socket.to_owned(),
            timeout,
        }),
    }
}

/// How long the process answering on the stats socket has run (`show info` `Uptime_sec`, the
/// same in 2.6 and 3.0).
pub async fn uptime(socket: &Path, timeout: Duration) -> Result<Duration, RuntimeError> {
    let info = command(socket, "show info", timeout).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("Uptime_sec:"))
        .and_then(|v| v.trim().parse().ok())
        .map(Duration::from_secs)
        .ok_or(RuntimeError::NoUptime)
}

/// Has the process on the stats socket been replaced since it answered `up_then`, `elapsed`
/// ago? A process that kept running is now `up_then + elapsed` old (give or take the whole
/// seconds `Uptime_sec` rounds to); a younger one started since.
pub fn restarted_since(up_then: Duration, elapsed: Duration, up_now: Duration) -> bool {
    up_now + Duration::from_secs(2) < up_then + elapsed
}

/// Was a file last modified at `mtime` written after a process that has run `uptime` (whole
/// seconds, rounded down) by `now` started? `now - uptime` is at or after the true start, so
/// a true answer is never wrong: that process cannot have read this version of the file.
pub fn written_after_start(
    mtime: std::time::SystemTime,
    now: std::time::SystemTime,
    uptime: Duration,
) -> bool {
    now.checked_sub(uptime).is_some_and(|start| mtime > start)
}

/// Every server of `backend` (the caller picks the slots among them).
pub async fn servers(
    socket: &Path,
    backend: &str,
    timeout: Duration,
) -> Result<Vec<Slot>, RuntimeError> {
    let reply = command(socket, &format!("show servers state {backend}"), timeout).await?;
    parse_servers_state(&reply, backend)
}

pub fn parse_servers_state(reply: &str, backend: &str) -> Result<Vec<Slot>, RuntimeError> {
    let mut header: Option<Vec<&str>> = None;
    let mut slots = Vec::new();
    for line in reply.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(h) = line.strip_prefix("# ") {
            header = Some(h.split_whitespace().collect());
            continue;
        }
        let Some(h) = &header else {
            if line.chars().all(|c| c.is_ascii_digit()) {
                continue; // the format version
            }
            if line.starts_with("Can't find backend") {
                return Err(RuntimeError::NoBackend {
                    backend: backend.to_owned(),
                });
            }
            return Err(RuntimeError::Unexpected {
                command: "show servers state",
                excerpt: line.chars().take(120).collect(),
            });
        };
        let col = |name: &str| h.iter().position(|c| *c == name);
        let (Some(b), Some(n), Some(a), Some(adm), Some(p)) = (
            col("be_name"),
            col("srv_name"),
            col("srv_addr"),
            col("srv_admin_state"),
            col("srv_port"),
        ) else {
            return Err(RuntimeError::MissingColumns {
                command: "show servers state",
                columns: "be_name, srv_name, srv_addr, srv_admin_state or srv_port",
            });
        };
        let f: Vec<&str> = line.split_whitespace().collect();
        let get = |i: usize| {
            f.get(i).copied().ok_or_else(|| RuntimeError::ShortLine {
                line: line.to_owned(),
            })
        };
        if get(b)? != backend {
            continue;
        }
        let admin: u32 = get(adm)?.parse().map_err(|_| RuntimeError::BadAdminState {
            line: line.to_owned(),
        })?;
        let addr = get(a)?;
        let ip: Option<Ipv4Addr> = addr
            .parse()
            .ok()
            .filter(|ip: &Ipv4Addr| !ip.is_unspecified());
        let port: u16 = get(p)?.parse().unwrap_or(0);
        slots.push(Slot {
            name: get(n)?.to_owned(),
            target: ip.filter(|_| port != 0).map(|ip| Target { ip, port }),
            // `-`: no address family (a name not resolved, a unix socket): HAProxy takes a new
            // address for it only from the configuration file.
            addressable: addr.parse::<std::net::IpAddr>().is_ok(),
            maint: admin & ADMIN_MAINT != 0,
            draining: admin & ADMIN_DRAIN != 0,
        });
    }
    if header.is_none() {
        return Err(RuntimeError::NoHeader);
    }
    Ok(slots)
}

/// Why [`execute`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// HAProxy would not point `slot` at a new address: that slot cannot be used (it was
    /// left in maintenance: `state ready` is sent only after the address was taken).
    /// `reply` is the first line of HAProxy's answer to `set server ... addr`.
    #[error("HAProxy refused a new address for slot {slot}: {reply}")]
    AddrRefused { slot: String, reply: String },
    /// HAProxy answered another command (`set server ... state`, which succeeds silently)
    /// with text: `reply` is its first line.
    #[error("HAProxy refused `{line}`: {reply}")]
    Refused { line: String, reply: String },
    /// No answer from the stats socket.
    #[error(transparent)]
    Failed(#[from] RuntimeError),
}

/// Did HAProxy take `set server ... addr`? Its answer lists what it did, then who did it:
/// 2.6 `IP changed from 'A' to 'B', no need to change the port by 'stats socket command'`,
/// 3.0 `IP changed from 'A' to 'B' by 'stats socket command'` or `nothing changed`. Any other
/// part (`Invalid addr`, `problem converting port`, `Update for the current server address
/// family is only supported through configuration file`) is a refusal, even after a part
/// that succeeded.
pub fn addr_change_accepted(reply: &str) -> bool {
    let r = reply.trim();
    let r = match r.rfind(" by '") {
        Some(i) if r.ends_with('\'') => &r[..i],
        _ => r,
    };
    if r == "nothing changed" {
        return true;
    }
    !r.is_empty()
        && !r.contains('\n')
        && r.split(", ").all(|part| {
            part == "no need to change the addr"
                || part == "no need to change the port"
                || ((part.starts_with("IP changed from '")
                    || part.starts_with("port changed from '"))
                    && part.contains("' to '")
                    && part.ends_with('\''))
        })
}

/// Send the commands one line at a time and check each answer against what success looks
/// like: `set server ... addr` says what it changed (see [`addr_change_accepted`]), `set
/// server ... state` answers nothing. An enable sends `state ready` only once the address
/// was taken, never joined to it with `;` (HAProxy would run it after a refused address, and
/// the slot would serve with no address). Stops at the first refusal.
pub async fn execute(
    socket: &Path,
    backend: &str,
    commands: &[Command],
    timeout: Duration,
) -> Result<(), ExecError> {
    for c in commands {
        for (k, line) in c.lines(backend).iter().enumerate() {
            let reply = command(socket, line, timeout).await?;
            let reply = reply.trim();
            let addr = matches!(c, Command::Enable { .. }) && k == 0;
            if addr && !addr_change_accepted(reply) {
                let Command::Enable { slot, .. } = c else {
                    unreachable!("addr is only true for an enable")
                };
                return Err(ExecError::AddrRefused {
                    slot: slot.clone(),
                    reply: first_line(reply),
                });
            }
            if !addr && !reply.is_empty() {
                return Err(ExecError::Refused {
                    line: line.clone(),
                    reply: first_line(reply),
                });
            }
        }
    }
    Ok(())
}

fn first_line(reply: &str) -> String {
    reply
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(an empty answer)")
        .chars()
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from HAProxy 2.6.12: s1 serving, s2 disabled in the file, s3 disabled in the
    // file then pointed somewhere and set ready (admin 4), s4 drained.
    const REPLY: &str = "1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 app 1 s1 127.0.0.1 2 0 1 1 0 6 3 4 6 0 0 0 - 18091 - 0 0 - - 0
3 app 2 s2 0.0.0.0 0 5 1 1 2 1 0 0 14 0 0 0 - 18091 - 0 0 - - 0
3 app 3 s3 127.0.0.2 2 4 1 1 1 6 3 4 6 0 0 0 - 18092 - 0 0 - - 0
3 app 4 s4 127.0.0.3 2 8 1 1 1 6 3 4 6 0 0 0 - 18093 - 0 0 - - 0

";

    #[test]
    fn reads_slots_and_their_admin_state() {
        let s = parse_servers_state(REPLY, "app").unwrap();
        assert_eq!(s.len(), 4);
        assert!(s[0].serving());
        assert_eq!(s[0].target.unwrap().to_string(), "127.0.0.1:18091");
        assert!(s[1].maint && s[1].target.is_none());
        assert!(s[2].serving(), "admin state 4 alone is not maintenance");
        assert!(s[3].serving() && s[3].draining);
    }

    #[test]
    fn a_slot_whose_address_is_a_dash_cannot_be_addressed() {
        // HAProxy 2.6.12 and 3.0.11 alike: `server web2 app2.example.com:8080 check init-addr
        // none` (resolution maintenance, 32), a unix socket server, and an IPv6 one.
        let reply = "1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 web 1 web1 127.0.0.11 0 0 1 1 1 8 2 0 6 0 0 0 - 8080 - 0 0 - - 0
3 web 2 web2 - 0 32 1 1 1 1 0 0 14 0 0 0 app2.example.com 8080 - 0 0 - - 0
3 web 6 web6 - 0 5 1 1 1 1 0 0 8 0 0 0 - 0 - 0 0 - - 0
3 web 4 web4 ::1 0 5 1 1 1 1 0 0 14 0 0 0 - 8080 - 0 0 - - 0
3 web 3 web3 0.0.0.0 0 5 1 1 1 1 0 0 14 0 0 0 - 8080 - 0 0 - - 0
";
        let s = parse_servers_state(reply, "web").unwrap();
        let a: Vec<bool> = s.iter().map(|s| s.addressable).collect();
        assert_eq!(a, [true, false, false, true, true]);
        assert!(s[1].maint && s[1].target.is_none());
        // After a `state ready` joined to a refused `addr`: READY, no address (admin 0).
        let ready = reply.replace("3 web 2 web2 - 0 32", "3 web 2 web2 - 2 0");
        let s = parse_servers_state(&ready, "web").unwrap();
        assert!(!s[1].maint && !s[1].serving() && !s[1].addressable);
    }

    #[test]
    fn addr_replies_are_checked_against_what_success_looks_like() {
        // Captured from HAProxy 2.6.12 and 3.0.11.
        for ok in [
            "IP changed from '0.0.0.0' to '127.0.0.12', no need to change the port by 'stats socket command'",
            "IP changed from '127.0.0.1' to '127.0.0.14', port changed from '+0' to '8080' by 'stats socket command'",
            "no need to change the addr, no need to change the port by 'stats socket command'",
            "IP changed from '0.0.0.0' to '127.0.0.12' by 'stats socket command'",
            "IP changed from '::1' to '127.0.0.12' by 'stats socket command'\n",
            "nothing changed",
        ] {
            assert!(addr_change_accepted(ok), "{ok}");
        }
        for refused in [
            "Update for the current server address family is only supported through configuration file by 'stats socket command'",
            "Update for the current server address family is only supported through configuration file.",
            "Invalid addr '1.2.3' by 'stats socket command'",
            "Invalid addr '1.2.3'",
            // Half done is not done.
            "IP changed from '127.0.0.12' to '1.2.3.4', problem converting port 'abc' to an int by 'stats socket command'",
            "No such server.",
            "Permission denied",
            "",
        ] {
            assert!(!addr_change_accepted(refused), "{refused}");
        }
    }

    #[test]
    fn a_younger_process_on_the_stats_socket_was_restarted() {
        let s = Duration::from_secs;
        assert!(!restarted_since(s(100), s(60), s(160)));
        assert!(
            !restarted_since(s(100), s(60), s(159)),
            "rounding is no restart"
        );
        assert!(restarted_since(s(100), s(60), s(3)));
    }

    #[test]
    fn a_file_written_after_haproxy_started_is_not_what_it_runs() {
        let now = std::time::SystemTime::now();
        let s = Duration::from_secs;
        // HAProxy up 100 s; the file written 10 s ago: written after it started.
        assert!(written_after_start(now - s(10), now, s(100)));
        // Written 200 s ago: HAProxy (up 100 s) read it.
        assert!(!written_after_start(now - s(200), now, s(100)));
    }

    #[test]
    fn unknown_backend_and_garbage_are_errors() {
        assert_eq!(
            parse_servers_state("Can't find backend.\n", "x")
                .unwrap_err()
                .to_string(),
            "HAProxy has no backend \"x\""
        );
        assert!(parse_servers_state("", "x").is_err());
        assert!(parse_servers_state("Unknown command\n", "x").is_err());
        let short = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_port\n3 app 1\n";
        assert!(parse_servers_state(short, "app").is_err());
    }
}

/// Sessions (current plus queued) on each server of `backend`, from `show stat`.
pub async fn sessions(
    socket: &Path,
    backend: &str,
    timeout: Duration,
) -> Result<std::collections::BTreeMap<String, u64>, RuntimeError> {
    let reply = command(socket, &format!("show stat {backend} 4 -1"), timeout).await?;
    parse_sessions(&reply, backend)
}

pub fn parse_sessions(
    reply: &str,
    backend: &str,
) -> Result<std::collections::BTreeMap<String, u64>, RuntimeError> {
    let mut out = std::collections::BTreeMap::new();
    let mut lines = reply.lines().map(str::trim).filter(|l| !l.is_empty());
    let header = lines
        .next()
        .and_then(|h| h.strip_prefix("# "))
        .ok_or_else(|| RuntimeError::Unexpected {
            command: "show stat",
            excerpt: reply.chars().take(120).collect(),
        })?;
    let cols: Vec<&str> = header.split(',').collect();
    let col = |n: &str| cols.iter().position(|c| *c == n);
    let (Some(px), Some(sv), Some(scur), Some(qcur)) =
        (col("pxname"), col("svname"), col("scur"), col("qcur"))
    else {
        return Err(RuntimeError::MissingColumns {
            command: "show stat",
            columns: "pxname, svname, scur or qcur",
        });
    };
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        if f.get(px) != Some(&backend) {
            continue;
        }
        let Some(name) = f.get(sv) else { continue };
        if *name == "BACKEND" || *name == "FRONTEND" {
            continue;
        }
        let num = |i: usize| -> Result<u64, RuntimeError> {
            let v = f.get(i).copied().unwrap_or("");
            if v.is_empty() {
                return Ok(0);
            }
            v.parse().map_err(|_| RuntimeError::BadSessionCount {
                value: v.to_owned(),
                line: line.to_owned(),
            })
        };
        out.insert((*name).to_owned(), num(scur)? + num(qcur)?);
    }
    Ok(out)
}

#[cfg(test)]
mod session_tests {
    #[test]
    fn sessions_per_server() {
        let reply = "# pxname,svname,qcur,qmax,scur,smax\nweb,web1,0,0,3,9\nweb,web2,2,2,1,1\nweb,BACKEND,0,0,4,9\nother,x,0,0,7,7\n";
        let s = super::parse_sessions(reply, "web").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s["web1"], 3);
        assert_eq!(s["web2"], 3);
        assert!(super::parse_sessions("Unknown command", "web").is_err());
        assert!(super::parse_sessions("# pxname,svname,scur,qcur\nweb,a,x,0\n", "web").is_err());
    }

    #[test]
    fn the_shared_variants_say_which_command() {
        fn e<T: std::fmt::Debug>(r: Result<T, super::RuntimeError>) -> String {
            r.unwrap_err().to_string()
        }
        assert_eq!(
            e(super::parse_servers_state("Unknown command\n", "x")),
            "unexpected answer to `show servers state`: Unknown command"
        );
        assert_eq!(
            e(super::parse_servers_state("1\n# be_id be_name\n3 app\n", "x")),
            "`show servers state` lacks the be_name, srv_name, srv_addr, srv_admin_state or srv_port column"
        );
        assert_eq!(
            e(super::parse_sessions("Unknown command", "web")),
            "unexpected answer to `show stat`: Unknown command"
        );
        assert_eq!(
            e(super::parse_sessions("# pxname,svname\n", "web")),
            "`show stat` lacks the pxname, svname, scur or qcur column"
        );
    }
}
