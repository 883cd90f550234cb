//! A stand-in for a Consul agent's health API, on loopback.
//!
//! Consul ships no binary on the package registries this project may use, so this small
//! server speaks the part of Consul's HTTP API the watchdog uses, as Consul documents it:
//! `GET /v1/health/service/<name>` with `passing`, `tag` (repeatable), `dc`, and blocking
//! queries (`index` + `wait`: the answer is held until the service's index moves past
//! `index` or `wait` runs out), the `X-Consul-Index` header, and ACL tokens in
//! `X-Consul-Token` (403 "ACL not found" otherwise). Entries have Consul's JSON shape
//! (`Node`, `Service`, `Checks`). It is a stand-in, not Consul: no catalog writes, no
//! consistency modes, one datacenter.
//!
//! Faults a real cluster shows, on demand: [`Consul::index_answers`] makes every answer come
//! back at once with a fixed `X-Consul-Index` (or none), as a Consul with the index bug its
//! docs describe does; [`Consul::set_index`] moves the index anywhere, backwards included (a
//! restored snapshot); [`Consul::set_known_leader`] answers `X-Consul-KnownLeader: false`
//! (a stale read during an election). Every request's time and `index` parameter are kept.

use crate::lb::Backends;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use serde_json::json;
use std::net::{Ipv4Addr, SocketAddr};
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

struct State {
    service: String,
    datacenter: String,
    instances: Vec<Instance>,
    /// Answer every request with this status and body instead (an outage).
    failing: Option<(u16, String)>,
    token: Option<String>,
    requests: u64,
    blocking_requests: u64,
    /// Some: answer at once with this `X-Consul-Index` (None inside: no header at all).
    fixed_index: Option<Option<String>>,
    known_leader: bool,
    /// When each request came, and its `index` parameter.
    log: Vec<(std::time::Instant, Option<String>)>,
}

pub struct Consul {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    index: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Consul {
    pub async fn start(service: &str, instances: Vec<Instance>) -> Consul {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State {
            service: service.into(),
            datacenter: "dc1".into(),
            instances,
            failing: None,
            token: None,
            requests: 0,
            blocking_requests: 0,
            fixed_index: None,
            known_leader: true,
            log: Vec::new(),
        }));
        let (index, _) = watch::channel(10u64);
        let (st, idx) = (state.clone(), index.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (st, idx) = (st.clone(), idx.clone());
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let (st, idx) = (st.clone(), idx.clone());
                            async move {
                                Ok::<_, std::convert::Infallible>(answer(&st, &idx, req).await)
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Consul {
            addr,
            state,
            index,
            task,
        }
    }

    /// A backend-sync source table body (`[rules.NAME.check.source]`) for service `web` here.
    pub fn source(&self) -> String {
        format!(
            "type = \"consul\"\nservice = \"web\"\naddress = \"{}\"\n",
            self.url()
        )
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replace the service's instances (bumps the index, waking blocked queries).
    pub fn set(&self, instances: Vec<Instance>) {
        self.state.lock().unwrap().instances = instances;
        self.index.send_modify(|i| *i += 1);
    }

    pub fn instances(&self) -> Vec<Instance> {
        self.state.lock().unwrap().instances.clone()
    }

    pub fn fail_with(&self, failing: Option<(u16, &str)>) {
        self.state.lock().unwrap().failing = failing.map(|(s, b)| (s, b.to_owned()));
        self.index.send_modify(|i| *i += 1);
    }

    pub fn require_token(&self, token: &str) {
        self.state.lock().unwrap().token = Some(token.into());
    }

    /// Some(h): answer every query at once with `X-Consul-Index: h` (Some(None): without the
    /// header). None: the real index and blocking behaviour again.
    pub fn index_answers(&self, fixed: Option<Option<&str>>) {
        self.state.lock().unwrap().fixed_index = fixed.map(|h| h.map(str::to_owned));
        self.index.send_modify(|_| {});
    }

    /// Set the service's index (lower than now: it goes backwards, as after a restore).
    pub fn set_index(&self, index: u64) {
        self.index.send_replace(index);
    }

    /// `X-Consul-KnownLeader` of the following answers.
    pub fn set_known_leader(&self, known: bool) {
        self.state.lock().unwrap().known_leader = known;
    }

    /// Each request's arrival time and `index` parameter, in order.
    pub fn request_log(&self) -> Vec<(std::time::Instant, Option<String>)> {
        self.state.lock().unwrap().log.clone()
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
    idx: &watch::Sender<u64>,
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
    {
        let mut s = st.lock().unwrap();
        s.requests += 1;
        if get("index").is_some() {
            s.blocking_requests += 1;
        }
        s.log.push((std::time::Instant::now(), get("index")));
        if s.token.is_some() && s.token != token {
            return reply(403, *idx.borrow(), "ACL not found".into());
        }
    }
    let Some(service) = path.strip_prefix("/v1/health/service/") else {
        return reply(404, *idx.borrow(), "Not found".into());
    };
    let service = service.to_owned();

    // A blocking query waits for the index to pass the one the client has seen (a Consul
    // with the index fault answers at once).
    let fixed = st.lock().unwrap().fixed_index.clone();
    if let (None, Some(seen), Some(wait)) = (
        &fixed,
        get("index").and_then(|i| i.parse::<u64>().ok()),
        get("wait"),
    ) {
        let wait = parse_wait(&wait).unwrap_or(Duration::from_secs(300));
        let mut rx = idx.subscribe();
        let _ = tokio::time::timeout(
            wait,
            rx.wait_for(|i| *i > seen || st.lock().unwrap().fixed_index.is_some()),
        )
        .await;
    }
    let fixed = st.lock().unwrap().fixed_index.clone();
    let index = *idx.borrow();
    let s = st.lock().unwrap();
    let headers = || Headers {
        index: match &fixed {
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
    if service != s.service {
        return reply_with(200, headers(), "[]".into());
    }
    let passing = get("passing").is_some_and(|p| p != "0" && p != "false");
    let tags: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "tag")
        .map(|(_, v)| v.clone())
        .collect();
    let entries: Vec<serde_json::Value> = s
        .instances
        .iter()
        .filter(|i| !passing || i.passing)
        .filter(|i| tags.iter().all(|t| i.tags.contains(t)))
        .map(|i| {
            let status = if i.passing { "passing" } else { "critical" };
            let id = format!("{}-{}", s.service, i.port);
            json!({
                "Node": {"ID": "00000000-0000-0000-0000-000000000000", "Node": i.node, "Address": i.address.to_string(),
                         "Datacenter": s.datacenter, "TaggedAddresses": {"lan": i.address.to_string()}, "Meta": {}},
                "Service": {"ID": id, "Service": s.service, "Tags": i.tags, "Address": "", "Port": i.port,
                            "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": false},
                "Checks": [
                    {"Node": i.node, "CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing"},
                    {"Node": i.node, "CheckID": format!("service:{id}"), "Name": "http", "Status": status, "ServiceID": id}
                ]
            })
        })
        .collect();
    reply_with(
        200,
        headers(),
        serde_json::Value::Array(entries).to_string(),
    )
}
