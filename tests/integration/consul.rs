//! The Consul stand-in with many services: each service has its own index, as Consul 1.0.7
//! and later keep one per service for `/v1/health/service/<name>`, so a change to one service
//! wakes only the blocking queries on it; and the watchdog, with one rule per service, follows
//! each service in its own backend.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use testkit::consul::{Consul, Instance};
use testkit::lb::{self, Lb};
use testkit::watchdog::{Env, Watchdog};

const WITHIN: Duration = Duration::from_secs(15);

/// One instance per address of `ips` (127.3.0.x: nothing needs to listen, the rules' servers
/// have no health check).
fn list(ips: &[u8]) -> Vec<Instance> {
    ips.iter()
        .map(|i| Instance::new(Ipv4Addr::new(127, 3, 0, *i), 8080))
        .collect()
}

/// GET a service's health list (blocking when `index` is given): its `X-Consul-Index`, the
/// addresses it lists, and how long the answer took.
async fn query(
    base: &str,
    service: &str,
    index: Option<(u64, &str)>,
) -> (u64, Vec<String>, Duration) {
    let mut url = format!("{base}/v1/health/service/{service}");
    if let Some((i, wait)) = index {
        url.push_str(&format!("?index={i}&wait={wait}"));
    }
    let t = Instant::now();
    let resp = reqwest::get(&url).await.expect("the stand-in answers");
    let index = resp.headers()["X-Consul-Index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    let addrs = body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Node"]["Address"].as_str().unwrap().to_owned())
        .collect();
    (index, addrs, t.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_stand_in_wakes_only_the_queries_on_the_service_that_changed() {
    let consul = Consul::start_many(vec![
        ("x".to_owned(), list(&[1, 2])),
        ("y".to_owned(), list(&[3, 4])),
    ])
    .await;
    let (ix, _, _) = query(&consul.url(), "x", None).await;
    let (iy, y_before, _) = query(&consul.url(), "y", None).await;
    assert_eq!((ix, iy), (consul.index_of("x"), consul.index_of("y")));

    // Both block; only x changes.
    let on_x = tokio::spawn({
        let url = consul.url();
        async move { query(&url, "x", Some((ix, "10s"))).await }
    });
    let on_y = tokio::spawn({
        let url = consul.url();
        async move { query(&url, "y", Some((iy, "1500ms"))).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    consul.set_service("x", list(&[1, 5]));

    let (x_index, x_list, x_took) = on_x.await.unwrap();
    assert!(x_index > ix, "x's index moved: {ix} -> {x_index}");
    assert_eq!(x_list, ["127.3.0.1", "127.3.0.5"]);
    assert!(
        x_took < Duration::from_secs(1),
        "x woke at once: {x_took:?}"
    );

    // y's query was not woken: it answers when its wait runs out, at the index it had.
    let (y_index, y_list, y_took) = on_y.await.unwrap();
    assert_eq!(y_index, iy, "y's index did not move");
    assert_eq!(y_list, y_before);
    assert!(
        y_took >= Duration::from_millis(1500),
        "y answered after {y_took:?}, before its wait ran out: it was woken"
    );
    assert_eq!(consul.index_of("y"), iy);
    assert_eq!(consul.index_of("x"), x_index);

    // The stand-in's own record: one blocking answer on x (the change), one on y (the wait).
    let answers: Vec<(String, u64)> = consul
        .answers()
        .into_iter()
        .map(|(s, i, _)| (s, i))
        .collect();
    assert_eq!(answers, [("x".to_owned(), x_index), ("y".to_owned(), iy)]);

    // A service the catalog does not hold: no instances, at the catalog's highest index.
    let (iz, z_list, _) = query(&consul.url(), "z", None).await;
    assert!(z_list.is_empty());
    assert_eq!(iz, x_index.max(iy));
}

/// Three services, three rules on one HAProxy (a backend each): a change to one service moves
/// only its backend, and only that rule's blocking query is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_many_services_each_rule_follows_its_own_backend() {
    let names: Vec<String> = ["s0", "s1", "s2"].map(String::from).to_vec();
    let consul = Consul::start_many(
        names
            .iter()
            .enumerate()
            .map(|(k, n)| (n.clone(), list(&[10 * k as u8 + 1, 10 * k as u8 + 2])))
            .collect(),
    )
    .await;
    let lb = Lb::start_many(
        &names
            .iter()
            .map(|n| (n.clone(), lb::block_of(n, 4, 8080)))
            .collect::<Vec<_>>(),
    )
    .await;
    let toml: String = names
        .iter()
        .map(|n| {
            format!(
                "[rules.{n}]\ninterval = \"30s\"\n[rules.{n}.check]\ntype = \"backend_sync\"\nbackend = \"{n}\"\n\
                 stats_socket = \"{}\"\nhaproxy_config = \"{}\"\nhaproxy_bin = \"{}\"\nserver_options = \"\"\n\
                 [rules.{n}.check.source]\n{}\n",
                lb.socket.display(),
                lb.config.display(),
                testkit::haproxy_bin(),
                consul.source_for(n)
            )
        })
        .collect();
    let wd = Watchdog::start("lb", &Env::offline(), &toml, &[]);
    let addr = |i: u8| SocketAddr::from((Ipv4Addr::new(127, 3, 0, i), 8080));
    testkit::eventually(WITHIN, "every backend serves its service", || async {
        let all = lb.serving_all(&names).await?;
        (all.values().all(|s| s.len() == 2)).then_some(())
    })
    .await;
    // Every rule's query is blocked now (each rule asked, then asked again with the index).
    testkit::eventually(WITHIN, "three blocking queries", || async {
        (consul.requests().1 >= 3).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let before = consul.answers().len();
    consul.set_service("s1", list(&[11, 13]));
    testkit::eventually(WITHIN, "s1 serves its new server", || async {
        lb.serves("s1", addr(13)).await.then_some(())
    })
    .await;
    let all = lb.serving_all(&names).await.unwrap();
    assert_eq!(all["s0"], [addr(1), addr(2)].into());
    assert_eq!(all["s1"], [addr(11), addr(13)].into());
    assert_eq!(all["s2"], [addr(21), addr(22)].into());
    // Only s1's blocked query was answered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let woken: Vec<String> = consul.answers()[before..]
        .iter()
        .map(|(s, _, _)| s.clone())
        .collect();
    assert_eq!(woken, ["s1"], "{}", wd.log());
}

/// Breaker's find: while a rule's rewrite of the file kept failing, each retry reused the
/// answer that had failed, for a whole `interval`: a change in Consul (the fix of a bad entry,
/// or just the next change) waited up to that long to reach HAProxy. A change at the source
/// now ends a failed round's backoff at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_at_the_source_reaches_haproxy_while_the_rule_keeps_failing() {
    let consul = Consul::start("app", list(&[1, 2])).await;
    let lb = Lb::start(&lb::block_of("app", 4, 8080)).await;
    // `haproxy -c` refuses everything: every rewrite of the file fails, after the round's
    // live changes went through.
    let dir = tempfile::tempdir().unwrap();
    let refuses = testkit::haproxy_refusing_checks(dir.path());
    let toml = format!(
        "[rules.app]\ninterval = \"60s\"\n[rules.app.check]\ntype = \"backend_sync\"\nbackend = \"app\"\n\
         stats_socket = \"{}\"\nhaproxy_config = \"{}\"\nhaproxy_bin = \"{}\"\nserver_options = \"\"\n\
         [rules.app.check.source]\n{}\n",
        lb.socket.display(),
        lb.config.display(),
        refuses.display(),
        consul.source_for("app")
    );
    let wd = Watchdog::start("lb", &Env::offline(), &toml, &[]);
    let addr = |i: u8| SocketAddr::from((Ipv4Addr::new(127, 3, 0, i), 8080));
    testkit::eventually(WITHIN, "HAProxy serves the first answer", || async {
        (lb.serving().await? == [addr(1), addr(2)].into()).then_some(())
    })
    .await;
    wd.wait_event(WITHIN, "backend_sync_failed").await;
    // A few failed rounds: the backoff has grown past its first second.
    tokio::time::sleep(Duration::from_secs(4)).await;

    consul.set(list(&[1, 3]));
    let changed = Instant::now();
    testkit::eventually(WITHIN, "HAProxy serves the change", || async {
        (lb.serving().await? == [addr(1), addr(3)].into()).then_some(())
    })
    .await;
    let took = changed.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "the change reached HAProxy only after {took:?} (interval 60 s)\n{}",
        wd.log()
    );
    // The file is still refused: the rule keeps failing, and says why.
    let failed = wd.events("backend_sync_failed");
    assert!(failed.len() >= 3, "{}", wd.log());
    assert!(
        failed
            .iter()
            .all(|e| e.to_string().contains("rejects the new configuration")),
        "{failed:?}"
    );
    // Waiting for a change costs one blocking query per change or per backoff, not a poll.
    let queries = consul.request_log().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        consul.request_log().len() <= queries + 3,
        "{} queries in 3 s",
        consul.request_log().len() - queries
    );
}
