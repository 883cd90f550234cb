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
    /// Also the region of the Auto Scaling and SQS APIs (backend sync).
    /// Checked to look like a region name; a configuration with AWS actions and no region
    /// from anywhere does not start (exit 1, which the systemd unit restarts).
    pub region: Option<String>,
    /// Endpoint override for every AWS service (a VPC endpoint, or an emulator in tests).
    /// Default: the SDK chain (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_EC2`, ...).
    /// An http(s) URL with a host.
    pub endpoint_url: Option<String>,
    /// TCP connect timeout of one AWS API attempt.
    /// Default 3s, 100ms to 10m (`"3s"`, `"500ms"`). The SDK's `connect_timeout`.
    pub connect_timeout: Option<HumanDuration>,
    /// Time limit of one attempt of one AWS API call.
    /// Default 5s, 100ms to 10m; must not exceed `operation_timeout`. The SDK's
    /// `operation_attempt_timeout`.
    pub attempt_timeout: Option<HumanDuration>,
    /// Time limit of one AWS API call including all its retries.
    /// Default 20s, 100ms to 10m. The SDK's `operation_timeout`.
    pub operation_timeout: Option<HumanDuration>,
    /// Attempts per call in the SDK's standard retry mode (1 = no retry).
    /// Default 4 (the SDK's standard mode), 1 to 10; throttling, 5xx and timeouts are retried.
    /// See the AWS SDKs and Tools Reference Guide, "Retry behavior".
    pub max_attempts: Option<u32>,
}

/// `[opsworks]`: how the `opsworks` claim provider reaches OpsWorks Stacks.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOpsworks {
    /// Region of the OpsWorks Stacks API endpoint (not the stack's region). Default: us-east-1.
    /// Checked to look like a region name.
    pub region: Option<String>,
    /// This node's OpsWorks instance id (a UUID, not the EC2 `i-...` id).
    /// Default: the `:identity:` line of `agent_config`.
    /// Checked to be a lowercase UUID; the file is read only for this line (it also holds the
    /// agent's keys).
    pub instance_id: Option<String>,
    /// The OpsWorks agent's configuration file. Default: /etc/aws/opsworks/instance-agent.yml.
    /// An absolute path.
    pub agent_config: Option<PathBuf>,
    /// Endpoint override for the OpsWorks API only. Default: `[aws] endpoint_url`, else the
    /// SDK chain (`AWS_ENDPOINT_URL_OPSWORKS`, `AWS_ENDPOINT_URL`).
    /// An http(s) URL with a host.
    pub endpoint_url: Option<String>,
}

/// `[node]`: this node's identity. Anything not set comes from instance metadata (IMDSv2).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    /// This node's EC2 instance id (`i-` and letters or digits): what a claim reports as
    /// the new holder. Default: instance metadata `instance-id`.
    pub instance_id: Option<String>,
    /// The ENI a claim associates the Elastic IP with (`eni-...`); it must be attached to
    /// this instance. Default: the primary ENI (instance metadata `mac`).
    pub network_interface_id: Option<String>,
    /// The IPv4 address a claim associates the Elastic IP with, and this node's address in
    /// `apply = "peers"`. Default: the ENI's first `local-ipv4s` entry, its primary private IP.
    pub private_ip: Option<String>,
    /// Instance metadata endpoint. Default: the SDK's (`AWS_EC2_METADATA_SERVICE_ENDPOINT`,
    /// else http://169.254.169.254).
    /// An http(s) URL with a host.
    pub imds_endpoint: Option<String>,
    /// Connect and read timeout of each instance metadata request (IMDSv2, token first).
    /// Default 2s, 10ms to 1m.
    pub imds_timeout: Option<HumanDuration>,
    /// A flag file: while it exists, this node is paused (as by `watchdog pause`): it runs its
    /// checks and other actions but starts no claim. Its first line, if any, is shown as the
    /// reason. An absolute path; `""` turns it off. Default /etc/haproxy-watchdog/maintenance.
    /// Looked at before every claim and by `watchdog status`.
    pub maintenance_file: Option<PathBuf>,
    /// The IPv4 CIDR of this node's subnet (`10.0.1.0/24`). Optional: with it, `validate`
    /// refuses a `claim_private_ip` address outside the subnet before the daemon starts;
    /// claims check it against EC2 (`DescribeSubnets`) either way.
    pub subnet_cidr: Option<String>,
    /// The VPC's IPv4 CIDR blocks (`["10.0.0.0/16"]`). Optional: with them, `validate`
    /// refuses a `claim_route` destination inside the VPC before the daemon starts; claims
    /// check it against EC2 (`DescribeVpcs`) either way.
    pub vpc_cidrs: Option<Vec<String>>,
}

