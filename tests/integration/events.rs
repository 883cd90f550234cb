//! Event-driven Auto Scaling membership: moto's Auto Scaling, EC2 and SQS (with the
//! terminating lifecycle hooks `moto_lifecycle.py` adds), real HAProxy 2.6, and the events a
//! test puts on the node's queue in the shapes EventBridge delivers
//! (`tests/fixtures/events/`, sources in its README).

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use testkit::asg::{event, Group, Queue};
use testkit::lb::{self, addrs, Backends, Lb};
use testkit::moto::lifecycle_token;
use testkit::watchdog::{Env, Watchdog};
use testkit::{eventually, free_port, load};

const WITHIN: Duration = Duration::from_secs(15);
/// The issue's bound from an event on the queue to HAProxy serving the change.
const ONE_SECOND: Duration = Duration::from_secs(1);

/// A backend_sync rule for `app` fed by `queue`; `interval` is the resync (None: the
/// default) and `source` adds keys to the source table.
fn rule(lb: &Lb, q: &Queue, port: u16, interval: Option<&str>, source: &str) -> String {
    let interval = interval.map_or(String::new(), |i| format!("interval = \"{i}\"\n"));
    format!(
        r#"
[rules.app]
{interval}timeout = "2s"
fail_after = 2
recover_after = 1

[rules.app.check]
type = "backend_sync"
backend = "app"
port = {port}
stats_socket = "{}"
haproxy_config = "{}"
haproxy_bin = "{}"
server_options = ""
reload = {{ master_socket = "{}", window = "1s" }}

[rules.app.check.source]
type = "asg"
group = "web"
events_queue = "{}"
{source}
"#,
        lb.socket.display(),
        lb.config.display(),
        testkit::haproxy_bin(),
        lb.master.display(),
        q.url
    )
}

