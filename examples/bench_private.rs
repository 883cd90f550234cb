//! Failover benchmark of the private claims on the VPC bed (testkit/src/vpc.rs), next to the
//! Elastic IP's on the namespace test bed (testkit/src/testbed.rs), at two check cadences.
//!
//! Run it with `scripts/bench-private.sh [--runs K] [--quick]` (K = 20 by default, 3 with
//! `--quick`).
//!
//! Kinds: `claim_route` (an overlay IP routed in both route tables; node a in subnet a holds
//! it, b stands by in subnet b, another AZ), `claim_private_ip` (a secondary private IP; a and
//! b both in subnet a, the IP on a) and, for comparison, `claim_eip` (the EIP on a, b standing
//! by). Cadences: checks every 1 s (timeout 800 ms) and every 250 ms (timeout 200 ms), the
//! rule failing after 3 in a row.
//!
//! For each run: a fresh bed; only b runs `watchdog` (a is the active that fails, its own
//! daemon plays no part); once b has started and checked for 2 s, the client polls the address
//! every 50 ms (the internal client on the VPC bed, the internet client on the EIP bed), then
//! a's HAProxy is stopped (killed: connections refused) at a uniformly random point of the
//! whole check cycle.
//! Measured from the failure:
//! - *mutating call*: the first call that moves the address reaching the AWS endpoint
//!   (`ReplaceRoute`/`CreateRoute`, `AssignPrivateIpAddresses`, `AssociateAddress`);
//! - *verified*: when this benchmark sees b's `address_claimed` (`eip_claimed`) event, which
//!   the daemon logs once the move is verified (checked every 10 ms, so up to ~10 ms after the
//!   daemon wrote it, plus the pipe);
//! - *first good request*: the first client request answered by b.

use std::time::Duration;
use testkit::awsproxy::AwsProxy;
use testkit::measure::{uniform, Summary};
use testkit::testbed::{Poller, TestBed};
use testkit::vpc::{VpcBed, OVERLAY, VIP};
use testkit::watchdog::Watchdog;
use tokio::time::Instant;

/// How long any one step of a run may take before the run is given up.
const LIMIT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Route,
    PrivateIp,
    Eip,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Route => "claim_route (overlay IP, across AZs)",
            Kind::PrivateIp => "claim_private_ip (secondary IP, one subnet)",
            Kind::Eip => "claim_eip (Elastic IP, EIP bed)",
        }
    }

    /// The AWS calls that move the address.
    fn calls(self) -> &'static [&'static str] {
        match self {
            Kind::Route => &["ReplaceRoute", "CreateRoute"],
            Kind::PrivateIp => &["AssignPrivateIpAddresses"],
            Kind::Eip => &["AssociateAddress"],
        }
    }

    /// The event the daemon logs when it has verified the move.
    fn event(self) -> &'static str {
        match self {
            Kind::Eip => "eip_claimed",
            _ => "address_claimed",
        }
    }
}

#[derive(Clone, Copy)]
struct Cadence {
    interval: &'static str,
    timeout: &'static str,
    /// The interval in ms: the failure lands at a uniformly random point of one.
    cycle_ms: u64,
}

impl Cadence {
    fn label(self) -> String {
        format!("{} × 3 (timeout {})", self.interval, self.timeout)
    }
}

const CADENCES: [Cadence; 2] = [
    Cadence {
        interval: "1s",
        timeout: "800ms",
        cycle_ms: 1000,
    },
    Cadence {
        interval: "250ms",
        timeout: "200ms",
        cycle_ms: 250,
    },
];

const KINDS: [Kind; 3] = [Kind::Route, Kind::PrivateIp, Kind::Eip];

struct Args {
    runs: usize,
}

fn args() -> Args {
    let mut a = Args { runs: 20 };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--runs" => a.runs = it.next().and_then(|n| n.parse().ok()).expect("--runs N"),
            "--quick" => a.runs = 3,
            other => panic!("unknown argument {other}: use --runs K, --quick"),
        }
    }
    assert!(a.runs > 0, "--runs must be at least 1");
    a
}

/// One run's figures, in seconds after the failure.
struct Sample {
    call: f64,
    verified: f64,
    restored: f64,
    /// Calls that moved the address in the run, by the time both of the above were seen
    /// (claim_route makes one per route table).
    calls: usize,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let began = Instant::now();
    println!("watchdog binary: {}", testkit::watchdog::bin().display());
    println!("runs per case: {}\n", a.runs);
    let mut rows = Vec::new();
    for cadence in CADENCES {
        for kind in KINDS {
            let mut samples = Vec::new();
            let mut failed = 0;
            for run in 0..a.runs {
                // In a task of its own: a run that fails (a panic) is counted, its bed torn
                // down, and the benchmark goes on.
                match tokio::spawn(one_run(kind, cadence)).await {
                    Ok(s) => {
                        eprintln!(
                            "{} / {}: run {}: mutating call {:.2} s, verified {:.2} s, first good request {:.2} s, {} calls",
                            kind.label(),
                            cadence.label(),
                            run + 1,
                            s.call,
                            s.verified,
                            s.restored,
                            s.calls
                        );
                        samples.push(s);
                    }
                    Err(e) => {
                        eprintln!(
                            "{} / {}: run {}: FAILED: {e}",
                            kind.label(),
                            cadence.label(),
                            run + 1
                        );
                        failed += 1;
                    }
                }
            }
            rows.push((kind, cadence, samples, failed));
        }
    }
    println!(
        "| kind | checks | n | {} | {} | {} | mutating calls per run (max) | failed runs |",
        Summary::header("mutating call"),
        Summary::header("verified"),
        Summary::header("first good request")
    );
    println!("|---|---|---|{}", "---|".repeat(17));
    let secs = |x: f64| format!("{x:.2} s");
    for (kind, cadence, samples, failed) in rows {
        if samples.is_empty() {
            println!(
                "| {} | {} | 0 | {}– | {failed} |",
                kind.label(),
                cadence.label(),
                "– | ".repeat(15)
            );
            continue;
        }
        let of = |f: fn(&Sample) -> f64| Summary::of(&samples.iter().map(f).collect::<Vec<_>>());
        let (c, v, r) = (of(|s| s.call), of(|s| s.verified), of(|s| s.restored));
        let calls = samples.iter().map(|s| s.calls).max().unwrap_or(0);
        println!(
            "| {} | {} | {} | {} | {} | {} | {calls} | {failed} |",
            kind.label(),
            cadence.label(),
            c.n,
            c.cells(secs),
            v.cells(secs),
            r.cells(secs)
        );
    }
    println!(
        "\ntook {:.0} s ({} runs)",
        began.elapsed().as_secs_f64(),
        a.runs * KINDS.len() * CADENCES.len()
    );
}

