//! Command-line interface: parse arguments, call into the library, map results to exit codes.
//!
//! Exit codes: 0 all good; 1 a check or action failed (`--once`) or the daemon hit a fatal
//! runtime error; 2 the configuration or the command line is invalid.

mod print;

use crate::config::{self, defaults};
use crate::daemon::{self, signals::Signals, DaemonError};
use crate::telemetry::events;
use crate::telemetry::{self, LogFormat};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Show each rule's state, counts, last result and last action from the running daemon,
    /// and whether this node is paused.
    Status {
        /// Print the daemon's answer as JSON.
        #[arg(long)]
        json: bool,
        /// Show the failover history instead: transitions, claims, refusals and operator
        /// commands, each with its timings (kept in the state directory, `[control] history`).
        #[arg(long)]
        history: bool,
        /// The daemon's control socket (default: `[control] socket` of the configuration).
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Pause this node: checks and other actions go on, no claim starts (kept across
    /// restarts). Exit 0 paused; 1 no daemon answered or it refused.
    Pause {
        /// End the pause by itself after this long, like "30m" or "2h".
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_pause_for)]
        duration: Option<std::time::Duration>,
        /// Why: shown by `status` and in the history.
        #[arg(long)]
        reason: Option<String>,
        /// The daemon's control socket (default: `[control] socket` of the configuration).
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// End `pause`. Exit 0 resumed or not paused; 1 the maintenance file still pauses the
    /// node, or no daemon answered.
    Resume {
        /// The daemon's control socket (default: `[control] socket` of the configuration).
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Planned switchover: move the address onto this node now, through every safety gate
    /// (the rule need not be failing; no hold-down). Exit 0 when this node holds it after.
    Takeover {
        /// The claim_eip action (default: the configuration's only one).
        action: Option<String>,
        /// Print the daemon's report as JSON.
        #[arg(long)]
        json: bool,
        /// The daemon's control socket (default: `[control] socket` of the configuration).
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Game day: a takeover measured end to end, up to the rule's check passing and checkip
    /// showing the address; `--back` returns it afterwards. Exit 0 when every step happened.
    Drill {
        /// The claim_eip action (default: the configuration's only one).
        action: Option<String>,
        /// Return the address to where it was afterwards (measured too).
        #[arg(long)]
        back: bool,
        /// Print the daemon's report as JSON.
        #[arg(long)]
        json: bool,
        /// The daemon's control socket (default: `[control] socket` of the configuration).
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Check online and read-only what `validate` cannot know: instance metadata, the
    /// Elastic IPs, each AWS permission the configuration needs (EC2 with DryRun), SNS
    /// topics, checkip, HAProxy's stats sockets, the state directory. Run it as the service
    /// user. One PASS/FAIL/SKIP line each (exit 0 none failed, 1 any failed, 2 invalid
    /// configuration).
    Preflight {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
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
    /// Convert keepalived's vrrp_scripts and the AWS moves of its notify scripts into watchdog
    /// TOML (exit 0 all translated and valid; 1 something was not translated, or the result
    /// needs editing before it validates; 2 unreadable input).
    ImportKeepalived {
        /// keepalived configuration files, e.g. /etc/keepalived/keepalived.conf; their
        /// `include`s are followed.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Look absolute paths (includes, scripts, notify scripts) up under this directory,
        /// such as a copy of another host's /etc.
        #[arg(long)]
        root: Option<PathBuf>,
        /// Write the TOML to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

pub fn main() -> ExitCode {
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|c| (c, m)));
    let (cli, matches) = match parsed {
        Ok(p) => p,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_CONFIG } else { EXIT_OK });
        }
    };
    if let Some(msg) = ignored_flag(&cli, &matches) {
        return ExitCode::from(usage(&msg));
    }
    let mut cli = cli;
    // `--once` keeps state only in a directory asked for (`--state-dir` or
    // WATCHDOG_STATE_DIR): by default it runs beside the service, whose directory it must
    // not take. Asked for, it honours the hold-downs and claims saved there and saves its own.
    let asked = |m: &ArgMatches| {
        matches!(
            m.value_source("state_dir"),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    if cli.once && !asked(&matches) && !matches.subcommand().is_some_and(|(_, m)| asked(m)) {
        cli.state_dir = std::ffi::OsString::new();
    }
    ExitCode::from(dispatch(cli))
}

/// A global flag given to a command that would ignore it, as a usage error: `takeover
/// --dry-run` made a real move. `--dry-run` counts only for `run` and `--once`; `--once` only
/// for `run`; `--state-dir` only for `run`, `--once` and `preflight`, and (as it has an
/// environment variable and a default) only when the command line gives it; `--config` is
/// read by every command but the importers. `--log-format` and `--log-level` are let through:
/// they change no behaviour, and scripts pass them to every command alike.
fn ignored_flag(cli: &Cli, matches: &ArgMatches) -> Option<String> {
    let command = cli.command.as_ref()?;
    let name = name(command);
    if cli.once && !matches!(command, Command::Run) {
        return Some(format!("--once does not go with {name}"));
    }
    // What each command reads of `--dry-run`, `--state-dir` and `--config`.
    let (dry_run, state_dir, config) = match command {
        Command::Run => (true, true, true),
        Command::Preflight { .. } => (false, true, true),
        Command::ImportMonit { .. } | Command::ImportKeepalived { .. } => (false, false, false),
        _ => (false, false, true),
    };
    let given = |id: &str| {
        matches.value_source(id) == Some(ValueSource::CommandLine)
            || matches
                .subcommand()
                .is_some_and(|(_, m)| m.value_source(id) == Some(ValueSource::CommandLine))
    };
    if cli.dry_run && !dry_run {
        let why = match command {
            Command::Takeover { .. } | Command::Drill { .. } => {
                "the daemon would move the address for real; only run and --once honour --dry-run"
            }
            Command::Pause { .. } | Command::Resume { .. } => {
                "the daemon would act on it for real; only run and --once honour --dry-run"
            }
            _ => "it changes nothing anyway",
        };
        return Some(format!("--dry-run does not go with {name} ({why})"));
    }
    if !state_dir && given("state_dir") {
        return Some(format!(
            "--state-dir does not go with {name} (only run, --once and preflight use it)"
        ));
    }
    if !config && given("config") {
        return Some(format!(
            "--config does not go with {name} (it reads the files it converts, not a configuration)"
        ));
    }
    None
}

/// `--for`: a humantime duration, more than nothing.
fn parse_pause_for(s: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("a pause of no time is no pause: give e.g. 30m".into()),
        Ok(d) if d > std::time::Duration::from_secs(366 * 24 * 3600) => {
            Err("more than a year: pause without --for and resume by hand".into())
        }
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{e} (like 30m, 2h, 1d)")),
    }
}

/// The subcommand's name, for usage errors.
fn name(c: &Command) -> &'static str {
    match c {
        Command::Run => "run",
        Command::Validate => "validate",
        Command::Status { .. } => "status",
        Command::Pause { .. } => "pause",
        Command::Resume { .. } => "resume",
        Command::Takeover { .. } => "takeover",
        Command::Drill { .. } => "drill",
        Command::Preflight { .. } => "preflight",
        Command::ImportMonit { .. } => "import-monit",
        Command::ImportKeepalived { .. } => "import-keepalived",
    }
}

fn dispatch(cli: Cli) -> u8 {
    match (&cli.command, cli.once) {
        (Some(Command::Validate), _) => validate(&cli),
        (Some(Command::Status { json, history, socket }), _) => {
            status(&cli, *json, *history, socket.clone())
        }
        (Some(Command::Pause { duration, reason, socket }), _) => {
            pause(&cli, *duration, reason.clone(), socket.clone())
        }
        (Some(Command::Resume { socket }), _) => resume(&cli, socket.clone()),
        (Some(Command::Takeover { action, json, socket }), _) => {
            takeover(&cli, action.clone(), false, false, *json, socket.clone())
        }
        (Some(Command::Drill { action, back, json, socket }), _) => {
            takeover(&cli, action.clone(), true, *back, *json, socket.clone())
        }
        (Some(Command::Preflight { json }), _) => {
            let json = *json;
            with_runtime(&cli, |c, options| preflight(c, options, json))
        }
        (
            Some(Command::ImportMonit {
                files,
                root,
                output,
            }),
            _,
        ) => import(
            "import-monit",
            crate::monit::import(files, root.as_deref()),
            output.as_deref(),
        ),
        (
            Some(Command::ImportKeepalived {
                files,
                root,
                output,
            }),
            _,
        ) => import(
            "import-keepalived",
            crate::keepalived::import(files, root.as_deref()),
            output.as_deref(),
        ),
        (Some(Command::Run), true) | (None, true) => with_runtime(&cli, once),
        (Some(Command::Run), false) => {
            let path = cli.config.clone();
            with_runtime(&cli, |c, options| run(path, c, options))
        }
        (None, false) => usage(
            "say what to do: `haproxy-watchdog run`, `haproxy-watchdog --once` or `haproxy-watchdog validate` (see --help)",
        ),
    }
}

/// The importers' last step: write the TOML, report on standard error, validate the result.
/// Exit 0 when it validates and nothing was left untranslated or to set by hand in the main
/// file, 1 otherwise, 2 when the input could not be read or the output written.
fn import(
    command: &str,
    result: Result<crate::monit::Imported, crate::monit::ImportError>,
    output: Option<&std::path::Path>,
) -> u8 {
    let imported = match result {
        Ok(i) => i,
        Err(e) => {
            say(&e.to_string());
            return EXIT_CONFIG;
        }
    };
    // Every file the importer read, the scripts it ran through included.
    let read: Vec<&std::path::PathBuf> = imported.files.iter().chain(&imported.scripts).collect();
    match output {
        Some(path) => {
            if let Some(input) = read.iter().find(|f| same_file(f, path)) {
                say(&format!(
                    "{command}: the output {} is the input {}: refusing to overwrite it; write the output elsewhere (conf.d/, say)",
                    path.display(),
                    input.display()
                ));
                return EXIT_CONFIG;
            }
            if let Err(e) = std::fs::write(path, &imported.toml) {
                say(&format!("cannot write {}: {e}", path.display()));
                return EXIT_CONFIG;
            }
        }
        None => {
            let code = emit(&imported.toml, EXIT_OK);
            if code != EXIT_OK {
                return code;
            }
        }
    }
    to_stderr(&print::import_report(command, &imported));
    let valid = config::from_sources(&[(
        output
            .map(std::path::Path::to_path_buf)
            .unwrap_or_else(|| format!("{command} output").into()),
        imported.toml.clone(),
    )]);
    if let Err(e) = &valid {
        to_stderr(&format!(
            "{command}: the result needs editing before it validates: {e}"
        ));
    }
    if valid.is_ok() && imported.untranslated.is_empty() && imported.by_hand.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

/// `a` and `b` are the same existing file, whatever the spelling (`./x`, a symlink, a hard
/// link).
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

fn usage(msg: &str) -> u8 {
    say(msg);
    EXIT_CONFIG
}

/// Everything the command line prints on standard output goes through here: `text`, then
/// `code` is the command's exit code. A write that fails ends the command cleanly instead of
/// `println!`'s panic (exit 101), with exit 1 and so never a false 0: quietly when the reader
/// went away (`status --json | head -1`, EPIPE; it asked for no more, and a message would
/// only clutter the terminal), with a message on standard error otherwise (`> /dev/full`).
/// Exit 1 rather than the shell's 141 for SIGPIPE: the documented codes are 0, 1 and 2.
fn emit(text: &str, code: u8) -> u8 {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => code,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => EXIT_FAILED,
        Err(e) => {
            say(&format!("cannot write to standard output: {e}"));
            EXIT_FAILED
        }
    }
}

/// [`emit`] for a command that has already changed the daemon (`pause`, `resume`, `takeover`,
/// `drill`): its exit code says what happened to the node, whatever became of the output, and
/// a failed write is said on standard error (a script must not read "not done" from "done,
/// output lost").
fn emit_done(text: &str, code: u8) -> u8 {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            say(&format!(
                "cannot write to standard output: {e} (the command took effect; exit {code} says how)"
            ));
        }
    }
    code
}

