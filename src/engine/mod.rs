//! The engine decides. Each rule runs on its own task: probe, count the result, and when the
//! rule's health flips, run its actions once. `--once` is one cycle of the same code;
//! `run` is a loop of cycles until shutdown.
//!
//! An action that could not complete (a claim refused because egress is down, an AWS error,
//! a hold-down) asks to be retried; it is retried on each later cycle while the rule stays in
//! the state that triggered it, and dropped when the rule flips back.

pub mod threshold;

use crate::actions::{ActionContext, ActionOutcome};
use crate::checks::Outcome;
use crate::config::{CheckSpec, Rule};
use crate::telemetry::events;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use threshold::{Health, Threshold, Transition};
use tokio::sync::watch;
use tokio::time::Instant;

/// What the engine needs from the outside world: probe a rule's check, run a named action.
pub trait Effects: Send + Sync + 'static {
    fn check(&self, rule: &Rule) -> impl Future<Output = Outcome> + Send;
    fn act(&self, action: &str, ctx: &ActionContext) -> impl Future<Output = ActionOutcome> + Send;
    /// A rule's first failed check after being up, when it does not fail the rule at once: its
    /// `on_fail` actions may want to note the state of the world now, to compare with when
    /// they run. With `fail_after = 1` the actions run in this same cycle and look for
    /// themselves, so it is not called. Must not block.
    fn streak_started(&self, _action: &str) {}
    /// What a cycle saw and did (for `watchdog status` and the check and transition
    /// counters), in `run` and in `once` alike. Must not block.
    fn report(&self, _report: &CycleReport) {}
    /// `rule` has just failed or recovered (`detail`: the check outcome that decided it),
    /// before its actions run: the failover history lists the transition ahead of what it
    /// caused. Must not block.
    fn transitioned(&self, _rule: &str, _transition: Transition, _detail: &str) {}
    /// A rule's health or its unfinished actions changed: what a restart must pick up (the
    /// daemon saves it in its state directory at once, as monit keeps its state file, so a
    /// restart in the middle of an outage does not page again). A failure streak that began or
    /// ended while the rule was up goes to [`Effects::persist_soon`] instead.
    fn persist(&self, _rule: &str, _state: &RuleState) {}
    /// [`Effects::persist`] within a moment rather than at once (the daemon writes the state
    /// file at most every 250 ms for these): for a failure streak that began or ended, which
    /// many rules may do together (a blip of a HAProxy they all check), and whose last
    /// moment a crash may lose. Must not block.
    fn persist_soon(&self, rule: &str, state: &RuleState) {
        self.persist(rule, state);
    }
    /// How often `rule`'s probe runs and how long one run may take. Each probe owns its
    /// pacing: a check runs once per `interval` within `timeout`; a backend sync paces itself
    /// (see `sync::pacing`).
    fn pacing(&self, rule: &Rule) -> Pacing {
        Pacing::every_interval(rule)
    }
}

/// How often a rule's probe runs and how long one run may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// Between the starts of two cycles. A slow cycle delays the next one rather than causing
    /// a burst of catch-up cycles.
    pub period: Duration,
    /// A probe still running after this long is a failed check ("timed out after ...").
    pub deadline: Duration,
}

impl Pacing {
    /// A check's: once per the rule's `interval`, bounded by its `timeout`.
    pub fn every_interval(rule: &Rule) -> Pacing {
        Pacing {
            period: rule.interval,
            deadline: rule.timeout,
        }
    }
}

