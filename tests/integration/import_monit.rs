//! `watchdog import-monit` on the seed's OpsWorks setup (tests/fixtures/monit), on a load
//! balancer's process, program, file and port checks (tests/fixtures/monit/kinds) and on the
//! other shapes operators have: the output validates, and nothing is dropped without being listed.

use std::process::{Command, Output};
use testkit::repo;
use testkit::watchdog::bin;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn import(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(bin())
        .arg("import-monit")
        .args(args)
        .output()
        .unwrap()
}

fn validate(path: &std::path::Path) -> Output {
    Command::new(bin())
        .args(["validate", "--config"])
        .arg(path)
        .output()
        .unwrap()
}

#[test]
fn the_seeds_monit_rule_and_failtome_sh_become_a_rule_and_an_opsworks_claim() {
    let root = repo().join("tests/fixtures/monit");
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("watchdog.toml");
    let out = import(&[
        "--root".as_ref(),
        root.as_os_str(),
        root.join("etc/monit/monitrc").as_os_str(),
        "--output".as_ref(),
        out_path.as_os_str(),
    ]);
    let stderr = text(&out.stderr);
    // `set logfile` has no equivalent: listed, with its line, and the exit says so.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("import-monit: 2 files, 1 rule, 1 action"),
        "{stderr}"
    );
    assert!(
        stderr.contains("NOT TRANSLATED: ")
            && stderr.contains("etc/monit/monitrc:3: set logfile syslog facility log_daemon"),
        "{stderr}"
    );
    assert!(
        stderr.contains("haproxywatch.monitrc:8: unterminated quote"),
        "{stderr}"
    );
    let written = std::fs::read_to_string(&out_path).unwrap();
    assert!(written.contains("# NOT TRANSLATED"), "{written}");
    assert!(written.contains("monitrc:3: set logfile"), "{written}");

    let v = validate(&out_path);
    assert_eq!(v.status.code(), Some(0), "{}\n{written}", text(&v.stderr));

    let t: toml::Table = written.parse().unwrap();
    let rule = &t["rules"]["54.173.141.243"];
    assert_eq!(
        rule["check"]["url"].as_str(),
        Some("http://54.173.141.243:80/")
    );
    assert_eq!(rule["interval"].as_str(), Some("60s"), "set daemon 60");
    assert_eq!(rule["timeout"].as_str(), Some("30s"));
    assert_eq!(rule["fail_after"].as_integer(), Some(3), "for 3 cycles");
    assert_eq!(rule["recover_after"].as_integer(), Some(1));
    let on_fail = rule["on_fail"].as_array().unwrap();
    assert_eq!(on_fail.len(), 1);
    let claim = &t["actions"][on_fail[0].as_str().unwrap()];
    assert_eq!(claim["type"].as_str(), Some("claim_eip"));
    assert_eq!(claim["provider"].as_str(), Some("opsworks"));
    assert_eq!(claim["eip"].as_str(), Some("54.173.141.243"));
    assert_eq!(
        claim["sns_topic_arn"].as_str(),
        Some("arn:aws:sns:us-east-1:123456789012:haproxy-failover")
    );
    // The script's settings for the main file: comments, and on stderr to set by hand.
    assert!(t.get("opsworks").is_none() && t.get("egress").is_none() && t.get("aws").is_none());
    for line in [
        "[opsworks] instance_id = \"4d6d1710-ded9-42a1-b08e-b043ad7af1e2\"",
        "[opsworks] region = \"us-east-1\"",
        "[egress] checkip_url = \"http://checkip.amazonaws.com\"",
        "[aws] region = \"us-east-1\"",
    ] {
        assert!(
            written.contains(&format!("#   {line}\n")),
            "{line}: {written}"
        );
        assert!(
            stderr.contains(&format!(
                "SET BY HAND in /etc/haproxy-watchdog/watchdog.toml: {line} -- from /etc/failtome.sh"
            )),
            "{line}: {stderr}"
        );
    }
}

