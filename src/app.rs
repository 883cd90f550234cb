//! Turns a validated [`Config`] into a running daemon: builds the clients once, hands them to
//! the actions, and gives the engine its [`Effects`]. `--once` and `run` share all of this.

use crate::actions::alerts::Alerter;
use crate::actions::claim_eip::{ClaimEip, ClaimEnv, InFlight};
use crate::actions::notify::SnsNotify;
use crate::actions::{Action, ActionContext, ActionOutcome};
use crate::checks::{self, Outcome};
use crate::config::{ActionSpec, CheckSpec, Config, Rule, SourceSpec};
use crate::engine::Effects;
use crate::providers::aws::{
    self, autoscaling::AutoScaling, ec2::Ec2, imds::IdentitySource, sns::Sns,
};
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
}

impl Effects for Live {
    async fn check(&self, rule: &Rule) -> Outcome {
        match (&rule.check, self.syncers.get(&rule.name)) {
            (CheckSpec::BackendSync(_), Some(s)) => s.lock().await.round().await,
            _ => checks::run(&rule.check, &self.http).await,
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

/// A built daemon: its effects, its alert outbox, and the switches that stop them.
pub struct Daemon {
    pub live: Arc<Live>,
    pub alerter: Alerter,
    alert_task: tokio::task::JoinHandle<()>,
    alert_stop: watch::Sender<bool>,
    /// Stops the rules (and keeps new claims from starting).
    pub shutdown: watch::Sender<bool>,
    in_flight: InFlight,
}

impl Daemon {
    /// After the engine has stopped: let claims already changing EC2 finish (each AWS call is
    /// bounded by its own timeouts), give queued alerts `flush_for`, then stop the outbox.
    /// Returns how many alerts were left undelivered.
    pub async fn finish(self, flush_for: Duration) -> usize {
        let _ = self.shutdown.send(true);
        self.in_flight.idle().await;
        let left = self.alerter.flush(flush_for).await;
        let _ = self.alert_stop.send(true);
        let _ = self.alert_task.await;
        left
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("no AWS region: set [aws] region or AWS_REGION (or run on EC2, where instance metadata gives it)")]
    NoRegion,
}

impl BuildError {
    /// A missing region is a configuration problem; the rest are runtime failures.
    pub fn is_config(&self) -> bool {
        matches!(self, BuildError::NoRegion)
    }
}

pub async fn build(config: &Config, dry_run: bool) -> Result<Daemon, BuildError> {
    let http = checks::http_client()?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let needs_aws = config
        .actions
        .values()
        .any(|a| matches!(a, ActionSpec::ClaimEip(_) | ActionSpec::Sns(_)));
    // Auto Scaling sources read AWS even in a dry run (reads change nothing); claims and
    // alerts get no client then, so they only log what they would do.
    let needs_asg = config.rules.iter().any(|r| {
        matches!(&r.check, CheckSpec::BackendSync(b) if matches!(b.source, SourceSpec::Asg { .. }))
    });
    let sdk = if needs_asg || (needs_aws && !dry_run) {
        let sdk = aws::sdk_config(&config.aws).await;
        if sdk.region().is_none() {
            return Err(BuildError::NoRegion);
        }
        Some(sdk)
    } else {
        None
    };
    let (ec2, sns) = match &sdk {
        Some(sdk) if needs_aws && !dry_run => (Some(Ec2::new(sdk)), Some(Sns::new(sdk))),
        _ => (None, None),
    };
    let discovery = sdk
        .as_ref()
        .filter(|_| needs_asg)
        .map(|sdk| (AutoScaling::new(sdk), Ec2::new(sdk)));
    let (alert_stop, alert_stop_rx) = watch::channel(false);
    let (alerter, alert_task) = Alerter::spawn(sns, alert_stop_rx);
    let in_flight = InFlight::default();
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
        http: http.clone(),
        egress: config.egress.clone(),
        haproxy: config.haproxy.clone(),
        identity: Arc::new(IdentitySource::new(config.node.clone())),
        alerter: alerter.clone(),
        subject_prefix: config.alerts.subject_prefix.clone(),
        verify_for: Duration::from_secs(10),
        stopping: shutdown_rx,
        in_flight: in_flight.clone(),
    });
    let actions = config
        .actions
        .iter()
        .map(|(name, spec)| {
            let action = match spec {
                ActionSpec::ClaimEip(c) => {
                    Action::ClaimEip(ClaimEip::new(c.clone(), claim_env.clone()))
                }
                ActionSpec::Sns(s) => Action::Sns(SnsNotify::new(
                    s.clone(),
                    alerter.clone(),
                    config.alerts.subject_prefix.clone(),
                )),
            };
            (name.clone(), action)
        })
        .collect();
    let mut syncers = BTreeMap::new();
    for rule in &config.rules {
        let CheckSpec::BackendSync(spec) = &rule.check else {
            continue;
        };
        let source = sync::source(spec, &http, discovery.as_ref().map(|(a, e)| (a, e)))
            .ok_or(BuildError::NoRegion)?;
        let syncer = Syncer::new(rule, spec.clone(), source, shutdown.subscribe(), dry_run);
        syncers.insert(rule.name.clone(), tokio::sync::Mutex::new(syncer));
    }
    Ok(Daemon {
        live: Arc::new(Live {
            http,
            actions,
            syncers,
        }),
        alerter,
        alert_task,
        alert_stop,
        shutdown,
        in_flight,
    })
}
