//! A load balancer for backend-sync tests: HAProxy in master-worker mode on loopback
//! ([`Haproxy`] in [`Mode::MasterWorker`]), with one backend `app` whose servers the watchdog
//! manages ([`Lb::start`]) or many ([`Lb::start_many`]: one managed block each, for the
//! many-services benchmark), and real backend servers on 127.0.0.N addresses (all of
//! 127.0.0.0/8 is loopback, so no address is added anywhere).

use crate::haproxy::{Haproxy, Mode, GLOBAL};
use haproxy_watchdog::haproxy::runtime;
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::{Deref, DerefMut};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// The HAProxy (its sockets, config, port and dir through `Deref`), and what a backend-sync
/// test asks of it.
pub struct Lb {
    haproxy: Haproxy,
}

impl Deref for Lb {
    type Target = Haproxy;
    fn deref(&self) -> &Haproxy {
        &self.haproxy
    }
}

impl DerefMut for Lb {
    fn deref_mut(&mut self) -> &mut Haproxy {
        &mut self.haproxy
    }
}

pub const BEGIN: &str = "# BEGIN haproxy-watchdog servers of app";
pub const END: &str = "# END haproxy-watchdog servers of app";

/// The configuration around the servers: `servers` goes inside `backend app`.
pub fn config_text(socket: &std::path::Path, port: u16, servers: &str) -> String {
    format!(
        "global\n  stats socket {} mode 600 level admin expose-fd listeners\n{GLOBAL}\
frontend www\n  bind 127.0.0.1:{port}\n  default_backend app\n\
backend app\n  balance roundrobin\n{servers}",
        socket.display()
    )
}

/// The configuration of [`Lb::start_many`]: a frontend whose default backend is the first of
/// `backends`, then each backend (name, body) in order.
pub fn config_many(socket: &std::path::Path, port: u16, backends: &[(String, String)]) -> String {
    let mut s = format!(
        "global\n  stats socket {} mode 600 level admin expose-fd listeners\n{GLOBAL}\
frontend www\n  bind 127.0.0.1:{port}\n  default_backend {}\n",
        socket.display(),
        backends.first().map_or("none", |b| b.0.as_str())
    );
    for (name, body) in backends {
        s.push_str(&format!("backend {name}\n  balance roundrobin\n{body}"));
    }
    s
}

/// A managed block of `backend` with `n` free slots named `<backend>1..<backend>N` (the
/// daemon's default `server_prefix` is the backend's name), with no health check: what a rule
/// with `server_options = ""` writes.
pub fn block_of(backend: &str, n: usize, port: u16) -> String {
    let mut s = format!("  # BEGIN haproxy-watchdog servers of {backend}\n");
    for i in 1..=n {
        s.push_str(&format!("  server {backend}{i} 0.0.0.0:{port} disabled\n"));
    }
    s.push_str(&format!("  # END haproxy-watchdog servers of {backend}\n"));
    s
}

/// `ip:port` for each of `ips` (what HAProxy should serve for a group's private IPs).
pub fn addrs(ips: impl IntoIterator<Item = Ipv4Addr>, port: u16) -> BTreeSet<SocketAddr> {
    ips.into_iter()
        .map(|ip| SocketAddr::from((ip, port)))
        .collect()
}

/// A managed block with `n` free slots named app1..appN.
pub fn block(n: usize, port: u16) -> String {
    let mut s = format!("  {BEGIN}\n");
    for i in 1..=n {
        s.push_str(&format!(
            "  server app{i} 0.0.0.0:{port} check inter 500ms disabled\n"
        ));
    }
    s.push_str(&format!("  {END}\n"));
    s
}

/// A managed block with one slot, `app1`, serving `Backends::ip(0)` on `port`: every slot in
/// use, for the tests of what happens when a sync needs more.
pub fn one_serving_slot(port: u16) -> String {
    format!(
        "  {BEGIN}\n  server app1 {}:{port} check inter 500ms\n  {END}\n",
        Backends::ip(0)
    )
}

