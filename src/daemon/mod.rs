//! The daemon's life: [`run`] until a shutdown, with SIGHUP reloads, and [`once`], one cycle
//! of every rule. Both start the same way ([`Deps::start`], then [`build::build`]) and finish
//! the same way ([`Deps::finish`]). The shape is mini-redis's `server::run(listener, shutdown)`:
//! the caller hands in the shutdown future and the reload channel, so tests can drive both.

pub mod build;
pub mod deps;
pub mod operate;
pub mod probe;
pub mod signals;
pub mod startup_pages;
pub mod watchdog;

use crate::config::{self, AwsSettings, Config, ControlSettings};
use crate::engine::{self, CycleReport, Effects, RuleStates};
use crate::telemetry::events;
use crate::telemetry::metrics::Metrics;
use build::{BuildError, Generation};
use deps::Deps;
use signals::notify_systemd;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use watchdog::{Heartbeat, Watched};

/// How the daemon runs, from the command line.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Log every AWS call that would be made and make none (probes still run).
    pub dry_run: bool,
    /// Where hold-downs, claims in flight, rule states and undelivered alerts are kept across
    /// restarts; None keeps them in memory only. `once` never uses it.
    pub state_dir: Option<PathBuf>,
}

/// Why the daemon stopped with an error (the command line exits 1).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration could not be made to run (see [`BuildError`]).
    #[error(transparent)]
    Start(#[from] BuildError),
    /// A rule task died or the engine panicked: the daemon stops rather than leave a rule
    /// unwatched.
    #[error("{0}")]
    Engine(String),
}

/// What `--once` saw and did.
#[derive(Debug)]
pub struct OnceReport {
    /// One per rule, sorted by rule name.
    pub reports: Vec<CycleReport>,
    /// Alerts SNS had not taken when the flush time ran out.
    pub undelivered: usize,
}

impl OnceReport {
    /// A check failed, an action asked to be retried, or an alert was not delivered.
    pub fn failed(&self) -> bool {
        self.undelivered > 0
            || self
                .reports
                .iter()
                .any(|r| !r.outcome.ok || r.actions.iter().any(|(_, a)| a.wants_retry()))
    }
}

/// How long `--once` waits for queued SNS alerts before it reports them undelivered.
const ONCE_ALERT_FLUSH: Duration = Duration::from_secs(30);
/// How long `run` gives cycles in progress at shutdown. A claim that has started changing EC2
/// is not cut by this: it runs to completion on its own (bounded by the AWS timeouts).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long `run` gives queued SNS alerts at shutdown; the rest stay in the state directory.
const SHUTDOWN_ALERT_FLUSH: Duration = Duration::from_secs(5);

/// `--once`: every rule of `config` exactly one cycle, concurrently, then the alerts flushed.
/// Hold-downs and claims are kept across runs only in a state directory asked for
/// (`options.state_dir`; the CLI leaves it out unless `--state-dir` or WATCHDOG_STATE_DIR is given).
///
/// Errors: [`DaemonError::Start`] when the configuration cannot run here.
pub async fn once(config: Config, options: &Options) -> Result<OnceReport, DaemonError> {
    let deps = Deps::start(&config, options.dry_run, options.state_dir.as_deref()).await?;
    let generation = build::build(&deps, &config)?;
    let reports = engine::once(config.rules.clone(), generation.live.clone()).await;
    let _ = generation.stop.send(true);
    let metrics = deps.metrics.clone();
    let undelivered = deps.finish(ONCE_ALERT_FLUSH).await;
    log_counters(&metrics);
    Ok(OnceReport {
        reports,
        undelivered,
    })
}

