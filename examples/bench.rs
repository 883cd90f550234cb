//! Failover benchmark on the namespace test bed: the watchdog against the seed's own setup
//! (monit with the seed's `haproxywatch.monitrc` and a `failtome.sh` that uses the AWS CLI),
//! at the same interval and cycle count; then the idle cost of 10 and 1,000 HTTP checks.
//!
//! Run it with `scripts/bench.sh [--runs K] [--interval D] [--timeout D] [--fast-interval D]
//! [--skip-monit] [--monit-default] [--skip-idle | --idle-only] [--rules N[,N...]]
//! [--idle-rounds K]`.
//!
//! For each run: a fresh bed with nodes a (holding the EIP) and b (standby, running the
//! system under test), a client polling the EIP every 50 ms, then a's HAProxy fails, either
//! *stopped* (killed: connections refused) or *hung* (SIGSTOP: connections accepted, never
//! answered), at a uniformly random point of the system's whole check cycle (the watchdog's
//! `interval`, monit's `set daemon`). Measured from the failure: the first AssociateAddress
//! call at the AWS endpoint (the claim), and the first request through the EIP answered by b
//! (traffic restored).
//!
//! Idle: one real HAProxy on loopback answers every check with a static 200; the checks
//! each system actually performed are HAProxy's `CumReq` at the end of the measured window
//! less at its start, and the system's CPU time over the window is divided by them. The
//! watchdog and monit are measured in turns (W, M, F, W, M, F ...) in the same run, with the
//! floor (F): the same checks made with bare blocking system calls, the least a checker that
//! opens a connection per check can spend.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use testkit::haproxy::{Haproxy, Mode};
use testkit::measure::{cpu_ticks, cpu_time, rss_mb, uniform, Summary};
use testkit::testbed::{self, TestBed};
use tokio::time::Instant;

/// The rule fails after this many failed checks in a row (monit: `for 3 cycles`).
const FAIL_AFTER: u32 = 3;

#[derive(Clone, Copy, PartialEq)]
enum System {
    Watchdog,
    /// The watchdog with `keep_alive = "30s"` on every rule (idle rounds only): a connection
    /// serves a rule's checks for 30 s, then a new one is opened.
    WatchdogKeepAlive,
    /// monit with `set daemon N`.
    Monit(u64),
    /// The floor of the idle rounds: this program (`--floor-child`) making each check's
    /// system calls and nothing else, in one thread: connect, send the request, read the
    /// answer to its end, close with a reset (as the watchdog's `http` checks close). No
    /// checker that opens a connection per check can spend less per check.
    Floor,
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
        (self.cycle.subsec_nanos() == 0 && self.cycle.as_secs() > 0).then_some(self.cycle.as_secs())
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
            System::Floor | System::WatchdogKeepAlive => {
                unreachable!("only takes part in the idle rounds")
            }
        }
    }

    /// The check cycle a failure lands in.
    fn cycle(self, c: Cadence) -> Duration {
        match self {
            System::Watchdog => c.cycle,
            System::Monit(n) => Duration::from_secs(n),
            System::Floor | System::WatchdogKeepAlive => {
                unreachable!("only takes part in the idle rounds")
            }
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
    /// Runs of monit's hung case, which take ~95 s each (its 30 s check timeout, 3 cycles).
    monit_hung_runs: Option<usize>,
    cadence: Cadence,
    monit: bool,
    monit_default: bool,
    /// The watchdog's failover runs (off with `--skip-watchdog`: monit's alone).
    watchdog: bool,
    /// The failure modes to run (`--failure stopped|hung`; both by default).
    failures: Vec<Failure>,
    failover: bool,
    idle: bool,
    rules: Vec<usize>,
    idle_rounds: usize,
}

const USAGE: &str = "use --runs K, --monit-hung-runs K, --interval D, --timeout D, --fast-interval D, --skip-monit, \
--skip-watchdog, --failure stopped|hung, --monit-default, --skip-idle, --idle-only, --rules N[,N...] (repeatable), --idle-rounds K";

/// A duration argument: kept as written (it goes into the configuration as it is), checked
/// with humantime, as the daemon parses it.
fn duration(flag: &str, v: Option<String>) -> (&'static str, Duration) {
    let v = v.unwrap_or_else(|| panic!("{flag} needs a duration (1s, 250ms)"));
    let d =
        humantime::parse_duration(&v).unwrap_or_else(|e| panic!("{flag} {v}: not a duration: {e}"));
    assert!(!d.is_zero(), "{flag} must be more than 0");
    (Box::leak(v.into_boxed_str()), d)
}

fn args() -> Args {
    let mut a = Args {
        runs: 20,
        monit_hung_runs: None,
        cadence: Cadence {
            interval: "1s",
            timeout: "500ms",
            fast_interval: None,
            cycle: Duration::from_secs(1),
        },
        monit: true,
        monit_default: false,
        watchdog: true,
        failures: vec![Failure::Stopped, Failure::Hung],
        failover: true,
        idle: true,
        rules: Vec::new(),
        idle_rounds: 2,
    };
    let number = |flag: &str, v: Option<String>| -> usize {
        v.and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{flag} needs a number"))
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--runs" => a.runs = number("--runs", it.next()),
            "--monit-hung-runs" => a.monit_hung_runs = Some(number("--monit-hung-runs", it.next())),
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
            "--skip-watchdog" => a.watchdog = false,
            "--failure" => {
                a.failures = match it.next().as_deref() {
                    Some("stopped") => vec![Failure::Stopped],
                    Some("hung") => vec![Failure::Hung],
                    other => panic!("--failure takes stopped or hung, not {other:?}"),
                }
            }
            "--monit-default" => a.monit_default = true,
            "--skip-idle" => a.idle = false,
            "--idle-only" => a.failover = false,
            "--rules" => {
                let v = it.next().unwrap_or_default();
                for n in v.split(',') {
                    a.rules.push(number("--rules", Some(n.trim().to_owned())));
                }
            }
            "--idle-rounds" => a.idle_rounds = number("--idle-rounds", it.next()),
            other => panic!("unknown argument {other}: {USAGE}"),
        }
    }
    if a.rules.is_empty() {
        a.rules = vec![10, 1000];
    }
    assert!(a.runs > 0, "--runs must be at least 1");
    assert!(a.idle_rounds > 0, "--idle-rounds must be at least 1");
    assert!(
        a.failover || a.idle,
        "--idle-only and --skip-idle leave nothing to run"
    );
    assert!(
        a.watchdog || a.monit || !a.failover,
        "--skip-watchdog and --skip-monit leave no failover runs"
    );
    a
}