impl Lb {
    /// Start with `servers` as the body of `backend app`.
    pub async fn start(servers: &str) -> Lb {
        let port = crate::free_port();
        let haproxy = Haproxy::launch(None, Mode::MasterWorker, port, |socket| {
            config_text(socket, port, servers)
        })
        .await;
        Lb { haproxy }
    }

    /// Start with the backends (name, body) of [`config_many`]; each body is typically a
    /// [`block_of`] its name.
    pub async fn start_many(backends: &[(String, String)]) -> Lb {
        let port = crate::free_port();
        let haproxy = Haproxy::launch(None, Mode::MasterWorker, port, |socket| {
            config_many(socket, port, backends)
        })
        .await;
        Lb { haproxy }
    }

    /// What backend `app` serves now: its servers that are not in maintenance.
    pub async fn serving(&self) -> Option<BTreeSet<SocketAddr>> {
        self.serving_in("app").await
    }

    /// What `backend` serves now (`show servers state <backend>`: its servers that are not in
    /// maintenance). None when the stats socket does not answer or has no such backend.
    pub async fn serving_in(&self, backend: &str) -> Option<BTreeSet<SocketAddr>> {
        let slots = runtime::servers(&self.socket, backend, Duration::from_secs(5))
            .await
            .ok()?;
        Some(
            slots
                .iter()
                .filter(|s| s.serving())
                .filter_map(|s| s.target)
                .map(|t| SocketAddr::from((t.ip, t.port)))
                .collect(),
        )
    }

    /// Whether `backend` serves `addr` now: one `show servers state <backend>`, a few lines
    /// however many backends HAProxy has.
    pub async fn serves(&self, backend: &str, addr: SocketAddr) -> bool {
        self.serving_in(backend)
            .await
            .is_some_and(|s| s.contains(&addr))
    }

    /// What each of `backends` serves now, from one `show servers state` of them all.
    pub async fn serving_all(
        &self,
        backends: &[String],
    ) -> Option<std::collections::BTreeMap<String, BTreeSet<SocketAddr>>> {
        let reply = haproxy_watchdog::haproxy::socket::command(&self.socket, "show servers state")
            .await
            .ok()?;
        backends
            .iter()
            .map(|b| {
                let slots = runtime::parse_servers_state(&reply, b).ok()?;
                let serving = slots
                    .iter()
                    .filter(|s| s.serving())
                    .filter_map(|s| s.target)
                    .map(|t| SocketAddr::from((t.ip, t.port)))
                    .collect();
                Some((b.clone(), serving))
            })
            .collect()
    }

    /// Wait (up to 15 s) until HAProxy serves exactly `want`, and the file on disk says the
    /// same.
    pub async fn converges(&self, want: &BTreeSet<SocketAddr>, what: &str) {
        let within = Duration::from_secs(15);
        crate::eventually(within, what, || async {
            (self.serving().await.as_ref() == Some(want)).then_some(())
        })
        .await;
        crate::eventually(within, &format!("{what}: file on disk"), || async {
            (&self.file_serving() == want).then_some(())
        })
        .await;
    }

    /// How many servers `app` has (slots included).
    pub async fn slot_count(&self) -> usize {
        runtime::servers(&self.socket, "app", Duration::from_secs(5))
            .await
            .map(|s| s.len())
            .unwrap_or(0)
    }

    /// What the file on disk would serve after a reload: `server` lines not `disabled`.
    pub fn file_serving(&self) -> BTreeSet<SocketAddr> {
        let text = std::fs::read_to_string(&self.config).expect("read haproxy.cfg");
        let mut in_app = false;
        let mut out = BTreeSet::new();
        for line in text.lines() {
            let l = line.trim();
            if l.starts_with("backend ") || l.starts_with("frontend ") || l.starts_with("listen ") {
                in_app = l == "backend app";
            }
            let w: Vec<&str> = l.split_whitespace().collect();
            if in_app && w.first() == Some(&"server") && !w.contains(&"disabled") {
                if let Ok(a) = w[2].parse::<SocketAddr>() {
                    out.insert(a);
                }
            }
        }
        out
    }

