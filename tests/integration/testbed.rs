//! The seed scenarios end to end on the namespace test bed (tests/support/testbed.rs): real
//! HAProxy nodes, real traffic to the Elastic IP through the edge, nodes failing.

use crate::support::eventually;
use crate::support::testbed::TestBed;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

async fn served_by(bed: &TestBed, node: &str) {
    eventually(T, &format!("the EIP served by {node}"), || async {
        (bed.get_eip().await.as_deref() == Some(node)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_standby_failover_moves_real_traffic_and_does_not_fail_back() {
    let mut bed = TestBed::new(&["a", "b"], Some("a")).await;
    served_by(&bed, "a").await;
    let wa = bed.start("a", &bed.conf("a"));
    let wb = bed.start("b", &bed.conf("b"));
    wa.wait_event(T, "started").await;
    wb.wait_event(T, "started").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        wa.count("check_failed") + wb.count("check_failed"),
        0,
        "healthy pair: no failures"
    );

    bed.nodes.get_mut("a").unwrap().haproxy.stop();
    wb.wait_event(T, "eip_claimed").await;
    served_by(&bed, "b").await;
    assert_eq!(bed.eip_route(), Some(bed.world.node("b").private_ip));
    // a saw the failure too, but its own HAProxy is down: it never claimed.
    assert!(wa
        .events("action_refused")
        .iter()
        .all(|e| e["reason"] == "local_haproxy_unhealthy"));
    assert_eq!(wa.count("eip_claimed"), 0);
    assert_eq!(
        bed.world.alerts(Duration::from_secs(3)).await.len(),
        1,
        "one SNS alert"
    );

    // a comes back: the EIP stays on b.
    bed.nodes.get_mut("a").unwrap().haproxy.restart().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(bed.get_eip().await.as_deref(), Some("b"));
    assert_eq!(bed.world.holder().await.as_deref(), Some("b"));
    assert_eq!(wa.count("eip_claimed") + wb.count("eip_claimed"), 1);
}
