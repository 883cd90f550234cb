//! AWS in a box: every simulated instance is a network namespace with the private IP moto
//! gave it, running Debian's HAProxy in front of a backend server, and its own `watchdog`.
//!
//! Hosts on one bridge (10.0.1.0/24, moto's subnet):
//! - `edge` (10.0.1.1) is the internet: it holds the Elastic IP and forwards connections to
//!   it to whichever private IP EC2 associates it with (so a claim visibly moves traffic), and
//!   answers checkip (198.51.100.1) with the caller's public address as AWS's NAT would: the
//!   EIP on its primary private IP, else the node's own public IP. It also carries the AWS
//!   endpoint (10.0.1.250), a fault-injecting proxy in front of moto, like a VPC endpoint:
//!   cutting a node off the edge's public routes leaves AWS reachable.
//! - `client` (10.0.1.200) is a user out on the internet.
//! - each node: its private IP(s), routes to the public ranges via the edge, and its own
//!   instance metadata service at 169.254.169.254 (an IMDSv2 stand-in with its identity).
//!
//! moto itself runs on the machine's loopback; only the proxy talks to it.

use crate::awsproxy::AwsProxy;
use crate::haproxy::Haproxy;
use crate::http::{serve_on, Reply, Server};
use crate::imds::Imds;
use crate::netns::{Host, Net};
use crate::watchdog::{Env, NodeConf, Watchdog};
use crate::world::World;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
pub const AWS_ENDPOINT: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 250);
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 200);
pub const CHECKIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

pub struct BedNode {
    pub host: Host,
    pub haproxy: Haproxy,
    pub public_ip: Ipv4Addr,
    _imds: Imds,
    backend: Option<Server>,
}

impl BedNode {
    /// Stop the backend server behind this node's HAProxy.
    pub fn stop_backend(&mut self) {
        self.backend = None;
    }
}

pub struct TestBed {
    pub world: World,
    pub proxy: AwsProxy,
    pub edge: Host,
    pub client: Host,
    pub nodes: BTreeMap<String, BedNode>,
    /// EIP -> private IP it currently reaches, as the edge sees it.
    routes: Arc<Mutex<HashMap<Ipv4Addr, Ipv4Addr>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    // Dropped last: deleting the namespaces also ends whatever still runs in them.
    _net: Net,
}

impl TestBed {
    /// Nodes `names`; the EIP starts on `holder` (None: unassociated).
    pub async fn new(names: &[&str], holder: Option<&str>) -> TestBed {
        let world = World::new(names).await;
        if let Some(h) = holder {
            world.associate(h).await;
        }
        TestBed::build(world).await
    }

    /// Seed 002's active/active pair: `a` and `b` each hold one EIP on their primary private
    /// IP (203.0.113.10 and .11) and keep a secondary private IP for the other's.
    pub async fn active_active() -> TestBed {
        let mut world = World::new(&["a", "b"]).await;
        world.add_secondary_ip("a").await;
        world.add_secondary_ip("b").await;
        let (_, second) = world.allocate_eip("203.0.113.11").await;
        world.associate("a").await;
        world.associate_alloc(&second, "b").await;
        TestBed::build(world).await
    }

    async fn build(world: World) -> TestBed {
        let mut net = Net::new();
        let edge = net.host(
            "edge",
            &[format!("{GATEWAY}/24"), format!("{AWS_ENDPOINT}/24")],
        );
        for (eip, _) in world.all_eips() {
            edge.ip(&["addr", "add", &format!("{eip}/32"), "dev", "lo"]);
        }
        edge.ip(&["addr", "add", &format!("{CHECKIP}/32"), "dev", "lo"]);
        let client = net.host("client", &[format!("{CLIENT}/24")]);
        client.ip(&["route", "add", "default", "via", &GATEWAY.to_string()]);

        let mut nodes = BTreeMap::new();
        for (i, n) in world.nodes.iter().enumerate() {
            let ips: Vec<Ipv4Addr> = std::iter::once(n.private_ip)
                .chain(n.secondary_ips.iter().copied())
                .collect();
            let host = net.host(
                &n.name,
                &ips.iter().map(|ip| format!("{ip}/24")).collect::<Vec<_>>(),
            );
            for r in ["203.0.113.0/24", "198.51.100.0/24"] {
                host.ip(&["route", "add", r, "via", &GATEWAY.to_string()]);
            }
            host.ip(&["addr", "add", "169.254.169.254/32", "dev", "lo"]);
            let imds = Imds::start_on(host.bind("169.254.169.254:80".parse().unwrap()), n);
            let backend_addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
            let name = n.name.clone();
            let backend = serve_on(
                host.bind(backend_addr),
                Arc::new(move |_| Reply::ok(&format!("{name}\n"))),
            );
            let haproxy = Haproxy::start_in(&host, &ips, backend_addr).await;
            nodes.insert(
                n.name.clone(),
                BedNode {
                    host,
                    haproxy,
                    public_ip: Ipv4Addr::new(198, 51, 100, 10 + i as u8),
                    _imds: imds,
                    backend: Some(backend),
                },
            );
        }
        let (proxy, proxy_task) = AwsProxy::start(
            edge.bind(SocketAddr::new(AWS_ENDPOINT.into(), 80)),
            world.moto.url.clone(),
        );
        let mut bed = TestBed {
            world,
            proxy,
            edge,
            client,
            nodes,
            routes: Arc::default(),
            tasks: vec![proxy_task],
            _net: net,
        };
        bed.start_internet();
        // Let the edge learn the first association before anyone looks.
        tokio::time::sleep(Duration::from_millis(300)).await;
        bed
    }

