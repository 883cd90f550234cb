//! `watchdog preflight` on the bed (moto, HAProxy, an IMDSv2 stand-in, checkip): every check
//! passes on a good node, and each gate fails, alone, when its cause is introduced: an IAM
//! policy without `ec2:AssociateAddress` (moto enforcing IAM), a missing SNS topic, checkip
//! down, a stats socket the user cannot open, instance metadata down.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use testkit::bed::Bed;
use testkit::haproxy::{Haproxy, Mode};
use testkit::opsworks::OpsWorks;
use testkit::watchdog::{bin, Env};

/// Every permission the bed's configuration needs, and the read preflight adds.
const FULL_POLICY: &[&str] = &[
    "ec2:DescribeAddresses",
    "ec2:AssociateAddress",
    "ec2:DisassociateAddress",
    "sns:Publish",
    "sns:GetTopicAttributes",
];

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn lines(&self, prefix: &str) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| l.starts_with(prefix))
            .collect()
    }

    /// The one FAIL line, which must contain `needle`.
    fn only_failure(&self, needle: &str) -> String {
        let fails = self.lines("FAIL ");
        assert_eq!(fails.len(), 1, "{}\n{}", self.stdout, self.stderr);
        assert!(fails[0].contains(needle), "{}", self.stdout);
        assert!(fails[0].contains(". Fix: "), "{}", self.stdout);
        assert_eq!(self.code, Some(1), "{}", self.stdout);
        fails[0].to_owned()
    }
}

/// How to run it: credentials other than the bed's, a user other than root.
#[derive(Default)]
struct How {
    key: Option<(String, String)>,
    uid: Option<u32>,
    json: bool,
}

/// `watchdog preflight` with `toml` as the whole configuration and a fresh state directory
/// that anyone may write (the non-root runs need it).
async fn preflight(env: &Env, toml: &str, how: How) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("watchdog.toml");
    std::fs::write(&config, toml).unwrap();
    let mut cmd = std::process::Command::new(bin());
    cmd.arg("preflight")
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(&state)
        .arg("--log-format")
        .arg("json");
    if how.json {
        cmd.arg("--json");
    }
    env.apply(&mut cmd);
    if let Some((id, secret)) = &how.key {
        cmd.env("AWS_ACCESS_KEY_ID", id)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env_remove("AWS_SESSION_TOKEN");
    }
    if let Some(uid) = how.uid {
        use std::os::unix::process::CommandExt;
        cmd.uid(uid).gid(uid);
    }
    let out = tokio::process::Command::from(cmd)
        .output()
        .await
        .expect("run watchdog preflight");
    assert!(
        std::fs::read_dir(&state).unwrap().next().is_none(),
        "preflight left a file in the state directory"
    );
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// One node holding the Elastic IP, so that DisassociateAddress can be tried too.
async fn bed() -> Bed {
    Bed::new(&["a"], Some("a"), &[]).await
}

/// With moto enforcing IAM: a user whose policy allows `actions`, and its key.
async fn as_user_allowed(bed: &Bed, actions: &[&str]) -> How {
    let key = bed.world.moto.iam_user("watchdog", actions).await;
    bed.world.moto.enforce_iam().await;
    How {
        key: Some(key),
        ..How::default()
    }
}

/// Each AssociateAddress/DisassociateAddress preflight sent was a dry run.
fn nothing_moved(bed: &Bed) {
    let mutations = bed.world.moto.watchdog_mutations();
    assert!(!mutations.is_empty(), "no dry run was sent");
    for m in mutations {
        assert_eq!(
            m.params.get("DryRun").map(String::as_str),
            Some("true"),
            "{m:?}"
        );
    }
}

