//! `type = "backend_sync"`: keep a HAProxy backend's servers (or a `peers` section) equal to
//! what a discovery source lists; its source, apply mode and reload settings.

use super::super::super::defaults::{self, limits};
use super::super::super::model::*;
use super::super::super::raw::*;
use super::super::ctx::{is_haproxy_name, Ctx};
use std::str::FromStr;

/// `check.apply`, parsed in this one place. Not a serde enum: serde's unknown-variant error
/// would be reported with the TOML errors, before the check's other errors, and in other words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Apply {
    Runtime,
    Reload,
    Peers,
}

#[derive(Debug, thiserror::Error)]
#[error("`check.apply` = {0:?}: use \"runtime\" (live, through the stats socket), \"reload\" (template + reload) or \"peers\" (the `peers` section + reload)")]
struct UnknownApply(String);

impl FromStr for Apply {
    type Err = UnknownApply;
    fn from_str(s: &str) -> Result<Self, UnknownApply> {
        match s {
            "runtime" => Ok(Apply::Runtime),
            "reload" => Ok(Apply::Reload),
            "peers" => Ok(Apply::Peers),
            other => Err(UnknownApply(other.to_owned())),
        }
    }
}

/// `haproxy` is the `[haproxy]` section, whose stats socket is the default; None when broken.
pub(super) fn check(
    b: &RawBackendSync,
    haproxy: Option<&HaproxyProbeSpec>,
    mut cx: Ctx<'_>,
) -> Option<BackendSyncSpec> {
    // Unset is runtime; an unknown mode is reported where the mode is checked, below.
    let apply_kind = b
        .apply
        .as_deref()
        .map_or(Ok(Apply::Runtime), Apply::from_str);
    let peers_mode = matches!(apply_kind, Ok(Apply::Peers));
    let (name, what) = match (&b.backend, &b.peers, peers_mode) {
        (Some(n), None, false) => (n.clone(), "backend"),
        (None, Some(n), true) => (n.clone(), "peers"),
        // A `backend` set but unparsable has had its one error already.
        (None, None, false) if cx.unparsed("check.backend") => (String::new(), "backend"),
        (_, _, false) => {
            cx.err("`check.backend` names the HAProxy backend to keep in step (`check.peers` is for `apply = \"peers\"`)");
            (String::new(), "backend")
        }
        (Some(_), Some(n), true) => {
            // The peers section is named: what is wrong is the backend beside it.
            cx.err(format!("`apply = \"peers\"` needs `check.peers` only: remove `check.backend`, since peers mode keeps the `peers` section {n:?}, not a backend"));
            (n.clone(), "peers")
        }
        (_, _, true) => {
            cx.err("`apply = \"peers\"` needs `check.peers`, the name of the HAProxy `peers` section to keep in step (and no `check.backend`)");
            (String::new(), "peers")
        }
    };
    if !name.is_empty() && !is_haproxy_name(&name) {
        cx.err(format!(
            "`check.{what}` = {name:?}: not a HAProxy section name (letters, digits, - _ . :)"
        ));
    }
    let port = match b.port {
        None => None,
        Some(p) if limits::PORT.contains(&p) => Some(p as u16),
        Some(p) => {
            cx.err(format!(
                "`check.port` = {p}: must be between {} and {}",
                limits::PORT.start(),
                limits::PORT.end()
            ));
            None
        }
    };
    let source = match &b.source {
        RawSource::Asg(a) => asg(a, b.port.is_some(), &mut cx),
        RawSource::Consul(_) if peers_mode => cx.fail("`apply = \"peers\"` takes its peers from an `asg` source: the Auto Scaling group of the HAProxy nodes"),
        RawSource::Consul(c) => consul(c, &mut cx),
    };
    let apply = match (apply_kind, &b.template) {
        (Ok(Apply::Runtime), None) => Some(ApplyMode::Runtime),
        (Ok(Apply::Runtime), Some(_)) => cx.fail("`check.template` is for `apply = \"reload\"`; runtime mode rewrites only its own block of the config file"),
        (Ok(Apply::Reload), Some(t)) => Some(ApplyMode::Reload {
            template: t.clone(),
        }),
        (Ok(Apply::Reload), None) => cx.fail("`apply = \"reload\"` needs `check.template`: the file rendered into `haproxy_config`"),
        (Ok(Apply::Peers), None) => Some(ApplyMode::Peers),
        (Ok(Apply::Peers), Some(_)) => cx.fail("`check.template` is for `apply = \"reload\"`; peers mode rewrites only its own block of the `peers` section"),
        (Err(e), _) => cx.fail(e.to_string()),
    };
    let server_prefix = b.server_prefix.clone().unwrap_or_else(|| name.clone());
    // With no name (reported above) there is no default prefix to find fault with.
    let prefix_unknown = b.server_prefix.is_none() && name.is_empty();
    if !prefix_unknown && !is_haproxy_name(&server_prefix)
        || server_prefix.len() > limits::SERVER_PREFIX_MAX_LEN
    {
        cx.err(format!("`check.server_prefix` = {server_prefix:?}: server names use letters, digits, - _ . : (at most {})", limits::SERVER_PREFIX_MAX_LEN));
    }
    let server_options = b
        .server_options
        .clone()
        .unwrap_or_else(|| defaults::SERVER_OPTIONS.to_owned());
    if server_options.chars().any(|c| c.is_control() || c == '#') {
        cx.err("`check.server_options`: one line of HAProxy server keywords, without comments");
    }
    if server_options.split_whitespace().any(|w| w == "disabled") {
        cx.err("`check.server_options` must not say `disabled`: the watchdog decides which slots are in maintenance");
    }
    let mut count = |n: Option<i64>, default: u32, lo: i64, what: &str| -> u32 {
        match n {
            None => default,
            Some(n) if (lo..=limits::SERVERS_MAX).contains(&n) => n as u32,
            Some(n) => {
                cx.err(format!(
                    "`check.{what}` = {n}: must be between {lo} and {}",
                    limits::SERVERS_MAX
                ));
                default
            }
        }
    };
    let slots = count(b.slots, defaults::SLOTS, 1, "slots");
    let min_servers = count(b.min_servers, defaults::MIN_SERVERS, 0, "min_servers");
    let allow_empty = b.allow_empty.unwrap_or(defaults::ALLOW_EMPTY);
    if min_servers == 0 && !allow_empty {
        cx.err("`check.min_servers = 0` would let one bad discovery answer empty the backend: set `allow_empty = true` if that is really wanted");
    }
    let stats_socket = b
        .stats_socket
        .clone()
        .or_else(|| haproxy.and_then(|h| h.stats_socket.clone()))
        .unwrap_or_else(|| defaults::HAPROXY_SOCKET.into());
    if let Some(p) = &b.stats_socket {
        cx.absolute(p, "check.stats_socket");
    }
    if let Some(p) = &b.haproxy_config {
        cx.absolute(p, "check.haproxy_config");
    }
    if let Some(p) = &b.template {
        cx.absolute(p, "check.template");
    }
    if let Some(p) = b.reload.as_ref().and_then(|r| r.master_socket.as_ref()) {
        cx.absolute(p, "check.reload.master_socket");
    }
    let reload = reload(b.reload.as_ref(), &mut cx);
    cx.finish(|| {
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
            reload: reload?,
        })
    })
}

