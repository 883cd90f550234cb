//! Is the local HAProxy ready to serve? Through its stats socket (the process answers, is not
//! stopping, and the named frontend is OPEN / backend UP) and/or an HTTP health URL (for
//! example a `monitor-uri` frontend). Every configured probe must pass.

use super::{describe_reqwest, Outcome};
use crate::config::HaproxyProbeSpec;
use std::path::Path;

/// Why the stats socket says HAProxy is not ready: the socket failed, the reply to `show
/// info;show stat` is not HAProxy's, or HAProxy, the frontend or the backend is not up
/// (HAProxy management guide, "9.3. Unix Socket commands", `show info` and `show stat`).
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    /// The stats socket could not be used.
    #[error(transparent)]
    Socket(#[from] crate::haproxy::socket::SocketError),
    /// The reply has no `Name: HAProxy` line.
    #[error("stats socket did not answer `show info` like HAProxy")]
    NotHaproxy,
    /// `show info` says `Stopping: 1`: the process is on its way out.
    #[error("HAProxy is stopping")]
    Stopping,
    /// The reply has no `# pxname,...` CSV header.
    #[error("stats socket did not answer `show stat`")]
    NoStat,
    /// The CSV header lacks a column we read.
    #[error("`show stat` lacks pxname/svname/status columns")]
    MissingColumns,
    /// The frontend's status is not `OPEN`.
    #[error("frontend {frontend} is {status}")]
    Frontend { frontend: String, status: String },
    /// `show stat` has no such frontend.
    #[error("frontend {frontend} not found")]
    NoFrontend { frontend: String },
    /// The backend's status is not `UP`.
    #[error("backend {backend} is {status}")]
    Backend { backend: String, status: String },
    /// `show stat` has no such backend.
    #[error("backend {backend} not found")]
    NoBackend { backend: String },
}

pub async fn probe(spec: &HaproxyProbeSpec, client: &reqwest::Client) -> Outcome {
    let run = async {
        let mut seen = Vec::new();
        if let Some(sock) = &spec.stats_socket {
            match socket_ready(sock, spec.frontend.as_deref(), spec.backend.as_deref()).await {
                Ok(d) => seen.push(d),
                Err(e) => return Outcome::fail(e.to_string()),
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

async fn socket_ready(
    path: &Path,
    frontend: Option<&str>,
    backend: Option<&str>,
) -> Result<String, NotReady> {
    let reply = crate::haproxy::socket::command(path, "show info;show stat").await?;
    judge(&reply, frontend, backend)
}

/// Judge a `show info;show stat` reply.
pub fn judge(
    reply: &str,
    frontend: Option<&str>,
    backend: Option<&str>,
) -> Result<String, NotReady> {
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
        return Err(NotReady::NotHaproxy);
    }
    if stopping.is_some_and(|s| s != "0") {
        return Err(NotReady::Stopping);
    }
    let header = csv_header.ok_or(NotReady::NoStat)?;
    let col = |n: &str| header.iter().position(|h| *h == n);
    let (Some(px), Some(sv), Some(st)) = (col("pxname"), col("svname"), col("status")) else {
        return Err(NotReady::MissingColumns);
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
            Some(s) => {
                return Err(NotReady::Frontend {
                    frontend: f.to_owned(),
                    status: s.to_owned(),
                })
            }
            None => {
                return Err(NotReady::NoFrontend {
                    frontend: f.to_owned(),
                })
            }
        }
    }
    if let Some(b) = backend {
        match status_of(b, "BACKEND") {
            Some("UP") => detail.push(format!("backend {b} UP")),
            Some(s) => {
                return Err(NotReady::Backend {
                    backend: b.to_owned(),
                    status: s.to_owned(),
                })
            }
            None => {
                return Err(NotReady::NoBackend {
                    backend: b.to_owned(),
                })
            }
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
            judge(REPLY, None, Some("app")).unwrap_err().to_string(),
            "backend app is DOWN"
        );
        assert_eq!(
            judge(REPLY, Some("nope"), None).unwrap_err().to_string(),
            "frontend nope not found"
        );
    }

    #[test]
    fn stopping_or_foreign_answers_fail() {
        assert_eq!(
            judge(&REPLY.replace("Stopping: 0", "Stopping: 1"), None, None)
                .unwrap_err()
                .to_string(),
            "HAProxy is stopping"
        );
        assert!(judge("Unknown command\n", None, None).is_err());
        assert!(judge("", None, None).is_err());
    }
}
