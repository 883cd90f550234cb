//! `moto_server` (PyPI `moto[server]`, installed into `.venv/` by scripts/test-deps.sh) on a
//! loopback port, one per test, with its request recorder on so tests can see exactly which
//! AWS calls were made and with which parameters.

use base64::Engine;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Moto {
    child: Child,
    pub url: String,
    recording: PathBuf,
    pub dir: tempfile::TempDir,
}

/// One AWS API request as moto saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub action: String,
    pub params: BTreeMap<String, String>,
    pub user_agent: String,
}

/// moto's server, run through `testkit/moto_lifecycle.py`: stock moto plus the
/// terminating lifecycle hooks (Terminating:Wait, CompleteLifecycleAction,
/// RecordLifecycleActionHeartbeat) it lacks.
fn command() -> Command {
    let python = std::env::var("MOTO_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| crate::repo().join(".venv/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: run scripts/test-deps.sh first",
        python.display()
    );
    let mut c = Command::new(python);
    c.arg(crate::testkit_dir().join("moto_lifecycle.py"));
    c
}

/// One completed lifecycle action or heartbeat, as the extended moto recorded it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct LifecycleCall {
    pub group: String,
    pub hook: String,
    pub instance: String,
    pub token: Option<String>,
    /// Seconds since the epoch.
    pub at: f64,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct LifecycleLog {
    pub completions: Vec<LifecycleCall>,
    pub heartbeats: Vec<LifecycleCall>,
}

/// The token the extended moto gives an instance's terminating lifecycle action.
pub fn lifecycle_token(instance: &str) -> String {
    let tail = &instance[instance.len().saturating_sub(12)..];
    format!("00000000-0000-4000-8000-{tail:0>12}")
}

impl Moto {
    pub async fn start() -> Moto {
        for _ in 0..3 {
            if let Some(moto) = Moto::start_on(crate::free_port()).await {
                return moto;
            }
        }
        panic!("moto_server did not start");
    }

