//! `type = "sns"`: publish an alert when a rule flips. The message may use `{rule}`, `{event}`
//! (failed/recovered) and `{detail}` (what the check saw).

use super::alerts::{Alert, Alerter};
use super::{ActionContext, ActionOutcome};
use crate::config::SnsSpec;

pub struct SnsNotify {
    spec: SnsSpec,
    alerter: Alerter,
    subject_prefix: String,
}

impl SnsNotify {
    pub fn new(spec: SnsSpec, alerter: Alerter, subject_prefix: String) -> Self {
        SnsNotify {
            spec,
            alerter,
            subject_prefix,
        }
    }

    pub fn run(&self, ctx: &ActionContext) -> ActionOutcome {
        let fill = |t: &str| {
            t.replace("{rule}", &ctx.rule)
                .replace("{event}", ctx.transition.as_str())
                .replace("{detail}", &ctx.detail)
        };
        let subject = match &self.spec.subject {
            Some(s) => fill(s),
            None => format!(
                "{}: rule {} {}",
                self.subject_prefix,
                ctx.rule,
                ctx.transition.as_str()
            ),
        };
        let message = match &self.spec.message {
            Some(m) => fill(m),
            None => format!(
                "Rule {} {} after {} consecutive cycles: {}",
                ctx.rule,
                ctx.transition.as_str(),
                ctx.consecutive,
                ctx.detail
            ),
        };
        self.alerter.send(Alert {
            topic_arn: self.spec.topic_arn.clone(),
            subject: sns_subject(&subject),
            message,
        });
        ActionOutcome::Done(format!("alert queued for {}", self.spec.topic_arn))
    }
}

/// SNS subjects are at most 100 printable ASCII characters.
pub fn sns_subject(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .take(100)
        .collect()
}
