//! The check kinds operators bring from monit and keepalived, run by the daemon against real
//! things on this machine: a loopback listener that closes, a program that hangs, a pidfile of
//! a dead process, a flag file that appears and goes, and a real HAProxy (2.6, or 3.0 with
//! `WATCHDOG_TEST_HAPROXY`) whose backend servers go down one by one across `min_up`.

use serde_json::Value;
use std::time::Duration;
use testkit::haproxy::{Haproxy, Mode};
use testkit::watchdog::{Env, Watchdog};
use tokio::net::TcpListener;

/// A loopback server that accepts and closes each connection (enough for HAProxy's TCP
/// health check); dropping it closes the port.
struct Server {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn on(port: u16) -> Server {
        let l = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        let port = l.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                drop(s);
            }
        });
        Server { port, task }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn failed(wd: &Watchdog, rule: &str) -> Value {
    let r = rule.to_owned();
    wd.wait_for(
        Duration::from_secs(15),
        &format!("rule_failed {rule}"),
        move |e| e["event"] == "rule_failed" && e["rule"] == r.as_str(),
    )
    .await
}

async fn recovered(wd: &Watchdog, rule: &str, after: usize) -> Value {
    let r = rule.to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let found: Vec<Value> = wd
            .events("rule_recovered")
            .into_iter()
            .filter(|e| e["rule"] == r.as_str())
            .collect();
        if found.len() > after {
            return found[after].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rule {rule} did not recover; log:\n{}",
            wd.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn passed(wd: &Watchdog, rule: &str) -> usize {
    wd.events("check_passed")
        .iter()
        .filter(|e| e["rule"] == rule)
        .count()
}

async fn wait_passed(wd: &Watchdog, rule: &str) {
    let r = rule.to_owned();
    wd.wait_for(
        Duration::from_secs(15),
        &format!("check_passed {rule}"),
        move |e| e["event"] == "check_passed" && e["rule"] == r.as_str(),
    )
    .await;
}

const FAST: &str = "interval = \"300ms\"\ntimeout = \"250ms\"\nfail_after = 1\nrecover_after = 1\n";

#[tokio::test]
async fn min_up_crossing_as_a_backends_servers_go_down_one_by_one() {
    let mut servers = Vec::new();
    for _ in 0..4 {
        servers.push(Server::on(0).await);
    }
    let lines: String = servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "  server s{} 127.0.0.1:{} check inter 100ms fall 1 rise 1\n",
                i + 1,
                s.port
            )
        })
        .collect();
    let port = testkit::free_port();
    let haproxy = Haproxy::launch(None, Mode::Foreground, port, |socket| {
        format!(
            "global\n  stats socket {} mode 600 level admin\n  maxconn 100\n\
             defaults\n  mode http\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n\
             frontend www\n  bind 127.0.0.1:{port}\n  default_backend app\n\
             backend app\n{lines}  server spare 127.0.0.1:9 check disabled\n",
            socket.display()
        )
    })
    .await;
    let sock = haproxy.socket.display().to_string();
    let toml = format!(
        "[rules.count]\ncheck = {{ type = \"haproxy\", stats_socket = \"{sock}\", backend = \"app\", min_up = 3 }}\n{FAST}\n\
         [rules.share]\ncheck = {{ type = \"haproxy\", stats_socket = \"{sock}\", backend = \"app\", min_up_ratio = 0.75 }}\n{FAST}\n"
    );
    let wd = Watchdog::start("min-up", &Env::offline(), &toml, &[]);
    wait_passed(&wd, "count").await;
    wait_passed(&wd, "share").await;

    // One of four down: 3 UP is still enough for both.
    let one = servers.remove(0);
    drop(one);
    wd.wait_for(Duration::from_secs(15), "3 of 4 UP", |e| {
        e["event"] == "check_passed"
            && e["rule"] == "count"
            && e["detail"]
                .as_str()
                .is_some_and(|d| d.contains("backend app: 3 of 4 servers UP, 1 in maintenance"))
    })
    .await;
    assert!(wd.events("rule_failed").is_empty(), "{}", wd.log());

    // Two of four down: below both minimums.
    let two = servers.remove(0);
    let reused = two.port;
    drop(two);
    let f = failed(&wd, "count").await;
    assert_eq!(
        f["detail"].as_str(),
        Some("backend app: 2 of 4 servers UP, 1 in maintenance, fewer than min_up 3"),
        "{f}"
    );
    let f = failed(&wd, "share").await;
    assert_eq!(
        f["detail"].as_str(),
        Some("backend app: 2 of 4 servers UP, 1 in maintenance, fewer than min_up_ratio 0.75 (3)"),
        "{f}"
    );

    // One back: both recover.
    let _back = Server::on(reused).await;
    recovered(&wd, "count", 0).await;
    recovered(&wd, "share", 0).await;
    drop(haproxy);
}

