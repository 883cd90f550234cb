//! Raw serde shapes of the TOML files: exactly what an operator can write, nothing derived.
//!
//! Every struct denies unknown fields so a typo is an error, never a silently ignored key.
//! Kinds are internally tagged enums (`type = "..."`); no `#[serde(flatten)]`, which would
//! quietly disable `deny_unknown_fields` (serde issue 1358).

use serde::Deserialize;
use std::path::PathBuf;

/// A duration as written: `"2s"`, `"1m30s"`. Parsed during validation so that a bad one is
/// reported with the rule's other errors rather than stopping at the first.
pub type HumanDuration = String;

/// `[aws]`: how the daemon reaches the AWS APIs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAws {
    /// Region of the EC2 and SNS APIs. Default: the SDK chain (AWS_REGION, profile, IMDS).
    pub region: Option<String>,
    /// Endpoint override for every AWS service (a VPC endpoint, or an emulator in tests).
    /// Default: the SDK chain (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_EC2`, ...).
    pub endpoint_url: Option<String>,
    /// TCP connect timeout of one AWS API attempt.
    pub connect_timeout: Option<HumanDuration>,
    /// Time limit of one attempt of one AWS API call.
    pub attempt_timeout: Option<HumanDuration>,
    /// Time limit of one AWS API call including all its retries.
    pub operation_timeout: Option<HumanDuration>,
    /// Attempts per call in the SDK's standard retry mode (1 = no retry).
    pub max_attempts: Option<u32>,
}

/// `[opsworks]`: how the `opsworks` claim provider reaches OpsWorks Stacks.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOpsworks {
    /// Region of the OpsWorks Stacks API endpoint (not the stack's region). Default: us-east-1.
    pub region: Option<String>,
    /// This node's OpsWorks instance id (a UUID, not the EC2 `i-...` id).
    /// Default: the `:identity:` line of `agent_config`.
    pub instance_id: Option<String>,
    /// The OpsWorks agent's configuration file. Default: /etc/aws/opsworks/instance-agent.yml.
    pub agent_config: Option<PathBuf>,
    /// Endpoint override for the OpsWorks API only. Default: `[aws] endpoint_url`, else the
    /// SDK chain (`AWS_ENDPOINT_URL_OPSWORKS`, `AWS_ENDPOINT_URL`).
    pub endpoint_url: Option<String>,
}

/// `[node]`: this node's identity. Anything not set comes from instance metadata (IMDSv2).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    pub instance_id: Option<String>,
    pub network_interface_id: Option<String>,
    pub private_ip: Option<String>,
    /// Instance metadata endpoint. Default: the SDK's (`AWS_EC2_METADATA_SERVICE_ENDPOINT`,
    /// else http://169.254.169.254).
    pub imds_endpoint: Option<String>,
    pub imds_timeout: Option<HumanDuration>,
}

/// `[egress]`: how a node proves its own internet path before it claims.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEgress {
    pub checkip_url: Option<String>,
    pub timeout: Option<HumanDuration>,
}

/// How to tell that a HAProxy is ready to serve: used by `[haproxy]` and by `type = "haproxy"`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHaproxy {
    pub stats_socket: Option<PathBuf>,
    pub health_url: Option<String>,
    pub frontend: Option<String>,
    pub backend: Option<String>,
    pub timeout: Option<HumanDuration>,
}

/// `[alerts]`: where failover alerts go.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    pub sns_topic_arn: Option<String>,
    pub subject_prefix: Option<String>,
}

/// `[control]`: how operators and monitoring reach the running daemon.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawControl {
    /// Local control socket for `watchdog status`; `""` turns it off.
    pub socket: Option<PathBuf>,
    /// Address of the Prometheus `/metrics` endpoint (off unless set).
    pub metrics_listen: Option<String>,
}

/// `[rules.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Required; optional here so that a rule without it still has its other keys checked.
    pub check: Option<RawCheck>,
    pub interval: Option<HumanDuration>,
    pub timeout: Option<HumanDuration>,
    pub fail_after: Option<i64>,
    pub recover_after: Option<i64>,
    #[serde(default)]
    pub on_fail: Vec<String>,
    #[serde(default)]
    pub on_recover: Vec<String>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawCheck {
    Http(RawHttpCheck),
    Haproxy(RawHaproxy),
    Egress(RawEgressCheck),
    BackendSync(RawBackendSync),
}

