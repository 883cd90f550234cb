//! `watchdog takeover` and `watchdog drill` on the running configuration: which `claim_eip`
//! action, which rule stands behind it, the planned run of its gates, and for a drill the
//! measurements after the move (the rule's own check passing again, then checkip showing this
//! node's traffic leaving from the address) and, with `--back`, the move back.
//!
//! Pacemaker's `crm_resource --move` and Patroni's `switchover` are the operations this
//! mirrors; neither measures its own switchover, which a drill does, step by step.

use super::build::Live;
use crate::actions::claim::ClaimAction;
use crate::actions::{Action, ActionContext, ActionOutcome, Planned};
use crate::checks::checkip;
use crate::config::{AddressRef, CheckSpec, EipRef, Rule};
use crate::control::{MoveReport, Operate, TakeoverError, TakeoverReport, TakeoverRequest};
use crate::engine::threshold::Transition;
use crate::engine::Effects;
use crate::history::{now_ms, Entry, Kind, Step, Timeline};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

/// How long a drill waits for the rule's check to pass, and then for checkip to show the
/// address, after a verified move: EC2 applies an association within seconds, and a check
/// that has not passed in a minute says the drill failed.
const SETTLE_FOR: Duration = Duration::from_secs(60);
/// Between two looks while a drill waits.
const LOOK_EVERY: Duration = Duration::from_millis(200);
/// Between two reads of the owner while a drill waits for checkip (one DescribeAddresses).
const HOLDER_EVERY: Duration = Duration::from_secs(2);

impl Operate for Live {
    fn takeover(
        self: Arc<Self>,
        request: TakeoverRequest,
        by: String,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<TakeoverReport, TakeoverError>> + Send>,
    > {
        Box::pin(async move { self.planned(request, by).await })
    }
}

fn move_report(kind: &str, out: &ActionOutcome, tl: Timeline) -> MoveReport {
    let (reason, detail) = match out {
        ActionOutcome::Refused { reason, detail } => (Some(reason.to_string()), detail.clone()),
        ActionOutcome::Done(d) | ActionOutcome::NoOp(d) | ActionOutcome::Error(d) => {
            (None, d.clone())
        }
    };
    MoveReport {
        kind: kind.into(),
        outcome: out.label().into(),
        reason,
        detail,
        steps: tl.steps,
    }
}

/// `+1.52s` from `t0` to the step, when it happened.
fn after(steps: &[Step], t0: u64, step: &str) -> Option<String> {
    let at = steps.iter().find(|s| s.step == step)?.at;
    Some(format!("{:.2}s", at.saturating_sub(t0) as f64 / 1000.0))
}

impl Live {
    /// The `claim_eip` action `name` names, or the only one.
    fn claim_named(&self, name: Option<&str>) -> Result<(String, &ClaimAction), TakeoverError> {
        let claims: Vec<(&String, &ClaimAction)> = self
            .actions
            .iter()
            .filter_map(|(n, a)| match a {
                Action::Claim(c) => Some((n, c)),
                _ => None,
            })
            .collect();
        let names = || claims.iter().map(|(n, _)| n.to_string()).collect();
        let group_of = |want: &str| {
            self.actions.iter().find_map(|(g, a)| match a {
                Action::Group(grp) if grp.members().any(|m| m == want) => Some(g.clone()),
                _ => None,
            })
        };
        if let Some(want) = name {
            if matches!(self.actions.get(want), Some(Action::Group(_))) {
                return Err(TakeoverError::Group(want.into()));
            }
            if let Some(group) = group_of(want) {
                return Err(TakeoverError::GroupMember {
                    name: want.into(),
                    group,
                });
            }
        }
        match name {
            Some(want) => claims
                .iter()
                .find(|(n, _)| n.as_str() == want)
                .map(|(n, c)| (n.to_string(), *c))
                .ok_or_else(|| TakeoverError::Unknown {
                    name: want.into(),
                    have: names(),
                }),
            None => match claims.as_slice() {
                [] => Err(TakeoverError::NoClaim),
                [(n, _)] if group_of(n).is_some() => Err(TakeoverError::GroupMember {
                    name: n.to_string(),
                    group: group_of(n).unwrap_or_default(),
                }),
                [(n, c)] => Ok((n.to_string(), *c)),
                _ => Err(TakeoverError::Ambiguous(names())),
            },
        }
    }

