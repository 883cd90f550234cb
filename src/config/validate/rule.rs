//! `[rules.NAME]`: timing, thresholds and the actions it names; its `check` is validated by
//! kind in [`checks`](super::checks).

use super::super::defaults::{self, limits};
use super::super::model::*;
use super::super::raw::*;
use super::super::{Errors, Located, Merged};
use super::checks;
use super::ctx::Ctx;

/// What a rule's validation may look up beyond the rule itself.
pub(super) struct Env<'a> {
    /// `[haproxy]`; None when that section is broken (already reported).
    pub haproxy: Option<&'a HaproxyProbeSpec>,
    /// `[egress]`; None when that section is broken (already reported).
    pub egress: Option<&'a EgressSettings>,
    /// Every file's raw sections: for the action names a rule refers to.
    pub merged: &'a Merged,
}

pub(super) fn rule(
    name: &str,
    r: &Located<RawRule>,
    env: &Env<'_>,
    errs: &mut Errors,
) -> Option<Rule> {
    let item = format!("rule \"{name}\"");
    let mut cx = Ctx::new(&r.file, &item, errs).with_unparsed(&r.unparsed);
    let v = &r.value;

    let interval = cx.duration(
        v.interval.as_deref(),
        default_interval(v.check.as_ref()),
        limits::INTERVAL,
        "interval",
    );
    // Unset, a check may take its whole cycle up to 5 s: HAProxy's check uses `inter` as its
    // timeout when `timeout check` is not set (configuration manual, "timeout check").
    let timeout = cx.duration(
        v.timeout.as_deref(),
        interval.map_or(defaults::TIMEOUT, |i| i.min(defaults::TIMEOUT)),
        limits::CHECK_TIMEOUT,
        "timeout",
    );
    if let (Some(i), Some(t)) = (interval, timeout) {
        if t > i {
            cx.err(format!(
                "`timeout` ({}) must not exceed `interval` ({}): a check cannot take longer than its cycle",
                humantime::format_duration(t), humantime::format_duration(i)));
        }
    }
    let fast_interval = v.fast_interval.as_deref().map(|text| {
        let fast = cx.duration(Some(text), interval.unwrap_or_default(), limits::INTERVAL, "fast_interval")?;
        if let Some(i) = interval.filter(|i| fast > *i) {
            return cx.fail(format!(
                "`fast_interval` ({}) must not exceed `interval` ({}): it is the faster cadence while the rule is changing state",
                humantime::format_duration(fast), humantime::format_duration(i)));
        }
        if matches!(v.check, Some(RawCheck::BackendSync(_))) {
            return cx.fail("`fast_interval` is for checks: a backend sync paces itself (its `interval` is its poll or longest blocking query)");
        }
        Some(fast)
    });
    let mut cycles = |n: Option<i64>, default: u32, what: &str| -> u32 {
        match n {
            None => default,
            Some(n) if limits::CYCLES.contains(&n) => n as u32,
            Some(n) => {
                cx.err(format!(
                    "`{what}` = {n}: must be between {} and {} cycles",
                    limits::CYCLES.start(),
                    limits::CYCLES.end()
                ));
                default
            }
        }
    };
    let fail_after = cycles(v.fail_after, defaults::FAIL_AFTER, "fail_after");
    let recover_after = cycles(v.recover_after, defaults::RECOVER_AFTER, "recover_after");

    action_refs(&v.on_fail, "on_fail", env.merged, &mut cx);
    action_refs(&v.on_recover, "on_recover", env.merged, &mut cx);

    let check = match &v.check {
        None if cx.unparsed("check") => None,
        None => cx.fail(
            "missing `check`: every rule needs one, like check = { type = \"http\", url = \"http://...\" }",
        ),
        Some(check) => checks::check(check, env, name, (interval, timeout), cx.scope()),
    };

    // A disabled rule is built like any other, so the checks that need the whole picture
    // (cross.rs) see it too; only `validate` leaves it out of what runs.
    cx.finish(|| {
        Some(Rule {
            name: name.to_owned(),
            file: r.file.clone(),
            interval: interval?,
            timeout: timeout?,
            fast_interval: match fast_interval {
                None => None,
                Some(f) => Some(f?),
            },
            fail_after,
            recover_after,
            check: check?,
            on_fail: v.on_fail.clone(),
            on_recover: v.on_recover.clone(),
        })
    })
}

/// A backend sync's cycle is its poll (or, with an events queue, its full resync).
fn default_interval(check: Option<&RawCheck>) -> std::time::Duration {
    match check {
        Some(RawCheck::BackendSync(b)) => match &b.source {
            RawSource::Consul(_) => defaults::SYNC_INTERVAL_CONSUL,
            RawSource::Asg(a) if a.events_queue.is_some() => defaults::SYNC_RESYNC_EVENTS,
            _ => defaults::SYNC_INTERVAL_ASG,
        },
        _ => defaults::INTERVAL,
    }
}

/// `on_fail` or `on_recover`: each action once, and each defined; each problem is reported once. An action that was
/// defined but did not parse has been reported already, and is not reported again here.
fn action_refs(list: &[String], what: &str, m: &Merged, cx: &mut Ctx<'_>) {
    let mut seen = Vec::new();
    for a in list {
        if seen.contains(&a) {
            // Reported once as a repeat; whatever else is wrong with it was said the first time.
            cx.err(format!("`{what}` lists action \"{a}\" twice"));
            continue;
        }
        seen.push(a);
        if !m.actions.contains_key(a) && !m.broken_actions.contains(a) {
            let known: Vec<&str> = m.actions.keys().map(String::as_str).collect();
            let hint = if known.is_empty() {
                "no actions are defined".to_owned()
            } else {
                format!("defined actions: {}", known.join(", "))
            };
            cx.err(format!("`{what}` names unknown action \"{a}\" ({hint})"));
        }
    }
}