/// One rule's state between cycles.
pub struct RuleRunner {
    pub rule: Rule,
    threshold: Threshold,
    /// Actions of the last transition that asked to be retried.
    pending: Vec<String>,
    pending_transition: Option<Transition>,
    /// Every action the last transition listed, done or not.
    listed: Vec<String>,
    /// When the current failure streak began and the rule failed, for the history.
    times: StreakTimes,
    /// When the next cycle is due, once the rule's loop has stopped.
    next_due: Option<Instant>,
    /// Each action's last refusal logged at warning level: its reason and when. A refusal
    /// retried every cycle for the same reason (a hold-down of minutes, egress down) is
    /// logged at warning level once per [`REFUSAL_REMINDER`], at debug level in between.
    refusals_logged: std::collections::BTreeMap<String, (&'static str, Instant)>,
    /// Where `run` keeps each rule's latest state: updated wherever the state is saved for a
    /// restart (the rule flips, before its actions run; its unfinished actions change; a
    /// failure streak begins or ends), never on a cycle that changes none of that, so that a
    /// rule whose task is cut at the end of a reload's grace period (a long action, a slow
    /// sync round) hands on what a restart would resume, not nothing.
    shared: Option<Arc<std::sync::Mutex<RuleStates>>>,
}

/// How often an action refused again and again for the same reason is logged at warning
/// level (`action_refused`); in between, at debug level. A new reason is logged at once.
pub const REFUSAL_REMINDER: Duration = Duration::from_secs(60);

/// When a rule's failure streak began and when it failed, in ms since the Unix epoch: what the
/// failover history and `watchdog_failover_duration_seconds` measure from.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreakTimes {
    /// The first failed check of the streak (while the rule was up).
    pub first_failed_check: Option<u64>,
    /// The check that failed the rule.
    pub rule_failed: Option<u64>,
}

/// What one cycle of one rule saw and did.
#[derive(Debug, Clone)]
pub struct CycleReport {
    pub rule: String,
    pub check: &'static str,
    pub outcome: Outcome,
    pub health: Health,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    pub transition: Option<Transition>,
    pub actions: Vec<(String, ActionOutcome)>,
    /// How long the check took (up to the rule's deadline).
    pub took: std::time::Duration,
}

/// A rule's counts and unfinished actions, carried across a configuration reload and, through
/// the state directory, across a restart.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuleState {
    threshold: Threshold,
    pending: Vec<String>,
    pending_transition: Option<Transition>,
    #[serde(default)]
    listed: Vec<String>,
    #[serde(default)]
    times: StreakTimes,
    /// When the rule's next cycle was due as it stopped (a reload carries it; not saved).
    #[serde(skip)]
    next_due: Option<Instant>,
}

/// Rule states by rule name.
pub type RuleStates = std::collections::BTreeMap<String, RuleState>;

/// How long a restart may take and still leave a rule's failure streak in progress to go on.
pub const RESTART_ALLOWANCE: Duration = Duration::from_secs(30);

/// How old a saved failure streak of a rule still up may be and go on after a restart: the
/// longest the rule can count before failing (`fail_after` x `interval`, and one `timeout`)
/// plus [`RESTART_ALLOWANCE`]. An older one had checks missed while the daemon was down.
pub fn streak_kept_for(rule: &Rule) -> Duration {
    rule.interval * rule.fail_after + rule.timeout + RESTART_ALLOWANCE
}

impl RuleRunner {
    pub fn new(rule: Rule) -> Self {
        let threshold = Threshold::new(rule.fail_after, rule.recover_after);
        RuleRunner {
            rule,
            threshold,
            pending: Vec::new(),
            pending_transition: None,
            listed: Vec::new(),
            times: StreakTimes::default(),
            next_due: None,
            refusals_logged: Default::default(),
            shared: None,
        }
    }

