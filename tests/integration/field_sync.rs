//! Backend-sync faults from the field, one kind per test: each test's name says the kind,
//! and each drives the real `watchdog` against real HAProxy (2.6, or what
//! `WATCHDOG_TEST_HAPROXY` names), the Consul stand-in and moto, on loopback only.

use crate::support::consul::Consul;
use crate::support::lb::{self, Backends, Lb};
use crate::support::watchdog::Watchdog;
use crate::sync::{consul_source, instances, no_aws, rule};
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(15);

/// Consul's index bug: every blocking query answered at once with `X-Consul-Index: 0`. The
/// watchdog asks at most about once a second, never sends an index below 1, still applies
/// changes, and recovers when the index moves, goes backwards or is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_index_that_does_not_move_is_asked_at_most_once_a_second() {
    let b = Backends::start(3).await;
    let consul = Consul::start("web", instances(&b, &[0, 1])).await;
    consul.index_answers(Some(Some("0")));
    let lb = Lb::start(&lb::block(4, b.port)).await;
    let wd = Watchdog::start(
        "lb",
        &no_aws(),
        &rule(&lb, "", &consul_source(&consul)),
        &[],
    );
    lb.converges(&b.addrs(&[0, 1]), "first sync").await;

    let from = consul.request_log().len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let asked = consul.request_log().len() - from;
    // One a second, give or take the edges of the window (it was 100 a second before).
    assert!(
        (2..=7).contains(&asked),
        "{asked} queries in 5 s while the index stays at 0\n{}",
        wd.log()
    );
    // Answers that come at once are still answers: a change is applied.
    consul.set(instances(&b, &[0, 1, 2]));
    lb.converges(&b.addrs(&[0, 1, 2]), "a change while the index is stuck")
        .await;

    // A missing index is an error (not from Consul's health API), retried with backoff.
    consul.index_answers(Some(None));
    consul.set(instances(&b, &[2]));
    wd.wait_for(WITHIN, "a missing index refused", |e| {
        e["event"] == "backend_sync_failed"
            && e["error"].as_str().unwrap_or("").contains("X-Consul-Index")
    })
    .await;
    assert_eq!(lb.serving().await, Some(b.addrs(&[0, 1, 2])));

    // Consul mends; then its index goes backwards (a restored snapshot): the watchdog resets
    // and follows the changes after it.
    consul.index_answers(None);
    lb.converges(&b.addrs(&[2]), "the index moves again").await;
    consul.set_index(3);
    consul.set(instances(&b, &[1, 2]));
    lb.converges(&b.addrs(&[1, 2]), "after the index went backwards")
        .await;

    let sent: Vec<String> = consul
        .request_log()
        .into_iter()
        .filter_map(|(_, i)| i)
        .collect();
    assert!(
        sent.iter().all(|i| i.parse::<u64>().is_ok_and(|n| n >= 1)),
        "an index below 1 was sent: {sent:?}"
    );
}

/// A stale read during a Consul election (`X-Consul-KnownLeader: false`) is not applied,
/// even an empty one with `allow_empty`; the next answer from a known leader is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaderless_consul_answers_are_not_applied() {
    let b = Backends::start(3).await;
    let consul = Consul::start("web", instances(&b, &[0, 1, 2])).await;
    let lb = Lb::start(&lb::block(4, b.port)).await;
    let wd = Watchdog::start(
        "lb",
        &no_aws(),
        &rule(&lb, "allow_empty = true", &consul_source(&consul)),
        &[],
    );
    let all = b.addrs(&[0, 1, 2]);
    lb.converges(&all, "first sync").await;

    consul.set_known_leader(false);
    consul.set(Vec::new());
    let e = wd
        .wait_for(WITHIN, "a leaderless empty answer refused", |e| {
            e["event"] == "backend_sync_failed"
        })
        .await;
    assert!(
        e["error"]
            .as_str()
            .unwrap_or("")
            .contains("X-Consul-KnownLeader: false"),
        "{e}"
    );
    consul.set(instances(&b, &[0]));
    let seen = wd.count("backend_sync_failed");
    crate::support::eventually(WITHIN, "a leaderless short answer refused", || async {
        (wd.count("backend_sync_failed") > seen).then_some(())
    })
    .await;
    assert_eq!(lb.serving().await, Some(all.clone()), "{}", wd.log());
    assert_eq!(lb.file_serving(), all);

    consul.set_known_leader(true);
    consul.set(instances(&b, &[0, 1]));
    lb.converges(&b.addrs(&[0, 1]), "the leader's answer").await;
}
