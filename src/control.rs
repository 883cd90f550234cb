//! How operators and monitoring see and steer the running daemon: `watchdog status`,
//! `pause`, `resume`, `takeover` and `drill` over a local control socket, and Prometheus
//! `/metrics` over TCP (off unless `[control] metrics_listen` is set). Both are plain HTTP/1.1
//! served by the same handler. Only the control socket takes commands (`POST`), and only from
//! root or the daemon's own user, told by the socket's peer credentials (SO_PEERCRED, unix(7));
//! the metrics address answers `GET /metrics` and nothing else that changes anything.

use crate::engine::threshold::Health;
use crate::engine::CycleReport;
use crate::history::{History, Step};
use crate::pause::{Pause, PauseRecord, Paused};
use crate::telemetry::events;
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

/// The last thing each rule saw and did, kept across configuration reloads, with the node's
/// pause and history.
#[derive(Clone)]
pub struct StatusBoard(Arc<Mutex<Board>>, Arc<Metrics>, Option<(Pause, History)>);

impl StatusBoard {
    /// An empty board whose `/metrics` shows `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        StatusBoard(Arc::default(), metrics, None)
    }

    /// The board, showing `pause` in `status` and `history` in `status --history`.
    pub fn with(self, pause: Pause, history: History) -> Self {
        StatusBoard(self.0, self.1, Some((pause, history)))
    }

    /// Every history entry, oldest first.
    pub fn history(&self) -> Vec<crate::history::Entry> {
        self.2
            .as_ref()
            .map(|(_, h)| h.entries())
            .unwrap_or_default()
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
    /// Why this node starts no claim now, if it is paused.
    #[serde(default)]
    pub paused: Option<Paused>,
    pub rules: Vec<RuleStatus>,
}

/// `to` = `value`, in the string's own buffer.
fn set(to: &mut String, value: &str) {
    if to != value {
        to.clear();
        to.push_str(value);
    }
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
        // Called on every check: the entry's strings are reused, not made anew.
        let entry = match b.rules.get_mut(&r.rule) {
            Some(e) => e,
            None => b
                .rules
                .entry(r.rule.clone())
                .or_insert_with(|| RuleStatus::new(&r.rule, r.check)),
        };
        set(&mut entry.check, r.check);
        set(
            &mut entry.state,
            match r.health {
                Health::Up => "up",
                Health::Down => "down",
            },
        );
        entry.consecutive_failures = r.consecutive_failures;
        entry.consecutive_successes = r.consecutive_successes;
        match &mut entry.last_result {
            Some(last) => {
                last.ok = r.outcome.ok;
                set(&mut last.detail, &r.outcome.detail);
                set(&mut last.at, &now);
            }
            None => {
                entry.last_result = Some(LastResult {
                    ok: r.outcome.ok,
                    detail: r.outcome.detail.clone(),
                    at: now.clone(),
                })
            }
        }
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
            paused: self.2.as_ref().and_then(|(p, _)| p.now()),
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

/// What `watchdog takeover` and `drill` ask the daemon (`POST /takeover`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TakeoverRequest {
    /// The `claim_eip` action; None: the configuration's only one.
    #[serde(default)]
    pub action: Option<String>,
    /// A drill: measured end to end, up to the rule's check and the public path.
    #[serde(default)]
    pub drill: bool,
    /// With `drill`: return the address to where it was afterwards.
    #[serde(default)]
    pub back: bool,
    /// `SUDO_USER` of the command, shown beside the peer's user (informational only).
    #[serde(default)]
    pub sudo_user: Option<String>,
}

/// What `watchdog pause` asks the daemon (`POST /pause`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PauseRequest {
    /// `--for`, in milliseconds; None: until `resume`.
    #[serde(default)]
    pub for_ms: Option<u64>,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub sudo_user: Option<String>,
}

/// What the daemon answers to `POST /pause`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PauseAnswer {
    /// The pause now in force.
    pub pause: PauseRecord,
    /// The pause it replaced, if one was in force (its start is kept).
    #[serde(default)]
    pub replaced: Option<PauseRecord>,
}

/// What the daemon answers to `POST /resume`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResumeAnswer {
    /// The pause that ended; None: the node was not paused.
    pub ended: Option<PauseRecord>,
}

