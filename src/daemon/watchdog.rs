//! The systemd watchdog (systemd.service(5) `WatchdogSec=`, sd_watchdog_enabled(3)): `run`
//! sends `WATCHDOG=1` (sd_notify(3)) every half interval, but only while the daemon makes
//! progress, so that systemd kills and restarts (`Restart=on-failure`) a daemon that is wedged.
//!
//! What counts as progress. Every rule's task reports into a shared [`Heartbeat`] through
//! [`Watched`], a wrapper around the generation's [`Effects`]: when its probe starts and ends,
//! when each action starts and ends, and when its cycle ends. Pings stop as soon as one of
//! these has lasted longer than its own bound plus [`SLACK`]:
//!
//! - a probe: its [`Pacing`] deadline. The engine cuts a probe at that deadline itself, so a
//!   probe still running past it is one whose task is no longer polled (a blocking call on a
//!   worker thread, a dead timer);
//! - an action: the bound its kind has ([`Budgets`]): an `exec` its `timeout` (it is killed
//!   then), an `sns` none (it only queues the alert), a `claim_eip` every AWS call, instance
//!   metadata lookup, egress and HAProxy check and the verification it may make, twice over
//!   (a claim first waits for an earlier claim of the same Elastic IP);
//! - the gap between the probe and the actions, and between the actions and the cycle's end
//!   (saving state, counting): nothing beyond [`SLACK`];
//! - the wait between two cycles: the rule's period (a slow cycle starts the next at once);
//! - a reload, from SIGHUP until the next configuration runs (loading and building it, then
//!   the running rules' shutdown grace): [`BETWEEN_GENERATIONS`]. Meanwhile rules that have
//!   finished their last cycle are not waited for.
//!
//! A rule that legitimately takes long (a check's timeout, a backend-sync round, a claim in
//! flight) stays within its bound and does not stop the pings; no progress "since the last
//! ping" is asked for, since a rule may run once an hour. With no rule at all the daemon still
//! pings: the pinger is a task on the same tokio runtime as everything else, so a runtime
//! whose threads are all stuck stops the pings by itself.

use super::SHUTDOWN_GRACE;
use crate::actions::{ActionContext, ActionOutcome};
use crate::checks::Outcome;
use crate::config::{ActionSpec, Config, Rule};
use crate::engine::{CycleReport, Effects, Pacing, RuleState};
use crate::telemetry::events;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};

/// How much longer than its own bound anything may take before pings stop: timers firing late
/// on a busy machine, a state file written to a slow disk.
pub const SLACK: Duration = Duration::from_secs(10);

/// How long a reload (from SIGHUP until the next configuration runs) or a stop may take:
/// loading and building the configuration (well within [`SLACK`]), the running rules'
/// [`SHUTDOWN_GRACE`], and [`SLACK`] more for their tasks to be cut. 30 s.
pub const BETWEEN_GENERATIONS: Duration =
    Duration::from_secs(SHUTDOWN_GRACE.as_secs() + 2 * SLACK.as_secs());

/// The AWS calls a claim makes at most, each bounded by `[aws] operation_timeout`: who holds
/// the EIP during a hold-down, where this node is (up to two), who holds it now, the move
/// (up to two), and the verification's last read.
const CLAIM_AWS_CALLS: u32 = 8;
/// Instance metadata lookups a claim makes at most, each bounded by `[node] imds_timeout`
/// (token, instance, ENI, private IP).
const CLAIM_IMDS_CALLS: u32 = 4;

/// What each rule is doing and since when; the pinger asks it whether anything is overdue.
/// Shared by every generation of one daemon.
#[derive(Debug, Default)]
pub struct Heartbeat {
    board: Mutex<Board>,
}

#[derive(Debug, Default)]
struct Board {
    /// The running generation; reports from an older one are ignored.
    generation: u64,
    rules: BTreeMap<String, Slot>,
    /// Since when a generation is being replaced or stopped (a reload, the daemon's stop).
    between: Option<Instant>,
}

#[derive(Debug, Clone)]
struct Slot {
    doing: Doing,
    since: Instant,
    /// How long `doing` may take, [`SLACK`] not included.
    bound: Duration,
}

/// What a rule's task is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Doing {
    /// Waiting for its next cycle.
    Waiting,
    /// Running its probe.
    Probing,
    /// Running this action.
    Acting(String),
    /// Inside its cycle, between the probe, the actions and the cycle's end.
    Counting,
}

