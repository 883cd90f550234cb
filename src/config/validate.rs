//! Raw shapes -> validated model. Every check pushes its error and carries on, so one run
//! of `watchdog validate` lists everything that is wrong.

use super::defaults;
use super::model::*;
use super::raw::*;
use super::{Errors, Located, Merged};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(super) fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err("names use 1 to 64 of the characters A-Z a-z 0-9 - _ .".into())
    }
}

pub(super) fn validate(m: Merged, errs: &mut Errors) -> Option<Config> {
    let aws = aws(m.aws.as_ref(), errs);
    let node = node(m.node.as_ref(), errs);
    let egress = egress(m.egress.as_ref(), errs);
    let haproxy = match &m.haproxy {
        Some(h) => haproxy_probe(&h.value, None, &h.file, "[haproxy]", errs),
        None => Some(default_haproxy()),
    };
    let alerts = alerts(m.alerts.as_ref(), errs);
    let control = control(m.control.as_ref(), errs);
    let opsworks = opsworks(m.opsworks.as_ref(), errs);

    let mut actions = BTreeMap::new();
    for (name, a) in &m.actions {
        if let Some(spec) = action(name, a, alerts.as_ref(), errs) {
            actions.insert(name.clone(), spec);
        }
    }

    let mut rules = Vec::new();
    for (name, r) in &m.rules {
        if let Some(rule) = rule(name, r, haproxy.as_ref(), egress.as_ref(), &m, errs) {
            rules.push(rule);
        }
    }

    cross_checks(&m, &actions, &rules, errs);
    if m.rules.is_empty() && errs.0.is_empty() {
        let file = m
            .sources
            .first()
            .map(|p| p.as_path())
            .unwrap_or(Path::new("?"));
        errs.push(
            file,
            None,
            "no rules defined: add [rules.NAME] tables (see conf.d/ examples)",
        );
    }

    Some(Config {
        sources: m.sources,
        aws: aws?,
        node: node?,
        egress: egress?,
        haproxy: haproxy?,
        alerts: alerts?,
        control: control?,
        opsworks: opsworks?,
        rules,
        actions,
    })
}

fn default_haproxy() -> HaproxyProbeSpec {
    HaproxyProbeSpec {
        stats_socket: Some(defaults::HAPROXY_SOCKET.into()),
        health_url: None,
        frontend: None,
        backend: None,
        timeout: defaults::HAPROXY_TIMEOUT,
    }
}

/// Allowed range of a duration setting.
#[derive(Clone, Copy)]
pub(super) struct Range(Duration, Duration);

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
const INTERVAL: Range = Range(ms(100), secs(3600));
const CHECK_TIMEOUT: Range = Range(ms(10), secs(300));
const SHORT_TIMEOUT: Range = Range(ms(10), secs(60));
const AWS_TIMEOUT: Range = Range(ms(100), secs(600));
const HOLD_DOWN: Range = Range(secs(1), secs(86400));

/// A human duration (`"10s"`, `"2m"`) within `range`; `default` when unset.
fn duration(
    d: &Option<HumanDuration>,
    default: Duration,
    range: Range,
    what: &str,
    file: &Path,
    item: &str,
    errs: &mut Errors,
) -> Option<Duration> {
    let Some(text) = d else { return Some(default) };
    let fmt = |d: Duration| humantime::format_duration(d).to_string();
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => {
            errs.push(
                file,
                Some(item),
                format!("`{what}` must be greater than zero"),
            );
            None
        }
        Ok(d) if d < range.0 || d > range.1 => {
            errs.push(
                file,
                Some(item),
                format!(
                    "`{what}` = {text:?}: must be between {} and {}",
                    fmt(range.0),
                    fmt(range.1)
                ),
            );
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            errs.push(file, Some(item), format!("`{what}` = {text:?}: not a duration ({e}); write it like \"10s\", \"2m\" or \"1h30m\""));
            None
        }
    }
}

/// A URL as it may appear in an error message: without a password in it.
fn redact(s: &str) -> String {
    match (s.find("://"), s.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &s[..scheme], &s[at + 1..])
        }
        _ => s.to_owned(),
    }
}

fn url(s: &str, what: &str, file: &Path, item: &str, errs: &mut Errors) -> Option<reqwest::Url> {
    match reqwest::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
        Ok(_) => {
            errs.push(
                file,
                Some(item),
                format!(
                    "`{what}` = {:?}: must be an http:// or https:// URL with a host",
                    redact(s)
                ),
            );
            None
        }
        Err(e) => {
            errs.push(
                file,
                Some(item),
                format!("`{what}` = {:?}: not a URL ({e})", redact(s)),
            );
            None
        }
    }
}

fn ipv4(s: &str, what: &str, file: &Path, item: &str, errs: &mut Errors) -> Option<Ipv4Addr> {
    match s.parse::<Ipv4Addr>() {
        Ok(ip) => Some(ip),
        Err(_) => {
            errs.push(
                file,
                Some(item),
                format!("`{what}` = {s:?}: not an IPv4 address"),
            );
            None
        }
    }
}

fn arn(s: &str, what: &str, file: &Path, item: &str, errs: &mut Errors) -> Option<String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() >= 6 && parts[0] == "arn" && parts[2] == "sns" {
        Some(s.to_owned())
    } else {
        errs.push(
            file,
            Some(item),
            format!("`{what}` = {s:?}: not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"),
        );
        None
    }
}

