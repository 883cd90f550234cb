//! The keep-alive pings under paused tokio time: the real engine (and reload loop) runs rules
//! whose probes and actions are scripted, and a pinger records when it would have told
//! systemd `WATCHDOG=1`.

use super::*;
use crate::daemon::build::Generation;
use crate::daemon::{supervise, Reloads};
use crate::engine::threshold::Health;
use crate::engine::RuleStates;
use tokio::sync::{mpsc, watch};

/// The pinger's period in these tests: systemd's `WatchdogSec=10s`, pinged at half of it.
const EVERY: Duration = Duration::from_secs(5);

fn config(toml: &str) -> Config {
    crate::config::from_sources(&[("t.toml".into(), toml.to_string())])
        .unwrap_or_else(|e| panic!("test config invalid: {e}"))
}

/// One rule checked every second that fails at its first failed check; its action is an
/// exec with a 1 s timeout.
const ONE_RULE: &str = r#"
[rules.web]
check = { type = "http", url = "http://127.0.0.1:1/" }
interval = "1s"
timeout = "500ms"
fail_after = 1
on_fail = ["hook"]
[actions.hook]
type = "exec"
command = ["/bin/true"]
timeout = "1s"
"#;

/// When the pinger pinged, as times since `start`.
type Pings = Arc<Mutex<Vec<Duration>>>;

/// A pinger on `heartbeat` every [`EVERY`], recording its pings.
fn pinger(heartbeat: Arc<Heartbeat>, start: Instant) -> (Pings, tokio::task::JoinHandle<()>) {
    let pings = Pings::default();
    let record = pings.clone();
    let task = tokio::spawn(keep_alive(heartbeat, EVERY, move || {
        record.lock().unwrap().push(start.elapsed())
    }));
    (pings, task)
}

/// The pinger's ticks in `from..=to` (seconds) that pinged.
fn pinged(pings: &Pings, from: u64, to: u64) -> Vec<u64> {
    pings
        .lock()
        .unwrap()
        .iter()
        .map(|d| d.as_secs())
        .filter(|s| (from..=to).contains(s))
        .collect()
}

/// Every tick of the pinger (every 5 s) from `from` to `to` seconds.
fn ticks(from: u64, to: u64) -> Vec<u64> {
    (from..=to).filter(|s| s % EVERY.as_secs() == 0).collect()
}

/// Checks that pass or fail as told; actions that return at once, or hang until `release`
/// turns true when `hang` is set.
struct Scripted {
    pass: bool,
    hang: bool,
    release: watch::Receiver<bool>,
    acts: Mutex<u32>,
}

impl Scripted {
    fn new(pass: bool, hang: bool) -> (Scripted, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(false);
        let s = Scripted {
            pass,
            hang,
            release: rx,
            acts: Mutex::new(0),
        };
        (s, tx)
    }
}

impl Effects for Scripted {
    async fn check(&self, _rule: &Rule) -> Outcome {
        if self.pass {
            Outcome::ok("fine")
        } else {
            Outcome::fail("down")
        }
    }

    async fn act(&self, _action: &str, _ctx: &ActionContext) -> ActionOutcome {
        *self.acts.lock().unwrap() += 1;
        if self.hang {
            let _ = self.release.clone().wait_for(|r| *r).await;
        }
        // Asks to be retried, so a failed rule keeps running its action every cycle.
        ActionOutcome::Error("again".into())
    }
}

/// Runs the engine on `fx` through [`Watched`] for `secs` seconds, with a pinger; `during`
/// runs alongside (to release a hang). Returns the pings.
async fn engine_for<E: Effects>(
    fx: E,
    toml: &str,
    secs: u64,
    during: impl Future<Output = ()>,
) -> Pings {
    let start = Instant::now();
    let heartbeat = Arc::new(Heartbeat::default());
    let config = config(toml);
    let fx = Arc::new(Watched::new(Arc::new(fx), heartbeat.clone(), &config));
    let (pings, task) = pinger(heartbeat, start);
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopper = async {
        tokio::time::sleep(Duration::from_secs(secs) + Duration::from_millis(500)).await;
        stop_tx.send(true).unwrap();
    };
    let ((result, _), (), ()) = tokio::join!(
        crate::engine::run(
            config.rules.clone(),
            fx,
            stop_rx,
            Duration::from_secs(1),
            RuleStates::new()
        ),
        stopper,
        during
    );
    result.unwrap();
    task.abort();
    pings
}

