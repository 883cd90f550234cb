//! What outlives one configuration: the AWS SDK set-up, the alert outbox, hold-downs, claims in
//! flight and the claims the last run died in, HAProxy reloaders and file locks, the state
//! directory and the status board. Built once at start; a SIGHUP reload builds a new
//! [`Generation`](super::build::Generation) on the same `Deps`.

use super::build::{BuildError, Needs};
use crate::actions::alerts::{Alert, Alerter};
use crate::actions::claim::{HoldDowns, InFlight};
use crate::config::Config;
use crate::control::{Commands, StatusBoard};
use crate::engine::RuleStates;
use crate::history::History;
use crate::pause::Pause;
use crate::providers::aws::{self, sns::Sns};
use crate::state::{OpenError, PendingClaim, Recovered, StateStore};
use crate::telemetry::events;
use crate::telemetry::metrics::Metrics;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// See the module documentation. Every field is shared by each generation the daemon runs.
pub struct Deps {
    pub alerter: Alerter,
    alert_task: tokio::task::JoinHandle<()>,
    pub(super) alert_stop: watch::Sender<bool>,
    pub(super) in_flight: InFlight,
    pub(super) holds: HoldDowns,
    /// None when the first configuration needed no AWS call: a reload that needs one is
    /// refused ([`BuildError::AwsNotStarted`]).
    pub(super) sdk: Option<aws_config::SdkConfig>,
    pub(super) dry_run: bool,
    /// What `watchdog status` and `/metrics` show.
    pub board: StatusBoard,
    /// Every counter and gauge, handed to what counts.
    pub metrics: Arc<Metrics>,
    pub(super) store: StateStore,
    /// HAProxy reload windows and configuration-file locks, by HAProxy.
    pub(super) haproxy: crate::haproxy::Shared,
    /// The events queues' receivers, kept across reloads (`sync::queues`).
    pub(super) queues: crate::sync::queues::EventQueues,
    /// The rule states the state directory held at start, until the daemon takes them.
    saved_rules: Mutex<BTreeMap<String, serde_json::Value>>,
    /// Why the state directory could not be used (the daemon then keeps nothing across a
    /// restart), for `systemctl status`.
    pub state_problem: Option<String>,
    /// Claims the last run died in, by EIP, until a `claim_eip` action of that EIP settles them.
    pub(super) pending_claims: Mutex<BTreeMap<String, PendingClaim>>,
    /// Transitions, claims, refusals and operator commands (`status --history`).
    pub history: History,
    /// `watchdog pause` and the maintenance file.
    pub pause: Pause,
    /// What the control socket's commands act on: the running generation.
    pub commands: Commands,
}

