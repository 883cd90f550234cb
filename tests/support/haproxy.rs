//! A real HAProxy (Debian's 2.6) on a loopback port, with its stats socket in a temp dir. It
//! answers every request itself (`http-request return`) with its node's name, so no backend
//! server is needed to tell which node served a request.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Haproxy {
    child: Option<Child>,
    pub port: u16,
    pub socket: PathBuf,
    pub dir: tempfile::TempDir,
    config: PathBuf,
}

impl Haproxy {
    pub async fn start(name: &str) -> Haproxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = super::free_port();
        let socket = dir.path().join("admin.sock");
        let config = dir.path().join("haproxy.cfg");
        std::fs::write(
            &config,
            format!(
                "global\n  stats socket {sock} mode 600 level admin\n  maxconn 2000\n\
                 defaults\n  mode http\n  timeout connect 1s\n  timeout client 10s\n  timeout server 10s\n\
                 frontend www\n  bind 127.0.0.1:{port}\n  http-request return status 200 content-type text/plain string \"{name}\\n\"\n",
                sock = socket.display()
            ),
        )
        .expect("write haproxy.cfg");
        let mut h = Haproxy {
            child: None,
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
        let check = Command::new("haproxy")
            .arg("-c")
            .arg("-q")
            .arg("-f")
            .arg(&self.config)
            .status()
            .expect("haproxy is not installed: run scripts/test-deps.sh");
        assert!(check.success(), "haproxy -c rejected the test config");
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn haproxy");
        self.child = Some(child);
        for _ in 0..100 {
            if haproxy_watchdog::checks::haproxy::socket_command(&self.socket, "show info")
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("haproxy did not come up");
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
