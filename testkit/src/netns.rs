//! Simulated hosts: network namespaces (iproute2) joined by a bridge in a hub namespace.
//!
//! Nothing is added to the machine's own namespace: each host gets one end of a veth pair
//! (`eth0`), the hub gets the other, on a bridge. The test process reaches into a host by
//! creating sockets there ([`Host::bind`], [`Host::connect`]): a short-lived thread joins the
//! namespace with `setns`, makes the socket and hands it back; the socket stays in that
//! namespace whoever uses it. So traffic only ever flows between namespaces the test made.
//! Everything is deleted on drop, even when a test fails.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static SEQ: AtomicU32 = AtomicU32::new(0);

pub struct Net {
    prefix: String,
    hub: String,
    hosts: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Host {
    pub name: String,
    pub ns: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("iproute2 is not installed: run scripts/test-deps.sh");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Delete namespaces left by test processes that no longer exist (killed, or crashed before
/// their `Drop` ran): ours are named `hw<pid>x<n>-<host>`.
fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(ns) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = ns
            .strip_prefix("hw")
            .and_then(|r| r.split('x').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
            for p in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", p]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", ns]).status();
    }
}

impl Net {
    /// A fresh bridge in a hub namespace of its own (only the test bed makes one).
    pub(crate) fn new() -> Net {
        sweep_stale();
        let prefix = format!(
            "hw{}x{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let hub = format!("{prefix}-hub");
        ip(&["netns", "add", &hub]);
        ip(&["-n", &hub, "link", "set", "lo", "up"]);
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        Net {
            prefix,
            hub,
            hosts: Vec::new(),
        }
    }

    /// Another bridge in the hub, `name`, with `addr` (CIDR) on it: the hub routes between
    /// its bridges (IPv4 forwarding is turned on in the hub, and only there), so it is the
    /// router of the subnets hosts join with [`Net::host_on`].
    pub fn subnet(&mut self, name: &str, addr: &str) {
        ip(&["-n", &self.hub, "link", "add", name, "type", "bridge"]);
        ip(&["-n", &self.hub, "addr", "add", addr, "dev", name]);
        ip(&["-n", &self.hub, "link", "set", name, "up"]);
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.hub,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ])
            .output()
            .expect("sysctl");
        assert!(
            out.status.success(),
            "sysctl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The hub itself, as a host (the router of [`Net::subnet`]s).
    pub fn hub(&self) -> Host {
        Host {
            name: "hub".into(),
            ns: self.hub.clone(),
        }
    }

    /// A host on the bridge with `addrs` (CIDR) on its `eth0`.
    pub fn host(&mut self, name: &str, addrs: &[String]) -> Host {
        self.host_on(name, addrs, "br0")
    }

    /// A host on bridge `bridge` of the hub ([`Net::subnet`]).
    pub fn host_on(&mut self, name: &str, addrs: &[String], bridge: &str) -> Host {
        let ns = format!("{}-{name}", self.prefix);
        ip(&["netns", "add", &ns]);
        self.hosts.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        let peer = format!("v{}", self.hosts.len());
        ip(&[
            "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &peer, "netns",
            &self.hub,
        ]);
        ip(&[
            "-n", &self.hub, "link", "set", &peer, "master", bridge, "up",
        ]);
        for a in addrs {
            ip(&["-n", &ns, "addr", "add", a, "dev", "eth0"]);
        }
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        Host {
            name: name.to_owned(),
            ns,
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.hosts.iter().chain(std::iter::once(&self.hub)) {
            // Kill whatever still runs in there, then the namespace.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Run `f` on a fresh thread inside namespace `ns` (the thread ends after).
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns on a valid namespace fd only changes this (short-lived) thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("namespace thread panicked")
}

impl Host {
    /// `ip -n NS ARGS...`
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.ns.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// A command that runs inside this host.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).arg(program);
        c
    }

    /// A listening socket inside this host (call from within a tokio runtime).
    pub fn bind(&self, addr: SocketAddr) -> tokio::net::TcpListener {
        let l = in_ns(&self.ns, move || std::net::TcpListener::bind(addr))
            .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        l.set_nonblocking(true).unwrap();
        tokio::net::TcpListener::from_std(l).unwrap()
    }

    /// A connection from inside this host.
    pub async fn connect(&self, addr: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
        let ns = self.ns.clone();
        let s = tokio::task::spawn_blocking(move || {
            in_ns(&ns, move || {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            })
        })
        .await
        .expect("connect task")?;
        s.set_nonblocking(true)?;
        tokio::net::TcpStream::from_std(s)
    }
}