/// `type = "backend_sync"`: keep a HAProxy backend's servers equal to a discovery source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackendSync {
    pub source: RawSource,
    /// The backend whose servers are kept (`runtime` and `reload`).
    pub backend: Option<String>,
    /// The `peers` section kept (`apply = "peers"`).
    pub peers: Option<String>,
    /// The servers' port. Required for `asg`; for `consul` the service's registered port.
    pub port: Option<i64>,
    /// `"runtime"` (default), `"reload"` or `"peers"`.
    pub apply: Option<String>,
    pub stats_socket: Option<PathBuf>,
    pub haproxy_config: Option<PathBuf>,
    pub server_prefix: Option<String>,
    pub server_options: Option<String>,
    pub slots: Option<i64>,
    pub min_servers: Option<i64>,
    pub allow_empty: Option<bool>,
    pub template: Option<PathBuf>,
    pub haproxy_bin: Option<PathBuf>,
    pub reload: Option<RawReload>,
}

/// Where the servers come from.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawSource {
    Asg(RawAsgSource),
    Consul(RawConsulSource),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAsgSource {
    pub group: String,
    /// SQS queue URL fed by EventBridge; unset: poll every `interval`.
    pub events_queue: Option<String>,
    /// The terminating lifecycle hook whose actions this node completes after draining.
    pub lifecycle_hook: Option<String>,
    pub drain_timeout: Option<HumanDuration>,
    pub heartbeat_interval: Option<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsulSource {
    pub service: String,
    pub address: Option<String>,
    pub datacenter: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub passing_only: Option<bool>,
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
}

/// How HAProxy is reloaded when a change needs one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReload {
    /// HAProxy's master CLI (`-S`, Debian: /run/haproxy-master.sock): `reload` is sent there
    /// and its outcome read back (3.0: `Success=1`/`0`; 2.6: `show proc`). See HAProxy's
    /// management guide, "Master CLI".
    pub master_socket: Option<PathBuf>,
    /// Instead: a command such as `["systemctl", "reload", "haproxy"]`; the reload counts once
    /// the stats socket answers from a new process.
    pub command: Option<Vec<String>>,
    /// At most one reload per window (default 5s); changes within it are folded together.
    pub window: Option<HumanDuration>,
    /// How long a reload may take until HAProxy shows it done (default 30s), and how long the
    /// watchdog then waits for the wanted servers; past it the reload failed.
    pub timeout: Option<HumanDuration>,
}

/// `type = "egress"`: this node's traffic leaves from `expect` (checked through checkip).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEgressCheck {
    pub expect: String,
    /// Default: `[egress] checkip_url`.
    pub checkip_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpCheck {
    pub url: String,
    pub method: Option<String>,
    pub expect_status: Option<Vec<StatusPattern>>,
    pub body_contains: Option<String>,
    pub host: Option<String>,
}

/// `200` or `"2xx"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StatusPattern {
    Code(i64),
    Class(String),
}

/// `[actions.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawAction {
    ClaimEip(RawClaimEip),
    Sns(RawSns),
    Exec(RawExec),
}

/// `type = "exec"`: run a program (what monit's `then exec` did).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExec {
    /// The program and its arguments, run without a shell: `["/usr/local/bin/page", "ops"]`.
    pub command: Option<Vec<String>>,
    /// Killed (with its process group) after this long. Default: 30s.
    pub timeout: Option<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClaimEip {
    /// The Elastic IP's public address...
    pub eip: Option<String>,
    /// ...or its allocation id.
    pub allocation_id: Option<String>,
    pub provider: Option<String>,
    pub private_ip: Option<String>,
    pub hold_down: Option<HumanDuration>,
    pub sns_topic_arn: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSns {
    pub topic_arn: Option<String>,
    pub subject: Option<String>,
    pub message: Option<String>,
}