    /// Reload through the master CLI, as an operator (or a package upgrade) would.
    pub async fn reload(&self) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let before = self.worker_pid().await;
        // The master binds its CLI socket a moment after the worker's stats socket is up.
        let mut s = crate::eventually(Duration::from_secs(5), "the master socket", || async {
            tokio::net::UnixStream::connect(&self.master).await.ok()
        })
        .await;
        s.write_all(b"reload\n").await.unwrap();
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut sink)).await;
        crate::eventually(
            Duration::from_secs(10),
            "the new HAProxy worker",
            || async {
                let pid = self.worker_pid().await;
                (pid.is_some() && pid != before).then_some(())
            },
        )
        .await;
    }

    /// Send `signal` (`-STOP`, `-CONT`) to a process (the worker: [`Lb::worker_pid`]).
    pub fn signal(&self, pid: u32, signal: &str) {
        let ok = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }

    /// The worker's pid as its stats socket reports it.
    pub async fn worker_pid(&self) -> Option<u32> {
        let info = haproxy_watchdog::haproxy::socket::command(&self.socket, "show info")
            .await
            .ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("Pid: "))
            .and_then(|p| p.trim().parse().ok())
    }
}

/// Real backend servers on distinct loopback addresses 127.0.0.(10+i), one port, each
/// answering its own address.
pub struct Backends {
    pub port: u16,
    servers: Vec<crate::http::Server>,
    pub hits: Arc<std::sync::atomic::AtomicU64>,
}

impl Backends {
    pub async fn start(n: usize) -> Backends {
        let port = crate::free_port();
        let hits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut servers = Vec::new();
        for i in 0..n {
            let ip = Backends::ip(i);
            let listener = tokio::net::TcpListener::bind((ip, port))
                .await
                .expect("bind backend");
            let h = hits.clone();
            let body = format!("{ip}\n");
            servers.push(crate::http::serve_on(
                listener,
                Arc::new(move |_| {
                    h.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    crate::http::Reply::ok(&body)
                }),
            ));
        }
        Backends {
            port,
            servers,
            hits,
        }
    }

    /// One server on each of `ips` (e.g. an Auto Scaling group's private addresses on
    /// loopback), answering its own address after `delay(ip)`.
    pub async fn start_on(
        ips: &[Ipv4Addr],
        port: u16,
        delay: impl Fn(Ipv4Addr) -> Duration,
    ) -> Backends {
        let hits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut servers = Vec::new();
        for ip in ips {
            let listener = tokio::net::TcpListener::bind((*ip, port))
                .await
                .expect("bind backend");
            let (h, body, d) = (hits.clone(), format!("{ip}\n"), delay(*ip));
            servers.push(crate::http::serve_on(
                listener,
                Arc::new(move |_| {
                    h.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if d.is_zero() {
                        crate::http::Reply::ok(&body)
                    } else {
                        crate::http::Reply::Slow(d, 200, body.clone())
                    }
                }),
            ));
        }
        Backends {
            port,
            servers,
            hits,
        }
    }

    /// Stop the server on `ip` and cut its open connections (its instance terminated).
    pub fn kill(&mut self, ip: Ipv4Addr) -> bool {
        let before = self.servers.len();
        self.servers
            .retain(|s| s.addr.ip() != std::net::IpAddr::V4(ip));
        self.servers.len() < before
    }

    pub fn ip(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, 0, 10 + i as u8)
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from((Backends::ip(i), self.port))
    }

    pub fn addrs(&self, idx: &[usize]) -> BTreeSet<SocketAddr> {
        idx.iter().map(|i| self.addr(*i)).collect()
    }
}
