//! A VPC in a box, for private addresses (`claim_private_ip`, `claim_route`): subnets in two
//! Availability Zones joined by a router, an internal client, and each node a network
//! namespace running HAProxy and its own `watchdog`.
//!
//! - The hub namespace is the VPC router: 10.0.1.1 on subnet a (us-east-1a), 10.0.2.1 on
//!   subnet b (us-east-1b), 10.0.3.1 on subnet c, the internal client's (10.0.3.10). Like
//!   EC2, it sends each private or overlay address to the node EC2 says holds it: a task
//!   follows moto (route table `a`, the one subnets a and c use, for the overlay IP;
//!   DescribeNetworkInterfaces for the secondary private IP) and sets a `/32` route via that
//!   node's primary IP. moto leaves a reassigned private IP on its old ENI; the fault proxy
//!   unassigns it there, as EC2 would ([`crate::awsproxy`]).
//! - The router also carries what the nodes reach beyond the VPC, on public addresses:
//!   the AWS endpoint (198.51.100.250, the fault proxy in front of moto) and checkip
//!   (198.51.100.1); and, inside the VPC, the VPC's DNS resolver stand-in at 10.0.0.2:53 (a
//!   TCP listener: what a claim's `reachability` names).
//! - [`VpcBed::cut_vpc`] blackholes 10.0.0.0/16 on a node (but its own subnet): the VPC is
//!   gone for it, the AWS API and checkip are not.
//!
//! moto itself runs on the machine's loopback; only the proxy talks to it.

use crate::awsproxy::AwsProxy;
use crate::haproxy::Haproxy;
use crate::http::{serve_on, Reply, Server};
use crate::imds::Imds;
use crate::netns::{Host, Net};
use crate::watchdog::{Env, Watchdog};
use crate::world::World;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const AWS_ENDPOINT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 250);
pub const CHECKIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const RESOLVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 3, 10);
/// The overlay IP `claim_route` moves (outside the VPC's 10.0.0.0/16).
pub const OVERLAY: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 10);
/// The secondary private IP `claim_private_ip` moves (in subnet a).
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 50);

pub struct VpcNode {
    pub host: Host,
    pub haproxy: Haproxy,
    _imds: Imds,
    backend: Option<Server>,
}

impl VpcNode {
    /// Stop the backend server behind this node's HAProxy.
    pub fn stop_backend(&mut self) {
        self.backend = None;
    }

    /// Whether this node's interfaces carry `ip` now.
    pub fn has_address(&self, ip: Ipv4Addr) -> bool {
        let out = self
            .host
            .command("ip")
            .args(["-4", "-o", "addr", "show"])
            .output()
            .expect("ip addr");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .any(|w| w.split('/').next() == Some(&ip.to_string()))
    }
}

pub struct VpcBed {
    pub world: World,
    pub proxy: AwsProxy,
    pub router: Host,
    pub client: Host,
    pub nodes: BTreeMap<String, VpcNode>,
    /// Where the router sends each moving address now (the holder's primary IP).
    routes: Arc<Mutex<BTreeMap<Ipv4Addr, Ipv4Addr>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    // Dropped last: deleting the namespaces also ends whatever still runs in them.
    _net: Net,
}