/// `haproxy-watchdog: msg` on standard error.
fn say(msg: &str) {
    to_stderr(&format!("{PROG}: {msg}\n"));
}

/// `text` on standard error as it is. `eprint!` panics when that fails (a closed pipe, a full
/// disk); with standard error gone there is nowhere left to tell, so the failure is dropped
/// and the exit code says the rest.
fn to_stderr(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

fn load(cli: &Cli) -> Result<config::Config, u8> {
    config::load(&cli.config).map_err(|e| {
        to_stderr(&format!("{PROG}: {e}"));
        EXIT_CONFIG
    })
}

fn validate(cli: &Cli) -> u8 {
    match load(cli) {
        Ok(c) => emit(&print::config_ok(&c), EXIT_OK),
        Err(code) => code,
    }
}

/// The control socket a command asks, and a runtime to ask it on.
fn control(cli: &Cli, socket: Option<PathBuf>) -> Result<(PathBuf, tokio::runtime::Runtime), u8> {
    let socket = match socket {
        Some(s) => s,
        None => match crate::control::socket_of(config::load(&cli.config)) {
            Ok((s, note)) => {
                if let Some(note) = note {
                    say(&note.to_string());
                }
                s
            }
            Err(e) => return Err(usage(&e.to_string())),
        },
    };
    Ok((
        socket,
        runtime(tokio::runtime::Builder::new_current_thread())?,
    ))
}

/// Print `e` and exit 1.
fn failed(e: impl std::fmt::Display) -> u8 {
    say(&e.to_string());
    EXIT_FAILED
}

/// `value` as indented JSON and a newline.
fn json_line(value: &impl serde::Serialize) -> String {
    format!(
        "{}\n",
        serde_json::to_string_pretty(value).unwrap_or_default()
    )
}

fn status(cli: &Cli, json: bool, history: bool, socket: Option<PathBuf>) -> u8 {
    let (socket, rt) = match control(cli, socket) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if history {
        return match rt.block_on(crate::control::fetch_history(&socket)) {
            Ok(h) if json => emit(&json_line(&h), EXIT_OK),
            Ok(h) => emit(&print::history_table(&h), EXIT_OK),
            Err(e) => failed(e),
        };
    }
    match rt.block_on(crate::control::fetch_status(&socket)) {
        Ok(s) if json => emit(&json_line(&s), EXIT_OK),
        Ok(s) => emit(&print::status_table(&s), EXIT_OK),
        Err(e) => failed(e),
    }
}

/// `SUDO_USER`, sent along so the daemon can say who ran sudo (it trusts only the uid).
fn sudo_user() -> Option<String> {
    std::env::var("SUDO_USER").ok().filter(|s| !s.is_empty())
}

fn pause(
    cli: &Cli,
    duration: Option<std::time::Duration>,
    reason: Option<String>,
    socket: Option<PathBuf>,
) -> u8 {
    let (socket, rt) = match control(cli, socket) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let request = crate::control::PauseRequest {
        for_ms: duration.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        reason: reason.unwrap_or_default(),
        sudo_user: sudo_user(),
    };
    let answer: Result<crate::control::PauseAnswer, _> = rt.block_on(crate::control::send(
        &socket,
        "/pause",
        &request,
        std::time::Duration::from_secs(10),
    ));
    match answer {
        Ok(p) => emit_done(&format!("{}\n", print::paused(&p)), EXIT_OK),
        Err(e) => failed(e),
    }
}

fn resume(cli: &Cli, socket: Option<PathBuf>) -> u8 {
    let (socket, rt) = match control(cli, socket) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let request = crate::control::ResumeRequest {
        sudo_user: sudo_user(),
    };
    let answer: Result<crate::control::ResumeAnswer, _> = rt.block_on(crate::control::send(
        &socket,
        "/resume",
        &request,
        std::time::Duration::from_secs(10),
    ));
    match answer {
        Ok(a) => emit_done(&format!("{}\n", print::resumed(&a)), EXIT_OK),
        Err(e) => failed(e),
    }
}

fn takeover(
    cli: &Cli,
    action: Option<String>,
    drill: bool,
    back: bool,
    json: bool,
    socket: Option<PathBuf>,
) -> u8 {
    let (socket, rt) = match control(cli, socket) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let request = crate::control::TakeoverRequest {
        action,
        drill,
        back,
        sudo_user: sudo_user(),
    };
    let answer: Result<crate::control::TakeoverReport, _> = rt.block_on(crate::control::send_as(
        &socket,
        "/takeover",
        if drill { "drill" } else { "takeover" },
        &request,
        crate::control::COMMAND_LIMIT,
    ));
    let report = match answer {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    let ok = match report.passed {
        Some(passed) => passed && report.back.as_ref().is_none_or(|b| b.outcome == "done"),
        None => report.holds,
    };
    let text = if json {
        json_line(&report)
    } else {
        print::takeover_report(&report)
    };
    emit_done(&text, if ok { EXIT_OK } else { EXIT_FAILED })
}

fn with_runtime<F, Fut>(cli: &Cli, f: F) -> u8
where
    F: FnOnce(config::Config, daemon::Options) -> Fut,
    Fut: std::future::Future<Output = u8>,
{
    let config = match load(cli) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let rust_log = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    match telemetry::log_filter(rust_log.as_deref(), &cli.log_level) {
        Ok(filter) => telemetry::init_logging(cli.log_format, filter),
        Err(e) => return usage(&e.to_string()),
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2);
    let rt = match runtime(builder) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let options = daemon::Options {
        dry_run: cli.dry_run,
        state_dir: Some(PathBuf::from(&cli.state_dir)).filter(|d| !d.as_os_str().is_empty()),
    };
    let code = rt.block_on(f(config, options));
    // Not waiting for blocking threads that do not come back (a read on a hung NFS mount):
    // every task is dropped, so the programs checks run are killed with their groups, and the
    // process exits.
    rt.shutdown_timeout(RUNTIME_SHUTDOWN);
    code
}

/// How long the end of a command waits for the runtime's blocking threads.
const RUNTIME_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(1);

fn runtime(mut builder: tokio::runtime::Builder) -> Result<tokio::runtime::Runtime, u8> {
    builder.enable_all().build().map_err(|e| {
        say(&format!("cannot start the async runtime: {e}"));
        EXIT_FAILED
    })
}

/// `--once`: one cycle of every rule. SIGINT or SIGTERM stops it: what is in flight is
/// dropped (a check's program is killed with its process group) and the exit code is 128 plus
/// the signal's number, as a shell reports it.
async fn once(config: config::Config, options: daemon::Options) -> u8 {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut int, mut term) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => {
            say(&format!("cannot handle SIGINT/SIGTERM: {e}"));
            return EXIT_FAILED;
        }
    };
    let interrupted = |name: &str, code: u8| {
        say(&format!(
            "stopped by {name}: the checks in flight were abandoned and their programs killed"
        ));
        code
    };
    tokio::select! {
        r = daemon::once(config, &options) => match r {
            Ok(done) => emit(
                &print::once_report(&done),
                if done.failed() { EXIT_FAILED } else { EXIT_OK },
            ),
            Err(e) => failed(e),
        },
        _ = int.recv() => interrupted("SIGINT", 130),
        _ = term.recv() => interrupted("SIGTERM", 143),
    }
}

