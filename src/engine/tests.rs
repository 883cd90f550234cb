//! The scheduler and thresholds under paused tokio time: no sleeping, no network.

use super::*;
use crate::config::{CheckSpec, HttpCheckSpec, StatusSet};
use std::collections::VecDeque;
use std::sync::Mutex;

/// Scripted effects: each rule gets a queue of results (true = pass); an empty queue repeats
/// the last one. `hang` rules never answer. Every call is recorded with the paused clock.
#[derive(Default)]
struct Script {
    results: Mutex<BTreeMap<String, VecDeque<bool>>>,
    last: Mutex<BTreeMap<String, bool>>,
    hang: Vec<String>,
    checks: Mutex<Vec<(String, Duration)>>,
    acts: Mutex<Vec<(String, Transition, bool, Duration)>>,
    /// Actions that refuse this many times before they succeed.
    refuse_first: Mutex<BTreeMap<String, u32>>,
    start: Option<Instant>,
    /// With this, a rule whose scripted results have run out waits for it to turn true and
    /// ends as `Outcome::cancelled` (a backend sync's round told to stop).
    stop: Option<watch::Receiver<bool>>,
    /// What `persist` was last given, by rule: what the state directory would hold.
    persisted: Mutex<BTreeMap<String, RuleState>>,
    /// `streak_started` calls: the action and when.
    streaks: Mutex<Vec<(String, Duration)>>,
    /// Rules whose run, once their scripted results have run out, never ends, whatever
    /// happens (a backend sync's round stuck in a 40-second `haproxy -c`).
    stuck_when_done: Vec<String>,
    /// Actions that never end (an `exec` of a 40-second script).
    hang_acts: Vec<String>,
    /// How long each of a rule's checks takes before it answers, in turn (then none): a
    /// target that froze and came back during a check.
    delays: Mutex<BTreeMap<String, VecDeque<Duration>>>,
}

use std::collections::BTreeMap;

impl Script {
    fn new(start: Instant) -> Self {
        Script {
            start: Some(start),
            ..Default::default()
        }
    }
    fn results(self, rule: &str, seq: &str) -> Self {
        self.results
            .lock()
            .unwrap()
            .insert(rule.into(), seq.chars().map(|c| c == '+').collect());
        self
    }
    fn t(&self) -> Duration {
        self.start.map(|s| s.elapsed()).unwrap_or_default()
    }
}

impl Effects for Script {
    async fn check(&self, rule: &Rule) -> Outcome {
        self.checks
            .lock()
            .unwrap()
            .push((rule.name.clone(), self.t()));
        if self.hang.contains(&rule.name) {
            std::future::pending::<()>().await;
        }
        let delay = self
            .delays
            .lock()
            .unwrap()
            .get_mut(&rule.name)
            .and_then(|q| q.pop_front());
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        if self.stuck_when_done.contains(&rule.name)
            && self
                .results
                .lock()
                .unwrap()
                .get(&rule.name)
                .is_none_or(|q| q.is_empty())
        {
            std::future::pending::<()>().await;
        }
        if let Some(stop) = &self.stop {
            let ran_out = self
                .results
                .lock()
                .unwrap()
                .get(&rule.name)
                .is_none_or(|q| q.is_empty());
            if ran_out {
                let mut stop = stop.clone();
                let _ = stop.wait_for(|s| *s).await;
                return Outcome::cancelled("stopping");
            }
        }
        let next = self
            .results
            .lock()
            .unwrap()
            .get_mut(&rule.name)
            .and_then(|q| q.pop_front());
        let mut last = self.last.lock().unwrap();
        let ok = next.unwrap_or(*last.get(&rule.name).unwrap_or(&true));
        last.insert(rule.name.clone(), ok);
        if ok {
            Outcome::ok("fine")
        } else {
            Outcome::fail("broken")
        }
    }

    /// A backend sync's round may take long (its deadline covers reloads and AWS calls), as
    /// `sync::pacing` has it: a stuck round is not cut by its own deadline here either.
    fn pacing(&self, rule: &Rule) -> Pacing {
        match rule.check {
            CheckSpec::BackendSync(_) => Pacing {
                period: rule.interval,
                deadline: Duration::from_secs(3600),
            },
            _ => Pacing::every_interval(rule),
        }
    }

    fn persist(&self, rule: &str, state: &RuleState) {
        self.persisted
            .lock()
            .unwrap()
            .insert(rule.into(), state.clone());
    }

    fn streak_started(&self, action: &str) {
        self.streaks.lock().unwrap().push((action.into(), self.t()));
    }

    async fn act(&self, action: &str, ctx: &ActionContext) -> ActionOutcome {
        self.acts
            .lock()
            .unwrap()
            .push((action.into(), ctx.transition, ctx.retry, self.t()));
        if self.hang_acts.iter().any(|a| a == action) {
            std::future::pending::<()>().await;
        }
        let mut refuse = self.refuse_first.lock().unwrap();
        match refuse.get_mut(action) {
            Some(n) if *n > 0 => {
                *n -= 1;
                ActionOutcome::Refused {
                    reason: "test",
                    detail: "not yet".into(),
                }
            }
            _ => ActionOutcome::Done("ok".into()),
        }
    }
}

