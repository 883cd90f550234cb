//! `watchdog import-keepalived` on keepalived configurations of the shapes published for
//! address failover on AWS (tests/fixtures/keepalived): the output validates (once what no
//! keepalived file says is filled in), every item not translated names its file and line, and
//! the same input gives the same bytes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use testkit::repo;
use testkit::watchdog::bin;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The fixture `shape`'s root and its keepalived.conf.
fn fixture(shape: &str) -> (PathBuf, PathBuf) {
    let root = repo().join("tests/fixtures/keepalived").join(shape);
    let conf = root.join("etc/keepalived/keepalived.conf");
    (root, conf)
}

fn import(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(bin())
        .arg("import-keepalived")
        .args(args)
        .output()
        .unwrap()
}

/// Import the fixture `shape` to standard output, twice: the bytes must be the same.
fn import_shape(shape: &str) -> Output {
    let (root, conf) = fixture(shape);
    let args = ["--root".as_ref(), root.as_os_str(), conf.as_os_str()];
    let first = import(&args);
    let second = import(&args);
    assert_eq!(first.stdout, second.stdout, "{shape}: two runs differ");
    assert_eq!(first.stderr, second.stderr, "{shape}: two runs differ");
    assert_eq!(first.status.code(), second.status.code());
    first
}

fn validate(path: &Path) -> Output {
    Command::new(bin())
        .args(["validate", "--config"])
        .arg(path)
        .output()
        .unwrap()
}

/// `toml_text` written to a file in `dir`, validated.
fn validate_text(dir: &Path, toml_text: &str) -> Output {
    let path = dir.join("out.toml");
    std::fs::write(&path, toml_text).unwrap();
    validate(&path)
}

