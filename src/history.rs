//! The failover history `watchdog status --history` shows: rule transitions, claims (made,
//! refused, failed), planned takeovers and drills, pauses and resumes, each with the times of
//! its steps. Kept in memory and in the state directory's state file (bounded by
//! `[control] history`, the oldest dropped first), so it survives a restart.
//!
//! A gate that refuses the same claim cycle after cycle (a hold-down, an unverified egress)
//! is one entry whose `repeats` grows, not one entry a cycle: a long outage does not push the
//! claim that ended it out of the history.

use crate::state::StateStore;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch: how every time in the history is kept.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

/// What an entry records.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A rule failed (`fail_after` failed cycles in a row).
    RuleFailed,
    /// A failed rule recovered.
    RuleRecovered,
    /// This node moved an address onto itself.
    Claimed,
    /// `drill --back` returned the address to the node the drill took it from.
    Returned,
    /// A claim found the address already here.
    ClaimNoop,
    /// A gate refused a claim; `reason` says which.
    ClaimRefused,
    /// A claim failed on an error from the outside world (AWS, metadata).
    ClaimError,
    /// An operator's `takeover` or `drill` reached the daemon (kept even if the daemon dies
    /// during it).
    CommandReceived,
    /// A drill ended: its summary, and the times of what it measured.
    DrillResult,
    /// An operator paused this node (`watchdog pause`, or the maintenance file appeared).
    Paused,
    /// An operator resumed this node, the pause expired, or the maintenance file went.
    Resumed,
}

/// The times of a failover's steps, in milliseconds since the Unix epoch; a step that did
/// not happen (or was not this claim's) is absent.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Timings {
    /// The first failed check of the streak that failed the rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failed_check: Option<u64>,
    /// The rule failed (its `fail_after`-th failed check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_failed: Option<u64>,
    /// The claim's gates started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_started: Option<u64>,
    /// The first call that changes the provider (AssociateAddress, OpsWorks' AssociateElasticIp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_mutating_call: Option<u64>,
    /// The provider's API showed the address on this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<u64>,
    /// A drill: the rule's own check passed on this node after the move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_passes: Option<u64>,
    /// A drill: checkip showed this node's traffic leaving from the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_from_eip: Option<u64>,
    /// SNS accepted the claim's alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_sent: Option<u64>,
}

/// One line of the history.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    /// When it happened (the last time, for a repeated refusal), ms since the Unix epoch.
    pub at: u64,
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The gate that refused (`hold_down`, `paused`, ...), for a refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who asked, for an operator's command (`user (uid N)`); `maintenance_file` or
    /// `expiry` for a pause that came or went by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// `takeover` or `drill` for a claim an operator asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned: Option<String>,
    pub detail: String,
    #[serde(default)]
    pub timings: Timings,
    /// How many more times the same refusal or error followed this one, cycle after cycle.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub repeats: u32,
    /// The state file's id of the claim's alert, until SNS has it (then `alert_sent` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_id: Option<u64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Entry {
    /// An entry of `kind` now, with `detail` and nothing else.
    pub fn new(kind: Kind, detail: impl Into<String>) -> Entry {
        Entry {
            at: now_ms(),
            kind,
            rule: None,
            action: None,
            reason: None,
            by: None,
            planned: None,
            detail: detail.into(),
            timings: Timings::default(),
            repeats: 0,
            alert_id: None,
        }
    }

    /// The same refusal or error of the same claim as `self`: merged into `self`.
    fn repeats_of(&self, other: &Entry) -> bool {
        matches!(self.kind, Kind::ClaimRefused | Kind::ClaimError)
            && self.kind == other.kind
            // A claim that made a mutating call has its own times: never folded into another.
            && self.timings.first_mutating_call.is_none()
            && other.timings.first_mutating_call.is_none()
            && self.rule == other.rule
            && self.action == other.action
            && self.reason == other.reason
            && self.planned.is_none()
            && other.planned.is_none()
    }
}