    /// A rule of a reloaded configuration (or of a restart), picking up where the rule of the
    /// same name was: its health, streaks and unfinished actions, those the new rule still
    /// lists. When an unfinished action is gone from the list (renamed, replaced), the
    /// actions the new list adds become unfinished in its place: a renamed claim is still
    /// made. Actions already done are not run again.
    ///
    /// A failure streak of a rule still up, read back after a restart, goes on only when it
    /// began recently enough to be the same one (within [`streak_kept_for`]); an older one
    /// was broken by the time the daemon was down, and the count starts again.
    pub fn resume(rule: Rule, state: Option<RuleState>) -> Self {
        let Some(mut st) = state else {
            return RuleRunner::new(rule);
        };
        if st.next_due.is_none()
            && st.threshold.health() == Health::Up
            && st.threshold.consecutive_failures() > 0
        {
            let age = st
                .times
                .first_failed_check
                .map(|t| Duration::from_millis(crate::history::now_ms().saturating_sub(t)));
            match age {
                Some(age) if age <= streak_kept_for(&rule) => {
                    // Its next check comes no sooner than one interval after the failure
                    // saved: a restart must not squeeze the streak's checks together (a blip
                    // shorter than (fail_after - 1) x interval never fails the rule).
                    let spacing = rule
                        .fast_interval
                        .unwrap_or(rule.interval)
                        .min(rule.interval);
                    st.next_due = Some(Instant::now() + spacing.saturating_sub(age));
                }
                _ => {
                    tracing::info!(event = events::STREAK_NOT_RESUMED, rule = %rule.name,
                        consecutive_failures = st.threshold.consecutive_failures(),
                        "the failure streak saved before the restart is too old to go on; counting starts again");
                    st.threshold = Threshold::new(rule.fail_after, rule.recover_after);
                    st.times = StreakTimes::default();
                }
            }
        }
        let threshold = st
            .threshold
            .with_limits(rule.fail_after, rule.recover_after);
        let list = match st.pending_transition {
            Some(Transition::Failed) => &rule.on_fail,
            Some(Transition::Recovered) => &rule.on_recover,
            None => &rule.on_fail,
        };
        let mut pending: Vec<String> = st
            .pending
            .iter()
            .filter(|a| list.contains(a))
            .cloned()
            .collect();
        if pending.len() < st.pending.len() {
            let added: Vec<String> = list
                .iter()
                .filter(|a| !st.listed.contains(a) && !pending.contains(a))
                .cloned()
                .collect();
            tracing::info!(event = events::PENDING_ACTIONS_REPLACED, rule = %rule.name,
                gone = ?st.pending.iter().filter(|a| !list.contains(a)).collect::<Vec<_>>(), now = ?added,
                "unfinished actions are no longer configured; the rule's new actions run in their place");
            pending.extend(added);
        }
        RuleRunner {
            threshold,
            pending,
            pending_transition: st.pending_transition,
            listed: list.clone(),
            times: st.times,
            next_due: st.next_due,
            refusals_logged: Default::default(),
            shared: None,
            rule,
        }
    }

    /// Put the rule's state where `run` keeps it (see `shared`).
    fn share(&self) {
        if let Some(states) = &self.shared {
            if let Some(kept) = states
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(&self.rule.name)
            {
                *kept = self.state();
            }
        }
    }

    pub fn state(&self) -> RuleState {
        RuleState {
            threshold: self.threshold.clone(),
            pending: self.pending.clone(),
            pending_transition: self.pending_transition,
            listed: self.listed.clone(),
            times: self.times.clone(),
            next_due: self.next_due,
        }
    }

    /// One cycle: probe (bounded by the rule's timeout), count, act on a transition or retry
    /// what is pending.
    pub async fn cycle<E: Effects>(&mut self, fx: &E) -> CycleReport {
        let (outcome, took) = self.probe(fx).await;
        self.settle(fx, outcome, took).await
    }

    /// How long after the start of the cycle that just ended the next one starts: the rule's
    /// `fast_interval`, when it has one, while the rule is changing state (up with a failed
    /// check counted, or down with a good one), as HAProxy paces a server in transition with
    /// `fastinter` (HAProxy configuration manual, `fastinter`); `period` otherwise. A failure
    /// is then confirmed, or a recovery counted, in `(fail_after - 1) x fast_interval` after
    /// the first failed (good) check rather than in `(fail_after - 1) x interval`.
    pub fn next_period(&self, period: Duration) -> Duration {
        match self.rule.fast_interval {
            Some(fast) if self.threshold.transitioning() => fast.min(period),
            _ => period,
        }
    }

