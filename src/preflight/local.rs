//! The checks on this machine: the state directory, instance metadata (this node's identity,
//! its ENI and private IPs), checkip, and HAProxy's stats sockets.

use super::{Check, Report};
use crate::config::{ActionSpec, ApplyMode, CheckSpec, ClaimProvider, Config};
use crate::providers::aws::imds::{IdentitySource, NodeIdentity};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
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

/// The state directory takes a new file: one is created and removed at once. The state lock
/// is not taken, so a running daemon is not disturbed.
pub(super) fn state_dir(report: &mut Report, dir: Option<&Path>) {
    let Some(dir) = dir else {
        report.push(Check::skip(
            "state directory",
            "--state-dir \"\": state is kept in memory only",
        ));
        return;
    };
    let what = format!("state directory {} is writable", dir.display());
    let probe = dir.join(format!(".preflight-{}", std::process::id()));
    let made = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe);
    match made {
        Ok(f) => {
            drop(f);
            match std::fs::remove_file(&probe) {
                Ok(()) => report.push(Check::pass(what)),
                Err(e) => report.push(Check::fail(
                    what,
                    format!("created {} but cannot remove it: {e}", probe.display()),
                    format!("remove it by hand, and give {} write access to the directory", whoami()),
                )),
            }
        }
        Err(e) => report.push(Check::fail(
            what,
            format!("cannot create a file in it as {}: {e}", whoami()),
            format!(
                "create it owned by the service user (the packages make {} for haproxy-watchdog; `install -d -o haproxy-watchdog -m 750 {}`), or pass --state-dir",
                crate::config::defaults::STATE_DIR,
                dir.display()
            ),
        )),
    }
}