#[tokio::test]
async fn preflight_passes_every_check_on_a_good_node_and_changes_nothing() {
    let bed = bed().await;
    let how = as_user_allowed(&bed, FULL_POLICY).await;
    let toml = bed.conf("a").toml();
    let run = preflight(&bed.env("a"), &toml, how).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(run.lines("FAIL ").is_empty(), "{}", run.stdout);
    let a = bed.world.node("a");
    for want in [
        "PASS state directory ".to_owned(),
        format!(
            "PASS instance metadata (IMDSv2) at {}: this node is {} on {}, private IP {}",
            bed.imds["a"].endpoint(),
            a.instance_id,
            a.eni,
            a.private_ip
        ),
        format!(
            "PASS Elastic IP {} ({}) found in us-east-1 for action \"claim\"",
            bed.world.eip, bed.world.allocation_id
        ),
        format!(
            "PASS ec2:AssociateAddress for action \"claim\" ({} onto {}, {}) (DryRun: allowed)",
            bed.world.allocation_id, a.eni, a.private_ip
        ),
        "PASS ec2:DisassociateAddress for action \"claim\" (eipassoc-".to_owned(),
        format!("PASS SNS topic {} exists", bed.world.topic_arn),
        format!(
            "SKIP sns:Publish on {} (action \"claim\"): not provable without acting (SNS has no dry run",
            bed.world.topic_arn
        ),
        format!("PASS checkip {}", bed.checkip["a"].url()),
        format!(
            "PASS HAProxy stats socket {} ([haproxy]) is readable",
            bed.haproxy["a"].socket.display()
        ),
    ] {
        assert!(
            run.stdout.lines().any(|l| l.starts_with(&want)),
            "no line starting {want:?} in\n{}",
            run.stdout
        );
    }
    assert!(
        run.stdout.ends_with("failed, 1 skipped\n"),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("running as root"), "{}", run.stderr);
    nothing_moved(&bed);
}

#[tokio::test]
async fn preflight_json_says_each_result() {
    let bed = bed().await;
    let run = preflight(
        &bed.env("a"),
        &bed.conf("a").toml(),
        How {
            json: true,
            ..How::default()
        },
    )
    .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("JSON");
    assert_eq!(v["failed"], false);
    let checks = v["checks"].as_array().expect("checks");
    assert!(checks.iter().any(|c| c["result"] == "pass"
        && c["what"]
            .as_str()
            .unwrap_or("")
            .starts_with("ec2:AssociateAddress")));
    assert!(checks.iter().any(|c| c["result"] == "skip"
        && c["what"].as_str().unwrap_or("").starts_with("sns:Publish")
        && c["why"].as_str().is_some()));
    // Fault kind: a stable JSON shape. The same five keys on every entry, and a `check`
    // identifier beside the human `what`.
    for c in checks {
        let keys: Vec<&String> = c.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["check", "fix", "result", "what", "why"], "{c}");
        assert!(c["check"].as_str().is_some_and(|s| !s.is_empty()), "{c}");
    }
    assert!(checks
        .iter()
        .any(|c| c["check"] == "ec2:AssociateAddress claim" && c["result"] == "pass"));
    assert!(checks.iter().any(|c| c["check"] == "imds"));
}

#[tokio::test]
async fn preflight_names_a_permission_the_policy_lacks() {
    let bed = bed().await;
    let without: Vec<&str> = FULL_POLICY
        .iter()
        .copied()
        .filter(|a| *a != "ec2:AssociateAddress")
        .collect();
    let how = as_user_allowed(&bed, &without).await;
    let run = preflight(&bed.env("a"), &bed.conf("a").toml(), how).await;
    let line = run.only_failure("FAIL ec2:AssociateAddress for action \"claim\"");
    assert!(
        line.contains(": denied, the caller lacks ec2:AssociateAddress (AccessDenied: "),
        "{line}"
    );
    assert!(line.contains("Fix: allow ec2:AssociateAddress"), "{line}");
    // The other permissions are still proven.
    assert!(
        run.stdout.contains("(DryRun: allowed)\n")
            && run.stdout.contains("PASS ec2:DisassociateAddress"),
        "{}",
        run.stdout
    );
    nothing_moved(&bed);
}

