//! The validated configuration: what the rest of the daemon runs on. Every value here has
//! been checked and every default filled in; nothing downstream re-validates.

use super::defaults;
use reqwest::Url;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    /// The files this configuration was read from, in load order.
    pub sources: Vec<PathBuf>,
    pub aws: AwsSettings,
    pub node: NodeSettings,
    pub egress: EgressSettings,
    pub haproxy: HaproxyProbeSpec,
    pub alerts: AlertSettings,
    pub control: ControlSettings,
    pub opsworks: OpsworksSettings,
    /// Sorted by name.
    pub rules: Vec<Rule>,
    pub actions: BTreeMap<String, ActionSpec>,
}

impl Config {
    /// Does any URL this configuration makes the HTTP client fetch use `https`? Then the
    /// machine's CA store is needed at start ([`crate::checks::http_client`]). `[egress]`
    /// counts only when a `claim_eip` action verifies egress through it. The AWS SDK has
    /// its own TLS set-up and is not counted here.
    pub fn needs_tls(&self) -> bool {
        let https = |u: &Url| u.scheme() == "https";
        let probe = |h: &HaproxyProbeSpec| h.health_url.as_ref().is_some_and(https);
        let claims = self
            .actions
            .values()
            .any(|a| matches!(a, ActionSpec::ClaimEip(_)));
        let reach = self.actions.values().any(|a| {
            a.reachability().is_some_and(|r| {
                r.targets
                    .iter()
                    .any(|t| matches!(t, ReachTarget::Http(u) if https(u)))
            })
        });
        reach
            || (claims && (https(&self.egress.checkip_url) || probe(&self.haproxy)))
            || self.rules.iter().any(|r| match &r.check {
                CheckSpec::Http(h) => https(&h.url),
                CheckSpec::Haproxy(h) => probe(h),
                CheckSpec::Egress(e) => https(&e.checkip_url),
                CheckSpec::Tcp(_)
                | CheckSpec::Program(_)
                | CheckSpec::Process(_)
                | CheckSpec::File(_) => false,
                CheckSpec::BackendSync(b) => {
                    matches!(&b.source, SourceSpec::Consul(c) if https(&c.address))
                }
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub connect_timeout: Duration,
    pub attempt_timeout: Duration,
    pub operation_timeout: Duration,
    pub max_attempts: u32,
}

#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub instance_id: Option<String>,
    pub network_interface_id: Option<String>,
    pub private_ip: Option<Ipv4Addr>,
    pub imds_endpoint: Option<String>,
    pub imds_timeout: Duration,
    /// None: no flag file is looked at.
    pub maintenance_file: Option<PathBuf>,
    /// The subnet of this node's ENI, when `[node]` says: `validate` then refuses a
    /// `claim_private_ip` outside it. Claims read it from EC2 either way.
    pub subnet_cidr: Option<ipnet::Ipv4Net>,
    /// The VPC's IPv4 CIDR blocks, when `[node]` says: `validate` then refuses a
    /// `claim_route` destination inside them. Claims read them from EC2 either way.
    pub vpc_cidrs: Vec<ipnet::Ipv4Net>,
}

/// `[opsworks]`: used only by claims with `provider = "opsworks"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpsworksSettings {
    /// Region of the OpsWorks Stacks API endpoint.
    pub region: String,
    /// None: read from `agent_config` when first needed.
    pub instance_id: Option<String>,
    pub agent_config: PathBuf,
    pub endpoint_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct EgressSettings {
    pub checkip_url: Url,
    pub timeout: Duration,
}

/// How to tell that a HAProxy is ready: every configured probe must pass.
#[derive(Debug, Clone)]
pub struct HaproxyProbeSpec {
    pub stats_socket: Option<PathBuf>,
    pub health_url: Option<Url>,
    /// Through the stats socket: this frontend must be OPEN.
    pub frontend: Option<String>,
    /// Through the stats socket: this backend must be UP (at least one server up).
    pub backend: Option<String>,
    pub timeout: Duration,
    /// Only with `backend`: the fewest servers UP, as a count and as a share of those not
    /// in maintenance. Each set one must hold.
    pub min_up: Option<u32>,
    pub min_up_ratio: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlSettings {
    /// None: no control socket.
    pub socket: Option<PathBuf>,
    /// None: no metrics endpoint.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Entries of the failover history kept in the state directory.
    pub history: usize,
}

#[derive(Debug, Clone)]
pub struct AlertSettings {
    pub sns_topic_arn: Option<String>,
    pub subject_prefix: String,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub file: PathBuf,
    pub interval: Duration,
    pub timeout: Duration,
    /// Between the starts of two cycles while the rule is changing state (see
    /// [`crate::engine::RuleRunner::next_period`]); None: always `interval`.
    pub fast_interval: Option<Duration>,
    pub fail_after: u32,
    pub recover_after: u32,
    pub check: CheckSpec,
    pub on_fail: Vec<String>,
    pub on_recover: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum CheckSpec {
    Http(HttpCheckSpec),
    Haproxy(HaproxyProbeSpec),
    Egress(EgressCheckSpec),
    Tcp(TcpCheckSpec),
    Program(ProgramCheckSpec),
    Process(ProcessCheckSpec),
    File(FileCheckSpec),
    /// Boxed: a backend sync's settings are several times the size of a check's.
    BackendSync(Box<BackendSyncSpec>),
}

/// `type = "tcp"`: a connection to `host`:`port` opens and, if asked, answers `expect`.
#[derive(Debug, Clone)]
pub struct TcpCheckSpec {
    /// An IP address or a DNS name, resolved on every check.
    pub host: String,
    pub port: u16,
    /// Written once connected.
    pub send: Option<String>,
    /// Looked for in the answer's first bytes.
    pub expect: Option<String>,
    /// The rule's `timeout`: the probe ends itself just before it, to say what it was
    /// waiting for.
    pub timeout: Duration,
}

/// `type = "program"`: a program's exit status.
#[derive(Debug, Clone)]
pub struct ProgramCheckSpec {
    /// The rule's name, given to the program as `WATCHDOG_RULE`.
    pub rule: String,
    /// Absolute path of the program, then its arguments.
    pub command: Vec<String>,
    /// Exit statuses that pass.
    pub expect_exit: Vec<i32>,
    /// The rule's `timeout`: the program's process group is killed just before it.
    pub timeout: Duration,
}

/// `type = "process"`: a process runs. At least one of the two is set.
#[derive(Debug, Clone)]
pub struct ProcessCheckSpec {
    pub pidfile: Option<PathBuf>,
    /// The command name the process must have.
    pub name: Option<String>,
}

/// `type = "file"`: a path exists (and is fresh), or does not.
#[derive(Debug, Clone)]
pub struct FileCheckSpec {
    pub path: PathBuf,
    pub exists: bool,
    /// Only with `exists`: the longest time since the last modification.
    pub max_age: Option<Duration>,
}

impl CheckSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            CheckSpec::Http(_) => "http",
            CheckSpec::Haproxy(_) => "haproxy",
            CheckSpec::Egress(_) => "egress",
            CheckSpec::Tcp(_) => "tcp",
            CheckSpec::Program(_) => "program",
            CheckSpec::Process(_) => "process",
            CheckSpec::File(_) => "file",
            CheckSpec::BackendSync(_) => "backend_sync",
        }
    }
}

/// `type = "backend_sync"`: keep the servers of a HAProxy backend equal to what a discovery
/// source lists. See docs/backend-sync.md.
#[derive(Debug, Clone)]
pub struct BackendSyncSpec {
    pub source: SourceSpec,
    /// The backend kept (`runtime`, `reload`), or the `peers` section (`peers`).
    pub backend: String,
    /// None: the port each Consul service instance registered (`asg` requires a port).
    pub port: Option<u16>,
    pub apply: ApplyMode,
    pub stats_socket: PathBuf,
    /// The file kept consistent with the runtime state (`runtime`), or rendered (`reload`).
    pub haproxy_config: PathBuf,
    /// Slot and server names start with this (default: the backend's name).
    pub server_prefix: String,
    /// Written after the address on each server line: `check inter 2s`.
    pub server_options: String,
    /// Slots written when the managed block is (re)written; grown when they run out.
    pub slots: u32,
    /// Fewer servers than this from the source is treated as a bad answer.
    pub min_servers: u32,
    /// An empty answer empties the backend (otherwise it is treated as a bad answer).
    pub allow_empty: bool,
    pub haproxy_bin: PathBuf,
    pub reload: ReloadSpec,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyMode {
    /// Pre-allocated slots driven through the stats socket; the config file's managed block
    /// is rewritten to match; one reload only to grow the slots.
    Runtime,
    /// Render `template` into `haproxy_config`, check it, reload.
    Reload { template: PathBuf },
    /// Keep the managed block of the `peers` section named `backend` equal to the group
    /// (one `peer <instance-id> <ip>:<port>` line each), and reload when it changes.
    Peers,
}

#[derive(Debug, Clone)]
pub enum SourceSpec {
    Asg(AsgSourceSpec),
    Consul(ConsulSourceSpec),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsgSourceSpec {
    pub group: String,
    /// SQS queue URL fed by an EventBridge rule; None: poll every `interval`.
    pub events_queue: Option<String>,
    /// The `autoscaling:EC2_INSTANCE_TERMINATING` hook whose actions this node completes
    /// once the server has drained. None: drain, remove, complete nothing.
    pub lifecycle_hook: Option<String>,
    /// The longest a terminating instance's server drains before it is taken out anyway.
    pub drain_timeout: Duration,
    /// Send RecordLifecycleActionHeartbeat this often while draining (None: never).
    pub heartbeat_interval: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct ConsulSourceSpec {
    pub address: Url,
    pub service: String,
    pub datacenter: Option<String>,
    pub tags: Vec<String>,
    pub passing_only: bool,
    pub token: Option<TokenSource>,
}

/// Where a secret comes from; the secret itself never sits in the config model.
#[derive(Debug, Clone)]
pub enum TokenSource {
    File(PathBuf),
    Env(String),
}

#[derive(Debug, Clone)]
pub struct ReloadSpec {
    pub method: ReloadMethod,
    /// At most one reload per window; changes within it are folded into the next.
    pub window: Duration,
    /// The longest a reload may take until HAProxy shows it done (and, after it, until the
    /// stats socket shows the wanted servers).
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReloadMethod {
    /// HAProxy's master CLI (master-worker mode, `-S`): send `reload`.
    MasterSocket(PathBuf),
    /// A command such as `systemctl reload haproxy`.
    Command(Vec<String>),
}

/// Passes while checkip says this node's traffic leaves from `expect`: on AWS, exactly while
/// that Elastic IP is on this node's primary private IP. With a `claim_eip` of the same EIP
/// in `on_fail`, that is failback to the home node, with no AWS call in steady state.
#[derive(Debug, Clone)]
pub struct EgressCheckSpec {
    pub expect: Ipv4Addr,
    pub checkip_url: Url,
}

#[derive(Debug, Clone)]
pub struct HttpCheckSpec {
    pub url: Url,
    pub method: reqwest::Method,
    pub expect_status: StatusSet,
    pub body_contains: Option<String>,
    pub host: Option<String>,
    /// The rule's `timeout`: a plain `http` check's connect budget, shared between the
    /// addresses of a name, is no longer than it, so each address gets its turn before the
    /// rule gives up on the check.
    pub timeout: Duration,
    /// `keep_alive`: how long a connection may serve this rule's checks after it was opened;
    /// None: a new connection for every check.
    pub keep_alive: Option<Duration>,
}

/// The HTTP statuses a check accepts. Default: 200-399, like monit's `protocol HTTP`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusSet(pub Vec<std::ops::RangeInclusive<u16>>);

impl StatusSet {
    pub fn default_ok() -> Self {
        StatusSet(vec![defaults::EXPECT_STATUS])
    }
    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|r| r.contains(&status))
    }
}

impl std::fmt::Display for StatusSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|r| {
                if r.start() == r.end() {
                    r.start().to_string()
                } else {
                    format!("{}-{}", r.start(), r.end())
                }
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[derive(Debug, Clone)]
pub enum ActionSpec {
    ClaimEip(ClaimEipSpec),
    ClaimPrivateIp(ClaimPrivateIpSpec),
    ClaimRoute(ClaimRouteSpec),
    ClaimGroup(ClaimGroupSpec),
    Sns(SnsSpec),
    Exec(ExecSpec),
}

/// Run a program when a rule flips. It gets the event in its environment: `WATCHDOG_RULE`,
/// `WATCHDOG_EVENT` (failed/recovered), `WATCHDOG_DETAIL`, `WATCHDOG_CONSECUTIVE`.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    pub name: String,
    /// Absolute path of the program, then its arguments.
    pub command: Vec<String>,
    pub timeout: Duration,
}

impl ActionSpec {
    /// Whether this action moves an address (`claim_eip`, `claim_private_ip`,
    /// `claim_route`): such actions run only when a rule fails, and take part in
    /// `watchdog takeover` and `drill`.
    pub fn is_claim(&self) -> bool {
        matches!(
            self,
            ActionSpec::ClaimEip(_)
                | ActionSpec::ClaimPrivateIp(_)
                | ActionSpec::ClaimRoute(_)
                | ActionSpec::ClaimGroup(_)
        )
    }

