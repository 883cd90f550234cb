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
    /// Fewer of the backend's servers are UP than `min_up` / `min_up_ratio` ask.
    #[error("backend {backend}: {up} of {counted} servers UP{maint}, fewer than {wanted}")]
    TooFewUp {
        backend: String,
        up: usize,
        /// Servers not in maintenance.
        counted: usize,
        /// `, N in maintenance`, or nothing.
        maint: String,
        /// What was asked: `min_up 3`, `min_up_ratio 0.5 (2)`.
        wanted: String,
    },
}

pub async fn probe(spec: &HaproxyProbeSpec, client: &reqwest::Client) -> Outcome {
    let run = async {
        let mut seen = Vec::new();
        if let Some(sock) = &spec.stats_socket {
            match socket_ready(sock, spec).await {
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

async fn socket_ready(path: &Path, spec: &HaproxyProbeSpec) -> Result<String, NotReady> {
    let reply = crate::haproxy::socket::command(path, "show info;show stat").await?;
    judge(&reply, spec)
}

/// Judge a `show info;show stat` reply against what `spec` asks of the frontend and backend.
pub fn judge(reply: &str, spec: &HaproxyProbeSpec) -> Result<String, NotReady> {
    let (frontend, backend) = (spec.frontend.as_deref(), spec.backend.as_deref());
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
            Some("UP") if spec.min_up.is_none() && spec.min_up_ratio.is_none() => {
                detail.push(format!("backend {b} UP"))
            }
            Some("UP") => detail.push(servers_up(&rows, (px, sv, st), b, spec)?),
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

/// Count the backend's servers against `min_up` / `min_up_ratio`. A server's `status` is UP
/// (also `UP 1/3`, going down), DOWN, NOLB, DRAIN, MAINT, `no check`... (HAProxy management
/// guide, "9.1. CSV format", field 17). `UP` and `no check` (a server without health checks,
/// which HAProxy sends traffic to) count as up; MAINT (also `MAINT (via ...)`) is left out of
/// the count altogether, as an empty backend-sync slot is.
fn servers_up(
    rows: &[Vec<&str>],
    (px, sv, st): (usize, usize, usize),
    backend: &str,
    spec: &HaproxyProbeSpec,
) -> Result<String, NotReady> {
    let (mut up, mut counted, mut maint) = (0usize, 0usize, 0usize);
    for r in rows {
        if r.get(px) != Some(&backend) || matches!(r.get(sv), Some(&"FRONTEND" | &"BACKEND")) {
            continue;
        }
        let status = r.get(st).copied().unwrap_or("");
        if status.starts_with("MAINT") {
            maint += 1;
            continue;
        }
        counted += 1;
        if status == "UP" || status.starts_with("UP ") || status == "no check" {
            up += 1;
        }
    }
    let mut wanted = Vec::new();
    if let Some(n) = spec.min_up {
        if up < n as usize {
            wanted.push(format!("min_up {n}"));
        }
    }
    if let Some(ratio) = spec.min_up_ratio {
        // Rounded up, so that 0.5 of 3 servers is 2; a backend with none counted fails.
        let need = ((ratio * counted as f64) - 1e-9).ceil().max(1.0) as usize;
        if up < need {
            wanted.push(format!("min_up_ratio {ratio} ({need})"));
        }
    }
    let maint_note = if maint > 0 {
        format!(", {maint} in maintenance")
    } else {
        String::new()
    };
    if wanted.is_empty() {
        Ok(format!(
            "backend {backend}: {up} of {counted} servers UP{maint_note}"
        ))
    } else {
        Err(NotReady::TooFewUp {
            backend: backend.to_owned(),
            up,
            counted,
            maint: maint_note,
            wanted: wanted.join(" and "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::judge;
    use crate::config::HaproxyProbeSpec;

    const REPLY: &str = "Name: HAProxy\nVersion: 2.6.12\nStopping: 0\n\n\
# pxname,svname,qcur,status,\nweb,FRONTEND,,OPEN,\napp,srv1,0,DOWN,\napp,BACKEND,0,DOWN,\nok,BACKEND,0,UP,\n\n";

    fn spec(frontend: Option<&str>, backend: Option<&str>) -> HaproxyProbeSpec {
        HaproxyProbeSpec {
            frontend: frontend.map(str::to_owned),
            backend: backend.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn frontend_and_backend_states() {
        assert!(judge(REPLY, &spec(Some("web"), Some("ok"))).is_ok());
        assert_eq!(
            judge(REPLY, &spec(None, Some("app")))
                .unwrap_err()
                .to_string(),
            "backend app is DOWN"
        );
        assert_eq!(
            judge(REPLY, &spec(Some("nope"), None))
                .unwrap_err()
                .to_string(),
            "frontend nope not found"
        );
    }

    #[test]
    fn stopping_or_foreign_answers_fail() {
        assert_eq!(
            judge(
                &REPLY.replace("Stopping: 0", "Stopping: 1"),
                &spec(None, None)
            )
            .unwrap_err()
            .to_string(),
            "HAProxy is stopping"
        );
        assert!(judge("Unknown command\n", &spec(None, None)).is_err());
        assert!(judge("", &spec(None, None)).is_err());
    }

    /// Five servers: two UP (one of them going down), one without checks, one DOWN, one
    /// DRAIN; and two empty slots in maintenance, which are not counted.
    const FIVE: &str = "Name: HAProxy\nStopping: 0\n\n\
# pxname,svname,status,\napp,a,UP,\napp,b,UP 1/3,\napp,c,no check,\napp,d,DOWN,\napp,e,DRAIN,\n\
app,slot6,MAINT,\napp,slot7,MAINT (via x/y),\napp,BACKEND,UP,\nother,a,UP,\n";

    #[test]
    fn min_up_counts_servers_up_and_leaves_maintenance_out() {
        let mut s = spec(None, Some("app"));
        s.min_up = Some(3);
        assert_eq!(
            judge(FIVE, &s).unwrap(),
            "HAProxy running, backend app: 3 of 5 servers UP, 2 in maintenance"
        );
        s.min_up = Some(4);
        assert_eq!(
            judge(FIVE, &s).unwrap_err().to_string(),
            "backend app: 3 of 5 servers UP, 2 in maintenance, fewer than min_up 4"
        );
    }

    #[test]
    fn min_up_ratio_rounds_up() {
        let mut s = spec(None, Some("app"));
        s.min_up_ratio = Some(0.6);
        assert!(judge(FIVE, &s).is_ok(), "3 of 5 is 0.6");
        s.min_up_ratio = Some(0.61);
        assert_eq!(
            judge(FIVE, &s).unwrap_err().to_string(),
            "backend app: 3 of 5 servers UP, 2 in maintenance, fewer than min_up_ratio 0.61 (4)"
        );
        // Only slots in maintenance: nothing counted, and that is not healthy.
        let empty = "Name: HAProxy\nStopping: 0\n\n# pxname,svname,status,\napp,s1,MAINT,\napp,BACKEND,UP,\n";
        s.min_up_ratio = Some(0.1);
        assert!(judge(empty, &s).is_err());
    }
}
