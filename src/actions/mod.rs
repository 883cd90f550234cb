//! Actions carry out what the engine decided: claim an Elastic IP, publish an alert, run a
//! program.
//! Each kind lives in its own file; [`Action`] dispatches with a `match`.

pub mod alerts;
pub mod claim;
pub mod exec;
pub mod notify;

use crate::engine::threshold::Transition;
use crate::telemetry::events;
use std::fmt;

/// Why an action is being run.
#[derive(Debug, Clone)]
pub struct ActionContext {
    pub rule: String,
    pub transition: Transition,
    /// The check outcome that completed (or followed) the transition.
    pub detail: String,
    /// Consecutive failures (for `failed`) or successes (for `recovered`).
    pub consecutive: u32,
    /// True when this is a retry of an action that could not complete on an earlier cycle.
    pub retry: bool,
    /// The rule's check and timeout, so an action about to make a change can look once more.
    pub recheck: Option<(crate::config::CheckSpec, std::time::Duration)>,
    /// When the rule's failure streak began and when it failed (the failover history).
    pub times: crate::engine::StreakTimes,
    /// Set when an operator asked for this run (`watchdog takeover` or `drill`), not a
    /// failing rule.
    pub planned: Option<Planned>,
    /// Set when a `claim_group` runs this claim as one of its members.
    pub group: Option<GroupRole>,
}

/// How a `claim_group` runs one of its members: first every member is checked, then, once
/// all may move, each is moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupRole {
    /// Run the gates up to and including the last look, and stop before any change: the
    /// outcome says whether this member may move (`NoOp` with a `ready` step), is already
    /// here (`NoOp`), or may not (`Refused`, `Error`).
    Check,
    /// As `Check`, but the hold-down does not apply: part of the group is on this node
    /// already (a claim cut by a crash, a member that failed), and finishing the group is no
    /// ping-pong, while leaving it split would be an outage of its own.
    Finish,
    /// The group decided: move it. Every gate runs again but those that were decided for the
    /// whole group and would only split it now: the hold-down, the path proof and the rule's
    /// recheck (once one member moved, the rule's check may pass because of it). A member whose
    /// owner changed since the check refuses (moved-meanwhile), as any claim does. No alert
    /// of its own: the group sends one.
    Commit,
}

/// An operator's planned takeover: the claim skips the gates an operator overrides on purpose
/// (the rule need not be failing, the hold-down does not apply, the owner may have changed)
/// and keeps every safety gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// Who asked: `user (uid N)`, from the control socket's peer credentials.
    pub by: String,
    /// `takeover` or `drill`.
    pub kind: &'static str,
}

/// What an action did. `Refused` and `Error` are retried on the next cycle while the rule
/// stays in the state that triggered the action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionOutcome {
    /// It changed something (claimed the EIP, queued an alert).
    Done(String),
    /// Nothing needed doing (the EIP is already ours).
    NoOp(String),
    /// A precondition does not hold (local HAProxy down, egress unverified, hold-down, lost
    /// race); `reason` is a short fixed label for counters.
    Refused {
        reason: &'static str,
        detail: String,
    },
    /// The outside world failed (AWS error, metadata unavailable).
    Error(String),
}

impl ActionOutcome {
    pub fn wants_retry(&self) -> bool {
        matches!(
            self,
            ActionOutcome::Refused { .. } | ActionOutcome::Error(_)
        )
    }

    pub fn label(&self) -> &'static str {
        match self {
            ActionOutcome::Done(_) => "done",
            ActionOutcome::NoOp(_) => "no-op",
            ActionOutcome::Refused { .. } => "refused",
            ActionOutcome::Error(_) => "error",
        }
    }

    /// Log the outcome as its `event`. `loud`: a refusal at warning level (false: the same
    /// refusal again, at debug level).
    pub fn log(&self, rule: &str, action: &str, loud: bool) {
        match self {
            ActionOutcome::Refused { reason, detail } if !loud => {
                tracing::debug!(event = events::ACTION_REFUSED, rule, action, reason, detail = %detail, repeated = true)
            }
            ActionOutcome::Done(d) => {
                tracing::info!(event = events::ACTION_DONE, rule, action, detail = %d)
            }
            ActionOutcome::NoOp(d) => {
                tracing::info!(event = events::ACTION_NOOP, rule, action, detail = %d)
            }
            ActionOutcome::Refused { reason, detail } => {
                tracing::warn!(event = events::ACTION_REFUSED, rule, action, reason, detail = %detail)
            }
            ActionOutcome::Error(d) => {
                tracing::error!(event = events::ACTION_ERROR, rule, action, detail = %d)
            }
        }
    }
}

impl fmt::Display for ActionOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActionOutcome::Done(d) | ActionOutcome::NoOp(d) | ActionOutcome::Error(d) => {
                write!(f, "{}: {d}", self.label())
            }
            ActionOutcome::Refused { reason, detail } => write!(f, "refused ({reason}): {detail}"),
        }
    }
}

/// A configured action, ready to run.
pub enum Action {
    Claim(claim::ClaimAction),
    Group(claim::ClaimGroup),
    Sns(notify::SnsNotify),
    Exec(exec::Exec),
}

impl Action {
    pub async fn run(&self, ctx: &ActionContext) -> ActionOutcome {
        match self {
            Action::Claim(a) => a.run(ctx).await,
            Action::Group(g) => g.run(ctx).await,
            Action::Sns(a) => a.run(ctx),
            Action::Exec(a) => a.run(ctx).await,
        }
    }
}
