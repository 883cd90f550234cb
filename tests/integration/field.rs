//! Field reports (issue 13): each test is named after the *kind* of fault it guards against,
//! and runs on the same real components as the rest of the suite (moto through the real AWS
//! SDK behind a fault-injecting proxy, Debian's HAProxy, the IMDSv2 stand-in, the binary).
//! Backend-sync kinds live in `field_sync.rs`; pure logic has unit tests beside its code.

use std::sync::atomic::Ordering;
use std::time::Duration;
use testkit::awsproxy::{AwsProxy, Fault};
use testkit::bed::Bed;
use testkit::eventually;
use testkit::http::Reply;
use testkit::watchdog::{run_to_end, write_config, Env, Watchdog};

const T: Duration = Duration::from_secs(20);

/// EC2 through a fault-injecting proxy, for node `node` of `bed`.
async fn proxied(bed: &Bed, node: &str) -> (AwsProxy, Env) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (proxy, _task) = AwsProxy::start(listener, bed.world.moto.url.clone());
    let env = Env {
        aws_endpoint: proxy.url(),
        imds_endpoint: bed.imds[node].endpoint(),
    };
    (proxy, env)
}

/// B7: kill -9 while AssociateAddress is in flight and has not reached EC2: the release went
/// through, so nobody holds the EIP. The restarted daemon is within the hold-down it saved,
/// but with no holder there is nobody to ping-pong with: it claims at its next cycle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_release_and_associate_leaves_no_unowned_eip() {
    let bed = Bed::new(&["a", "b"], Some("a"), &[]).await;
    bed.target.set(Reply::Status(503, "down".into()));
    let (proxy, env) = proxied(&bed, "b").await;
    proxy.inject(
        "AssociateAddress",
        Fault::Blackhole(Duration::from_secs(30)),
        1,
    );
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_str().unwrap().to_owned();
    let mut conf = bed.conf("b");
    conf.hold_down = "300s";
    let conf = conf.toml();
    let wd = Watchdog::start("b", &env, &conf, &["--state-dir", &dir]);
    eventually(T, "AssociateAddress in flight", || async {
        (proxy.count("AssociateAddress").0 > 0).then_some(())
    })
    .await;
    wd.signal("KILL");
    drop(wd);
    assert_eq!(
        bed.world.holder().await,
        None,
        "the crash left the EIP unowned"
    );

    let t0 = tokio::time::Instant::now();
    let wd = Watchdog::start("b", &env, &conf, &["--state-dir", &dir]);
    wd.wait_event(T, "eip_claimed").await;
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "claimed within a few cycles, not after the 300 s hold-down"
    );
    assert_eq!(bed.world.holder().await.as_deref(), Some("b"));
    assert_eq!(wd.count("hold_down_skipped"), 1);
    // The claim the first run died in is settled as not done: it sends nothing.
    assert_eq!(wd.count("claim_not_completed"), 1);
    let alerts = bed.world.alerts(Duration::from_secs(3)).await;
    assert_eq!(alerts.len(), 1, "one move, one alert: {alerts:?}");
    let (code, _) = wd.stop().await;
    assert_eq!(code, Some(0));
}

/// B8: kill -9 after AssociateAddress reached EC2 and before its answer came back: the EIP is
/// on this node and the first run never announced it. The restarted daemon reads the owner
/// and sends the one alert that move is owed; no second claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_completed_during_a_crash_is_announced_exactly_once() {
    let bed = Bed::new(&["a", "b"], Some("a"), &[]).await;
    bed.target.set(Reply::Status(503, "down".into()));
    let (proxy, env) = proxied(&bed, "b").await;
    proxy.inject(
        "AssociateAddress",
        Fault::HoldAnswer(Duration::from_secs(30)),
        1,
    );
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_str().unwrap().to_owned();
    let conf = bed.conf("b").toml();
    let wd = Watchdog::start("b", &env, &conf, &["--state-dir", &dir]);
    eventually(T, "the EIP on b while the answer is held", || async {
        (bed.world.holder().await.as_deref() == Some("b")).then_some(())
    })
    .await;
    wd.signal("KILL");
    drop(wd);
    assert!(bed.world.alerts(Duration::from_secs(1)).await.is_empty());

    let wd = Watchdog::start("b", &env, &conf, &["--state-dir", &dir]);
    let found = wd.wait_event(T, "claim_found_after_restart").await;
    assert_eq!(found["alert"], true);
    let alerts = bed.world.alerts(Duration::from_secs(5)).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(
        alerts[0].subject.contains(&bed.world.eip.to_string())
            && alerts[0].message.contains("restarted mid-claim"),
        "{:?}",
        alerts[0]
    );
    // Let the restarted daemon run a while: no second claim and no second alert.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(proxy.count("AssociateAddress").0, 1);
    assert_eq!(wd.count("eip_claimed"), 0);
    let (code, _) = wd.stop().await;
    assert_eq!(code, Some(0));
    // A third start has nothing left to settle.
    let wd = Watchdog::start("b", &env, &conf, &["--state-dir", &dir]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(wd.count("claim_found_after_restart"), 0);
    assert!(bed.world.alerts(Duration::from_secs(1)).await.is_empty());
    let _ = wd.stop().await;
}