    /// The reachability probe of a private claim (`claim_private_ip`, `claim_route`).
    pub fn reachability(&self) -> Option<&ReachSpec> {
        match self {
            ActionSpec::ClaimPrivateIp(c) => Some(&c.reachability),
            ActionSpec::ClaimRoute(c) => Some(&c.reachability),
            _ => None,
        }
    }
}

/// The address a claim moves: the key of its hold-down and of its saved claim.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddressRef {
    /// An Elastic IP (`claim_eip`).
    Eip(EipRef),
    /// A secondary private IPv4 address that any ENI of one subnet may hold
    /// (`claim_private_ip`).
    SecondaryIp(Ipv4Addr),
    /// An overlay IPv4 address outside the VPC's CIDRs, reached through a `/32` route in
    /// route tables (`claim_route`).
    Overlay(Ipv4Addr),
}

impl AddressRef {
    /// What the address is, for alerts: "Elastic IP", "private IP", "overlay IP".
    pub fn noun(&self) -> &'static str {
        match self {
            AddressRef::Eip(_) => "Elastic IP",
            AddressRef::SecondaryIp(_) => "private IP",
            AddressRef::Overlay(_) => "overlay IP",
        }
    }

    /// The key the state file keeps its hold-down and pending claim under. An Elastic IP's
    /// is its address or allocation id, as before private claims existed (state files stay
    /// readable); the others are prefixed, so no two kinds share a key.
    pub fn key(&self) -> String {
        match self {
            AddressRef::Eip(e) => e.to_string(),
            AddressRef::SecondaryIp(ip) => format!("private-ip:{ip}"),
            AddressRef::Overlay(ip) => format!("route:{ip}/32"),
        }
    }

