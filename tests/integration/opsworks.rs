//! The OpsWorks claim provider end to end: the watchdog binary against the OpsWorks stand-in
//! (testkit/src/opsworks.rs: the JSON 1.1 protocol, signatures checked), moto for SNS, real
//! HAProxy for the local readiness gate.

use std::time::Duration;
use testkit::bed::{egress_ip, Bed};
use testkit::eventually;
use testkit::http::Reply;
use testkit::opsworks::OpsWorks;
use testkit::watchdog::{run_to_end, write_config, NodeConf};

const SECRET: &str = "testing-secret-never-logged";
const AGENT_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/agent-secret-never-logged";
const T: Duration = Duration::from_secs(20);

/// OpsWorks instance ids of the nodes a, b and c.
fn ow_id(node: &str) -> String {
    let n = match node {
        "a" => 'a',
        "b" => 'b',
        _ => 'c',
    };
    format!("{}-1111-4222-8333-44444444444{n}", n.to_string().repeat(8))
}

/// `node`'s configuration with an OpsWorks claim. The instance id comes from an agent file
/// written into `dir` unless `instance_id` is set; `region` sets `[opsworks] region`.
fn conf(
    bed: &Bed,
    node: &str,
    ow: &OpsWorks,
    dir: &std::path::Path,
    region: Option<&str>,
) -> String {
    conf_from(bed.conf(node), node, ow, dir, region)
}