    fn start_internet(&mut self) {
        // Follow EC2 (test-only polling; the daemon never polls): which private IP each EIP
        // reaches. The private IP of an association comes from the request the proxy saw,
        // else it is the ENI's primary.
        let primary: HashMap<String, Ipv4Addr> = self
            .world
            .nodes
            .iter()
            .map(|n| (n.eni.clone(), n.private_ip))
            .collect();
        let (ec2, proxy, routes) = (
            self.world.ec2.clone(),
            self.proxy.clone(),
            self.routes.clone(),
        );
        let moves = self.proxy.moves();
        self.tasks.push(tokio::spawn(async move {
            loop {
                if let Ok(d) = ec2.describe_addresses().send().await {
                    let mut now = HashMap::new();
                    for a in d.addresses() {
                        let (Some(ip), Some(eni)) = (
                            a.public_ip().and_then(|p| p.parse().ok()),
                            a.network_interface_id(),
                        ) else {
                            continue;
                        };
                        let private = a
                            .association_id()
                            .and_then(|x| proxy.private_ip_of(x))
                            .or_else(|| primary.get(eni).copied());
                        if let Some(p) = private {
                            now.insert(ip, p);
                        }
                    }
                    *routes.lock().unwrap() = now;
                }
                // Every 50 ms, and at once after a move went through the proxy.
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = moves.notified() => {}
                }
            }
        }));

        // Each EIP: forward each connection to the private IP it reaches now.
        for (eip, _) in self.world.all_eips() {
            let listener = self.edge.bind(SocketAddr::new(eip.into(), 80));
            let (edge, routes) = (self.edge.clone(), self.routes.clone());
            self.tasks.push(tokio::spawn(async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        continue;
                    };
                    let target = routes.lock().unwrap().get(&eip).copied();
                    let edge = edge.clone();
                    tokio::spawn(async move {
                        let Some(private) = target else { return };
                        if let Ok(mut out) = edge.connect(SocketAddr::new(private.into(), 80)).await
                        {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                        }
                    });
                }
            }));
        }

        // checkip: the caller's public address, as AWS's NAT would give it.
        let public: HashMap<Ipv4Addr, Ipv4Addr> = self
            .world
            .nodes
            .iter()
            .map(|n| (n.private_ip, self.nodes[&n.name].public_ip))
            .collect();
        let listener = self.edge.bind(SocketAddr::new(CHECKIP.into(), 80));
        let routes = self.routes.clone();
        self.tasks.push(tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let std::net::IpAddr::V4(src) = peer.ip() else {
                    continue;
                };
                let answer = routes
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|(_, p)| **p == src)
                    .map(|(e, _)| *e)
                    .or_else(|| public.get(&src).copied());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| async move {
                        let (code, body) = match answer {
                            Some(ip) => (200, format!("{ip}\n")),
                            None => (403, "unknown caller\n".to_owned()),
                        };
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .status(code)
                                .body(http_body_util::Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        }));
    }

    /// How a watchdog inside a node reaches AWS and its metadata.
    pub fn env(&self) -> Env {
        Env {
            aws_endpoint: self.proxy.url(),
            imds_endpoint: "http://169.254.169.254".into(),
        }
    }

    /// A node's watchdog configuration on the bed: checks the EIP through the internet,
    /// verifies egress at checkip, requires its `app` backend UP.
    pub fn conf(&self, node: &str) -> NodeConf {
        NodeConf {
            target: format!("http://{}/", self.world.eip),
            checkip: format!("http://{CHECKIP}/"),
            socket: self.nodes[node].haproxy.socket.clone(),
            eip: self.world.eip.to_string(),
            topic_arn: Some(self.world.topic_arn.clone()),
            interval: "500ms",
            timeout: "400ms",
            fast_interval: None,
            fail_after: 3,
            recover_after: 2,
            hold_down: "60s",
            private_ip: None,
            egress_timeout: "1s",
            aws_endpoint: None,
            identity: None,
            haproxy_backend: Some("app".into()),
        }
    }

    pub fn start(&self, node: &str, conf: &NodeConf) -> Watchdog {
        Watchdog::start_in(&self.nodes[node].host, &self.env(), &conf.toml(), &[])
    }

    /// Cut a node off the internet (its routes to the public ranges); AWS stays reachable.
    pub fn cut_internet(&self, node: &str) {
        for r in ["203.0.113.0/24", "198.51.100.0/24"] {
            self.nodes[node].host.ip(&["route", "del", r]);
        }
    }

    /// The private IP the EIP reaches now, per the edge.
    pub fn eip_route(&self) -> Option<Ipv4Addr> {
        self.route_of(self.world.eip)
    }

    /// One GET of the EIP from the client: `Some(body)` on a 200.
    pub async fn get_eip(&self) -> Option<String> {
        self.get_ip(self.world.eip).await
    }

    /// One GET of any address on the internet from the client.
    pub async fn get_ip(&self, ip: Ipv4Addr) -> Option<String> {
        get(&self.client, SocketAddr::new(ip.into(), 80)).await
    }

    /// The private IP `eip` reaches now, per the edge.
    pub fn route_of(&self, eip: Ipv4Addr) -> Option<Ipv4Addr> {
        self.routes.lock().unwrap().get(&eip).copied()
    }

    /// The client GETting the EIP every `period`, keeping who answered.
    pub fn poll_eip(&self, period: Duration) -> Poller {
        Poller::start(
            &self.client,
            SocketAddr::new(self.world.eip.into(), 80),
            period,
        )
    }
}