use std::future::Future;

#[tokio::test(start_paused = true)]
async fn pings_while_every_rule_completes_its_cycles() {
    let (fx, _release) = Scripted::new(true, false);
    let pings = engine_for(fx, ONE_RULE, 60, async {}).await;
    assert_eq!(pinged(&pings, 0, 60), ticks(0, 60));
}

#[tokio::test(start_paused = true)]
async fn a_failing_check_cut_at_its_timeout_does_not_stop_the_pings() {
    // A probe that never answers is a failed check at its deadline: the rule goes on.
    struct Hangs;
    impl Effects for Hangs {
        async fn check(&self, _rule: &Rule) -> Outcome {
            std::future::pending().await
        }
        async fn act(&self, _action: &str, _ctx: &ActionContext) -> ActionOutcome {
            ActionOutcome::Error("again".into())
        }
    }
    let pings = engine_for(Hangs, ONE_RULE, 60, async {}).await;
    assert_eq!(pinged(&pings, 0, 60), ticks(0, 60));
}

#[tokio::test(start_paused = true)]
async fn no_ping_once_an_action_runs_past_its_bound_and_pings_resume_when_it_completes() {
    let (fx, release) = Scripted::new(false, true);
    // The action starts at 0 s; its bound is its 1 s timeout, plus 10 s of slack.
    let pings = engine_for(fx, ONE_RULE, 60, async move {
        tokio::time::sleep(Duration::from_secs(42)).await;
        release.send(true).unwrap();
    })
    .await;
    assert_eq!(pinged(&pings, 0, 10), ticks(0, 10), "within its bound");
    assert_eq!(
        pinged(&pings, 11, 42),
        Vec::<u64>::new(),
        "stuck from 11 s until released at 42 s"
    );
    assert_eq!(pinged(&pings, 43, 60), ticks(43, 60), "released");
}

#[tokio::test(start_paused = true)]
async fn a_probe_past_its_deadline_stops_the_pings_until_it_completes() {
    // The engine cuts a probe at its deadline; one that is not cut (its task is no longer
    // polled, as when a blocking call holds its thread) is stuck. Driven without the engine.
    struct Blocked(watch::Receiver<bool>);
    impl Effects for Blocked {
        async fn check(&self, _rule: &Rule) -> Outcome {
            let _ = self.0.clone().wait_for(|r| *r).await;
            Outcome::ok("at last")
        }
        async fn act(&self, _action: &str, _ctx: &ActionContext) -> ActionOutcome {
            ActionOutcome::NoOp("never".into())
        }
    }
    let start = Instant::now();
    let (release, released) = watch::channel(false);
    let heartbeat = Arc::new(Heartbeat::default());
    let config = config(ONE_RULE);
    let rule = config.rules[0].clone();
    let fx = Arc::new(Watched::new(
        Arc::new(Blocked(released)),
        heartbeat.clone(),
        &config,
    ));
    let (pings, task) = pinger(heartbeat.clone(), start);
    let cycle = tokio::spawn({
        let fx = fx.clone();
        async move {
            let outcome = fx.check(&rule).await;
            fx.report(&CycleReport {
                rule: rule.name.clone(),
                check: rule.check.kind(),
                outcome,
                health: Health::Up,
                consecutive_failures: 0,
                consecutive_successes: 1,
                transition: None,
                actions: Vec::new(),
                took: Duration::from_secs(32),
            });
        }
    });
    tokio::time::sleep(Duration::from_secs(32)).await;
    let stuck = heartbeat.overdue().expect("the probe is overdue");
    assert_eq!(
        (stuck.rule.as_deref(), &stuck.doing, stuck.bound),
        (Some("web"), &Doing::Probing, Duration::from_millis(500))
    );
    release.send(true).unwrap();
    cycle.await.unwrap();
    // Waiting for its next cycle now; nothing starts one here, so stop before it is overdue.
    tokio::time::sleep(Duration::from_secs(9)).await;
    task.abort();
    assert_eq!(pinged(&pings, 0, 10), ticks(0, 10), "within its deadline");
    assert_eq!(pinged(&pings, 11, 32), Vec::<u64>::new(), "stuck");
    assert_eq!(pinged(&pings, 33, 41), ticks(33, 41), "completed");
}

