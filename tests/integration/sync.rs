//! Backend sync against real HAProxy 2.6 (master-worker, on loopback), a Consul stand-in and
//! moto's Auto Scaling: HAProxy's live servers and the file on disk end equal to the source.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;
use testkit::asg::Group;
use testkit::consul::{instances, Consul, Instance};
use testkit::lb::{self, Backends, Lb};
use testkit::watchdog::{Env, Watchdog};
use testkit::{eventually, load};

const WITHIN: Duration = Duration::from_secs(15);

/// A backend_sync rule for backend `app` of `lb`; `check` adds keys to its check table and
/// `source` is the source table's body.
pub(crate) fn rule(lb: &Lb, check: &str, source: &str) -> String {
    format!(
        r#"
[rules.app]
interval = "5s"
fail_after = 2
recover_after = 1

[rules.app.check]
type = "backend_sync"
backend = "app"
stats_socket = "{}"
haproxy_config = "{}"
haproxy_bin = "{}"
server_options = "check inter 500ms"
reload = {{ master_socket = "{}", window = "1s" }}
{check}

[rules.app.check.source]
{source}
"#,
        lb.socket.display(),
        lb.config.display(),
        testkit::haproxy_bin(),
        lb.master.display()
    )
}

pub(crate) async fn slot_of(lb: &Lb, addr: SocketAddr) -> Option<String> {
    let slots =
        haproxy_watchdog::haproxy::runtime::servers(&lb.socket, "app", Duration::from_secs(5))
            .await
            .ok()?;
    slots
        .into_iter()
        .find(|s| s.serving() && s.target.map(|t| SocketAddr::from((t.ip, t.port))) == Some(addr))
        .map(|s| s.name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_mode_follows_scale_out_scale_in_replace_and_bursts() {
    let b = Backends::start(6).await;
    let consul = Consul::start("web", instances(&b, &[0, 1])).await;
    let lb = Lb::start(&lb::block(4, b.port)).await;
    let wd = Watchdog::start("lb", &Env::offline(), &rule(&lb, "", &consul.source()), &[]);

    lb.converges(&b.addrs(&[0, 1]), "first sync").await;
    let pid = lb.worker_pid().await.expect("HAProxy's worker pid");

    consul.set(instances(&b, &[0, 1, 2, 3]));
    lb.converges(&b.addrs(&[0, 1, 2, 3]), "scale out").await;
    let slot3 = slot_of(&lb, b.addr(3)).await.expect("server 3's slot");

    consul.set(instances(&b, &[3]));
    lb.converges(&b.addrs(&[3]), "scale in").await;
    assert_eq!(
        slot_of(&lb, b.addr(3)).await,
        Some(slot3),
        "a server that stays keeps its slot"
    );

    consul.set(instances(&b, &[4]));
    lb.converges(&b.addrs(&[4]), "replace").await;

    // A burst: many changes faster than anyone could reload for.
    let sets: [&[usize]; 6] = [&[0], &[0, 5], &[1, 2, 5], &[2], &[2, 3, 4], &[1, 5]];
    for (k, s) in sets.iter().cycle().take(30).enumerate() {
        consul.set(instances(&b, s));
        tokio::time::sleep(Duration::from_millis(if k % 3 == 0 { 0 } else { 15 })).await;
    }
    lb.converges(&b.addrs(&[1, 5]), "burst").await;
    assert_eq!(
        lb.worker_pid().await,
        Some(pid),
        "runtime mode never reloads while slots last"
    );
    assert_eq!(wd.count("haproxy_reloaded"), 0);

    // The file on disk is what a reload comes back with.
    lb.reload().await;
    assert_eq!(
        lb.serving().await,
        Some(b.addrs(&[1, 5])),
        "after a reload\n{}",
        wd.log()
    );

    // Blocking queries: after the first answer every query waited on Consul's index.
    let (all, blocking) = consul.requests();
    assert!(
        blocking * 10 >= all * 8,
        "{blocking} of {all} requests were blocking queries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_slots_grows_them_with_one_reload() {
    let b = Backends::start(5).await;
    let consul = Consul::start("web", instances(&b, &[0, 1, 2, 3, 4])).await;
    let lb = Lb::start(&lb::block(2, b.port)).await;
    let wd = Watchdog::start(
        "lb",
        &Env::offline(),
        &rule(&lb, "slots = 4", &consul.source()),
        &[],
    );

    lb.converges(&b.addrs(&[0, 1, 2, 3, 4]), "grown").await;
    let e = wd
        .wait_for(WITHIN, "slots_exhausted", |e| {
            e["event"] == "slots_exhausted"
        })
        .await;
    assert_eq!(e["slots"], 2, "{e}");
    // Logged once HAProxy has shown the reload done, which may be after it serves.
    wd.wait_event(WITHIN, "haproxy_reloaded").await;
    assert_eq!(wd.count("haproxy_reloaded"), 1, "{}", wd.log());
    assert!(
        lb.slot_count().await >= 8,
        "grown by half again what was needed"
    );

    // The new slots are ordinary slots from then on.
    consul.set(instances(&b, &[4]));
    lb.converges(&b.addrs(&[4]), "scale in after growth").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_discovery_answers_keep_the_servers() {
    let b = Backends::start(3).await;
    let consul = Consul::start("web", instances(&b, &[0, 1, 2])).await;
    let lb = Lb::start(&lb::block(4, b.port)).await;
    let toml = rule(&lb, "min_servers = 2", &consul.source());
    // A dry run says what it would send and changes nothing.
    let file_before = std::fs::read_to_string(&lb.config).unwrap();
    let wd = Watchdog::start("lb", &Env::offline(), &toml, &["--dry-run"]);
    wd.wait_for(WITHIN, "a dry-run round", |e| {
        e["event"] == "dry_run"
            && e["would"]
                .as_str()
                .unwrap_or("")
                .starts_with("set server app/app")
    })
    .await;
    wd.wait_for(WITHIN, "its summary", |e| {
        e["event"] == "check_passed"
            && e["detail"]
                .as_str()
                .unwrap_or("")
                .contains("dry run: would add 3")
    })
    .await;
    drop(wd);
    assert_eq!(lb.serving().await, Some(BTreeSet::new()));
    assert_eq!(std::fs::read_to_string(&lb.config).unwrap(), file_before);

    let wd = Watchdog::start("lb", &Env::offline(), &toml, &[]);
    let all = b.addrs(&[0, 1, 2]);
    lb.converges(&all, "first sync").await;

    // A round before the outage may have failed on its own (HAProxy 3.0 can show a change a
    // moment after it took it; the round is retried): only what follows the outage counts.
    let before = wd.events("backend_sync_failed").len();
    consul.fail_with(Some((500, "rpc error making call: No cluster leader")));
    wd.wait_for(WITHIN, "rule fails on a Consul outage", |e| {
        e["event"] == "rule_failed"
    })
    .await;
    let failed = wd.events("backend_sync_failed").split_off(before);
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("No cluster leader"),
        "{failed:?}"
    );
    assert_eq!(
        lb.serving().await,
        Some(all.clone()),
        "an outage keeps the servers"
    );

    consul.fail_with(None);
    wd.wait_for(WITHIN, "recovery", |e| e["event"] == "rule_recovered")
        .await;
    consul.set(Vec::new());
    wd.wait_for(WITHIN, "an empty answer refused", |e| {
        e["event"] == "backend_sync_failed"
            && e["error"].as_str().unwrap_or("").contains("no servers")
    })
    .await;
    consul.set(instances(&b, &[2]));
    wd.wait_for(WITHIN, "too few refused", |e| {
        e["event"] == "backend_sync_failed"
            && e["error"]
                .as_str()
                .unwrap_or("")
                .contains("min_servers = 2")
    })
    .await;
    assert_eq!(
        lb.serving().await,
        Some(all.clone()),
        "bad answers keep the servers"
    );
    assert_eq!(lb.file_serving(), all);

    consul.set(instances(&b, &[1, 2]));
    lb.converges(&b.addrs(&[1, 2]), "a good answer again").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gone_stats_socket_is_retried_until_haproxy_is_back() {
    let b = Backends::start(3).await;
    let consul = Consul::start("web", instances(&b, &[0])).await;
    let mut lb = Lb::start(&lb::block(3, b.port)).await;
    let wd = Watchdog::start("lb", &Env::offline(), &rule(&lb, "", &consul.source()), &[]);
    lb.converges(&b.addrs(&[0]), "first sync").await;

    lb.stop();
    consul.set(instances(&b, &[1, 2]));
    eventually(WITHIN, "retries", || async {
        (wd.count("backend_sync_failed") >= 3).then_some(())
    })
    .await;
    let e = &wd.events("backend_sync_failed")[0];
    assert!(e["error"].as_str().unwrap().contains("admin.sock"), "{e}");
    // Backoff: the retries are spaced out, not a busy loop.
    assert!(wd.count("backend_sync_failed") < 10, "{}", wd.log());

    lb.restart().await;
    lb.converges(&b.addrs(&[1, 2]), "after HAProxy is back")
        .await;
    assert!(wd.count("rule_task_crashed") == 0);

    // A frozen HAProxy (it accepts on the socket and never answers) times out, and is
    // retried like a missing one.
    let worker = lb.worker_pid().await.expect("worker pid");
    lb.signal(worker, "-STOP");
    consul.set(instances(&b, &[0]));
    wd.wait_for(WITHIN, "a timed-out stats socket", |e| {
        e["event"] == "backend_sync_failed"
            && e["error"]
                .as_str()
                .unwrap_or("")
                .contains("no answer within")
    })
    .await;
    lb.signal(worker, "-CONT");
    lb.converges(&b.addrs(&[0]), "after HAProxy thaws").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_scaling_group_scale_out_in_replace_and_unhealthy() {
    let group = Group::start("web-asg", 2).await;
    let lb = Lb::start(&lb::block(3, 8080)).await;
    let env = Env::aws_only(&group.moto.url);
    let toml = rule(
        &lb,
        "port = 8080\nserver_options = \"\"",
        "type = \"asg\"\ngroup = \"web-asg\"\n",
    )
    .replace("server_options = \"check inter 500ms\"\n", "")
    .replace("interval = \"5s\"", "interval = \"1s\"\ntimeout = \"1s\"");
    let wd = Watchdog::start("lb", &env, &toml, &[]);

    let want = |ips| lb::addrs(ips, 8080);
    lb.converges(&want(group.serving_ips().await), "first sync")
        .await;
    assert_eq!(lb.serving().await.map(|s| s.len()), Some(2));

    group.set_capacity(5).await;
    lb.converges(&want(group.serving_ips().await), "scale out past the slots")
        .await;
    assert_eq!(lb.serving().await.map(|s| s.len()), Some(5));

    group.set_capacity(1).await;
    lb.converges(&want(group.serving_ips().await), "scale in")
        .await;

    let ids = group.instance_ids().await;
    group.terminate(&ids[0], false).await;
    lb.converges(&want(group.serving_ips().await), "replaced")
        .await;

    group.set_capacity(3).await;
    lb.converges(&want(group.serving_ips().await), "scale out again")
        .await;
    let ids = group.instance_ids().await;
    let sick = SocketAddr::from((group.private_ip(&ids[1]).await, 8080));
    assert!(lb.serving().await.unwrap().contains(&sick));
    group.set_unhealthy(&ids[1]).await;
    let healthy = want(group.serving_ips().await);
    assert!(!healthy.contains(&sick));
    lb.converges(&healthy, "unhealthy instance out").await;
    assert!(!lb.serving().await.unwrap().contains(&sick));

    // Reads only: two calls per poll, nothing that changes AWS.
    let actions = group.moto.watchdog_actions();
    assert!(
        actions
            .iter()
            .all(|a| a == "DescribeAutoScalingGroups" || a == "DescribeInstances"),
        "{actions:?}"
    );
    let groups = group.moto.watchdog_calls("DescribeAutoScalingGroups").len();
    let instances = group.moto.watchdog_calls("DescribeInstances").len();
    assert!(
        groups > 0 && instances <= groups,
        "{groups} group reads, {instances} instance reads"
    );
    drop(wd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_mode_renders_checks_and_coalesces_reloads() {
    let b = Backends::start(6).await;
    let consul = Consul::start("web", instances(&b, &[0, 1])).await;
    let lb = Lb::start("  server seed 127.0.0.1:9 disabled\n").await;
    let template = lb.dir.path().join("haproxy.cfg.j2");
    let text = lb::config_text(&lb.socket, lb.port, "    {{ nodes }}\n");
    std::fs::write(&template, &text).unwrap();
    let check = format!("apply = \"reload\"\ntemplate = \"{}\"", template.display());
    let wd = Watchdog::start(
        "lb",
        &Env::offline(),
        &rule(&lb, &check, &consul.source()),
        &[],
    );

    lb.converges(&b.addrs(&[0, 1]), "first render").await;
    let text_now = std::fs::read_to_string(&lb.config).unwrap();
    assert!(text_now.contains("server app_127.0.0.10_"), "{text_now}");

    let t0 = std::time::Instant::now();
    let reloads_before = wd.count("haproxy_reloaded");
    for s in [
        &[0usize, 1, 2][..],
        &[0, 1, 2, 3],
        &[1, 2, 3],
        &[1, 2, 3, 4],
        &[2, 3, 4, 5],
        &[3, 4, 5],
    ] {
        consul.set(instances(&b, s));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    lb.converges(&b.addrs(&[3, 4, 5]), "burst").await;
    let reloads = wd.count("haproxy_reloaded") - reloads_before;
    let window_bound = t0.elapsed().as_secs_f64().ceil() as usize + 1;
    assert!(
        reloads >= 1 && reloads <= window_bound,
        "{reloads} reloads in {:?} with a 1s window",
        t0.elapsed()
    );

    // A template HAProxy rejects is never installed.
    std::fs::write(
        &template,
        text.replace("balance roundrobin", "balance no-such-algorithm"),
    )
    .unwrap();
    let before = std::fs::read_to_string(&lb.config).unwrap();
    consul.set(instances(&b, &[0]));
    let e = wd
        .wait_for(WITHIN, "a rejected template", |e| {
            e["event"] == "backend_sync_failed"
                && e["error"].as_str().unwrap_or("").contains("rejects")
        })
        .await;
    assert!(e["error"].as_str().unwrap().contains("balance"), "{e}");
    assert_eq!(std::fs::read_to_string(&lb.config).unwrap(), before);
    assert_eq!(lb.serving().await, Some(b.addrs(&[3, 4, 5])));

    std::fs::write(&template, &text).unwrap();
    lb.converges(&b.addrs(&[0]), "a good template again").await;
}

/// Swap one server in and out 200 times under wrk load; returns wrk's result.
async fn changes_under_load(lb: &Lb, consul: &Consul, b: &Backends) -> load::WrkResult {
    let wrk = load::start(&lb.url(), 16, Duration::from_secs(12));
    tokio::time::sleep(Duration::from_millis(500)).await;
    for k in 0..200usize {
        // Always at least two of six servers; one joins and one leaves at each step.
        let set: Vec<usize> = (0..3).map(|j| (k + j) % 6).collect();
        consul.set(instances(b, &set));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wrk.await.expect("wrk task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_runtime_changes_under_load_fail_no_request() {
    let b = Backends::start(6).await;
    let consul = Consul::start("web", instances(&b, &[0, 1, 2])).await;
    let lb = Lb::start(&lb::block(8, b.port)).await;
    let wd = Watchdog::start("lb", &Env::offline(), &rule(&lb, "", &consul.source()), &[]);
    lb.converges(&b.addrs(&[0, 1, 2]), "first sync").await;

    let r = changes_under_load(&lb, &consul, &b).await;
    let rounds = wd.events("backend_sync_applied");
    let added: u64 = rounds.iter().filter_map(|e| e["added"].as_u64()).sum();
    eprintln!("runtime mode: {} requests, {} failed; 200 changes applied in {} rounds, {added} servers added", r.requests, r.failed(), rounds.len());
    assert!(r.requests > 1000, "wrk made too few requests:\n{}", r.text);
    // Changes closer together than a round are folded into one. Alone, one run applied the
    // 200 changes in 122 rounds (202 servers added); with the whole suite on two cores rounds
    // slow down and fold more, so the bound only says they are not all folded into a few.
    assert!(
        added >= 40,
        "only {added} servers were added in {} rounds\n{}",
        rounds.len(),
        wd.log()
    );
    assert_eq!(
        r.failed(),
        0,
        "failed requests under runtime changes:\n{}",
        r.text
    );
    let last: Vec<usize> = (0..3).map(|j| (199 + j) % 6).collect();
    lb.converges(&b.addrs(&last), "end state").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_reload_mode_changes_under_load() {
    let b = Backends::start(6).await;
    let consul = Consul::start("web", instances(&b, &[0, 1, 2])).await;
    let lb = Lb::start("  server seed 127.0.0.1:9 disabled\n").await;
    let template = lb.dir.path().join("haproxy.cfg.j2");
    std::fs::write(
        &template,
        lb::config_text(&lb.socket, lb.port, "    {{ nodes }}\n"),
    )
    .unwrap();
    let check = format!("apply = \"reload\"\ntemplate = \"{}\"", template.display());
    let wd = Watchdog::start(
        "lb",
        &Env::offline(),
        &rule(&lb, &check, &consul.source()),
        &[],
    );
    lb.converges(&b.addrs(&[0, 1, 2]), "first render").await;

    let r = changes_under_load(&lb, &consul, &b).await;
    let reloads = wd.count("haproxy_reloaded");
    eprintln!(
        "reload mode: {} requests, {} failed, {reloads} reloads",
        r.requests,
        r.failed()
    );
    assert!(r.requests > 1000, "wrk made too few requests:\n{}", r.text);
    // With `option idle-close-on-response` in the generated config, reloads drop nothing.
    assert_eq!(r.failed(), 0, "failed requests under reloads:\n{}", r.text);
    assert!(
        (2..=16).contains(&reloads),
        "{reloads} reloads for 200 changes in ~10 s with a 1 s window"
    );
    let last: Vec<usize> = (0..3).map(|j| (199 + j) % 6).collect();
    lb.converges(&b.addrs(&last), "end state").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_acl_token_and_tags_are_sent_and_the_token_never_logged() {
    let b = Backends::start(3).await;
    let mut untagged = Instance::new(Backends::ip(2), b.port);
    untagged.tags = vec!["canary".into()];
    let mut list = instances(&b, &[0, 1]);
    list.push(untagged);
    let consul = Consul::start("web", list).await;
    consul.require_token("s3cret-consul-token");
    let lb = Lb::start(&lb::block(4, b.port)).await;
    let token = lb.dir.path().join("consul-token");
    std::fs::write(&token, "wrong-token\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let source = format!(
        "{}tags = [\"web\"]\ntoken_file = \"{}\"\n",
        consul.source(),
        token.display()
    );
    let wd = Watchdog::start("lb", &Env::offline(), &rule(&lb, "", &source), &[]);
    let e = wd
        .wait_for(WITHIN, "a world-readable token file refused", |e| {
            e["event"] == "backend_sync_failed"
        })
        .await;
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("readable by every user"),
        "{e}"
    );
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    wd.wait_for(WITHIN, "a refused token", |e| {
        e["event"] == "backend_sync_failed"
            && e["error"].as_str().unwrap_or("").contains("HTTP 403")
    })
    .await;

    // The token file is read on every query: rotating it needs no restart.
    std::fs::write(&token, "s3cret-consul-token\n").unwrap();
    lb.converges(&b.addrs(&[0, 1]), "the tagged, passing instances")
        .await;
    assert!(!wd.log().contains("s3cret-consul-token"));
}

/// A `haproxy_bin` for the daemon in `dir`: a script that appends a line to `dir/checks` each
/// time it is run with `-c`, sleeps `sleep_s` seconds then, and otherwise runs the real
/// HAProxy ([`testkit::haproxy_bin`]) with the same arguments.
pub(crate) fn haproxy_wrapper(dir: &std::path::Path, sleep_s: f64) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("haproxy-wrapper");
    let checks = dir.join("checks");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do\n  if [ \"$a\" = \"-c\" ]; then\n    echo check >> '{}'\n    sleep {sleep_s}\n  fi\ndone\nexec '{}' \"$@\"\n",
            checks.display(),
            testkit::haproxy_bin()
        ),
    )
    .expect("write the haproxy wrapper");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .expect("chmod the haproxy wrapper");
    path
}

/// How many times the wrapper of [`haproxy_wrapper`] in `dir` was run with `-c`.
pub(crate) fn checks_run(dir: &std::path::Path) -> usize {
    std::fs::read_to_string(dir.join("checks"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// What backend `backend` of `lb` serves now.
async fn serving_in(lb: &Lb, backend: &str) -> BTreeSet<SocketAddr> {
    haproxy_watchdog::haproxy::runtime::servers(&lb.socket, backend, Duration::from_secs(5))
        .await
        .map(|slots| {
            slots
                .iter()
                .filter(|s| s.serving())
                .filter_map(|s| s.target)
                .map(|t| SocketAddr::from((t.ip, t.port)))
                .collect()
        })
        .unwrap_or_default()
}

/// A tester's find: rule A's file rewrite (with its `haproxy -c`, hundreds of ms on a big
/// configuration) held the file's lock from its first runtime command on, so rule B, keeping
/// another backend of the same file, could not change HAProxy live until A's check was done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewrite_of_the_file_by_one_rule_does_not_hold_up_anothers_live_change() {
    let b = Backends::start(4).await;
    let app = Consul::start("web", instances(&b, &[0])).await;
    let api = Consul::start("web", instances(&b, &[1])).await;
    let api_block = format!(
        "backend api\n  balance roundrobin\n  # BEGIN haproxy-watchdog servers of api\n{}  # END haproxy-watchdog servers of api\n",
        (1..=2)
            .map(|i| format!("  server api{i} 0.0.0.0:{} check inter 500ms disabled\n", b.port))
            .collect::<String>()
    );
    let lb = Lb::start(&format!("{}{api_block}", lb::block(2, b.port))).await;
    // Every `haproxy -c` takes 3 s, as on a large configuration on a busy machine.
    let wrapper = haproxy_wrapper(lb.dir.path(), 3.0);
    let bin = format!("haproxy_bin = \"{}\"", testkit::haproxy_bin());
    let ours = format!("haproxy_bin = \"{}\"", wrapper.display());
    let toml = format!(
        "{}{}",
        rule(&lb, "", &app.source()).replace(&bin, &ours),
        rule(&lb, "", &api.source())
            .replace(&bin, &ours)
            .replace("[rules.app", "[rules.api")
            .replace("backend = \"app\"", "backend = \"api\"")
    );
    let wd = Watchdog::start("lb", &Env::offline(), &toml, &[]);
    let long = Duration::from_secs(30);
    let api_on_disk = |a: SocketAddr| {
        let text = std::fs::read_to_string(&lb.config).unwrap_or_default();
        text.contains(&format!(" {a} check inter 500ms\n"))
    };
    testkit::eventually(long, "both backends synced, live and on disk", || async {
        (serving_in(&lb, "app").await == b.addrs(&[0])
            && serving_in(&lb, "api").await == b.addrs(&[1])
            && lb.file_serving() == b.addrs(&[0])
            && api_on_disk(b.addr(1)))
        .then_some(())
    })
    .await;

    // An operator's note: the next rewrite of the file is checked in full, whatever it changes.
    let text = std::fs::read_to_string(&lb.config).expect("read haproxy.cfg");
    std::fs::write(&lb.config, format!("{text}# an operator's note\n")).expect("edit haproxy.cfg");
    let before = checks_run(lb.dir.path());
    app.set(instances(&b, &[2]));
    testkit::eventually(long, "rule app's rewrite running haproxy -c", || async {
        (checks_run(lb.dir.path()) > before).then_some(())
    })
    .await;
    let t = std::time::Instant::now();
    api.set(instances(&b, &[3]));
    testkit::eventually(long, "rule api's new server serving", || async {
        serving_in(&lb, "api")
            .await
            .contains(&b.addr(3))
            .then_some(())
    })
    .await;
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "rule api's live change waited {took:?} for rule app's haproxy -c\n{}",
        wd.log()
    );

    // Both files' blocks end as HAProxy serves them.
    testkit::eventually(long, "both blocks on disk", || async {
        (lb.file_serving() == b.addrs(&[2]) && api_on_disk(b.addr(3))).then_some(())
    })
    .await;
    assert_eq!(serving_in(&lb, "app").await, b.addrs(&[2]));
    assert_eq!(serving_in(&lb, "api").await, b.addrs(&[3]));
    let text = std::fs::read_to_string(&lb.config).expect("read haproxy.cfg");
    assert!(text.ends_with("# an operator's note\n"), "{text}");
}

/// Runtime mode at scale: every rewrite of the file ran `haproxy -c`, most of the daemon's
/// CPU during churn, though an address change cannot make a file HAProxy accepted invalid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_address_change_installs_the_file_without_haproxy_c() {
    let b = Backends::start(6).await;
    let consul = Consul::start("web", instances(&b, &[0, 1])).await;
    let lb = Lb::start(&lb::block(4, b.port)).await;
    let wrapper = haproxy_wrapper(lb.dir.path(), 0.0);
    // With `port`, free slots are written `0.0.0.0:<port> ... disabled`; without it (Consul
    // gives each server's port) they say port 0, and each rewrite that frees one is checked.
    let port = format!("port = {}", b.port);
    let toml = rule(&lb, &port, &consul.source()).replace(
        &format!("haproxy_bin = \"{}\"", testkit::haproxy_bin()),
        &format!("haproxy_bin = \"{}\"", wrapper.display()),
    );
    let wd = Watchdog::start("lb", &Env::offline(), &toml, &[]);
    let checks = || checks_run(lb.dir.path());
    let installs = |check: &str| {
        wd.events("config_installed")
            .iter()
            .filter(|e| e["check"] == check)
            .count()
    };

    // The daemon logs an install just after the file is in place, and the harness reads its
    // log from a pipe: an install's event is waited for, never read once the file is seen.
    let logged = |check: &'static str, n: usize| {
        let installs = &installs;
        async move {
            testkit::eventually(
                WITHIN,
                &format!("{n} `{check}` installs logged"),
                || async { (installs(check) >= n).then_some(()) },
            )
            .await
        }
    };

    // The first rewrite in this process is checked.
    lb.converges(&b.addrs(&[0, 1]), "first sync").await;
    assert_eq!(checks(), 1, "{}", wd.log());
    logged("run", 1).await;

    // Servers moving in and out of slots: installed, never checked.
    for (k, set) in [&[0, 2][..], &[3], &[1, 3, 4], &[5]].iter().enumerate() {
        consul.set(instances(&b, set));
        lb.converges(&b.addrs(set), &format!("change {k}")).await;
    }
    assert_eq!(checks(), 1, "address changes ran haproxy -c\n{}", wd.log());
    logged("skipped", 4).await;
    assert_eq!(installs("run"), 1, "{}", wd.log());
    let metrics = testkit::control_get(&wd.control_socket(), "/metrics").await;
    assert!(
        metrics.contains("watchdog_haproxy_config_installs_total{check=\"skipped\",rule=\"app\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("watchdog_haproxy_config_installs_total{check=\"run\",rule=\"app\"} 1"),
        "{metrics}"
    );

    // An operator's edit of a line outside the block: the next rewrite is checked in full.
    // HAProxy serves a change before its file is written: the edit waits for the file, or
    // it would land before the last change's install (which it then makes a checked one).
    testkit::eventually(WITHIN, "the last change's file installed", || async {
        (lb.file_serving() == b.addrs(&[5])).then_some(())
    })
    .await;
    let text = std::fs::read_to_string(&lb.config).expect("read haproxy.cfg");
    assert!(text.contains("balance roundrobin"), "{text}");
    std::fs::write(
        &lb.config,
        text.replace("balance roundrobin", "balance leastconn"),
    )
    .expect("edit haproxy.cfg");
    consul.set(instances(&b, &[0]));
    lb.converges(&b.addrs(&[0]), "after the operator's edit")
        .await;
    testkit::eventually(WITHIN, "the edited file's rewrite installed", || async {
        (lb.file_serving() == b.addrs(&[0])).then_some(())
    })
    .await;
    assert_eq!(checks(), 2, "{}", wd.log());
    logged("run", 2).await;
    let last = wd.events("config_installed").pop().expect("an install");
    assert_eq!(last["check"], "run", "{last}");
    assert!(
        last["reason"]
            .as_str()
            .unwrap_or("")
            .contains("the file changed since"),
        "{last}"
    );
    // And from that checked text on, address changes go unchecked again.
    consul.set(instances(&b, &[1, 2]));
    lb.converges(&b.addrs(&[1, 2]), "after the checked rewrite")
        .await;
    assert_eq!(checks(), 2, "{}", wd.log());

    // Out of slots: the grown block is checked.
    consul.set(instances(&b, &[0, 1, 2, 3, 4, 5]));
    lb.converges(&b.addrs(&[0, 1, 2, 3, 4, 5]), "grown").await;
    assert_eq!(checks(), 3, "{}", wd.log());
    wd.wait_event(WITHIN, "slots_exhausted").await;
    assert_eq!(wd.count("slots_exhausted"), 1, "{}", wd.log());
    assert!(std::fs::read_to_string(&lb.config)
        .expect("read haproxy.cfg")
        .contains("balance leastconn"));
}

/// The edge cases of what an unchecked install may write: every line the skip path accepts
/// (by `servers_only_moved`) from a file HAProxy accepted is one the real `haproxy -c` accepts.
#[test]
fn every_line_a_skipped_check_may_install_is_one_haproxy_accepts() {
    use haproxy_watchdog::haproxy::configfile::{
        begin_marker, end_marker, server_line, servers_only_moved,
    };
    use haproxy_watchdog::haproxy::{Slot, Target};
    use std::net::Ipv4Addr;
    let addresses = [
        "0.0.0.0",
        "0.0.0.1",
        "10.0.0.1",
        "127.0.0.1",
        "255.255.255.254",
        "255.255.255.255",
    ];
    let ports = [1u16, 80, 65535];
    // The forms `server_options` takes: none, the default, the examples', several keywords,
    // and spaces kept as written.
    let options = [
        "",
        "check",
        "check inter 500ms",
        "check inter 2s fall 3 rise 2 weight 10 maxconn 100",
        "check  inter 500ms",
        "check port 9000 inter 1s",
        "weight 0",
        "backup",
    ];
    let slot = |name: String, ip: Ipv4Addr, port: u16, serving: bool| Slot {
        name,
        target: (!ip.is_unspecified()).then_some(Target { ip, port }),
        addressable: true,
        maint: !serving,
        draining: false,
    };
    let (mut old, mut new) = (String::new(), String::new());
    let mut lines = 0;
    for (k, opts) in options.iter().enumerate() {
        let backend = format!("app{k}");
        for text in [&mut old, &mut new] {
            text.push_str(&format!(
                "backend {backend}\n  balance roundrobin\n  {}\n",
                begin_marker(&backend)
            ));
        }
        let mut n = 0;
        for a in addresses {
            for port in ports {
                for serving in [true, false] {
                    n += 1;
                    let ip: Ipv4Addr = a.parse().expect("an address");
                    let name = format!("{backend}_{n}");
                    // The accepted text: slots at one ordinary address, serving, and
                    // never-used ones as a rule without `port` writes them (`0.0.0.0:0`).
                    let before = if n % 2 == 0 {
                        server_line(
                            &slot(name.clone(), Ipv4Addr::UNSPECIFIED, 0, false),
                            0,
                            opts,
                        )
                    } else {
                        server_line(
                            &slot(name.clone(), Ipv4Addr::new(10, 9, 9, 9), 8080, true),
                            port,
                            opts,
                        )
                    };
                    let after = server_line(&slot(name, ip, port, serving), port, opts);
                    old.push_str(&format!("  {before}\n"));
                    new.push_str(&format!("  {after}\n"));
                    lines += 1;
                }
            }
        }
        for text in [&mut old, &mut new] {
            text.push_str(&format!("  {}\n", end_marker(&backend)));
        }
    }
    let head = lb::config_text(
        std::path::Path::new("/nonexistent/stats.sock"),
        testkit::free_port(),
        "  server seed 127.0.0.1:9 disabled\n",
    );
    let (old, new) = (format!("{head}{old}"), format!("{head}{new}"));
    assert_eq!(
        servers_only_moved(&old, &new),
        Ok(()),
        "the skip path takes every case"
    );
    assert!(new.contains(" 0.0.0.0:65535 check disabled\n"), "{new}");
    assert!(new.contains(" 255.255.255.255:1\n"), "{new}");
    let dir = tempfile::tempdir().expect("tempdir");
    for (what, text) in [("accepted", &old), ("moved", &new)] {
        let path = dir.path().join(format!("{what}.cfg"));
        std::fs::write(&path, text).expect("write");
        let out = std::process::Command::new(testkit::haproxy_bin())
            .arg("-c")
            .arg("-f")
            .arg(&path)
            .output()
            .expect("run haproxy -c");
        assert!(
            out.status.success(),
            "haproxy -c rejects the {what} text ({lines} managed server lines):\n{}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
