//! Every kind of bad input is an error that names its file and rule, all reported at once.

use super::*;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

fn src(files: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
    files
        .iter()
        .map(|(p, t)| (PathBuf::from(p), t.to_string()))
        .collect()
}

fn errors(files: &[(&str, &str)]) -> Vec<String> {
    match from_sources(&src(files)) {
        Ok(_) => panic!("expected configuration errors"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

const GOOD: &str = r#"
[rules.eip]
check = { type = "http", url = "http://203.0.113.10/" }
on_fail = ["claim"]
[actions.claim]
type = "claim_eip"
eip = "203.0.113.10"
sns_topic_arn = "arn:aws:sns:us-east-1:123456789012:failover"
"#;

/// A fresh operator's find: `interval = "1s"` alone was refused because of a `timeout` they
/// never wrote (the 5 s default). Unset, it is the interval when that is shorter.
#[test]
fn an_unset_timeout_never_exceeds_the_rules_interval() {
    let text = GOOD.replace("[rules.eip]", "[rules.eip]\ninterval = \"1s\"");
    let c = from_sources(&src(&[("a.toml", &text)])).unwrap();
    assert_eq!(c.rules[0].timeout, Duration::from_secs(1));
    // A timeout written out is still held to the interval.
    let text = text.replace("interval = \"1s\"", "interval = \"1s\"\ntimeout = \"2s\"");
    let e = errors(&[("a.toml", &text)]);
    assert!(
        e.iter()
            .any(|m| m.contains("`timeout` (2s) must not exceed `interval` (1s)")),
        "{e:#?}"
    );
}

#[test]
fn a_minimal_rule_gets_the_documented_defaults() {
    let c = from_sources(&src(&[("a.toml", GOOD)])).unwrap();
    let r = &c.rules[0];
    assert_eq!(
        (r.interval, r.timeout, r.fail_after, r.recover_after),
        (defaults::INTERVAL, defaults::TIMEOUT, 3, 2)
    );
    let CheckSpec::Http(h) = &r.check else {
        panic!()
    };
    assert_eq!(h.method, reqwest::Method::GET);
    assert!(
        h.expect_status.contains(200)
            && h.expect_status.contains(302)
            && !h.expect_status.contains(404)
    );
    let ActionSpec::ClaimEip(a) = &c.actions["claim"] else {
        panic!()
    };
    assert_eq!(a.hold_down, defaults::HOLD_DOWN);
    assert_eq!(
        c.egress.checkip_url.as_str(),
        "https://checkip.amazonaws.com/"
    );
    assert_eq!(
        c.haproxy.stats_socket.as_deref(),
        Some(std::path::Path::new(defaults::HAPROXY_SOCKET))
    );
}

#[test]
fn unknown_keys_are_errors_everywhere() {
    let e = errors(&[("a.toml", &format!("{GOOD}\n[aws]\nregoin = \"x\"\n[rules.b]\ncheck = {{ type = \"http\", url = \"http://x/\", metod = \"GET\" }}\n"))]);
    assert!(
        e.iter()
            .any(|e| e.starts_with("a.toml: [aws]: unknown field `regoin`")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e.starts_with("a.toml: rule \"b\": unknown field `metod`")),
        "{e:?}"
    );
    let e = errors(&[("a.toml", &format!("{GOOD}\n[rulez.x]\n"))]);
    assert!(e[0].contains("unknown top-level key `rulez`"), "{e:?}");
}

#[test]
fn wrong_types_and_bad_values() {
    let e = errors(&[(
        "a.toml",
        r#"
[rules.a]
check = { type = "http", url = "http://x/", expect_status = [200, "9xx", 700] }
fail_after = "three"
[rules.b]
check = { type = "http", url = "not a url" }
fail_after = 0
recover_after = 5000
[rules.c]
check = { type = "htpp", url = "http://x/" }
"#,
    )]);
    assert!(
        e.iter()
            .any(|e| e.starts_with("a.toml: rule \"a\": invalid type: string \"three\"")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e.contains("rule \"b\": `url` = \"not a url\": not a URL")),
        "{e:?}"
    );
    assert!(
        e.iter().any(|e| e.contains("rule \"b\": `fail_after` = 0")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e.contains("rule \"b\": `recover_after` = 5000")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e.contains("rule \"c\": unknown variant `htpp`")),
        "{e:?}"
    );
}

#[test]
fn bad_durations_name_the_field() {
    let e = errors(&[(
        "a.toml",
        r#"
[rules.a]
check = { type = "http", url = "http://x/" }
interval = "5"
timeout = "0s"
[rules.b]
check = { type = "http", url = "http://x/" }
interval = "10s"
timeout = "1 fortnight"
[rules.c]
check = { type = "http", url = "http://x/" }
interval = "2s"
timeout = "3s"
"#,
    )]);
    assert!(
        e.iter()
            .any(|e| e.contains("rule \"a\": `interval` = \"5\": not a duration")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e.contains("rule \"a\": `timeout` must be greater than zero")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e.contains("rule \"b\": `timeout` = \"1 fortnight\": not a duration")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e.contains("rule \"c\": `timeout` (3s) must not exceed `interval` (2s)")),
        "{e:?}"
    );
}

#[test]
fn fast_interval_is_optional_bounded_by_interval_and_for_checks_only() {
    let c = from_sources(&src(&[("a.toml", GOOD)])).unwrap();
    assert_eq!(c.rules[0].fast_interval, None);
    let c = from_sources(&src(&[(
        "a.toml",
        &GOOD.replace(
            "on_fail",
            "interval = \"1s\"\ntimeout = \"200ms\"\nfast_interval = \"100ms\"\non_fail",
        ),
    )]))
    .unwrap();
    assert_eq!(c.rules[0].fast_interval, Some(Duration::from_millis(100)));
    let e = errors(&[(
        "a.toml",
        r#"
[rules.a]
check = { type = "http", url = "http://x/" }
interval = "1s"
timeout = "500ms"
fast_interval = "2s"
[rules.b]
check = { type = "http", url = "http://x/" }
fast_interval = "10ms"
"#,
    )])
    .into_iter()
    .chain(errors(&[(
        "s.toml",
        &SYNC
            .replace(
                "[rules.app.check]",
                "fast_interval = \"1s\"\n[rules.app.check]",
            )
            .replace("app", "c"),
    )]))
    .collect::<Vec<_>>();
    for want in [
        "rule \"a\": `fast_interval` (2s) must not exceed `interval` (1s)",
        "rule \"b\": `fast_interval` = \"10ms\": must be between 100ms and 1h",
        "rule \"c\": `fast_interval` is for checks: a backend sync paces itself",
    ] {
        assert!(e.iter().any(|e| e.contains(want)), "{want}: {e:?}");
    }
}

#[test]
fn keep_alive_is_optional_longer_than_interval_and_for_plain_http_only() {
    let c = from_sources(&src(&[("a.toml", GOOD)])).unwrap();
    let CheckSpec::Http(h) = &c.rules[0].check else {
        panic!()
    };
    assert_eq!(h.keep_alive, None, "a new connection per check by default");
    let kept = GOOD.replace(
        "url = \"http://203.0.113.10/\" }",
        "url = \"http://203.0.113.10/\", keep_alive = \"30s\" }",
    );
    let c = from_sources(&src(&[("a.toml", &kept)])).unwrap();
    let CheckSpec::Http(h) = &c.rules[0].check else {
        panic!()
    };
    assert_eq!(h.keep_alive, Some(Duration::from_secs(30)));
    let e = errors(&[(
        "a.toml",
        r#"
[rules.a]
check = { type = "http", url = "http://x/", keep_alive = "10s" }
[rules.b]
check = { type = "http", url = "https://x/", keep_alive = "1m" }
[rules.c]
check = { type = "http", url = "http://u:p@x/", keep_alive = "1m" }
[rules.d]
check = { type = "http", url = "http://x/", keep_alive = "2h" }
[rules.e]
check = { type = "http", url = "http://x/", keep_alive = "soon" }
"#,
    )]);
    for want in [
        "rule \"a\": `keep_alive` (10s) must be longer than `interval` (10s)",
        "rule \"b\": `keep_alive` is for plain http URLs: an https check opens a connection each time",
        "rule \"c\": `keep_alive` is for URLs without credentials",
        "rule \"d\": `keep_alive` = \"2h\": must be between 100ms and 1h",
        "rule \"e\": `keep_alive` = \"soon\": not a duration",
    ] {
        assert!(e.iter().any(|e| e.contains(want)), "{want}: {e:?}");
    }
    assert!(
        e.iter().all(|e| !e.contains("p@")),
        "credentials never in an error: {e:?}"
    );
}

#[test]
fn duplicate_names_across_files_and_within_a_file() {
    let e = errors(&[("10-a.toml", GOOD), ("20-b.toml", GOOD)]);
    assert!(
        e.contains(
            &"20-b.toml: rule \"eip\": duplicate rule name: already defined in 10-a.toml"
                .to_string()
        ),
        "{e:?}"
    );
    assert!(
        e.contains(
            &"20-b.toml: action \"claim\": duplicate action name: already defined in 10-a.toml"
                .to_string()
        ),
        "{e:?}"
    );
    // Within one file TOML itself forbids it.
    let e = errors(&[(
        "a.toml",
        &format!("{GOOD}\n[rules.eip]\ncheck = {{ type = \"http\", url = \"http://x/\" }}\n"),
    )]);
    assert!(
        e[0].starts_with("a.toml: not valid TOML") && e[0].contains("duplicate"),
        "{e:?}"
    );
    // And a global section set in two files.
    let e = errors(&[
        ("a.toml", "[egress]\ntimeout = \"1s\"\n"),
        ("b.toml", &format!("{GOOD}[egress]\n")),
    ]);
    assert!(
        e.contains(
            &"b.toml: [egress]: already set in a.toml; set each section in one file only"
                .to_string()
        ),
        "{e:?}"
    );
}

#[test]
fn unknown_action_references_list_the_defined_ones() {
    let e = errors(&[(
        "a.toml",
        &GOOD.replace(
            "on_fail = [\"claim\"]",
            "on_fail = [\"claim\", \"clam\"]\non_recover = [\"nothing\"]",
        ),
    )]);
    assert_eq!(
        e,
        vec![
            "a.toml: rule \"eip\": `on_fail` names unknown action \"clam\" (defined actions: claim)",
            "a.toml: rule \"eip\": `on_recover` names unknown action \"nothing\" (defined actions: claim)",
        ]
    );
}

#[test]
fn every_error_of_every_file_at_once() {
    let e = errors(&[
        ("a.toml", "[rules.x]\ncheck = { type = \"http\", url = \"http://x/\" }\ninterval = \"soon\"\non_fail = [\"ghost\"]\n"),
        ("b.toml", "this is = not toml ["),
        ("c.toml", "[actions.y]\ntype = \"claim_eip\"\neip = \"300.1.1.1\"\n[actions.z]\ntype = \"sns\"\n"),
    ]);
    assert_eq!(e.len(), 6, "{e:#?}");
    assert_eq!(e[2], "b.toml: not valid TOML: TOML parse error at line 1, column 6; key with no value, expected `=`");
    assert!(e[0].starts_with("a.toml: rule \"x\": `interval`"), "{e:?}");
    assert!(e[2].starts_with("b.toml: not valid TOML"), "{e:?}");
}

#[test]
fn claim_and_alert_settings_are_checked() {
    let e = errors(&[(
        "a.toml",
        r#"
[alerts]
sns_topic_arn = "arn:aws:sqs:us-east-1:1:q"
[rules.r]
check = { type = "haproxy", backend = "app", health_url = "http://127.0.0.1/h" }
[actions.both]
type = "claim_eip"
eip = "203.0.113.1"
allocation_id = "eipalloc-1"
[actions.badip]
type = "claim_eip"
eip = "203.0.113.1"
private_ip = "10.0.0"
provider = "azure"
"#,
    )]);
    assert!(
        e.iter().any(|e| e.contains("[alerts]: `sns_topic_arn`")),
        "{e:?}"
    );
    assert!(
        e.iter().any(|e| e
            .contains("rule \"r\": `frontend` and `backend` are checked through the stats socket")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e.contains("action \"both\": set either `eip` or `allocation_id`, not both")),
        "{e:?}"
    );
    assert!(
        e.iter().any(|e| e.contains(
            "action \"badip\": `provider` = \"azure\": use \"ec2\" (the default) or \"opsworks\""
        )),
        "{e:?}"
    );
    // Every problem of one action, not just the first.
    assert!(e.iter().any(|e| e.contains("action \"badip\": `private_ip` = \"10.0.0\": not an IPv4 address")), "{e:?}");
}

#[test]
fn alerts_topic_is_the_default_for_claims() {
    let good = GOOD.replace(
        "sns_topic_arn = \"arn:aws:sns:us-east-1:123456789012:failover\"\n",
        "",
    );
    let c = from_sources(&src(&[(
        "a.toml",
        &format!("[alerts]\nsns_topic_arn = \"arn:aws:sns:us-east-1:123456789012:t\"\n{good}"),
    )]))
    .unwrap();
    let ActionSpec::ClaimEip(a) = &c.actions["claim"] else {
        panic!()
    };
    assert_eq!(
        a.sns_topic_arn.as_deref(),
        Some("arn:aws:sns:us-east-1:123456789012:t")
    );
}

#[test]
fn conf_d_is_loaded_in_sorted_order_after_the_main_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("conf.d")).unwrap();
    std::fs::write(
        dir.path().join("watchdog.toml"),
        "[egress]\ntimeout = \"1s\"\n",
    )
    .unwrap();
    for name in ["20-b.toml", "10-a.toml", "notes.txt"] {
        std::fs::write(dir.path().join("conf.d").join(name), "").unwrap();
    }
    let files = config_files(&dir.path().join("watchdog.toml")).unwrap();
    let names: Vec<_> = files
        .iter()
        .map(|p| {
            p.strip_prefix(dir.path())
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        names,
        ["watchdog.toml", "conf.d/10-a.toml", "conf.d/20-b.toml"]
    );
    // A directory: its own *.toml, then its conf.d.
    let files = config_files(dir.path()).unwrap();
    assert_eq!(files.len(), 3);
    // No rules anywhere is an error, not a daemon that watches nothing.
    let e = load(dir.path()).unwrap_err();
    assert!(e.to_string().contains("no rules defined"), "{e}");
    // A missing path is an error naming it.
    let e = load(&dir.path().join("missing.toml")).unwrap_err();
    assert!(e.0[0].message.starts_with("cannot read"), "{e}");
}

#[test]
fn the_shipped_examples_load_and_validate() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let c = load(&root.join("conf.d")).unwrap_or_else(|e| panic!("{e}"));
    assert!(c
        .rules
        .iter()
        .any(|r| r.name == "eip-public" && r.fail_after == 3));
    // The packaged layout: /etc/haproxy-watchdog/watchdog.toml with conf.d/ beside it.
    let etc = tempfile::tempdir().unwrap();
    std::fs::copy(
        root.join("packaging/watchdog.toml"),
        etc.path().join("watchdog.toml"),
    )
    .unwrap();
    std::fs::create_dir(etc.path().join("conf.d")).unwrap();
    for f in std::fs::read_dir(root.join("conf.d")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, etc.path().join("conf.d").join(f.file_name().unwrap())).unwrap();
    }
    let c = load(&etc.path().join("watchdog.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.sources.len(),
        1 + std::fs::read_dir(root.join("conf.d")).unwrap().count()
    );
    assert_eq!(c.aws.max_attempts, 4);
}

#[test]
fn a_claim_needs_a_topic_and_belongs_in_on_fail_only() {
    let no_topic = GOOD.replace(
        "sns_topic_arn = \"arn:aws:sns:us-east-1:123456789012:failover\"\n",
        "",
    );
    let e = errors(&[("a.toml", &no_topic)]);
    assert_eq!(e, ["a.toml: action \"claim\": no SNS topic for the failover alert: set `sns_topic_arn` here or in [alerts]"]);
    let e = errors(&[(
        "a.toml",
        &GOOD.replace("on_fail = [\"claim\"]", "on_recover = [\"claim\"]"),
    )]);
    assert_eq!(e, ["a.toml: rule \"eip\": `on_recover` lists claim action \"claim\": a claim belongs in `on_fail`"]);
}

#[test]
fn one_claim_action_per_elastic_ip() {
    let twice = format!("{GOOD}\n[actions.again]\ntype = \"claim_eip\"\neip = \"203.0.113.10\"\nsns_topic_arn = \"arn:aws:sns:us-east-1:123456789012:t\"\n");
    let e = errors(&[("a.toml", &twice)]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("action \"claim\": claims 203.0.113.10 like action \"again\""),
        "{e:?}"
    );
}

#[test]
fn durations_are_bounded_and_rules_cannot_all_be_disabled() {
    let bounded = GOOD
        .replace("on_fail", "interval = \"1ms\"\ntimeout = \"1ms\"\non_fail")
        .replace(
            "eip = \"203.0.113.10\"",
            "eip = \"203.0.113.10\"\nhold_down = \"100y\"",
        );
    let e = errors(&[("a.toml", &bounded)]);
    assert!(
        e.iter()
            .any(|e| e.contains("`interval` = \"1ms\": must be between 100ms and 1h")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e.contains("`hold_down` = \"100y\": must be between 1s and 1day")),
        "{e:?}"
    );
    let e = errors(&[(
        "a.toml",
        &GOOD.replace("on_fail", "enabled = false\non_fail"),
    )]);
    assert_eq!(
        e,
        ["a.toml: every rule is disabled (`enabled = false`): nothing to watch"]
    );
}

#[test]
fn credentials_in_urls_are_not_echoed() {
    let e = errors(&[(
        "a.toml",
        "[rules.r]\ncheck = { type = \"http\", url = \"ftp://admin:hunter2@example.com/\" }\n",
    )]);
    assert!(
        e[0].contains("ftp://***@example.com/") && !e[0].contains("hunter2"),
        "{e:?}"
    );
}

#[test]
fn egress_checks_default_to_the_egress_checkip_url() {
    let c = from_sources(&src(&[(
        "a.toml",
        "[egress]\ncheckip_url = \"http://checkip.internal/\"\n[rules.home]\ncheck = { type = \"egress\", expect = \"203.0.113.10\" }\n",
    )]))
    .unwrap();
    let CheckSpec::Egress(e) = &c.rules[0].check else {
        panic!()
    };
    assert_eq!(e.checkip_url.as_str(), "http://checkip.internal/");
    assert_eq!(e.expect.to_string(), "203.0.113.10");
    let e = errors(&[(
        "a.toml",
        "[rules.home]\ncheck = { type = \"egress\", expect = \"my eip\" }\n",
    )]);
    assert_eq!(
        e,
        ["a.toml: rule \"home\": `check.expect` = \"my eip\": not an IPv4 address"]
    );
}

#[test]
fn every_shipped_example_validates() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("packaging/examples");
    let mut n = 0;
    for e in std::fs::read_dir(&root).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "toml") {
            load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 4, "only {n} examples in {}", root.display());
}

