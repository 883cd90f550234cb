//! `type = "claim_private_ip"` and `type = "claim_route"`: the claims of addresses only the
//! VPC's clients reach. What both share (reachability, the local interface, hold-down,
//! alert topic, owner poll) is parsed once, here.

use super::super::super::defaults::{self, limits};
use super::super::super::model::{
    AlertSettings, ClaimPrivateIpSpec, ClaimRouteSpec, NodeSettings, ReachSpec, ReachTarget,
};
use super::super::super::raw::{RawClaimPrivateIp, RawClaimRoute};
use super::super::ctx::Ctx;
use super::topic_or_alerts;
use std::net::Ipv4Addr;
use std::time::Duration;

/// The fields both private kinds share, parsed.
struct Common {
    reachability: Option<ReachSpec>,
    hold_down: Option<Duration>,
    sns_topic_arn: Option<Option<String>>,
    owner_poll: Option<Duration>,
}

#[allow(clippy::too_many_arguments)]
fn common(
    reachability: Option<&[String]>,
    reachability_timeout: Option<&str>,
    hold_down: Option<&str>,
    owner_poll: Option<&str>,
    sns_topic_arn: Option<&str>,
    alerts: Option<&AlertSettings>,
    cx: &mut Ctx<'_>,
) -> Common {
    let timeout = cx.duration(
        reachability_timeout,
        defaults::REACHABILITY_TIMEOUT,
        limits::SHORT_TIMEOUT,
        "reachability_timeout",
    );
    let targets = match reachability {
        None if cx.unparsed("reachability") => None,
        None => cx.fail(
            "missing `reachability`: a private address is used from inside the VPC, and checkip proves only the internet path; \
             name at least one place in the VPC this node must reach first, e.g. [\"10.0.0.2:53\"] (the VPC's DNS resolver)",
        ),
        Some([]) => cx.fail("`reachability` is empty: name at least one \"host:port\" or http(s) URL in the VPC"),
        Some(list) => {
            let parsed: Vec<Option<ReachTarget>> = list.iter().map(|t| reach_target(t, cx)).collect();
            parsed.into_iter().collect()
        }
    };
    let hold_down = cx.duration(
        hold_down,
        defaults::HOLD_DOWN,
        limits::HOLD_DOWN,
        "hold_down",
    );
    let owner_poll = cx.duration(
        owner_poll,
        defaults::OWNER_POLL,
        limits::OWNER_POLL,
        "owner_poll",
    );
    let topic = topic_or_alerts(sns_topic_arn, "sns_topic_arn", alerts, cx);
    if matches!(topic, Some(None)) && !cx.unparsed("sns_topic_arn") {
        cx.err("no SNS topic for the failover alert: set `sns_topic_arn` here or in [alerts]");
    }
    Common {
        reachability: match (targets, timeout) {
            (Some(targets), Some(timeout)) => Some(ReachSpec { targets, timeout }),
            _ => None,
        },
        hold_down,
        sns_topic_arn: topic,
        owner_poll,
    }
}

/// `"host:port"` (an IPv4 address and a port) or an http(s) URL.
fn reach_target(s: &str, cx: &mut Ctx<'_>) -> Option<ReachTarget> {
    if s.contains("://") {
        return cx.url(s, "reachability").map(ReachTarget::Http);
    }
    match s.parse::<std::net::SocketAddrV4>() {
        Ok(a) if a.port() != 0 && !a.ip().is_unspecified() => {
            Some(ReachTarget::Tcp(std::net::SocketAddr::V4(a)))
        }
        _ => cx.fail(format!(
            "`reachability` entry {s:?}: write \"IPv4:port\" (a TCP connection must be accepted) or an http:// or https:// URL"
        )),
    }
}

/// A Linux interface name: 1 to 15 bytes (IFNAMSIZ - 1), no `/`, no whitespace, not `.`/`..`.
fn interface(s: &str, cx: &mut Ctx<'_>) -> Option<String> {
    let ok = (1..=15).contains(&s.len())
        && !s
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
        && s != "."
        && s != "..";
    if ok {
        Some(s.to_owned())
    } else {
        cx.fail(format!(
            "`interface` = {s:?}: not a network interface name (1 to 15 characters, no '/', ':' or whitespace)"
        ))
    }
}

/// An address a client in the VPC can be sent to: not loopback, link-local, multicast,
/// broadcast or unspecified.
fn unicast(ip: Ipv4Addr, what: &str, cx: &mut Ctx<'_>) -> Option<Ipv4Addr> {
    if ip.is_loopback()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_unspecified()
    {
        return cx.fail(format!(
            "`{what}` = \"{ip}\": a loopback, link-local, multicast, broadcast or unspecified address cannot be moved between nodes"
        ));
    }
    Some(ip)
}