/// When a request was answered, and by whom (the body of a 200; None: it failed).
pub type Answer = (Instant, Option<String>);

/// A client out on the internet polling one address ([`TestBed::poll_eip`]); it stops on
/// drop.
pub struct Poller {
    answers: Arc<Mutex<Vec<Answer>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Poller {
    /// Every answer so far, oldest first.
    pub fn answers(&self) -> Vec<Answer> {
        self.answers.lock().unwrap().clone()
    }

    /// When the first request after `t0` was answered by `who` (None: the first that failed).
    pub fn first_after(&self, t0: Instant, who: Option<&str>) -> Option<Instant> {
        self.answers
            .lock()
            .unwrap()
            .iter()
            .find(|(t, w)| *t > t0 && w.as_deref() == who)
            .map(|(t, _)| *t)
    }

    /// `host` GETting `addr` every `period`, keeping who answered (what [`TestBed::poll_eip`]
    /// does for the EIP, for any host and address: the VPC bed's internal client). A new
    /// request starts every `period` whether or not the earlier ones have been answered, as
    /// clients keep arriving: a request stuck on a hung HAProxy (up to its 1 s) does not hold
    /// back the next one, so the first good answer is not late by that wait. Answers are kept
    /// in the order they came.
    pub fn start(host: &Host, addr: SocketAddr, period: Duration) -> Poller {
        let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
        let (a, host) = (answers.clone(), host.clone());
        let task = tokio::spawn(async move {
            let mut requests = tokio::task::JoinSet::new();
            let mut ticks = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {
                        let (a, host) = (a.clone(), host.clone());
                        requests.spawn(async move {
                            let who = get(&host, addr).await;
                            a.lock().unwrap().push((Instant::now(), who));
                        });
                    }
                    Some(_) = requests.join_next() => {}
                }
            }
        });
        Poller { answers, task }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One HTTP GET from inside `host`, with a 1 s budget: the body of a 200, else None.
pub async fn get(host: &Host, addr: SocketAddr) -> Option<String> {
    let fetch = async {
        let stream = host.connect(addr).await.ok()?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .ok()?;
        tokio::spawn(conn);
        let req = hyper::Request::get("/")
            .header("host", addr.to_string())
            .body(Empty::<Bytes>::new())
            .ok()?;
        let resp = send.send_request(req).await.ok()?;
        if resp.status() != 200 {
            return None;
        }
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some(String::from_utf8_lossy(&body).trim().to_owned())
    };
    tokio::time::timeout(Duration::from_secs(1), fetch)
        .await
        .ok()
        .flatten()
}

impl Drop for TestBed {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