/// `run`: the rules of one configuration at a time until `shutdown` completes (its output,
/// such as the signal's name, is logged). Each message on `hup` loads `path` again: a valid
/// configuration replaces the running one, with each rule's state carried over by name and the
/// hold-downs, queued alerts and claims in flight untouched; an invalid one is logged and the
/// running one goes on. `config` is the configuration `path` held at start.
///
/// Errors: [`DaemonError::Start`] when the first configuration cannot run (nothing was
/// started), [`DaemonError::Engine`] when a rule task died.
pub async fn run<S>(
    path: &Path,
    config: Config,
    options: Options,
    shutdown: impl Future<Output = S> + Send + 'static,
    mut hup: mpsc::UnboundedReceiver<()>,
) -> Result<(), DaemonError>
where
    S: std::fmt::Display + Send + 'static,
{
    let deps = Deps::start(&config, options.dry_run, options.state_dir.as_deref()).await?;
    let generation = build::build(&deps, &config)?;
    deps.board.configure(&config.sources, &config.rules, false);
    deps.commands.set_current(generation.live.clone());
    let (control_stop, control_stop_rx) = watch::channel(false);
    for e in crate::control::serve(
        config.control.socket.as_deref(),
        config.control.metrics_listen,
        deps.board.clone(),
        Some(deps.commands.clone()),
        control_stop_rx.clone(),
    )
    .await
    {
        tracing::warn!(event = events::CONTROL_UNAVAILABLE, error = %e, "`haproxy-watchdog status` or /metrics will not answer");
    }
    deps.pause.watch(control_stop_rx);
    tracing::info!(event = events::STARTED, rules = config.rules.len(), actions = config.actions.len(), dry_run = options.dry_run,
        config = %config.sources.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(","));
    // systemd (Type=notify): `systemctl start` returns once this is sent, and fails if the
    // process exits before, so a configuration that cannot run fails the start itself.
    notify_systemd(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&running_status(&config, &deps)),
    ]);
    // What only starting ran need not stay mapped, nor what a burst freed (docs/benchmarks.md,
    // "Memory").
    startup_pages::release_soon();
    let housekeeping = startup_pages::housekeeping();
    // systemd's watchdog (WatchdogSec=): pinged while every rule makes progress.
    let heartbeat = Arc::new(Heartbeat::default());
    let pinger = watchdog::spawn(heartbeat.clone());
    let (stop_tx, mut stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        // Recorded as a string, as the signal's name always was (`signal="SIGTERM"`).
        let why = shutdown.await.to_string();
        tracing::info!(event = events::STOPPING, signal = why.as_str());
        let _ = stop_tx.send(true);
    });
    // Health and unfinished actions as the last run left them: a restart during an outage
    // neither pages again nor forgets a claim it still has to make.
    let states = deps.saved_rule_states(&config);
    let mut reloads = FileReloads {
        path,
        started: (config.aws.clone(), config.control.clone()),
        deps: &deps,
    };
    let (result, last) = supervise(
        config,
        generation,
        states,
        &mut stop_rx,
        &mut hup,
        &mut reloads,
        &heartbeat,
    )
    .await;
    notify_systemd(&[sd_notify::NotifyState::Stopping]);
    if let Some(p) = pinger {
        p.abort();
    }
    housekeeping.abort();
    let _ = last.stop.send(true);
    let _ = control_stop.send(true);
    let metrics = deps.metrics.clone();
    let left = deps.finish(SHUTDOWN_ALERT_FLUSH).await;
    log_counters(&metrics);
    match &result {
        Ok(()) => tracing::info!(event = events::STOPPED, undelivered_alerts = left),
        Err(e) => tracing::error!(event = events::STOPPED, undelivered_alerts = left, error = %e),
    }
    result
}

/// Where the reload loop gets a new generation from, and what it tells when one starts.
trait Reloads<E> {
    /// Load and build the configuration again; None (with the reason logged) keeps the
    /// running one.
    fn reload(&mut self) -> Option<(Config, Generation<E>)>;
    /// `config` now runs.
    fn swapped(&mut self, _config: &Config) {}
    /// The one-line status `systemctl status` shows for `config`.
    fn status(&self, _config: &Config) -> String {
        String::new()
    }
}

/// The daemon's reloads: the configuration file, built on the daemon's [`Deps`].
struct FileReloads<'a> {
    path: &'a Path,
    /// The settings in use since start-up, which a reload cannot change.
    started: (AwsSettings, ControlSettings),
    deps: &'a Deps,
}

impl Reloads<build::Live> for FileReloads<'_> {
    fn reload(&mut self) -> Option<(Config, Generation)> {
        let new = match config::load(self.path) {
            Ok(c) => c,
            Err(e) => {
                let errors: Vec<String> = e.0.iter().map(|e| e.to_string()).collect();
                tracing::error!(event = events::RELOAD_REJECTED, errors = %errors.join("; "),
                    "the new configuration is invalid; the running one stays");
                return None;
            }
        };
        // Compared with what runs, not with the previous reload: a second reload must warn too.
        if new.aws != self.started.0 {
            tracing::warn!(
                event = events::RELOAD_PARTIAL,
                "[aws] settings take effect at the next restart"
            );
        }
        if new.control != self.started.1 {
            tracing::warn!(
                event = events::RELOAD_PARTIAL,
                "[control] settings take effect at the next restart"
            );
        }
        match build::build(self.deps, &new) {
            Ok(g) => {
                self.deps.commands.set_current(g.live.clone());
                Some((new, g))
            }
            Err(e) => {
                tracing::error!(event = events::RELOAD_REJECTED, errors = %e, "the running configuration stays; restart to apply this one");
                None
            }
        }
    }

    fn swapped(&mut self, config: &Config) {
        self.deps
            .board
            .configure(&config.sources, &config.rules, true);
        self.deps
            .pause
            .set_file(config.node.maintenance_file.clone());
        self.deps.forget_removed_rules(config);
    }

    fn status(&self, config: &Config) -> String {
        running_status(config, self.deps)
    }
}