async fn one_run(kind: Kind, cadence: Cadence) -> Sample {
    match kind {
        Kind::Eip => eip_run(cadence).await,
        _ => private_run(kind, cadence).await,
    }
}

/// One failover of a private address on a fresh VPC bed.
async fn private_run(kind: Kind, cadence: Cadence) -> Sample {
    let (mut bed, address) = match kind {
        Kind::Route => (
            VpcBed::new(&[("a", 'a'), ("b", 'b')], Some("a"), None).await,
            OVERLAY,
        ),
        _ => (
            VpcBed::new(&[("a", 'a'), ("b", 'a')], None, Some("a")).await,
            VIP,
        ),
    };
    let action = match kind {
        Kind::Route => bed.route_action("60s"),
        _ => bed.private_ip_action("60s"),
    };
    let base = bed.conf("b", address, &action, "");
    let conf = base
        .replace(
            "interval = \"500ms\"",
            &format!("interval = \"{}\"", cadence.interval),
        )
        .replace(
            "timeout = \"400ms\"",
            &format!("timeout = \"{}\"", cadence.timeout),
        );
    assert!(
        conf != base && conf.contains(cadence.interval) && conf.contains("fail_after = 3"),
        "the VPC bed's rule is no longer what this benchmark rewrites:\n{base}"
    );
    let wb = bed.start("b", &conf);
    wb.wait_event(LIMIT, "started").await;
    // Let it check for a while while a is healthy.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        bed.get_from_client(address).await.as_deref(),
        Some("a"),
        "the bed is not healthy"
    );
    let client = bed.poll(address, Duration::from_millis(50));
    let t0 = fail_at_random_point(cadence).await;
    bed.nodes.get_mut("a").unwrap().haproxy.stop();
    measure(kind, t0, &wb, &client, &bed.proxy).await
}

/// One failover of the EIP on a fresh namespace test bed.
async fn eip_run(cadence: Cadence) -> Sample {
    let mut bed = TestBed::new(&["a", "b"], Some("a")).await;
    let mut conf = bed.conf("b");
    conf.interval = cadence.interval;
    conf.timeout = cadence.timeout;
    conf.fail_after = 3;
    let wb = bed.start("b", &conf);
    wb.wait_event(LIMIT, "started").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        bed.get_eip().await.as_deref(),
        Some("a"),
        "the bed is not healthy"
    );
    let client = bed.poll_eip(Duration::from_millis(50));
    let t0 = fail_at_random_point(cadence).await;
    bed.nodes.get_mut("a").unwrap().haproxy.stop();
    measure(Kind::Eip, t0, &wb, &client, &bed.proxy).await
}

/// Wait a uniformly random offset over [0, one check cycle) (from /dev/urandom, so the
/// failure's phase in the daemon's cycle is uniform whatever it was), then return the
/// failure's instant: the caller fails a right away.
async fn fail_at_random_point(cadence: Cadence) -> Instant {
    tokio::time::sleep(uniform(Duration::from_millis(cadence.cycle_ms))).await;
    Instant::now()
}

/// The figures of one failover that started at `t0`.
async fn measure(
    kind: Kind,
    t0: Instant,
    wb: &Watchdog,
    client: &Poller,
    proxy: &AwsProxy,
) -> Sample {
    let deadline = t0 + LIMIT;
    let verified = loop {
        if let Some(e) = wb.events(kind.event()).first() {
            if e["verified"] != "verified" {
                eprintln!("{}: the claim was not verified: {e}", kind.label());
            }
            break Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "no {} within {LIMIT:?}; b's log:\n{}",
            kind.event(),
            wb.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let restored = testkit::eventually(LIMIT, "the first request answered by b", || async {
        client.first_after(t0, Some("b"))
    })
    .await;
    let call = kind
        .calls()
        .iter()
        .filter_map(|a| proxy.first_after(a, t0))
        .min()
        .expect("no mutating call reached the AWS endpoint");
    let calls = kind.calls().iter().map(|a| proxy.count(a).0).sum();
    Sample {
        call: (call - t0).as_secs_f64(),
        verified: (verified - t0).as_secs_f64(),
        restored: (restored - t0).as_secs_f64(),
        calls,
    }
}
