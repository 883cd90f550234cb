//! The `watchdog` binary under test, as a child process with JSON logs. Its events are
//! collected as they arrive so tests can wait for one and count them.

use serde_json::Value;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The binary under test: `$WATCHDOG_BIN` when set, else `watchdog` in the running
/// executable's target/<profile>/ (an integration test runs from target/<profile>/deps/, an
/// example from target/<profile>/examples/), where `cargo test` builds it for the integration
/// tests (the path cargo gives them as `CARGO_BIN_EXE_watchdog`, which this crate does not
/// see) and the scripts build it for the demo and the benchmarks.
pub fn bin() -> PathBuf {
    if let Some(p) = std::env::var_os("WATCHDOG_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .join("watchdog")
}

/// A session token the SDK sends on every call (as a header): it must never reach the log.
pub const SESSION_TOKEN: &str = "session-token-never-logged";

/// Where the watchdog's outside world is: AWS and instance metadata endpoints.
#[derive(Clone)]
pub struct Env {
    pub aws_endpoint: String,
    pub imds_endpoint: String,
}

/// An endpoint where nothing answers (the discard port, nothing listens there).
const NOWHERE: &str = "http://127.0.0.1:9";

impl Env {
    /// Neither AWS nor instance metadata: both endpoints lead nowhere.
    pub fn offline() -> Env {
        Env::aws_only(NOWHERE)
    }

    /// AWS at `aws_endpoint` (moto, a proxy in front of it), no instance metadata.
    pub fn aws_only(aws_endpoint: &str) -> Env {
        Env {
            aws_endpoint: aws_endpoint.to_owned(),
            imds_endpoint: NOWHERE.to_owned(),
        }
    }

    pub fn apply(&self, cmd: &mut Command) {
        // Only what the SDK's standard chains read; nothing from the developer's environment.
        for var in [
            "AWS_PROFILE",
            "AWS_CONFIG_FILE",
            "AWS_SHARED_CREDENTIALS_FILE",
            "AWS_SESSION_TOKEN",
            "RUST_LOG",
            "WATCHDOG_CONFIG",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("AWS_ENDPOINT_URL", &self.aws_endpoint)
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &self.imds_endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing-secret-never-logged")
            .env("AWS_SESSION_TOKEN", SESSION_TOKEN)
            .env("AWS_REGION", crate::world::REGION);
    }
}

/// Write a config file into a fresh temp dir.
pub fn write_config(toml: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("watchdog.toml");
    std::fs::write(&path, toml).unwrap();
    (dir, path)
}

/// `watchdog ARGS --config PATH` to completion (async: the test's own servers keep serving).
pub async fn run_to_end(env: Option<&Env>, config: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .arg("--config")
        .arg(config)
        .arg("--log-format")
        .arg("json");
    if let Some(e) = env {
        e.apply(&mut cmd);
    }
    tokio::process::Command::from(cmd)
        .output()
        .await
        .expect("run watchdog")
}

pub struct Watchdog {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
    raw: Arc<Mutex<Vec<String>>>,
    pub name: String,
    _dir: tempfile::TempDir,
}

impl Watchdog {
    /// `watchdog run` with `toml` as its whole configuration.
    pub fn start(name: &str, env: &Env, toml: &str, extra: &[&str]) -> Watchdog {
        Watchdog::start_with(Command::new(bin()), name, env, toml, extra)
    }

    /// The same, inside a simulated host.
    pub fn start_in(host: &crate::netns::Host, env: &Env, toml: &str, extra: &[&str]) -> Watchdog {
        Watchdog::start_with(host.command(bin()), &host.name, env, toml, extra)
    }

    fn start_with(mut cmd: Command, name: &str, env: &Env, toml: &str, extra: &[&str]) -> Watchdog {
        let dir = tempfile::tempdir().unwrap();
        // Each daemon answers on its own control socket, never the machine's
        // /run/haproxy-watchdog/control.sock (unless the test sets one). In conf.d, so a test
        // that rewrites the main file for a reload keeps it.
        if !toml.contains("[control]") {
            let conf_d = dir.path().join("conf.d");
            std::fs::create_dir(&conf_d).unwrap();
            std::fs::write(
                conf_d.join("control.toml"),
                format!(
                    "[control]\nsocket = \"{}\"\n",
                    dir.path().join("control.sock").display()
                ),
            )
            .unwrap();
        }
        let path = dir.path().join("watchdog.toml");
        std::fs::write(&path, toml).unwrap();
        cmd.arg("run")
            .arg("--config")
            .arg(&path)
            .args(["--log-format", "json", "--log-level", "debug"])
            .args(extra);
        env.apply(&mut cmd);
        // Each daemon keeps its hold-downs and alerts beside its own config, never in the
        // machine's /var/lib/haproxy-watchdog.
        cmd.env("WATCHDOG_STATE_DIR", dir.path());
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn watchdog");
        let events = Arc::new(Mutex::new(Vec::new()));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let (ev, rw, tag) = (events.clone(), raw.clone(), name.to_owned());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if std::env::var_os("WATCHDOG_TEST_LOG").is_some() {
                    eprintln!("[{tag}] {line}");
                }
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    ev.lock().unwrap().push(v);
                }
                rw.lock().unwrap().push(line);
            }
        });
        Watchdog {
            child,
            events,
            raw,
            name: name.to_owned(),
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its control socket (set by [`Watchdog::start`] unless the configuration has `[control]`).
    pub fn control_socket(&self) -> PathBuf {
        self._dir.path().join("control.sock")
    }

    /// The directory of its configuration and (unless `--state-dir` says otherwise) its state.
    pub fn dir(&self) -> PathBuf {
        self._dir.path().to_owned()
    }

    /// `watchdog ARGS --socket <its control socket>` to completion, as root on the host (a
    /// unix socket is reached through the file system, whatever the namespace).
    pub async fn ctl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(bin());
        cmd.args(args).arg("--socket").arg(self.control_socket());
        tokio::process::Command::from(cmd)
            .output()
            .await
            .expect("run watchdog")
    }

    /// The configuration file it was started with (rewrite it, then [`Watchdog::signal`] HUP).
    pub fn config_path(&self) -> PathBuf {
        self._dir.path().join("watchdog.toml")
    }

    /// `kill -SIG pid`, with `sig` like "HUP".
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success(), "kill -{sig} failed");
    }

    /// Events whose `event` field is `name`.
    pub fn events(&self, name: &str) -> Vec<Value> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == name)
            .cloned()
            .collect()
    }

    pub fn count(&self, name: &str) -> usize {
        self.events(name).len()
    }

    /// Wait until at least `n` `action_refused` events give `reason`; panics with `reason`
    /// after `within`.
    pub async fn refused_at_least(&self, within: Duration, reason: &str, n: usize) {
        crate::eventually(within, reason, || async {
            (self
                .events("action_refused")
                .iter()
                .filter(|e| e["reason"] == reason)
                .count()
                >= n)
                .then_some(())
        })
        .await;
    }

    /// Everything it logged, as text.
    pub fn log(&self) -> String {
        self.raw.lock().unwrap().join("\n")
    }

    /// Wait for an event matching `pred`; panics with the log when it does not come.
    pub async fn wait_for(
        &self,
        within: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(v) = self
                .events
                .lock()
                .unwrap()
                .iter()
                .find(|e| pred(e))
                .cloned()
            {
                return v;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "[{}] no {what} within {within:?}; log:\n{}",
                    self.name,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn wait_event(&self, within: Duration, name: &str) -> Value {
        self.wait_for(within, name, |e| e["event"] == name).await
    }

    /// SIGTERM, and the exit code (None: it had to be killed).
    pub async fn stop(mut self) -> (Option<i32>, String) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                return (status.code(), self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (None, self.log())
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node's configuration for the failover tests, with the knobs tests turn.
#[derive(Clone)]
pub struct NodeConf {
    pub target: String,
    pub checkip: String,
    pub socket: PathBuf,
    pub eip: String,
    pub topic_arn: Option<String>,
    pub interval: &'static str,
    pub timeout: &'static str,
    /// The rule's `fast_interval`: how often it checks while it is changing state.
    pub fast_interval: Option<&'static str>,
    pub fail_after: u32,
    pub recover_after: u32,
    pub hold_down: &'static str,
    pub private_ip: Option<String>,
    pub egress_timeout: &'static str,
    /// `[aws] endpoint_url`: set it to prove the config wins over `AWS_ENDPOINT_URL`.
    pub aws_endpoint: Option<String>,
    /// `[node]` instance id, ENI and private IP: no instance metadata needed.
    pub identity: Option<(String, String, String)>,
    /// `[haproxy] backend`: the backend that must be UP for a claim.
    pub haproxy_backend: Option<String>,
}

impl NodeConf {
    pub fn toml(&self) -> String {
        let mut s = format!(
            r#"
[aws]
attempt_timeout = "2s"
operation_timeout = "10s"
max_attempts = 3

[egress]
checkip_url = "{checkip}"
timeout = "{egress_timeout}"

[haproxy]
stats_socket = "{socket}"
timeout = "1s"

[rules.eip]
check = {{ type = "http", url = "{target}" }}
interval = "{interval}"
timeout = "{timeout}"
fail_after = {fail_after}
recover_after = {recover_after}
on_fail = ["claim"]

[actions.claim]
type = "claim_eip"
eip = "{eip}"
hold_down = "{hold_down}"
"#,
            checkip = self.checkip,
            socket = self.socket.display(),
            target = self.target,
            interval = self.interval,
            timeout = self.timeout,
            fail_after = self.fail_after,
            recover_after = self.recover_after,
            eip = self.eip,
            hold_down = self.hold_down,
            egress_timeout = self.egress_timeout,
        );
        if let Some(f) = self.fast_interval {
            s = s.replace(
                "on_fail = [\"claim\"]\n",
                &format!("fast_interval = \"{f}\"\non_fail = [\"claim\"]\n"),
            );
        }
        if let Some(t) = &self.topic_arn {
            s.push_str(&format!("sns_topic_arn = \"{t}\"\n"));
        }

        if let Some(ip) = &self.private_ip {
            s.push_str(&format!("private_ip = \"{ip}\"\n"));
        }
        if let Some((i, e, p)) = &self.identity {
            s.push_str(&format!("\n[node]\ninstance_id = \"{i}\"\nnetwork_interface_id = \"{e}\"\nprivate_ip = \"{p}\"\n"));
        }
        if let Some(b) = &self.haproxy_backend {
            s = s.replace("[haproxy]\n", &format!("[haproxy]\nbackend = \"{b}\"\n"));
        }
        if let Some(ep) = &self.aws_endpoint {
            s = s.replace("[aws]\n", &format!("[aws]\nendpoint_url = \"{ep}\"\n"));
        }
        s
    }
}
