//! A stand-in for a Consul agent's health API, on loopback.
//!
//! Consul has no emulator, and ships no binary on the package registries this project may
//! use, so this small server speaks the part of Consul's real HTTP wire protocol the watchdog
//! uses, as Consul documents it: `GET /v1/health/service/<name>` with `passing`, `tag`
//! (repeatable), `dc`, and blocking queries (`index` + `wait`: the answer is held until the
//! service's index moves past `index` or `wait` runs out), the `X-Consul-Index` header, and
//! ACL tokens in `X-Consul-Token` (403 "ACL not found" otherwise). Entries have Consul's JSON
//! shape (`Node`, `Service`, `Checks`). It is a stand-in, not Consul: no catalog writes over
//! HTTP, no consistency modes, one datacenter.
//!
//! It holds one service ([`Consul::start`]) or many ([`Consul::start_many`]), each with its
//! own index, as Consul 1.0.7 and later keep one per service for this endpoint: a change
//! ([`Consul::set_service`]) gives that service the next raft index and wakes only the queries
//! blocked on it; the other services keep their index and their queries stay blocked. A
//! service the catalog does not hold answers `[]` at the catalog's highest index.
//!
//! Faults a real cluster shows, on demand: [`Consul::index_answers`] makes every answer come
//! back at once with a fixed `X-Consul-Index` (or none), as a Consul with the index bug its
//! docs describe does; [`Consul::set_index`] moves the index anywhere, backwards included (a
//! restored snapshot); [`Consul::set_known_leader`] answers `X-Consul-KnownLeader: false`
//! (a stale read during an election). Every request's time and `index` parameter are kept,
//! and when each blocking query was answered ([`Consul::answers`]).

use crate::lb::Backends;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use serde_json::json;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct Instance {
    pub node: String,
    pub address: Ipv4Addr,
    pub port: u16,
    pub tags: Vec<String>,
    pub passing: bool,
}

/// Instances for the servers `idx` of `b` (by their index, as [`Backends::addr`] takes it).
pub fn instances(b: &Backends, idx: &[usize]) -> Vec<Instance> {
    idx.iter()
        .map(|i| Instance::new(Backends::ip(*i), b.port))
        .collect()
}

impl Instance {
    pub fn new(address: Ipv4Addr, port: u16) -> Instance {
        Instance {
            node: format!("node-{address}"),
            address,
            port,
            tags: vec!["web".into()],
            passing: true,
        }
    }
}

/// One service of the catalog: its instances and its own index, as Consul (1.0.7 and later)
/// keeps one per service for the health endpoint, so a change to one service wakes only the
/// blocking queries on it.
struct Service {
    instances: Vec<Instance>,
    index: watch::Sender<u64>,
}

impl Service {
    fn new(instances: Vec<Instance>, index: u64) -> Service {
        Service {
            instances,
            index: watch::channel(index).0,
        }
    }
}

struct State {
    /// The service the single-service calls ([`Consul::set`], [`Consul::set_index`], ...)
    /// act on: the one [`Consul::start`] was given, or the first of [`Consul::start_many`].
    primary: String,
    services: BTreeMap<String, Service>,
    /// The catalog's raft index: the highest index any service has had. A change takes the
    /// next one, as a write to Consul's state store does. A query for a service the catalog
    /// does not hold answers `[]` at this index and blocks on it (any change wakes it), as
    /// Consul does for a missing service.
    raft: watch::Sender<u64>,
    datacenter: String,
    /// Answer every request with this status and body instead (an outage).
    failing: Option<(u16, String)>,
    token: Option<String>,
    requests: u64,
    blocking_requests: u64,
    /// Some: answer at once with this `X-Consul-Index` (None inside: no header at all).
    fixed_index: Option<Option<String>>,
    /// Whether `fixed_index` is set, for blocked queries to read without taking the state's
    /// lock (which is held while an index is sent: taking it inside `wait_for` would
    /// deadlock).
    answer_at_once: Arc<AtomicBool>,
    known_leader: bool,
    /// When each request came, its `index` parameter, and the service it asked for (None:
    /// another path).
    log: Vec<(std::time::Instant, Option<String>, Option<String>)>,
    /// When each answer to a blocking query on a known service left: (service, index
    /// answered, when). What a benchmark splits its latency with.
    answers: Vec<(String, u64, std::time::Instant)>,
}

