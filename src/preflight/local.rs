//! The checks on this machine: the state directory, instance metadata (this node's identity,
//! its ENI and private IPs), checkip (against who EC2 says holds each Elastic IP), HAProxy's
//! stats sockets, the claims' readiness probe, and what backend sync needs besides AWS (the
//! master CLI, the configuration file's directory, the Consul agent).

use super::aws::Owner;
use super::{in_use, Check, Report};
use crate::config::{
    ActionSpec, ApplyMode, CheckSpec, ClaimEipSpec, ClaimProvider, Config, ReloadMethod, SourceSpec,
};
use crate::providers::aws::imds::{IdentityError, IdentitySource, MetadataError, NodeIdentity};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Who this process runs as, for the fixes: `haproxy-watchdog (uid 998)`.
fn whoami() -> String {
    let uid = nix::unistd::getuid();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "?".into());
    format!("{name} (uid {uid})")
}

/// The `claim_eip` actions an enabled rule runs.
fn claims(config: &Config) -> Vec<&ClaimEipSpec> {
    config
        .actions
        .iter()
        .filter(|(name, _)| in_use(config, name))
        .filter_map(|(_, a)| match a {
            ActionSpec::ClaimEip(c) => Some(c),
            _ => None,
        })
        .collect()
}

/// The `claim_private_ip` and `claim_route` actions an enabled rule runs: (name, spec).
pub(super) fn private_claims(config: &Config) -> Vec<(&str, &ActionSpec)> {
    config
        .actions
        .iter()
        .filter(|(name, _)| in_use(config, name))
        .filter(|(_, a)| a.reachability().is_some())
        .map(|(n, a)| (n.as_str(), a))
        .collect()
}

/// What a private claim needs on this machine: its `reachability` answers (the VPC path,
/// which checkip does not prove), its local interface is there, and the process may change
/// addresses (`CAP_NET_ADMIN`).
pub(super) async fn private(report: &mut Report, config: &Config, me: Option<&NodeIdentity>) {
    let claims = private_claims(config);
    if claims.is_empty() {
        return;
    }
    let http = match crate::checks::http_client(config.needs_tls()) {
        Ok(h) => h,
        Err(e) => {
            report.push(Check::fail(
                "reachability",
                "reachability probes",
                format!("cannot set up the HTTP client: {e}"),
                "install the ca-certificates package",
            ));
            return;
        }
    };
    for (name, a) in &claims {
        let Some(reach) = a.reachability() else {
            continue;
        };
        let id = format!("reachability {name}");
        let what = format!(
            "reachability of action {name:?} ({})",
            reach
                .targets
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        match crate::checks::reach::any(reach, &http).await {
            Ok(which) => report.push(Check::pass(id, format!("{what}: reached {which}"))),
            Err(e) => report.push(Check::fail(
                id,
                what,
                format!("none answered: {e}; a claim would be refused (vpc_unreachable)"),
                format!(
                    "let this node reach one of them (route, security group, network ACL), or name in `reachability` of action {name:?} a place in the VPC that is up (the VPC's DNS resolver, VPC base address + 2, port 53)"
                ),
            )),
        }
        let iface = match a {
            ActionSpec::ClaimPrivateIp(c) => match (&c.interface, me) {
                (Some(n), _) => Some(crate::actions::claim::local_address::Interface::Named(
                    n.clone(),
                )),
                (None, Some(me)) => Some(
                    crate::actions::claim::local_address::Interface::Carrying(me.private_ip),
                ),
                (None, None) => None,
            },
            ActionSpec::ClaimRoute(c) => Some(
                crate::actions::claim::local_address::Interface::Named(c.interface.clone()),
            ),
            _ => None,
        };
        let id = format!("interface {name}");
        let what = format!("local interface of action {name:?}");
        match iface {
            None => report.push(Check::skip(id, what, "this node's private IP is not known (instance metadata, above)")),
            Some(i) => match crate::actions::claim::local_address::find(&i).await {
                Ok(()) => report.push(Check::pass(id, format!("{what}: {i}"))),
                Err(e) => report.push(Check::fail(
                    id,
                    format!("{what} ({i})"),
                    e.to_string(),
                    format!("set `interface` of action {name:?} to one of this machine's interfaces (`ip -br link`)"),
                )),
            },
        }
    }
    let what = format!(
        "CAP_NET_ADMIN for the private claims' local addresses, as {}",
        whoami()
    );
    if crate::actions::claim::local_address::may_change_addresses() {
        report.push(Check::pass("cap_net_admin", what));
    } else if let Some(dropin) = dropin_granting_net_admin() {
        report.push(Check::skip(
            "cap_net_admin",
            what,
            format!(
                "this process lacks it, but {} grants it to the daemon's unit",
                dropin.display()
            ),
        ));
    } else {
        report.push(Check::fail(
            "cap_net_admin",
            what,
            "this process may not add or remove addresses, and no unit drop-in grants it; the daemon needs CAP_NET_ADMIN to put a claimed address on its interface, and a claim refuses without it (local_address_unavailable)",
            "install the unit drop-in: install -D -m 644 /usr/share/doc/haproxy-watchdog/systemd/private-claims.conf /etc/systemd/system/haproxy-watchdog.service.d/private-claims.conf && systemctl daemon-reload && systemctl restart haproxy-watchdog",
        ));
    }
}

/// A drop-in of the daemon's unit that grants `CAP_NET_ADMIN` (`AmbientCapabilities=`), if
/// one is installed: the daemon has the capability although `preflight`, run as another user,
/// does not.
fn dropin_granting_net_admin() -> Option<PathBuf> {
    let dir = Path::new("/etc/systemd/system/haproxy-watchdog.service.d");
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.extension().is_some_and(|x| x == "conf")
                && std::fs::read_to_string(p).is_ok_and(|t| {
                    t.lines().any(|l| {
                        let l = l.trim();
                        l.starts_with("AmbientCapabilities=") && l.contains("CAP_NET_ADMIN")
                    })
                })
        })
}