#[tokio::test(start_paused = true)]
async fn with_no_rule_running_pings_go_on_while_the_runtime_lives() {
    // A configuration has at least one rule; a heartbeat no rule reports to judges nothing.
    let start = Instant::now();
    let heartbeat = Arc::new(Heartbeat::default());
    let (pings, task) = pinger(heartbeat, start);
    tokio::time::sleep(Duration::from_secs(31)).await;
    task.abort();
    assert_eq!(pinged(&pings, 0, 31), ticks(0, 31));
}

#[tokio::test(start_paused = true)]
async fn a_reload_that_never_completes_stops_the_pings() {
    let start = Instant::now();
    let heartbeat = Arc::new(Heartbeat::default());
    let (pings, task) = pinger(heartbeat.clone(), start);
    tokio::time::sleep(Duration::from_secs(1)).await;
    heartbeat.changing_generation();
    tokio::time::sleep(Duration::from_secs(60)).await;
    task.abort();
    let bound = 1 + BETWEEN_GENERATIONS.as_secs() + SLACK.as_secs();
    assert_eq!(pinged(&pings, 0, bound), ticks(0, bound));
    assert_eq!(pinged(&pings, bound + 1, 61), Vec::<u64>::new());
    assert_eq!(
        heartbeat.overdue().map(|o| o.rule),
        Some(None),
        "the reload is named"
    );
}

/// Reloads that always build a new generation of the same effects.
struct Rebuild<F: Fn() -> Scripted>(F);

impl<F: Fn() -> Scripted> Reloads<Scripted> for Rebuild<F> {
    fn reload(&mut self) -> Option<(Config, Generation<Scripted>)> {
        Some((
            config(ONE_RULE),
            Generation {
                live: Arc::new((self.0)()),
                stop: watch::channel(false).0,
            },
        ))
    }
}

#[tokio::test(start_paused = true)]
async fn pings_go_on_through_a_reload_that_waits_for_a_running_action() {
    // The action hangs, within its 30 s timeout: at the reload (8 s) the engine gives it its
    // shutdown grace (10 s), then cuts it, and the next generation (whose action returns at
    // once) runs.
    let start = Instant::now();
    let heartbeat = Arc::new(Heartbeat::default());
    let (fx, _release) = Scripted::new(false, true);
    let first = Generation {
        live: Arc::new(fx),
        stop: watch::channel(false).0,
    };
    let (pings, task) = pinger(heartbeat.clone(), start);
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let (hup_tx, mut hup_rx) = mpsc::unbounded_channel();
    let driver = async {
        tokio::time::sleep(Duration::from_secs(8)).await;
        hup_tx.send(()).unwrap();
        tokio::time::sleep(Duration::from_secs(52)).await;
        stop_tx.send(true).unwrap();
    };
    let mut reloads = Rebuild(|| Scripted::new(false, false).0);
    let ((result, last), ()) = tokio::join!(
        supervise(
            config(&ONE_RULE.replace("timeout = \"1s\"", "timeout = \"30s\"")),
            first,
            RuleStates::new(),
            &mut stop_rx,
            &mut hup_rx,
            &mut reloads,
            &heartbeat,
        ),
        driver
    );
    result.unwrap();
    let _ = last.stop.send(true);
    task.abort();
    assert_eq!(pinged(&pings, 0, 60), ticks(0, 60));
}

