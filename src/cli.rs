//! Command-line interface: parse arguments, call into the library, map results to exit codes.
//!
//! Exit codes: 0 all good; 1 a check or action failed (`--once`) or the daemon hit a fatal
//! runtime error; 2 the configuration or the command line is invalid.

use crate::config::{self, defaults};
use crate::engine::{self, threshold::Health, CycleReport};
use crate::telemetry::{self, LogFormat};
use crate::{actions::ActionOutcome, app};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The name the package installs the program under, used in every message it prints.
pub const PROG: &str = "haproxy-watchdog";

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "haproxy-watchdog",
    version,
    about = "HAProxy high-availability watchdog for AWS: N-cycle checks, egress-verified Elastic IP failover, SNS alerts.",
    after_help = "Exit codes: 0 ok; 1 a check or action failed (--once) or a fatal runtime error; 2 invalid configuration or usage."
)]
pub struct Cli {
    /// Main config file (its conf.d/*.toml are loaded too), or a directory of *.toml files.
    #[arg(short, long, global = true, env = "WATCHDOG_CONFIG", default_value = defaults::CONFIG_PATH)]
    pub config: PathBuf,

    /// Run every rule exactly one cycle, print a summary and exit (0 all passed, 1 any failed).
    #[arg(long, global = true)]
    pub once: bool,

    /// Log every AWS call that would be made and make none (probes still run).
    #[arg(long, global = true)]
    pub dry_run: bool,

    /// Where `run` keeps hold-downs, claims in flight, rule health and undelivered alerts
    /// across restarts ("" for nowhere: kept in memory only).
    #[arg(long, global = true, env = "WATCHDOG_STATE_DIR", default_value = defaults::STATE_DIR,
        value_parser = clap::builder::OsStringValueParser::new())]
    pub state_dir: std::ffi::OsString,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "plain")]
    pub log_format: LogFormat,

    /// Log filter, RUST_LOG style (RUST_LOG wins when set).
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon until SIGTERM or SIGINT.
    Run,
    /// Check the configuration without touching the network (exit 0 valid, 2 invalid).
    Validate,
    /// Show each rule's state, counts, last result and last action from the running daemon.
    Status {
        /// Print the daemon's answer as JSON.
        #[arg(long)]
        json: bool,
        /// The daemon's control socket (default: `[control] socket` of the configuration).
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Convert monit rules into watchdog TOML (exit 0 all translated and valid; 1 something
    /// was not translated, or the result needs editing before it validates; 2 unreadable input).
    ImportMonit {
        /// monit control files, e.g. /etc/monit/monitrc or /etc/monit.d/haproxywatch.monitrc;
        /// their `include`s are followed.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Look absolute paths (includes, exec'd scripts) up under this directory, such as a
        /// copy of another host's /etc.
        #[arg(long)]
        root: Option<PathBuf>,
        /// Write the TOML to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_CONFIG } else { EXIT_OK });
        }
    };
    ExitCode::from(dispatch(cli))
}

fn dispatch(cli: Cli) -> u8 {
    match (&cli.command, cli.once) {
        (Some(Command::Validate), false) => validate(&cli),
        (Some(Command::Validate), true) => usage("--once does not go with validate"),
        (Some(Command::Status { .. }), true) => usage("--once does not go with status"),
        (Some(Command::Status { json, socket }), false) => status(&cli, *json, socket.clone()),
        (Some(Command::ImportMonit { .. }), true) => usage("--once does not go with import-monit"),
        (
            Some(Command::ImportMonit {
                files,
                root,
                output,
            }),
            false,
        ) => import_monit(files, root.as_deref(), output.as_deref()),
        (Some(Command::Run), true) | (None, true) => with_runtime(&cli, once),
        (Some(Command::Run), false) => {
            let path = cli.config.clone();
            let state = Some(PathBuf::from(&cli.state_dir)).filter(|d| !d.as_os_str().is_empty());
            with_runtime(&cli, |c, dry_run| daemon(path, state, c, dry_run))
        }
        (None, false) => usage(
            "say what to do: `haproxy-watchdog run`, `haproxy-watchdog --once` or `haproxy-watchdog validate` (see --help)",
        ),
    }
}

