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
        let (prefix, subject) = match &self.spec.subject {
            Some(s) => ("", fill(s)),
            None => (
                self.subject_prefix.as_str(),
                format!("rule {} {}", ctx.rule, ctx.transition.as_str()),
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
            subject: sns_subject(prefix, &subject),
            message,
        });
        ActionOutcome::Done(format!("alert queued for {}", self.spec.topic_arn))
    }
}

/// The longest subject SNS takes: "ASCII text that begins with a letter, number, or
/// punctuation mark; must not include line breaks or control characters; and must be less
/// than 100 characters long" (SNS API Reference, `Publish`, `Subject`).
pub const SNS_SUBJECT_MAX: usize = 99;

/// `prefix: tail` made into a subject SNS accepts: characters outside printable ASCII become
/// `?`, line breaks and tabs spaces, leading blanks go. When it is too long, `prefix` is
/// shortened first (ending in `...`), then the middle of `tail`, so what a reader needs most
/// (the end of `tail`: which EIP, which rule, what happened) survives the cut.
pub fn sns_subject(prefix: &str, tail: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| match c {
                '\r' | '\n' | '\t' => ' ',
                c if c.is_ascii() && !c.is_ascii_control() => c,
                _ => '?',
            })
            .collect()
    };
    let (prefix, tail) = (clean(prefix), clean(tail.trim()));
    let prefix = prefix.trim();
    const DOTS: &str = "...";
    let tail = if tail.len() > SNS_SUBJECT_MAX {
        // Keep the start and the end of the tail; its middle goes.
        let keep = SNS_SUBJECT_MAX - DOTS.len();
        let (head_len, end_len) = (keep / 3, keep - keep / 3);
        format!(
            "{}{DOTS}{}",
            &tail[..head_len],
            &tail[tail.len() - end_len..]
        )
    } else {
        tail
    };
    let subject = if prefix.is_empty() {
        tail
    } else if prefix.len() + 2 + tail.len() <= SNS_SUBJECT_MAX {
        format!("{prefix}: {tail}")
    } else {
        let room = SNS_SUBJECT_MAX.saturating_sub(tail.len() + 2 + DOTS.len());
        if room == 0 {
            tail
        } else {
            format!("{}{DOTS}: {tail}", prefix[..room].trim_end())
        }
    };
    subject.trim_start().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sns_accepts(s: &str) -> bool {
        s.len() < 100
            && s.chars().all(|c| c.is_ascii() && !c.is_ascii_control())
            && s.chars().next().is_some_and(|c| !c.is_whitespace())
    }

    #[test]
    fn subject_cut_keeps_the_eip_and_the_instance() {
        let tail = "i-0123456789abcdef0 took over 203.0.113.200";
        for prefix in [
            "",
            "HAProxy failover",
            &"production eu-west-1 HAProxy failover for the payments platform ".repeat(3),
            "préfixe\nwith a line break",
        ] {
            let s = sns_subject(prefix, tail);
            assert!(sns_accepts(&s), "{s:?}");
            assert!(s.ends_with(tail), "{s:?}");
        }
        let long = sns_subject(&"p".repeat(200), tail);
        assert_eq!(long.len(), SNS_SUBJECT_MAX, "{long:?}");
        assert!(long.contains("...: i-0123456789abcdef0"), "{long:?}");
    }

    #[test]
    fn subject_cut_keeps_the_end_of_an_overlong_tail() {
        let tail = format!("rule {} failed", "very-long-rule-name-".repeat(10));
        let s = sns_subject("HAProxy failover", &tail);
        assert!(sns_accepts(&s), "{s:?}");
        assert!(
            s.ends_with("rule-name-very-long-rule-name- failed"),
            "{s:?}"
        );
        assert!(s.starts_with("rule very-long"), "{s:?}");
        let odd = sns_subject("\u{7f}\u{1b}", "  \u{e9}t\u{e9}\r\n");
        assert!(sns_accepts(&odd) || odd.is_empty(), "{odd:?}");
    }
}
