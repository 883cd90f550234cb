//! `[actions.NAME]`, one file per kind, dispatched on [`RawAction`].

mod claim_eip;
mod exec;
mod private;
mod sns;

use super::super::model::{ActionSpec, AlertSettings, NodeSettings};
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