pub(super) fn private_ip(
    name: &str,
    c: &RawClaimPrivateIp,
    alerts: Option<&AlertSettings>,
    node: Option<&NodeSettings>,
    mut cx: Ctx<'_>,
) -> Option<ClaimPrivateIpSpec> {
    let ip = match c.private_ip.as_deref() {
        None if cx.unparsed("private_ip") => None,
        None => {
            cx.fail("missing `private_ip`: the secondary private IP the nodes move between them")
        }
        Some(s) => cx
            .ipv4(s, "private_ip")
            .and_then(|ip| unicast(ip, "private_ip", &mut cx)),
    };
    if let (Some(ip), Some(node)) = (ip, node) {
        if let Some(net) = node.subnet_cidr.filter(|n| !n.contains(&ip)) {
            cx.err(format!(
                "`private_ip` = \"{ip}\" is in another subnet than this node's ([node] subnet_cidr = \"{net}\"): \
                 a secondary private IP moves only between ENIs of one subnet; use `claim_route` across subnets"
            ));
        }
        if let Some(net) = node.subnet_cidr.filter(|n| n.contains(&ip)) {
            // EC2 keeps the first four addresses of a subnet and its last for itself (VPC
            // User Guide, "Subnet CIDR blocks"): no interface can be given one.
            let offset = u32::from(ip) - u32::from(net.network());
            if offset < 4 || ip == net.broadcast() {
                cx.err(format!(
                    "`private_ip` = \"{ip}\" is one of the five addresses EC2 reserves in {net} (the first four and the last): no interface can hold it"
                ));
            }
        }
        if node.private_ip == Some(ip) {
            cx.err(format!(
                "`private_ip` = \"{ip}\" is this node's own private IP ([node] private_ip): the moving address must be a secondary one"
            ));
        }
    }
    let iface = c.interface.as_deref().map(|s| interface(s, &mut cx));
    let common = common(
        c.reachability.as_deref(),
        c.reachability_timeout.as_deref(),
        c.hold_down.as_deref(),
        c.owner_poll.as_deref(),
        c.sns_topic_arn.as_deref(),
        alerts,
        &mut cx,
    );
    cx.finish(|| {
        Some(ClaimPrivateIpSpec {
            name: name.to_owned(),
            private_ip: ip?,
            interface: match iface {
                None => None,
                Some(i) => Some(i?),
            },
            reachability: common.reachability?,
            hold_down: common.hold_down?,
            sns_topic_arn: common.sns_topic_arn.flatten(),
            owner_poll: common.owner_poll?,
        })
    })
}

pub(super) fn route(
    name: &str,
    c: &RawClaimRoute,
    alerts: Option<&AlertSettings>,
    node: Option<&NodeSettings>,
    mut cx: Ctx<'_>,
) -> Option<ClaimRouteSpec> {
    let destination = match c.destination.as_deref() {
        None if cx.unparsed("destination") => None,
        None => cx.fail("missing `destination`: the overlay IP the route sends to this node"),
        // A `/32` written out is accepted: it is what the route is.
        Some(s) => cx
            .ipv4(s.strip_suffix("/32").unwrap_or(s), "destination")
            .and_then(|ip| unicast(ip, "destination", &mut cx)),
    };
    if let (Some(ip), Some(node)) = (destination, node) {
        if let Some(net) = node.vpc_cidrs.iter().find(|n| n.contains(&ip)) {
            cx.err(format!(
                "`destination` = \"{ip}\" is inside the VPC ([node] vpc_cidrs has \"{net}\"): an overlay IP must lie outside every VPC CIDR block, \
                 since EC2 routes addresses inside the VPC itself; use `claim_private_ip` for an address in a subnet"
            ));
        }
    }
    let tables = match c.route_table_ids.as_deref() {
        None if cx.unparsed("route_table_ids") => None,
        None => cx.fail("missing `route_table_ids`: the route tables (rtb-...) that must send the overlay IP to this node"),
        Some([]) => cx.fail("`route_table_ids` is empty: list every route table whose subnets' clients use the overlay IP"),
        Some(list) => {
            let mut seen = std::collections::BTreeSet::new();
            let mut ok = Vec::new();
            for t in list {
                let hex = t
                    .strip_prefix("rtb-")
                    .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()));
                if !hex {
                    ok.push(cx.fail(format!(
                        "`route_table_ids` entry {t:?}: a route table id is \"rtb-\" and hexadecimal digits, like rtb-0123456789abcdef0"
                    )));
                } else if let Some(id) = cx.prefixed_id(t, "rtb-", "route_table_ids") {
                    if seen.insert(id.clone()) {
                        ok.push(Some(id));
                    } else {
                        ok.push(cx.fail(format!("`route_table_ids` lists {id} twice")));
                    }
                } else {
                    ok.push(None);
                }
            }
            ok.into_iter().collect::<Option<Vec<_>>>()
        }
    };
    let iface = interface(
        c.interface
            .as_deref()
            .unwrap_or(defaults::OVERLAY_INTERFACE),
        &mut cx,
    );
    let common = common(
        c.reachability.as_deref(),
        c.reachability_timeout.as_deref(),
        c.hold_down.as_deref(),
        c.owner_poll.as_deref(),
        c.sns_topic_arn.as_deref(),
        alerts,
        &mut cx,
    );
    cx.finish(|| {
        Some(ClaimRouteSpec {
            name: name.to_owned(),
            destination: destination?,
            route_table_ids: tables?,
            interface: iface?,
            reachability: common.reachability?,
            hold_down: common.hold_down?,
            sns_topic_arn: common.sns_topic_arn.flatten(),
            owner_poll: common.owner_poll?,
        })
    })
}