#[tokio::test]
async fn each_check_kind_fails_and_recovers_on_real_things() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let listener = Server::on(0).await;
    // A pidfile of a process that has exited.
    let mut dead = std::process::Command::new("/bin/true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    std::fs::write(dir.path().join("dead.pid"), format!("{dead_pid}\n")).unwrap();
    // A pidfile of one that runs, and a program that hangs and records its PID each run.
    let mut alive = std::process::Command::new("/bin/sleep")
        .arg("60")
        .spawn()
        .unwrap();
    std::fs::write(dir.path().join("alive.pid"), format!("{}\n", alive.id())).unwrap();
    let toml = format!(
        "[rules.port]\ncheck = {{ type = \"tcp\", host = \"127.0.0.1\", port = {port} }}\n{FAST}\n\
         [rules.hang]\ncheck = {{ type = \"program\", command = [\"/bin/sh\", \"-c\", \"echo $$ >> {d}/pids; echo still working; exec sleep 30\"] }}\n\
         interval = \"600ms\"\ntimeout = \"400ms\"\nfail_after = 1\nrecover_after = 1\n\n\
         [rules.stale]\ncheck = {{ type = \"process\", pidfile = \"{d}/dead.pid\" }}\n{FAST}\n\
         [rules.alive]\ncheck = {{ type = \"process\", pidfile = \"{d}/alive.pid\", name = \"sleep\" }}\n{FAST}\n\
         [rules.flag]\ncheck = {{ type = \"file\", path = \"{d}/maintenance\", exists = false }}\n{FAST}\n",
        port = listener.port
    );
    let wd = Watchdog::start("kinds", &Env::offline(), &toml, &[]);
    wait_passed(&wd, "port").await;
    wait_passed(&wd, "flag").await;
    wait_passed(&wd, "alive").await;

    // The stale pidfile fails with its reason.
    let f = failed(&wd, "stale").await;
    assert_eq!(
        f["detail"].as_str().unwrap(),
        format!("stale pidfile {d}/dead.pid: PID {dead_pid} is not running")
    );

    // The hung program is killed at the timeout, with what it printed, and reaped.
    let f = failed(&wd, "hang").await;
    let detail = f["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("/bin/sh did not finish within 360ms; killed it and its process group")
            && detail.ends_with(": still working"),
        "{f}"
    );
    // Let it be killed a few more times, then look for what it left behind.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pids = std::fs::read_to_string(dir.path().join("pids")).unwrap();
    let pids: Vec<&str> = pids.lines().collect();
    assert!(pids.len() >= 3, "{pids:?}");
    // All but the run in progress are gone, not even zombies.
    for pid in &pids[..pids.len() - 1] {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "the killed program {pid} is still in /proc"
        );
    }
    let zombies: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|s| {
            let after = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            let f: Vec<&str> = after.split_whitespace().collect();
            f.first() == Some(&"Z") && f.get(1) == Some(&wd.pid().to_string().as_str())
        })
        .collect();
    assert!(
        zombies.is_empty(),
        "zombie children of the daemon: {zombies:?}"
    );

    // The listener closes: the port check fails; it comes back: recovers.
    let port = listener.port;
    drop(listener);
    let f = failed(&wd, "port").await;
    assert!(f["detail"].as_str().unwrap().contains("refused"), "{f}");
    let _again = Server::on(port).await;
    recovered(&wd, "port", 0).await;

    // The flag appears: the rule fails; it goes: recovers.
    std::fs::write(dir.path().join("maintenance"), "").unwrap();
    let f = failed(&wd, "flag").await;
    assert_eq!(
        f["detail"].as_str().unwrap(),
        format!("{d}/maintenance exists")
    );
    std::fs::remove_file(dir.path().join("maintenance")).unwrap();
    recovered(&wd, "flag", 0).await;

    // The running process is killed: its pidfile goes stale.
    let before = passed(&wd, "alive");
    assert!(before > 0);
    alive.kill().unwrap();
    alive.wait().unwrap();
    let f = failed(&wd, "alive").await;
    assert!(
        f["detail"].as_str().unwrap().starts_with("stale pidfile"),
        "{f}"
    );
    let (code, log) = wd.stop().await;
    assert_eq!(code, Some(0), "{log}");
}

/// HAProxy's own count for frontend `www` (`show stat`): (sessions, HTTP requests) so far.
async fn frontend_counts(h: &Haproxy) -> (u64, u64) {
    let stat = haproxy_watchdog::haproxy::socket::command(&h.socket, "show stat")
        .await
        .expect("show stat");
    let mut lines = stat.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let col = |name: &str| header.iter().position(|h| *h == name).expect(name);
    let (stot, req_tot) = (col("stot"), col("req_tot"));
    let row: Vec<&str> = lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&"www") && f.get(1) == Some(&"FRONTEND"))
        .unwrap_or_else(|| panic!("no www FRONTEND row in:\n{stat}"));
    (row[stot].parse().unwrap(), row[req_tot].parse().unwrap())
}