    /// Whether only the VPC's clients reach it (`claim_private_ip`, `claim_route`): then
    /// checkip does not prove the path they use, and the claim's `reachability` does.
    pub fn is_private(&self) -> bool {
        !matches!(self, AddressRef::Eip(_))
    }
}

impl std::fmt::Display for AddressRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddressRef::Eip(e) => e.fmt(f),
            AddressRef::SecondaryIp(ip) | AddressRef::Overlay(ip) => ip.fmt(f),
        }
    }
}

/// One place a private claim must reach before it takes an address: proof that this node
/// is connected to the VPC, which checkip (the internet path) does not give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReachTarget {
    /// `host:port`: a TCP connection must be accepted.
    Tcp(std::net::SocketAddr),
    /// An `http://` or `https://` URL: any HTTP answer counts (the status does not matter;
    /// the point is the path, not the service's health).
    Http(Url),
}

impl std::fmt::Display for ReachTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReachTarget::Tcp(a) => a.fmt(f),
            ReachTarget::Http(u) => u.as_str().fmt(f),
        }
    }
}

/// `reachability` and `reachability_timeout` of a private claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReachSpec {
    /// Tried together; one answer is enough. Never empty.
    pub targets: Vec<ReachTarget>,
    /// Per target.
    pub timeout: Duration,
}

