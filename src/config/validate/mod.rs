//! Raw shapes -> validated model, part by part (as ripgrep turns `LowArgs` into `HiArgs`):
//! the global sections, then each action and each rule by its kind, then the checks that
//! need the whole picture. Every part reports its errors through a [`Ctx`] and carries on,
//! so one run of `watchdog validate` lists everything that is wrong.

mod actions;
mod checks;
mod cross;
mod ctx;
mod rule;
mod sections;

pub use sections::is_opsworks_id;

use super::defaults::limits;
use super::model::Config;
use super::{Errors, Merged};
use ctx::Ctx;
use std::collections::BTreeMap;
use std::path::Path;

/// A rule or action name that is not allowed.
#[derive(Debug, thiserror::Error)]
#[error(
    "names use {} to {} of the characters A-Z a-z 0-9 - _ .",
    limits::NAME_LEN.start(),
    limits::NAME_LEN.end()
)]
pub(super) struct BadName;

pub(super) fn check_name(name: &str) -> Result<(), BadName> {
    let ok = limits::NAME_LEN.contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(BadName)
    }
}

pub(super) fn validate(m: Merged, errs: &mut Errors) -> Option<Config> {
    let aws = sections::aws(m.aws.as_ref(), errs);
    let node = sections::node(m.node.as_ref(), errs);
    let egress = sections::egress(m.egress.as_ref(), errs);
    let haproxy = match &m.haproxy {
        Some(h) => checks::haproxy::probe(
            &h.value,
            None,
            Ctx::new(&h.file, "[haproxy]", errs).with_unparsed(&h.unparsed),
        ),
        None => Some(Default::default()),
    };
    let alerts = sections::alerts(m.alerts.as_ref(), errs);
    // An `[alerts] sns_topic_arn` that did not parse has had its one error: the actions that
    // would fall back on it are not told they have no topic.
    let alerts_topic_unparsed = m
        .alerts
        .as_ref()
        .is_some_and(|a| a.unparsed.iter().any(|k| k == "sns_topic_arn"));
    let alerts_for_actions = alerts.as_ref().filter(|_| !alerts_topic_unparsed);
    let control = sections::control(m.control.as_ref(), errs);
    let opsworks = sections::opsworks(m.opsworks.as_ref(), errs);

    let mut actions = BTreeMap::new();
    for (name, a) in &m.actions {
        if let Some(spec) = actions::action(name, a, alerts_for_actions, node.as_ref(), errs) {
            actions.insert(name.clone(), spec);
        }
    }

    // Every rule, enabled or not, is validated alike; `enabled = false` only keeps it from running.
    let mut rules = Vec::new();
    let mut disabled = Vec::new();
    for (name, r) in &m.rules {
        let env = rule::Env {
            haproxy: haproxy.as_ref(),
            egress: egress.as_ref(),
            merged: &m,
        };
        if let Some(rule) = rule::rule(name, r, &env, errs) {
            rules.push(rule);
            disabled.push(r.value.enabled == Some(false));
        }
    }

    cross::checks(&m, &actions, &rules, &disabled, errs);
    let mut disabled = disabled.into_iter();
    rules.retain(|_| !disabled.next().unwrap_or(false));
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