#[test]
fn the_active_active_example_validates() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let c =
        load(&root.join("packaging/examples/active-active.toml")).unwrap_or_else(|e| panic!("{e}"));
    let sync =
        load(&root.join("packaging/examples/backend-sync.toml")).unwrap_or_else(|e| panic!("{e}"));
    let CheckSpec::BackendSync(b) = &sync.rules[0].check else {
        panic!("the example's rule is a backend sync")
    };
    assert_eq!(
        (b.port, b.slots, b.apply.clone()),
        (Some(8080), 20, ApplyMode::Runtime)
    );
    assert!(matches!(
        c.rules
            .iter()
            .find(|r| r.name == "home-eip")
            .map(|r| &r.check),
        Some(CheckSpec::Egress(_))
    ));
}

const SYNC: &str = r#"
[rules.app]
[rules.app.check]
type = "backend_sync"
backend = "app"
port = 8080
[rules.app.check.source]
type = "asg"
group = "web"
"#;

#[test]
fn a_backend_sync_gets_its_defaults() {
    let c = from_sources(&src(&[("s.toml", SYNC)])).unwrap();
    let r = &c.rules[0];
    assert_eq!(r.interval, defaults::SYNC_INTERVAL_ASG);
    let CheckSpec::BackendSync(b) = &r.check else {
        panic!()
    };
    assert_eq!(b.apply, ApplyMode::Runtime);
    assert_eq!(b.server_prefix, "app");
    assert_eq!(b.server_options, "check");
    assert_eq!((b.slots, b.min_servers, b.allow_empty), (10, 1, false));
    assert_eq!(
        b.reload.method,
        ReloadMethod::MasterSocket(defaults::MASTER_SOCKET.into())
    );
    assert_eq!(b.haproxy_config, PathBuf::from(defaults::HAPROXY_CONFIG));
    // Its pacing and deadline: sync::tests::a_backend_sync_paces_itself_and_its_deadline_covers_two_reloads.
}