fn import_monit(
    files: &[PathBuf],
    root: Option<&std::path::Path>,
    output: Option<&std::path::Path>,
) -> u8 {
    let imported = match crate::monit::import(files, root) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{PROG}: {e}");
            return EXIT_CONFIG;
        }
    };
    let written = match output {
        Some(path) => std::fs::write(path, &imported.toml)
            .map_err(|e| format!("cannot write {}: {e}", path.display())),
        None => {
            print!("{}", imported.toml);
            Ok(())
        }
    };
    if let Err(e) = written {
        eprintln!("{PROG}: {e}");
        return EXIT_CONFIG;
    }
    eprintln!(
        "import-monit: {} file{}, {} rule{}, {} action{}",
        imported.files.len(),
        plural(imported.files.len()),
        imported.rules,
        plural(imported.rules),
        imported.actions,
        plural(imported.actions)
    );
    for a in &imported.approximate {
        eprintln!("  approximately: {a}");
    }
    for u in &imported.untranslated {
        eprintln!("  NOT TRANSLATED: {u}");
    }
    let valid = config::from_sources(&[(
        output
            .map(std::path::Path::to_path_buf)
            .unwrap_or_else(|| "import-monit output".into()),
        imported.toml.clone(),
    )]);
    if let Err(e) = &valid {
        eprint!("import-monit: the result needs editing before it validates: {e}");
    }
    if valid.is_ok() && imported.untranslated.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

fn usage(msg: &str) -> u8 {
    eprintln!("{PROG}: {msg}");
    EXIT_CONFIG
}

fn load(cli: &Cli) -> Result<config::Config, u8> {
    config::load(&cli.config).map_err(|e| {
        eprint!("{PROG}: {e}");
        EXIT_CONFIG
    })
}

fn validate(cli: &Cli) -> u8 {
    match load(cli) {
        Ok(c) => {
            println!(
                "configuration OK: {} rule{}, {} action{} from {} file{}",
                c.rules.len(),
                plural(c.rules.len()),
                c.actions.len(),
                plural(c.actions.len()),
                c.sources.len(),
                plural(c.sources.len())
            );
            EXIT_OK
        }
        Err(code) => code,
    }
}

fn status(cli: &Cli, json: bool, socket: Option<PathBuf>) -> u8 {
    let socket = match socket {
        Some(s) => s,
        None => match config::load(&cli.config) {
            Ok(c) => match c.control.socket {
                Some(s) => s,
                None => return usage(
                    "the configuration turns the control socket off (`[control] socket = \"\"`)",
                ),
            },
            // The daemon may run with a config this user cannot read: try the default.
            Err(_) => PathBuf::from(defaults::CONTROL_SOCKET),
        },
    };
    let rt = match runtime(tokio::runtime::Builder::new_current_thread()) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(crate::control::fetch_status(&socket)) {
        Ok(s) if json => {
            println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
            EXIT_OK
        }
        Ok(s) => {
            print!("{}", status_table(&s));
            EXIT_OK
        }
        Err(e) => {
            eprintln!("{PROG}: {e}");
            EXIT_FAILED
        }
    }
}

/// Widths of the RULE and CHECK columns for these (rule, check) pairs.
fn widths<'a>(rows: impl Iterator<Item = (&'a str, &'a str)>) -> (usize, usize) {
    rows.fold((4, 5), |(w, cw), (r, c)| (w.max(r.len()), cw.max(c.len())))
}

