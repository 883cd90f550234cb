//! HAProxy's runtime API for one backend: read its server slots (`show servers state`) and
//! send the commands a plan decided on.

use super::plan::{Command, Slot, Target};
use crate::checks::haproxy::socket_command;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

/// Admin-state bits of `show servers state` (HAProxy's `SRV_ADMF_*`): forced, inherited and
/// resolution maintenance. `0x04` (disabled in the configuration) stays set on a slot that was
/// `disabled` in the file and later set ready; that slot serves, so it does not count.
const ADMIN_MAINT: u32 = 0x01 | 0x02 | 0x20;
const ADMIN_DRAIN: u32 = 0x08 | 0x10;

/// One command line to the stats socket, answered within `timeout` (a frozen HAProxy
/// accepts connections and never answers).
async fn command(socket: &Path, line: &str, timeout: Duration) -> Result<String, String> {
    match tokio::time::timeout(timeout, socket_command(socket, line)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "stats socket {}: no answer within {}",
            socket.display(),
            humantime::format_duration(timeout)
        )),
    }
}

/// Every server of `backend` (the caller picks the slots among them).
pub async fn servers(socket: &Path, backend: &str, timeout: Duration) -> Result<Vec<Slot>, String> {
    let reply = command(socket, &format!("show servers state {backend}"), timeout).await?;
    parse_servers_state(&reply, backend)
}

pub fn parse_servers_state(reply: &str, backend: &str) -> Result<Vec<Slot>, String> {
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
                return Err(format!("HAProxy has no backend {backend:?}"));
            }
            return Err(format!(
                "unexpected answer to `show servers state`: {}",
                line.chars().take(120).collect::<String>()
            ));
        };
        let col = |name: &str| h.iter().position(|c| *c == name);
        let (Some(b), Some(n), Some(a), Some(adm), Some(p)) = (
            col("be_name"),
            col("srv_name"),
            col("srv_addr"),
            col("srv_admin_state"),
            col("srv_port"),
        ) else {
            return Err("`show servers state` lacks the be_name, srv_name, srv_addr, srv_admin_state or srv_port column".into());
        };
        let f: Vec<&str> = line.split_whitespace().collect();
        let get = |i: usize| {
            f.get(i)
                .copied()
                .ok_or_else(|| format!("short `show servers state` line: {line}"))
        };
        if get(b)? != backend {
            continue;
        }
        let admin: u32 = get(adm)?
            .parse()
            .map_err(|_| format!("bad srv_admin_state in: {line}"))?;
        let ip: Option<Ipv4Addr> = get(a)?
            .parse()
            .ok()
            .filter(|ip: &Ipv4Addr| !ip.is_unspecified());
        let port: u16 = get(p)?.parse().unwrap_or(0);
        slots.push(Slot {
            name: get(n)?.to_owned(),
            target: ip.filter(|_| port != 0).map(|ip| Target { ip, port }),
            maint: admin & ADMIN_MAINT != 0,
            draining: admin & ADMIN_DRAIN != 0,
        });
    }
    if header.is_none() {
        return Err("HAProxy did not answer `show servers state` (no header line)".into());
    }
    Ok(slots)
}

/// Send each command and check its answer: `set server ... addr` says what it changed,
/// `set server ... state` answers nothing. Stops at the first refusal.
pub async fn execute(
    socket: &Path,
    backend: &str,
    commands: &[Command],
    timeout: Duration,
) -> Result<(), String> {
    for c in commands {
        let lines = c.lines(backend);
        let reply = command(socket, &lines.join(";"), timeout).await?;
        let reply = reply.trim();
        let ok = match c {
            Command::Enable { .. } => {
                // The addr answer, then nothing from `state ready`.
                reply.contains("changed from") || reply.starts_with("no need to change")
            }
            _ => reply.is_empty(),
        };
        if !ok {
            return Err(format!(
                "HAProxy refused `{}`: {}",
                lines.join("; "),
                reply.lines().next().unwrap_or("")
            ));
        }
    }
    Ok(())
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
    fn unknown_backend_and_garbage_are_errors() {
        assert_eq!(
            parse_servers_state("Can't find backend.\n", "x").unwrap_err(),
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
) -> Result<std::collections::BTreeMap<String, u64>, String> {
    let reply = command(socket, &format!("show stat {backend} 4 -1"), timeout).await?;
    parse_sessions(&reply, backend)
}

pub fn parse_sessions(
    reply: &str,
    backend: &str,
) -> Result<std::collections::BTreeMap<String, u64>, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut lines = reply.lines().map(str::trim).filter(|l| !l.is_empty());
    let header = lines
        .next()
        .and_then(|h| h.strip_prefix("# "))
        .ok_or_else(|| {
            format!(
                "unexpected answer to `show stat`: {}",
                reply.chars().take(120).collect::<String>()
            )
        })?;
    let cols: Vec<&str> = header.split(',').collect();
    let col = |n: &str| cols.iter().position(|c| *c == n);
    let (Some(px), Some(sv), Some(scur), Some(qcur)) =
        (col("pxname"), col("svname"), col("scur"), col("qcur"))
    else {
        return Err("`show stat` lacks the pxname, svname, scur or qcur column".into());
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
        let num = |i: usize| -> Result<u64, String> {
            let v = f.get(i).copied().unwrap_or("");
            if v.is_empty() {
                return Ok(0);
            }
            v.parse()
                .map_err(|_| format!("bad session count {v:?} in: {line}"))
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
}
