//! `[actions.NAME]`, one file per kind, dispatched on [`RawAction`].

mod claim_eip;
mod exec;
mod private;
mod sns;

use super::super::model::{ActionSpec, AlertSettings, ClaimGroupSpec, NodeSettings};
use super::super::raw::RawAction;
use super::super::{Errors, Located};
use super::ctx::Ctx;

/// `alerts` and `node` are None when their section is broken (already reported).
pub(super) fn action(
    name: &str,
    a: &Located<RawAction>,
    alerts: Option<&AlertSettings>,
    node: Option<&NodeSettings>,
    errs: &mut Errors,
) -> Option<ActionSpec> {
    let item = format!("action \"{name}\"");
    let cx = Ctx::new(&a.file, &item, errs).with_unparsed(&a.unparsed);
    match &a.value {
        RawAction::ClaimEip(c) => claim_eip::action(name, c, alerts, cx).map(ActionSpec::ClaimEip),
        RawAction::ClaimPrivateIp(c) => {
            private::private_ip(name, c, alerts, node, cx).map(ActionSpec::ClaimPrivateIp)
        }
        RawAction::ClaimRoute(c) => {
            private::route(name, c, alerts, node, cx).map(ActionSpec::ClaimRoute)
        }
        RawAction::ClaimGroup(g) => group(name, g, alerts, cx).map(ActionSpec::ClaimGroup),
        RawAction::Sns(s) => sns::action(name, s, alerts, cx).map(ActionSpec::Sns),
        RawAction::Exec(x) => exec::action(name, x, cx).map(ActionSpec::Exec),
    }
}

/// The action's own SNS topic, else `[alerts] sns_topic_arn`: `Some(None)` when neither is
/// set, None when the own one is bad or `[alerts]` is broken (both reported elsewhere).
fn topic_or_alerts(
    own: Option<&str>,
    what: &str,
    alerts: Option<&AlertSettings>,
    cx: &mut Ctx<'_>,
) -> Option<Option<String>> {
    match own {
        Some(t) => cx.arn(t, what).map(Some),
        None => alerts.map(|a| a.sns_topic_arn.clone()),
    }
}

/// `type = "claim_group"`: its own shape; what its members are is checked with every action
/// in view (`cross.rs`).
fn group(
    name: &str,
    g: &super::super::raw::RawClaimGroup,
    alerts: Option<&AlertSettings>,
    mut cx: Ctx<'_>,
) -> Option<ClaimGroupSpec> {
    let members = match g.members.as_deref() {
        None if cx.unparsed("members") => None,
        None => cx.fail("missing `members`: the claim actions this group moves together, at least two"),
        Some(m) if m.len() < 2 => cx.fail(format!(
            "`members` lists {} action(s): a group moves at least two addresses together; use the claim action itself for one",
            m.len()
        )),
        Some(m) => {
            let mut seen = std::collections::BTreeSet::new();
            let twice: Vec<&String> = m.iter().filter(|x| !seen.insert(x.as_str())).collect();
            if twice.is_empty() {
                Some(m.to_vec())
            } else {
                cx.fail(format!("`members` lists {twice:?} twice"))
            }
        }
    };
    let topic = topic_or_alerts(g.sns_topic_arn.as_deref(), "sns_topic_arn", alerts, &mut cx);
    if matches!(topic, Some(None)) && !cx.unparsed("sns_topic_arn") {
        cx.err("no SNS topic for the group's alert: set `sns_topic_arn` here or in [alerts]");
    }
    cx.finish(|| {
        Some(ClaimGroupSpec {
            name: name.to_owned(),
            members: members?,
            sns_topic_arn: topic.flatten(),
        })
    })
}