/// `source = { type = "asg", ... }`. `has_port`: `check.port`, which an asg source needs.
fn asg(a: &RawAsgSource, has_port: bool, cx: &mut Ctx<'_>) -> Option<SourceSpec> {
    if !limits::ASG_NAME_LEN.contains(&a.group.len()) {
        cx.err(format!(
            "`check.source.group`: an Auto Scaling group name of {} to {} characters",
            limits::ASG_NAME_LEN.start(),
            limits::ASG_NAME_LEN.end()
        ));
    }
    // A `port` set but unparsable has had its one error already.
    if !has_port && !cx.unparsed("check.port") {
        cx.err("`check.port` is required with an `asg` source: instances do not say which port they serve on");
    }
    let events_queue = a.events_queue.as_deref().and_then(|q| {
        cx.url(q, "check.source.events_queue")
            .map(|u| u.to_string())
    });
    if let Some(h) = &a.lifecycle_hook {
        if !limits::ASG_NAME_LEN.contains(&h.len()) {
            cx.err(format!(
                "`check.source.lifecycle_hook`: a lifecycle hook name of {} to {} characters",
                limits::ASG_NAME_LEN.start(),
                limits::ASG_NAME_LEN.end()
            ));
        }
    }
    let drain_timeout = cx.duration(
        a.drain_timeout.as_deref(),
        defaults::DRAIN_TIMEOUT,
        limits::DRAIN_TIMEOUT,
        "check.source.drain_timeout",
    );
    let heartbeat_interval = match a.heartbeat_interval.as_deref() {
        None => Some(None),
        Some(text) => cx
            .duration(
                Some(text),
                std::time::Duration::ZERO,
                limits::HEARTBEAT,
                "check.source.heartbeat_interval",
            )
            .map(Some),
    };
    if a.heartbeat_interval.is_some()
        && a.lifecycle_hook.is_none()
        && !cx.unparsed("check.source.lifecycle_hook")
    {
        cx.err("`check.source.heartbeat_interval` needs `lifecycle_hook`: heartbeats keep that hook's action open while the server drains");
    }
    Some(SourceSpec::Asg(AsgSourceSpec {
        group: a.group.clone(),
        events_queue,
        lifecycle_hook: a.lifecycle_hook.clone(),
        drain_timeout: drain_timeout?,
        heartbeat_interval: heartbeat_interval?,
    }))
}