fn main() {
    let mut argv = std::env::args().skip(1);
    if argv.next().as_deref() == Some("--floor-child") {
        let port = argv.next().and_then(|p| p.parse().ok());
        let n = argv.next().and_then(|n| n.parse().ok());
        let (Some(port), Some(n)) = (port, n) else {
            panic!("--floor-child PORT N");
        };
        floor(port, n);
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(run());
}

/// `--floor-child PORT N`: every second, N checks of http://127.0.0.1:PORT/ one after the
/// other with blocking system calls, each on its own connection closed with a reset; never
/// returns.
fn floor(port: u16, n: usize) -> ! {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    let request = b"GET /floor HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n";
    let mut buf = [0u8; 4096];
    let mut next = std::time::Instant::now();
    loop {
        for _ in 0..n {
            let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                continue;
            };
            let _ = c.write_all(request);
            while matches!(c.read(&mut buf), Ok(k) if k > 0) {}
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: a valid socket and a `linger` of the size given.
            unsafe {
                libc::setsockopt(
                    c.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
        }
        next += Duration::from_secs(1);
        std::thread::sleep(next.saturating_duration_since(std::time::Instant::now()));
    }
}

async fn run() {
    let a = args();
    let watchdog = testkit::watchdog::bin();
    println!("watchdog binary: {}", watchdog.display());
    if a.failover {
        failover_table(&a).await;
    }
    if a.idle {
        idle_tables(&a).await;
    }
}

/// The failover runs and their table.
async fn failover_table(a: &Args) {
    let c = a.cadence;
    println!("runs per case: {}", a.runs);
    let mut cases = Vec::new();
    if a.watchdog {
        cases.push((System::Watchdog, a.runs));
    } else {
        println!("watchdog: skipped (--skip-watchdog)");
    }
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
        for failure in a.failures.iter().copied() {
            let runs = match (system, failure) {
                (System::Monit(_), Failure::Hung) => a.monit_hung_runs.unwrap_or(runs),
                _ => runs,
            };
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
    println!("|---|---|---|{}", "---|".repeat(11));
    let secs = |x: f64| format!("{x:.2} s");
    for (system, failure, claims, restored, calls) in rows {
        let (claim, restored) = (Summary::of(&claims), Summary::of(&restored));
        println!(
            "| {} | {} | {} | {} | {} | {calls} |",
            system.label(c),
            name(failure),
            claim.n,
            claim.cells(secs),
            restored.cells(secs)
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
        System::Floor | System::WatchdogKeepAlive => {
            unreachable!("only takes part in the idle rounds")
        }
    };
    // Let it settle for a few cycles while the EIP is healthy.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        bed.get_eip().await.as_deref(),
        Some("a"),
        "the bed is not healthy"
    );

    // A request every 10 ms: "restored" is known to within 10 ms (it was 50 ms before
    // 2026-12-01, which added 25 ms on average to every figure).
    let client = bed.poll_eip(Duration::from_millis(10));
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

/// Idle: warm-up before the measured window, and the window. The warm-up covers the
/// watchdog's whole start-up, which ends when it gives back the pages only starting used
/// (`daemon::startup_pages::AFTER`, 10 s); monit and the floor wait as long.
const WARM_UP: Duration = Duration::from_secs(12);
const WINDOW: Duration = Duration::from_secs(20);

/// One system's idle cost over one window.
struct Idle {
    /// Checks performed per second (HAProxy's `CumReq` over the window).
    rate: f64,
    rss_mb: f64,
    /// CPU time over the window, % of one core.
    cpu_percent: f64,
    /// CPU time over the window / checks performed, in µs.
    us_per_check: f64,
    /// Where the CPU time came from.
    source: &'static str,
}

/// The idle rounds (W, M, F, W, M, F ... at each size) and their summary.
async fn idle_tables(a: &Args) {
    let haproxy = target().await;
    let systems: &[System] = if a.monit {
        &[
            System::Watchdog,
            System::Monit(1),
            System::Floor,
            System::WatchdogKeepAlive,
        ]
    } else {
        &[System::Watchdog, System::Floor, System::WatchdogKeepAlive]
    };
    println!(
        "\nidle: HTTP GET http://127.0.0.1:{}/rN every 1 s (the watchdog: timeout 500ms; monit: \
         `set daemon 1`, timeout 1 seconds), answered by HAProxy ({}) with a static 200; \
         checks counted by its CumReq over {} s after a {} s warm-up; {} round(s), the systems \
         in turns{}\n",
        haproxy.port,
        testkit::haproxy_bin(),
        WINDOW.as_secs(),
        WARM_UP.as_secs(),
        a.idle_rounds,
        if a.monit {
            ""
        } else {
            " (monit skipped: --skip-monit)"
        }
    );
    println!("| round | system | rules | checks/s (expected) | RSS | CPU | CPU per check | CPU time from |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut all: Vec<(System, usize, Vec<Idle>)> = Vec::new();
    for &n in &a.rules {
        let first = all.len();
        for &s in systems {
            all.push((s, n, Vec::new()));
        }
        for round in 1..=a.idle_rounds {
            for (k, &system) in systems.iter().enumerate() {
                let m = idle(&haproxy, system, n).await;
                println!(
                    "| {round} | {} | {n} | {:.1} ({n}) | {:.1} MB | {:.2} % | {:.1} µs | {} |",
                    idle_label(system),
                    m.rate,
                    m.rss_mb,
                    m.cpu_percent,
                    m.us_per_check,
                    m.source
                );
                all[first + k].2.push(m);
            }
        }
    }
    println!(
        "\nSummary: the nearest-rank median over the rounds (`testkit::measure::Summary`: of an \
         even number of rounds, the lower middle one), min–max in brackets:\n"
    );
    println!("| idle, 1 s interval | rules | rounds | checks/s performed (expected) | RSS | CPU, % of one core | CPU per check |");
    println!("|---|---|---|---|---|---|---|");
    for (system, n, ms) in all {
        let s = |f: fn(&Idle) -> f64| Summary::of(&ms.iter().map(f).collect::<Vec<_>>());
        let (rate, rss, cpu, per) = (
            s(|m| m.rate),
            s(|m| m.rss_mb),
            s(|m| m.cpu_percent),
            s(|m| m.us_per_check),
        );
        println!(
            "| {} | {n} | {} | {:.1} ({n}) | {:.1} MB | {:.2} % ({:.2}–{:.2}) | {:.1} µs ({:.1}–{:.1}) |",
            idle_label(system),
            rate.n,
            rate.median,
            rss.median,
            cpu.median,
            cpu.min,
            cpu.max,
            per.median,
            per.min,
            per.max
        );
    }
}

fn idle_label(s: System) -> &'static str {
    match s {
        System::Watchdog => "watchdog",
        System::WatchdogKeepAlive => "watchdog, keep_alive 30s",
        System::Monit(_) => "monit",
        System::Floor => "floor (bare system calls)",
    }
}

/// The checks' target: a real HAProxy on loopback answering every request with a static
/// 200, with a stats socket and room for many more connections than the checks make (8000:
/// twice that in file descriptors, within the hard limit of 20000 here).
async fn target() -> Haproxy {
    let port = testkit::free_port();
    Haproxy::launch(None, Mode::Foreground, port, |socket| {
        format!(
            "global\n  stats socket {} mode 600 level admin\n  maxconn 8000\n\
             defaults\n  mode http\n  timeout connect 1s\n  timeout client 10s\n  timeout server 10s\n\
             frontend checks\n  bind 127.0.0.1:{port}\n  maxconn 8000\n\
             \x20 http-request return status 200 content-type text/plain string ok\n",
            socket.display()
        )
    })
    .await
}

/// HAProxy's count of HTTP requests since it started (`CumReq` of `show info`).
async fn cum_req(h: &Haproxy) -> u64 {
    let info = haproxy_watchdog::haproxy::socket::command(&h.socket, "show info")
        .await
        .expect("show info on HAProxy's stats socket");
    info.lines()
        .find_map(|l| l.strip_prefix("CumReq:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no CumReq in show info:\n{info}"))
}

/// A process's CPU time so far, and where it came from: its CPU-time clock (ns), else
/// /proc/PID/stat (10 ms ticks).
fn cpu_now(pid: u32) -> (Duration, &'static str) {
    match cpu_time(pid) {
        Some(d) => (d, "CPU clock (ns)"),
        None => (
            Duration::from_millis(cpu_ticks(pid).own * 10),
            "/proc/PID/stat (10 ms ticks)",
        ),
    }
}

/// `system` running `n` HTTP checks at a 1 s interval against `haproxy`, measured over
/// [`WINDOW`] after [`WARM_UP`].
async fn idle(haproxy: &Haproxy, system: System, n: usize) -> Idle {
    let port = haproxy.port;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut child = match system {
        System::Watchdog | System::WatchdogKeepAlive => {
            let keep = if system == System::WatchdogKeepAlive {
                ", keep_alive = \"30s\""
            } else {
                ""
            };
            // Its own control socket and state directory, never the machine's.
            let mut toml = format!(
                "[control]\nsocket = \"{}\"\n",
                d.join("control.sock").display()
            );
            for i in 0..n {
                toml.push_str(&format!(
                    "[rules.r{i}]\ncheck = {{ type = \"http\", url = \"http://127.0.0.1:{port}/r{i}\"{keep} }}\ninterval = \"1s\"\ntimeout = \"500ms\"\n"
                ));
            }
            let path = d.join("watchdog.toml");
            std::fs::write(&path, toml).unwrap();
            let mut cmd = Command::new(testkit::watchdog::bin());
            cmd.args(["run", "--log-level", "warn", "--config"])
                .arg(&path)
                .env("WATCHDOG_STATE_DIR", d);
            testkit::watchdog::Env::offline().apply(&mut cmd);
            cmd.stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start watchdog")
        }
        System::Monit(interval) => {
            let mut checks = String::new();
            for i in 0..n {
                checks.push_str(&format!(
                    "check host r{i} with address 127.0.0.1\n    if failed port {port} protocol HTTP request /r{i} timeout 1 seconds then alert\n"
                ));
            }
            let rc = monitrc(d, interval, &checks);
            Command::new("monit")
                .args(["-I", "-c"])
                .arg(&rc)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start monit (scripts/bench-deps.sh installs it)")
        }
        System::Floor => Command::new(std::env::current_exe().expect("this program's path"))
            .args(["--floor-child", &port.to_string(), &n.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .expect("start the floor loop"),
    };
    tokio::time::sleep(WARM_UP).await;
    let pid = child.id();
    assert!(
        child.try_wait().unwrap().is_none(),
        "{} exited during its warm-up",
        idle_label(system)
    );
    let (r1, (c1, source), t1) = (cum_req(haproxy).await, cpu_now(pid), Instant::now());
    tokio::time::sleep(WINDOW).await;
    let (r2, (c2, _), t2) = (cum_req(haproxy).await, cpu_now(pid), Instant::now());
    let rss = rss_mb(pid);
    let _ = child.kill();
    let _ = child.wait();
    let (checks, secs, cpu) = (r2 - r1, (t2 - t1).as_secs_f64(), (c2 - c1).as_secs_f64());
    Idle {
        rate: checks as f64 / secs,
        rss_mb: rss,
        cpu_percent: cpu / secs * 100.0,
        us_per_check: if checks == 0 {
            f64::NAN
        } else {
            cpu * 1e6 / checks as f64
        },
        source,
    }
}