/// What `watchdog resume` asks the daemon (`POST /resume`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResumeRequest {
    #[serde(default)]
    pub sudo_user: Option<String>,
}

/// One move of a takeover or drill, as the daemon reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MoveReport {
    /// `takeover`, `drill` or `back`.
    pub kind: String,
    /// `done`, `no-op`, `refused` or `error`.
    pub outcome: String,
    /// The refusing gate, for `refused`.
    #[serde(default)]
    pub reason: Option<String>,
    pub detail: String,
    /// Every step with its time (ms since the Unix epoch), the command's receipt first.
    pub steps: Vec<Step>,
}

/// What the daemon answers to `POST /takeover`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TakeoverReport {
    pub action: String,
    pub eip: String,
    /// Who asked, as the daemon saw it.
    pub by: String,
    /// The move onto this node.
    pub takeover: MoveReport,
    /// `drill --back`: the move back.
    #[serde(default)]
    pub back: Option<MoveReport>,
    /// Whether this node holds the address at the end (before `--back`).
    pub holds: bool,
    /// For a drill: every step it measures happened.
    #[serde(default)]
    pub passed: Option<bool>,
    /// One line: what happened and how long it took.
    pub summary: String,
}

/// Why a takeover did not start.
#[derive(Debug, thiserror::Error)]
pub enum TakeoverError {
    /// The configuration has no claim action (`claim_eip`, `claim_private_ip`, `claim_route`).
    #[error("the configuration has no claim action (claim_eip, claim_private_ip, claim_route) to take over with")]
    NoClaim,
    /// The named action is not a claim action of the running configuration.
    #[error("no claim action named {name:?}; the configuration has: {}", .have.join(", "))]
    Unknown { name: String, have: Vec<String> },
    /// Several claim actions and none named.
    #[error("the configuration has several claim actions: name one ({})", .0.join(", "))]
    Ambiguous(Vec<String>),
    /// The named action is a member of a `claim_group`: moving it alone would split the group.
    #[error("{name:?} is a member of group {group:?}: taking it over alone would split the group; `takeover` and `drill` of a claim_group are not supported yet")]
    GroupMember { name: String, group: String },
    /// The named action is a `claim_group`.
    #[error("{0:?} is a claim_group: `takeover` and `drill` of a group are not supported yet")]
    Group(String),
    /// `--back` without `drill`.
    #[error("--back goes with drill only")]
    BackWithoutDrill,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// What runs the control socket's `takeover` and `drill`: the running configuration.
pub trait Operate: Send + Sync + 'static {
    /// Run a planned takeover (or drill) as `by` asked. The future owns what it needs: the
    /// control socket runs it in its own task, so a client that hangs up does not cut it.
    fn takeover(
        self: Arc<Self>,
        request: TakeoverRequest,
        by: String,
    ) -> BoxFuture<Result<TakeoverReport, TakeoverError>>;
}

/// What the control socket's commands act on: the pause, and the running configuration.
#[derive(Clone)]
pub struct Commands(Arc<CommandsInner>);

struct CommandsInner {
    pause: Pause,
    metrics: Arc<Metrics>,
    current: Mutex<Option<Arc<dyn Operate>>>,
    /// One planned move at a time: a second `takeover` waits for the first.
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl Commands {
    /// Commands acting on `pause`; takeovers on what [`Commands::set_current`] gives.
    pub fn new(pause: Pause, metrics: Arc<Metrics>) -> Commands {
        Commands(Arc::new(CommandsInner {
            pause,
            metrics,
            current: Mutex::new(None),
            one_at_a_time: tokio::sync::Mutex::new(()),
        }))
    }

    /// The configuration now running, which `takeover` and `drill` use.
    pub fn set_current(&self, op: Arc<dyn Operate>) {
        *self.0.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(op);
    }
}

/// Who is on the other end of a connection.
#[derive(Clone, Copy)]
enum Peer {
    /// The control socket, with the caller's uid when the kernel told it.
    Unix(Option<u32>),
    /// The metrics address: read-only.
    Tcp,
}

/// `user (uid N)`, and who ran sudo when the command says so.
fn who(uid: u32, sudo_user: Option<&str>) -> String {
    let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "unknown user".into());
    match sudo_user.filter(|s| !s.is_empty()) {
        Some(s) => format!(
            "{name} (uid {uid}, sudo by {})",
            crate::pause::operator_text(s, 64)
        ),
        None => format!("{name} (uid {uid})"),
    }
}