impl State {
    /// A write to `service` (or to every service: None): each takes the next raft index, and
    /// the queries blocked on it wake.
    fn bump(&mut self, service: Option<&str>) {
        let names: Vec<String> = match service {
            Some(s) => vec![s.to_owned()],
            None => self.services.keys().cloned().collect(),
        };
        let mut raft = *self.raft.borrow();
        for n in names {
            if let Some(svc) = self.services.get(&n) {
                raft += 1;
                svc.index.send_replace(raft);
            }
        }
        self.raft.send_replace(raft);
    }

    /// Wake every blocked query without moving any index (they look again at the faults).
    fn wake_all(&self) {
        for s in self.services.values() {
            s.index.send_modify(|_| {});
        }
        self.raft.send_modify(|_| {});
    }

    /// The index a query on `service` blocks on and answers with.
    fn index_of(&self, service: &str) -> watch::Sender<u64> {
        match self.services.get(service) {
            Some(s) => s.index.clone(),
            None => self.raft.clone(),
        }
    }
}

pub struct Consul {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Consul {
    /// One service, `service`, at index 10.
    pub async fn start(service: &str, instances: Vec<Instance>) -> Consul {
        Consul::start_many(vec![(service.to_owned(), instances)]).await
    }

    /// Many services, each with its own index (all 10 at first); the first is the primary
    /// one the single-service calls act on. Panics when `services` is empty.
    pub async fn start_many(services: Vec<(String, Vec<Instance>)>) -> Consul {
        let primary = services.first().expect("at least one service").0.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State {
            primary,
            services: services
                .into_iter()
                .map(|(name, list)| (name, Service::new(list, 10)))
                .collect(),
            raft: watch::channel(10u64).0,
            datacenter: "dc1".into(),
            failing: None,
            token: None,
            requests: 0,
            blocking_requests: 0,
            fixed_index: None,
            answer_at_once: Arc::new(AtomicBool::new(false)),
            known_leader: true,
            log: Vec::new(),
            answers: Vec::new(),
        }));
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                // As Consul's Go HTTP server does (Go sets TCP_NODELAY on every connection).
                let _ = stream.set_nodelay(true);
                let st = st.clone();
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let st = st.clone();
                            async move { Ok::<_, std::convert::Infallible>(answer(&st, req).await) }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Consul { addr, state, task }
    }

    /// A backend-sync source table body (`[rules.NAME.check.source]`) for service `web` here.
    pub fn source(&self) -> String {
        self.source_for("web")
    }

    /// The same for `service`.
    pub fn source_for(&self, service: &str) -> String {
        format!(
            "type = \"consul\"\nservice = \"{service}\"\naddress = \"{}\"\n",
            self.url()
        )
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replace the primary service's instances (its index moves, waking the queries blocked
    /// on it).
    pub fn set(&self, instances: Vec<Instance>) {
        let primary = self.state.lock().unwrap().primary.clone();
        self.set_service(&primary, instances);
    }

    /// Replace `service`'s instances (added to the catalog if new): its index takes the next
    /// raft index and only the queries blocked on it wake; every other service keeps its
    /// index.
    pub fn set_service(&self, service: &str, instances: Vec<Instance>) {
        let mut s = self.state.lock().unwrap();
        if !s.services.contains_key(service) {
            let raft = *s.raft.borrow();
            s.services
                .insert(service.to_owned(), Service::new(Vec::new(), raft));
        }
        s.services.get_mut(service).expect("just added").instances = instances;
        s.bump(Some(service));
    }

    /// The primary service's instances.
    pub fn instances(&self) -> Vec<Instance> {
        let s = self.state.lock().unwrap();
        s.services[&s.primary].instances.clone()
    }

    /// `service`'s instances (empty when the catalog does not hold it).
    pub fn instances_of(&self, service: &str) -> Vec<Instance> {
        let s = self.state.lock().unwrap();
        s.services
            .get(service)
            .map(|x| x.instances.clone())
            .unwrap_or_default()
    }

    /// `service`'s index now (the catalog's, for a service it does not hold).
    pub fn index_of(&self, service: &str) -> u64 {
        let s = self.state.lock().unwrap();
        let i = *s.index_of(service).borrow();
        i
    }

    /// Every answer to a blocking query on a known service so far: (service, the index it
    /// answered with, when it left).
    pub fn answers(&self) -> Vec<(String, u64, std::time::Instant)> {
        self.state.lock().unwrap().answers.clone()
    }

    /// An outage (or its end): every service's index moves, so every blocked query wakes
    /// and gets the outage's answer.
    pub fn fail_with(&self, failing: Option<(u16, &str)>) {
        let mut s = self.state.lock().unwrap();
        s.failing = failing.map(|(st, b)| (st, b.to_owned()));
        s.bump(None);
    }

    pub fn require_token(&self, token: &str) {
        self.state.lock().unwrap().token = Some(token.into());
    }

    /// Some(h): answer every query at once with `X-Consul-Index: h` (Some(None): without the
    /// header). None: the real index and blocking behaviour again.
    pub fn index_answers(&self, fixed: Option<Option<&str>>) {
        let mut s = self.state.lock().unwrap();
        s.fixed_index = fixed.map(|h| h.map(str::to_owned));
        s.answer_at_once
            .store(s.fixed_index.is_some(), Ordering::SeqCst);
        s.wake_all();
    }

    /// Set the primary service's index (lower than now: it goes backwards, as after a
    /// restore); the catalog's raft index follows it.
    pub fn set_index(&self, index: u64) {
        let s = self.state.lock().unwrap();
        s.services[&s.primary].index.send_replace(index);
        s.raft.send_replace(index);
    }

    /// `X-Consul-KnownLeader` of the following answers.
    pub fn set_known_leader(&self, known: bool) {
        self.state.lock().unwrap().known_leader = known;
    }

    /// Each request's arrival time and `index` parameter, in order.
    pub fn request_log(&self) -> Vec<(std::time::Instant, Option<String>)> {
        let s = self.state.lock().unwrap();
        s.log.iter().map(|(t, i, _)| (*t, i.clone())).collect()
    }

    /// The same, of the requests for `service` only.
    pub fn request_log_of(&self, service: &str) -> Vec<(std::time::Instant, Option<String>)> {
        let s = self.state.lock().unwrap();
        s.log
            .iter()
            .filter(|(_, _, svc)| svc.as_deref() == Some(service))
            .map(|(t, i, _)| (*t, i.clone()))
            .collect()
    }

    /// (all requests, blocking requests) so far.
    pub fn requests(&self) -> (u64, u64) {
        let s = self.state.lock().unwrap();
        (s.requests, s.blocking_requests)
    }
}