/// `[egress]`: how a node proves its own internet path before it claims.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEgress {
    /// What a node asks for its public address before it claims; the answer must be one
    /// public IPv4 address. Default: https://checkip.amazonaws.com. An http(s) URL with a host.
    pub checkip_url: Option<String>,
    /// Time limit of that request. Default 3s, 10ms to 1m.
    pub timeout: Option<HumanDuration>,
}

/// How to tell that a HAProxy is ready to serve: used by `[haproxy]` and by `type = "haproxy"`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHaproxy {
    /// HAProxy's stats socket (`stats socket ... level admin` in `global`): the process must
    /// answer `show info` and not be stopping. Default /run/haproxy/admin.sock when neither this
    /// nor `health_url` is set (in a check: `[haproxy]`'s probes). An absolute path.
    pub stats_socket: Option<PathBuf>,
    /// Must answer 2xx (e.g. a `monitor-uri` frontend). An http(s) URL with a host.
    pub health_url: Option<String>,
    /// Through the stats socket: this frontend must be OPEN (`show stat`). Needs a stats socket.
    /// A HAProxy proxy name: no spaces or control characters.
    pub frontend: Option<String>,
    /// Through the stats socket: this backend must be UP, at least one server up. Needs a stats
    /// socket. Without it (or `health_url`) a HAProxy whose servers are all down counts as ready.
    pub backend: Option<String>,
    /// Time limit of the whole probe. Default 2s, 10ms to 1m.
    pub timeout: Option<HumanDuration>,
    /// With `backend`: at least this many of its servers must be UP (`show stat`), 1 to
    /// 10000. A server in maintenance (MAINT, as backend-sync's empty slots are) is not
    /// counted; DRAIN and NOLB are not UP. The idea of an NLB's minimum healthy targets.
    pub min_up: Option<i64>,
    /// With `backend`: at least this share of its servers not in maintenance must be UP,
    /// more than 0 and at most 1 (0.5: half, rounded up). A backend with no such server fails.
    pub min_up_ratio: Option<f64>,
}

/// `[alerts]`: where failover alerts go.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    /// Topic of a `claim_eip` action's alert and an `sns` action's message when they name
    /// none: `arn:aws:sns:REGION:ACCOUNT:NAME`, with a region like `us-east-1`, a 12-digit
    /// account and a name.
    pub sns_topic_arn: Option<String>,
    /// Starts the subject of each claim alert and of `sns` actions without `subject`:
    /// `PREFIX: i-... took over 203.0.113.10`. Default "HAProxy failover". Subjects are cut to
    /// the 99 printable ASCII characters SNS takes (SNS API Reference, `Publish`).
    pub subject_prefix: Option<String>,
}

/// `[control]`: how operators and monitoring reach the running daemon.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawControl {
    /// Local control socket for `watchdog status`; `""` turns it off.
    /// An absolute path. Default /run/haproxy-watchdog/control.sock. Bound once at start: a
    /// reload that changes it takes effect at the next restart.
    pub socket: Option<PathBuf>,
    /// Address of the Prometheus `/metrics` endpoint (off unless set).
    /// `IP:PORT`, like "127.0.0.1:9106". Bound once at start, like `socket`.
    pub metrics_listen: Option<String>,
    /// How many entries `watchdog status --history` keeps in the state directory: rule
    /// transitions, claims, refusals and operator commands, the oldest dropped first.
    /// 1 to 10000. Default 100. Read once at start, like `socket`.
    pub history: Option<i64>,
}

