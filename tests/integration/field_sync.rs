//! Backend-sync faults from the field, one kind per test: each test's name says the kind,
//! and each drives the real `watchdog` against real HAProxy (Debian's 2.6, or the one
//! `WATCHDOG_TEST_HAPROXY` names, such as scripts/haproxy-3.0.sh's 3.0), the Consul stand-in
//! and moto, on loopback only.

use crate::sync::rule;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use testkit::consul::{instances, Consul};
use testkit::lb::{self, Backends, Lb};
use testkit::watchdog::{Env, Watchdog};

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
    let wd = Watchdog::start("lb", &Env::offline(), &rule(&lb, "", &consul.source()), &[]);
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

/// Breaker's find: a Consul whose index kept moving while the service's instances stayed the
/// same (a health check's changing output moves it) was asked about 20 times a second. Such
/// answers are rate-limited like an index that does not move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moving_index_with_an_unchanged_list_is_asked_at_most_once_a_second() {
    let b = Backends::start(3).await;
    let consul = Arc::new(Consul::start("web", instances(&b, &[0, 1])).await);
    let lb = Lb::start(&lb::block(4, b.port)).await;
    let wd = Watchdog::start("lb", &Env::offline(), &rule(&lb, "", &consul.source()), &[]);
    lb.converges(&b.addrs(&[0, 1]), "first sync").await;

    // The index moves every 20 ms; the list does not.
    let flapping = Arc::new(AtomicBool::new(true));
    let (c, f) = (consul.clone(), flapping.clone());
    let flap = tokio::spawn(async move {
        while f.load(Ordering::SeqCst) {
            c.set(c.instances());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let from = consul.request_log().len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let asked = consul.request_log().len() - from;
    assert!(
        (2..=7).contains(&asked),
        "{asked} queries in 5 s while the index moves and the list does not\n{}",
        wd.log()
    );
    // A real change still gets through, within the rate limit.
    consul.set(instances(&b, &[0, 1, 2]));
    lb.converges(&b.addrs(&[0, 1, 2]), "a change among the flapping")
        .await;
    flapping.store(false, Ordering::SeqCst);
    flap.await.unwrap();
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
        &Env::offline(),
        &rule(&lb, "allow_empty = true", &consul.source()),
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
    testkit::eventually(WITHIN, "a leaderless short answer refused", || async {
        (wd.count("backend_sync_failed") > seen).then_some(())
    })
    .await;
    assert_eq!(lb.serving().await, Some(all.clone()), "{}", wd.log());
    assert_eq!(lb.file_serving(), all);

    consul.set_known_leader(true);
    consul.set(instances(&b, &[0, 1]));
    lb.converges(&b.addrs(&[0, 1]), "the leader's answer").await;
}

/// One command on HAProxy's master CLI (half-closed after it, so the master answers).
async fn master(lb: &Lb, line: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The master binds its CLI a moment after the worker's stats socket is up.
    let mut s = testkit::eventually(WITHIN, "the master socket", || async {
        tokio::net::UnixStream::connect(&lb.master).await.ok()
    })
    .await;
    s.write_all(format!("{line}\n").as_bytes()).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await;
    out
}

/// Reload mode whose template gains a frontend on a port another process holds: `haproxy -c`
/// passes, the reload fails. `by_command`: reload with `kill -USR2 <master>` (what Debian's
/// unit does) instead of the master CLI.
async fn failed_reload_scenario(by_command: bool) {
    let b = Backends::start(2).await;
    let consul = Consul::start("web", instances(&b, &[0, 1])).await;
    let lb = Lb::start("  server seed 127.0.0.1:9 disabled\n").await;
    let template = lb.dir.path().join("haproxy.cfg.j2");
    let text = lb::config_text(&lb.socket, lb.port, "    {{ nodes }}\n");
    std::fs::write(&template, &text).unwrap();
    let check = format!("apply = \"reload\"\ntemplate = \"{}\"", template.display());
    let reload = if by_command {
        let proc = master(&lb, "show proc").await;
        let pid = proc
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some("master"))
            .and_then(|l| l.split_whitespace().next())
            .expect("the master's pid")
            .to_owned();
        format!("command = [\"kill\", \"-USR2\", \"{pid}\"]")
    } else {
        format!("master_socket = \"{}\"", lb.master.display())
    };
    let toml = rule(&lb, &check, &consul.source()).replace(
        &format!(
            "reload = {{ master_socket = \"{}\", window = \"1s\" }}",
            lb.master.display()
        ),
        &format!("reload = {{ {reload}, window = \"1s\", timeout = \"5s\" }}"),
    );
    let wd = Watchdog::start("lb", &Env::offline(), &toml, &[]);
    lb.converges(&b.addrs(&[0, 1]), "first render").await;
    // HAProxy serves the servers a moment before the watchdog has seen its reload through.
    wd.wait_event(WITHIN, "haproxy_reloaded").await;
    let worker = lb.worker_pid().await.expect("worker pid");
    let good = wd.count("haproxy_reloaded");

    // std's listener sets SO_REUSEADDR but not SO_REUSEPORT, so HAProxy cannot share it.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    std::fs::write(
        &template,
        format!("{text}frontend busy\n  bind 127.0.0.1:{port}\n  default_backend app\n"),
    )
    .unwrap();
    let e = wd.wait_event(WITHIN, "haproxy_reload_failed").await;
    let error = e["error"].as_str().unwrap_or("").to_owned();
    eprintln!("the failed reload: {error}");
    let failed = wd
        .wait_for(WITHIN, "the round failed", |e| {
            e["event"] == "backend_sync_failed"
        })
        .await;
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or("")
            .contains(&error[..error.len().min(40)]),
        "the round fails with the reload's reason: {failed}"
    );
    assert_eq!(
        wd.count("haproxy_reloaded"),
        good,
        "a failed reload was logged as a success\n{}",
        wd.log()
    );
    assert_eq!(
        lb.worker_pid().await,
        Some(worker),
        "HAProxy kept its worker"
    );
    if by_command {
        // The command cannot say why; the stats socket shows the same process.
        assert!(
            error.contains(&format!("still answers from process {worker}")),
            "{error}"
        );
    } else {
        // HAProxy 3.0's master CLI says why; 2.6's does not, and the error says so.
        assert!(
            error.contains("Address already in use")
                || error.contains("2.6's master CLI does not say why"),
            "{error}"
        );
    }

    // Retried with backoff: a few attempts in 4 s, not a busy loop, and no success claimed.
    let t0 = std::time::Instant::now();
    testkit::eventually(WITHIN, "a retried reload", || async {
        (wd.count("haproxy_reload_failed") >= 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(t0.elapsed())).await;
    let tries = wd.count("haproxy_reload_failed");
    assert!(tries <= 6, "{tries} reloads in about 4 s\n{}", wd.log());
    assert_eq!(wd.count("haproxy_reloaded"), good);

    // The port is freed: the next retry reloads, with no membership change to force it.
    drop(held);
    testkit::eventually(
        Duration::from_secs(40),
        "the reload once the port is free",
        || async {
            let pid = lb.worker_pid().await;
            (pid.is_some() && pid != Some(worker)).then_some(())
        },
    )
    .await;
    wd.wait_for(WITHIN, "a confirmed reload", |e| {
        e["event"] == "haproxy_reloaded"
    })
    .await;
    testkit::eventually(WITHIN, "the new frontend listens", || async {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .await;
    let n = wd.count("rule_recovered") + wd.count("check_passed");
    testkit::eventually(WITHIN, "a passing round after it", || async {
        (wd.count("rule_recovered") + wd.count("check_passed") > n).then_some(())
    })
    .await;
    lb.converges(&b.addrs(&[0, 1]), "after the reload").await;
}

/// HAProxy 2.6's master CLI closes without a status on `reload`; 3.0 answers `Success=0`.
/// Either way a failed reload fails the round, is never logged as done, and is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reload_through_the_master_cli_fails_the_round_and_is_retried() {
    failed_reload_scenario(false).await;
}

/// A reload command that returns 0 whatever becomes of the reload (Debian's unit sends the
/// master SIGUSR2): only a new process on the stats socket counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reload_by_command_fails_the_round_and_is_retried() {
    failed_reload_scenario(true).await;
}

/// Slots of backend `app` that are out of maintenance with no address (`-`): HAProxy sends
/// them requests that fail.
async fn ready_without_address(socket: &std::path::Path) -> Vec<String> {
    let Ok(reply) =
        haproxy_watchdog::haproxy::socket::command(socket, "show servers state app").await
    else {
        return Vec::new();
    };
    reply
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > 6 && f[4] == "-")
        .filter(|f| {
            f[6].parse::<u32>()
                .is_ok_and(|a| a & (0x01 | 0x02 | 0x20) == 0)
        })
        .map(|f| f[3].to_owned())
        .collect()
}