type Answer = (StatusCode, &'static str, String);

fn text(code: StatusCode, body: impl Into<String>) -> Answer {
    (code, "text/plain", body.into())
}

fn json<T: Serialize>(code: StatusCode, value: &T) -> Answer {
    match serde_json::to_string_pretty(value) {
        Ok(j) => (code, "application/json", j),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A command's JSON body: at most 64 KiB, within 5 s.
async fn body<T: serde::de::DeserializeOwned>(
    req: Request<hyper::body::Incoming>,
) -> Result<T, Answer> {
    use http_body_util::BodyExt;
    let limited = http_body_util::Limited::new(req.into_body(), 64 * 1024);
    let bytes = match tokio::time::timeout(Duration::from_secs(5), limited.collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => {
            return Err(text(
                StatusCode::BAD_REQUEST,
                format!("request body: {e}\n"),
            ))
        }
        Err(_) => {
            return Err(text(
                StatusCode::REQUEST_TIMEOUT,
                "request body: timed out\n",
            ))
        }
    };
    if bytes.is_empty() {
        return serde_json::from_str("{}")
            .map_err(|e| text(StatusCode::BAD_REQUEST, format!("{e}\n")));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| text(StatusCode::BAD_REQUEST, format!("request body: {e}\n")))
}

async fn answer(
    board: &StatusBoard,
    commands: Option<&Commands>,
    req: Request<hyper::body::Incoming>,
    peer: Peer,
) -> Response<Full<Bytes>> {
    let (status, ctype, body) = route(board, commands, req, peer).await;
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

async fn route(
    board: &StatusBoard,
    commands: Option<&Commands>,
    req: Request<hyper::body::Incoming>,
    peer: Peer,
) -> Answer {
    let path = req.uri().path().to_owned();
    match (req.method().as_str(), path.as_str()) {
        ("GET", "/status") => json(StatusCode::OK, &board.status()),
        ("GET", "/history") => json(StatusCode::OK, &board.history()),
        ("GET", "/metrics") => (StatusCode::OK, EXPOSITION_CONTENT_TYPE, board.metrics()),
        ("GET", _) => text(StatusCode::NOT_FOUND, "try /status, /history or /metrics\n"),
        ("POST", "/pause" | "/resume" | "/takeover") => {
            let (Peer::Unix(uid), Some(commands)) = (peer, commands) else {
                return text(StatusCode::METHOD_NOT_ALLOWED, "read-only\n");
            };
            // Root, or the daemon's own user: who may already do anything the daemon does.
            let me = nix::unistd::geteuid().as_raw();
            let Some(uid) = uid.filter(|u| *u == 0 || *u == me) else {
                let uid = uid.map_or_else(|| "unknown".to_string(), |u| u.to_string());
                tracing::warn!(event = events::CONTROL_REFUSED, uid = %uid, path = %path,
                    "only root or the daemon's user may pause, resume or take over");
                return text(
                    StatusCode::FORBIDDEN,
                    format!(
                        "only root or the daemon's user (uid {me}) may {}: run it with sudo\n",
                        path.trim_start_matches('/')
                    ),
                );
            };
            command(commands, req, &path, uid).await
        }
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "read-only\n"),
    }
}

async fn command(
    commands: &Commands,
    req: Request<hyper::body::Incoming>,
    path: &str,
    uid: u32,
) -> Answer {
    let c = &commands.0;
    match path {
        "/pause" => {
            let r: PauseRequest = match body(req).await {
                Ok(r) => r,
                Err(a) => return a,
            };
            let chars = r.reason.chars().count();
            if chars > crate::pause::REASON_MAX {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "the reason is {chars} characters; say it in at most {}\n",
                        crate::pause::REASON_MAX
                    ),
                );
            }
            let by = who(uid, r.sudo_user.as_deref());
            let (pause, replaced) =
                c.pause
                    .pause(r.for_ms.map(Duration::from_millis), &r.reason, &by);
            json(StatusCode::OK, &PauseAnswer { pause, replaced })
        }
        "/resume" => {
            let r: ResumeRequest = match body(req).await {
                Ok(r) => r,
                Err(a) => return a,
            };
            match c.pause.resume(&who(uid, r.sudo_user.as_deref())) {
                Ok(rec) => json(StatusCode::OK, &ResumeAnswer { ended: Some(rec) }),
                Err(crate::pause::ResumeError::NotPaused) => {
                    json(StatusCode::OK, &ResumeAnswer { ended: None })
                }
                Err(e) => text(StatusCode::CONFLICT, format!("{e}\n")),
            }
        }
        _ => {
            let r: TakeoverRequest = match body(req).await {
                Ok(r) => r,
                Err(a) => return a,
            };
            let by = who(uid, r.sudo_user.as_deref());
            let Some(op) = c.current.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the daemon has no configuration running yet\n",
                );
            };
            let kind = if r.drill { "drill" } else { "takeover" };
            tracing::info!(event = events::TAKEOVER_REQUESTED, action = r.action.as_deref().unwrap_or(""), by = %by, drill = r.drill, back = r.back);
            // Its own task: a client that hangs up mid-move must not cut the move (the gates'
            // steps after the mutating call save, damp and announce it).
            let inner = commands.0.clone();
            let task = tokio::spawn(async move {
                let _one = inner.one_at_a_time.lock().await;
                op.takeover(r, by).await
            });
            match task.await {
                Ok(Ok(report)) => {
                    let result = report.takeover.outcome.as_str();
                    if kind == "drill" {
                        c.metrics.drill(if report.passed == Some(true) {
                            "passed"
                        } else {
                            "failed"
                        });
                    } else {
                        c.metrics.takeover(result);
                    }
                    tracing::info!(event = events::TAKEOVER_FINISHED, kind, result, holds = report.holds, summary = %report.summary);
                    json(StatusCode::OK, &report)
                }
                Ok(Err(e)) => text(StatusCode::NOT_FOUND, format!("{e}\n")),
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the takeover task failed: {e}\n"),
                ),
            }
        }
    }
}