#[test]
fn backend_sync_mistakes_are_reported_together() {
    let bad = SYNC
        .replace("port = 8080\n", "port = 70000\napply = \"reload\"\nmin_servers = 0\nserver_options = \"check disabled\"\nreload = { master_socket = \"/m\", command = [\"x\"] }\n")
        .replace("group = \"web\"", "group = \"\"");
    let e = errors(&[("s.toml", &bad)]).join("\n");
    for want in [
        "`check.port` = 70000",
        "needs `check.template`",
        "min_servers = 0",
        "must not say `disabled`",
        "`master_socket` or `command`, not both",
        "Auto Scaling group name",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
    let no_port = SYNC.replace("port = 8080\n", "");
    assert!(errors(&[("s.toml", &no_port)])[0].contains("`check.port` is required"));
    let unknown = SYNC.replace("group = \"web\"", "group = \"web\"\nregion = \"x\"");
    assert!(errors(&[("s.toml", &unknown)])[0].contains("unknown field `region`"));
}

#[test]
fn one_sync_per_backend_and_no_claims_on_sync_failure() {
    let two = format!(
        "{SYNC}{}\n[actions.claim]\ntype = \"claim_eip\"\neip = \"203.0.113.10\"\nsns_topic_arn = \"arn:aws:sns:us-east-1:123456789012:t\"\n",
        SYNC.replace("rules.app", "rules.app2")
            .replace("[rules.app2]\n", "[rules.app2]\non_fail = [\"claim\"]\n")
    );
    let e = errors(&[("s.toml", &two)]).join("\n");
    assert!(e.contains("already kept in step by rule \"app\""), "{e}");
    assert!(e.contains("lists claim action \"claim\""), "{e}");
}

/// Two rules on one events queue: SQS hands each message to one reader, and each rule deletes
/// what it read, so each would miss the other's share of the events.
#[test]
fn an_events_queue_shared_by_two_rules_is_refused() {
    let q =
        "group = \"web\"\nevents_queue = \"https://sqs.us-east-1.amazonaws.com/123456789012/q\"";
    let one = SYNC.replace("group = \"web\"", q);
    let peers = one
        .replace("rules.app", "rules.peers")
        .replace("backend = \"app\"", "backend = \"other\"");
    let e = errors(&[("s.toml", &format!("{one}{peers}"))]).join("\n");
    assert!(
        e.contains("is already read by rule \"app\"") && e.contains("a queue of its own"),
        "{e}"
    );
    // However the URL is spelled (breaker 7: `//`, a trailing `/`, a query, percent-encoding,
    // SQS's older host names all passed).
    for spelling in [
        "https://sqs.us-east-1.amazonaws.com//123456789012/q",
        "https://sqs.us-east-1.amazonaws.com/123456789012/q/",
        "HTTPS://SQS.us-east-1.amazonaws.com:443/123456789012/q?x=1",
        "https://sqs.us-east-1.amazonaws.com/123456789012/%71",
        "https://queue.amazonaws.com/123456789012/q",
        "https://us-east-1.queue.amazonaws.com/123456789012/q",
        "https://vpce-0a1b.sqs.us-east-1.vpce.amazonaws.com/123456789012/q",
    ] {
        let other = peers.replace(
            "https://sqs.us-east-1.amazonaws.com/123456789012/q",
            spelling,
        );
        assert!(other.contains(spelling), "{other}");
        let e = errors(&[("s.toml", &format!("{one}{other}"))]).join("\n");
        assert!(
            e.contains("is already read by rule \"app\" (as "),
            "{spelling}: {e}"
        );
    }
    // A queue each is fine; so is a second rule that is disabled.
    let own = peers.replace("/q\"", "/q2\"");
    assert!(from_sources(&src(&[("s.toml", &format!("{one}{own}"))])).is_ok());
    let off = peers.replace("[rules.peers]\n", "[rules.peers]\nenabled = false\n");
    assert!(
        from_sources(&src(&[("s.toml", &format!("{one}{off}"))])).is_ok(),
        "{:?}",
        errors(&[("s.toml", &format!("{one}{off}"))])
    );
}

#[test]
fn consul_source_settings() {
    let consul = SYNC.replace(
        "type = \"asg\"\ngroup = \"web\"",
        "type = \"consul\"\nservice = \"web\"\ntags = [\"a\"]\ntoken_env = \"CONSUL_HTTP_TOKEN\"",
    );
    let c = from_sources(&src(&[("s.toml", &consul)])).unwrap();
    assert_eq!(c.rules[0].interval, defaults::SYNC_INTERVAL_CONSUL);
    let CheckSpec::BackendSync(b) = &c.rules[0].check else {
        panic!()
    };
    let SourceSpec::Consul(s) = &b.source else {
        panic!()
    };
    assert_eq!(s.address.as_str(), "http://127.0.0.1:8500/");
    assert!(s.passing_only);
    assert!(matches!(&s.token, Some(TokenSource::Env(v)) if v == "CONSUL_HTTP_TOKEN"));
    let both = consul.replace("token_env", "token_file = \"/t\"\ntoken_env");
    assert!(errors(&[("s.toml", &both)])[0].contains("not both"));
}

#[test]
fn control_socket_on_by_default_metrics_off_and_bad_values_reported() {
    let c = from_sources(&src(&[("a.toml", GOOD)])).unwrap();
    assert_eq!(
        c.control,
        ControlSettings {
            socket: Some(defaults::CONTROL_SOCKET.into()),
            metrics_listen: None,
            history: defaults::HISTORY,
        }
    );
    let on = format!("[control]\nsocket = \"\"\nmetrics_listen = \"127.0.0.1:9106\"\n{GOOD}");
    let c = from_sources(&src(&[("a.toml", &on)])).unwrap();
    assert_eq!(c.control.socket, None);
    assert_eq!(
        c.control.metrics_listen,
        Some("127.0.0.1:9106".parse().unwrap())
    );
    let bad = format!("[control]\nsocket = \"rel.sock\"\n{GOOD}");
    assert!(errors(&[("a.toml", &bad)])[0].contains("absolute path"));
    let bad = format!("[control]\nmetrics_listen = \"localhost\"\n{GOOD}");
    assert!(errors(&[("a.toml", &bad)])[0].contains("not an address"));
}

#[test]
fn opsworks_claims_default_to_the_us_east_1_api_and_the_agent_file() {
    let c = from_sources(&src(&[(
        "a.toml",
        &GOOD.replace(
            "type = \"claim_eip\"",
            "type = \"claim_eip\"\nprovider = \"opsworks\"",
        ),
    )]))
    .unwrap();
    let ActionSpec::ClaimEip(a) = &c.actions["claim"] else {
        panic!()
    };
    assert_eq!(a.provider, ClaimProvider::OpsWorks);
    assert_eq!(c.opsworks.region, "us-east-1");
    assert_eq!(c.opsworks.instance_id, None);
    assert_eq!(
        c.opsworks.agent_config,
        PathBuf::from("/etc/aws/opsworks/instance-agent.yml")
    );

    let c = from_sources(&src(&[(
        "a.toml",
        &format!(
            "{GOOD}provider = \"opsworks\"\n[opsworks]\nregion = \"us-west-2\"\ninstance_id = \"4d6d1710-ded9-42a1-b08e-b043ad7af1e2\"\nendpoint_url = \"http://127.0.0.1:4999\"\n"
        ),
    )]))
    .unwrap();
    assert_eq!(c.opsworks.region, "us-west-2");
    assert_eq!(
        c.opsworks.instance_id.as_deref(),
        Some("4d6d1710-ded9-42a1-b08e-b043ad7af1e2")
    );
    assert_eq!(
        c.opsworks.endpoint_url.as_deref(),
        Some("http://127.0.0.1:4999/")
    );
}

#[test]
fn opsworks_mistakes_are_reported_together() {
    // An unknown key stops that section's parse, so it is checked on its own.
    let e = errors(&[("a.toml", &format!("{GOOD}[opsworks]\nstack = \"x\"\n"))]);
    assert!(
        e.iter()
            .any(|e| e.contains("[opsworks]: unknown field `stack`")),
        "{e:?}"
    );
    let e = errors(&[(
        "a.toml",
        r#"
[rules.eip]
check = { type = "http", url = "http://203.0.113.10/" }
on_fail = ["claim"]
[actions.claim]
type = "claim_eip"
provider = "opsworks"
allocation_id = "eipalloc-1"
private_ip = "10.0.0.6"
sns_topic_arn = "arn:aws:sns:us-east-1:123456789012:failover"
[opsworks]
instance_id = "i-0123456789abcdef0"
agent_config = "instance-agent.yml"
region = "US East"
"#,
    )]);
    for want in [
        "action \"claim\": `allocation_id`: OpsWorks names an Elastic IP by its address",
        "action \"claim\": `private_ip`: OpsWorks always associates with the instance's primary private IP",
        "[opsworks]: `instance_id` = \"i-0123456789abcdef0\": not an OpsWorks instance id",
        "[opsworks]: `agent_config` = \"instance-agent.yml\": use an absolute path",
        "[opsworks]: `region` = \"US East\": not a region name",
    ] {
        assert!(e.iter().any(|e| e.contains(want)), "{want}: {e:?}");
    }
    let e = errors(&[("a.toml", &format!("{GOOD}[aws]\nregion = \"us_east_1\"\n"))]);
    let want = "[aws]: `region` = \"us_east_1\": not a region name";
    assert!(e.iter().any(|e| e.contains(want)), "{want}: {e:?}");
}

#[test]
fn exec_actions_need_an_absolute_program() {
    let rules = r#"
[rules.r]
check = { type = "http", url = "http://203.0.113.10/" }
on_fail = ["page"]
on_recover = ["page"]
"#;
    let c = from_sources(&src(&[(
        "a.toml",
        &format!("{rules}[actions.page]\ntype = \"exec\"\ncommand = [\"/usr/local/bin/page\", \"ops\"]\n"),
    )]))
    .unwrap();
    let ActionSpec::Exec(x) = &c.actions["page"] else {
        panic!()
    };
    assert_eq!(x.command, ["/usr/local/bin/page", "ops"]);
    assert_eq!(x.timeout, defaults::EXEC_TIMEOUT);
    for (body, want) in [
        ("", "action \"page\": missing `command`"),
        ("command = []", "action \"page\": missing `command`"),
        (
            "command = [\"page\"]",
            "`command`: the program \"page\" must be an absolute path",
        ),
        (
            "command = [\"/bin/true\"]\ntimeout = \"1h\"",
            "action \"page\": `timeout`",
        ),
        ("command = \"/bin/true\"", "action \"page\""),
    ] {
        let e = errors(&[(
            "a.toml",
            &format!("{rules}[actions.page]\ntype = \"exec\"\n{body}\n"),
        )]);
        assert!(e.iter().any(|e| e.contains(want)), "{body}: {want}: {e:?}");
    }
}

#[test]
fn an_events_queue_makes_the_interval_a_slow_resync() {
    let events = SYNC.replace(
        "group = \"web\"",
        "group = \"web\"\nevents_queue = \"https://sqs.us-east-1.amazonaws.com/1/q\"\nlifecycle_hook = \"drain\"\nheartbeat_interval = \"1m\"",
    );
    let c = from_sources(&src(&[("s.toml", &events)])).unwrap();
    assert_eq!(c.rules[0].interval, defaults::SYNC_RESYNC_EVENTS);
    let CheckSpec::BackendSync(b) = &c.rules[0].check else {
        panic!()
    };
    let SourceSpec::Asg(a) = &b.source else {
        panic!()
    };
    assert_eq!(
        a.events_queue.as_deref(),
        Some("https://sqs.us-east-1.amazonaws.com/1/q")
    );
    assert_eq!(a.lifecycle_hook.as_deref(), Some("drain"));
    assert_eq!(a.drain_timeout, defaults::DRAIN_TIMEOUT);
    assert_eq!(
        a.heartbeat_interval,
        Some(std::time::Duration::from_secs(60))
    );

    let bad = SYNC.replace(
        "group = \"web\"",
        "group = \"web\"\nevents_queue = \"sqs://q\"\nlifecycle_hook = \"\"\ndrain_timeout = \"3h\"",
    );
    let e = errors(&[("s.toml", &bad)]).join("\n");
    for want in [
        "check.source.events_queue",
        "lifecycle hook name",
        "check.source.drain_timeout",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
    let lonely = SYNC.replace(
        "group = \"web\"",
        "group = \"web\"\nheartbeat_interval = \"1m\"",
    );
    assert!(errors(&[("s.toml", &lonely)])[0].contains("needs `lifecycle_hook`"));
}

#[test]
fn peers_mode_names_a_peers_section_and_an_asg_source() {
    let peers = SYNC.replace("backend = \"app\"", "apply = \"peers\"\npeers = \"mesh\"");
    let c = from_sources(&src(&[("s.toml", &peers)])).unwrap();
    let CheckSpec::BackendSync(b) = &c.rules[0].check else {
        panic!()
    };
    assert_eq!(
        (b.apply.clone(), b.backend.as_str()),
        (ApplyMode::Peers, "mesh")
    );

    let both = SYNC.replace(
        "backend = \"app\"",
        "apply = \"peers\"\npeers = \"mesh\"\nbackend = \"app\"",
    );
    assert!(errors(&[("s.toml", &both)])[0].contains("needs `check.peers`"));
    let no_peers = SYNC.replace("backend = \"app\"", "apply = \"peers\"");
    assert!(errors(&[("s.toml", &no_peers)])[0].contains("needs `check.peers`"));
    let stray = SYNC.replace("backend = \"app\"", "peers = \"mesh\"");
    assert!(errors(&[("s.toml", &stray)])[0].contains("`check.backend` names the HAProxy backend"));
    let consul = peers.replace(
        "type = \"asg\"\ngroup = \"web\"",
        "type = \"consul\"\nservice = \"web\"",
    );
    assert!(errors(&[("s.toml", &consul)])[0].contains("takes its peers from an `asg` source"));
    let template = peers.replace("port = 8080", "port = 8080\ntemplate = \"/t.j2\"");
    assert!(errors(&[("s.toml", &template)])[0].contains("peers mode rewrites only its own block"));
}

/// Field report C11: one bad key must not hide the other errors of the same section or rule:
/// serde stops at the first, so bad keys are taken out one by one (also inside `check`) and
/// the rest is checked, semantics included, in the same pass.
#[test]
fn every_error_in_a_section_is_reported_at_once() {
    let e = errors(&[(
        "a.toml",
        r#"
[aws]
endpoint_url = "ftp://x"
region = "Not A Region"
connect_timeout = "3 parsecs"
bogus = 1

[haproxy]
health_url = "gopher://h"
timeout = "soon"

[rules.lb]
check = { type = "haproxy", stats_socket = "/tmp/x.sock", frontend = 3, nope = 2 }
interval = "1 fortnight"
timeout = "500ms"
fail_after = "three"
on_fail = ["ghost"]
"#,
    )]);
    let has = |needle: &str| {
        assert!(
            e.iter().any(|m| m.contains(needle)),
            "{needle:?} missing from {e:#?}"
        )
    };
    has("[aws]: unknown field `bogus`");
    has("[aws]: `endpoint_url` = \"ftp://x\"");
    has("[aws]: `region` = \"Not A Region\"");
    has("[aws]: `connect_timeout` = \"3 parsecs\"");
    has("[haproxy]: `health_url` = \"gopher://h\"");
    has("[haproxy]: `timeout` = \"soon\"");
    has("rule \"lb\": invalid type: integer `3`, expected a string; in `check.frontend`");
    has("rule \"lb\": unknown field `nope`");
    has("rule \"lb\": invalid type: string \"three\"");
    has("rule \"lb\": `interval` = \"1 fortnight\"");
    // Each problem once: a key taken out is not reported again as missing.
    assert_eq!(e.len(), 11, "{e:#?}");
    // A required key that is bad is reported once, not again as missing.
    let e = errors(&[(
        "b.toml",
        "[actions.x]\ntype = \"exec\"\ncommand = 3\ntimeout = \"1 eon\"\n",
    )]);
    assert!(e.iter().all(|m| !m.contains("missing field")), "{e:#?}");
    assert!(
        e.iter()
            .any(|m| m.contains("`command`") || m.contains("invalid type")),
        "{e:#?}"
    );
}

/// Breaker: a rule without its required `check` used to hide the rule's other errors.
#[test]
fn a_missing_check_does_not_hide_the_rules_other_errors() {
    let e = errors(&[(
        "a.toml",
        "[rules.r]\ninterval = \"bad\"\nfail_after = 0\non_fail = [\"ghost\"]\n",
    )]);
    for needle in [
        "missing `check`",
        "`interval` = \"bad\"",
        "fail_after",
        "\"ghost\"",
    ] {
        assert!(
            e.iter().any(|m| m.contains(needle)),
            "{needle:?} missing from {e:#?}"
        );
    }
}

#[test]
fn a_disabled_rule_is_validated_like_an_enabled_one() {
    // Both rules' mistakes are reported, whether the rule is enabled or not; the second
    // rule keeps the configuration from being all-disabled.
    let both = |enabled: &str| {
        format!(
            "{GOOD}\n[rules.off]\n{enabled}check = {{ type = \"http\", url = \"http://203.0.113.10/\" }}\non_recover = [\"claim\"]\n"
        )
    };
    let expected = ["a.toml: rule \"off\": `on_recover` lists claim action \"claim\": a claim belongs in `on_fail`"];
    assert_eq!(errors(&[("a.toml", &both(""))]), expected);
    assert_eq!(errors(&[("a.toml", &both("enabled = false\n"))]), expected);
    // Valid, a disabled rule is left out of what runs.
    let c = from_sources(&src(&[(
        "a.toml",
        &format!("{GOOD}\n[rules.off]\nenabled = false\ncheck = {{ type = \"http\", url = \"http://203.0.113.10/\" }}\n"),
    )]))
    .unwrap();
    assert_eq!(
        c.rules.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["eip"]
    );
}

#[test]
fn every_toml_entry_of_a_config_directory_is_read_or_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.toml"), GOOD).unwrap();
    // A directory and a dangling link named *.toml: neither can be read, neither is skipped.
    std::fs::create_dir(dir.path().join("x.toml")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("gone"), dir.path().join("y.toml")).unwrap();
    for config in [dir.path().to_path_buf(), dir.path().join("a.toml")] {
        let conf_d = dir.path().join("conf.d");
        if config.is_file() {
            // The same inside conf.d, beside a main file.
            std::fs::create_dir(&conf_d).unwrap();
            std::fs::rename(dir.path().join("x.toml"), conf_d.join("x.toml")).unwrap();
            std::fs::rename(dir.path().join("y.toml"), conf_d.join("y.toml")).unwrap();
        }
        let e = load(&config).unwrap_err();
        let files: Vec<_> = e.0.iter().map(|e| e.file.file_name().unwrap()).collect();
        assert_eq!(files, ["x.toml", "y.toml"], "{e}");
        assert!(
            e.0.iter().all(|e| e.message.starts_with("cannot read")),
            "{e}"
        );
    }
}

#[test]
fn values_are_checked_for_their_whole_shape_not_only_their_syntax() {
    let with = |extra: &str| format!("{GOOD}\n{extra}\n");
    let one_error = |extra: &str, want: &str| {
        let e = errors(&[("a.toml", &with(extra))]);
        assert_eq!(e.len(), 1, "{extra}: {e:?}");
        assert!(e[0].contains(want), "{extra}: {e:?}");
    };
    // Regions: two letters, words, a number.
    for r in ["x", "useast", "us-east", "us_east_1", "US-east-1"] {
        one_error(&format!("[aws]\nregion = \"{r}\""), "not a region name");
    }
    // SNS topic ARNs: every field SNS needs, well-formed.
    for arn in [
        "arn:aws:sns:::",
        "arn:aws:sns:x:y:",
        "arn:aws:sns:us-east-1:123456789012:",
        "arn:aws:sns:useast1:123456789012:t",
        "arn:aws:sns:us-east-1:1234:t",
        "arn::sns:us-east-1:123456789012:t",
        "arn:aws:sns:us-east-1:123456789012:t:sub-id",
        "arn:aws:sns:us-east-1:123456789012:a b",
    ] {
        one_error(
            &format!("[alerts]\nsns_topic_arn = \"{arn}\""),
            "not an SNS topic ARN",
        );
    }
    // An Elastic IP is never a private or reserved address.
    for ip in [
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "127.0.0.1",
        "169.254.169.254",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
    ] {
        let claim = GOOD.replace("eip = \"203.0.113.10\"", &format!("eip = \"{ip}\""));
        let e = errors(&[("a.toml", &claim)]);
        assert_eq!(e.len(), 1, "{ip}: {e:?}");
        assert!(e[0].contains("can never be an Elastic IP"), "{e:?}");
        let egress =
            format!("{GOOD}\n[rules.home]\ncheck = {{ type = \"egress\", expect = \"{ip}\" }}\n");
        let e = errors(&[("a.toml", &egress)]);
        assert!(e[0].contains("can never be an Elastic IP"), "{e:?}");
    }
    // HAProxy proxy names have no spaces; sockets are absolute paths.
    one_error(
        "[haproxy]\nfrontend = \"f f\"",
        "`frontend` = \"f f\": not a HAProxy proxy name",
    );
    one_error(
        "[haproxy]\nbackend = \"b c\"",
        "`backend` = \"b c\": not a HAProxy proxy name",
    );
    one_error(
        "[haproxy]\nstats_socket = \"admin.sock\"",
        "`stats_socket` = \"admin.sock\": use an absolute path",
    );
    one_error(
        "[rules.lb]\ncheck = { type = \"haproxy\", stats_socket = \"run/admin.sock\" }",
        "`stats_socket` = \"run/admin.sock\": use an absolute path",
    );
    let sync = SYNC.replace(
        "port = 8080",
        "port = 8080\nstats_socket = \"admin.sock\"\nhaproxy_config = \"haproxy.cfg\"",
    );
    let e = errors(&[("a.toml", &sync)]);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].contains("`check.stats_socket` = \"admin.sock\": use an absolute path"),
        "{e:?}"
    );
    assert!(
        e[1].contains("`check.haproxy_config` = \"haproxy.cfg\": use an absolute path"),
        "{e:?}"
    );
    // What examples and tests use stays good: the documentation ranges, real shapes.
    let good = with(
        "[aws]\nregion = \"us-gov-west-1\"\n[alerts]\nsns_topic_arn = \"arn:aws-cn:sns:cn-north-1:123456789012:alerts.fifo\"\n[haproxy]\nstats_socket = \"/run/haproxy/admin.sock\"\nfrontend = \"fe_http:80\"\nbackend = \"be-app_1.v2\"\n[actions.odd]\ntype = \"sns\"\ntopic_arn = \"arn:aws:sns:us-west-2:123456789012:odd\\\"topic\\\\name\"\n[rules.odd]\ncheck = { type = \"haproxy\", stats_socket = \"/run/a\\\"b\\\\c\\td\", backend = \"app\\\"b\\\\e\" }\n[actions.doc2]\ntype = \"claim_eip\"\neip = \"198.51.100.7\"\n[actions.doc1]\ntype = \"claim_eip\"\neip = \"192.0.2.7\"\n[actions.public]\ntype = \"claim_eip\"\neip = \"54.173.141.243\"",
    );
    from_sources(&src(&[("a.toml", &good)])).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_message_names_what_is_actually_wrong() {
    // Peers mode with both names: the backend is what is wrong, and nothing else is.
    let both = SYNC.replace(
        "backend = \"app\"",
        "apply = \"peers\"\npeers = \"mesh\"\nbackend = \"app\"",
    );
    assert_eq!(
        errors(&[("s.toml", &both)]),
        ["s.toml: rule \"app\": `apply = \"peers\"` needs `check.peers` only: remove `check.backend`, since peers mode keeps the `peers` section \"mesh\", not a backend"]
    );
    // Without a name there is no default server prefix to find fault with.
    let none = SYNC.replace("backend = \"app\"", "apply = \"peers\"");
    let e = errors(&[("s.toml", &none)]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("needs `check.peers`, the name of"), "{e:?}");
}