/// Why a directory does not take a new file, with the fix: one file is created and removed
/// at once. `create` is the fix's way to make it when it is missing.
fn try_dir(dir: &Path, create: &str) -> Result<(), (String, String)> {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => {
            return Err((
                format!("{} exists but is not a directory", dir.display()),
                format!(
                    "move the file {} out of the way (or choose another path)",
                    dir.display()
                ),
            ))
        }
        _ => {}
    }
    let probe = dir.join(format!(".preflight-{}", std::process::id()));
    let made = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe);
    match made {
        Ok(f) => {
            drop(f);
            std::fs::remove_file(&probe).map_err(|e| {
                (
                    format!("created {} but cannot remove it: {e}", probe.display()),
                    format!(
                        "remove it by hand, and give {} write access to the directory",
                        whoami()
                    ),
                )
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err((
            format!(
                "cannot create a file in it as {}: {e} (it does not exist)",
                whoami()
            ),
            create.to_owned(),
        )),
        Err(e) => Err((
            format!("cannot create a file in it as {}: {e}", whoami()),
            format!(
                "give {} write access to {} (owner, or group with mode g+w)",
                whoami(),
                dir.display()
            ),
        )),
    }
}

/// The state directory takes a new file: one is created and removed at once. The state lock
/// is not taken, so a running daemon is not disturbed.
pub(super) fn state_dir(report: &mut Report, dir: Option<&Path>) {
    let Some(dir) = dir else {
        report.push(Check::skip(
            "state dir",
            "state directory",
            "--state-dir \"\": state is kept in memory only",
        ));
        return;
    };
    let what = format!("state directory {} is writable", dir.display());
    let create = format!(
        "create it owned by the service user (the packages make {} for haproxy-watchdog; `install -d -o haproxy-watchdog -m 750 {}`), or pass --state-dir",
        crate::config::defaults::STATE_DIR,
        dir.display()
    );
    match try_dir(dir, &create) {
        Ok(()) => report.push(Check::pass("state dir", what)),
        Err((why, fix)) => report.push(Check::fail("state dir", what, why, fix)),
    }
}

/// This node's identity, when an EC2 claim needs it: from `[node]` and instance metadata
/// (IMDSv2), as the daemon resolves it. Each claim's private IP must be on the ENI.
pub(super) async fn identity(report: &mut Report, config: &Config) -> Option<NodeIdentity> {
    let claims: Vec<_> = claims(config)
        .into_iter()
        .filter(|c| c.provider == ClaimProvider::Ec2)
        .collect();
    if claims.is_empty() && private_claims(config).is_empty() {
        report.push(Check::skip(
            "imds",
            "instance metadata",
            "no EC2 claim (claim_eip, claim_private_ip, claim_route) needs this node's identity",
        ));
        return None;
    }
    let n = &config.node;
    let endpoint = n
        .imds_endpoint
        .clone()
        .or_else(|| std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT").ok())
        .unwrap_or_else(|| "http://169.254.169.254".into());
    let all_set =
        n.instance_id.is_some() && n.network_interface_id.is_some() && n.private_ip.is_some();
    let source = IdentitySource::new(n.clone());
    let id = match source.get().await {
        Ok(id) => id.clone(),
        Err(e) => {
            let fix = match &e {
                IdentityError::Lookup(MetadataError::NotAttached { eni }) => format!(
                    "[node] network_interface_id = {eni} is not an ENI of this instance: set it to one attached to it (`aws ec2 describe-network-interfaces --filters Name=attachment.instance-id,Values=<this instance>`, or IMDS network/interfaces/macs/*/interface-id), or remove it to use the primary ENI"
                ),
                IdentityError::Lookup(MetadataError::Endpoint { .. }) => {
                    "correct [node] imds_endpoint (an http:// URL), or remove it for the default http://169.254.169.254".to_owned()
                }
                IdentityError::Lookup(
                    MetadataError::Invalid { .. } | MetadataError::NoIpv4s,
                ) => "instance metadata answered something unexpected: retry; if it persists, set instance_id, network_interface_id and private_ip in [node]".to_owned(),
                _ => "run on the EC2 instance with IMDSv2 reachable (hop limit 2 or more inside containers; the metadata service enabled), or set instance_id, network_interface_id and private_ip in [node]".to_owned(),
            };
            report.push(Check::fail(
                "imds",
                format!("instance metadata (IMDSv2) at {endpoint}"),
                e.to_string(),
                fix,
            ));
            return None;
        }
    };
    if all_set {
        report.push(Check::skip(
            "imds",
            "instance metadata",
            format!(
                "[node] sets the instance ({}), ENI ({}) and private IP ({}); metadata not asked, so they are not cross-checked",
                id.instance_id, id.network_interface_id, id.private_ip
            ),
        ));
        return Some(id);
    }
    report.push(Check::pass(
        "imds",
        format!(
            "instance metadata (IMDSv2) at {endpoint}: this node is {} on {}, private IP {}",
            id.instance_id, id.network_interface_id, id.private_ip
        ),
    ));
    let mut wanted: BTreeMap<Ipv4Addr, (String, String)> = BTreeMap::new();
    if let Some(p) = n.private_ip {
        wanted.insert(p, ("[node] private_ip".into(), "[node] private_ip".into()));
    }
    for c in &claims {
        if let Some(p) = c.private_ip {
            wanted.insert(
                p,
                (
                    format!("action {:?}", c.name),
                    format!("`private_ip` of action {:?}", c.name),
                ),
            );
        }
    }
    for (ip, (by, key)) in wanted {
        let what = format!("private IP {ip} ({by}) is on {}", id.network_interface_id);
        let check = format!("private ip {ip}");
        let listed = id
            .private_ips
            .iter()
            .map(Ipv4Addr::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        if id.private_ips.contains(&ip) {
            report.push(Check::pass(check, what));
        } else {
            report.push(Check::fail(
                check,
                what,
                format!("instance metadata lists {listed} on it"),
                format!(
                    "assign {ip} to {} as a secondary private IP (`aws ec2 assign-private-ip-addresses`), or set {key} to one of {listed}",
                    id.network_interface_id
                ),
            ));
        }
    }
    Some(id)
}

/// What checkip's answer says against who EC2 says holds each claim's Elastic IP.
#[derive(Debug, PartialEq, Eq)]
enum Egress {
    /// Another public address, or the Elastic IP on this node's ENI and private IP.
    Fine,
    /// The Elastic IP, but who holds it or who this node is could not be read: why.
    Unknown(String),
    /// The Elastic IP, held elsewhere: why and the fix.
    Contradiction(String, String),
}

/// Does checkip answering `egress` contradict the owner EC2 reports? Only the claim's own ENI
/// and private IP may make this node's traffic leave from its Elastic IP.
fn egress_verdict(
    egress: Ipv4Addr,
    owners: &[Owner],
    config: &Config,
    me: Option<&NodeIdentity>,
) -> Egress {
    let Some(owner) = owners.iter().find(|o| o.public_ip == egress) else {
        let unread = claims(config).into_iter().find(|c| {
            c.provider == ClaimProvider::Ec2 && c.eip == crate::config::EipRef::PublicIp(egress)
        });
        return match unread {
            Some(c) => Egress::Unknown(format!(
                "it answers {egress}, the Elastic IP of action {:?}, whose holder could not be read (above): whether this node holds it is not known",
                c.name
            )),
            None => Egress::Fine,
        };
    };
    let a = &owner.address;
    let Some(me) = me else {
        return Egress::Unknown(format!(
            "it answers {egress}, the Elastic IP of action {:?}, held by {}; this node's ENI is not known (instance metadata, above), so whether that is this node is not known",
            owner.action,
            a.holder()
        ));
    };
    let claim_ip = config.actions.get(&owner.action).and_then(|s| match s {
        ActionSpec::ClaimEip(c) => c.private_ip,
        _ => None,
    });
    let want_ip = claim_ip.unwrap_or(me.private_ip);
    let on_eni = a.network_interface_id.as_deref() == Some(me.network_interface_id.as_str());
    // EC2 may not report the private IP; then the ENI decides.
    if on_eni && a.private_ip.is_none_or(|p| p == want_ip) {
        return Egress::Fine;
    }
    Egress::Contradiction(
        format!(
            "it answers {egress}, the Elastic IP of action {:?}, but EC2 says {egress} is held by {}, and this node is {} on {}, private IP {want_ip}: a NAT or proxy in the path makes this node's traffic leave from the Elastic IP although it does not hold it, and the claim would take that for \"already ours\" and never move the address",
            owner.action,
            a.holder(),
            me.instance_id,
            me.network_interface_id
        ),
        "send checkip (and this node's outbound traffic) directly through the instance's own public address or a NAT gateway whose address is not the Elastic IP (route table, proxy settings: HTTPS_PROXY/NO_PROXY in the service's environment), or set [egress] checkip_url to a service reached that way".to_owned(),
    )
}

/// Each checkip URL in use answers one public IPv4 address: `[egress]`'s when a claim
/// verifies egress, and each `egress` rule's. `[egress]`'s answer must not contradict who EC2
/// says holds a claim's Elastic IP (`owners`).
pub(super) async fn checkip(
    report: &mut Report,
    config: &Config,
    owners: &[Owner],
    me: Option<&NodeIdentity>,
) {
    // url -> (url, timeout, who uses it, compared with the owners)
    let mut urls: BTreeMap<String, (reqwest::Url, Duration, String, bool)> = BTreeMap::new();
    if !claims(config).is_empty() {
        urls.insert(
            config.egress.checkip_url.to_string(),
            (
                config.egress.checkip_url.clone(),
                config.egress.timeout,
                "[egress]".into(),
                true,
            ),
        );
    }
    for r in &config.rules {
        if let CheckSpec::Egress(e) = &r.check {
            urls.entry(e.checkip_url.to_string()).or_insert((
                e.checkip_url.clone(),
                r.timeout,
                format!("rule {:?}", r.name),
                false,
            ));
        }
    }
    if urls.is_empty() {
        report.push(Check::skip(
            "checkip",
            "checkip",
            "no claim_eip action or egress rule asks checkip",
        ));
        return;
    }
    let client = match crate::checks::http_client(config.needs_tls()) {
        Ok(c) => c,
        Err(e) => {
            report.push(Check::fail(
                "checkip",
                "checkip",
                format!(
                    "cannot set up the HTTP client: {}",
                    crate::telemetry::chain(&e)
                ),
                "install the ca-certificates package",
            ));
            return;
        }
    };
    for (_, (url, timeout, by, claims)) in urls {
        let check = format!("checkip {url}");
        let what = format!("checkip {url} ({by})");
        match crate::checks::checkip::egress_ip(&client, &url, timeout).await {
            Ok(ip) => match (claims, egress_verdict(ip, owners, config, me)) {
                (false, _) | (true, Egress::Fine) => report.push(Check::pass(
                    check,
                    format!("{what} answers a public IPv4 address: {ip}"),
                )),
                (true, Egress::Unknown(why)) => report.push(Check::skip(check, what, why)),
                (true, Egress::Contradiction(why, fix)) => {
                    report.push(Check::fail(check, what, why, fix))
                }
            },
            Err(e) => report.push(Check::fail(
                check,
                what,
                e.to_string(),
                "let this node reach it (security group, NAT, proxy), or set another checkip_url (https://checkip.amazonaws.com/ by default)",
            )),
        }
    }
}

/// Why a stats socket (or master CLI) at `path` did not answer, with the fix; `key` is the
/// configuration key that names it.
fn socket_failure(
    path: &Path,
    key: &str,
    err: Option<&crate::haproxy::socket::SocketError>,
    timeout: Duration,
    command: &str,
) -> (String, String) {
    use crate::haproxy::socket::SocketError;
    let p = path.display();
    let wrong_path = if command == "show proc" {
        format!("point {key} at HAProxy's master CLI (the `-S` argument of HAProxy's command line, in master-worker mode)")
    } else {
        format!("point {key} at the path of HAProxy's `stats socket` line (`grep -r 'stats socket' /etc/haproxy/`)")
    };
    match std::fs::metadata(path) {
        Ok(m) if !m.file_type().is_socket() => {
            let kind = if m.is_dir() {
                "a directory"
            } else if m.is_file() {
                "a regular file"
            } else {
                "not a socket"
            };
            return (
                format!("{p} exists but is not a socket ({kind})"),
                format!("{wrong_path}; if {p} was created by mistake, remove it and restart HAProxy so it makes the socket"),
            );
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (
                format!("{p} does not exist: a wrong path, or HAProxy is not running"),
                format!("{wrong_path}, and check that HAProxy runs (`systemctl status haproxy`)"),
            );
        }
        _ => {}
    }
    let denied = || {
        format!(
            "give {} read-write access to it: `stats socket {p} mode 660 group haproxy level admin` in HAProxy's configuration, and the user in group haproxy",
            whoami()
        )
    };
    match err {
        None => (
            format!("no answer to `{command}` within {}: HAProxy is hung or overloaded, or something else listens there", humantime::format_duration(timeout)),
            format!("check that HAProxy answers (`echo '{command}' | socat stdio {p}`); if it is only slow, raise the timeout"),
        ),
        Some(e @ SocketError::Denied { .. }) => (e.to_string(), denied()),
        Some(e @ SocketError::Connect { source, .. }) => match source.kind() {
            std::io::ErrorKind::ConnectionRefused => (
                format!("{e}: nobody listens on it, HAProxy is not running or this is a stale socket left by a stopped HAProxy"),
                format!("start HAProxy (`systemctl status haproxy`), and check that its `stats socket` line names {p}"),
            ),
            std::io::ErrorKind::NotFound => (
                format!("{e}: a wrong path, or HAProxy is not running"),
                format!("{wrong_path}, and check that HAProxy runs"),
            ),
            std::io::ErrorKind::PermissionDenied => (e.to_string(), denied()),
            _ => (e.to_string(), format!("check that HAProxy runs and answers on {p}, and retry")),
        },
        Some(e) => (
            format!("{e}: HAProxy did not answer `{command}` as expected"),
            format!("check that {p} is HAProxy's socket and HAProxy is healthy (`echo '{command}' | socat stdio {p}`), and retry"),
        ),
    }
}

/// Each stats socket the configuration uses answers `show info`; where backend sync changes
/// servers through it, its level must be admin (`show cli level`). Returns the sockets that
/// failed.
pub(super) async fn stats_sockets(report: &mut Report, config: &Config) -> BTreeSet<PathBuf> {
    let mut failed = BTreeSet::new();
    // path -> (needs admin, timeout, who uses it, its key)
    let mut sockets: BTreeMap<PathBuf, (bool, Duration, String, String)> = BTreeMap::new();
    let mut add = |p: &Path, admin: bool, timeout: Duration, by: String, key: String| {
        let e = sockets
            .entry(p.to_owned())
            .or_insert((false, timeout, by, key));
        e.0 |= admin;
    };
    if let (false, Some(p)) = (claims(config).is_empty(), &config.haproxy.stats_socket) {
        add(
            p,
            false,
            config.haproxy.timeout,
            "[haproxy]".into(),
            "[haproxy] stats_socket".into(),
        );
    }
    for r in &config.rules {
        let key = format!("`stats_socket` of rule {:?}", r.name);
        match &r.check {
            CheckSpec::Haproxy(h) => {
                if let Some(p) = &h.stats_socket {
                    add(p, false, h.timeout, format!("rule {:?}", r.name), key);
                }
            }
            CheckSpec::BackendSync(b) => add(
                &b.stats_socket,
                b.apply != ApplyMode::Peers,
                r.timeout,
                format!("rule {:?}", r.name),
                key,
            ),
            _ => {}
        }
    }
    if sockets.is_empty() {
        report.push(Check::skip(
            "stats socket",
            "HAProxy stats socket",
            "the configuration uses none",
        ));
        return failed;
    }
    for (path, (admin, timeout, by, key)) in sockets {
        let check = format!("stats socket {}", path.display());
        let what = format!("HAProxy stats socket {} ({by}) is readable", path.display());
        match ask(&path, "show info", timeout).await {
            Ok(reply) if reply.contains("Name:") => report.push(Check::pass(check, what)),
            Ok(reply) => {
                report.push(Check::fail(
                    check,
                    what,
                    format!(
                        "`show info` answered {:?}",
                        reply.lines().next().unwrap_or("nothing")
                    ),
                    format!("point {key} at HAProxy's stats socket (not the master CLI)"),
                ));
                failed.insert(path);
                continue;
            }
            Err(e) => {
                let (why, fix) = socket_failure(&path, &key, e.as_ref(), timeout, "show info");
                report.push(Check::fail(check, what, why, fix));
                failed.insert(path);
                continue;
            }
        }
        if !admin {
            continue;
        }
        let check = format!("stats socket level {}", path.display());
        let what = format!(
            "HAProxy stats socket {} ({by}) is writable (level admin, for backend sync)",
            path.display()
        );
        match ask(&path, "show cli level", timeout).await {
            Ok(reply) if reply.trim() == "admin" => report.push(Check::pass(check, what)),
            Ok(reply) => report.push(Check::fail(
                check,
                what,
                format!("its level is {:?}", reply.trim()),
                format!(
                    "add `level admin` to `stats socket {}` in HAProxy's configuration",
                    path.display()
                ),
            )),
            Err(e) => {
                let (why, fix) = socket_failure(&path, &key, e.as_ref(), timeout, "show cli level");
                report.push(Check::fail(check, what, why, fix));
            }
        }
    }
    failed
}

/// One command with a deadline. Err(None): no answer in time.
async fn ask(
    path: &Path,
    command: &str,
    timeout: Duration,
) -> Result<String, Option<crate::haproxy::socket::SocketError>> {
    match tokio::time::timeout(timeout, crate::haproxy::socket::command(path, command)).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(e)) => Err(Some(e)),
        Err(_) => Err(None),
    }
}

/// The readiness gate every claim passes before it moves an Elastic IP (`[haproxy]`: the
/// stats socket, its frontend and backend, the health URL), run exactly as the claim runs it.
pub(super) async fn readiness(
    report: &mut Report,
    config: &Config,
    failed_sockets: &BTreeSet<PathBuf>,
) {
    if claims(config).is_empty() && private_claims(config).is_empty() {
        return;
    }
    let h = &config.haproxy;
    let mut parts = Vec::new();
    if let Some(s) = &h.stats_socket {
        parts.push(format!("stats socket {}", s.display()));
    }
    if let Some(f) = &h.frontend {
        parts.push(format!("frontend {f} OPEN"));
    }
    if let Some(b) = &h.backend {
        parts.push(format!("backend {b} UP"));
    }
    if let Some(u) = &h.health_url {
        parts.push(format!("health_url {u}"));
    }
    let what = format!(
        "the claims' HAProxy readiness gate ([haproxy]: {})",
        parts.join(", ")
    );
    if h.stats_socket
        .as_ref()
        .is_some_and(|s| failed_sockets.contains(s))
    {
        report.push(Check::skip(
            "haproxy readiness",
            what,
            "its stats socket failed (above)",
        ));
        return;
    }
    let client = match crate::checks::http_client(config.needs_tls()) {
        Ok(c) => c,
        Err(e) => {
            report.push(Check::fail(
                "haproxy readiness",
                what,
                format!(
                    "cannot set up the HTTP client: {}",
                    crate::telemetry::chain(&e)
                ),
                "install the ca-certificates package",
            ));
            return;
        }
    };
    let o = crate::checks::haproxy::probe(h, &client).await;
    if o.ok {
        report.push(Check::pass(
            "haproxy readiness",
            format!("{what}: {}", o.detail),
        ));
    } else {
        report.push(Check::fail(
            "haproxy readiness",
            what,
            format!("{}: every claim would be refused (local_haproxy_unhealthy)", o.detail),
            "make [haproxy] name what this HAProxy serves (`frontend`/`backend` as in `show stat`, `health_url`), or bring that frontend/backend up before relying on the claim",
        ));
    }
}

/// What each backend sync rule needs besides AWS and its stats socket: the master CLI it
/// reloads through, a writable directory for its configuration file, the Consul agent it
/// reads; a lifecycle hook's existence cannot be read (no call for it), said so.
pub(super) async fn backend_sync(report: &mut Report, config: &Config) {
    for r in &config.rules {
        let CheckSpec::BackendSync(b) = &r.check else {
            continue;
        };
        let by = format!("rule {:?}", r.name);
        match &b.reload.method {
            ReloadMethod::MasterSocket(p) => {
                let check = format!("master socket {}", p.display());
                let what = format!(
                    "HAProxy master CLI {} ({by}) answers `show proc`",
                    p.display()
                );
                let key = format!("`reload.master_socket` of rule {:?}", r.name);
                match ask(p, "show proc", r.timeout).await {
                    Ok(reply) if reply.contains("master") => report.push(Check::pass(check, what)),
                    Ok(reply) => report.push(Check::fail(
                        check,
                        what,
                        format!("`show proc` answered {:?}, not the master's process list", reply.lines().next().unwrap_or("nothing")),
                        format!("point {key} at HAProxy's master CLI (`-S` of HAProxy's command line, master-worker mode), not a stats socket"),
                    )),
                    // Runtime mode reloads only to grow the slots: it syncs without one.
                    Err(e) if b.apply == ApplyMode::Runtime => {
                        let (why, fix) = socket_failure(p, &key, e.as_ref(), r.timeout, "show proc");
                        report.push(Check::skip(
                            check,
                            what,
                            format!("{why}; runtime mode reloads only to grow the slots when they run out, which would then fail ({fix})"),
                        ));
                    }
                    Err(e) => {
                        let (why, fix) = socket_failure(p, &key, e.as_ref(), r.timeout, "show proc");
                        report.push(Check::fail(check, what, why, fix));
                    }
                }
            }
            ReloadMethod::Command(argv) => report.push(Check::skip(
                format!("reload command {}", r.name),
                format!("reload command `{}` ({by})", argv.join(" ")),
                "not run: it would reload HAProxy",
            )),
        }
        let dir = b
            .haproxy_config
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let check = format!("config dir {}", dir.display());
        let what = format!(
            "directory {} of haproxy_config ({by}) takes the new file written beside it",
            dir.display()
        );
        let create = format!(
            "create {} (HAProxy's configuration directory) or correct `haproxy_config` of rule {:?}",
            dir.display(),
            r.name
        );
        match try_dir(dir, &create) {
            Ok(()) => report.push(Check::pass(check, what)),
            Err((why, fix)) => report.push(Check::fail(check, what, why, fix)),
        }
        match &b.source {
            SourceSpec::Consul(c) => {
                let check = format!("consul {}", r.name);
                let what = format!(
                    "Consul agent {} ({by}) answers for service {:?}",
                    c.address, c.service
                );
                let client = match crate::checks::http_client(c.address.scheme() == "https") {
                    Ok(h) => h,
                    Err(e) => {
                        report.push(Check::fail(
                            check,
                            what,
                            crate::telemetry::chain(&e),
                            "install the ca-certificates package",
                        ));
                        continue;
                    }
                };
                // One non-blocking read of the service's health, as the daemon's first query.
                let mut consul = crate::providers::consul::Consul::new(c.clone(), client);
                match consul.instances(None, r.timeout).await {
                    Ok(i) => report.push(Check::pass(check, format!("{what}: {} instance(s)", i.len()))),
                    Err(e) => report.push(Check::fail(
                        check,
                        what,
                        e.to_string(),
                        format!("check `address`, `service` and `token` of rule {:?}'s source, and that the Consul agent runs and this node reaches it", r.name),
                    )),
                }
            }
            SourceSpec::Asg(a) => {
                if let Some(hook) = &a.lifecycle_hook {
                    report.push(Check::skip(
                        format!("lifecycle hook {}", r.name),
                        format!("lifecycle hook {hook:?} of group {:?} ({by})", a.group),
                        format!("its existence is not checked (the daemon makes no DescribeLifecycleHooks call): `aws autoscaling describe-lifecycle-hooks --auto-scaling-group-name {}`", a.group),
                    ));
                }
            }
        }
    }
}

/// Every program the daemon may run, a `program` check's or an `exec` action's: it exists, is
/// a regular file and can be executed by whoever runs preflight (run it as the service user,
/// docs/operations.md, to know for the daemon). Nothing is run.
pub(super) fn programs(report: &mut Report, config: &Config) {
    let mut seen = BTreeSet::new();
    let checks = config.rules.iter().filter_map(|r| match &r.check {
        CheckSpec::Program(p) => {
            Some((p.command[0].as_str(), format!("check of rule {:?}", r.name)))
        }
        _ => None,
    });
    let actions = config.actions.iter().filter_map(|(name, a)| match a {
        ActionSpec::Exec(x) => Some((x.command[0].as_str(), format!("exec action {name:?}"))),
        _ => None,
    });
    for (program, by) in checks.chain(actions) {
        if !seen.insert((program, by.clone())) {
            continue;
        }
        let check = format!("program {program}");
        let what = format!("program {program} ({by}) can be run");
        let path = Path::new(program);
        let runnable = nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok();
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => report.push(Check::fail(
                check,
                what,
                "it does not exist",
                "install it there, or correct the path in `command`",
            )),
            Err(e) => report.push(Check::fail(
                check,
                what,
                format!("cannot look at it: {e}"),
                "make the path and its directories readable by the daemon's user",
            )),
            Ok(m) if !m.is_file() => report.push(Check::fail(
                check,
                what,
                "it is not a regular file",
                "point `command` at the program itself",
            )),
            Ok(_) if !runnable => report.push(Check::fail(
                check,
                what,
                format!("{} may not execute it", whoami()),
                format!("chmod a+x {program} (or make it executable by the daemon's user)"),
            )),
            Ok(_) => match interpreter(path) {
                Ok(()) => report.push(Check::pass(check, what)),
                Err((why, fix)) => report.push(Check::fail(check, what, why, fix)),
            },
        }
    }
}

/// What execve(2) needs of an executable file: an ELF binary, or a `#!` line naming an
/// interpreter that exists and may be executed. Anything else fails with ENOEXEC ("Exec format
/// error"), and a missing interpreter with ENOENT, which reads as if the program were missing.
fn interpreter(program: &Path) -> Result<(), (String, String)> {
    use std::io::Read;
    let mut head = Vec::new();
    if let Err(e) = std::fs::File::open(program).and_then(|f| f.take(256).read_to_end(&mut head)) {
        return Err((
            format!("cannot read it: {e}"),
            "make it readable by the daemon's user".into(),
        ));
    }
    if head.starts_with(b"\x7fELF") {
        return Ok(());
    }
    let Some(line) = head.strip_prefix(b"#!") else {
        return Err((
            "it is neither a #! script nor an ELF binary, so it cannot be executed (Exec format error)".into(),
            "start the script with a #! line such as #!/bin/sh".into(),
        ));
    };
    let line = String::from_utf8_lossy(line.split(|&b| b == b'\n').next().unwrap_or(b""));
    if line.ends_with('\r') {
        return Err((
            "its #! line ends in a carriage return (CRLF line endings), so the kernel looks for an interpreter whose name ends in \\r and finds none (\"No such file or directory\")".into(),
            format!("convert it to LF line endings: sed -i 's/\\r$//' {}", program.display()),
        ));
    }
    let Some(interp) = line.split_whitespace().next() else {
        return Err((
            "its #! line names no interpreter".into(),
            "write one, such as #!/bin/sh".into(),
        ));
    };
    if nix::unistd::access(interp, nix::unistd::AccessFlags::X_OK).is_err() {
        return Err((
            format!("its interpreter {interp} (#! line) does not exist or may not be executed"),
            format!("install {interp}, or correct the #! line"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflight::Outcome;

    #[test]
    fn every_program_the_daemon_may_run_is_looked_at_and_none_is_run() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "#!/bin/sh\ntouch ran\n").unwrap();
        let toml = format!(
            r#"
[rules.ok]
check = {{ type = "program", command = ["/bin/true"] }}
on_fail = ["page"]
[rules.missing]
check = {{ type = "program", command = ["{d}/nope"] }}
[rules.dir]
check = {{ type = "program", command = ["{d}"] }}
[rules.noexec]
check = {{ type = "program", command = ["{d}/plain"] }}
[actions.page]
type = "exec"
command = ["{d}/nope", "ops"]
"#
        );
        let config = crate::config::from_sources(&[("t.toml".into(), toml)])
            .unwrap_or_else(|e| panic!("{e}"));
        let mut r = Report::default();
        programs(&mut r, &config);
        let lines: Vec<String> = r.checks.iter().map(ToString::to_string).collect();
        let text = lines.join("\n");
        for want in [
            "PASS program /bin/true (check of rule \"ok\") can be run".to_owned(),
            format!(
                "FAIL program {d}/nope (check of rule \"missing\") can be run: it does not exist"
            ),
            format!(
                "FAIL program {d} (check of rule \"dir\") can be run: it is not a regular file"
            ),
            format!("FAIL program {d}/nope (exec action \"page\") can be run: it does not exist"),
        ] {
            assert!(text.contains(&want), "missing {want:?} in\n{text}");
        }
        let shebangless = dir.path().join("no-shebang");
        std::fs::write(&shebangless, "echo hi\n").unwrap();
        let bad_interp = dir.path().join("bad-interp");
        std::fs::write(&bad_interp, "#!/nonexistent/interp\n").unwrap();
        let crlf = dir.path().join("crlf");
        std::fs::write(&crlf, "#!/bin/sh\r\nexit 0\r\n").unwrap();
        for f in [&shebangless, &bad_interp, &crlf] {
            std::fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        let toml2 = format!(
            "[rules.a]\ncheck = {{ type = \"program\", command = [\"{d}/no-shebang\"] }}\n\
             [rules.b]\ncheck = {{ type = \"program\", command = [\"{d}/bad-interp\"] }}\n\
             [rules.c]\ncheck = {{ type = \"program\", command = [\"{d}/crlf\"] }}\n"
        );
        let config2 = crate::config::from_sources(&[("t.toml".into(), toml2)])
            .unwrap_or_else(|e| panic!("{e}"));
        let mut r2 = Report::default();
        programs(&mut r2, &config2);
        let text2: Vec<String> = r2.checks.iter().map(ToString::to_string).collect();
        assert!(
            text2[0].contains("neither a #! script nor an ELF binary"),
            "{text2:?}"
        );
        assert!(
            text2[1].contains("its interpreter /nonexistent/interp (#! line) does not exist"),
            "{text2:?}"
        );
        assert!(text2[2].contains("CRLF line endings"), "{text2:?}");
        // Root may execute a file without any x bit only when some x bit is set: none is.
        assert!(
            text.contains(&format!(
                "FAIL program {d}/plain (check of rule \"noexec\") can be run: "
            )),
            "{text}"
        );
        assert!(!dir.path().join("ran").exists());
    }

    #[test]
    fn the_state_directory_is_tried_with_a_file_that_is_removed_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Report::default();
        state_dir(&mut r, Some(dir.path()));
        assert_eq!(r.checks[0].outcome, Outcome::Pass, "{}", r.text());
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());

        let missing = dir.path().join("missing");
        state_dir(&mut r, Some(&missing));
        let line = r.checks[1].to_string();
        assert!(
            line.starts_with(&format!(
                "FAIL state directory {} is writable: cannot create a file in it as ",
                missing.display()
            )),
            "{line}"
        );
        assert!(
            line.contains(". Fix: create it owned by the service user"),
            "{line}"
        );

        state_dir(&mut r, None);
        assert!(matches!(r.checks[2].outcome, Outcome::Skip { .. }));
    }

    /// A fix fits the fault: a state directory that is a regular file is "not a directory",
    /// never `install -d` over an existing file.
    #[test]
    fn fix_fits_a_state_dir_that_is_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state");
        std::fs::write(&file, "").unwrap();
        let mut r = Report::default();
        state_dir(&mut r, Some(&file));
        let line = r.checks[0].to_string();
        assert!(line.contains("exists but is not a directory"), "{line}");
        assert!(!line.contains("install -d"), "{line}");
    }

    fn config(toml: &str) -> Config {
        crate::config::from_sources(&[("t.toml".into(), toml.to_owned())])
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A stats socket's failure is told by its kind: a path that is not a socket, a path that
    /// does not exist, nobody listening; the permission fix only for a refused permission.
    #[tokio::test]
    async fn stats_socket_failures_are_classified() {
        let dir = tempfile::tempdir().unwrap();
        let t = Duration::from_millis(500);
        let key = "[haproxy] stats_socket";
        let why_fix = |p: &Path, e: Option<&crate::haproxy::socket::SocketError>| {
            let (why, fix) = socket_failure(p, key, e, t, "show info");
            format!("{why}. Fix: {fix}")
        };
        // A regular file and a directory: "not a socket", never chmod.
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let e = crate::haproxy::socket::command(&file, "show info")
            .await
            .err();
        let line = why_fix(&file, e.as_ref());
        assert!(line.contains("is not a socket (a regular file)"), "{line}");
        assert!(
            !line.contains("mode 660") && !line.contains("access"),
            "{line}"
        );
        let line = why_fix(dir.path(), None);
        assert!(line.contains("is not a socket (a directory)"), "{line}");
        // Missing: the path.
        let missing = dir.path().join("missing.sock");
        let e = crate::haproxy::socket::command(&missing, "show info")
            .await
            .err();
        let line = why_fix(&missing, e.as_ref());
        assert!(
            line.contains("does not exist") && line.contains("point [haproxy] stats_socket at"),
            "{line}"
        );
        // A stale socket: nobody listens.
        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        let e = crate::haproxy::socket::command(&stale, "show info")
            .await
            .err();
        let line = why_fix(&stale, e.as_ref());
        assert!(
            line.contains("nobody listens on it") && line.contains("start HAProxy"),
            "{line}"
        );
        assert!(!line.contains("mode 660"), "{line}");
        // No answer in time.
        let mute = dir.path().join("mute.sock");
        let _l = std::os::unix::net::UnixListener::bind(&mute).unwrap();
        let line = why_fix(&mute, None);
        assert!(
            line.contains("no answer to `show info` within 500ms"),
            "{line}"
        );
        // A refused permission keeps the permission fix.
        let denied = crate::haproxy::socket::SocketError::Denied {
            path: mute.clone(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            hint: "hint".into(),
        };
        let line = why_fix(&mute, Some(&denied));
        assert!(line.contains("read-write access"), "{line}");
    }

    fn owner(eni: &str, ip: &str) -> Owner {
        Owner {
            action: "claim".into(),
            public_ip: "203.0.113.10".parse().unwrap(),
            address: crate::providers::aws::ec2::AddressState {
                allocation_id: "eipalloc-1".into(),
                public_ip: Some("203.0.113.10".parse().unwrap()),
                association_id: Some("eipassoc-1".into()),
                instance_id: Some("i-0other".into()),
                network_interface_id: Some(eni.into()),
                private_ip: Some(ip.parse().unwrap()),
            },
        }
    }

    /// checkip answering the Elastic IP while EC2 says another ENI holds it is a FAIL: the
    /// claim would take it for "already ours" and never move it. It passes when the EIP is
    /// on this node's ENI and private IP, or checkip answers another address.
    #[test]
    fn checkip_contradicting_the_owner_fails() {
        let c = config(
            r#"
[alerts]
sns_topic_arn = "arn:aws:sns:us-east-1:123456789012:t"
[actions.claim]
type = "claim_eip"
eip = "203.0.113.10"
[rules.web]
check = { type = "http", url = "http://127.0.0.1/" }
on_fail = ["claim"]
"#,
        );
        let me = NodeIdentity {
            instance_id: "i-0me".into(),
            network_interface_id: "eni-me".into(),
            private_ip: "10.0.1.5".parse().unwrap(),
            private_ips: vec!["10.0.1.5".parse().unwrap()],
        };
        let eip: Ipv4Addr = "203.0.113.10".parse().unwrap();
        let other = [owner("eni-other", "10.0.1.9")];
        let Egress::Contradiction(why, fix) = egress_verdict(eip, &other, &c, Some(&me)) else {
            panic!("not a contradiction");
        };
        assert!(
            why.contains("held by i-0other (eni-other, 10.0.1.9)"),
            "{why}"
        );
        assert!(why.contains("a NAT or proxy in the path"), "{why}");
        assert!(!fix.is_empty());
        // Ours: no contradiction.
        let ours = [owner("eni-me", "10.0.1.5")];
        assert_eq!(egress_verdict(eip, &ours, &c, Some(&me)), Egress::Fine);
        // On our ENI but another private IP than the claim's: still not ours.
        let other_ip = [owner("eni-me", "10.0.1.77")];
        assert!(matches!(
            egress_verdict(eip, &other_ip, &c, Some(&me)),
            Egress::Contradiction(..)
        ));
        // checkip answers another public address: nothing to compare.
        let elsewhere: Ipv4Addr = "198.51.100.7".parse().unwrap();
        assert_eq!(
            egress_verdict(elsewhere, &other, &c, Some(&me)),
            Egress::Fine
        );
        // The EIP, but its holder or this node unknown: never a PASS.
        assert!(matches!(
            egress_verdict(eip, &[], &c, Some(&me)),
            Egress::Unknown(_)
        ));
        assert!(matches!(
            egress_verdict(eip, &ours, &c, None),
            Egress::Unknown(_)
        ));
    }

    /// A stats socket answering `show info;show stat` with `reply`, for every connection.
    fn fake_haproxy(path: &Path, reply: &'static str) {
        let l = tokio::net::UnixListener::bind(path).unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(reply.as_bytes()).await;
            }
        });
    }

    /// Preflight runs the claims' own readiness gate: a `[haproxy] backend` HAProxy does not
    /// have fails here, where every claim would be refused.
    #[tokio::test]
    async fn claim_readiness_probe_runs() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("admin.sock");
        fake_haproxy(
            &sock,
            "Name: HAProxy\nStopping: 0\n\n# pxname,svname,status,\napp,BACKEND,UP,\n\n",
        );
        let toml = |backend: &str| {
            format!(
                r#"
[alerts]
sns_topic_arn = "arn:aws:sns:us-east-1:123456789012:t"
[haproxy]
stats_socket = "{}"
backend = "{backend}"
[actions.claim]
type = "claim_eip"
eip = "203.0.113.10"
[rules.web]
check = {{ type = "http", url = "http://127.0.0.1/" }}
on_fail = ["claim"]
"#,
                sock.display()
            )
        };
        let mut r = Report::default();
        readiness(&mut r, &config(&toml("app")), &BTreeSet::new()).await;
        assert_eq!(r.checks[0].outcome, Outcome::Pass, "{}", r.text());
        let mut r = Report::default();
        readiness(&mut r, &config(&toml("nosuch")), &BTreeSet::new()).await;
        let line = r.checks[0].to_string();
        assert!(
            line.starts_with("FAIL the claims' HAProxy readiness gate"),
            "{line}"
        );
        assert!(line.contains("backend nosuch not found"), "{line}");
    }

    /// Every dependency of a backend sync rule gets a line: the master CLI it reloads
    /// through, the directory its configuration file is written in, the Consul agent; a
    /// lifecycle hook that cannot be read is a SKIP saying so.
    #[tokio::test]
    async fn backend_sync_dependency_each_get_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let toml = format!(
            r#"
[rules.servers]
timeout = "1s"
[rules.servers.check]
type = "backend_sync"
apply = "reload"
template = "{d}/haproxy.cfg.tmpl"
backend = "app"
stats_socket = "{d}/admin.sock"
haproxy_config = "{d}/missing/haproxy.cfg"
reload = {{ master_socket = "{d}/master.sock" }}
[rules.servers.check.source]
type = "consul"
address = "http://127.0.0.1:9/"
service = "web"
"#,
            d = dir.path().display()
        );
        std::fs::write(dir.path().join("haproxy.cfg.tmpl"), "{{ servers }}\n").unwrap();
        let mut r = Report::default();
        backend_sync(&mut r, &config(&toml)).await;
        let text = r.text();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with(&format!(
                "FAIL HAProxy master CLI {}/master.sock (rule \"servers\") answers `show proc`:",
                dir.path().display()
            )),
            "{text}"
        );
        assert!(lines[0].contains("does not exist"), "{text}");
        assert!(
            lines[1].starts_with(&format!(
                "FAIL directory {}/missing of haproxy_config",
                dir.path().display()
            )),
            "{text}"
        );
        assert!(lines[2].starts_with("FAIL Consul agent http://127.0.0.1:9/ (rule \"servers\") answers for service \"web\""), "{text}");

        let asg = toml
            .replace(
                "type = \"consul\"\naddress = \"http://127.0.0.1:9/\"\nservice = \"web\"",
                "type = \"asg\"\ngroup = \"web\"\nlifecycle_hook = \"drain\"",
            )
            .replace("backend = \"app\"", "backend = \"app\"\nport = 8080");
        let asg = asg.replace("apply = \"reload\"\n", "").replace(
            &format!("template = \"{}/haproxy.cfg.tmpl\"\n", dir.path().display()),
            "",
        );
        let mut r = Report::default();
        backend_sync(&mut r, &config(&asg)).await;
        // Runtime mode reloads only to grow the slots: a master CLI that does not answer is
        // said, not failed.
        let first = r.checks[0].to_string();
        assert!(first.starts_with("SKIP HAProxy master CLI"), "{first}");
        let last = r.checks.last().unwrap().to_string();
        assert!(last.starts_with("SKIP lifecycle hook \"drain\" of group \"web\" (rule \"servers\"): its existence is not checked"), "{last}");
    }
}
