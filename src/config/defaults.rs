//! Every default of the configuration, and every range a setting must fall in, named once.
//! Validation fills in unset keys from here; the docs (README, `packaging/watchdog.toml`,
//! the `conf.d/` examples) quote these values.

use super::model::{
    AlertSettings, AwsSettings, ControlSettings, EgressSettings, HaproxyProbeSpec, NodeSettings,
    OpsworksSettings,
};
use std::ops::RangeInclusive;
use std::time::Duration;

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub const CONFIG_PATH: &str = "/etc/haproxy-watchdog/watchdog.toml";
pub const STATE_DIR: &str = "/var/lib/haproxy-watchdog";

// Rules.
pub const INTERVAL: Duration = secs(10);
pub const TIMEOUT: Duration = secs(5);
pub const FAIL_AFTER: u32 = 3;
pub const RECOVER_AFTER: u32 = 2;

// `type = "http"` checks.
pub const HTTP_METHOD: reqwest::Method = reqwest::Method::GET;
/// Accepted statuses unless `expect_status` says otherwise, like monit's `protocol HTTP`.
pub const EXPECT_STATUS: RangeInclusive<u16> = 200..=399;

// `[egress]`.
pub const CHECKIP_URL: &str = "https://checkip.amazonaws.com";
pub const EGRESS_TIMEOUT: Duration = secs(3);

// `[haproxy]` and `type = "haproxy"`.
pub const HAPROXY_SOCKET: &str = "/run/haproxy/admin.sock";
pub const HAPROXY_TIMEOUT: Duration = secs(2);

// `type = "claim_eip"`.
pub const HOLD_DOWN: Duration = secs(300);
/// A private claim's `reachability_timeout`.
pub const REACHABILITY_TIMEOUT: Duration = secs(2);
/// A private claim's `owner_poll`.
pub const OWNER_POLL: Duration = secs(10);
/// `claim_route`'s `interface`.
pub const OVERLAY_INTERFACE: &str = "lo";

// `[aws]`.
pub const AWS_CONNECT_TIMEOUT: Duration = secs(3);
pub const AWS_ATTEMPT_TIMEOUT: Duration = secs(5);
pub const AWS_OPERATION_TIMEOUT: Duration = secs(20);
pub const AWS_MAX_ATTEMPTS: u32 = 4;

// `[node]`.
pub const IMDS_TIMEOUT: Duration = secs(2);

// `[alerts]`.
pub const SUBJECT_PREFIX: &str = "HAProxy failover";

// `[control]`.
/// `[node] maintenance_file`: present means paused.
pub const MAINTENANCE_FILE: &str = "/etc/haproxy-watchdog/maintenance";
/// `[control] history`: entries of the failover history kept.
pub const HISTORY: usize = 100;
/// `[control] history`: at most this many entries.
pub const HISTORY_MAX: usize = 10_000;
pub const CONTROL_SOCKET: &str = "/run/haproxy-watchdog/control.sock";

// `type = "exec"`.
pub const EXEC_TIMEOUT: Duration = secs(30);

// `[opsworks]`.
/// OpsWorks Stacks served every stack's API from us-east-1; regional endpoints came later.
pub const OPSWORKS_REGION: &str = "us-east-1";
pub const OPSWORKS_AGENT_CONFIG: &str = "/etc/aws/opsworks/instance-agent.yml";

// `type = "backend_sync"`.
pub const SYNC_INTERVAL_ASG: Duration = secs(30);
pub const SYNC_INTERVAL_CONSUL: Duration = secs(60);
/// With an events queue, `interval` is the full resync from the Auto Scaling API.
pub const SYNC_RESYNC_EVENTS: Duration = secs(300);
pub const DRAIN_TIMEOUT: Duration = secs(300);
pub const HAPROXY_CONFIG: &str = "/etc/haproxy/haproxy.cfg";
pub const HAPROXY_BIN: &str = "haproxy";
pub const MASTER_SOCKET: &str = "/run/haproxy-master.sock";
pub const CONSUL_ADDRESS: &str = "http://127.0.0.1:8500";
pub const CONSUL_PASSING_ONLY: bool = true;
pub const SERVER_OPTIONS: &str = "check";
pub const SLOTS: u32 = 10;
pub const MIN_SERVERS: u32 = 1;
pub const ALLOW_EMPTY: bool = false;
pub const RELOAD_WINDOW: Duration = secs(5);
pub const RELOAD_TIMEOUT: Duration = secs(30);

/// The sections as they are when a file leaves them out. `impl Default` of each is these.
impl Default for AwsSettings {
    fn default() -> Self {
        AwsSettings {
            region: None,
            endpoint_url: None,
            connect_timeout: AWS_CONNECT_TIMEOUT,
            attempt_timeout: AWS_ATTEMPT_TIMEOUT,
            operation_timeout: AWS_OPERATION_TIMEOUT,
            max_attempts: AWS_MAX_ATTEMPTS,
        }
    }
}

