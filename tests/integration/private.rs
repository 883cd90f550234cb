//! Private addresses end to end on the VPC bed (testkit/src/vpc.rs): subnets in two
//! Availability Zones behind a router that follows EC2, real HAProxy nodes, an internal
//! client, nodes failing. `claim_route` moves an overlay IP across AZs; `claim_private_ip`
//! a secondary private IP within a subnet.

use std::net::Ipv4Addr;
use std::time::Duration;
use testkit::awsproxy::Fault;
use testkit::eventually;
use testkit::vpc::{VpcBed, OVERLAY, VIP};
use testkit::watchdog::Watchdog;

const T: Duration = Duration::from_secs(30);

async fn served_by(bed: &VpcBed, ip: Ipv4Addr, node: &str) {
    eventually(
        T,
        &format!("{ip} served by {node} to the internal client"),
        || async { (bed.get_from_client(ip).await.as_deref() == Some(node)).then_some(()) },
    )
    .await;
}

fn start(bed: &VpcBed, node: &str, ip: Ipv4Addr, action: &str) -> Watchdog {
    bed.start(node, &bed.conf(node, ip, action, ""))
}

async fn started(wds: &[&Watchdog]) {
    for w in wds {
        w.wait_event(T, "started").await;
    }
}

/// Both tables send the overlay IP to `node`'s ENI, per EC2.
async fn both_tables_on(bed: &VpcBed, node: &str) {
    let eni = bed.world.node(node).eni.clone();
    eventually(T, &format!("both route tables on {node}"), || async {
        bed.overlay_targets()
            .await
            .iter()
            .all(|(_, e)| e.as_deref() == Some(eni.as_str()))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlay_ip_moves_across_azs_and_stays_when_the_old_active_returns() {
    let mut bed = VpcBed::new(&[("a", 'a'), ("b", 'b')], Some("a"), None).await;
    served_by(&bed, OVERLAY, "a").await;
    let action = bed.route_action("60s");
    let wa = start(&bed, "a", OVERLAY, &action);
    let wb = start(&bed, "b", OVERLAY, &action);
    started(&[&wa, &wb]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        wa.count("check_failed") + wb.count("check_failed"),
        0,
        "healthy pair"
    );

    // The active in AZ a dies: its daemon and its HAProxy.
    drop(wa);
    bed.nodes.get_mut("a").unwrap().haproxy.stop();
    let claimed = wb.wait_event(T, "address_claimed").await;
    both_tables_on(&bed, "b").await;
    served_by(&bed, OVERLAY, "b").await;
    assert!(
        bed.nodes["b"].has_address(OVERLAY),
        "b accepts the overlay IP"
    );
    let (ta, tb) = (bed.table('a'), bed.table('b'));
    let moved = claimed["association"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(moved.contains(&ta) && moved.contains(&tb), "{claimed}");
    let alerts = bed.world.alerts(Duration::from_secs(3)).await;
    assert_eq!(alerts.len(), 1, "one alert: {alerts:?}");
    assert!(
        alerts[0].message.contains("overlay IP 192.168.100.10")
            && alerts[0].message.contains(&ta)
            && alerts[0].message.contains(&tb)
            && alerts[0].message.contains("Reachability verified"),
        "{:?}",
        alerts[0]
    );

    // a returns, no failback configured: the route stays on b, and a drops the address it
    // still carried from before.
    bed.nodes.get_mut("a").unwrap().haproxy.restart().await;
    let wa = start(&bed, "a", OVERLAY, &action);
    wa.wait_event(T, "started").await;
    eventually(T, "a removed the overlay IP it no longer holds", || async {
        (!bed.nodes["a"].has_address(OVERLAY)).then_some(())
    })
    .await;
    wa.wait_event(T, "local_address_removed").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    both_tables_on(&bed, "b").await;
    assert_eq!(bed.get_from_client(OVERLAY).await.as_deref(), Some("b"));
    assert_eq!(wa.count("address_claimed") + wb.count("address_claimed"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_private_ip_moves_within_its_subnet() {
    let mut bed = VpcBed::new(&[("a", 'a'), ("b", 'a')], None, Some("a")).await;
    served_by(&bed, VIP, "a").await;
    let action = bed.private_ip_action("60s");
    let wa = start(&bed, "a", VIP, &action);
    let wb = start(&bed, "b", VIP, &action);
    started(&[&wa, &wb]).await;

    drop(wa);
    bed.nodes.get_mut("a").unwrap().haproxy.stop();
    wb.wait_event(T, "address_claimed").await;
    served_by(&bed, VIP, "b").await;
    assert!(bed.nodes["b"].has_address(VIP));
    // EC2 (through the proxy's reassignment) shows it on b's ENI only.
    let subnet = bed.world.vpc.as_ref().unwrap().subnets[&'a'].clone();
    let filter = aws_sdk_ec2::types::Filter::builder()
        .name("subnet-id")
        .values(subnet)
        .build();
    let d = bed
        .world
        .ec2
        .describe_network_interfaces()
        .filters(filter)
        .send()
        .await
        .unwrap();
    let holders: Vec<&str> = d
        .network_interfaces()
        .iter()
        .filter(|n| {
            n.private_ip_addresses()
                .iter()
                .any(|a| a.private_ip_address() == Some("10.0.1.50"))
        })
        .filter_map(|n| n.network_interface_id())
        .collect();
    assert_eq!(holders, [bed.world.node("b").eni.as_str()]);
    assert_eq!(bed.proxy.count("AssignPrivateIpAddresses").0, 1);
    let alerts = bed.world.alerts(Duration::from_secs(3)).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(
        alerts[0].message.contains("private IP 10.0.1.50"),
        "{:?}",
        alerts[0]
    );

    bed.nodes.get_mut("a").unwrap().haproxy.restart().await;
    let wa = start(&bed, "a", VIP, &action);
    wa.wait_event(T, "local_address_removed").await;
    assert!(!bed.nodes["a"].has_address(VIP));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(bed.get_from_client(VIP).await.as_deref(), Some("b"));
    assert_eq!(wa.count("address_claimed"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_route_table_is_retried_until_the_claim_converges() {
    let mut bed = VpcBed::new(&[("a", 'a'), ("b", 'b')], Some("a"), None).await;
    let action = bed.route_action("60s");
    // One attempt per SDK call: the claim's own retries are what is tested.
    let conf = bed
        .conf("b", OVERLAY, &action, "")
        .replace("max_attempts = 3", "max_attempts = 1");
    let wb = bed.start("b", &conf);
    started(&[&wb]).await;
    bed.proxy.inject("ReplaceRoute", Fault::Throttle, 3);
    bed.nodes.get_mut("a").unwrap().haproxy.stop();
    let claimed = wb.wait_event(T, "address_claimed").await;
    assert_eq!(claimed["verified"], "verified", "{claimed}");
    both_tables_on(&bed, "b").await;
    served_by(&bed, OVERLAY, "b").await;
    let (calls, throttled) = bed.proxy.count("ReplaceRoute");
    assert_eq!(throttled, 3);
    assert!(
        calls >= 5,
        "two tables, three throttled answers: {calls} calls"
    );
    assert!(wb.count("route_split") >= 1, "the throttled table was said");
    let alerts = bed.world.alerts(Duration::from_secs(3)).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(
        alerts[0].message.contains(&bed.table('b')),
        "{:?}",
        alerts[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_dest_check_on_refuses_the_route_claim_with_its_reason_and_changes_nothing() {
    let mut bed = VpcBed::new(&[("a", 'a'), ("b", 'b')], Some("a"), None).await;
    bed.world
        .ec2
        .modify_network_interface_attribute()
        .network_interface_id(&bed.world.node("b").eni)
        .source_dest_check(
            aws_sdk_ec2::types::AttributeBooleanValue::builder()
                .value(true)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let wb = start(&bed, "b", OVERLAY, &bed.route_action("60s"));
    started(&[&wb]).await;
    bed.nodes.get_mut("a").unwrap().haproxy.stop();
    wb.refused_at_least(T, "source_dest_check", 2).await;
    let refused = wb.events("action_refused");
    assert!(
        refused.iter().any(|e| e["detail"]
            .as_str()
            .is_some_and(|d| d.contains("--no-source-dest-check"))),
        "{refused:?}"
    );
    assert_eq!(
        bed.proxy.count("ReplaceRoute").0 + bed.proxy.count("CreateRoute").0,
        0
    );
    both_tables_on(&bed, "a").await;
    assert!(bed.world.alerts(Duration::from_secs(2)).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_standbys_racing_for_the_overlay_ip_leave_one_owner_that_stays() {
    let mut bed = VpcBed::new(&[("a", 'a'), ("b", 'b'), ("c", 'b')], Some("a"), None).await;
    let action = bed.route_action("60s");
    let conf = |n: &str| {
        bed.conf(n, OVERLAY, &action, "")
            .replace("fail_after = 3", "fail_after = 2")
    };
    let wb = bed.start("b", &conf("b"));
    let wc = bed.start("c", &conf("c"));
    started(&[&wb, &wc]).await;
    bed.nodes.get_mut("a").unwrap().haproxy.stop();
    // Until the claims have run, the tables may point anywhere for a moment.
    eventually(T, "a claim", || async {
        (wb.count("address_claimed") + wc.count("address_claimed") > 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t = bed.overlay_targets().await;
    let owner = t[0].1.clone().unwrap_or_default();
    assert!(
        t.iter().all(|(_, e)| e.as_deref() == Some(owner.as_str())),
        "{t:?}"
    );
    let name = bed
        .world
        .nodes
        .iter()
        .find(|n| n.eni == owner)
        .map(|n| n.name.clone())
        .unwrap_or_default();
    let served = tokio::time::timeout(T, served_by(&bed, OVERLAY, &name)).await;
    assert!(
        served.is_ok(),
        "{OVERLAY} not served by {name}; b:\n{}\nc:\n{}",
        wb.log(),
        wc.log()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    both_tables_on(&bed, &name).await;
    assert_eq!(
        wb.count("address_claimed") + wc.count("address_claimed"),
        1,
        "b:\n{}\nc:\n{}",
        wb.log(),
        wc.log()
    );
    assert_eq!(bed.world.alerts(Duration::from_secs(2)).await.len(), 1);
    let other = if name == "b" { "c" } else { "b" };
    assert!(
        !bed.nodes[other].has_address(OVERLAY),
        "the loser does not keep the address"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_cut_off_from_the_vpc_takes_no_private_address() {
    let mut bed = VpcBed::new(&[("a", 'a'), ("b", 'b')], Some("a"), None).await;
    let wb = start(&bed, "b", OVERLAY, &bed.route_action("60s"));
    started(&[&wb]).await;
    bed.cut_vpc("b");
    bed.nodes.get_mut("a").unwrap().haproxy.stop();
    wb.refused_at_least(T, "vpc_unreachable", 2).await;
    assert_eq!(
        bed.proxy.count("ReplaceRoute").0 + bed.proxy.count("CreateRoute").0,
        0
    );
    both_tables_on(&bed, "a").await;
    assert_eq!(wb.count("address_claimed"), 0);
}

/// `watchdog preflight` inside `node` with `toml`: (exit code, stdout).
async fn preflight_in(bed: &VpcBed, node: &str, toml: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("watchdog.toml");
    std::fs::write(&config, toml).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let mut cmd = bed.nodes[node].host.command(testkit::watchdog::bin());
    cmd.arg("preflight")
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(&state);
    bed.env().apply(&mut cmd);
    let out = tokio::process::Command::from(cmd)
        .output()
        .await
        .expect("preflight");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn line<'a>(out: &'a str, start: &str) -> &'a str {
    out.lines()
        .find(|l| l.contains(start))
        .unwrap_or_else(|| panic!("no line with {start:?} in:\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_checks_a_private_claims_eni_tables_vpc_reachability_and_capability() {
    let bed = VpcBed::new(&[("a", 'a'), ("b", 'b')], Some("a"), None).await;
    let toml = bed.conf("b", OVERLAY, &bed.route_action("60s"), "");
    let (_, out) = preflight_in(&bed, "b", &toml).await;
    for l in [
        "reachability of action \"claim\"",
        "local interface of action \"claim\": lo",
        "CAP_NET_ADMIN",
        "source/destination check off on",
        "route tables",
        "192.168.100.10 outside vpc-",
    ] {
        assert!(line(&out, l).starts_with("PASS"), "{l}:\n{out}");
    }
    // moto ignores DryRun on ReplaceRoute: preflight says so, and its call (onto the route's
    // current target) changed nothing.
    let replace = line(&out, "ec2:ReplaceRoute in");
    assert!(
        replace.starts_with("FAIL") && replace.contains("as if DryRun had not been set"),
        "{out}"
    );
    both_tables_on(&bed, "a").await;
    assert_eq!(bed.proxy.count("CreateRoute").0, 0);

    bed.world
        .ec2
        .modify_network_interface_attribute()
        .network_interface_id(&bed.world.node("b").eni)
        .source_dest_check(
            aws_sdk_ec2::types::AttributeBooleanValue::builder()
                .value(true)
                .build(),
        )
        .send()
        .await
        .unwrap();
    bed.cut_vpc("b");
    let (code, out) = preflight_in(&bed, "b", &toml).await;
    assert_eq!(code, Some(1), "{out}");
    let sdc = line(&out, "source/destination check off on");
    assert!(
        sdc.starts_with("FAIL") && sdc.contains("--no-source-dest-check"),
        "{out}"
    );
    let reach = line(&out, "reachability of action \"claim\"");
    assert!(
        reach.starts_with("FAIL") && reach.contains("vpc_unreachable"),
        "{out}"
    );

    let toml = bed.conf(
        "b",
        VIP,
        &bed.private_ip_action("60s")
            .replace("10.0.1.50", "10.0.1.77"),
        "",
    );
    let (_, out) = preflight_in(&bed, "b", &toml).await;
    let subnet = line(&out, "10.0.1.77 in this node's subnet");
    assert!(
        subnet.starts_with("FAIL") && subnet.contains("other_subnet"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_moves_the_eip_and_the_overlay_ip_together_with_one_alert() {
    let mut bed = VpcBed::new(&[("a", 'a'), ("b", 'b')], Some("a"), None).await;
    bed.world.associate("a").await;
    let members = format!(
        "type = \"claim_group\"\nmembers = [\"public\", \"internal\"]\n\n[actions.public]\ntype = \"claim_eip\"\neip = \"{}\"\nhold_down = \"60s\"\n\n[actions.internal]\n{}",
        bed.world.eip,
        bed.route_action("60s")
    );
    let wb = start(&bed, "b", OVERLAY, &members);
    started(&[&wb]).await;
    // An operator's takeover of one member would split the group: refused, nothing moves.
    for (what, needle) in [
        ("public", "is a member of group \"claim\""),
        ("claim", "is a claim_group"),
    ] {
        let out = wb.ctl(&["takeover", what]).await;
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success() && err.contains(needle),
            "{what}: {err}"
        );
    }
    assert_eq!(bed.proxy.count("AssociateAddress").0, 0);
    bed.nodes.get_mut("a").unwrap().haproxy.stop();
    let claimed = wb.wait_event(T, "group_claimed").await;
    assert!(
        claimed["members"]
            .as_str()
            .is_some_and(|m| m.contains("203.0.113.10") && m.contains("192.168.100.10")),
        "{claimed}"
    );
    both_tables_on(&bed, "b").await;
    assert_eq!(bed.world.holder().await.as_deref(), Some("b"));
    served_by(&bed, OVERLAY, "b").await;
    let alerts = bed.world.alerts(Duration::from_secs(3)).await;
    assert_eq!(alerts.len(), 1, "one alert for the group: {alerts:?}");
    assert!(
        alerts[0].subject.contains("took over group claim")
            && alerts[0].message.contains("203.0.113.10")
            && alerts[0].message.contains("192.168.100.10"),
        "{:?}",
        alerts[0]
    );
    assert_eq!(wb.count("eip_claimed"), 1);
    assert_eq!(wb.count("address_claimed"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_member_refused_stops_the_whole_group_before_anything_moves() {
    let mut bed = VpcBed::new(&[("a", 'a'), ("b", 'b')], Some("a"), None).await;
    bed.world.associate("a").await;
    // The route member cannot move (source/destination check on): the EIP must not either.
    bed.world
        .ec2
        .modify_network_interface_attribute()
        .network_interface_id(&bed.world.node("b").eni)
        .source_dest_check(
            aws_sdk_ec2::types::AttributeBooleanValue::builder()
                .value(true)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let members = format!(
        "type = \"claim_group\"\nmembers = [\"public\", \"internal\"]\n\n[actions.public]\ntype = \"claim_eip\"\neip = \"{}\"\n\n[actions.internal]\n{}",
        bed.world.eip,
        bed.route_action("60s")
    );
    let wb = start(&bed, "b", OVERLAY, &members);
    started(&[&wb]).await;
    bed.nodes.get_mut("a").unwrap().haproxy.stop();
    wb.refused_at_least(T, "source_dest_check", 2).await;
    assert_eq!(
        bed.proxy.count("AssociateAddress").0 + bed.proxy.count("DisassociateAddress").0,
        0
    );
    assert_eq!(bed.proxy.count("ReplaceRoute").0, 0);
    assert_eq!(bed.world.holder().await.as_deref(), Some("a"));
    assert!(bed.world.alerts(Duration::from_secs(2)).await.is_empty());
}

/// A tester's find (the benchmark): the address went on the interface only after the claim's
/// verification, a second after the VPC had started sending its traffic here, and every
/// connection in between was dropped. It goes on at the first write now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_address_is_served_from_the_first_write_not_after_the_verification() {
    for (overlay, ip) in [(true, OVERLAY), (false, VIP)] {
        let mut bed = if overlay {
            VpcBed::new(&[("a", 'a'), ("b", 'b')], Some("a"), None).await
        } else {
            VpcBed::new(&[("a", 'a'), ("b", 'a')], None, Some("a")).await
        };
        let action = if overlay {
            bed.route_action("60s")
        } else {
            bed.private_ip_action("60s")
        };
        let wb = start(&bed, "b", ip, &action);
        started(&[&wb]).await;
        let poller = bed.poll(ip, Duration::from_millis(50));
        let t0 = tokio::time::Instant::now();
        bed.nodes.get_mut("a").unwrap().haproxy.stop();
        wb.wait_event(T, "address_claimed").await;
        let claimed_seen = tokio::time::Instant::now();
        served_by(&bed, ip, "b").await;
        let first = poller.first_after(t0, Some("b")).expect("an answer from b");
        // The claim settles for a second (SETTLE) after EC2 shows the move: the first answer
        // from b comes well before the claim says it is done.
        assert!(
            first + Duration::from_millis(300) < claimed_seen,
            "{ip}: first answer from b {:?} after the failure, the claim seen done at {:?}",
            first - t0,
            claimed_seen - t0
        );
    }
}

/// `watchdog run` of `node` with `toml` and a state directory that outlives the process.
fn start_with_state(bed: &VpcBed, node: &str, toml: &str, state: &std::path::Path) -> Watchdog {
    Watchdog::start_in(
        &bed.nodes[node].host,
        &bed.env(),
        toml,
        &["--state-dir", state.to_str().unwrap()],
    )
}

/// A breaker's find: kill -9 between the two tables' writes left the overlay IP split for the
/// whole hold-down, and no alert said anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_a_route_claim_finishes_it_and_announces_it_once() {
    let mut bed = VpcBed::new(&[("a", 'a'), ("b", 'b')], Some("a"), None).await;
    let state = tempfile::tempdir().unwrap();
    let toml = bed.conf("b", OVERLAY, &bed.route_action("60s"), "");
    let wb = start_with_state(&bed, "b", &toml, state.path());
    started(&[&wb]).await;
    // The first table's write goes through; the second is held and never reaches EC2.
    bed.proxy
        .inject("ReplaceRoute", Fault::Delay(Duration::from_millis(1)), 1);
    bed.proxy
        .inject("ReplaceRoute", Fault::Blackhole(Duration::from_secs(30)), 1);
    bed.nodes.get_mut("a").unwrap().haproxy.stop();
    eventually(T, "the second table's write in flight", || async {
        (bed.proxy.count("ReplaceRoute").0 >= 2).then_some(())
    })
    .await;
    wb.signal("KILL");
    let split = bed.overlay_targets().await;
    let b_eni = bed.world.node("b").eni.clone();
    assert_eq!(
        split
            .iter()
            .filter(|(_, e)| e.as_deref() == Some(b_eni.as_str()))
            .count(),
        1,
        "one table moved before the crash: {split:?}"
    );
    let wb = start_with_state(&bed, "b", &toml, state.path());
    let found = wb.wait_event(T, "claim_found_after_restart").await;
    assert_eq!(found["partly"], true, "{found}");
    both_tables_on(&bed, "b").await;
    served_by(&bed, OVERLAY, "b").await;
    let alerts = bed.world.alerts(Duration::from_secs(3)).await;
    assert_eq!(alerts.len(), 1, "the move is announced once: {alerts:?}");
}

/// A breaker's find: kill -9 in the middle of a group's move: the member that moved was
/// never announced, and the rest waited out its hold-down, the group split meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_cut_by_a_crash_is_announced_and_finished_after_the_restart() {
    let mut bed = VpcBed::new(&[("a", 'a'), ("b", 'b')], Some("a"), None).await;
    bed.world.associate("a").await;
    let state = tempfile::tempdir().unwrap();
    let members = format!(
        "type = \"claim_group\"\nmembers = [\"public\", \"internal\"]\n\n[actions.public]\ntype = \"claim_eip\"\neip = \"{}\"\nhold_down = \"60s\"\n\n[actions.internal]\n{}",
        bed.world.eip,
        bed.route_action("60s")
    );
    let toml = bed.conf("b", OVERLAY, &members, "");
    let wb = start_with_state(&bed, "b", &toml, state.path());
    started(&[&wb]).await;
    bed.proxy
        .inject("ReplaceRoute", Fault::Blackhole(Duration::from_secs(30)), 1);
    bed.nodes.get_mut("a").unwrap().haproxy.stop();
    wb.wait_event(T, "eip_claimed").await;
    eventually(T, "the route's write in flight", || async {
        (bed.proxy.count("ReplaceRoute").0 >= 1).then_some(())
    })
    .await;
    wb.signal("KILL");
    assert_eq!(bed.world.holder().await.as_deref(), Some("b"));
    both_tables_on(&bed, "a").await;

    let wb = start_with_state(&bed, "b", &toml, state.path());
    wb.wait_event(T, "claim_found_after_restart").await;
    wb.wait_event(T, "group_claimed").await;
    both_tables_on(&bed, "b").await;
    let alerts = bed.world.alerts(Duration::from_secs(3)).await;
    assert_eq!(
        alerts.len(),
        2,
        "each move announced once: the EIP's, then the group's: {alerts:?}"
    );
    assert!(
        alerts
            .iter()
            .any(|a| a.subject.contains("took over 203.0.113.10")),
        "{alerts:?}"
    );
    assert!(
        alerts
            .iter()
            .any(|a| a.subject.contains("took over group claim")),
        "{alerts:?}"
    );
}

/// A breaker's find: a rival's write landing after this node's claim said verified (a write
/// slower than the settling reads) left a "took over (verified)" alert and history standing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_overtaken_right_after_it_said_verified_is_corrected() {
    let mut bed = VpcBed::new(&[("a", 'a'), ("b", 'b'), ("c", 'b')], Some("a"), None).await;
    let wb = start(&bed, "b", OVERLAY, &bed.route_action("60s"));
    started(&[&wb]).await;
    bed.nodes.get_mut("a").unwrap().haproxy.stop();
    wb.wait_event(T, "address_claimed").await;
    // Another node's write lands now, after b's claim was verified.
    let c_eni = bed.world.node("c").eni.clone();
    for t in [bed.table('a'), bed.table('b')] {
        bed.world
            .ec2
            .replace_route()
            .route_table_id(t)
            .destination_cidr_block(format!("{OVERLAY}/32"))
            .network_interface_id(&c_eni)
            .send()
            .await
            .unwrap();
    }
    let overtaken = wb.wait_event(T, "claim_overtaken").await;
    assert!(
        overtaken["holder"]
            .as_str()
            .is_some_and(|h| h.contains(&c_eni)),
        "{overtaken}"
    );
    wb.wait_event(T, "local_address_removed").await;
    let alerts = bed.world.alerts(Duration::from_secs(3)).await;
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert!(
        alerts.iter().any(|a| a.subject.contains("(correction)")),
        "{alerts:?}"
    );
    let history = wb.ctl(&["status", "--history", "--json"]).await;
    let text = String::from_utf8_lossy(&history.stdout);
    assert!(text.contains("right after this node's claim"), "{text}");
    // Said once, not at every poll.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(wb.count("claim_overtaken"), 1);
}

/// Breaker's finds: a node that could not put the address on its interface (no such
/// interface, no CAP_NET_ADMIN), or whose `[node] network_interface_id` names another
/// instance's ENI, still moved the address in EC2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_receive_the_address_changes_nothing_in_ec2() {
    let mut bed = VpcBed::new(&[("a", 'a'), ("b", 'a')], None, Some("a")).await;
    let no_iface = bed.private_ip_action("60s") + "interface = \"nosuch0\"\n";
    let wb = start(&bed, "b", VIP, &no_iface);
    started(&[&wb]).await;
    bed.nodes.get_mut("a").unwrap().haproxy.stop();
    wb.refused_at_least(T, "local_address_unavailable", 2).await;
    drop(wb);
    let (a, b) = (bed.world.node("a").clone(), bed.world.node("b").clone());
    let wrong_eni = format!(
        "[node]\ninstance_id = \"{}\"\nnetwork_interface_id = \"{}\"\nprivate_ip = \"{}\"\n",
        b.instance_id, a.eni, b.private_ip
    );
    let wb = bed.start(
        "b",
        &bed.conf("b", VIP, &bed.private_ip_action("60s"), &wrong_eni),
    );
    wb.refused_at_least(T, "eni_not_this_instance", 2).await;
    assert_eq!(bed.proxy.count("AssignPrivateIpAddresses").0, 0);
    assert!(bed.world.alerts(Duration::from_secs(1)).await.is_empty());
}

/// A breaker's find: an address the configuration stopped claiming (reload, restart) stayed
/// on the interface forever, answering the node's own connections to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_no_longer_claimed_is_taken_off_the_interface() {
    let bed = VpcBed::new(&[("a", 'a'), ("b", 'b')], Some("a"), None).await;
    let wa = start(&bed, "a", OVERLAY, &bed.route_action("60s"));
    started(&[&wa]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(bed.nodes["a"].has_address(OVERLAY));
    let other = bed
        .route_action("60s")
        .replace("192.168.100.10", "192.168.100.20");
    std::fs::write(wa.config_path(), bed.conf("a", OVERLAY, &other, "")).unwrap();
    wa.signal("HUP");
    wa.wait_event(T, "config_reloaded").await;
    wa.wait_event(T, "local_address_removed").await;
    assert!(!bed.nodes["a"].has_address(OVERLAY));
}