#[tokio::test]
async fn preflight_fails_on_a_missing_sns_topic() {
    let bed = bed().await;
    let mut conf = bed.conf("a");
    let missing = "arn:aws:sns:us-east-1:123456789012:no-such-topic";
    conf.topic_arn = Some(missing.into());
    let run = preflight(&bed.env("a"), &conf.toml(), How::default()).await;
    let line = run.only_failure(&format!("FAIL SNS topic {missing}"));
    assert!(line.contains("no such topic"), "{line}");
}

#[tokio::test]
async fn preflight_fails_when_checkip_is_down() {
    let bed = bed().await;
    let mut conf = bed.conf("a");
    conf.checkip = "http://127.0.0.1:9/".into();
    let run = preflight(&bed.env("a"), &conf.toml(), How::default()).await;
    let line = run.only_failure("FAIL checkip http://127.0.0.1:9/ ([egress])");
    assert!(line.contains("checkip unreachable"), "{line}");

    // Up, but answering something that is not a public address.
    bed.checkip["a"].set(testkit::http::Reply::ok("10.0.1.5\n"));
    let run = preflight(&bed.env("a"), &bed.conf("a").toml(), How::default()).await;
    let line = run.only_failure("FAIL checkip");
    assert!(line.contains("not a public address"), "{line}");
}

#[tokio::test]
async fn preflight_fails_when_the_user_cannot_open_the_stats_socket() {
    let bed = bed().await;
    // HAProxy's socket is mode 600, root's: `nobody` cannot connect (root always could).
    let nobody = 65534;
    let run = preflight(
        &bed.env("a"),
        &bed.conf("a").toml(),
        How {
            uid: Some(nobody),
            ..How::default()
        },
    )
    .await;
    let socket = bed.haproxy["a"].socket.display().to_string();
    let line = run.only_failure(&format!(
        "FAIL HAProxy stats socket {socket} ([haproxy]) is readable"
    ));
    assert!(line.contains("Permission denied"), "{line}");
    assert!(line.contains("user nobody (uid 65534)"), "{line}");
    assert!(!run.stderr.contains("running as root"), "{}", run.stderr);
}