    async fn planned(
        &self,
        request: TakeoverRequest,
        by: String,
    ) -> Result<TakeoverReport, TakeoverError> {
        let received = Step {
            step: "command_received".into(),
            at: now_ms(),
            detail: by.clone(),
        };
        if request.back && !request.drill {
            return Err(TakeoverError::BackWithoutDrill);
        }
        let (name, claim) = self.claim_named(request.action.as_deref())?;
        let kind = if request.drill { "drill" } else { "takeover" };
        // The rule whose failure would have run this claim: its check is what a drill waits
        // to see pass again.
        let rule = self.rules.iter().find(|r| r.on_fail.contains(&name));
        let ctx = ActionContext {
            rule: rule.map_or_else(|| name.clone(), |r| r.name.clone()),
            transition: Transition::Failed,
            detail: format!("planned {kind} requested by {by}"),
            consecutive: 0,
            retry: false,
            recheck: None,
            times: Default::default(),
            planned: Some(Planned {
                by: by.clone(),
                kind,
            }),
            group: None,
        };
        let mut received_entry = Entry::new(Kind::CommandReceived, format!("{kind} of {name}"));
        received_entry.by = Some(by.clone());
        received_entry.planned = Some(kind.into());
        received_entry.action = Some(name.clone());
        self.history.record(received_entry);
        let (out, mut tl) = {
            // Waited for at shutdown, like a claim a rule makes.
            let _counted = self.in_flight.enter();
            claim.run_timed(&ctx).await
        };
        tl.steps.insert(0, received.clone());
        let moved = matches!(out, ActionOutcome::Done(_)) && tl.at("verified").is_some();
        let eip = claim.address();
        let mut passed = None;
        let mut back = None;
        if request.drill {
            let mut ok = moved;
            if moved {
                ok &= self.wait_for_check(rule, &mut tl).await;
                // What was measured counts only while the address is still here; gone, the
                // public path cannot be proven from here either.
                ok = ok && still_here(claim, &mut tl, true).await;
                if ok && claim.on_primary_ip() {
                    let public = match &eip {
                        AddressRef::Eip(EipRef::PublicIp(ip)) => Some(*ip),
                        _ => tl.public_ip,
                    };
                    ok &= self.wait_for_egress(public, claim, &mut tl).await;
                    ok = ok && still_here(claim, &mut tl, true).await;
                } else if ok {
                    tl.mark(
                        "egress_not_checked",
                        if eip.is_private() {
                            "a private address: this node's traffic to the internet does not leave from it"
                        } else {
                            "the action moves the address to its own private_ip, not the one this node's traffic leaves from"
                        },
                    );
                }
            }
            if request.back && moved {
                let (out_back, mut tl_back) = {
                    let _counted = self.in_flight.enter();
                    claim.give_back(&ctx).await
                };
                let returned =
                    matches!(out_back, ActionOutcome::Done(_)) && tl_back.at("verified").is_some();
                ok &= returned;
                if returned {
                    ok &= self.wait_for_check(rule, &mut tl_back).await;
                }
                back = Some(move_report("back", &out_back, tl_back));
            }
            passed = Some(ok);
        }
        // Where the address is at the end, as the provider says: not what the steps assumed.
        let holds = match claim.is_here().await {
            Ok((here, _)) => here,
            Err(_) => false,
        };
        let takeover = move_report(kind, &out, tl);
        let summary = summary(
            kind,
            &eip,
            &takeover,
            back.as_ref(),
            holds,
            passed,
            received.at,
        );
        if request.drill {
            let mut e = Entry::new(Kind::DrillResult, summary.clone());
            e.by = Some(by.clone());
            e.planned = Some(kind.into());
            e.action = Some(name.clone());
            e.reason = takeover.reason.clone();
            let at = |step: &str| takeover.steps.iter().find(|s| s.step == step).map(|s| s.at);
            e.timings.claim_started = at("claim_started");
            e.timings.first_mutating_call = at("first_mutating_call");
            e.timings.verified = at("verified");
            e.timings.check_passes = at("check_passes");
            e.timings.egress_from_eip = at("egress_from_eip");
            self.history.record(e);
        }
        Ok(TakeoverReport {
            action: name,
            eip: eip.to_string(),
            by,
            takeover,
            back,
            holds,
            passed,
            summary,
        })
    }