/// The steps of one claim as they happen: what `takeover` and `drill` print, and where the
/// history's timings come from.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Timeline {
    pub steps: Vec<Step>,
    /// The address's public IPv4, once the owner read said it (for a drill's checkip proof).
    #[serde(skip)]
    pub public_ip: Option<std::net::Ipv4Addr>,
}

/// One step of a [`Timeline`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Step {
    /// A fixed name: `command_received`, `claim_started`, `local_haproxy_ready`,
    /// `owner_read`, `already_here`, `egress_verified`, `last_look`, `first_mutating_call`,
    /// `verified`, `alert_queued`, and for a drill `check_passes`, `egress_from_eip`.
    pub step: String,
    /// Milliseconds since the Unix epoch.
    pub at: u64,
    pub detail: String,
}

impl Timeline {
    /// Record `step` now.
    pub fn mark(&mut self, step: &str, detail: impl Into<String>) {
        self.steps.push(Step {
            step: step.into(),
            at: now_ms(),
            detail: detail.into(),
        });
    }

    /// When `step` happened, if it did.
    pub fn at(&self, step: &str) -> Option<u64> {
        self.steps.iter().find(|s| s.step == step).map(|s| s.at)
    }

    /// From `from` to `to`, when both happened in that order.
    pub fn between(&self, from: &str, to: &str) -> Option<Duration> {
        let (a, b) = (self.at(from)?, self.at(to)?);
        b.checked_sub(a).map(Duration::from_millis)
    }
}

/// The history: shared by everything that records in it, saved in the state file on each new
/// entry. Cheap to clone.
#[derive(Clone)]
pub struct History(Arc<Inner>);

struct Inner {
    entries: Mutex<VecDeque<Entry>>,
    /// `[control] history`.
    keep: usize,
    store: StateStore,
}

impl History {
    /// A history of at most `keep` entries, starting with `saved` (from the state file), saved
    /// into `store` (nowhere when it has no directory).
    pub fn new(keep: usize, saved: Vec<Entry>, store: StateStore) -> History {
        let keep = keep.max(1);
        let mut entries: VecDeque<Entry> = saved.into();
        while entries.len() > keep {
            entries.pop_front();
        }
        History(Arc::new(Inner {
            entries: Mutex::new(entries),
            keep,
            store,
        }))
    }

    /// A history kept in memory only, of the default size (tests, `--once`).
    pub fn in_memory() -> History {
        History::new(
            crate::config::defaults::HISTORY,
            Vec::new(),
            StateStore::default(),
        )
    }

    /// Add `entry`; a refusal or error that repeats the last one of the same claim only counts
    /// in that one (and is saved with the next new entry, not on every cycle).
    pub fn record(&self, entry: Entry) {
        let mut e = self.0.entries.lock().unwrap_or_else(|p| p.into_inner());
        // Only into the latest entry about the same rule: anything in between for it (a
        // recovery, a claim, another reason) starts a new entry, so a second outage is never
        // folded into the first.
        if let Some(last) = e.iter_mut().rev().find(|l| l.rule == entry.rule) {
            if last.action == entry.action && last.repeats_of(&entry) {
                last.repeats = last.repeats.saturating_add(1);
                last.at = entry.at;
                last.detail = entry.detail;
                return;
            }
        }
        e.push_back(entry);
        while e.len() > self.0.keep {
            e.pop_front();
        }
        self.0.store.history_saved(e.iter().cloned().collect());
    }

    /// SNS accepted the alert saved as `alert_id`: stamp the claim that queued it.
    pub fn alert_sent(&self, alert_id: u64) {
        if alert_id == 0 {
            return;
        }
        let mut e = self.0.entries.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = e.iter_mut().rev().find(|l| l.alert_id == Some(alert_id)) else {
            return;
        };
        entry.timings.alert_sent = Some(now_ms());
        entry.alert_id = None;
        self.0.store.history_saved(e.iter().cloned().collect());
    }