#[test]
fn each_problem_is_reported_once() {
    let e = errors(&[("a.toml", &GOOD.replace("[\"claim\"]", "[\"a\", \"a\"]"))]);
    assert_eq!(
        e,
        [
            "a.toml: rule \"eip\": `on_fail` names unknown action \"a\" (defined actions: claim)",
            "a.toml: rule \"eip\": `on_fail` lists action \"a\" twice",
        ]
    );
    // A defined action listed twice is an error of its own.
    let e = errors(&[(
        "a.toml",
        &GOOD.replace("[\"claim\"]", "[\"claim\", \"claim\"]"),
    )]);
    assert_eq!(
        e,
        ["a.toml: rule \"eip\": `on_fail` lists action \"claim\" twice"]
    );
}

/// Breaker 9's find: a wrong type inside an inline `check` table named `check`, not the key
/// (serde loses the path below a tagged kind), so `keep_alive = 30` left the user guessing.
#[test]
fn a_wrong_type_inside_a_tagged_table_names_its_key() {
    let cases = [
        (
            "[rules.w]\ninterval = \"1s\"\ntimeout = \"500ms\"\ncheck = { type = \"http\", url = \"http://127.0.0.1:8080/\", keep_alive = 30 }\n",
            "rule \"w\": invalid type: integer `30`, expected a string; in `check.keep_alive`",
        ),
        (
            "[rules.w]\ninterval = \"1s\"\ntimeout = \"500ms\"\n[rules.w.check]\ntype = \"tcp\"\nhost = \"127.0.0.1\"\nport = \"80\"\n",
            "rule \"w\": invalid type: string \"80\", expected an integer; in `check.port`",
        ),
    ];
    for (text, want) in cases {
        let e = errors(&[("a.toml", text)]);
        assert_eq!(e, [format!("a.toml: {want}")], "{text}");
    }
}

