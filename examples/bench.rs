//! Failover benchmark on the namespace test bed: the watchdog against the seed's own setup
//! (monit with the seed's `haproxywatch.monitrc` and a `failtome.sh` that uses the AWS CLI),
//! at the same interval and cycle count; then idle RSS and CPU with 10 and 1,000 rules.
//!
//! Run it with `scripts/bench.sh [--runs K] [--interval D] [--timeout D] [--fast-interval D]
//! [--skip-monit] [--monit-default] [--skip-idle]`.
//!
//! For each run: a fresh bed with nodes a (holding the EIP) and b (standby, running the
//! system under test), a client polling the EIP every 50 ms, then a's HAProxy fails, either
//! *stopped* (killed: connections refused) or *hung* (SIGSTOP: connections accepted, never
//! answered), at a uniformly random point of the system's whole check cycle (the watchdog's
//! `interval`, monit's `set daemon`). Measured from the failure: the first AssociateAddress
//! call at the AWS endpoint (the claim), and the first request through the EIP answered by b
//! (traffic restored).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use testkit::measure::{cpu_percent, cpu_ticks, rss_mb, uniform, Summary};
use testkit::testbed::{self, TestBed};
use tokio::time::Instant;

/// The rule fails after this many failed checks in a row (monit: `for 3 cycles`).
const FAIL_AFTER: u32 = 3;

#[derive(Clone, Copy, PartialEq)]
enum System {
    Watchdog,
    /// monit with `set daemon N`.
    Monit(u64),
}

/// The watchdog's check cadence under test.
#[derive(Clone, Copy)]
struct Cadence {
    /// As given (`1s`, `250ms`), for the configuration and the label.
    interval: &'static str,
    timeout: &'static str,
    fast_interval: Option<&'static str>,
    /// `interval` parsed: failures land uniformly over [0, cycle).
    cycle: Duration,
}

impl Cadence {
    /// The whole seconds of the interval when it is one (monit's `set daemon` takes seconds).
    fn whole_seconds(self) -> Option<u64> {
        (self.cycle.subsec_nanos() == 0 && self.cycle.as_secs() > 0).then(|| self.cycle.as_secs())
    }
}

impl System {
    fn label(self, c: Cadence) -> String {
        match self {
            System::Watchdog => {
                let fast = c
                    .fast_interval
                    .map(|f| format!(", fast_interval {f}"))
                    .unwrap_or_default();
                format!(
                    "watchdog ({} × {FAIL_AFTER}, timeout {}{fast})",
                    c.interval, c.timeout
                )
            }
            System::Monit(n) => {
                format!("monit + failtome.sh ({n}s × {FAIL_AFTER}, request timeout 30s)")
            }
        }
    }

