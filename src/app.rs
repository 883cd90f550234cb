//! Turns a validated [`Config`] into a running daemon: builds the clients once, hands them to
//! the actions, and gives the engine its [`Effects`]. `--once` and `run` share all of this.

use crate::actions::alerts::Alerter;
use crate::actions::claim_eip::{ClaimEip, ClaimEnv, HoldDowns, InFlight};
use crate::actions::exec::Exec;
use crate::actions::notify::SnsNotify;
use crate::actions::{Action, ActionContext, ActionOutcome};
use crate::checks::{self, Outcome};
use crate::config::{ActionSpec, CheckSpec, ClaimProvider, Config, Rule, SourceSpec};
use crate::control::StatusBoard;
use crate::engine::Effects;
use crate::providers::aws::{
    self,
    ec2::Ec2,
    imds::IdentitySource,
    opsworks::{OpsWorks, OpsworksIdentity},
    sns::Sns,
};
use crate::state::{Recovered, StateStore};
use crate::sync::{self, Syncer};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The live world: real probes and real actions.
pub struct Live {
    http: reqwest::Client,
    actions: BTreeMap<String, Action>,
    /// One per `backend_sync` rule; each is only ever used by its own rule's task.
    syncers: BTreeMap<String, tokio::sync::Mutex<Syncer>>,
    board: StatusBoard,
    store: StateStore,
}

impl Effects for Live {
    async fn check(&self, rule: &Rule) -> Outcome {
        match (&rule.check, self.syncers.get(&rule.name)) {
            (CheckSpec::BackendSync(_), Some(s)) => s.lock().await.round().await,
            _ => checks::run(&rule.check, &self.http).await,
        }
    }

    fn report(&self, report: &crate::engine::CycleReport) {
        self.board.record(report);
    }

    fn persist(&self, rule: &str, state: &crate::engine::RuleState) {
        match serde_json::to_value(state) {
            Ok(v) => self.store.rule_saved(rule, v),
            Err(e) => tracing::error!(event = "state_not_saved", rule = %rule, error = %e),
        }
    }

    fn streak_started(&self, action: &str) {
        if let Some(Action::ClaimEip(c)) = self.actions.get(action) {
            c.note_owner();
        }
    }

    async fn act(&self, action: &str, ctx: &ActionContext) -> ActionOutcome {
        match self.actions.get(action) {
            Some(a) => a.run(ctx).await,
            // Config validation guarantees every reference resolves.
            None => ActionOutcome::Error(format!("no action named {action}")),
        }
    }
}

/// What outlives one configuration: the alert outbox, claims in flight, hold-downs, and the
/// AWS SDK configuration. A SIGHUP reload builds a new [`Generation`] on the same `Shared`.
pub struct Shared {
    pub alerter: Alerter,
    alert_task: tokio::task::JoinHandle<()>,
    alert_stop: watch::Sender<bool>,
    in_flight: InFlight,
    holds: HoldDowns,
    sdk: Option<aws_config::SdkConfig>,
    dry_run: bool,
    /// What `watchdog status` and `/metrics` show.
    pub board: StatusBoard,
    store: StateStore,
    /// The rule states the state directory held at start, until the daemon takes them.
    saved_rules: std::sync::Mutex<BTreeMap<String, serde_json::Value>>,
    /// Why the state directory could not be used (the daemon then keeps nothing across a
    /// restart), for `systemctl status`.
    pub state_problem: Option<String>,
    /// Claims the last run died in, by EIP, until a `claim_eip` action of that EIP settles them.
    pending_claims: std::sync::Mutex<BTreeMap<String, crate::state::PendingClaim>>,
}

/// One configuration's effects. Sending `true` on `stop` ends its rules (and keeps new claims
/// from starting); claims already changing EC2 finish on their own.
pub struct Generation {
    pub live: Arc<Live>,
    pub stop: watch::Sender<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The whole cause chain is in the message: a bare "builder error" tells nobody anything.
    #[error("cannot build the HTTP client: {}{}", crate::telemetry::chain(.0),
        if crate::telemetry::chain(.0).contains("CA certificates") {
            " (the configuration has https URLs: install the CA certificates, Debian's and RHEL's package ca-certificates)"
        } else { "" })]
    Http(reqwest::Error),
    #[error("no CA certificates on this machine, and the AWS SDK needs them for every call: install them (Debian's and RHEL's package ca-certificates; SSL_CERT_FILE or SSL_CERT_DIR point elsewhere)")]
    NoCaStore,
    #[error("{0}")]
    StateBusy(String),
    #[error("no AWS region: set [aws] region or AWS_REGION (or run on EC2, where instance metadata gives it; it may have been unavailable for a moment)")]
    NoRegion,
    #[error("this configuration calls AWS, which the daemon did not set up at start (its first configuration needed no AWS call): restart to apply it")]
    AwsNotStarted,
}