impl Default for NodeSettings {
    fn default() -> Self {
        NodeSettings {
            instance_id: None,
            network_interface_id: None,
            private_ip: None,
            imds_endpoint: None,
            imds_timeout: IMDS_TIMEOUT,
            maintenance_file: Some(MAINTENANCE_FILE.into()),
            subnet_cidr: None,
            vpc_cidrs: Vec::new(),
        }
    }
}

impl Default for EgressSettings {
    fn default() -> Self {
        EgressSettings {
            checkip_url: checkip_url(),
            timeout: EGRESS_TIMEOUT,
        }
    }
}

/// [`CHECKIP_URL`], parsed.
pub fn checkip_url() -> reqwest::Url {
    reqwest::Url::parse(CHECKIP_URL).expect("CHECKIP_URL is a valid URL")
}

impl Default for HaproxyProbeSpec {
    fn default() -> Self {
        HaproxyProbeSpec {
            stats_socket: Some(HAPROXY_SOCKET.into()),
            health_url: None,
            frontend: None,
            backend: None,
            timeout: HAPROXY_TIMEOUT,
            min_up: None,
            min_up_ratio: None,
        }
    }
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            sns_topic_arn: None,
            subject_prefix: SUBJECT_PREFIX.into(),
        }
    }
}

impl Default for ControlSettings {
    fn default() -> Self {
        ControlSettings {
            socket: Some(CONTROL_SOCKET.into()),
            metrics_listen: None,
            history: HISTORY,
        }
    }
}

impl Default for OpsworksSettings {
    fn default() -> Self {
        OpsworksSettings {
            region: OPSWORKS_REGION.into(),
            instance_id: None,
            agent_config: OPSWORKS_AGENT_CONFIG.into(),
            endpoint_url: None,
        }
    }
}

/// The allowed range of each setting, inclusive; validation quotes them in its messages.
pub mod limits {
    use super::{ms, secs};
    use std::ops::RangeInclusive;
    use std::time::Duration;

    /// Allowed range of a duration setting.
    pub type Durations = RangeInclusive<Duration>;

    pub const INTERVAL: Durations = ms(100)..=secs(3600);
    /// A rule's `timeout`, an exec's `timeout`, `check.reload.timeout`.
    pub const CHECK_TIMEOUT: Durations = ms(10)..=secs(300);
    /// `[egress]`, `[haproxy]` and `[node]` timeouts.
    pub const SHORT_TIMEOUT: Durations = ms(10)..=secs(60);
    pub const AWS_TIMEOUT: Durations = ms(100)..=secs(600);
    pub const HOLD_DOWN: Durations = secs(1)..=secs(86400);
    pub const OWNER_POLL: Durations = secs(1)..=secs(3600);
    pub const RELOAD_WINDOW: Durations = ms(100)..=secs(600);
    pub const DRAIN_TIMEOUT: Durations = ms(100)..=secs(7200);
    /// Auto Scaling's shortest heartbeat timeout is 30 s.
    pub const HEARTBEAT: Durations = secs(1)..=secs(3600);
    /// An `http` check's `keep_alive` (it must also exceed the rule's `interval`).
    pub const KEEP_ALIVE: Durations = ms(100)..=secs(3600);
    /// A `file` check's `max_age`.
    pub const MAX_AGE: Durations = secs(1)..=secs(30 * 86400);

    pub const AWS_MAX_ATTEMPTS: RangeInclusive<u32> = 1..=10;
    /// `fail_after` and `recover_after`, in cycles.
    pub const CYCLES: RangeInclusive<i64> = 1..=1000;
    pub const PORT: RangeInclusive<i64> = 1..=65535;
    pub const HTTP_STATUS: RangeInclusive<i64> = 100..=599;
    /// `check.slots` and `check.min_servers` at most (their lower bounds differ).
    pub const SERVERS_MAX: i64 = 10_000;
    /// Auto Scaling group and lifecycle hook names, in characters.
    pub const ASG_NAME_LEN: RangeInclusive<usize> = 1..=255;
    /// HAProxy proxy and server names, in characters.
    pub const HAPROXY_IDENT_LEN: RangeInclusive<usize> = 1..=100;
    pub const SERVER_PREFIX_MAX_LEN: usize = 60;
    /// SNS message subjects, in characters.
    pub const SNS_SUBJECT_MAX_LEN: usize = 100;
    /// Rule and action names, in characters.
    pub const NAME_LEN: RangeInclusive<usize> = 1..=64;
}