/// `watchdog status` as a table: one line per rule, then its last action.
pub fn status_table(s: &crate::control::Status) -> String {
    let mut out = format!(
        "haproxy-watchdog {}, started {}{}\n",
        s.version,
        s.started.as_deref().unwrap_or("?"),
        s.reloaded
            .as_deref()
            .map(|r| format!(", reloaded {r}"))
            .unwrap_or_default()
    );
    let (w, cw) = widths(s.rules.iter().map(|r| (r.rule.as_str(), r.check.as_str())));
    out.push_str(&format!(
        "{:<w$}  {:<cw$}  {:<5}  {:>5}  {:>5}  LAST RESULT\n",
        "RULE", "CHECK", "STATE", "FAILS", "OKS"
    ));
    for r in &s.rules {
        let last = match &r.last_result {
            Some(l) => format!(
                "{} {} ({})",
                if l.ok { "pass" } else { "FAIL" },
                l.detail,
                l.at
            ),
            None => "no cycle yet".into(),
        };
        out.push_str(&format!(
            "{:<w$}  {:<cw$}  {:<5}  {:>5}  {:>5}  {last}\n",
            r.rule,
            r.check,
            if r.state == "up" { "up" } else { "DOWN" },
            r.consecutive_failures,
            r.consecutive_successes
        ));
        if let Some(a) = &r.last_action {
            out.push_str(&format!(
                "{:<w$}  -> {}: {} ({})\n",
                "", a.action, a.outcome, a.at
            ));
        }
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn with_runtime<F, Fut>(cli: &Cli, f: F) -> u8
where
    F: FnOnce(config::Config, bool) -> Fut,
    Fut: std::future::Future<Output = u8>,
{
    let config = match load(cli) {
        Ok(c) => c,
        Err(code) => return code,
    };
    telemetry::init_logging(cli.log_format, &cli.log_level);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2);
    let rt = match runtime(builder) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(f(config, cli.dry_run))
}

fn runtime(mut builder: tokio::runtime::Builder) -> Result<tokio::runtime::Runtime, u8> {
    builder.enable_all().build().map_err(|e| {
        eprintln!("{PROG}: cannot start the async runtime: {e}");
        EXIT_FAILED
    })
}

/// How long `--once` waits for queued SNS alerts before it reports them undelivered.
const ONCE_ALERT_FLUSH: Duration = Duration::from_secs(30);
/// How long `run` gives cycles in progress at shutdown. A claim that has started changing EC2
/// is not cut by this: it runs to completion on its own (bounded by the AWS timeouts).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

async fn once(config: config::Config, dry_run: bool) -> u8 {
    let (shared, generation) = match app::start(&config, dry_run, None).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{PROG}: {e}");
            return EXIT_FAILED;
        }
    };
    let reports = engine::once(config.rules.clone(), generation.live.clone()).await;
    let _ = generation.stop.send(true);
    let undelivered = shared.finish(ONCE_ALERT_FLUSH).await;
    log_counters();
    print!("{}", summary(&reports));
    if undelivered > 0 {
        println!("{undelivered} alert(s) could not be delivered to SNS");
    }
    let failed = reports
        .iter()
        .any(|r| !r.outcome.ok || r.actions.iter().any(|(_, a)| a.wants_retry()));
    if failed || undelivered > 0 {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}