/// `type = "claim_private_ip"`: move a secondary private IP onto this node's ENI
/// (`AssignPrivateIpAddresses` with `AllowReassignment=true`) and add it to a local
/// interface.
#[derive(Debug, Clone)]
pub struct ClaimPrivateIpSpec {
    pub name: String,
    /// The secondary private IP.
    pub private_ip: Ipv4Addr,
    /// The local interface the address is added to; None: the one that carries this
    /// node's private IP.
    pub interface: Option<String>,
    pub reachability: ReachSpec,
    pub hold_down: Duration,
    pub sns_topic_arn: Option<String>,
    /// How often the holder is read to keep the local address in step with EC2.
    pub owner_poll: Duration,
}

/// `type = "claim_route"`: route an overlay IP to this node's ENI in every listed route
/// table (`ReplaceRoute`, or `CreateRoute` where the route is missing) and add it locally.
#[derive(Debug, Clone)]
pub struct ClaimRouteSpec {
    pub name: String,
    /// The overlay IP; the route is its `/32`.
    pub destination: Ipv4Addr,
    /// `rtb-...`, at least one, no repeats, in the order given.
    pub route_table_ids: Vec<String>,
    /// The local interface the address is added to (as a `/32`).
    pub interface: String,
    pub reachability: ReachSpec,
    pub hold_down: Duration,
    pub sns_topic_arn: Option<String>,
    pub owner_poll: Duration,
}