/// Watch HAProxy every 20 ms until `stop` is set; the slots it saw ready with no address.
fn watch_for_addressless_ready(
    lb: &Lb,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<String>> {
    let socket = lb.socket.clone();
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            seen.extend(ready_without_address(&socket).await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        seen
    })
}

/// Runtime mode with a slot HAProxy cannot re-address (a name with `init-addr none`: address
/// `-`, resolution maintenance). It is never a free slot and never made READY; the server goes
/// to another slot, or the slots grow; a slot left READY with no address goes to maintenance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_with_no_usable_address_is_never_made_ready() {
    let b = Backends::start(3).await;
    let consul = Consul::start("web", instances(&b, &[0, 1])).await;
    let p = b.port;
    let block = format!(
        "  {}\n  server app1 {}:{p} check inter 500ms\n  server app2 app2.example.com:{p} check inter 500ms init-addr none\n  server app3 0.0.0.0:{p} check inter 500ms disabled\n  {}\n",
        lb::BEGIN,
        Backends::ip(0),
        lb::END
    );
    let lb = Lb::start(&block).await;
    let worker = lb.worker_pid().await;
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_for_addressless_ready(&lb, stop.clone());
    let wd = Watchdog::start(
        "lb",
        &Env::offline(),
        &rule(&lb, "slots = 4", &consul.source()),
        &[],
    );
    lb.converges(&b.addrs(&[0, 1]), "first sync").await;
    assert_eq!(
        crate::sync::slot_of(&lb, b.addr(1)).await.as_deref(),
        Some("app3"),
        "the server goes to the next free slot\n{}",
        wd.log()
    );
    assert_eq!(lb.worker_pid().await, worker, "no reload needed");
    stop.store(true, Ordering::Relaxed);
    let seen = watcher.await.unwrap();
    assert!(
        seen.is_empty(),
        "READY with no address: {seen:?}\n{}",
        wd.log()
    );

    // What the old daemon left behind: `addr` (refused, yet it clears the resolution
    // maintenance) and `state ready` joined with `;`.
    let set = haproxy_watchdog::haproxy::socket::command(
        &lb.socket,
        &format!(
            "set server app/app2 addr {} port {p};set server app/app2 state ready",
            Backends::ip(1)
        ),
    )
    .await
    .unwrap();
    assert!(
        set.contains("only supported through configuration file"),
        "{set}"
    );
    // 2.6 clears the resolution maintenance on the refused address and `state ready` makes
    // app2 READY with no address; 3.0 keeps it in resolution maintenance.
    let left = ready_without_address(&lb.socket).await;
    assert!(left.is_empty() || left == ["app2"], "{left:?}");
    consul.set(instances(&b, &[0, 1]));
    testkit::eventually(WITHIN, "app2 back in maintenance", || async {
        ready_without_address(&lb.socket)
            .await
            .is_empty()
            .then_some(())
    })
    .await;

    // One more server than usable slots: the slots grow with one reload.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_for_addressless_ready(&lb, stop.clone());
    consul.set(instances(&b, &[0, 1, 2]));
    lb.converges(&b.addrs(&[0, 1, 2]), "grown").await;
    wd.wait_event(WITHIN, "slots_exhausted").await;
    stop.store(true, Ordering::Relaxed);
    let seen = watcher.await.unwrap();
    assert!(
        seen.is_empty(),
        "READY with no address: {seen:?}\n{}",
        wd.log()
    );
    assert_eq!(wd.count("backend_sync_failed"), 0, "{}", wd.log());
}

