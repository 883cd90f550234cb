//! Rules that need the whole picture: claims only on failure and never on a backend sync,
//! one sync per backend, one reader per events queue and one owner per rendered file, one claim action per address,
//! and at least one enabled rule. A disabled rule is checked like an enabled one, except
//! for clashes with other rules, which only rules that run can have.

use super::super::model::*;
use super::super::{Errors, Merged};
use super::ctx::Ctx;
use std::collections::BTreeMap;
use std::path::Path;

pub(super) fn checks(
    m: &Merged,
    actions: &BTreeMap<String, ActionSpec>,
    rules: &[Rule],
    disabled: &[bool],
    errs: &mut Errors,
) {
    let is_claim = |a: &String| actions.get(a).is_some_and(ActionSpec::is_claim);
    for r in rules {
        let item = format!("rule \"{}\"", r.name);
        let mut cx = Ctx::new(&r.file, &item, errs);
        for a in r.on_recover.iter().filter(|a| is_claim(a)) {
            cx.err(format!(
                "`on_recover` lists claim action \"{a}\": a claim belongs in `on_fail`"
            ));
        }
    }
    // What one rule may list is checked for every rule, enabled or not. Clashes between rules
    // (one sync per backend, one owner per rendered file) are between rules that run, so that
    // alternatives can wait side by side, disabled (packaging/examples/backend-sync.toml).
    let mut synced: BTreeMap<(&Path, &str), &str> = BTreeMap::new();
    let mut rendered: BTreeMap<&Path, &str> = BTreeMap::new();
    let mut queues: BTreeMap<String, (&str, &str)> = BTreeMap::new();
    for (r, &off) in rules.iter().zip(disabled) {
        let CheckSpec::BackendSync(b) = &r.check else {
            continue;
        };
        let item = format!("rule \"{}\"", r.name);
        let mut cx = Ctx::new(&r.file, &item, errs);
        for a in r
            .on_fail
            .iter()
            .chain(&r.on_recover)
            .filter(|a| is_claim(a))
        {
            cx.err(format!(
                "lists claim action \"{a}\": a backend sync's failure says nothing about this node's right to the Elastic IP; use an `sns` action to be told"));
        }
        if off {
            continue;
        }
        if let Some(first) = synced.insert((b.stats_socket.as_path(), b.backend.as_str()), &r.name)
        {
            cx.err(format!(
                "backend {:?} is already kept in step by rule \"{first}\": one backend_sync rule per backend",
                b.backend));
        }
        // SQS hands each message to one receiver: two rules on one queue would each miss
        // what the other read (and delete it).
        if let SourceSpec::Asg(AsgSourceSpec {
            events_queue: Some(q),
            ..
        }) = &b.source
        {
            if let Some((first, their)) = queues.insert(queue_identity(q), (&r.name, q.as_str())) {
                let same = if their == q {
                    String::new()
                } else {
                    format!(" (as {their:?})")
                };
                cx.err(format!(
                    "events_queue {q:?} is already read by rule \"{first}\"{same}: each message reaches one reader, so each rule needs a queue of its own (one EventBridge rule can target several queues)"));
            }
        }
        if let ApplyMode::Reload { .. } = b.apply {
            if let Some(first) = rendered.insert(b.haproxy_config.as_path(), &r.name) {
                cx.err(format!(
                    "rule \"{first}\" also renders {}: two templates cannot both own one file",
                    b.haproxy_config.display()
                ));
            }
        }
    }
    for (r, _) in rules.iter().zip(disabled).filter(|(_, &off)| !off) {
        if let CheckSpec::BackendSync(b) = &r.check {
            if matches!(b.apply, ApplyMode::Runtime | ApplyMode::Peers)
                && rendered.contains_key(b.haproxy_config.as_path())
            {
                let item = format!("rule \"{}\"", r.name);
                Ctx::new(&r.file, &item, errs).err(format!(
                    "{} is rendered whole by a `reload` rule; a `runtime` rule cannot keep a block of it as well",
                    b.haproxy_config.display()));
            }
        }
    }
    // Groups: members are claim actions (not groups), each in one group, listed by no rule.
    let mut member_of: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, a) in actions {
        let ActionSpec::ClaimGroup(g) = a else {
            continue;
        };
        let item = format!("action \"{name}\"");
        let mut cx = Ctx::new(&m.actions[name].file, &item, errs);
        for member in &g.members {
            match actions.get(member) {
                // Defined, with errors of its own (reported there).
                None if m.actions.contains_key(member) || m.broken_actions.contains(member) => {}
                None => cx.err(format!(
                    "`members` lists \"{member}\", which is not an action; defined: {:?}",
                    actions.keys().collect::<Vec<_>>()
                )),
                Some(ActionSpec::ClaimGroup(_)) => cx.err(format!(
                    "`members` lists group \"{member}\": a group's members are claim actions (claim_eip, claim_private_ip, claim_route)"
                )),
                Some(a) if !a.is_claim() => cx.err(format!(
                    "`members` lists \"{member}\", which is not a claim action (claim_eip, claim_private_ip, claim_route)"
                )),
                Some(_) => {
                    let first = *member_of.entry(member).or_insert(name);
                    if first != name {
                        cx.err(format!(
                            "`members` lists \"{member}\", already a member of group \"{first}\": an address moves with one group"
                        ));
                    }
                }
            }
        }
    }
    for r in rules {
        let item = format!("rule \"{}\"", r.name);
        let mut cx = Ctx::new(&r.file, &item, errs);
        for a in r.on_fail.iter().chain(&r.on_recover) {
            if let Some(group) = member_of.get(a.as_str()) {
                cx.err(format!(
                    "lists \"{a}\", a member of group \"{group}\": list the group instead, so that its addresses never move apart"
                ));
            }
        }
    }
    let mut by_address: BTreeMap<AddressRef, &str> = BTreeMap::new();
    for (name, a) in actions {
        let address = match a {
            ActionSpec::ClaimEip(c) => AddressRef::Eip(c.eip.clone()),
            ActionSpec::ClaimPrivateIp(c) => AddressRef::SecondaryIp(c.private_ip),
            ActionSpec::ClaimRoute(c) => AddressRef::Overlay(c.destination),
            _ => continue,
        };
        let noun = address.noun();
        if let Some(first) = by_address.insert(address.clone(), name) {
            let item = format!("action \"{name}\"");
            Ctx::new(&m.actions[name].file, &item, errs).err(format!(
                "claims {address} like action \"{first}\": one claim action per {noun} (list it in several rules instead), so its hold-down covers every rule"
            ));
        }
    }
    // `rules` holds disabled rules too (validated alike); none of them runs.
    let none_enabled = !disabled.iter().any(|d| !d);
    if none_enabled && !m.rules.is_empty() && errs.0.is_empty() {
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

/// Which SQS queue a queue URL names, however it is spelled: its account and name, the last
/// two segments of its path, percent-decoded (`https://sqs.us-east-1.amazonaws.com/123456789012/q`,
/// the older `https://queue.amazonaws.com/123456789012/q`, a VPC endpoint's, `//`, a trailing
/// `/` or a query all name `123456789012/q`; "Amazon SQS queue and message identifiers"). A
/// URL with fewer segments is its own identity.
fn queue_identity(url: &str) -> String {
    let Ok(u) = reqwest::Url::parse(url) else {
        return url.to_owned();
    };
    let segments: Vec<String> = u
        .path_segments()
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    match segments.as_slice() {
        [.., account, name] => format!("{account}/{name}"),
        _ => format!(
            "{}{}",
            u.host_str().unwrap_or_default(),
            u.path().trim_end_matches('/')
        ),
    }
}
