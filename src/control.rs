//! How operators and monitoring see the running daemon: `watchdog status` over a local
//! control socket, and Prometheus `/metrics` over TCP (off unless `[control] metrics_listen`
//! is set). Both are plain HTTP/1.1 served by the same handler; neither can change anything.

use crate::engine::threshold::Health;
use crate::engine::CycleReport;
use crate::telemetry::metrics::{Metrics, RuleGauge, EXPOSITION_CONTENT_TYPE};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// `[control] socket = ""`: the daemon serves no control socket to ask.
#[derive(Debug, thiserror::Error)]
#[error("the configuration turns the control socket off (`[control] socket = \"\"`)")]
pub struct SocketOff;

/// Which control socket `status` asks, from the configuration as loaded: its
/// `[control] socket`, or, when the configuration cannot be loaded (the daemon may run with
/// one this user cannot read), the default, with a note that says so. Errors: the
/// configuration turns the socket off.
pub fn socket_of(
    config: Result<crate::config::Config, crate::config::ConfigErrors>,
) -> Result<(PathBuf, Option<String>), SocketOff> {
    match config {
        Ok(c) => match c.control.socket {
            Some(s) => Ok((s, None)),
            None => Err(SocketOff),
        },
        Err(e) => {
            let first = e.0.first().map(|e| e.to_string()).unwrap_or_default();
            let default = PathBuf::from(crate::config::defaults::CONTROL_SOCKET);
            let note = format!(
                "the configuration does not load ({first}{}); asking the default control socket {} (give --socket to ask another)",
                if e.0.len() > 1 { "; ..." } else { "" },
                default.display()
            );
            Ok((default, Some(note)))
        }
    }
}

/// The last thing each rule saw and did, kept across configuration reloads.
#[derive(Clone)]
pub struct StatusBoard(Arc<Mutex<Board>>, Arc<Metrics>);

impl StatusBoard {
    /// An empty board whose `/metrics` shows `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        StatusBoard(Arc::default(), metrics)
    }
}