/// Peers mode on a node the group does not list yet (Pending:Wait, Standby): the managed
/// block keeps `peer <localpeer> <own IP>:<port>`, so HAProxy keeps the section and shares
/// its stick tables; without this node's address nothing is installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peers_section_always_keeps_its_local_peer() {
    let group = testkit::asg::Group::start_in("web", 2, Some(())).await;
    let ids = group.instance_ids().await;
    let peer_port = testkit::free_port();
    let me = "i-0ccccccccccccccc3";
    let own_ip = "127.0.0.13";
    let lb = Lb::start(&lb::block(2, 8080)).await;
    let text = std::fs::read_to_string(&lb.config)
        .unwrap()
        .replacen("global\n", &format!("global\n  localpeer {me}\n"), 1)
        + &format!("peers mesh\n  # BEGIN haproxy-watchdog peers of mesh\n  peer {me} {own_ip}:{peer_port}\n  # END haproxy-watchdog peers of mesh\n");
    std::fs::write(&lb.config, &text).unwrap();
    lb.reload().await;
    let shows_peers = || async {
        haproxy_watchdog::haproxy::socket::command(&lb.socket, "show peers")
            .await
            .unwrap_or_default()
    };
    assert!(
        shows_peers().await.contains(me),
        "the section is active to start with"
    );

    let env = Env::aws_only(&group.moto.url);
    let rules = format!(
        r#"
[rules.peers]
interval = "1s"
timeout = "1s"
fail_after = 2
recover_after = 1

[rules.peers.check]
type = "backend_sync"
apply = "peers"
peers = "mesh"
port = {peer_port}
stats_socket = "{}"
haproxy_config = "{}"
haproxy_bin = "{}"
reload = {{ master_socket = "{}", window = "1s" }}

[rules.peers.check.source]
type = "asg"
group = "web"
"#,
        lb.socket.display(),
        lb.config.display(),
        testkit::haproxy_bin(),
        lb.master.display()
    );

    // Without this node's address (no [node], no instance metadata) the block is left alone.
    let wd = Watchdog::start("lb", &env, &rules, &[]);
    let e = wd
        .wait_for(WITHIN, "a refused peers change", |e| {
            e["event"] == "backend_sync_failed"
        })
        .await;
    assert!(
        e["error"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("own peer line ({me})")),
        "{e}"
    );
    assert_eq!(std::fs::read_to_string(&lb.config).unwrap(), text);
    drop(wd);

    let node = format!(
        "[node]\ninstance_id = \"{me}\"\nnetwork_interface_id = \"eni-0ccccccccccccccc3\"\nprivate_ip = \"{own_ip}\"\n"
    );
    let wd = Watchdog::start("lb", &env, &format!("{node}{rules}"), &[]);
    let mut want = vec![format!("peer {me} {own_ip}:{peer_port}")];
    for id in &ids {
        want.push(format!(
            "peer {id} {}:{peer_port}",
            group.private_ip(id).await
        ));
    }
    want.sort();
    let block = || {
        let mut l: Vec<String> = std::fs::read_to_string(&lb.config)
            .unwrap()
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("peer "))
            .map(str::to_owned)
            .collect();
        l.sort();
        l
    };
    testkit::eventually(WITHIN, "the group's peers and this node's", || async {
        (block() == want).then_some(())
    })
    .await;
    // Reloaded, and HAProxy runs the section with every peer (an incomplete section would be
    // dropped and `show peers` empty).
    testkit::eventually(WITHIN, "HAProxy with the whole peers section", || async {
        let shown = shows_peers().await;
        (shown.contains(me) && ids.iter().all(|id| shown.contains(id.as_str()))).then_some(())
    })
    .await;
    // And it stays so: nothing more to change.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(block(), want);
    assert_eq!(wd.count("backend_sync_failed"), 0, "{}", wd.log());
}

