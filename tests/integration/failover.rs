//! EIP failover end to end: the watchdog binary against moto, real HAProxy, IMDSv2 stand-in.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;
use testkit::bed::{egress_ip, Bed};
use testkit::edge::Edge;
use testkit::eventually;
use testkit::http::Reply;

const SECRET: &str = "testing-secret-never-logged";
const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_claims_after_n_failed_cycles_with_one_alert() {
    let bed = Bed::new(&["a", "b"], Some("a"), &[]).await;
    let (a, b) = (bed.world.node("a").clone(), bed.world.node("b").clone());
    bed.target.set(Reply::Status(503, "down".into()));
    let wd = bed.start("b", &bed.conf("b"));

    let claimed = wd.wait_event(T, "eip_claimed").await;
    let failed = wd.events("rule_failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0]["consecutive_failures"], 3,
        "the rule fails on the 3rd consecutive failure"
    );
    assert_eq!(claimed["verified"], "verified");
    assert_eq!(bed.world.holder().await.as_deref(), Some("b"));

    // Exactly one release of the association it read, one associate onto b's ENI and primary IP.
    let m = &bed.world.moto;
    let dis = m.watchdog_calls("DisassociateAddress");
    assert_eq!(dis.len(), 1);
    assert_eq!(
        dis[0].params["AssociationId"],
        *bed.initial_association.as_ref().unwrap()
    );
    let assoc = m.watchdog_calls("AssociateAddress");
    assert_eq!(assoc.len(), 1, "{assoc:?}");
    assert_eq!(assoc[0].params["AllocationId"], bed.world.allocation_id);
    assert_eq!(assoc[0].params["NetworkInterfaceId"], b.eni);
    assert_eq!(
        assoc[0].params["PrivateIpAddress"],
        b.private_ip.to_string()
    );
    assert_eq!(assoc[0].params["AllowReassociation"], "false");

    // One alert, saying who took over what from whom.
    let alerts = bed.world.alerts(Duration::from_secs(3)).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(
        alerts[0].subject.contains(&b.instance_id)
            && alerts[0].subject.contains(&bed.world.eip.to_string()),
        "{:?}",
        alerts[0]
    );
    let msg = &alerts[0].message;
    assert!(
        msg.contains(&format!(
            "Instance {} took over Elastic IP {}",
            b.instance_id, bed.world.eip
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("from {} ({}", a.instance_id, a.eni)),
        "{msg}"
    );
    assert!(
        msg.contains("rule eip failed 3 consecutive checks"),
        "{msg}"
    );
    assert!(msg.contains(&egress_ip(1)), "{msg}");

    // The claim happened once, not once per failing cycle, and no further AWS calls follow.
    let before = m.watchdog_requests().len();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        m.watchdog_requests().len(),
        before,
        "no AWS calls while the rule stays failed after a claim"
    );
    assert_eq!(wd.count("eip_claimed"), 1);

    // Identity came from IMDSv2 (every read carried a token) and no credential was logged.
    assert!(
        bed.imds["b"]
            .reads
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 3
    );
    assert_eq!(
        bed.imds["b"]
            .refused
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    let (code, log) = wd.stop().await;
    assert_eq!(code, Some(0), "clean exit on SIGTERM");
    // Even at debug level: no secret key, session token or metadata token in the log.
    for secret in [
        SECRET,
        testkit::watchdog::SESSION_TOKEN,
        testkit::imds::TOKEN,
    ] {
        assert!(!log.contains(secret), "{secret} reached the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_minus_one_failures_never_claim() {
    let bed = Bed::new(&["a", "b"], Some("a"), &[]).await;
    let down = || Reply::Status(503, "down".into());
    // Two failures, a success, two failures, then healthy: never three in a row.
    bed.target
        .script([down(), down(), Reply::ok("ok"), down(), down()]);
    let wd = bed.start("b", &bed.conf("b"));
    eventually(T, "ten checks", || async {
        (bed.target.hits() >= 10).then_some(())
    })
    .await;
    assert_eq!(wd.count("check_failed"), 4);
    assert_eq!(wd.count("rule_failed"), 0);
    // Each failure streak reads the owner once (so a takeover meanwhile can be seen); nothing else.
    let calls = bed.world.moto.watchdog_actions();
    assert_eq!(
        calls,
        ["DescribeAddresses", "DescribeAddresses"],
        "one read per failure streak, no mutation"
    );
    assert_eq!(bed.world.holder().await.as_deref(), Some("a"));
}

/// Wait for the claim action to be refused for `reason` at least twice (it is retried every
/// cycle), and check that nothing was mutated.
async fn refused_twice(bed: &Bed, wd: &testkit::watchdog::Watchdog, reason: &str) {
    eventually(T, reason, || async {
        (wd.events("action_refused")
            .iter()
            .filter(|e| e["reason"] == reason)
            .count()
            >= 2)
            .then_some(())
    })
    .await;
    assert!(
        bed.world.moto.watchdog_mutations().is_empty(),
        "{reason}: the EIP was touched"
    );
    assert_eq!(wd.count("eip_claimed"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_claim_without_verified_egress_and_claim_once_it_is_back() {
    let bed = Bed::new(&["a", "b"], Some("a"), &[]).await;
    bed.target.set(Reply::Status(503, "down".into()));
    let checkip = &bed.checkip["b"];
    let cases: [(&str, Option<Reply>); 4] = [
        (
            "egress_garbage",
            Some(Reply::ok("<html>Welcome to the captive portal</html>")),
        ),
        ("egress_bad_status", Some(Reply::Status(500, "oops".into()))),
        ("egress_timeout", Some(Reply::Hang)),
        ("egress_unreachable", None),
    ];
    for (reason, reply) in cases {
        let mut conf = bed.conf("b");
        match reply {
            Some(r) => checkip.set(r),
            None => conf.checkip = format!("http://127.0.0.1:{}/", testkit::free_port()),
        }
        let wd = bed.start("b", &conf);
        refused_twice(&bed, &wd, reason).await;
        wd.stop().await;
    }

    // checkip says our traffic already leaves from the EIP while EC2 has it on `a`: never
    // "fail over to itself", and never silent either: refused, and tried again.
    checkip.set(Reply::ok(&bed.world.eip.to_string()));
    let wd = bed.start("b", &bed.conf("b"));
    refused_twice(&bed, &wd, "egress_is_the_eip").await;
    assert_eq!(wd.count("action_noop"), 0);
    assert!(bed.world.moto.watchdog_mutations().is_empty());
    wd.stop().await;

    // Egress works again while the rule is still failing: the pending claim goes through.
    checkip.set(Reply::Hang);
    let wd = bed.start("b", &bed.conf("b"));
    refused_twice(&bed, &wd, "egress_timeout").await;
    checkip.set(Reply::ok(&egress_ip(1)));
    wd.wait_event(T, "eip_claimed").await;
    assert_eq!(bed.world.holder().await.as_deref(), Some("b"));
    assert_eq!(bed.world.alerts(Duration::from_secs(2)).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_claim_while_the_local_haproxy_is_down() {
    let mut bed = Bed::new(&["a", "b"], Some("a"), &[]).await;
    bed.target.set(Reply::Status(503, "down".into()));
    bed.haproxy.get_mut("b").unwrap().stop();
    let wd = bed.start("b", &bed.conf("b"));
    refused_twice(&bed, &wd, "local_haproxy_unhealthy").await;
    assert!(
        bed.world.moto.watchdog_mutations().is_empty(),
        "refused before any mutation"
    );
    // Its HAProxy comes back while the EIP is still down: now it claims.
    bed.haproxy.get_mut("b").unwrap().restart().await;
    wd.wait_event(T, "eip_claimed").await;
    assert_eq!(bed.world.holder().await.as_deref(), Some("b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eip_already_ours_makes_no_mutation() {
    let bed = Bed::new(&["a", "b"], Some("b"), &[]).await;
    bed.target.set(Reply::Status(503, "down".into()));
    // The endpoint comes from [aws] endpoint_url this time; the environment's is a dead port.
    let mut conf = bed.conf("b");
    conf.aws_endpoint = Some(bed.world.moto.url.clone());
    let mut env = bed.env("b");
    env.aws_endpoint = format!("http://127.0.0.1:{}", testkit::free_port());
    let wd = testkit::watchdog::Watchdog::start("b", &env, &conf.toml(), &[]);
    let noop = wd.wait_event(T, "action_noop").await;
    assert!(
        noop["detail"]
            .as_str()
            .unwrap()
            .contains("already on this node"),
        "{noop}"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let calls = bed.world.moto.watchdog_actions();
    assert_eq!(
        calls,
        ["DescribeAddresses", "DescribeAddresses"],
        "reads only (owner noted, then checked), no alert"
    );
    assert!(bed.world.alerts(Duration::from_secs(1)).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_check_moves_the_eip_at_most_once_per_hold_down() {
    let bed = Bed::new(&["a", "b"], Some("a"), &[]).await;
    let b = bed.world.node("b").clone();
    let down = || Reply::Status(503, "down".into());
    // Down three times, up once, forever: with fail_after 2 / recover_after 1 the rule flaps.
    // (A claim looks at the target twice, its last look's first run and a fresh one, and
    // refuses if either passes: down, down, up repeated would be up at one of every claim's
    // looks, and the rule would never claim at all.)
    let flaps: Vec<Reply> = (0..200)
        .flat_map(|_| [down(), down(), down(), Reply::ok("ok")])
        .collect();
    bed.target.script(flaps);
    let mut conf = bed.conf("b");
    conf.fail_after = 2;
    let wd = bed.start("b", &conf);
    wd.wait_event(T, "eip_claimed").await;
    // Someone moves it back to a; the rule keeps flapping.
    bed.world.associate("a").await;
    eventually(T, "a refusal for hold-down", || async {
        (wd.events("action_refused")
            .iter()
            .any(|e| e["reason"] == "hold_down"))
        .then_some(())
    })
    .await;
    assert!(wd.count("rule_failed") >= 2, "the rule flapped");
    let onto_b: Vec<_> = bed
        .world
        .moto
        .watchdog_calls("AssociateAddress")
        .into_iter()
        .filter(|r| r.params["NetworkInterfaceId"] == b.eni)
        .collect();
    assert_eq!(onto_b.len(), 1, "one move per hold-down window");
    assert_eq!(bed.world.holder().await.as_deref(), Some("a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_private_ip_is_claimed_as_configured() {
    let bed = Bed::new(&["a", "b"], Some("a"), &["b"]).await;
    let b = bed.world.node("b").clone();
    let secondary = b.secondary_ips[0];
    bed.target.set(Reply::Status(503, "down".into()));
    let mut conf = bed.conf("b");
    conf.private_ip = Some(secondary.to_string());
    let wd = bed.start("b", &conf);
    wd.wait_event(T, "eip_claimed").await;
    let assoc = bed.world.moto.watchdog_calls("AssociateAddress");
    assert_eq!(assoc.len(), 1);
    // moto does not report PrivateIpAddress back; assert what was sent.
    assert_eq!(assoc[0].params["PrivateIpAddress"], secondary.to_string());
    assert_eq!(assoc[0].params["NetworkInterfaceId"], b.eni);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sns_outage_never_delays_or_undoes_the_claim() {
    let bed = Bed::new(&["a", "b"], Some("a"), &[]).await;
    bed.target.set(Reply::Status(503, "down".into()));
    let b = bed.world.node("b").clone();
    let mut conf = bed.conf("b");
    conf.topic_arn = Some("arn:aws:sns:us-east-1:123456789012:no-such-topic".into());
    // Identity from [node] this time: instance metadata is never asked.
    conf.identity = Some((
        b.instance_id.clone(),
        b.eni.clone(),
        b.private_ip.to_string(),
    ));
    let wd = bed.start("b", &conf);
    wd.wait_event(T, "eip_claimed").await;
    assert_eq!(bed.world.holder().await.as_deref(), Some("b"));
    assert_eq!(
        bed.imds["b"]
            .reads
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    // The publish fails and is retried in the background (1 s, 2 s, ...).
    eventually(T, "a retried alert", || async {
        (wd.count("alert_failed") >= 2).then_some(())
    })
    .await;
    assert_eq!(wd.count("alert_sent"), 0);
    assert_eq!(
        bed.world.holder().await.as_deref(),
        Some("b"),
        "the claim stands"
    );
    let failed = &wd.events("alert_failed")[0];
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("sns:Publish failed: NotFound"),
        "{failed}"
    );
}

async fn race(initial_holder: Option<&str>, expected_code: &str) {
    // a and b both see the EIP fail at the same moment. Their checkip answers are held until
    // both have asked, so both read the same association before either acts: a genuine race,
    // settled by EC2.
    let bed = Bed::new(&["a", "b", "c"], initial_holder, &[]).await;
    let ports: HashMap<String, u16> = ["a", "b"]
        .iter()
        .map(|n| (bed.world.node(n).eni.clone(), bed.haproxy[*n].port))
        .collect();
    let edge = Edge::start(&bed.world, ports).await;
    let gate = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    let mut confs = Vec::new();
    for (i, n) in ["a", "b"].into_iter().enumerate() {
        bed.checkip[n].set(Reply::Gate(gate.clone(), egress_ip(i)));
        let mut c = bed.conf(n);
        c.target = edge.url();
        c.fail_after = 2;
        c.egress_timeout = "10s";
        confs.push((n, c));
    }
    let wds: Vec<_> = confs.iter().map(|(n, c)| bed.start(n, c)).collect();
    let holder = eventually(T, "a new holder", || async {
        let h = bed.world.holder().await;
        h.filter(|h| h != "c")
    })
    .await;
    // The loser lost in EC2 itself, not to the re-check: both had read the same state.
    let lost = eventually(T, "the loser's refusal", || async {
        wds.iter()
            .flat_map(|w| w.events("action_refused"))
            .find(|e| e["reason"] == "lost_race")
    })
    .await;
    assert!(
        lost["detail"].as_str().unwrap().contains(expected_code),
        "{lost}"
    );
    // A few more cycles: it stays put.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        bed.world.holder().await.as_deref(),
        Some(holder.as_str()),
        "the EIP stays with the winner"
    );
    let claims: usize = wds.iter().map(|w| w.count("eip_claimed")).sum();
    assert_eq!(claims, 1, "exactly one winner");
    let winner = wds.iter().find(|w| w.count("eip_claimed") == 1).unwrap();
    assert_eq!(winner.name, holder);
    assert_eq!(
        bed.world.alerts(Duration::from_secs(2)).await.len(),
        1,
        "one alert"
    );
    // Traffic through the EIP reaches the winner's HAProxy.
    let body = reqwest::get(edge.url())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body.trim(), holder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_racing_for_a_dead_nodes_eip_produce_exactly_one_winner() {
    // c held it and is dead: the second release of c's association fails.
    race(Some("c"), "InvalidAssociationID.NotFound").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_racing_for_an_unassociated_eip_produce_exactly_one_winner() {
    // Nobody held it: the second associate (AllowReassociation=false) fails.
    race(None, "Resource.AlreadyAssociated").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_by_another_node_during_our_failure_streak_is_left_alone() {
    // b's checks start failing while c holds the EIP; before b's rule fails, a takes it over.
    // b must not move it again: its failures were about c.
    let bed = Bed::new(&["a", "b", "c"], Some("c"), &[]).await;
    bed.target.set(Reply::Status(503, "down".into()));
    let mut conf = bed.conf("b");
    conf.fail_after = 6;
    let wd = bed.start("b", &conf);
    eventually(T, "the owner noted at the first failure", || async {
        (!bed
            .world
            .moto
            .watchdog_calls("DescribeAddresses")
            .is_empty())
        .then_some(())
    })
    .await;
    assert_eq!(wd.count("rule_failed"), 0);
    bed.world.associate("a").await;
    let refused = wd
        .wait_for(T, "moved_meanwhile", |e| {
            e["event"] == "action_refused" && e["reason"] == "moved_meanwhile"
        })
        .await;
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("another node took over"),
        "{refused}"
    );
    assert!(bed.world.moto.watchdog_mutations().is_empty());
    assert_eq!(bed.world.holder().await.as_deref(), Some("a"));
    // The refusal starts a hold-down: later cycles do not try again.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let later: Vec<_> = wd.events("action_refused").into_iter().skip(1).collect();
    assert!(!later.is_empty(), "the claim was retried on later cycles");
    assert!(
        later.iter().all(|e| e["reason"] == "hold_down"),
        "{later:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_after_a_claim_leaves_the_hold_down_and_sends_no_alert_twice() {
    use testkit::watchdog::Watchdog;
    let bed = Bed::new(&["a", "b"], Some("a"), &[]).await;
    bed.target.set(Reply::Status(503, "down".into()));
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_str().unwrap().to_owned();
    let conf = bed.conf("b").toml();
    let wd = Watchdog::start("b", &bed.env("b"), &conf, &["--state-dir", &dir]);
    wd.wait_event(T, "eip_claimed").await;
    wd.wait_event(T, "alert_sent").await;
    wd.signal("KILL");
    let saved = std::fs::read_to_string(state.path().join("state.json")).unwrap();
    assert!(saved.contains(&bed.world.eip.to_string()), "{saved}");

    // The EIP goes back to a while b is down. The restarted daemon finds its rule as it left
    // it (down, its claim done): the same outage, nothing to do. When the rule recovers and
    // fails again, it is within the hold-down it saved, and a holds the EIP: it leaves it.
    bed.world.associate("a").await;
    let wd = Watchdog::start("b", &bed.env("b"), &conf, &["--state-dir", &dir]);
    wd.wait_event(T, "rule_states_restored").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(wd.count("rule_failed"), 0, "the same outage");
    bed.target.set(Reply::ok("ok"));
    wd.wait_event(T, "rule_recovered").await;
    bed.target.set(Reply::Status(503, "down".into()));
    wd.wait_for(T, "a claim refused by the saved hold-down", |e| {
        e["event"] == "action_refused" && e["reason"] == "hold_down"
    })
    .await;
    assert_eq!(wd.count("hold_down_skipped"), 0, "a holds the EIP");
    assert_eq!(bed.world.moto.watchdog_calls("AssociateAddress").len(), 1);
    assert_eq!(bed.world.holder().await.as_deref(), Some("a"));
    let alerts = bed.world.alerts(Duration::from_secs(2)).await;
    assert_eq!(alerts.len(), 1, "one claim, one alert: {alerts:?}");
    let (code, _) = wd.stop().await;
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_in_the_middle_of_a_claim_ends_with_one_owner_one_alert_and_no_stale_release() {
    use testkit::awsproxy::{AwsProxy, Fault};
    use testkit::watchdog::{Env, Watchdog};
    let bed = Bed::new(&["a", "b"], Some("a"), &[]).await;
    bed.target.set(Reply::Status(503, "down".into()));
    // EC2 through a proxy that holds the release of the EIP for 3 s: the claim is then
    // between its first mutating call and the association when the process is killed.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (proxy, _task) = AwsProxy::start(listener, bed.world.moto.url.clone());
    proxy.inject(
        "DisassociateAddress",
        Fault::Delay(Duration::from_secs(3)),
        1,
    );
    let env = Env {
        aws_endpoint: proxy.url(),
        imds_endpoint: bed.imds["b"].endpoint(),
    };
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_str().unwrap().to_owned();
    let conf = bed.conf("b").toml();
    let wd = Watchdog::start("b", &env, &conf, &["--state-dir", &dir]);
    eventually(T, "the release of the EIP under way", || async {
        (proxy.count("DisassociateAddress").0 > 0).then_some(())
    })
    .await;
    wd.signal("KILL");

    let wd = Watchdog::start("b", &env, &conf, &["--state-dir", &dir]);
    // The restart finds `a` still holding the EIP (the held release has not reached EC2):
    // nothing moved, so no hold-down keeps the address on the failed node; the claim is made
    // again at once. The held release may still reach EC2 later; it names the association
    // `a` had, so it can never release the one the new claim made.
    wd.wait_event(T, "eip_claimed").await;
    tokio::time::sleep(Duration::from_secs(4)).await; // past the held release
    assert_eq!(bed.world.holder().await.as_deref(), Some("b"));
    assert_eq!(proxy.count("AssociateAddress").0, 1, "one association");
    let released: BTreeSet<String> = bed
        .world
        .moto
        .watchdog_calls("DisassociateAddress")
        .iter()
        .filter_map(|r| r.params.get("AssociationId").cloned())
        .collect();
    assert_eq!(
        released.len(),
        1,
        "only a's association was ever released: {released:?}"
    );
    let alerts = bed.world.alerts(Duration::from_secs(1)).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let (code, _) = wd.stop().await;
    assert_eq!(code, Some(0));
}