/// `[rules.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Required; optional here so that a rule without it still has its other keys checked.
    /// What to check: a table with `type` = "http", "tcp", "haproxy", "program", "process",
    /// "file", "egress" or "backend_sync".
    pub check: Option<RawCheck>,
    /// How often the check runs, 100ms to 1h. Default 10s; for a backend sync, its
    /// poll (`asg`, default 30s; 5m with `events_queue`) or longest blocking query (`consul`, 60s).
    pub interval: Option<HumanDuration>,
    /// A check slower than this fails. 10ms to 5m; must not exceed `interval`. Default 5s,
    /// or `interval` when that is shorter (HAProxy's checks time out at `inter` when `timeout
    /// check` is not set).
    pub timeout: Option<HumanDuration>,
    /// How often the check runs while the rule is changing state: after a failed check while
    /// the rule is up, and after a good one while it is down, until it fails, recovers or the
    /// streak breaks (HAProxy's `fastinter`). 100ms to `interval`. Default: none, every cycle
    /// is `interval` apart. Not for a backend sync, which paces itself.
    pub fast_interval: Option<HumanDuration>,
    /// Consecutive failed cycles before the rule fails and `on_fail` runs (monit's
    /// `for N cycles`). Default 3, 1 to 1000.
    pub fail_after: Option<i64>,
    /// Consecutive good cycles before a failed rule recovers and `on_recover` runs.
    /// Default 2, 1 to 1000.
    pub recover_after: Option<i64>,
    /// Actions (`[actions.NAME]`) run when the rule fails, each once, retried each cycle until
    /// it completes or the rule recovers. Default none; an unknown name is an error.
    #[serde(default)]
    pub on_fail: Vec<String>,
    /// Actions run when the rule recovers. Default none; a `claim_eip` is not allowed here.
    #[serde(default)]
    pub on_recover: Vec<String>,
    /// `false` keeps the rule in the file, validated exactly like an enabled one, but does not
    /// run it. Default true.
    pub enabled: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawCheck {
    Http(RawHttpCheck),
    Haproxy(RawHaproxy),
    Egress(RawEgressCheck),
    Tcp(RawTcpCheck),
    Program(RawProgramCheck),
    Process(RawProcessCheck),
    File(RawFileCheck),
    BackendSync(Box<RawBackendSync>),
}

/// `type = "tcp"`: a TCP connection opens (and, if asked, answers as expected); monit's
/// `if failed port N` with `send`/`expect`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTcpCheck {
    /// An IPv4 or IPv6 address (`"::1"`, no brackets) or a DNS name, resolved on every check;
    /// each address it resolves to is tried in turn until one connects.
    pub host: String,
    /// 1 to 65535.
    pub port: i64,
    /// Written once the connection is open, as is (TOML escapes such as `"\r\n"` work).
    /// Not empty. Default: nothing is sent.
    pub send: Option<String>,
    /// The answer's first bytes (up to 4 KiB, read until it appears, the peer closes or the
    /// rule's `timeout`) must contain this text (not a regular expression). Not empty.
    /// Default: connecting is enough.
    pub expect: Option<String>,
}

/// `type = "program"`: a program's exit status (keepalived's `vrrp_script`, monit's
/// `check program`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProgramCheck {
    /// The program and its arguments, run without a shell: `["/usr/local/bin/check", "-q"]`.
    /// Required; the program is an absolute path (no PATH search). It runs as the daemon's
    /// user, in its own process group, which is killed at the rule's `timeout`; its
    /// environment has `WATCHDOG_RULE`.
    pub command: Option<Vec<String>>,
    /// The exit statuses that pass, 0 to 255. Default [0]. Death by a signal never passes.
    pub expect_exit: Option<Vec<i64>>,
}

