//! Backend-sync benchmark on real HAProxy 2.6 (loopback, master-worker), moto's Auto Scaling
//! and the Consul stand-in:
//!
//! 1. latency from a change in the source to HAProxy serving the new server (n, min,
//!    nearest-rank median, p95, p99, max: `testkit::measure::Summary`), for Consul blocking
//!    queries and for Auto Scaling polling (each change at a uniformly random point of the
//!    whole poll cycle);
//! 2. failed requests per 1,000 changes under `wrk` load, in runtime and in reload mode;
//! 3. the daemon's RSS and CPU with a 1,000-server backend, idle and with one change a second;
//! 4. `--only many`: discovery latency at scale (issue 18): 100 Consul services of 10 servers
//!    each, one rule and one backend per service in one watchdog and one HAProxy (runtime
//!    mode), 10 changes a second, each to a random service (one of its servers that no change
//!    in flight brought replaced by a new one); each sample runs from the
//!    stand-in publishing a change to HAProxy's stats socket showing the new server, with
//!    where the time went (the stand-in's answer, the daemon's `backend_sync_applied`, the
//!    rule's next query);
//! 5. `--only events`: Auto Scaling events through SQS (moto): from sending a Launch Successful
//!    event to HAProxy serving the new instance, and from a termination event to HAProxy no
//!    longer serving it.
//!
//! Run it with `scripts/bench-sync.sh [--changes N] [--samples N] [--only latency|many|events|resources]
//! [--many-changes N] [--many-rate N] [--many-without-port] [--event-samples N]`. Without
//! `--only`: parts 1 to 3. `--many-without-port`: the many-services rules leave `port` unset,
//! so their never-used slots are written `0.0.0.0:0`.
//! `--only resources` (or `--resources-only`) runs only the CPU and RSS figures (3., and the
//! CPU of 10 Auto Scaling changes in runtime mode).

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use testkit::asg::Group;
use testkit::consul::{instances, Consul, Instance};
use testkit::lb::{self, Backends, Lb};
use testkit::measure::{cpu_percent, cpu_ticks, rss_mb, uniform, Summary};
use testkit::watchdog::{Env, Watchdog};
use tokio::time::Instant;

struct Args {
    changes: usize,
    samples: usize,
    /// `latency`, `many`, `events` or `resources`; None: parts 1 to 3.
    only: Option<String>,
    /// Recorded changes of the many-services part (after its warm-up).
    many_changes: usize,
    /// Launches (and as many terminations) of the events part.
    event_samples: usize,
    /// Changes a second of the many-services part.
    many_rate: u32,
    /// The many-services part's rules leave `port` unset (never-used slots `0.0.0.0:0`).
    many_without_port: bool,
}