/// A tester's find: docs/migration.md puts the output in conf.d/, but it held `[aws]`,
/// `[egress]` and `[opsworks]`, which the packaged watchdog.toml already sets; each section is
/// set in one file only, so `validate` of the installed layout failed. The claims translated
/// from failover scripts (OpsWorks and EC2) validate there now, with nothing lost.
#[test]
fn import_monit_output_validates_in_conf_d_beside_the_packaged_main_file() {
    for (fixture, region) in [("", "us-east-1"), ("kinds", "eu-west-1")] {
        let root = repo().join("tests/fixtures/monit").join(fixture);
        let etc = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(etc.path().join("conf.d")).unwrap();
        std::fs::copy(
            repo().join("packaging/watchdog.toml"),
            etc.path().join("watchdog.toml"),
        )
        .unwrap();
        let out_path = etc.path().join("conf.d/10-from-monit.toml");
        let out = import(&[
            root.join("etc/monit/monitrc").as_os_str(),
            "--root".as_ref(),
            root.as_os_str(),
            "-o".as_ref(),
            out_path.as_os_str(),
        ]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{fixture}: {stderr}");
        assert!(!stderr.contains("needs editing"), "{fixture}: {stderr}");
        let written = std::fs::read_to_string(&out_path).unwrap();

        let v = validate(&etc.path().join("watchdog.toml"));
        assert_eq!(
            v.status.code(),
            Some(0),
            "{fixture}: {}\n{written}",
            text(&v.stderr)
        );
        assert!(
            text(&v.stdout).contains("from 2 files"),
            "{}",
            text(&v.stdout)
        );

        // The claim is there, with its topic; what belongs in the main file is said twice.
        let t: toml::Table = written.parse().unwrap();
        let claims: Vec<&toml::Value> = t["actions"]
            .as_table()
            .unwrap()
            .values()
            .filter(|a| a["type"].as_str() == Some("claim_eip"))
            .collect();
        assert_eq!(claims.len(), 1, "{fixture}: {written}");
        assert!(claims[0]["sns_topic_arn"].as_str().is_some());
        assert!(
            written.contains("# SET THESE IN /etc/haproxy-watchdog/watchdog.toml by hand."),
            "{written}"
        );
        let line = format!("[aws] region = \"{region}\"");
        assert!(written.contains(&format!("#   {line}\n")), "{written}");
        assert!(
            stderr.contains(&format!(
                "SET BY HAND in /etc/haproxy-watchdog/watchdog.toml: {line}"
            )),
            "{stderr}"
        );
        assert!(
            stderr.contains(
                "SET BY HAND in /etc/haproxy-watchdog/watchdog.toml: [egress] checkip_url = "
            ),
            "{stderr}"
        );
    }
}

#[test]
fn scripts_that_are_not_failover_scripts_become_exec_actions_and_the_rest_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(etc.join("monit/conf.d")).unwrap();
    std::fs::write(etc.join("page-ops"), "#!/bin/sh\nlogger -t monit \"$1\"\n").unwrap();
    std::fs::write(
        etc.join("monit/monitrc"),
        "set daemon 30\nset mailserver localhost\ninclude /etc/monit/conf.d/*.conf\n",
    )
    .unwrap();
    std::fs::write(
        etc.join("monit/conf.d/web.conf"),
        r#"check host web with address 10.0.0.5
  group www
  if failed port 443 protocol https request "/health" status = 200
     with timeout 5 seconds 2 times within 3 cycles then exec "/etc/page-ops down"
     else if succeeded then exec "/etc/page-ops up"
  if failed port 8080 protocol http hostheader "www.example.com" for 2 cycles then alert
  if cpu > 80% then alert
check process haproxy with pidfile /run/haproxy.pid
"#,
    )
    .unwrap();
    // Not matched by *.conf: must not be read.
    std::fs::write(etc.join("monit/conf.d/old.bak"), "this is not monit syntax").unwrap();
    let out = import(&[
        "--root".as_ref(),
        dir.path().as_os_str(),
        etc.join("monit/monitrc").as_os_str(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let toml_text = text(&out.stdout);
    for line in [
        "monitrc:2: set mailserver localhost",
        "web.conf:2: group www",
        "web.conf:6: then alert -- no equivalent",
        "web.conf:7: if cpu > 80% then alert -- only connection (`if failed ...`), existence",
        "web.conf:8: check process haproxy with pidfile /run/haproxy.pid",
    ] {
        assert!(stderr.contains(line), "{line}: {stderr}");
        assert!(toml_text.contains(line), "{line}: {toml_text}");
    }
    assert!(
        stderr.contains("`2 times within 3 cycles` became 2 consecutive failed cycles"),
        "{stderr}"
    );
    assert!(!stderr.contains("old.bak") && !toml_text.contains("not monit syntax"));

    let t: toml::Table = toml_text.parse().unwrap();
    let web = &t["rules"]["web"];
    assert_eq!(
        web["check"]["url"].as_str(),
        Some("https://10.0.0.5:443/health")
    );
    assert_eq!(
        web["check"]["expect_status"].as_array().unwrap()[0].as_integer(),
        Some(200)
    );
    assert_eq!(web["interval"].as_str(), Some("30s"));
    assert_eq!(web["fail_after"].as_integer(), Some(2));
    let down = &t["actions"][web["on_fail"][0].as_str().unwrap()];
    assert_eq!(down["type"].as_str(), Some("exec"));
    assert_eq!(
        down["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect::<Vec<_>>(),
        ["/etc/page-ops", "down"]
    );
    let up = &t["actions"][web["on_recover"][0].as_str().unwrap()];
    assert_eq!(up["command"][1].as_str(), Some("up"));
    let web2 = &t["rules"]["web-2"];
    assert_eq!(web2["check"]["host"].as_str(), Some("www.example.com"));
    assert_eq!(web2["on_fail"].as_array().unwrap().len(), 0);

    // What was translated validates as is.
    let path = dir.path().join("out.toml");
    std::fs::write(&path, &toml_text).unwrap();
    let v = validate(&path);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v.stderr));
}

#[test]
fn an_unreadable_file_exits_2_and_a_clean_conversion_exits_0() {
    let out = import(&["/nonexistent/monitrc".as_ref()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read /nonexistent/monitrc"));

    // The seed's rule alone, its script out of reach: an `exec` action, nothing untranslated.
    let dir = tempfile::tempdir().unwrap();
    let rule = repo().join("tests/fixtures/monit/etc/monit.d/haproxywatch.monitrc");
    let out = import(&["--root".as_ref(), dir.path().as_os_str(), rule.as_os_str()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("could not read"), "{stderr}");
    let t: toml::Table = text(&out.stdout).parse().unwrap();
    let action = &t["actions"]["exec-failtome.sh"];
    assert_eq!(action["command"][0].as_str(), Some("/etc/failtome.sh"));
}

/// The field report's monitrc: the URL form, `retry`, and `else if succeeded for N cycles`.
const URL_FORM: &str = r#"set daemon 30
check host web.example.com with address 203.0.113.20
  if failed url http://web.example.com/health with timeout 2 seconds and retry 3 for 15 cycles
     then exec "/usr/local/bin/to-backup.sh"
  else if succeeded for 20 cycles then exec "/usr/local/bin/to-main.sh"
"#;

/// `monitrc` under a fresh root that also holds the two scripts it execs (not failover scripts).
fn url_form_root(monitrc: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("usr/local/bin");
    std::fs::create_dir_all(&bin).unwrap();
    for s in ["to-backup.sh", "to-main.sh"] {
        std::fs::write(bin.join(s), "#!/bin/sh\nlogger -t failover \"$0\"\n").unwrap();
    }
    let path = dir.path().join("monitrc");
    std::fs::write(&path, monitrc).unwrap();
    (dir, path)
}

#[test]
fn url_form_with_retry_and_else_if_succeeded_for_n_cycles_becomes_an_http_rule() {
    let (dir, monitrc) = url_form_root(URL_FORM);
    let out_path = dir.path().join("watchdog.toml");
    let out = import(&[
        "--root".as_ref(),
        dir.path().as_os_str(),
        monitrc.as_os_str(),
        "--output".as_ref(),
        out_path.as_os_str(),
    ]);
    let stderr = text(&out.stderr);
    // Everything translated; `retry` only approximately, which is said, not listed.
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("import-monit: 1 file, 1 rule, 2 actions"),
        "{stderr}"
    );
    assert!(
        stderr.contains("approximately: ") && stderr.contains("monitrc:3: `retry 3`"),
        "{stderr}"
    );
    let written = std::fs::read_to_string(&out_path).unwrap();
    let v = validate(&out_path);
    assert_eq!(v.status.code(), Some(0), "{}\n{written}", text(&v.stderr));

    let t: toml::Table = written.parse().unwrap();
    let rule = &t["rules"]["web.example.com"];
    assert_eq!(rule["check"]["type"].as_str(), Some("http"));
    assert_eq!(
        rule["check"]["url"].as_str(),
        Some("http://web.example.com/health")
    );
    assert_eq!(rule["interval"].as_str(), Some("30s"), "set daemon 30");
    assert_eq!(rule["timeout"].as_str(), Some("2s"));
    assert_eq!(rule["fail_after"].as_integer(), Some(15));
    assert_eq!(rule["recover_after"].as_integer(), Some(20));
    let action = |key: &str| {
        let name = rule[key].as_array().unwrap()[0].as_str().unwrap();
        let a = &t["actions"][name];
        assert_eq!(a["type"].as_str(), Some("exec"), "{key}");
        a["command"][0].as_str().unwrap().to_owned()
    };
    assert_eq!(action("on_fail"), "/usr/local/bin/to-backup.sh");
    assert_eq!(action("on_recover"), "/usr/local/bin/to-main.sh");
}

#[test]
fn url_form_variants_credentials_content_and_rate_spellings_validate_or_are_listed() {
    let (dir, monitrc) = url_form_root(
        r#"set daemon 30
check host web with address 203.0.113.20
  if failed url https://web.example.com:8443/health?deep=1 content = "^OK$"
     timeout 2 seconds retry 2 for 3 times within 5 cycles then exec "/usr/local/bin/to-backup.sh"
  else if passed for 2 cycle then exec "/usr/local/bin/to-main.sh"
  if failed port 80 protocol http request "/ping" retry 3 with timeout 1 seconds 2 times 3 cycles
     then exec "/usr/local/bin/to-backup.sh"
  if failed url http://ops:hunter2@web.example.com/admin content != "maintenance" then exec "/usr/local/bin/to-backup.sh"
"#,
    );
    let out = import(&[
        "--root".as_ref(),
        dir.path().as_os_str(),
        monitrc.as_os_str(),
    ]);
    let stderr = text(&out.stderr);
    let toml_text = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("hunter2") && !toml_text.contains("hunter2"));
    for line in [
        "monitrc:8: content != \"maintenance\" -- no equivalent",
        "monitrc:8: the URL's user name (\"ops\") and password -- not copied",
    ] {
        assert!(stderr.contains(line), "{line}: {stderr}");
        assert!(toml_text.contains(line), "{line}: {toml_text}");
    }
    assert!(
        toml_text.contains("http://ops:***@web.example.com/admin"),
        "{toml_text}"
    );

    let t: toml::Table = toml_text.parse().unwrap();
    let web = &t["rules"]["web"];
    assert_eq!(
        web["check"]["url"].as_str(),
        Some("https://web.example.com:8443/health?deep=1")
    );
    assert_eq!(web["check"]["body_contains"].as_str(), Some("OK"));
    assert_eq!(web["fail_after"].as_integer(), Some(3));
    assert_eq!(web["recover_after"].as_integer(), Some(2));
    let ping = &t["rules"]["web-2"];
    assert_eq!(
        ping["check"]["url"].as_str(),
        Some("http://203.0.113.20:80/ping")
    );
    assert_eq!(ping["timeout"].as_str(), Some("1s"));
    assert_eq!(ping["fail_after"].as_integer(), Some(2));
    let admin = &t["rules"]["web-3"];
    assert_eq!(admin["enabled"].as_bool(), Some(false));
    assert_eq!(
        admin["check"]["url"].as_str(),
        Some("http://web.example.com/admin")
    );

    let path = dir.path().join("out.toml");
    std::fs::write(&path, &toml_text).unwrap();
    let v = validate(&path);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v.stderr));
}

#[test]
fn process_program_file_and_port_checks_become_rules_that_validate_the_same_every_time() {
    let root = repo().join("tests/fixtures/monit/kinds");
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("watchdog.toml");
    let run = || {
        let out = import(&[
            "--root".as_ref(),
            root.as_os_str(),
            root.join("etc/monit/monitrc").as_os_str(),
            "--output".as_ref(),
            out_path.as_os_str(),
        ]);
        (out, std::fs::read(&out_path).unwrap())
    };
    let (out, written) = run();
    let (again, written_again) = run();
    assert!(written == written_again, "two runs, two outputs");
    assert_eq!(text(&out.stderr), text(&again.stderr));
    // And on standard output, the same bytes again.
    let stdout = import(&[
        "--root".as_ref(),
        root.as_os_str(),
        root.join("etc/monit/monitrc").as_os_str(),
    ]);
    assert!(stdout.stdout == written, "stdout differs from --output");
    let stderr = text(&out.stderr);
    // Listed: what has no equivalent, so exit 1; but what was written validates as is.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        !stderr.contains("needs editing before it validates"),
        "{stderr}"
    );
    let written = text(&written);
    let v = validate(&out_path);
    assert_eq!(v.status.code(), Some(0), "{}\n{written}", text(&v.stderr));
    assert!(
        stderr.contains("import-monit: 4 files, 10 rules, 6 actions"),
        "{stderr}"
    );
    for line in [
        "haproxy.conf:2: start program = \"/etc/init.d/haproxy start\" with timeout 60 seconds -- no equivalent: monit starts, stops and restarts services, the watchdog does not; let systemd restart the service (Restart=on-failure in its unit)",
        "haproxy.conf:3: stop program = \"/etc/init.d/haproxy stop\" -- no equivalent",
        "haproxy.conf:7: if totalmem > 1 GB for 5 cycles then restart -- only connection",
        "haproxy.conf:17: then restart -- no equivalent: monit restarts the service, the watchdog does not; let systemd restart it (Restart=on-failure",
        "maintenance.conf:6: if changed timestamp then alert -- no equivalent",
        "maintenance.conf:9: if status > 1 then alert -- the program \"check_backends\" is not an absolute path",
        "redis.conf:1: check process redis with pidfile /var/run/redis/redis-server.pid (monit's own test: does it exist) -- when it fails, monit restarts the service",
        "redis.conf:8: check process sentinel matching \"redis-sentinel.*26379\" (monit's own test: does it exist) -- matching \"redis-sentinel.*26379\" is a regular expression, not a plain process name",
    ] {
        assert!(stderr.contains(line), "{line}: {stderr}");
        assert!(written.contains(line), "{line}: {written}");
    }
    for line in [
        "haproxy.conf:17: matching \"keepalived\": monit matched it anywhere in the command line",
        "maintenance.conf:5: `timestamp` is the later of the file's change and modification times",
        "redis.conf:3: failed `2 times within 3 cycles` became 2 consecutive failed cycles",
    ] {
        assert!(stderr.contains(line), "{line}: {stderr}");
    }

    let t: toml::Table = written.parse().unwrap();
    let rule = |name: &str| t["rules"][name].as_table().unwrap().clone();
    let check = |name: &str| rule(name)["check"].as_table().unwrap().clone();
    assert_eq!(
        check("haproxy"),
        toml::toml! { type = "process"  pidfile = "/var/run/haproxy.pid" }
    );
    assert_eq!(rule("haproxy")["fail_after"].as_integer(), Some(3));
    let claim = rule("haproxy")["on_fail"][0].as_str().unwrap().to_owned();
    assert_eq!(t["actions"][&claim]["type"].as_str(), Some("claim_eip"));
    assert_eq!(
        check("haproxy-2"),
        toml::toml! { type = "tcp"  host = "localhost"  port = 443 }
    );
    assert_eq!(rule("haproxy-2")["timeout"].as_str(), Some("2s"));
    assert_eq!(
        rule("haproxy-2")["on_fail"][0].as_str(),
        Some(claim.as_str())
    );
    assert_eq!(
        check("haproxy-3")["url"].as_str(),
        Some("http://localhost:80/haproxy?health")
    );
    assert_eq!(
        check("haproxy-config"),
        toml::toml! {
            type = "program"
            command = ["/usr/sbin/haproxy", "-c", "-f", "/etc/haproxy/haproxy.cfg"]
            expect_exit = [0]
        }
    );
    assert_eq!(rule("haproxy-config")["timeout"].as_str(), Some("5s"));
    assert_eq!(
        check("keepalived"),
        toml::toml! { type = "process"  name = "keepalived" }
    );
    assert_eq!(
        check("maintenance"),
        toml::toml! { type = "file"  path = "/etc/haproxy/maintenance"  exists = false }
    );
    assert_eq!(
        check("stats-heartbeat"),
        toml::toml! { type = "file"  path = "/var/lib/haproxy/stats.heartbeat"  exists = true  max_age = "2m" }
    );
    assert_eq!(rule("stats-heartbeat")["fail_after"].as_integer(), Some(2));
    assert_eq!(
        check("redis-2"),
        toml::toml! { type = "tcp"  host = "127.0.0.1"  port = 6379  send = "PING\r\n"  expect = "PONG" }
    );
    assert_eq!(rule("redis-2")["recover_after"].as_integer(), Some(2));
    assert_eq!(
        check("sentinel-2"),
        toml::toml! { type = "tcp"  host = "localhost"  port = 26379 }
    );
    assert!(t["rules"].get("backends").is_none() && t["rules"].get("sentinel").is_none());
}

