//! `type = "sns"`: a message to an SNS topic on any rule transition.

use super::super::super::defaults::limits;
use super::super::super::model::{AlertSettings, SnsSpec};
use super::super::super::raw::RawSns;
use super::super::ctx::Ctx;
use super::topic_or_alerts;

pub(super) fn action(
    name: &str,
    s: &RawSns,
    alerts: Option<&AlertSettings>,
    mut cx: Ctx<'_>,
) -> Option<SnsSpec> {
    let topic = topic_or_alerts(s.topic_arn.as_deref(), "topic_arn", alerts, &mut cx);
    if matches!(topic, Some(None)) && !cx.unparsed("topic_arn") {
        cx.err("missing `topic_arn` (and no [alerts] sns_topic_arn to fall back on)");
    }
    if let Some(subject) = &s.subject {
        if subject.len() > limits::SNS_SUBJECT_MAX_LEN
            || !subject.is_ascii()
            || subject.chars().any(|c| c.is_control())
        {
            cx.err(format!(
                "`subject`: SNS takes at most {} printable ASCII characters",
                limits::SNS_SUBJECT_MAX_LEN
            ));
        }
    }
    cx.finish(|| {
        Some(SnsSpec {
            name: name.to_owned(),
            topic_arn: topic??,
            subject: s.subject.clone(),
            message: s.message.clone(),
        })
    })
}
