//! The reload loop under paused tokio time: no sleeping, no network, no AWS.

use super::*;
use crate::actions::{ActionContext, ActionOutcome};
use crate::checks::Outcome;
use crate::config::Rule;
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

/// One rule checked every second that fails the rule after three failed checks in a row.
const CONFIG: &str = r#"
[rules.web]
check = { type = "http", url = "http://127.0.0.1:1/" }
interval = "1s"
timeout = "500ms"
fail_after = 3
on_fail = ["hook"]
[actions.hook]
type = "exec"
command = ["/bin/true"]
"#;

fn config() -> Config {
    crate::config::from_sources(&[("t.toml".into(), CONFIG.to_string())])
        .unwrap_or_else(|e| panic!("test config invalid: {e}"))
}

/// What each generation did, with the paused clock's time since the start.
type Log = Arc<Mutex<Vec<(u32, &'static str, Duration)>>>;

/// Effects whose every check fails; each call is logged under the generation's number.
struct Failing {
    generation: u32,
    log: Log,
    start: Instant,
}

impl Failing {
    fn note(&self, what: &'static str) {
        self.log
            .lock()
            .unwrap()
            .push((self.generation, what, self.start.elapsed()));
    }
}

impl Effects for Failing {
    async fn check(&self, _rule: &Rule) -> Outcome {
        self.note("check");
        Outcome::fail("down")
    }

    async fn act(&self, _action: &str, _ctx: &ActionContext) -> ActionOutcome {
        self.note("act");
        ActionOutcome::Done("ran".into())
    }
}

/// Reloads that build generation 2, 3, … when `valid`, and refuse otherwise.
struct Scripted {
    valid: bool,
    built: u32,
    asked: u32,
    log: Log,
    start: Instant,
}

impl Scripted {
    fn generation(&mut self) -> Generation<Failing> {
        self.built += 1;
        Generation {
            live: Arc::new(Failing {
                generation: self.built,
                log: self.log.clone(),
                start: self.start,
            }),
            stop: watch::channel(false).0,
        }
    }
}

impl Reloads<Failing> for Scripted {
    fn reload(&mut self) -> Option<(Config, Generation<Failing>)> {
        self.asked += 1;
        if self.valid {
            Some((config(), self.generation()))
        } else {
            None
        }
    }
}

/// Runs the loop with a reload at 1.5 s and a stop at 3.2 s; returns what happened.
async fn reload_at_one_and_a_half_seconds(
    valid: bool,
) -> (Vec<(u32, &'static str, Duration)>, u32, u32) {
    let start = Instant::now();
    let log = Log::default();
    let mut reloads = Scripted {
        valid,
        built: 0,
        asked: 0,
        log: log.clone(),
        start,
    };
    let first = reloads.generation();
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let (hup_tx, mut hup_rx) = mpsc::unbounded_channel();
    let driver = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        hup_tx.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(1700)).await;
        stop_tx.send(true).unwrap();
    };
    let heartbeat = Arc::new(Heartbeat::default());
    let ((result, last), ()) = tokio::join!(
        supervise(
            config(),
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
    let log = log.lock().unwrap().clone();
    (log, reloads.built, reloads.asked)
}

#[tokio::test(start_paused = true)]
async fn a_valid_reload_keeps_each_rules_streak() {
    let (log, built, asked) = reload_at_one_and_a_half_seconds(true).await;
    assert_eq!((asked, built), (1, 2), "one reload built generation 2");
    let checks_before: Vec<_> = log
        .iter()
        .filter(|(g, what, _)| *g == 1 && *what == "check")
        .collect();
    assert_eq!(
        checks_before.len(),
        2,
        "generation 1 checked at 0 s and 1 s: {log:?}"
    );
    // The third failed check in a row is generation 2's first, which comes on the rule's
    // schedule (2 s: a reload keeps it): the streak carried over, so the rule fails there (a
    // fresh streak would need three more, past the stop at 3.2 s).
    let acts: Vec<_> = log.iter().filter(|(_, what, _)| *what == "act").collect();
    assert_eq!(acts.len(), 1, "the rule failed once: {log:?}");
    let (g, _, at) = acts[0];
    assert_eq!(*g, 2, "generation 2 ran the action: {log:?}");
    assert_eq!(
        *at,
        Duration::from_secs(2),
        "at generation 2's first check, on schedule: {log:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_invalid_reload_keeps_the_running_generation() {
    let (log, built, asked) = reload_at_one_and_a_half_seconds(false).await;
    assert_eq!(
        (asked, built),
        (1, 1),
        "the reload was tried and nothing new was built"
    );
    assert!(
        log.iter().all(|(g, _, _)| *g == 1),
        "only generation 1 ever ran: {log:?}"
    );
    let checks = log.iter().filter(|(_, what, _)| *what == "check").count();
    assert_eq!(
        checks, 4,
        "checks at 0, 1, 2 and 3 s, uninterrupted: {log:?}"
    );
    // Not restarted at the reload: its third check (2 s) fails the rule.
    let acts: Vec<_> = log.iter().filter(|(_, what, _)| *what == "act").collect();
    assert_eq!(acts.len(), 1, "{log:?}");
    assert_eq!(acts[0].2, Duration::from_secs(2), "{log:?}");
}

#[tokio::test(start_paused = true)]
async fn a_rule_task_that_dies_stops_the_daemon_with_an_error() {
    struct Panics;
    impl Effects for Panics {
        async fn check(&self, _rule: &Rule) -> Outcome {
            panic!("a bug in a probe")
        }
        async fn act(&self, _action: &str, _ctx: &ActionContext) -> ActionOutcome {
            ActionOutcome::NoOp("never".into())
        }
    }
    struct Never;
    impl Reloads<Panics> for Never {
        fn reload(&mut self) -> Option<(Config, Generation<Panics>)> {
            None
        }
    }
    let (_stop_tx, mut stop_rx) = watch::channel(false);
    let (_hup_tx, mut hup_rx) = mpsc::unbounded_channel();
    let generation = Generation {
        live: Arc::new(Panics),
        stop: watch::channel(false).0,
    };
    let (result, _) = supervise(
        config(),
        generation,
        RuleStates::new(),
        &mut stop_rx,
        &mut hup_rx,
        &mut Never,
        &Arc::new(Heartbeat::default()),
    )
    .await;
    let e = result.expect_err("a dead rule task is an error");
    assert!(matches!(e, DaemonError::Engine(_)), "{e}");
}
