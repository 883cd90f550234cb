//! Is the local HAProxy ready to serve? Through its stats socket (the process answers, is not
//! stopping, and the named frontend is OPEN / backend UP) and/or an HTTP health URL (for
//! example a `monitor-uri` frontend). Every configured probe must pass.

use super::{describe_reqwest, Outcome};
use crate::config::HaproxyProbeSpec;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `show info` + `show stat` of a large config is well under this.
const SOCKET_REPLY_LIMIT: u64 = 8 * 1024 * 1024;

pub async fn probe(spec: &HaproxyProbeSpec, client: &reqwest::Client) -> Outcome {
    let run = async {
        let mut seen = Vec::new();
        if let Some(sock) = &spec.stats_socket {
            match socket_ready(sock, spec.frontend.as_deref(), spec.backend.as_deref()).await {
                Ok(d) => seen.push(d),
                Err(e) => return Outcome::fail(e),
            }
        }
        if let Some(url) = &spec.health_url {
            match client.get(url.clone()).send().await {
                Ok(r) if r.status().is_success() => {
                    seen.push(format!("health URL HTTP {}", r.status().as_u16()))
                }
                Ok(r) => {
                    return Outcome::fail(format!(
                        "health URL answered HTTP {}",
                        r.status().as_u16()
                    ))
                }
                Err(e) => return Outcome::fail(format!("health URL: {}", describe_reqwest(&e))),
            }
        }
        Outcome::ok(seen.join(", "))
    };
    match tokio::time::timeout(spec.timeout, run).await {
        Ok(o) => o,
        Err(_) => Outcome::fail(format!(
            "HAProxy did not answer within {}",
            humantime::format_duration(spec.timeout)
        )),
    }
}

/// Send one non-interactive command line to a stats socket and read the whole reply.
pub async fn socket_command(path: &Path, command: &str) -> Result<String, String> {
    let mut stream = tokio::net::UnixStream::connect(path)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                format!(
                    "stats socket {}: {e}: {}",
                    path.display(),
                    access_hint(path)
                )
            }
            _ => format!("stats socket {}: {e}", path.display()),
        })?;
    stream
        .write_all(format!("{command}\n").as_bytes())
        .await
        .map_err(|e| format!("stats socket {}: write: {e}", path.display()))?;
    let mut reply = Vec::new();
    (&mut stream)
        .take(SOCKET_REPLY_LIMIT)
        .read_to_end(&mut reply)
        .await
        .map_err(|e| format!("stats socket {}: read: {e}", path.display()))?;
    String::from_utf8(reply)
        .map_err(|_| format!("stats socket {}: reply is not UTF-8", path.display()))
}

/// Who we are and what the socket allows, for a refused connect: "user haproxy-watchdog
/// (uid 998) is not in group haproxy, which /run/haproxy/admin.sock (mode 660, owner
/// haproxy:haproxy) needs". HAProxy sets the socket's mode and group with `stats socket ...
/// mode 660 group haproxy` (HAProxy configuration manual, "5.1. Bind options").
fn access_hint(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: getuid cannot fail and touches no memory of ours.
    let uid = unsafe { libc::getuid() };
    let user = user_name(uid).unwrap_or_else(|| uid.to_string());
    // A directory on the way that this user cannot search hides the socket itself.
    for dir in path.ancestors().skip(1) {
        let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap_or_default();
        // SAFETY: access(2) reads a NUL-terminated path we own.
        if !c.as_bytes().is_empty() && unsafe { libc::access(c.as_ptr(), libc::X_OK) } != 0 {
            return format!(
                "user {user} (uid {uid}) cannot enter directory {} on the way to it",
                dir.display()
            );
        }
    }
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return format!("user {user} (uid {uid}) cannot look at it either: {e}"),
    };
    let mode = meta.mode() & 0o777;
    let group = group_name(meta.gid()).unwrap_or_else(|| meta.gid().to_string());
    let owner = user_name(meta.uid()).unwrap_or_else(|| meta.uid().to_string());
    let advice = if mode & 0o060 == 0o060 {
        format!(
            "add {user} to group {group} (the packages do when HAProxy is installed) and restart"
        )
    } else {
        format!("the socket gives its group no read-write access, so joining group {group} would not help: set `stats socket ... mode 660 group <a group {user} is in>` in HAProxy's configuration")
    };
    format!(
        "user {user} (uid {uid}) lacks read-write access to it (mode {mode:o}, owner {owner}:{group}); {advice}"
    )
}

fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: all-zero is a valid `passwd`; getpwuid_r writes only within `pw` and `buf`.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out = std::ptr::null_mut();
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points to a NUL-terminated string inside `buf`.
    Some(
        unsafe { std::ffi::CStr::from_ptr(pw.pw_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

fn group_name(gid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: as in user_name, for getgrgid_r.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut out = std::ptr::null_mut();
    let rc = unsafe { libc::getgrgid_r(gid, &mut gr, buf.as_mut_ptr(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() {
        return None;
    }
    // SAFETY: on success gr_name points to a NUL-terminated string inside `buf`.
    Some(
        unsafe { std::ffi::CStr::from_ptr(gr.gr_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

async fn socket_ready(
    path: &Path,
    frontend: Option<&str>,
    backend: Option<&str>,
) -> Result<String, String> {
    let reply = socket_command(path, "show info;show stat").await?;
    judge(&reply, frontend, backend)
}

/// Judge a `show info;show stat` reply.
pub fn judge(reply: &str, frontend: Option<&str>, backend: Option<&str>) -> Result<String, String> {
    let mut name = None;
    let mut stopping = None;
    let mut csv_header = None;
    let mut rows = Vec::new();
    for line in reply.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            csv_header = Some(rest.split(',').collect::<Vec<_>>());
        } else if csv_header.is_some() {
            if !line.is_empty() {
                rows.push(line.split(',').collect::<Vec<_>>());
            }
        } else if let Some((k, v)) = line.split_once(": ") {
            match k {
                "Name" => name = Some(v.trim()),
                "Stopping" => stopping = Some(v.trim()),
                _ => {}
            }
        }
    }
    if name != Some("HAProxy") {
        return Err("stats socket did not answer `show info` like HAProxy".into());
    }
    if stopping.is_some_and(|s| s != "0") {
        return Err("HAProxy is stopping".into());
    }
    let header = csv_header.ok_or("stats socket did not answer `show stat`")?;
    let col = |n: &str| header.iter().position(|h| *h == n);
    let (Some(px), Some(sv), Some(st)) = (col("pxname"), col("svname"), col("status")) else {
        return Err("`show stat` lacks pxname/svname/status columns".into());
    };
    let status_of = |proxy: &str, kind: &str| {
        rows.iter()
            .find(|r| r.get(px) == Some(&proxy) && r.get(sv) == Some(&kind))
            .and_then(|r| r.get(st).copied())
    };
    let mut detail = vec!["HAProxy running".to_owned()];
    if let Some(f) = frontend {
        match status_of(f, "FRONTEND") {
            Some("OPEN") => detail.push(format!("frontend {f} OPEN")),
            Some(s) => return Err(format!("frontend {f} is {s}")),
            None => return Err(format!("frontend {f} not found")),
        }
    }
    if let Some(b) = backend {
        match status_of(b, "BACKEND") {
            Some("UP") => detail.push(format!("backend {b} UP")),
            Some(s) => return Err(format!("backend {b} is {s}")),
            None => return Err(format!("backend {b} not found")),
        }
    }
    Ok(detail.join(", "))
}

#[cfg(test)]
mod tests {
    use super::judge;

    const REPLY: &str = "Name: HAProxy\nVersion: 2.6.12\nStopping: 0\n\n\
# pxname,svname,qcur,status,\nweb,FRONTEND,,OPEN,\napp,srv1,0,DOWN,\napp,BACKEND,0,DOWN,\nok,BACKEND,0,UP,\n\n";

    #[test]
    fn frontend_and_backend_states() {
        assert!(judge(REPLY, Some("web"), Some("ok")).is_ok());
        assert_eq!(
            judge(REPLY, None, Some("app")).unwrap_err(),
            "backend app is DOWN"
        );
        assert_eq!(
            judge(REPLY, Some("nope"), None).unwrap_err(),
            "frontend nope not found"
        );
    }

    #[test]
    fn stopping_or_foreign_answers_fail() {
        assert_eq!(
            judge(&REPLY.replace("Stopping: 0", "Stopping: 1"), None, None).unwrap_err(),
            "HAProxy is stopping"
        );
        assert!(judge("Unknown command\n", None, None).is_err());
        assert!(judge("", None, None).is_err());
    }
}
