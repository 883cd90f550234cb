//! Every default of the configuration, named once. Validation fills in unset keys from
//! here; the docs (README, `packaging/watchdog.toml`, the `conf.d/` examples) quote these
//! values.

use super::model::{
    AlertSettings, AwsSettings, ControlSettings, EgressSettings, HaproxyProbeSpec, NodeSettings,
    OpsworksSettings,
};
use std::ops::RangeInclusive;
use std::time::Duration;

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