    /// The probe of a cycle, bounded by the rule's deadline: what it saw and how long it took.
    /// It changes nothing, so it can be abandoned (a reload or shutdown coming mid-check).
    pub async fn probe<E: Effects>(&self, fx: &E) -> (Outcome, std::time::Duration) {
        let rule = &self.rule;
        let deadline = fx.pacing(rule).deadline;
        let started = tokio::time::Instant::now();
        let outcome = match tokio::time::timeout(deadline, fx.check(rule)).await {
            Ok(o) => o,
            Err(_) => Outcome::fail(format!(
                "timed out after {}",
                humantime::format_duration(deadline)
            )),
        };
        (outcome, started.elapsed())
    }

    /// The rest of a cycle: count the probe's outcome, act on a transition or retry what is
    /// pending.
    pub async fn settle<E: Effects>(
        &mut self,
        fx: &E,
        outcome: Outcome,
        took: std::time::Duration,
    ) -> CycleReport {
        let rule = &self.rule;
        let failing_before = self.threshold.consecutive_failures();
        let transition = self.threshold.observe(outcome.ok);
        let up = self.threshold.health() == Health::Up;
        if !outcome.ok && up && self.threshold.consecutive_failures() == 1 {
            self.times.first_failed_check = Some(crate::history::now_ms());
            for a in &rule.on_fail {
                fx.streak_started(a);
            }
            // Saved, so that a restart before the rule fails goes on counting this streak
            // and keeps what its actions noted as it began (see `RuleRunner::resume`).
            if transition.is_none() {
                fx.persist_soon(&rule.name, &self.state());
                self.share();
            }
        } else if outcome.ok && up && failing_before > 0 && transition.is_none() {
            // A streak that ended without failing the rule: a restart must not resume it.
            self.times.first_failed_check = None;
            fx.persist_soon(&rule.name, &self.state());
            self.share();
        }
        let (fails, oks) = (
            self.threshold.consecutive_failures(),
            self.threshold.consecutive_successes(),
        );
        if outcome.ok {
            tracing::debug!(event = events::CHECK_PASSED, rule = %rule.name, check = rule.check.kind(), detail = %outcome.detail, consecutive_successes = oks);
        } else {
            tracing::warn!(event = events::CHECK_FAILED, rule = %rule.name, check = rule.check.kind(), detail = %outcome.detail,
                consecutive_failures = fails, fail_after = rule.fail_after);
        }

        if let Some(t) = transition {
            // A new outage (or recovery): its first refusal is logged loudly whatever the
            // last one said.
            self.refusals_logged.clear();
            match t {
                Transition::Failed => {
                    let now = crate::history::now_ms();
                    // fail_after = 1: the streak began with this very check.
                    self.times.first_failed_check.get_or_insert(now);
                    self.times.rule_failed = Some(now);
                    tracing::error!(event = events::RULE_FAILED, rule = %rule.name, consecutive_failures = fails, detail = %outcome.detail)
                }
                Transition::Recovered => {
                    self.times = StreakTimes::default();
                    tracing::info!(event = events::RULE_RECOVERED, rule = %rule.name, consecutive_successes = oks)
                }
            }
            let list = match t {
                Transition::Failed => &rule.on_fail,
                Transition::Recovered => &rule.on_recover,
            };
            if !self.pending.is_empty() {
                tracing::info!(event = events::ACTIONS_DROPPED, rule = %rule.name, actions = ?self.pending, "rule flipped before these actions could complete");
            }
            self.pending = list.clone();
            self.listed = list.clone();
            self.pending_transition = Some(t);
            // Saved before the actions run: a restart from here on neither flips the rule
            // nor runs these actions a second time once they are done.
            fx.persist(&rule.name, &self.state());
            self.share();
            fx.transitioned(&rule.name, t, &outcome.detail);
        }

        let mut actions = Vec::new();
        if let Some(t) = self.pending_transition.filter(|_| !self.pending.is_empty()) {
            let ctx = ActionContext {
                rule: rule.name.clone(),
                transition: t,
                detail: outcome.detail.clone(),
                consecutive: if t == Transition::Failed { fails } else { oks },
                retry: transition.is_none(),
                // The claim's last look runs the rule's check again: only a check, which has
                // no side effects, can be run twice.
                recheck: (!matches!(rule.check, CheckSpec::BackendSync(_)))
                    .then(|| (rule.check.clone(), rule.timeout)),
                times: self.times.clone(),
                planned: None,
                group: None,
            };
            let before = self.pending.clone();
            let mut still_pending = Vec::new();
            for name in std::mem::take(&mut self.pending) {
                // Boxed: a claim's future (the AWS SDK's calls) is many times a check's, and
                // inline it would make every rule's task that large.
                let result = Box::pin(fx.act(&name, &ctx)).await;
                let loud = match &result {
                    ActionOutcome::Refused { reason, .. } => {
                        let now = Instant::now();
                        let repeat = self.refusals_logged.get(&name).is_some_and(|(r, at)| {
                            r == reason && now.duration_since(*at) < REFUSAL_REMINDER
                        });
                        if !repeat {
                            self.refusals_logged.insert(name.clone(), (reason, now));
                        }
                        !repeat
                    }
                    _ => {
                        self.refusals_logged.remove(&name);
                        true
                    }
                };
                result.log(&rule.name, &name, loud);
                if result.wants_retry() {
                    still_pending.push(name.clone());
                }
                actions.push((name, result));
            }
            self.pending = still_pending;
            if self.pending != before {
                fx.persist(&rule.name, &self.state());
                self.share();
            }
        }

        CycleReport {
            rule: rule.name.clone(),
            check: rule.check.kind(),
            outcome,
            health: self.threshold.health(),
            consecutive_failures: self.threshold.consecutive_failures(),
            consecutive_successes: self.threshold.consecutive_successes(),
            transition,
            actions,
            took,
        }
    }
}