/// `run`: the rules of one configuration at a time. SIGHUP loads the configuration again: a
/// valid one replaces the running one, with each rule's state carried over by name and the
/// hold-downs, queued alerts and claims in flight untouched; an invalid one is logged and
/// the running one goes on. SIGTERM/SIGINT stop.
async fn daemon(
    path: std::path::PathBuf,
    state_dir: Option<PathBuf>,
    config: config::Config,
    dry_run: bool,
) -> u8 {
    // First of all: a SIGHUP or SIGTERM during start-up (which may wait for instance
    // metadata) must find its handler, not kill the process with the default action.
    let signals = Signals::install();
    let (shared, mut generation) = match app::start(&config, dry_run, state_dir.as_deref()).await {
        Ok(b) => b,
        Err(e) => {
            // Exit 1, which the unit restarts (capped): nothing here is a configuration
            // error `validate` could have caught, and a region missing because instance
            // metadata did not answer at boot is there a moment later.
            tracing::error!(event = "startup_failed", error = %e);
            return EXIT_FAILED;
        }
    };
    shared
        .board
        .configure(&config.sources, &config.rules, false);
    let (control_stop, control_stop_rx) = tokio::sync::watch::channel(false);
    for e in crate::control::serve(
        config.control.socket.as_deref(),
        config.control.metrics_listen,
        shared.board.clone(),
        control_stop_rx,
    )
    .await
    {
        tracing::warn!(event = "control_unavailable", error = %e, "`haproxy-watchdog status` or /metrics will not answer");
    }
    tracing::info!(event = "started", rules = config.rules.len(), actions = config.actions.len(), dry_run,
        config = %config.sources.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(","));
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let (hup_tx, mut hup_rx) = tokio::sync::mpsc::unbounded_channel();
    // systemd (Type=notify): `systemctl start` returns once this is sent, and fails if the
    // process exits before, so a configuration that cannot run fails the start itself.
    notify_systemd(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&running_status(&config, &shared)),
    ]);
    tokio::spawn(async move {
        let why = signals.wait(hup_tx).await;
        tracing::info!(event = "stopping", signal = why);
        let _ = stop_tx.send(true);
    });
    // What only a restart changes: the AWS SDK set-up and the control listeners.
    let started = (config.aws.clone(), config.control.clone());
    let mut config = config;
    // Health and unfinished actions as the last run left them: a restart during an outage
    // neither pages again nor forgets a claim it still has to make.
    let mut states = shared.saved_rule_states(&config);
    let result = loop {
        let mut engine_task = tokio::spawn(engine::run(
            config.rules.clone(),
            generation.live.clone(),
            generation.stop.subscribe(),
            SHUTDOWN_GRACE,
            std::mem::take(&mut states),
        ));
        // Wait for the end of this configuration: a stop, a valid reload, or a crash.
        let next = loop {
            tokio::select! {
                done = &mut engine_task => break Err(done),
                _ = stop_rx.wait_for(|s| *s) => break Ok(None),
                Some(()) = hup_rx.recv() => {
                    notify_systemd(&[sd_notify::NotifyState::Reloading]);
                    let next = reload(&path, &started, &shared);
                    let status =
                        running_status(next.as_ref().map_or(&config, |(c, _)| c), &shared);
                    notify_systemd(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&status)]);
                    match next {
                        Some(next) => break Ok(Some(next)),
                        None => continue,
                    }
                }
            }
        };
        match next {
            // The engine ended on its own: a rule task died.
            Err(done) => {
                break match done {
                    Ok((r, _)) => r.and(Err("the rules stopped unexpectedly".into())),
                    Err(e) => Err(format!("the engine crashed: {e}")),
                };
            }
            Ok(next) => {
                let _ = generation.stop.send(true);
                let (r, carried) = match engine_task.await {
                    Ok(done) => done,
                    Err(e) => (
                        Err(format!("the engine crashed: {e}")),
                        engine::RuleStates::new(),
                    ),
                };
                match next {
                    None => break r,
                    Some((new_config, new_generation)) => {
                        if let Err(e) = r {
                            break Err(e);
                        }
                        states = carried;
                        config = new_config;
                        generation = new_generation;
                        shared.board.configure(&config.sources, &config.rules, true);
                        shared.forget_removed_rules(&config);
                        tracing::info!(
                            event = "config_reloaded",
                            rules = config.rules.len(),
                            actions = config.actions.len(),
                            kept = config
                                .rules
                                .iter()
                                .filter(|r| states.contains_key(&r.name))
                                .count()
                        );
                    }
                }
            }
        }
    };
    notify_systemd(&[sd_notify::NotifyState::Stopping]);
    let _ = generation.stop.send(true);
    let _ = control_stop.send(true);
    let left = shared.finish(Duration::from_secs(5)).await;
    log_counters();
    match result {
        Ok(()) => {
            tracing::info!(event = "stopped", undelivered_alerts = left);
            EXIT_OK
        }
        Err(e) => {
            tracing::error!(event = "stopped", undelivered_alerts = left, error = %e);
            EXIT_FAILED
        }
    }
}

