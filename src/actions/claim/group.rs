//! `type = "claim_group"`: several addresses moved as one decision, like keepalived's
//! `vrrp_sync_group` (the public Elastic IP and the internal overlay IP of one load
//! balancer, say).
//!
//! 1. Check: every member runs its gates at once, up to and including its last look, and
//!    stops before any change ([`GroupRole::Check`]). One refusal or error stops the whole
//!    group before anything moved; members already here need nothing.
//! 2. Move: every member that may move runs again as [`GroupRole::Commit`] (the path proof
//!    and the rule's recheck were decided for the group; every other gate runs), at once.
//!    A member that failed on an error (AWS throttling, a 5xx, a timeout) is retried, with
//!    backoff, until the whole group is here or [`RETRY_FOR`] has passed. A member another
//!    node holds now (lost race, moved meanwhile, hold-down) is not fought over.
//! 3. One alert names every member and where each went. A group left split across nodes
//!    is an error (`group_split`), said in that alert.

use super::{ClaimAction, ClaimEnv, HoldDowns};
use crate::actions::alerts::Alert;
use crate::actions::notify::sns_subject;
use crate::actions::{ActionContext, ActionOutcome, GroupRole};
use crate::config::AddressRef;
use crate::config::ClaimGroupSpec;
use crate::history::{Entry, Kind};
use crate::telemetry::events;
use futures_util::future::join_all;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long a group keeps retrying the members that failed on an error before it reports
/// itself split.
pub const RETRY_FOR: Duration = Duration::from_secs(60);

/// A configured `claim_group`, bound to its members' claim actions.
pub struct ClaimGroup {
    spec: ClaimGroupSpec,
    members: Vec<(String, ClaimAction)>,
    env: Arc<ClaimEnv>,
    /// Where the members' saved claims are settled with the group's alert.
    holds: HoldDowns,
    /// One run of the group at a time.
    running: tokio::sync::Mutex<()>,
}

/// How one member ended a move.
struct Moved {
    name: String,
    address: String,
    address_ref: AddressRef,
    outcome: ActionOutcome,
}

impl Moved {
    fn here(&self) -> bool {
        matches!(
            self.outcome,
            ActionOutcome::Done(_) | ActionOutcome::NoOp(_)
        )
    }
}