    /// Every entry, oldest first.
    pub fn entries(&self) -> Vec<Entry> {
        let e = self.0.entries.lock().unwrap_or_else(|p| p.into_inner());
        e.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(rule: &str, reason: &str) -> Entry {
        let mut e = Entry::new(Kind::ClaimRefused, format!("{reason} detail"));
        e.rule = Some(rule.into());
        e.action = Some("claim".into());
        e.reason = Some(reason.into());
        e
    }

    #[test]
    fn the_history_keeps_the_newest_entries_up_to_its_size() {
        let h = History::new(3, Vec::new(), StateStore::default());
        for i in 0..5 {
            h.record(Entry::new(Kind::RuleFailed, format!("{i}")));
        }
        let details: Vec<String> = h.entries().into_iter().map(|e| e.detail).collect();
        assert_eq!(details, ["2", "3", "4"]);
    }

    #[test]
    fn a_refusal_repeated_cycle_after_cycle_is_one_entry_with_a_count() {
        let h = History::in_memory();
        for _ in 0..50 {
            h.record(refused("web", "hold_down"));
        }
        h.record(refused("web", "egress_unverified"));
        h.record(refused("api", "egress_unverified"));
        let e = h.entries();
        assert_eq!(e.len(), 3, "{e:?}");
        assert_eq!(e[0].repeats, 49);
        assert_eq!(e[1].repeats, 0);
    }

    /// Breaker's find: a second outage's refusal was folded into the first outage's entry
    /// (a recovery in between), and a claim error with its own times overwrote an older one.
    #[test]
    fn a_second_outage_is_never_folded_into_the_first() {
        let h = History::in_memory();
        h.record(refused("web", "egress_bad_status"));
        h.record(refused("web", "egress_bad_status"));
        let mut recovered = Entry::new(Kind::RuleRecovered, "ok again");
        recovered.rule = Some("web".into());
        h.record(recovered);
        h.record(refused("web", "egress_bad_status"));
        let kinds: Vec<(Kind, u32)> = h.entries().iter().map(|e| (e.kind, e.repeats)).collect();
        assert_eq!(
            kinds,
            [
                (Kind::ClaimRefused, 1),
                (Kind::RuleRecovered, 0),
                (Kind::ClaimRefused, 0)
            ]
        );
        // Errors of claims that started a move are each their own entry.
        let h = History::in_memory();
        for at in [1_000, 41_000] {
            let mut e = Entry::new(Kind::ClaimError, format!("error at {at}"));
            e.rule = Some("web".into());
            e.action = Some("claim".into());
            e.timings.claim_started = Some(at);
            e.timings.first_mutating_call = Some(at + 50);
            h.record(e);
        }
        assert_eq!(h.entries().len(), 2);
        assert_eq!(h.entries()[0].detail, "error at 1000");
    }

    #[test]
    fn an_alert_sent_stamps_the_claim_that_queued_it() {
        let h = History::in_memory();
        let mut claimed = Entry::new(Kind::Claimed, "claimed");
        claimed.alert_id = Some(7);
        h.record(claimed);
        h.alert_sent(8);
        assert_eq!(h.entries()[0].timings.alert_sent, None);
        h.alert_sent(7);
        assert!(h.entries()[0].timings.alert_sent.is_some());
        assert_eq!(h.entries()[0].alert_id, None);
    }

    #[test]
    fn the_history_survives_a_restart_through_the_state_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (store, _) = StateStore::open(dir.path()).expect("open");
            let h = History::new(10, Vec::new(), store);
            h.record(Entry::new(Kind::Claimed, "before the restart"));
        }
        let (_store, recovered) = StateStore::open(dir.path()).expect("reopen");
        assert_eq!(recovered.history.len(), 1);
        assert_eq!(recovered.history[0].detail, "before the restart");
    }
}