impl VpcBed {
    /// Nodes as `(name, subnet letter)`. The overlay IP starts routed to `overlay_on` in both
    /// tables; the secondary private IP starts on `vip_on` (a node of subnet a); None: nowhere.
    pub async fn new(
        layout: &[(&str, char)],
        overlay_on: Option<&str>,
        vip_on: Option<&str>,
    ) -> VpcBed {
        let world = World::vpc(layout).await;
        let vpc = world.vpc.clone().expect("a VPC world");
        if let Some(n) = overlay_on {
            let eni = world.node(n).eni.clone();
            for t in vpc.tables.values() {
                world
                    .ec2
                    .create_route()
                    .route_table_id(t)
                    .destination_cidr_block(format!("{OVERLAY}/32"))
                    .network_interface_id(&eni)
                    .send()
                    .await
                    .unwrap();
            }
        }
        let mut net = Net::new();
        for (letter, gw) in [
            ('a', "10.0.1.1/24"),
            ('b', "10.0.2.1/24"),
            ('c', "10.0.3.1/24"),
        ] {
            net.subnet(&format!("br{letter}"), gw);
        }
        let router = net.hub();
        for ip in [AWS_ENDPOINT, CHECKIP, RESOLVER] {
            router.ip(&["addr", "add", &format!("{ip}/32"), "dev", "lo"]);
        }
        let client = net.host_on("client", &[format!("{CLIENT}/24")], "brc");
        client.ip(&["route", "add", "default", "via", "10.0.3.1"]);

        let mut nodes = BTreeMap::new();
        for (name, letter) in layout {
            let n = world.node(name).clone();
            let host = net.host_on(
                name,
                &[format!("{}/24", n.private_ip)],
                &format!("br{letter}"),
            );
            let gw = if *letter == 'a' {
                "10.0.1.1"
            } else {
                "10.0.2.1"
            };
            host.ip(&["route", "add", "default", "via", gw]);
            // As in a VPC, the moving private IP is reached through the router (EC2's fabric
            // answers no ARP for it), even from its own subnet; on its holder the address is
            // local and wins over this route.
            host.ip(&["route", "add", &format!("{VIP}/32"), "via", gw]);
            host.ip(&["addr", "add", "169.254.169.254/32", "dev", "lo"]);
            let imds = Imds::start_on(host.bind("169.254.169.254:80".parse().unwrap()), &n);
            let backend_addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
            let body = name.to_string();
            let backend = serve_on(
                host.bind(backend_addr),
                Arc::new(move |_| Reply::ok(&format!("{body}\n"))),
            );
            // The moving addresses come and go on the node's interfaces: HAProxy binds them
            // ahead, as `net.ipv4.ip_nonlocal_bind = 1` lets it (what the docs advise).
            let out = host
                .command("sysctl")
                .args(["-qw", "net.ipv4.ip_nonlocal_bind=1"])
                .output()
                .expect("sysctl");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let haproxy =
                Haproxy::start_in(&host, &[n.private_ip, VIP, OVERLAY], backend_addr).await;
            nodes.insert(
                name.to_string(),
                VpcNode {
                    host,
                    haproxy,
                    _imds: imds,
                    backend: Some(backend),
                },
            );
        }
        let (proxy, proxy_task) = AwsProxy::start(
            router.bind(SocketAddr::new(AWS_ENDPOINT.into(), 80)),
            world.moto.url.clone(),
        );
        if let Some(n) = vip_on {
            let eni = world.node(n).eni.clone();
            world
                .ec2
                .assign_private_ip_addresses()
                .network_interface_id(&eni)
                .private_ip_addresses(VIP.to_string())
                .allow_reassignment(true)
                .send()
                .await
                .unwrap();
            proxy.assigned(VIP, &eni);
            nodes[n]
                .host
                .ip(&["addr", "add", &format!("{VIP}/24"), "dev", "eth0"]);
        }
        if let Some(n) = overlay_on {
            nodes[n]
                .host
                .ip(&["addr", "add", &format!("{OVERLAY}/32"), "dev", "lo"]);
        }
        let mut bed = VpcBed {
            world,
            proxy,
            router,
            client,
            nodes,
            routes: Arc::default(),
            tasks: vec![proxy_task],
            _net: net,
        };
        bed.start_services();
        bed.follow_ec2();
        // Let the router learn the first holders before anyone looks.
        tokio::time::sleep(Duration::from_millis(400)).await;
        bed
    }

    /// Each node's public address, as checkip answers it (what AWS's NAT would give it).
    pub fn public_ip(&self, node: &str) -> Ipv4Addr {
        let i = self
            .world
            .nodes
            .iter()
            .position(|n| n.name == node)
            .expect("no such node");
        Ipv4Addr::new(198, 51, 100, 10 + i as u8)
    }