impl ClaimGroup {
    /// `members`: the claim actions the spec names, in its order.
    pub fn new(
        spec: ClaimGroupSpec,
        members: Vec<(String, ClaimAction)>,
        env: Arc<ClaimEnv>,
        holds: HoldDowns,
    ) -> Self {
        ClaimGroup {
            spec,
            members,
            env,
            holds,
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// The members' names, in order.
    pub fn members(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|(n, _)| n.as_str())
    }

    /// Tell every member the rule guarding the group started failing (each notes its owner).
    pub fn note_owner(&self) {
        for (_, m) in &self.members {
            m.note_owner();
        }
    }

    /// Check every member, then move the ones not here yet, then one alert.
    pub async fn run(&self, ctx: &ActionContext) -> ActionOutcome {
        let _one = self.running.lock().await;
        let group = &self.spec.name;
        let check = ActionContext {
            group: Some(GroupRole::Check),
            ..ctx.clone()
        };
        let checked = join_all(self.members.iter().map(|(_, m)| m.run_timed(&check))).await;
        let mut to_move = Vec::new();
        let mut already = Vec::new();
        let mut held = Vec::new();
        let mut refusal = None;
        for ((name, m), (out, tl)) in self.members.iter().zip(checked) {
            match out {
                ActionOutcome::NoOp(_) if tl.at("ready").is_some() => to_move.push((name, m)),
                ActionOutcome::NoOp(_) | ActionOutcome::Done(_) => already.push(name.as_str()),
                ActionOutcome::Refused {
                    reason: "hold_down",
                    detail,
                } => {
                    held.push((name, m));
                    refusal.get_or_insert((name, m, Err(("hold_down", detail))));
                }
                ActionOutcome::Refused { reason, detail } => {
                    refusal = Some((name, m, Err((reason, detail))));
                    break;
                }
                ActionOutcome::Error(e) => {
                    refusal = Some((name, m, Ok(e)));
                    break;
                }
            }
        }
        // Part of the group is here and the rest only waits out its hold-down (a crash or a
        // failure cut the last move): finishing the group is no ping-pong, a split is.
        let only_held = matches!(&refusal, Some((_, _, Err(("hold_down", _)))));
        if only_held && !already.is_empty() {
            let finish = ActionContext {
                group: Some(GroupRole::Finish),
                ..ctx.clone()
            };
            refusal = None;
            let rechecked = join_all(held.iter().map(|(_, m)| m.run_timed(&finish))).await;
            for ((name, m), (out, tl)) in held.into_iter().zip(rechecked) {
                match out {
                    ActionOutcome::NoOp(_) if tl.at("ready").is_some() => to_move.push((name, m)),
                    ActionOutcome::NoOp(_) | ActionOutcome::Done(_) => already.push(name.as_str()),
                    ActionOutcome::Refused { reason, detail } => {
                        refusal = Some((name, m, Err((reason, detail))));
                        break;
                    }
                    ActionOutcome::Error(e) => {
                        refusal = Some((name, m, Ok(e)));
                        break;
                    }
                }
            }
        }
        let here_note = if already.is_empty() {
            String::new()
        } else {
            format!(" ({} already on this node)", already.join(", "))
        };
        match refusal {
            Some((name, m, Err((reason, detail)))) => {
                return ActionOutcome::Refused {
                    reason,
                    detail: format!(
                    "member {name} ({}): {detail}; so group {group} moves nothing now{here_note}",
                    m.address()
                ),
                }
            }
            Some((name, m, Ok(e))) => {
                return ActionOutcome::Error(format!(
                    "member {name} ({}): {e}; so group {group} moves nothing now{here_note}",
                    m.address()
                ))
            }
            None => {}
        }
        if to_move.is_empty() {
            return ActionOutcome::NoOp(format!(
                "every member of group {group} is already on this node"
            ));
        }

        let commit = ActionContext {
            group: Some(GroupRole::Commit),
            ..ctx.clone()
        };
        let deadline = Instant::now() + RETRY_FOR;
        let mut backoff = Duration::from_secs(1);
        let mut done: Vec<Moved> = Vec::new();
        let mut left = to_move;
        loop {
            let outs = join_all(left.iter().map(|(_, m)| m.run(&commit))).await;
            let mut again = Vec::new();
            for ((name, m), outcome) in left.into_iter().zip(outs) {
                let retry = matches!(outcome, ActionOutcome::Error(_));
                if retry {
                    tracing::warn!(event = events::GROUP_SPLIT, group = %group, member = %name, outcome = %outcome,
                        "this member did not move yet; retrying");
                }
                done.retain(|d| d.name != *name);
                done.push(Moved {
                    name: name.clone(),
                    address: m.address().to_string(),
                    address_ref: m.address(),
                    outcome,
                });
                if retry {
                    again.push((name, m));
                }
            }
            left = again;
            if left.is_empty() || Instant::now() >= deadline || *self.env.stopping.borrow() {
                break;
            }
            tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now())))
                .await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }

        let whole = done.iter().all(Moved::here);
        let lines: Vec<String> = done
            .iter()
            .map(|d| format!("- {} ({}): {}", d.address, d.name, d.outcome))
            .chain(
                already
                    .iter()
                    .map(|n| format!("- {n}: already on this node")),
            )
            .collect();
        let instance = self
            .env
            .identity
            .get()
            .await
            .map(|me| me.instance_id.clone())
            .unwrap_or_else(|_| "this node".into());
        let names: Vec<&str> = done.iter().map(|d| d.address.as_str()).collect();
        let subject = if whole {
            format!("{instance} took over group {group} ({})", names.join(", "))
        } else {
            format!("group {group} is SPLIT: not every address is on {instance}")
        };
        let why = match &ctx.planned {
            None => format!(
                "rule {} failed {} consecutive checks; last: {}",
                ctx.rule, ctx.consecutive, ctx.detail
            ),
            Some(p) => format!("planned {} requested by {}", p.kind, p.by),
        };
        let message = format!(
            "Group {group}: {}.\n{}\nWhy: {why}.\nTime: {}\n",
            if whole {
                format!("instance {instance} took over every member")
            } else {
                "not every member moved; the addresses are on different nodes. The group runs again at the rule's next cycle while the rule stays failed, and at its next failure".to_owned()
            },
            lines.join("\n"),
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        );
        let moved_any = done
            .iter()
            .any(|d| matches!(d.outcome, ActionOutcome::Done(_)));
        let mut entry = Entry::new(
            if whole {
                Kind::Claimed
            } else {
                Kind::ClaimError
            },
            format!("group {group}: {}", lines.join("; ")),
        );
        entry.rule = Some(ctx.rule.clone());
        entry.action = Some(group.clone());
        self.env.history.record(entry);
        // Each member that moved kept its claim saved, with its own alert: settled here with
        // the group's one alert, in one write.
        let moved: Vec<AddressRef> = done
            .iter()
            .filter(|d| matches!(d.outcome, ActionOutcome::Done(_)))
            .map(|d| d.address_ref.clone())
            .collect();
        let alert = self
            .spec
            .sns_topic_arn
            .as_ref()
            .filter(|_| moved_any)
            .map(|topic| Alert {
                topic_arn: topic.clone(),
                subject: sns_subject(&self.env.subject_prefix, &subject),
                message,
            });
        let id = self.holds.group_settled(&moved, alert.as_ref());
        if let Some(alert) = alert {
            self.env.alerter.resend(id, alert);
        }
        if whole {
            tracing::info!(event = events::GROUP_CLAIMED, group = %group, members = %names.join(", "));
            ActionOutcome::Done(format!(
                "group {group} is on this node: {}",
                lines.join("; ")
            ))
        } else {
            tracing::error!(event = events::GROUP_SPLIT, group = %group, members = %lines.join("; "),
                "the group is split across nodes");
            ActionOutcome::Error(format!("group {group} is split: {}", lines.join("; ")))
        }
    }
}
