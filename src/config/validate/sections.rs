//! The global sections: `[aws]`, `[node]`, `[egress]`, `[alerts]`, `[control]`, `[opsworks]`
//! (`[haproxy]` shares its validation with the `haproxy` check, in `checks/haproxy.rs`).
//! A section left out is its `Default`, from [`defaults`](super::super::defaults).

use super::super::defaults::{self, limits};
use super::super::model::*;
use super::super::raw::*;
use super::super::{Errors, Located};
use super::ctx::{optional, Ctx};

pub(super) fn aws(raw: Option<&Located<RawAws>>, errs: &mut Errors) -> Option<AwsSettings> {
    let Some(Located { file, value: r, .. }) = raw else {
        return Some(AwsSettings::default());
    };
    let mut cx = Ctx::new(file, "[aws]", errs);
    let endpoint_url = optional(r.endpoint_url.as_deref(), |s| {
        cx.url(s, "endpoint_url").map(|u| u.to_string())
    });
    let max_attempts = r.max_attempts.unwrap_or(defaults::AWS_MAX_ATTEMPTS);
    if !limits::AWS_MAX_ATTEMPTS.contains(&max_attempts) {
        cx.err(format!(
            "`max_attempts` must be between {} and {}",
            limits::AWS_MAX_ATTEMPTS.start(),
            limits::AWS_MAX_ATTEMPTS.end()
        ));
    }
    let region = optional(r.region.as_deref(), |s| cx.region(s));
    let mut timeout = |v: &Option<HumanDuration>, default, what| {
        cx.duration(v.as_deref(), default, limits::AWS_TIMEOUT, what)
    };
    let connect_timeout = timeout(
        &r.connect_timeout,
        defaults::AWS_CONNECT_TIMEOUT,
        "connect_timeout",
    );
    let attempt_timeout = timeout(
        &r.attempt_timeout,
        defaults::AWS_ATTEMPT_TIMEOUT,
        "attempt_timeout",
    );
    let operation_timeout = timeout(
        &r.operation_timeout,
        defaults::AWS_OPERATION_TIMEOUT,
        "operation_timeout",
    );
    if let (Some(attempt), Some(operation)) = (attempt_timeout, operation_timeout) {
        if attempt > operation {
            cx.err("`attempt_timeout` must not exceed `operation_timeout`");
        }
    }
    cx.finish(|| {
        Some(AwsSettings {
            region: region?,
            endpoint_url: endpoint_url?,
            connect_timeout: connect_timeout?,
            attempt_timeout: attempt_timeout?,
            operation_timeout: operation_timeout?,
            max_attempts,
        })
    })
}

pub(super) fn node(raw: Option<&Located<RawNode>>, errs: &mut Errors) -> Option<NodeSettings> {
    let Some(Located { file, value: r, .. }) = raw else {
        return Some(NodeSettings::default());
    };
    let mut cx = Ctx::new(file, "[node]", errs);
    let instance_id = optional(r.instance_id.as_deref(), |s| {
        cx.prefixed_id(s, "i-", "instance_id")
    });
    let network_interface_id = optional(r.network_interface_id.as_deref(), |s| {
        cx.prefixed_id(s, "eni-", "network_interface_id")
    });
    let private_ip = optional(r.private_ip.as_deref(), |s| cx.ipv4(s, "private_ip"));
    let imds_endpoint = optional(r.imds_endpoint.as_deref(), |s| {
        cx.url(s, "imds_endpoint").map(|u| u.to_string())
    });
    let imds_timeout = cx.duration(
        r.imds_timeout.as_deref(),
        defaults::IMDS_TIMEOUT,
        limits::SHORT_TIMEOUT,
        "imds_timeout",
    );
    let maintenance_file = match &r.maintenance_file {
        Some(p) if p.as_os_str().is_empty() => Some(None),
        Some(p) => cx.absolute(p, "maintenance_file").map(Some),
        None => Some(NodeSettings::default().maintenance_file),
    };
    let subnet_cidr = optional(r.subnet_cidr.as_deref(), |s| cx.cidr(s, "subnet_cidr"));
    let vpc_cidrs: Option<Vec<_>> = match &r.vpc_cidrs {
        None => Some(Vec::new()),
        Some(v) => {
            let all: Vec<_> = v.iter().map(|s| cx.cidr(s, "vpc_cidrs")).collect();
            all.into_iter().collect()
        }
    };
    cx.finish(|| {
        Some(NodeSettings {
            subnet_cidr: subnet_cidr?,
            vpc_cidrs: vpc_cidrs?,
            instance_id: instance_id?,
            network_interface_id: network_interface_id?,
            private_ip: private_ip?,
            imds_endpoint: imds_endpoint?,
            imds_timeout: imds_timeout?,
            maintenance_file: maintenance_file?,
        })
    })
}

