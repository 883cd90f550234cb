//! The seed scenarios end to end on the namespace test bed (testkit/src/testbed.rs): real
//! HAProxy nodes, real traffic to the Elastic IP through the edge, nodes failing.

use std::time::Duration;
use testkit::awsproxy::Fault;
use testkit::eventually;
use testkit::testbed::TestBed;

const T: Duration = Duration::from_secs(30);

async fn served_by(bed: &TestBed, node: &str) {
    eventually(T, &format!("the EIP served by {node}"), || async {
        (bed.get_eip().await.as_deref() == Some(node)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_standby_failover_moves_real_traffic_and_does_not_fail_back() {
    let mut bed = TestBed::new(&["a", "b"], Some("a")).await;
    served_by(&bed, "a").await;
    let wa = bed.start("a", &bed.conf("a"));
    let wb = bed.start("b", &bed.conf("b"));
    wa.wait_event(T, "started").await;
    wb.wait_event(T, "started").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        wa.count("check_failed") + wb.count("check_failed"),
        0,
        "healthy pair: no failures"
    );

    bed.nodes.get_mut("a").unwrap().haproxy.stop();
    wb.wait_event(T, "eip_claimed").await;
    served_by(&bed, "b").await;
    assert_eq!(bed.eip_route(), Some(bed.world.node("b").private_ip));
    // a saw the failure too, but its own HAProxy is down: it never claimed.
    assert!(wa
        .events("action_refused")
        .iter()
        .all(|e| e["reason"] == "local_haproxy_unhealthy"));
    assert_eq!(wa.count("eip_claimed"), 0);
    assert_eq!(
        bed.world.alerts(Duration::from_secs(3)).await.len(),
        1,
        "one SNS alert"
    );

    // a comes back: the EIP stays on b.
    bed.nodes.get_mut("a").unwrap().haproxy.restart().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(bed.get_eip().await.as_deref(), Some("b"));
    assert_eq!(bed.world.holder().await.as_deref(), Some("b"));
    assert_eq!(wa.count("eip_claimed") + wb.count("eip_claimed"), 1);
}

/// Start watchdogs on every node of the bed and wait until they run.
async fn start_all(
    bed: &TestBed,
    tweak: impl Fn(&mut testkit::watchdog::NodeConf),
) -> Vec<testkit::watchdog::Watchdog> {
    let mut wds = Vec::new();
    for n in bed.nodes.keys() {
        let mut c = bed.conf(n);
        tweak(&mut c);
        wds.push(bed.start(n, &c));
    }
    for w in &wds {
        w.wait_event(T, "started").await;
    }
    wds
}

fn by_name<'a>(wds: &'a [testkit::watchdog::Watchdog], n: &str) -> &'a testkit::watchdog::Watchdog {
    wds.iter().find(|w| w.name == n).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_without_internet_never_claims() {
    let mut bed = TestBed::new(&["a", "b"], Some("a")).await;
    let wds = start_all(&bed, |_| {}).await;
    bed.cut_internet("b");
    bed.nodes.get_mut("a").unwrap().haproxy.stop();
    // b cannot reach the EIP either, so its rule fails; its egress check cannot pass.
    by_name(&wds, "b")
        .refused_at_least(T, "egress_unreachable", 3)
        .await;
    assert_eq!(
        bed.proxy.count("AssociateAddress").0 + bed.proxy.count("DisassociateAddress").0,
        0,
        "no claim attempted"
    );
    assert_eq!(bed.world.holder().await.as_deref(), Some("a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_whose_own_haproxy_is_down_never_claims() {
    let mut bed = TestBed::new(&["a", "b"], Some("a")).await;
    let wds = start_all(&bed, |_| {}).await;
    bed.nodes.get_mut("b").unwrap().haproxy.stop();
    bed.nodes.get_mut("a").unwrap().haproxy.stop();
    by_name(&wds, "b")
        .refused_at_least(T, "local_haproxy_unhealthy", 3)
        .await;
    assert_eq!(
        bed.proxy.count("AssociateAddress").0 + bed.proxy.count("DisassociateAddress").0,
        0,
        "refused before any mutation"
    );
    assert_eq!(bed.world.holder().await.as_deref(), Some("a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_whose_backends_are_down_never_claims() {
    // HAProxy runs, but its backend is gone: `[haproxy] backend = "app"` must see it DOWN.
    let mut bed = TestBed::new(&["a", "b"], Some("a")).await;
    let wds = start_all(&bed, |_| {}).await;
    bed.nodes.get_mut("b").unwrap().stop_backend();
    bed.nodes.get_mut("a").unwrap().haproxy.stop();
    let refused = by_name(&wds, "b")
        .wait_for(T, "a refusal", |e| e["event"] == "action_refused")
        .await;
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("backend app is DOWN"),
        "{refused}"
    );
    assert_eq!(bed.proxy.count("AssociateAddress").0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_deciding_at_the_same_moment_leave_exactly_one_owner() {
    let mut bed = TestBed::new(&["a", "b", "c"], Some("c")).await;
    let wds = start_all(&bed, |c| c.fail_after = 2).await;
    bed.nodes.get_mut("c").unwrap().haproxy.stop();
    let holder = eventually(T, "a new holder", || async {
        bed.world.holder().await.filter(|h| h != "c")
    })
    .await;
    served_by(&bed, &holder).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        bed.world.holder().await.as_deref(),
        Some(holder.as_str()),
        "it stays put"
    );
    let claims: usize = wds.iter().map(|w| w.count("eip_claimed")).sum();
    assert_eq!(claims, 1);
    assert_eq!(bed.world.alerts(Duration::from_secs(2)).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_survives_throttling_5xx_and_slow_aws_answers() {
    let mut bed = TestBed::new(&["a", "b"], Some("a")).await;
    let wds = start_all(&bed, |_| {}).await;
    // Every mutating and reading call of the claim, and the alert, misbehave first.
    bed.proxy.inject("DescribeAddresses", Fault::Throttle, 2);
    bed.proxy
        .inject("DisassociateAddress", Fault::ServerError, 1);
    bed.proxy.inject("AssociateAddress", Fault::Throttle, 1);
    bed.proxy.inject(
        "AssociateAddress",
        Fault::Delay(Duration::from_millis(1500)),
        1,
    );
    bed.proxy.inject("Publish", Fault::ServerError, 2);
    bed.nodes.get_mut("a").unwrap().haproxy.stop();
    let wb = by_name(&wds, "b");
    wb.wait_event(T, "eip_claimed").await;
    served_by(&bed, "b").await;
    wb.wait_event(T, "alert_sent").await;
    assert_eq!(
        bed.world.alerts(Duration::from_secs(3)).await.len(),
        1,
        "exactly one alert"
    );
    // The faults were really hit, and retried within bounds (SDK standard mode, 3 attempts).
    assert_eq!(bed.proxy.count("DisassociateAddress"), (2, 1));
    assert_eq!(bed.proxy.count("AssociateAddress"), (2, 1));
    assert!(bed.proxy.count("DescribeAddresses").1 == 2);
    assert!(bed.proxy.count("Publish").1 >= 2);
    assert_eq!(wds.iter().map(|w| w.count("eip_claimed")).sum::<usize>(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_eip_moves_at_most_once_per_hold_down() {
    let mut bed = TestBed::new(&["a", "b"], Some("a")).await;
    let wds = start_all(&bed, |c| {
        c.fail_after = 1;
        c.recover_after = 1;
    })
    .await;
    // Whoever serves the EIP keeps dying and coming back, every ~0.7 s, for 10 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut round = 0;
    while tokio::time::Instant::now() < deadline {
        let holder = bed.world.holder().await.unwrap_or_default();
        if let Some(n) = bed.nodes.get_mut(&holder) {
            if round % 2 == 0 {
                n.haproxy.stop();
            } else {
                n.haproxy.restart().await;
            }
        }
        round += 1;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    for w in &wds {
        assert!(
            w.count("eip_claimed") <= 1,
            "{} moved the EIP {} times within its hold-down",
            w.name,
            w.count("eip_claimed")
        );
    }
    assert!(
        bed.proxy.count("AssociateAddress").0 <= 2,
        "at most one move per node per hold-down window"
    );
    // And it did flap: the EIP moved, and rules failed again afterwards.
    let claims: usize = wds.iter().map(|w| w.count("eip_claimed")).sum();
    assert!(claims >= 1, "the EIP never moved: the test did not flap");
    let failures: usize = wds.iter().map(|w| w.count("rule_failed")).sum();
    assert!(failures >= 3, "only {failures} rule failures: not flapping");
}

/// Seed 002's configuration for `node` of an active/active pair: watch the peer's EIP and
/// take it onto our secondary private IP when it fails; with `failback`, take our own EIP
/// back home once our traffic no longer leaves from it.
fn active_active_conf(bed: &TestBed, node: &str, peer: &str, failback: bool) -> String {
    let eip_of = |n: &str| {
        if n == "a" {
            bed.world.eip
        } else {
            bed.world.extra_eips[0].0
        }
    };
    let me = bed.world.node(node);
    let env = bed.conf(node);
    let mut s = format!(
        r#"
[aws]
attempt_timeout = "2s"
max_attempts = 3
[egress]
checkip_url = "{checkip}"
timeout = "1s"
[haproxy]
stats_socket = "{socket}"
backend = "app"
[alerts]
sns_topic_arn = "{topic}"

[rules.peer-eip]
check = {{ type = "http", url = "http://{peer_eip}/" }}
interval = "500ms"
timeout = "400ms"
fail_after = 3
on_fail = ["take-peer-eip"]

[actions.take-peer-eip]
type = "claim_eip"
eip = "{peer_eip}"
private_ip = "{secondary}"
hold_down = "60s"
"#,
        checkip = env.checkip,
        socket = env.socket.display(),
        topic = bed.world.topic_arn,
        peer_eip = eip_of(peer),
        secondary = me.secondary_ips[0],
    );
    if failback {
        s.push_str(&format!(
            r#"
[rules.home-eip]
check = {{ type = "egress", expect = "{home}" }}
interval = "500ms"
timeout = "400ms"
fail_after = 4
on_fail = ["take-home-eip"]

[actions.take-home-eip]
type = "claim_eip"
eip = "{home}"
hold_down = "60s"
"#,
            home = eip_of(node)
        ));
    }
    s
}

async fn active_active(failback: bool) {
    let mut bed = TestBed::active_active().await;
    let (eip_a, eip_b) = (bed.world.eip, bed.world.extra_eips[0].0);
    let (a, b) = (bed.world.node("a").clone(), bed.world.node("b").clone());
    // What the client saw while waiting, printed as it changes: if the bed never settles, the
    // failure says whether the route or the answer was missing.
    let seen = std::sync::Mutex::new(String::new());
    eventually(T, "each EIP on its home node", || async {
        let (got_a, got_b) = (bed.get_ip(eip_a).await, bed.get_ip(eip_b).await);
        if got_a.as_deref() == Some("a") && got_b.as_deref() == Some("b") {
            return Some(());
        }
        let now = format!(
            "a's EIP answers {got_a:?} routed to {:?}; b's EIP answers {got_b:?} routed to {:?}",
            bed.route_of(eip_a),
            bed.route_of(eip_b)
        );
        let mut last = seen.lock().unwrap();
        if *last != now {
            eprintln!("bed: {now}");
            *last = now;
        }
        None
    })
    .await;
    let wa = testkit::watchdog::Watchdog::start_in(
        &bed.nodes["a"].host,
        &bed.env(),
        &active_active_conf(&bed, "a", "b", failback),
        &[],
    );
    let wb = testkit::watchdog::Watchdog::start_in(
        &bed.nodes["b"].host,
        &bed.env(),
        &active_active_conf(&bed, "b", "a", failback),
        &[],
    );
    wa.wait_event(T, "started").await;
    wb.wait_event(T, "started").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        wa.count("rule_failed") + wb.count("rule_failed"),
        0,
        "a healthy pair: nothing fails"
    );

    // a dies: b takes a's EIP onto its secondary private IP; both EIPs answer from b.
    bed.nodes.get_mut("a").unwrap().haproxy.stop();
    wb.wait_event(T, "eip_claimed").await;
    let sent = bed.proxy.count("AssociateAddress");
    assert_eq!(sent.0, 1);
    let secondary = b.secondary_ips[0];
    eventually(T, "a's EIP routed to b's secondary private IP", || async {
        (bed.route_of(eip_a) == Some(secondary)).then_some(())
    })
    .await;
    eventually(T, "a's EIP served by b", || async {
        (bed.get_ip(eip_a).await.as_deref() == Some("b")).then_some(())
    })
    .await;
    assert_eq!(bed.get_ip(eip_b).await.as_deref(), Some("b"));

    // a comes back.
    bed.nodes.get_mut("a").unwrap().haproxy.restart().await;
    if failback {
        wa.wait_for(T, "a's failback claim", |e| e["event"] == "eip_claimed")
            .await;
        eventually(T, "a's EIP back home", || async {
            (bed.get_ip(eip_a).await.as_deref() == Some("a")).then_some(())
        })
        .await;
        let primary = a.private_ip;
        eventually(T, "a's EIP routed to a's primary private IP", || async {
            (bed.route_of(eip_a) == Some(primary)).then_some(())
        })
        .await;
        assert_eq!(
            bed.world.alerts(Duration::from_secs(3)).await.len(),
            2,
            "one alert per move"
        );
    } else {
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            bed.get_ip(eip_a).await.as_deref(),
            Some("b"),
            "without failback it stays on b"
        );
        assert_eq!(wa.count("eip_claimed"), 0);
        assert_eq!(bed.world.alerts(Duration::from_secs(2)).await.len(), 1);
    }
    assert_eq!(
        bed.get_ip(eip_b).await.as_deref(),
        Some("b"),
        "b's own EIP never moved"
    );
    // Healthy again: no AWS calls at all for a while.
    let before = bed.proxy.count("DescribeAddresses").0;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        bed.proxy.count("DescribeAddresses").0,
        before,
        "no AWS calls in steady state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_active_survivor_takes_the_peers_eip_and_fails_back() {
    active_active(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_active_without_failback_keeps_the_eip_on_the_survivor() {
    active_active(false).await;
}