/// Reload mode with a server-state file that a reload command saves first (as Debian's unit
/// can): an operator's `set server ... state maint` comes back after every reload. It wins
/// (no endless reloads to undo it), the round says it is kept, and a rendering that no reload
/// can bring about is held back after a few attempts instead of reloading forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_maintenance_in_the_server_state_file_causes_no_endless_reloads() {
    let b = Backends::start(3).await;
    let consul = Consul::start("web", instances(&b, &[0, 1])).await;
    let lb = Lb::start("  server seed 127.0.0.1:9 disabled\n").await;
    let dir = lb.dir.path();
    let state = dir.join("server-state");
    let template = dir.join("haproxy.cfg.j2");
    let text = lb::config_text(&lb.socket, lb.port, "    {{ nodes }}\n")
        .replacen(
            "global\n",
            &format!("global\n  server-state-file {}\n", state.display()),
            1,
        )
        .replacen(
            "defaults\n",
            "defaults\n  load-server-state-from-file global\n",
            1,
        );
    std::fs::write(&template, &text).unwrap();
    // Save the state, then reload the master: what a unit's ExecReload does.
    let save = dir.join("save-state.py");
    std::fs::write(
        &save,
        "import socket, sys\ns = socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\ns.sendall(b'show servers state\\n')\nd = b''\nwhile True:\n    c = s.recv(65536)\n    if not c:\n        break\n    d += c\nopen(sys.argv[2], 'wb').write(d)\n",
    )
    .unwrap();
    let proc = master(&lb, "show proc").await;
    let master_pid = proc
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("master"))
        .and_then(|l| l.split_whitespace().next())
        .expect("the master's pid")
        .to_owned();
    let command = format!(
        "python3 {} {} {} && kill -USR2 {master_pid}",
        save.display(),
        lb.socket.display(),
        state.display()
    );
    let check = format!("apply = \"reload\"\ntemplate = \"{}\"", template.display());
    let toml = rule(&lb, &check, &consul.source()).replace(
        &format!(
            "reload = {{ master_socket = \"{}\", window = \"1s\" }}",
            lb.master.display()
        ),
        &format!("reload = {{ command = [\"sh\", \"-c\", \"{command}\"], window = \"1s\", timeout = \"3s\" }}"),
    );
    let wd = Watchdog::start("lb", &Env::offline(), &toml, &[]);
    lb.converges(&b.addrs(&[0, 1]), "first render").await;
    wd.wait_event(WITHIN, "haproxy_reloaded").await;

    // The operator takes server 0 out; then the group grows, and the reload (state saved
    // first) brings the maintenance back.
    let name = format!("app_{}_{}", Backends::ip(0), b.port);
    let r = haproxy_watchdog::haproxy::socket::command(
        &lb.socket,
        &format!("set server app/{name} state maint"),
    )
    .await
    .unwrap();
    assert!(r.trim().is_empty(), "{r}");
    let reloads = wd.count("haproxy_reloaded");
    let applied = wd.count("backend_sync_applied");
    consul.set(instances(&b, &[0, 1, 2]));
    testkit::eventually(WITHIN, "the reload for server 2", || async {
        (wd.count("backend_sync_applied") > applied).then_some(())
    })
    .await;
    // Right after a reload the old worker may still answer on the stats socket, with the
    // servers it had (a 3.0 CI run saw {1} here): asked until the new worker answers.
    let want = b.addrs(&[1, 2]);
    testkit::eventually(WITHIN, "the new worker serving 1 and 2", || async {
        (lb.serving().await.as_ref() == Some(&want)).then_some(())
    })
    .await;
    let e = wd.wait_event(WITHIN, "servers_in_maintenance").await;
    assert!(
        e["servers"]
            .as_str()
            .unwrap_or("")
            .contains(&b.addr(0).to_string()),
        "{e}"
    );
    // No more reloads: the operator's maintenance is kept, and the rounds pass.
    let settled = wd.count("haproxy_reloaded");
    assert_eq!(settled, reloads + 1, "{}", wd.log());
    let passed = wd.count("check_passed");
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(wd.count("haproxy_reloaded"), settled, "{}", wd.log());
    assert_eq!(wd.count("backend_sync_failed"), 0, "{}", wd.log());
    assert!(wd.count("check_passed") > passed);
    let last = wd.events("check_passed").pop().unwrap();
    assert!(
        last["detail"]
            .as_str()
            .unwrap_or("")
            .contains("in maintenance"),
        "{last}"
    );

    // A template that can never give the wanted servers (it renders only the first): a few
    // reloads, then it is held back and reported, not reloaded forever.
    std::fs::write(
        &template,
        text.replace(
            "    {{ nodes }}\n",
            "    server {{ servers[0].name }} {{ servers[0].address }}\n",
        ),
    )
    .unwrap();
    consul.set(instances(&b, &[1, 2]));
    let e = wd
        .wait_for(
            Duration::from_secs(40),
            "the configuration held back",
            |e| e["event"] == "reload_held_back",
        )
        .await;
    eprintln!("held back: {e}");
    let after = wd.count("haproxy_reloaded");
    assert!(
        after - settled <= 3,
        "{} reloads before holding back\n{}",
        after - settled,
        wd.log()
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        wd.count("haproxy_reloaded"),
        after,
        "reloads went on\n{}",
        wd.log()
    );
    let failed = wd.events("backend_sync_failed").pop().unwrap();
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or("")
            .contains("next attempt in"),
        "{failed}"
    );

    // A good template again is a new configuration: applied at once.
    std::fs::write(&template, &text).unwrap();
    consul.set(instances(&b, &[0, 2]));
    testkit::eventually(WITHIN, "the good template applied", || async {
        let s = lb.serving().await?;
        (s == b.addrs(&[2]) || s == b.addrs(&[0, 2])).then_some(())
    })
    .await;
}