impl std::fmt::Display for Doing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Doing::Waiting => write!(f, "waiting for its next cycle"),
            Doing::Probing => write!(f, "running its probe"),
            Doing::Acting(a) => write!(f, "running action {a}"),
            Doing::Counting => write!(f, "counting and saving its results"),
        }
    }
}

/// Something that has taken longer than its bound plus [`SLACK`]: pings stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overdue {
    /// The rule; None for a reload (or a stop) that has not completed.
    pub rule: Option<String>,
    /// What the rule is doing (`Waiting` for a reload).
    pub doing: Doing,
    /// For how long.
    pub stuck_for: Duration,
    /// Its bound, [`SLACK`] not included.
    pub bound: Duration,
}

impl Heartbeat {
    /// A new generation's rules, each waiting for its first cycle (`period` is between the
    /// starts of two of its cycles, [`Pacing::period`]). Ends the time between generations.
    /// Returns the generation's number, for [`Heartbeat::enter`].
    fn generation(&self, rules: impl IntoIterator<Item = (String, Duration)>) -> u64 {
        let now = Instant::now();
        let mut b = self.lock();
        b.generation += 1;
        b.rules = rules
            .into_iter()
            .map(|(name, period)| {
                let slot = Slot {
                    doing: Doing::Waiting,
                    since: now,
                    bound: period,
                };
                (name, slot)
            })
            .collect();
        b.between = None;
        b.generation
    }

    /// The running generation is about to be replaced (a reload) or stopped: rules that end
    /// are no longer waited for, and the change itself must complete within
    /// [`BETWEEN_GENERATIONS`]. Keeps the first time when called again.
    pub fn changing_generation(&self) {
        let mut b = self.lock();
        b.between.get_or_insert_with(Instant::now);
    }

    /// The reload was refused: the running generation goes on as before.
    pub fn generation_kept(&self) {
        self.lock().between = None;
    }

    /// `rule` of generation `generation` now does `doing`, which may take `bound`.
    fn enter(&self, generation: u64, rule: &str, doing: Doing, bound: Duration) {
        let mut b = self.lock();
        if b.generation != generation {
            return;
        }
        let slot = Slot {
            doing,
            since: Instant::now(),
            bound,
        };
        // Every rule has its slot from `generation`: no key to allocate on each check.
        match b.rules.get_mut(rule) {
            Some(s) => *s = slot,
            None => {
                b.rules.insert(rule.to_owned(), slot);
            }
        }
    }