fn rule(name: &str, interval: u64, timeout: u64, fail_after: u32, recover_after: u32) -> Rule {
    Rule {
        name: name.into(),
        file: "test.toml".into(),
        interval: Duration::from_secs(interval),
        timeout: Duration::from_secs(timeout),
        fast_interval: None,
        fail_after,
        recover_after,
        check: CheckSpec::Http(HttpCheckSpec {
            url: reqwest::Url::parse("http://127.0.0.1:9/").unwrap(),
            method: reqwest::Method::GET,
            expect_status: StatusSet::default_ok(),
            body_contains: None,
            host: None,
            timeout: Duration::from_secs(timeout),
            keep_alive: None,
        }),
        on_fail: vec!["claim".into()],
        on_recover: vec!["notify".into()],
    }
}

async fn run_for(rules: Vec<Rule>, fx: Arc<Script>, secs: u64) {
    run_carrying(rules, fx, secs, RuleStates::new()).await;
}

/// Run for `secs` starting from `carried` states; the states at the end.
async fn run_carrying(
    rules: Vec<Rule>,
    fx: Arc<Script>,
    secs: u64,
    carried: RuleStates,
) -> RuleStates {
    let (tx, rx) = watch::channel(false);
    let engine = tokio::spawn(run(rules, fx, rx, Duration::from_secs(1), carried));
    tokio::time::sleep(Duration::from_secs(secs)).await;
    tx.send(true).unwrap();
    let (result, states) = engine.await.unwrap();
    result.unwrap();
    states
}

#[tokio::test(start_paused = true)]
async fn a_reload_keeps_each_rules_streak_and_health() {
    let start = Instant::now();
    let fx = Arc::new(
        Script::new(start)
            .results("eip", "--------")
            .results("new", "-"),
    );
    // Two failures (t=0, t=10), then the configuration is reloaded.
    let states = run_carrying(
        vec![rule("eip", 10, 5, 3, 2)],
        fx.clone(),
        15,
        RuleStates::new(),
    )
    .await;
    assert!(fx.acts.lock().unwrap().is_empty());
    assert_eq!(states["eip"].threshold.consecutive_failures(), 2);
    // The reloaded rule's next cycle (due at 20, its schedule kept) is its third failure: it
    // fails then, not three cycles on. A rule that is new in the reloaded configuration starts
    // from a clean count.
    let states = run_carrying(
        vec![rule("eip", 10, 5, 3, 2), rule("new", 10, 5, 3, 2)],
        fx.clone(),
        6,
        states,
    )
    .await;
    let acts = fx.acts.lock().unwrap().clone();
    assert_eq!(acts.len(), 1, "{acts:?}");
    assert_eq!(acts[0].0, "claim");
    assert_eq!(states["eip"].threshold.health(), Health::Down);
    // Its one failed cycle counts as one: nothing of eip's streak leaked into it.
    assert_eq!(states["new"].threshold.consecutive_failures(), 1);
}

#[tokio::test(start_paused = true)]
async fn fails_on_the_nth_cycle_and_acts_once() {
    let start = Instant::now();
    let fx = Arc::new(Script::new(start).results("eip", "++-------"));
    run_for(vec![rule("eip", 10, 5, 3, 2)], fx.clone(), 85).await;
    let acts = fx.acts.lock().unwrap().clone();
    // Cycles at 0,10,20,...: failures start at t=20, the third is at t=40.
    assert_eq!(
        acts,
        vec![(
            "claim".to_string(),
            Transition::Failed,
            false,
            Duration::from_secs(40)
        )]
    );
    assert_eq!(fx.checks.lock().unwrap().len(), 9, "one check per interval");
}