/// `type = "claim_group"`: its members' gates run once for the whole group, then each
/// member moves; one alert names them all.
#[derive(Debug, Clone)]
pub struct ClaimGroupSpec {
    pub name: String,
    /// Claim actions, at least two, in the configured order.
    pub members: Vec<String>,
    pub sns_topic_arn: Option<String>,
}

/// Which Elastic IP: by public address or by allocation id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EipRef {
    PublicIp(Ipv4Addr),
    AllocationId(String),
}

impl std::fmt::Display for EipRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EipRef::PublicIp(ip) => write!(f, "{ip}"),
            EipRef::AllocationId(id) => f.write_str(id),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimProvider {
    /// EC2 AssociateAddress onto this node's ENI and private IP (the default).
    Ec2,
    /// OpsWorks Stacks AssociateElasticIp onto this node's OpsWorks instance.
    OpsWorks,
}

impl ClaimProvider {
    pub fn name(self) -> &'static str {
        match self {
            ClaimProvider::Ec2 => "ec2",
            ClaimProvider::OpsWorks => "opsworks",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClaimEipSpec {
    pub name: String,
    pub eip: EipRef,
    pub provider: ClaimProvider,
    /// On this node's ENI (`[node]` or instance metadata). Default: the ENI's primary private
    /// IP; set a secondary private IP for active/active pairs.
    pub private_ip: Option<Ipv4Addr>,
    pub hold_down: Duration,
    /// Default: `[alerts] sns_topic_arn`; one of the two is required.
    pub sns_topic_arn: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SnsSpec {
    pub name: String,
    pub topic_arn: String,
    pub subject: Option<String>,
    pub message: Option<String>,
}