/// This node's identity, when an EC2 claim needs it: from `[node]` and instance metadata
/// (IMDSv2), as the daemon resolves it. Each claim's private IP must be on the ENI.
pub(super) async fn identity(report: &mut Report, config: &Config) -> Option<NodeIdentity> {
    let claims: Vec<_> = config
        .actions
        .values()
        .filter_map(|a| match a {
            ActionSpec::ClaimEip(c) if c.provider == ClaimProvider::Ec2 => Some(c),
            _ => None,
        })
        .collect();
    if claims.is_empty() {
        report.push(Check::skip(
            "instance metadata",
            "no EC2 claim_eip action needs this node's identity",
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
            report.push(Check::fail(
                format!("instance metadata (IMDSv2) at {endpoint}"),
                e.to_string(),
                "run on the EC2 instance with IMDSv2 reachable (hop limit 2 or more inside containers; the metadata service enabled), or set instance_id, network_interface_id and private_ip in [node]",
            ));
            return None;
        }
    };
    if all_set {
        report.push(Check::skip(
            "instance metadata",
            format!(
                "[node] sets the instance ({}), ENI ({}) and private IP ({}); metadata not asked, so they are not cross-checked",
                id.instance_id, id.network_interface_id, id.private_ip
            ),
        ));
        return Some(id);
    }
    report.push(Check::pass(format!(
        "instance metadata (IMDSv2) at {endpoint}: this node is {} on {}, private IP {}",
        id.instance_id, id.network_interface_id, id.private_ip
    )));
    let mut wanted: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    if let Some(p) = n.private_ip {
        wanted.insert(p, "[node] private_ip".into());
    }
    for c in &claims {
        if let Some(p) = c.private_ip {
            wanted.insert(p, format!("action {:?}", c.name));
        }
    }
    for (ip, by) in wanted {
        let what = format!("private IP {ip} ({by}) is on {}", id.network_interface_id);
        if id.private_ips.contains(&ip) {
            report.push(Check::pass(what));
        } else {
            report.push(Check::fail(
                what,
                format!(
                    "instance metadata lists {} on it",
                    id.private_ips
                        .iter()
                        .map(Ipv4Addr::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                format!(
                    "assign {ip} to {} as a secondary private IP (`aws ec2 assign-private-ip-addresses`), or correct the configuration",
                    id.network_interface_id
                ),
            ));
        }
    }
    Some(id)
}

/// Each checkip URL in use answers one public IPv4 address: `[egress]`'s when a claim
/// verifies egress, and each `egress` rule's.
pub(super) async fn checkip(report: &mut Report, config: &Config) {
    let mut urls: BTreeMap<String, (reqwest::Url, Duration, String)> = BTreeMap::new();
    if config
        .actions
        .values()
        .any(|a| matches!(a, ActionSpec::ClaimEip(_)))
    {
        urls.insert(
            config.egress.checkip_url.to_string(),
            (
                config.egress.checkip_url.clone(),
                config.egress.timeout,
                "[egress]".into(),
            ),
        );
    }
    for r in &config.rules {
        if let CheckSpec::Egress(e) = &r.check {
            urls.entry(e.checkip_url.to_string()).or_insert((
                e.checkip_url.clone(),
                r.timeout,
                format!("rule {:?}", r.name),
            ));
        }
    }
    if urls.is_empty() {
        report.push(Check::skip(
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
                format!(
                    "cannot set up the HTTP client: {}",
                    crate::telemetry::chain(&e)
                ),
                "install the ca-certificates package",
            ));
            return;
        }
    };
    for (_, (url, timeout, by)) in urls {
        let what = format!("checkip {url} ({by})");
        match crate::checks::checkip::egress_ip(&client, &url, timeout).await {
            Ok(ip) => report.push(Check::pass(format!(
                "{what} answers a public IPv4 address: {ip}"
            ))),
            Err(e) => report.push(Check::fail(
                what,
                e.to_string(),
                "let this node reach it (security group, NAT, proxy), or set another checkip_url (https://checkip.amazonaws.com/ by default)",
            )),
        }
    }
}

/// Each stats socket the configuration uses answers `show info`; where backend sync changes
/// servers through it, its level must be admin (`show cli level`).
pub(super) async fn stats_sockets(report: &mut Report, config: &Config) {
    // path -> (needs admin, timeout, who uses it)
    let mut sockets: BTreeMap<PathBuf, (bool, Duration, String)> = BTreeMap::new();
    let mut add = |p: &Path, admin: bool, timeout: Duration, by: String| {
        let e = sockets.entry(p.to_owned()).or_insert((false, timeout, by));
        e.0 |= admin;
    };
    let claims = config
        .actions
        .values()
        .any(|a| matches!(a, ActionSpec::ClaimEip(_)));
    if let (true, Some(p)) = (claims, &config.haproxy.stats_socket) {
        add(p, false, config.haproxy.timeout, "[haproxy]".into());
    }
    for r in &config.rules {
        match &r.check {
            CheckSpec::Haproxy(h) => {
                if let Some(p) = &h.stats_socket {
                    add(p, false, h.timeout, format!("rule {:?}", r.name));
                }
            }
            CheckSpec::BackendSync(b) => add(
                &b.stats_socket,
                b.apply != ApplyMode::Peers,
                r.timeout,
                format!("rule {:?}", r.name),
            ),
            _ => {}
        }
    }
    if sockets.is_empty() {
        report.push(Check::skip(
            "HAProxy stats socket",
            "the configuration uses none",
        ));
        return;
    }
    for (path, (admin, timeout, by)) in sockets {
        let what = format!("HAProxy stats socket {} ({by}) is readable", path.display());
        let fix = format!(
            "give {} read-write access to it: `stats socket {} mode 660 group haproxy level admin` in HAProxy's configuration, and the user in group haproxy",
            whoami(),
            path.display()
        );
        match ask(&path, "show info", timeout).await {
            Ok(reply) if reply.contains("Name:") => report.push(Check::pass(what)),
            Ok(reply) => {
                report.push(Check::fail(
                    what,
                    format!(
                        "`show info` answered {:?}",
                        reply.lines().next().unwrap_or("nothing")
                    ),
                    "point the configuration at HAProxy's stats socket (not the master CLI)",
                ));
                continue;
            }
            Err(why) => {
                report.push(Check::fail(what, why, fix));
                continue;
            }
        }
        if !admin {
            continue;
        }
        let what = format!(
            "HAProxy stats socket {} ({by}) is writable (level admin, for backend sync)",
            path.display()
        );
        match ask(&path, "show cli level", timeout).await {
            Ok(reply) if reply.trim() == "admin" => report.push(Check::pass(what)),
            Ok(reply) => report.push(Check::fail(
                what,
                format!("its level is {:?}", reply.trim()),
                format!(
                    "add `level admin` to `stats socket {}` in HAProxy's configuration",
                    path.display()
                ),
            )),
            Err(why) => report.push(Check::fail(what, why, fix)),
        }
    }
}

/// One command with a deadline; the error as text.
async fn ask(path: &Path, command: &str, timeout: Duration) -> Result<String, String> {
    match tokio::time::timeout(timeout, crate::haproxy::socket::command(path, command)).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "stats socket {}: no answer to `{command}` within {}",
            path.display(),
            humantime::format_duration(timeout)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflight::Outcome;

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
}