/// B9: a rule that paged, a kill -9 and a restart while the target is still down: no second
/// page (its health survives the restart, as monit's state file keeps it); the next real
/// transition still pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_during_an_outage_pages_once() {
    let bed = Bed::new(&["a"], Some("a"), &[]).await;
    bed.target.set(Reply::Status(503, "down".into()));
    let toml = format!(
        r#"
[rules.site]
check = {{ type = "http", url = "{target}" }}
interval = "200ms"
timeout = "150ms"
fail_after = 2
recover_after = 2
on_fail = ["page"]
on_recover = ["page"]

[actions.page]
type = "sns"
topic_arn = "{topic}"
"#,
        target = bed.target.url(),
        topic = bed.world.topic_arn
    );
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_str().unwrap().to_owned();
    let wd = Watchdog::start("a", &bed.env("a"), &toml, &["--state-dir", &dir]);
    wd.wait_event(T, "alert_sent").await;
    wd.signal("KILL");
    drop(wd);
    let wd = Watchdog::start("a", &bed.env("a"), &toml, &["--state-dir", &dir]);
    wd.wait_event(T, "rule_states_restored").await;
    eventually(T, "five failed checks after the restart", || async {
        (wd.count("check_failed") >= 5).then_some(())
    })
    .await;
    assert_eq!(wd.count("rule_failed"), 0, "still the same outage");
    let alerts = bed.world.alerts(Duration::from_secs(2)).await;
    assert_eq!(alerts.len(), 1, "one page per outage: {alerts:?}");
    assert!(alerts[0].subject.contains("failed"), "{:?}", alerts[0]);

    bed.target.set(Reply::ok("ok"));
    wd.wait_event(T, "rule_recovered").await;
    let alerts = bed.world.alerts(Duration::from_secs(5)).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].subject.contains("recovered"), "{:?}", alerts[0]);
    let (code, _) = wd.stop().await;
    assert_eq!(code, Some(0));
}

/// B10: the metadata service refuses a session token it handed out (401): one new token and
/// one retry in the same lookup, so the claim is not a cycle late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_imds_token_is_renewed_within_the_call() {
    let bed = Bed::new(&["a", "b"], Some("a"), &[]).await;
    bed.target.set(Reply::Status(503, "down".into()));
    // The first read succeeds; then every token handed out so far is refused.
    bed.imds["b"].revoke_after.store(1, Ordering::SeqCst);
    let wd = bed.start("b", &bed.conf("b"));
    wd.wait_event(T, "eip_claimed").await;
    assert_eq!(wd.count("action_error"), 0, "no failed attempt first");
    assert_eq!(wd.count("imds_token_refused"), 1);
    assert_eq!(bed.imds["b"].refused.load(Ordering::SeqCst), 1);
    assert_eq!(bed.imds["b"].tokens.load(Ordering::SeqCst), 2);
    let _ = wd.stop().await;
}