impl Deps {
    /// Set up what `config` needs from AWS and open the state directory.
    ///
    /// `state_dir`: where hold-downs, claims in flight, rule states and undelivered alerts are
    /// saved across restarts (None: kept in memory only, as for `--once`; a dry run never
    /// saves). An unusable directory is logged and the daemon runs without it
    /// (`state_problem`); one another process holds is [`BuildError::StateBusy`].
    ///
    /// Errors: [`BuildError::NoCaStore`] when AWS is needed and the machine has no CA
    /// certificates (the SDK would panic), [`BuildError::NoRegion`].
    pub async fn start(
        config: &Config,
        dry_run: bool,
        state_dir: Option<&Path>,
    ) -> Result<Deps, BuildError> {
        let sdk = if Needs::of(config, dry_run).aws {
            // The SDK's HTTPS client loads the machine's CA store when it is built and panics
            // when there is none ("no valid root certificates parsed"), whatever the endpoint:
            // look first, and fail with a message instead.
            if rustls_native_certs::load_native_certs().certs.is_empty() {
                return Err(BuildError::NoCaStore);
            }
            let sdk = aws::sdk_config_for(&config.aws, &config.node).await;
            if sdk.region().is_none() {
                return Err(BuildError::NoRegion);
            }
            Some(sdk)
        } else {
            None
        };
        let metrics = Arc::new(Metrics::new().map_err(BuildError::Metrics)?);
        let sns = sdk
            .as_ref()
            .filter(|_| !dry_run)
            .map(|sdk| Sns::new(sdk, metrics.clone()));
        let (alert_stop, alert_stop_rx) = watch::channel(false);
        let mut state_problem = None;
        let (store, recovered) = match state_dir.filter(|_| !dry_run) {
            None => (StateStore::default(), Recovered::default()),
            Some(dir) => match StateStore::open(dir) {
                Ok(opened) => opened,
                Err(e @ OpenError::Busy(_)) => return Err(BuildError::StateBusy(e.to_string())),
                Err(e) => {
                    tracing::error!(event = events::STATE_UNAVAILABLE, error = %e,
                        "hold-downs and undelivered alerts will not survive a restart");
                    state_problem = Some(e.to_string());
                    (StateStore::default(), Recovered::default())
                }
            },
        };
        let history = History::new(config.control.history, recovered.history, store.clone());
        let pause = Pause::new(
            recovered.pause,
            store.clone(),
            history.clone(),
            metrics.clone(),
        );
        pause.set_file(config.node.maintenance_file.clone());
        let (alerter, alert_task) = Alerter::spawn(
            sns,
            dry_run,
            alert_stop_rx,
            store.clone(),
            metrics.clone(),
            history.clone(),
        );
        for a in recovered.maybe_sent {
            tracing::warn!(event = events::ALERT_MAYBE_SENT, topic = %a.topic_arn, subject = %a.subject,
                "this alert was being published when the daemon stopped; not sending it again");
        }
        for a in recovered.alerts {
            alerter.resend(
                a.id,
                Alert {
                    topic_arn: a.topic_arn,
                    subject: a.subject,
                    message: a.message,
                },
            );
        }
        Ok(Deps {
            alerter,
            alert_task,
            alert_stop,
            in_flight: InFlight::default(),
            holds: HoldDowns::new(store.clone()),
            sdk,
            dry_run,
            board: StatusBoard::new(metrics.clone()).with(pause.clone(), history.clone()),
            commands: Commands::new(pause.clone(), metrics.clone()),
            history,
            pause,
            store,
            haproxy: crate::haproxy::Shared::new(metrics.clone()),
            queues: crate::sync::queues::EventQueues::default(),
            metrics,
            saved_rules: Mutex::new(recovered.rules),
            pending_claims: Mutex::new(recovered.claims),
            state_problem,
        })
    }

    /// The rule states saved before the last stop, for the rules `config` still has (the
    /// others are forgotten). A saved state that no longer reads is logged and dropped: that
    /// rule starts afresh, as a new rule would. Gives them once; later calls return none.
    pub fn saved_rule_states(&self, config: &Config) -> RuleStates {
        let saved =
            std::mem::take(&mut *self.saved_rules.lock().unwrap_or_else(|p| p.into_inner()));
        self.store
            .keep_rules(config.rules.iter().map(|r| r.name.as_str()));
        let mut states = RuleStates::new();
        for (name, value) in saved {
            if !config.rules.iter().any(|r| r.name == name) {
                continue;
            }
            match serde_json::from_value(value) {
                Ok(st) => {
                    states.insert(name, st);
                }
                Err(e) => {
                    tracing::warn!(event = events::RULE_STATE_UNREADABLE, rule = %name, error = %e, "the rule starts afresh")
                }
            }
        }
        if !states.is_empty() {
            tracing::info!(event = events::RULE_STATES_RESTORED, rules = %states.keys().cloned().collect::<Vec<_>>().join(","));
        }
        states
    }

    /// A reload dropped rules: forget their saved state too, so a rule added again later
    /// starts afresh instead of coming back in its old state after a restart.
    pub fn forget_removed_rules(&self, config: &Config) {
        self.store
            .keep_rules(config.rules.iter().map(|r| r.name.as_str()));
    }

    /// After the engine has stopped: let claims already changing EC2 finish (each AWS call is
    /// bounded by its own timeouts), give queued alerts `flush_for`, then stop the outbox.
    /// Returns how many alerts were left undelivered.
    pub async fn finish(self, flush_for: Duration) -> usize {
        self.in_flight.idle().await;
        let left = self.alerter.flush(flush_for).await;
        let _ = self.alert_stop.send(true);
        let _ = self.alert_task.await;
        left
    }
}