impl Drop for Consul {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How an answer's headers are made: the real index, or the fault set on the stand-in.
struct Headers {
    index: Option<String>,
    known_leader: bool,
}

impl Headers {
    fn real(index: u64) -> Headers {
        Headers {
            index: Some(index.to_string()),
            known_leader: true,
        }
    }
}

fn reply(status: u16, index: u64, body: String) -> Response<Full<Bytes>> {
    reply_with(status, Headers::real(index), body)
}

fn reply_with(status: u16, h: Headers, body: String) -> Response<Full<Bytes>> {
    let mut b = Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .header(
            "X-Consul-KnownLeader",
            if h.known_leader { "true" } else { "false" },
        )
        .header(
            "X-Consul-LastContact",
            if h.known_leader { "0" } else { "12000" },
        );
    if let Some(i) = h.index {
        b = b.header("X-Consul-Index", i);
    }
    b.body(Full::new(Bytes::from(body))).expect("response")
}

/// Consul's duration syntax for `wait`: `10s`, `500ms`, `1m`.
fn parse_wait(s: &str) -> Option<Duration> {
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    if let Some(sec) = s.strip_suffix('s') {
        return sec.parse().ok().map(Duration::from_secs);
    }
    if let Some(m) = s.strip_suffix('m') {
        return m.parse::<u64>().ok().map(|m| Duration::from_secs(m * 60));
    }
    None
}

async fn answer(
    st: &Arc<Mutex<State>>,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let get = |k: &str| query.iter().find(|(q, _)| q == k).map(|(_, v)| v.clone());
    let token = req
        .headers()
        .get("X-Consul-Token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let service = path.strip_prefix("/v1/health/service/").map(str::to_owned);
    // The index this query blocks on and answers with: its service's (the catalog's for
    // another path or a service it does not hold).
    let (idx, at_once) = {
        let mut s = st.lock().unwrap();
        s.requests += 1;
        if get("index").is_some() {
            s.blocking_requests += 1;
        }
        s.log
            .push((std::time::Instant::now(), get("index"), service.clone()));
        let idx = s.index_of(service.as_deref().unwrap_or(""));
        if s.token.is_some() && s.token != token {
            let i = *idx.borrow();
            return reply(403, i, "ACL not found".into());
        }
        (idx, s.answer_at_once.clone())
    };
    let Some(service) = service else {
        let i = *idx.borrow();
        return reply(404, i, "Not found".into());
    };

    // A blocking query waits for its service's index to pass the one the client has seen (a
    // Consul with the index fault answers at once).
    let fixed = st.lock().unwrap().fixed_index.clone();
    let blocked = if let (None, Some(seen), Some(wait)) = (
        &fixed,
        get("index").and_then(|i| i.parse::<u64>().ok()),
        get("wait"),
    ) {
        let wait = parse_wait(&wait).unwrap_or(Duration::from_secs(300));
        let mut rx = idx.subscribe();
        let _ = tokio::time::timeout(
            wait,
            rx.wait_for(|i| *i > seen || at_once.load(Ordering::SeqCst)),
        )
        .await;
        true
    } else {
        false
    };
    let index = *idx.borrow();
    let mut s = st.lock().unwrap();
    if blocked && s.services.contains_key(&service) {
        s.answers
            .push((service.clone(), index, std::time::Instant::now()));
    }
    let headers = Headers {
        index: match &s.fixed_index {
            Some(h) => h.clone(),
            None => Some(index.to_string()),
        },
        known_leader: s.known_leader,
    };
    if let Some((status, body)) = &s.failing {
        return reply(*status, index, body.clone());
    }
    if let Some(dc) = get("dc") {
        if dc != s.datacenter {
            return reply(500, index, "No path to datacenter".to_owned());
        }
    }
    let Some(svc) = s.services.get(&service) else {
        return reply_with(200, headers, "[]".into());
    };
    let passing = get("passing").is_some_and(|p| p != "0" && p != "false");
    let tags: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "tag")
        .map(|(_, v)| v.clone())
        .collect();
    let entries: Vec<serde_json::Value> = svc
        .instances
        .iter()
        .filter(|i| !passing || i.passing)
        .filter(|i| tags.iter().all(|t| i.tags.contains(t)))
        .map(|i| {
            let status = if i.passing { "passing" } else { "critical" };
            let id = format!("{service}-{}", i.port);
            json!({
                "Node": {"ID": "00000000-0000-0000-0000-000000000000", "Node": i.node, "Address": i.address.to_string(),
                         "Datacenter": s.datacenter, "TaggedAddresses": {"lan": i.address.to_string()}, "Meta": {}},
                "Service": {"ID": id, "Service": service, "Tags": i.tags, "Address": "", "Port": i.port,
                            "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": false},
                "Checks": [
                    {"Node": i.node, "CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing"},
                    {"Node": i.node, "CheckID": format!("service:{id}"), "Name": "http", "Status": status, "ServiceID": id}
                ]
            })
        })
        .collect();
    reply_with(200, headers, serde_json::Value::Array(entries).to_string())
}