    /// The check cycle a failure lands in.
    fn cycle(self, c: Cadence) -> Duration {
        match self {
            System::Watchdog => c.cycle,
            System::Monit(n) => Duration::from_secs(n),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Failure {
    Stopped,
    Hung,
}

struct Args {
    runs: usize,
    cadence: Cadence,
    monit: bool,
    monit_default: bool,
    idle: bool,
}

const USAGE: &str = "use --runs K, --interval D, --timeout D, --fast-interval D, --skip-monit, \
--monit-default, --skip-idle";

/// A duration argument: kept as written (it goes into the configuration as it is), checked
/// with humantime, as the daemon parses it.
fn duration(flag: &str, v: Option<String>) -> (&'static str, Duration) {
    let v = v.unwrap_or_else(|| panic!("{flag} needs a duration (1s, 250ms)"));
    let d = humantime::parse_duration(&v)
        .unwrap_or_else(|e| panic!("{flag} {v}: not a duration: {e}"));
    assert!(!d.is_zero(), "{flag} must be more than 0");
    (Box::leak(v.into_boxed_str()), d)
}

fn args() -> Args {
    let mut a = Args {
        runs: 20,
        cadence: Cadence {
            interval: "1s",
            timeout: "500ms",
            fast_interval: None,
            cycle: Duration::from_secs(1),
        },
        monit: true,
        monit_default: false,
        idle: true,
    };
    let number = |flag: &str, v: Option<String>| -> usize {
        v.and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{flag} needs a number"))
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--runs" => a.runs = number("--runs", it.next()),
            "--interval" => {
                let (text, d) = duration("--interval", it.next());
                a.cadence.interval = text;
                a.cadence.cycle = d;
            }
            "--timeout" => a.cadence.timeout = duration("--timeout", it.next()).0,
            "--fast-interval" => {
                a.cadence.fast_interval = Some(duration("--fast-interval", it.next()).0)
            }
            "--skip-monit" => a.monit = false,
            "--monit-default" => a.monit_default = true,
            "--skip-idle" => a.idle = false,
            other => panic!("unknown argument {other}: {USAGE}"),
        }
    }
    assert!(a.runs > 0, "--runs must be at least 1");
    a
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let watchdog = testkit::watchdog::bin();
    println!("watchdog binary: {}", watchdog.display());
    failover_table(&a).await;
    if a.idle {
        println!();
        println!("| idle, 1 s interval | rules | RSS | CPU |");
        println!("|---|---|---|---|");
        for n in [10, 1000] {
            for system in [System::Watchdog, System::Monit(1)] {
                let (rss, cpu) = idle(system, n).await;
                let label = if system == System::Watchdog {
                    "watchdog"
                } else {
                    "monit"
                };
                println!("| {label} | {n} | {rss:.1} MB | {cpu:.1} % of one core |");
            }
        }
    }
}

/// The failover runs and their table.
async fn failover_table(a: &Args) {
    let c = a.cadence;
    println!("runs per case: {}", a.runs);
    let mut cases = vec![(System::Watchdog, a.runs)];
    match (a.monit, c.whole_seconds()) {
        (false, _) => println!("monit: skipped (--skip-monit)"),
        (true, Some(n)) => cases.push((System::Monit(n), a.runs)),
        (true, None) => println!(
            "monit: skipped: its `set daemon` takes whole seconds and the interval is {}; the watchdog only",
            c.interval
        ),
    }
    if a.monit && a.monit_default {
        cases.push((System::Monit(60), 1));
    }
    println!();
    let mut rows = Vec::new();
    for (system, runs) in cases {
        for failure in [Failure::Stopped, Failure::Hung] {
            let mut claims = Vec::new();
            let mut restored = Vec::new();
            let mut most_calls = 0;
            for run in 0..runs {
                let r = failover(system, c, failure).await;
                eprintln!(
                    "{} / {}: run {}: failure at {:.0} ms of the {:.0} ms cycle, claim {:.2} s, restored {:.2} s, {} AssociateAddress",
                    system.label(c),
                    name(failure),
                    run + 1,
                    r.offset.as_secs_f64() * 1000.0,
                    system.cycle(c).as_secs_f64() * 1000.0,
                    r.claim,
                    r.restored,
                    r.calls
                );
                claims.push(r.claim);
                restored.push(r.restored);
                most_calls = most_calls.max(r.calls);
            }
            rows.push((system, failure, claims, restored, most_calls));
        }
    }
    println!(
        "| system | failure | n | {} | {} | AssociateAddress per run (max) |",
        Summary::header("claim"),
        Summary::header("restored")
    );
    println!("|---|---|---|{}|", "---|".repeat(11));
    let secs = |x: f64| format!("{x:.2} s");
    for (system, failure, c_, r, calls) in rows {
        let (c_, r) = (Summary::of(&c_), Summary::of(&r));
        println!(
            "| {} | {} | {} | {} | {} | {calls} |",
            system.label(c),
            name(failure),
            c_.n,
            c_.cells(secs),
            r.cells(secs)
        );
    }
}

fn name(f: Failure) -> &'static str {
    match f {
        Failure::Stopped => "stopped",
        Failure::Hung => "hung",
    }
}

/// One failover's figures.
struct Run {
    /// Where in the check cycle the failure landed: after the bed settled, a uniformly
    /// random offset over [0, cycle).
    offset: Duration,
    /// Seconds from the failure to the first AssociateAddress at the AWS endpoint.
    claim: f64,
    /// Seconds from the failure to the first request through the EIP answered by b.
    restored: f64,
    /// AssociateAddress calls made in the run, counted 2 s after traffic was restored: more
    /// than 1 is a false claim.
    calls: usize,
}

async fn failover(system: System, cadence: Cadence, failure: Failure) -> Run {
    let mut bed = TestBed::new(&["a", "b"], Some("a")).await;
    let _runner = match system {
        System::Watchdog => {
            let mut conf = bed.conf("b");
            conf.interval = cadence.interval;
            conf.timeout = cadence.timeout;
            conf.fast_interval = cadence.fast_interval;
            conf.fail_after = FAIL_AFTER;
            let w = bed.start("b", &conf);
            w.wait_event(Duration::from_secs(30), "started").await;
            Runner::Watchdog(w)
        }
        System::Monit(interval) => Runner::Monit(Monit::start(&bed, interval)),
    };
    // Let it settle for a few cycles while the EIP is healthy.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        bed.get_eip().await.as_deref(),
        Some("a"),
        "the bed is not healthy"
    );

    let client = bed.poll_eip(Duration::from_millis(50));
    // Failures arrive at any point of a check cycle: whatever the phase of the system's
    // cycle is now, a uniformly random offset over one whole cycle makes the failure's phase
    // uniform (for both systems, each at its own cycle).
    let cycle = system.cycle(cadence);
    let offset = uniform(cycle);
    tokio::time::sleep(offset).await;
    let t0 = Instant::now();
    let a = bed.nodes.get_mut("a").unwrap();
    match failure {
        Failure::Stopped => a.haproxy.stop(),
        Failure::Hung => a.haproxy.hang(),
    }
    let limit = cycle * 6 + Duration::from_secs(120);
    let restored = testkit::eventually(limit, "traffic restored through the EIP", || async {
        client.first_after(t0, Some("b"))
    })
    .await;
    drop(client);
    let claim = bed
        .proxy
        .first_after("AssociateAddress", t0)
        .expect("no claim reached the AWS endpoint");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let calls = bed.proxy.count("AssociateAddress").0;
    Run {
        offset,
        claim: (claim - t0).as_secs_f64(),
        restored: (restored - t0).as_secs_f64(),
        calls,
    }
}