pub(super) fn egress(
    raw: Option<&Located<RawEgress>>,
    errs: &mut Errors,
) -> Option<EgressSettings> {
    let Some(Located { file, value: r, .. }) = raw else {
        return Some(EgressSettings::default());
    };
    let mut cx = Ctx::new(file, "[egress]", errs);
    let checkip_url = match &r.checkip_url {
        Some(s) => cx.url(s, "checkip_url"),
        None => Some(defaults::checkip_url()),
    };
    let timeout = cx.duration(
        r.timeout.as_deref(),
        defaults::EGRESS_TIMEOUT,
        limits::SHORT_TIMEOUT,
        "timeout",
    );
    cx.finish(|| {
        Some(EgressSettings {
            checkip_url: checkip_url?,
            timeout: timeout?,
        })
    })
}

pub(super) fn control(
    raw: Option<&Located<RawControl>>,
    errs: &mut Errors,
) -> Option<ControlSettings> {
    let Some(Located { file, value: r, .. }) = raw else {
        return Some(ControlSettings::default());
    };
    let mut cx = Ctx::new(file, "[control]", errs);
    let socket = match &r.socket {
        Some(p) if p.as_os_str().is_empty() => Some(None),
        Some(p) if p.is_relative() => cx.fail(format!(
            "`socket` = {:?}: use an absolute path (or \"\" for none)",
            p.display().to_string()
        )),
        Some(p) => Some(Some(p.clone())),
        None => Some(ControlSettings::default().socket),
    };
    let metrics_listen = optional(r.metrics_listen.as_deref(), |a| {
        a.parse::<std::net::SocketAddr>().ok().or_else(|| {
            cx.fail(format!(
                "`metrics_listen` = {a:?}: not an address like \"127.0.0.1:9106\""
            ))
        })
    });
    let history = match r.history {
        None => Some(defaults::HISTORY),
        Some(n) if (1..=defaults::HISTORY_MAX as i64).contains(&n) => Some(n as usize),
        Some(n) => cx.fail(format!(
            "`history` = {n}: keep 1 to {} entries",
            defaults::HISTORY_MAX
        )),
    };
    cx.finish(|| {
        Some(ControlSettings {
            socket: socket?,
            metrics_listen: metrics_listen?,
            history: history?,
        })
    })
}

pub(super) fn opsworks(
    raw: Option<&Located<RawOpsworks>>,
    errs: &mut Errors,
) -> Option<OpsworksSettings> {
    let Some(Located { file, value: r, .. }) = raw else {
        return Some(OpsworksSettings::default());
    };
    let mut cx = Ctx::new(file, "[opsworks]", errs);
    let region = optional(r.region.as_deref(), |s| cx.region(s));
    if let Some(id) = &r.instance_id {
        if !is_opsworks_id(id) {
            cx.err(format!(
                "`instance_id` = {id:?}: not an OpsWorks instance id (a UUID like \"4d6d1710-ded9-42a1-b08e-b043ad7af1e2\"; the EC2 i-... id is not accepted by OpsWorks)"
            ));
        }
    }
    if let Some(p) = &r.agent_config {
        if p.is_relative() {
            cx.err(format!(
                "`agent_config` = {:?}: use an absolute path",
                p.display().to_string()
            ));
        }
    }
    let endpoint_url = optional(r.endpoint_url.as_deref(), |u| {
        cx.url(u, "endpoint_url").map(|u| u.to_string())
    });
    cx.finish(|| {
        let default = OpsworksSettings::default();
        Some(OpsworksSettings {
            region: region?.unwrap_or(default.region),
            instance_id: r.instance_id.clone(),
            agent_config: r.agent_config.clone().unwrap_or(default.agent_config),
            endpoint_url: endpoint_url?,
        })
    })
}

/// OpsWorks ids are lowercase UUIDs: 8-4-4-4-12 hex digits.
pub fn is_opsworks_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

pub(super) fn alerts(raw: Option<&Located<RawAlerts>>, errs: &mut Errors) -> Option<AlertSettings> {
    let Some(Located { file, value: r, .. }) = raw else {
        return Some(AlertSettings::default());
    };
    let mut cx = Ctx::new(file, "[alerts]", errs);
    let sns_topic_arn = optional(r.sns_topic_arn.as_deref(), |s| cx.arn(s, "sns_topic_arn"));
    cx.finish(|| {
        Some(AlertSettings {
            sns_topic_arn: sns_topic_arn?,
            subject_prefix: r
                .subject_prefix
                .clone()
                .unwrap_or_else(|| AlertSettings::default().subject_prefix),
        })
    })
}