/// Breaker 13's find: two keys with the same wrong value (`send = 1, expect = 1`) made one
/// message, which taking out either key left as it was, so the error named only `check` (or,
/// in an action, no key) and hid that there were two.
#[test]
fn keys_sharing_one_error_are_each_named() {
    let cases: [(&str, &[&str]); 4] = [
        (
            "[rules.w]\ninterval = \"1s\"\ncheck = { type = \"tcp\", host = \"127.0.0.1\", port = 80, send = 1, expect = 1 }\n",
            &["in `check.expect`", "in `check.send`"],
        ),
        (
            "[rules.w]\ncheck = { type = \"backend_sync\", backend = \"b\", port = 80, source = { type = \"asg\", group = \"g\", drain_timeout = 5, heartbeat_interval = 5 } }\n",
            &["in `check.source.drain_timeout`", "in `check.source.heartbeat_interval`"],
        ),
        // A required key among them.
        (
            "[rules.w]\ncheck = { type = \"backend_sync\", backend = \"b\", port = 80, source = { type = \"consul\", service = 1, datacenter = 1 } }\n",
            &["in `check.source.datacenter`", "in `check.source.service`"],
        ),
        (
            "[actions.a]\ntype = \"sns\"\ntopic_arn = \"arn:aws:sns:us-east-1:123456789012:t\"\nsubject = 1\nmessage = 1\n",
            &["in `message`", "in `subject`"],
        ),
    ];
    for (text, keys) in cases {
        let e = errors(&[("a.toml", text)]);
        assert_eq!(e.len(), keys.len(), "{text}\n{e:#?}");
        for (err, key) in e.iter().zip(keys) {
            assert!(
                err.contains("invalid type: integer") && err.ends_with(key),
                "{text}\n{e:#?}"
            );
        }
    }
    // A key set with the wrong type gets that one error, not also "set it".
    for (text, key) in [
        ("[rules.w]\ncheck = { type = \"process\", pidfile = 1 }\n", "check.pidfile"),
        ("[rules.w]\ncheck = { type = \"process\", name = true }\n", "check.name"),
        ("[rules.w]\ncheck = { type = \"backend_sync\", backend = 1, port = 80, source = { type = \"asg\", group = \"g\" } }\n", "check.backend"),
    ] {
        let e = errors(&[("a.toml", text)]);
        assert_eq!(e.len(), 1, "{text}\n{e:#?}");
        assert!(e[0].ends_with(&format!("in `{key}`")), "{text}\n{e:#?}");
    }
    // An unknown key inside a nested table names that table.
    let e = errors(&[("a.toml", "[rules.w]\ncheck = { type = \"backend_sync\", backend = \"b\", port = 80, source = { type = \"asg\", group = \"g\", bogus = 1 } }\n")]);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].contains("unknown field `bogus`") && e[0].ends_with("; in `check.source`"),
        "{e:#?}"
    );
}