/// Held only for its `Drop`, which stops the system under test.
#[allow(dead_code)]
enum Runner {
    Watchdog(testkit::watchdog::Watchdog),
    Monit(Monit),
}

/// monit in foreground (`-I`) with the seed's monitrc, and the seed's failtome.sh using the
/// AWS CLI against the bed's AWS endpoint (moto has no OpsWorks, so `ec2 associate-address`
/// stands in for `opsworks associate-elastic-ip`).
struct Monit {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Monit {
    fn start(bed: &TestBed, interval: u64) -> Monit {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let b = bed.world.node("b");
        let aws = testkit::repo().join(".venv-awscli/bin/aws");
        assert!(aws.exists(), "run scripts/bench-deps.sh first");
        let eip = bed.world.eip;
        let failtome = format!(
            r#"#!/bin/sh
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
AWS="{aws} --endpoint-url {endpoint}"

# Check current instance IP externally
OUT=$( curl -qSfsw '\n' http://{checkip} ) 2>/dev/null
RET=$?

# Check that current IP isn't target IP and that request didn't fail
if [ "$RET" = '0' -a "$OUT" != '{eip}' ]; then
 # Swap EIP
 $AWS ec2 associate-address --allocation-id {alloc} --network-interface-id {eni} --allow-reassociation
 # Send notification
 $AWS sns publish --topic-arn {topic} --subject "HAProxy failover notification" --message "Instance {instance} took over {eip}"
fi
"#,
            aws = aws.display(),
            endpoint = bed.env().aws_endpoint,
            checkip = testbed::CHECKIP,
            alloc = bed.world.allocation_id,
            eni = b.eni,
            topic = bed.world.topic_arn,
            instance = b.instance_id,
        );
        std::fs::write(d.join("failtome.sh"), failtome).unwrap();
        let rc = monitrc(d, interval, &format!(
            "check host {eip} with address {eip}\n    if failed\n        port 80\n        protocol HTTP\n        request /\n        timeout 30 seconds\n        for 3 cycles\n        then exec \"/bin/sh {}\"\n",
            d.join("failtome.sh").display()
        ));
        let child = bed.nodes["b"]
            .host
            .command("monit")
            .args(["-I", "-c"])
            .arg(&rc)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("monit");
        Monit { child, _dir: dir }
    }
}

/// A monit control file in `dir` with `checks`; monit insists on mode 0600.
fn monitrc(dir: &Path, interval: u64, checks: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let d = dir.display();
    let text = format!(
        "set daemon {interval}\nset logfile {d}/monit.log\nset pidfile {d}/monit.pid\nset idfile {d}/monit.id\nset statefile {d}/monit.state\n{checks}"
    );
    let path = dir.join("monitrc");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

impl Drop for Monit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// RSS (MB) and CPU (% of one core) of `system` running `n` HTTP checks at a 1 s interval
/// against a loopback server, measured over 20 s after a 5 s warm-up.
async fn idle(system: System, n: usize) -> (f64, f64) {
    let target = testkit::http::Stub::start(testkit::http::Reply::ok("ok")).await;
    let port = target.server.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let mut child = match system {
        System::Watchdog => {
            let mut toml = String::new();
            for i in 0..n {
                toml.push_str(&format!(
                    "[rules.r{i}]\ncheck = {{ type = \"http\", url = \"http://127.0.0.1:{port}/r{i}\" }}\ninterval = \"1s\"\ntimeout = \"500ms\"\n"
                ));
            }
            let path = dir.path().join("watchdog.toml");
            std::fs::write(&path, toml).unwrap();
            Command::new(testkit::watchdog::bin())
                .args(["run", "--log-level", "warn", "--config"])
                .arg(&path)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        }
        System::Monit(interval) => {
            let mut checks = String::new();
            for i in 0..n {
                checks.push_str(&format!(
                    "check host r{i} with address 127.0.0.1\n    if failed port {port} protocol HTTP request /r{i} timeout 1 seconds then alert\n"
                ));
            }
            let rc = monitrc(dir.path(), interval, &checks);
            Command::new("monit")
                .args(["-I", "-c"])
                .arg(&rc)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        }
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pid = child.id();
    let over = Duration::from_secs(20);
    let t1 = cpu_ticks(pid);
    tokio::time::sleep(over).await;
    let t2 = cpu_ticks(pid);
    let rss = rss_mb(pid);
    let _ = child.kill();
    let _ = child.wait();
    (rss, cpu_percent(t2.own - t1.own, over))
}
