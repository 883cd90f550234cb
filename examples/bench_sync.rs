//! Backend-sync benchmark on real HAProxy 2.6 (loopback, master-worker), moto's Auto Scaling
//! and the Consul stand-in:
//!
//! 1. latency from a change in the source to HAProxy serving the new server (n, min,
//!    nearest-rank median, p95, p99, max: `testkit::measure::Summary`), for Consul blocking
//!    queries and for Auto Scaling polling (each change at a uniformly random point of the
//!    whole poll cycle);
//! 2. failed requests per 1,000 changes under `wrk` load, in runtime and in reload mode;
//! 3. the daemon's RSS and CPU with a 1,000-server backend, idle and with one change a second.
//!
//! Run it with `scripts/bench-sync.sh [--changes N] [--samples N]`; `--resources-only` runs
//! only the CPU and RSS figures (3., and the CPU of 10 Auto Scaling changes in runtime mode).

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
    resources_only: bool,
}

fn args() -> Args {
    let mut a = Args {
        changes: 1000,
        samples: 50,
        resources_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        let mut n = || it.next().and_then(|n| n.parse().ok()).expect("a number");
        match x.as_str() {
            "--changes" => a.changes = n(),
            "--samples" => a.samples = n(),
            "--resources-only" => a.resources_only = true,
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    if a.resources_only {
        resources().await;
        return;
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