/// `--once`: every rule exactly one cycle, concurrently. Reports come back sorted by rule.
pub async fn once<E: Effects>(rules: Vec<Rule>, fx: Arc<E>) -> Vec<CycleReport> {
    let mut set = tokio::task::JoinSet::new();
    for rule in rules {
        let fx = fx.clone();
        set.spawn(async move {
            let report = RuleRunner::new(rule).cycle(fx.as_ref()).await;
            fx.report(&report);
            report
        });
    }
    let mut reports = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(report) => reports.push(report),
            Err(e) => tracing::error!(event = events::RULE_TASK_CRASHED, error = %e),
        }
    }
    reports.sort_by(|a, b| a.rule.cmp(&b.rule));
    reports
}

/// Why [`run`] ended before shutdown: a rule task is gone, and that rule would go unwatched.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A rule task returned although no shutdown was asked for (a bug).
    #[error("rule {rule} stopped unexpectedly")]
    RuleStopped { rule: String },
    /// A rule task panicked or was cancelled.
    #[error("a rule task crashed: {0}")]
    TaskCrashed(#[source] tokio::task::JoinError),
}

/// The daemon: one task per rule, each on its own interval, until `shutdown` turns true.
/// A cycle in progress when shutdown comes is allowed `grace` to finish. A rule task that
/// dies (a bug) stops the daemon with an error rather than leaving that rule unwatched.
///
/// `carried` are the states of the previous configuration's rules (empty at start); the
/// states of this run's rules come back with the result, for the next reload.
pub async fn run<E: Effects>(
    rules: Vec<Rule>,
    fx: Arc<E>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
    mut carried: RuleStates,
) -> (Result<(), EngineError>, RuleStates) {
    let mut set = tokio::task::JoinSet::new();
    let states = Arc::new(std::sync::Mutex::new(RuleStates::new()));
    let periods: Vec<Duration> = rules.iter().map(|r| fx.pacing(r).period).collect();
    let now = Instant::now();
    let firsts = first_cycles(&periods, now);
    for ((rule, first), period) in rules.into_iter().zip(firsts).zip(periods) {
        let fx = fx.clone();
        let shutdown = shutdown.clone();
        let name = rule.name.clone();
        let mut runner = RuleRunner::resume(rule, carried.remove(&name));
        runner.shared = Some(states.clone());
        // A rule carried across a reload keeps its schedule (no later than one new period
        // away): reloads, however frequent, neither hold its checks back nor bunch them up.
        // So does a failure streak resumed after a restart (see `RuleRunner::resume`).
        let first = match runner.next_due {
            Some(due) => due.clamp(now, now + period),
            None => first,
        };
        // Kept from the start: a rule cut before its first cycle ends hands on what it resumed.
        states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), runner.state());
        let states = states.clone();
        set.spawn(async move {
            let runner = rule_loop(runner, fx, shutdown, first).await;
            states
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.clone(), runner.state());
            name
        });
    }
    let mut result = Ok(());
    let ended = tokio::select! {
        biased;
        _ = shutdown.wait_for(|stop| *stop) => None,
        Some(done) = set.join_next() => Some(done),
    };
    if let Some(done) = ended.filter(|_| !*shutdown.borrow()) {
        let e = match done {
            Ok(rule) => EngineError::RuleStopped { rule },
            Err(e) => EngineError::TaskCrashed(e),
        };
        tracing::error!(event = events::RULE_TASK_CRASHED, error = %e);
        result = Err(e);
    }
    let deadline = Instant::now() + grace;
    loop {
        match tokio::time::timeout_at(deadline, set.join_next()).await {
            Ok(Some(_)) => continue,
            Ok(None) => break,
            Err(_) => {
                tracing::warn!(
                    event = events::SHUTDOWN_FORCED,
                    "rule tasks did not finish within the grace period"
                );
                set.shutdown().await;
                break;
            }
        }
    }
    let states = std::mem::take(&mut *states.lock().unwrap_or_else(|p| p.into_inner()));
    (result, states)
}

