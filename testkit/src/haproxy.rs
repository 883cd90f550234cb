//! A real HAProxy (Debian's 2.6) with its stats socket in a temp dir: either on a loopback port
//! answering every request itself (`http-request return` with its node's name, so no backend
//! is needed), or inside a simulated host on *:80 in front of a backend server.

use crate::netns::Host;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Haproxy {
    child: Option<Child>,
    /// Runs inside this simulated host, when set.
    host: Option<Host>,
    pub port: u16,
    pub socket: PathBuf,
    pub dir: tempfile::TempDir,
    config: PathBuf,
}

const GLOBAL: &str = "  maxconn 8000\n\
defaults\n  mode http\n  timeout connect 1s\n  timeout client 10s\n  timeout server 10s\n  option idle-close-on-response\n";

impl Haproxy {
    /// On 127.0.0.1, answering with `name` itself.
    pub async fn start(name: &str) -> Haproxy {
        let port = crate::free_port();
        let frontend = format!(
            "frontend www\n  bind 127.0.0.1:{port}\n  http-request return status 200 content-type text/plain string \"{name}\\n\"\n"
        );
        Haproxy::launch(None, port, &frontend).await
    }

    /// Inside `host` on port 80 of each of `ips`, in front of the backend server `app` at
    /// `backend` (health-checked every 500 ms), the way a load balancer node runs it.
    pub async fn start_in(host: &Host, ips: &[std::net::Ipv4Addr], backend: SocketAddr) -> Haproxy {
        let binds: String = ips.iter().map(|ip| format!("  bind {ip}:80\n")).collect();
        let frontend = format!(
            "frontend www\n{binds}  default_backend app\n\
             backend app\n  server web {backend} check inter 500ms fall 2 rise 1\n"
        );
        Haproxy::launch(Some(host.clone()), 80, &frontend).await
    }

    async fn launch(host: Option<Host>, port: u16, proxies: &str) -> Haproxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("admin.sock");
        let config = dir.path().join("haproxy.cfg");
        let text = format!(
            "global\n  stats socket {} mode 600 level admin\n{GLOBAL}{proxies}",
            socket.display()
        );
        std::fs::write(&config, text).expect("write haproxy.cfg");
        let mut h = Haproxy {
            child: None,
            host,
            port,
            socket,
            dir,
            config,
        };
        h.restart().await;
        h
    }

    /// (Re)start the process and wait until its stats socket answers.
    pub async fn restart(&mut self) {
        self.stop();
        let check = Command::new(crate::haproxy_bin())
            .arg("-c")
            .arg("-q")
            .arg("-f")
            .arg(&self.config)
            .status()
            .expect("haproxy is not installed: run scripts/test-deps.sh");
        assert!(check.success(), "haproxy -c rejected the test config");
        let mut cmd = match &self.host {
            Some(h) => h.command(crate::haproxy_bin()),
            None => Command::new(crate::haproxy_bin()),
        };
        let log = std::fs::File::create(self.dir.path().join("haproxy.log")).expect("log");
        let child = cmd
            .arg("-db")
            .arg("-f")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn haproxy");
        self.child = Some(child);
        wait_for_socket(&self.socket, &self.dir.path().join("haproxy.log")).await;
    }

    /// Freeze it (SIGSTOP): connections are still accepted by the kernel, never answered.
    pub fn hang(&self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args(["-STOP", &c.id().to_string()])
                .status();
        }
    }

    /// Kill it (SIGKILL): the socket and the port stop answering.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Wait up to 5 s for a stats socket to answer `show info`; panic with HAProxy's log if not.
pub async fn wait_for_socket(socket: &std::path::Path, log: &std::path::Path) {
    for _ in 0..100 {
        if haproxy_watchdog::haproxy::socket::command(socket, "show info")
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = std::fs::read_to_string(log).unwrap_or_default();
    panic!("haproxy did not come up:\n{log}");
}