#[tokio::test]
async fn preflight_fails_when_instance_metadata_is_down() {
    let bed = bed().await;
    let env = Env {
        imds_endpoint: "http://127.0.0.1:9".into(),
        ..bed.env("a")
    };
    let run = preflight(&env, &bed.conf("a").toml(), How::default()).await;
    run.only_failure("FAIL instance metadata (IMDSv2) at http://127.0.0.1:9");
    assert!(
        run.stdout.contains("SKIP ec2:AssociateAddress for action \"claim\": this node's ENI and private IP are not known"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn preflight_fails_on_an_unwritable_state_directory_and_a_bad_config_exits_2() {
    let bed = bed().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("w.toml");
    std::fs::write(&config, bed.conf("a").toml()).unwrap();
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["preflight", "--state-dir", "/nonexistent/state", "--config"])
        .arg(&config);
    bed.env("a").apply(&mut cmd);
    let out = tokio::process::Command::from(cmd).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "FAIL state directory /nonexistent/state is writable: cannot create a file in it"
        ),
        "{stdout}"
    );

    std::fs::write(&config, "[rules.x]\nbogus = 1\n").unwrap();
    let out = std::process::Command::new(bin())
        .args(["preflight", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A backend_sync rule on `socket` for the Auto Scaling group `group`, fed by `queue`, with a
/// lifecycle hook.
fn sync_rule(socket: &Path, config: &Path, group: &str, queue: &str) -> String {
    format!(
        r#"
[rules.servers]
timeout = "2s"

[rules.servers.check]
type = "backend_sync"
backend = "app"
port = 8080
stats_socket = "{}"
haproxy_config = "{}"

[rules.servers.check.source]
type = "asg"
group = "{group}"
events_queue = "{queue}"
lifecycle_hook = "drain"
"#,
        socket.display(),
        config.display()
    )
}

#[tokio::test]
async fn preflight_checks_backend_sync_reads_and_the_sockets_admin_level() {
    let group = testkit::asg::Group::start("web", 2).await;
    let queue = group.queue("events").await;
    let env = Env::aws_only(&group.moto.url);
    let admin = Haproxy::start("lb").await;

    let run = preflight(
        &env,
        &sync_rule(&admin.socket, &admin.config, "web", &queue.url),
        How::default(),
    )
    .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    for want in [
        "SKIP instance metadata: no EC2 claim (claim_eip, claim_private_ip, claim_route) needs this node's identity".to_owned(),
        "PASS autoscaling:DescribeAutoScalingGroups for rule \"servers\": group \"web\" has 2 instance(s) in service".to_owned(),
        "PASS ec2:DescribeInstances for rule \"servers\" (DryRun: allowed)".to_owned(),
        format!("PASS SQS events queue {} exists", queue.url),
        format!("SKIP sqs:ReceiveMessage on {} (rule \"servers\"): not provable without acting (receiving would hide", queue.url),
        format!("SKIP sqs:DeleteMessage on {} (rule \"servers\")", queue.url),
        "SKIP autoscaling:CompleteLifecycleAction on group web, hook drain (rule \"servers\")".to_owned(),
        "SKIP checkip: no claim_eip action or egress rule asks checkip".to_owned(),
        format!("PASS HAProxy stats socket {} (rule \"servers\") is readable", admin.socket.display()),
        format!(
            "PASS HAProxy stats socket {} (rule \"servers\") is writable (level admin, for backend sync)",
            admin.socket.display()
        ),
        format!(
            "PASS directory {} of haproxy_config (rule \"servers\") takes the new file written beside it",
            admin.config.parent().unwrap().display()
        ),
        "SKIP lifecycle hook \"drain\" of group \"web\" (rule \"servers\"): its existence is not checked".to_owned(),
    ] {
        assert!(
            run.stdout.lines().any(|l| l.starts_with(&want)),
            "no line starting {want:?} in\n{}",
            run.stdout
        );
    }

    // A stats socket at level user: readable, but server changes would be refused.
    let user = Haproxy::launch(None, Mode::Foreground, testkit::free_port(), |socket| {
        format!(
            "global\n  stats socket {} mode 600 level user\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 1s\n  timeout server 1s\nbackend app\n",
            socket.display()
        )
    })
    .await;
    let run = preflight(
        &env,
        &sync_rule(&user.socket, &user.config, "web", &queue.url),
        How::default(),
    )
    .await;
    let line = run.only_failure("is writable (level admin, for backend sync)");
    assert!(line.contains("its level is \"user\""), "{line}");
    assert!(line.contains("Fix: add `level admin`"), "{line}");

    // A group that does not exist.
    let run = preflight(
        &env,
        &sync_rule(&admin.socket, &admin.config, "nope", &queue.url),
        How::default(),
    )
    .await;
    let line = run.only_failure(
        "FAIL autoscaling:DescribeAutoScalingGroups for rule \"servers\" (group \"nope\")",
    );
    assert!(
        line.contains("no Auto Scaling group named \"nope\""),
        "{line}"
    );
}

#[tokio::test]
async fn preflight_checks_an_opsworks_claim() {
    let bed = Bed::new(&["a"], None, &[]).await;
    let eip = bed.world.eip.to_string();
    let id = "aaaaaaaa-1111-4222-8333-44444444444a";
    // The stand-in checks each request's signature with the secret the harness gives.
    let secret = "testing-secret-never-logged";
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("instance-agent.yml");
    std::fs::write(&agent, format!("---\n:identity: {id}\n")).unwrap();
    let conf = |ow: &OpsWorks| {
        let mut toml = bed.conf("a").toml().replace(
            "type = \"claim_eip\"\n",
            "type = \"claim_eip\"\nprovider = \"opsworks\"\n",
        );
        toml.push_str(&format!(
            "\n[opsworks]\nendpoint_url = \"{}\"\nagent_config = \"{}\"\n",
            ow.url(),
            agent.display()
        ));
        toml
    };

    let ow = OpsWorks::start(&[id], &[&eip], "us-east-1", secret).await;
    ow.set_holder(&eip, Some(id));
    let run = preflight(&bed.env("a"), &conf(&ow), How::default()).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    for want in [
        "SKIP instance metadata: no EC2 claim (claim_eip, claim_private_ip, claim_route) needs this node's identity".to_owned(),
        format!("PASS OpsWorks instance id {id} for action \"claim\""),
        format!(
            "PASS Elastic IP {eip} registered with OpsWorks for action \"claim\"; held by OpsWorks instance {id}"
        ),
        format!(
            "SKIP opsworks:AssociateElasticIp on {eip} (action \"claim\"): not provable without acting (OpsWorks has no dry run)"
        ),
    ] {
        assert!(
            run.stdout.lines().any(|l| l.starts_with(&want)),
            "no line starting {want:?} in\n{}",
            run.stdout
        );
    }
    assert!(
        ow.calls("AssociateElasticIp").is_empty(),
        "preflight moved the EIP"
    );

    // An Elastic IP the stack does not know.
    let other = OpsWorks::start(&[id], &["203.0.113.99"], "us-east-1", secret).await;
    let run = preflight(&bed.env("a"), &conf(&other), How::default()).await;
    let line = run.only_failure(&format!(
        "FAIL Elastic IP {eip} in OpsWorks for action \"claim\""
    ));
    assert!(
        line.contains("register the Elastic IP with the stack"),
        "{line}"
    );
}

#[tokio::test]
async fn preflight_fails_on_a_private_ip_that_is_not_on_the_eni() {
    let bed = Bed::new(&["a"], None, &["a"]).await;
    let a = bed.world.node("a").clone();
    let secondary = a.secondary_ips[0];
    let mut conf = bed.conf("a");
    conf.private_ip = Some(secondary.to_string());
    let run = preflight(&bed.env("a"), &conf.toml(), How::default()).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(&format!(
            "PASS private IP {secondary} (action \"claim\") is on {}\n",
            a.eni
        )),
        "{}",
        run.stdout
    );

    // An address of the subnet the ENI does not have (moto draws its addresses at random:
    // a fixed one was, once in a few hundred runs, the secondary itself).
    let absent = (200..=254u8)
        .map(|n| std::net::Ipv4Addr::new(10, 0, 1, n))
        .find(|ip| *ip != a.private_ip && !a.secondary_ips.contains(ip))
        .expect("a free address");
    conf.private_ip = Some(absent.to_string());
    let run = preflight(&bed.env("a"), &conf.toml(), How::default()).await;
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    let want = format!(
        "FAIL private IP {absent} (action \"claim\") is on {}: instance metadata lists {}, {secondary} on it. Fix: assign {absent} to {}",
        a.eni, a.private_ip, a.eni
    );
    assert!(run.stdout.contains(&want), "{want}\n{}", run.stdout);
}

/// Fault kind: a checkip answer that contradicts the owner EC2 reports. Node b's checkip
/// answers the Elastic IP (a NAT in its path) while EC2 says node a holds it: the claim would
/// take that for "already ours" and never move it, so preflight fails.
#[tokio::test]
async fn checkip_contradicting_the_owner_fails() {
    let bed = Bed::new(&["a", "b"], Some("a"), &[]).await;
    bed.checkip["b"].set(testkit::http::Reply::ok(&format!("{}\n", bed.world.eip)));
    let run = preflight(&bed.env("b"), &bed.conf("b").toml(), How::default()).await;
    let line = run.only_failure(&format!("FAIL checkip {}", bed.checkip["b"].url()));
    let a = bed.world.node("a");
    assert!(
        line.contains(&format!(
            "it answers {}, the Elastic IP of action \"claim\", but EC2 says {} is held by",
            bed.world.eip, bed.world.eip
        )) && line.contains(&a.eni),
        "{line}"
    );
    assert!(line.contains("a NAT or proxy in the path"), "{line}");

    // On the holder itself the same answer is simply right.
    let run = preflight(&bed.env("a"), &bed.conf("a").toml(), How::default()).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
}

/// Fault kind: preflight runs the claim's own readiness probe. A `[haproxy] backend` HAProxy
/// does not have would refuse every claim: it fails here, with the probe's detail.
#[tokio::test]
async fn claim_readiness_probe_runs() {
    let bed = bed().await;
    let mut conf = bed.conf("a");
    conf.haproxy_backend = Some("nosuch".into());
    let run = preflight(&bed.env("a"), &conf.toml(), How::default()).await;
    let line = run.only_failure("FAIL the claims' HAProxy readiness gate ([haproxy]: ");
    assert!(line.contains("backend nosuch not found"), "{line}");
    assert!(line.contains("every claim would be refused"), "{line}");
}

/// Fault kinds: AWS errors classified (a hanging endpoint is "did not answer", not a
/// configuration fault) and bounded time with early stop: after the first AWS call that finds
/// the API unreachable, the other AWS checks are skipped at once.
#[tokio::test]
async fn aws_unreachable_stops_the_other_aws_checks_early() {
    let bed = bed().await;
    // Accepts connections and never answers.
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = hang.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = hang.accept().await {
            conns.push(c);
        }
    });
    let env = Env {
        aws_endpoint: format!("http://{addr}"),
        ..bed.env("a")
    };
    let toml = bed.conf("a").toml().replace(
        "attempt_timeout = \"2s\"\noperation_timeout = \"10s\"\nmax_attempts = 3",
        "attempt_timeout = \"1s\"\noperation_timeout = \"2s\"\nmax_attempts = 2",
    );
    let started = std::time::Instant::now();
    let run = preflight(&env, &toml, How::default()).await;
    let took = started.elapsed();
    held.abort();
    let line = run.only_failure(&format!(
        "FAIL Elastic IP {} for action \"claim\"",
        bed.world.eip
    ));
    assert!(line.contains("the AWS API did not answer"), "{line}");
    assert!(!line.contains("check `eip`"), "{line}");
    for skipped in [
        "SKIP ec2:AssociateAddress for action \"claim\"",
        "SKIP ec2:DisassociateAddress for action \"claim\"",
        "SKIP SNS topic ",
    ] {
        assert!(
            run.stdout.lines().any(|l| l.starts_with(skipped)
                && l.ends_with("not checked (AWS API unreachable, see above)")),
            "no {skipped:?} line in\n{}",
            run.stdout
        );
    }
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
}

/// Fault kind: each fix names the key that is wrong. `[node] network_interface_id` naming an
/// ENI this instance does not have: the fix names that key and where the attached ENIs are
/// listed, rather than telling to set it.
#[tokio::test]
async fn fix_names_the_wrong_key() {
    let bed = bed().await;
    let mut toml = bed.conf("a").toml();
    toml.push_str("\n[node]\nnetwork_interface_id = \"eni-0123456789abcdef0\"\n");
    let run = preflight(&bed.env("a"), &toml, How::default()).await;
    let line = run.only_failure("FAIL instance metadata (IMDSv2)");
    assert!(
        line.contains("Fix: [node] network_interface_id = eni-0123456789abcdef0 is not an ENI of this instance: set it to one attached to it"),
        "{line}"
    );
}
