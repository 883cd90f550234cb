//! The failover demo on the namespace test bed: the seed's active/standby pair (neptune holds
//! the Elastic IP, saturn stands by), each a network namespace with a real HAProxy and its own
//! watchdog, against moto for EC2 and SNS; a client out on the edge hits the EIP.
//! Neptune's HAProxy is killed; saturn detects it, verifies its egress, claims the EIP and
//! alerts. A client hitting the EIP all along shows when traffic comes back.
//!
//! Run it with `scripts/demo.sh` (installs HAProxy and moto on a fresh machine first).

use serde_json::Value;
use std::time::Duration;
use testkit::testbed::TestBed;
use testkit::watchdog::{NodeConf, Watchdog};
use tokio::time::Instant;

const NODES: [&str; 2] = ["neptune", "saturn"];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    println!("Setting up: moto (EC2, SNS, SQS), one network namespace per instance with HAProxy, the edge ...");
    let mut bed = TestBed::new(&NODES, Some("neptune")).await;
    let conf = |name: &str| NodeConf {
        interval: "1s",
        timeout: "500ms",
        fast_interval: None,
        fail_after: 3,
        recover_after: 2,
        hold_down: "5m",
        egress_timeout: "2s",
        ..bed.conf(name)
    };
    let wds: Vec<Watchdog> = NODES.iter().map(|n| bed.start(n, &conf(n))).collect();
    for w in &wds {
        w.wait_event(Duration::from_secs(20), "started").await;
    }

    let world = &bed.world;
    let n = |name: &str| world.node(name).clone();
    println!();
    println!("Elastic IP {} ({})", world.eip, world.allocation_id);
    for name in NODES {
        let node = n(name);
        println!(
            "  {name:<8} {} {} {}  (namespace {}, HAProxy on {}:80)",
            node.instance_id, node.eni, node.private_ip, bed.nodes[name].host.ns, node.private_ip
        );
    }
    println!(
        "  rule: HTTP GET of the EIP every 1s, timeout 500ms, fails after 3 consecutive failures"
    );
    println!();

    // A client hitting the EIP every 100 ms; it records who answered.
    let client = bed.poll_eip(Duration::from_millis(100));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let serving = client.answers().last().and_then(|x| x.1.clone());
    println!(
        "Before: the EIP is served by {}",
        serving.as_deref().unwrap_or("nobody")
    );

    // Failure.
    let t0 = Instant::now();
    let wall0 = std::time::SystemTime::now();
    bed.nodes.get_mut("neptune").unwrap().haproxy.stop();
    println!("Killing neptune's HAProxy ...");
    let saturn = &wds[1];
    saturn
        .wait_event(Duration::from_secs(60), "eip_claimed")
        .await;
    testkit::eventually(Duration::from_secs(30), "traffic back", || async {
        client.first_after(t0, Some("saturn"))
    })
    .await;
    saturn
        .wait_event(Duration::from_secs(30), "alert_sent")
        .await;
    let alerts = world.alerts(Duration::from_secs(2)).await;

    // Timeline, from the watchdogs' own structured events.
    let since = |e: &Value| -> f64 {
        let ts = e["timestamp"]
            .as_str()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .unwrap_or(wall0);
        ts.duration_since(wall0)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    };
    let mut lines: Vec<(f64, String)> = vec![(0.0, "neptune's HAProxy killed".into())];
    let first = |w: &Watchdog, name: &str| w.events(name).into_iter().find(|e| since(e) > 0.0);
    if let Some(t) = client.first_after(t0, None) {
        lines.push((
            (t - t0).as_secs_f64(),
            "first failed client request through the EIP".into(),
        ));
    }
    for w in &wds {
        if let Some(e) = first(w, "check_failed") {
            lines.push((
                since(&e),
                format!(
                    "{}: EIP check failed ({})",
                    w.name,
                    e["detail"].as_str().unwrap_or("")
                ),
            ));
        }
        if let Some(e) = first(w, "rule_failed") {
            lines.push((
                since(&e),
                format!(
                    "{}: rule failed after {} consecutive failures",
                    w.name, e["consecutive_failures"]
                ),
            ));
        }
        if let Some(e) = first(w, "action_refused") {
            lines.push((
                since(&e),
                format!(
                    "{}: claim refused ({}): {}",
                    w.name,
                    e["reason"].as_str().unwrap_or(""),
                    e["detail"].as_str().unwrap_or("")
                ),
            ));
        }
        if let Some(e) = first(w, "egress_verified") {
            lines.push((
                since(&e),
                format!(
                    "{}: egress verified via checkip: {}",
                    w.name,
                    e["egress_ip"].as_str().unwrap_or("")
                ),
            ));
        }
        if let Some(e) = first(w, "eip_claimed") {
            lines.push((
                since(&e),
                format!(
                    "{}: claimed the EIP from {} ({})",
                    w.name,
                    e["from"].as_str().unwrap_or(""),
                    e["verified"].as_str().unwrap_or("")
                ),
            ));
        }
        if let Some(e) = first(w, "alert_sent") {
            lines.push((since(&e), format!("{}: SNS alert published", w.name)));
        }
    }
    if let Some(t) = client.first_after(t0, Some("saturn")) {
        lines.push((
            (t - t0).as_secs_f64(),
            "first good request through the EIP (answered by saturn)".into(),
        ));
    }
    lines.sort_by(|a, b| a.0.total_cmp(&b.0));
    println!();
    println!("Timeline (seconds after the failure):");
    for (t, what) in &lines {
        println!("  {t:>6.2}s  {what}");
    }
    let down: Vec<_> = client
        .answers()
        .iter()
        .filter(|(t, who)| *t > t0 && who.is_none())
        .map(|x| x.0)
        .collect();
    if let (Some(first), Some(last)) = (down.first(), down.last()) {
        println!(
            "  client saw failures for {:.2}s",
            (*last - *first).as_secs_f64()
        );
    }
    println!();
    println!(
        "SNS alerts received through the SQS subscription: {}",
        alerts.len()
    );
    for a in &alerts {
        println!("  Subject: {}", a.subject);
        for l in a.message.lines() {
            println!("  | {l}");
        }
    }

    // The old active comes back: it must not steal the EIP back.
    println!();
    println!("Restarting neptune's HAProxy ...");
    bed.nodes
        .get_mut("neptune")
        .unwrap()
        .haproxy
        .restart()
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let holder = world.holder().await;
    println!(
        "After 4s the EIP is on {} (neptune does not take it back).",
        holder.as_deref().unwrap_or("nobody")
    );
    drop(client);
    for w in wds {
        w.stop().await;
    }
    let ok = holder.as_deref() == Some("saturn") && alerts.len() == 1;
    println!();
    println!("{}", if ok { "Demo OK." } else { "Demo FAILED." });
    // Returning (not exiting) lets the bed delete its namespaces and stop its processes.
    drop(bed);
    std::process::ExitCode::from(if ok { 0 } else { 1 })
}