/// `type = "process"`: a process is running (monit's `check process`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProcessCheck {
    /// A file holding the PID (one per line; every one must be running). A missing or empty
    /// file, or a PID that is not running (a stale pidfile), fails. An absolute path.
    pub pidfile: Option<PathBuf>,
    /// The process's command name (`/proc/PID/comm`, or the file name of its first argument):
    /// with `pidfile`, the PID must be this program; without, some process of that name must
    /// run. Not empty, no `/`. At least one of `pidfile` and `name` is required.
    pub name: Option<String>,
}

/// `type = "file"`: a path exists, or does not (a maintenance flag: keepalived's
/// `track_file`, monit's `check file`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFileCheck {
    /// An absolute path. Symbolic links are followed.
    pub path: PathBuf,
    /// `true` (default): the check passes while the path exists; `false`: while it does not.
    pub exists: Option<bool>,
    /// With `exists = true`: the path's last modification must be no older than this
    /// (a heartbeat file). 1s to 30d. Default: any age.
    pub max_age: Option<HumanDuration>,
}

/// `type = "backend_sync"`: keep a HAProxy backend's servers equal to a discovery source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackendSync {
    /// Where the servers come from: a table with `type` = "asg" or "consul".
    pub source: RawSource,
    /// The backend whose servers are kept (`runtime` and `reload`).
    /// A HAProxy section name (letters, digits, `-_.:`), with the two marker lines in the file.
    pub backend: Option<String>,
    /// The `peers` section kept (`apply = "peers"`).
    /// A HAProxy section name, with the two marker lines in the file.
    pub peers: Option<String>,
    /// The servers' port. Required for `asg`; for `consul` the service's registered port.
    /// 1 to 65535.
    pub port: Option<i64>,
    /// `"runtime"` (default), `"reload"` or `"peers"`.
    /// See docs/backend-sync.md.
    pub apply: Option<String>,
    /// HAProxy's stats socket (level admin). Default: `[haproxy] stats_socket`, else
    /// /run/haproxy/admin.sock.
    pub stats_socket: Option<PathBuf>,
    /// The file whose managed block is kept (`runtime`, `peers`) or that the template is
    /// rendered into (`reload`). Default /etc/haproxy/haproxy.cfg.
    pub haproxy_config: Option<PathBuf>,
    /// Slot names are this and a number (`app1`). Default: the backend's name; at most 60
    /// characters of HAProxy's name set.
    pub server_prefix: Option<String>,
    /// HAProxy server keywords written after the address on each server line, one line
    /// without `#` or `disabled`. Default "check". See HAProxy's configuration manual,
    /// "Server and default-server options".
    pub server_options: Option<String>,
    /// Slots written when the managed block is (re)written; grown by half again, with one
    /// reload, when they run out. Default 10, 1 to 10000.
    pub slots: Option<i64>,
    /// An answer listing fewer servers is refused and HAProxy keeps what it has. Default 1,
    /// 0 to 10000; 0 needs `allow_empty = true`.
    pub min_servers: Option<i64>,
    /// `true`: an empty answer empties the backend. Default false (refused, like too few).
    pub allow_empty: Option<bool>,
    /// A minijinja template rendered into `haproxy_config`; required with `apply = "reload"`
    /// and only allowed there. Variables: `nodes`, `servers`, `backend`, `server_options`.
    pub template: Option<PathBuf>,
    /// The HAProxy binary that checks each file written (`haproxy -c -f`), except runtime-mode
    /// rewrites that only move servers (docs/backend-sync.md, "When haproxy -c runs").
    /// Default "haproxy" (searched in PATH).
    pub haproxy_bin: Option<PathBuf>,
    /// How HAProxy is reloaded (`reload` and `peers` modes, and runtime mode to grow slots).
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
    /// The Auto Scaling group: its InService and Healthy instances, by private IP
    /// (`DescribeAutoScalingGroups`, `DescribeInstances`). 1 to 255 characters.
    pub group: String,
    /// SQS queue URL fed by EventBridge; unset: poll every `interval`.
    /// An http(s) URL; see packaging/eventbridge/.
    pub events_queue: Option<String>,
    /// The terminating lifecycle hook whose actions this node completes after draining.
    /// Without it, a terminating instance is drained and removed but nothing is completed.
    /// 1 to 255 characters. See the Amazon EC2 Auto Scaling User Guide, "Lifecycle hooks".
    pub lifecycle_hook: Option<String>,
    /// The longest a terminating instance's server drains before it goes to maintenance
    /// anyway. Default 5m, 100ms to 2h.
    pub drain_timeout: Option<HumanDuration>,
    /// `RecordLifecycleActionHeartbeat` this often while draining, to keep the hook's action
    /// open past its heartbeat timeout. Default none; 1s to 1h; needs `lifecycle_hook`.
    pub heartbeat_interval: Option<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsulSource {
    /// The Consul service (`GET /v1/health/service/<service>`); no `/` or `?`.
    pub service: String,
    /// Consul's HTTP API. Default http://127.0.0.1:8500.
    pub address: Option<String>,
    /// Consul's `dc` parameter. Default: the agent's datacenter.
    pub datacenter: Option<String>,
    /// Only instances with every one of these tags (`tag` parameters). Default none; no empty tag.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Only instances whose health checks all pass (`passing`). Default true.
    pub passing_only: Option<bool>,
    /// A file holding the ACL token (`X-Consul-Token`), read on every query so a rotation
    /// needs no restart. Not with `token_env`. The token is never logged.
    pub token_file: Option<PathBuf>,
    /// An environment variable holding the ACL token instead. Not empty; not with
    /// `token_file`.
    pub token_env: Option<String>,
}