    /// A drill's "the rule's own check passes again": its probe, each run bounded by the
    /// rule's deadline, until it passes or [`SETTLE_FOR`] has passed. A rule that cannot be
    /// run twice (a backend sync) or no rule at all is noted and counts as passed.
    async fn wait_for_check(&self, rule: Option<&Rule>, tl: &mut Timeline) -> bool {
        let Some(rule) = rule.filter(|r| !matches!(r.check, CheckSpec::BackendSync(_))) else {
            tl.mark("check_passes", "no rule's check to wait for");
            return true;
        };
        let until = tokio::time::Instant::now() + SETTLE_FOR;
        let deadline = self.pacing(rule).deadline;
        let mut last = String::new();
        while tokio::time::Instant::now() < until {
            match tokio::time::timeout(deadline, self.check(rule)).await {
                Ok(o) if o.ok => {
                    tl.mark("check_passes", format!("rule {}: {}", rule.name, o.detail));
                    return true;
                }
                Ok(o) => last = o.detail,
                Err(_) => last = "timed out".into(),
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
        tl.mark(
            "check_failing",
            format!(
                "rule {} still fails after {}s: {last}",
                rule.name,
                SETTLE_FOR.as_secs()
            ),
        );
        false
    }

    /// A drill's public-path proof: checkip, from this node, answers the address itself.
    /// Every [`HOLDER_EVERY`] it reads the owner too: once the address has left this node,
    /// checkip cannot show it, and waiting on would only delay the drill's verdict.
    async fn wait_for_egress(
        &self,
        public: Option<Ipv4Addr>,
        claim: &ClaimAction,
        tl: &mut Timeline,
    ) -> bool {
        let Some(public) = public else {
            tl.mark(
                "egress_unproven",
                "the provider did not say the address's public IPv4",
            );
            return false;
        };
        let until = tokio::time::Instant::now() + SETTLE_FOR;
        let mut last = String::new();
        let mut next_read = tokio::time::Instant::now() + HOLDER_EVERY;
        while tokio::time::Instant::now() < until {
            if tokio::time::Instant::now() >= next_read {
                if !still_here(claim, tl, false).await {
                    return false;
                }
                next_read = tokio::time::Instant::now() + HOLDER_EVERY;
            }
            match checkip::egress_ip(&self.http, &self.egress.checkip_url, self.egress.timeout)
                .await
            {
                Ok(ip) if ip == public => {
                    tl.mark("egress_from_eip", format!("checkip says {ip}"));
                    return true;
                }
                Ok(ip) => last = format!("checkip says {ip}"),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
        tl.mark(
            "egress_unproven",
            format!(
                "traffic does not leave from {public} after {}s: {last}",
                SETTLE_FOR.as_secs()
            ),
        );
        false
    }
}

/// A drill's last look: the provider still shows the address on this node (another node or
/// an operator may have moved it while the drill measured).
/// `mark`: add a `still_here` step when it is (a look in the middle of a wait adds none).
async fn still_here(claim: &ClaimAction, tl: &mut Timeline, mark: bool) -> bool {
    match claim.is_here().await {
        Ok((true, holder)) => {
            if mark {
                tl.mark("still_here", holder);
            }
            true
        }
        Ok((false, holder)) => {
            tl.mark("moved_away", format!("the address is on {holder} now"));
            false
        }
        Err(e) => {
            tl.mark("moved_away", format!("cannot tell who holds it: {e}"));
            false
        }
    }
}

/// Steps whose presence fails a drill.
const FAILED_STEPS: &[&str] = &["check_failing", "egress_unproven", "moved_away"];

/// The one line `takeover` and `drill` end with.
fn summary(
    kind: &str,
    eip: &AddressRef,
    m: &MoveReport,
    back: Option<&MoveReport>,
    holds: bool,
    passed: Option<bool>,
    t0: u64,
) -> String {
    let steps = &m.steps;
    let head = match (kind, passed) {
        ("drill", Some(true)) => "drill passed".to_string(),
        ("drill", _) => "drill FAILED".to_string(),
        _ if m.outcome == "done" => "takeover done".to_string(),
        _ if holds => "takeover: nothing to do".to_string(),
        _ => format!("takeover {}", m.outcome.to_uppercase()),
    };
    let mut parts: Vec<String> = steps
        .iter()
        .filter(|s| FAILED_STEPS.contains(&s.step.as_str()))
        .map(|s| format!("{}: {}", s.step, s.detail))
        .collect();
    if let Some(r) = &m.reason {
        parts.push(format!("{r}: {}", m.detail));
    } else if m.outcome != "done" {
        parts.push(m.detail.clone());
    }
    for (label, step) in [
        ("first mutating call", "first_mutating_call"),
        ("verified", "verified"),
        ("check passes", "check_passes"),
        ("egress from the EIP", "egress_from_eip"),
    ] {
        if let Some(t) = after(steps, t0, step) {
            parts.push(format!("{label} +{t}"));
        }
    }
    let returned = back.is_some_and(|b| b.outcome == "done");
    let mut line = format!("{head}: {eip}");
    line.push_str(match (holds, returned) {
        (true, _) => " is on this node",
        (false, true) => " moved here and back",
        (false, false) => " is not on this node",
    });
    if !parts.is_empty() {
        line.push_str(&format!(" ({})", parts.join(", ")));
    }
    if let Some(b) = back {
        let t0b = b.steps.first().map_or(t0, |s| s.at);
        let failed: Vec<String> = b
            .steps
            .iter()
            .filter(|s| FAILED_STEPS.contains(&s.step.as_str()))
            .map(|s| format!("{}: {}", s.step, s.detail))
            .collect();
        match after(&b.steps, t0b, "verified") {
            Some(t) if b.outcome == "done" && !failed.is_empty() => line.push_str(&format!(
                "; returned, verified +{t}, then {}",
                failed.join(", ")
            )),
            Some(t) if b.outcome == "done" => line.push_str(&format!("; returned, verified +{t}")),
            _ => line.push_str(&format!(
                "; NOT returned ({}{})",
                b.reason
                    .as_deref()
                    .map(|r| format!("{r}: "))
                    .unwrap_or_default(),
                b.detail
            )),
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(step: &str, at: u64, detail: &str) -> Step {
        Step {
            step: step.into(),
            at,
            detail: detail.into(),
        }
    }

    /// A tester's find: a failed drill's last line named no failed step, and a `--back` whose
    /// check then failed still read as returned.
    #[test]
    fn a_failed_drills_last_line_names_the_step_that_failed() {
        let m = MoveReport {
            kind: "drill".into(),
            outcome: "done".into(),
            reason: None,
            detail: "claimed".into(),
            steps: vec![
                step("command_received", 1000, ""),
                step("first_mutating_call", 1100, ""),
                step("verified", 1200, ""),
                step("egress_unproven", 61200, "checkip says 198.51.100.7"),
            ],
        };
        let back = MoveReport {
            kind: "back".into(),
            outcome: "done".into(),
            reason: None,
            detail: "returned".into(),
            steps: vec![
                step("claim_started", 70000, ""),
                step("verified", 70100, ""),
                step("check_failing", 130100, "HTTP 502"),
            ],
        };
        let eip = AddressRef::Eip(EipRef::PublicIp(Ipv4Addr::new(203, 0, 113, 10)));
        let line = summary("drill", &eip, &m, Some(&back), false, Some(false), 1000);
        assert!(line.starts_with("drill FAILED"), "{line}");
        assert!(
            line.contains("egress_unproven: checkip says 198.51.100.7"),
            "{line}"
        );
        assert!(line.contains("then check_failing: HTTP 502"), "{line}");
        assert!(line.contains("moved here and back"), "{line}");
        // A returned address reads as returned, not as "not on this node".
        let mut back_ok = back.clone();
        back_ok.steps.truncate(2);
        let mut m_ok = m.clone();
        m_ok.steps.truncate(3);
        let line = summary(
            "drill",
            &eip,
            &m_ok,
            Some(&back_ok),
            false,
            Some(true),
            1000,
        );
        assert!(line.starts_with("drill passed"), "{line}");
        assert!(line.contains("moved here and back"), "{line}");
        assert!(!line.contains("not on this node"), "{line}");
    }
}