fn conf_from(
    c: NodeConf,
    node: &str,
    ow: &OpsWorks,
    dir: &std::path::Path,
    region: Option<&str>,
) -> String {
    let agent = dir.join(format!("instance-agent-{node}.yml"));
    std::fs::write(
        &agent,
        format!(
            "---\n:access_key_id: AKIAIOSFODNN7EXAMPLE\n:secret_access_key: {AGENT_SECRET}\n:identity: {}\n",
            ow_id(node)
        ),
    )
    .unwrap();
    let mut toml = c.toml().replace(
        "type = \"claim_eip\"\n",
        "type = \"claim_eip\"\nprovider = \"opsworks\"\n",
    );
    toml.push_str(&format!(
        "\n[opsworks]\nendpoint_url = \"{}\"\nagent_config = \"{}\"\n",
        ow.url(),
        agent.display()
    ));
    if let Some(r) = region {
        toml.push_str(&format!("region = \"{r}\"\n"));
    }
    toml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_claims_through_opsworks_with_one_alert() {
    let bed = Bed::new(&["a", "b"], None, &[]).await;
    let eip = bed.world.eip.to_string();
    let ow = OpsWorks::start(&[&ow_id("a"), &ow_id("b")], &[&eip], "us-east-1", SECRET).await;
    ow.set_holder(&eip, Some(&ow_id("a")));
    let dir = tempfile::tempdir().unwrap();
    bed.target.set(Reply::Status(503, "down".into()));
    let wd = bed.start_toml("b", &conf(&bed, "b", &ow, dir.path(), None));

    let claimed = wd.wait_event(T, "eip_claimed").await;
    assert_eq!(claimed["provider"], "opsworks");
    assert_eq!(claimed["verified"], "verified");
    assert_eq!(ow.holder(&eip), Some(ow_id("b")));

    // Owner read first, then exactly one associate onto b's OpsWorks id (from the agent file).
    let calls = ow.all_calls();
    assert_eq!(calls[0].operation, "DescribeElasticIps", "{calls:?}");
    assert_eq!(calls[0].body["Ips"], serde_json::json!([eip]));
    let assoc = ow.calls("AssociateElasticIp");
    assert_eq!(assoc.len(), 1, "{assoc:?}");
    assert_eq!(assoc[0].body["ElasticIp"], eip);
    assert_eq!(assoc[0].body["InstanceId"], ow_id("b"));
    // Every call was signed for the OpsWorks API region (us-east-1, whatever the stack's region:
    // the stand-in reports us-west-2), and none was refused.
    assert!(ow.rejected().is_empty(), "{:?}", ow.rejected());
    assert!(calls.iter().all(|c| c.region == "us-east-1"), "{calls:?}");
    assert!(calls
        .iter()
        .all(|c| c.user_agent.contains("haproxy-watchdog")));
    // Nothing went through EC2.
    assert!(bed.world.moto.watchdog_calls("AssociateAddress").is_empty());
    assert!(bed
        .world
        .moto
        .watchdog_calls("DisassociateAddress")
        .is_empty());

    let alerts = bed.world.alerts(Duration::from_secs(3)).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let msg = &alerts[0].message;
    assert!(
        msg.contains(&format!(
            "Instance {} took over Elastic IP {eip} from OpsWorks instance {}",
            ow_id("b"),
            ow_id("a")
        )),
        "{msg}"
    );
    assert!(msg.contains(&egress_ip(1)), "{msg}");
    assert!(alerts[0].subject.contains(&ow_id("b")), "{:?}", alerts[0]);

    // Once claimed, the daemon stays quiet while the rule stays failed.
    let before = ow.all_calls().len();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(ow.all_calls().len(), before);
    let (code, log) = wd.stop().await;
    assert_eq!(code, Some(0));
    for secret in [SECRET, AGENT_SECRET] {
        assert!(!log.contains(secret), "{secret} reached the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opsworks_eip_already_here_is_left_alone() {
    let bed = Bed::new(&["b"], None, &[]).await;
    let eip = bed.world.eip.to_string();
    let ow = OpsWorks::start(&[&ow_id("b")], &[&eip], "us-east-1", SECRET).await;
    ow.set_holder(&eip, Some(&ow_id("b")));
    let dir = tempfile::tempdir().unwrap();
    bed.target.set(Reply::Status(503, "down".into()));
    let wd = bed.start_toml("b", &conf(&bed, "b", &ow, dir.path(), None));
    let noop = wd.wait_event(T, "action_noop").await;
    assert!(
        noop["detail"]
            .as_str()
            .unwrap()
            .contains("already on this node"),
        "{noop}"
    );
    assert!(ow.calls("AssociateElasticIp").is_empty());
    assert_eq!(wd.count("eip_claimed"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opsworks_errors_are_retried_and_throttling_is_absorbed() {
    let bed = Bed::new(&["b"], None, &[]).await;
    let eip = bed.world.eip.to_string();
    // b is not (yet) an instance of the stack: OpsWorks refuses the associate.
    let ow = OpsWorks::start(&[&ow_id("a")], &[&eip], "us-east-1", SECRET).await;
    ow.set_holder(&eip, Some(&ow_id("a")));
    let dir = tempfile::tempdir().unwrap();
    bed.target.set(Reply::Status(503, "down".into()));
    let wd = bed.start_toml("b", &conf(&bed, "b", &ow, dir.path(), None));
    let err = wd.wait_event(T, "action_error").await;
    let detail = err["detail"].as_str().unwrap();
    assert!(
        detail.contains("opsworks:AssociateElasticIp failed: ResourceNotFoundException"),
        "{err}"
    );
    assert_eq!(
        ow.holder(&eip),
        Some(ow_id("a")),
        "a failed claim moves nothing"
    );

    // The instance joins the stack; the next two requests are throttled. The SDK retries them
    // and the claim that follows succeeds, once.
    ow.add_instance(&ow_id("b"));
    ow.throttle_next(2);
    let claimed = wd.wait_event(T, "eip_claimed").await;
    assert_eq!(claimed["verified"], "verified");
    assert_eq!(ow.holder(&eip), Some(ow_id("b")));
    let throttled = ow
        .rejected()
        .iter()
        .filter(|r| r.1 == "ThrottlingException")
        .count();
    assert_eq!(throttled, 2);
    assert!(ow.rejected().iter().all(|r| r.1 == "ThrottlingException"));
    assert_eq!(bed.world.alerts(Duration::from_secs(3)).await.len(), 1);
    assert_eq!(wd.count("eip_claimed"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_racing_through_opsworks_produce_exactly_one_winner() {
    // OpsWorks has no conditional associate: both calls succeed, the later one wins, and the
    // settle re-read makes the earlier caller see that it lost.
    let bed = Bed::new(&["a", "b", "c"], None, &[]).await;
    let eip = bed.world.eip.to_string();
    let ids = [ow_id("a"), ow_id("b"), ow_id("c")];
    let ow = OpsWorks::start(
        &ids.iter().map(String::as_str).collect::<Vec<_>>(),
        &[&eip],
        "eu-west-1",
        SECRET,
    )
    .await;
    ow.set_holder(&eip, Some(&ow_id("c")));
    let dir = tempfile::tempdir().unwrap();
    let gate = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    bed.target.set(Reply::Status(503, "down".into()));
    let wds: Vec<_> = ["a", "b"]
        .into_iter()
        .enumerate()
        .map(|(i, n)| {
            bed.checkip[n].set(Reply::Gate(gate.clone(), egress_ip(i)));
            let mut c = bed.conf(n);
            c.egress_timeout = "10s";
            bed.start_toml(n, &conf_from(c, n, &ow, dir.path(), Some("eu-west-1")))
        })
        .collect();
    let lost = eventually(T, "the loser's refusal", || async {
        wds.iter()
            .flat_map(|w| w.events("action_refused"))
            .find(|e| e["reason"] == "lost_race")
    })
    .await;
    let winner = eventually(T, "the winner's claim", || async {
        wds.iter().find(|w| w.count("eip_claimed") == 1)
    })
    .await;
    assert_eq!(ow.holder(&eip), Some(ow_id(&winner.name)), "{lost}");
    assert_eq!(
        ow.calls("AssociateElasticIp").len(),
        2,
        "both called: a real race"
    );
    // A few more cycles: it stays put, and the loser is in hold-down.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(ow.holder(&eip), Some(ow_id(&winner.name)));
    assert_eq!(wds.iter().map(|w| w.count("eip_claimed")).sum::<usize>(), 1);
    assert_eq!(ow.calls("AssociateElasticIp").len(), 2);
    assert_eq!(bed.world.alerts(Duration::from_secs(2)).await.len(), 1);
    // The configured API region signed every call.
    assert!(ow.all_calls().iter().all(|c| c.region == "eu-west-1"));
    assert!(ow.rejected().is_empty(), "{:?}", ow.rejected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stand_in_refuses_requests_not_signed_with_the_nodes_credentials() {
    // Proves the stand-in's signature check has teeth: the other tests' zero refusals mean
    // every request there carried a valid SigV4 signature.
    let bed = Bed::new(&["b"], None, &[]).await;
    let eip = bed.world.eip.to_string();
    let ow = OpsWorks::start(&[&ow_id("b")], &[&eip], "us-east-1", "another-secret").await;
    ow.set_holder(&eip, None);
    let dir = tempfile::tempdir().unwrap();
    bed.target.set(Reply::Status(503, "down".into()));
    let wd = bed.start_toml("b", &conf(&bed, "b", &ow, dir.path(), None));
    let err = wd.wait_event(T, "action_error").await;
    assert!(
        err["detail"]
            .as_str()
            .unwrap()
            .contains("opsworks:DescribeElasticIps failed: InvalidSignatureException"),
        "{err}"
    );
    let rejected = ow.rejected();
    assert!(
        rejected
            .iter()
            .all(|r| r.0 == 403 && r.2.contains("signature we calculated does not match")),
        "{rejected:?}"
    );
    assert!(ow.all_calls().is_empty());
    assert_eq!(ow.holder(&eip), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_logs_the_opsworks_calls_and_once_claims_for_real() {
    let bed = Bed::new(&["b"], None, &[]).await;
    let eip = bed.world.eip.to_string();
    let ow = OpsWorks::start(&[&ow_id("a"), &ow_id("b")], &[&eip], "us-east-1", SECRET).await;
    ow.set_holder(&eip, Some(&ow_id("a")));
    let dir = tempfile::tempdir().unwrap();
    bed.target.set(Reply::Status(503, "down".into()));
    let mut c = bed.conf("b");
    c.fail_after = 1;
    let (_d, path) = write_config(&conf_from(c, "b", &ow, dir.path(), None));

    let out = run_to_end(Some(&bed.env("b")), &path, &["--once", "--dry-run"]).await;
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "the check failed:\n{log}");
    for call in [
        "opsworks:DescribeElasticIps",
        "opsworks:AssociateElasticIp",
        "sns:Publish",
    ] {
        assert!(
            log.contains(&format!("\"call\":\"{call}\"")),
            "{call}:\n{log}"
        );
    }
    assert!(log.contains(&ow_id("b")), "the target instance is named");
    assert!(ow.all_calls().is_empty() && ow.rejected().is_empty());
    assert!(bed.world.moto.watchdog_requests().is_empty());

    let out = run_to_end(Some(&bed.env("b")), &path, &["--once"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("action claim: done: claimed"), "{stdout}");
    assert_eq!(ow.holder(&eip), Some(ow_id("b")));
    assert_eq!(bed.world.alerts(Duration::from_secs(2)).await.len(), 1);
}