/// Breaker 13: a `body_contains` longer than the part of the body that is searched could
/// never be found, and `validate` passed it (tcp's `expect` was already refused).
#[test]
fn a_body_contains_longer_than_the_body_searched_is_refused() {
    let rule = |n: usize| {
        format!(
            "[rules.w]\ncheck = {{ type = \"http\", url = \"http://127.0.0.1:1/\", body_contains = \"{}\" }}\n",
            "x".repeat(n)
        )
    };
    let limit = crate::checks::http::BODY_LIMIT;
    assert!(from_sources(&src(&[("a.toml", &rule(limit))])).is_ok());
    let e = errors(&[("a.toml", &rule(limit + 1))]);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(e[0].contains("could never be found"), "{e:#?}");
}

/// Breaker 14's finds: a table without its `type` blamed every other key of its rule in turn
/// (never the table); a required key of the wrong type hid the rule's other errors; and a
/// bad key of `check` lost its name when the rule had another error.
#[test]
fn every_error_is_reported_once_at_its_own_key() {
    let cases: [(&str, &[&str]); 12] = [
        (
            "[rules.s]\ncheck = { type = \"backend_sync\", backend = \"app\", port = 80, source = { group = \"g\" } }\n",
            &["missing field `type`; in `check.source`"],
        ),
        (
            "[rules.s]\ncheck = { url = \"http://x/\", host = \"a\" }\n",
            &["missing field `type`; in `check`"],
        ),
        // ... and the rule's other errors are still found, semantic ones too.
        (
            "[rules.s]\nfail_after = \"x\"\non_fail = [\"nope\"]\ncheck = { type = \"backend_sync\", backend = \"app\", port = 80, source = { group = \"g\" } }\n",
            &["missing field `type`; in `check.source`", "in `fail_after`", "unknown action \"nope\""],
        ),
        (
            "[rules.a]\ncheck = { type = \"tcp\", host = \"h\", port = \"x\", send = 1 }\ninterval = 5\n",
            &["in `check.port`", "in `check.send`", "in `interval`"],
        ),
        // Breaker 15: an unknown source `type`, and a string where the source table goes.
        (
            "[rules.s]\ncheck = { type = \"backend_sync\", backend = \"b\", port = 80, source = { type = \"nope\", group = \"g\" } }\ninterval = 5\n",
            &["unknown variant `nope`, expected `asg` or `consul`; in `check.source.type`", "in `interval`"],
        ),
        (
            "[rules.s]\ncheck = { type = \"backend_sync\", backend = \"b\", port = 80, source = \"asg\" }\ninterval = 5\n",
            &["expected a source: a table with `type` = \"asg\" or \"consul\"; in `check.source`", "in `interval`"],
        ),
        // A table where a list goes: one error, at that key.
        (
            "[rules.a]\ncheck = { type = \"http\", url = \"http://x/\" }\non_fail = { a = 1 }\n",
            &["invalid type: map, expected a list; in `on_fail`"],
        ),
        (
            "[rules.a]\non_fail = [\"nope\"]\ncheck = { type = \"http\", url = 5, keep_alive = 7 }\n",
            &["in `check.url`", "in `check.keep_alive`", "unknown action \"nope\""],
        ),
        (
            "[rules.a]\ncheck = { type = \"tcp\", host = \"h\", port = \"x\" }\nfail_after = \"3\"\n",
            &["expected an integer; in `check.port`", "expected an integer; in `fail_after`"],
        ),
        (
            "[rules.a]\ncheck = { type = \"tcp\", host = \"h\", port = \"x\" }\ninterval = 5\n",
            &["expected an integer; in `check.port`", "in `interval`"],
        ),
        (
            "[rules.a]\ncheck = { type = \"http\", url = 5 }\ninterval = 5\n",
            &["expected a string; in `check.url`", "in `interval`"],
        ),
        (
            "[rules.a]\ncheck = { type = \"http\", url = \"http://x/\", host = 5 }\ninterval = 5\n",
            &["expected a string; in `check.host`", "in `interval`"],
        ),
    ];
    for (text, wants) in cases {
        let e = errors(&[("a.toml", text)]);
        assert_eq!(e.len(), wants.len(), "{text}\n{e:#?}");
        for want in wants {
            assert!(
                e.iter().any(|m| m.contains(want)),
                "{want} missing: {text}\n{e:#?}"
            );
        }
    }
}

/// Breaker 15: a key of the wrong type was then also treated as absent, which made another
/// error elsewhere ("no SNS topic" on every action, "set `backend` too", "`check.port` is
/// required", "needs `lifecycle_hook`", a group's member "is not an action").
#[test]
fn a_key_that_did_not_parse_causes_no_second_error() {
    let cases = [
        (
            "[alerts]\nsns_topic_arn = 5\n[rules.a]\ncheck = { type = \"http\", url = \"http://127.0.0.1/\" }\non_fail = [\"e\"]\n[actions.e]\ntype = \"claim_eip\"\neip = \"203.0.113.10\"\n",
            "[alerts]: invalid type: integer `5`, expected a string; in `sns_topic_arn`",
        ),
        (
            "[rules.s]\ncheck = { type = \"backend_sync\", backend = \"b\", port = \"80\", source = { type = \"asg\", group = \"g\" } }\n",
            "expected an integer; in `check.port`",
        ),
        (
            "[haproxy]\nstats_socket = \"/run/h.sock\"\nbackend = 5\nmin_up = 2\n",
            "[haproxy]: invalid type: integer `5`, expected a string; in `backend`",
        ),
        (
            "[rules.s]\ncheck = { type = \"backend_sync\", backend = \"b\", port = 80, source = { type = \"asg\", group = \"g\", lifecycle_hook = 5, heartbeat_interval = \"30s\" } }\n",
            "in `check.source.lifecycle_hook`",
        ),
        ("[aws]\nmax_attempts = \"3\"\n", "[aws]: invalid type: string \"3\", expected an integer; in `max_attempts`"),
    ];
    for (text, want) in cases {
        let e = errors(&[("a.toml", text)]);
        assert_eq!(e.len(), 1, "{text}\n{e:#?}");
        assert!(e[0].contains(want), "{text}\n{e:#?}");
    }
    // Members without a `type`: their own errors only, not "is not an action" in the group.
    let text = "[actions.a]\nprivate_ip = \"10.0.0.9\"\n[actions.b]\nprivate_ip = \"10.0.0.8\"\n[actions.grp]\ntype = \"claim_group\"\nmembers = [\"a\", \"b\"]\nsns_topic_arn = \"arn:aws:sns:us-east-1:123456789012:t\"\n";
    let e = errors(&[("a.toml", text)]);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(
        e.iter().all(|m| m.ends_with("missing field `type`")),
        "{e:#?}"
    );
}

/// A check, action or source of the wrong shape is answered with the kinds there are: every
/// kind `type` accepts (serde's own list, from an unknown one) is named.
#[test]
fn a_wrong_shape_names_every_kind() {
    for (wrong_shape, unknown) in [
        ("[rules.w]\ncheck = \"http\"\n", "[rules.w]\ncheck = { type = \"zz\" }\n"),
        ("[actions]\na = 3\n", "[actions.a]\ntype = \"zz\"\n"),
        (
            "[rules.w]\ncheck = { type = \"backend_sync\", backend = \"b\", port = 80, source = \"asg\" }\n",
            "[rules.w]\ncheck = { type = \"backend_sync\", backend = \"b\", port = 80, source = { type = \"zz\" } }\n",
        ),
    ] {
        let listed = errors(&[("a.toml", unknown)]).join("\n");
        let kinds: Vec<&str> = listed
            .split("expected one of ")
            .nth(1)
            .or_else(|| listed.split("expected ").nth(1))
            .unwrap_or_else(|| panic!("{listed}"))
            .split(';')
            .next()
            .unwrap_or_default()
            .split(['`', ','])
            .map(str::trim)
            .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .filter(|k| *k != "or")
            .collect();
        assert!(kinds.len() >= 2, "{listed}");
        let said = errors(&[("a.toml", wrong_shape)]).join("\n");
        for k in kinds {
            assert!(said.contains(&format!("\"{k}\"")), "{k} missing from: {said}");
        }
    }
}

#[test]
fn a_part_that_failed_to_parse_gets_its_own_error_only() {
    let consul = "[rules.c]\n[rules.c.check]\ntype = \"backend_sync\"\nbackend = \"api\"\n[rules.c.check.source]\ntype = \"consul\"\nservice = \"s\"\npassing_only = \"yes\"\n";
    let cases = [
        (consul, "invalid type: string \"yes\", expected a boolean; in `check.source.passing_only`"),
        ("[actions.x]\ntype = \"exec\"\ncommand = \"/bin/x\"\n", "invalid type: string \"/bin/x\", expected a list"),
        ("[actions.x]\ntype = \"sns\"\ntopic_arn = 3\n", "invalid type: integer `3`, expected a string"),
        ("[actions.x]\ntype = \"claim_eip\"\neip = 3\nsns_topic_arn = \"arn:aws:sns:us-east-1:123456789012:t\"\n", "invalid type: integer `3`, expected a string"),
        ("[actions.x]\ntype = \"claim_eip\"\neip = \"203.0.113.77\"\nsns_topic_arn = 3\n", "invalid type: integer `3`, expected a string"),
    ];
    for (extra, want) in cases {
        let e = errors(&[("a.toml", &format!("{GOOD}\n{extra}"))]);
        assert_eq!(e.len(), 1, "no follow-on \"missing\" error: {e:#?}");
        assert!(e[0].contains(want), "{e:?}");
    }
}