/// Serve one connection. Its request head must arrive within 10 s; a command then runs to
/// its end (a takeover or drill is bounded by its own steps' timeouts), and the whole
/// connection is dropped after `limit`.
async fn serve_conn<S>(
    io: S,
    board: StatusBoard,
    commands: Option<Commands>,
    peer: Peer,
    limit: Duration,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let (board, commands) = (board.clone(), commands.clone());
        async move {
            Ok::<_, std::convert::Infallible>(answer(&board, commands.as_ref(), req, peer).await)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        // A client has sent its request within moments: idle ones give their slot back soon.
        .header_read_timeout(Duration::from_secs(3));
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), svc);
    let _ = tokio::time::timeout(limit, conn).await;
}

/// The metrics address: a scrape has 10 s.
const TCP_LIMIT: Duration = Duration::from_secs(10);
/// The control socket: room for a drill with `--back` (two moves, each verified and
/// followed by the rule's check and checkip, every step bounded).
const UNIX_LIMIT: Duration = Duration::from_secs(15 * 60);
/// How long `takeover` and `drill` wait for the daemon's report.
pub const COMMAND_LIMIT: Duration = UNIX_LIMIT;

enum Listener {
    Unix(tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener),
}

/// At most this many connections are served at once on each listener; more wait in the
/// kernel's backlog. Idle clients cannot take the daemon's file descriptors from its checks.
pub const MAX_CONNECTIONS: usize = 32;

/// The socket file this daemon bound, to remove as it stops: the path, and the device and
/// inode the bind made there.
struct BoundSocket {
    path: PathBuf,
    id: Option<(u64, u64)>,
}

/// The device and inode at `path` (not following a symbolic link).
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

