//! Real components on loopback for the integration tests, the demo and the benchmarks: the
//! AWS API emulator (`moto_server`), HAProxy, an IMDSv2 stand-in, programmable HTTP endpoints,
//! an "edge" that makes the Elastic IP real, and the `watchdog` binary itself as a child
//! process.
//!
//! Everything binds to 127.0.0.1 (or inside network namespaces) and is torn down on drop, even
//! when a test fails. A dev-only crate (`publish = false`): `tests/integration/` and
//! `examples/` use it as a dev-dependency.

pub mod asg;
pub mod awsproxy;
pub mod bed;
pub mod consul;
pub mod edge;
pub mod haproxy;
pub mod http;
pub mod imds;
pub mod lb;
pub mod load;
pub mod measure;
pub mod moto;
pub mod netns;
pub mod opsworks;
pub mod testbed;
pub mod vpc;
pub mod watchdog;
pub mod world;

use std::time::Duration;

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// The daemon's `/metrics` page on `127.0.0.1:port` (`[control] metrics_listen`).
pub async fn metrics(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("the /metrics body")
}

/// `GET path` on a daemon's control socket: the body of its answer.
pub async fn control_get(socket: &std::path::Path, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect to the control socket");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("send");
    let mut reply = String::new();
    s.read_to_string(&mut reply).await.expect("read");
    reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// `promtool check metrics` on `text`: None when it is lint-clean, else what promtool said.
pub fn promtool(text: &str) -> Option<String> {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (scripts/test-deps.sh installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    (!out.status.success()).then(|| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Poll `f` every 50 ms until it returns Some, or panic with `what` after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The HAProxy the tests run and check configurations with: `$WATCHDOG_TEST_HAPROXY` when set
/// (for example the HAProxy 3.0 wrapper that scripts/haproxy-3.0.sh prints), else Debian's
/// `haproxy` on the PATH.
pub fn haproxy_bin() -> String {
    std::env::var("WATCHDOG_TEST_HAPROXY")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "haproxy".to_owned())
}

/// A `haproxy` in `dir` that refuses every configuration `-c` checks (`[ALERT] (test)
/// refused`, exit 1) and is [`haproxy_bin`] otherwise: a rule's rewrites of the file then
/// keep failing, after its live changes went through.
pub fn haproxy_refusing_checks(dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("haproxy-refuses-check");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = -c ] && {{ echo '[ALERT] (test) refused' >&2; exit 1; }}; done\nexec {} \"$@\"\n",
            haproxy_bin()
        ),
    )
    .expect("the wrapper is written");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .expect("the wrapper is made executable");
    path
}

/// The repository root (this crate lives in its `testkit/`).
pub fn repo() -> std::path::PathBuf {
    testkit_dir()
        .parent()
        .expect("testkit/ has a parent")
        .to_path_buf()
}

/// This crate's own directory, `testkit/` (for `moto_lifecycle.py`).
fn testkit_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