fn prefixed_id(
    s: &str,
    prefix: &str,
    what: &str,
    file: &Path,
    item: &str,
    errs: &mut Errors,
) -> Option<String> {
    let rest = s.strip_prefix(prefix).unwrap_or("");
    if !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric()) {
        Some(s.to_owned())
    } else {
        errs.push(
            file,
            Some(item),
            format!("`{what}` = {s:?}: expected an id like {prefix}0123456789abcdef0"),
        );
        None
    }
}

/// An AWS region name (`us-east-1`): a typo here would only show as failing calls.
fn region_name(s: &str, file: &Path, item: &str, errs: &mut Errors) -> Option<String> {
    let ok = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        errs.push(
            file,
            Some(item),
            format!("`region` = {s:?}: not a region name like \"us-east-1\""),
        );
    }
    ok.then(|| s.to_owned())
}

fn aws(raw: Option<&Located<RawAws>>, errs: &mut Errors) -> Option<AwsSettings> {
    let Some(Located { file, value: r }) = raw else {
        return Some(AwsSettings {
            region: None,
            endpoint_url: None,
            connect_timeout: defaults::AWS_CONNECT_TIMEOUT,
            attempt_timeout: defaults::AWS_ATTEMPT_TIMEOUT,
            operation_timeout: defaults::AWS_OPERATION_TIMEOUT,
            max_attempts: defaults::AWS_MAX_ATTEMPTS,
        });
    };
    let item = "[aws]";
    // Every field is checked before any `?`: each bad one is reported in the same pass.
    let endpoint_url = r
        .endpoint_url
        .as_ref()
        .map(|s| url(s, "endpoint_url", file, item, errs).map(|u| u.to_string()));
    let max_attempts = r.max_attempts.unwrap_or(defaults::AWS_MAX_ATTEMPTS);
    if !(1..=10).contains(&max_attempts) {
        errs.push(file, Some(item), "`max_attempts` must be between 1 and 10");
    }
    let region = r
        .region
        .as_ref()
        .map(|reg| region_name(reg, file, item, errs));
    let mut timeout = |v: &Option<String>, default, name| {
        duration(v, default, AWS_TIMEOUT, name, file, item, errs)
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
    let s = AwsSettings {
        region: region.map_or(Some(None), |r| r.map(Some))?,
        endpoint_url: endpoint_url.map_or(Some(None), |u| u.map(Some))?,
        connect_timeout: connect_timeout?,
        attempt_timeout: attempt_timeout?,
        operation_timeout: operation_timeout?,
        max_attempts,
    };
    if s.attempt_timeout > s.operation_timeout {
        errs.push(
            file,
            Some(item),
            "`attempt_timeout` must not exceed `operation_timeout`",
        );
    }
    Some(s)
}

fn node(raw: Option<&Located<RawNode>>, errs: &mut Errors) -> Option<NodeSettings> {
    let Some(Located { file, value: r }) = raw else {
        return Some(NodeSettings {
            imds_timeout: defaults::IMDS_TIMEOUT,
            ..Default::default()
        });
    };
    let item = "[node]";
    let mut ok = true;
    let instance_id = r
        .instance_id
        .as_deref()
        .map(|s| prefixed_id(s, "i-", "instance_id", file, item, errs));
    let eni = r
        .network_interface_id
        .as_deref()
        .map(|s| prefixed_id(s, "eni-", "network_interface_id", file, item, errs));
    let ip = r
        .private_ip
        .as_deref()
        .map(|s| ipv4(s, "private_ip", file, item, errs));
    let endpoint = r
        .imds_endpoint
        .as_deref()
        .map(|s| url(s, "imds_endpoint", file, item, errs).map(|u| u.to_string()));
    for bad in [&instance_id, &eni, &endpoint] {
        ok &= !matches!(bad, Some(None));
    }
    ok &= !matches!(ip, Some(None));
    let imds_timeout = duration(
        &r.imds_timeout,
        defaults::IMDS_TIMEOUT,
        SHORT_TIMEOUT,
        "imds_timeout",
        file,
        item,
        errs,
    );
    if !ok {
        return None;
    }
    Some(NodeSettings {
        instance_id: instance_id.flatten(),
        network_interface_id: eni.flatten(),
        private_ip: ip.flatten(),
        imds_endpoint: endpoint.flatten(),
        imds_timeout: imds_timeout?,
    })
}

fn egress(raw: Option<&Located<RawEgress>>, errs: &mut Errors) -> Option<EgressSettings> {
    let default_url = || reqwest::Url::parse(defaults::CHECKIP_URL).ok();
    let Some(Located { file, value: r }) = raw else {
        return Some(EgressSettings {
            checkip_url: default_url()?,
            timeout: defaults::EGRESS_TIMEOUT,
        });
    };
    let item = "[egress]";
    let checkip_url = match &r.checkip_url {
        Some(s) => url(s, "checkip_url", file, item, errs),
        None => default_url(),
    };
    let timeout = duration(
        &r.timeout,
        defaults::EGRESS_TIMEOUT,
        SHORT_TIMEOUT,
        "timeout",
        file,
        item,
        errs,
    );
    Some(EgressSettings {
        checkip_url: checkip_url?,
        timeout: timeout?,
    })
}

/// `fallback` fills in where the check names no probe of its own (the `[haproxy]` section).
fn haproxy_probe(
    r: &RawHaproxy,
    fallback: Option<&HaproxyProbeSpec>,
    file: &Path,
    item: &str,
    errs: &mut Errors,
) -> Option<HaproxyProbeSpec> {
    let health_url = r
        .health_url
        .as_ref()
        .map(|s| url(s, "health_url", file, item, errs));
    let timeout = duration(
        &r.timeout,
        defaults::HAPROXY_TIMEOUT,
        SHORT_TIMEOUT,
        "timeout",
        file,
        item,
        errs,
    );
    let mut spec = HaproxyProbeSpec {
        stats_socket: r.stats_socket.clone(),
        health_url: health_url.map_or(Some(None), |u| u.map(Some))?,
        frontend: r.frontend.clone(),
        backend: r.backend.clone(),
        timeout: timeout?,
    };
    if spec.stats_socket.is_none() && spec.health_url.is_none() {
        match fallback {
            Some(f) => {
                spec.stats_socket = f.stats_socket.clone();
                spec.health_url = f.health_url.clone();
                spec.frontend = spec.frontend.or_else(|| f.frontend.clone());
                spec.backend = spec.backend.or_else(|| f.backend.clone());
            }
            None => spec.stats_socket = Some(defaults::HAPROXY_SOCKET.into()),
        }
    }
    if (spec.frontend.is_some() || spec.backend.is_some()) && spec.stats_socket.is_none() {
        errs.push(
            file,
            Some(item),
            "`frontend` and `backend` are checked through the stats socket: set `stats_socket` too",
        );
        return None;
    }
    Some(spec)
}

fn control(raw: Option<&Located<RawControl>>, errs: &mut Errors) -> Option<ControlSettings> {
    let default_socket = || Some(PathBuf::from(defaults::CONTROL_SOCKET));
    let Some(Located { file, value: r }) = raw else {
        return Some(ControlSettings {
            socket: default_socket(),
            metrics_listen: None,
        });
    };
    let socket = match &r.socket {
        Some(p) if p.as_os_str().is_empty() => None,
        Some(p) if p.is_relative() => {
            errs.push(
                file,
                Some("[control]"),
                format!(
                    "`socket` = {:?}: use an absolute path (or \"\" for none)",
                    p.display().to_string()
                ),
            );
            return None;
        }
        Some(p) => Some(p.clone()),
        None => default_socket(),
    };
    let metrics_listen = match &r.metrics_listen {
        None => None,
        Some(a) => match a.parse::<std::net::SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                errs.push(
                    file,
                    Some("[control]"),
                    format!("`metrics_listen` = {a:?}: not an address like \"127.0.0.1:9106\""),
                );
                return None;
            }
        },
    };
    Some(ControlSettings {
        socket,
        metrics_listen,
    })
}