/// How long until HAProxy serves exactly `want` (polled every 10 ms, for at most 5 s).
async fn follows(lb: &Lb, want: &BTreeSet<SocketAddr>, since: Instant) -> Duration {
    loop {
        if lb.serving().await.as_ref() == Some(want) {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "HAProxy serves {:?}, wanted {want:?}",
            lb.serving().await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Two InService instances, node-a's queue, a HAProxy with 6 slots, and a watchdog following
/// the group (`interval`: the resync), converged on the group.
async fn following(interval: Option<&str>) -> (Group, Queue, Lb, Watchdog) {
    let group = Group::start_in("web", 2, Some(())).await;
    let q = group.queue("node-a").await;
    let lb = Lb::start(&lb::block(6, 8080)).await;
    let wd = Watchdog::start(
        "lb",
        &Env::aws_only(&group.moto.url),
        &rule(&lb, &q, 8080, interval, ""),
        &[],
    );
    lb.converges(&addrs(group.serving_ips().await, 8080), "first sync")
        .await;
    (group, q, lb, wd)
}

async fn new_instance(g: &Group, before: &[String]) -> String {
    g.instance_ids()
        .await
        .into_iter()
        .find(|i| !before.contains(i))
        .expect("a new instance")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_move_haproxy_within_a_second_and_are_only_hints() {
    // A 10-minute resync: within this test only the events can move HAProxy.
    let (group, q, lb, wd) = following(Some("10m")).await;

    // Scale out: the instance is InService, then its Launch Successful event arrives.
    let before = group.instance_ids().await;
    group.set_capacity(3).await;
    let new = new_instance(&group, &before).await;
    let want = addrs(group.serving_ips().await, 8080);
    assert_eq!(want.len(), 3);
    let sent = Instant::now();
    q.send(&event("launch-successful.json", "web", &new)).await;
    let took = follows(&lb, &want, sent).await;
    assert!(took < ONE_SECOND, "scale out took {took:?}\n{}", wd.log());
    eprintln!("scale out followed in {took:?}");

    // Scale in (no hook): EC2's state change comes first, then Auto Scaling's own event,
    // which is a duplicate by then.
    group.terminate(&new, true).await;
    let want = addrs(group.serving_ips().await, 8080);
    assert_eq!(want.len(), 2);
    let sent = Instant::now();
    q.send(&event("state-change-terminated.json", "web", &new))
        .await;
    let took = follows(&lb, &want, sent).await;
    assert!(took < ONE_SECOND, "scale in took {took:?}\n{}", wd.log());
    eprintln!("scale in followed in {took:?}");
    q.send(&event("terminate-successful.json", "web", &new))
        .await;

    // Out of order: an instance's launch event after its termination event; a launch event
    // repeated for a serving instance; another group's event; a message that is no event.
    let before = group.instance_ids().await;
    group.set_capacity(3).await;
    let late = new_instance(&group, &before).await;
    let late_ip = group.private_ip(&late).await;
    group.terminate(&late, true).await;
    q.send(&event("terminate-successful.json", "web", &late))
        .await;
    q.send(&event("launch-successful.json", "web", &late)).await;
    q.send(&event("launch-successful.json", "web", &before[0]))
        .await;
    q.send(&event("launch-successful.json", "other", &late))
        .await;
    q.send("{\"not\": \"an event\"").await;
    eventually(WITHIN, "every message handled and deleted", || async {
        (q.left().await == 0).then_some(())
    })
    .await;
    wd.wait_event(WITHIN, "membership_event_unreadable").await;
    // Give a wrong reading a moment to show in HAProxy.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let want = addrs(group.serving_ips().await, 8080);
    assert_eq!(lb.serving().await, Some(want.clone()), "{}", wd.log());
    assert!(!lb
        .serving()
        .await
        .unwrap()
        .contains(&SocketAddr::from((late_ip, 8080))));
    assert_eq!(lb.file_serving(), want);

    // One resync at start; events cost only the lookups of launched instances.
    assert_eq!(
        group.moto.watchdog_calls("DescribeAutoScalingGroups").len(),
        1
    );
    let actions: BTreeSet<String> = group.moto.watchdog_actions().into_iter().collect();
    let expected: BTreeSet<String> = [
        "DescribeAutoScalingGroups",
        "DescribeInstances",
        "ReceiveMessage",
        "DeleteMessageBatch",
    ]
    .map(String::from)
    .into();
    assert_eq!(actions, expected);
    drop(wd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_events_are_made_good_by_the_resync() {
    let (group, _q, lb, wd) = following(Some("2s")).await;

    // No event at all for a scale-out and a termination.
    group.set_capacity(4).await;
    let ids = group.instance_ids().await;
    group.terminate(&ids[0], true).await;
    let want = addrs(group.serving_ips().await, 8080);
    assert_eq!(want.len(), 3);
    lb.converges(&want, "after the resync").await;
    assert!(group.moto.watchdog_calls("DescribeAutoScalingGroups").len() >= 2);
    drop(wd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_in_under_load_completes_the_lifecycle_action_only_after_the_drain() {
    let group = Group::start_in("web", 3, Some(())).await;
    group.add_terminating_hook("drain").await;
    let q = group.queue("node-a").await;
    let ids = group.instance_ids().await;
    let victim = ids[0].clone();
    let victim_ip = group.private_ip(&victim).await;
    let ips: Vec<Ipv4Addr> = group.serving_ips().await.into_iter().collect();
    let port = free_port();
    // The leaving instance answers slowly, so requests are in flight on it when the drain
    // starts: completing the action (and so killing it, with its open connections) too
    // early would fail them.
    let mut backends = Backends::start_on(&ips, port, |ip| {
        if ip == victim_ip {
            Duration::from_millis(3000)
        } else {
            Duration::ZERO
        }
    })
    .await;
    let lb = Lb::start(&lb::block(6, port)).await;
    let wd = Watchdog::start(
        "lb",
        &Env::aws_only(&group.moto.url),
        &rule(
            &lb,
            &q,
            port,
            Some("10m"),
            "lifecycle_hook = \"drain\"\ndrain_timeout = \"30s\"\nheartbeat_interval = \"1s\"\n",
        ),
        &[],
    );
    lb.converges(&addrs(ips.clone(), port), "first sync").await;

    // Every connection soon waits on the slow server (the others answer at once); the
    // termination comes while they do, so the drain lasts about two seconds.
    let wrk = load::start(&lb.url(), 8, Duration::from_secs(10));
    tokio::time::sleep(Duration::from_secs(1)).await;
    group.terminate(&victim, true).await;
    assert_eq!(
        group.in_state("Terminating:Wait").await,
        vec![victim.clone()]
    );
    let token = lifecycle_token(&victim);
    q.send(
        &event("terminate-lifecycle-action.json", "web", &victim)
            .replace("87654321-4321-4321-4321-210987654321", &token),
    )
    .await;

    // The instance terminates the moment its action is completed.
    let done = eventually(
        Duration::from_secs(40),
        "the lifecycle action completed",
        || async { group.moto.lifecycle().await.completions.first().cloned() },
    )
    .await;
    assert!(backends.kill(victim_ip));
    let result = wrk.await.expect("wrk");
    assert!(result.requests > 100, "{}", result.text);
    assert_eq!(result.failed(), 0, "{}\n{}", result.text, wd.log());

    assert_eq!(
        (
            done.group.as_str(),
            done.hook.as_str(),
            done.instance.as_str()
        ),
        ("web", "drain", victim.as_str())
    );
    assert_eq!(done.token.as_deref(), Some(token.as_str()));
    // Drained first: the log says so before the completion, and the drain took the slow
    // requests' time, with heartbeats meanwhile.
    let drained = wd.wait_event(WITHIN, "drain_finished").await;
    assert_eq!(drained["instance"], victim.as_str());
    eprintln!("drained in {}", drained["waited"]);
    let log = wd.log();
    let (d, c) = (
        log.find("\"drain_finished\"").expect("drain_finished"),
        log.find("\"lifecycle_completed\"")
            .expect("lifecycle_completed"),
    );
    assert!(d < c, "completed before the drain finished:\n{log}");
    assert_eq!(wd.count("drain_timed_out"), 0);
    let beats = group.moto.lifecycle().await.heartbeats;
    assert!(
        beats.iter().any(|b| b.instance == victim && b.at < done.at),
        "no heartbeat while draining: {beats:?}"
    );
    // The group and HAProxy agree: the instance is gone.
    assert!(!group.instance_ids().await.contains(&victim));
    lb.converges(&addrs(group.serving_ips().await, port), "after scale-in")
        .await;
    drop(wd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_section_follows_the_group_of_haproxy_nodes() {
    let group = Group::start_in("web", 2, Some(())).await;
    let q = group.queue("node-a").await;
    let ids = group.instance_ids().await;
    let peer_port = free_port();
    let lb = Lb::start(&lb::block(2, 8080)).await;
    // This node is the group's first instance: HAProxy's local peer.
    let text = std::fs::read_to_string(&lb.config)
        .unwrap()
        .replacen("global\n", &format!("global\n  localpeer {}\n", ids[0]), 1)
        + "peers mesh\n  # BEGIN haproxy-watchdog peers of mesh\n  # END haproxy-watchdog peers of mesh\n";
    std::fs::write(&lb.config, text).unwrap();
    lb.reload().await;
    // This node's own address for its own peer line (no instance metadata here).
    let node = format!(
        "[node]\ninstance_id = \"{}\"\nnetwork_interface_id = \"eni-0000000000000000a\"\nprivate_ip = \"{}\"\n",
        ids[0],
        group.private_ip(&ids[0]).await
    );
    let toml = node
        + &rule(&lb, &q, peer_port, Some("10m"), "")
            .replace("backend = \"app\"", "apply = \"peers\"\npeers = \"mesh\"")
            .replace("server_options = \"\"\n", "");
    let wd = Watchdog::start("lb", &Env::aws_only(&group.moto.url), &toml, &[]);

    let peers = |ids: Vec<String>| async {
        let mut lines = Vec::new();
        for id in ids {
            lines.push(format!(
                "peer {id} {}:{peer_port}",
                group.private_ip(&id).await
            ));
        }
        lines.sort();
        lines
    };
    let block = || {
        let text = std::fs::read_to_string(&lb.config).unwrap();
        let mut lines: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("peer "))
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    };
    let want = peers(group.instance_ids().await).await;
    eventually(WITHIN, "the first peers", || async {
        (block() == want).then_some(())
    })
    .await;
    let pid = lb.worker_pid().await;

    let before = group.instance_ids().await;
    group.set_capacity(3).await;
    let new = new_instance(&group, &before).await;
    q.send(&event("launch-successful.json", "web", &new)).await;
    let want = peers(group.instance_ids().await).await;
    assert_eq!(want.len(), 3);
    eventually(WITHIN, "the new peer", || async {
        (block() == want).then_some(())
    })
    .await;
    // Reloaded, and the running HAProxy knows the new peer.
    eventually(WITHIN, "a reloaded HAProxy with the new peer", || async {
        let shown = haproxy_watchdog::haproxy::socket::command(&lb.socket, "show peers")
            .await
            .ok()?;
        (lb.worker_pid().await != pid && shown.contains(&new)).then_some(())
    })
    .await;

    group.terminate(&new, true).await;
    q.send(&event("terminate-successful.json", "web", &new))
        .await;
    let want = peers(group.instance_ids().await).await;
    assert_eq!(want.len(), 2);
    eventually(WITHIN, "the peer removed", || async {
        (block() == want).then_some(())
    })
    .await;
    drop(wd);
}

/// The budget: with events, a steady minute costs the long polls and at most one Auto
/// Scaling or EC2 call (none with the 5-minute resync), and nothing that changes anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_minute_costs_at_most_one_auto_scaling_or_ec2_call() {
    let group = Group::start_in("web", 2, Some(())).await;
    let q = group.queue("node-a").await;
    let lb = Lb::start(&lb::block(4, 8080)).await;
    let wd = Watchdog::start(
        "lb",
        &Env::aws_only(&group.moto.url),
        &rule(&lb, &q, 8080, None, ""),
        &[],
    );
    let want = addrs(group.serving_ips().await, 8080);
    lb.converges(&want, "first sync").await;

    let start = group.moto.watchdog_requests().len();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let minute: Vec<String> = group.moto.watchdog_requests()[start..]
        .iter()
        .map(|r| r.action.clone())
        .collect();
    let polls = minute.iter().filter(|a| *a == "ReceiveMessage").count();
    let reads = minute
        .iter()
        .filter(|a| {
            matches!(
                a.as_str(),
                "DescribeAutoScalingGroups" | "DescribeInstances"
            )
        })
        .count();
    eprintln!("steady minute: {polls} ReceiveMessage, {reads} Auto Scaling/EC2 reads: {minute:?}");
    assert!(reads <= 1, "{minute:?}");
    assert!((2..=4).contains(&polls), "20 s long polls: {minute:?}");
    assert_eq!(polls + reads, minute.len(), "nothing else: {minute:?}");
    assert_eq!(lb.serving().await, Some(want));
    drop(wd);
}

/// Breaker's find: a launch event for an instance EC2 does not know failed the whole
/// `DescribeInstances` lookup (`InvalidInstanceID.NotFound`), and so the rule, round after
/// round until the next resync; a real new instance in the same lookup waited with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_event_for_an_instance_ec2_does_not_know_fails_nothing() {
    let (group, q, lb, wd) = following(Some("10m")).await;
    let before = group.instance_ids().await;
    group.set_capacity(3).await;
    let new = new_instance(&group, &before).await;
    let want = addrs(group.serving_ips().await, 8080);
    // The unknown instance's event first, the real one's after it: one lookup, or two.
    q.send(&event(
        "launch-successful.json",
        "web",
        "i-0123456789abcdef0",
    ))
    .await;
    let sent = Instant::now();
    q.send(&event("launch-successful.json", "web", &new)).await;
    let took = follows(&lb, &want, sent).await;
    assert!(took < ONE_SECOND, "scale out took {took:?}\n{}", wd.log());
    let unknown = wd.wait_event(WITHIN, "instance_unknown").await;
    assert_eq!(unknown["instance"], "i-0123456789abcdef0", "{unknown}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(wd.count("backend_sync_failed"), 0, "{}", wd.log());
    assert_eq!(lb.serving().await, Some(want));
}

/// A queue that also carries another group's events: the rule deletes them (it deletes all it
/// reads), and used to say nothing, so the other group's reader lost events without a trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_groups_event_is_deleted_with_a_warning_once_and_changes_nothing() {
    let (group, q, lb, wd) = following(Some("10m")).await;
    let want = addrs(group.serving_ips().await, 8080);
    let others = ["i-0aaaaaaaaaaaaaaa1", "i-0aaaaaaaaaaaaaaa2"];
    for i in others {
        q.send(&event("launch-successful.json", "api", i)).await;
    }
    testkit::eventually(WITHIN, "both of api's events logged", || async {
        (wd.count("membership_event_other_group") == 2).then_some(())
    })
    .await;
    let seen = wd.events("membership_event_other_group");
    let levels: Vec<_> = seen.iter().map(|e| e["level"].clone()).collect();
    assert_eq!(levels, ["WARN", "DEBUG"], "{}", wd.log());
    for (e, i) in seen.iter().zip(others) {
        assert_eq!(
            (&e["group"], &e["follows"], &e["instance"]),
            (&"api".into(), &"web".into(), &i.into()),
            "{e}"
        );
    }
    // Nothing of the rule's own group changed, and the round did not fail.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(lb.serving().await, Some(want));
    assert_eq!(wd.count("backend_sync_failed"), 0, "{}", wd.log());
    assert_eq!(wd.count("instance_unknown"), 0, "{}", wd.log());
}

/// The Auto Scaling side of breaker 3's find (a change at the source waited out a failing
/// rule's backoff): an event that arrives while the rule's rewrites keep failing reaches
/// HAProxy's live state at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_reaches_haproxy_while_the_rule_keeps_failing() {
    let group = Group::start_in("web", 2, Some(())).await;
    let q = group.queue("node-a").await;
    let lb = Lb::start(&lb::block(6, 8080)).await;
    let dir = tempfile::tempdir().unwrap();
    let refuses = testkit::haproxy_refusing_checks(dir.path());
    let toml = rule(&lb, &q, 8080, Some("10m"), "").replace(
        &format!("haproxy_bin = \"{}\"", testkit::haproxy_bin()),
        &format!("haproxy_bin = \"{}\"", refuses.display()),
    );
    assert!(toml.contains("haproxy-refuses-check"), "{toml}");
    let wd = Watchdog::start("lb", &Env::aws_only(&group.moto.url), &toml, &[]);
    // Live only: the file is never rewritten.
    let first = addrs(group.serving_ips().await, 8080);
    testkit::eventually(WITHIN, "HAProxy serves the group", || async {
        (lb.serving().await? == first).then_some(())
    })
    .await;
    wd.wait_event(WITHIN, "backend_sync_failed").await;
    // A few failed rounds: the backoff has grown past its first seconds.
    tokio::time::sleep(Duration::from_secs(4)).await;

    let before = group.instance_ids().await;
    group.set_capacity(3).await;
    let new = new_instance(&group, &before).await;
    let want = addrs(group.serving_ips().await, 8080);
    let sent = Instant::now();
    q.send(&event("launch-successful.json", "web", &new)).await;
    let took = follows(&lb, &want, sent).await;
    assert!(took < ONE_SECOND, "the event took {took:?}\n{}", wd.log());
    assert!(wd.count("backend_sync_failed") >= 2, "{}", wd.log());
}

/// SIGHUP, and wait until the configuration is reloaded.
async fn reload(wd: &Watchdog, what: &str) {
    let reloaded = wd.count("config_reloaded");
    wd.signal("HUP");
    eventually(WITHIN, what, || async {
        (wd.count("config_reloaded") > reloaded).then_some(())
    })
    .await;
}

/// Breaker 4's open find: a reload ended the events queue's long poll with its generation,
/// and a message SQS had handed to the abandoned poll (or one received and not yet applied)
/// came back only after the queue's visibility timeout, 30 s. The receiver is now the
/// daemon's, kept across reloads (`sync::queues`), and so is what the events taught the
/// membership (an event outweighs a resync for 60 s) and when the resync is due: breaker 7
/// found a reload, or a new queue or hook, bringing back a server an event took out, and
/// every SIGHUP costing a resync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_queues_long_poll_and_what_its_events_said() {
    let (group, q, lb, wd) = following(Some("10m")).await;
    let polls = || group.moto.watchdog_calls("ReceiveMessage").len();
    let resyncs = || group.moto.watchdog_calls("DescribeAutoScalingGroups").len();

    // A storm of reloads goes on with the one long poll (SQS ends it after 20 s of quiet),
    // and the resync stays when it was due (10 minutes from the start).
    let polls_before = polls();
    let resyncs_before = resyncs();
    let reloaded_before = wd.count("config_reloaded");
    for _ in 0..12 {
        wd.signal("HUP");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    eventually(WITHIN, "the storm's reloads", || async {
        (wd.count("config_reloaded") >= reloaded_before + 3).then_some(())
    })
    .await;
    let new_polls = polls() - polls_before;
    assert!(
        new_polls <= 1,
        "{new_polls} ReceiveMessage calls during {} reloads\n{}",
        wd.count("config_reloaded") - reloaded_before,
        wd.log()
    );
    assert_eq!(resyncs(), resyncs_before, "a reload resynced\n{}", wd.log());

    // An event sent as a reload starts reaches HAProxy at once. It says an instance the group
    // still lists InService terminated: each reload's first round resyncs, so only the
    // event can take it out, and only what the event taught keeps it out.
    let serving = addrs(group.serving_ips().await, 8080);
    let gone = group.instance_ids().await[0].clone();
    let gone_at = SocketAddr::from((group.private_ip(&gone).await, 8080));
    let want: BTreeSet<SocketAddr> = serving.iter().copied().filter(|a| *a != gone_at).collect();
    assert_eq!(want.len(), serving.len() - 1);
    let sent = Instant::now();
    q.send(&event("terminate-successful.json", "web", &gone))
        .await;
    wd.signal("HUP");
    let took = follows(&lb, &want, sent).await;
    eprintln!("the event sent as a reload started followed in {took:?}");
    assert!(
        took < Duration::from_secs(2),
        "the event took {took:?}\n{}",
        wd.log()
    );
    // A reload after it: the new configuration's resync still lists the instance.
    reload(&wd, "the reload after the event").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(lb.serving().await, Some(want.clone()), "{}", wd.log());
    eventually(WITHIN, "the event deleted from the queue", || async {
        (q.left().await == 0).then_some(())
    })
    .await;

    // Nor does a reload onto another queue, with another lifecycle hook.
    let q2 = group.queue("node-b").await;
    let toml = std::fs::read_to_string(wd.config_path()).unwrap();
    assert!(toml.contains(&q.url));
    let toml = toml
        .replace(&q.url, &q2.url)
        .replace("events_queue", "lifecycle_hook = \"drain-b\"\nevents_queue");
    std::fs::write(wd.config_path(), toml).unwrap();
    reload(&wd, "the reload onto queue node-b").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(lb.serving().await, Some(want), "{}", wd.log());
    assert_eq!(resyncs(), resyncs_before, "a reload resynced\n{}", wd.log());

    // A shorter `interval`: the resync the old one had due in ten minutes comes within the
    // new one (breaker 8: it waited out the old, and the round timed out).
    let toml = std::fs::read_to_string(wd.config_path()).unwrap();
    assert!(toml.contains("interval = \"10m\""), "{toml}");
    std::fs::write(
        wd.config_path(),
        toml.replace("interval = \"10m\"", "interval = \"3s\""),
    )
    .unwrap();
    reload(&wd, "the reload to a 3 s interval").await;
    eventually(WITHIN, "a resync within the new interval", || async {
        (resyncs() > resyncs_before).then_some(())
    })
    .await;
    // What breaker 8 saw was a round stuck until its deadline (`timed out after`); another
    // failed round (a HAProxy or moto answer slowed by a loaded machine) is not this fault.
    let log = wd.log();
    let stuck: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"event\":\"check_failed\"") && l.contains("timed out after"))
        .collect();
    assert!(
        stuck.is_empty(),
        "a round ran to its deadline: {stuck:#?}\n{log}"
    );
}