/// Waits for `rule` to fail, which must come within its `keep_alive` (2 s) and a few intervals
/// from now, with a detail starting with `cause`.
async fn failed_within_keep_alive(wd: &Watchdog, rule: &str, cause: &str) {
    let since = tokio::time::Instant::now();
    let f = failed(wd, rule).await;
    let took = since.elapsed();
    assert!(
        took < Duration::from_millis(2900),
        "seen after {took:?}: {f}"
    );
    assert!(
        f["detail"].as_str().is_some_and(|d| d.starts_with(cause)),
        "{f}"
    );
}

/// A command on `h`'s stats socket.
async fn cli(h: &Haproxy, cmd: &str) -> String {
    haproxy_watchdog::haproxy::socket::command(&h.socket, cmd)
        .await
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

/// HAProxy on loopback answering 200 itself, with `timeout http-keep-alive` as given.
async fn kept_haproxy(keep_alive_timeout: &str) -> Haproxy {
    let port = testkit::free_port();
    Haproxy::launch(None, Mode::Foreground, port, |socket| {
        format!(
            "global\n  stats socket {} mode 600 level admin\n  maxconn 100\n\
             defaults\n  mode http\n  timeout connect 1s\n  timeout client 10s\n  timeout server 10s\n\
             \x20 timeout http-keep-alive {keep_alive_timeout}\n\
             frontend www\n  bind 127.0.0.1:{port}\n  http-request return status 200 content-type text/plain string ok\n",
            socket.display()
        )
    })
    .await
}

/// `keep_alive` against a real HAProxy: one connection serves the checks until it is renewed;
/// HAProxy closing it between checks (`timeout http-keep-alive` shorter than the interval)
/// fails no check; a frontend that stops accepting (`disable frontend`) is seen within
/// `keep_alive` plus a few intervals, as docs/configuration.md says. `fail_after = 1`: any
/// failed check fails the rule.
#[tokio::test]
async fn a_kept_connection_serves_the_checks_and_fails_none_when_haproxy_closes_it() {
    let kept = kept_haproxy("10s").await;
    let closing = kept_haproxy("50ms").await;
    let full = kept_haproxy("10s").await;
    let rule = |name: &str, h: &Haproxy| {
        format!(
            "[rules.{name}]\ncheck = {{ type = \"http\", url = \"{}\", keep_alive = \"2s\" }}\n\
             interval = \"200ms\"\ntimeout = \"150ms\"\nfail_after = 1\nrecover_after = 1\n",
            h.url()
        )
    };
    let toml = rule("kept", &kept) + &rule("closing", &closing) + &rule("full", &full);
    let wd = Watchdog::start("keep-alive", &Env::offline(), &toml, &[]);
    wait_passed(&wd, "kept").await;
    let (sessions, requests) = frontend_counts(&kept).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (sessions2, requests2) = frontend_counts(&kept).await;
    assert!(
        requests2 - requests >= 5,
        "{requests} -> {requests2} requests"
    );
    assert!(
        sessions2 - sessions <= 1,
        "{} connections for {} checks within keep_alive",
        sessions2 - sessions,
        requests2 - requests
    );
    // Renewed: over 5 s of a 2 s keep_alive, 2 or 3 new connections.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (sessions3, _) = frontend_counts(&kept).await;
    assert!(
        (2..=4).contains(&(sessions3 - sessions2)),
        "{} connections over 5 s with keep_alive 2s",
        sessions3 - sessions2
    );
    // HAProxy closed every kept connection before the next check: each check a new one, and
    // not one failed.
    let (c_sessions, c_requests) = frontend_counts(&closing).await;
    assert!(
        c_requests >= 20,
        "{c_requests} checks of the closing HAProxy"
    );
    assert!(
        c_sessions + 2 >= c_requests,
        "{c_sessions} connections for {c_requests} checks"
    );
    assert!(wd.events("check_failed").is_empty(), "{}", wd.log());

    // A frontend at its maxconn, the rule's own connection holding the one slot: the
    // renewal opens its new connection first, which waits in the listen queue like any new
    // client's (breaker 10: closing first freed the slot the new connection then took).
    cli(&full, "set maxconn frontend www 1").await;
    failed_within_keep_alive(&wd, "full", "timed out").await;
    // It stays failed while the frontend is full: the rule's old connection keeps its slot
    // until a check passes (breaker 11: let go, its slot went to the next check, which
    // passed, and the rule failed and recovered at every renewal).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(wd.events("rule_recovered").is_empty(), "{}", wd.log());
    // (Not raised back: on Debian's 2.6.12, `set maxconn frontend` raised while the listener
    // is limited deadlocks in `resume_listener` and HAProxy's own watchdog kills the process,
    // haproxy/haproxy#2726; this HAProxy is the test's own for that reason.)

    // The frontend stops accepting: the kept connection may pass until it is renewed, and
    // the rule fails within keep_alive and a few intervals.
    cli(&kept, "disable frontend www").await;
    failed_within_keep_alive(&wd, "kept", "cannot connect").await;
    assert!(
        wd.events("rule_failed")
            .iter()
            .all(|e| e["rule"] == "kept" || e["rule"] == "full"),
        "{}",
        wd.log()
    );
}