fn opsworks(raw: Option<&Located<RawOpsworks>>, errs: &mut Errors) -> Option<OpsworksSettings> {
    let mut s = OpsworksSettings {
        region: defaults::OPSWORKS_REGION.into(),
        instance_id: None,
        agent_config: defaults::OPSWORKS_AGENT_CONFIG.into(),
        endpoint_url: None,
    };
    let Some(Located { file, value: r }) = raw else {
        return Some(s);
    };
    let item = "[opsworks]";
    let before = errs.0.len();
    if let Some(region) = &r.region {
        s.region = region_name(region, file, item, errs).unwrap_or_default();
    }
    if let Some(id) = &r.instance_id {
        if !is_opsworks_id(id) {
            errs.push(file, Some(item), format!(
                "`instance_id` = {id:?}: not an OpsWorks instance id (a UUID like \"4d6d1710-ded9-42a1-b08e-b043ad7af1e2\"; the EC2 i-... id is not accepted by OpsWorks)"
            ));
        }
        s.instance_id = Some(id.clone());
    }
    if let Some(p) = &r.agent_config {
        if p.is_relative() {
            errs.push(
                file,
                Some(item),
                format!(
                    "`agent_config` = {:?}: use an absolute path",
                    p.display().to_string()
                ),
            );
        }
        s.agent_config = p.clone();
    }
    if let Some(u) = &r.endpoint_url {
        s.endpoint_url = url(u, "endpoint_url", file, item, errs).map(|u| u.to_string());
    }
    (errs.0.len() == before).then_some(s)
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

fn alerts(raw: Option<&Located<RawAlerts>>, errs: &mut Errors) -> Option<AlertSettings> {
    let Some(Located { file, value: r }) = raw else {
        return Some(AlertSettings {
            sns_topic_arn: None,
            subject_prefix: defaults::SUBJECT_PREFIX.into(),
        });
    };
    let topic = match &r.sns_topic_arn {
        Some(s) => Some(arn(s, "sns_topic_arn", file, "[alerts]", errs)?),
        None => None,
    };
    Some(AlertSettings {
        sns_topic_arn: topic,
        subject_prefix: r
            .subject_prefix
            .clone()
            .unwrap_or_else(|| defaults::SUBJECT_PREFIX.into()),
    })
}

/// `alerts` is None when `[alerts]` itself is broken (already reported).
fn action(
    name: &str,
    a: &Located<RawAction>,
    alerts: Option<&AlertSettings>,
    errs: &mut Errors,
) -> Option<ActionSpec> {
    let file = &a.file;
    let item = format!("action \"{name}\"");
    let item = item.as_str();
    let before = errs.0.len();
    let topic_or_default =
        |own: &Option<String>, what: &str, errs: &mut Errors| -> Option<Option<String>> {
            match own {
                Some(t) => arn(t, what, file, item, errs).map(Some),
                None => match alerts {
                    Some(a) => Some(a.sns_topic_arn.clone()),
                    None => None,
                },
            }
        };
    match &a.value {
        RawAction::ClaimEip(c) => {
            let eip = match (&c.eip, &c.allocation_id) {
                (Some(ip), None) => ipv4(ip, "eip", file, item, errs).map(EipRef::PublicIp),
                (None, Some(id)) => prefixed_id(id, "eipalloc-", "allocation_id", file, item, errs)
                    .map(EipRef::AllocationId),
                (Some(_), Some(_)) => {
                    errs.push(
                        file,
                        Some(item),
                        "set either `eip` or `allocation_id`, not both",
                    );
                    None
                }
                (None, None) => {
                    errs.push(
                        file,
                        Some(item),
                        "missing the Elastic IP: set `eip` (its public address) or `allocation_id`",
                    );
                    None
                }
            };
            let provider = match c.provider.as_deref() {
                None | Some("ec2") => Some(ClaimProvider::Ec2),
                Some("opsworks") => Some(ClaimProvider::OpsWorks),
                Some(other) => {
                    errs.push(
                        file,
                        Some(item),
                        format!(
                            "`provider` = {other:?}: use \"ec2\" (the default) or \"opsworks\""
                        ),
                    );
                    None
                }
            };
            if provider == Some(ClaimProvider::OpsWorks) {
                // OpsWorks names an Elastic IP by its address and always puts it on the
                // instance's primary private IP.
                if c.allocation_id.is_some() {
                    errs.push(file, Some(item), "`allocation_id`: OpsWorks names an Elastic IP by its address; set `eip` instead");
                }
                if c.private_ip.is_some() {
                    errs.push(file, Some(item), "`private_ip`: OpsWorks always associates with the instance's primary private IP; use provider = \"ec2\" for a secondary one");
                }
            }
            let private_ip = c
                .private_ip
                .as_deref()
                .map(|s| ipv4(s, "private_ip", file, item, errs));
            let topic = topic_or_default(&c.sns_topic_arn, "sns_topic_arn", errs);
            if matches!(topic, Some(None)) {
                errs.push(
                    file,
                    Some(item),
                    "no SNS topic for the failover alert: set `sns_topic_arn` here or in [alerts]",
                );
            }
            let hold_down = duration(
                &c.hold_down,
                defaults::HOLD_DOWN,
                HOLD_DOWN,
                "hold_down",
                file,
                item,
                errs,
            );
            if errs.0.len() > before {
                return None;
            }
            Some(ActionSpec::ClaimEip(ClaimEipSpec {
                name: name.to_owned(),
                eip: eip?,
                provider: provider?,
                private_ip: private_ip.flatten(),
                hold_down: hold_down?,
                sns_topic_arn: topic.flatten(),
            }))
        }
        RawAction::Sns(sn) => {
            let topic = topic_or_default(&sn.topic_arn, "topic_arn", errs);
            if matches!(topic, Some(None)) {
                errs.push(
                    file,
                    Some(item),
                    "missing `topic_arn` (and no [alerts] sns_topic_arn to fall back on)",
                );
            }
            if let Some(subj) = &sn.subject {
                if subj.len() > 100 || !subj.is_ascii() || subj.chars().any(|c| c.is_control()) {
                    errs.push(
                        file,
                        Some(item),
                        "`subject`: SNS takes at most 100 printable ASCII characters",
                    );
                }
            }
            if errs.0.len() > before {
                return None;
            }
            Some(ActionSpec::Sns(SnsSpec {
                name: name.to_owned(),
                topic_arn: topic.flatten()?,
                subject: sn.subject.clone(),
                message: sn.message.clone(),
            }))
        }
        RawAction::Exec(x) => {
            let command = match x.command.as_deref() {
                None | Some([]) => {
                    errs.push(file, Some(item), "missing `command`: the program and its arguments, like [\"/usr/local/bin/page-ops\", \"--urgent\"]");
                    None
                }
                Some([program, ..]) if !program.starts_with('/') => {
                    errs.push(file, Some(item), format!(
                        "`command`: the program {program:?} must be an absolute path (the daemon does not search PATH, and runs no shell)"));
                    None
                }
                Some(c) if c.iter().any(|a| a.contains('\0')) => {
                    errs.push(
                        file,
                        Some(item),
                        "`command`: an argument contains a NUL byte",
                    );
                    None
                }
                Some(c) => Some(c.to_vec()),
            };
            let timeout = duration(
                &x.timeout,
                defaults::EXEC_TIMEOUT,
                CHECK_TIMEOUT,
                "timeout",
                file,
                item,
                errs,
            );
            Some(ActionSpec::Exec(ExecSpec {
                name: name.to_owned(),
                command: command?,
                timeout: timeout?,
            }))
        }
    }
}

/// Rules that need the whole picture: claims only on failure, one claim action per EIP, and
/// at least one enabled rule.
fn cross_checks(
    m: &Merged,
    actions: &BTreeMap<String, ActionSpec>,
    rules: &[Rule],
    errs: &mut Errors,
) {
    for r in rules {
        for a in &r.on_recover {
            if let Some(ActionSpec::ClaimEip(_)) = actions.get(a) {
                errs.push(
                    &r.file,
                    Some(&format!("rule \"{}\"", r.name)),
                    format!(
                        "`on_recover` lists claim action \"{a}\": a claim belongs in `on_fail`"
                    ),
                );
            }
        }
    }
    let mut synced: BTreeMap<(&Path, &str), &str> = BTreeMap::new();
    let mut rendered: BTreeMap<&Path, &str> = BTreeMap::new();
    for r in rules {
        let CheckSpec::BackendSync(b) = &r.check else {
            continue;
        };
        let item = format!("rule \"{}\"", r.name);
        for a in r.on_fail.iter().chain(&r.on_recover) {
            if let Some(ActionSpec::ClaimEip(_)) = actions.get(a) {
                errs.push(&r.file, Some(&item), format!(
                    "lists claim action \"{a}\": a backend sync's failure says nothing about this node's right to the Elastic IP; use an `sns` action to be told"));
            }
        }
        if let Some(first) = synced.insert((b.stats_socket.as_path(), b.backend.as_str()), &r.name)
        {
            errs.push(&r.file, Some(&item), format!(
                "backend {:?} is already kept in step by rule \"{first}\": one backend_sync rule per backend",
                b.backend));
        }
        if let ApplyMode::Reload { .. } = b.apply {
            if let Some(first) = rendered.insert(b.haproxy_config.as_path(), &r.name) {
                errs.push(
                    &r.file,
                    Some(&item),
                    format!(
                        "rule \"{first}\" also renders {}: two templates cannot both own one file",
                        b.haproxy_config.display()
                    ),
                );
            }
        }
    }
    for r in rules {
        if let CheckSpec::BackendSync(b) = &r.check {
            if matches!(b.apply, ApplyMode::Runtime | ApplyMode::Peers)
                && rendered.contains_key(b.haproxy_config.as_path())
            {
                errs.push(&r.file, Some(&format!("rule \"{}\"", r.name)), format!(
                    "{} is rendered whole by a `reload` rule; a `runtime` rule cannot keep a block of it as well",
                    b.haproxy_config.display()));
            }
        }
    }
    let mut by_eip: BTreeMap<&EipRef, &str> = BTreeMap::new();
    for (name, a) in actions {
        if let ActionSpec::ClaimEip(c) = a {
            if let Some(first) = by_eip.insert(&c.eip, name) {
                let file = &m.actions[name].file;
                errs.push(file, Some(&format!("action \"{name}\"")), format!(
                    "claims {} like action \"{first}\": one claim action per Elastic IP (list it in several rules instead), so its hold-down covers every rule",
                    c.eip
                ));
            }
        }
    }
    if rules.is_empty() && !m.rules.is_empty() && errs.0.is_empty() {
        let file = m
            .rules
            .values()
            .next()
            .map(|r| r.file.as_path())
            .unwrap_or(Path::new("?"));
        errs.push(
            file,
            None,
            "every rule is disabled (`enabled = false`): nothing to watch",
        );
    }
}

fn rule(
    name: &str,
    r: &Located<RawRule>,
    haproxy: Option<&HaproxyProbeSpec>,
    egress: Option<&EgressSettings>,
    m: &Merged,
    errs: &mut Errors,
) -> Option<Rule> {
    let file = &r.file;
    let item = format!("rule \"{name}\"");
    let item = item.as_str();
    let v = &r.value;
    let before = errs.0.len();

    let default_interval = match &v.check {
        Some(RawCheck::BackendSync(RawBackendSync {
            source: RawSource::Consul(_),
            ..
        })) => defaults::SYNC_INTERVAL_CONSUL,
        Some(RawCheck::BackendSync(RawBackendSync {
            source: RawSource::Asg(a),
            ..
        })) if a.events_queue.is_some() => defaults::SYNC_RESYNC_EVENTS,
        Some(RawCheck::BackendSync(_)) => defaults::SYNC_INTERVAL_ASG,
        _ => defaults::INTERVAL,
    };
    let interval = duration(
        &v.interval,
        default_interval,
        INTERVAL,
        "interval",
        file,
        item,
        errs,
    );
    let timeout = duration(
        &v.timeout,
        defaults::TIMEOUT,
        CHECK_TIMEOUT,
        "timeout",
        file,
        item,
        errs,
    );
    if let (Some(i), Some(t)) = (interval, timeout) {
        if t > i {
            errs.push(file, Some(item), format!(
                "`timeout` ({}) must not exceed `interval` ({}): a check cannot take longer than its cycle",
                humantime::format_duration(t), humantime::format_duration(i)));
        }
    }
    let count = |n: Option<i64>, default: u32, what: &str, errs: &mut Errors| -> u32 {
        match n {
            None => default,
            Some(n) if (1..=1000).contains(&n) => n as u32,
            Some(n) => {
                errs.push(
                    file,
                    Some(item),
                    format!("`{what}` = {n}: must be between 1 and 1000 cycles"),
                );
                default
            }
        }
    };
    let fail_after = count(v.fail_after, defaults::FAIL_AFTER, "fail_after", errs);
    let recover_after = count(
        v.recover_after,
        defaults::RECOVER_AFTER,
        "recover_after",
        errs,
    );

    for (list, what) in [(&v.on_fail, "on_fail"), (&v.on_recover, "on_recover")] {
        let mut seen = Vec::new();
        for a in list {
            if seen.contains(&a) {
                errs.push(
                    file,
                    Some(item),
                    format!("`{what}` lists action \"{a}\" twice"),
                );
            }
            seen.push(a);
            if !m.actions.contains_key(a) && !m.broken_actions.contains(a) {
                let known: Vec<&str> = m.actions.keys().map(String::as_str).collect();
                let hint = if known.is_empty() {
                    "no actions are defined".to_owned()
                } else {
                    format!("defined actions: {}", known.join(", "))
                };
                errs.push(
                    file,
                    Some(item),
                    format!("`{what}` names unknown action \"{a}\" ({hint})"),
                );
            }
        }
    }

    let check = match &v.check {
        None => {
            errs.push(
                file,
                Some(item),
                "missing `check`: every rule needs one, like check = { type = \"http\", url = \"http://...\" }",
            );
            None
        }
        Some(RawCheck::Http(h)) => http_check(h, file, item, errs).map(CheckSpec::Http),
        Some(RawCheck::Haproxy(h)) => {
            haproxy_probe(h, haproxy, file, item, errs).map(CheckSpec::Haproxy)
        }
        Some(RawCheck::Egress(e)) => {
            let expect = ipv4(&e.expect, "check.expect", file, item, errs);
            let checkip_url = match &e.checkip_url {
                Some(u) => url(u, "check.checkip_url", file, item, errs),
                None => egress.map(|g| g.checkip_url.clone()),
            };
            match (expect, checkip_url) {
                (Some(expect), Some(checkip_url)) => Some(CheckSpec::Egress(EgressCheckSpec {
                    expect,
                    checkip_url,
                })),
                _ => None,
            }
        }
        Some(RawCheck::BackendSync(b)) => {
            backend_sync(b, haproxy, file, item, errs).map(CheckSpec::BackendSync)
        }
    };

    if v.enabled == Some(false) || errs.0.len() > before {
        return None;
    }
    Some(Rule {
        name: name.to_owned(),
        file: file.clone(),
        interval: interval?,
        timeout: timeout?,
        fail_after,
        recover_after,
        check: check?,
        on_fail: v.on_fail.clone(),
        on_recover: v.on_recover.clone(),
    })
}

fn http_check(
    h: &RawHttpCheck,
    file: &Path,
    item: &str,
    errs: &mut Errors,
) -> Option<HttpCheckSpec> {
    let url = url(&h.url, "url", file, item, errs);
    let method = match h.method.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("GET") => Some(reqwest::Method::GET),
        Some("HEAD") => Some(reqwest::Method::HEAD),
        Some("POST") => Some(reqwest::Method::POST),
        Some("OPTIONS") => Some(reqwest::Method::OPTIONS),
        Some(other) => {
            errs.push(
                file,
                Some(item),
                format!("`method` = {other:?}: use GET, HEAD, POST or OPTIONS"),
            );
            None
        }
    };
    let expect_status = match &h.expect_status {
        None => Some(StatusSet::default_ok()),
        Some(list) if list.is_empty() => {
            errs.push(
                file,
                Some(item),
                "`expect_status` is empty: list codes like 200 or classes like \"2xx\"",
            );
            None
        }
        Some(list) => {
            let mut ranges = Vec::new();
            let mut ok = true;
            for p in list {
                match status_pattern(p) {
                    Ok(r) => ranges.push(r),
                    Err(m) => {
                        errs.push(file, Some(item), m);
                        ok = false;
                    }
                }
            }
            ok.then_some(StatusSet(ranges))
        }
    };
    if let Some(host) = &h.host {
        if host.is_empty()
            || host
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        {
            errs.push(
                file,
                Some(item),
                format!("`host` = {host:?}: not a host name"),
            );
            return None;
        }
    }
    if h.body_contains.as_deref() == Some("") {
        errs.push(
            file,
            Some(item),
            "`body_contains` is empty: remove it or give the text to look for",
        );
        return None;
    }
    if h.body_contains.is_some() && method == Some(reqwest::Method::HEAD) {
        errs.push(
            file,
            Some(item),
            "`body_contains` cannot be checked with method HEAD (no body)",
        );
        return None;
    }
    Some(HttpCheckSpec {
        url: url?,
        method: method?,
        expect_status: expect_status?,
        body_contains: h.body_contains.clone(),
        host: h.host.clone(),
    })
}