/// Claims and alerts need AWS unless in a dry run; Auto Scaling sources read it even then.
fn aws_needs(config: &Config, dry_run: bool) -> bool {
    let acts = config
        .actions
        .values()
        .any(|a| matches!(a, ActionSpec::ClaimEip(_) | ActionSpec::Sns(_)));
    (acts && !dry_run) || needs_asg(config)
}

fn needs_asg(config: &Config) -> bool {
    config.rules.iter().any(
        |r| matches!(&r.check, CheckSpec::BackendSync(b) if matches!(b.source, SourceSpec::Asg(_))),
    )
}

/// The shared part and the first configuration's effects.
pub async fn start(
    config: &Config,
    dry_run: bool,
    state_dir: Option<&std::path::Path>,
) -> Result<(Shared, Generation), BuildError> {
    let shared = Shared::start(config, dry_run, state_dir).await?;
    let generation = shared.generation(config)?;
    Ok((shared, generation))
}

impl Shared {
    /// `state_dir`: where hold-downs and undelivered alerts are saved across restarts (None:
    /// kept in memory only, as for `--once` and dry runs).
    pub async fn start(
        config: &Config,
        dry_run: bool,
        state_dir: Option<&std::path::Path>,
    ) -> Result<Shared, BuildError> {
        let sdk = if aws_needs(config, dry_run) {
            // The SDK's HTTPS client loads the machine's CA store when it is built and panics
            // when there is none ("no valid root certificates parsed"), whatever the endpoint:
            // look first, and fail with a message instead.
            if rustls_native_certs::load_native_certs().certs.is_empty() {
                return Err(BuildError::NoCaStore);
            }
            let sdk = aws::sdk_config(&config.aws).await;
            if sdk.region().is_none() {
                return Err(BuildError::NoRegion);
            }
            Some(sdk)
        } else {
            None
        };
        let sns = sdk.as_ref().filter(|_| !dry_run).map(Sns::new);
        let (alert_stop, alert_stop_rx) = watch::channel(false);
        let mut state_problem = None;
        let (store, recovered) = match state_dir.filter(|_| !dry_run) {
            None => (StateStore::default(), Recovered::default()),
            Some(dir) => match StateStore::open(dir) {
                Ok(opened) => opened,
                Err(e @ crate::state::OpenError::Busy(_)) => {
                    return Err(BuildError::StateBusy(e.to_string()))
                }
                Err(e) => {
                    tracing::error!(event = "state_unavailable", error = %e,
                        "hold-downs and undelivered alerts will not survive a restart");
                    state_problem = Some(e.to_string());
                    (StateStore::default(), Recovered::default())
                }
            },
        };
        let (alerter, alert_task) = Alerter::spawn(sns, dry_run, alert_stop_rx, store.clone());
        for a in recovered.maybe_sent {
            tracing::warn!(event = "alert_maybe_sent", topic = %a.topic_arn, subject = %a.subject,
                "this alert was being published when the daemon stopped; not sending it again");
        }
        for a in recovered.alerts {
            alerter.resend(
                a.id,
                crate::actions::alerts::Alert {
                    topic_arn: a.topic_arn,
                    subject: a.subject,
                    message: a.message,
                },
            );
        }
        Ok(Shared {
            alerter,
            alert_task,
            alert_stop,
            in_flight: InFlight::default(),
            holds: HoldDowns::new(store.clone()),
            sdk,
            dry_run,
            board: StatusBoard::default(),
            store,
            saved_rules: std::sync::Mutex::new(recovered.rules),
            pending_claims: std::sync::Mutex::new(recovered.claims),
            state_problem,
        })
    }