#[test]
fn each_action_kind_is_allowed_its_own_bounds() {
    let c = config(
        r#"
[rules.web]
check = { type = "http", url = "http://127.0.0.1:1/" }
timeout = "5s"
on_fail = ["claim", "page", "hook"]
[actions.claim]
type = "claim_eip"
eip = "203.0.113.10"
sns_topic_arn = "arn:aws:sns:us-east-1:123456789012:t"
[actions.page]
type = "sns"
topic_arn = "arn:aws:sns:us-east-1:123456789012:t"
[actions.hook]
type = "exec"
command = ["/bin/true"]
timeout = "45s"
"#,
    );
    let b = Budgets::of(&c);
    assert_eq!(b.get("hook"), Duration::from_secs(45), "its timeout");
    assert_eq!(b.get("page"), Duration::ZERO, "it only queues");
    // Twice (8 AWS calls of 20 s, 4 metadata lookups of 2 s, egress 3 s, HAProxy twice 2 s,
    // the rule's check 5 s, the verification 10 s).
    assert_eq!(
        b.get("claim"),
        Duration::from_secs(2 * (160 + 8 + 3 + 4 + 5 + 10))
    );
    assert_eq!(b.get("gone"), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_rule_that_starts_no_cycle_within_its_interval_stops_the_pings() {
    // Registered, but its task never runs a cycle (nothing drives it here).
    let start = Instant::now();
    let heartbeat = Arc::new(Heartbeat::default());
    let fx = Scripted::new(true, false).0;
    let _fx = Watched::new(Arc::new(fx), heartbeat.clone(), &config(ONE_RULE));
    let (pings, task) = pinger(heartbeat.clone(), start);
    tokio::time::sleep(Duration::from_secs(21)).await;
    task.abort();
    // Its 1 s interval plus 10 s of slack.
    assert_eq!(pinged(&pings, 0, 11), ticks(0, 11));
    assert_eq!(pinged(&pings, 12, 21), Vec::<u64>::new());
    let stuck = heartbeat.overdue().expect("overdue");
    assert_eq!(
        (stuck.rule.as_deref(), stuck.doing),
        (Some("web"), Doing::Waiting)
    );
}

/// Every effect the wrapper is handed reaches the configuration's own: a wrapper that kept
/// one (the failover history's transitions) to itself lost it without a sound.
#[tokio::test(start_paused = true)]
async fn the_watchdog_wrapper_passes_every_effect_on() {
    #[derive(Default)]
    struct Recording(Mutex<Vec<&'static str>>);
    impl Effects for Recording {
        async fn check(&self, _: &Rule) -> Outcome {
            self.0.lock().unwrap().push("check");
            Outcome::fail("HTTP 503")
        }
        async fn act(&self, _: &str, _: &ActionContext) -> ActionOutcome {
            self.0.lock().unwrap().push("act");
            ActionOutcome::NoOp("ok".into())
        }
        fn streak_started(&self, _: &str) {
            self.0.lock().unwrap().push("streak_started");
        }
        fn report(&self, _: &CycleReport) {
            self.0.lock().unwrap().push("report");
        }
        fn transitioned(&self, _: &str, _: crate::engine::threshold::Transition, _: &str) {
            self.0.lock().unwrap().push("transitioned");
        }
        fn persist(&self, _: &str, _: &RuleState) {
            self.0.lock().unwrap().push("persist");
        }
        fn pacing(&self, rule: &Rule) -> Pacing {
            self.0.lock().unwrap().push("pacing");
            Pacing::every_interval(rule)
        }
    }
    let c = config(ONE_RULE);
    let inner = Arc::new(Recording::default());
    let w = Watched::new(inner.clone(), Arc::new(Heartbeat::default()), &c);
    inner.0.lock().unwrap().clear();
    // One cycle of a rule that fails at once goes through every effect.
    let mut runner = crate::engine::RuleRunner::new(c.rules[0].clone());
    let report = runner.cycle(&w).await;
    w.report(&report);
    w.streak_started("hook");
    let seen = inner.0.lock().unwrap().clone();
    for effect in [
        "check",
        "act",
        "streak_started",
        "report",
        "transitioned",
        "persist",
        "pacing",
    ] {
        assert!(seen.contains(&effect), "{effect} not passed on: {seen:?}");
    }
}