#[derive(Default)]
struct Board {
    started: Option<SystemTime>,
    reloaded: Option<SystemTime>,
    sources: Vec<PathBuf>,
    rules: BTreeMap<String, RuleStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RuleStatus {
    pub rule: String,
    pub check: String,
    /// `up` or `down`.
    pub state: String,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    pub last_result: Option<LastResult>,
    pub last_action: Option<LastAction>,
}

impl RuleStatus {
    /// A rule that has not run a cycle yet.
    fn new(rule: &str, check: &str) -> Self {
        RuleStatus {
            rule: rule.into(),
            check: check.into(),
            state: "up".into(),
            consecutive_failures: 0,
            consecutive_successes: 0,
            last_result: None,
            last_action: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LastResult {
    pub ok: bool,
    pub detail: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LastAction {
    pub action: String,
    pub outcome: String,
    pub at: String,
}

/// What `GET /status` answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub version: String,
    pub started: Option<String>,
    pub reloaded: Option<String>,
    pub config: Vec<String>,
    pub rules: Vec<RuleStatus>,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl StatusBoard {
    /// A configuration starts (or replaces the previous one): forget rules it no longer has.
    pub fn configure(&self, sources: &[PathBuf], rules: &[crate::config::Rule], reload: bool) {
        let mut b = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = SystemTime::now();
        if reload {
            b.reloaded = Some(now);
        } else {
            b.started = Some(now);
        }
        b.sources = sources.to_vec();
        b.rules
            .retain(|name, _| rules.iter().any(|r| &r.name == name));
        for r in rules {
            b.rules
                .entry(r.name.clone())
                .or_insert_with(|| RuleStatus::new(&r.name, r.check.kind()));
        }
    }

    pub fn record(&self, r: &CycleReport) {
        let now = rfc3339(SystemTime::now());
        let mut b = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let entry = b
            .rules
            .entry(r.rule.clone())
            .or_insert_with(|| RuleStatus::new(&r.rule, r.check));
        entry.check = r.check.into();
        entry.state = match r.health {
            Health::Up => "up".into(),
            Health::Down => "down".into(),
        };
        entry.consecutive_failures = r.consecutive_failures;
        entry.consecutive_successes = r.consecutive_successes;
        entry.last_result = Some(LastResult {
            ok: r.outcome.ok,
            detail: r.outcome.detail.clone(),
            at: now.clone(),
        });
        if let Some((name, outcome)) = r.actions.last() {
            entry.last_action = Some(LastAction {
                action: name.clone(),
                outcome: outcome.to_string(),
                at: now,
            });
        }
    }

    pub fn status(&self) -> Status {
        let b = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Status {
            version: env!("CARGO_PKG_VERSION").into(),
            started: b.started.map(rfc3339),
            reloaded: b.reloaded.map(rfc3339),
            config: b.sources.iter().map(|p| p.display().to_string()).collect(),
            rules: b.rules.values().cloned().collect(),
        }
    }

    /// The `/metrics` body: every counter, and one gauge per rule ([`Metrics::exposition`]).
    pub fn metrics(&self) -> String {
        let status = self.status();
        let rules: Vec<RuleGauge<'_>> = status
            .rules
            .iter()
            .map(|r| RuleGauge {
                rule: &r.rule,
                check: &r.check,
                up: r.state == "up",
                consecutive_failures: r.consecutive_failures,
            })
            .collect();
        self.1.exposition(&rules)
    }
}

fn answer(board: &StatusBoard, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match (req.method().as_str(), req.uri().path()) {
        ("GET", "/status") => match serde_json::to_string_pretty(&board.status()) {
            Ok(j) => (StatusCode::OK, "application/json", j),
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                e.to_string(),
            ),
        },
        ("GET", "/metrics") => (StatusCode::OK, EXPOSITION_CONTENT_TYPE, board.metrics()),
        ("GET", _) => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /status or /metrics\n".into(),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "read-only\n".into(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

/// Serve one connection; a client that stalls is dropped after 10 s.
async fn serve_conn<S>(io: S, board: StatusBoard)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let r = answer(&board, &req);
        async move { Ok::<_, std::convert::Infallible>(r) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(io), svc);
    let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

enum Listener {
    Unix(tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener),
}

impl Listener {
    async fn accept(&self) -> std::io::Result<Box<dyn Io>> {
        Ok(match self {
            Listener::Unix(l) => Box::new(l.accept().await?.0),
            Listener::Tcp(l) => Box::new(l.accept().await?.0),
        })
    }
}

/// Serve connections until `stop`; then remove `cleanup` (the socket file), if any.
fn spawn_accept(
    l: Listener,
    board: StatusBoard,
    mut stop: watch::Receiver<bool>,
    cleanup: Option<PathBuf>,
) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                a = l.accept() => if let Ok(s) = a {
                    tokio::spawn(serve_conn(s, board.clone()));
                },
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        if let Some(p) = cleanup {
            let _ = std::fs::remove_file(p);
        }
    });
}

/// Listen on the control socket and/or the metrics address until `stop`. Errors binding are
/// returned (the daemon logs them and goes on: monitoring is not worth a failover outage).
pub async fn serve(
    socket: Option<&Path>,
    metrics: Option<std::net::SocketAddr>,
    board: StatusBoard,
    stop: watch::Receiver<bool>,
) -> Vec<String> {
    let mut errors = Vec::new();
    if let Some(path) = socket {
        // A socket file left by a previous run that nobody answers on is stale. Anything that
        // is not a socket (a mistyped path naming a real file) is left alone: bind then fails.
        use std::os::unix::fs::FileTypeExt;
        let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
        if is_socket && tokio::net::UnixStream::connect(path).await.is_err() {
            let _ = std::fs::remove_file(path);
        }
        match tokio::net::UnixListener::bind(path) {
            Ok(l) => spawn_accept(
                Listener::Unix(l),
                board.clone(),
                stop.clone(),
                Some(path.to_owned()),
            ),
            Err(e) => errors.push(format!("control socket {}: {e}", path.display())),
        }
    }
    if let Some(addr) = metrics {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => spawn_accept(Listener::Tcp(l), board.clone(), stop.clone(), None),
            Err(e) => errors.push(format!("metrics address {addr}: {e}")),
        }
    }
    errors
}

/// Why `watchdog status` got no status from the daemon's control socket.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// connect(2) to the control socket failed: no daemon, or no access to the socket.
    #[error("cannot reach the daemon's control socket {}: {source} (is `haproxy-watchdog run` running, and may this user open the socket?)", socket.display())]
    Unreachable {
        socket: std::path::PathBuf,
        source: std::io::Error,
    },
    /// Sending the request or reading the answer failed.
    #[error("control socket: {0}")]
    Io(#[source] std::io::Error),
    /// No whole answer within 5 seconds.
    #[error("the daemon did not answer on its control socket within 5 s")]
    Timeout,
    /// The answer has no HTTP head.
    #[error("the control socket's answer is not HTTP")]
    NotHttp,
    /// An HTTP status other than 200; `line` is the status line.
    #[error("the control socket answered: {line}")]
    Refused { line: String },
    /// The body is not the JSON of a [`Status`].
    #[error("the control socket's answer is not a status: {0}")]
    NotStatus(#[source] serde_json::Error),
}

/// `watchdog status`: ask the daemon on its control socket.
pub async fn fetch_status(socket: &Path) -> Result<Status, StatusError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let talk = async {
        let mut s = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|source| StatusError::Unreachable {
                socket: socket.to_owned(),
                source,
            })?;
        s.write_all(b"GET /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .map_err(StatusError::Io)?;
        let mut reply = Vec::new();
        s.take(16 * 1024 * 1024)
            .read_to_end(&mut reply)
            .await
            .map_err(StatusError::Io)?;
        Ok::<_, StatusError>(reply)
    };
    let reply = tokio::time::timeout(Duration::from_secs(5), talk)
        .await
        .map_err(|_| StatusError::Timeout)??;
    let text = String::from_utf8_lossy(&reply);
    let (head, body) = text.split_once("\r\n\r\n").ok_or(StatusError::NotHttp)?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(StatusError::Refused {
            line: head.lines().next().unwrap_or("").to_owned(),
        });
    }
    serde_json::from_str(body).map_err(StatusError::NotStatus)
}

#[cfg(test)]
mod tests {
    /// A tester's find: with a configuration that does not load, `status` asked the default
    /// socket without a word, and then said the daemon was unreachable.
    #[test]
    fn a_fallback_to_the_default_socket_is_said() {
        let bad =
            crate::config::from_sources(&[("w.toml".into(), "[control]\nsokcet = 1\n".into())]);
        let (socket, note) = socket_of(bad).expect("falls back");
        assert_eq!(
            socket,
            PathBuf::from(crate::config::defaults::CONTROL_SOCKET)
        );
        let note = note.expect("the fallback is said");
        assert!(
            note.contains("does not load") && note.contains("sokcet"),
            "{note}"
        );
        assert!(
            note.contains(crate::config::defaults::CONTROL_SOCKET),
            "{note}"
        );
        let rule = "[rules.web]\ncheck = { type = \"http\", url = \"http://127.0.0.1:1/\" }\n";
        let load = |control: &str| {
            crate::config::from_sources(&[(
                "w.toml".into(),
                format!("{rule}[control]\n{control}\n"),
            )])
        };
        assert!(socket_of(load("socket = \"\"")).is_err(), "turned off");
        let (socket, note) = socket_of(load("socket = \"/run/x.sock\"")).expect("set");
        assert_eq!((socket, note), (PathBuf::from("/run/x.sock"), None));
    }

    use super::*;

    #[tokio::test]
    async fn a_control_socket_path_naming_a_regular_file_never_deletes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("watchdog.toml");
        std::fs::write(&path, "precious").unwrap();
        let (_stop, rx) = watch::channel(false);
        let errors = serve(
            Some(&path),
            None,
            StatusBoard::new(Arc::new(Metrics::new().expect("metrics"))),
            rx,
        )
        .await;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    }
}
