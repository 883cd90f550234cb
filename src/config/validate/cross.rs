//! Rules that need the whole picture: claims only on failure and never on a backend sync,
//! one sync per backend and one owner per rendered file, one claim action per Elastic IP,
//! and at least one enabled rule.

use super::super::model::*;
use super::super::{Errors, Merged};
use super::ctx::Ctx;
use std::collections::BTreeMap;
use std::path::Path;

pub(super) fn checks(
    m: &Merged,
    actions: &BTreeMap<String, ActionSpec>,
    rules: &[Rule],
    errs: &mut Errors,
) {
    let is_claim = |a: &String| matches!(actions.get(a), Some(ActionSpec::ClaimEip(_)));
    for r in rules {
        let item = format!("rule \"{}\"", r.name);
        let mut cx = Ctx::new(&r.file, &item, errs);
        for a in r.on_recover.iter().filter(|a| is_claim(a)) {
            cx.err(format!(
                "`on_recover` lists claim action \"{a}\": a claim belongs in `on_fail`"
            ));
        }
    }
    let mut synced: BTreeMap<(&Path, &str), &str> = BTreeMap::new();
    let mut rendered: BTreeMap<&Path, &str> = BTreeMap::new();
    for r in rules {
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
        if let Some(first) = synced.insert((b.stats_socket.as_path(), b.backend.as_str()), &r.name)
        {
            cx.err(format!(
                "backend {:?} is already kept in step by rule \"{first}\": one backend_sync rule per backend",
                b.backend));
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
    for r in rules {
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
    let mut by_eip: BTreeMap<&EipRef, &str> = BTreeMap::new();
    for (name, a) in actions {
        if let ActionSpec::ClaimEip(c) = a {
            if let Some(first) = by_eip.insert(&c.eip, name) {
                let item = format!("action \"{name}\"");
                Ctx::new(&m.actions[name].file, &item, errs).err(format!(
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