impl BoundSocket {
    /// Remove the socket file if it is still the one this daemon bound. A daemon started
    /// while this one stops may have put its own socket at the path already (removing this
    /// one's as stale, then binding): that one is left alone, or the new daemon would run
    /// without a control socket.
    fn remove(&self) {
        if self.id.is_some() && file_id(&self.path) == self.id {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Serve connections until `stop`; then remove `cleanup` (the socket file), if any.
fn spawn_accept(
    l: Listener,
    board: StatusBoard,
    commands: Option<Commands>,
    mut stop: watch::Receiver<bool>,
    cleanup: Option<BoundSocket>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            // A slot first: at the cap, new connections wait in the backlog, not in our fds.
            let slot = tokio::select! {
                s = slots.clone().acquire_owned() => match s {
                    Ok(s) => s,
                    Err(_) => break,
                },
                _ = stop.wait_for(|s| *s) => break,
            };
            tokio::select! {
                a = accept(&l) => match a {
                    Ok(Accepted::Unix(s)) => {
                        let uid = s.peer_cred().ok().map(|c| c.uid());
                        let (board, commands) = (board.clone(), commands.clone());
                        tokio::spawn(async move {
                            let _slot = slot;
                            serve_conn(s, board, commands, Peer::Unix(uid), UNIX_LIMIT).await
                        });
                    }
                    Ok(Accepted::Tcp(s)) => {
                        let board = board.clone();
                        tokio::spawn(async move {
                            let _slot = slot;
                            serve_conn(s, board, None, Peer::Tcp, TCP_LIMIT).await
                        });
                    }
                    Err(_) => {}
                },
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        if let Some(bound) = cleanup {
            bound.remove();
        }
    });
}

enum Accepted {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

async fn accept(l: &Listener) -> std::io::Result<Accepted> {
    Ok(match l {
        Listener::Unix(l) => Accepted::Unix(l.accept().await?.0),
        Listener::Tcp(l) => Accepted::Tcp(l.accept().await?.0),
    })
}

/// Listen on the control socket and/or the metrics address until `stop`. Errors binding are
/// returned (the daemon logs them and goes on: monitoring is not worth a failover outage).
/// `commands`: what the control socket's `POST`s act on (None: it is read-only).
pub async fn serve(
    socket: Option<&Path>,
    metrics: Option<std::net::SocketAddr>,
    board: StatusBoard,
    commands: Option<Commands>,
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
                commands,
                stop.clone(),
                Some(BoundSocket {
                    path: path.to_owned(),
                    id: file_id(path),
                }),
            ),
            Err(e) => errors.push(format!("control socket {}: {e}", path.display())),
        }
    }
    if let Some(addr) = metrics {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => spawn_accept(Listener::Tcp(l), board.clone(), None, stop.clone(), None),
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
    /// No whole answer in time (5 s for `status`; a takeover's own bound for commands).
    #[error("the daemon did not answer on its control socket within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// The daemon did not answer a status request within `limit`, so the command was not
    /// sent (a daemon stopped with SIGSTOP would carry it out whenever it ran again).
    #[error("the daemon did not answer on its control socket within {} (stopped, or wedged?): `{command}` was not sent", humantime::format_duration(*limit))]
    NotSent { command: String, limit: Duration },
    /// A command (`pause`, `resume`, `takeover`, `drill`) got no whole answer within the
    /// bound: it was sent, so the daemon may still carry it out (a daemon stopped with
    /// SIGSTOP, or busy, reads it when it runs again).
    #[error("no answer to `{command}` within {}: it was sent, and the daemon may still carry it out when it gets to it; `haproxy-watchdog status` (and `status --history` for a takeover) shows whether it did", humantime::format_duration(*limit))]
    CommandTimeout { command: String, limit: Duration },
    /// The connection closed before a whole HTTP answer: the daemon stopped (or crashed)
    /// while answering, or something else listens there.
    #[error("the daemon closed the connection without a whole answer (is it stopping?); for a takeover or drill, `haproxy-watchdog status --history` says what happened once it runs")]
    NotHttp,
    /// An HTTP status other than 200; `line` is the status line, `body` the daemon's reason.
    #[error("{}", if body.is_empty() { format!("the control socket answered: {line}") } else { body.clone() })]
    Refused { line: String, body: String },
    /// The body is not the JSON expected (of a [`Status`], a history, a report).
    #[error("the control socket's answer is not what this version reads: {0}")]
    NotStatus(#[source] serde_json::Error),
}

/// `watchdog status`: ask the daemon on its control socket.
pub async fn fetch_status(socket: &Path) -> Result<Status, StatusError> {
    let body = request(socket, "GET", "/status", None, STATUS_LIMIT).await?;
    serde_json::from_str(&body).map_err(StatusError::NotStatus)
}

/// How long `status` waits for the daemon's answer; a command first asks for the status
/// within this long, and is not sent to a daemon that does not answer.
pub const STATUS_LIMIT: Duration = Duration::from_secs(5);

/// `watchdog status --history`: the daemon's history, oldest first.
pub async fn fetch_history(socket: &Path) -> Result<Vec<crate::history::Entry>, StatusError> {
    let body = request(socket, "GET", "/history", None, Duration::from_secs(5)).await?;
    serde_json::from_str(&body).map_err(StatusError::NotStatus)
}

/// Send one command (`POST path` with `body` as JSON) and read the JSON answer, waiting up to
/// `limit` for it. Errors: as [`StatusError`]; a refused command's reason is in
/// [`StatusError::Refused`].
pub async fn send<Q: Serialize, A: serde::de::DeserializeOwned>(
    socket: &Path,
    path: &str,
    body: &Q,
    limit: Duration,
) -> Result<A, StatusError> {
    send_as(socket, path, path.trim_start_matches('/'), body, limit).await
}

/// [`send`], naming the command `command` in its errors (`drill` goes to `/takeover`).
pub async fn send_as<Q: Serialize, A: serde::de::DeserializeOwned>(
    socket: &Path,
    path: &str,
    command: &str,
    body: &Q,
    limit: Duration,
) -> Result<A, StatusError> {
    let body = serde_json::to_string(body).map_err(StatusError::NotStatus)?;
    let command = command.to_owned();
    // A daemon that does not answer a status request now (stopped with SIGSTOP, wedged) is
    // not sent the command: it would carry it out whenever it ran again, long after the
    // client had given up on it.
    // Any other answer to it (a refusal, a closed connection) is left to the command's own
    // request to report.
    let probe = STATUS_LIMIT.min(limit);
    if let Err(StatusError::Timeout(_)) = request(socket, "GET", "/status", None, probe).await {
        return Err(StatusError::NotSent {
            command,
            limit: probe,
        });
    }
    let answer = request(socket, "POST", path, Some(body), limit)
        .await
        .map_err(|e| match e {
            StatusError::Timeout(limit) => StatusError::CommandTimeout { command, limit },
            e => e,
        })?;
    serde_json::from_str(&answer).map_err(StatusError::NotStatus)
}

/// One HTTP/1.1 exchange on the control socket, within `limit`; the body of a 200 answer.
async fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<String>,
    limit: Duration,
) -> Result<String, StatusError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let talk = async {
        let mut s = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|source| StatusError::Unreachable {
                socket: socket.to_owned(),
                source,
            })?;
        let body = body.unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        // The daemon may answer (a refusal, 403) and close before it has read the whole
        // request: a write cut short by that is not the answer, what was sent back is.
        let sent = match s.write_all(head.as_bytes()).await {
            Ok(()) => s.write_all(body.as_bytes()).await,
            Err(e) => Err(e),
        };
        let cut = match sent {
            Ok(()) => None,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                Some(e)
            }
            Err(e) => return Err(StatusError::Io(e)),
        };
        let mut reply = Vec::new();
        let read = s.take(16 * 1024 * 1024).read_to_end(&mut reply).await;
        match (read, cut) {
            (Ok(_), Some(e)) if reply.is_empty() => Err(StatusError::Io(e)),
            (Ok(_), _) => Ok::<_, StatusError>(reply),
            (Err(_), Some(e)) if reply.is_empty() => Err(StatusError::Io(e)),
            (Err(_), Some(_)) => Ok(reply),
            (Err(e), None) => Err(StatusError::Io(e)),
        }
    };
    let reply = tokio::time::timeout(limit, talk)
        .await
        .map_err(|_| StatusError::Timeout(limit))??;
    let text = String::from_utf8_lossy(&reply);
    let (head, body) = text.split_once("\r\n\r\n").ok_or(StatusError::NotHttp)?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(StatusError::Refused {
            line: head.lines().next().unwrap_or("").to_owned(),
            body: body.trim().chars().take(2000).collect(),
        });
    }
    Ok(body.to_owned())
}