    /// A moto on `port`, or None when it did not come up there: it exited (the port was
    /// taken), or what answers on the port is another server (the port was taken between
    /// choosing it and binding it, by another test's moto or anything else).
    async fn start_on(port: u16) -> Option<Moto> {
        let dir = tempfile::tempdir().expect("tempdir");
        let recording = dir.path().join("recording.jsonl");
        let log = std::fs::File::create(dir.path().join("moto.log")).expect("log");
        let token = dir.path().display().to_string();
        let child = command()
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_ENABLE_RECORDING", "True")
            .env("MOTO_RECORDER_FILEPATH", &recording)
            .env("MOTO_INSTANCE_TOKEN", &token)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn moto_server");
        let mut moto = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
            recording,
            dir,
        };
        if moto.wait_ready(&token).await {
            return Some(moto);
        }
        let _ = moto.child.kill();
        let _ = moto.child.wait();
        None
    }

    /// Until this moto answers on its port with its own `token`; false when it exits first
    /// or does not answer within 30 s.
    async fn wait_ready(&mut self, token: &str) -> bool {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        for _ in 0..300 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(r) = client
                .get(format!("{}/moto-api/whoami", self.url))
                .send()
                .await
            {
                if r.status().is_success() && r.text().await.is_ok_and(|t| t == token) {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// From now on moto enforces IAM ("IAM-like access control" in its docs): every request
    /// must be signed with an access key of an IAM user it knows, and that user's policies
    /// must allow the action. Before, nothing is checked (moto's default). Done with
    /// `POST /moto-api/reset-auth` (the number of requests left unchecked, here 0), the
    /// server-mode switch for `INITIAL_NO_AUTH_ACTION_COUNT`: unlike the environment
    /// variable it needs no count of the set-up's requests. The test's own SDK clients (key
    /// `testing`) are refused after this; make users with [`Moto::iam_user`] first.
    pub async fn enforce_iam(&self) {
        let r = reqwest::Client::new()
            .post(format!("{}/moto-api/reset-auth", self.url))
            .body("0")
            .send()
            .await
            .expect("moto reset-auth");
        assert!(r.status().is_success(), "moto reset-auth: {}", r.status());
    }

    /// An IAM user `name` whose one inline policy allows `actions` on every resource; returns
    /// its access key (id, secret). Call it before [`Moto::enforce_iam`].
    pub async fn iam_user(&self, name: &str, actions: &[&str]) -> (String, String) {
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
        })
        .to_string();
        self.iam(&[("Action", "CreateUser"), ("UserName", name)])
            .await;
        self.iam(&[
            ("Action", "PutUserPolicy"),
            ("UserName", name),
            ("PolicyName", "preflight-test"),
            ("PolicyDocument", &policy),
        ])
        .await;
        let key = self
            .iam(&[("Action", "CreateAccessKey"), ("UserName", name)])
            .await;
        let field = |tag: &str| {
            let open = format!("<{tag}>");
            let start = key.find(&open).expect(tag) + open.len();
            let end = key[start..].find('<').expect(tag) + start;
            key[start..end].to_owned()
        };
        (field("AccessKeyId"), field("SecretAccessKey"))
    }

    /// One IAM query-protocol request, unsigned (moto checks no signature until
    /// [`Moto::enforce_iam`]); the Authorization header only names the service.
    async fn iam(&self, params: &[(&str, &str)]) -> String {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter().copied().chain([("Version", "2010-05-08")]))
            .finish();
        let r = reqwest::Client::new()
            .post(format!("{}/", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0",
            )
            .body(body)
            .send()
            .await
            .expect("moto IAM request");
        let status = r.status();
        let text = r.text().await.expect("moto IAM answer");
        assert!(status.is_success(), "moto IAM {params:?}: {status} {text}");
        text
    }

    /// Lifecycle actions completed and heartbeats recorded so far.
    pub async fn lifecycle(&self) -> LifecycleLog {
        let r = reqwest::get(format!("{}/moto-api/lifecycle", self.url))
            .await
            .expect("moto lifecycle log");
        let text = r.text().await.expect("moto lifecycle log");
        serde_json::from_str(&text).expect("moto lifecycle log JSON")
    }

    /// Every AWS request made so far (the test's own set-up calls included).
    pub fn requests(&self) -> Vec<Recorded> {
        let text = std::fs::read_to_string(&self.recording).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(parse_recorded)
            .collect()
    }

    /// Requests with this `Action=` made by the watchdog (not by the test's own SDK clients).
    pub fn watchdog_calls(&self, action: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.action == action && r.user_agent.contains("haproxy-watchdog"))
            .collect()
    }

    /// Mutating EC2 calls the watchdog made.
    pub fn watchdog_mutations(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| {
                r.user_agent.contains("haproxy-watchdog")
                    && matches!(
                        r.action.as_str(),
                        "AssociateAddress" | "DisassociateAddress"
                    )
            })
            .collect()
    }

    /// The actions of every request the watchdog made, in order.
    pub fn watchdog_actions(&self) -> Vec<String> {
        self.watchdog_requests()
            .into_iter()
            .map(|r| r.action)
            .collect()
    }

    /// Every request the watchdog made, whatever the service.
    pub fn watchdog_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.user_agent.contains("haproxy-watchdog"))
            .collect()
    }
}

fn parse_recorded(line: &str) -> Option<Recorded> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let body = v["body"].as_str().unwrap_or("");
    let raw = if v["body_encoded"].as_bool() == Some(true) {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .ok()?
    } else {
        body.as_bytes().to_vec()
    };
    let mut params: BTreeMap<String, String> =
        url::form_urlencoded::parse(&raw).into_owned().collect();
    // JSON-protocol services put the operation in X-Amz-Target instead of Action=.
    let headers = &v["headers"];
    let header = |name: &str| {
        headers
            .as_object()
            .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
            .and_then(|(_, v)| v.as_str())
            .unwrap_or("")
            .to_owned()
    };
    let action = match params.remove("Action") {
        Some(a) => a,
        None => header("x-amz-target")
            .rsplit('.')
            .next()
            .unwrap_or("")
            .to_owned(),
    };
    Some(Recorded {
        action,
        params,
        user_agent: format!("{} {}", header("user-agent"), header("x-amz-user-agent")),
    })
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kind behind two test-bed tests that once talked to one moto: a port taken between
    /// `free_port()` and moto binding it. The second moto must not take the first for itself.
    #[tokio::test]
    async fn a_moto_whose_port_is_taken_is_not_mistaken_for_the_one_there() {
        let first = Moto::start().await;
        let port: u16 = first
            .url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        assert!(
            Moto::start_on(port).await.is_none(),
            "a second moto on {port} was taken for a running one"
        );
    }
}