/// A1: a missing CA store (a minimal Debian without ca-certificates) does not stop a
/// configuration with no https URL; one with https URLs fails at start, naming the cause.
#[tokio::test]
async fn missing_ca_store_stops_only_configs_that_need_tls() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("none.sock");
    let plain = format!(
        "[rules.lb]\ncheck = {{ type = \"haproxy\", stats_socket = \"{}\" }}\ninterval = \"1s\"\ntimeout = \"500ms\"\n",
        sock.display()
    );
    let run = |toml: String| async move {
        let (_d, path) = write_config(&toml);
        let out = tokio::process::Command::new(testkit::watchdog::bin())
            .args(["--once", "--config"])
            .arg(&path)
            .env("SSL_CERT_FILE", "/nonexistent")
            .env("SSL_CERT_DIR", "/nonexistent")
            .output()
            .await
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, stderr, stdout) = run(plain.clone()).await;
    assert_eq!(
        code,
        Some(1),
        "the check runs (and fails: no socket)\n{stderr}"
    );
    assert!(stdout.contains("No such file or directory"), "{stdout}");
    assert!(!stderr.contains("HTTP client"), "{stderr}");

    let tls = plain.replace(
        &format!("stats_socket = \"{}\"", sock.display()),
        "health_url = \"https://127.0.0.1:9/\"",
    );
    let (code, stderr, _) = run(tls).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot build the HTTP client: builder error: ")
            && stderr.contains("No CA certificates")
            && stderr.contains("ca-certificates"),
        "the whole cause chain and what to install: {stderr}"
    );
}

/// A2: with systemd's NOTIFY_SOCKET, READY=1 comes once the configuration is loaded and the
/// control socket is bound (Type=notify), STOPPING=1 at SIGTERM; an invalid configuration
/// exits 2 without READY, so `systemctl start` fails.
#[tokio::test]
async fn systemd_is_told_ready_only_once_the_daemon_runs() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify");
    let rx = UnixDatagram::bind(&notify).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let control = dir.path().join("control.sock");
    let toml = format!(
        "[control]\nsocket = \"{}\"\n[rules.lb]\ncheck = {{ type = \"haproxy\", stats_socket = \"{}\" }}\ninterval = \"1s\"\ntimeout = \"500ms\"\n",
        control.display(),
        dir.path().join("none.sock").display()
    );
    let (_d, path) = write_config(&toml);
    let mut child = std::process::Command::new(testkit::watchdog::bin())
        .args(["run", "--state-dir", "", "--config"])
        .arg(&path)
        .env("NOTIFY_SOCKET", &notify)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let n = rx.recv(&mut buf).unwrap();
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.starts_with("READY=1\n"), "{msg}");
    assert!(msg.contains("STATUS=1 rule, 0 actions"), "{msg}");
    assert!(
        control.exists(),
        "READY only after the control socket is bound"
    );
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let n = rx.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1\n");
    assert_eq!(child.wait().unwrap().code(), Some(0));

    // A state directory it cannot use: it runs, and says so in its status line.
    let not_a_dir = dir.path().join("not-a-dir");
    std::fs::write(&not_a_dir, "").unwrap();
    let mut child = std::process::Command::new(testkit::watchdog::bin())
        .args(["run", "--state-dir"])
        .arg(&not_a_dir)
        .arg("--config")
        .arg(&path)
        .env("NOTIFY_SOCKET", &notify)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let n = rx.recv(&mut buf).unwrap();
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        msg.contains("READY=1") && msg.contains("NOT SAVING STATE"),
        "{msg}"
    );
    let _ = child.kill();
    let _ = child.wait();

    std::fs::write(&path, "[rules.lb]\nnope = 1\n").unwrap();
    let out = run_to_end(None, &path, &["run", "--state-dir", ""]).await;
    assert_eq!(out.status.code(), Some(2));
    rx.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        rx.recv(&mut buf).is_err(),
        "no READY for an invalid configuration"
    );
}

/// A5: `--state-dir ""` means nowhere, as documented; the program calls itself by the name
/// the package installs.
#[tokio::test]
async fn empty_state_dir_means_nowhere_and_the_program_names_itself_as_installed() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[rules.lb]\ncheck = {{ type = \"haproxy\", stats_socket = \"{}\" }}\ninterval = \"1s\"\ntimeout = \"500ms\"\n",
        dir.path().join("none.sock").display()
    );
    let (_d, path) = write_config(&toml);
    let out = run_to_end(None, &path, &["--once", "--state-dir", ""]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "runs (the check fails): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = std::process::Command::new(testkit::watchdog::bin())
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&v.stdout).trim(),
        concat!("haproxy-watchdog ", env!("CARGO_PKG_VERSION"))
    );
    let bad = run_to_end(None, &path, &["frobnicate"]).await;
    assert_eq!(bad.status.code(), Some(2));
    std::fs::write(&path, "nope = 1\n").unwrap();
    let invalid = run_to_end(None, &path, &["validate"]).await;
    let err = String::from_utf8_lossy(&invalid.stderr);
    assert!(err.starts_with("haproxy-watchdog: "), "{err}");
}