#[cfg(test)]
mod tests {
    /// Breaker's find: `pause` against a daemon that did not answer in time said it failed,
    /// and the pause took effect later anyway. A command that timed out says it may still.
    #[tokio::test]
    async fn a_command_without_an_answer_in_time_says_it_may_still_be_carried_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        // It answers a status request, and then sits on the command.
        let _silent = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut held = Vec::new();
            while let Ok((mut s, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && s.read_exact(&mut byte).await.is_ok() {
                    head.push(byte[0]);
                }
                if head.starts_with(b"GET ") {
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                        )
                        .await;
                    continue;
                }
                held.push(s);
            }
        });
        let e = super::send::<_, serde_json::Value>(
            &path,
            "/pause",
            &serde_json::json!({}),
            std::time::Duration::from_millis(200),
        )
        .await
        .expect_err("no answer");
        let text = e.to_string();
        assert!(
            text.starts_with("no answer to `pause` within 200ms"),
            "{text}"
        );
        assert!(text.contains("may still carry it out"), "{text}");
    }

    /// Breaker's find: `takeover` against a daemon stopped with SIGSTOP waited its whole
    /// 15 minutes, and the takeover ran when the daemon was continued, long after. A command
    /// is sent only to a daemon that answers a status request first.
    #[tokio::test]
    async fn a_command_is_not_sent_to_a_daemon_that_does_not_answer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = requests.clone();
        let _stopped = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut held = Vec::new();
            while let Ok((mut s, _)) = listener.accept().await {
                let mut head = [0u8; 4];
                if s.read_exact(&mut head).await.is_ok() {
                    seen.lock().unwrap().push(head.to_vec());
                }
                held.push(s);
            }
        });
        let started = std::time::Instant::now();
        let e = super::send::<_, serde_json::Value>(
            &path,
            "/takeover",
            &serde_json::json!({}),
            std::time::Duration::from_secs(900),
        )
        .await
        .expect_err("no answer");
        let text = e.to_string();
        assert!(text.contains("`takeover` was not sent"), "{text}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(7),
            "{:?}",
            started.elapsed()
        );
        let requests = requests.lock().unwrap().clone();
        assert_eq!(
            requests,
            [b"GET ".to_vec()],
            "only the status request went out"
        );
    }

    /// Found when the suite ran loaded: the daemon refused a user (403) and closed before it
    /// had read the whole request; the client's write then failed (EPIPE) and it printed
    /// "Broken pipe" instead of the refusal it had been sent.
    #[tokio::test]
    async fn an_answer_sent_before_the_request_was_read_is_what_the_client_says() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            // Every connection (the command's status request first, then the command).
            while let Ok((mut s, _)) = listener.accept().await {
                let _ = s
                    .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nnot you\r\n")
                    .await;
                // Closed without reading a byte.
            }
        });
        // Bigger than the socket's buffers, so the write is cut short.
        let big = "x".repeat(4 * 1024 * 1024);
        let err = super::send::<_, serde_json::Value>(
            &path,
            "/pause",
            &big,
            super::Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, super::StatusError::Refused { line, body } if line.contains("403") && body == "not you"),
            "{err:?}"
        );
    }

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

    /// A daemon started while the last one stopped: the old one, stopping after the new one
    /// bound the path, removed the new one's socket file, and `status` could not reach the
    /// new daemon for the rest of its life.
    #[tokio::test]
    async fn a_stopping_daemon_never_removes_the_socket_its_successor_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let own = dir.path().join("own.sock");
        let board = || StatusBoard::new(Arc::new(Metrics::new().expect("metrics")));
        // The stopping daemon's socket, and a second one it stops with, whose file is
        // removed as it should be: once that one is gone, the stop's cleanups have run.
        let (stop_old, rx) = watch::channel(false);
        assert!(serve(Some(&path), None, board(), None, rx.clone())
            .await
            .is_empty());
        assert!(serve(Some(&own), None, board(), None, rx).await.is_empty());
        // The successor finds the path taken by a socket and binds its own in its place.
        std::fs::remove_file(&path).unwrap();
        let (_stop_new, rx) = watch::channel(false);
        assert!(serve(Some(&path), None, board(), None, rx).await.is_empty());
        let successors = file_id(&path);
        stop_old.send(true).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while own.exists() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the own socket stays"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(file_id(&path), successors, "the successor's socket is gone");
        assert!(fetch_status(&path).await.is_ok());
    }

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
            None,
            rx,
        )
        .await;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    }
}