/// How HAProxy is reloaded when a change needs one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReload {
    /// HAProxy's master CLI (`-S`, Debian: /run/haproxy-master.sock): `reload` is sent there
    /// and its outcome read back (3.0: `Success=1`/`0`; 2.6: `show proc`). See HAProxy's
    /// management guide, "Master CLI".
    /// Default /run/haproxy-master.sock. Not with `command`.
    pub master_socket: Option<PathBuf>,
    /// Instead: a command such as `["systemctl", "reload", "haproxy"]`; the reload counts once
    /// the stats socket answers from a new process.
    /// Not with `master_socket`; not empty.
    pub command: Option<Vec<String>>,
    /// At most one reload per window (default 5s); changes within it are folded together.
    /// 100ms to 10m.
    pub window: Option<HumanDuration>,
    /// How long a reload may take until HAProxy shows it done (default 30s), and how long the
    /// watchdog then waits for the wanted servers; past it the reload failed.
    /// 10ms to 5m.
    pub timeout: Option<HumanDuration>,
}

/// `type = "egress"`: this node's traffic leaves from `expect` (checked through checkip).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEgressCheck {
    /// The Elastic IP this node's traffic should leave from: on AWS, it passes exactly while
    /// that EIP is on this node's primary private IP. An IPv4 address that can be public (not
    /// private or reserved, like a claim's `eip`).
    pub expect: String,
    /// Default: `[egress] checkip_url`.
    /// An http(s) URL with a host. The rule's `timeout` bounds the request.
    pub checkip_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpCheck {
    /// The URL fetched each cycle, from this node; http(s), with a host. Proxy variables are
    /// ignored and redirects not followed.
    pub url: String,
    /// GET (default), HEAD, POST or OPTIONS.
    pub method: Option<String>,
    /// Statuses that pass: codes (`200`) or classes (`"2xx"`). Default 200-399, like monit's
    /// `protocol HTTP`. Not empty.
    pub expect_status: Option<Vec<StatusPattern>>,
    /// The body must contain this text (not a regular expression). Not empty; not with HEAD.
    pub body_contains: Option<String>,
    /// The Host header sent, for a HAProxy that routes by name. Default: the URL's host.
    pub host: Option<String>,
    /// Keep the connection open between checks, for at most this long after it was opened
    /// (like `"30s"`); default: a new connection for every check. Only for plain `http` URLs
    /// without credentials; longer than the rule's `interval`, at most 1h.
    ///
    /// A kept connection costs a check less CPU (no connect, accept and close on either
    /// side), and it cannot see that the listener stopped accepting new connections (a full
    /// accept queue, `maxconn` reached, a `disable frontend`): the clients of the address
    /// would see that, and the check only once the connection is renewed, at most this long
    /// later. A check that fails never keeps its connection, after one the next
    /// `recover_after` passing checks each open their own, a kept connection that fails
    /// before an answer (closed by HAProxy's `timeout http-keep-alive`, or by a reload's old
    /// process) is replaced within the same check, and a check never waits for the rest of a
    /// body to keep its connection. See docs/configuration.md.
    pub keep_alive: Option<HumanDuration>,
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
    ClaimPrivateIp(RawClaimPrivateIp),
    ClaimRoute(RawClaimRoute),
    ClaimGroup(RawClaimGroup),
    Sns(RawSns),
    Exec(RawExec),
}