/// A tester's find: `with http headers [Authorization: Basic ...]` reached stderr and the
/// output's comments. Also through the binary: a file with a UTF-8 BOM, quoted command
/// words, an https note.
#[test]
fn secrets_in_echoed_statements_never_reach_stderr_or_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("monitrc");
    std::fs::write(
        &path,
        "\u{feff}set daemon 10\ncheck host lb with address 127.0.0.1\n  if failed port 18443 protocol https with http headers [Authorization: Basic YWRtaW46UGE1NXdvcmQ=] then alert\n  if failed port 18443 protocol https then alert\ncheck program web with path \"/bin/sh -c 'curl -sf http://127.0.0.1/ | grep -q ok'\"\n  if status != 0 then exec \"/usr/local/bin/notify --password hunter2 it's\"\n",
    )
    .unwrap();
    let out = import(&["--root".as_ref(), dir.path().as_os_str(), path.as_os_str()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for secret in ["YWRtaW46UGE1NXdvcmQ=", "hunter2"] {
        assert!(!stderr.contains(secret), "{stderr}");
        assert!(!stdout.contains(secret), "{stdout}");
    }
    assert!(stderr.contains("[Authorization: ***]"), "{stderr}");
    assert!(stderr.contains("sends a Host header only"), "{stderr}");
    assert!(
        stderr.contains("monit did not verify the server's certificate"),
        "{stderr}"
    );
    assert!(!stderr.contains("not a monit statement"), "{stderr}");
    let t: toml::Table = stdout.parse().unwrap();
    assert_eq!(
        t["rules"]["web"]["check"]["command"][2].as_str(),
        Some("curl -sf http://127.0.0.1/ | grep -q ok")
    );
    assert_eq!(
        t["rules"]["lb"]["check"]["url"].as_str(),
        Some("https://127.0.0.1:18443/")
    );
}

/// A third tester's find, through the binary: `AWS_SECRET_ACCESS_KEY=...`, `--api-key X`,
/// `-pPASSWORD` and `request "/health?api_key=..."` reached stderr and the output's comments.
/// No secret of any kind is echoed; the translated URL and command keep theirs, to work.
#[test]
fn secrets_of_every_kind_never_reach_stderr_or_comments_but_the_translation_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("monitrc");
    std::fs::write(
        &path,
        r#"set daemon 10
set mailserver localhost username "u" password "MAILPW1"
set httpd port 2812 allow admin:MONITPW2 allow guest:"GUESTPW3" read-only
check program nodb with path "/usr/bin/mysql --password=DBPW4 -e 'select 1'"
check program nodb2 with path "/usr/local/bin/check --token SECRETTOK5"
check process hp with pidfile /run/haproxy.pid
  if cpu > 80% then exec "/usr/local/bin/page.sh --password PAGEPW6"
  if failed port 80 protocol http request "/health" with http headers [Authorization: Basic QVVUSEhEUjc=, Cookie: sid=COOKIE8] then alert
  start program = "/usr/bin/curl -H 'Authorization: Bearer STARTTOK9' http://127.0.0.1/start"
  if failed url http://user:URLPW10@127.0.0.1/x then alert
  if failed port 80 protocol http request "/health?token=QTOK11&apikey=APIKEY12" then alert
  if failed port 80 protocol http request "/health?api_key=APIKEY13" then exec "/usr/local/bin/page.sh secret=SECR14"
  if cpu > 90% then exec "/usr/local/bin/page.sh -pMYSQLPW15"
  if cpu > 95% then exec "/usr/bin/env AWS_SECRET_ACCESS_KEY=AWSSK16 /usr/local/bin/page.sh"
  if cpu > 96% then exec "/usr/local/bin/page.sh --api-key APIKEY17 --passwd PASSWD18 --auth-token AT19"
"#,
    )
    .unwrap();
    let out = import(&["--root".as_ref(), dir.path().as_os_str(), path.as_os_str()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let comments: Vec<&str> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with('#'))
        .collect();
    let comments = comments.join("\n");
    for secret in [
        "MAILPW1",
        "MONITPW2",
        "GUESTPW3",
        "DBPW4",
        "SECRETTOK5",
        "PAGEPW6",
        "QVVUSEhEUjc=",
        "COOKIE8",
        "STARTTOK9",
        "URLPW10",
        "QTOK11",
        "APIKEY12",
        "APIKEY13",
        "SECR14",
        "MYSQLPW15",
        "AWSSK16",
        "APIKEY17",
        "PASSWD18",
        "AT19",
    ] {
        assert!(!stderr.contains(secret), "{secret}: {stderr}");
        assert!(!comments.contains(secret), "{secret}: {comments}");
    }
    for want in [
        "AWS_SECRET_ACCESS_KEY=*** /usr/local/bin/page.sh",
        "--api-key *** --passwd *** --auth-token ***",
        "page.sh -p***",
    ] {
        assert!(stderr.contains(want), "{want}\n{stderr}");
    }
    assert!(
        comments.contains("# monit, ") && comments.contains("request \"/health?api_key=***\""),
        "{comments}"
    );
    let t: toml::Table = stdout.parse().unwrap();
    let urls: Vec<&str> = t["rules"]
        .as_table()
        .unwrap()
        .values()
        .filter_map(|r| r["check"].get("url").and_then(|u| u.as_str()))
        .collect();
    assert!(
        urls.contains(&"http://localhost:80/health?api_key=APIKEY13"),
        "{urls:?}"
    );
    assert_eq!(
        t["actions"]["exec-page.sh"]["command"][1].as_str(),
        Some("secret=SECR14")
    );
}