/// Load and build the configuration again; None (with the reason logged) keeps the old one.
/// `started` holds the settings in use since start-up, which a reload cannot change.
fn reload(
    path: &std::path::Path,
    started: &(config::AwsSettings, config::ControlSettings),
    shared: &app::Shared,
) -> Option<(config::Config, app::Generation)> {
    let new = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            let errors: Vec<String> = e.0.iter().map(|e| e.to_string()).collect();
            tracing::error!(event = "reload_rejected", errors = %errors.join("; "),
                "the new configuration is invalid; the running one stays");
            return None;
        }
    };
    // Compared with what runs, not with the previous reload: a second reload must warn too.
    if new.aws != started.0 {
        tracing::warn!(
            event = "reload_partial",
            "[aws] settings take effect at the next restart"
        );
    }
    if new.control != started.1 {
        tracing::warn!(
            event = "reload_partial",
            "[control] settings take effect at the next restart"
        );
    }
    match shared.generation(&new) {
        Ok(g) => Some((new, g)),
        Err(e) => {
            tracing::error!(event = "reload_rejected", errors = %e, "the running configuration stays; restart to apply this one");
            None
        }
    }
}

/// Tell systemd (when it started us with `NOTIFY_SOCKET`; otherwise nothing happens).
fn notify_systemd(states: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(event = "notify_failed", error = %e, "cannot tell systemd the daemon's state");
    }
}

/// The one-line status `systemctl status` shows.
fn running_status(config: &config::Config, shared: &app::Shared) -> String {
    let mut s = format!(
        "{} rule{}, {} action{}",
        config.rules.len(),
        plural(config.rules.len()),
        config.actions.len(),
        plural(config.actions.len())
    );
    if let Some(p) = &shared.state_problem {
        s.push_str(&format!("; NOT SAVING STATE ({p})"));
    }
    s
}

/// The process's counters as one event at exit (`/metrics` serves them while running).
fn log_counters() {
    let c: Vec<String> = telemetry::snapshot()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    tracing::info!(event = "counters", counters = %c.join(" "));
}

/// SIGTERM, SIGINT and SIGHUP handlers; None when they could not be installed.
struct Signals(
    Option<(
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
    )>,
);

impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(t), Ok(i), Ok(h)) => Signals(Some((t, i, h))),
            _ => {
                tracing::error!(
                    event = "signals_unavailable",
                    "cannot install SIGTERM/SIGINT/SIGHUP handlers; stop with SIGKILL"
                );
                Signals(None)
            }
        }
    }

    /// Until SIGTERM or SIGINT (returned); each SIGHUP meanwhile is passed on to `hup`.
    async fn wait(self, hup: tokio::sync::mpsc::UnboundedSender<()>) -> &'static str {
        let Some((mut term, mut int, mut hangup)) = self.0 else {
            return std::future::pending().await;
        };
        loop {
            tokio::select! {
                _ = term.recv() => return "SIGTERM",
                _ = int.recv() => return "SIGINT",
                _ = hangup.recv() => {
                    tracing::info!(event = "reload_requested", signal = "SIGHUP");
                    let _ = hup.send(());
                }
            }
        }
    }
}

/// The `--once` summary: one line per rule, then one per action it ran.
pub fn summary(reports: &[CycleReport]) -> String {
    let mut out = String::new();
    let (w, cw) = widths(reports.iter().map(|r| (r.rule.as_str(), r.check)));
    out.push_str(&format!(
        "{:<w$}  {:<cw$}  {:<6}  {:<5}  {:<6}  DETAIL\n",
        "RULE", "CHECK", "RESULT", "STATE", "STREAK"
    ));
    for r in reports {
        let streak = if r.outcome.ok {
            format!("+{}", r.consecutive_successes)
        } else {
            format!("-{}", r.consecutive_failures)
        };
        let state = match r.health {
            Health::Up => "up",
            Health::Down => "DOWN",
        };
        out.push_str(&format!(
            "{:<w$}  {:<cw$}  {:<6}  {:<5}  {:<6}  {}\n",
            r.rule,
            r.check,
            if r.outcome.ok { "pass" } else { "FAIL" },
            state,
            streak,
            r.outcome.detail
        ));
        for (name, a) in &r.actions {
            let mark = match a {
                ActionOutcome::Done(_) | ActionOutcome::NoOp(_) => "",
                _ => "!",
            };
            out.push_str(&format!("{:<w$}  -> action {name}: {a}{mark}\n", ""));
        }
    }
    out
}