/// `type = "exec"`: run a program (what monit's `then exec` did).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExec {
    /// The program and its arguments, run without a shell: `["/usr/local/bin/page", "ops"]`.
    /// Required; the program is an absolute path (no PATH search, no shell).
    pub command: Option<Vec<String>>,
    /// Killed (with its process group) after this long. Default: 30s.
    pub timeout: Option<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClaimEip {
    /// The Elastic IP's public address...
    /// An IPv4 address that can be public: private (RFC 1918), loopback, link-local,
    /// unspecified, multicast, broadcast and reserved ones are refused; the documentation
    /// ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) are let through for examples.
    /// Set this or `allocation_id`; OpsWorks needs this one.
    pub eip: Option<String>,
    /// ...or its allocation id.
    /// `eipalloc-...`; only with `provider = "ec2"`.
    pub allocation_id: Option<String>,
    /// "ec2" (default: `DisassociateAddress`, then `AssociateAddress` with
    /// `AllowReassociation=false`) or "opsworks" (`AssociateElasticIp`, for an EIP registered
    /// with an OpsWorks Stacks stack).
    pub provider: Option<String>,
    /// The private IP on this node's ENI the EIP goes to: a secondary one for active/active
    /// pairs. Default: the ENI's primary private IP (`[node]`). Not with OpsWorks.
    pub private_ip: Option<String>,
    /// After this node moved the EIP or lost a race for it, no new claim for this long
    /// (saved across restarts). Default 5m, 1s to 1 day.
    pub hold_down: Option<HumanDuration>,
    /// Topic of the one alert each claim sends. Default: `[alerts] sns_topic_arn`; one of
    /// the two is required.
    pub sns_topic_arn: Option<String>,
}

/// `type = "claim_private_ip"`: move a secondary private IP between the nodes of one subnet
/// (what Pacemaker's `awsvip` agent does).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClaimPrivateIp {
    /// The secondary private IPv4 address clients in the VPC use. Required. It must lie in
    /// the subnet of this node's ENI (checked against `[node] subnet_cidr` by `validate`
    /// and against EC2 before every claim), and must not be any node's primary address.
    /// A claim reads which ENI holds it (`DescribeNetworkInterfaces`), then assigns it to
    /// this node's ENI with `AssignPrivateIpAddresses` and `AllowReassignment=true`.
    pub private_ip: Option<String>,
    /// The local network interface the address is added to once EC2 shows it here (as
    /// `ip addr add` would, through netlink; needs `CAP_NET_ADMIN`, see the
    /// `private-claims.conf` unit drop-in). It is removed again when another node holds it.
    /// Default: the interface that carries this node's private IP. A Linux interface name
    /// (1 to 15 characters, no `/`, no whitespace).
    pub interface: Option<String>,
    /// Proof that this node reaches the VPC before it takes the address; checkip proves
    /// only the internet path. Required, at least one: `"host:port"` (a TCP connection
    /// must be accepted) or an `http://` / `https://` URL (any HTTP answer counts). One
    /// answer among them is enough. Name places that stay up when the other node dies: the
    /// VPC's DNS resolver (`"10.0.0.2:53"`), a service in another subnet; not only the peer.
    pub reachability: Option<Vec<String>>,
    /// Time limit of each reachability attempt. Default 2s, 10ms to 1m.
    pub reachability_timeout: Option<HumanDuration>,
    /// After this node moved the address or lost a race for it, no new claim for this long
    /// (saved across restarts). Default 5m, 1s to 1 day.
    pub hold_down: Option<HumanDuration>,
    /// Topic of the one alert each claim sends. Default: `[alerts] sns_topic_arn`; one of
    /// the two is required.
    pub sns_topic_arn: Option<String>,
    /// How often the holder is read to keep the local address in step with EC2: added when
    /// EC2 shows it here (e.g. after a restart), removed when another node took it.
    /// Default 10s, 1s to 1h.
    pub owner_poll: Option<HumanDuration>,
}

