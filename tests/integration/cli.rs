//! The command line as an operator and cron use it: validate, --once, --dry-run, exit codes.

use std::ffi::OsStr;
use std::os::fd::FromRawFd;
use std::process::{Command, Stdio};
use std::time::Duration;
use testkit::bed::Bed;
use testkit::http::{Reply, Stub};
use testkit::repo;
use testkit::watchdog::{bin, run_to_end, write_config, Watchdog};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn validate_checks_without_touching_the_network() {
    let target = Stub::start(Reply::ok("ok")).await;
    let checkip = Stub::start(Reply::ok("198.51.100.1")).await;
    let (_d, path) = write_config(&format!(
        "[egress]\ncheckip_url = \"{}\"\n[rules.r]\ncheck = {{ type = \"http\", url = \"{}\" }}\n",
        checkip.url(),
        target.url()
    ));
    let out = run_to_end(None, &path, &["validate"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("configuration OK: 1 rule, 0 actions from 1 file"));
    // Each rule's pacing as it will run, defaults filled in.
    assert!(
        text(&out.stdout)
            .contains("rule r: http every 10s, timeout 5s, fails after 3, recovers after 2"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(target.hits() + checkip.hits(), 0, "validate made a request");

    // The shipped examples validate as installed (main file + conf.d).
    let out = Command::new(bin())
        .args(["validate", "--config"])
        .arg(repo().join("conf.d"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[tokio::test]
async fn invalid_configs_exit_2_listing_every_error() {
    let (_d, path) = write_config(
        "[rules.a]\ncheck = { type = \"http\", url = \"http://127.0.0.1:9/\" }\nintervall = \"1s\"\n\
         [rules.b]\ncheck = { type = \"http\", url = \"http://127.0.0.1:9/\" }\non_fail = [\"missing\"]\n",
    );
    for args in [&["validate"][..], &["--once"], &["run"]] {
        let out = run_to_end(None, &path, args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains("2 configuration errors"), "{err}");
        assert!(
            err.contains(&format!(
                "{}: rule \"a\": unknown field `intervall`",
                path.display()
            )),
            "{err}"
        );
        assert!(
            err.contains("rule \"b\": `on_fail` names unknown action \"missing\""),
            "{err}"
        );
    }
    // No command at all, or a missing file: usage/config error, exit 2.
    assert_eq!(Command::new(bin()).output().unwrap().status.code(), Some(2));
    assert_eq!(
        Command::new(bin())
            .args(["validate", "--config", "/nonexistent/w.toml"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
}

#[tokio::test]
async fn once_runs_each_rule_one_cycle_and_exits_by_result() {
    let good = Stub::start(Reply::ok("ok")).await;
    let bad = Stub::start(Reply::Status(500, "no".into())).await;
    let conf = |b: &str| {
        format!(
        "[rules.good]\ncheck = {{ type = \"http\", url = \"{}\", body_contains = \"ok\" }}\nfail_after = 1\n\
         [rules.maybe]\ncheck = {{ type = \"http\", url = \"{b}\", expect_status = [200, 204] }}\nfail_after = 1\n",
        good.url()
    )
    };
    let (_d, path) = write_config(&conf(&good.url()));
    let out = run_to_end(None, &path, &["--once"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let (_d2, path) = write_config(&conf(&bad.url()));
    let out = run_to_end(None, &path, &["--once"]).await;
    assert_eq!(out.status.code(), Some(1));
    let summary = text(&out.stdout);
    assert!(
        summary.lines().any(|l| l.starts_with("maybe")
            && l.contains("FAIL")
            && l.contains("HTTP 500, expected 200,204")),
        "{summary}"
    );
    assert!(
        summary
            .lines()
            .any(|l| l.starts_with("good") && l.contains("pass")),
        "{summary}"
    );
    assert_eq!(
        (good.hits(), bad.hits()),
        (3, 1),
        "exactly one cycle per rule per run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_logs_every_aws_call_and_makes_none() {
    let bed = Bed::new(&["a", "b"], Some("a"), &[]).await;
    bed.target.set(Reply::Status(503, "down".into()));
    let mut conf = bed.conf("b");
    conf.fail_after = 1;
    let (_d, path) = write_config(&conf.toml());
    let out = run_to_end(Some(&bed.env("b")), &path, &["--once", "--dry-run"]).await;
    assert_eq!(out.status.code(), Some(1), "the check failed");
    let log = text(&out.stderr);
    for call in [
        "ec2:DescribeAddresses",
        "ec2:DisassociateAddress",
        "ec2:AssociateAddress",
        "sns:Publish",
    ] {
        assert!(
            log.contains(&format!("\"call\":\"{call}\"")),
            "{call} not logged:\n{log}"
        );
    }
    assert!(
        text(&out.stdout).contains("dry run: would claim"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        bed.world.moto.watchdog_requests().is_empty(),
        "dry run called AWS"
    );

    // The same cycle for real claims, and --once waits for the alert to go out.
    let out = run_to_end(Some(&bed.env("b")), &path, &["--once"]).await;
    assert!(
        text(&out.stdout).contains("action claim: done: claimed"),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(bed.world.holder().await.as_deref(), Some("b"));
    assert_eq!(bed.world.alerts(Duration::from_secs(2)).await.len(), 1);
}

/// One `--once` run of node `b` (with `state_dir` when given): its report, then its log.
async fn cron_run(bed: &Bed, path: &std::path::Path, state_dir: Option<&str>) -> String {
    let mut args = vec!["--once"];
    args.extend(state_dir.iter().flat_map(|d| ["--state-dir", d]));
    let out = run_to_end(Some(&bed.env("b")), path, &args).await;
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_with_a_state_dir_honours_the_hold_down_its_earlier_runs_saved() {
    let bed = Bed::new(&["a", "b"], Some("a"), &[]).await;
    bed.target.set(Reply::Status(503, "down".into()));
    let mut conf = bed.conf("b");
    conf.fail_after = 1;
    let (_d, path) = write_config(&conf.toml());
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str();

    // A cron run claims, and saves the move in its state directory.
    let out = cron_run(&bed, &path, state_dir).await;
    assert!(out.contains("action claim: done: claimed"), "{out}");
    assert_eq!(bed.world.holder().await.as_deref(), Some("b"));

    // The address goes back to `a` (an operator, a failback); the next run is within the
    // hold-down: no claim.
    bed.world.associate("a").await;
    let out = cron_run(&bed, &path, state_dir).await;
    assert!(out.contains("hold_down"), "{out}");
    assert_eq!(bed.world.holder().await.as_deref(), Some("a"));

    // Without a state directory, --once keeps nothing: it claims again.
    let out = cron_run(&bed, &path, None).await;
    assert!(out.contains("action claim: done: claimed"), "{out}");
    assert_eq!(bed.world.alerts(Duration::from_secs(2)).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_stops_cleanly_on_sigterm_and_sigint() {
    let target = Stub::start(Reply::ok("ok")).await;
    let toml = format!("[rules.r]\ncheck = {{ type = \"http\", url = \"{}\" }}\ninterval = \"100ms\"\ntimeout = \"50ms\"\n", target.url());
    let env = testkit::watchdog::Env::offline();
    let wd = Watchdog::start("solo", &env, &toml, &[]);
    wd.wait_event(Duration::from_secs(10), "started").await;
    testkit::eventually(Duration::from_secs(10), "checks", || async {
        (target.hits() >= 3).then_some(())
    })
    .await;
    let (code, log) = wd.stop().await;
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("\"event\":\"stopped\""), "{log}");
}

/// `watchdog status [EXTRA] --socket SOCKET`.
async fn status(socket: &std::path::Path, extra: &[&str]) -> std::process::Output {
    tokio::process::Command::new(bin())
        .arg("status")
        .args(extra)
        .arg("--socket")
        .arg(socket)
        .output()
        .await
        .unwrap()
}

/// The consecutive-failure counts the daemon logged for `rule`, in order.
fn streak(wd: &Watchdog, rule: &str) -> Vec<u64> {
    wd.events("check_failed")
        .iter()
        .filter(|e| e["rule"] == rule)
        .filter_map(|e| e["consecutive_failures"].as_u64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_a_valid_config_keeping_streaks_and_keeps_running_on_an_invalid_one() {
    let target = Stub::start(Reply::Status(500, "down".into())).await;
    let env = testkit::watchdog::Env::offline();
    let rule = format!(
        "[rules.eip]\ncheck = {{ type = \"http\", url = \"{}\" }}\ninterval = \"300ms\"\ntimeout = \"200ms\"\nfail_after = 8\n",
        target.url()
    );
    let wd = Watchdog::start("n", &env, &rule, &[]);
    testkit::eventually(Duration::from_secs(10), "two failures", || async {
        (streak(&wd, "eip").len() >= 2).then_some(())
    })
    .await;

    // A valid change: one more rule, and the old rule's thresholds changed.
    let extra = format!(
        "[rules.extra]\ncheck = {{ type = \"http\", url = \"{}\", expect_status = [500] }}\ninterval = \"300ms\"\ntimeout = \"200ms\"\n",
        target.url()
    );
    std::fs::write(
        wd.config_path(),
        format!(
            "{}{extra}",
            rule.replace("fail_after = 8", "fail_after = 6")
        ),
    )
    .unwrap();
    wd.signal("HUP");
    let e = wd
        .wait_for(Duration::from_secs(10), "config_reloaded", |e| {
            e["event"] == "config_reloaded"
        })
        .await;
    assert_eq!(
        (e["rules"].as_u64(), e["kept"].as_u64()),
        (Some(2), Some(1)),
        "{e}"
    );
    wd.wait_for(Duration::from_secs(10), "the new rule's first check", |e| {
        e["event"] == "check_passed" && e["rule"] == "extra"
    })
    .await;

    // An invalid one is refused; the daemon goes on with what it had.
    std::fs::write(wd.config_path(), format!("{rule}intervall = 3\n")).unwrap();
    wd.signal("HUP");
    let e = wd
        .wait_for(Duration::from_secs(10), "reload_rejected", |e| {
            e["event"] == "reload_rejected"
        })
        .await;
    assert!(
        e["errors"]
            .as_str()
            .unwrap()
            .contains("unknown field `intervall`"),
        "{e}"
    );

    // The streak ran on across both reloads, and the rule failed at the reloaded threshold.
    let failed = wd
        .wait_for(Duration::from_secs(10), "rule_failed", |e| {
            e["event"] == "rule_failed"
        })
        .await;
    assert_eq!(failed["consecutive_failures"].as_u64(), Some(6), "{failed}");
    let counts = streak(&wd, "eip");
    assert!(
        counts.windows(2).all(|w| w[1] == w[0] + 1),
        "the streak restarted: {counts:?}"
    );
    assert!(wd
        .events("check_passed")
        .iter()
        .any(|e| e["rule"] == "extra"));

    // [aws] waits for a restart, and every reload that differs from what runs says so, the
    // second one too (it is compared with start-up, not with the previous reload).
    std::fs::write(wd.config_path(), format!("[aws]\nmax_attempts = 2\n{rule}")).unwrap();
    for n in 1..=2 {
        wd.signal("HUP");
        testkit::eventually(Duration::from_secs(10), "a warning per reload", || async {
            (wd.count("reload_partial") >= n).then_some(())
        })
        .await;
    }
    assert!(wd
        .events("reload_partial")
        .iter()
        .all(|e| e["message"].as_str().is_some_and(|m| m.contains("[aws]"))));
    let (code, _) = wd.stop().await;
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_metrics_show_what_each_rule_saw_and_did() {
    let target = Stub::start(Reply::Status(503, "down".into())).await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock");
    // A stale socket file from a crashed run (bound, never unlinked) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let port = testkit::free_port();
    let env = testkit::watchdog::Env::offline();
    let toml = format!(
        "[control]\nsocket = \"{}\"\nmetrics_listen = \"127.0.0.1:{port}\"\n\
         [rules.eip]\ncheck = {{ type = \"http\", url = \"{}\" }}\ninterval = \"200ms\"\ntimeout = \"150ms\"\nfail_after = 2\non_fail = [\"tell\"]\n\
         [actions.tell]\ntype = \"sns\"\ntopic_arn = \"arn:aws:sns:us-east-1:123456789012:ops\"\n",
        socket.display(),
        target.url()
    );
    let wd = Watchdog::start("n", &env, &toml, &["--dry-run"]);
    wd.wait_for(Duration::from_secs(10), "rule_failed", |e| {
        e["event"] == "rule_failed"
    })
    .await;

    let out = status(&socket, &["--json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = &s["rules"][0];
    assert_eq!(
        (r["rule"].as_str(), r["state"].as_str()),
        (Some("eip"), Some("down")),
        "{s}"
    );
    assert!(r["consecutive_failures"].as_u64().unwrap() >= 2, "{s}");
    assert!(
        r["last_result"]["detail"].as_str().unwrap().contains("503"),
        "{s}"
    );
    assert_eq!(r["last_action"]["action"], "tell", "{s}");

    let out = status(&socket, &[]).await;
    let table = text(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("eip") && l.contains("DOWN") && l.contains("FAIL")),
        "{table}"
    );

    let metrics = testkit::metrics(port).await;
    assert!(
        metrics.contains("# TYPE watchdog_checks_failed_total counter"),
        "{metrics}"
    );
    assert!(
        metrics.contains("watchdog_checks_failed_total{rule=\"eip\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("watchdog_rule_up{check=\"http\",rule=\"eip\"} 0"),
        "{metrics}"
    );
    // A6: the exposition is lint-clean for Prometheus' own checker (`# HELP` on every family,
    // counter names ending in _total); scripts/test-deps.sh installs promtool.
    if let Some(lint) = testkit::promtool(&metrics) {
        panic!("promtool check metrics: {lint}\n{metrics}");
    }

    // Without a daemon: a clear error, exit 1.
    let (code, _) = wd.stop().await;
    assert_eq!(code, Some(0));
    assert!(
        !socket.exists(),
        "the daemon removes its socket when it stops"
    );
    let out = status(&socket, &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot reach the daemon's control socket"),
        "{}",
        text(&out.stderr)
    );
}

/// A write end of a pipe whose read end is already closed: the first write fails with EPIPE.
fn closed_pipe() -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills both descriptors, which nothing else owns; the read end is closed
    // here and the write end handed to one OwnedFd.
    unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0, "pipe(2)");
        libc::close(fds[0]);
        Stdio::from(std::os::fd::OwnedFd::from_raw_fd(fds[1]))
    }
}

/// /dev/full: every write fails with ENOSPC, as on a full disk.
fn dev_full() -> Stdio {
    Stdio::from(
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full"),
    )
}

/// `watchdog ARGS` with standard output on `stdout`: its exit code and standard error.
async fn with_stdout(args: &[&OsStr], stdout: Stdio) -> (Option<i32>, String) {
    let out = tokio::process::Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        // Not `output()`, which would pipe standard output whatever was set.
        .spawn()
        .unwrap()
        .wait_with_output()
        .await
        .unwrap();
    (out.status.code(), text(&out.stderr))
}

/// A tester's find: `status --json | head -1`, `validate > /dev/full` and the like panicked
/// ("failed printing to stdout", exit 101). Every print goes through one function: a reader
/// that went away ends the command quietly with exit 1, any other write error is said on
/// standard error with exit 1; standard error that cannot be written is no panic either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_to_a_closed_pipe_or_a_full_disk_is_an_error_not_a_panic() {
    let target = Stub::start(Reply::ok("ok")).await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock");
    let toml = format!(
        "[control]\nsocket = \"{}\"\n[rules.r]\ncheck = {{ type = \"http\", url = \"{}\" }}\ninterval = \"200ms\"\ntimeout = \"150ms\"\n",
        socket.display(),
        target.url()
    );
    let (_d, path) = write_config(&toml);
    let wd = Watchdog::start("n", &testkit::watchdog::Env::offline(), &toml, &[]);
    wd.wait_event(Duration::from_secs(10), "started").await;
    testkit::eventually(Duration::from_secs(10), "the control socket", || async {
        socket.exists().then_some(())
    })
    .await;

    let commands: [(&str, Vec<&OsStr>); 2] = [
        (
            "validate",
            vec!["validate".as_ref(), "--config".as_ref(), path.as_os_str()],
        ),
        (
            "status --json",
            vec![
                "status".as_ref(),
                "--json".as_ref(),
                "--socket".as_ref(),
                socket.as_os_str(),
            ],
        ),
    ];
    for (what, args) in &commands {
        let (code, err) = with_stdout(args, Stdio::null()).await;
        assert_eq!(code, Some(0), "{what}: {err}");

        let (code, err) = with_stdout(args, dev_full()).await;
        assert!(!err.contains("panicked"), "{what} > /dev/full: {err}");
        assert_eq!(code, Some(1), "{what} > /dev/full: {err}");
        assert!(
            err.contains(
                "haproxy-watchdog: cannot write to standard output: No space left on device"
            ),
            "{what} > /dev/full: {err}"
        );

        let (code, err) = with_stdout(args, closed_pipe()).await;
        assert!(!err.contains("panicked"), "{what} | (closed): {err}");
        assert_eq!(code, Some(1), "{what} | (closed): {err}");
        assert_eq!(
            err, "",
            "{what} | (closed): a reader that left is not an error to report"
        );
    }

    // A command that changed the daemon says so by its exit code even when its output is
    // lost (a tester's find: `pause > /dev/full` exited 1 with the node paused).
    let pause: Vec<&OsStr> = vec!["pause".as_ref(), "--socket".as_ref(), socket.as_os_str()];
    let (code, err) = with_stdout(&pause, dev_full()).await;
    assert_eq!(code, Some(0), "pause > /dev/full: {err}");
    assert!(err.contains("the command took effect"), "{err}");
    let status = Command::new(bin())
        .args(["status", "--json", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    let s: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(s["paused"]["source"], "command", "{s}");

    // Standard error that cannot be written: an invalid configuration still exits 2.
    let (_bad, bad) = write_config("[rules.r]\nintervall = 1\n");
    for stderr in [dev_full(), closed_pipe()] {
        let out = tokio::process::Command::new(bin())
            .args(["validate", "--config"])
            .arg(&bad)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap()
            .wait_with_output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    }
    let (code, log) = wd.stop().await;
    assert_eq!(code, Some(0), "{log}");
}

/// A tester's find: `takeover --dry-run` was accepted and moved the address for real (the
/// flag is global; only `run` and `--once` honour it). A global flag the command ignores is a
/// usage error naming both; `--state-dir` (which has an environment variable and a default)
/// only when the command line gives it.
#[tokio::test]
async fn global_flags_a_command_ignores_are_refused() {
    let target = Stub::start(Reply::ok("ok")).await;
    let state = tempfile::tempdir().unwrap();
    let (_d, path) = write_config(&format!(
        "[rules.r]\ncheck = {{ type = \"http\", url = \"{}\" }}\n",
        target.url()
    ));
    let config = path.to_str().unwrap();
    let dir = state.path().to_str().unwrap();
    let refused: &[(&[&str], &str, &str)] = &[
        (&["status", "--dry-run"], "--dry-run", "status"),
        (&["pause", "--dry-run"], "--dry-run", "pause"),
        (&["resume", "--dry-run"], "--dry-run", "resume"),
        (&["takeover", "--dry-run"], "--dry-run", "takeover"),
        (&["--dry-run", "drill", "--back"], "--dry-run", "drill"),
        (&["validate", "--dry-run"], "--dry-run", "validate"),
        (&["preflight", "--dry-run"], "--dry-run", "preflight"),
        (&["validate", "--state-dir", dir], "--state-dir", "validate"),
        (&["--state-dir", dir, "status"], "--state-dir", "status"),
        (&["takeover", "--state-dir", dir], "--state-dir", "takeover"),
        (&["pause", "--once"], "--once", "pause"),
    ];
    for (args, flag, command) in refused {
        let out = Command::new(bin())
            .args(*args)
            .args(["--config", config])
            .env_remove("WATCHDOG_STATE_DIR")
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&format!("{flag} does not go with {command}")),
            "{args:?}: {err}"
        );
    }
    // The importers read the files they convert: a configuration file and the daemon's flags
    // are refused.
    for (flag, args) in [
        ("--dry-run", &["--dry-run"][..]),
        ("--state-dir", &["--state-dir", dir][..]),
        ("--config", &["--config", config][..]),
    ] {
        for importer in ["import-monit", "import-keepalived"] {
            let out = Command::new(bin())
                .arg(importer)
                .args(args)
                .arg("/nonexistent/input")
                .output()
                .unwrap();
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{importer} {flag}: {err}");
            assert!(
                err.contains(&format!("{flag} does not go with {importer}")),
                "{err}"
            );
        }
    }
    assert_eq!(target.hits(), 0, "a refused command ran");

    // The same flags where they count, and the state directory from the environment.
    let out = Command::new(bin())
        .args(["validate", "--config", config])
        .env("WATCHDOG_STATE_DIR", dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = run_to_end(None, &path, &["--once", "--dry-run", "--state-dir", dir]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// Testers' finds: SNS calls were never retried by the SDK (its client had its own retry
/// setting); then, with every call retried, one slow Publish paged three times (the SDK's
/// retry inside the outbox's). Every call retries as `[aws] max_attempts` says, but Publish,
/// which may have been delivered when it timed out: one request, retried only by the outbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_aws_call_retries_as_configured_and_publish_only_through_the_outbox() {
    let world = testkit::world::World::new(&["a"]).await;
    let (proxy, _task) = testkit::awsproxy::AwsProxy::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        world.moto.url.clone(),
    );
    proxy.inject("Publish", testkit::awsproxy::Fault::Throttle, 1);
    let target = Stub::start(Reply::Status(503, "down".into())).await;
    let (_d, path) = write_config(&format!(
        "[aws]\nmax_attempts = 2\nattempt_timeout = \"2s\"\n\
         [rules.r]\ncheck = {{ type = \"http\", url = \"{}\" }}\nfail_after = 1\non_fail = [\"tell\"]\n\
         [actions.tell]\ntype = \"sns\"\ntopic_arn = \"{}\"\n",
        target.url(),
        world.topic_arn
    ));
    let env = testkit::watchdog::Env::aws_only(&proxy.url());
    let out = run_to_end(Some(&env), &path, &["--once"]).await;
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "the check failed: {log}");
    assert_eq!(
        world.alerts(Duration::from_secs(2)).await.len(),
        1,
        "{}{log}",
        text(&out.stdout)
    );
    assert_eq!(proxy.count("Publish"), (2, 1), "{log}");
    assert_eq!(
        log.matches("\"event\":\"alert_failed\"").count(),
        1,
        "the outbox retried, not the SDK: {log}"
    );
}

/// A tester's find: without `[aws] region`, the region was asked of 169.254.169.254 (or
/// AWS_EC2_METADATA_SERVICE_ENDPOINT), not of `[node] imds_endpoint`, with multi-line
/// warnings. Every metadata read goes where `[node]` says, the region's included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metadata_read_goes_to_the_configured_endpoint() {
    let world = testkit::world::World::new(&["a"]).await;
    let imds = testkit::imds::Imds::start(world.node("a")).await;
    let target = Stub::start(Reply::Status(503, "down".into())).await;
    let (_d, path) = write_config(&format!(
        "[node]\nimds_endpoint = \"{}\"\n\
         [rules.r]\ncheck = {{ type = \"http\", url = \"{}\" }}\nfail_after = 1\non_fail = [\"tell\"]\n\
         [actions.tell]\ntype = \"sns\"\ntopic_arn = \"{}\"\n",
        imds.endpoint(),
        target.url(),
        world.topic_arn
    ));
    // The SDK's own metadata endpoint leads nowhere, and no region is set anywhere else.
    let mut cmd = Command::new(bin());
    testkit::watchdog::Env::aws_only(&world.moto.url).apply(&mut cmd);
    cmd.env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .args(["--once", "--log-format", "json", "--config"])
        .arg(&path);
    let out = tokio::process::Command::from(cmd).output().await.unwrap();
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "the check failed: {log}");
    assert!(!log.contains("no AWS region"), "{log}");
    assert!(
        !log.contains("failed to load region from IMDS"),
        "the SDK's own lookup ran: {log}"
    );
    assert!(
        imds.reads.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "{log}"
    );
    assert_eq!(
        world.alerts(Duration::from_secs(2)).await.len(),
        1,
        "{}{log}",
        text(&out.stdout)
    );
}