/// What no keepalived file says, filled in as an operator would: the SNS topic, and where a
/// private claim proves it reaches the VPC.
fn fill_required(toml_text: &str) -> String {
    toml_text
        .lines()
        .map(|l| {
            if l.starts_with("# sns_topic_arn = ") {
                "sns_topic_arn = \"arn:aws:sns:us-east-1:123456789012:haproxy-failover\"".into()
            } else if l.starts_with("# reachability = ") {
                "reachability = [\"10.0.0.2:53\"]".into()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every NOT TRANSLATED line of the report names `FILE:LINE: `, and the TOML lists it too.
fn assert_listed_with_lines(stderr: &str, toml_text: &str) {
    let listed: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("  NOT TRANSLATED: "))
        .collect();
    assert!(!listed.is_empty(), "{stderr}");
    for item in listed {
        let mut parts = item.splitn(3, ':');
        let (file, line) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        assert!(
            !file.is_empty() && line.parse::<usize>().is_ok(),
            "no file:line: {item}"
        );
        assert!(toml_text.contains(item), "not in the TOML: {item}");
    }
}

#[test]
fn eip_failover_with_unicast_peers_and_chk_haproxy_becomes_a_program_rule_and_a_claim() {
    let out = import_shape("eip");
    let stderr = text(&out.stderr);
    let toml_text = text(&out.stdout);
    // VRRP itself (state, priority, the router id, authentication) has no equivalent.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("import-keepalived: 1 file, 2 rules, 1 action"),
        "{stderr}"
    );
    assert_listed_with_lines(&stderr, &toml_text);
    for line in [
        "keepalived.conf:19: state MASTER -- no equivalent",
        "keepalived.conf:21: priority 101 -- no equivalent",
        "keepalived.conf:27: authentication { ... } -- no equivalent",
    ] {
        assert!(stderr.contains(line), "{line}: {stderr}");
    }
    assert!(
        !stderr.contains("s3cr3tpw") && !toml_text.contains("s3cr3tpw"),
        "the VRRP password is never copied"
    );
    assert!(
        stderr.contains("keepalived.conf:10: script: `killall` is not an absolute path")
            && stderr.contains("/usr/bin/killall is used"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "keepalived.conf:12: weight 2: no equivalent: the watchdog has no priorities"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("The watchdog moves the address when that rule fails, and only while this node's own HAProxy is ready ([haproxy])"),
        "{stderr}"
    );

    let t: toml::Table = toml_text.parse().unwrap();
    let chk = &t["rules"]["chk_haproxy"];
    assert_eq!(chk["check"]["type"].as_str(), Some("program"));
    assert_eq!(
        chk["check"]["command"][0].as_str(),
        Some("/usr/bin/killall")
    );
    assert_eq!(chk["interval"].as_str(), Some("2s"));
    assert_eq!(chk["fail_after"].as_integer(), Some(2));
    assert_eq!(chk["recover_after"].as_integer(), Some(2));
    let peer = &t["rules"]["VI_1-peer"];
    assert_eq!(peer["check"]["type"].as_str(), Some("tcp"));
    assert_eq!(peer["check"]["host"].as_str(), Some("10.0.1.12"));
    assert_eq!(peer["check"]["port"].as_integer(), Some(80));
    assert_eq!(peer["interval"].as_str(), Some("1s"), "advert_int 1");
    assert_eq!(peer["fail_after"].as_integer(), Some(3));
    let claim = &t["actions"][peer["on_fail"][0].as_str().unwrap()];
    assert_eq!(claim["type"].as_str(), Some("claim_eip"));
    assert_eq!(
        claim["allocation_id"].as_str(),
        Some("eipalloc-0123456789abcdef0")
    );
    assert_eq!(
        claim["sns_topic_arn"].as_str(),
        Some("arn:aws:sns:us-east-1:123456789012:haproxy-failover")
    );
    // No global section: the packaged watchdog.toml has them all, each set in one file only.
    assert!(t.get("aws").is_none() && t.get("alerts").is_none() && t.get("haproxy").is_none());
    assert!(
        toml_text.contains("#   [aws] region = \"us-east-1\""),
        "{toml_text}"
    );
    assert!(
        stderr.contains(
            "SET BY HAND in /etc/haproxy-watchdog/watchdog.toml: [aws] region = \"us-east-1\" -- "
        ),
        "{stderr}"
    );

    // Written with -o, the same bytes, and valid as they are.
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("watchdog.toml");
    let (root, conf) = fixture("eip");
    let written = import(&[
        "--root".as_ref(),
        root.as_os_str(),
        conf.as_os_str(),
        "-o".as_ref(),
        out_path.as_os_str(),
    ]);
    assert_eq!(written.status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(&out_path).unwrap(), toml_text);
    assert!(
        !text(&written.stderr).contains("needs editing"),
        "{}",
        text(&written.stderr)
    );
    let v = validate(&out_path);
    assert_eq!(v.status.code(), Some(0), "{}\n{toml_text}", text(&v.stderr));

    // Dropped into conf.d beside the packaged watchdog.toml, as the docs say.
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(etc.join("conf.d")).unwrap();
    std::fs::copy(
        repo().join("packaging/watchdog.toml"),
        etc.join("watchdog.toml"),
    )
    .unwrap();
    std::fs::write(etc.join("conf.d/10-from-keepalived.toml"), &toml_text).unwrap();
    let v = validate(&etc.join("watchdog.toml"));
    assert_eq!(v.status.code(), Some(0), "{}", text(&v.stderr));
}

#[test]
fn a_secondary_private_ip_becomes_claim_private_ip_and_validates_once_filled_in() {
    let out = import_shape("private-ip");
    let stderr = text(&out.stderr);
    let toml_text = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_listed_with_lines(&stderr, &toml_text);
    assert!(
        stderr.contains("needs editing before it validates"),
        "{stderr}"
    );
    assert!(
        stderr.contains("keepalived.conf:5: timeout 5s is longer than the interval 3s; cut"),
        "{stderr}"
    );
    assert!(
        stderr.contains("keepalived.conf:23: virtual_ipaddress 10.0.1.50/24 dev ens5: the claim of 10.0.1.50 adds it"),
        "{stderr}"
    );
    assert!(
        stderr.contains("reachability of action claim-10.0.1.50 --"),
        "{stderr}"
    );

    let t: toml::Table = toml_text.parse().unwrap();
    let chk = &t["rules"]["check_haproxy"];
    assert_eq!(chk["timeout"].as_str(), Some("3s"));
    assert_eq!(chk["fail_after"].as_integer(), Some(3));
    let peer = &t["rules"]["haproxy_vip-peer"];
    assert_eq!(peer["check"]["host"].as_str(), Some("10.0.1.11"));
    assert_eq!(
        peer["check"]["port"].as_integer(),
        Some(8080),
        "the port of the curl health check"
    );
    assert_eq!(peer["interval"].as_str(), Some("2s"), "advert_int 2");
    // The address is the script's argument ($1, through VIP=$1).
    let claim = &t["actions"]["claim-10.0.1.50"];
    assert_eq!(claim["type"].as_str(), Some("claim_private_ip"));
    assert_eq!(claim["private_ip"].as_str(), Some("10.0.1.50"));
    assert!(toml_text.contains("#   [aws] region = \"eu-west-1\""));

    let dir = tempfile::tempdir().unwrap();
    let v = validate_text(dir.path(), &toml_text);
    assert_eq!(
        v.status.code(),
        Some(2),
        "REQUIRED lines are still comments"
    );
    let v = validate_text(dir.path(), &fill_required(&toml_text));
    assert_eq!(v.status.code(), Some(0), "{}", text(&v.stderr));
}

#[test]
fn replace_route_in_two_tables_becomes_one_claim_route_and_includes_are_followed() {
    let out = import_shape("route");
    let stderr = text(&out.stderr);
    let toml_text = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("import-keepalived: 3 files, 3 rules, 1 action"),
        "{stderr}"
    );
    assert!(!toml_text.contains("old.conf.bak") && !stderr.contains("not keepalived syntax"));
    assert_listed_with_lines(&stderr, &toml_text);
    assert!(
        stderr.contains("20-overlay.conf:16: notify \"/etc/keepalived/overlay-notify.sh\": its `aws ec2` calls in its branch for MASTER (the state keepalived passes) are translated; no other branch makes one"),
        "{stderr}"
    );

    let t: toml::Table = toml_text.parse().unwrap();
    let peer = &t["rules"]["OVERLAY-peer"];
    assert_eq!(peer["check"]["host"].as_str(), Some("10.0.1.11"));
    assert_eq!(
        peer["check"]["port"].as_integer(),
        Some(443),
        "nc -z ... 443"
    );
    let claim = &t["actions"][peer["on_fail"][0].as_str().unwrap()];
    assert_eq!(claim["type"].as_str(), Some("claim_route"));
    assert_eq!(claim["destination"].as_str(), Some("192.168.100.10"));
    let tables: Vec<&str> = claim["route_table_ids"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(tables, ["rtb-0123456789abcdef0", "rtb-0fedcba9876543210"]);
    assert_eq!(t["rules"]["chk_https"]["timeout"].as_str(), Some("1s"));

    let dir = tempfile::tempdir().unwrap();
    let v = validate_text(dir.path(), &fill_required(&toml_text));
    assert_eq!(v.status.code(), Some(0), "{}", text(&v.stderr));
}

#[test]
fn what_cannot_be_translated_is_listed_with_its_line_and_a_missing_file_exits_2() {
    let out = import_shape("untranslatable");
    let stderr = text(&out.stderr);
    let toml_text = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_listed_with_lines(&stderr, &toml_text);
    for line in [
        "keepalived.conf:2: notification_email { ... } -- no mail",
        "keepalived.conf:16: virtual_ipaddress 192.168.10.100/24 dev eth1 -- an address moved by VRRP and gratuitous ARP does not move in a VPC",
        "keepalived.conf:18: notify_master \"/etc/keepalived/lan-master.sh\" -- /etc/keepalived/lan-master.sh makes no `aws ec2",
        "keepalived.conf:26: /etc/keepalived/eip.sh:3: --allocation-id $ALLOC -- computed by the script",
        "keepalived.conf:21: vrrp_instance PUBLIC has no unicast_peer",
        "keepalived.conf:29: vrrp_sync_group G1 { ... } --",
        "keepalived.conf:36: virtual_server 192.168.10.100 80 { ... } --",
        "keepalived.conf:46: haproxy_magic { ... } -- not understood",
    ] {
        assert!(stderr.contains(line), "{line}: {stderr}");
    }
    assert!(
        toml_text.contains("# allocation_id = \"eipalloc-...\"   # REQUIRED"),
        "{toml_text}"
    );
    let t: toml::Table = toml_text.parse().unwrap();
    assert_eq!(t["rules"]["PUBLIC-peer"]["enabled"].as_bool(), Some(false));
    assert!(t["rules"].get("LAN-peer").is_none());
    let dir = tempfile::tempdir().unwrap();
    let v = validate_text(dir.path(), &fill_required(&toml_text));
    assert_eq!(
        v.status.code(),
        Some(2),
        "the allocation id is still missing"
    );

    let out = import(&["/nonexistent/keepalived.conf".as_ref()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read /nonexistent/keepalived.conf"));
}

#[test]
fn a_configuration_of_checks_alone_translates_cleanly_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("keepalived.conf");
    std::fs::write(
        &conf,
        "vrrp_script chk_haproxy {\n    script \"/usr/bin/killall -0 haproxy\"\n    interval 2\n    fall 3\n    rise 2\n}\n",
    )
    .unwrap();
    let out = import(&[conf.as_os_str()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("1 file, 1 rule, 0 actions"), "{stderr}");
    let v = validate_text(dir.path(), &text(&out.stdout));
    assert_eq!(v.status.code(), Some(0), "{}", text(&v.stderr));
}

#[test]
fn import_output_that_is_an_input_file_is_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("keepalived.conf");
    let included = dir.path().join("inc.conf");
    let original = "include inc.conf\nvrrp_script a {\n  script \"/bin/true\"\n}\n";
    std::fs::write(&conf, original).unwrap();
    std::fs::write(&included, "vrrp_script b {\n  script \"/bin/true\"\n}\n").unwrap();
    std::os::unix::fs::symlink(&conf, dir.path().join("link.conf")).unwrap();
    std::fs::write(dir.path().join("monitrc"), "set daemon 10\n").unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    for (importer, input, output) in [
        ("import-keepalived", conf.clone(), conf.clone()),
        (
            "import-keepalived",
            conf.clone(),
            sub.join("../keepalived.conf"),
        ),
        (
            "import-keepalived",
            conf.clone(),
            dir.path().join("link.conf"),
        ),
        ("import-keepalived", conf.clone(), included.clone()),
        (
            "import-monit",
            dir.path().join("monitrc"),
            dir.path().join("./monitrc"),
        ),
    ] {
        let before = std::fs::read(&input).unwrap();
        let out = Command::new(bin())
            .arg(importer)
            .arg(&input)
            .arg("-o")
            .arg(&output)
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{importer} {output:?}: {stderr}"
        );
        assert!(stderr.contains("refusing to overwrite it"), "{stderr}");
        assert_eq!(std::fs::read(&input).unwrap(), before);
    }
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), original);
    assert!(std::fs::read_to_string(&included)
        .unwrap()
        .contains("vrrp_script b"));
    // Another file is written as before.
    let out = Command::new(bin())
        .arg("import-keepalived")
        .arg(&conf)
        .arg("-o")
        .arg(dir.path().join("out.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn import_input_that_is_not_all_utf8_is_read_lossily_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("keepalived.conf");
    std::fs::write(
        &conf,
        b"! caf\xe9\nvrrp_script chk {\n  script \"/bin/true\"\n}\n# \xff again\n".as_slice(),
    )
    .unwrap();
    let monitrc = dir.path().join("monitrc");
    std::fs::write(
        &monitrc,
        b"set daemon 10\n# r\xe9seau\ncheck host peer with address 10.0.1.12\n  if failed port 80 then alert\n"
            .as_slice(),
    )
    .unwrap();
    for (importer, input, line) in [
        ("import-keepalived", &conf, 1),
        ("import-monit", &monitrc, 2),
    ] {
        let out = Command::new(bin())
            .arg(importer)
            .arg(input)
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert_ne!(out.status.code(), Some(2), "{importer}: {stderr}");
        let note = format!(
            "{}:{line}: not valid UTF-8 from this line on",
            input.display()
        );
        assert!(stderr.contains(&note), "{importer}: {stderr}");
        assert!(text(&out.stdout).contains(&note), "{importer}");
    }
    let out = Command::new(bin())
        .arg("import-keepalived")
        .arg(&conf)
        .output()
        .unwrap();
    assert!(text(&out.stdout).contains("[rules.\"chk\"]"));
}

#[test]
fn import_output_that_is_any_file_read_scripts_included_is_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify.sh");
    let failover = dir.path().join("failover.sh");
    let body = "#!/bin/sh\naws ec2 associate-address --allocation-id eipalloc-0a\n";
    std::fs::write(&notify, body).unwrap();
    std::fs::write(&failover, body).unwrap();
    let conf = dir.path().join("keepalived.conf");
    std::fs::write(
        &conf,
        format!(
            "vrrp_instance V {{\n  unicast_peer {{ 10.0.1.12 }}\n  notify_master \"{}\"\n}}\n",
            notify.display()
        ),
    )
    .unwrap();
    let monitrc = dir.path().join("monitrc");
    std::fs::write(
        &monitrc,
        format!(
            "set daemon 10\ncheck host peer with address 10.0.1.12\n  if failed port 80 for 3 cycles then exec \"{}\"\n",
            failover.display()
        ),
    )
    .unwrap();
    for (importer, input, script) in [
        ("import-keepalived", &conf, &notify),
        ("import-monit", &monitrc, &failover),
    ] {
        let out = Command::new(bin())
            .arg(importer)
            .arg(input)
            .arg("-o")
            .arg(script)
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{importer}: {stderr}");
        assert!(stderr.contains("refusing to overwrite it"), "{stderr}");
        assert_eq!(std::fs::read_to_string(script).unwrap(), body);
    }
}