#[test]
fn no_internal_type_name_reaches_the_user() {
    let cases = [
        ("[actions]\nx = \"claim\"\n", "expected an action: a table with `type` = \"claim_eip\", \"claim_private_ip\", \"claim_route\", \"claim_group\", \"sns\" or \"exec\""),
        ("[actions.x]\ntype = 3\n", "expected a string naming the kind; in `type`"),
        ("[actions.x]\ntype = \"claim_eip\"\neip = 3\nsns_topic_arn = \"arn:aws:sns:us-east-1:123456789012:t\"\n", "expected a string; in `eip`"),
        ("[rules.q]\ncheck = \"http\"\n", "expected a check: a table with `type` = \"http\", \"haproxy\", \"egress\", \"tcp\", \"program\", \"process\", \"file\" or \"backend_sync\""),
        ("[rules.q]\ncheck = { type = \"http\", url = \"http://x/\", expect_status = [true] }\n", "expected a status code like 200 or a class like \"2xx\""),
        ("[rules]\nq = 3\n", "expected a rule: a table like [rules.NAME]"),
    ];
    for (extra, want) in cases {
        let e = errors(&[("a.toml", &format!("{GOOD}\n{extra}"))]);
        assert_eq!(e.len(), 1, "{extra}: {e:?}");
        assert!(e[0].contains(want), "{extra}: {e:?}");
        for internal in [
            "Raw",
            "enum",
            "struct",
            "variant identifier",
            "did not match",
        ] {
            assert!(!e[0].contains(internal), "{extra}: {e:?}");
        }
    }
}

/// Breaker: a FIFO named `*.toml` in conf.d made `validate` hang, and a SIGHUP reload with it
/// hung the daemon's stop. An entry that is not a regular file is reported, never opened.
#[test]
fn a_config_entry_that_is_not_a_regular_file_is_reported_without_being_opened() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.toml"), GOOD).unwrap();
    nix::unistd::mkfifo(
        &dir.path().join("f.toml"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let path = dir.path().to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(load(&path).map(|_| ()).map_err(|e| e.to_string()));
    });
    let e = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("load returned instead of blocking on the FIFO")
        .unwrap_err();
    assert!(
        e.contains("f.toml") && e.contains("cannot read: it is a FIFO, not a regular file"),
        "{e}"
    );
}

/// Breaker: one unreadable `*.toml` entry was the only error reported; the other files'
/// errors came one round later. They are reported together.
#[test]
fn an_unreadable_config_file_does_not_hide_the_other_files_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.toml"), GOOD).unwrap();
    std::fs::create_dir(dir.path().join("b.toml")).unwrap();
    std::fs::write(dir.path().join("c.toml"), "x =\n").unwrap();
    std::fs::write(dir.path().join("d.toml"), "[rules.q]\ninterval = \"5\"\n").unwrap();
    let e = load(dir.path()).unwrap_err();
    let files: Vec<_> =
        e.0.iter()
            .map(|e| e.file.file_name().unwrap().to_owned())
            .collect();
    for f in ["b.toml", "c.toml", "d.toml"] {
        assert!(files.iter().any(|x| x == f), "{f} missing: {e}");
    }
}

const PRIVATE: &str = r#"
[node]
subnet_cidr = "10.0.1.0/24"
vpc_cidrs = ["10.0.0.0/16", "10.1.0.0/16"]
[alerts]
sns_topic_arn = "arn:aws:sns:us-east-1:123456789012:failover"
[rules.web]
check = { type = "http", url = "http://127.0.0.1/" }
on_fail = ["vip", "overlay"]
[actions.vip]
type = "claim_private_ip"
private_ip = "10.0.1.50"
reachability = ["10.0.0.2:53", "http://10.0.2.10:8404/health"]
[actions.overlay]
type = "claim_route"
destination = "192.168.100.10"
route_table_ids = ["rtb-0a", "rtb-0b"]
reachability = ["10.0.0.2:53"]
"#;

#[test]
fn private_claims_get_the_documented_defaults() {
    let c = from_sources(&src(&[("a.toml", PRIVATE)])).unwrap_or_else(|e| panic!("{e}"));
    let ActionSpec::ClaimPrivateIp(v) = &c.actions["vip"] else {
        panic!()
    };
    assert_eq!(v.private_ip, Ipv4Addr::new(10, 0, 1, 50));
    assert_eq!(v.interface, None);
    assert_eq!(v.reachability.targets.len(), 2);
    assert_eq!(v.reachability.timeout, Duration::from_secs(2));
    assert_eq!(v.owner_poll, Duration::from_secs(10));
    assert_eq!(v.hold_down, Duration::from_secs(300));
    assert_eq!(
        v.sns_topic_arn.as_deref(),
        Some("arn:aws:sns:us-east-1:123456789012:failover")
    );
    let ActionSpec::ClaimRoute(r) = &c.actions["overlay"] else {
        panic!()
    };
    assert_eq!(r.interface, "lo");
    assert_eq!(r.route_table_ids, ["rtb-0a", "rtb-0b"]);
    assert!(c.actions["overlay"].is_claim());
}

/// Each misuse the issue names, and the others, all reported at once.
#[test]
fn every_misuse_of_a_private_claim_is_an_error() {
    let bad = PRIVATE
        .replace("private_ip = \"10.0.1.50\"", "private_ip = \"10.0.2.50\"")
        .replace(
            "destination = \"192.168.100.10\"",
            "destination = \"10.1.4.4\"",
        )
        .replace(
            "route_table_ids = [\"rtb-0a\", \"rtb-0b\"]",
            "route_table_ids = [\"rtb-0a\", \"rtb-0a\", \"igw-1\"]",
        )
        .replace(
            "reachability = [\"10.0.0.2:53\"]\n",
            "reachability = [\"10.0.0.2\"]\ninterface = \"a/b\"\n",
        );
    let e = errors(&[("a.toml", &bad)]);
    let want = [
        "`private_ip` = \"10.0.2.50\" is in another subnet than this node's ([node] subnet_cidr = \"10.0.1.0/24\")",
        "`destination` = \"10.1.4.4\" is inside the VPC ([node] vpc_cidrs has \"10.1.0.0/16\")",
        "`route_table_ids` lists rtb-0a twice",
        "`route_table_ids` entry \"igw-1\": a route table id is \"rtb-\" and hexadecimal digits",
        "`reachability` entry \"10.0.0.2\": write \"IPv4:port\"",
        "`interface` = \"a/b\": not a network interface name",
    ];
    for w in want {
        assert!(e.iter().any(|x| x.contains(w)), "missing {w:?} in {e:#?}");
    }
    assert_eq!(e.len(), want.len(), "{e:#?}");

    let missing = "[rules.web]\ncheck = { type = \"http\", url = \"http://127.0.0.1/\" }\non_fail = [\"vip\", \"overlay\"]\n\
        [actions.vip]\ntype = \"claim_private_ip\"\n[actions.overlay]\ntype = \"claim_route\"\nroute_table_ids = []\nreachability = []\n";
    let e = errors(&[("a.toml", missing)]);
    for w in [
        "action \"vip\": missing `private_ip`",
        "action \"vip\": missing `reachability`",
        "action \"vip\": no SNS topic",
        "action \"overlay\": missing `destination`",
        "action \"overlay\": `route_table_ids` is empty",
        "action \"overlay\": `reachability` is empty",
    ] {
        assert!(e.iter().any(|x| x.contains(w)), "missing {w:?} in {e:#?}");
    }

    let twice = format!("{PRIVATE}[actions.again]\ntype = \"claim_private_ip\"\nprivate_ip = \"10.0.1.50\"\nreachability = [\"10.0.0.2:53\"]\n");
    let e = errors(&[("a.toml", &twice)]);
    assert!(
        e.iter().any(|x| x
            .contains("claims 10.0.1.50 like action \"again\": one claim action per private IP")),
        "{e:?}"
    );
    let on_recover = PRIVATE.replace(
        "on_fail = [\"vip\", \"overlay\"]",
        "on_recover = [\"overlay\"]",
    );
    let e = errors(&[("a.toml", &on_recover)]);
    assert!(
        e.iter()
            .any(|x| x.contains("`on_recover` lists claim action \"overlay\"")),
        "{e:?}"
    );
    for reserved in ["10.0.1.0", "10.0.1.2", "10.0.1.3", "10.0.1.255"] {
        let r = PRIVATE.replace(
            "private_ip = \"10.0.1.50\"",
            &format!("private_ip = \"{reserved}\""),
        );
        let e = errors(&[("a.toml", &r)]);
        assert!(
            e.iter()
                .any(|x| x.contains("one of the five addresses EC2 reserves")),
            "{reserved}: {e:#?}"
        );
    }
    let e = errors(&[("a.toml", &PRIVATE.replace("rtb-0b", "rtb-xyz"))]);
    assert!(
        e.iter()
            .any(|x| x.contains("\"rtb-xyz\": a route table id is")),
        "{e:#?}"
    );
    let cidr = PRIVATE.replace(
        "subnet_cidr = \"10.0.1.0/24\"",
        "subnet_cidr = \"10.0.1.7/24\"",
    );
    let e = errors(&[("a.toml", &cidr)]);
    assert!(
        e.iter()
            .any(|x| x.contains("host bits set; the block is 10.0.1.0/24")),
        "{e:?}"
    );
}