#[tokio::test(start_paused = true)]
async fn n_minus_one_failures_never_act() {
    let fx = Arc::new(Script::new(Instant::now()).results("eip", "--+--+--+-+"));
    run_for(vec![rule("eip", 10, 5, 3, 2)], fx.clone(), 200).await;
    assert!(fx.acts.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn recovery_runs_on_recover_actions_after_m_successes() {
    let fx = Arc::new(Script::new(Instant::now()).results("eip", "--+-++++"));
    run_for(vec![rule("eip", 10, 5, 2, 3)], fx.clone(), 75).await;
    let acts: Vec<_> = fx
        .acts
        .lock()
        .unwrap()
        .iter()
        .map(|a| (a.0.clone(), a.1, a.3.as_secs()))
        .collect();
    // Fails at t=10 (2nd failure); +,- at 20,30 resets; +++ at 40,50,60 recovers at 60.
    assert_eq!(
        acts,
        vec![
            ("claim".into(), Transition::Failed, 10),
            ("notify".into(), Transition::Recovered, 60)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn refused_actions_retry_each_cycle_while_still_failed_only() {
    let fx = Arc::new(Script::new(Instant::now()).results("eip", "-----+++"));
    fx.refuse_first.lock().unwrap().insert("claim".into(), 2);
    run_for(vec![rule("eip", 10, 5, 1, 1)], fx.clone(), 75).await;
    let claims: Vec<_> = fx
        .acts
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a.0 == "claim")
        .map(|a| (a.2, a.3.as_secs()))
        .collect();
    // Refused at 0 and 10, done at 20 (a retry), and never again.
    assert_eq!(claims, vec![(false, 0), (true, 10), (true, 20)]);

    // A rule that recovers drops its pending retries.
    let fx = Arc::new(Script::new(Instant::now()).results("eip", "-+++"));
    fx.refuse_first.lock().unwrap().insert("claim".into(), 100);
    run_for(vec![rule("eip", 10, 5, 1, 1)], fx.clone(), 45).await;
    let claims = fx
        .acts
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a.0 == "claim")
        .count();
    assert_eq!(claims, 1);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_check_times_out_and_never_delays_another_rule() {
    let start = Instant::now();
    let mut script = Script::new(start).results("fast", "+");
    script.hang = vec!["stuck".into()];
    let fx = Arc::new(script);
    run_for(
        vec![rule("stuck", 10, 4, 2, 1), rule("fast", 2, 1, 3, 1)],
        fx.clone(),
        31,
    )
    .await;
    let checks = fx.checks.lock().unwrap().clone();
    let fast: Vec<u64> = checks
        .iter()
        .filter(|c| c.0 == "fast")
        .map(|c| c.1.as_secs())
        .collect();
    assert_eq!(
        fast,
        (0..=30).step_by(2).collect::<Vec<_>>(),
        "the fast rule kept its 2 s schedule"
    );
    let acts = fx.acts.lock().unwrap().clone();
    // The stuck rule's checks time out at 4 s; its second timeout (cycle at t=10) fails it.
    assert_eq!(
        acts,
        vec![(
            "claim".to_string(),
            Transition::Failed,
            false,
            Duration::from_secs(14)
        )]
    );
}

#[tokio::test(start_paused = true)]
async fn once_runs_every_rule_exactly_one_cycle() {
    let fx = Arc::new(
        Script::new(Instant::now())
            .results("a", "-")
            .results("b", "+"),
    );
    let reports = once(
        vec![rule("b", 10, 5, 1, 1), rule("a", 10, 5, 1, 1)],
        fx.clone(),
    )
    .await;
    assert_eq!(
        reports
            .iter()
            .map(|r| (r.rule.as_str(), r.outcome.ok))
            .collect::<Vec<_>>(),
        vec![("a", false), ("b", true)]
    );
    assert_eq!(reports[0].transition, Some(Transition::Failed));
    assert_eq!(reports[0].actions.len(), 1);
    assert_eq!(fx.checks.lock().unwrap().len(), 2);
}

/// Effects whose check panics: a bug in a probe must stop the daemon, not silence a rule.
struct Panicky;

impl Effects for Panicky {
    async fn check(&self, rule: &Rule) -> Outcome {
        if rule.name == "buggy" {
            panic!("probe bug");
        }
        Outcome::ok("fine")
    }
    async fn act(&self, _: &str, _: &ActionContext) -> ActionOutcome {
        ActionOutcome::NoOp("nothing".into())
    }
}

#[tokio::test(start_paused = true)]
async fn a_crashed_rule_task_stops_the_daemon_with_an_error() {
    let (_tx, rx) = watch::channel(false);
    let result = run(
        vec![rule("fine", 10, 5, 3, 1), rule("buggy", 10, 5, 3, 1)],
        Arc::new(Panicky),
        rx,
        Duration::from_secs(1),
        RuleStates::new(),
    )
    .await
    .0;
    let err = result.unwrap_err().to_string();
    assert!(err.contains("a rule task crashed"), "{err}");
}

/// Field report (breaker): an unfinished claim whose action was renamed between two runs (or
/// by a reload) is made under its new name; actions already done are not run again, and a
/// state saved before `listed` existed still reads.
#[test]
fn renamed_unfinished_action_runs_under_its_new_name() {
    let mut old = rule("eip", 10, 5, 1, 1);
    old.on_fail = vec!["page".into(), "claim".into()];
    let st = RuleState {
        threshold: Threshold::new(1, 1),
        pending: vec!["claim".into()],
        pending_transition: Some(Transition::Failed),
        listed: old.on_fail.clone(),
        times: Default::default(),
        next_due: None,
    };
    let mut new = old.clone();
    new.on_fail = vec!["page".into(), "claim-public-eip".into()];
    let r = RuleRunner::resume(new.clone(), Some(st.clone()));
    assert_eq!(r.pending, ["claim-public-eip"], "the page was done already");
    // Nothing renamed: nothing added, nothing run again.
    let r = RuleRunner::resume(old.clone(), Some(st.clone()));
    assert_eq!(r.pending, ["claim"]);
    let done = RuleState {
        pending: Vec::new(),
        ..st.clone()
    };
    assert!(RuleRunner::resume(new, Some(done)).pending.is_empty());
    let legacy: RuleState = serde_json::from_value(serde_json::json!({
        "threshold": serde_json::to_value(Threshold::new(1, 1)).unwrap(),
        "pending": [], "pending_transition": "failed"
    }))
    .unwrap();
    assert!(legacy.listed.is_empty());
}

/// Breaker's find: a reload waited for a slow check to finish, so every rule stood still
/// meanwhile. A check in flight is abandoned; nothing is counted for it.
#[tokio::test(start_paused = true)]
async fn a_slow_check_does_not_hold_up_a_reload() {
    let start = Instant::now();
    let fx = Arc::new(Script {
        hang: vec!["slow".into()],
        ..Script::new(start)
    });
    let (tx, rx) = watch::channel(false);
    let engine = tokio::spawn(run(
        vec![rule("slow", 60, 50, 1, 1), rule("fast", 1, 1, 3, 1)],
        fx.clone(),
        rx,
        Duration::from_secs(10),
        RuleStates::new(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let asked = Instant::now();
    tx.send(true).unwrap();
    let (result, states) = engine.await.unwrap();
    result.unwrap();
    assert!(
        asked.elapsed() < Duration::from_millis(10),
        "{:?}",
        asked.elapsed()
    );
    // The abandoned cycle left the rule as it was: no failure counted.
    assert_eq!(states["slow"].threshold.consecutive_failures(), 0);
}

fn fast(mut r: Rule, fast_secs: u64) -> Rule {
    r.fast_interval = Some(Duration::from_secs(fast_secs));
    r
}

/// Each action run: the transition and when, in whole seconds.
fn transitions(fx: &Script) -> Vec<(Transition, u64)> {
    fx.acts
        .lock()
        .unwrap()
        .iter()
        .map(|a| (a.1, a.3.as_secs()))
        .collect()
}

/// When each check ran, in milliseconds.
fn check_times_ms(fx: &Script) -> Vec<u128> {
    fx.checks
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.1.as_millis())
        .collect()
}

fn check_times(fx: &Script) -> Vec<u64> {
    fx.checks
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.1.as_secs())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_failed_check_brings_the_next_ones_at_the_fast_interval_until_the_rule_fails() {
    let fx = Arc::new(Script::new(Instant::now()).results("eip", "+-----"));
    run_for(vec![fast(rule("eip", 10, 1, 3, 2), 2)], fx.clone(), 35).await;
    // Good at 0; the failure seen at 10 brings 12 and 14, which fails the rule; failed, it is
    // no longer changing state: back to every 10 s.
    assert_eq!(check_times(&fx), vec![0, 10, 12, 14, 24, 34]);
    let acts = fx.acts.lock().unwrap().clone();
    assert_eq!(acts.len(), 1, "{acts:?}");
    assert_eq!((acts[0].1, acts[0].3.as_secs()), (Transition::Failed, 14));
}

#[tokio::test(start_paused = true)]
async fn a_good_check_of_a_failed_rule_brings_the_next_ones_at_the_fast_interval() {
    let fx = Arc::new(Script::new(Instant::now()).results("eip", "-+-+++"));
    run_for(vec![fast(rule("eip", 10, 1, 1, 2), 2)], fx.clone(), 27).await;
    // Fails at 0; the good check at 10 brings 12, whose failure breaks the streak: 22 is an
    // interval on. 22 is good again, 24 recovers the rule, then every 10 s.
    assert_eq!(check_times(&fx), vec![0, 10, 12, 22, 24]);
    assert_eq!(
        transitions(&fx),
        vec![(Transition::Failed, 0), (Transition::Recovered, 24)]
    );
}

#[tokio::test(start_paused = true)]
async fn blips_shorter_than_fail_after_never_act_at_the_fast_interval() {
    // 503, 503, 200 repeated: each streak is checked at the fast interval, and each breaks
    // one short of fail_after.
    let fx = Arc::new(Script::new(Instant::now()).results("eip", &"--+".repeat(20)));
    run_for(vec![fast(rule("eip", 10, 1, 3, 2), 1)], fx.clone(), 300).await;
    assert!(fx.acts.lock().unwrap().is_empty());
    // Each blip: its two failures and the good check that ends it 1 s apart, then an interval
    // on from there to the next blip (12 s a blip); after the last, every 10 s.
    let mut expected: Vec<u64> = (0..20)
        .flat_map(|k| [12 * k, 12 * k + 1, 12 * k + 2])
        .collect();
    expected.extend([240, 250, 260, 270, 280, 290]);
    let times = check_times(&fx);
    assert_eq!(times[..times.len().min(66)], expected[..], "{times:?}");
    assert!(times.len() <= 67, "{times:?}");
}

#[tokio::test(start_paused = true)]
async fn a_slow_check_delays_the_next_fast_one_without_a_burst() {
    // A hung check takes its whole timeout (3 s) and the fast interval is 1 s: the next check
    // starts as the slow one ends, never two at once and never a catch-up burst.
    let mut fx = Script::new(Instant::now());
    fx.hang.push("eip".into());
    let fx = Arc::new(fx);
    run_for(vec![fast(rule("eip", 10, 3, 3, 2), 1)], fx.clone(), 20).await;
    // 0 (times out at 3) -> 3 -> 6, which fails the rule at 9; then every 10 s from 6.
    assert_eq!(check_times(&fx), vec![0, 3, 6, 16]);
}

/// Rule `eip`'s checks: a failure, then good ones, the first of which answers after `late`.
fn failed_then_late_good(late: Duration) -> Arc<Script> {
    let fx = Script::new(Instant::now()).results("eip", "-+++");
    fx.delays
        .lock()
        .unwrap()
        .insert("eip".into(), [Duration::ZERO, late].into());
    Arc::new(fx)
}

/// Breaker 12's find: after a stall, the overdue next check ran at once, so a rule's
/// `recover_after` good checks could come milliseconds apart and confirm nothing.
#[tokio::test(start_paused = true)]
async fn recovery_checks_after_a_stall_come_a_fast_interval_apart() {
    // The check at 10 hangs 3 s (the target froze), then passes.
    let fx = failed_then_late_good(Duration::from_secs(3));
    run_for(vec![fast(rule("eip", 10, 5, 1, 2), 1)], fx.clone(), 27).await;
    // Failed at 0; the good answer at 13 brings the next check a fast interval later (14, not
    // 13 again), which recovers the rule; then every 10 s.
    assert_eq!(check_times(&fx), vec![0, 10, 14, 24]);
    assert_eq!(
        transitions(&fx),
        vec![(Transition::Failed, 0), (Transition::Recovered, 14)]
    );
}

/// A backend sync paces itself (its round waits for the next poll or change, and its period
/// is a floor): a round longer than its period is followed at once, not a period later,
/// which would add that period to every change that arrives meanwhile.
#[tokio::test(start_paused = true)]
async fn a_backend_syncs_round_longer_than_its_period_is_followed_at_once() {
    let fx = Script::new(Instant::now());
    fx.delays.lock().unwrap().insert(
        "sync".into(),
        [Duration::from_secs(12), Duration::from_secs(12)].into(),
    );
    let fx = Arc::new(fx);
    run_for(vec![sync_rule("sync", 3)], fx.clone(), 30).await;
    // Rounds at 0 and 12 each take 12 s (the Script's period for a sync is its 10 s interval).
    assert_eq!(check_times(&fx), vec![0, 12, 24]);
}

/// Breaker 13's find: the daemon held up past a slot (SIGSTOP, a VM's stolen time) ran the
/// overdue check as it woke, and the next one on the old schedule's slot milliseconds later:
/// a blip of 50 ms failed a `2s x 2` rule (and the same recovered it).
#[tokio::test(start_paused = true)]
async fn after_the_daemon_was_held_up_the_next_check_is_a_whole_interval_on() {
    let fx = Arc::new(Script::new(Instant::now()).results("eip", "+--"));
    let (tx, rx) = watch::channel(false);
    let rules = vec![rule("eip", 2, 1, 2, 2)];
    let engine = tokio::spawn(run(
        rules,
        fx.clone(),
        rx,
        Duration::from_secs(1),
        RuleStates::new(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Held up from 0.3 s to 3.85 s: the check due at 2 runs at 3.85, 150 ms before the slot
    // at 4 of the old schedule.
    tokio::time::advance(Duration::from_millis(3550)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    tx.send(true).unwrap();
    let (result, _) = engine.await.unwrap();
    result.unwrap();
    let times = check_times_ms(&fx);
    assert!(times.len() >= 3, "{times:?}");
    assert!((3850..3900).contains(&times[1]), "{times:?}");
    // The second failure a whole interval after the first, not at 4.
    assert!(times[2] >= times[1] + 2000, "{times:?}");
    let acts = fx.acts.lock().unwrap().clone();
    assert_eq!(acts.len(), 1, "{acts:?}");
    assert!(acts[0].3.as_millis() >= times[1] + 2000, "{acts:?}");
}

/// Breaker 13's second find: a good answer that came late, but before the next check was
/// due (the target froze for part of the fast interval), was followed by the next check on
/// the schedule's slot, a fraction of the interval later.
#[tokio::test(start_paused = true)]
async fn a_good_answer_that_came_late_in_its_interval_is_followed_a_whole_interval_on() {
    // The check at 10 answers after 600 ms of its 1 s fast interval.
    let fx = failed_then_late_good(Duration::from_millis(600));
    run_for(vec![fast(rule("eip", 10, 5, 1, 2), 1)], fx.clone(), 15).await;
    let times = check_times_ms(&fx);
    // 10.6 + 1 s, not the slot at 11.
    assert_eq!(times[..3], [0, 10_000, 11_600], "{times:?}");
}

/// Breaker 14: a healthy target whose page always takes 150 ms had its checks every 1.15 s
/// instead of every second: every slow good answer counted as late. Only while the rule is
/// down (its good answers count toward recovery) does a late one move the schedule.
#[tokio::test(start_paused = true)]
async fn a_steadily_slow_healthy_target_keeps_the_rules_cadence() {
    let fx = Script::new(Instant::now());
    fx.delays
        .lock()
        .unwrap()
        .insert("eip".into(), vec![Duration::from_millis(600); 10].into());
    let fx = Arc::new(fx);
    run_for(vec![rule("eip", 1, 1, 3, 2)], fx.clone(), 5).await;
    assert_eq!(check_times(&fx), vec![0, 1, 2, 3, 4]);
}

/// The rule behind them: on time, the schedule; late (started, answered good, or ended after
/// the next was due), `period` after the cycle ended; hung or self-paced and overdue, at once.
#[test]
fn catch_up_checks_never_come_back_to_back_unless_the_last_one_hung() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let at = |d: u64| t0 + ms(d);
    let cycle = |started: u64, ended: u64, recovering: bool| Cycle {
        due: t0,
        started: at(started),
        ended: at(ended),
        recovering,
        hung: false,
        self_paced: false,
    };
    let s = ms(1000);
    // On time, quick, either outcome: the schedule.
    assert_eq!(next_due(cycle(0, 2, true), s), at(1000));
    assert_eq!(next_due(cycle(0, 2, false), s), at(1000));
    // A failure that took a while but ended before the next was due: the schedule.
    assert_eq!(next_due(cycle(0, 700, false), s), at(1000));
    // A good answer of a rule that is down, late in the interval: a whole interval after it.
    assert_eq!(next_due(cycle(0, 600, true), s), at(1600));
    // Of a rule that is up (a steadily slow target): the schedule, no drift.
    assert_eq!(next_due(cycle(0, 600, false), s), at(1000));
    // Started late (the daemon was held up), even just before the next slot: after it.
    assert_eq!(next_due(cycle(850, 852, false), s), at(1852));
    assert_eq!(next_due(cycle(3850, 3852, true), s), at(4852));
    // Ended after the next was due (a slow action): after it.
    assert_eq!(next_due(cycle(0, 3000, false), s), at(4000));
    // Hung, or a backend sync's round, overdue: at once; on time: the schedule.
    let hung = Cycle {
        hung: true,
        ..cycle(0, 3000, false)
    };
    assert_eq!(next_due(hung, s), at(3000));
    let round = Cycle {
        self_paced: true,
        ..cycle(0, 3000, true)
    };
    assert_eq!(next_due(round, s), at(3000));
    let quick_round = Cycle {
        self_paced: true,
        ..cycle(0, 20, true)
    };
    assert_eq!(next_due(quick_round, s), at(1000));
}

#[tokio::test(start_paused = true)]
async fn many_rules_start_in_groups_spread_evenly_over_their_interval() {
    let now = Instant::now();
    let at = |i: usize, firsts: &[Instant]| firsts[i].duration_since(now);
    // Up to a group's worth of rules start at once.
    let firsts = first_cycles(&[Duration::from_secs(10); START_GROUP], now);
    assert!(firsts.iter().all(|t| *t == now));
    // 100 rules of 10 s: four groups (32, 32, 32, 4) at 0, 2.5, 5 and 7.5 s; 20 rules of 1 s
    // among them form one group of their own.
    let mut periods = vec![Duration::from_secs(10); 100];
    periods.splice(50..50, [Duration::from_secs(1); 20]);
    let firsts = first_cycles(&periods, now);
    let tens: Vec<Duration> = (0..120)
        .filter(|i| !(50..70).contains(i))
        .map(|i| at(i, &firsts))
        .collect();
    for (i, t) in tens.iter().enumerate() {
        assert_eq!(
            *t,
            Duration::from_millis(2500 * (i / START_GROUP) as u64),
            "rule {i}"
        );
    }
    assert!((50..70).all(|i| at(i, &firsts).is_zero()));

    // And the engine starts each rule's first check then.
    let fx = Arc::new(Script::new(Instant::now()));
    let rules: Vec<Rule> = (0..40)
        .map(|i| rule(&format!("r{i:02}"), 10, 1, 3, 2))
        .collect();
    run_for(rules, fx.clone(), 1).await;
    let mut checks = fx.checks.lock().unwrap().clone();
    checks.sort();
    assert_eq!(checks.len(), 32, "{checks:?}");
    assert!(checks.iter().all(|c| c.1.is_zero()), "{checks:?}");
}

#[tokio::test(start_paused = true)]
async fn a_reload_keeps_each_carried_rules_schedule() {
    let start = Instant::now();
    let fx = Arc::new(Script::new(start));
    // Checks at 0 and 10; reloads at 15 and 17 do not bring them forward or hold them back.
    let states = run_carrying(
        vec![rule("eip", 10, 5, 3, 2)],
        fx.clone(),
        15,
        RuleStates::new(),
    )
    .await;
    let states = run_carrying(vec![rule("eip", 10, 5, 3, 2)], fx.clone(), 2, states).await;
    let states = run_carrying(vec![rule("eip", 10, 5, 3, 2)], fx.clone(), 10, states).await;
    assert_eq!(check_times(&fx), vec![0, 10, 20]);
    // A shorter interval after a reload: the next check comes within the new one.
    let states = run_carrying(vec![rule("eip", 2, 1, 3, 2)], fx.clone(), 5, states).await;
    assert_eq!(check_times(&fx), vec![0, 10, 20, 29, 31]);
    assert!(states.contains_key("eip"));
}

/// A backend-sync rule (its loop lets a round finish on a reload or shutdown).
fn sync_rule(name: &str, fail_after: u32) -> Rule {
    let toml = format!(
        "[rules.{name}]\ninterval = \"10s\"\nfail_after = {fail_after}\nrecover_after = 1\n[rules.{name}.check]\ntype = \"backend_sync\"\nbackend = \"app\"\nport = 8080\n[rules.{name}.check.source]\ntype = \"asg\"\ngroup = \"web\"\n"
    );
    let c = crate::config::from_sources(&[("s.toml".into(), toml)])
        .unwrap_or_else(|e| panic!("test config invalid: {e}"));
    c.rules[0].clone()
}

/// Breaker's find: on SIGHUP a failing backend sync's round, told to stop, came back as a
/// pass ("stopping") and was counted: the rule's streak ended, or the rule recovered and
/// ran its `on_recover` actions, because of a reload.
#[tokio::test(start_paused = true)]
async fn a_round_cut_short_by_a_reload_or_shutdown_counts_neither_way() {
    for (fail_after, seq) in [(1, "-"), (3, "--")] {
        let start = Instant::now();
        let (tx, rx) = watch::channel(false);
        let fx = Arc::new(Script {
            stop: Some(rx.clone()),
            ..Script::new(start)
        });
        fx.results
            .lock()
            .unwrap()
            .insert("sync".into(), seq.chars().map(|c| c == '+').collect());
        let rule = sync_rule("sync", fail_after);
        let engine = tokio::spawn(run(
            vec![rule],
            fx.clone(),
            rx,
            Duration::from_secs(10),
            RuleStates::new(),
        ));
        // The failures at t = 0 (and 10 s); the next round waits, and the stop comes half a
        // second into it (before the round's deadline).
        tokio::time::sleep(Duration::from_millis(seq.len() as u64 * 10_000 + 500)).await;
        tx.send(true).unwrap();
        let (result, states) = engine.await.unwrap();
        result.unwrap();
        let st = &states["sync"];
        let want_down = fail_after == 1;
        assert_eq!(
            st.threshold.health() == Health::Down,
            want_down,
            "fail_after {fail_after}: {st:?}"
        );
        assert_eq!(st.threshold.consecutive_successes(), 0, "{st:?}");
        assert_eq!(
            st.threshold.consecutive_failures(),
            seq.len() as u32,
            "the failures before the stop are all still counted: {st:?}"
        );
        let acts = fx.acts.lock().unwrap().clone();
        assert!(
            acts.iter().all(|a| a.1 == Transition::Failed),
            "no on_recover action ran: {acts:?}"
        );
        assert_eq!(fx.checks.lock().unwrap().len(), seq.len() + 1);
    }
}

/// What the state directory holds for `rule`, read back as a restart reads it.
fn saved(fx: &Script, rule: &str) -> RuleStates {
    let st = fx.persisted.lock().unwrap()[rule].clone();
    let json = serde_json::to_value(&st).unwrap();
    [(rule.to_string(), serde_json::from_value(json).unwrap())].into()
}

/// Breaker's find: a restart while a rule was counting (2 failures into 3) forgot the count
/// and what its claim noted as the streak began; the next failure began a new streak and
/// noted the owner afresh, so an address another node took meanwhile was taken back.
#[tokio::test(start_paused = true)]
async fn a_restart_in_the_middle_of_the_count_goes_on_counting_and_keeps_the_owner_noted() {
    let start = Instant::now();
    let fx = Arc::new(Script::new(start).results("eip", "--"));
    // Failures at t = 0 and 10; the daemon is killed at 15 (nothing saved at the stop).
    run_carrying(
        vec![rule("eip", 10, 5, 3, 2)],
        fx.clone(),
        15,
        RuleStates::new(),
    )
    .await;
    assert_eq!(fx.streaks.lock().unwrap().len(), 1);
    let restored = saved(&fx, "eip");
    assert_eq!(
        restored["eip"].threshold.consecutive_failures(),
        1,
        "saved as the streak began"
    );
    // Its next check one interval after the first failure (about 10 s into the new run, as
    // this test's wall clock barely moves), the one after 10 s later.
    let fx2 = Arc::new(Script::new(start).results("eip", "---"));
    let states = run_carrying(vec![rule("eip", 10, 5, 3, 2)], fx2.clone(), 25, restored).await;
    assert!(
        fx2.streaks.lock().unwrap().is_empty(),
        "the streak goes on: its owner note is not taken afresh"
    );
    let acts = fx2.acts.lock().unwrap().clone();
    assert_eq!(
        acts.len(),
        1,
        "failed at the second failed check after the restart: {acts:?}"
    );
    assert_eq!(fx2.checks.lock().unwrap().len(), 2);
    assert_eq!(states["eip"].threshold.health(), Health::Down);

    // A streak that began long before the restart is not the same one: counting starts again.
    let mut old = saved(&fx, "eip");
    if let Some(st) = old.get_mut("eip") {
        let t = st.times.first_failed_check.unwrap();
        st.times.first_failed_check = Some(t - 3_600_000);
    }
    let fx3 = Arc::new(Script::new(start).results("eip", "---"));
    let states = run_carrying(vec![rule("eip", 10, 5, 3, 2)], fx3.clone(), 15, old).await;
    assert_eq!(
        fx3.streaks.lock().unwrap().len(),
        1,
        "a new streak, a new owner note"
    );
    assert!(
        fx3.acts.lock().unwrap().is_empty(),
        "two failures of three: not failed yet"
    );
    assert_eq!(states["eip"].threshold.consecutive_failures(), 2);

    // A blip that ended before the restart leaves nothing to go on.
    let fx4 = Arc::new(Script::new(start).results("eip", "-+"));
    run_carrying(
        vec![rule("eip", 10, 5, 3, 2)],
        fx4.clone(),
        15,
        RuleStates::new(),
    )
    .await;
    let after_blip = saved(&fx4, "eip");
    assert_eq!(after_blip["eip"].threshold.consecutive_failures(), 0);
    assert_eq!(after_blip["eip"].times.first_failed_check, None);
}

/// What this thread logs, as JSON lines at debug level, while the guard lives.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_json_logs() -> (Lines, tracing::subscriber::DefaultGuard) {
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    (lines, tracing::subscriber::set_default(subscriber))
}

/// The `level` of each `action_refused` line logged.
fn refusal_levels(lines: &Lines) -> Vec<String> {
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    text.lines()
        .filter(|l| l.contains("\"action_refused\""))
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["level"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

/// Breaker's find: the once-a-minute timer of a repeated refusal carried over a recovery, so
/// a second outage within the minute showed `rule_failed` and no warning of why no claim
/// followed. A transition starts the count afresh.
#[tokio::test(start_paused = true)]
async fn the_first_refusal_of_a_new_outage_is_logged_loudly() {
    let (lines, _guard) = capture_json_logs();
    let start = Instant::now();
    // Fails at 0, recovers at 10, fails again at 20: refused each time.
    let fx = Arc::new(Script::new(start).results("eip", "-+-"));
    fx.refuse_first.lock().unwrap().insert("claim".into(), 1000);
    run_for(vec![rule("eip", 10, 5, 1, 1)], fx.clone(), 25).await;
    assert_eq!(refusal_levels(&lines), ["WARN", "WARN"]);
}

/// Breaker's find: a claim held back by its hold-down logged `action_refused` at warning level
/// on every cycle, 300 lines for a 5-minute hold-down at 1 s. The same refusal is now loud once
/// a minute (and at once when its reason changes), quiet in between.
#[tokio::test(start_paused = true)]
async fn a_refusal_repeated_for_the_same_reason_is_logged_loudly_once_a_minute() {
    let (lines, _guard) = capture_json_logs();

    let start = Instant::now();
    let fx = Arc::new(Script::new(start).results("eip", "-"));
    fx.refuse_first.lock().unwrap().insert("claim".into(), 1000);
    // Fails at t = 0 (fail_after 1), refused every second for 125 s.
    run_for(vec![rule("eip", 1, 1, 1, 1)], fx.clone(), 125).await;
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let refusals: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\"action_refused\""))
        .collect();
    let warn = refusals.iter().filter(|l| l.contains("\"WARN\"")).count();
    let debug = refusals.iter().filter(|l| l.contains("\"DEBUG\"")).count();
    assert!(
        refusals.len() >= 120,
        "every refusal is logged: {}",
        refusals.len()
    );
    assert_eq!(warn, 3, "at 0, 60 and 120 s: {refusals:#?}");
    assert_eq!(debug, refusals.len() - 3);
}

/// Breaker's find: a reload whose rules did not all stop within the grace period (a sync
/// round held up by a 40-second `haproxy -c`) cut their tasks and handed on no state: the
/// reloaded rules started afresh, a failed rule failed again, and `on_fail` paged a second
/// time for one outage. A cut rule now hands on its last settled state.
#[tokio::test(start_paused = true)]
async fn a_rule_cut_at_the_end_of_the_grace_period_keeps_its_state_across_the_reload() {
    let start = Instant::now();
    let fx = Arc::new(Script {
        stuck_when_done: vec!["sync".into()],
        ..Script::new(start).results("sync", "---")
    });
    let mut paging = sync_rule("sync", 2);
    paging.on_fail = vec!["page".into()];
    let (tx, rx) = watch::channel(false);
    let engine = tokio::spawn(run(
        vec![paging.clone()],
        fx.clone(),
        rx,
        Duration::from_secs(10),
        RuleStates::new(),
    ));
    // Failures at 0, 10 (the rule fails and pages) and 20; the round at 30 never ends.
    tokio::time::sleep(Duration::from_secs(35)).await;
    tx.send(true).unwrap();
    let (result, states) = engine.await.unwrap();
    result.unwrap();
    let st = &states["sync"];
    assert_eq!(st.threshold.health(), Health::Down, "{st:?}");
    assert!(
        st.next_due.is_none(),
        "the task was cut, not stopped: {st:?}"
    );
    // As it failed (a restart would resume the same): the count of the flip.
    assert_eq!(st.threshold.consecutive_failures(), 2, "{st:?}");
    assert_eq!(st.pending_transition, Some(Transition::Failed), "{st:?}");
    assert_eq!(fx.acts.lock().unwrap().len(), 1, "paged once");

    // The reloaded rule goes on failing: no second transition, no second page.
    let fx2 = Arc::new(Script::new(start).results("sync", "--"));
    let states = run_carrying(vec![paging], fx2.clone(), 15, states).await;
    assert!(
        fx2.acts.lock().unwrap().is_empty(),
        "{:?}",
        fx2.acts.lock().unwrap()
    );
    assert_eq!(states["sync"].threshold.health(), Health::Down);
}

/// Breaker's find: killed 0.2 s after a rule's first failed check and started again, the
/// daemon checked at once, counted that as the second failure, and failed the rule 6.5 s after
/// the first failure instead of 9 s (interval 3 s, fail_after 4): a restart squeezed the
/// streak's checks together. A resumed streak keeps its schedule.
#[tokio::test(start_paused = true)]
async fn a_resumed_streak_keeps_its_schedule_after_a_quick_restart() {
    let start = Instant::now();
    let fx = Arc::new(Script::new(start).results("eip", "-"));
    run_carrying(
        vec![rule("eip", 10, 5, 3, 2)],
        fx.clone(),
        1,
        RuleStates::new(),
    )
    .await;
    let restored = saved(&fx, "eip");
    let restart = Instant::now();
    let fx2 = Arc::new(Script::new(restart).results("eip", "--"));
    let states = run_carrying(vec![rule("eip", 10, 5, 3, 2)], fx2.clone(), 25, restored).await;
    let times: Vec<u128> = fx2
        .checks
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.1.as_millis())
        .collect();
    // The first check after the restart comes one interval after the first failure (the
    // wall clock's, which barely moved here: this test's time is tokio's), the next one
    // interval later; the rule fails at its third failed check, as without the restart.
    assert_eq!(times.len(), 2, "{times:?}");
    assert!(
        times[0] >= 9_900,
        "checked {} ms after the restart",
        times[0]
    );
    assert_eq!(times[1] - times[0], 10_000, "{times:?}");
    assert_eq!(states["eip"].threshold.health(), Health::Down);
    assert_eq!(fx2.acts.lock().unwrap().len(), 1);
}

/// Breaker's find: a reload while a rule's `on_fail` action (an `exec` of a 40-second script)
/// still ran cut the rule after the grace period with the state of its cycle before the
/// failure: the reloaded rule failed again, logged a second `rule_failed` and paged a second
/// time, and `status` showed it up meanwhile. The state reached at the failure is handed on.
#[tokio::test(start_paused = true)]
async fn a_rule_cut_while_its_action_runs_does_not_fail_again_after_the_reload() {
    let start = Instant::now();
    let fx = Arc::new(Script {
        hang_acts: vec!["claim".into()],
        ..Script::new(start).results("eip", "-")
    });
    let states = run_carrying(
        vec![rule("eip", 2, 1, 1, 2)],
        fx.clone(),
        1,
        RuleStates::new(),
    )
    .await;
    let st = &states["eip"];
    assert_eq!(st.threshold.health(), Health::Down, "{st:?}");
    assert_eq!(st.pending_transition, Some(Transition::Failed), "{st:?}");
    // The cut action did not complete: it is still owed, and retried; the rule does not fail
    // again.
    assert_eq!(st.pending, ["claim"], "{st:?}");
    let fx2 = Arc::new(Script::new(start).results("eip", "-"));
    let states = run_carrying(vec![rule("eip", 2, 1, 1, 2)], fx2.clone(), 3, states).await;
    let acts = fx2.acts.lock().unwrap().clone();
    assert!(!acts.is_empty(), "the owed action is retried");
    assert!(
        acts.iter()
            .all(|(_, t, retry, _)| *t == Transition::Failed && *retry),
        "a retry, not a second failure: {acts:?}"
    );
    assert_eq!(states["eip"].threshold.health(), Health::Down);
}