/// A reload that failed before the watchdog (re)started leaves a file HAProxy does not run;
/// the new daemon sees the file is newer than HAProxy and reloads it, with no other change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_a_failed_reload_left_unloaded_is_reloaded_after_a_restart() {
    let b = Backends::start(2).await;
    let consul = Consul::start("web", instances(&b, &[0, 1])).await;
    let lb = Lb::start("  server seed 127.0.0.1:9 disabled\n").await;
    let template = lb.dir.path().join("haproxy.cfg.j2");
    let text = lb::config_text(&lb.socket, lb.port, "    {{ nodes }}\n");
    std::fs::write(&template, &text).unwrap();
    let check = format!("apply = \"reload\"\ntemplate = \"{}\"", template.display());
    let toml = rule(&lb, &check, &consul.source());
    let wd = Watchdog::start("lb", &Env::offline(), &toml, &[]);
    lb.converges(&b.addrs(&[0, 1]), "first render").await;
    wd.wait_event(WITHIN, "haproxy_reloaded").await;

    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    std::fs::write(
        &template,
        format!("{text}frontend busy\n  bind 127.0.0.1:{port}\n  default_backend app\n"),
    )
    .unwrap();
    wd.wait_event(WITHIN, "haproxy_reload_failed").await;
    drop(wd);
    let worker = lb.worker_pid().await;
    assert!(std::fs::read_to_string(&lb.config)
        .unwrap()
        .contains("frontend busy"));
    drop(held);

    // Up more than a second, so the file is clearly newer than this worker's start.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let wd = Watchdog::start("lb", &Env::offline(), &toml, &[]);
    wd.wait_event(WITHIN, "config_not_loaded").await;
    wd.wait_event(WITHIN, "haproxy_reloaded").await;
    assert_ne!(lb.worker_pid().await, worker);
    testkit::eventually(WITHIN, "the new frontend listens", || async {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .await;
}

/// Breaker: with every slot in use, a replacement took the leaving server out and failed the
/// round ("HAProxy did not keep the changes"), and the next round put the new one in: a
/// one-slot backend answered 503 in between. The new server now takes the slot over at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_with_every_slot_in_use_never_empties_the_backend() {
    let b = Backends::start(2).await;
    let consul = Consul::start("web", instances(&b, &[0])).await;
    let lb = Lb::start(&lb::one_serving_slot(b.port)).await;
    let wd = Watchdog::start(
        "lb",
        &Env::offline(),
        &rule(&lb, "slots = 1", &consul.source()),
        &[],
    );
    lb.converges(&b.addrs(&[0]), "first sync").await;
    let worker = lb.worker_pid().await;
    // Watch every 5 ms for a moment with nothing to serve.
    let stop = Arc::new(AtomicBool::new(false));
    let (sock, flag) = (lb.socket.clone(), stop.clone());
    let watcher = tokio::spawn(async move {
        let mut empty = 0;
        while !flag.load(Ordering::Relaxed) {
            if let Ok(all) = haproxy_watchdog::haproxy::runtime::servers(&sock, "app", WITHIN).await
            {
                if !all.iter().any(|s| s.serving()) {
                    empty += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        empty
    });
    consul.set(instances(&b, &[1]));
    lb.converges(&b.addrs(&[1]), "replaced").await;
    stop.store(true, Ordering::Relaxed);
    assert_eq!(
        watcher.await.unwrap(),
        0,
        "the backend was empty\n{}",
        wd.log()
    );
    assert_eq!(wd.count("backend_sync_failed"), 0, "{}", wd.log());
    assert_eq!(lb.worker_pid().await, worker, "no reload needed");
}

/// Breaker: an operator's own `server app2` outside the managed block, named like a slot,
/// was taken for one (put in maintenance), and a grown block then defined `app2` twice and
/// never loaded. Only the block's servers are slots, and new slots take unused names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_server_outside_the_block_is_never_a_slot() {
    let b = Backends::start(3).await;
    let consul = Consul::start("web", instances(&b, &[0, 1])).await;
    let block = format!(
        "  {}\n  server app1 {}:{p} check inter 500ms\n  {}\n  server app2 {}:{p} check inter 500ms\n",
        lb::BEGIN,
        Backends::ip(0),
        lb::END,
        Backends::ip(2),
        p = b.port,
    );
    let lb = Lb::start(&block).await;
    let wd = Watchdog::start(
        "lb",
        &Env::offline(),
        &rule(&lb, "slots = 1", &consul.source()),
        &[],
    );
    testkit::eventually(WITHIN, "the second server placed", || async {
        crate::sync::slot_of(&lb, b.addr(1)).await
    })
    .await;
    let placed = crate::sync::slot_of(&lb, b.addr(1)).await;
    assert!(
        placed.as_deref().is_some_and(|s| s != "app2"),
        "{placed:?}\n{}",
        wd.log()
    );
    assert_eq!(
        crate::sync::slot_of(&lb, b.addr(2)).await.as_deref(),
        Some("app2"),
        "the operator's server still serves\n{}",
        wd.log()
    );
    assert_eq!(wd.count("backend_sync_failed"), 0, "{}", wd.log());
}

/// Breaker: `backend_sync_slot_growths_total` ("reloads that added server slots") went up on
/// every attempt to grow, though `haproxy -c` rejected each rewrite and no slot was ever
/// added. A counter counts what was done, not what was tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_counts_what_was_done_not_what_was_tried() {
    let b = Backends::start(3).await;
    let consul = Consul::start("web", instances(&b, &[0, 1, 2])).await;
    let lb = Lb::start(&lb::one_serving_slot(b.port)).await;
    let port = testkit::free_port();
    // Three servers for one slot: the block must grow, and every grown block HAProxy rejects.
    let config =
        rule(&lb, "slots = 1", &consul.source()).replace(
            "server_options = \"check inter 500ms\"",
            "server_options = \"check no_such_keyword 1\"",
        ) + &format!("\n[control]\nsocket = \"\"\nmetrics_listen = \"127.0.0.1:{port}\"\n");
    let wd = Watchdog::start("lb", &Env::offline(), &config, &[]);
    wd.wait_event(WITHIN, "backend_sync_failed").await;
    wd.wait_event(WITHIN, "slots_exhausted").await;
    // A second failed round, so a counter of attempts would have moved twice.
    testkit::eventually(WITHIN, "two failed rounds", || async {
        (wd.count("backend_sync_failed") >= 2).then_some(())
    })
    .await;
    let metrics = testkit::metrics(port).await;
    assert!(
        !metrics.contains("watchdog_backend_sync_slot_growths_total{"),
        "no slot was added, yet:\n{metrics}\n{}",
        wd.log()
    );
}