/// `preflight`: every check, one line each (or JSON), exit 1 when any failed.
async fn preflight(config: config::Config, options: daemon::Options, json: bool) -> u8 {
    if nix::unistd::getuid().is_root() {
        say(&format!("running as root, which passes permission checks the service user may fail; run it as the service user: sudo -u haproxy-watchdog {PROG} preflight"));
    }
    // Each line as it is decided (a hanging endpoint does not keep the others back); --json
    // prints one document at the end.
    let report = crate::preflight::run_to(
        &config,
        &crate::preflight::Options {
            state_dir: options.state_dir,
        },
        (!json).then(std::io::stdout),
    )
    .await;
    let text = if json {
        format!("{}\n", report.json())
    } else {
        report.text()
    };
    emit(
        &text,
        if report.failed() {
            EXIT_FAILED
        } else {
            EXIT_OK
        },
    )
}

/// `run` until SIGTERM or SIGINT; SIGHUP reloads. The signal handlers come first: a signal
/// during start-up (which may wait for instance metadata) must find its handler.
async fn run(path: PathBuf, config: config::Config, options: daemon::Options) -> u8 {
    let signals = Signals::install();
    let (hup_tx, hup_rx) = tokio::sync::mpsc::unbounded_channel();
    match daemon::run(&path, config, options, signals.wait(hup_tx), hup_rx).await {
        Ok(()) => EXIT_OK,
        Err(DaemonError::Start(e)) => {
            // Exit 1, which the unit restarts (capped): nothing here is a configuration
            // error `validate` could have caught, and a region missing because instance
            // metadata did not answer at boot is there a moment later.
            tracing::error!(event = events::STARTUP_FAILED, error = %e);
            EXIT_FAILED
        }
        // Logged by the daemon as it stopped.
        Err(DaemonError::Engine(_)) => EXIT_FAILED,
    }
}