fn status_pattern(p: &StatusPattern) -> Result<std::ops::RangeInclusive<u16>, String> {
    match p {
        StatusPattern::Code(c) if (100..=599).contains(c) => Ok(*c as u16..=*c as u16),
        StatusPattern::Code(c) => Err(format!(
            "`expect_status`: {c} is not an HTTP status (100-599)"
        )),
        StatusPattern::Class(s) => {
            let b = s.as_bytes();
            if b.len() == 3 && (b'1'..=b'5').contains(&b[0]) && s[1..].eq_ignore_ascii_case("xx") {
                let base = u16::from(b[0] - b'0') * 100;
                Ok(base..=base + 99)
            } else {
                Err(format!(
                    "`expect_status`: {s:?} is neither a status code nor a class like \"2xx\""
                ))
            }
        }
    }
}

/// HAProxy's identifier characters (proxy and server names).
fn haproxy_ident(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

const RELOAD_WINDOW: Range = Range(ms(100), secs(600));
const DRAIN_TIMEOUT: Range = Range(ms(100), secs(7200));
/// Auto Scaling's shortest heartbeat timeout is 30 s.
const HEARTBEAT: Range = Range(secs(1), secs(3600));

fn backend_sync(
    b: &RawBackendSync,
    haproxy: Option<&HaproxyProbeSpec>,
    file: &Path,
    item: &str,
    errs: &mut Errors,
) -> Option<BackendSyncSpec> {
    let before = errs.0.len();
    let push = |errs: &mut Errors, m: String| errs.push(file, Some(item), m);
    let peers_mode = b.apply.as_deref() == Some("peers");
    let (name, what) = match (&b.backend, &b.peers, peers_mode) {
        (Some(n), None, false) => (n.clone(), "backend"),
        (None, Some(n), true) => (n.clone(), "peers"),
        (_, _, false) => {
            push(errs, "`check.backend` names the HAProxy backend to keep in step (`check.peers` is for `apply = \"peers\"`)".into());
            (String::new(), "backend")
        }
        (_, _, true) => {
            push(errs, "`apply = \"peers\"` needs `check.peers`, the name of the HAProxy `peers` section to keep in step (and no `check.backend`)".into());
            (String::new(), "peers")
        }
    };
    if !name.is_empty() && !haproxy_ident(&name) {
        push(
            errs,
            format!(
                "`check.{what}` = {name:?}: not a HAProxy section name (letters, digits, - _ . :)"
            ),
        );
    }
    let port = match b.port {
        None => None,
        Some(p) if (1..=65535).contains(&p) => Some(p as u16),
        Some(p) => {
            push(
                errs,
                format!("`check.port` = {p}: must be between 1 and 65535"),
            );
            None
        }
    };
    let source = match &b.source {
        RawSource::Asg(a) => {
            if a.group.is_empty() || a.group.len() > 255 {
                push(
                    errs,
                    "`check.source.group`: an Auto Scaling group name of 1 to 255 characters"
                        .into(),
                );
            }
            if b.port.is_none() {
                push(errs, "`check.port` is required with an `asg` source: instances do not say which port they serve on".into());
            }
            let events_queue = a.events_queue.as_deref().and_then(|q| {
                url(q, "check.source.events_queue", file, item, errs).map(|u| u.to_string())
            });
            if let Some(h) = &a.lifecycle_hook {
                if h.is_empty() || h.len() > 255 {
                    push(errs, "`check.source.lifecycle_hook`: a lifecycle hook name of 1 to 255 characters".into());
                }
            }
            let drain_timeout = duration(
                &a.drain_timeout,
                defaults::DRAIN_TIMEOUT,
                DRAIN_TIMEOUT,
                "check.source.drain_timeout",
                file,
                item,
                errs,
            );
            let heartbeat_interval = match &a.heartbeat_interval {
                None => Some(None),
                Some(_) => duration(
                    &a.heartbeat_interval,
                    Duration::ZERO,
                    HEARTBEAT,
                    "check.source.heartbeat_interval",
                    file,
                    item,
                    errs,
                )
                .map(Some),
            };
            if a.heartbeat_interval.is_some() && a.lifecycle_hook.is_none() {
                push(errs, "`check.source.heartbeat_interval` needs `lifecycle_hook`: heartbeats keep that hook's action open while the server drains".into());
            }
            match (drain_timeout, heartbeat_interval) {
                (Some(drain_timeout), Some(heartbeat_interval)) => {
                    Some(SourceSpec::Asg(AsgSourceSpec {
                        group: a.group.clone(),
                        events_queue,
                        lifecycle_hook: a.lifecycle_hook.clone(),
                        drain_timeout,
                        heartbeat_interval,
                    }))
                }
                _ => None,
            }
        }
        RawSource::Consul(_) if peers_mode => {
            push(errs, "`apply = \"peers\"` takes its peers from an `asg` source: the Auto Scaling group of the HAProxy nodes".into());
            None
        }
        RawSource::Consul(c) => {
            let address = url(
                c.address.as_deref().unwrap_or(defaults::CONSUL_ADDRESS),
                "check.source.address",
                file,
                item,
                errs,
            );
            if c.service.is_empty() || c.service.contains('/') || c.service.contains('?') {
                push(
                    errs,
                    format!(
                        "`check.source.service` = {:?}: not a Consul service name",
                        c.service
                    ),
                );
            }
            if c.tags.iter().any(|t| t.is_empty()) {
                push(errs, "`check.source.tags`: a tag cannot be empty".into());
            }
            let token = match (&c.token_file, &c.token_env) {
                (Some(_), Some(_)) => {
                    push(
                        errs,
                        "set `check.source.token_file` or `token_env`, not both".into(),
                    );
                    None
                }
                (Some(f), None) => Some(TokenSource::File(f.clone())),
                (None, Some(e)) if e.is_empty() => {
                    push(
                        errs,
                        "`check.source.token_env` is empty: name an environment variable".into(),
                    );
                    None
                }
                (None, Some(e)) => Some(TokenSource::Env(e.clone())),
                (None, None) => None,
            };
            address.map(|address| {
                SourceSpec::Consul(ConsulSourceSpec {
                    address,
                    service: c.service.clone(),
                    datacenter: c.datacenter.clone(),
                    tags: c.tags.clone(),
                    passing_only: c.passing_only.unwrap_or(true),
                    token,
                })
            })
        }
    };
    let apply = match (b.apply.as_deref(), &b.template) {
        (None | Some("runtime"), None) => Some(ApplyMode::Runtime),
        (None | Some("runtime"), Some(_)) => {
            push(errs, "`check.template` is for `apply = \"reload\"`; runtime mode rewrites only its own block of the config file".into());
            None
        }
        (Some("reload"), Some(t)) => Some(ApplyMode::Reload {
            template: t.clone(),
        }),
        (Some("reload"), None) => {
            push(errs, "`apply = \"reload\"` needs `check.template`: the file rendered into `haproxy_config`".into());
            None
        }
        (Some("peers"), None) => Some(ApplyMode::Peers),
        (Some("peers"), Some(_)) => {
            push(errs, "`check.template` is for `apply = \"reload\"`; peers mode rewrites only its own block of the `peers` section".into());
            None
        }
        (Some(other), _) => {
            push(errs, format!("`check.apply` = {other:?}: use \"runtime\" (live, through the stats socket), \"reload\" (template + reload) or \"peers\" (the `peers` section + reload)"));
            None
        }
    };
    let server_prefix = b.server_prefix.clone().unwrap_or_else(|| name.clone());
    if !haproxy_ident(&server_prefix) || server_prefix.len() > 60 {
        push(errs, format!("`check.server_prefix` = {server_prefix:?}: server names use letters, digits, - _ . : (at most 60)"));
    }
    let server_options = b
        .server_options
        .clone()
        .unwrap_or_else(|| defaults::SERVER_OPTIONS.to_owned());
    if server_options.chars().any(|c| c.is_control() || c == '#') {
        push(
            errs,
            "`check.server_options`: one line of HAProxy server keywords, without comments".into(),
        );
    }
    if server_options.split_whitespace().any(|w| w == "disabled") {
        push(errs, "`check.server_options` must not say `disabled`: the watchdog decides which slots are in maintenance".into());
    }
    let count = |n: Option<i64>, default: u32, lo: i64, what: &str, errs: &mut Errors| -> u32 {
        match n {
            None => default,
            Some(n) if (lo..=10_000).contains(&n) => n as u32,
            Some(n) => {
                errs.push(
                    file,
                    Some(item),
                    format!("`check.{what}` = {n}: must be between {lo} and 10000"),
                );
                default
            }
        }
    };
    let slots = count(b.slots, defaults::SLOTS, 1, "slots", errs);
    let min_servers = count(b.min_servers, defaults::MIN_SERVERS, 0, "min_servers", errs);
    let allow_empty = b.allow_empty.unwrap_or(false);
    if min_servers == 0 && !allow_empty {
        errs.push(file, Some(item), "`check.min_servers = 0` would let one bad discovery answer empty the backend: set `allow_empty = true` if that is really wanted".to_owned());
    }
    let stats_socket = b
        .stats_socket
        .clone()
        .or_else(|| haproxy.and_then(|h| h.stats_socket.clone()))
        .unwrap_or_else(|| defaults::HAPROXY_SOCKET.into());
    let raw_reload = b.reload.as_ref();
    let method = match (
        raw_reload.and_then(|r| r.master_socket.clone()),
        raw_reload.and_then(|r| r.command.clone()),
    ) {
        (Some(_), Some(_)) => {
            errs.push(
                file,
                Some(item),
                "`check.reload`: set `master_socket` or `command`, not both".to_owned(),
            );
            None
        }
        (None, Some(c)) if c.is_empty() || c[0].is_empty() => {
            errs.push(file, Some(item), "`check.reload.command` is empty: give the program and its arguments, like [\"systemctl\", \"reload\", \"haproxy\"]".to_owned());
            None
        }
        (None, Some(c)) => Some(ReloadMethod::Command(c)),
        (Some(s), None) => Some(ReloadMethod::MasterSocket(s)),
        (None, None) => Some(ReloadMethod::MasterSocket(defaults::MASTER_SOCKET.into())),
    };
    let window = duration(
        &raw_reload.and_then(|r| r.window.clone()),
        defaults::RELOAD_WINDOW,
        RELOAD_WINDOW,
        "check.reload.window",
        file,
        item,
        errs,
    );
    let reload_timeout = duration(
        &raw_reload.and_then(|r| r.timeout.clone()),
        defaults::RELOAD_TIMEOUT,
        CHECK_TIMEOUT,
        "check.reload.timeout",
        file,
        item,
        errs,
    );
    if errs.0.len() > before {
        return None;
    }
    Some(BackendSyncSpec {
        source: source?,
        backend: name,
        port,
        apply: apply?,
        stats_socket,
        haproxy_config: b
            .haproxy_config
            .clone()
            .unwrap_or_else(|| defaults::HAPROXY_CONFIG.into()),
        server_prefix,
        server_options,
        slots,
        min_servers,
        allow_empty,
        haproxy_bin: b
            .haproxy_bin
            .clone()
            .unwrap_or_else(|| defaults::HAPROXY_BIN.into()),
        reload: ReloadSpec {
            method: method?,
            window: window?,
            timeout: reload_timeout?,
        },
    })
}