    /// The rule states saved before the last stop, for the rules `config` still has (the
    /// others are forgotten). A saved state that no longer reads is logged and dropped: that
    /// rule starts afresh, as a new rule would.
    pub fn saved_rule_states(&self, config: &Config) -> crate::engine::RuleStates {
        let saved =
            std::mem::take(&mut *self.saved_rules.lock().unwrap_or_else(|p| p.into_inner()));
        self.store
            .keep_rules(config.rules.iter().map(|r| r.name.as_str()));
        let mut states = crate::engine::RuleStates::new();
        for (name, value) in saved {
            if !config.rules.iter().any(|r| r.name == name) {
                continue;
            }
            match serde_json::from_value(value) {
                Ok(st) => {
                    states.insert(name, st);
                }
                Err(e) => {
                    tracing::warn!(event = "rule_state_unreadable", rule = %name, error = %e, "the rule starts afresh")
                }
            }
        }
        if !states.is_empty() {
            tracing::info!(event = "rule_states_restored", rules = %states.keys().cloned().collect::<Vec<_>>().join(","));
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

    /// The effects of `config`: its probes, actions and syncers.
    pub fn generation(&self, config: &Config) -> Result<Generation, BuildError> {
        let dry_run = self.dry_run;
        let http = checks::http_client(config.needs_tls()).map_err(BuildError::Http)?;
        let (stop, stop_rx) = watch::channel(false);
        if aws_needs(config, dry_run) && self.sdk.is_none() {
            return Err(BuildError::AwsNotStarted);
        }
        let ec2 = self.sdk.as_ref().filter(|_| !dry_run).map(Ec2::new);
        let uses_opsworks = config
            .actions
            .values()
            .any(|a| matches!(a, ActionSpec::ClaimEip(c) if c.provider == ClaimProvider::OpsWorks));
        let opsworks = self
            .sdk
            .as_ref()
            .filter(|_| !dry_run && uses_opsworks)
            .map(|sdk| OpsWorks::new(sdk, &config.opsworks));
        let discovery = self.sdk.as_ref().filter(|_| needs_asg(config));
        let claims = config
            .actions
            .values()
            .any(|a| matches!(a, ActionSpec::ClaimEip(_)));
        if claims
            && config.haproxy.health_url.is_none()
            && config.haproxy.frontend.is_none()
            && config.haproxy.backend.is_none()
        {
            tracing::warn!(event = "weak_readiness_check", "[haproxy] only checks that the process answers on its stats socket; \
                set `backend` (or `frontend`, or `health_url`) so a node whose backends are all down never claims");
        }
        let claim_env = Arc::new(ClaimEnv {
            ec2,
            opsworks,
            opsworks_identity: Arc::new(OpsworksIdentity::new(&config.opsworks)),
            http: http.clone(),
            egress: config.egress.clone(),
            haproxy: config.haproxy.clone(),
            identity: Arc::new(IdentitySource::new(config.node.clone())),
            alerter: self.alerter.clone(),
            subject_prefix: config.alerts.subject_prefix.clone(),
            verify_for: Duration::from_secs(10),
            stopping: stop_rx.clone(),
            in_flight: self.in_flight.clone(),
        });
        let actions = config
            .actions
            .iter()
            .map(|(name, spec)| {
                let action = match spec {
                    ActionSpec::ClaimEip(c) => {
                        let claim = ClaimEip::new(c.clone(), claim_env.clone(), &self.holds);
                        let pending = self
                            .pending_claims
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&c.eip.to_string());
                        if let Some(p) = pending {
                            claim.reconcile(p, self.alert_stop.subscribe());
                        }
                        Action::ClaimEip(claim)
                    }
                    ActionSpec::Sns(s) => Action::Sns(SnsNotify::new(
                        s.clone(),
                        self.alerter.clone(),
                        config.alerts.subject_prefix.clone(),
                    )),
                    ActionSpec::Exec(x) => Action::Exec(Exec::new(x.clone(), dry_run)),
                };
                (name.clone(), action)
            })
            .collect();
        let mut syncers = BTreeMap::new();
        for rule in &config.rules {
            let CheckSpec::BackendSync(spec) = &rule.check else {
                continue;
            };
            let source =
                sync::source(spec, &http, discovery, dry_run).ok_or(BuildError::AwsNotStarted)?;
            let syncer = Syncer::new(rule, spec.clone(), source, stop_rx.clone(), dry_run)
                .with_identity(claim_env.identity.clone());
            syncers.insert(rule.name.clone(), tokio::sync::Mutex::new(syncer));
        }
        Ok(Generation {
            live: Arc::new(Live {
                http,
                actions,
                syncers,
                board: self.board.clone(),
                store: self.store.clone(),
            }),
            stop,
        })
    }
}