/// Rules whose checks start at the same moment, at most. Of more rules with one interval, the
/// groups' first cycles are spread evenly over it, as HAProxy spreads its servers' first
/// health checks over `inter`: at most this many checks are in flight at once (the memory
/// of a burst of connections), and one wake-up still serves a whole group (CPU).
pub const START_GROUP: usize = 32;

/// When each rule's first cycle starts, for rules with these `periods` (in order): in groups
/// of [`START_GROUP`] rules of one period, the first group `now`, the others spread evenly
/// over the period. A configuration of up to [`START_GROUP`] rules per period starts at once.
pub fn first_cycles(periods: &[Duration], now: Instant) -> Vec<Instant> {
    let mut of_period: std::collections::HashMap<Duration, (usize, usize)> =
        std::collections::HashMap::new();
    for p in periods {
        of_period.entry(*p).or_default().1 += 1;
    }
    periods
        .iter()
        .map(|p| {
            let Some((seen, total)) = of_period.get_mut(p) else {
                return now;
            };
            let group = *seen / START_GROUP;
            *seen += 1;
            let groups = total.div_ceil(START_GROUP).max(1);
            // group < groups, so the offset stays below one period.
            now + p.mul_f64(group as f64 / groups as f64)
        })
        .collect()
}

/// How one cycle of a rule went, for [`next_due`].
#[derive(Debug, Clone, Copy)]
pub struct Cycle {
    /// When it was due.
    pub due: Instant,
    /// When its check started (later than `due` when the daemon was held up).
    pub started: Instant,
    /// When it ended, its actions included.
    pub ended: Instant,
    /// Its check passed while the rule is down: a good answer that counts toward recovery.
    /// (While the rule is up a good answer confirms nothing, and a steadily slow one must not
    /// stretch the rule's cadence.)
    pub recovering: bool,
    /// The check took at least the next `period` and failed: a hung target's, whose failure
    /// spans that whole time.
    pub hung: bool,
    /// A backend sync's round, which waits for its own next poll or change: its `period` is
    /// only a floor against a source that spins (`sync::pacing`).
    pub self_paced: bool,
}

