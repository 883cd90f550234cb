//! The one HAProxy launcher: a real HAProxy (Debian's 2.6, or [`crate::haproxy_bin`]) with its
//! configuration, stats socket and log in a temp dir, checked with `haproxy -c`, started, and
//! waited for until its stats socket answers; killed on drop. Either in the foreground
//! (`-db`), on a loopback port answering every request itself (`http-request return` with its
//! node's name, so no backend is needed) or inside a simulated host on *:80 in front of a
//! backend server; or in master-worker mode (`-W -S`, a master CLI socket for hitless
//! reloads, like Debian's own unit runs it), which [`crate::lb::Lb`] builds on.

use crate::netns::Host;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How the process runs.
#[derive(Clone, Copy, PartialEq)]
pub enum Mode {
    /// One process in the foreground (`-db`).
    Foreground,
    /// A master and its worker (`-W -S <master socket>`).
    MasterWorker,
}

pub struct Haproxy {
    child: Option<Child>,
    /// Runs inside this simulated host, when set.
    host: Option<Host>,
    mode: Mode,
    pub port: u16,
    /// The stats socket (level admin).
    pub socket: PathBuf,
    /// The master CLI socket ([`Mode::MasterWorker`] only).
    pub master: PathBuf,
    pub config: PathBuf,
    pub dir: tempfile::TempDir,
}

/// The rest of `global`, and `defaults`: what every test configuration shares.
pub(crate) const GLOBAL: &str = "  maxconn 8000\n\
defaults\n  mode http\n  timeout connect 1s\n  timeout client 10s\n  timeout server 10s\n  option idle-close-on-response\n";

impl Haproxy {
    /// On 127.0.0.1, answering with `name` itself.
    pub async fn start(name: &str) -> Haproxy {
        let port = crate::free_port();
        Haproxy::launch(None, Mode::Foreground, port, |socket| {
            format!(
                "global\n  stats socket {} mode 600 level admin\n{GLOBAL}\
                 frontend www\n  bind 127.0.0.1:{port}\n  http-request return status 200 content-type text/plain string \"{name}\\n\"\n",
                socket.display()
            )
        })
        .await
    }

    /// Inside `host` on port 80 of each of `ips`, in front of the backend server `app` at
    /// `backend` (health-checked every 500 ms), the way a load balancer node runs it.
    pub async fn start_in(host: &Host, ips: &[std::net::Ipv4Addr], backend: SocketAddr) -> Haproxy {
        let binds: String = ips.iter().map(|ip| format!("  bind {ip}:80\n")).collect();
        Haproxy::launch(Some(host.clone()), Mode::Foreground, 80, |socket| {
            format!(
                "global\n  stats socket {} mode 600 level admin\n{GLOBAL}\
                 frontend www\n{binds}  default_backend app\n\
                 backend app\n  server web {backend} check inter 500ms fall 2 rise 1\n",
                socket.display()
            )
        })
        .await
    }

    /// Write `config(stats socket path)` as its configuration in a fresh temp dir, then start
    /// it (inside `host`, when set) and wait for its stats socket. `port` is what
    /// [`Haproxy::url`] points at.
    pub async fn launch(
        host: Option<Host>,
        mode: Mode,
        port: u16,
        config: impl FnOnce(&Path) -> String,
    ) -> Haproxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("admin.sock");
        let master = dir.path().join("master.sock");
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config(&socket)).expect("write haproxy.cfg");
        let mut h = Haproxy {
            child: None,
            host,
            mode,
            port,
            socket,
            master,
            config: path,
            dir,
        };
        h.restart().await;
        h
    }

    /// (Re)start the process and wait until its stats socket answers (a worker's, in
    /// master-worker mode).
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
        match self.mode {
            Mode::Foreground => cmd.arg("-db"),
            Mode::MasterWorker => cmd.arg("-W").arg("-S").arg(&self.master),
        };
        let log = std::fs::File::create(self.log_path()).expect("log");
        let child = cmd
            .arg("-f")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn haproxy");
        self.child = Some(child);
        wait_for_socket(&self.socket, &self.log_path()).await;
    }

    /// Freeze it (SIGSTOP): connections are still accepted by the kernel, never answered.
    pub fn hang(&self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args(["-STOP", &c.id().to_string()])
                .status();
        }
    }

    /// Kill it (SIGKILL): the sockets and the port stop answering.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.master);
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("haproxy.log")
    }

    /// What it wrote to stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
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
async fn wait_for_socket(socket: &Path, log: &Path) {
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