    /// What has been going on longest past its bound plus [`SLACK`], if anything.
    pub fn overdue(&self) -> Option<Overdue> {
        let now = Instant::now();
        let b = self.lock();
        let late = |since: Instant, bound: Duration| now.duration_since(since) > bound + SLACK;
        let mut worst: Option<Overdue> = None;
        if let Some(since) = b.between.filter(|s| late(*s, BETWEEN_GENERATIONS)) {
            worst = Some(Overdue {
                rule: None,
                doing: Doing::Waiting,
                stuck_for: now.duration_since(since),
                bound: BETWEEN_GENERATIONS,
            });
        }
        for (name, slot) in &b.rules {
            // A rule whose generation is being replaced or stopped may have ended.
            if b.between.is_some() && slot.doing == Doing::Waiting {
                continue;
            }
            if !late(slot.since, slot.bound) {
                continue;
            }
            let past = now.duration_since(slot.since).saturating_sub(slot.bound);
            if worst
                .as_ref()
                .is_none_or(|w| past > w.stuck_for.saturating_sub(w.bound))
            {
                worst = Some(Overdue {
                    rule: Some(name.clone()),
                    doing: slot.doing.clone(),
                    stuck_for: now.duration_since(slot.since),
                    bound: slot.bound,
                });
            }
        }
        worst
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How long each action may run, by action name, from its kind's own bounds (see the module
/// documentation).
#[derive(Debug, Clone, Default)]
pub struct Budgets(BTreeMap<String, Duration>);

impl Budgets {
    /// The bounds of `config`'s actions.
    pub fn of(config: &Config) -> Budgets {
        let longest_check = config
            .rules
            .iter()
            .map(|r| r.timeout)
            .max()
            .unwrap_or_default();
        // One claim: its AWS calls, this node's identity, its egress, HAProxy before and
        // after (the last look), the rule's check once more, and the verification.
        let claim = config.aws.operation_timeout * CLAIM_AWS_CALLS
            + config.node.imds_timeout * CLAIM_IMDS_CALLS
            + config.egress.timeout
            + config.haproxy.timeout * 2
            + longest_check
            + super::build::VERIFY_FOR;
        // One claim action's bound (a group's is built from its members').
        let single = |spec: &ActionSpec| -> Duration {
            match spec {
                // Killed at its timeout, with whatever it started.
                ActionSpec::Exec(x) => x.timeout,
                // Queues the alert; the outbox publishes it on its own task.
                ActionSpec::Sns(_) => Duration::ZERO,
                // A claim of the same EIP by another rule may be ahead of it.
                ActionSpec::ClaimEip(_) => claim * 2,
                // Checkip's timeout counts, though the reachability probe replaces it: a
                // bound may be generous, never short. The provider's own reads before the
                // claim, a route claim's per-table writes within its verification window,
                // the settling reads and the local address.
                ActionSpec::ClaimPrivateIp(c) => {
                    (claim
                        + c.reachability.timeout
                        + config.aws.operation_timeout * 4
                        + crate::actions::claim::SETTLE
                        + crate::actions::claim::local_address::NETLINK_TIMEOUT)
                        * 2
                }
                ActionSpec::ClaimRoute(c) => {
                    let tables = u32::try_from(c.route_table_ids.len()).unwrap_or(u32::MAX);
                    (claim
                        + c.reachability.timeout
                        + config.aws.operation_timeout * (4 + 2 * tables.min(1000))
                        + super::build::VERIFY_FOR
                        + crate::actions::claim::SETTLE
                        + crate::actions::claim::local_address::NETLINK_TIMEOUT)
                        * 2
                }
                ActionSpec::ClaimGroup(_) => Duration::ZERO,
            }
        };
        let bound_of = |spec: &ActionSpec| -> Duration {
            match spec {
                // Its members run at once, first checked, then moved, then the ones that
                // failed retried for up to RETRY_FOR (a round started just before it ends
                // runs to its end).
                ActionSpec::ClaimGroup(g) => {
                    let longest = g
                        .members
                        .iter()
                        .filter_map(|m| config.actions.get(m))
                        .map(single)
                        .max()
                        .unwrap_or_default();
                    longest * 3 + crate::actions::claim::group::RETRY_FOR
                }
                other => single(other),
            }
        };
        Budgets(
            config
                .actions
                .iter()
                .map(|(name, spec)| (name.clone(), bound_of(spec)))
                .collect(),
        )
    }

    /// `action`'s bound; an action the configuration does not have fails at once.
    pub fn get(&self, action: &str) -> Duration {
        self.0.get(action).copied().unwrap_or_default()
    }
}

/// A generation's [`Effects`] that report each rule's progress into a [`Heartbeat`] and
/// otherwise do exactly what the wrapped ones do.
pub struct Watched<E> {
    inner: Arc<E>,
    heartbeat: Arc<Heartbeat>,
    generation: u64,
    budgets: Budgets,
    /// Each rule's [`Pacing::period`].
    periods: BTreeMap<String, Duration>,
}

impl<E: Effects> Watched<E> {
    /// `inner` running `config`: its rules are registered in `heartbeat` as a new
    /// generation, each waiting for its first cycle.
    pub fn new(inner: Arc<E>, heartbeat: Arc<Heartbeat>, config: &Config) -> Watched<E> {
        let periods: BTreeMap<String, Duration> = config
            .rules
            .iter()
            .map(|r| (r.name.clone(), inner.pacing(r).period))
            .collect();
        let generation = heartbeat.generation(periods.clone());
        Watched {
            budgets: Budgets::of(config),
            periods,
            inner,
            heartbeat,
            generation,
        }
    }

    /// Marks `rule` as doing `doing` until the guard is dropped (the future completed or was
    /// cut by the engine's timeout), then as counting.
    fn doing<'a>(&'a self, rule: &'a str, doing: Doing, bound: Duration) -> Leave<'a> {
        self.heartbeat.enter(self.generation, rule, doing, bound);
        Leave {
            heartbeat: &self.heartbeat,
            generation: self.generation,
            rule,
        }
    }
}

struct Leave<'a> {
    heartbeat: &'a Heartbeat,
    generation: u64,
    rule: &'a str,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.heartbeat
            .enter(self.generation, self.rule, Doing::Counting, Duration::ZERO);
    }
}