/// `type = "claim_route"`: route an overlay IP outside the VPC's CIDRs to this node, in
/// every listed route table, across Availability Zones (what Pacemaker's `aws-vpc-move-ip`
/// agent does).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClaimRoute {
    /// The overlay IPv4 address clients use; the route is its `/32`. Required. It must lie
    /// outside the VPC's CIDR blocks (checked against `[node] vpc_cidrs` by `validate` and
    /// against EC2 before every claim): routes to addresses inside the VPC are EC2's own.
    pub destination: Option<String>,
    /// The route tables that must send the destination to this node: those of every
    /// subnet whose clients use it. Required, at least one, `rtb-...`, no repeats. A claim
    /// reads each table's current target, then `ReplaceRoute` (or `CreateRoute` where the
    /// route is missing) onto this node's ENI; a table that fails is retried until every
    /// table points here.
    pub route_table_ids: Option<Vec<String>>,
    /// The local interface the overlay address is added to (as a `/32`), through netlink
    /// (needs `CAP_NET_ADMIN`). Default `lo`.
    pub interface: Option<String>,
    /// As for `claim_private_ip`: where this node must reach into the VPC before it claims.
    /// Required.
    pub reachability: Option<Vec<String>>,
    /// Time limit of each reachability attempt. Default 2s, 10ms to 1m.
    pub reachability_timeout: Option<HumanDuration>,
    /// After this node moved the route or lost a race for it, no new claim for this long
    /// (saved across restarts). Default 5m, 1s to 1 day.
    pub hold_down: Option<HumanDuration>,
    /// Topic of the one alert each claim sends. Default: `[alerts] sns_topic_arn`; one of
    /// the two is required.
    pub sns_topic_arn: Option<String>,
    /// How often the route tables are read to keep the local address in step. Default 10s,
    /// 1s to 1h.
    pub owner_poll: Option<HumanDuration>,
}

/// `type = "claim_group"`: move several addresses as one decision (keepalived's
/// `vrrp_sync_group`), e.g. the public Elastic IP and the internal overlay IP of one load
/// balancer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClaimGroup {
    /// The claim actions (`claim_eip`, `claim_private_ip`, `claim_route`) moved together, by
    /// name. Required, at least two, no repeats. A member belongs to one group and is listed
    /// by no rule itself: the group runs it.
    pub members: Option<Vec<String>>,
    /// Topic of the one alert each move of the group sends, naming every member. Default:
    /// `[alerts] sns_topic_arn`; one of the two is required.
    pub sns_topic_arn: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSns {
    /// `arn:aws:sns:REGION:ACCOUNT:NAME`. Default: `[alerts] sns_topic_arn`; one of the two is
    /// required.
    pub topic_arn: Option<String>,
    /// With `{rule}`, `{event}` (failed/recovered), `{detail}`. Default: `[alerts] subject_prefix`
    /// and "rule NAME failed". At most 100 printable ASCII characters.
    pub subject: Option<String>,
    /// With `{rule}`, `{event}`, `{detail}`. Default: "Rule NAME failed after N consecutive cycles:
    /// DETAIL".
    pub message: Option<String>,
}