/// `source = { type = "consul", ... }`.
fn consul(c: &RawConsulSource, cx: &mut Ctx<'_>) -> Option<SourceSpec> {
    let address = cx.url(
        c.address.as_deref().unwrap_or(defaults::CONSUL_ADDRESS),
        "check.source.address",
    );
    if c.service.is_empty() || c.service.contains('/') || c.service.contains('?') {
        cx.err(format!(
            "`check.source.service` = {:?}: not a Consul service name",
            c.service
        ));
    }
    if c.tags.iter().any(|t| t.is_empty()) {
        cx.err("`check.source.tags`: a tag cannot be empty");
    }
    let token = match (&c.token_file, &c.token_env) {
        (Some(_), Some(_)) => cx.fail("set `check.source.token_file` or `token_env`, not both"),
        (Some(f), None) => Some(TokenSource::File(f.clone())),
        (None, Some(e)) if e.is_empty() => {
            cx.fail("`check.source.token_env` is empty: name an environment variable")
        }
        (None, Some(e)) => Some(TokenSource::Env(e.clone())),
        (None, None) => None,
    };
    Some(SourceSpec::Consul(ConsulSourceSpec {
        address: address?,
        service: c.service.clone(),
        datacenter: c.datacenter.clone(),
        tags: c.tags.clone(),
        passing_only: c.passing_only.unwrap_or(defaults::CONSUL_PASSING_ONLY),
        token,
    }))
}

/// `check.reload`: how HAProxy is reloaded, and how often and how long it may take.
fn reload(r: Option<&RawReload>, cx: &mut Ctx<'_>) -> Option<ReloadSpec> {
    let method = match (
        r.and_then(|r| r.master_socket.clone()),
        r.and_then(|r| r.command.clone()),
    ) {
        (Some(_), Some(_)) => cx.fail("`check.reload`: set `master_socket` or `command`, not both"),
        (None, Some(c)) if c.is_empty() || c[0].is_empty() => cx.fail("`check.reload.command` is empty: give the program and its arguments, like [\"systemctl\", \"reload\", \"haproxy\"]"),
        (None, Some(c)) => Some(ReloadMethod::Command(c)),
        (Some(s), None) => Some(ReloadMethod::MasterSocket(s)),
        (None, None) => Some(ReloadMethod::MasterSocket(defaults::MASTER_SOCKET.into())),
    };
    let window = cx.duration(
        r.and_then(|r| r.window.as_deref()),
        defaults::RELOAD_WINDOW,
        limits::RELOAD_WINDOW,
        "check.reload.window",
    );
    let timeout = cx.duration(
        r.and_then(|r| r.timeout.as_deref()),
        defaults::RELOAD_TIMEOUT,
        limits::CHECK_TIMEOUT,
        "check.reload.timeout",
    );
    Some(ReloadSpec {
        method: method?,
        window: window?,
        timeout: timeout?,
    })
}