impl<E: Effects> Effects for Watched<E> {
    async fn check(&self, rule: &Rule) -> Outcome {
        let deadline = self.inner.pacing(rule).deadline;
        let _leave = self.doing(&rule.name, Doing::Probing, deadline);
        self.inner.check(rule).await
    }

    async fn act(&self, action: &str, ctx: &ActionContext) -> ActionOutcome {
        let bound = self.budgets.get(action);
        let _leave = self.doing(&ctx.rule, Doing::Acting(action.to_owned()), bound);
        self.inner.act(action, ctx).await
    }

    fn streak_started(&self, action: &str) {
        self.inner.streak_started(action);
    }

    fn report(&self, report: &CycleReport) {
        self.inner.report(report);
        let period = self.periods.get(&report.rule).copied().unwrap_or_default();
        self.heartbeat
            .enter(self.generation, &report.rule, Doing::Waiting, period);
    }

    fn transitioned(
        &self,
        rule: &str,
        transition: crate::engine::threshold::Transition,
        detail: &str,
    ) {
        self.inner.transitioned(rule, transition, detail);
    }

    fn persist(&self, rule: &str, state: &RuleState) {
        self.inner.persist(rule, state);
    }

    fn pacing(&self, rule: &Rule) -> Pacing {
        self.inner.pacing(rule)
    }
}

/// When systemd asks for keep-alive pings: `WATCHDOG_USEC` set (and `WATCHDOG_PID`, when set,
/// this process), as sd_watchdog_enabled(3) reads them. None without a watchdog.
pub fn interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
}

/// Every `every`, `ping` (sd_notify `WATCHDOG=1`) unless [`Heartbeat::overdue`] names
/// something; never returns. Logs once when pings stop (what is stuck, since when) and once
/// when they resume.
pub async fn keep_alive(heartbeat: Arc<Heartbeat>, every: Duration, mut ping: impl FnMut()) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut withheld: Option<Overdue> = None;
    loop {
        ticks.tick().await;
        match heartbeat.overdue() {
            None => {
                if let Some(was) = withheld.take() {
                    tracing::warn!(
                        event = events::WATCHDOG_RESUMED,
                        rule = was.rule.as_deref().unwrap_or(""),
                        "progress again: keep-alive pings to systemd resume"
                    );
                }
                ping();
            }
            Some(o) => {
                let same = withheld
                    .as_ref()
                    .is_some_and(|w| w.rule == o.rule && w.doing == o.doing);
                if !same {
                    let since = std::time::SystemTime::now()
                        .checked_sub(o.stuck_for)
                        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
                        .unwrap_or_default();
                    match &o.rule {
                        Some(rule) => {
                            tracing::error!(event = events::WATCHDOG_WITHHELD, rule = %rule,
                            doing = %o.doing, since = %since, stuck_s = o.stuck_for.as_secs(), bound_s = o.bound.as_secs(),
                            "a rule is stuck: no more keep-alive pings, systemd will restart the daemon")
                        }
                        None => {
                            tracing::error!(event = events::WATCHDOG_WITHHELD, doing = "reloading",
                            since = %since, stuck_s = o.stuck_for.as_secs(), bound_s = o.bound.as_secs(),
                            "a reload has not completed: no more keep-alive pings, systemd will restart the daemon")
                        }
                    }
                }
                withheld = Some(o);
            }
        }
    }
}

/// Start pinging systemd when it asks for it ([`interval`]): half its interval, as
/// sd_notify(3) recommends. The task runs until aborted.
pub fn spawn(heartbeat: Arc<Heartbeat>) -> Option<tokio::task::JoinHandle<()>> {
    let usec = interval()?;
    let every = usec / 2;
    tracing::info!(
        event = events::WATCHDOG_ENABLED,
        interval_ms = usec.as_millis() as u64,
        ping_every_ms = every.as_millis() as u64
    );
    Some(tokio::spawn(keep_alive(heartbeat, every, || {
        super::signals::notify_systemd(&[sd_notify::NotifyState::Watchdog]);
    })))
}

#[cfg(test)]
mod tests;