/// A4: HAProxy's stats socket refuses the daemon's user (installed before HAProxy, never added
/// to its group): the haproxy check says which user lacks which access, and how to give it.
#[tokio::test]
async fn stats_socket_permission_error_names_the_user_and_the_group() {
    use std::os::unix::fs::PermissionsExt;
    let h = testkit::haproxy::Haproxy::start("lb").await;
    // Let another user reach the socket's directory, as /run/haproxy is; the socket stays 600.
    std::fs::set_permissions(h.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let conf = tempfile::tempdir().unwrap();
    std::fs::set_permissions(conf.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = conf.path().join("watchdog.toml");
    std::fs::write(
        &path,
        format!(
            "[rules.lb]\ncheck = {{ type = \"haproxy\", stats_socket = \"{}\" }}\ninterval = \"1s\"\ntimeout = \"500ms\"\n",
            h.socket.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let bin = testkit::watchdog::bin();
    let once = || async {
        let out = tokio::process::Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(&bin)
            .args(["--once", "--state-dir", "", "--config"])
            .arg(&path)
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // HAProxy's usual `mode 660 group haproxy`: joining the group is the fix.
    std::fs::set_permissions(&h.socket, std::fs::Permissions::from_mode(0o660)).unwrap();
    let stdout = once().await;
    assert!(
        stdout.contains("Permission denied")
            && stdout.contains("user nobody (uid 65534)")
            && stdout.contains("mode 660, owner root:root")
            && stdout.contains("add nobody to group root"),
        "{stdout}"
    );
    // Mode 600: joining the group would not help, and the advice says so.
    std::fs::set_permissions(&h.socket, std::fs::Permissions::from_mode(0o600)).unwrap();
    let stdout = once().await;
    assert!(
        stdout.contains("mode 600") && stdout.contains("joining group root would not help"),
        "{stdout}"
    );
    // A directory on the way that the user cannot enter is named.
    std::fs::set_permissions(h.dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let stdout = once().await;
    assert!(
        stdout.contains(&format!(
            "cannot enter directory {}",
            h.dir.path().display()
        )),
        "{stdout}"
    );
}

/// Breaker: two daemons on one state directory (a second `run` beside the service, a root
/// run by hand) would both claim and page, and fight over the state file: the second one
/// refuses to start and says why.
#[tokio::test]
async fn a_second_daemon_on_the_same_state_directory_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap().to_owned();
    let toml = format!(
        "[control]\nsocket = \"\"\n[rules.lb]\ncheck = {{ type = \"haproxy\", stats_socket = \"{}\" }}\ninterval = \"1s\"\ntimeout = \"500ms\"\n",
        dir.path().join("none.sock").display()
    );
    let (_d, path) = write_config(&toml);
    let mut first = std::process::Command::new(testkit::watchdog::bin())
        .args(["run", "--state-dir", &state, "--config"])
        .arg(&path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually(T, "the first daemon holds the state directory", || async {
        dir.path().join("state.json").exists().then_some(())
    })
    .await;
    let second = run_to_end(None, &path, &["run", "--state-dir", &state]).await;
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(
        err.contains("another haproxy-watchdog is running with state directory"),
        "{err}"
    );
    let _ = first.kill();
    let _ = first.wait();
    // Once the first is gone (even by kill -9), the directory is free again.
    let third = run_to_end(None, &path, &["--once"]).await;
    assert_ne!(third.status.code(), Some(2));
}

/// Breaker: without a CA store, a configuration with an AWS action used to end in a panic
/// inside the AWS SDK (exit 101): it fails at start with what to install instead.
#[tokio::test]
async fn missing_ca_store_with_aws_actions_fails_with_a_message_not_a_panic() {
    let toml = "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"http://127.0.0.1:9\"\n\
        [rules.lb]\ncheck = { type = \"haproxy\", stats_socket = \"/nonexistent.sock\" }\n\
        interval = \"1s\"\ntimeout = \"500ms\"\non_fail = [\"page\"]\n\
        [actions.page]\ntype = \"sns\"\ntopic_arn = \"arn:aws:sns:us-east-1:123456789012:t\"\n";
    let (_d, path) = write_config(toml);
    for args in [["--once", "--state-dir"], ["run", "--state-dir"]] {
        let out = tokio::process::Command::new(testkit::watchdog::bin())
            .args(args)
            .arg("")
            .arg("--config")
            .arg(&path)
            .env("SSL_CERT_FILE", "/nonexistent")
            .env("SSL_CERT_DIR", "/nonexistent")
            .output()
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            err.contains("no CA certificates") && err.contains("ca-certificates"),
            "{err}"
        );
    }
}

/// Breaker: after a crash between release and associate, the restarted rule's claim and the
/// settling of the saved claim used to run side by side while AWS reads failed, and both
/// announced the one move. Claims of an EIP now wait until its saved claim is settled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settling_a_saved_claim_and_a_new_claim_never_announce_one_move_twice() {
    let bed = Bed::new(&["a", "b"], Some("a"), &[]).await;
    bed.target.set(Reply::Status(503, "down".into()));
    let (proxy, env) = proxied(&bed, "b").await;
    proxy.inject(
        "AssociateAddress",
        Fault::Blackhole(Duration::from_secs(30)),
        1,
    );
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_str().unwrap().to_owned();
    let conf = bed.conf("b").toml();
    let wd = Watchdog::start("b", &env, &conf, &["--state-dir", &dir]);
    eventually(T, "AssociateAddress in flight", || async {
        (proxy.count("AssociateAddress").0 > 0).then_some(())
    })
    .await;
    wd.signal("KILL");
    drop(wd);
    // The owner reads fail for a while after the restart (each is retried by the SDK too).
    proxy.inject("DescribeAddresses", Fault::ServerError, 8);
    let wd = Watchdog::start("b", &env, &conf, &["--state-dir", &dir]);
    wd.wait_event(T, "eip_claimed").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(wd.count("claim_found_after_restart"), 0, "{}", wd.log());
    assert_eq!(wd.count("claim_not_completed"), 1);
    let alerts = bed.world.alerts(Duration::from_secs(3)).await;
    assert_eq!(alerts.len(), 1, "one move, one alert: {alerts:?}");
    let (code, _) = wd.stop().await;
    assert_eq!(code, Some(0));
}

/// Breaker: a claim cut by AWS errors after it released the EIP (nobody holds it now) was
/// taken, at the next try, for "another node took over meanwhile", with a hold-down on top.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_cut_after_the_release_is_retried_not_taken_for_a_takeover() {
    let bed = Bed::new(&["a", "b"], Some("a"), &[]).await;
    bed.target.set(Reply::Status(503, "down".into()));
    let (proxy, env) = proxied(&bed, "b").await;
    // More failures than the SDK's attempts (3 in this configuration): the claim fails once.
    proxy.inject("AssociateAddress", Fault::ServerError, 3);
    let wd = Watchdog::start("b", &env, &bed.conf("b").toml(), &[]);
    wd.wait_event(T, "eip_claimed").await;
    assert!(wd.count("action_error") >= 1, "the first claim failed");
    assert!(
        wd.events("action_refused")
            .iter()
            .all(|e| e["reason"] != "moved_meanwhile"),
        "{:?}",
        wd.events("action_refused")
    );
    assert_eq!(bed.world.holder().await.as_deref(), Some("b"));
    let _ = wd.stop().await;
}

/// Breaker: a SIGHUP (or SIGTERM) while the daemon starts (here: waiting for instance
/// metadata for its region) used to kill it with the signal's default action.
#[tokio::test]
async fn a_signal_during_start_up_finds_its_handler() {
    // Instance metadata that accepts and never answers: start-up waits for it.
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let imds = format!("http://{}", hang.local_addr().unwrap());
    let _held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = hang.accept().await {
            conns.push(c);
        }
    });
    let toml = "[rules.lb]\ncheck = { type = \"haproxy\", stats_socket = \"/nonexistent.sock\" }\n\
        interval = \"1s\"\ntimeout = \"500ms\"\non_fail = [\"page\"]\n\
        [actions.page]\ntype = \"sns\"\ntopic_arn = \"arn:aws:sns:us-east-1:123456789012:t\"\n";
    let (_d, path) = write_config(toml);
    let child = tokio::process::Command::new(testkit::watchdog::bin())
        .args(["run", "--state-dir", "", "--config"])
        .arg(&path)
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds)
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = child.id().unwrap().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status();
    let out = child.wait_with_output().await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "ends on its own (no region: exit 1, restarted by the unit), not by SIGHUP: {err}"
    );
    assert!(err.contains("no AWS region"), "{err}");
}