/// Run generations one after another: each until `stop` turns true (the end), a message on
/// `hup` that [`Reloads::reload`] turns into a new generation (its rules carry on with the
/// states of the same names), or a rule task dying (an error). Returns the last generation,
/// still to be stopped. Each generation's rules report their progress into `heartbeat`, for
/// the systemd watchdog.
async fn supervise<E: Effects, R: Reloads<E>>(
    mut config: Config,
    mut generation: Generation<E>,
    mut states: RuleStates,
    stop: &mut watch::Receiver<bool>,
    hup: &mut mpsc::UnboundedReceiver<()>,
    reloads: &mut R,
    heartbeat: &Arc<Heartbeat>,
) -> (Result<(), DaemonError>, Generation<E>) {
    loop {
        let watched = Watched::new(generation.live.clone(), heartbeat.clone(), &config);
        let mut engine_task = tokio::spawn(engine::run(
            config.rules.clone(),
            Arc::new(watched),
            generation.stop.subscribe(),
            SHUTDOWN_GRACE,
            std::mem::take(&mut states),
        ));
        // Wait for the end of this configuration: a stop, a valid reload, or a crash.
        let next = loop {
            tokio::select! {
                done = &mut engine_task => break Err(done),
                _ = stop.wait_for(|s| *s) => {
                    heartbeat.changing_generation();
                    break Ok(None);
                }
                Some(()) = hup.recv() => {
                    notify_systemd(&[sd_notify::NotifyState::Reloading]);
                    heartbeat.changing_generation();
                    let next = reloads.reload();
                    let status = reloads.status(next.as_ref().map_or(&config, |(c, _)| c));
                    notify_systemd(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&status)]);
                    // Reading and building it mapped start-up's code again.
                    startup_pages::release_soon();
                    match next {
                        Some(next) => break Ok(Some(next)),
                        None => {
                            heartbeat.generation_kept();
                            continue;
                        }
                    }
                }
            }
        };
        let next = match next {
            // The engine ended on its own: a rule task died.
            Err(done) => {
                let e = match done {
                    Ok((Err(e), _)) => e.to_string(),
                    Ok((Ok(()), _)) => "the rules stopped unexpectedly".into(),
                    Err(e) => format!("the engine crashed: {e}"),
                };
                return (Err(DaemonError::Engine(e)), generation);
            }
            Ok(next) => next,
        };
        let _ = generation.stop.send(true);
        let (r, carried) = match engine_task.await {
            Ok((r, carried)) => (r.map_err(|e| e.to_string()), carried),
            Err(e) => (Err(format!("the engine crashed: {e}")), RuleStates::new()),
        };
        let r = r.map_err(DaemonError::Engine);
        let Some((new_config, new_generation)) = next else {
            return (r, generation);
        };
        if r.is_err() {
            return (r, generation);
        }
        states = carried;
        config = new_config;
        generation = new_generation;
        reloads.swapped(&config);
        tracing::info!(
            event = events::CONFIG_RELOADED,
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

/// "1 rule, 2 actions": English plurals for counts in messages.
pub fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The one-line status `systemctl status` shows.
fn running_status(config: &Config, deps: &Deps) -> String {
    let mut s = format!(
        "{} rule{}, {} action{}",
        config.rules.len(),
        plural(config.rules.len()),
        config.actions.len(),
        plural(config.actions.len())
    );
    if let Some(p) = &deps.state_problem {
        s.push_str(&format!("; NOT SAVING STATE ({p})"));
    }
    s
}

/// The process's counters as one event at exit (`/metrics` serves them while running).
fn log_counters(metrics: &Metrics) {
    let c: Vec<String> = metrics
        .snapshot()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    tracing::info!(event = events::COUNTERS, counters = %c.join(" "));
}

#[cfg(test)]
mod tests;