fn args() -> Args {
    let mut a = Args {
        changes: 1000,
        samples: 50,
        only: None,
        many_changes: 300,
        event_samples: 30,
        many_rate: CHANGES_PER_SECOND,
        many_without_port: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        if x == "--only" {
            let part = it.next().expect("--only latency|many|events|resources");
            assert!(
                ["latency", "many", "events", "resources"].contains(&part.as_str()),
                "--only takes latency, many, events or resources, not {part}"
            );
            a.only = Some(part);
            continue;
        }
        if x == "--many-without-port" {
            a.many_without_port = true;
            continue;
        }
        let mut n = || it.next().and_then(|n| n.parse().ok()).expect("a number");
        match x.as_str() {
            "--changes" => a.changes = n(),
            "--samples" => a.samples = n(),
            "--many-changes" => a.many_changes = n(),
            "--event-samples" => a.event_samples = n(),
            "--many-rate" => a.many_rate = n() as u32,
            "--resources-only" => a.only = Some("resources".into()),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn rule(lb: &Lb, interval: &str, check: &str, source: &str) -> String {
    format!(
        "[rules.app]\ninterval = \"{interval}\"\ntimeout = \"1s\"\n[rules.app.check]\ntype = \"backend_sync\"\nbackend = \"app\"\n\
         stats_socket = \"{}\"\nhaproxy_config = \"{}\"\nreload = {{ master_socket = \"{}\", window = \"1s\" }}\n{check}\n\
         [rules.app.check.source]\n{source}\n",
        lb.socket.display(),
        lb.config.display(),
        lb.master.display()
    )
}

/// Poll HAProxy's stats socket every 2 ms until `pred` holds; the time it took.
async fn until(lb: &Lb, start: Instant, pred: impl Fn(&BTreeSet<SocketAddr>) -> bool) -> f64 {
    loop {
        if let Some(s) = lb.serving().await {
            if pred(&s) {
                return start.elapsed().as_secs_f64() * 1000.0;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "HAProxy never followed the change"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn consul_latency(samples: usize) -> Vec<f64> {
    let b = Backends::start(4).await;
    let consul = Consul::start("web", instances(&b, &[0, 1])).await;
    let lb = Lb::start(&lb::block(6, b.port)).await;
    let _wd = Watchdog::start(
        "lb",
        &Env::offline(),
        &rule(&lb, "60s", "", &consul.source()),
        &[],
    );
    until(&lb, Instant::now(), |s| s.len() == 2).await;
    let mut out = Vec::new();
    for k in 0..samples {
        let new = 2 + k % 2;
        let t = Instant::now();
        consul.set(instances(&b, &[0, new]));
        out.push(until(&lb, t, |s| s.contains(&b.addr(new)) && s.len() == 2).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    out
}

/// The Auto Scaling poll interval of the latency samples.
const ASG_POLL: &str = "2s";

async fn asg_latency(samples: usize, interval: &str) -> Vec<f64> {
    let cycle = humantime::parse_duration(interval).expect("a poll interval");
    let group = Group::start("web-asg", 2).await;
    let lb = Lb::start(&lb::block(6, 8080)).await;
    let env = Env::aws_only(&group.moto.url);
    let toml = rule(
        &lb,
        interval,
        "port = 8080\nserver_options = \"\"",
        "type = \"asg\"\ngroup = \"web-asg\"",
    );
    let _wd = Watchdog::start("lb", &env, &toml, &[]);
    let target = |ips| lb::addrs(ips, 8080);
    let first = target(group.serving_ips().await);
    until(&lb, Instant::now(), |s| s == &first).await;
    let mut out = Vec::new();
    for k in 0..samples {
        // Each change lands at a uniformly random point of the whole poll cycle: whatever
        // the phase of the daemon's polls is now (just after one, when HAProxy has just
        // followed), a uniform offset over one cycle makes it uniform.
        tokio::time::sleep(uniform(cycle)).await;
        let t = Instant::now();
        group.set_capacity(if k % 2 == 0 { 3 } else { 2 }).await;
        let want = target(group.serving_ips().await);
        out.push(until(&lb, t, |s| s == &want).await);
    }
    out
}

/// `changes` one-in-one-out swaps, 50 ms apart, under wrk; (requests, failed, wrk text).
async fn under_load(reload_mode: bool, idle_close: bool, changes: usize) -> (u64, u64, usize) {
    let b = Backends::start(6).await;
    let consul = Consul::start("web", instances(&b, &[0, 1, 2])).await;
    let (lb, check) = if reload_mode {
        let lb = Lb::start("  server seed 127.0.0.1:9 disabled\n").await;
        let template = lb.dir.path().join("haproxy.cfg.j2");
        let mut text = lb::config_text(&lb.socket, lb.port, "    {{ nodes }}\n");
        if !idle_close {
            text = text.replace("  option idle-close-on-response\n", "");
        }
        std::fs::write(&template, text).unwrap();
        let check = format!("apply = \"reload\"\ntemplate = \"{}\"", template.display());
        (lb, check)
    } else {
        (Lb::start(&lb::block(8, b.port)).await, String::new())
    };
    let wd = Watchdog::start(
        "lb",
        &Env::offline(),
        &rule(&lb, "60s", &check, &consul.source()),
        &[],
    );
    until(&lb, Instant::now(), |s| s.len() == 3).await;
    let secs = (changes as u64 * 50 / 1000) + 3;
    let wrk = testkit::load::start(&lb.url(), 16, Duration::from_secs(secs));
    tokio::time::sleep(Duration::from_millis(500)).await;
    for k in 0..changes {
        let set: Vec<usize> = (0..3).map(|j| (k + j) % 6).collect();
        consul.set(instances(&b, &set));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = wrk.await.unwrap();
    // A wrk that did not run would otherwise read as "0 failed".
    assert!(r.requests > 1000, "wrk made only {} requests", r.requests);
    (r.requests, r.failed(), wd.count("haproxy_reloaded"))
}

/// A 1,000-server backend: RSS MB, CPU % idle, CPU % with one change a second, and the
/// CPU % of the `haproxy -c` runs that checked each rewritten file.
async fn thousand_servers() -> (f64, f64, f64, f64) {
    let port = 8080;
    let all: Vec<Instance> = (0..1000u32)
        .map(|i| {
            Instance::new(
                Ipv4Addr::new(10, 1, (i / 250) as u8, (i % 250 + 1) as u8),
                port,
            )
        })
        .collect();
    let consul = Consul::start("web", all.clone()).await;
    let lb = Lb::start(&lb::block(1100, port)).await;
    let wd = Watchdog::start(
        "lb",
        &Env::offline(),
        &rule(&lb, "60s", "server_options = \"\"", &consul.source()),
        &[],
    );
    until(&lb, Instant::now(), |s| s.len() == 1000).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = wd.pid();
    let over = Duration::from_secs(20);
    let t1 = cpu_ticks(pid);
    tokio::time::sleep(over).await;
    let idle = cpu_percent(cpu_ticks(pid).own - t1.own, over);
    let t1 = cpu_ticks(pid);
    for k in 0..20usize {
        let mut list = all.clone();
        list.remove(k);
        consul.set(list);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let t2 = cpu_ticks(pid);
    (
        rss_mb(pid),
        idle,
        cpu_percent(t2.own - t1.own, over),
        cpu_percent(t2.children - t1.children, over),
    )
}

/// The many-services part: services, servers per service, changes a second.
const SERVICES: usize = 100;
const PER_SERVICE: usize = 10;
/// Changes a second of the many-services part, unless `--many-rate` says otherwise.
const CHANGES_PER_SECOND: u32 = 10;
/// Changes made (at the same rate) before the recorded ones.
const WARM_UP_CHANGES: usize = 20;

/// Server `k` of service `s`: 127.2.s.(k+1), port 8080. Nothing listens there and nothing
/// is sent there: the rules' servers have no health check, and no request goes through.
fn many_addr(s: usize, k: usize) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(127, 2, s as u8, (k % 250 + 1) as u8), 8080))
}

fn many_instance(a: SocketAddr) -> Instance {
    match a.ip() {
        std::net::IpAddr::V4(ip) => Instance::new(ip, a.port()),
        std::net::IpAddr::V6(_) => unreachable!("IPv4 only"),
    }
}

/// Milliseconds since midnight UTC of a tracing timestamp (`2026-12-01T04:03:25.123456Z`).
fn day_ms(ts: &str) -> Option<f64> {
    let time = ts.split_once('T')?.1.trim_end_matches('Z');
    let mut f = time.split(':');
    let (h, m, s): (f64, f64, f64) = (
        f.next()?.parse().ok()?,
        f.next()?.parse().ok()?,
        f.next()?.parse().ok()?,
    );
    Some(((h * 60.0 + m) * 60.0 + s) * 1000.0)
}

/// Milliseconds since midnight UTC now.
fn day_ms_now() -> f64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    (d.as_secs_f64() * 1000.0) % 86_400_000.0
}

/// One change of the many-services part, and where its time went (ms after publishing).
struct ManySample {
    service: usize,
    /// HAProxy's stats socket showed the new server.
    serving: f64,
    /// The stand-in answered the rule's blocked query with the change.
    answered: Option<f64>,
    /// The daemon logged `backend_sync_applied` for the rule (after the runtime commands,
    /// before the file is rewritten and checked).
    applied: Option<f64>,
    /// The rule's next query came (its round over: the file rewritten and `haproxy -c` run).
    next_query: Option<f64>,
    /// When it was published, ms after the first change.
    at: f64,
}

/// The new servers HAProxy has not been seen serving yet: (backend, when the change was
/// published, where to say how long it took in ms).
type Pending = std::sync::Mutex<
    std::collections::BTreeMap<SocketAddr, (String, Instant, tokio::sync::oneshot::Sender<f64>)>,
>;

/// One poller for every change in flight, so the pollers do not multiply while changes
/// queue: each pass asks `show servers state <backend>` of each backend with a change in
/// flight (one `show servers state` of all of them when more than 10 have one), then sleeps a
/// millisecond. A new server is seen serving at most about 1 ms plus one pass after it is.
async fn poll_serving(lb: std::sync::Arc<Lb>, pending: std::sync::Arc<Pending>) {
    loop {
        let by_backend: std::collections::BTreeMap<String, Vec<SocketAddr>> = {
            let p = pending.lock().unwrap();
            let mut m = std::collections::BTreeMap::<String, Vec<SocketAddr>>::new();
            for (addr, (backend, _, _)) in p.iter() {
                m.entry(backend.clone()).or_default().push(*addr);
            }
            m
        };
        let seen = |backend: &str, serving: &BTreeSet<SocketAddr>| {
            let mut p = pending.lock().unwrap();
            for addr in &by_backend[backend] {
                if serving.contains(addr) {
                    if let Some((_, t0, tx)) = p.remove(addr) {
                        let _ = tx.send(t0.elapsed().as_secs_f64() * 1000.0);
                    }
                }
            }
        };
        if by_backend.len() > 10 {
            let names: Vec<String> = by_backend.keys().cloned().collect();
            if let Some(all) = lb.serving_all(&names).await {
                for (backend, serving) in &all {
                    seen(backend, serving);
                }
            }
        } else {
            for backend in by_backend.keys() {
                if let Some(serving) = lb.serving_in(backend).await {
                    seen(backend, &serving);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// What the many-services part found besides its samples.
struct ManyCosts {
    /// Median of 10 `haproxy -c` runs on the 1,000-server file, ms.
    check: f64,
    /// Median of 10 writes of that file with `fsync`, then an `fsync` of its directory (what
    /// each rewrite does), ms.
    write_sync: f64,
    /// Gaps between consecutive `backend_sync_applied` events of all rules in the recorded
    /// window, ms: while changes queue on the file's lock, a round's hold of it.
    gaps: Vec<f64>,
}

/// 100 services x 10 servers, one rule each, `rate` changes a second; the recorded samples
/// and what the file's rewrite costs.
async fn many_services(
    recorded: usize,
    rate: u32,
    without_port: bool,
) -> (Vec<ManySample>, ManyCosts) {
    let names: Vec<String> = (0..SERVICES).map(|s| format!("svc{s}")).collect();
    let mut current: Vec<Vec<SocketAddr>> = (0..SERVICES)
        .map(|s| (0..PER_SERVICE).map(|k| many_addr(s, k)).collect())
        .collect();
    let consul = Consul::start_many(
        names
            .iter()
            .zip(&current)
            .map(|(n, list)| (n.clone(), list.iter().map(|a| many_instance(*a)).collect()))
            .collect(),
    )
    .await;
    // 15 slots a backend: 10 servers, and room for a change's new server beside them. Every
    // server listens on 8080 and the rules say so (`port`), as docs/backend-sync.md advises
    // for runtime mode: a never-used slot is then written with that port, and the rewrite
    // that first fills it needs no `haproxy -c` (a slot written `0.0.0.0:0` does).
    let lb = std::sync::Arc::new(
        Lb::start_many(
            &names
                .iter()
                .map(|n| {
                    let slot_port = if without_port { 0 } else { 8080 };
                    (n.clone(), lb::block_of(n, PER_SERVICE + 5, slot_port))
                })
                .collect::<Vec<_>>(),
        )
        .await,
    );
    let toml: String = names
        .iter()
        .map(|n| {
            format!(
                "[rules.{n}]\ninterval = \"60s\"\ntimeout = \"2s\"\n[rules.{n}.check]\ntype = \"backend_sync\"\nbackend = \"{n}\"\n\
                 stats_socket = \"{}\"\nhaproxy_config = \"{}\"\nhaproxy_bin = \"{}\"\nserver_options = \"\"\n\
                 {}reload = {{ master_socket = \"{}\", window = \"1s\" }}\n[rules.{n}.check.source]\n{}\n",
                lb.socket.display(),
                lb.config.display(),
                testkit::haproxy_bin(),
                if without_port { "" } else { "port = 8080\n" },
                lb.master.display(),
                consul.source_for(n)
            )
        })
        .collect();
    let wd = Watchdog::start("lb", &Env::offline(), &toml, &[]);
    let t = Instant::now();
    loop {
        if let Some(all) = lb.serving_all(&names).await {
            if all.values().all(|s| s.len() == PER_SERVICE) {
                break;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "the 100 backends never served their services\n{}",
            wd.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "many: 100 backends serve 1,000 servers after {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // Every rule's first rounds (each rewrote and checked the file) are over.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let period = Duration::from_secs(1) / rate;
    let mut next_k = vec![PER_SERVICE; SERVICES];
    // A later change never takes out a server a change in flight brought, so each sample is
    // one change, whatever else is in flight.
    let pending = std::sync::Arc::new(Pending::default());
    let poller = tokio::spawn(poll_serving(lb.clone(), pending.clone()));
    let mut tasks = Vec::new();
    let start = Instant::now();
    for i in 0..WARM_UP_CHANGES + recorded {
        tokio::time::sleep_until(start + period * i as u32).await;
        let s = testkit::measure::below(SERVICES);
        let outs: Vec<usize> = {
            let p = pending.lock().unwrap();
            (0..PER_SERVICE)
                .filter(|k| !p.contains_key(&current[s][*k]))
                .collect()
        };
        let out = outs[testkit::measure::below(outs.len())];
        let new = many_addr(s, next_k[s]);
        next_k[s] += 1;
        current[s][out] = new;
        let list: Vec<Instance> = current[s].iter().map(|a| many_instance(*a)).collect();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (t0, wall0) = (Instant::now(), day_ms_now());
        pending
            .lock()
            .unwrap()
            .insert(new, (names[s].clone(), t0, tx));
        consul.set_service(&names[s], list);
        let index = consul.index_of(&names[s]);
        tasks.push((i, s, index, t0, wall0, rx));
    }
    let mut done = Vec::new();
    for (i, s, index, t0, wall0, rx) in tasks {
        let serving = tokio::time::timeout(Duration::from_secs(300), rx)
            .await
            .unwrap_or_else(|_| panic!("svc{s} never served its new server\n{}", wd.log()))
            .expect("the poller runs");
        done.push((i, s, index, t0, wall0, serving));
    }
    poller.abort();
    let mut samples = Vec::new();
    let answers = consul.answers();
    let mut first_wall = f64::MAX;
    for (i, s, index, t0, wall0, serving) in done {
        if i < WARM_UP_CHANGES {
            continue;
        }
        first_wall = first_wall.min(wall0);
        let ms = |t: std::time::Instant| {
            t.checked_duration_since(t0.into_std())
                .map(|d| d.as_secs_f64() * 1000.0)
        };
        let answered_at = answers
            .iter()
            .find(|(n, i, _)| n == &names[s] && *i == index)
            .map(|(_, _, t)| *t);
        let next_query = answered_at.and_then(|at| {
            consul
                .request_log_of(&names[s])
                .into_iter()
                .find(|(t, _)| *t > at)
                .and_then(|(t, _)| ms(t))
        });
        let applied = wd
            .events("backend_sync_applied")
            .iter()
            .filter(|e| e["rule"] == names[s].as_str())
            .filter_map(|e| day_ms(e["timestamp"].as_str()?))
            .map(|w| w - wall0)
            // The round that took this change: the first after the stand-in answered with
            // it (an earlier round of the rule may still have been applying an older list).
            .find(|d| *d >= answered_at.and_then(ms).unwrap_or(0.0) - 1.0);
        samples.push(ManySample {
            service: s,
            serving,
            answered: answered_at.and_then(ms),
            applied,
            next_query,
            at: (t0 - start).as_secs_f64() * 1000.0,
        });
    }
    let mut applied: Vec<f64> = wd
        .events("backend_sync_applied")
        .iter()
        .filter_map(|e| day_ms(e["timestamp"].as_str()?))
        .filter(|w| *w >= first_wall)
        .collect();
    applied.sort_by(f64::total_cmp);
    let gaps: Vec<f64> = applied.windows(2).map(|w| w[1] - w[0]).collect();
    // What one rewrite of the file costs (each round makes one, under the file lock): the
    // write with its fsyncs, and `haproxy -c`.
    let text = std::fs::read_to_string(&lb.config).expect("the file");
    let scratch = lb.dir.path().join("scratch.cfg");
    let mut syncs = Vec::new();
    for _ in 0..10 {
        let t = std::time::Instant::now();
        std::fs::write(&scratch, &text).unwrap();
        std::fs::File::open(&scratch).unwrap().sync_all().unwrap();
        std::fs::File::open(lb.dir.path())
            .unwrap()
            .sync_all()
            .unwrap();
        syncs.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let mut checks = Vec::new();
    for _ in 0..10 {
        let t = std::time::Instant::now();
        let ok = std::process::Command::new(testkit::haproxy_bin())
            .args(["-c", "-q", "-f"])
            .arg(&lb.config)
            .status()
            .expect("haproxy -c");
        assert!(ok.success());
        checks.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    drop(wd);
    let costs = ManyCosts {
        check: Summary::of(&checks).median,
        write_sync: Summary::of(&syncs).median,
        gaps,
    };
    (samples, costs)
}

/// The events part: (launch served, termination no longer served), `n` of each, ms from
/// sending the event to SQS.
async fn events(n: usize) -> (Vec<f64>, Vec<f64>) {
    let group = Group::start_in("web", 2, Some(())).await;
    let q = group.queue("node-a").await;
    let lb = Lb::start(&lb::block(6, 8080)).await;
    let toml = format!(
        "[rules.app]\ninterval = \"10m\"\ntimeout = \"2s\"\n[rules.app.check]\ntype = \"backend_sync\"\nbackend = \"app\"\nport = 8080\n\
         stats_socket = \"{}\"\nhaproxy_config = \"{}\"\nhaproxy_bin = \"{}\"\nserver_options = \"\"\n\
         reload = {{ master_socket = \"{}\", window = \"1s\" }}\n\
         [rules.app.check.source]\ntype = \"asg\"\ngroup = \"web\"\nevents_queue = \"{}\"\n",
        lb.socket.display(),
        lb.config.display(),
        testkit::haproxy_bin(),
        lb.master.display(),
        q.url
    );
    let _wd = Watchdog::start("lb", &Env::aws_only(&group.moto.url), &toml, &[]);
    let first = lb::addrs(group.serving_ips().await, 8080);
    until(&lb, Instant::now(), |s| s == &first).await;
    let (mut launched, mut terminated) = (Vec::new(), Vec::new());
    for _ in 0..n {
        // Not in step with anything the daemon does (its SQS long poll, moto's).
        tokio::time::sleep(Duration::from_millis(200) + uniform(Duration::from_secs(1))).await;
        let before = group.instance_ids().await;
        group.set_capacity(3).await;
        let new = group
            .instance_ids()
            .await
            .into_iter()
            .find(|i| !before.contains(i))
            .expect("a new instance");
        let addr = SocketAddr::from((group.private_ip(&new).await, 8080));
        let t = Instant::now();
        q.send(&testkit::asg::event("launch-successful.json", "web", &new))
            .await;
        launched.push(until(&lb, t, |s| s.contains(&addr)).await);

        tokio::time::sleep(Duration::from_millis(200) + uniform(Duration::from_secs(1))).await;
        group.terminate(&new, true).await;
        let t = Instant::now();
        q.send(&testkit::asg::event(
            "state-change-terminated.json",
            "web",
            &new,
        ))
        .await;
        terminated.push(until(&lb, t, |s| !s.contains(&addr)).await);
    }
    (launched, terminated)
}

/// The machine's load average (1, 5 and 15 minutes), to print beside figures.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn print_many(samples: &[ManySample], costs: &ManyCosts, rate: u32) {
    let ms = |x: f64| format!("{x:.1} ms");
    println!(
        "\n### Discovery latency: 100 Consul services, 1,000 servers, {rate} changes a second\n"
    );
    println!("| from the stand-in publishing a change to | n | min | median | p95 | p99 | max |\n| --- | --- | --- | --- | --- | --- | --- |");
    let row = |label: &str, v: Vec<f64>| {
        if !v.is_empty() {
            let s = Summary::of(&v);
            println!("| {label} | {} | {} |", s.n, s.cells(ms));
        }
    };
    row(
        "**HAProxy serving the new server**",
        samples.iter().map(|s| s.serving).collect(),
    );
    row(
        "the stand-in answering the rule's blocked query",
        samples.iter().filter_map(|s| s.answered).collect(),
    );
    row(
        "the daemon logging `backend_sync_applied` (runtime commands sent)",
        samples.iter().filter_map(|s| s.applied).collect(),
    );
    row(
        "the rule's next query (its round over: file rewritten, `haproxy -c` run)",
        samples.iter().filter_map(|s| s.next_query).collect(),
    );
    println!("\n| between | n | min | median | p95 | p99 | max |\n| --- | --- | --- | --- | --- | --- | --- |");
    row(
        "answer sent -> `backend_sync_applied` (HTTP, file lock, `show servers state`, commands)",
        samples
            .iter()
            .filter_map(|s| Some(s.applied? - s.answered?))
            .collect(),
    );
    row(
        "`backend_sync_applied` -> the stats socket seen serving (poll lag)",
        samples
            .iter()
            .filter_map(|s| Some(s.serving - s.applied?))
            .collect(),
    );
    // Was another rule's round (from the stand-in's answer to its next query: the file's lock
    // is held for most of it) under way when the stand-in answered this one?
    let span = |s: &ManySample| Some((s.at + s.answered?, s.at + s.next_query?));
    let busy = |j: usize| {
        let Some((a, _)) = span(&samples[j]) else {
            return false;
        };
        samples
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != j)
            .filter_map(|(_, s)| span(s))
            .any(|(from, to)| from < a && a < to)
    };
    let (mut alone, mut queued) = (Vec::new(), Vec::new());
    for (j, s) in samples.iter().enumerate() {
        if busy(j) {
            queued.push(s.serving);
        } else {
            alone.push(s.serving);
        }
    }
    row(
        "HAProxy serving, when no other rule's round was under way at the answer",
        alone,
    );
    row(
        "HAProxy serving, when another rule's round was under way (its file lock held)",
        queued,
    );
    if !costs.gaps.is_empty() {
        row(
            "consecutive `backend_sync_applied` of all rules (a round's hold of the file lock, while changes queue)",
            costs.gaps.clone(),
        );
    }
    let services: BTreeSet<usize> = samples.iter().map(|s| s.service).collect();
    println!(
        "\n{} distinct services changed. Rewriting the 1,000-server file: `haproxy -c` median {:.1} ms, write + fsync + directory fsync median {:.1} ms (10 runs each, after the run). Load average at the end: {}.",
        services.len(),
        costs.check,
        costs.write_sync,
        loadavg()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    match a.only.as_deref() {
        Some("many") => {
            eprintln!("load average at the start: {}", loadavg());
            let (samples, costs) =
                many_services(a.many_changes, a.many_rate, a.many_without_port).await;
            print_many(&samples, &costs, a.many_rate);
            return;
        }
        Some("events") => {
            eprintln!("load average at the start: {}", loadavg());
            let (launched, terminated) = events(a.event_samples).await;
            let ms = |x: f64| format!("{x:.1} ms");
            println!("\n### Auto Scaling events through SQS (moto)\n");
            println!("| from sending the event to | n | min | median | p95 | p99 | max |\n| --- | --- | --- | --- | --- | --- | --- |");
            let l = Summary::of(&launched);
            println!(
                "| HAProxy serving the launched instance (Launch Successful) | {} | {} |",
                l.n,
                l.cells(ms)
            );
            let t = Summary::of(&terminated);
            println!(
                "| HAProxy no longer serving the terminated one (EC2 state change) | {} | {} |",
                t.n,
                t.cells(ms)
            );
            println!("\nLoad average at the end: {}.", loadavg());
            return;
        }
        Some("resources") => {
            resources().await;
            return;
        }
        _ => {}
    }
    println!("## Backend sync benchmark\n");
    println!("| source | n | min | median | p95 | p99 | max |\n| --- | --- | --- | --- | --- | --- | --- |");
    let ms = |x: f64| format!("{x:.0} ms");
    let c = Summary::of(&consul_latency(a.samples).await);
    println!("| Consul, blocking queries | {} | {} |", c.n, c.cells(ms));
    let n = (a.samples / 3).max(5);
    let g = Summary::of(&asg_latency(n, ASG_POLL).await);
    println!(
        "| Auto Scaling, polled every {ASG_POLL} (changes uniform over the cycle) | {} | {} |",
        g.n,
        g.cells(ms)
    );
    if a.only.is_some() {
        return;
    }

    println!("\n| mode | changes | requests | failed | failed per 1,000 changes | reloads |\n| --- | --- | --- | --- | --- | --- |");
    for (reload, idle_close, label) in [
        (false, true, "runtime"),
        (true, true, "reload"),
        (
            true,
            false,
            "reload, without `option idle-close-on-response`",
        ),
    ] {
        let (req, failed, reloads) = under_load(reload, idle_close, a.changes).await;
        println!(
            "| {label} | {} | {req} | {failed} | {:.1} | {reloads} |",
            a.changes,
            failed as f64 * 1000.0 / a.changes as f64
        );
    }

    let (rss, idle, busy, checks) = thousand_servers().await;
    println!("\n| 1,000 servers | RSS | CPU idle | CPU, one change a second | its `haproxy -c` runs |\n| --- | --- | --- | --- | --- |");
    println!("| watchdog, runtime mode, Consul | {rss:.1} MB | {idle:.1} % | {busy:.1} % of one core | {checks:.1} % of one core |");
}

/// `--resources-only`: the 1,000-server table and the CPU of Auto Scaling churn, nothing else.
async fn resources() {
    println!("## Backend sync: resources\n");
    let (rss, idle, busy, checks) = thousand_servers().await;
    println!("| 1,000 servers | RSS | CPU idle | CPU, one change a second | its `haproxy -c` runs |\n| --- | --- | --- | --- | --- |");
    println!("| watchdog, runtime mode, Consul | {rss:.1} MB | {idle:.1} % | {busy:.1} % of one core | {checks:.1} % of one core |");
    let (n, own, children) = asg_churn_cpu(10).await;
    println!("\n| Auto Scaling churn, runtime mode, 1,100-slot block | changes | daemon CPU | its children's CPU (`haproxy -c`) | total per change |\n| --- | --- | --- | --- | --- |");
    println!(
        "| polled every 1s | {n} | {own:.2} s | {children:.2} s | {:.0} ms |",
        (own + children) * 1000.0 / n as f64
    );
}

/// `changes` Auto Scaling changes (capacity 2 -> 3 -> 2 ...) in runtime mode, each waited
/// for until HAProxy serves it and the file on disk says so, with a block of 1,100 slots (the
/// file size of a 1,000-server backend): (changes, daemon CPU s, its children's CPU s).
async fn asg_churn_cpu(changes: usize) -> (usize, f64, f64) {
    let group = Group::start("web-asg", 2).await;
    let lb = Lb::start(&lb::block(1100, 8080)).await;
    let env = Env::aws_only(&group.moto.url);
    let toml = rule(
        &lb,
        "1s",
        "port = 8080\nserver_options = \"\"",
        "type = \"asg\"\ngroup = \"web-asg\"",
    );
    let wd = Watchdog::start("lb", &env, &toml, &[]);
    let target = |ips| lb::addrs(ips, 8080);
    lb.converges(&target(group.serving_ips().await), "first sync")
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t1 = cpu_ticks(wd.pid());
    for k in 0..changes {
        group.set_capacity(if k % 2 == 0 { 3 } else { 2 }).await;
        lb.converges(&target(group.serving_ips().await), "an Auto Scaling change")
            .await;
    }
    let t2 = cpu_ticks(wd.pid());
    let secs = |ticks: u64| ticks as f64 / 100.0;
    (
        changes,
        secs(t2.own - t1.own),
        secs(t2.children - t1.children),
    )
}