/// When a rule's next cycle starts, after `cycle`, with a next `period` (`fast_interval`
/// while the rule changes state).
///
/// On time, `period` after it was due: due times follow the schedule, not when the task got
/// to run, so rules that start together stay together (one wake-up serves them all).
///
/// A cycle that started late (the daemon was held up), a good check of a rule that is down
/// whose answer came late (the target froze and came back during it), and a cycle that
/// ended after the next was due (a slow action) are followed `period` after they ended
/// instead, as HAProxy schedules a server's next check `inter` (or `fastinter`) after the
/// last one completed (`src/check.c`, `process_chk_conn`): an answer says what the target did when it came, so two answers
/// milliseconds apart confirm nothing the first did not, and a streak meant to span
/// `recover_after x fast_interval` (or a blip tolerance of `fail_after x fast_interval`)
/// would shrink to nothing. "Late" is more than a tenth of `period` after it was due.
///
/// A hung cycle and a backend sync's round are followed at once when the next is overdue
/// (a hung target is confirmed in `fail_after x timeout`, docs/configuration.md,
/// "Confirming a failure faster"). Never a burst of catch-up cycles.
pub fn next_due(cycle: Cycle, period: Duration) -> Instant {
    let scheduled = cycle.due + period;
    if cycle.self_paced || cycle.hung {
        return scheduled.max(cycle.ended);
    }
    let late = cycle.due + period / 10;
    if cycle.started > late || (cycle.recovering && cycle.ended > late) || scheduled < cycle.ended {
        cycle.ended + period
    } else {
        scheduled
    }
}

async fn rule_loop<E: Effects>(
    mut runner: RuleRunner,
    fx: Arc<E>,
    mut shutdown: watch::Receiver<bool>,
    first: Instant,
) -> RuleRunner {
    let period = fx.pacing(&runner.rule).period;
    let self_paced = matches!(runner.rule.check, CheckSpec::BackendSync(_));
    let next = tokio::time::sleep_until(first);
    tokio::pin!(next);
    loop {
        tokio::select! {
            _ = &mut next => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
        if *shutdown.borrow() {
            break;
        }
        // Due times follow the schedule, not when the task got to run ([`next_due`]).
        let due = next.deadline();
        let started = Instant::now();
        // A check in flight when a reload or shutdown comes is abandoned (it changes nothing,
        // and its program is killed with its group), so one slow check does not hold up the
        // swap for every rule. A backend sync's round changes HAProxy: it is let finish.
        let (outcome, took) = if self_paced {
            let (outcome, took) = runner.probe(fx.as_ref()).await;
            // A round the reload or shutdown cut short saw nothing: counting it as a pass
            // would end a failing rule's streak, or recover it, on a reload.
            if outcome.cancelled {
                break;
            }
            (outcome, took)
        } else {
            let probed = tokio::select! {
                p = runner.probe(fx.as_ref()) => Some(p),
                _ = shutdown.wait_for(|stop| *stop) => None,
            };
            let Some(probed) = probed else {
                break;
            };
            probed
        };
        let passed = outcome.ok;
        let report = runner.settle(fx.as_ref(), outcome, took).await;
        fx.report(&report);
        let gap = runner.next_period(period);
        next.as_mut().reset(next_due(
            Cycle {
                due,
                started,
                ended: Instant::now(),
                recovering: passed && runner.threshold.health() == Health::Down,
                hung: !passed && took >= gap,
                self_paced,
            },
            gap,
        ));
    }
    runner.next_due = Some(next.deadline());
    runner
}

#[cfg(test)]
mod tests;