    /// checkip (the caller's public address: 198.51.100.10 + its index) and the resolver
    /// stand-in, on the router.
    fn start_services(&mut self) {
        let public: BTreeMap<Ipv4Addr, Ipv4Addr> = self
            .world
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.private_ip, Ipv4Addr::new(198, 51, 100, 10 + i as u8)))
            .collect();
        let listener = self.router.bind(SocketAddr::new(CHECKIP.into(), 80));
        self.tasks.push(tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let std::net::IpAddr::V4(src) = peer.ip() else {
                    continue;
                };
                let answer = match public.get(&src) {
                    Some(p) => format!("{p}\n"),
                    None => format!("{src}\n"),
                };
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| {
                        let answer = answer.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from(answer)),
                            ))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        }));
        let resolver = self.router.bind(SocketAddr::new(RESOLVER.into(), 53));
        self.tasks.push(tokio::spawn(async move {
            loop {
                // Accepted and closed: a reachability probe needs only the connection.
                let _ = resolver.accept().await;
            }
        }));
    }

    /// The router follows EC2 (test-only polling; the daemon never polls this fast).
    fn follow_ec2(&mut self) {
        let vpc = self.world.vpc.clone().expect("a VPC world");
        let primary: BTreeMap<String, Ipv4Addr> = self
            .world
            .nodes
            .iter()
            .map(|n| (n.eni.clone(), n.private_ip))
            .collect();
        let (ec2, routes, router) = (
            self.world.ec2.clone(),
            self.routes.clone(),
            self.router.clone(),
        );
        let table = vpc.tables[&'a'].clone();
        let subnet_a = vpc.subnets[&'a'].clone();
        self.tasks.push(tokio::spawn(async move {
            loop {
                let mut now = BTreeMap::new();
                if let Ok(d) = ec2
                    .describe_route_tables()
                    .route_table_ids(&table)
                    .send()
                    .await
                {
                    let eni = d.route_tables().first().and_then(|t| {
                        t.routes()
                            .iter()
                            .find(|r| r.destination_cidr_block() == Some(&format!("{OVERLAY}/32")))
                            .and_then(|r| r.network_interface_id().map(str::to_owned))
                    });
                    if let Some(p) = eni.and_then(|e| primary.get(&e).copied()) {
                        now.insert(OVERLAY, p);
                    }
                }
                let filter = aws_sdk_ec2::types::Filter::builder()
                    .name("subnet-id")
                    .values(&subnet_a)
                    .build();
                if let Ok(d) = ec2
                    .describe_network_interfaces()
                    .filters(filter)
                    .send()
                    .await
                {
                    let holder = d.network_interfaces().iter().find(|n| {
                        n.private_ip_addresses()
                            .iter()
                            .any(|a| a.private_ip_address() == Some(&VIP.to_string()))
                    });
                    if let Some(p) = holder
                        .and_then(|n| n.network_interface_id())
                        .and_then(|e| primary.get(e).copied())
                    {
                        now.insert(VIP, p);
                    }
                }
                let before = routes.lock().unwrap().clone();
                if before != now {
                    for ip in [OVERLAY, VIP] {
                        let r = router.clone();
                        let change = match now.get(&ip) {
                            Some(via) => vec![
                                "route".to_owned(),
                                "replace".into(),
                                format!("{ip}/32"),
                                "via".into(),
                                via.to_string(),
                            ],
                            None => vec!["route".to_owned(), "del".into(), format!("{ip}/32")],
                        };
                        if before.get(&ip) != now.get(&ip) {
                            let _ = tokio::task::spawn_blocking(move || {
                                let _ = r.command("ip").args(&change).output();
                            })
                            .await;
                        }
                    }
                    *routes.lock().unwrap() = now;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }

    /// The primary IP of the node the router sends `ip` to now.
    pub fn route_of(&self, ip: Ipv4Addr) -> Option<Ipv4Addr> {
        self.routes.lock().unwrap().get(&ip).copied()
    }

    /// The node the router sends `ip` to now, by name.
    pub fn holder_of(&self, ip: Ipv4Addr) -> Option<String> {
        let via = self.route_of(ip)?;
        self.world
            .nodes
            .iter()
            .find(|n| n.private_ip == via)
            .map(|n| n.name.clone())
    }

    /// How a watchdog inside a node reaches AWS and its metadata.
    pub fn env(&self) -> Env {
        Env {
            aws_endpoint: self.proxy.url(),
            imds_endpoint: "http://169.254.169.254".into(),
        }
    }

    pub fn table(&self, letter: char) -> String {
        self.world.vpc.as_ref().expect("a VPC world").tables[&letter].clone()
    }

    /// Where each route table sends the overlay IP, per EC2: (table, ENI or None).
    pub async fn overlay_targets(&self) -> Vec<(String, Option<String>)> {
        let vpc = self.world.vpc.as_ref().expect("a VPC world");
        let mut out = Vec::new();
        for t in vpc.tables.values() {
            let d = self
                .world
                .ec2
                .describe_route_tables()
                .route_table_ids(t)
                .send()
                .await
                .unwrap();
            let eni = d.route_tables()[0]
                .routes()
                .iter()
                .find(|r| r.destination_cidr_block() == Some(&format!("{OVERLAY}/32")))
                .and_then(|r| r.network_interface_id().map(str::to_owned));
            out.push((t.clone(), eni));
        }
        out
    }

    /// A node's `watchdog` configuration: a rule that GETs `address` through the VPC every
    /// 500 ms, fails after 3 and runs `action` (its TOML table, `[actions.claim]`), plus
    /// `extra` appended as is.
    pub fn conf(&self, node: &str, address: Ipv4Addr, action: &str, extra: &str) -> String {
        format!(
            r#"
[aws]
attempt_timeout = "2s"
operation_timeout = "10s"
max_attempts = 3

[egress]
checkip_url = "http://{CHECKIP}/"
timeout = "1s"

[haproxy]
stats_socket = "{socket}"
backend = "app"
timeout = "1s"

[alerts]
sns_topic_arn = "{topic}"

[rules.vip]
check = {{ type = "http", url = "http://{address}/" }}
interval = "500ms"
timeout = "400ms"
fail_after = 3
recover_after = 2
on_fail = ["claim"]

[actions.claim]
{action}
{extra}
"#,
            socket = self.nodes[node].haproxy.socket.display(),
            topic = self.world.topic_arn,
        )
    }

    /// The `claim_route` table of the overlay IP over both route tables.
    pub fn route_action(&self, hold_down: &str) -> String {
        format!(
            "type = \"claim_route\"\ndestination = \"{OVERLAY}\"\nroute_table_ids = [\"{}\", \"{}\"]\nreachability = [\"{RESOLVER}:53\"]\nreachability_timeout = \"500ms\"\nhold_down = \"{hold_down}\"\nowner_poll = \"1s\"\n",
            self.table('a'),
            self.table('b')
        )
    }

    /// The `claim_private_ip` table of the secondary private IP.
    pub fn private_ip_action(&self, hold_down: &str) -> String {
        format!(
            "type = \"claim_private_ip\"\nprivate_ip = \"{VIP}\"\nreachability = [\"{RESOLVER}:53\"]\nreachability_timeout = \"500ms\"\nhold_down = \"{hold_down}\"\nowner_poll = \"1s\"\n"
        )
    }

    pub fn start(&self, node: &str, toml: &str) -> Watchdog {
        Watchdog::start_in(&self.nodes[node].host, &self.env(), toml, &[])
    }

    /// Cut a node off the VPC beyond its own subnet (the resolver, the other subnets, the
    /// client); the AWS API and checkip stay reachable.
    pub fn cut_vpc(&self, node: &str) {
        self.nodes[node]
            .host
            .ip(&["route", "add", "blackhole", "10.0.0.0/16"]);
    }

    /// One GET of `ip` from the internal client: `Some(body)` on a 200.
    pub async fn get_from_client(&self, ip: Ipv4Addr) -> Option<String> {
        crate::testbed::get(&self.client, SocketAddr::new(ip.into(), 80)).await
    }

    /// The internal client GETting `ip` every `period`, keeping who answered.
    pub fn poll(&self, ip: Ipv4Addr, period: Duration) -> crate::testbed::Poller {
        crate::testbed::Poller::start(&self.client, SocketAddr::new(ip.into(), 80), period)
    }
}

impl Drop for VpcBed {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