#[test]
fn a_group_moves_claim_actions_only_and_is_the_only_one_to_list_them() {
    let group = format!(
        "{PRIVATE}[actions.eip]\ntype = \"claim_eip\"\neip = \"203.0.113.10\"\n[actions.lb]\ntype = \"claim_group\"\nmembers = [\"eip\", \"overlay\"]\n"
    )
    .replace("on_fail = [\"vip\", \"overlay\"]", "on_fail = [\"lb\", \"vip\"]");
    let c = from_sources(&src(&[("a.toml", &group)])).unwrap_or_else(|e| panic!("{e}"));
    let ActionSpec::ClaimGroup(g) = &c.actions["lb"] else {
        panic!()
    };
    assert_eq!(g.members, ["eip", "overlay"]);
    assert_eq!(
        g.sns_topic_arn.as_deref(),
        Some("arn:aws:sns:us-east-1:123456789012:failover")
    );

    let bad = format!(
        "{PRIVATE}[actions.page]\ntype = \"sns\"\n[actions.one]\ntype = \"claim_group\"\nmembers = [\"vip\"]\n\
         [actions.eip]\ntype = \"claim_eip\"\neip = \"203.0.113.10\"\n[actions.g0]\ntype = \"claim_group\"\nmembers = [\"eip\", \"overlay\"]\n\
         [actions.g1]\ntype = \"claim_group\"\nmembers = [\"vip\", \"page\", \"nope\", \"one\", \"g0\"]\n\
         [actions.g2]\ntype = \"claim_group\"\nmembers = [\"vip\", \"overlay\", \"overlay\"]\n"
    );
    let e = errors(&[("a.toml", &bad)]);
    for w in [
        "action \"one\": `members` lists 1 action(s): a group moves at least two addresses together",
        "action \"g1\": `members` lists \"page\", which is not a claim action",
        "action \"g1\": `members` lists \"nope\", which is not an action",
        "action \"g1\": `members` lists group \"g0\"",
        "action \"g2\": `members` lists [\"overlay\"] twice",
    ] {
        assert!(e.iter().any(|x| x.contains(w)), "missing {w:?} in {e:#?}");
    }
    assert!(
        !e.iter().any(|x| x.contains("lists \"one\"")),
        "a broken member is reported once, by itself: {e:#?}"
    );
    let two_groups = format!(
        "{PRIVATE}[actions.g1]\ntype = \"claim_group\"\nmembers = [\"vip\", \"overlay\"]\n[actions.g2]\ntype = \"claim_group\"\nmembers = [\"overlay\", \"vip\"]\n"
    )
    .replace("on_fail = [\"vip\", \"overlay\"]", "on_fail = [\"g1\", \"vip\"]");
    let e = errors(&[("a.toml", &two_groups)]);
    assert!(
        e.iter()
            .any(|x| x.contains("already a member of group \"g1\"")),
        "{e:#?}"
    );
    assert!(
        e.iter().any(|x| x.contains(
            "rule \"web\": lists \"vip\", a member of group \"g1\": list the group instead"
        )),
        "{e:#?}"
    );
}

#[test]
fn the_new_check_kinds_get_their_defaults_and_the_rules_timeout() {
    let c = from_sources(&src(&[(
        "a.toml",
        r#"
[rules.port]
check = { type = "tcp", host = "::1", port = 6379, send = "PING\r\n", expect = "+PONG" }
timeout = "3s"
[rules.script]
check = { type = "program", command = ["/usr/local/bin/check", "-q"] }
[rules.proc]
check = { type = "process", pidfile = "/run/haproxy.pid" }
[rules.flag]
check = { type = "file", path = "/etc/haproxy/maintenance", exists = false }
[rules.beat]
check = { type = "file", path = "/var/lib/app/beat", max_age = "2m" }
[rules.capacity]
check = { type = "haproxy", backend = "app", min_up = 2, min_up_ratio = 0.5 }
"#,
    )]))
    .unwrap();
    let by = |n: &str| &c.rules.iter().find(|r| r.name == n).unwrap().check;
    let CheckSpec::Tcp(t) = by("port") else {
        panic!()
    };
    assert_eq!((t.port, t.timeout), (6379, Duration::from_secs(3)));
    assert_eq!(t.send.as_deref(), Some("PING\r\n"));
    let CheckSpec::Program(p) = by("script") else {
        panic!()
    };
    assert_eq!(
        (p.expect_exit.as_slice(), p.timeout, p.rule.as_str()),
        (&[0][..], defaults::TIMEOUT, "script")
    );
    let CheckSpec::File(f) = by("flag") else {
        panic!()
    };
    assert!(!f.exists && f.max_age.is_none());
    let CheckSpec::File(f) = by("beat") else {
        panic!()
    };
    assert!(f.exists && f.max_age == Some(Duration::from_secs(120)));
    let CheckSpec::Haproxy(h) = by("capacity") else {
        panic!()
    };
    assert_eq!((h.min_up, h.min_up_ratio), (Some(2), Some(0.5)));
    // From [haproxy]: its socket, this backend and minimums.
    assert_eq!(
        h.stats_socket.as_deref(),
        Some(std::path::Path::new(defaults::HAPROXY_SOCKET))
    );
}

#[test]
fn bad_values_of_the_new_check_kinds_are_all_reported() {
    let long = "x".repeat(5000);
    let text = r#"
[rules.a]
check = { type = "tcp", host = "[::1]", port = 70000, send = "" }
[rules.b]
check = { type = "tcp", host = "10.0.0.1:80", port = 80, expect = "" }
[rules.c]
check = { type = "program", command = ["check.sh"], expect_exit = [256] }
[rules.d]
check = { type = "program", command = [], expect_exit = [] }
[rules.e]
check = { type = "process" }
[rules.f]
check = { type = "process", pidfile = "run/x.pid", name = "/usr/sbin/haproxy" }
[rules.g]
check = { type = "file", path = "maintenance", exists = false, max_age = "5m" }
[rules.h]
check = { type = "file", path = "/x", max_age = "0s" }
[rules.i]
check = { type = "haproxy", min_up = 0, min_up_ratio = 1.5 }
[rules.j]
check = { type = "haproxy", min_up = 2 }
[rules.k]
check = { type = "program", command = "/bin/true" }
[rules.m]
check = { type = "process", pidfile = "/proc/kmsg" }
[rules.l]
check = { type = "tcp", host = "127.0.0.1", port = 1, expect = "EXPECT_LONG" }
"#
    .replace("EXPECT_LONG", &long);
    let errs = errors(&[("bad.toml", &text)]);
    let all = errors_text(&errs);
    for want in [
        "rule \"a\": `host` = \"[::1]\": write an IPv6 address without brackets",
        "rule \"a\": `port` = 70000: must be between 1 and 65535",
        "rule \"a\": `send` is empty",
        "rule \"b\": `host` = \"10.0.0.1:80\": not an IP address or a DNS name (the port goes in `port`)",
        "rule \"b\": `expect` is empty",
        "rule \"c\": `command`: the program \"check.sh\" must be an absolute path",
        "rule \"c\": `expect_exit`: 256 is not an exit status (0 to 255)",
        "rule \"d\": missing `command`",
        "rule \"d\": `expect_exit` is empty",
        "rule \"e\": set `pidfile`",
        "rule \"f\": `pidfile` = \"run/x.pid\": use an absolute path",
        "rule \"f\": `name` = \"/usr/sbin/haproxy\": a command name",
        "rule \"g\": `path` = \"maintenance\": use an absolute path",
        "rule \"g\": `max_age` needs `exists = true`",
        "rule \"h\": `max_age` must be greater than zero",
        "rule \"i\": `min_up` = 0: must be between 1 and 10000 servers",
        "rule \"i\": `min_up_ratio` = 1.5: must be more than 0 and at most 1",
        "rule \"j\": `min_up` and `min_up_ratio` count the servers of a backend: set `backend` too",
        "rule \"k\": invalid type: string \"/bin/true\", expected a list",
        "rule \"m\": `pidfile` = \"/proc/kmsg\": a file under /proc, /sys or /dev is not a pidfile",
        "rule \"l\": `expect` is 5000 bytes: only the answer's first 4096 bytes are looked at",
    ] {
        assert!(all.contains(want), "missing {want:?} in:\n{all}");
    }
    // A `command` that did not parse is not also reported missing.
    assert!(!all.contains("rule \"k\": missing `command`"), "{all}");
}

fn errors_text(errs: &[String]) -> String {
    errs.join("\n")
}

#[test]
fn haproxy_minimums_come_along_only_with_their_backend() {
    let c = from_sources(&src(&[(
        "a.toml",
        r#"
[haproxy]
backend = "app"
min_up = 3
[rules.inherits]
check = { type = "haproxy" }
[rules.own-backend]
check = { type = "haproxy", backend = "api" }
[rules.own-minimum]
check = { type = "haproxy", backend = "app", min_up_ratio = 0.5 }
[rules.its-backend-own-minimum]
check = { type = "haproxy", min_up_ratio = 0.25 }
"#,
    )]))
    .unwrap();
    let by = |n: &str| match &c.rules.iter().find(|r| r.name == n).unwrap().check {
        CheckSpec::Haproxy(h) => (h.backend.clone(), h.min_up, h.min_up_ratio),
        _ => panic!(),
    };
    assert_eq!(by("inherits"), (Some("app".into()), Some(3), None));
    assert_eq!(by("own-backend"), (Some("api".into()), None, None));
    assert_eq!(by("own-minimum"), (Some("app".into()), None, Some(0.5)));
    assert_eq!(
        by("its-backend-own-minimum"),
        (Some("app".into()), None, Some(0.25))
    );
    assert_eq!((c.haproxy.min_up, c.haproxy.min_up_ratio), (Some(3), None));
}
